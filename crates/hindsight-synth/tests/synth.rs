//! Behavioral tests of the synthetic log generator.

use std::collections::{HashMap, HashSet};

use hindsight_synth::{
    item_category, write_csv, BehaviorKind, SynthConfig, SynthLog, SynthRow, SynthShape,
    TargetKind, TargetSampler, UserGroup, TAOBAO_BEHAVIOR_MIX,
};

fn small_cfg(seed: u64) -> SynthConfig {
    let mut cfg = SynthConfig::taobao_like(200_000).with_seed(seed);
    cfg.users = vec![
        UserGroup {
            count: 30,
            behaviors: 1_000,
        },
        UserGroup {
            count: 0,
            behaviors: 500,
        },
        UserGroup {
            count: 2,
            behaviors: 10_000,
        },
        UserGroup {
            count: 3,
            behaviors: 0,
        },
        UserGroup {
            count: 7,
            behaviors: 37,
        },
    ];
    cfg
}

fn rows(cfg: &SynthConfig) -> Vec<SynthRow> {
    SynthLog::new(cfg).collect()
}

#[test]
fn same_seed_same_rows_different_seed_different_rows() {
    let a = rows(&small_cfg(1));
    let b = rows(&small_cfg(1));
    let c = rows(&small_cfg(2));
    assert_eq!(a, b);
    assert_eq!(a.len(), c.len());
    let same = a
        .iter()
        .zip(&c)
        .filter(|(x, y)| x.item_id == y.item_id)
        .count();
    assert!(
        same < a.len() / 20,
        "{same} of {} rows share items across seeds",
        a.len()
    );
    let mut csv_a = Vec::new();
    let mut csv_b = Vec::new();
    write_csv(&small_cfg(1), &mut csv_a).unwrap();
    write_csv(&small_cfg(1), &mut csv_b).unwrap();
    assert_eq!(csv_a, csv_b);
}

#[test]
fn counts_per_user_group_and_user_order() {
    let cfg = small_cfg(3);
    let rows = rows(&cfg);
    assert_eq!(rows.len() as u64, cfg.total_behaviors());
    assert_eq!(cfg.total_behaviors(), 30_000 + 20_000 + 7 * 37);
    assert_eq!(cfg.user_count(), 42);
    let mut per_user: HashMap<u64, usize> = HashMap::new();
    for r in &rows {
        *per_user.entry(r.user_id).or_default() += 1;
    }
    for u in 1..=30 {
        assert_eq!(per_user[&u], 1_000);
    }
    assert_eq!(per_user[&31], 10_000);
    assert_eq!(per_user[&32], 10_000);
    for u in 33..=35 {
        assert!(!per_user.contains_key(&u));
        assert_eq!(cfg.behaviors_of(u), 0);
    }
    for u in 36..=42 {
        assert_eq!(per_user[&u], 37);
        assert_eq!(cfg.behaviors_of(u), 37);
    }
    assert_eq!(cfg.behaviors_of(0), 0);
    assert_eq!(cfg.behaviors_of(43), 0);
    assert!(rows.windows(2).all(|w| w[0].user_id <= w[1].user_id));
    assert_eq!(rows[0].user_id, 1);
}

#[test]
fn preset_sizes() {
    let bench = SynthConfig::bench_10m();
    assert_eq!(bench.total_behaviors(), 10_000_000);
    assert_eq!(bench.user_count(), 2_400);
    assert_eq!(bench.behaviors_of(1), 50_000);
    assert_eq!(bench.behaviors_of(101), 10_000);
    assert_eq!(bench.behaviors_of(2_400), 1_000);
    for total in [0, 1, 999, 200_000, 1_234_567, 10_000_000, 100_000_000] {
        let cfg = SynthConfig::taobao_like(total);
        assert_eq!(cfg.total_behaviors(), total);
        assert!(cfg.validate().is_ok());
        let users = cfg.user_count();
        let light: u64 = cfg
            .users
            .iter()
            .filter(|g| g.behaviors <= 1_000)
            .map(|g| g.count as u64)
            .sum();
        assert!(
            light * 10 >= users * 9 || users < 10,
            "{total}: {:?}",
            cfg.users
        );
    }
    let big = SynthConfig::taobao_like(10_000_000);
    assert!(big.users.iter().any(|g| g.behaviors == 50_000));
    assert!(big.users.iter().any(|g| g.behaviors == 10_000));
}

#[test]
fn timestamps_non_decreasing_per_user_and_start_near_start_ts() {
    let cfg = small_cfg(4);
    let rows = rows(&cfg);
    let mut equal = 0;
    for w in rows.windows(2) {
        if w[0].user_id == w[1].user_id {
            assert!(
                w[0].timestamp <= w[1].timestamp,
                "{:?} then {:?}",
                w[0],
                w[1]
            );
            equal += usize::from(w[0].timestamp == w[1].timestamp);
        } else {
            assert!(
                w[1].timestamp >= cfg.start_ts
                    && w[1].timestamp < cfg.start_ts + cfg.start_spread_secs
            );
        }
    }
    assert!(rows[0].timestamp >= cfg.start_ts && rows[0].timestamp < cfg.start_ts + 86_400);
    assert!(
        equal > 0 && equal < rows.len() / 20,
        "{equal} equal timestamps"
    );
}

#[test]
fn item_category_is_fixed_and_recomputable() {
    let cfg = small_cfg(5);
    let mut seen: HashMap<u64, u64> = HashMap::new();
    for r in rows(&cfg) {
        assert!(r.item_id >= 1 && r.item_id <= cfg.items);
        assert!(r.category_id >= 1 && r.category_id <= cfg.categories);
        assert_eq!(
            *seen.entry(r.item_id).or_insert(r.category_id),
            r.category_id
        );
    }
    for (&item, &cat) in seen.iter().take(2_000) {
        assert_eq!(item_category(&cfg, item), cat);
    }
    // Categories are skewed: category 1 holds many more items than the median one.
    let mut per_cat = vec![0u64; cfg.categories as usize + 1];
    for item in 1..=cfg.items {
        per_cat[item_category(&cfg, item) as usize] += 1;
    }
    let mut sorted = per_cat[1..].to_vec();
    sorted.sort_unstable();
    assert!(
        per_cat[1] > 20 * sorted[sorted.len() / 2].max(1),
        "{per_cat:?}"
    );
    assert!(per_cat[1] >= per_cat[10] && per_cat[10] >= per_cat[100]);
    // Another seed gives another catalog.
    let other = small_cfg(6);
    let diff = (1..=1_000)
        .filter(|&i| item_category(&cfg, i) != item_category(&other, i))
        .count();
    assert!(diff > 500, "{diff}");
}

#[test]
fn behavior_type_mix_within_one_percent_on_200k_rows() {
    let cfg = SynthConfig::taobao_like(200_000).with_seed(9);
    let mut counts: HashMap<BehaviorKind, u64> = HashMap::new();
    let mut n = 0u64;
    for r in SynthLog::new(&cfg) {
        *counts.entry(r.behavior_type).or_default() += 1;
        n += 1;
    }
    assert_eq!(n, 200_000);
    let sum: f64 = TAOBAO_BEHAVIOR_MIX.iter().sum();
    for (kind, target) in BehaviorKind::ALL.into_iter().zip(TAOBAO_BEHAVIOR_MIX) {
        let got = counts.get(&kind).copied().unwrap_or(0) as f64 / n as f64;
        let want = target / sum;
        assert!((got - want).abs() < 0.01, "{kind}: {got} vs {want}");
        assert!(
            (got - want).abs() < 0.003,
            "{kind}: {got} vs {want} (statistically too far)"
        );
    }
}

#[test]
fn users_concentrate_on_preferred_categories_and_revisit_items() {
    let cfg = small_cfg(10);
    let rows = rows(&cfg);
    let mut by_user: HashMap<u64, Vec<&SynthRow>> = HashMap::new();
    for r in &rows {
        by_user.entry(r.user_id).or_default().push(r);
    }
    let mut worst = 1.0f64;
    let mut revisit_total = 0usize;
    let mut n_total = 0usize;
    for (user, rs) in &by_user {
        if rs.len() < 1_000 {
            continue;
        }
        let mut cats: HashMap<u64, usize> = HashMap::new();
        let mut seen = HashSet::new();
        for r in rs {
            *cats.entry(r.category_id).or_default() += 1;
            if !seen.insert(r.item_id) {
                revisit_total += 1;
            }
        }
        n_total += rs.len();
        let mut counts: Vec<usize> = cats.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top10: usize = counts.iter().take(10).sum();
        let share = top10 as f64 / rs.len() as f64;
        worst = worst.min(share);
        assert!(share >= 0.6, "user {user}: top-10 categories cover {share}");
        // Not everything is in the preferred set.
        assert!(
            counts.len() > 10,
            "user {user}: only {} categories",
            counts.len()
        );
    }
    eprintln!("worst top-10 share {worst:.3}");
    let revisit = revisit_total as f64 / n_total as f64;
    assert!((0.15..0.6).contains(&revisit), "revisit share {revisit}");
}

#[test]
fn user_ranges_match_the_full_log() {
    let cfg = small_cfg(11);
    let all = rows(&cfg);
    let mut parts: Vec<SynthRow> = Vec::new();
    for range in [0..5, 5..31, 31..33, 33..40, 40..100] {
        let log = SynthLog::for_users(&cfg, range);
        let hint = log.size_hint();
        let part: Vec<SynthRow> = log.collect();
        assert_eq!(hint, (part.len(), Some(part.len())));
        parts.extend(part);
    }
    assert_eq!(parts, all);
    assert_eq!(SynthLog::for_users(&cfg, 100..200).count(), 0);
}

#[test]
fn csv_matches_rows() {
    let cfg = small_cfg(12);
    let mut csv = Vec::new();
    let n = write_csv(&cfg, &mut csv).unwrap();
    assert_eq!(n, cfg.total_behaviors());
    let text = String::from_utf8(csv).unwrap();
    let mut lines = 0;
    for (line, row) in text.lines().zip(SynthLog::new(&cfg)) {
        let expected = format!(
            "{},{},{},{},{}",
            row.user_id, row.item_id, row.category_id, row.behavior_type, row.timestamp
        );
        assert_eq!(line, expected);
        lines += 1;
    }
    assert_eq!(lines as u64, n);
    assert!(text.ends_with('\n'));
}

#[test]
fn invalid_configs_are_rejected() {
    let ok = SynthConfig::taobao_like(1_000);
    assert!(ok.validate().is_ok());
    let mut bad = ok.clone();
    bad.items = 0;
    assert!(bad.validate().is_err());
    let mut bad = ok.clone();
    bad.preferred_categories = (3, 2);
    assert!(bad.validate().is_err());
    let mut bad = ok.clone();
    bad.revisit_share = 1.5;
    assert!(bad.validate().is_err());
    let mut bad = ok;
    bad.behavior_mix = [0.0; 4];
    assert!(bad.validate().is_err());
    let result = std::panic::catch_unwind(|| SynthLog::new(&bad).count());
    assert!(result.is_err());
}

/// Three users of `behaviors` behaviors each in `shape` (the rest of the
/// bench mix is not generated: a user's rows do not depend on the others).
fn shaped_users(shape: SynthShape, behaviors: usize) -> (SynthConfig, Vec<Vec<SynthRow>>) {
    let mut cfg = SynthConfig::bench_10m_shaped(shape);
    cfg.users = vec![UserGroup {
        count: 3,
        behaviors,
    }];
    let rows: Vec<SynthRow> = SynthLog::new(&cfg).collect();
    let users = rows.chunks(behaviors).map(<[SynthRow]>::to_vec).collect();
    (cfg, users)
}

fn shaped_user(shape: SynthShape, behaviors: usize) -> (SynthConfig, Vec<SynthRow>) {
    let (cfg, mut users) = shaped_users(shape, behaviors);
    (cfg, users.swap_remove(1))
}

/// Share of behaviors whose item the user had not touched before.
fn new_item_share(rows: &[SynthRow]) -> f64 {
    let mut seen = HashSet::new();
    let new = rows.iter().filter(|r| seen.insert(r.item_id)).count();
    new as f64 / rows.len() as f64
}

fn matches_per_category(rows: &[SynthRow]) -> Vec<usize> {
    let mut per: HashMap<u64, usize> = HashMap::new();
    for r in rows {
        *per.entry(r.category_id).or_default() += 1;
    }
    let mut v: Vec<usize> = per.into_values().collect();
    v.sort_unstable();
    v
}

#[test]
fn shapes_have_the_property_that_names_them() {
    // Taobao-like is today's generator, unchanged.
    assert_eq!(
        SynthConfig::shaped(SynthShape::TaobaoLike, 100_000),
        SynthConfig::taobao_like(100_000)
    );

    let (cfg, users) = shaped_users(SynthShape::BigCatalog, 50_000);
    assert!(cfg.items >= 5_000_000);
    for rows in &users {
        let share = new_item_share(rows);
        assert!(
            share >= 0.8,
            "big catalog: {share:.3} of behaviors on new items"
        );
        assert!(
            rows.iter().any(|r| r.item_id > cfg.items),
            "fresh items appear"
        );
        assert!(rows
            .iter()
            .all(|r| r.category_id == item_category(&cfg, r.item_id)));
    }

    let (cfg, users) = shaped_users(SynthShape::SparseCategories, 50_000);
    for rows in &users {
        let per = matches_per_category(rows);
        let median = per[per.len() / 2];
        assert!(
            (10..=100).contains(&median) && per.len() >= 500,
            "sparse: {} categories, median {median} matches",
            per.len()
        );
        assert!(rows
            .iter()
            .all(|r| r.category_id == item_category(&cfg, r.item_id)));
    }

    for behaviors in [1_000, 50_000] {
        let (_, users) = shaped_users(SynthShape::Dense, behaviors);
        for rows in &users {
            let per = matches_per_category(rows);
            let top = *per.last().unwrap() as f64 / rows.len() as f64;
            assert!(top >= 0.2, "dense: top category holds {top:.3}");
        }
    }
}

#[test]
fn shape_names_parse() {
    for s in SynthShape::ALL {
        assert_eq!(s.as_str().parse::<SynthShape>().unwrap(), s);
    }
    let err = "sparse".parse::<SynthShape>().unwrap_err();
    assert!(err.contains("sparse-categories"), "{err}");
}

#[test]
fn targets_are_of_their_kind() {
    for shape in SynthShape::ALL {
        let (cfg, rows) = shaped_user(shape, 10_000);
        let sampler = TargetSampler::new(&cfg);
        let targets = sampler.targets(&rows, 20, 5);
        assert_eq!(targets.len(), 80);
        assert_eq!(targets, sampler.targets(&rows, 20, 5), "seeded");
        for t in &targets {
            assert!(t.as_of_seq == 10_000 || t.as_of_seq == 5_000);
            assert_eq!(t.category_id, item_category(&cfg, t.item_id));
            let prefix = &rows[..t.as_of_seq as usize];
            let touched = prefix.iter().any(|r| r.item_id == t.item_id);
            let cat_matches = prefix
                .iter()
                .filter(|r| r.category_id == t.category_id)
                .count();
            match t.kind {
                TargetKind::TouchedItem => assert!(touched, "{shape} {t:?}"),
                TargetKind::SharedCategory => {
                    assert!(cat_matches > 0 && !touched, "{shape} {t:?}")
                }
                TargetKind::RareCategory => {
                    let least = *matches_per_category(prefix).first().unwrap();
                    assert!(
                        (1..=3.max(least)).contains(&cat_matches),
                        "{shape} {t:?}: {cat_matches}"
                    );
                }
                TargetKind::Unseen => assert_eq!(cat_matches, 0, "{shape} {t:?}"),
            }
        }
    }
}
