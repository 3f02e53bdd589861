//! `hindsight embeddings attach | info`: item embeddings beside an index,
//! for the strategies that rank by them (sim-soft, eta, sdim).

use std::path::PathBuf;
#[cfg(feature = "model")]
use std::time::Instant;

use anyhow::Result;
use hindsight_embeddings::{store_path, EmbeddingStore};
use hindsight_index::BehaviorIndex;
use serde::Serialize;

/// Item embeddings for retrieval (sim-soft, eta, sdim).
///
/// `attach` takes every indexed item's vector from a trained checkpoint
/// (DIN's item representation: [item embedding, mean category embedding,
/// mean tag embedding]; an item the checkpoint never saw gets its OOV item
/// row with its features' embeddings), computes their ETA SimHash codes
/// and SDIM signatures from random hyperplanes of a recorded seed, and
/// writes INDEX/embeddings/store.hse (checksummed; records the checkpoint's
/// weights sha256 and the index's identity). Attaching again replaces the
/// file atomically; a running server picks it up on POST /v1/admin/reload.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(clap::Subcommand)]
pub enum Command {
    /// Compute the item vectors and codes of an index from a checkpoint.
    #[cfg(feature = "model")]
    Attach(AttachArgs),
    /// Attach item embeddings (not in this build: needs the `model` feature).
    #[cfg(not(feature = "model"))]
    Attach(super::NoModel),
    /// Describe the embeddings attached to an index.
    Info(InfoArgs),
}

/// `hindsight embeddings attach`.
#[cfg(feature = "model")]
#[derive(clap::Args)]
pub struct AttachArgs {
    /// Index folder (opened read-only: works beside a running server).
    #[arg(long)]
    pub index: PathBuf,
    /// Checkpoint folder (e.g. a DIN trained with `hindsight train`) on an
    /// index of the same dataset.
    #[arg(long)]
    pub model: PathBuf,
    /// Bits of the ETA SimHash code (1 to 64).
    #[arg(long, default_value_t = 64)]
    pub bits: u32,
    /// SDIM rounds (signatures); rounds x bits <= 64.
    #[arg(long, default_value_t = 4)]
    pub sdim_rounds: u32,
    /// Bits per SDIM round (1 to 16).
    #[arg(long, default_value_t = 6)]
    pub sdim_bits: u32,
    /// Seed of the random hyperplanes.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `hindsight embeddings info`.
#[derive(clap::Args)]
pub struct InfoArgs {
    /// Index folder.
    #[arg(long)]
    pub index: PathBuf,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    match a.command {
        #[cfg(feature = "model")]
        Command::Attach(a) => attach(a),
        #[cfg(not(feature = "model"))]
        Command::Attach(_) => {
            eprintln!("{}", super::no_model_message("embeddings attach"));
            std::process::exit(2)
        }
        Command::Info(a) => info(a),
    }
}

#[derive(Serialize)]
struct Summary {
    path: String,
    items: usize,
    dim: usize,
    file_bytes: u64,
    /// Items the checkpoint's vocabulary holds (the others get the OOV item
    /// row with their features' embeddings).
    #[serde(skip_serializing_if = "Option::is_none")]
    items_in_checkpoint: Option<usize>,
    meta: hindsight_embeddings::StoreMeta,
    /// Bytes of the per-segment doc -> code arrays a process that loads
    /// the store holds for the index's current behaviors (20 per behavior).
    doc_arrays_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
}

fn print_summary(s: &Summary, json: bool, verb: &str) -> Result<()> {
    if json {
        return super::print_json(s);
    }
    let m = &s.meta;
    println!(
        "{verb} {} item vectors of dimension {} ({} bytes) at {}",
        s.items, s.dim, s.file_bytes, s.path
    );
    if let Some(k) = s.items_in_checkpoint {
        println!(
            "  {k} items known to the checkpoint, {} from their features",
            s.items - k
        );
    }
    println!(
        "  from {} checkpoint {} (weights sha256 {})",
        m.model.kind, m.model.path, m.model.weights_sha256
    );
    println!(
        "  ETA {}-bit SimHash, SDIM {} rounds x {} bits, seed {}",
        m.hash.eta_bits, m.hash.sdim_rounds, m.hash.sdim_bits, m.hash.seed
    );
    println!("  index {}", m.index);
    println!(
        "  doc -> code arrays when loaded: {} bytes",
        s.doc_arrays_bytes
    );
    if let Some(t) = s.seconds {
        println!("  in {t:.1} s");
    }
    Ok(())
}

fn info(a: InfoArgs) -> Result<()> {
    let index = BehaviorIndex::open_read_only(&a.index)?;
    let store = EmbeddingStore::open_for(&index)?;
    let summary = Summary {
        path: store_path(index.path()).display().to_string(),
        items: store.len(),
        dim: store.dim(),
        file_bytes: store.file_bytes(),
        items_in_checkpoint: None,
        meta: store.meta().clone(),
        doc_arrays_bytes: 20 * index.snapshot().num_behaviors(),
        seconds: None,
    };
    print_summary(&summary, a.json, "holds")
}

/// The verified weights sha256 of a checkpoint (loading checks it).
#[cfg(feature = "model")]
pub fn checkpoint_sha(dir: &std::path::Path) -> Result<String> {
    let model = hindsight_model::TrainedModel::load(dir, hindsight_model::Device::Cpu)?;
    model.weights_sha256().map(str::to_owned).ok_or_else(|| {
        anyhow::anyhow!(
            "{} records no weights checksum (saved by an older build); load and save it again, or retrain it",
            dir.display()
        )
    })
}

#[cfg(feature = "model")]
fn attach(a: AttachArgs) -> Result<()> {
    use std::collections::BTreeMap;

    use anyhow::Context;
    use hindsight_core::{ItemFeatures, Target};
    use hindsight_embeddings::{FeatureTable, FeatureTables, HashSettings, IndexRef, ModelRef};
    use hindsight_engine::RetrievalSettings;
    use hindsight_model::{Device, TrainedModel};

    let t0 = Instant::now();
    let hash = HashSettings {
        eta_bits: a.bits,
        sdim_rounds: a.sdim_rounds,
        sdim_bits: a.sdim_bits,
        seed: a.seed,
    };
    hash.validate()?;
    let index = BehaviorIndex::open_read_only(&a.index)?;
    let model = TrainedModel::load(&a.model, Device::Cpu)
        .with_context(|| format!("loading the checkpoint {}", a.model.display()))?;
    RetrievalSettings::of(&model)?.check_index(&index)?;
    let sha = model.weights_sha256().map(str::to_owned).ok_or_else(|| {
        anyhow::anyhow!(
            "{} records no weights checksum (saved by an older build); retrain it so that the embeddings can name it",
            a.model.display()
        )
    })?;
    let snap = index.snapshot();
    let mut items: BTreeMap<u64, ItemFeatures> = BTreeMap::new();
    snap.for_each_item(|item, f| {
        items.entry(item).or_insert_with(|| f.clone());
    });
    if items.is_empty() {
        anyhow::bail!(
            "{} holds no behaviors: ingest first, then attach",
            a.index.display()
        );
    }
    let targets: Vec<Target> = items
        .into_iter()
        .map(|(item_id, features)| Target { item_id, features })
        .collect();
    let vectors = model.item_vectors(&targets)?;
    let dim = model.item_vector_dim();
    let known = targets
        .iter()
        .filter(|t| model.vocab().item(t.item_id) > hindsight_model::OOV)
        .count();
    let t = model.item_feature_tables()?;
    let tables = FeatureTables {
        item_oov: t.item_oov,
        categories: FeatureTable {
            ids: t.category_ids,
            rows: t.category_rows,
            oov: t.category_oov,
        },
        tags: t
            .tags
            .map(|(ids, rows, oov)| FeatureTable { ids, rows, oov }),
        max_categories: t.max_categories,
        max_tags: t.max_tags,
    };
    let kind = model.config().kind;
    let store = EmbeddingStore::build(
        targets.iter().map(|t| t.item_id).collect(),
        vectors,
        dim,
        tables,
        hash,
        ModelRef {
            path: a.model.display().to_string(),
            kind: kind.to_string(),
            weights_sha256: sha,
            representation: "[item embedding, mean category embedding, mean tag embedding] of the checkpoint (the item representation DIN attends with)".into(),
        },
        IndexRef::of(&index),
    )?;
    let path = store_path(index.path());
    store.save(&path)?;
    let summary = Summary {
        path: path.display().to_string(),
        items: store.len(),
        dim,
        file_bytes: store.file_bytes(),
        items_in_checkpoint: Some(known),
        meta: store.meta().clone(),
        doc_arrays_bytes: 20 * snap.num_behaviors(),
        seconds: Some(t0.elapsed().as_secs_f64()),
    };
    print_summary(&summary, a.json, "attached")
}
