//! Per-user behavior retrieval: for a (user, target item), pick the at most
//! N behaviors of the user's lifelong history that matter most for scoring
//! the target, as of a point in time.
//!
//! Strategies (see docs/evaluation-protocol.md for the protocol they are compared under):
//!
//! | name       | what it picks | after |
//! |------------|---------------|-------|
//! | `recent`   | the N most recent behaviors | the baseline every paper beats |
//! | `sim-hard` | behaviors sharing a category (genre) with the target, newest first, padded with recent ones | SIM hard search, Pi et al. CIKM 2020 |
//! | `ubr`      | BM25 over the target's features (item, categories, tags) against the user's feature-keyed behaviors | UBR4CTR, Qin et al. SIGIR 2020 |
//! | `hybrid`   | a few most recent behaviors, the rest by `ubr` | |
//! | `sim-soft` | top N by the inner product of learned item embeddings | SIM soft search, Pi et al. CIKM 2020 |
//! | `eta`      | top N by Hamming distance of SimHash codes of the embeddings, ties to newer | ETA, Chen et al. 2021 |
//! | `sdim`     | behaviors whose hash signature collides with the target's in a round, newest first | SDIM, Cao et al. CIKM 2022 |
//!
//! The last three need item embeddings attached to the index
//! (`hindsight embeddings attach`, [`hindsight_embeddings`]): build them
//! with [`Retriever::for_index`] (loads the index's store) or
//! [`Retriever::for_kind`] with a [`RetrievalContext`]; a retriever made
//! by [`Retriever::new`] for them answers every call with
//! [`RetrievalError::MissingEmbeddings`].
//!
//! Every strategy implements [`RetrievalStrategy`] in its own module under
//! `strategies/`, and one line of the registry there makes it a
//! [`StrategyKind`] (its name, parsing, `Display`, [`StrategyKind::HELP`]):
//! that is how embedding and hashing strategies (SIM soft search, ETA,
//! SDIM) are added. All of them read only the user's own runs of the index
//! through `hindsight_index`'s types (columns, [`KeyPostings`] of the
//! user's feature keys, [`NewestMatches`] windows), only behaviors strictly
//! before the as-of point, and never return more than N. The BM25 maths
//! are [`Bm25Weight`], the top-N heap is [`TopN`].
//!
//! [`KeyPostings`]: hindsight_index::KeyPostings
//! [`NewestMatches`]: hindsight_index::NewestMatches
//!
//! ```no_run
//! use hindsight_core::{AsOf, ItemFeatures, Target};
//! use hindsight_index::BehaviorIndex;
//! use hindsight_retrieval::{Query, Retriever, StrategyKind};
//!
//! let index = BehaviorIndex::open("index/taobao")?;
//! let snapshot = index.snapshot();
//! let retriever = Retriever::new(StrategyKind::Ubr);
//! let target = Target { item_id: 2268318, features: ItemFeatures::with_categories(vec![2520377]) };
//! let hits = retriever.retrieve(&snapshot, 1, &Query::new(&target, 20).as_of(AsOf::seq(100)))?;
//! for hit in hits {
//!     println!("{} {:.3}", hit.behavior.seq, hit.score);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bm25;
mod cpu;
mod strategies;
pub mod topn;

use std::fmt;
use std::str::FromStr;

use std::sync::Arc;

use hindsight_core::{AsOf, Behavior, BehaviorFilter, Target};
pub use hindsight_embeddings::Embeddings;
use hindsight_index::{BehaviorIndex, History, Snapshot};
use serde::{Deserialize, Serialize};

pub use bm25::Bm25Weight;
pub use strategies::{Eta, Hybrid, Recent, Sdim, SimHard, SimSoft, StrategyKind, Ubr, UbrConfig};
pub use topn::TopN;

/// What strategies may need besides the index: the item embeddings
/// attached to it (for `sim-soft`, `eta`, `sdim`).
#[derive(Debug, Clone, Default)]
pub struct RetrievalContext {
    /// The attached embeddings, if loaded.
    pub embeddings: Option<Arc<Embeddings>>,
}

/// Errors of retrieval.
#[derive(Debug, thiserror::Error)]
pub enum RetrievalError {
    /// The index could not be read (its columns or postings).
    #[error(transparent)]
    Index(#[from] hindsight_index::IndexError),
    /// An unknown strategy name.
    #[error("unknown retrieval strategy {0:?}; use one of {list}", list = StrategyKind::HELP)]
    UnknownStrategy(String),
    /// An embedding strategy without item embeddings.
    #[error("retrieval strategy {0} ranks by item embeddings and none are loaded; attach them to the index with `hindsight embeddings attach --index INDEX --model MODEL` first")]
    MissingEmbeddings(&'static str),
    /// The item embeddings could not be loaded.
    #[error(transparent)]
    Embeddings(#[from] hindsight_embeddings::EmbeddingError),
}

/// Result alias of the retrieval crate.
pub type Result<T, E = RetrievalError> = std::result::Result<T, E>;

/// What to retrieve for one target.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    /// The item being scored.
    pub target: &'a Target,
    /// Budget: at most this many behaviors.
    pub n: usize,
    /// Only behaviors strictly before this point.
    pub as_of: AsOf,
    /// Further restrictions (behavior types, time window).
    pub filter: BehaviorFilter,
}

impl<'a> Query<'a> {
    /// A query for `target` with budget `n`, over the whole history.
    pub fn new(target: &'a Target, n: usize) -> Self {
        Query {
            target,
            n,
            as_of: AsOf::NOW,
            filter: BehaviorFilter::default(),
        }
    }

    /// Restricts to behaviors before `as_of`.
    pub fn as_of(mut self, as_of: AsOf) -> Self {
        self.as_of = as_of;
        self
    }

    /// Adds a filter.
    pub fn filter(mut self, filter: BehaviorFilter) -> Self {
        self.filter = filter;
        self
    }
}

/// One retrieved behavior with its relevance score (strategy-specific:
/// BM25 for `ubr`, number of shared categories for `sim-hard`, 0 for
/// recency picks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retrieved {
    /// The behavior.
    pub behavior: Behavior,
    /// Its score.
    pub score: f32,
}

/// A retrieval strategy. Implementations must return at most `q.n`
/// behaviors, all strictly before `q.as_of` and admitted by `q.filter`,
/// without duplicates, most relevant first.
pub trait RetrievalStrategy: Send + Sync {
    /// The strategy's name, as used on the command line.
    fn name(&self) -> &'static str;

    /// Retrieves for one target from the user's history, appending to `out`.
    fn retrieve(
        &self,
        history: &History<'_>,
        q: &Query<'_>,
        out: &mut Vec<Retrieved>,
    ) -> Result<()>;

    /// Retrieves for many targets of the same user (the candidates of one
    /// request): `queries[i]`'s result is [`BatchRetrieved::hits`]`(i)`,
    /// equal to what [`retrieve`](Self::retrieve) returns for it alone.
    /// Each distinct behavior is read once for the whole batch.
    ///
    /// The default runs the queries one by one; the built-in strategies
    /// override it to share what candidates have in common (term
    /// dictionary lookups of shared categories, results of candidates that
    /// only differ by an item the user never touched).
    fn retrieve_batch(
        &self,
        history: &History<'_>,
        queries: &[Query<'_>],
    ) -> Result<BatchRetrieved> {
        let mut out = BatchRetrieved::with_queries(queries.len());
        let mut by_seq: strategies::FastMap<hindsight_core::Seq, u32> = Default::default();
        let mut one = Vec::new();
        for (qi, q) in queries.iter().enumerate() {
            one.clear();
            self.retrieve(history, q, &mut one)?;
            for r in one.drain(..) {
                let next = out.behaviors.len() as u32;
                let at = *by_seq.entry(r.behavior.seq).or_insert(next);
                if at == next {
                    out.behaviors.push(r.behavior);
                }
                out.hits[qi].push(BatchHit {
                    behavior: at,
                    score: r.score,
                });
            }
        }
        Ok(out)
    }
}

/// One result of a batch query: the behavior (an index into
/// [`BatchRetrieved::behaviors`]) and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchHit {
    /// Index of the behavior in [`BatchRetrieved::behaviors`].
    pub behavior: u32,
    /// Its score for this query.
    pub score: f32,
}

/// The results of a batch of queries of one user
/// ([`Retriever::retrieve_batch`]): every distinct behavior once, and per
/// query its hits, most relevant first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchRetrieved {
    behaviors: Vec<Behavior>,
    hits: Vec<Vec<BatchHit>>,
}

impl BatchRetrieved {
    /// No result yet for `queries` queries.
    pub(crate) fn with_queries(queries: usize) -> Self {
        BatchRetrieved {
            behaviors: Vec::new(),
            hits: vec![Vec::new(); queries],
        }
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    /// Whether the batch had no query.
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// The hits of query `q`, most relevant first.
    pub fn hits(&self, q: usize) -> &[BatchHit] {
        &self.hits[q]
    }

    /// The distinct behaviors the hits point to.
    pub fn behaviors(&self) -> &[Behavior] {
        &self.behaviors
    }

    /// The behavior of a hit.
    pub fn behavior(&self, hit: &BatchHit) -> &Behavior {
        &self.behaviors[hit.behavior as usize]
    }

    /// Query `q`'s result as [`Retrieved`] values (copies the behaviors).
    pub fn retrieved(&self, q: usize) -> Vec<Retrieved> {
        self.hits[q]
            .iter()
            .map(|h| Retrieved {
                behavior: self.behavior(h).clone(),
                score: h.score,
            })
            .collect()
    }

    /// Every query's result as [`Retrieved`] values, in query order.
    pub fn to_vecs(&self) -> Vec<Vec<Retrieved>> {
        (0..self.len()).map(|q| self.retrieved(q)).collect()
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = RetrievalError;
    fn from_str(s: &str) -> Result<Self> {
        StrategyKind::from_name(s).ok_or_else(|| RetrievalError::UnknownStrategy(s.to_owned()))
    }
}

/// Runs a strategy against snapshots: the entry point of jobs and the server.
pub struct Retriever {
    strategy: Box<dyn RetrievalStrategy>,
    embeddings: Option<Arc<Embeddings>>,
}

impl Retriever {
    /// A retriever for a built-in strategy with default settings (an
    /// embedding strategy made this way has no embeddings: see
    /// [`Retriever::for_index`]).
    pub fn new(kind: StrategyKind) -> Self {
        Retriever {
            strategy: kind.build(),
            embeddings: None,
        }
    }

    /// A retriever for a built-in strategy with what `ctx` provides; fails
    /// with [`RetrievalError::MissingEmbeddings`] for an embedding strategy
    /// when `ctx` has no embeddings.
    pub fn for_kind(kind: StrategyKind, ctx: &RetrievalContext) -> Result<Self> {
        Ok(Retriever {
            strategy: kind.build_with(ctx)?,
            embeddings: ctx.embeddings.clone().filter(|_| kind.needs_embeddings()),
        })
    }

    /// A retriever for a built-in strategy over `index`: an embedding
    /// strategy loads the embeddings attached to the index (a clear error
    /// when there are none, or when they belong to another index).
    pub fn for_index(kind: StrategyKind, index: &BehaviorIndex) -> Result<Self> {
        let embeddings = if kind.needs_embeddings() {
            Some(Arc::new(Embeddings::open(index)?))
        } else {
            None
        };
        Self::for_kind(kind, &RetrievalContext { embeddings })
    }

    /// A retriever for any strategy.
    pub fn with_strategy(strategy: Box<dyn RetrievalStrategy>) -> Self {
        Retriever {
            strategy,
            embeddings: None,
        }
    }

    /// The embeddings the strategy reads, if it is an embedding strategy.
    pub fn embeddings(&self) -> Option<&Arc<Embeddings>> {
        self.embeddings.as_ref()
    }

    /// The strategy's name.
    pub fn name(&self) -> &'static str {
        self.strategy.name()
    }

    /// Retrieves for one (user, target). A user with no history gets an
    /// empty list.
    pub fn retrieve(
        &self,
        snapshot: &Snapshot,
        user: u64,
        q: &Query<'_>,
    ) -> Result<Vec<Retrieved>> {
        let history = snapshot.history(user);
        let mut out = Vec::with_capacity(q.n.min(1024));
        self.strategy.retrieve(&history, q, &mut out)?;
        Ok(out)
    }

    /// Retrieves for many targets of one user from one snapshot, resolving
    /// the user's history once. `queries[i]`'s result is at index `i`.
    pub fn retrieve_many(
        &self,
        snapshot: &Snapshot,
        user: u64,
        queries: &[Query<'_>],
    ) -> Result<Vec<Vec<Retrieved>>> {
        self.retrieve_many_in(&snapshot.history(user), queries)
    }

    /// Retrieves for the candidates of one request (many targets of one
    /// user, one snapshot), sharing what they have in common (see
    /// [`RetrievalStrategy::retrieve_batch`]); each result equals
    /// [`Retriever::retrieve`]'s for that query alone.
    pub fn retrieve_batch(
        &self,
        snapshot: &Snapshot,
        user: u64,
        queries: &[Query<'_>],
    ) -> Result<BatchRetrieved> {
        self.strategy
            .retrieve_batch(&snapshot.history(user), queries)
    }

    /// [`Retriever::retrieve_batch`] on a history the caller already holds.
    pub fn retrieve_batch_in(
        &self,
        history: &History<'_>,
        queries: &[Query<'_>],
    ) -> Result<BatchRetrieved> {
        self.strategy.retrieve_batch(history, queries)
    }

    /// [`Retriever::retrieve_batch_in`] with the queries split over
    /// `threads` threads (contiguous shares, each a batch of its own, on
    /// scoped threads of this call), merged in query order with each
    /// distinct behavior once. For a request whose latency matters more
    /// than the throughput of the cores (one request at a time, many
    /// candidates); `threads <= 1`, or fewer than 8 queries a thread, runs
    /// on the caller's thread. The results are those of
    /// [`Retriever::retrieve_batch_in`].
    pub fn retrieve_batch_threads(
        &self,
        history: &History<'_>,
        queries: &[Query<'_>],
        threads: usize,
    ) -> Result<BatchRetrieved> {
        let threads = threads.min(queries.len() / 8).max(1);
        if threads == 1 {
            return self.strategy.retrieve_batch(history, queries);
        }
        let share = queries.len().div_ceil(threads);
        let parts: Vec<Result<BatchRetrieved>> = std::thread::scope(|s| {
            let handles: Vec<_> = queries
                .chunks(share)
                .map(|part| s.spawn(move || self.strategy.retrieve_batch(history, part)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        let mut out = BatchRetrieved::with_queries(0);
        let mut by_seq: strategies::FastMap<hindsight_core::Seq, u32> = Default::default();
        for part in parts {
            let part = part?;
            let remap: Vec<u32> = part
                .behaviors
                .into_iter()
                .map(|b| {
                    let next = out.behaviors.len() as u32;
                    let at = *by_seq.entry(b.seq).or_insert(next);
                    if at == next {
                        out.behaviors.push(b);
                    }
                    at
                })
                .collect();
            out.hits.extend(part.hits.into_iter().map(|hits| {
                hits.into_iter()
                    .map(|h| BatchHit {
                        behavior: remap[h.behavior as usize],
                        score: h.score,
                    })
                    .collect()
            }));
        }
        Ok(out)
    }

    /// [`Retriever::retrieve_many`] on a history the caller already holds
    /// (e.g. to also report its length).
    pub fn retrieve_many_in(
        &self,
        history: &History<'_>,
        queries: &[Query<'_>],
    ) -> Result<Vec<Vec<Retrieved>>> {
        queries
            .iter()
            .map(|q| {
                let mut out = Vec::with_capacity(q.n.min(1024));
                self.strategy.retrieve(history, q, &mut out)?;
                Ok(out)
            })
            .collect()
    }
}
