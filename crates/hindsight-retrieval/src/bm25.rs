//! BM25 of a target's features against one user's history (the weighting
//! of [`Ubr`](crate::Ubr)), in one type: per-term weights, the score of a
//! behavior, per-term upper bounds and an explanation.
//!
//! Modelled on tantivy's `Bm25Weight` (`score`, `max_score`, `explain`),
//! with what UBR adds: the collection is the user's own history, term
//! frequencies are 1 (a behavior has a feature or not), the target item is
//! a tier of its own, and a behavior type may add a bonus.

use std::fmt;

use hindsight_core::FeatureKind;

/// One term of the query: a feature of the target and its weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryTerm {
    /// What kind of feature (item, category, tag).
    pub kind: FeatureKind,
    /// The feature's value (item id, category id, tag id).
    pub value: u64,
    /// The term's weight in the query (multiplies its IDF).
    pub weight: f32,
}

/// BM25's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bm25Params {
    /// Term-frequency saturation (term frequencies are 1 here, so it only
    /// shapes length normalization).
    pub k1: f32,
    /// Length normalization; 0 turns it off.
    pub b: f32,
}

/// BM25 weights of a query against one user's history.
///
/// With term frequencies of 1, a behavior's score is the sum of its matched
/// feature terms' weighted IDFs times the length normalization
/// `(k1 + 1) / (1 + k1 (1 - b + b dl / avgdl))`, plus the item tier when it
/// is on the target item (more than any behavior scores without it, so such
/// behaviors always rank first), plus its behavior type's bonus.
#[derive(Debug, Clone)]
pub struct Bm25Weight {
    terms: Vec<QueryTerm>,
    /// `weight * idf` per term.
    idf: Vec<f32>,
    params: Bm25Params,
    avg_dl: f32,
    /// The length normalization of the shortest behavior: no behavior's is
    /// larger.
    max_norm: f32,
    item_tier: f32,
    type_bonus: Vec<f32>,
    max_bonus: f32,
}

impl Bm25Weight {
    /// The weights of `terms`, given how many of the user's `n_docs`
    /// behaviors hold each (`doc_freqs[t]`), the average and the smallest
    /// behavior length (feature keys) of the index, and a bonus per
    /// behavior type id.
    pub fn new(
        terms: Vec<QueryTerm>,
        doc_freqs: &[u64],
        n_docs: u64,
        avg_dl: f32,
        min_dl: f32,
        params: Bm25Params,
        type_bonus: &[f32],
    ) -> Self {
        assert_eq!(terms.len(), doc_freqs.len(), "one frequency per term");
        let n_docs = n_docs as f32;
        let idf: Vec<f32> = terms
            .iter()
            .zip(doc_freqs)
            .map(|(t, &d)| {
                let d = d as f32;
                t.weight * (1.0 + (n_docs - d + 0.5) / (d + 0.5)).ln()
            })
            .collect();
        let mut w = Bm25Weight {
            terms,
            idf,
            params,
            avg_dl: avg_dl.max(1e-3),
            max_norm: 0.0,
            item_tier: 0.0,
            type_bonus: type_bonus.to_vec(),
            max_bonus: type_bonus.iter().copied().fold(0.0f32, f32::max),
        };
        w.max_norm = w.norm(min_dl);
        let is_item = |t: &usize| w.terms[*t].kind == FeatureKind::Item;
        let features_max: f32 = (0..w.terms.len())
            .filter(|t| !is_item(t))
            .map(|t| w.idf[t])
            .sum::<f32>()
            * w.max_norm;
        w.item_tier = features_max
            + w.max_bonus
            + (0..w.terms.len())
                .filter(is_item)
                .map(|t| w.idf[t])
                .sum::<f32>();
        w
    }

    /// The query's terms.
    pub fn terms(&self) -> &[QueryTerm] {
        &self.terms
    }

    /// The length normalization of a behavior with `dl` feature keys.
    pub fn norm(&self, dl: f32) -> f32 {
        let Bm25Params { k1, b } = self.params;
        if b == 0.0 {
            1.0
        } else {
            (k1 + 1.0) / (1.0 + k1 * (1.0 - b + b * dl / self.avg_dl))
        }
    }

    /// The score of a behavior of length `doc_len` and type
    /// `behavior_type`, where `has(term)` says whether it holds a term;
    /// `None` when it holds none of the terms.
    pub fn score(
        &self,
        has: impl Fn(&QueryTerm) -> bool,
        doc_len: u32,
        behavior_type: u8,
    ) -> Option<f32> {
        let (features, item_hit) = self.matched(&has);
        if features <= 0.0 && !item_hit {
            return None;
        }
        let mut score = features;
        if self.params.b != 0.0 && features > 0.0 {
            score *= self.norm(doc_len as f32);
        }
        if item_hit {
            score += self.item_tier;
        }
        if !self.type_bonus.is_empty() {
            score += self.bonus(behavior_type);
        }
        Some(score)
    }

    /// The most a behavior holding term `t` can score from it: the item
    /// tier for the item term, else the term's weight at the largest
    /// length normalization. A behavior scores at most
    /// [`max_bonus`](Self::max_bonus) plus the `max_score` of the terms it
    /// holds.
    pub fn max_score(&self, t: usize) -> f32 {
        if self.terms[t].kind == FeatureKind::Item {
            self.item_tier
        } else {
            self.idf[t] * self.max_norm
        }
    }

    /// The largest behavior-type bonus (0 without bonuses).
    pub fn max_bonus(&self) -> f32 {
        self.max_bonus
    }

    /// How [`score`](Self::score) arrives at a behavior's score.
    pub fn explain(
        &self,
        has: impl Fn(&QueryTerm) -> bool,
        doc_len: u32,
        behavior_type: u8,
    ) -> Explanation {
        let matched = self
            .terms
            .iter()
            .zip(&self.idf)
            .filter(|(t, _)| matches!(t.kind, FeatureKind::Category | FeatureKind::Tag) && has(t))
            .map(|(t, &w)| (*t, w))
            .collect();
        let item_hit = self.matched(&has).1;
        Explanation {
            matched,
            length_norm: if self.params.b == 0.0 {
                1.0
            } else {
                self.norm(doc_len as f32)
            },
            doc_len,
            item_tier: item_hit.then_some(self.item_tier),
            type_bonus: self.bonus(behavior_type),
            score: self.score(has, doc_len, behavior_type),
        }
    }

    /// The summed weights of the matched feature terms, and whether the item
    /// term matched, in term order.
    fn matched(&self, has: &impl Fn(&QueryTerm) -> bool) -> (f32, bool) {
        let (mut features, mut item_hit) = (0.0, false);
        for (t, term) in self.terms.iter().enumerate() {
            match term.kind {
                FeatureKind::Item => item_hit |= has(term),
                FeatureKind::Category | FeatureKind::Tag => {
                    if has(term) {
                        features += self.idf[t];
                    }
                }
                FeatureKind::BehaviorType => {}
            }
        }
        (features, item_hit)
    }

    fn bonus(&self, behavior_type: u8) -> f32 {
        self.type_bonus
            .get(behavior_type as usize)
            .copied()
            .unwrap_or(0.0)
    }
}

/// The parts of a behavior's BM25 score (from [`Bm25Weight::explain`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The matched category and tag terms with their weighted IDF.
    pub matched: Vec<(QueryTerm, f32)>,
    /// The length normalization applied to their sum.
    pub length_norm: f32,
    /// The behavior's length (feature keys).
    pub doc_len: u32,
    /// The item tier, when the behavior is on the target item.
    pub item_tier: Option<f32>,
    /// The behavior type's bonus (0 without bonuses).
    pub type_bonus: f32,
    /// The score (`None`: the behavior holds none of the terms).
    pub score: Option<f32>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(score) = self.score else {
            return f.write_str("no term matched");
        };
        writeln!(f, "{score} =")?;
        let sum: f32 = self.matched.iter().map(|m| m.1).sum();
        writeln!(
            f,
            "  {} (length norm, {} keys) x {sum} (matched terms)",
            self.length_norm, self.doc_len
        )?;
        for (t, w) in &self.matched {
            writeln!(f, "    {w}: {:?} {} (weight {})", t.kind, t.value, t.weight)?;
        }
        if let Some(tier) = self.item_tier {
            writeln!(f, "  + {tier} (the target item)")?;
        }
        write!(f, "  + {} (behavior type)", self.type_bonus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(kind: FeatureKind, value: u64, weight: f32) -> QueryTerm {
        QueryTerm {
            kind,
            value,
            weight,
        }
    }

    /// Item 7, categories 1 and 2, tag 9: a user with 100 behaviors of
    /// which 2 on the item, 50 and 5 in the categories, 20 with the tag.
    fn weight(b: f32, bonus: &[f32]) -> Bm25Weight {
        let terms = vec![
            term(FeatureKind::Item, 7, 1.0),
            term(FeatureKind::Category, 1, 1.0),
            term(FeatureKind::Category, 2, 1.0),
            term(FeatureKind::Tag, 9, 0.5),
        ];
        Bm25Weight::new(
            terms,
            &[2, 50, 5, 20],
            100,
            4.0,
            3.0,
            Bm25Params { k1: 1.2, b },
            bonus,
        )
    }

    fn holds(values: &'static [(FeatureKind, u64)]) -> impl Fn(&QueryTerm) -> bool {
        move |t| values.contains(&(t.kind, t.value))
    }

    #[test]
    fn score_is_bm25_with_binary_term_frequencies() {
        let w = weight(0.75, &[]);
        let idf = |d: f32| (1.0f32 + (100.0 - d + 0.5) / (d + 0.5)).ln();
        let norm = |dl: f32| 2.2 / (1.0 + 1.2 * (1.0 - 0.75 + 0.75 * dl / 4.0));
        let got = w.score(holds(&[(FeatureKind::Category, 2)]), 3, 0).unwrap();
        assert!((got - idf(5.0) * norm(3.0)).abs() < 1e-6, "{got}");
        let both = w
            .score(
                holds(&[(FeatureKind::Category, 1), (FeatureKind::Tag, 9)]),
                6,
                0,
            )
            .unwrap();
        let want = (idf(50.0) + 0.5 * idf(20.0)) * norm(6.0);
        assert!((both - want).abs() < 1e-6, "{both} {want}");
        // A rarer feature weighs more; a longer behavior less.
        assert!(got > w.score(holds(&[(FeatureKind::Category, 1)]), 3, 0).unwrap());
        assert!(got > w.score(holds(&[(FeatureKind::Category, 2)]), 9, 0).unwrap());
        assert_eq!(w.score(holds(&[(FeatureKind::Category, 3)]), 3, 0), None);
        // Without length normalization the length does not matter.
        let flat = weight(0.0, &[]);
        assert_eq!(
            flat.score(holds(&[(FeatureKind::Category, 2)]), 3, 0),
            flat.score(holds(&[(FeatureKind::Category, 2)]), 30, 0)
        );
    }

    #[test]
    fn the_item_is_a_tier_above_every_feature_only_match() {
        let w = weight(0.75, &[0.0, 0.3]);
        let all_features = w
            .score(
                holds(&[
                    (FeatureKind::Category, 1),
                    (FeatureKind::Category, 2),
                    (FeatureKind::Tag, 9),
                ]),
                3,
                1,
            )
            .unwrap();
        let item_only = w.score(holds(&[(FeatureKind::Item, 7)]), 40, 0).unwrap();
        assert!(item_only > all_features, "{item_only} {all_features}");
        // The bonus of the behavior type is added.
        let plain = w.score(holds(&[(FeatureKind::Tag, 9)]), 3, 0).unwrap();
        let bought = w.score(holds(&[(FeatureKind::Tag, 9)]), 3, 1).unwrap();
        assert!((bought - plain - 0.3).abs() < 1e-6);
    }

    #[test]
    fn max_score_bounds_every_score() {
        let w = weight(0.75, &[0.1, 0.4]);
        let kinds = [
            (FeatureKind::Item, 7),
            (FeatureKind::Category, 1),
            (FeatureKind::Category, 2),
            (FeatureKind::Tag, 9),
        ];
        for mask in 1u32..16 {
            let held: Vec<(FeatureKind, u64)> = (0..4)
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| kinds[i])
                .collect();
            let bound = w.max_bonus()
                + (0..4)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|t| w.max_score(t))
                    .sum::<f32>();
            for dl in 3..12 {
                for btype in 0..3 {
                    let s = w
                        .score(|t| held.contains(&(t.kind, t.value)), dl, btype)
                        .unwrap();
                    // The bound sums per-term products; allow for rounding.
                    assert!(
                        s <= bound * (1.0 + 1e-6),
                        "mask {mask} dl {dl}: {s} > {bound}"
                    );
                }
            }
        }
    }

    #[test]
    fn explain_adds_up_to_the_score() {
        let w = weight(0.75, &[0.0, 0.25]);
        let has = holds(&[
            (FeatureKind::Item, 7),
            (FeatureKind::Category, 2),
            (FeatureKind::Tag, 9),
        ]);
        let e = w.explain(&has, 5, 1);
        let score = w.score(&has, 5, 1).unwrap();
        assert_eq!(e.score, Some(score));
        assert_eq!(e.matched.len(), 2);
        let sum: f32 = e.matched.iter().map(|m| m.1).sum();
        let parts = sum * e.length_norm + e.item_tier.unwrap() + e.type_bonus;
        assert!((parts - score).abs() < 1e-5, "{parts} {score}");
        let text = e.to_string();
        assert!(
            text.contains("the target item") && text.contains("Tag 9"),
            "{text}"
        );
        let none = w.explain(holds(&[]), 5, 1);
        assert_eq!(none.score, None);
        assert_eq!(none.to_string(), "no term matched");
    }
}
