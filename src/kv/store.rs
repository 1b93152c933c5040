//! The KV state machine of one shard: per namespace, an ordered index key → [`Slot`] (version,
//! expiry, where the value is). No I/O: the shard appends the entry, applies it here at once (so
//! the next write's CAS sees it), and readers wait until the entry is durable before answering.
//!
//! Invariants: a slot's version only grows; a tombstone keeps its version; a value is either
//! `Pending` (its entry is not durable yet; the bytes are held here until it is) or `At` a
//! position in the log (read from the mapped segment); replay gives the state the live shard
//! had, because entries carry versions and absolute expiry times.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::rc::Rc;

use super::entry::{decode_delete, decode_put, ENTRY_KV_DELETE, ENTRY_KV_PUT};
use crate::log::format::EntryRef;
use crate::log::Position;

/// Where a key's current value is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Deleted; `pending_lsn` until the delete entry is durable.
    Tombstone { pending_lsn: Option<u64> },
    /// Written to the log, not durable yet (readers wait for `lsn`).
    Pending { lsn: u64, bytes: Rc<[u8]> },
    /// In the entry at `pos`, `value_offset` bytes into its body.
    At { pos: Position, value_offset: u32, len: u32 },
}

/// One key's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub version: u64,
    /// Absolute Unix ms; 0 = never.
    pub expires_at_ms: u64,
    pub value: Value,
}

impl Slot {
    /// Whether the slot holds a value a reader may see at `now_ms`.
    pub fn is_visible(&self, now_ms: u64) -> bool {
        !matches!(self.value, Value::Tombstone { .. }) && (self.expires_at_ms == 0 || self.expires_at_ms > now_ms)
    }

    /// The LSN readers must wait for, if the value is not durable yet.
    pub fn pending_lsn(&self) -> Option<u64> {
        match self.value {
            Value::Pending { lsn, .. } => Some(lsn),
            Value::Tombstone { pending_lsn } => pending_lsn,
            Value::At { .. } => None,
        }
    }

    pub fn value_len(&self) -> u64 {
        match &self.value {
            Value::Tombstone { .. } => 0,
            Value::Pending { bytes, .. } => bytes.len() as u64,
            Value::At { len, .. } => u64::from(*len),
        }
    }
}

/// The condition of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    Always,
    /// Fails if the key is visible.
    IfNotExists,
    /// Succeeds only if the visible version is this (0 = must not exist).
    Version(u64),
}

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The condition failed; the visible version now (0 if none).
    Conflict { current_version: u64 },
    /// Delete of a key that is not visible.
    NotFound,
}

/// One shard's keys.
#[derive(Debug, Default)]
pub struct KvStore {
    spaces: HashMap<Box<str>, BTreeMap<Box<str>, Slot>>,
    /// Per namespace, the highest version of a slot the sweep removed: a key written again
    /// after its slot was swept continues above it, so versions never go back.
    floors: HashMap<Box<str>, u64>,
    /// Per namespace, the key the sweep stopped after.
    cursors: HashMap<Box<str>, Box<str>>,
}

impl KvStore {
    fn slot(&self, ns: &str, key: &str) -> Option<&Slot> {
        self.spaces.get(ns)?.get(key)
    }

    /// The LSN a key's latest entry waits for, if it is not durable yet (visible or not).
    pub fn slot_pending_lsn(&self, ns: &str, key: &str) -> Option<u64> {
        self.slot(ns, key).and_then(Slot::pending_lsn)
    }

    /// The version of a key's latest entry, tombstones included (0 if it was never written).
    pub fn latest_version(&self, ns: &str, key: &str) -> u64 {
        self.slot(ns, key).map_or(0, |s| s.version)
    }

    /// The slot of a visible key.
    pub fn get(&self, ns: &str, key: &str, now_ms: u64) -> Option<&Slot> {
        self.slot(ns, key).filter(|s| s.is_visible(now_ms))
    }

    fn visible_version(&self, ns: &str, key: &str, now_ms: u64) -> u64 {
        self.get(ns, key, now_ms).map_or(0, |s| s.version)
    }

    /// Checks a put against its condition; returns the version it will write.
    pub fn plan_put(&self, ns: &str, key: &str, cond: Cond, now_ms: u64) -> Result<u64, Refused> {
        let visible = self.visible_version(ns, key, now_ms);
        let ok = match cond {
            Cond::Always => true,
            Cond::IfNotExists => visible == 0,
            Cond::Version(v) => v == visible,
        };
        if !ok {
            return Err(Refused::Conflict {
                current_version: visible,
            });
        }
        Ok(self.base_version(ns, key) + 1)
    }

    /// The version the next write of a key builds on: its slot's, or the namespace's floor.
    fn base_version(&self, ns: &str, key: &str) -> u64 {
        match self.slot(ns, key) {
            Some(s) => s.version,
            None => self.floors.get(ns).copied().unwrap_or(0),
        }
    }

    /// Slots held in memory, visible or not.
    pub fn slot_count(&self) -> u64 {
        self.spaces.values().map(|m| m.len() as u64).sum()
    }

    /// Frees the memory of keys that can no longer be seen (expired, or deleted) and whose
    /// entries are durable, visiting at most `budget` slots per call so the shard is never held
    /// up for long; returns how many were freed. Versions stay monotonic through the floors.
    pub fn sweep(&mut self, now_ms: u64, budget: usize) -> usize {
        let mut visited = 0;
        let mut freed = 0;
        let names: Vec<Box<str>> = self.spaces.keys().cloned().collect();
        for ns in names {
            if visited >= budget {
                break;
            }
            let cursor = self.cursors.remove(&ns);
            let Some(space) = self.spaces.get_mut(&ns) else {
                continue;
            };
            let lower = match &cursor {
                Some(c) => Bound::Excluded(&**c),
                None => Bound::Unbounded,
            };
            let mut dead = Vec::new();
            let mut last = None;
            let mut finished = true;
            for (k, s) in space.range::<str, _>((lower, Bound::Unbounded)) {
                if visited >= budget {
                    finished = false;
                    break;
                }
                visited += 1;
                last = Some(k.clone());
                if s.pending_lsn().is_none() && !s.is_visible(now_ms) {
                    dead.push((k.clone(), s.version));
                }
            }
            let floor = self.floors.entry(ns.clone()).or_default();
            for (k, v) in dead {
                space.remove(&k);
                *floor = (*floor).max(v);
                freed += 1;
            }
            if space.is_empty() {
                self.spaces.remove(&ns);
            }
            if let (false, Some(k)) = (finished, last) {
                self.cursors.insert(ns, k);
            }
        }
        freed
    }

    /// Checks a delete; returns the tombstone's version.
    pub fn plan_delete(&self, ns: &str, key: &str, cas: Option<u64>, now_ms: u64) -> Result<u64, Refused> {
        let visible = self.visible_version(ns, key, now_ms);
        if let Some(v) = cas {
            if v != visible {
                return Err(Refused::Conflict {
                    current_version: visible,
                });
            }
        }
        if visible == 0 {
            return Err(Refused::NotFound);
        }
        Ok(self.base_version(ns, key) + 1)
    }

    /// Applies a put (live or replayed).
    pub fn apply_put(&mut self, ns: &str, key: &str, version: u64, expires_at_ms: u64, value: Value) {
        let space = self.spaces.entry(ns.into()).or_default();
        let slot = Slot {
            version,
            expires_at_ms,
            value,
        };
        match space.get_mut(key) {
            Some(s) => {
                debug_assert!(version > s.version, "versions only grow");
                *s = slot;
            }
            None => {
                space.insert(key.into(), slot);
            }
        }
    }

    /// Applies a delete: `pending_lsn` is the delete entry's LSN until it is durable (`None`
    /// when replayed).
    pub fn apply_delete(&mut self, ns: &str, key: &str, version: u64, pending_lsn: Option<u64>) {
        self.apply_put(ns, key, version, 0, Value::Tombstone { pending_lsn });
    }

    /// The put of `version` is durable at `pos`: the value is read from the log from now on.
    pub fn settle(&mut self, ns: &str, key: &str, version: u64, pos: Position, value_offset: u32, len: u32) {
        if let Some(s) = self.spaces.get_mut(ns).and_then(|m| m.get_mut(key)) {
            if s.version == version && matches!(s.value, Value::Pending { .. }) {
                s.value = Value::At { pos, value_offset, len };
            }
        }
    }

    /// The delete of `version` is durable.
    pub fn settle_delete(&mut self, ns: &str, key: &str, version: u64) {
        if let Some(s) = self.spaces.get_mut(ns).and_then(|m| m.get_mut(key)) {
            if s.version == version {
                s.value = Value::Tombstone { pending_lsn: None };
            }
        }
    }

    /// Visible keys of `ns` starting with `prefix`, after `after`, in byte order: at most
    /// `limit`, whether more follow, and the newest LSN not yet durable among every slot the
    /// scan passed (visible or not) — what a reader must wait for before showing the answer.
    pub fn scan(
        &self,
        ns: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        now_ms: u64,
    ) -> (Vec<(String, Slot)>, bool, Option<u64>) {
        let Some(space) = self.spaces.get(ns) else {
            return (Vec::new(), false, None);
        };
        let mut pending: Option<u64> = None;
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut out = Vec::new();
        for (k, s) in space.range::<str, _>((lower, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if !s.is_visible(now_ms) {
                pending = pending.max(s.pending_lsn());
                continue;
            }
            if out.len() == limit {
                return (out, true, pending);
            }
            pending = pending.max(s.pending_lsn());
            out.push((k.to_string(), s.clone()));
        }
        (out, false, pending)
    }

    /// Visible keys per namespace (for namespace listings).
    pub fn key_counts(&self, now_ms: u64) -> Vec<(String, u64)> {
        self.spaces
            .iter()
            .map(|(ns, m)| {
                (
                    ns.to_string(),
                    m.values().filter(|s| s.is_visible(now_ms)).count() as u64,
                )
            })
            .collect()
    }

    /// Applies a recovered log entry at `pos`; false if the entry is not a KV entry.
    pub fn replay(&mut self, e: &EntryRef<'_>, pos: Position) -> Result<bool, String> {
        match e.entry_type {
            ENTRY_KV_PUT => {
                let p = decode_put(e.body)?;
                self.check_replayed_version(p.namespace, p.key, p.version)?;
                let value = Value::At {
                    pos,
                    value_offset: p.value_offset as u32,
                    len: p.value.len() as u32,
                };
                self.apply_put(p.namespace, p.key, p.version, p.expires_at_ms, value);
                Ok(true)
            }
            ENTRY_KV_DELETE => {
                let d = decode_delete(e.body)?;
                self.check_replayed_version(d.namespace, d.key, d.version)?;
                self.apply_delete(d.namespace, d.key, d.version, None);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn check_replayed_version(&self, ns: &str, key: &str, version: u64) -> Result<(), String> {
        let current = self.slot(ns, key).map_or(0, |s| s.version);
        if version <= current {
            return Err(format!("key {key:?} in {ns:?}: version {version} after {current}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(b: &[u8]) -> Value {
        Value::Pending {
            lsn: 1,
            bytes: Rc::from(b),
        }
    }

    #[test]
    fn versions_continue_across_delete() {
        let mut s = KvStore::default();
        let v = s.plan_put("a", "k", Cond::Always, 0).unwrap();
        assert_eq!(v, 1);
        s.apply_put("a", "k", v, 0, pending(b"x"));
        let v = s.plan_put("a", "k", Cond::Always, 0).unwrap();
        s.apply_put("a", "k", v, 0, pending(b"y"));
        let d = s.plan_delete("a", "k", None, 0).unwrap();
        assert_eq!(d, 3);
        s.apply_delete("a", "k", d, None);
        assert!(s.get("a", "k", 0).is_none());
        assert_eq!(s.plan_delete("a", "k", None, 0), Err(Refused::NotFound));
        assert_eq!(s.plan_put("a", "k", Cond::Always, 0), Ok(4));
    }

    #[test]
    fn conditions() {
        let mut s = KvStore::default();
        assert_eq!(s.plan_put("a", "k", Cond::Version(0), 0), Ok(1));
        assert_eq!(
            s.plan_put("a", "k", Cond::Version(3), 0),
            Err(Refused::Conflict { current_version: 0 })
        );
        s.apply_put("a", "k", 1, 0, pending(b"x"));
        assert_eq!(
            s.plan_put("a", "k", Cond::IfNotExists, 0),
            Err(Refused::Conflict { current_version: 1 })
        );
        assert_eq!(s.plan_put("a", "k", Cond::Version(1), 0), Ok(2));
        assert_eq!(
            s.plan_delete("a", "k", Some(2), 0),
            Err(Refused::Conflict { current_version: 1 })
        );
        assert_eq!(s.plan_delete("a", "k", Some(1), 0), Ok(2));
    }

    #[test]
    fn expiry_hides_but_keeps_counting() {
        let mut s = KvStore::default();
        s.apply_put("a", "k", 1, 1000, pending(b"x"));
        assert!(s.get("a", "k", 999).is_some());
        assert!(s.get("a", "k", 1000).is_none());
        assert_eq!(s.plan_put("a", "k", Cond::IfNotExists, 1000), Ok(2));
        assert_eq!(s.plan_delete("a", "k", None, 1000), Err(Refused::NotFound));
    }

    #[test]
    fn scan_prefix_after_limit() {
        let mut s = KvStore::default();
        for (i, k) in ["user:1", "user:2", "user:3", "usex", "admin"].iter().enumerate() {
            s.apply_put("a", k, i as u64 + 1, 0, pending(b"v"));
        }
        s.apply_delete("a", "user:2", 10, Some(42));
        let (keys, more, pending) = s.scan("a", "user:", None, 10, 0);
        assert_eq!(pending, Some(42), "a pending delete in range must be waited for");
        assert_eq!(
            keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            vec!["user:1", "user:3"]
        );
        assert!(!more);
        let (keys, more, _) = s.scan("a", "", None, 2, 0);
        assert_eq!(
            keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            vec!["admin", "user:1"]
        );
        assert!(more);
        let (keys, _, _) = s.scan("a", "", Some("user:1"), 10, 0);
        assert_eq!(
            keys.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            vec!["user:3", "usex"]
        );
        assert!(s.scan("b", "", None, 10, 0).0.is_empty());
    }

    #[test]
    fn sweep_frees_dead_keys_but_versions_keep_growing() {
        let mut s = KvStore::default();
        let at = |lsn| Value::At {
            pos: Position {
                lsn,
                segment: 1,
                offset: 64,
            },
            value_offset: 0,
            len: 1,
        };
        for i in 0..100u64 {
            s.apply_put(
                "a",
                &format!("k{i:03}"),
                5,
                if i % 2 == 0 { 1000 } else { 0 },
                at(i + 1),
            );
        }
        s.apply_delete("a", "k001", 6, None);
        s.apply_delete("a", "k003", 6, Some(999));
        s.apply_put("a", "k004", 6, 10, pending(b"x"));
        assert_eq!(s.slot_count(), 100);
        // Small budgets: several calls cover the namespace.
        let mut freed = 0;
        for _ in 0..10 {
            freed += s.sweep(2000, 15);
        }
        // 49 expired evens (k004 is pending) + the settled tombstone k001.
        assert_eq!(freed, 50);
        assert_eq!(s.slot_count(), 50);
        assert!(s.slot_pending_lsn("a", "k003").is_some(), "pending tombstones stay");
        // A swept key continues above every version the namespace had.
        assert_eq!(s.plan_put("a", "k000", Cond::Always, 2000), Ok(7));
        assert_eq!(
            s.plan_put("a", "k000", Cond::Version(5), 2000),
            Err(Refused::Conflict { current_version: 0 })
        );
    }

    #[test]
    fn settle_only_the_same_version() {
        let mut s = KvStore::default();
        s.apply_put("a", "k", 1, 0, pending(b"x"));
        s.apply_put("a", "k", 2, 0, pending(b"y"));
        let pos = Position {
            lsn: 1,
            segment: 1,
            offset: 64,
        };
        s.settle("a", "k", 1, pos, 30, 1);
        assert!(
            matches!(s.get("a", "k", 0).unwrap().value, Value::Pending { .. }),
            "a newer write stays pending"
        );
        s.settle("a", "k", 2, pos, 30, 1);
        assert!(matches!(s.get("a", "k", 0).unwrap().value, Value::At { .. }));
    }
}
