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
    /// Per-request deadline, milliseconds; past it the request gets 503
    /// `deadline_exceeded`.
    pub request_timeout_ms: u64,
    /// Seconds given in Retry-After when shedding load.
    pub retry_after_secs: u64,
    /// On shutdown, how long in-flight requests may take to finish.
    pub shutdown_grace_secs: u64,
    /// Bearer token required by the write and admin endpoints (and by
    /// reads when `auth_reads`). None: no authentication.
    pub token: Option<Secret>,
    /// Also require the token for score and read endpoints.
    pub auth_reads: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            index: PathBuf::new(),
            model: PathBuf::new(),
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
            retry_after_secs: 1,
            shutdown_grace_secs: 30,
            token: None,
            auth_reads: false,
        }
    }
}

/// The keys `HINDSIGHT_*` environment variables may set (others, such as
/// `HINDSIGHT_PYTHON` of the build scripts, are ignored).
pub const ENV_KEYS: &[&str] = &[
    "addr",
    "index",
    "model",
    "device",
    "torch_threads",
    "workers",
    "max_in_flight",
    "max_queued_appends",
    "max_candidates",
    "max_append_behaviors",
    "max_list_limit",
    "max_body_bytes",
    "request_timeout_ms",
    "retry_after_secs",
    "shutdown_grace_secs",
    "token",
    "auth_reads",
];

const STRING_KEYS: &[&str] = &["addr", "index", "model", "device", "token"];

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
        let mut fig = Figment::from(Serialized::defaults(ServerConfig::default()));
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
        // provider) so that tests need not touch the process environment.
        // Values parse as numbers or booleans where they can.
        let mut env_map = figment::value::Dict::new();
        for (k, v) in env {
            let Some(key) = k.strip_prefix("HINDSIGHT_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if !ENV_KEYS.contains(&key.as_str()) {
                continue;
            }
            // Addresses, paths and the token stay strings even when they
            // look like numbers.
            let value: figment::value::Value = if STRING_KEYS.contains(&key.as_str()) {
                v.into()
            } else {
                match v.parse::<figment::value::Value>() {
                    Ok(value) => value,
                    Err(never) => match never {},
                }
            };
            env_map.insert(key, value);
        }
        fig = fig.merge(Serialized::defaults(env_map));
        fig = fig.merge(Serialized::defaults(overrides));
        let cfg: ServerConfig = fig
            .extract()
            .map_err(|e| ServerError::Config(e.to_string()))?;
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
        if self.model.as_os_str().is_empty() {
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
            ("max_append_behaviors", self.max_append_behaviors as u64),
            ("max_list_limit", self.max_list_limit as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("request_timeout_ms", self.request_timeout_ms),
        ];
        for (key, v) in positive {
            if v == 0 {
                return bad(format!("{key} must be at least 1"));
            }
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
}
