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
/// `attach` takes every indexed item's vector from a trained checkpoint:
/// a CTR model's (DIN's item representation: [item embedding, mean
/// category embedding, mean tag embedding]) or a SASRec recall model's
/// (its item tower: item embedding + mean category embedding + mean tag
/// embedding); an item the checkpoint never saw gets its OOV item row with
/// its features' embeddings. It computes their ETA SimHash codes
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
    /// Checkpoint folder on an index of the same dataset: a CTR model
    /// (e.g. DIN from `hindsight train`) or a SASRec recall model (`hindsight
    /// train --model sasrec`).
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
    /// Bytes of the int8 copies of the docs' vectors `sim-soft` adds once
    /// it is used (`ceil(dim / 4) * 4 + 4` per behavior).
    soft_vectors_bytes: u64,
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
        "  doc -> code arrays when loaded: {} bytes (+ {} bytes of quantised vectors once sim-soft is used)",
        s.doc_arrays_bytes, s.soft_vectors_bytes
    );
    if let Some(t) = s.seconds {
        println!("  in {t:.1} s");
    }
    Ok(())
}

/// See [`Summary::soft_vectors_bytes`].
fn soft_bytes(dim: usize, behaviors: u64) -> u64 {
    (dim.div_ceil(4) as u64 * 4 + 4) * behaviors
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
        soft_vectors_bytes: soft_bytes(store.dim(), index.snapshot().num_behaviors()),
        seconds: None,
    };
    print_summary(&summary, a.json, "holds")
}

/// Whether the checkpoint in `dir` is a SASRec recall model (its
/// `config.json` says `"kind": "sasrec"`); anything else is left to the
/// CTR loader, which says what is wrong with it.
#[cfg(feature = "model")]
fn is_sasrec(dir: &std::path::Path) -> bool {
    std::fs::read(dir.join(hindsight_model::CONFIG_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .is_some_and(|k| k == hindsight_model::recall::SASREC_KIND)
}

/// The verified weights sha256 of a checkpoint, CTR or SASRec (loading
/// checks it).
#[cfg(feature = "model")]
pub fn checkpoint_sha(dir: &std::path::Path) -> Result<String> {
    if is_sasrec(dir) {
        let model = hindsight_model::recall::TrainedRecall::load(
            dir,
            hindsight_model::Device::Cpu.resolve()?,
        )?;
        return Ok(model.weights_sha256().to_owned());
    }
    let model = hindsight_model::TrainedModel::load(dir, hindsight_model::Device::Cpu)?;
    model.weights_sha256().map(str::to_owned).ok_or_else(|| {
        anyhow::anyhow!(
            "{} records no weights checksum (saved by an older build); load and save it again, or retrain it",
            dir.display()
        )
    })
}

/// An attach source's item vectors and what makes an unseen item's.
#[cfg(feature = "model")]
struct ItemVectors {
    vectors: Vec<f32>,
    dim: usize,
    /// Items the checkpoint's vocabulary holds.
    known: usize,
    tables: hindsight_model::ItemFeatureTables,
    combine: hindsight_embeddings::FeatureCombine,
    kind: String,
    sha: String,
    representation: &'static str,
}

#[cfg(feature = "model")]
fn item_vectors_of(
    dir: &std::path::Path,
    index: &BehaviorIndex,
    targets: &[hindsight_core::Target],
) -> Result<ItemVectors> {
    use anyhow::Context;
    use hindsight_embeddings::FeatureCombine;
    use hindsight_engine::RetrievalSettings;
    use hindsight_model::{Device, TrainedModel};

    let load = || format!("loading the checkpoint {}", dir.display());
    if is_sasrec(dir) {
        let model = hindsight_model::recall::TrainedRecall::load(dir, Device::Cpu.resolve()?)
            .with_context(load)?;
        let items: Vec<(u64, hindsight_core::ItemFeatures)> = targets
            .iter()
            .map(|t| (t.item_id, t.features.clone()))
            .collect();
        let vocab = model.vocab();
        return Ok(ItemVectors {
            vectors: model.item_vectors(&items)?,
            dim: model.dim(),
            known: targets
                .iter()
                .filter(|t| vocab.item(t.item_id) > hindsight_model::OOV)
                .count(),
            tables: model.item_feature_tables()?,
            combine: FeatureCombine::Sum,
            kind: hindsight_model::recall::SASREC_KIND.to_owned(),
            sha: model.weights_sha256().to_owned(),
            representation: "SASRec's item tower of the checkpoint (item embedding + mean category embedding + mean tag embedding)",
        });
    }
    let model = TrainedModel::load(dir, Device::Cpu).with_context(load)?;
    RetrievalSettings::of(&model)?.check_index(index)?;
    let sha = model.weights_sha256().map(str::to_owned).ok_or_else(|| {
        anyhow::anyhow!(
            "{} records no weights checksum (saved by an older build); retrain it so that the embeddings can name it",
            dir.display()
        )
    })?;
    Ok(ItemVectors {
        vectors: model.item_vectors(targets)?,
        dim: model.item_vector_dim(),
        known: targets
            .iter()
            .filter(|t| model.vocab().item(t.item_id) > hindsight_model::OOV)
            .count(),
        tables: model.item_feature_tables()?,
        combine: FeatureCombine::Concat,
        kind: model.config().kind.to_string(),
        sha,
        representation: "[item embedding, mean category embedding, mean tag embedding] of the checkpoint (the item representation DIN attends with)",
    })
}

#[cfg(feature = "model")]
fn attach(a: AttachArgs) -> Result<()> {
    use std::collections::BTreeMap;

    use hindsight_core::{ItemFeatures, Target};
    use hindsight_embeddings::{FeatureTable, FeatureTables, HashSettings, IndexRef, ModelRef};

    let t0 = Instant::now();
    let hash = HashSettings {
        eta_bits: a.bits,
        sdim_rounds: a.sdim_rounds,
        sdim_bits: a.sdim_bits,
        seed: a.seed,
    };
    hash.validate()?;
    let index = BehaviorIndex::open_read_only(&a.index)?;
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
    let src = item_vectors_of(&a.model, &index, &targets)?;
    let t = src.tables;
    let tables = FeatureTables {
        combine: src.combine,
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
    let store = EmbeddingStore::build(
        targets.iter().map(|t| t.item_id).collect(),
        src.vectors,
        src.dim,
        tables,
        hash,
        ModelRef {
            path: a.model.display().to_string(),
            kind: src.kind,
            weights_sha256: src.sha,
            representation: src.representation.into(),
        },
        IndexRef::of(&index),
    )?;
    let path = store_path(index.path());
    store.save(&path)?;
    let summary = Summary {
        path: path.display().to_string(),
        items: store.len(),
        dim: src.dim,
        file_bytes: store.file_bytes(),
        items_in_checkpoint: Some(src.known),
        meta: store.meta().clone(),
        doc_arrays_bytes: 20 * snap.num_behaviors(),
        soft_vectors_bytes: soft_bytes(src.dim, snap.num_behaviors()),
        seconds: Some(t0.elapsed().as_secs_f64()),
    };
    print_summary(&summary, a.json, "attached")
}
