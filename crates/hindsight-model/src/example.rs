//! One training or scoring sample.

use hindsight_core::{Behavior, Target};
use serde::{Deserialize, Serialize};

/// One sample: a user, a target item, its label and the behaviors retrieved
/// for it.
///
/// `history` is the retrieved subsequence (at most N behaviors; when there
/// are more, the N with the largest `seq` are used). Its order does not
/// matter: the crate sorts by `seq` ascending wherever order matters (DIEN's
/// GRU runs in chronological order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The user.
    pub user_id: u64,
    /// 1 for a click (positive), 0 otherwise; ignored when scoring.
    pub label: u8,
    /// The item to score.
    pub target: Target,
    /// When the target is shown (unix seconds); time gaps of the history
    /// are measured from it.
    pub timestamp: i64,
    /// The retrieved behaviors.
    pub history: Vec<Behavior>,
}
