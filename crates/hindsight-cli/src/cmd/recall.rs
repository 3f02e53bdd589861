//! `hindsight ann build`, `hindsight recommend` and `hindsight eval-recall`:
//! recall with a SASRec model (train it with `hindsight train --model
//! sasrec`), see docs/recall.md.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use hindsight_core::AsOf;
use hindsight_engine::{
    catalog_of, catalog_vectors, RankWith, RecallModelScorer, RecommendInput, Recommender, Scorer,
    DEFAULT_RANK_CANDIDATES,
};
use hindsight_index::BehaviorIndex;
use hindsight_model::{Device, TrainedRecall};
use hindsight_recall::ann::{AnnIndex, AnnParams};
use hindsight_recall::{
    evaluate_parallel, CatalogScorer, EvalOptions, ItemCf, ItemCfParams, Popularity, RecallReport,
    RecallSplit, Repeat, Target as EvalTarget,
};

use super::train::set_torch_threads;

/// Build the HNSW index over a recall model's item vectors.
///
/// Every item of the index (the catalog) is embedded by the model's item
/// tower (an item the model never saw gets the vector of its features) and
/// inserted; the ANN is saved with its parameters and the SHA-256 of the
/// checkpoint it came from, so a recommender refuses it beside another
/// model.
#[derive(clap::Args)]
pub struct AnnBuildArgs {
    /// The recall model folder (`hindsight train --model sasrec`).
    #[arg(long)]
    pub model: PathBuf,
    /// The index whose items make the catalog (every item of it is
    /// embedded and inserted).
    #[arg(long)]
    pub index: PathBuf,
    /// Output folder (default: MODEL/ann, where `recommend` looks).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub params: AnnParamArgs,
    /// auto (CUDA when present), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The HNSW parameters.
#[derive(clap::Args)]
pub struct AnnParamArgs {
    /// Links per node (HNSW's M).
    #[arg(long, default_value_t = AnnParams::default().m)]
    pub m: usize,
    /// Candidate list size while building.
    #[arg(long, default_value_t = AnnParams::default().ef_construction)]
    pub ef_construction: usize,
    /// Candidate list size while searching (at least k).
    #[arg(long, default_value_t = AnnParams::default().ef_search)]
    pub ef_search: usize,
}

/// `ann` subcommands.
#[derive(clap::Subcommand)]
pub enum AnnCommand {
    /// Build the ANN index of a recall model.
    Build(AnnBuildArgs),
}

/// Runs `hindsight ann ...`.
pub fn run_ann(command: AnnCommand) -> Result<()> {
    match command {
        AnnCommand::Build(a) => run_ann_build(a),
    }
}

fn run_ann_build(a: AnnBuildArgs) -> Result<()> {
    set_torch_threads(None);
    let model = TrainedRecall::load(&a.model, a.device.resolve()?)?;
    let index = BehaviorIndex::open_read_only(&a.index)?;
    let catalog = catalog_of(&index.snapshot());
    let t0 = Instant::now();
    let vectors = catalog_vectors(&model, &catalog)?;
    let embed_secs = t0.elapsed().as_secs_f64();
    let ids: Vec<u64> = catalog.iter().map(|(i, _)| *i).collect();
    let params = AnnParams {
        m: a.params.m,
        ef_construction: a.params.ef_construction,
        ef_search: a.params.ef_search,
    };
    let t1 = Instant::now();
    let ann = AnnIndex::build(&ids, &vectors, model.dim(), params, model.weights_sha256())?;
    let build_secs = t1.elapsed().as_secs_f64();
    let out = a.out.unwrap_or_else(|| a.model.join("ann"));
    ann.save(&out)?;
    if a.json {
        return super::print_json(&serde_json::json!({
            "out": out, "items": ids.len(), "dim": model.dim(),
            "embed_secs": embed_secs, "build_secs": build_secs,
            "m": params.m, "ef_construction": params.ef_construction, "ef_search": params.ef_search,
        }));
    }
    println!(
        "ANN of {} items (dim {}) written to {}: embedding {embed_secs:.1} s, HNSW build {build_secs:.1} s (M {}, ef_construction {}, ef_search {})",
        ids.len(),
        model.dim(),
        out.display(),
        params.m,
        params.ef_construction,
        params.ef_search
    );
    Ok(())
}

/// Recommend items to a user: recall with a SASRec model and its ANN
/// index, optionally re-ranked by a CTR model.
///
/// The user vector is computed from the user's most recent behaviors
/// before the as-of point; items the user already interacted with before
/// it are left out unless --include-seen. A user with no eligible
/// behavior gets the index's most popular items (flagged cold start).
/// Without an ANN index (`hindsight ann build`) the catalog is searched
/// exactly.
#[derive(clap::Args)]
pub struct RecommendArgs {
    /// Index folder.
    #[arg(long)]
    pub index: PathBuf,
    /// The recall model folder (`hindsight train --model sasrec`).
    #[arg(long)]
    pub model: PathBuf,
    /// The ANN folder (default: MODEL/ann when it exists).
    #[arg(long)]
    pub ann: Option<PathBuf>,
    /// The user.
    #[arg(long)]
    pub user: u64,
    /// How many items.
    #[arg(short = 'k', long = "k", default_value_t = 20, value_parser = super::at_least_one)]
    pub k: usize,
    /// Keep items the user already interacted with.
    #[arg(long)]
    pub include_seen: bool,
    /// Only behaviors with a smaller sequence number are used.
    #[arg(long)]
    pub as_of_seq: Option<u32>,
    /// Only behaviors before this unix timestamp are used.
    #[arg(long)]
    pub as_of_ts: Option<i64>,
    /// Re-rank the recalled candidates with this CTR model (trained with
    /// `hindsight train --model din ...` on the same index).
    #[arg(long)]
    pub rank_with: Option<PathBuf>,
    /// How many recalled candidates the CTR model ranks.
    #[arg(long, default_value_t = DEFAULT_RANK_CANDIDATES)]
    pub candidates: usize,
    /// auto (CUDA when present), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hindsight recommend`.
pub fn run_recommend(a: RecommendArgs) -> Result<()> {
    set_torch_threads(None);
    let index = BehaviorIndex::open_read_only(&a.index)?;
    let recommender = Recommender::load(&a.model, a.ann.as_deref(), a.device, &index, 1)?;
    let scorer = match &a.rank_with {
        Some(p) => Some(Scorer::load(p, a.device, &index, 1)?),
        None => None,
    };
    let input = RecommendInput {
        user_id: a.user,
        k: a.k,
        as_of: AsOf {
            seq: a.as_of_seq,
            timestamp: a.as_of_ts,
        },
        exclude_seen: !a.include_seen,
        rank: scorer.as_ref().map(|scorer| RankWith {
            scorer,
            candidates: a.candidates.max(a.k),
        }),
        timestamp: a.as_of_ts.unwrap_or_else(hindsight_core::host::now_unix),
    };
    let snapshot = index.snapshot();
    let out = recommender.recommend(&snapshot, &input)?;
    if a.json {
        let items: Vec<_> = out
            .items
            .iter()
            .map(|r| {
                serde_json::json!({
                    "item_id": r.item_id, "recall_score": r.recall_score, "score": r.rank_score,
                })
            })
            .collect();
        return super::print_json(&serde_json::json!({
            "user_id": a.user, "items": items, "cold_start": out.cold_start,
            "history_len": out.history_len, "used_behaviors": out.used_behaviors,
            "search": if recommender.ann_path().is_some() { "ann" } else { "exact" },
            "recall_ms": out.recall_secs * 1e3, "rank_ms": out.rank_secs * 1e3,
        }));
    }
    if out.cold_start {
        println!(
            "user {} has no behavior before the as-of point: the {} most popular items (cold start)",
            a.user,
            out.items.len()
        );
    } else {
        println!(
            "user {}: {} behaviors, the user vector from the last {}; {} search over {} items",
            a.user,
            out.history_len,
            out.used_behaviors,
            if recommender.ann_path().is_some() {
                "ANN"
            } else {
                "exact"
            },
            recommender.catalog_len()
        );
    }
    println!(
        "{:>4}  {:>12}  {:>12}  {:>10}",
        "rank", "item", "recall", "ctr"
    );
    for (i, r) in out.items.iter().enumerate() {
        let ctr = r.rank_score.map_or("-".to_owned(), |s| format!("{s:.4}"));
        println!(
            "{:>4}  {:>12}  {:>12.4}  {:>10}",
            i + 1,
            r.item_id,
            r.recall_score,
            ctr
        );
    }
    println!(
        "recall {:.2} ms, rank {:.2} ms",
        out.recall_secs * 1e3,
        out.rank_secs * 1e3
    );
    Ok(())
}

/// Evaluate recall with full ranking over the whole catalog (no sampled
/// metrics): HR@K, NDCG@K and Recall@K of each user's held-out behavior
/// under the leave-last-out split (docs/recall.md), for recall models and
/// the popularity, item-to-item CF and repeat baselines computed the same
/// way.
///
/// Several --model folders (e.g. one per training seed) are evaluated one
/// by one, then summarised as mean ± std.
#[derive(clap::Args)]
pub struct EvalRecallArgs {
    /// Index folder.
    #[arg(long)]
    pub index: PathBuf,
    /// Recall model folders (repeat the flag, or separate by commas).
    #[arg(long, value_delimiter = ',')]
    pub model: Vec<PathBuf>,
    /// Baselines to evaluate beside the models: popularity, item-cf,
    /// repeat (comma-separated), or none.
    #[arg(
        long,
        default_value = "popularity,item-cf,repeat",
        value_delimiter = ','
    )]
    pub baselines: Vec<String>,
    /// Which held-out behavior: test (the last) or valid (the one before).
    #[arg(long, default_value = "test")]
    pub target: EvalTarget,
    /// Leave out items the user interacted with before the target when
    /// ranking (RecBole's full-sort masking). Default: every catalog item
    /// competes, so a revisited item can be the hit.
    #[arg(long)]
    pub exclude_seen: bool,
    /// Users need at least this many behaviors to be split.
    #[arg(long, default_value_t = RecallSplit::MIN_BEHAVIORS)]
    pub min_behaviors: usize,
    /// Evaluate at most this many users (the first by id).
    #[arg(long)]
    pub max_users: Option<usize>,
    /// auto (CUDA when present), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: Device,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs `hindsight eval-recall`.
pub fn run_eval_recall(a: EvalRecallArgs) -> Result<()> {
    set_torch_threads(None);
    let index = BehaviorIndex::open_read_only(&a.index)?;
    let split = RecallSplit::leave_last_out(&index.snapshot(), a.min_behaviors)?;
    let options = EvalOptions {
        exclude_seen: a.exclude_seen,
        max_users: a.max_users,
        ..EvalOptions::default()
    };
    let mut scorers: Vec<Box<dyn CatalogScorer + Sync>> = Vec::new();
    for b in &a.baselines {
        match b.trim() {
            "none" | "" => {}
            "popularity" => scorers.push(Box::new(Popularity::new(&split))),
            "item-cf" | "item_cf" | "itemcf" => {
                scorers.push(Box::new(ItemCf::new(&split, ItemCfParams::default())?))
            }
            "repeat" => scorers.push(Box::new(Repeat::new(&split))),
            other => {
                anyhow::bail!("unknown baseline {other:?}; use popularity, item-cf, repeat or none")
            }
        }
    }
    for m in &a.model {
        let model = TrainedRecall::load(m, a.device.resolve()?)
            .with_context(|| format!("loading the recall model {}", m.display()))?;
        let name = m.display().to_string();
        scorers.push(Box::new(RecallModelScorer::new(
            model,
            &split.catalog,
            name,
        )?));
    }
    if scorers.is_empty() {
        anyhow::bail!("nothing to evaluate: give --model or at least one baseline");
    }
    let mut reports: Vec<RecallReport> = Vec::new();
    for s in &scorers {
        eprintln!("evaluating {} ...", s.name());
        reports.push(evaluate_parallel(
            &split,
            a.target,
            s.as_ref(),
            &options,
            |_| {},
        )?);
    }
    let models: Vec<&RecallReport> = reports[reports.len() - a.model.len()..].iter().collect();
    let summary = (models.len() > 1).then(|| summarize(&models));
    if a.json {
        return super::print_json(&serde_json::json!({
            "index": a.index, "target": a.target, "exclude_seen": a.exclude_seen,
            "users": split.users.len(), "catalog": split.catalog.len(),
            "reports": reports, "models_mean_std": summary,
        }));
    }
    println!(
        "{} users (leave-last-out, target {}), catalog {} items, seen items {}",
        split.users.len(),
        a.target.as_str(),
        split.catalog.len(),
        if a.exclude_seen { "excluded" } else { "ranked" }
    );
    println!(
        "{:<40} {:>7} {:>7} {:>8} {:>8} {:>10} {:>8}",
        "scorer", "HR@10", "HR@50", "NDCG@10", "NDCG@50", "Recall@100", "users/s"
    );
    for r in &reports {
        let [hr10, hr50, ndcg10, ndcg50, recall100] = headline(r);
        println!(
            "{:<40} {hr10:>7.4} {hr50:>7.4} {ndcg10:>8.4} {ndcg50:>8.4} {recall100:>10.4} {:>8.0}",
            r.scorer, r.users_per_second
        );
    }
    if let Some(s) = &summary {
        println!("models, mean ± std over {} runs:", models.len());
        for (name, mean, std) in s {
            println!("  {name:<10} {mean:.4} ± {std:.4}");
        }
    }
    Ok(())
}

/// The headline metrics: HR@10, HR@50, NDCG@10, NDCG@50, Recall@100
/// (NaN where a cut-off was not evaluated).
fn headline(r: &RecallReport) -> [f64; 5] {
    let at = |k: usize| r.at(k);
    [
        at(10).map_or(f64::NAN, |m| m.hr),
        at(50).map_or(f64::NAN, |m| m.hr),
        at(10).map_or(f64::NAN, |m| m.ndcg),
        at(50).map_or(f64::NAN, |m| m.ndcg),
        at(100).map_or(f64::NAN, |m| m.recall),
    ]
}

/// Mean and sample standard deviation of each headline metric over
/// several runs.
fn summarize(reports: &[&RecallReport]) -> Vec<(&'static str, f64, f64)> {
    const NAMES: [&str; 5] = ["HR@10", "HR@50", "NDCG@10", "NDCG@50", "Recall@100"];
    let values: Vec<[f64; 5]> = reports.iter().map(|r| headline(r)).collect();
    NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let xs: Vec<f64> = values.iter().map(|v| v[i]).collect();
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
            (*name, mean, var.sqrt())
        })
        .collect()
}
