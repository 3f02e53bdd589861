//! `hindsight serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use hindsight_server::{AppState, Secret, ServerConfig};
use serde::Serialize;

/// Arguments of `hindsight serve` (documented on the subcommand).
#[derive(clap::Args, Serialize)]
pub struct Args {
    /// A TOML config file.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// The index folder.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<PathBuf>,
    /// The trained model folder.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// A recall (SASRec) model folder: enables POST /v1/recommend.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_model: Option<PathBuf>,
    /// The recall model's ANN folder [default: RECALL_MODEL/ann when it exists].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ann: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// auto, cpu or cuda [default: auto].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<hindsight_model::Device>,
    /// libtorch CPU threads per forward pass [default: 1].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torch_threads: Option<i32>,
    /// Requests doing CPU work at once [default: the number of cores].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<usize>,
    /// Score/read requests admitted at once; beyond, 503 + Retry-After [default: 4 x workers].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// Most candidates per score request [default: 1000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_candidates: Option<usize>,
    /// Per-request deadline in milliseconds [default: 2000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u64>,
    /// Serve the index read-only: take no writer lock (an index on a
    /// read-only mount, or one another process writes), refuse appends
    /// with 409 read_only.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// A file holding the bearer token that guards writes (kept off the
    /// command line so that it does not show in `ps`).
    #[arg(long)]
    #[serde(skip)]
    pub token_file: Option<PathBuf>,
}

#[derive(Serialize)]
struct Overrides<'a> {
    #[serde(flatten)]
    args: &'a Args,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<Secret>,
}

pub fn run(a: Args) -> Result<()> {
    let token = match &a.token_file {
        None => None,
        Some(p) => Some(Secret::new(
            std::fs::read_to_string(p)
                .with_context(|| format!("reading the token file {}", p.display()))?
                .trim()
                .to_owned(),
        )),
    };
    let config = ServerConfig::load(
        a.config.as_deref(),
        std::env::vars(),
        &Overrides { args: &a, token },
    )?;
    if !config.addr.ip().is_loopback() && config.token.is_none() {
        tracing::warn!(addr = %config.addr, "listening beyond loopback without a token: anyone who reaches it can append behaviors");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("hindsight-http")
        .build()?;
    runtime.block_on(async move {
        let addr = config.addr;
        let state = tokio::task::spawn_blocking(move || AppState::open(config)).await??;
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr}; is another server running there? (--addr)")
        })?;
        let info = state.serving.load().info();
        let model = match (&info.model, &info.model_kind, &info.strategy, info.n) {
            (Some(m), Some(k), Some(s), Some(n)) => format!("{m} ({k} {s} N={n})"),
            _ => "appends and reads (no model in this build)".to_owned(),
        };
        eprintln!(
            "hindsight: serving {model} on index {} ({} behaviors) at http://{}",
            info.index,
            info.index_behaviors,
            listener.local_addr()?
        );
        hindsight_server::reload_on_sighup(state.clone());
        hindsight_server::serve(state, listener, hindsight_server::shutdown_signal()).await?;
        Ok(())
    })
}
