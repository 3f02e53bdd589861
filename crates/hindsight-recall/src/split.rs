//! The recall protocol's chronological leave-last-out split.
//!
//! For every user with at least [`RecallSplit::MIN_BEHAVIORS`] behaviors
//! (or the minimum given), ordered by their per-user sequence number:
//!
//! * **test**: the last behavior; its history is every behavior before it;
//! * **valid**: the behavior before the last; its history is every
//!   behavior before it;
//! * **train**: every behavior before the valid one. A model trained on
//!   this split sees no behavior at or after a user's valid position.
//!
//! This is RecBole's `LS` (leave-one-out, `valid_and_test`) order and the
//! SASRec paper's. Repeated items are kept: on taobao users revisit items,
//! so a test item may already be in the history (the `repeat` baseline
//! exists for that reason). Whether seen items are masked when ranking is
//! a choice of the evaluation, not of the split.

use hindsight_core::{AsOf, Behavior, ItemFeatures, ItemId, UserId};
use hindsight_index::Snapshot;

use crate::{RecallError, Result};

/// One user's chronological behaviors, split leave-last-out.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSequence {
    /// The user.
    pub user: UserId,
    /// All of the user's behaviors, oldest first (at least 3).
    pub behaviors: Vec<Behavior>,
}

impl UserSequence {
    /// The training part: every behavior before the valid one.
    pub fn train(&self) -> &[Behavior] {
        &self.behaviors[..self.behaviors.len() - 2]
    }

    /// The validation target (the behavior before the last).
    pub fn valid(&self) -> &Behavior {
        &self.behaviors[self.behaviors.len() - 2]
    }

    /// The history the validation target is predicted from (= [`train`](Self::train)).
    pub fn valid_history(&self) -> &[Behavior] {
        self.train()
    }

    /// The test target (the last behavior).
    pub fn test(&self) -> &Behavior {
        &self.behaviors[self.behaviors.len() - 1]
    }

    /// The history the test target is predicted from: train and valid.
    pub fn test_history(&self) -> &[Behavior] {
        &self.behaviors[..self.behaviors.len() - 1]
    }
}

/// The leave-last-out split of a whole index, and its catalog.
#[derive(Debug, Clone)]
pub struct RecallSplit {
    /// Users with enough behaviors, ascending by user id.
    pub users: Vec<UserSequence>,
    /// Every item of the index with its features (as last indexed),
    /// ascending by item id: the catalog recall ranks over.
    pub catalog: Vec<(ItemId, ItemFeatures)>,
    /// Users left out for having fewer behaviors than the minimum.
    pub skipped_users: usize,
}

impl RecallSplit {
    /// The default minimum number of behaviors a user needs: one to train
    /// on, one to validate, one to test.
    pub const MIN_BEHAVIORS: usize = 3;

    /// Splits every user of `snapshot` with at least `min_behaviors`
    /// behaviors (values below 3 are raised to 3).
    pub fn leave_last_out(snapshot: &Snapshot, min_behaviors: usize) -> Result<RecallSplit> {
        let min = min_behaviors.max(Self::MIN_BEHAVIORS);
        let mut users = Vec::new();
        let mut skipped_users = 0;
        for user in snapshot.users() {
            let history = snapshot.history(user);
            if (history.len() as usize) < min {
                skipped_users += 1;
                continue;
            }
            let mut behaviors = history.newest(&AsOf::NOW, usize::MAX);
            behaviors.reverse();
            users.push(UserSequence { user, behaviors });
        }
        if users.is_empty() {
            return Err(RecallError::EmptySplit { min });
        }
        Ok(RecallSplit {
            users,
            catalog: catalog_of(snapshot),
            skipped_users,
        })
    }

    /// Number of training behaviors (over all users).
    pub fn train_len(&self) -> usize {
        self.users.iter().map(|u| u.train().len()).sum()
    }
}

/// Every item of `snapshot` with its features as last indexed (doc order
/// is oldest first within a segment: the last copy wins), ascending by id.
pub fn catalog_of(snapshot: &Snapshot) -> Vec<(ItemId, ItemFeatures)> {
    let mut catalog = std::collections::BTreeMap::new();
    snapshot.for_each_item(|item, features| {
        catalog.insert(item, features.clone());
    });
    catalog.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hindsight_index::{BehaviorIndex, NewBehavior};
    use hindsight_logs::DatasetMapping;

    /// An index of `(user, item, category, timestamp)` behaviors.
    fn index_of(rows: &[(u64, u64, u64, i64)]) -> (tempfile::TempDir, BehaviorIndex) {
        let dir = tempfile::tempdir().unwrap();
        let mapping = DatasetMapping::preset("taobao").unwrap();
        let index = BehaviorIndex::create(dir.path(), &mapping).unwrap();
        let batch: Vec<NewBehavior> = rows
            .iter()
            .map(|&(user_id, item_id, category, timestamp)| NewBehavior {
                user_id,
                item_id,
                features: ItemFeatures::with_categories(vec![category]),
                behavior_type: 0,
                timestamp,
            })
            .collect();
        index.append(&batch).unwrap();
        (dir, index)
    }

    #[test]
    fn splits_each_user_leave_last_out_in_seq_order() {
        // User 2 has two behaviors only.
        let (_dir, index) = index_of(&[
            (1, 10, 100, 1000),
            (1, 11, 100, 1001),
            (1, 12, 101, 1002),
            (1, 10, 100, 1003),
            (2, 10, 100, 1000),
            (2, 13, 102, 1005),
        ]);
        let split = RecallSplit::leave_last_out(&index.snapshot(), 0).unwrap();
        assert_eq!(split.users.len(), 1);
        assert_eq!(split.skipped_users, 1);
        let u = &split.users[0];
        assert_eq!(u.user, 1);
        let items = |bs: &[Behavior]| bs.iter().map(|b| b.item_id).collect::<Vec<_>>();
        assert_eq!(items(u.train()), vec![10, 11]);
        assert_eq!(u.valid().item_id, 12);
        assert_eq!(u.test().item_id, 10);
        assert_eq!(items(u.test_history()), vec![10, 11, 12]);
        assert!(u.behaviors.windows(2).all(|w| w[0].seq < w[1].seq));
        let catalog: Vec<u64> = split.catalog.iter().map(|(i, _)| *i).collect();
        assert_eq!(catalog, vec![10, 11, 12, 13]);
        assert_eq!(split.catalog[2].1.categories, vec![101]);
        assert_eq!(split.train_len(), 2);
    }

    #[test]
    fn an_index_of_short_histories_is_an_empty_split_error() {
        let (_dir, index) = index_of(&[(1, 10, 100, 1000), (1, 11, 100, 1001)]);
        let err = RecallSplit::leave_last_out(&index.snapshot(), 3).unwrap_err();
        assert!(matches!(err, RecallError::EmptySplit { min: 3 }), "{err}");
        assert!(err.to_string().contains("--min-behaviors"));
    }
}
