//! The server's configuration: one validated struct filled, in increasing
//! precedence, from defaults, a TOML file, `HINDSIGHT_*` environment
//! variables and command-line flags.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::ServerError;

/// A secret (the bearer token): never printed, compared in constant time.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Whether `given` equals the secret, in time independent of where
    /// they differ.
    pub fn matches(&self, given: &[u8]) -> bool {
        let a = self.0.as_bytes();
        if a.len() != given.len() {
            return false;
        }
        a.iter().zip(given).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// Everything `hindsight serve` can be told. See the field docs for the
/// defaults; [`ServerConfig::validate`] checks the whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on. Default 127.0.0.1:8080 (loopback only).
    pub addr: SocketAddr,
    /// The behavior index folder (required). The server takes its writer
    /// lock: no other process may ingest into it while it runs.
    pub index: PathBuf,
    /// The trained model folder (required).
    pub model: PathBuf,
    /// The recall (SASRec) model folder (`hindsight train --model
    /// sasrec`): enables `POST /v1/recommend`. Default: none (the route
    /// answers 409 `no_recall_model`).
    pub recall_model: Option<PathBuf>,
    /// The recall model's ANN folder (`hindsight ann build`). Default:
    /// `RECALL_MODEL/ann` when it exists, else the catalog is searched
    /// exactly.
    pub ann: Option<PathBuf>,
    /// Most items (and most candidates to rank) in one recommend request.
    pub max_recommend: usize,
    /// Device of the model: auto, cpu or cuda.
    pub device: String,
    /// libtorch intra-op CPU threads. Default 1: scoring requests already
    /// run in parallel on `workers` threads.
    pub torch_threads: i32,
    /// Requests doing CPU work (retrieval, forward pass) at once, each with
    /// its own replica of the model's weights. Default: the number of
    /// cores.
    pub workers: usize,
    /// Scoring and read requests admitted at once (running or waiting for
    /// a worker); beyond it requests get 503 with Retry-After at once.
    /// Default (absent): 4 x workers, so that an admitted request waits
    /// behind at most about three others per worker instead of queueing
    /// for hundreds of milliseconds under overload.
    pub max_in_flight: Option<usize>,
    /// Append requests queued for the writer at most; beyond it, 503.
    pub max_queued_appends: usize,
    /// Most candidates in one score request.
    pub max_candidates: usize,
    /// Most behaviors in one append request.
    pub max_append_behaviors: usize,
    /// Largest `limit` of the user behaviors listing.
    pub max_list_limit: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Per-request deadline, milliseconds, counted from the request's
    /// arrival (reading the body included); past it the request gets 503
    /// `deadline_exceeded`.
    pub request_timeout_ms: u64,
    /// The request body must have arrived within this long of the
    /// request's head (and within `request_timeout_ms`), else 408
    /// `body_timeout` and the connection is closed.
    pub body_read_timeout_ms: u64,
    /// Once a request head has started arriving, all of it must arrive
    /// within this long, else the connection is closed.
    pub header_read_timeout_ms: u64,
    /// A connection with no request being handled that receives and
    /// sends nothing for this long (a fresh one, or keep-alive between
    /// requests) is closed.
    pub idle_timeout_ms: u64,
    /// Open connections at most; one more is answered 503
    /// `too_many_connections` and closed. Keep it below the process's
    /// open-file limit (`ulimit -n`).
    pub max_connections: usize,
    /// Longest request target (path and query), bytes; beyond, 414.
    pub max_uri_bytes: usize,
    /// Largest request head (header names and values), bytes, and at
    /// most 100 header lines; beyond, 431.
    pub max_header_bytes: usize,
    /// Seconds given in Retry-After when shedding load.
    pub retry_after_secs: u64,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// Bearer token required by the write and admin endpoints (and by
    /// reads when `auth_reads`). None: no authentication.
    pub token: Option<Secret>,
    /// Also require the token for score and read endpoints.
    pub auth_reads: bool,
    /// Serve the index read-only: no writer lock is taken (so an index on a
    /// read-only mount, or one another process writes, can be served) and
    /// `POST /v1/behaviors` answers 409 `read_only`.
    pub read_only: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            index: PathBuf::new(),
            model: PathBuf::new(),
            recall_model: None,
            ann: None,
            max_recommend: 1000,
            device: "auto".into(),
            torch_threads: 1,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_in_flight: None,
            max_queued_appends: 1024,
            max_candidates: 1000,
            max_append_behaviors: 10_000,
            max_list_limit: 1000,
            max_body_bytes: 2 << 20,
            request_timeout_ms: 2000,
            body_read_timeout_ms: 2000,
            header_read_timeout_ms: 5000,
            idle_timeout_ms: 30_000,
            max_connections: 4096,
            max_uri_bytes: 8192,
            max_header_bytes: 16_384,
            retry_after_secs: 1,
            shutdown_grace_secs: 30,
            token: None,
            auth_reads: false,
            read_only: false,
        }
    }
}

/// Where a setting came from, for error messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Defaults,
    Env,
    Flags,
}

impl Origin {
    const fn name(self) -> &'static str {
        match self {
            Origin::Defaults => "defaults",
            Origin::Env => "environment",
            Origin::Flags => "flags",
        }
    }
}

/// A figment provider without a source location (so that errors name the
/// key and its origin, not a line of this crate).
struct Named {
    origin: Origin,
    data: figment::value::Dict,
}

impl figment::Provider for Named {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.origin.name())
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut map = figment::value::Map::new();
        map.insert(figment::Profile::Default, self.data.clone());
        Ok(map)
    }
}

fn dict_of(value: &impl Serialize) -> Result<figment::value::Dict, ServerError> {
    match figment::value::Value::serialize(value) {
        Ok(figment::value::Value::Dict(_, d)) => Ok(d),
        Ok(_) => Ok(figment::value::Dict::new()),
        Err(e) => Err(ServerError::Config(e.to_string())),
    }
}

/// The value of `HINDSIGHT_<KEY>`: the text as is where the key takes
/// text (an address, a path, the token, even when it looks like a number),
/// else parsed as a number or boolean.
fn env_value(key: &str, raw: &str) -> figment::value::Value {
    let takes = |v: figment::value::Value| {
        Figment::from(Serialized::defaults(ServerConfig::default()))
            .merge(Serialized::default(key, v))
            .extract::<ServerConfig>()
            .is_ok()
    };
    let text = figment::value::Value::from(raw.to_owned());
    if takes(text.clone()) {
        return text;
    }
    match raw.parse::<figment::value::Value>() {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// Rewrites figment's errors as `KEY: what is wrong` naming the key as the
/// user wrote it (`HINDSIGHT_MAX_CANDIDATES`, `--workers`, `workers` in a
/// file), and what is allowed.
fn config_error(e: figment::Error, file: Option<&Path>) -> ServerError {
    let messages: Vec<String> = e
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let origin = e.metadata.as_ref().map(|m| m.name.to_string());
            let named = match origin.as_deref() {
                Some("environment") => format!("HINDSIGHT_{} ({key})", key.to_ascii_uppercase()),
                Some("flags") => format!("--{}", key.replace('_', "-")),
                _ => match file {
                    Some(f) if !key.is_empty() => format!("{key} in {}", f.display()),
                    Some(f) => f.display().to_string(),
                    None => key.clone(),
                },
            };
            let what = friendly(&e.kind.to_string());
            if named.is_empty() {
                what
            } else {
                format!("{named}: {what}")
            }
        })
        .collect();
    ServerError::Config(messages.join("; "))
}

/// Says what a value must be in words rather than Rust types.
fn friendly(kind: &str) -> String {
    let mut s = kind.to_owned();
    for (ty, words) in [
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected i32", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
    ] {
        s = s.replace(ty, words);
    }
    s
}

/// The setting names of [`ServerConfig`] (its config-file keys; as
/// `HINDSIGHT_<KEY>` environment variables), read from its serde
/// declaration so that a new field is a new key everywhere at once.
pub fn keys() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor};

    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(Self::Error::custom("only the field names were wanted"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    static KEYS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut fields: &'static [&'static str] = &[];
        let _ = ServerConfig::deserialize(Fields(&mut fields));
        fields
    })
}

/// Every setting with its default, one per line (`key = value`, `key` alone
/// when it has no default), for `hindsight serve --help`.
pub fn settings_help() -> String {
    let defaults = dict_of(&ServerConfig::default()).unwrap_or_default();
    let mut out = String::from(
        "Settings (config file keys; environment HINDSIGHT_<KEY>; see docs/server.md), with their defaults:\n",
    );
    for key in keys() {
        match defaults.get(*key) {
            Some(v) if *key != "index" && *key != "model" => {
                let shown = match v {
                    figment::value::Value::String(_, s) => format!("{s:?}"),
                    figment::value::Value::Num(_, n) => match n.to_u128() {
                        Some(u) => u.to_string(),
                        None => n
                            .to_i128()
                            .map_or_else(|| format!("{n:?}"), |i| i.to_string()),
                    },
                    figment::value::Value::Bool(_, b) => b.to_string(),
                    _ => "(none)".into(),
                };
                let note = match *key {
                    "workers" => "   (the number of cores)",
                    "max_in_flight" => "   (4 x workers)",
                    "token" => "   (no authentication)",
                    _ => "",
                };
                out.push_str(&format!("  {key} = {shown}{note}\n"));
            }
            _ => out.push_str(&format!("  {key}\n")),
        }
    }
    out
}

impl ServerConfig {
    /// Loads the configuration: defaults, then the TOML file `file` (which
    /// must exist when given), then `HINDSIGHT_<KEY>` variables of `env`,
    /// then `overrides` (the command-line flags given, as a serializable
    /// struct whose absent fields are skipped). Validates the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &impl Serialize,
    ) -> Result<ServerConfig, ServerError> {
        let mut fig = Figment::from(Named {
            origin: Origin::Defaults,
            data: dict_of(&ServerConfig::default())?,
        });
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ServerError::Config(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            fig = fig.merge(Toml::file_exact(file));
        }
        // The variables are given explicitly (not read by figment's Env
        // provider) so that tests need not touch the process environment;
        // only `HINDSIGHT_<KEY>` for the keys of `ServerConfig` are read
        // (so `HINDSIGHT_LOG` and the build scripts' `HINDSIGHT_PYTHON` do
        // not interfere).
        let mut env_map = figment::value::Dict::new();
        for (k, v) in env {
            let Some(key) = k.strip_prefix("HINDSIGHT_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if keys().contains(&key.as_str()) {
                let value = env_value(&key, &v);
                env_map.insert(key, value);
            }
        }
        fig = fig.merge(Named {
            origin: Origin::Env,
            data: env_map,
        });
        fig = fig.merge(Named {
            origin: Origin::Flags,
            data: dict_of(overrides)?,
        });
        let cfg: ServerConfig = fig.extract().map_err(|e| config_error(e, file))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The admission limit: `max_in_flight`, or 4 x `workers`.
    pub fn in_flight_limit(&self) -> usize {
        self.max_in_flight.unwrap_or(4 * self.workers)
    }

    /// Checks the values; the message names the key to fix.
    pub fn validate(&self) -> Result<(), ServerError> {
        let bad = |msg: String| Err(ServerError::Config(msg));
        if self.index.as_os_str().is_empty() {
            return bad("no index given: pass --index PATH (or set index in the config file, or HINDSIGHT_INDEX)".into());
        }
        if cfg!(feature = "model") && self.model.as_os_str().is_empty() {
            return bad("no model given: pass --model PATH (or set model in the config file, or HINDSIGHT_MODEL)".into());
        }
        if !["auto", "cpu", "cuda"].contains(&self.device.as_str()) {
            return bad(format!(
                "device must be auto, cpu or cuda, not {:?}",
                self.device
            ));
        }
        let positive = [
            ("torch_threads", self.torch_threads.max(0) as u64),
            ("workers", self.workers as u64),
            ("max_in_flight", self.in_flight_limit() as u64),
            ("max_queued_appends", self.max_queued_appends as u64),
            ("max_candidates", self.max_candidates as u64),
            ("max_recommend", self.max_recommend as u64),
            ("max_append_behaviors", self.max_append_behaviors as u64),
            ("max_list_limit", self.max_list_limit as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("max_connections", self.max_connections as u64),
            ("max_uri_bytes", self.max_uri_bytes as u64),
            ("max_header_bytes", self.max_header_bytes as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return bad(format!("{key} must be at least 1"));
            }
        }
        if self.max_uri_bytes > 65_534 {
            return bad(format!(
                "max_uri_bytes must be at most 65534 (the HTTP stack's own limit), not {}",
                self.max_uri_bytes
            ));
        }
        if self.max_header_bytes > 400_000 {
            return bad(format!(
                "max_header_bytes must be at most 400000 (the HTTP stack's own buffer), not {}",
                self.max_header_bytes
            ));
        }
        if self.in_flight_limit() < self.workers {
            return bad(format!(
                "max_in_flight ({}) must be at least workers ({})",
                self.in_flight_limit(),
                self.workers
            ));
        }
        if self.token.as_ref().is_some_and(|t| t.0.trim().is_empty()) {
            return bad("token is empty; remove it to disable authentication".into());
        }
        if self.auth_reads && self.token.is_none() {
            return bad("auth_reads needs a token".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        workers: Option<usize>,
        #[serde(skip_serializing_if = "Option::is_none")]
        model: Option<PathBuf>,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hindsight.toml");
        std::fs::write(
            &file,
            "index = \"idx\"\nmodel = \"m-file\"\nworkers = 3\nmax_candidates = 7\ntoken = \"s3cret\"\n",
        )
        .unwrap();
        let cfg = ServerConfig::load(
            Some(&file),
            env(&[
                ("HINDSIGHT_MAX_CANDIDATES", "9"),
                ("HINDSIGHT_ADDR", "0.0.0.0:9000"),
                ("HINDSIGHT_PYTHON", "/usr/bin/python3"),
                ("OTHER", "1"),
            ]),
            &Flags {
                workers: Some(4),
                model: None,
            },
        )
        .unwrap();
        assert_eq!(cfg.index, PathBuf::from("idx"));
        assert_eq!(cfg.model, PathBuf::from("m-file"));
        assert_eq!(cfg.max_candidates, 9, "env beats the file");
        assert_eq!(cfg.workers, 4, "flags beat the file");
        assert_eq!(cfg.addr.port(), 9000);
        assert!(cfg.token.as_ref().unwrap().matches(b"s3cret"));
        assert!(!cfg.token.as_ref().unwrap().matches(b"s3creT"));
        // The token never shows in logs.
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "index = \"i\"\nmodel = \"m\"\nworkerz = 2\n").unwrap();
        let err = ServerConfig::load(Some(&file), env(&[]), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("workerz"), "{err}");
        let err = ServerConfig::load(None, env(&[]), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("--index"), "{err}");
        let err = ServerConfig::load(
            None,
            env(&[
                ("HINDSIGHT_INDEX", "i"),
                ("HINDSIGHT_MODEL", "m"),
                ("HINDSIGHT_MAX_CANDIDATES", "0"),
            ]),
            &Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_candidates must be at least 1"), "{err}");
        let err = ServerConfig::load(
            Some(&dir.path().join("missing.toml")),
            env(&[]),
            &Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("does not exist"), "{err}");
        let err = ServerConfig::load(
            None,
            env(&[
                ("HINDSIGHT_INDEX", "i"),
                ("HINDSIGHT_MODEL", "m"),
                ("HINDSIGHT_WORKERS", "many"),
            ]),
            &Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("workers"), "{err}");
    }

    #[test]
    fn errors_name_the_key_and_what_is_allowed_without_source_locations() {
        let base = [("HINDSIGHT_INDEX", "i"), ("HINDSIGHT_MODEL", "m")];
        let with = |extra: (&str, &str)| {
            let mut pairs = base.to_vec();
            pairs.push(extra);
            ServerConfig::load(None, env(&pairs), &Flags::default())
                .unwrap_err()
                .to_string()
        };
        let err = with(("HINDSIGHT_MAX_CANDIDATES", "-5"));
        assert!(err.contains("HINDSIGHT_MAX_CANDIDATES"), "{err}");
        assert!(
            err.contains("-5") && err.contains("whole number, 0 or more"),
            "{err}"
        );
        assert!(!err.contains(".rs") && !err.contains("src/"), "{err}");
        let err = with(("HINDSIGHT_AUTH_READS", "maybe"));
        assert!(
            err.contains("HINDSIGHT_AUTH_READS") && err.contains("true or false"),
            "{err}"
        );
        // A flag names the flag.
        let err = ServerConfig::load(None, env(&base), &serde_json::json!({"workers": -1}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--workers"), "{err}");
        assert!(!err.contains(".rs"), "{err}");
        // A file names the file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "index = \"i\"\nmodel = \"m\"\nworkers = \"two\"\n").unwrap();
        let err = ServerConfig::load(Some(&file), env(&[]), &Flags::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("workers in ") && err.contains("c.toml"),
            "{err}"
        );
    }

    #[test]
    fn every_field_is_a_key_and_text_keys_keep_numeric_looking_values() {
        let keys = keys();
        let defaults = dict_of(&ServerConfig::default()).unwrap();
        for k in defaults.keys() {
            assert!(keys.contains(&k.as_str()), "{k} is not a key");
        }
        for k in [
            "addr",
            "token",
            "max_connections",
            "idle_timeout_ms",
            "header_read_timeout_ms",
            "body_read_timeout_ms",
        ] {
            assert!(keys.contains(&k), "{k} missing");
        }
        let help = settings_help();
        for k in keys {
            assert!(
                help.contains(&format!("  {k}")),
                "{k} missing from the help"
            );
        }
        assert!(help.contains("max_candidates = 1000"), "{help}");
        // A token or index that looks like a number stays text; numbers
        // and booleans parse.
        let cfg = ServerConfig::load(
            None,
            env(&[
                ("HINDSIGHT_INDEX", "123"),
                ("HINDSIGHT_MODEL", "m"),
                ("HINDSIGHT_TOKEN", "12345"),
                ("HINDSIGHT_MAX_IN_FLIGHT", "64"),
                ("HINDSIGHT_AUTH_READS", "true"),
                ("HINDSIGHT_IDLE_TIMEOUT_MS", "1500"),
            ]),
            &Flags::default(),
        )
        .unwrap();
        assert_eq!(cfg.index, PathBuf::from("123"));
        assert!(cfg.token.as_ref().unwrap().matches(b"12345"));
        assert_eq!((cfg.max_in_flight, cfg.auth_reads), (Some(64), true));
        assert_eq!(cfg.idle_timeout_ms, 1500);
    }
}
