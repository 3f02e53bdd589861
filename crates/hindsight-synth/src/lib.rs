//! Seeded synthetic behavior logs shaped like the Taobao `UserBehavior.csv` log.
//!
//! The generator is used by benchmarks (an index of 10M+ behaviors with users of
//! 1k, 10k and 50k behaviors) and by property and scale tests. It is:
//!
//! - **deterministic**: the same [`SynthConfig`] (seed included) always gives the
//!   same rows; every user has its own random stream, so a user's rows do not
//!   depend on which other users are generated ([`SynthLog::for_users`]);
//! - **streaming**: [`SynthLog`] is an iterator and never materializes the log;
//!   memory is O(items + categories) for the item catalog plus O(1) per user;
//! - **fast**: well over 5M rows/s for generation, and [`write_csv`] formats rows
//!   by hand into a large buffer.
//!
//! # What the log looks like
//!
//! - Base item ids are `1..=items` (fresh items, when
//!   [`SynthConfig::fresh_share`] is set, have ids above), category ids are `1..=categories` where category
//!   `1` is the most popular one. Every item has **one fixed category**, derived
//!   from a hash of the item id mapped onto a Zipf-like distribution over
//!   categories ([`item_category`] recomputes it). Within a category, item
//!   popularity is Zipf-like too ([`SynthConfig::item_zipf`]).
//! - Every user has a small set of preferred categories (5 to 20 by default,
//!   drawn with the global category skew, with decreasing weights); about 70-80%
//!   of the behaviors of a user that are not revisits fall in those categories,
//!   the rest are drawn from the whole catalog.
//! - A fraction of behaviors ([`SynthConfig::revisit_share`], 24% like the real
//!   sample) revisits an item the user touched recently.
//! - Behavior types follow the Taobao mix (pv 89.6%, cart 5.3%, fav 2.8%,
//!   buy 2.1%).
//! - Timestamps are non-decreasing per user: short in-session gaps, occasional
//!   session breaks of hours, and some equal timestamps; every user starts
//!   within a day after [`SynthConfig::start_ts`] (2017-11-25 by default).
//! - Rows are grouped by user, users in increasing id order starting at 1, each
//!   user's rows in time order, as in the real file.
//!
//! - [`SynthShape`] names the shapes the benchmarks cover (Taobao-like, big
//!   growing catalog, sparse categories, dense); [`TargetSampler`] draws
//!   benchmark query targets of each kind (an item the user touched, an item
//!   sharing a category, a rarely touched category, an unseen category) as
//!   of the end or the middle of a history.
//!
//! # Example
//!
//! ```
//! use hindsight_synth::{item_category, write_csv, BehaviorKind, SynthConfig, SynthLog, UserGroup};
//!
//! let mut cfg = SynthConfig::taobao_like(5_000);
//! cfg.seed = 7;
//! cfg.users = vec![UserGroup { count: 4, behaviors: 1_000 }, UserGroup { count: 1, behaviors: 1_000 }];
//! assert_eq!(cfg.total_behaviors(), 5_000);
//!
//! let rows: Vec<_> = SynthLog::new(&cfg).collect();
//! assert_eq!(rows.len(), 5_000);
//! assert_eq!(rows[0].user_id, 1);
//! assert!(rows.iter().all(|r| r.category_id == item_category(&cfg, r.item_id)));
//! assert!(rows.windows(2).all(|w| w[0].user_id < w[1].user_id || w[0].timestamp <= w[1].timestamp));
//! let views = rows.iter().filter(|r| r.behavior_type == BehaviorKind::Pv).count();
//! assert!(views > 4_000);
//!
//! // The same rows in Taobao CSV format (no header).
//! let mut csv = Vec::new();
//! assert_eq!(write_csv(&cfg, &mut csv)?, 5_000);
//! let first = std::str::from_utf8(&csv)?.lines().next().unwrap();
//! assert!(first.starts_with("1,"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::{self, Write};
use std::ops::Range;

use hindsight_core::splitmix64;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 2017-11-25 00:00:00 (UTC+8), the first day of the Taobao log, in Unix seconds.
pub const TAOBAO_START_TS: i64 = 1_511_568_000;

/// The Taobao behavior-type mix, in [`BehaviorKind::ALL`] order (pv, cart, fav, buy).
pub const TAOBAO_BEHAVIOR_MIX: [f64; 4] = [0.896, 0.053, 0.028, 0.021];

/// The kind of a behavior (the `behavior_type` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BehaviorKind {
    /// Page view (`pv`).
    Pv,
    /// Add to cart (`cart`).
    Cart,
    /// Favorite (`fav`).
    Fav,
    /// Purchase (`buy`).
    Buy,
}

impl BehaviorKind {
    /// All kinds, in the order used by [`SynthConfig::behavior_mix`].
    pub const ALL: [BehaviorKind; 4] = [Self::Pv, Self::Cart, Self::Fav, Self::Buy];

    /// The name used in the Taobao CSV (`pv`, `cart`, `fav`, `buy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pv => "pv",
            Self::Cart => "cart",
            Self::Fav => "fav",
            Self::Buy => "buy",
        }
    }
}

impl fmt::Display for BehaviorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One generated behavior, with the columns of the Taobao log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SynthRow {
    /// User id, starting at 1.
    pub user_id: u64,
    /// Item id: in `1..=items`, or above `items` for a fresh item.
    pub item_id: u64,
    /// Category of the item (always [`item_category`] of `item_id`).
    pub category_id: u64,
    /// Behavior type.
    pub behavior_type: BehaviorKind,
    /// Unix seconds; non-decreasing within a user.
    pub timestamp: i64,
}

/// `count` consecutive users with `behaviors` behaviors each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserGroup {
    /// Number of users in the group.
    pub count: usize,
    /// Behaviors generated for each user of the group.
    pub behaviors: usize,
}

/// Everything the generator needs; the same config always yields the same log.
///
/// Start from [`SynthConfig::taobao_like`] or [`SynthConfig::bench_10m`] and
/// change fields as needed. [`SynthConfig::validate`] lists the constraints.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Seed of every random choice (catalog and users).
    pub seed: u64,
    /// User groups; user ids are assigned from 1 in group order.
    pub users: Vec<UserGroup>,
    /// Number of items (ids `1..=items`); at most `u32::MAX`.
    pub items: u64,
    /// Number of categories (ids `1..=categories`, 1 the most popular); at most `u32::MAX`.
    pub categories: u64,
    /// Zipf exponent of the global category distribution (~1.1).
    pub category_zipf: f64,
    /// Zipf exponent of item popularity within a category (0 = uniform).
    pub item_zipf: f64,
    /// Earliest timestamp (Unix seconds); see [`TAOBAO_START_TS`].
    pub start_ts: i64,
    /// Each user's first behavior lies in `start_ts..start_ts + start_spread_secs`.
    pub start_spread_secs: i64,
    /// Inclusive range of the number of preferred categories per user.
    pub preferred_categories: (usize, usize),
    /// Mean share of non-revisit behaviors in the preferred categories; each user
    /// gets a share uniformly within ±0.05 of it.
    pub preferred_share: f64,
    /// Share of behaviors that explicitly revisit one of the user's recent items
    /// (recency-biased, among the last 1,024). Items also repeat by chance, since
    /// popular items are drawn again, so the observed repeat share is higher.
    pub revisit_share: f64,
    /// Weights of pv, cart, fav, buy (normalized by their sum).
    pub behavior_mix: [f64; 4],
    /// Mean gap between two behaviors of the same session, in seconds.
    pub mean_gap_secs: f64,
    /// Probability that a behavior starts a new session.
    pub session_break_prob: f64,
    /// Mean gap before a new session, in seconds.
    pub mean_session_gap_secs: f64,
    /// Probability that a behavior has exactly the previous behavior's timestamp.
    pub same_ts_prob: f64,
    /// Decay of the preferred-category weights: the i-th preferred category
    /// weighs `(i+1)^-preference_decay` (1.3: a few dominant interests; 0.3:
    /// hundreds of interests of similar weight).
    pub preference_decay: f64,
    /// Share of the non-revisit behaviors that touch a **fresh item**, one
    /// that enters the catalog at that time (ids above `items`; see
    /// [`SynthConfig::fresh_per_hour`]): the catalog grows with the log, as
    /// on a marketplace where new listings arrive all the time. 0 disables.
    pub fresh_share: f64,
    /// Fresh items introduced per category and hour of log time: the fresh
    /// items of one (category, hour) are shared (Zipf-like,
    /// [`SynthConfig::item_zipf`]) by the users who draw that category in
    /// that hour. A fresh behavior draws its category as any other (so fresh
    /// items follow the user's preferences); [`item_category`] decodes it
    /// from the id.
    pub fresh_per_hour: u64,
}

/// The log shapes the benchmarks cover (`hindsight synth --shape`): each is
/// a [`SynthConfig`] preset, and `tests/synth.rs` checks the property that
/// names it on a 50k-behavior user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SynthShape {
    /// Today's Taobao-like log: 5-20 dense preferred categories, one item per
    /// 10 behaviors, a quarter of behaviors revisit recent items.
    TaobaoLike,
    /// A catalog of at least 5M items that keeps growing (fresh items), few
    /// revisits: at least 80% of a user's behaviors touch an item the user
    /// has not touched before.
    BigCatalog,
    /// Thousands of categories; each user spreads over hundreds of them with
    /// similar weights, so a typical (user, category) pair has 10-100
    /// matches in a 50k history; big growing catalog.
    SparseCategories,
    /// One category holds 20% or more of each user's history.
    Dense,
}

impl SynthShape {
    /// All shapes, in the benchmark tables' order.
    pub const ALL: [SynthShape; 4] = [
        SynthShape::TaobaoLike,
        SynthShape::BigCatalog,
        SynthShape::SparseCategories,
        SynthShape::Dense,
    ];

    /// `taobao-like`, `big-catalog`, `sparse-categories` or `dense`.
    pub fn as_str(self) -> &'static str {
        match self {
            SynthShape::TaobaoLike => "taobao-like",
            SynthShape::BigCatalog => "big-catalog",
            SynthShape::SparseCategories => "sparse-categories",
            SynthShape::Dense => "dense",
        }
    }
}

impl fmt::Display for SynthShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SynthShape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SynthShape::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown shape {s:?}; use one of: {}",
                    SynthShape::ALL.map(|k| k.as_str()).join(", ")
                )
            })
    }
}

/// Number of recent items per user that revisits pick from.
const HISTORY_CAP: usize = 1024;
/// Default decay of preferred-category weights ([`SynthConfig::preference_decay`]).
const PREF_DECAY: f64 = 1.3;

impl SynthConfig {
    /// A Taobao-shaped config with exactly `total_behaviors` behaviors: about 20%
    /// of them from users of 50k behaviors, 30% from users of 10k, the rest from
    /// users of 1k (most users), plus one shorter user for any remainder.
    /// One item per 10 behaviors (at least 1,000), one category per 100 items
    /// (between 50 and 10,000), seed 42.
    pub fn taobao_like(total_behaviors: u64) -> Self {
        let total = total_behaviors;
        let n50 = total / 5 / 50_000;
        let n10 = (total * 3 / 10) / 10_000;
        let rest = total - n50 * 50_000 - n10 * 10_000;
        let n1 = rest / 1_000;
        let rem = rest % 1_000;
        let mut users = vec![UserGroup {
            count: n1 as usize,
            behaviors: 1_000,
        }];
        users.push(UserGroup {
            count: n10 as usize,
            behaviors: 10_000,
        });
        users.push(UserGroup {
            count: n50 as usize,
            behaviors: 50_000,
        });
        if rem > 0 {
            users.push(UserGroup {
                count: 1,
                behaviors: rem as usize,
            });
        }
        users.retain(|g| g.count > 0);
        Self::with_users(users, (total / 10).clamp(1_000, u64::from(u32::MAX)))
    }

    /// The benchmark config: 100 users × 50k + 300 users × 10k + 2,000 users × 1k
    /// = 10M behaviors over 1M items and 10,000 categories (seed 42).
    pub fn bench_10m() -> Self {
        Self::with_users(
            vec![
                UserGroup {
                    count: 100,
                    behaviors: 50_000,
                },
                UserGroup {
                    count: 300,
                    behaviors: 10_000,
                },
                UserGroup {
                    count: 2_000,
                    behaviors: 1_000,
                },
            ],
            1_000_000,
        )
    }

    fn with_users(users: Vec<UserGroup>, items: u64) -> Self {
        SynthConfig {
            seed: 42,
            users,
            items,
            categories: (items / 100).clamp(50, 10_000),
            category_zipf: 1.1,
            item_zipf: 0.8,
            start_ts: TAOBAO_START_TS,
            start_spread_secs: 86_400,
            preferred_categories: (5, 20),
            preferred_share: 0.75,
            revisit_share: 0.24,
            behavior_mix: TAOBAO_BEHAVIOR_MIX,
            mean_gap_secs: 90.0,
            session_break_prob: 0.05,
            mean_session_gap_secs: 6.0 * 3600.0,
            same_ts_prob: 0.005,
            preference_decay: PREF_DECAY,
            fresh_share: 0.0,
            fresh_per_hour: 4,
        }
    }

    /// `shape` with the user mix of [`SynthConfig::taobao_like`] and exactly
    /// `total_behaviors` behaviors. The catalog of the big-catalog and
    /// sparse shapes has at least 5M base items whatever the size, plus the
    /// fresh items the log introduces.
    pub fn shaped(shape: SynthShape, total_behaviors: u64) -> Self {
        Self::taobao_like(total_behaviors).into_shape(shape)
    }

    /// The benchmark log of [`SynthConfig::bench_10m`] (100 x 50k, 300 x 10k,
    /// 2,000 x 1k users) in `shape`.
    pub fn bench_10m_shaped(shape: SynthShape) -> Self {
        Self::bench_10m().into_shape(shape)
    }

    /// Changes the item and preference fields to those of `shape`, keeping
    /// the users, seed and time fields.
    pub fn into_shape(mut self, shape: SynthShape) -> Self {
        match shape {
            SynthShape::TaobaoLike => {}
            SynthShape::BigCatalog => {
                self.items = self.items.max(5_000_000);
                self.categories = 5_000;
                self.item_zipf = 0.3;
                self.preferred_share = 0.5;
                self.revisit_share = 0.04;
                self.fresh_share = 0.75;
                self.fresh_per_hour = 16;
            }
            SynthShape::SparseCategories => {
                self.items = self.items.max(5_000_000);
                self.categories = 5_000;
                self.category_zipf = 1.0;
                self.item_zipf = 0.3;
                self.preferred_categories = (600, 1_200);
                self.preference_decay = 0.3;
                self.preferred_share = 0.99;
                self.revisit_share = 0.04;
                self.fresh_share = 0.3;
                self.fresh_per_hour = 16;
            }
            SynthShape::Dense => {
                self.preferred_categories = (1, 3);
                self.preferred_share = 0.9;
            }
        }
        self
    }

    /// The same config with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Total number of behaviors (rows) the config generates.
    pub fn total_behaviors(&self) -> u64 {
        self.users
            .iter()
            .map(|g| g.count as u64 * g.behaviors as u64)
            .sum()
    }

    /// Number of users (ids `1..=user_count()`), including users with 0 behaviors.
    pub fn user_count(&self) -> u64 {
        self.users.iter().map(|g| g.count as u64).sum()
    }

    /// Number of behaviors of `user_id` (0 for ids outside `1..=user_count()`).
    pub fn behaviors_of(&self, user_id: u64) -> usize {
        if user_id == 0 {
            return 0;
        }
        let mut first = 1u64;
        for g in &self.users {
            let end = first + g.count as u64;
            if user_id < end {
                return g.behaviors;
            }
            first = end;
        }
        0
    }

    /// Checks the constraints on the fields; [`SynthLog::new`] panics on an invalid config.
    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("{name} must be in [0, 1], got {v}"))
            }
        };
        if self.items == 0 || self.items > u64::from(u32::MAX) {
            return Err(format!("items must be in 1..=u32::MAX, got {}", self.items));
        }
        if self.categories == 0 || self.categories > u64::from(u32::MAX) {
            return Err(format!(
                "categories must be in 1..=u32::MAX, got {}",
                self.categories
            ));
        }
        for (name, v) in [
            ("category_zipf", self.category_zipf),
            ("item_zipf", self.item_zipf),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be finite and >= 0, got {v}"));
            }
        }
        let (lo, hi) = self.preferred_categories;
        if lo == 0 || lo > hi {
            return Err(format!(
                "preferred_categories must be 1 <= min <= max, got {lo}..={hi}"
            ));
        }
        unit("preferred_share", self.preferred_share)?;
        unit("fresh_share", self.fresh_share)?;
        if !(self.preference_decay.is_finite() && self.preference_decay >= 0.0) {
            return Err(format!(
                "preference_decay must be finite and >= 0, got {}",
                self.preference_decay
            ));
        }
        // At least a day of fresh items must fit below u32::MAX.
        let fresh_max = (u64::from(u32::MAX) - self.items) / 24 / self.categories;
        if self.fresh_share > 0.0 && !(1..=fresh_max).contains(&self.fresh_per_hour) {
            return Err(format!(
                "fresh_per_hour must be in 1..={fresh_max} with these items and categories, got {}",
                self.fresh_per_hour
            ));
        }
        unit("revisit_share", self.revisit_share)?;
        unit("session_break_prob", self.session_break_prob)?;
        unit("same_ts_prob", self.same_ts_prob)?;
        if self
            .behavior_mix
            .iter()
            .any(|w| !(w.is_finite() && *w >= 0.0))
            || self.behavior_mix.iter().sum::<f64>() <= 0.0
        {
            return Err(format!(
                "behavior_mix must be non-negative with a positive sum, got {:?}",
                self.behavior_mix
            ));
        }
        for (name, v) in [
            ("mean_gap_secs", self.mean_gap_secs),
            ("mean_session_gap_secs", self.mean_session_gap_secs),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{name} must be finite and >= 0, got {v}"));
            }
        }
        if self.start_spread_secs < 0 {
            return Err(format!(
                "start_spread_secs must be >= 0, got {}",
                self.start_spread_secs
            ));
        }
        Ok(())
    }
}

/// The category of `item_id` under `cfg` (depends on `seed`, `categories` and
/// `category_zipf` only). Every row the generator yields for this item carries it.
pub fn item_category(cfg: &SynthConfig, item_id: u64) -> u64 {
    if item_id > cfg.items {
        if let Some(fresh) = FreshItems::new(cfg) {
            return fresh.category_of(item_id);
        }
    }
    let law = PowerLaw::new(cfg.categories, cfg.category_zipf);
    category_from_hash(&law, category_salt(cfg.seed), item_id)
}

// ---------------------------------------------------------------------------
// Hashing and sampling helpers.

/// Uniform in `[0, 1)` from the top 53 bits.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn category_salt(seed: u64) -> u64 {
    splitmix64(seed ^ 0x6361_7465_676F_7279) // "category"
}

fn category_from_hash(law: &PowerLaw, salt: u64, item_id: u64) -> u64 {
    law.sample(unit(splitmix64(item_id ^ salt))) + 1
}

/// A Zipf-like law over ranks `0..n`: the continuous density `x^-s` on
/// `[1, n + 1)`, floored. Sampling is one `powf` (or `exp`), no tables.
#[derive(Debug, Clone, Copy)]
struct PowerLaw {
    n: u64,
    /// `(n+1)^(1-s) - 1`, or `ln(n+1)` when `s == 1`.
    a: f64,
    /// `1 / (1 - s)`, or NaN when `s == 1`.
    inv: f64,
}

impl PowerLaw {
    fn new(n: u64, s: f64) -> Self {
        let top = (n as f64) + 1.0;
        if (s - 1.0).abs() < 1e-9 {
            PowerLaw {
                n,
                a: top.ln(),
                inv: f64::NAN,
            }
        } else {
            PowerLaw {
                n,
                a: top.powf(1.0 - s) - 1.0,
                inv: 1.0 / (1.0 - s),
            }
        }
    }

    /// Rank in `0..n` for a uniform `u` in `[0, 1)`.
    #[inline]
    fn sample(&self, u: f64) -> u64 {
        let x = if self.inv.is_nan() {
            (u * self.a).exp()
        } else {
            (1.0 + u * self.a).powf(self.inv)
        };
        // x is in [1, n + 1); the clamp guards against rounding at the top.
        ((x as u64).saturating_sub(1)).min(self.n.saturating_sub(1))
    }
}

// ---------------------------------------------------------------------------
// Item catalog: category -> items, O(items + categories) memory.

#[derive(Debug)]
struct Catalog {
    items: u64,
    cat_law: PowerLaw,
    cat_salt: u64,
    /// `members[offsets[c-1]..offsets[c]]` are the items of category `c`, in
    /// popularity order (a hash order, so popular items are spread over ids).
    offsets: Vec<u32>,
    members: Vec<u32>,
    /// Item popularity law of each category.
    laws: Vec<PowerLaw>,
}

impl Catalog {
    fn new(cfg: &SynthConfig) -> Self {
        let cat_law = PowerLaw::new(cfg.categories, cfg.category_zipf);
        let cat_salt = category_salt(cfg.seed);
        let ncat = cfg.categories as usize;
        let cats: Vec<u32> = (1..=cfg.items)
            .map(|it| category_from_hash(&cat_law, cat_salt, it) as u32)
            .collect();
        let mut offsets = vec![0u32; ncat + 1];
        for &c in &cats {
            offsets[c as usize] += 1;
        }
        for c in 1..=ncat {
            offsets[c] += offsets[c - 1];
        }
        let mut fill: Vec<u32> = offsets[..ncat].to_vec();
        let mut members = vec![0u32; cfg.items as usize];
        for (i, &c) in cats.iter().enumerate() {
            let slot = &mut fill[c as usize - 1];
            members[*slot as usize] = i as u32 + 1;
            *slot += 1;
        }
        drop(cats);
        let pop_salt = splitmix64(cfg.seed ^ 0x706F_7075_6C61_7269); // "populari"
        let mut laws = Vec::with_capacity(ncat);
        for c in 0..ncat {
            let bucket = &mut members[offsets[c] as usize..offsets[c + 1] as usize];
            bucket.sort_unstable_by_key(|&it| splitmix64(u64::from(it) ^ pop_salt));
            laws.push(PowerLaw::new(bucket.len() as u64, cfg.item_zipf));
        }
        Catalog {
            items: cfg.items,
            cat_law,
            cat_salt,
            offsets,
            members,
            laws,
        }
    }

    #[inline]
    fn category_of(&self, item: u64) -> u64 {
        category_from_hash(&self.cat_law, self.cat_salt, item)
    }

    /// A category drawn with the global distribution, restricted to non-empty
    /// categories: the category of a uniformly random item.
    #[inline]
    fn random_category(&self, r: u64) -> u32 {
        let item = (((r as u128) * (self.items as u128)) >> 64) as u64 + 1;
        self.category_of(item) as u32
    }

    /// Whether category `cat` holds any base item.
    fn holds_items(&self, cat: u64) -> bool {
        let c = cat as usize;
        c >= 1 && c < self.offsets.len() && self.offsets[c] > self.offsets[c - 1]
    }

    /// An item of (non-empty) category `cat`, by popularity.
    #[inline]
    fn pick_item(&self, cat: u32, u: f64) -> u32 {
        let c = cat as usize - 1;
        let rank = self.laws[c].sample(u) as usize;
        self.members[self.offsets[c] as usize + rank]
    }
}

// ---------------------------------------------------------------------------
// Generator.

/// Per-user generation state: O(preferred categories + recent history).
#[derive(Debug)]
struct UserState {
    user_id: u64,
    remaining: usize,
    rng: ChaCha8Rng,
    ts: i64,
    first: bool,
    pref_share: f64,
    prefs: Vec<u32>,
    /// Cumulative weights of `prefs`, last = 1.0.
    pref_cum: Vec<f64>,
    /// Ring of recent (item, category).
    history: Vec<(u32, u32)>,
    history_pos: usize,
}

/// Streaming iterator over the synthetic log: rows grouped by user (increasing
/// ids from 1), each user's rows in time order.
///
/// Memory is O(items + categories) for the catalog (built once in
/// [`SynthLog::new`]) plus O(1) for the current user.
#[derive(Debug)]
pub struct SynthLog {
    catalog: Catalog,
    /// `(first user id, count, behaviors)` per non-empty group.
    groups: Vec<(u64, u64, usize)>,
    group: usize,
    next_user: u64,
    end_user: u64,
    remaining_total: u64,
    user: Option<UserState>,
    seed: u64,
    // Derived config.
    kind_thresholds: [u64; 3],
    pref_range: (usize, usize),
    preferred_share: f64,
    revisit_share: f64,
    same_ts_prob: f64,
    session_break_prob: f64,
    mean_gap_secs: f64,
    mean_session_gap_secs: f64,
    start_ts: i64,
    start_spread_secs: i64,
    preference_decay: f64,
    fresh_share: f64,
    fresh: Option<FreshItems>,
}

/// Items that enter the catalog over time. A fresh item belongs to one
/// category and one hour of log time; its id encodes both, so that
/// [`item_category`] recovers the category from the id alone: id `base + 1 +
/// (slot * categories + category - 1)` with `slot = hour * per_hour + rank`
/// (hours wrap so that ids stay below `u32::MAX`).
#[derive(Debug, Clone, Copy)]
struct FreshItems {
    base: u64,
    per_hour: u64,
    categories: u64,
    hours: u64,
    law: PowerLaw,
    start_ts: i64,
}

impl FreshItems {
    fn new(cfg: &SynthConfig) -> Option<Self> {
        (cfg.fresh_share > 0.0).then(|| FreshItems {
            base: cfg.items,
            per_hour: cfg.fresh_per_hour,
            categories: cfg.categories,
            hours: ((u64::from(u32::MAX) - cfg.items) / (cfg.fresh_per_hour * cfg.categories))
                .max(1),
            law: PowerLaw::new(cfg.fresh_per_hour, cfg.item_zipf),
            start_ts: cfg.start_ts,
        })
    }

    /// A fresh item of `category` introduced in the hour holding `ts`, by
    /// popularity among that hour's fresh items of the category.
    fn pick(&self, ts: i64, category: u64, u: f64) -> u64 {
        let hour = ((ts - self.start_ts).max(0) / 3600) as u64 % self.hours;
        let slot = hour * self.per_hour + self.law.sample(u);
        self.base + 1 + slot * self.categories + (category - 1)
    }

    /// The category of fresh item `item` (> base).
    fn category_of(&self, item: u64) -> u64 {
        (item - self.base - 1) % self.categories + 1
    }
}

impl SynthLog {
    /// The whole log of `cfg`.
    ///
    /// # Panics
    /// If [`SynthConfig::validate`] fails.
    pub fn new(cfg: &SynthConfig) -> Self {
        Self::for_users(cfg, 1..cfg.user_count() + 1)
    }

    /// Only the users with ids in `user_ids`: exactly the rows of those users in
    /// [`SynthLog::new`], so disjoint ranges can be generated in parallel.
    ///
    /// # Panics
    /// If [`SynthConfig::validate`] fails.
    pub fn for_users(cfg: &SynthConfig, user_ids: Range<u64>) -> Self {
        if let Err(e) = cfg.validate() {
            panic!("invalid SynthConfig: {e}");
        }
        let mut groups = Vec::new();
        let mut first = 1u64;
        let mut remaining_total = 0u64;
        let start = user_ids.start.max(1);
        let end = user_ids.end;
        for g in &cfg.users {
            let count = g.count as u64;
            if count > 0 && g.behaviors > 0 {
                groups.push((first, count, g.behaviors));
                let lo = first.max(start);
                let hi = (first + count).min(end);
                if hi > lo {
                    remaining_total += (hi - lo) * g.behaviors as u64;
                }
            }
            first += count;
        }
        let mix_sum: f64 = cfg.behavior_mix.iter().sum();
        let mut kind_thresholds = [0u64; 3];
        let mut acc = 0.0;
        for (t, w) in kind_thresholds.iter_mut().zip(cfg.behavior_mix) {
            acc += w / mix_sum;
            *t = if acc >= 1.0 {
                u64::MAX
            } else {
                (acc * (u64::MAX as f64)) as u64
            };
        }
        SynthLog {
            catalog: Catalog::new(cfg),
            groups,
            group: 0,
            next_user: start,
            end_user: end,
            remaining_total,
            user: None,
            seed: cfg.seed,
            kind_thresholds,
            pref_range: cfg.preferred_categories,
            preferred_share: cfg.preferred_share,
            revisit_share: cfg.revisit_share,
            same_ts_prob: cfg.same_ts_prob,
            session_break_prob: cfg.session_break_prob,
            mean_gap_secs: cfg.mean_gap_secs,
            mean_session_gap_secs: cfg.mean_session_gap_secs,
            start_ts: cfg.start_ts,
            start_spread_secs: cfg.start_spread_secs,
            preference_decay: cfg.preference_decay,
            fresh_share: cfg.fresh_share,
            fresh: FreshItems::new(cfg),
        }
    }

    /// Moves to the next user with behaviors; false at the end.
    fn next_user(&mut self) -> bool {
        while let Some(&(first, count, behaviors)) = self.groups.get(self.group) {
            if self.next_user < first {
                self.next_user = first;
            }
            if self.next_user >= self.end_user {
                return false;
            }
            if self.next_user >= first + count {
                self.group += 1;
                continue;
            }
            let user_id = self.next_user;
            self.next_user += 1;
            self.user = Some(self.start_user(user_id, behaviors));
            return true;
        }
        false
    }

    fn start_user(&self, user_id: u64, behaviors: usize) -> UserState {
        let mut rng =
            ChaCha8Rng::seed_from_u64(splitmix64(self.seed ^ splitmix64(user_id ^ 0x7573_6572)));
        let (lo, hi) = self.pref_range;
        let want = lo + (rng.next_u64() % (hi - lo + 1) as u64) as usize;
        let mut prefs: Vec<u32> = Vec::with_capacity(want);
        let mut attempts = 0;
        while prefs.len() < want && attempts < 50 * want {
            let c = self.catalog.random_category(rng.next_u64());
            if !prefs.contains(&c) {
                prefs.push(c);
            }
            attempts += 1;
        }
        let mut pref_cum: Vec<f64> = Vec::with_capacity(prefs.len());
        let mut acc = 0.0;
        for i in 0..prefs.len() {
            acc += ((i + 1) as f64).powf(-self.preference_decay);
            pref_cum.push(acc);
        }
        for w in &mut pref_cum {
            *w /= acc;
        }
        let pref_share =
            (self.preferred_share + 0.1 * (unit(rng.next_u64()) - 0.5)).clamp(0.0, 1.0);
        let spread = unit(rng.next_u64()) * self.start_spread_secs as f64;
        UserState {
            user_id,
            remaining: behaviors,
            rng,
            ts: self.start_ts + spread as i64,
            first: true,
            pref_share,
            prefs,
            pref_cum,
            history: Vec::with_capacity(behaviors.min(HISTORY_CAP)),
            history_pos: 0,
        }
    }
}

impl Iterator for SynthLog {
    type Item = SynthRow;

    fn next(&mut self) -> Option<SynthRow> {
        if self.user.as_ref().is_none_or(|u| u.remaining == 0) && !self.next_user() {
            return None;
        }
        let cat = &self.catalog;
        let st = self.user.as_mut().expect("a current user");
        let rng = &mut st.rng;

        // Item: a revisit of a recent item, or a new draw.
        let (item, category) =
            if !st.history.is_empty() && unit(rng.next_u64()) < self.revisit_share {
                // Recency-biased pick among the recent items.
                let len = st.history.len();
                let back = (unit(rng.next_u64()).powi(2) * len as f64) as usize;
                let newest = (st.history_pos + len - 1) % len;
                st.history[(newest + len - back.min(len - 1)) % len]
            } else {
                let c = if !st.prefs.is_empty() && unit(rng.next_u64()) < st.pref_share {
                    let u = unit(rng.next_u64());
                    let i = st
                        .pref_cum
                        .iter()
                        .position(|&w| u < w)
                        .unwrap_or(st.prefs.len() - 1);
                    st.prefs[i]
                } else {
                    cat.random_category(rng.next_u64())
                };
                match &self.fresh {
                    Some(fresh) if unit(rng.next_u64()) < self.fresh_share => {
                        let item = fresh.pick(st.ts, u64::from(c), unit(rng.next_u64()));
                        (item as u32, c)
                    }
                    _ => (cat.pick_item(c, unit(rng.next_u64())), c),
                }
            };
        if st.history.len() < HISTORY_CAP {
            st.history.push((item, category));
        } else {
            st.history[st.history_pos] = (item, category);
            st.history_pos = (st.history_pos + 1) % HISTORY_CAP;
        }

        let r = rng.next_u64();
        let t = &self.kind_thresholds;
        let kind = if r < t[0] {
            BehaviorKind::Pv
        } else if r < t[1] {
            BehaviorKind::Cart
        } else if r < t[2] {
            BehaviorKind::Fav
        } else {
            BehaviorKind::Buy
        };

        if st.first {
            st.first = false;
        } else {
            let u = unit(rng.next_u64());
            if u >= self.same_ts_prob {
                let mean = if u < self.same_ts_prob + self.session_break_prob {
                    self.mean_session_gap_secs
                } else {
                    self.mean_gap_secs
                };
                // Exponential gap; 1 - u' is in (0, 1].
                let gap = -(1.0 - unit(rng.next_u64())).ln() * mean;
                st.ts += (gap + 0.5) as i64;
            }
        }
        st.remaining -= 1;
        self.remaining_total -= 1;
        Some(SynthRow {
            user_id: st.user_id,
            item_id: u64::from(item),
            category_id: u64::from(category),
            behavior_type: kind,
            timestamp: st.ts,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining_total).unwrap_or(usize::MAX);
        (n, usize::try_from(self.remaining_total).ok())
    }
}

// ---------------------------------------------------------------------------
// Benchmark query targets.

/// How a benchmark target relates to the user's history before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// An item the user touched before.
    TouchedItem,
    /// An untouched item of a category the user touched (one drawn like a
    /// behavior of the history, so usually a frequent one).
    SharedCategory,
    /// An untouched item of a category with 1 to 3 matches in the history
    /// (the least touched category when none has so few).
    RareCategory,
    /// An item of a category the user never touched.
    Unseen,
}

impl TargetKind {
    /// All kinds.
    pub const ALL: [TargetKind; 4] = [
        TargetKind::TouchedItem,
        TargetKind::SharedCategory,
        TargetKind::RareCategory,
        TargetKind::Unseen,
    ];
}

/// One benchmark query: a target item with its category, as of `as_of_seq`
/// (the history is the user's first `as_of_seq` behaviors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueryTarget {
    /// How the target relates to the history.
    pub kind: TargetKind,
    /// The target item.
    pub item_id: u64,
    /// Its category ([`item_category`] of the item).
    pub category_id: u64,
    /// Number of the user's behaviors before the target.
    pub as_of_seq: u32,
}

/// What target drawing needs of a history prefix, computed once per as-of
/// point.
struct PrefixStats<'a> {
    prefix: &'a [SynthRow],
    touched: std::collections::HashSet<u64>,
    per_cat: std::collections::HashMap<u64, usize>,
    /// Categories with 1 to 3 matches (the least touched ones when none has
    /// so few), sorted.
    rare: Vec<u64>,
}

impl<'a> PrefixStats<'a> {
    fn of(prefix: &'a [SynthRow]) -> Self {
        let touched = prefix.iter().map(|r| r.item_id).collect();
        let mut per_cat: std::collections::HashMap<u64, usize> = std::collections::HashMap::new();
        for r in prefix {
            *per_cat.entry(r.category_id).or_default() += 1;
        }
        // At most 3 matches, or the fewest when every category has more.
        let limit = per_cat.values().min().copied().unwrap_or(0).max(3);
        let mut rare: Vec<u64> = per_cat
            .iter()
            .filter(|(_, &n)| n <= limit)
            .map(|(&c, _)| c)
            .collect();
        rare.sort_unstable();
        PrefixStats {
            prefix,
            touched,
            per_cat,
            rare,
        }
    }
}

/// Draws benchmark targets from a config's catalog.
#[derive(Debug)]
pub struct TargetSampler {
    catalog: Catalog,
    cfg: SynthConfig,
}

impl TargetSampler {
    /// Builds the catalog of `cfg` (O(items)).
    pub fn new(cfg: &SynthConfig) -> Self {
        TargetSampler {
            catalog: Catalog::new(cfg),
            cfg: cfg.clone(),
        }
    }

    /// `per_kind` targets of each [`TargetKind`] for the user whose rows (in
    /// order, so row `i` has `seq` i) are `rows`: half as of the end of the
    /// history, half as of its middle. Seeded; the order is kind by kind.
    pub fn targets(&self, rows: &[SynthRow], per_kind: usize, seed: u64) -> Vec<QueryTarget> {
        let mut out = Vec::with_capacity(per_kind * 4);
        if rows.is_empty() {
            return out;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(splitmix64(seed ^ 0x7461_7267_6574)); // "target"
        let ends = [rows.len(), rows.len().div_ceil(2)];
        let stats = ends.map(|end| PrefixStats::of(&rows[..end]));
        for kind in TargetKind::ALL {
            for k in 0..per_kind {
                let as_of = ends[k % 2];
                let target = self.one(kind, &stats[k % 2], &mut rng);
                out.push(QueryTarget {
                    kind,
                    item_id: target,
                    category_id: item_category(&self.cfg, target),
                    as_of_seq: as_of as u32,
                });
            }
        }
        out
    }

    fn one(&self, kind: TargetKind, stats: &PrefixStats<'_>, rng: &mut ChaCha8Rng) -> u64 {
        let PrefixStats {
            prefix,
            touched,
            per_cat,
            rare,
        } = stats;
        let pick = |n: usize, rng: &mut ChaCha8Rng| (rng.next_u64() % n as u64) as usize;
        // Candidate categories until one holds an untouched base item.
        for _ in 0..1_000 {
            let category = match kind {
                TargetKind::TouchedItem => return prefix[pick(prefix.len(), rng)].item_id,
                TargetKind::SharedCategory => prefix[pick(prefix.len(), rng)].category_id,
                TargetKind::RareCategory => rare[pick(rare.len(), rng)],
                TargetKind::Unseen => {
                    let c = u64::from(self.catalog.random_category(rng.next_u64()));
                    if per_cat.contains_key(&c) {
                        continue;
                    }
                    c
                }
            };
            if let Some(item) = self.untouched_item(category, touched, rng) {
                return item;
            }
        }
        // Every candidate category is exhausted (a tiny catalog): any item.
        u64::from(self.catalog.pick_item(
            self.catalog.random_category(rng.next_u64()),
            unit(rng.next_u64()),
        ))
    }

    /// An item of `category` the user has not touched: by popularity, or
    /// the first untouched member from a random start after 64 draws; `None`
    /// when the category holds no base item or only touched ones.
    fn untouched_item(
        &self,
        category: u64,
        touched: &std::collections::HashSet<u64>,
        rng: &mut ChaCha8Rng,
    ) -> Option<u64> {
        if !self.catalog.holds_items(category) {
            return None;
        }
        for _ in 0..64 {
            let item = u64::from(
                self.catalog
                    .pick_item(category as u32, unit(rng.next_u64())),
            );
            if !touched.contains(&item) {
                return Some(item);
            }
        }
        let c = category as usize;
        let members = &self.catalog.members
            [self.catalog.offsets[c - 1] as usize..self.catalog.offsets[c] as usize];
        let start = (rng.next_u64() % members.len() as u64) as usize;
        (0..members.len())
            .map(|k| u64::from(members[(start + k) % members.len()]))
            .find(|it| !touched.contains(it))
    }
}

// ---------------------------------------------------------------------------
// CSV output.

/// `"00" "01" ... "99"`: two digits at a time.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Longest CSV line: three 20-digit ids, `cart`, a signed 19-digit timestamp,
/// four commas and a newline.
const MAX_LINE: usize = 96;

/// Number of decimal digits of `v` (1 for 0).
#[inline]
fn decimal_len(v: u64) -> usize {
    let mut n = 1;
    let mut p = 10u64;
    while n < 20 && v >= p {
        n += 1;
        p = p.wrapping_mul(10);
    }
    n
}

/// Writes `v` in decimal at `out[pos..]` and returns the end position.
#[inline]
fn put_u64(out: &mut [u8], pos: usize, mut v: u64) -> usize {
    let end = pos + decimal_len(v);
    let mut i = end;
    while v >= 100 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    }
    if v >= 10 {
        let d = v as usize * 2;
        i -= 2;
        out[i..i + 2].copy_from_slice(&DIGIT_PAIRS[d..d + 2]);
    } else {
        i -= 1;
        out[i] = b'0' + v as u8;
    }
    debug_assert_eq!(i, pos);
    end
}

#[inline]
fn put_bytes(out: &mut [u8], pos: usize, bytes: &[u8]) -> usize {
    out[pos..pos + bytes.len()].copy_from_slice(bytes);
    pos + bytes.len()
}

impl SynthRow {
    /// Writes the CSV line at `out[pos..]` (which must have `MAX_LINE` bytes of
    /// room) and returns the end position.
    #[inline]
    fn put_csv(&self, out: &mut [u8], pos: usize) -> usize {
        let mut p = put_u64(out, pos, self.user_id);
        out[p] = b',';
        p = put_u64(out, p + 1, self.item_id);
        out[p] = b',';
        p = put_u64(out, p + 1, self.category_id);
        out[p] = b',';
        p = put_bytes(out, p + 1, self.behavior_type.as_str().as_bytes());
        out[p] = b',';
        p += 1;
        if self.timestamp < 0 {
            out[p] = b'-';
            p += 1;
        }
        p = put_u64(out, p, self.timestamp.unsigned_abs());
        out[p] = b'\n';
        p + 1
    }

    /// Appends the row as one Taobao CSV line
    /// (`user_id,item_id,category_id,behavior_type,timestamp\n`).
    pub fn push_csv(&self, buf: &mut Vec<u8>) {
        let mut line = [0u8; MAX_LINE];
        let n = self.put_csv(&mut line, 0);
        buf.extend_from_slice(&line[..n]);
    }
}

/// Writes `rows` in Taobao CSV format (no header) and returns the row count.
/// Rows are formatted by hand into a 256 KiB buffer; `writer` need not be buffered.
pub fn write_csv_rows<I, W>(rows: I, mut writer: W) -> io::Result<u64>
where
    I: IntoIterator<Item = SynthRow>,
    W: Write,
{
    const CHUNK: usize = 256 * 1024;
    let mut buf = vec![0u8; CHUNK + MAX_LINE];
    let mut pos = 0;
    let mut n = 0u64;
    for row in rows {
        pos = row.put_csv(&mut buf, pos);
        n += 1;
        if pos >= CHUNK {
            writer.write_all(&buf[..pos])?;
            pos = 0;
        }
    }
    writer.write_all(&buf[..pos])?;
    writer.flush()?;
    Ok(n)
}

/// Writes the whole log of `cfg` in Taobao CSV format
/// (`user_id,item_id,category_id,behavior_type,timestamp`, no header) and
/// returns the number of rows.
///
/// # Panics
/// If [`SynthConfig::validate`] fails.
pub fn write_csv<W: Write>(cfg: &SynthConfig, writer: W) -> io::Result<u64> {
    write_csv_rows(SynthLog::new(cfg), writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_law_stays_in_range_and_is_skewed() {
        for s in [0.0, 0.8, 1.0, 1.1, 2.0] {
            let law = PowerLaw::new(100, s);
            let mut counts = [0u32; 100];
            for i in 0..100_000u64 {
                let r = law.sample(unit(splitmix64(i)));
                counts[r as usize] += 1;
            }
            assert!(law.sample(0.0) == 0 && law.sample(0.999_999_999_999) <= 99);
            if s > 0.5 {
                assert!(
                    counts[0] > counts[10] && counts[10] > counts[90],
                    "s={s}: {counts:?}"
                );
            }
        }
        assert_eq!(PowerLaw::new(1, 1.1).sample(0.99), 0);
    }

    #[test]
    fn csv_formatting() {
        let row = SynthRow {
            user_id: 1,
            item_id: 0,
            category_id: 18446744073709551615,
            behavior_type: BehaviorKind::Fav,
            timestamp: -5,
        };
        let mut buf = Vec::new();
        row.push_csv(&mut buf);
        assert_eq!(buf, b"1,0,18446744073709551615,fav,-5\n");
        let mut values = vec![
            0u64,
            1,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            u64::MAX,
            u64::MAX - 1,
        ];
        values.extend((1..20).map(|k| 10u64.pow(k)));
        values.extend((1..20).map(|k| 10u64.pow(k) - 1));
        values.extend((0..1000).map(splitmix64));
        for v in values {
            let mut out = [0u8; 24];
            let end = put_u64(&mut out, 2, v);
            assert_eq!(std::str::from_utf8(&out[2..end]).unwrap(), v.to_string());
        }
        let row = SynthRow {
            user_id: 1,
            item_id: 2,
            category_id: 3,
            behavior_type: BehaviorKind::Cart,
            timestamp: i64::MIN,
        };
        buf.clear();
        row.push_csv(&mut buf);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            format!("1,2,3,cart,{}\n", i64::MIN)
        );
    }

    #[test]
    fn catalog_is_consistent() {
        let cfg = SynthConfig::taobao_like(50_000);
        let cat = Catalog::new(&cfg);
        assert_eq!(cat.members.len() as u64, cfg.items);
        for c in 1..=cfg.categories as usize {
            for &it in &cat.members[cat.offsets[c - 1] as usize..cat.offsets[c] as usize] {
                assert_eq!(item_category(&cfg, u64::from(it)), c as u64);
            }
        }
    }
}
