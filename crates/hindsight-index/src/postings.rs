//! Reading the postings of a user's feature keys within the user's run.
//!
//! Feature keys are hashed `(user, feature)` terms (see [`crate::schema`]),
//! so a key's posting list in a segment is a subset of the user's run of
//! doc ids; since doc order is `seq` order within the run, the postings
//! read up to a doc bound are exactly the user's behaviors with the feature
//! before the as-of point. [`KeyPostings`] reads a key's postings in any
//! doc range of the run; [`NewestMatches`] reads the union of some keys'
//! postings newest first, a window at a time, so that a caller who needs
//! only the newest matches pays for about those and not for how often the
//! user has the feature.

use tantivy::postings::{SegmentPostings, TermInfo};
use tantivy::DocSet;

use crate::snapshot::{DocId, Run};
use crate::Result;

/// The postings of one feature key of a user in the user's run of one
/// segment (from [`Run::postings`]): tantivy's posting list, or for the
/// category and tag keys of a warmed segment the same documents held in
/// memory (see `key_docs`).
#[derive(Clone)]
pub struct KeyPostings<'a> {
    run: Run<'a>,
    source: Source<'a>,
}

#[derive(Clone)]
enum Source<'a> {
    Tantivy(TermInfo),
    Memory(&'a [DocId]),
}

impl<'a> KeyPostings<'a> {
    pub(crate) fn new(run: Run<'a>, info: TermInfo) -> Self {
        KeyPostings {
            run,
            source: Source::Tantivy(info),
        }
    }

    /// `docs`: every document of the run's segment holding the key, ascending.
    pub(crate) fn in_memory(run: Run<'a>, docs: &'a [DocId]) -> Self {
        KeyPostings {
            run,
            source: Source::Memory(docs),
        }
    }

    /// Number of documents of the segment that hold the key: the run's
    /// behaviors with the feature (keys are 64-bit hashes of (user,
    /// feature), so another user's behavior holds it only on a hash
    /// collision; [`docs`](Self::docs) never leaves the run).
    pub fn doc_freq(&self) -> u32 {
        match &self.source {
            Source::Tantivy(info) => info.doc_freq,
            Source::Memory(docs) => docs.len() as u32,
        }
    }

    /// The run these postings belong to.
    pub fn run(&self) -> &Run<'a> {
        &self.run
    }

    /// For postings held in memory (a warmed segment's category or tag
    /// key): the run's documents before `bound` that hold the key, newest
    /// first, without windows. `None` for tantivy's postings, which read
    /// forwards only ([`NewestMatches`] reads those newest first).
    pub fn newest_before(&self, bound: DocId) -> Option<impl Iterator<Item = DocId> + 'a> {
        match self.source {
            Source::Tantivy(_) => None,
            Source::Memory(all) => Some(
                in_range(all, self.run.start, bound.min(self.run.end))
                    .iter()
                    .rev()
                    .copied(),
            ),
        }
    }

    /// The documents of the run in `[from, to)` that hold the key,
    /// ascending. Each call opens the posting list afresh (they can only be
    /// read forwards).
    pub fn docs(&self, from: DocId, to: DocId) -> Result<PostingDocs<'a>> {
        let (from, to) = (from.max(self.run.start), to.min(self.run.end));
        Ok(match &self.source {
            Source::Tantivy(info) => {
                let postings = self.run.seg.postings_from(info)?;
                let doc = postings.doc();
                let mut docs = PostingDocs(Cursor::Tantivy { postings, doc, to });
                docs.skip_to(from);
                docs
            }
            Source::Memory(all) => PostingDocs(Cursor::Memory(in_range(all, from, to).iter())),
        })
    }
}

/// The docs of ascending `all` in `[from, to)`.
#[inline]
fn in_range(all: &[DocId], from: DocId, to: DocId) -> &[DocId] {
    let lo = all.partition_point(|&d| d < from);
    let hi = lo + all[lo..].partition_point(|&d| d < to);
    &all[lo..hi]
}

/// An ascending cursor over a key's documents in a doc range (from
/// [`KeyPostings::docs`]).
pub struct PostingDocs<'a>(Cursor<'a>);

// The tantivy cursor is the large one, and the one opened per read: boxing
// it would add an allocation to every open.
#[allow(clippy::large_enum_variant)]
enum Cursor<'a> {
    /// A tantivy posting list.
    Tantivy {
        postings: SegmentPostings,
        /// The next document to yield (`tantivy::TERMINATED` at the end).
        doc: DocId,
        /// One past the last document to yield.
        to: DocId,
    },
    /// The documents in range of a key held in memory.
    Memory(std::slice::Iter<'a, DocId>),
}

impl PostingDocs<'_> {
    /// Skips forward: the next document yielded is the first at or after
    /// `target`. A target at or before the cursor changes nothing.
    pub fn skip_to(&mut self, target: DocId) {
        match &mut self.0 {
            Cursor::Tantivy { postings, doc, .. } => {
                // tantivy's `seek` requires a target at or after the current
                // doc, and a fresh posting list already sits on its first doc.
                if *doc < target {
                    *doc = postings.seek(target);
                }
            }
            Cursor::Memory(it) => {
                let rest = it.as_slice();
                let skip = rest.partition_point(|&d| d < target);
                *it = rest[skip..].iter();
            }
        }
    }
}

impl Iterator for PostingDocs<'_> {
    type Item = DocId;

    #[inline]
    fn next(&mut self) -> Option<DocId> {
        match &mut self.0 {
            Cursor::Tantivy { postings, doc, to } => {
                // TERMINATED is u32::MAX, never below `to`.
                if *doc >= *to {
                    return None;
                }
                let d = *doc;
                *doc = postings.advance();
                Some(d)
            }
            Cursor::Memory(it) => it.next().copied(),
        }
    }
}

/// Reads the union of some keys' postings in one run newest first, one
/// window of doc ids at a time, going down from a doc bound (the as-of
/// point) to the run's start.
///
/// Callers that need the newest `want` matches (SIM hard search) or read
/// until a score bound stops them (UBR's frequent terms) use the same
/// reader, so the cost of both follows what they need, not the feature's
/// frequency.
///
/// The window rule: the first window is the span expected to hold `want`
/// matches at the keys' density in the run (their document frequencies
/// over the run's length; the frequencies count the whole run, so the
/// whole run is their denominator), with 50% and 64 docs of slack; every
/// later window is twice the previous one, and never smaller than the
/// estimate for the keys it is given. Windows are disjoint, so doubling
/// reads at most about twice the span holding the matches wanted and
/// reopens the postings a logarithmic number of times.
pub struct NewestMatches<'a> {
    run: Run<'a>,
    /// The next window ends here (exclusive).
    hi: DocId,
    /// Size of the last window, 0 before the first.
    window: u64,
}

impl<'a> NewestMatches<'a> {
    /// A reader of `run`'s documents before `bound` (clamped to the run).
    pub fn new(run: Run<'a>, bound: DocId) -> Self {
        NewestMatches {
            hi: bound.clamp(run.start, run.end),
            run,
            window: 0,
        }
    }

    /// Whether everything down to the run's start has been read.
    pub fn is_exhausted(&self) -> bool {
        self.hi <= self.run.start
    }

    /// Reads the next, older window: the documents in it that hold any of
    /// `keys` (postings of this reader's run), newest first, into `out`
    /// (cleared first; empty windows are possible). `want` is the number
    /// of matches the caller expects to need, which sizes the window.
    /// Returns false, reading nothing, once the run is exhausted or when
    /// none of `keys` occurs in the run.
    pub fn next_window(
        &mut self,
        keys: &[&KeyPostings<'a>],
        want: usize,
        out: &mut Vec<DocId>,
    ) -> Result<bool> {
        out.clear();
        if self.is_exhausted() {
            return Ok(false);
        }
        let matches: u64 = keys.iter().map(|k| k.doc_freq() as u64).sum();
        if matches == 0 {
            return Ok(false);
        }
        let density = (matches as f64 / self.run.len().max(1) as f64).clamp(1e-6, 1.0);
        let estimate = ((want as f64 / density) * 1.5) as u64 + 64;
        self.window = self.window.max(estimate);
        let lo = if (self.hi - self.run.start) as u64 <= self.window {
            self.run.start
        } else {
            self.hi - self.window as DocId
        };
        for key in keys {
            out.extend(key.docs(lo, self.hi)?);
        }
        if keys.len() > 1 {
            out.sort_unstable();
            out.dedup();
        }
        out.reverse();
        self.hi = lo;
        self.window = self.window.saturating_mul(2);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use hindsight_core::{AsOf, FeatureKind, ItemFeatures};
    use hindsight_logs::DatasetMapping;
    use proptest::prelude::*;

    use crate::{BehaviorIndex, NewBehavior};

    /// One user with `len` behaviors in one segment; behavior `i` has
    /// category `cats[i]` (and category 100 on every 7th).
    fn index_with(dir: &std::path::Path, cats: &[u64]) -> BehaviorIndex {
        let index = BehaviorIndex::create(dir, &DatasetMapping::preset("taobao").unwrap()).unwrap();
        let batch: Vec<NewBehavior> = cats
            .iter()
            .enumerate()
            .map(|(i, &c)| NewBehavior {
                user_id: 3,
                item_id: i as u64,
                features: ItemFeatures::with_categories(if i % 7 == 0 {
                    vec![c, 100]
                } else {
                    vec![c]
                }),
                behavior_type: 0,
                timestamp: i as i64,
            })
            .collect();
        // Another user before and after, so the run does not start at doc 0.
        let mut around = vec![
            NewBehavior {
                user_id: 1,
                item_id: 1,
                features: ItemFeatures::with_categories(vec![1]),
                behavior_type: 0,
                timestamp: 0,
            };
            5
        ];
        for (i, b) in around.iter_mut().enumerate() {
            b.timestamp = i as i64;
        }
        let mut after = around.clone();
        for b in &mut after {
            b.user_id = 9;
        }
        index.append(&[around, batch, after].concat()).unwrap();
        index
    }

    #[test]
    fn key_postings_stay_in_the_run_and_seek_forward() {
        let dir = tempfile::tempdir().unwrap();
        let cats: Vec<u64> = (0..40).map(|i| i % 3).collect();
        let index = index_with(dir.path(), &cats);
        let snap = index.snapshot();
        let history = snap.history(3);
        let run = history.runs()[0];
        assert_eq!(run.len(), 40);
        let p = run.postings(FeatureKind::Category, 1).unwrap().unwrap();
        // Category 1 is also user 1's, in another run: not counted, not read.
        assert_eq!(p.doc_freq(), 13);
        let all: Vec<u32> = p.docs(0, u32::MAX).unwrap().collect();
        let want: Vec<u32> = (0..40)
            .filter(|i| i % 3 == 1)
            .map(|i| run.start + i)
            .collect();
        assert_eq!(all, want);
        let mut docs = p.docs(run.start + 5, run.start + 20).unwrap();
        assert_eq!(docs.next(), Some(run.start + 7));
        docs.skip_to(run.start + 14);
        assert_eq!(docs.next(), Some(run.start + 16));
        docs.skip_to(run.start); // backwards: no effect
        assert_eq!(docs.next(), Some(run.start + 19));
        assert_eq!(docs.next(), None);
        assert!(run.postings(FeatureKind::Category, 55).unwrap().is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Reading every window down to the run's start gives exactly the
        /// full read of the keys' postings before the bound, newest first,
        /// whatever `want` sizes the windows.
        #[test]
        fn windows_equal_a_full_read(
            cats in prop::collection::vec(0u64..4, 1..300),
            keys in prop::collection::vec(0u64..5, 1..3),
            bound in 0usize..320,
            want in 0usize..40,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let index = index_with(dir.path(), &cats);
            let snap = index.snapshot();
            let history = snap.history(3);
            let run = history.runs()[0];
            let bound = run.start + (bound.min(cats.len()) as u32);
            let mut postings = Vec::new();
            for &k in keys.iter().chain([&100]) {
                postings.extend(run.postings(FeatureKind::Category, k).unwrap());
            }
            let refs: Vec<_> = postings.iter().collect();
            let mut full: Vec<u32> = Vec::new();
            for p in &refs {
                full.extend(p.docs(run.start, bound).unwrap());
            }
            full.sort_unstable();
            full.dedup();
            full.reverse();
            let mut reader = super::NewestMatches::new(run, bound);
            let (mut got, mut window, mut windows) = (Vec::new(), Vec::new(), 0);
            while reader.next_window(&refs, want, &mut window).unwrap() {
                prop_assert!(window.windows(2).all(|w| w[0] > w[1]), "newest first");
                got.extend_from_slice(&window);
                windows += 1;
            }
            prop_assert_eq!(&got, &full);
            // Keys that occur are read down to the run's start.
            prop_assert!(refs.is_empty() || reader.is_exhausted());
            // The docs before the bound are the behaviors before the as-of seq.
            let as_of = AsOf::seq(bound - run.start);
            prop_assert_eq!(run.bound(&as_of, true), bound);
            prop_assert!(windows <= 12, "{} windows", windows);
        }
    }
}
