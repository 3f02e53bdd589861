//! One owner for turning a request into a [`Target`]: an item, its
//! features as the request gives them (ids or names) or else as the index
//! knows them. The CLI's `retrieve` and the server's score and append
//! routes all go through [`resolve_target`], so a name that one of them
//! accepts the others accept too.
//!
//! Needs no libtorch: only the index snapshot and its vocabularies.

use hindsight_core::{ItemFeatures, Target};
use hindsight_index::Snapshot;

use crate::{EngineError, Result};

/// A category, tag or behavior type as a request names it: a numeric id,
/// or a name the index's vocabulary knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdOrName {
    /// A numeric id, used as is.
    Id(u64),
    /// A name: trimmed, then looked up as given, then lowercased; on an
    /// index without names for that kind (numeric ids in the logs, e.g.
    /// taobao categories) it must be a number.
    Name(String),
}

/// Features a request gives for its target instead of the index's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureOverrides {
    /// Categories (ids or names).
    pub categories: Vec<IdOrName>,
    /// Tags (ids or names).
    pub tags: Vec<IdOrName>,
}

/// What a request says about one target item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetRequest {
    /// The item.
    pub item_id: u64,
    /// The item's features as given; `None`: looked up in the index (from
    /// any behavior on the item). An item the index has never seen then
    /// has no features (its id alone).
    pub overrides: Option<FeatureOverrides>,
}

/// Which vocabulary a name belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// Item categories (movielens genres).
    Category,
    /// Item tags.
    Tag,
    /// Behavior types (taobao `pv`, `buy`, ...).
    BehaviorType,
}

impl VocabKind {
    /// The word used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            VocabKind::Category => "category",
            VocabKind::Tag => "tag",
            VocabKind::BehaviorType => "behavior type",
        }
    }
}

/// Resolves ids or names of one kind against the snapshot's vocabulary.
/// An unknown name is [`EngineError::UnknownName`] (a typo must not
/// silently become "no category").
pub fn resolve_ids(snapshot: &Snapshot, kind: VocabKind, given: &[IdOrName]) -> Result<Vec<u64>> {
    let vocabs = &snapshot.state().vocabs;
    let vocab = match kind {
        VocabKind::Category => &vocabs.categories,
        VocabKind::Tag => &vocabs.tags,
        VocabKind::BehaviorType => &vocabs.behavior_types,
    };
    let what = kind.as_str();
    given
        .iter()
        .map(|v| match v {
            IdOrName::Id(id) => Ok(*id),
            IdOrName::Name(raw) => {
                let s = raw.trim();
                if let Some(id) = vocab.get(s).or_else(|| vocab.get(&s.to_lowercase())) {
                    Ok(id)
                } else if vocab.is_empty() {
                    s.parse::<u64>().map_err(|_| {
                        EngineError::UnknownName(format!(
                            "{what} {raw:?} is not a numeric id, and this index has no {what} names"
                        ))
                    })
                } else {
                    Err(EngineError::UnknownName(format!(
                        "unknown {what} {raw:?}; the index knows {} {what} names (or give a numeric id)",
                        vocab.len()
                    )))
                }
            }
        })
        .collect()
}

/// Resolves one behavior type to its id: a known name, or an id the index
/// has a name for (any id below 256 when the index has no names).
pub fn resolve_behavior_type(snapshot: &Snapshot, given: &IdOrName) -> Result<u8> {
    let types = &snapshot.state().vocabs.behavior_types;
    let id = resolve_ids(
        snapshot,
        VocabKind::BehaviorType,
        std::slice::from_ref(given),
    )?[0];
    if id > u8::MAX as u64 || (!types.is_empty() && id >= types.len() as u64) {
        return Err(EngineError::UnknownName(format!(
            "behavior_type {id} is not a known type id (known: {})",
            types.names().join(", ")
        )));
    }
    Ok(id as u8)
}

/// The target of a request: its features as given (resolved, sorted and
/// deduplicated), or else as the index knows them.
pub fn resolve_target(snapshot: &Snapshot, req: &TargetRequest) -> Result<Target> {
    let mut features = match &req.overrides {
        None => snapshot.item_features(req.item_id)?.unwrap_or_default(),
        Some(o) => ItemFeatures {
            categories: resolve_ids(snapshot, VocabKind::Category, &o.categories)?,
            tags: resolve_ids(snapshot, VocabKind::Tag, &o.tags)?,
        },
    };
    features.normalize();
    Ok(Target {
        item_id: req.item_id,
        features,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hindsight_index::{BehaviorIndex, NewBehavior};
    use hindsight_logs::DatasetMapping;

    fn name(s: &str) -> IdOrName {
        IdOrName::Name(s.into())
    }

    /// A movielens-shaped index (genre and tag names) with one behavior
    /// on item 7 (categories 3, 1).
    fn movielens_like(dir: &std::path::Path) -> BehaviorIndex {
        let index =
            BehaviorIndex::create(dir, &DatasetMapping::preset("movielens").unwrap()).unwrap();
        index
            .append(&[NewBehavior {
                user_id: 1,
                item_id: 7,
                features: ItemFeatures {
                    categories: vec![3, 1],
                    tags: vec![],
                },
                behavior_type: 0,
                timestamp: 10,
            }])
            .unwrap();
        index
    }

    #[test]
    fn looks_up_the_item_without_overrides_and_resolves_numbers_on_numeric_vocabularies() {
        let dir = tempfile::tempdir().unwrap();
        let index = movielens_like(dir.path());
        let snap = index.snapshot();
        let t = resolve_target(
            &snap,
            &TargetRequest {
                item_id: 7,
                overrides: None,
            },
        )
        .unwrap();
        assert_eq!(t.features.categories, vec![1, 3], "sorted");
        let unseen = resolve_target(
            &snap,
            &TargetRequest {
                item_id: 8,
                overrides: None,
            },
        )
        .unwrap();
        assert_eq!(unseen.features, ItemFeatures::default());
        // Empty overrides are overrides: no features, no lookup.
        let none = resolve_target(
            &snap,
            &TargetRequest {
                item_id: 7,
                overrides: Some(FeatureOverrides::default()),
            },
        )
        .unwrap();
        assert!(none.features.categories.is_empty());
        // The category vocabulary of this index is empty (nothing named
        // was ingested): names must be numbers, trimmed.
        let t = resolve_target(
            &snap,
            &TargetRequest {
                item_id: 7,
                overrides: Some(FeatureOverrides {
                    categories: vec![name(" 5 "), IdOrName::Id(2), IdOrName::Id(5)],
                    tags: vec![],
                }),
            },
        )
        .unwrap();
        assert_eq!(t.features.categories, vec![2, 5], "deduplicated");
        let err = resolve_ids(&snap, VocabKind::Category, &[name("shoes")]).unwrap_err();
        assert!(matches!(err, EngineError::UnknownName(_)), "{err}");
        assert!(err.to_string().contains("not a numeric id"), "{err}");
    }

    #[test]
    fn behavior_types_by_name_trimmed_and_case_insensitive_or_by_known_id() {
        let dir = tempfile::tempdir().unwrap();
        let mapping = DatasetMapping::preset("taobao").unwrap();
        let index = BehaviorIndex::create(dir.path().join("index"), &mapping).unwrap();
        let csv = dir.path().join("log.csv");
        std::fs::write(&csv, "1,7,3,pv,10\n1,8,3,buy,20\n").unwrap();
        hindsight_index::ingest(&index, &mapping, &csv, &Default::default(), &mut |_| {}).unwrap();
        let snap = index.snapshot();
        let types = &snap.state().vocabs.behavior_types;
        let buy = types.get("buy").expect("ingested") as u8;
        assert_eq!(resolve_behavior_type(&snap, &name("  BUY ")).unwrap(), buy);
        assert_eq!(
            resolve_behavior_type(&snap, &IdOrName::Id(buy as u64)).unwrap(),
            buy
        );
        let unknown_id = IdOrName::Id(types.len() as u64);
        for bad in [unknown_id, name("like"), IdOrName::Id(300)] {
            let err = resolve_behavior_type(&snap, &bad).unwrap_err();
            assert!(matches!(err, EngineError::UnknownName(_)), "{bad:?}: {err}");
        }
    }
}
