//! Item embeddings attached to a hindsight index, for retrieval by learned
//! similarity: SIM's soft search (Pi et al., CIKM 2020, section 4.1: top N
//! by the inner product of embeddings), ETA (Chen et al., "End-to-End User
//! Behavior Retrieval in Click-Through Rate Prediction Model", 2021:
//! SimHash codes compared by Hamming distance) and SDIM (Cao et al.,
//! "Sampling Is All You Need on Modeling Long-Term User Behaviors for CTR
//! Prediction", CIKM 2022: behaviors whose hash signature collides with
//! the target's).
//!
//! * [`EmbeddingStore`]: the versioned, checksummed file beside the index
//!   (`INDEX/embeddings/store.hse`, format in [`store`]): one vector per
//!   item taken from a trained checkpoint, its ETA code and SDIM
//!   signature ([`hash`], hyperplanes from a recorded seed), the
//!   checkpoint it came from ([`ModelRef`], its `weights_sha256`), the
//!   index it belongs to ([`IndexRef`]) and the feature tables that give
//!   any other item a vector ([`FeatureTables`]).
//! * [`Embeddings`]: a store attached to an index, with the per-segment
//!   arrays doc -> (row, code, signature) that retrieval reads by doc id
//!   ([`SegmentCodes`]; memory and build costs in [`segments`]), and the
//!   int8 copies of the docs' vectors that keep `sim-soft`'s scan exact at
//!   a quarter of the bytes ([`SoftBlocks`], bounds in [`quantized`]).
//!
//! No libtorch: the vectors are handed in by whoever reads the checkpoint
//! (the CLI's `hindsight embeddings attach`).
//!
//! ```no_run
//! use hindsight_embeddings::Embeddings;
//! use hindsight_index::BehaviorIndex;
//!
//! let index = BehaviorIndex::open_read_only("index/taobao")?;
//! let emb = Embeddings::open(&index)?;
//! println!("{} items of dimension {}", emb.store().len(), emb.store().dim());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
pub mod hash;
pub mod quantized;
pub mod segments;
pub mod store;

pub use error::{EmbeddingError, Result};
pub use hash::{dot, hamming, SdimLayout};
pub use quantized::{QuantizedQuery, SoftBlocks, BLOCK_DOCS};
pub use segments::{transpose_codes, Embeddings, SegmentCodes, WarmReport, PLANE_DOCS};
pub use store::{
    store_path, EmbeddingStore, FeatureCombine, FeatureTable, FeatureTables, HashSettings,
    IndexRef, ModelRef, StoreMeta, TargetCodes,
};

#[cfg(test)]
mod tests;
