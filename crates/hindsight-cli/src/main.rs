//! `hindsight`: build lifelong behavior indexes from logs, retrieve the
//! behaviors that matter for a target item, and (with the model jobs)
//! train and evaluate CTR models on them.
//!
//! A thin binary: every subcommand takes typed arguments (strategy, model,
//! device, stop metric, ... parsed by clap through the libraries' `FromStr`,
//! so an invalid value is a usage error before any work), calls the
//! libraries, and prints; errors are printed as one line saying what to do
//! (exit status 1; usage errors 2).
//!
//! The model commands (train, eval, report, serve) need libtorch and are
//! compiled only with the `model` feature (default). Without it the binary
//! does not link libtorch, and a model command prints what is missing and
//! how to build it, with exit status 2.

use std::process::ExitCode;

/// mimalloc rather than the system allocator: a retrieval builds one small
/// vector per behavior it returns (its categories); in `embedding_table`,
/// with the behavior rows warm, `recent`'s p50 went from 2.4-4.3 us under
/// glibc's allocator to 1.3-2.4 us (docs/benchmarks.md, session 4).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

mod cmd;

/// Lifelong user-behavior retrieval for CTR prediction.
#[derive(Parser)]
#[command(name = "hindsight", version, about, long_about = None, propagate_version = true)]
#[cfg_attr(
    not(feature = "model"),
    command(
        after_help = "This build has no model commands (train, eval, report, serve: built without \
                      the `model` feature); `cargo build --release -p hindsight-cli --features model` \
                      builds them."
    )
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "HINDSIGHT_LOG")]
    log: String,
}

#[derive(Subcommand)]
enum Command {
    /// Build or extend an index from a behavior log (CSV, TSV, Parquet).
    Ingest(cmd::ingest::Args),
    /// Write, check and describe dataset mappings (docs/mapping.md).
    Mapping(cmd::mapping::Args),
    /// Retrieve a user's most relevant behaviors for a target item.
    Retrieve(cmd::retrieve::Args),
    /// Inspect an index.
    Index {
        #[command(subcommand)]
        command: IndexCommand,
    },
    /// Export evaluation-protocol samples with retrieved histories (CSV for peer libraries).
    ExportSamples(cmd::export::Args),
    /// Export the recall protocol's leave-last-out split (RecBole benchmark files).
    ExportRecall(cmd::export_recall::Args),
    /// Item embeddings for retrieval by learned similarity (sim-soft, eta, sdim).
    Embeddings(cmd::embeddings::Args),
    /// Train a CTR model (sum_pool, din, dien, atrank, bst) on retrieved histories, or a recall model (sasrec).
    #[cfg(feature = "model")]
    Train(cmd::train::TrainArgs),
    /// Train a CTR model (not in this build: needs the `model` feature).
    #[cfg(not(feature = "model"))]
    Train(cmd::NoModel),
    /// Evaluate a trained model on the test split (AUC, gAUC, logloss).
    #[cfg(feature = "model")]
    Eval(cmd::train::EvalArgs),
    /// Evaluate a trained model (not in this build: needs the `model` feature).
    #[cfg(not(feature = "model"))]
    Eval(cmd::NoModel),
    /// Run the whole strategy x model grid and write the evaluation report.
    #[cfg(feature = "model")]
    Report(cmd::report::Args),
    /// Run the evaluation grid (not in this build: needs the `model` feature).
    #[cfg(not(feature = "model"))]
    Report(cmd::NoModel),
    /// Serve the HTTP scoring API (score, append behaviors, hot reload).
    ///
    /// Routes (see GET /openapi.json and docs/server.md): POST /v1/score,
    /// POST /v1/behaviors (acknowledged once committed and visible), GET
    /// /v1/users/{id}/behaviors, POST /v1/admin/reload, GET /healthz,
    /// /readyz, /metrics.
    ///
    /// Settings come, in increasing precedence, from defaults, the TOML file
    /// of --config, HINDSIGHT_<KEY> environment variables (e.g.
    /// HINDSIGHT_TOKEN, HINDSIGHT_MAX_CANDIDATES) and the flags below; every
    /// key with its default is listed at the end of --help.
    ///
    /// The server holds the index's writer lock. SIGHUP reloads the model;
    /// SIGINT/SIGTERM finish in-flight requests, commit and exit.
    ///
    /// The load generator is a separate binary, `hindsight-load-test`.
    #[cfg(feature = "model")]
    #[command(after_long_help = hindsight_server::config::settings_help())]
    Serve(cmd::serve::Args),
    /// Serve the HTTP scoring API (not in this build: needs the `model` feature).
    #[cfg(not(feature = "model"))]
    Serve(cmd::NoModel),
    /// Build the ANN index over a recall model's item vectors.
    #[cfg(feature = "model")]
    Ann {
        #[command(subcommand)]
        command: cmd::recall::AnnCommand,
    },
    /// Build an ANN index (not in this build: needs the `model` feature).
    #[cfg(not(feature = "model"))]
    Ann(cmd::NoModel),
    /// Recommend items to a user: SASRec recall over the catalog, optionally re-ranked by a CTR model.
    #[cfg(feature = "model")]
    Recommend(cmd::recall::RecommendArgs),
    /// Recommend items (not in this build: needs the `model` feature).
    #[cfg(not(feature = "model"))]
    Recommend(cmd::NoModel),
    /// Evaluate recall models and baselines with full ranking (HR@K, NDCG@K, Recall@K).
    #[cfg(feature = "model")]
    EvalRecall(cmd::recall::EvalRecallArgs),
    /// Evaluate recall (not in this build: needs the `model` feature).
    #[cfg(not(feature = "model"))]
    EvalRecall(cmd::NoModel),
    /// Write a seeded synthetic Taobao-like log (for scale tests and benchmarks).
    Synth(cmd::synth::Args),
}

#[derive(Subcommand)]
enum IndexCommand {
    /// Show an index's manifest, counts, vocabularies and ingest history.
    Info(cmd::info::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match cli.command {
        Command::Ingest(a) => cmd::ingest::run(a),
        Command::Mapping(a) => cmd::mapping::run(a),
        Command::Retrieve(a) => cmd::retrieve::run(a),
        Command::Index {
            command: IndexCommand::Info(a),
        } => cmd::info::run(a),
        Command::Synth(a) => cmd::synth::run(a),
        Command::ExportSamples(a) => cmd::export::run(a),
        Command::ExportRecall(a) => cmd::export_recall::run(a),
        Command::Embeddings(a) => cmd::embeddings::run(a),
        #[cfg(feature = "model")]
        Command::Train(a) => cmd::train::run_train(a),
        #[cfg(feature = "model")]
        Command::Eval(a) => cmd::train::run_eval(a),
        #[cfg(feature = "model")]
        Command::Report(a) => cmd::report::run(a),
        #[cfg(feature = "model")]
        Command::Serve(a) => cmd::serve::run(a),
        #[cfg(feature = "model")]
        Command::Ann { command } => cmd::recall::run_ann(command),
        #[cfg(feature = "model")]
        Command::Recommend(a) => cmd::recall::run_recommend(a),
        #[cfg(feature = "model")]
        Command::EvalRecall(a) => cmd::recall::run_eval_recall(a),
        #[cfg(not(feature = "model"))]
        Command::Train(_) => return no_model("train"),
        #[cfg(not(feature = "model"))]
        Command::Eval(_) => return no_model("eval"),
        #[cfg(not(feature = "model"))]
        Command::Report(_) => return no_model("report"),
        #[cfg(not(feature = "model"))]
        Command::Serve(_) => return no_model("serve"),
        #[cfg(not(feature = "model"))]
        Command::Ann(_) => return no_model("ann"),
        #[cfg(not(feature = "model"))]
        Command::Recommend(_) => return no_model("recommend"),
        #[cfg(not(feature = "model"))]
        Command::EvalRecall(_) => return no_model("eval-recall"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A model command in a build without the `model` feature: one line on
/// stderr, exit status 2.
#[cfg(not(feature = "model"))]
fn no_model(command: &str) -> ExitCode {
    eprintln!("{}", cmd::no_model_message(command));
    ExitCode::from(2)
}
