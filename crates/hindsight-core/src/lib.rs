//! Domain types shared by every hindsight crate.
//!
//! A *behavior* is one event of a user's lifelong log (a page view, a
//! purchase, a rating): who, which item, the item's features, what kind of
//! event and when. Each behavior carries its per-user sequence number `seq`,
//! the position of the behavior in that user's history; retrieval "as of"
//! a target only ever sees behaviors with a smaller `seq` (and, when asked,
//! a smaller timestamp), which is how the engine guarantees that nothing at
//! or after a target leaks into its features.
//!
//! Item features are kept deliberately small and typed: a set of category
//! ids (taobao's category, movielens' genres) and a set of tag ids
//! (movielens user tags). String-valued features are mapped to ids by the
//! index's vocabularies.

use serde::{Deserialize, Serialize};

pub mod cache;
pub mod host;
mod keys;
pub mod limits;
pub mod metrics;

pub use keys::{feature_key, mix64, splitmix64, FeatureKind};

/// A user id as found in the logs.
pub type UserId = u64;
/// An item id as found in the logs.
pub type ItemId = u64;
/// A per-user sequence number: 0 for the user's first behavior.
pub type Seq = u32;

/// The features of an item that retrieval and models use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFeatures {
    /// Category ids (one for taobao, the genres for movielens). Sorted, unique.
    #[serde(default)]
    pub categories: Vec<u64>,
    /// Tag ids (movielens user tags). Sorted, unique.
    #[serde(default)]
    pub tags: Vec<u64>,
}

impl ItemFeatures {
    /// Features with the given categories and no tags; sorts and dedups.
    pub fn with_categories(mut categories: Vec<u64>) -> Self {
        categories.sort_unstable();
        categories.dedup();
        Self {
            categories,
            tags: Vec::new(),
        }
    }

    /// Sorts and dedups both lists, the form every other API assumes.
    pub fn normalize(&mut self) {
        self.categories.sort_unstable();
        self.categories.dedup();
        self.tags.sort_unstable();
        self.tags.dedup();
    }
}

/// One behavior of a user's history, as stored in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behavior {
    /// The user.
    pub user_id: UserId,
    /// Position in the user's history (0-based).
    pub seq: Seq,
    /// The item acted upon.
    pub item_id: ItemId,
    /// The item's features at ingest time.
    pub features: ItemFeatures,
    /// Behavior type id (index into the index's behavior-type vocabulary).
    pub behavior_type: u8,
    /// Unix seconds.
    pub timestamp: i64,
}

/// The item being scored, with the features retrieval queries by.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The candidate item.
    pub item_id: ItemId,
    /// Its features.
    #[serde(default)]
    pub features: ItemFeatures,
}

/// The point in a user's history a retrieval is made "as of": only
/// behaviors strictly before it are eligible.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsOf {
    /// Only behaviors with `seq < seq` are eligible.
    pub seq: Option<Seq>,
    /// Only behaviors with `timestamp < timestamp` are eligible.
    pub timestamp: Option<i64>,
}

impl AsOf {
    /// The whole history: nothing is excluded.
    pub const NOW: AsOf = AsOf {
        seq: None,
        timestamp: None,
    };

    /// As of a sequence number.
    pub fn seq(seq: Seq) -> Self {
        Self {
            seq: Some(seq),
            timestamp: None,
        }
    }

    /// As of a timestamp.
    pub fn timestamp(ts: i64) -> Self {
        Self {
            seq: None,
            timestamp: Some(ts),
        }
    }

    /// Whether a behavior with this seq and timestamp is strictly before the point.
    #[inline]
    pub fn admits(&self, seq: Seq, timestamp: i64) -> bool {
        self.seq.is_none_or(|s| seq < s) && self.timestamp.is_none_or(|t| timestamp < t)
    }
}

/// Restrictions on which behaviors may be retrieved, beyond the as-of point.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BehaviorFilter {
    /// Only these behavior type ids (empty: all).
    #[serde(default)]
    pub behavior_types: Vec<u8>,
    /// Only behaviors with `timestamp >= since`.
    pub since: Option<i64>,
    /// Only behaviors with `timestamp < until`.
    pub until: Option<i64>,
}

impl BehaviorFilter {
    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.behavior_types.is_empty() && self.since.is_none() && self.until.is_none()
    }

    /// Whether a behavior passes the filter.
    #[inline]
    pub fn admits(&self, behavior_type: u8, timestamp: i64) -> bool {
        (self.behavior_types.is_empty() || self.behavior_types.contains(&behavior_type))
            && self.since.is_none_or(|s| timestamp >= s)
            && self.until.is_none_or(|u| timestamp < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_is_strict() {
        let a = AsOf::seq(10);
        assert!(a.admits(9, 0));
        assert!(!a.admits(10, 0));
        let t = AsOf::timestamp(100);
        assert!(t.admits(50, 99));
        assert!(!t.admits(0, 100));
        assert!(AsOf::NOW.admits(u32::MAX, i64::MAX));
    }

    #[test]
    fn filter_window_and_types() {
        let f = BehaviorFilter {
            behavior_types: vec![2, 3],
            since: Some(10),
            until: Some(20),
        };
        assert!(f.admits(2, 10));
        assert!(!f.admits(2, 20));
        assert!(!f.admits(1, 15));
        assert!(BehaviorFilter::default().admits(9, -5));
    }
}
