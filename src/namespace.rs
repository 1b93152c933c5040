//! The namespaces a shard owns: each namespace's record lives on the shard that
//! `Partitioner::namespace_shard` names, so creating one is a single-shard operation and
//! listing is a fan-out.
//!
//! Durable through the owner shard's log: a `NAMESPACE_CREATE` entry (`format-spec/log.md`)
//! is appended, and the record is applied once the entry is durable; replay applies the same
//! entries at start. Invariant: `default` exists on its owner shard from the start.

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
    /// Names whose creation entry is in the log but not yet durable, with their creation time.
    pending: BTreeMap<String, u64>,
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

    /// Claims `name` for a creation on its way to the log; false if it exists or is claimed.
    pub fn reserve(&mut self, name: &str, created_at_ms: u64) -> bool {
        if self.by_name.contains_key(name) || self.pending.contains_key(name) {
            return false;
        }
        self.pending.insert(name.to_string(), created_at_ms);
        true
    }

    /// The creation entry of a reserved name is durable: it exists now.
    pub fn commit(&mut self, name: &str, created_at_ms: u64) {
        let was_pending = self.pending.remove(name);
        debug_assert!(was_pending.is_some(), "commit without reserve");
        self.by_name.insert(name.to_string(), created_at_ms);
    }

    /// The creation of a reserved name failed.
    pub fn release(&mut self, name: &str) {
        self.pending.remove(name);
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

/// Version of the namespace section's layout in snapshots.
const SECTION_VERSION: u32 = 1;

impl NamespaceRegistry {
    /// Writes the records for a snapshot (`format-spec/snapshot.md`, "Namespace section"): the
    /// reserved names too, since their creation entries are already in the log and a snapshot
    /// stands for every entry appended before it.
    pub fn snapshot(&self, enc: &mut crate::snapshot::codec::Enc) {
        let mut all: Vec<(&String, &u64)> = self.by_name.iter().chain(self.pending.iter()).collect();
        all.sort_unstable();
        enc.u32(SECTION_VERSION);
        enc.count(all.len());
        for (name, created_at_ms) in all {
            enc.str(name);
            enc.u64(*created_at_ms);
        }
    }

    /// Reads records written by [`NamespaceRegistry::snapshot`].
    pub fn restore(dec: &mut crate::snapshot::codec::Dec<'_>) -> Result<NamespaceRegistry, String> {
        let version = dec.u32("namespace section version")?;
        if version != SECTION_VERSION {
            return Err(format!("namespace section version {version} is not supported"));
        }
        let mut r = NamespaceRegistry::default();
        for _ in 0..dec.count("namespace count", 12)? {
            let name = dec.str("namespace name")?;
            if !crate::api::path::is_valid_name(name) {
                return Err(format!("invalid namespace name {name:?}"));
            }
            let created_at_ms = dec.u64("namespace creation time")?;
            if !r.create(name, created_at_ms) {
                return Err(format!("namespace {name:?} appears twice"));
            }
        }
        Ok(r)
    }
}

/// Log entry type of a namespace creation.
pub const ENTRY_NAMESPACE_CREATE: u16 = 1;

/// The body of a `NAMESPACE_CREATE` entry: u64 created_at_ms, u16 name length, name.
pub fn encode_create(name: &str, created_at_ms: u64) -> Vec<u8> {
    let len = u16::try_from(name.len()).expect("namespace names are at most 128 bytes");
    let mut b = Vec::with_capacity(10 + name.len());
    b.extend_from_slice(&created_at_ms.to_le_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b
}

/// Decodes a `NAMESPACE_CREATE` body.
pub fn decode_create(body: &[u8]) -> Result<(String, u64), String> {
    if body.len() < 10 {
        return Err("namespace entry too short".into());
    }
    let mut t = [0u8; 8];
    t.copy_from_slice(&body[..8]);
    let created_at_ms = u64::from_le_bytes(t);
    let len = u16::from_le_bytes([body[8], body[9]]) as usize;
    if body.len() != 10 + len {
        return Err("namespace entry length mismatch".into());
    }
    let name = std::str::from_utf8(&body[10..]).map_err(|_| "namespace name is not UTF-8".to_string())?;
    if !crate::api::path::is_valid_name(name) {
        return Err(format!("invalid namespace name {name:?} in the log"));
    }
    Ok((name.to_string(), created_at_ms))
}

#[cfg(test)]
mod tests {
    #[test]
    fn entry_round_trip() {
        let b = encode_create("myapp", 42);
        assert_eq!(decode_create(&b), Ok(("myapp".to_string(), 42)));
        assert!(decode_create(&b[..b.len() - 1]).is_err());
        assert!(decode_create(&encode_create("a/b", 1)).is_err());
    }

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

    #[test]
    fn snapshot_holds_reserved_names_too() {
        let mut r = NamespaceRegistry::default();
        r.create("a", 5);
        assert!(r.reserve("b", 9));
        let mut e = crate::snapshot::codec::Enc::new();
        r.snapshot(&mut e);
        let (buf, _, _) = e.finish();
        let back = NamespaceRegistry::restore(&mut crate::snapshot::codec::Dec::new(&buf)).unwrap();
        assert_eq!(back.list().len(), 2);
        assert!(back.contains("b"));
        assert!(NamespaceRegistry::restore(&mut crate::snapshot::codec::Dec::new(&buf[..buf.len() - 1])).is_err());
    }
}
