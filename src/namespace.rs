//! The namespaces a shard owns: each namespace's record lives on the shard that
//! `Partitioner::namespace_shard` names, so creating one is a single-shard operation and
//! listing is a fan-out.
//!
//! Kept in memory in this version; the log makes it durable (see the log issue).
//! Invariant: `default` exists on its owner shard from the start.

use std::collections::BTreeMap;

/// The name that always exists.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A namespace as listings show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRecord {
    pub name: String,
    pub created_at_ms: u64,
}

/// One shard's namespace records.
#[derive(Debug, Default)]
pub struct NamespaceRegistry {
    by_name: BTreeMap<String, u64>,
}

impl NamespaceRegistry {
    /// Creates `name`; false if it already exists.
    pub fn create(&mut self, name: &str, created_at_ms: u64) -> bool {
        if self.by_name.contains_key(name) {
            return false;
        }
        self.by_name.insert(name.to_string(), created_at_ms);
        true
    }

    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// All records, by name.
    pub fn list(&self) -> Vec<NamespaceRecord> {
        self.by_name
            .iter()
            .map(|(name, &created_at_ms)| NamespaceRecord {
                name: name.clone(),
                created_at_ms,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_once() {
        let mut r = NamespaceRegistry::default();
        assert!(r.create("a", 5));
        assert!(!r.create("a", 6));
        assert!(r.create("b", 7));
        assert_eq!(
            r.list(),
            vec![
                NamespaceRecord {
                    name: "a".into(),
                    created_at_ms: 5
                },
                NamespaceRecord {
                    name: "b".into(),
                    created_at_ms: 7
                }
            ]
        );
        assert!(r.contains("b") && !r.contains("c"));
    }
}
