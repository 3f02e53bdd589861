//! `recent`: the N most recent behaviors before the as-of point, the
//! baseline every long-sequence paper compares with.

use hindsight_index::History;

use super::{materialize, pad_with_recent, BatchBuilder, Pick, StrategyKind};
use crate::{BatchRetrieved, Query, Result, RetrievalStrategy, Retrieved};

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
        let mut picks = Vec::with_capacity(q.n.min(1024));
        pad_with_recent(history, q, q.n, &[], &mut picks);
        materialize(history, &picks, out);
        Ok(())
    }

    /// Candidates with the same budget, as-of point and filter get the
    /// same behaviors: computed once per distinct (n, as-of, filter).
    fn retrieve_batch(
        &self,
        history: &History<'_>,
        queries: &[Query<'_>],
    ) -> Result<BatchRetrieved> {
        let mut b = BatchBuilder::new(history, queries.len());
        let mut done: Vec<(usize, Vec<Pick>)> = Vec::new();
        for (qi, q) in queries.iter().enumerate() {
            // Few distinct (n, as-of, filter) in a request: a linear search.
            let same = |&(j, _): &(usize, Vec<Pick>)| {
                let p: &Query<'_> = &queries[j];
                p.n == q.n && p.as_of == q.as_of && p.filter == q.filter
            };
            if let Some((_, picks)) = done.iter().find(|d| same(d)) {
                b.set(qi, picks);
                continue;
            }
            let mut picks = Vec::with_capacity(q.n.min(1024));
            pad_with_recent(history, q, q.n, &[], &mut picks);
            b.set(qi, &picks);
            done.push((qi, picks));
        }
        Ok(b.out)
    }
}
