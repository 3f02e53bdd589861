//! The tantivy schema of a behavior index (schema version 1).
//!
//! One document per behavior. Nothing is stored in tantivy's doc store:
//! every value retrieval returns is read from fast-field columns, which is
//! an order of magnitude cheaper than decompressing stored documents.
//!
//! | field  | type                  | what                                                        |
//! |--------|-----------------------|-------------------------------------------------------------|
//! | `uk`   | u64 fast              | `user << 24 \| seq`; the index sort key (see below)         |
//! | `user` | u64 indexed           | the user id, for whole-user operations and the naive query  |
//! | `keys` | u64 indexed, multi    | feature keys (user, feature) from [`hindsight_core::feature_key`] |
//! | `ts`   | i64 fast              | Unix seconds                                                |
//! | `item` | u64 fast, indexed     | item id (indexed to look up an item's features)             |
//! | `btype`| u64 fast              | behavior type id                                            |
//! | `cats` | u64 fast, multi       | category ids                                                |
//! | `tags` | u64 fast, multi       | tag ids                                                     |
//! | `bkey` | u64 fast              | behavior identity, for idempotent re-ingest                 |
//!
//! The index is sorted by `uk` (tantivy `IndexSettings::sort_by_field`),
//! at segment flush and through every merge. So in every segment each
//! user's behaviors form one contiguous run of doc ids in increasing `seq`:
//! finding a user's run is a binary search on `uk`, "the N most recent
//! behaviors before seq s" is a binary search plus N reads, and a posting
//! list of a (user, feature) key read up to a doc-id bound is exactly
//! the behaviors before the as-of point.
//!
//! The encoding of a behavior as a document (its [`behavior_keys`], its
//! length [`key_count`], the values of each field) lives here, once: the
//! writer builds documents with it, and retrieval's BM25 reads document
//! lengths through it.

use hindsight_core::{feature_key, FeatureKind, ItemFeatures, Seq};
use tantivy::schema::{Field, NumericOptions, Schema};
use tantivy::TantivyDocument;

use crate::writer::NewBehavior;

/// Version of the on-disk layout this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

// The layout's bounds live in `hindsight_core::limits` (every entry point
// validates against them); re-exported here where the layout uses them.
pub use hindsight_core::limits::{MAX_SEQ, MAX_USER_ID, SEQ_BITS};

/// The sort key of a behavior.
#[inline]
pub fn user_seq_key(user: u64, seq: u32) -> u64 {
    (user << SEQ_BITS) | seq as u64
}

/// Splits a sort key into (user, seq).
#[inline]
pub fn split_user_seq_key(uk: u64) -> (u64, u32) {
    (uk >> SEQ_BITS, (uk & MAX_SEQ as u64) as u32)
}

/// The number of feature keys of a behavior document, its length for
/// BM25: one for the item, one for the behavior type, one per category and
/// one per tag (see [`behavior_keys`]).
#[inline]
pub fn key_count(categories: usize, tags: usize) -> u32 {
    2 + (categories + tags) as u32
}

/// The feature keys a behavior of `user` is indexed under (the `keys`
/// field), in the order they are written: item, behavior type, each
/// category, each tag. There are [`key_count`] of them.
pub fn behavior_keys(
    user: u64,
    item: u64,
    behavior_type: u8,
    features: &ItemFeatures,
) -> impl Iterator<Item = u64> + '_ {
    [
        feature_key(user, FeatureKind::Item, item),
        feature_key(user, FeatureKind::BehaviorType, behavior_type as u64),
    ]
    .into_iter()
    .chain(
        features
            .categories
            .iter()
            .map(move |&c| feature_key(user, FeatureKind::Category, c)),
    )
    .chain(
        features
            .tags
            .iter()
            .map(move |&t| feature_key(user, FeatureKind::Tag, t)),
    )
}

/// The document of a behavior with its sequence number and identity key.
pub(crate) fn behavior_document(
    fields: &Fields,
    b: &NewBehavior,
    seq: Seq,
    identity: u64,
) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    doc.add_u64(fields.uk, user_seq_key(b.user_id, seq));
    doc.add_u64(fields.user, b.user_id);
    for key in behavior_keys(b.user_id, b.item_id, b.behavior_type, &b.features) {
        doc.add_u64(fields.keys, key);
    }
    for &c in &b.features.categories {
        doc.add_u64(fields.cats, c);
    }
    for &t in &b.features.tags {
        doc.add_u64(fields.tags, t);
    }
    doc.add_i64(fields.ts, b.timestamp);
    doc.add_u64(fields.item, b.item_id);
    doc.add_u64(fields.btype, b.behavior_type as u64);
    doc.add_u64(fields.bkey, identity);
    doc
}

/// Field handles of the behavior schema.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    /// `user << 24 | seq`.
    pub uk: Field,
    /// User id (indexed).
    pub user: Field,
    /// Feature keys (indexed).
    pub keys: Field,
    /// Timestamp.
    pub ts: Field,
    /// Item id.
    pub item: Field,
    /// Behavior type id.
    pub btype: Field,
    /// Category ids.
    pub cats: Field,
    /// Tag ids.
    pub tags: Field,
    /// Behavior identity.
    pub bkey: Field,
}

/// Field names, shared by writer and reader.
pub(crate) mod names {
    pub const UK: &str = "uk";
    pub const USER: &str = "user";
    pub const KEYS: &str = "keys";
    pub const TS: &str = "ts";
    pub const ITEM: &str = "item";
    pub const BTYPE: &str = "btype";
    pub const CATS: &str = "cats";
    pub const TAGS: &str = "tags";
    pub const BKEY: &str = "bkey";
}

/// Builds the schema and its field handles.
pub(crate) fn build_schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fast = NumericOptions::default().set_fast();
    let indexed = NumericOptions::default().set_indexed();
    let fields = Fields {
        uk: b.add_u64_field(names::UK, fast.clone()),
        user: b.add_u64_field(names::USER, indexed.clone()),
        keys: b.add_u64_field(names::KEYS, indexed),
        ts: b.add_i64_field(names::TS, fast.clone()),
        item: b.add_u64_field(names::ITEM, fast.clone().set_indexed()),
        btype: b.add_u64_field(names::BTYPE, fast.clone()),
        cats: b.add_u64_field(names::CATS, fast.clone()),
        tags: b.add_u64_field(names::TAGS, fast.clone()),
        bkey: b.add_u64_field(names::BKEY, fast),
    };
    (b.build(), fields)
}

/// Field handles of an existing schema; fails if a field is missing.
pub(crate) fn fields_of(schema: &Schema) -> tantivy::Result<Fields> {
    Ok(Fields {
        uk: schema.get_field(names::UK)?,
        user: schema.get_field(names::USER)?,
        keys: schema.get_field(names::KEYS)?,
        ts: schema.get_field(names::TS)?,
        item: schema.get_field(names::ITEM)?,
        btype: schema.get_field(names::BTYPE)?,
        cats: schema.get_field(names::CATS)?,
        tags: schema.get_field(names::TAGS)?,
        bkey: schema.get_field(names::BKEY)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_key_orders_by_user_then_seq() {
        assert!(user_seq_key(1, MAX_SEQ) < user_seq_key(2, 0));
        assert!(user_seq_key(7, 3) < user_seq_key(7, 4));
        assert_eq!(
            split_user_seq_key(user_seq_key(MAX_USER_ID, 12)),
            (MAX_USER_ID, 12)
        );
    }

    #[test]
    fn a_behavior_has_key_count_distinct_keys_of_its_own_user() {
        let features = ItemFeatures {
            categories: vec![3, 4],
            tags: vec![9],
        };
        let keys: Vec<u64> = behavior_keys(7, 11, 2, &features).collect();
        assert_eq!(keys.len(), key_count(2, 1) as usize);
        assert_eq!(key_count(0, 0), 2);
        assert_eq!(
            keys,
            [
                feature_key(7, FeatureKind::Item, 11),
                feature_key(7, FeatureKind::BehaviorType, 2),
                feature_key(7, FeatureKind::Category, 3),
                feature_key(7, FeatureKind::Category, 4),
                feature_key(7, FeatureKind::Tag, 9),
            ]
        );
        let other: Vec<u64> = behavior_keys(8, 11, 2, &features).collect();
        assert!(keys.iter().all(|k| !other.contains(k)), "keys are per user");
    }
}
