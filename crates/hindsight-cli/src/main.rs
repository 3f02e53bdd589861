//! `hindsight`: build lifelong behavior indexes from logs, retrieve the
//! behaviors that matter for a target item, and (with the model jobs)
//! train and evaluate CTR models on them.
//!
//! A thin binary: every subcommand validates its arguments into the
//! libraries' checked types before doing any work, and errors are printed
//! as one line saying what to do (exit status 1; usage errors 2).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;

/// Lifelong user-behavior retrieval for CTR prediction.
#[derive(Parser)]
#[command(name = "hindsight", version, about, long_about = None, propagate_version = true)]
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
    /// Train a CTR model (sum_pool, din, dien) on retrieved histories.
    Train(cmd::train::TrainArgs),
    /// Evaluate a trained model on the test split (AUC, gAUC, logloss).
    Eval(cmd::train::EvalArgs),
    /// Run the whole strategy x model grid and write the evaluation report.
    Report(cmd::report::Args),
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
    #[command(after_long_help = hindsight_server::config::settings_help())]
    Serve(cmd::serve::Args),
    /// Load a running server at a fixed rate and report latency percentiles.
    ///
    /// Open loop: requests go out on schedule and latency counts from the
    /// scheduled time. Score requests (real users, items and categories
    /// sampled from --index) run at --rate while appends run at
    /// --append-rate; afterwards every acknowledged behavior is read back,
    /// and the command fails if one is missing.
    LoadTest(cmd::loadtest::Args),
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
        Command::Train(a) => cmd::train::run_train(a),
        Command::Eval(a) => cmd::train::run_eval(a),
        Command::Report(a) => cmd::report::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::LoadTest(a) => cmd::loadtest::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
