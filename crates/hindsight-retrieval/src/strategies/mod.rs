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

use hindsight_index::{DocId, History, SegmentView};

use crate::{Query, Retrieved};

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
    out: &mut Vec<Retrieved>,
) {
    if need == 0 {
        return;
    }
    let target_len = out.len() + need;
    let runs = history.runs();
    let stop_below = q.filter.since.filter(|_| history.ts_monotonic());
    history.for_each_newest_first(&q.as_of, |i, doc| {
        let seg = runs[i].seg;
        if stop_below.is_some_and(|s| seg.timestamp(doc) < s) {
            return false;
        }
        if !taken.contains(&(i, doc)) && admits(seg, doc, q, false) {
            out.push(Retrieved {
                behavior: seg.behavior(doc),
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
