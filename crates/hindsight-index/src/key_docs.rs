//! In-memory postings of a warmed segment's (user, category) and (user,
//! tag) keys.
//!
//! A retrieval by category (`sim-hard`, `ubr`'s category and tag terms,
//! `hybrid`) first looks its keys up in the segment's term dictionary. The
//! keys are 64-bit hashes, so tantivy's FST walks a node per key byte with
//! no locality between lookups, and then decodes a postings block: a
//! profile of `sim-hard` over 50k-behavior histories in a 10M-behavior
//! index put about half of a query in those two steps (docs/benchmarks.md,
//! session 5). A warmed segment keeps, beside its rows, each such key's
//! documents in one array and the keys in an open-addressing table, so a
//! lookup is one probe into a table indexed by the key's own bits and the
//! documents a contiguous slice.
//!
//! Item keys stay in tantivy only: on a catalog that grows with the log
//! there is one per behavior. Holding the frequent ones (16 docs or more)
//! was tried: no gain beyond the run-to-run spread in three A/B rounds of
//! `ubr` and `hybrid` (docs/benchmarks.md, session 5).
//!
//! The slices hold exactly the postings tantivy holds for those terms:
//! every document of the segment indexed under the key, ascending (keys
//! are computed from each row's user and features by the same
//! [`feature_key`] the writer indexes). The one case that could differ is a
//! 64-bit hash collision between a category or tag key and an item or
//! behavior-type key, which these tables do not see.

use hindsight_core::{feature_key, FeatureKind};

use crate::schema::split_user_seq_key;
use crate::snapshot::DocId;

/// One key's documents in [`KeyDocs::docs`]; `len == 0` marks an empty slot
/// (every key present has at least one document).
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Slot {
    key: u64,
    start: u32,
    len: u32,
}

/// The (user, category) and (user, tag) postings of one segment.
pub(crate) struct KeyDocs {
    /// A power of two of slots, at most half full (linear probing from
    /// `key & mask`: keys are `mix64` outputs, uniform in their low bits).
    slots: Vec<Slot>,
    docs: Vec<DocId>,
}

/// Bytes per slot of the key table (two slots or more per key).
pub(crate) const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

impl KeyDocs {
    /// Builds the table from each document's user key and its categories
    /// and tags (`features(doc)` gives both lists). `None` where the
    /// segment holds 2^32 or more (document, key) pairs.
    pub(crate) fn build<'f>(
        docs: usize,
        user_key: impl Fn(usize) -> u64,
        features: impl Fn(usize) -> (&'f [u64], &'f [u64]),
    ) -> Option<KeyDocs> {
        let mut pairs: Vec<(u64, DocId)> = Vec::new();
        for doc in 0..docs {
            let user = split_user_seq_key(user_key(doc)).0;
            let (cats, tags) = features(doc);
            let d = DocId::try_from(doc).ok()?;
            pairs.extend(
                cats.iter()
                    .map(|&c| (feature_key(user, FeatureKind::Category, c), d)),
            );
            pairs.extend(
                tags.iter()
                    .map(|&t| (feature_key(user, FeatureKind::Tag, t), d)),
            );
        }
        u32::try_from(pairs.len()).ok()?;
        // By key, then doc: each key's documents ascending, as in tantivy.
        pairs.sort_unstable();
        pairs.dedup();
        let keys =
            pairs.windows(2).filter(|w| w[0].0 != w[1].0).count() + usize::from(!pairs.is_empty());
        let mut slots = vec![Slot::default(); (keys * 2).next_power_of_two().max(16)];
        let mask = slots.len() - 1;
        let mut start = 0usize;
        while start < pairs.len() {
            let key = pairs[start].0;
            let end = start + pairs[start..].iter().take_while(|p| p.0 == key).count();
            let mut i = key as usize & mask;
            while slots[i].len != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = Slot {
                key,
                start: start as u32,
                len: (end - start) as u32,
            };
            start = end;
        }
        let docs = pairs.into_iter().map(|p| p.1).collect();
        Some(KeyDocs { slots, docs })
    }

    /// The documents of `key`, ascending; `None` if no document has it.
    #[inline]
    pub(crate) fn get(&self, key: u64) -> Option<&[DocId]> {
        let mask = self.slots.len() - 1;
        let mut i = key as usize & mask;
        loop {
            let s = self.slots[i];
            if s.len == 0 {
                return None;
            }
            if s.key == key {
                return self.docs.get(s.start as usize..(s.start + s.len) as usize);
            }
            i = (i + 1) & mask;
        }
    }

    /// Memory held, in bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.slots.len() * SLOT_BYTES + self.docs.len() * std::mem::size_of::<DocId>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::user_seq_key;

    #[test]
    fn every_key_finds_its_documents_ascending() {
        // Three users, docs in user order; categories repeat across users.
        let users = [1u64, 1, 1, 2, 2, 7];
        let cats: Vec<Vec<u64>> = vec![vec![5], vec![5, 6], vec![], vec![5], vec![6], vec![5, 6]];
        let tags: Vec<Vec<u64>> = vec![vec![], vec![9], vec![9], vec![], vec![9], vec![]];
        let kd = KeyDocs::build(
            users.len(),
            |d| user_seq_key(users[d], d as u32),
            |d| (&cats[d][..], &tags[d][..]),
        )
        .unwrap();
        let key = |u, k, v| feature_key(u, k, v);
        assert_eq!(kd.get(key(1, FeatureKind::Category, 5)), Some(&[0, 1][..]));
        assert_eq!(kd.get(key(1, FeatureKind::Category, 6)), Some(&[1][..]));
        assert_eq!(kd.get(key(1, FeatureKind::Tag, 9)), Some(&[1, 2][..]));
        assert_eq!(kd.get(key(2, FeatureKind::Category, 5)), Some(&[3][..]));
        assert_eq!(kd.get(key(2, FeatureKind::Tag, 9)), Some(&[4][..]));
        assert_eq!(kd.get(key(7, FeatureKind::Category, 6)), Some(&[5][..]));
        // Absent: another user's category, a category as a tag, an item key.
        assert_eq!(kd.get(key(7, FeatureKind::Tag, 9)), None);
        assert_eq!(kd.get(key(2, FeatureKind::Tag, 5)), None);
        assert_eq!(kd.get(key(1, FeatureKind::Item, 5)), None);
        assert!(kd.bytes() >= 16 * SLOT_BYTES);
    }

    #[test]
    fn an_empty_segment_finds_nothing() {
        let kd = KeyDocs::build(0, |_| 0, |_| (&[][..], &[][..])).unwrap();
        assert_eq!(kd.get(12345), None);
    }
}
