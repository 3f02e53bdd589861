//! Samples under the evaluation protocol (`docs/evaluation-protocol.md`,
//! v2 by default, v1 on request), built from an index through the same
//! retrieval API that serving uses.
//!
//! 1. Each user's behaviors in `seq` order (the index's `(timestamp, row)`
//!    order); every behavior with `seq >= 20` is a positive target whose
//!    history is exactly the behaviors with a smaller `seq`.
//! 2. Each positive gets one negative: same user, history and timestamp, an
//!    item drawn from the item popularity distribution (proportional to its
//!    number of behaviors), carrying its own features. v1 redraws only while
//!    it equals the positive item; v2 also redraws while it is an item the
//!    user interacted with before the target. The hard-negative variant
//!    ([`Negatives::SameCategory`]) draws from the positive's own
//!    categories. Seeded (42): a run is reproducible.
//! 3. A positive whose item is not in the user's history before the target
//!    marks its pair as *new-item* ([`Sample::new_item`]): the slice where
//!    "the user did this before" cannot carry the score.
//! 4. Split per user over the user's positives in time order: the last
//!    `max(1, floor(10 %))` are test, the `floor(10 %)` before them
//!    validation, the rest train. A negative follows its positive.
//! 5. Each sample's model input is the user's retrieved subsequence of at
//!    most N behaviors as of the target ([`retrieve_histories`]).
//!
//! [`export`] writes the samples with their retrieved histories as CSV files
//! a peer library (FuxiCTR, DeepCTR) can read; the layout is documented on
//! [`export`].

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use hindsight_core::{AsOf, Behavior, ItemFeatures, Seq, Target};
use hindsight_index::Snapshot;
use hindsight_retrieval::{Query, Retriever};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Errors of sample building and export.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// Retrieval failed.
    #[error(transparent)]
    Retrieval(#[from] hindsight_retrieval::RetrievalError),
    /// Writing the export failed.
    #[error("cannot write samples to {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A protocol version this build does not implement.
    #[error("protocol version {0} is unknown; this build implements versions 1 and 2")]
    UnknownProtocol(u32),
    /// The index has no behavior to sample from.
    #[error("the index holds no user with more than {0} behaviors, so there are no samples; ingest a log first")]
    NoSamples(u32),
}

/// Result alias of the samples crate.
pub type Result<T, E = SampleError> = std::result::Result<T, E>;

/// How a positive's negative is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Negatives {
    /// From the whole catalog, popularity-weighted (the main protocol).
    #[default]
    Popularity,
    /// The hard-negative variant: popularity-weighted from the items that
    /// share a category (any of its genres) with the positive; when the
    /// positive's categories hold no eligible item, from the whole catalog.
    SameCategory,
}

impl Negatives {
    /// `popularity` or `same-category`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Negatives::Popularity => "popularity",
            Negatives::SameCategory => "same-category",
        }
    }
}

impl std::str::FromStr for Negatives {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "popularity" => Ok(Negatives::Popularity),
            "same-category" | "hard" => Ok(Negatives::SameCategory),
            other => Err(format!(
                "unknown negative sampler {other:?}; use popularity or same-category"
            )),
        }
    }
}

/// The protocol version [`Protocol::default`] builds.
pub const PROTOCOL_VERSION: u32 = 2;

fn protocol_v1() -> u32 {
    1
}

/// The sampling protocol's parameters (defaults: protocol v2, popularity
/// negatives).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Protocol {
    /// Protocol version: 1 (negatives only differ from the positive item)
    /// or 2 (negatives are also never an item of the user's history before
    /// the target). Absent in settings written before v2 existed, which
    /// were v1: it reads as 1.
    #[serde(default = "protocol_v1")]
    pub version: u32,
    /// How negatives are drawn (v2 only; v1 is always popularity).
    pub negatives: Negatives,
    /// Behaviors with `seq >= min_history` are positives.
    pub min_history: Seq,
    /// Seed of the negative sampler.
    pub seed: u64,
    /// Share of each user's positives (the last ones) in test, at least 1.
    pub test_share: f64,
    /// Share of each user's positives (before test) in validation.
    pub valid_share: f64,
    /// Histories longer than this form the long-history slice.
    pub long_history: Seq,
}

impl Default for Protocol {
    fn default() -> Self {
        Protocol {
            version: PROTOCOL_VERSION,
            negatives: Negatives::Popularity,
            min_history: 20,
            seed: 42,
            test_share: 0.1,
            valid_share: 0.1,
            long_history: 200,
        }
    }
}

/// Which split a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training.
    Train,
    /// Validation (early stopping).
    Valid,
    /// Test (reported metrics).
    Test,
}

impl Split {
    /// `train`, `valid` or `test`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

/// One sample: a (user, target) with its label, as of the target's `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The user.
    pub user_id: u64,
    /// 1 for the real behavior, 0 for the sampled negative.
    pub label: u8,
    /// Train, valid or test.
    pub split: Split,
    /// The target item and its features.
    pub target: Target,
    /// Timestamp of the positive behavior (shared by its negative).
    pub timestamp: i64,
    /// `seq` of the positive: the history is exactly `seq < as_of_seq`, so
    /// this is also the history length.
    pub as_of_seq: Seq,
    /// Whether the pair's positive item is absent from the user's history
    /// before the target (the new-item slice); shared by the negative.
    #[serde(default)]
    pub new_item: bool,
}

impl Sample {
    /// Length of the user's history before the target.
    pub fn history_len(&self) -> u32 {
        self.as_of_seq
    }
}

/// Items with their popularity, for negative sampling.
pub struct ItemSampler {
    items: Vec<(u64, ItemFeatures)>,
    cumulative: Vec<u64>,
    /// Per category: the items carrying it (indices into `items`, ascending)
    /// and their cumulative counts. Built for the hard-negative variant.
    by_category: HashMap<u64, (Vec<usize>, Vec<u64>)>,
}

/// Redraws before a sampler gives up on chance and searches exhaustively.
const MAX_DRAWS: usize = 1000;

impl ItemSampler {
    /// Counts every behavior of the snapshot per item.
    pub fn from_snapshot(snapshot: &Snapshot) -> ItemSampler {
        let mut counts: HashMap<u64, (u64, ItemFeatures)> = HashMap::new();
        snapshot.for_each_item(|item, f| {
            counts.entry(item).or_insert_with(|| (0, f.clone())).0 += 1;
        });
        ItemSampler::from_counts(counts.into_iter().map(|(i, (c, f))| (i, c, f)).collect())
    }

    /// A sampler over `(item, count, features)`, in any order (sorted here
    /// by item, so the draws do not depend on the input order). Items with
    /// a zero count are never drawn.
    pub fn from_counts(mut items: Vec<(u64, u64, ItemFeatures)>) -> ItemSampler {
        items.sort_unstable_by_key(|x| x.0);
        let mut total = 0;
        let cumulative = items
            .iter()
            .map(|x| {
                total += x.1;
                total
            })
            .collect();
        let mut by_category: HashMap<u64, (Vec<usize>, Vec<u64>)> = HashMap::new();
        for (i, (_, count, f)) in items.iter().enumerate() {
            for &c in &f.categories {
                let (members, cum) = by_category.entry(c).or_default();
                let before = cum.last().copied().unwrap_or(0);
                members.push(i);
                cum.push(before + count);
            }
        }
        ItemSampler {
            items: items.into_iter().map(|(i, _, f)| (i, f)).collect(),
            cumulative,
            by_category,
        }
    }

    /// The behavior count of item `i` (from the cumulative counts).
    fn count(&self, i: usize) -> u64 {
        self.cumulative[i] - if i == 0 { 0 } else { self.cumulative[i - 1] }
    }

    /// Number of distinct items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there is no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Draws an item with probability proportional to its count.
    pub fn draw(&self, rng: &mut impl Rng) -> &(u64, ItemFeatures) {
        &self.items[self.draw_index(rng)]
    }

    fn draw_index(&self, rng: &mut impl Rng) -> usize {
        let total = *self.cumulative.last().expect("sampler is not empty");
        let r = rng.random_range(0..total);
        self.cumulative.partition_point(|&c| c <= r)
    }

    /// Draws an item other than `not` (redrawing; `not` may be the only item,
    /// in which case it is returned after 64 tries). Protocol v1.
    pub fn draw_other(&self, rng: &mut impl Rng, not: u64) -> &(u64, ItemFeatures) {
        let mut pick = self.draw(rng);
        for _ in 0..64 {
            if pick.0 != not {
                break;
            }
            pick = self.draw(rng);
        }
        pick
    }

    /// Draws, popularity-weighted, an item that is neither `positive` nor in
    /// `seen` (protocol v2). After [`MAX_DRAWS`] rejected draws (a user who
    /// touched most of the popular items) it takes the first eligible item
    /// from a random start, which is no longer popularity-weighted; `None`
    /// when no item is eligible at all.
    pub fn draw_unseen(
        &self,
        rng: &mut impl Rng,
        positive: u64,
        seen: &HashSet<u64>,
    ) -> Option<&(u64, ItemFeatures)> {
        let eligible = |i: usize| self.items[i].0 != positive && !seen.contains(&self.items[i].0);
        for _ in 0..MAX_DRAWS {
            let i = self.draw_index(rng);
            if eligible(i) {
                return Some(&self.items[i]);
            }
        }
        let n = self.items.len();
        let start = rng.random_range(0..n);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| eligible(i))
            .map(|i| &self.items[i])
    }

    /// The hard-negative draw: popularity-weighted over the union of the
    /// items of `categories`, excluding `positive` and `seen`. An item in
    /// several of the categories is drawn through each of them, so it is
    /// accepted with probability 1/k (k = how many of `categories` it
    /// carries), which makes the draw exact over the union. After
    /// [`MAX_DRAWS`] rejections it draws exactly from the eligible items of
    /// the union; `None` when there is none (the caller falls back to
    /// [`ItemSampler::draw_unseen`]).
    pub fn draw_same_category(
        &self,
        rng: &mut impl Rng,
        categories: &[u64],
        positive: u64,
        seen: &HashSet<u64>,
    ) -> Option<&(u64, ItemFeatures)> {
        let groups: Vec<&(Vec<usize>, Vec<u64>)> = categories
            .iter()
            .filter_map(|c| self.by_category.get(c))
            .collect();
        if groups.is_empty() {
            return None;
        }
        let eligible = |i: usize| self.items[i].0 != positive && !seen.contains(&self.items[i].0);
        let multiplicity = |i: usize| {
            self.items[i]
                .1
                .categories
                .iter()
                .filter(|c| categories.contains(c))
                .count()
                .max(1)
        };
        let masses: Vec<u64> = groups
            .iter()
            .map(|g| *g.1.last().expect("non-empty"))
            .collect();
        let total: u64 = masses.iter().sum();
        if total == 0 {
            return None;
        }
        for _ in 0..MAX_DRAWS {
            let mut r = rng.random_range(0..total);
            let mut g = 0;
            while r >= masses[g] {
                r -= masses[g];
                g += 1;
            }
            let (members, cum) = groups[g];
            let i = members[cum.partition_point(|&c| c <= r)];
            let k = multiplicity(i);
            if (k == 1 || rng.random_range(0..k) == 0) && eligible(i) {
                return Some(&self.items[i]);
            }
        }
        let mut union: Vec<usize> = groups.iter().flat_map(|g| g.0.iter().copied()).collect();
        union.sort_unstable();
        union.dedup();
        union.retain(|&i| eligible(i));
        let mass: u64 = union.iter().map(|&i| self.count(i)).sum();
        if mass == 0 {
            return None;
        }
        let mut r = rng.random_range(0..mass);
        for &i in &union {
            if r < self.count(i) {
                return Some(&self.items[i]);
            }
            r -= self.count(i);
        }
        unreachable!("r < mass")
    }
}

/// Counts of a sample set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleCounts {
    /// Positive samples.
    pub positives: u64,
    /// Samples per split (positives and negatives).
    pub train: u64,
    /// Validation samples.
    pub valid: u64,
    /// Test samples.
    pub test: u64,
    /// Users with at least one positive.
    pub users: u64,
    /// Positives whose item is not in the user's history before them (the
    /// new-item slice, over every split).
    #[serde(default)]
    pub new_item_positives: u64,
    /// Hard-negative variant: positives whose categories held no eligible
    /// item, so their negative came from the main sampler.
    #[serde(default)]
    pub category_fallbacks: u64,
}

/// Builds every sample of the protocol from a snapshot, ordered by user,
/// then `seq`, each positive followed by its negative.
pub fn build_samples(
    snapshot: &Snapshot,
    protocol: &Protocol,
) -> Result<(Vec<Sample>, SampleCounts)> {
    if !(1..=PROTOCOL_VERSION).contains(&protocol.version) {
        return Err(SampleError::UnknownProtocol(protocol.version));
    }
    let sampler = ItemSampler::from_snapshot(snapshot);
    let mut rng = ChaCha8Rng::seed_from_u64(protocol.seed);
    let mut samples = Vec::new();
    let mut counts = SampleCounts::default();
    for user in snapshot.users() {
        let history = snapshot.history(user);
        let mut all = history.newest(&AsOf::NOW, usize::MAX);
        all.reverse();
        let positives: Vec<&Behavior> = all
            .iter()
            .filter(|b| b.seq >= protocol.min_history)
            .collect();
        let p = positives.len();
        if p == 0 {
            continue;
        }
        counts.users += 1;
        let n_test = ((p as f64 * protocol.test_share).floor() as usize)
            .max(1)
            .min(p);
        let n_valid = ((p as f64 * protocol.valid_share).floor() as usize).min(p - n_test);
        // Items of the user's history before the current positive (`all` is
        // in seq order; `seen_upto` behaviors are in `seen`).
        let mut seen: HashSet<u64> = HashSet::new();
        let mut seen_upto = 0;
        for (i, b) in positives.iter().enumerate() {
            while seen_upto < all.len() && all[seen_upto].seq < b.seq {
                seen.insert(all[seen_upto].item_id);
                seen_upto += 1;
            }
            let split = if i >= p - n_test {
                Split::Test
            } else if i >= p - n_test - n_valid {
                Split::Valid
            } else {
                Split::Train
            };
            let new_item = !seen.contains(&b.item_id);
            let (neg_item, neg_features) = match protocol.version {
                1 => sampler.draw_other(&mut rng, b.item_id).clone(),
                _ => {
                    let hard = match protocol.negatives {
                        Negatives::Popularity => None,
                        Negatives::SameCategory => {
                            let pick = sampler.draw_same_category(
                                &mut rng,
                                &b.features.categories,
                                b.item_id,
                                &seen,
                            );
                            if pick.is_none() {
                                counts.category_fallbacks += 1;
                            }
                            pick
                        }
                    };
                    match hard.or_else(|| sampler.draw_unseen(&mut rng, b.item_id, &seen)) {
                        Some(pick) => pick.clone(),
                        // The user touched every item of the catalog: no
                        // negative can be unseen; fall back to v1's draw.
                        None => sampler.draw_other(&mut rng, b.item_id).clone(),
                    }
                }
            };
            for (label, target) in [
                (
                    1,
                    Target {
                        item_id: b.item_id,
                        features: b.features.clone(),
                    },
                ),
                (
                    0,
                    Target {
                        item_id: neg_item,
                        features: neg_features,
                    },
                ),
            ] {
                samples.push(Sample {
                    user_id: user,
                    label,
                    split,
                    target,
                    timestamp: b.timestamp,
                    as_of_seq: b.seq,
                    new_item,
                });
                match split {
                    Split::Train => counts.train += 1,
                    Split::Valid => counts.valid += 1,
                    Split::Test => counts.test += 1,
                }
            }
            counts.positives += 1;
            counts.new_item_positives += new_item as u64;
        }
    }
    if samples.is_empty() {
        return Err(SampleError::NoSamples(protocol.min_history));
    }
    Ok((samples, counts))
}

/// Retrieves each sample's history (at most `n` behaviors, strictly before
/// its `as_of_seq`) with `retriever`, on `threads` threads; result `i`
/// belongs to `samples[i]`, in the order the strategy ranked them.
pub fn retrieve_histories(
    snapshot: &Snapshot,
    samples: &[Sample],
    retriever: &Retriever,
    n: usize,
    threads: usize,
) -> Result<Vec<Vec<Behavior>>> {
    // Contiguous chunks at user boundaries, so each user's history is
    // resolved once per chunk.
    let threads = threads.max(1);
    let target_chunk = samples.len().div_ceil(threads).max(1);
    let mut bounds = vec![0];
    while *bounds.last().expect("non-empty") < samples.len() {
        let mut end = (*bounds.last().expect("non-empty") + target_chunk).min(samples.len());
        while end < samples.len() && samples[end].user_id == samples[end - 1].user_id {
            end += 1;
        }
        bounds.push(end);
    }
    let results: Vec<Result<Vec<Vec<Behavior>>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let chunk = &samples[w[0]..w[1]];
                scope.spawn(move || retrieve_chunk(snapshot, chunk, retriever, n))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("retrieval thread panicked"))
            .collect()
    });
    let mut out = Vec::with_capacity(samples.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

fn retrieve_chunk(
    snapshot: &Snapshot,
    chunk: &[Sample],
    retriever: &Retriever,
    n: usize,
) -> Result<Vec<Vec<Behavior>>> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut start = 0;
    while start < chunk.len() {
        let user = chunk[start].user_id;
        let end = start
            + chunk[start..]
                .iter()
                .take_while(|s| s.user_id == user)
                .count();
        let queries: Vec<Query<'_>> = chunk[start..end]
            .iter()
            .map(|s| Query::new(&s.target, n).as_of(AsOf::seq(s.as_of_seq)))
            .collect();
        for hits in retriever.retrieve_many(snapshot, user, &queries)? {
            out.push(hits.into_iter().map(|h| h.behavior).collect());
        }
        start = end;
    }
    Ok(out)
}

/// What an export folder describes (`meta.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportMeta {
    /// Retrieval strategy.
    pub strategy: String,
    /// Budget N.
    pub n: usize,
    /// The protocol.
    pub protocol: Protocol,
    /// Counts.
    pub counts: SampleCounts,
    /// The index folder.
    pub index: String,
    /// Column layout of the CSV files.
    pub layout: String,
}

/// The CSV layout of [`export`].
pub const CSV_LAYOUT: &str = "header line; one sample per line; columns: \
user_id, label (1/0), timestamp, history_len (behaviors before the target), \
item_id, category (the target's first category, 0 if none), categories ('|'-joined), tags ('|'-joined), \
hist_item_id, hist_category, hist_btype, hist_timegap (seconds before the target): \
the retrieved behaviors oldest first, '^'-joined (FuxiCTR's sequence separator), \
hist_categories: each behavior's categories '|'-joined, behaviors '^'-joined";

/// Writes `train.csv`, `valid.csv`, `test.csv` and `meta.json` into `dir`
/// (created). Histories are written oldest first (ascending `seq`).
pub fn export(
    dir: &Path,
    samples: &[Sample],
    histories: &[Vec<Behavior>],
    mut meta: ExportMeta,
) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| SampleError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    meta.layout = CSV_LAYOUT.to_owned();
    for split in [Split::Train, Split::Valid, Split::Test] {
        let path = dir.join(format!("{}.csv", split.as_str()));
        let file = std::fs::File::create(&path).map_err(io(&path))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let write = |w: &mut std::io::BufWriter<std::fs::File>| -> std::io::Result<()> {
            writeln!(w, "user_id,label,timestamp,history_len,item_id,category,categories,tags,hist_item_id,hist_category,hist_btype,hist_timegap,hist_categories")?;
            for (s, h) in samples
                .iter()
                .zip(histories)
                .filter(|(s, _)| s.split == split)
            {
                let mut h: Vec<&Behavior> = h.iter().collect();
                h.sort_unstable_by_key(|b| b.seq);
                let join = |v: &[u64], sep: &str| {
                    v.iter().map(u64::to_string).collect::<Vec<_>>().join(sep)
                };
                let seq = |f: &dyn Fn(&Behavior) -> String| {
                    h.iter().map(|b| f(b)).collect::<Vec<_>>().join("^")
                };
                writeln!(
                    w,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    s.user_id,
                    s.label,
                    s.timestamp,
                    s.as_of_seq,
                    s.target.item_id,
                    s.target.features.categories.first().copied().unwrap_or(0),
                    join(&s.target.features.categories, "|"),
                    join(&s.target.features.tags, "|"),
                    seq(&|b| b.item_id.to_string()),
                    seq(&|b| b
                        .features
                        .categories
                        .first()
                        .copied()
                        .unwrap_or(0)
                        .to_string()),
                    seq(&|b| b.behavior_type.to_string()),
                    seq(&|b| (s.timestamp - b.timestamp).max(0).to_string()),
                    seq(&|b| join(&b.features.categories, "|")),
                )?;
            }
            w.flush()
        };
        write(&mut w).map_err(io(&path))?;
    }
    let path = dir.join("meta.json");
    let json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
    std::fs::write(&path, json).map_err(io(&path))?;
    Ok(())
}

#[cfg(test)]
mod tests;
