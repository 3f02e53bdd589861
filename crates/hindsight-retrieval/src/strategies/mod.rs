//! The built-in strategies, one module each, and their registry.
//!
//! Adding a strategy is one new file here (a type implementing
//! [`RetrievalStrategy`] and `Default`, whose `name()` is
//! `StrategyKind::TheNewKind.as_str()`) plus one line in the
//! `registry!` call below and its name in `make_default!`:
//! [`StrategyKind`], its names, parsing, `Display`, serde form and
//! [`StrategyKind::HELP`] all come from that line. A strategy that needs
//! more than defaults (the embedding strategies need the index's item
//! embeddings) implements `Make` itself instead of `Default`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use hindsight_core::FeatureKind;
use hindsight_index::{DocId, History, KeyPostings, Run, SegmentView};

use crate::{BatchHit, BatchRetrieved, Query, Result, Retrieved};

/// Declares the strategy modules and generates [`StrategyKind`] from one
/// line per strategy: `Variant = "name" | "alias"... => module::Type,`.
macro_rules! registry {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal $(| $alias:literal)* => $module:ident :: $ty:ident ),+ $(,)?) => {
        $( mod $module; pub use $module::$ty; )+

        /// The built-in strategies (one line each in the registry of `strategies/mod.rs`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum StrategyKind {
            $( $(#[$doc])* #[doc = concat!("[`", stringify!($ty), "`], `", $name, "`.")] $variant, )+
        }

        impl StrategyKind {
            /// All built-in strategies, in registry order.
            pub const ALL: [StrategyKind; 0 $(+ registry!(@one $variant))+] = [$(StrategyKind::$variant),+];

            /// Their names, in registry order.
            pub const NAMES: [&'static str; 0 $(+ registry!(@one $variant))+] = [$($name),+];

            /// Their names, comma-separated (for help texts and errors).
            pub const HELP: &'static str = registry!(@join $($name),+);

            /// The name used on the command line, in configs and in
            /// checkpoints.
            pub fn as_str(&self) -> &'static str {
                match self { $(StrategyKind::$variant => $name,)+ }
            }

            /// The strategy with default settings and no context: an
            /// embedding strategy built so answers every call with
            /// [`RetrievalError::MissingEmbeddings`](crate::RetrievalError::MissingEmbeddings)
            /// (use [`build_with`](Self::build_with)).
            pub fn build(&self) -> Box<dyn crate::RetrievalStrategy> {
                self.build_with(&crate::RetrievalContext::default())
                    .unwrap_or_else(|_| Box::new(Unavailable(self.as_str())))
            }

            /// The strategy with default settings and what `ctx` provides;
            /// fails for an embedding strategy when `ctx` has no embeddings.
            pub fn build_with(&self, ctx: &crate::RetrievalContext) -> crate::Result<Box<dyn crate::RetrievalStrategy>> {
                Ok(match self { $(StrategyKind::$variant => Box::new(<$ty as Make>::make(ctx)?),)+ })
            }

            /// Whether the strategy ranks by item embeddings (needs them
            /// attached to the index).
            pub fn needs_embeddings(&self) -> bool {
                match self { $(StrategyKind::$variant => <$ty as Make>::NEEDS_EMBEDDINGS,)+ }
            }

            /// The strategy named `s` (its name or an alias).
            pub(crate) fn from_name(s: &str) -> Option<StrategyKind> {
                match s {
                    $( $name $(| $alias)* => Some(StrategyKind::$variant), )+
                    _ => None,
                }
            }

            /// The strategy with exactly this name (no alias): the serde form.
            fn from_canonical_name(s: &str) -> Option<StrategyKind> {
                StrategyKind::ALL.into_iter().find(|k| k.as_str() == s)
            }
        }
    };
    (@one $x:ident) => { 1usize };
    (@join $first:literal $(, $rest:literal)*) => { concat!($first $(, ", ", $rest)*) };
}

registry! {
    Recent = "recent" => recent::Recent,
    SimHard = "sim-hard" | "sim_hard" => sim_hard::SimHard,
    Ubr = "ubr" => ubr::Ubr,
    Hybrid = "hybrid" => hybrid::Hybrid,
    SimSoft = "sim-soft" | "sim_soft" => sim_soft::SimSoft,
    Eta = "eta" => eta::Eta,
    Sdim = "sdim" => sdim::Sdim,
}

pub use ubr::UbrConfig;

/// How the registry makes a strategy from a [`RetrievalContext`](crate::RetrievalContext).
pub(crate) trait Make: Sized {
    /// Whether it needs the context's embeddings.
    const NEEDS_EMBEDDINGS: bool = false;
    /// The strategy with default settings.
    fn make(ctx: &crate::RetrievalContext) -> crate::Result<Self>;
}

macro_rules! make_default {
    ($($ty:ty),+) => {$(
        impl Make for $ty {
            fn make(_: &crate::RetrievalContext) -> crate::Result<Self> {
                Ok(<$ty>::default())
            }
        }
    )+};
}
make_default!(Recent, SimHard, Ubr, Hybrid);

/// The embeddings of `ctx`, or the error naming `strategy`.
pub(crate) fn embeddings_of(
    ctx: &crate::RetrievalContext,
    strategy: StrategyKind,
) -> crate::Result<std::sync::Arc<hindsight_embeddings::Embeddings>> {
    ctx.embeddings
        .clone()
        .ok_or(crate::RetrievalError::MissingEmbeddings(strategy.as_str()))
}

/// What [`StrategyKind::build`] returns for an embedding strategy: every
/// call fails with [`RetrievalError::MissingEmbeddings`](crate::RetrievalError::MissingEmbeddings).
struct Unavailable(&'static str);

impl crate::RetrievalStrategy for Unavailable {
    fn name(&self) -> &'static str {
        self.0
    }

    fn retrieve(
        &self,
        _: &History<'_>,
        _: &Query<'_>,
        _: &mut Vec<Retrieved>,
    ) -> crate::Result<()> {
        Err(crate::RetrievalError::MissingEmbeddings(self.0))
    }
}

impl serde::Serialize for StrategyKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for StrategyKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StrategyKind::from_canonical_name(&s)
            .ok_or_else(|| serde::de::Error::unknown_variant(&s, &StrategyKind::NAMES))
    }
}

/// A behavior a strategy picked: where it is (run index in the history,
/// doc) and its score. Strategies rank picks and only the final ones are
/// read into [`Retrieved`] (or, in a batch, into a shared
/// [`BatchRetrieved`](crate::BatchRetrieved)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pick {
    pub run: usize,
    pub doc: DocId,
    pub score: f32,
}

/// A key's postings in each run of a history (`None`: not in that run).
type PerRun<'a> = Vec<Option<KeyPostings<'a>>>;

/// The postings of a user's feature keys per run, looked up in the term
/// dictionary once per (kind, value) when `shared` (a batch, where
/// candidates share categories), else on every call.
pub(crate) struct Postings<'h, 'a> {
    history: &'h History<'a>,
    memo: Option<FastMap<(FeatureKind, u64), PerRun<'a>>>,
}

impl<'h, 'a> Postings<'h, 'a> {
    /// Lookups without memory (one query).
    pub fn direct(history: &'h History<'a>) -> Self {
        Postings {
            history,
            memo: None,
        }
    }

    /// Lookups remembered across the queries of a batch.
    pub fn shared(history: &'h History<'a>) -> Self {
        Postings {
            history,
            memo: Some(FastMap::default()),
        }
    }

    /// The postings of `(kind, value)` in run `ri` of the history.
    pub fn get(
        &mut self,
        ri: usize,
        kind: FeatureKind,
        value: u64,
    ) -> Result<Option<KeyPostings<'a>>> {
        let runs = self.history.runs();
        match &mut self.memo {
            None => Ok(runs[ri].postings(kind, value)?),
            Some(memo) => {
                if let Some(v) = memo.get(&(kind, value)) {
                    return Ok(v[ri].clone());
                }
                let mut v = Vec::with_capacity(runs.len());
                for run in runs {
                    v.push(run.postings(kind, value)?);
                }
                let got = v[ri].clone();
                memo.insert((kind, value), v);
                Ok(got)
            }
        }
    }
}

/// A `HashMap` with a multiplicative hash (keys here are small integers
/// built by the process itself, so no defence against chosen keys is needed).
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<MulHasher>>;

/// The hasher of [`FastMap`]: FxHash's mixing step.
#[derive(Default, Clone, Copy)]
pub(crate) struct MulHasher(u64);

impl Hasher for MulHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds a [`BatchRetrieved`]: each distinct (run, doc) is read once.
pub(crate) struct BatchBuilder<'h, 'a> {
    history: &'h History<'a>,
    docs: FastMap<(usize, DocId), u32>,
    pub out: BatchRetrieved,
}

impl<'h, 'a> BatchBuilder<'h, 'a> {
    pub fn new(history: &'h History<'a>, queries: usize) -> Self {
        BatchBuilder {
            history,
            docs: FastMap::default(),
            out: BatchRetrieved::with_queries(queries),
        }
    }

    /// Gives query `q` the result `picks`.
    pub fn set(&mut self, q: usize, picks: &[Pick]) {
        let mut hits = Vec::with_capacity(picks.len());
        // The docs not read yet, in the order their indices were given,
        // read together at the end.
        let mut fresh: Vec<(usize, DocId)> = Vec::new();
        for p in picks {
            let next = (self.out.behaviors.len() + fresh.len()) as u32;
            let at = *self.docs.entry((p.run, p.doc)).or_insert(next);
            if at == next {
                fresh.push((p.run, p.doc));
            }
            hits.push(BatchHit {
                behavior: at,
                score: p.score,
            });
        }
        behaviors_by_run(self.history, &fresh, &mut self.out.behaviors);
        self.out.hits[q] = hits;
    }
}

/// The shared pass of a batch over one run: calls `scan(query, range)`
/// for every query with a budget, over the run's docs below that query's
/// as-of bound, one tile of `tile` docs at a time with every query per
/// tile (tiles start at the run's first doc rounded down to a multiple of
/// `align`), so a tile's codes stay in cache while all the candidates read
/// them. The ranges of one query are consecutive and cover exactly what
/// a single query would scan.
pub(crate) fn for_each_tile(
    history: &History<'_>,
    run: &Run<'_>,
    queries: &[Query<'_>],
    (tile, align): (DocId, DocId),
    mut scan: impl FnMut(usize, (DocId, DocId)),
) {
    let ends: Vec<DocId> = queries
        .iter()
        .map(|q| run.bound(&q.as_of, history.ts_monotonic()))
        .collect();
    let last = ends.iter().copied().max().unwrap_or(run.start);
    let mut at = run.start - run.start % align.max(1);
    while at < last {
        let next = at.saturating_add(tile);
        for (qi, (q, &end)) in queries.iter().zip(&ends).enumerate() {
            let range = (at.max(run.start), next.min(end));
            if q.n > 0 && range.0 < range.1 {
                scan(qi, range);
            }
        }
        at = next;
    }
}

/// Reads the behaviors at `docs` ((run, doc) pairs) into `out` in order,
/// each consecutive stretch of one run with one call of
/// [`SegmentView::behaviors_into`].
pub(crate) fn behaviors_by_run(
    history: &History<'_>,
    docs: &[(usize, DocId)],
    out: &mut Vec<hindsight_core::Behavior>,
) {
    let runs = history.runs();
    let mut stretch: Vec<DocId> = Vec::with_capacity(docs.len());
    let mut i = 0;
    while i < docs.len() {
        let run = docs[i].0;
        let j = i + docs[i..].iter().take_while(|d| d.0 == run).count();
        stretch.clear();
        stretch.extend(docs[i..j].iter().map(|d| d.1));
        runs[run].seg.behaviors_into(&stretch, out);
        i = j;
    }
}

/// Reads picks into `out` in order ([`behaviors_by_run`]).
pub(crate) fn materialize(history: &History<'_>, picks: &[Pick], out: &mut Vec<Retrieved>) {
    let docs: Vec<(usize, DocId)> = picks.iter().map(|p| (p.run, p.doc)).collect();
    let mut behaviors = Vec::with_capacity(picks.len());
    behaviors_by_run(history, &docs, &mut behaviors);
    out.reserve(picks.len());
    out.extend(
        behaviors
            .into_iter()
            .zip(picks)
            .map(|(behavior, p)| Retrieved {
                behavior,
                score: p.score,
            }),
    );
}

/// A key that orders the docs of a history by seq, for ties to the newer
/// behavior: within a run doc order is seq order, so a one-run history
/// needs no seq lookup (a cache miss each on scattered docs).
#[inline]
pub(crate) fn newness(runs: &[Run<'_>], run: usize, doc: DocId) -> hindsight_core::Seq {
    if runs.len() == 1 {
        doc
    } else {
        runs[run].seg.seq(doc)
    }
}

/// Whether two queries of one user get the same result from a strategy
/// that reads only the target's categories (and tags when `tags`), the
/// budget, the as-of point and the filter.
pub(crate) fn same_features(a: &Query<'_>, b: &Query<'_>, tags: bool) -> bool {
    a.n == b.n
        && a.as_of == b.as_of
        && a.filter == b.filter
        && a.target.features.categories == b.target.features.categories
        && (!tags || a.target.features.tags == b.target.features.tags)
}

/// Results of a batch's queries by what determines them (see
/// [`same_features`]): a hash of the key fields, then an exact comparison.
pub(crate) struct Memo {
    tags: bool,
    map: FastMap<u64, Vec<(usize, Vec<Pick>)>>,
}

impl Memo {
    /// A memo for strategies that read the categories (and the tags when
    /// `tags`).
    pub fn new(tags: bool) -> Self {
        Memo {
            tags,
            map: FastMap::default(),
        }
    }

    fn key(&self, q: &Query<'_>) -> u64 {
        let mut h = MulHasher::default();
        h.write_usize(q.n);
        h.write_u64(q.as_of.seq.map_or(u64::MAX, u64::from));
        h.write_u64(q.as_of.timestamp.map_or(u64::MAX, |t| t as u64));
        for &c in &q.target.features.categories {
            h.write_u64(c);
        }
        if self.tags {
            h.write_u8(0xff);
            for &t in &q.target.features.tags {
                h.write_u64(t);
            }
        }
        h.finish()
    }

    /// The picks of an earlier query equivalent to `queries[qi]`.
    pub fn get(&self, queries: &[Query<'_>], qi: usize) -> Option<&[Pick]> {
        let q = &queries[qi];
        self.map.get(&self.key(q))?.iter().find_map(|(j, picks)| {
            same_features(&queries[*j], q, self.tags).then_some(picks.as_slice())
        })
    }

    /// Remembers the picks of `queries[qi]`.
    pub fn put(&mut self, queries: &[Query<'_>], qi: usize, picks: Vec<Pick>) {
        let key = self.key(&queries[qi]);
        self.map.entry(key).or_default().push((qi, picks));
    }
}

/// Whether a doc passes the query's filter and, when timestamps cannot be
/// binary-searched, the as-of timestamp.
#[inline]
pub(crate) fn admits(seg: &SegmentView, doc: DocId, q: &Query<'_>, check_ts: bool) -> bool {
    if check_ts || !q.filter.is_empty() {
        let ts = seg.timestamp(doc);
        if check_ts && q.as_of.timestamp.is_some_and(|t| ts >= t) {
            return false;
        }
        if !q.filter.is_empty() && !q.filter.admits(seg.behavior_type(doc), ts) {
            return false;
        }
    }
    true
}

/// Whether the as-of timestamp must be checked per document (timestamps are
/// not monotonic in seq, so the run's doc bound applies only the seq).
pub(crate) fn needs_ts_check(history: &History<'_>, q: &Query<'_>) -> bool {
    q.as_of.timestamp.is_some() && !history.ts_monotonic()
}

/// Appends up to `need` of the newest eligible behaviors not in `taken`
/// (as (run, doc)), with score 0.
pub(crate) fn pad_with_recent(
    history: &History<'_>,
    q: &Query<'_>,
    need: usize,
    taken: &[(usize, DocId)],
    out: &mut Vec<Pick>,
) {
    if need == 0 {
        return;
    }
    let target_len = out.len() + need;
    let runs = history.runs();
    // Sorted, for a binary search per padding candidate instead of a scan
    // of every pick (up to N x N comparisons).
    let mut taken = taken.to_vec();
    taken.sort_unstable();
    let taken = &taken[..];
    let is_taken = |key: (usize, DocId)| taken.binary_search(&key).is_ok();
    if runs.len() == 1 && q.filter.is_empty() && !needs_ts_check(history, q) {
        // One run, nothing to check per doc: the newest docs below the
        // bound, without reading their seq.
        let run = runs[0];
        let mut doc = run.bound(&q.as_of, history.ts_monotonic());
        while doc > run.start && out.len() < target_len {
            doc -= 1;
            if !is_taken((0, doc)) {
                out.push(Pick {
                    run: 0,
                    doc,
                    score: 0.0,
                });
            }
        }
        return;
    }
    let stop_below = q.filter.since.filter(|_| history.ts_monotonic());
    history.for_each_newest_first(&q.as_of, |i, doc| {
        let seg = runs[i].seg;
        if stop_below.is_some_and(|s| seg.timestamp(doc) < s) {
            return false;
        }
        if !is_taken((i, doc)) && admits(seg, doc, q, false) {
            out.push(Pick {
                run: i,
                doc,
                score: 0.0,
            });
        }
        out.len() < target_len
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_display_and_serialize_from_the_registry() {
        assert_eq!(
            StrategyKind::HELP,
            "recent, sim-hard, ubr, hybrid, sim-soft, eta, sdim"
        );
        for k in StrategyKind::ALL {
            assert_eq!(k.as_str().parse::<StrategyKind>().unwrap(), k);
            assert_eq!(k.to_string(), k.as_str());
            assert_eq!(k.build().name(), k.as_str());
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<StrategyKind>(&json).unwrap(), k);
        }
        assert_eq!(
            "sim_hard".parse::<StrategyKind>().unwrap(),
            StrategyKind::SimHard
        );
        // The alias parses on the command line; the serde form is the name.
        assert!(serde_json::from_str::<StrategyKind>("\"sim_hard\"").is_err());
        let err = "magic".parse::<StrategyKind>().unwrap_err().to_string();
        assert!(err.contains("recent, sim-hard, ubr, hybrid"), "{err}");
        let embedding: Vec<StrategyKind> = StrategyKind::ALL
            .into_iter()
            .filter(|k| k.needs_embeddings())
            .collect();
        assert_eq!(
            embedding,
            [StrategyKind::SimSoft, StrategyKind::Eta, StrategyKind::Sdim]
        );
        for k in embedding {
            let err = k
                .build_with(&crate::RetrievalContext::default())
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("hindsight embeddings attach"), "{err}");
        }
    }
}
