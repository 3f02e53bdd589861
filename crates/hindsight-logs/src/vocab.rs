//! Vocabularies: string-valued features (genres, tags, behavior types) map
//! to dense ids that are stable for the life of an index. They are saved in
//! every commit's payload, so ids and documents are always committed
//! together.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A growable string <-> id map. Ids are dense, starting at 0, in order of
/// first appearance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<String>", into = "Vec<String>")]
pub struct Vocab {
    names: Vec<String>,
    ids: HashMap<String, u64>,
}

impl From<Vec<String>> for Vocab {
    fn from(names: Vec<String>) -> Self {
        let ids = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u64))
            .collect();
        Vocab { names, ids }
    }
}

impl From<Vocab> for Vec<String> {
    fn from(v: Vocab) -> Self {
        v.names
    }
}

impl Vocab {
    /// The id of `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> u64 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u64;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    /// The id of `name`, if known.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.ids.get(name).copied()
    }

    /// The name of `id`, if known.
    pub fn name(&self, id: u64) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// All names in id order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// The vocabularies of one index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocabularies {
    /// Behavior type names; the id is the `behavior_type` byte of a behavior.
    pub behavior_types: Vocab,
    /// Category names, when categories are strings (movielens genres).
    /// Empty when the dataset's categories are numeric ids used as is.
    pub categories: Vocab,
    /// Tag names (lowercased, trimmed).
    pub tags: Vocab,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intern_is_stable_and_roundtrips() {
        let mut v = Vocab::default();
        assert_eq!(v.intern("Comedy"), 0);
        assert_eq!(v.intern("Drama"), 1);
        assert_eq!(v.intern("Comedy"), 0);
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"["Comedy","Drama"]"#);
        let back: Vocab = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v);
        assert_eq!(back.get("Drama"), Some(1));
        assert_eq!(back.name(0), Some("Comedy"));
    }
}
