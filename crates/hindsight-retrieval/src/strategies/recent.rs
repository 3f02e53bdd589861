//! `recent`: the N most recent behaviors before the as-of point, the
//! baseline every long-sequence paper compares with.

use hindsight_index::History;

use super::{pad_with_recent, StrategyKind};
use crate::{Query, Result, RetrievalStrategy, Retrieved};

/// The N most recent behaviors before the as-of point (score 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct Recent;

impl RetrievalStrategy for Recent {
    fn name(&self) -> &'static str {
        StrategyKind::Recent.as_str()
    }

    fn retrieve(
        &self,
        history: &History<'_>,
        q: &Query<'_>,
        out: &mut Vec<Retrieved>,
    ) -> Result<()> {
        pad_with_recent(history, q, q.n, &[], out);
        Ok(())
    }
}
