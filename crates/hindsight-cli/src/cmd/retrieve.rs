//! `hindsight retrieve`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use hindsight_core::{AsOf, BehaviorFilter};
use hindsight_engine::{resolve_target, FeatureOverrides, IdOrName, TargetRequest};
use hindsight_index::BehaviorIndex;
use hindsight_logs::{Vocab, Vocabularies};
use hindsight_retrieval::{Query, Retriever};
use serde::Serialize;

/// Retrieve the behaviors of a user most relevant to a target item.
///
/// Only behaviors strictly before the as-of point are eligible. Without
/// --category/--tag the target's features are looked up in the index (from
/// any behavior on the item); an item the index has never seen is
/// retrieved for with its id alone.
#[derive(clap::Args)]
pub struct Args {
    /// Index folder.
    #[arg(long)]
    pub index: PathBuf,
    /// The user.
    #[arg(long)]
    pub user: u64,
    /// The target item.
    #[arg(long)]
    pub item: u64,
    /// Target category id or name (repeatable); default: looked up.
    #[arg(long = "category")]
    pub categories: Vec<String>,
    /// Target tag name or id (repeatable); default: looked up.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub retrieval: super::RetrievalArgs,
    /// Only behaviors with a smaller sequence number.
    #[arg(long)]
    pub as_of_seq: Option<u32>,
    /// Only behaviors with a smaller timestamp (Unix seconds).
    #[arg(long)]
    pub as_of_ts: Option<i64>,
    /// Only these behavior types (repeatable, by name, e.g. buy).
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Only behaviors at or after this timestamp.
    #[arg(long)]
    pub since: Option<i64>,
    /// Only behaviors before this timestamp.
    #[arg(long)]
    pub until: Option<i64>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Output<'a> {
    user_id: u64,
    target: TargetOut,
    strategy: &'a str,
    n: usize,
    as_of: AsOf,
    history_len: u64,
    elapsed_us: f64,
    behaviors: Vec<BehaviorOut>,
}

#[derive(Serialize)]
struct TargetOut {
    item_id: u64,
    categories: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    category_names: Vec<String>,
    tags: Vec<String>,
}

#[derive(Serialize)]
struct BehaviorOut {
    seq: u32,
    item_id: u64,
    categories: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    category_names: Vec<String>,
    tags: Vec<String>,
    behavior_type: String,
    timestamp: i64,
    score: f32,
}

fn names(vocab: &Vocab, ids: &[u64]) -> Vec<String> {
    ids.iter()
        .map(|&i| vocab.name(i).map_or_else(|| i.to_string(), str::to_owned))
        .collect()
}

pub fn run(a: Args) -> Result<()> {
    let (kind, n) = (a.retrieval.strategy, a.retrieval.n);
    let index = BehaviorIndex::open_read_only(&a.index)?;
    let snap = index.snapshot();
    let vocabs: &Vocabularies = &snap.state().vocabs;
    // The same resolution as the server's score route (names trimmed,
    // then as given, then lowercased; numbers where the index has no names).
    let names_of = |v: &[String]| v.iter().cloned().map(IdOrName::Name).collect();
    let overrides = (!a.categories.is_empty() || !a.tags.is_empty()).then(|| FeatureOverrides {
        categories: names_of(&a.categories),
        tags: names_of(&a.tags),
    });
    let target = resolve_target(
        &snap,
        &TargetRequest {
            item_id: a.item,
            overrides,
        },
    )?;
    let filter = BehaviorFilter {
        behavior_types: a
            .types
            .iter()
            .map(|t| {
                vocabs
                    .behavior_types
                    .get(t)
                    .map(|i| i as u8)
                    .with_context(|| {
                        format!(
                            "unknown behavior type {t:?}; known: {}",
                            vocabs.behavior_types.names().join(", ")
                        )
                    })
            })
            .collect::<Result<_>>()?,
        since: a.since,
        until: a.until,
    };
    let as_of = AsOf {
        seq: a.as_of_seq,
        timestamp: a.as_of_ts,
    };
    // The embedding strategies load the index's attached item embeddings.
    let retriever = Retriever::for_index(kind, &index)?;
    let query = Query::new(&target, n).as_of(as_of).filter(filter);
    let t0 = Instant::now();
    let hits = retriever.retrieve(&snap, a.user, &query)?;
    let elapsed_us = t0.elapsed().as_secs_f64() * 1e6;
    let history_len = snap.history(a.user).len();

    let out = Output {
        user_id: a.user,
        target: TargetOut {
            item_id: target.item_id,
            category_names: if vocabs.categories.is_empty() {
                vec![]
            } else {
                names(&vocabs.categories, &target.features.categories)
            },
            categories: target.features.categories.clone(),
            tags: names(&vocabs.tags, &target.features.tags),
        },
        strategy: kind.as_str(),
        n,
        as_of,
        history_len,
        elapsed_us,
        behaviors: hits
            .iter()
            .map(|h| {
                let b = &h.behavior;
                BehaviorOut {
                    seq: b.seq,
                    item_id: b.item_id,
                    category_names: if vocabs.categories.is_empty() {
                        vec![]
                    } else {
                        names(&vocabs.categories, &b.features.categories)
                    },
                    categories: b.features.categories.clone(),
                    tags: names(&vocabs.tags, &b.features.tags),
                    behavior_type: vocabs
                        .behavior_types
                        .name(b.behavior_type as u64)
                        .unwrap_or("?")
                        .to_owned(),
                    timestamp: b.timestamp,
                    score: h.score,
                }
            })
            .collect(),
    };
    if a.json {
        return super::print_json(&out);
    }
    let cats = if out.target.category_names.is_empty() {
        format!("{:?}", out.target.categories)
    } else {
        out.target.category_names.join("|")
    };
    println!(
        "user {} (history {}), target item {} categories {}: {} behaviors by {} in {:.0} us",
        a.user,
        history_len,
        a.item,
        cats,
        out.behaviors.len(),
        kind,
        elapsed_us
    );
    println!(
        "{:>6} {:>10} {:>24} {:>6} {:>11} {:>8}",
        "seq", "item", "categories", "type", "timestamp", "score"
    );
    for b in &out.behaviors {
        let c = if b.category_names.is_empty() {
            b.categories
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        } else {
            b.category_names.join("|")
        };
        println!(
            "{:>6} {:>10} {:>24} {:>6} {:>11} {:>8.3}",
            b.seq,
            b.item_id,
            truncate(&c, 24),
            b.behavior_type,
            b.timestamp,
            b.score
        );
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('~')).collect()
    }
}
