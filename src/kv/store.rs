//! The KV state machine of one shard: per namespace, an ordered [`Index`] key → [`Meta`]
//! (version, expiry, where the value is), 32 bytes a key plus the key's bytes. No I/O: the shard
//! appends the entry, applies it here at once (so the next write's CAS sees it), and readers wait
//! until the entry is durable before answering.
//!
//! It also keeps, per log segment, the bytes of KV entries nothing needs any more (overwritten or
//! deleted values, swept tombstones and expired keys): compaction chooses segments by them.
//!
//! Invariants: a key's version only grows; a tombstone keeps its version; a record is either
//! pending (its entry is not durable yet: it holds the entry's LSN, and a put's bytes wait in
//! `pending_values` until it is) or settled at a (segment, offset) read from the mapped segment;
//! every entry is counted dead at most once, and only once it is settled; replay gives the state
//! the live shard had, because entries carry versions and absolute expiry times.

use std::collections::HashMap;
use std::ops::Bound;
use std::rc::Rc;

mod snapshot;
pub use snapshot::{decode_segment_table, encode_segment_table, KvSnapshot};

use super::entry::{decode_delete, decode_put, delete_entry_bytes, put_entry_bytes, ENTRY_KV_DELETE, ENTRY_KV_PUT};
use super::index::{Index, KeyRef, Keyed};
use crate::log::format::EntryRef;
use crate::log::places::SegmentTable;
use crate::log::Position;

/// Where a key's current value is (a view built from the packed record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Deleted; `pending_lsn` until the delete entry is durable.
    Tombstone { pending_lsn: Option<u64> },
    /// Written to the log, not durable yet (readers wait for `lsn`).
    Pending { lsn: u64, bytes: Rc<[u8]> },
    /// In the `KV_PUT` entry at `offset` of the segment starting at LSN `segment`.
    At { segment: u64, offset: u64, len: u32 },
}

/// One key's state, as readers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub version: u64,
    /// Absolute Unix ms; 0 = never.
    pub expires_at_ms: u64,
    pub value: Value,
}

impl Slot {
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

const TOMBSTONE: u64 = 1 << 63;
const PENDING: u64 = 1 << 62;
/// Expiry times are kept in the low 62 bits (later times are clamped: year 146 million).
const EXPIRY_MASK: u64 = PENDING - 1;

/// One key's packed record.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    version: u64,
    /// Expiry in Unix ms (0 = never) | `TOMBSTONE` | `PENDING`.
    expiry_flags: u64,
    /// Pending: the entry's LSN. Settled: segment ordinal << 32 | offset in the segment.
    loc: u64,
    /// The value's length (0 for tombstones).
    len: u32,
    key: KeyRef,
}

const _: () = assert!(std::mem::size_of::<Meta>() == 32);

impl Keyed for Meta {
    fn key_ref(&self) -> KeyRef {
        self.key
    }
    fn set_key_ref(&mut self, r: KeyRef) {
        self.key = r;
    }
}

impl Meta {
    fn expires_at_ms(&self) -> u64 {
        self.expiry_flags & EXPIRY_MASK
    }
    fn is_tombstone(&self) -> bool {
        self.expiry_flags & TOMBSTONE != 0
    }
    fn is_pending(&self) -> bool {
        self.expiry_flags & PENDING != 0
    }
    /// Whether a reader may see the value at `now_ms`.
    fn is_visible(&self, now_ms: u64) -> bool {
        let exp = self.expires_at_ms();
        !self.is_tombstone() && (exp == 0 || exp > now_ms)
    }
    fn pending_lsn(&self) -> Option<u64> {
        self.is_pending().then_some(self.loc)
    }
    /// Stored bytes of the entry that made this record.
    fn entry_bytes(&self, ns_len: usize, key_len: usize) -> u64 {
        if self.is_tombstone() {
            delete_entry_bytes(ns_len, key_len)
        } else {
            put_entry_bytes(ns_len, key_len, self.len as usize)
        }
    }
}

/// One namespace's keys.
#[derive(Default)]
struct Space {
    index: Index<Meta>,
    /// The highest version of a record the sweep removed: a key written again after its record
    /// was swept continues above it, so versions never go back.
    floor: u64,
    /// The key the sweep stopped after.
    cursor: Option<Box<[u8]>>,
}

/// One shard's keys.
#[derive(Default)]
pub struct KvStore {
    spaces: HashMap<Box<str>, Space>,
    /// The bytes of puts not durable yet, by LSN (readers that looked before the entry settled
    /// take them from here).
    pending_values: HashMap<u64, Rc<[u8]>>,
    segments: SegmentTable,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("namespaces", &self.spaces.len())
            .field("slots", &self.slot_count())
            .finish()
    }
}

impl KvStore {
    fn meta(&self, ns: &str, key: &str) -> Option<&Meta> {
        self.spaces.get(ns)?.index.get(key.as_bytes())
    }

    fn view(&self, m: &Meta) -> Slot {
        let value = if m.is_tombstone() {
            Value::Tombstone {
                pending_lsn: m.pending_lsn(),
            }
        } else if let Some(lsn) = m.pending_lsn() {
            Value::Pending {
                lsn,
                bytes: self
                    .pending_values
                    .get(&lsn)
                    .cloned()
                    .unwrap_or_else(|| Rc::from(&[][..])),
            }
        } else {
            let (segment, offset) = self.segments.place(m.loc);
            Value::At {
                segment,
                offset,
                len: m.len,
            }
        };
        Slot {
            version: m.version,
            expires_at_ms: m.expires_at_ms(),
            value,
        }
    }

    /// The LSN a key's latest entry waits for, if it is not durable yet (visible or not).
    pub fn slot_pending_lsn(&self, ns: &str, key: &str) -> Option<u64> {
        self.meta(ns, key).and_then(Meta::pending_lsn)
    }

    /// The version of a key's latest entry, tombstones included (0 if it was never written).
    pub fn latest_version(&self, ns: &str, key: &str) -> u64 {
        self.meta(ns, key).map_or(0, |m| m.version)
    }

    /// The state of a visible key.
    pub fn get(&self, ns: &str, key: &str, now_ms: u64) -> Option<Slot> {
        self.meta(ns, key)
            .filter(|m| m.is_visible(now_ms))
            .map(|m| self.view(m))
    }

    /// A key's visible version (0 if it cannot be seen) and the version its next write builds
    /// on (its record's, or the namespace's floor), from one look-up.
    fn versions(&self, ns: &str, key: &str, now_ms: u64) -> (u64, u64) {
        let Some(space) = self.spaces.get(ns) else {
            return (0, 0);
        };
        match space.index.get(key.as_bytes()) {
            Some(m) => (if m.is_visible(now_ms) { m.version } else { 0 }, m.version),
            None => (0, space.floor),
        }
    }

    /// Checks a put against its condition; returns the version it will write.
    pub fn plan_put(&self, ns: &str, key: &str, cond: Cond, now_ms: u64) -> Result<u64, Refused> {
        let (visible, base) = self.versions(ns, key, now_ms);
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
        Ok(base + 1)
    }

    /// Checks a delete; returns the tombstone's version.
    pub fn plan_delete(&self, ns: &str, key: &str, cas: Option<u64>, now_ms: u64) -> Result<u64, Refused> {
        let (visible, base) = self.versions(ns, key, now_ms);
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
        Ok(base + 1)
    }

    /// Records held in memory, visible or not.
    pub fn slot_count(&self) -> u64 {
        self.spaces.values().map(|s| s.index.len() as u64).sum()
    }

    /// Heap bytes of the key indexes.
    pub fn index_bytes(&self) -> u64 {
        self.spaces.values().map(|s| s.index.heap_bytes() as u64).sum()
    }

    /// Dead KV bytes per log segment (by the segment's first LSN), for compaction to choose by.
    pub fn dead_bytes(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.segments
            .first_lsn
            .iter()
            .copied()
            .zip(self.segments.dead.iter().copied())
    }

    /// Sets a key's record, counting the entry it replaces dead if that one was settled.
    fn set(&mut self, ns: &str, key: &str, meta: Meta) {
        if !self.spaces.contains_key(ns) {
            self.spaces.insert(ns.into(), Space::default());
        }
        let Some(space) = self.spaces.get_mut(ns) else {
            return;
        };
        if let Some(old) = space.index.insert(key.as_bytes(), meta) {
            debug_assert!(meta.version > old.version, "versions only grow");
            if !old.is_pending() {
                self.segments.mark_dead(old.loc, old.entry_bytes(ns.len(), key.len()));
            }
        }
    }

    /// Applies a put (live or replayed).
    pub fn apply_put(&mut self, ns: &str, key: &str, version: u64, expires_at_ms: u64, value: Value) {
        let expiry = expires_at_ms.min(EXPIRY_MASK);
        let (flags, loc, len) = match value {
            Value::Pending { lsn, bytes } => {
                let len = bytes.len() as u32;
                self.pending_values.insert(lsn, bytes);
                (PENDING, lsn, len)
            }
            Value::At { segment, offset, len } => {
                let pos = Position {
                    lsn: 0,
                    segment,
                    offset,
                };
                (0, self.segments.loc(&pos), len)
            }
            Value::Tombstone { .. } => unreachable!("tombstones are applied by apply_delete"),
        };
        let meta = Meta {
            version,
            expiry_flags: expiry | flags,
            loc,
            len,
            key: KeyRef::default(),
        };
        self.set(ns, key, meta);
    }

    /// Applies a delete: pending at `lsn` until [`KvStore::settle_delete`].
    pub fn apply_delete(&mut self, ns: &str, key: &str, version: u64, lsn: u64) {
        let meta = Meta {
            version,
            expiry_flags: TOMBSTONE | PENDING,
            loc: lsn,
            len: 0,
            key: KeyRef::default(),
        };
        self.set(ns, key, meta);
    }

    /// The entry of `version` (a put of `len` value bytes, or a tombstone) is durable at `pos`:
    /// the record points there from now on — or, if a newer write replaced it meanwhile, the
    /// entry is dead at once.
    fn settle_entry(&mut self, ns: &str, key: &str, version: u64, pos: &Position, bytes: u64) {
        self.pending_values.remove(&pos.lsn);
        let loc = self.segments.loc(pos);
        let meta = self.spaces.get_mut(ns).and_then(|s| s.index.get_mut(key.as_bytes()));
        match meta {
            Some(m) if m.version == version && m.is_pending() => {
                m.loc = loc;
                m.expiry_flags &= !PENDING;
            }
            _ => self.segments.mark_dead(loc, bytes),
        }
    }

    /// The put of `version` with a value of `len` bytes is durable at `pos`.
    pub fn settle(&mut self, ns: &str, key: &str, version: u64, pos: &Position, len: u32) {
        let bytes = put_entry_bytes(ns.len(), key.len(), len as usize);
        self.settle_entry(ns, key, version, pos, bytes);
    }

    /// The delete of `version` is durable at `pos`.
    pub fn settle_delete(&mut self, ns: &str, key: &str, version: u64, pos: &Position) {
        let bytes = delete_entry_bytes(ns.len(), key.len());
        self.settle_entry(ns, key, version, pos, bytes);
    }

    /// Frees the records of keys that can no longer be seen (expired, or deleted) and whose
    /// entries are durable, visiting at most `budget` records per call so the shard is never held
    /// up for long; returns how many were freed. Versions stay monotonic through the floors.
    pub fn sweep(&mut self, now_ms: u64, budget: usize) -> usize {
        let mut visited = 0;
        let mut freed = 0;
        for (ns, space) in self.spaces.iter_mut() {
            if visited >= budget {
                break;
            }
            let cursor = space.cursor.take();
            let lower = match &cursor {
                Some(c) => Bound::Excluded(&**c),
                None => Bound::Unbounded,
            };
            let mut dead = Vec::new();
            let mut last = None;
            let mut finished = true;
            for (k, m) in space.index.range_from(lower) {
                if visited >= budget {
                    finished = false;
                    break;
                }
                visited += 1;
                last = Some(k);
                if !m.is_pending() && !m.is_visible(now_ms) {
                    dead.push(Box::<[u8]>::from(k));
                }
            }
            let last: Option<Box<[u8]>> = last.map(Box::from);
            for k in dead {
                if let Some(m) = space.index.remove(&k) {
                    space.floor = space.floor.max(m.version);
                    self.segments.mark_dead(m.loc, m.entry_bytes(ns.len(), k.len()));
                    freed += 1;
                }
            }
            if !finished {
                space.cursor = last;
            }
        }
        freed
    }

    /// Visible keys of `ns` starting with `prefix`, after `after`, in byte order: at most
    /// `limit`, whether more follow, and the newest LSN not yet durable among every record the
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
            Some(a) if a >= prefix => Bound::Excluded(a.as_bytes()),
            _ => Bound::Included(prefix.as_bytes()),
        };
        let mut out = Vec::new();
        for (k, m) in space.index.range_from(lower) {
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            if !m.is_visible(now_ms) {
                pending = pending.max(m.pending_lsn());
                continue;
            }
            if out.len() == limit {
                return (out, true, pending);
            }
            pending = pending.max(m.pending_lsn());
            out.push((String::from_utf8_lossy(k).into_owned(), self.view(m)));
        }
        (out, false, pending)
    }

    /// Visible keys per namespace (for namespace listings).
    pub fn key_counts(&self, now_ms: u64) -> Vec<(String, u64)> {
        self.spaces
            .iter()
            .map(|(ns, s)| {
                let n = s
                    .index
                    .range_from(Bound::Unbounded)
                    .filter(|(_, m)| m.is_visible(now_ms))
                    .count();
                (ns.to_string(), n as u64)
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
                    segment: pos.segment,
                    offset: pos.offset,
                    len: p.value.len() as u32,
                };
                self.apply_put(p.namespace, p.key, p.version, p.expires_at_ms, value);
                Ok(true)
            }
            ENTRY_KV_DELETE => {
                let d = decode_delete(e.body)?;
                self.check_replayed_version(d.namespace, d.key, d.version)?;
                self.apply_delete(d.namespace, d.key, d.version, pos.lsn);
                self.settle_delete(d.namespace, d.key, d.version, &pos);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Compaction: whether the KV entry at `from` (segment, offset), of `entry_type` with
    /// `body`, is still needed — only a put its key's record points at. (A tombstone's delete
    /// entry is not: snapshots hold its version.)
    pub fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        if entry_type != ENTRY_KV_PUT {
            return false;
        }
        let Ok(p) = decode_put(body) else {
            return false;
        };
        match self.meta(p.namespace, p.key) {
            Some(m) if !m.is_pending() && !m.is_tombstone() && m.version == p.version => {
                self.segments.place(m.loc) == from
            }
            _ => false,
        }
    }

    /// Compaction: the KV entry that was at `from` has a copy at `to` (`entry_type`/`body` are
    /// the original's). If the key's record still points at `from`, it points at the copy from
    /// now on (true); otherwise the copy is dead at once (false). Live and in replay alike.
    pub fn relocate(&mut self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, String> {
        let copy_bytes = crate::log::format::stored_bytes(crate::log::relocated::PREFIX_BYTES + body.len()) as u64;
        let to_loc = self.segments.loc(to);
        let (ns, key, version) = match entry_type {
            ENTRY_KV_PUT => {
                let p = decode_put(body)?;
                (p.namespace, p.key, p.version)
            }
            ENTRY_KV_DELETE => {
                self.segments.mark_dead(to_loc, copy_bytes);
                return Ok(false);
            }
            t => return Err(format!("entry type {t} is not a KV entry")),
        };
        let segments = &mut self.segments;
        let meta = self.spaces.get_mut(ns).and_then(|s| s.index.get_mut(key.as_bytes()));
        match meta {
            Some(m)
                if !m.is_pending() && !m.is_tombstone() && m.version == version && segments.place(m.loc) == from =>
            {
                let old = m.loc;
                m.loc = to_loc;
                segments.mark_dead(old, put_entry_bytes(ns.len(), key.len(), m.len as usize));
                Ok(true)
            }
            _ => {
                segments.mark_dead(to_loc, copy_bytes);
                Ok(false)
            }
        }
    }

    fn check_replayed_version(&self, ns: &str, key: &str, version: u64) -> Result<(), String> {
        let current = self.latest_version(ns, key);
        if version <= current {
            return Err(format!("key {key:?} in {ns:?}: version {version} after {current}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(lsn: u64, b: &[u8]) -> Value {
        Value::Pending {
            lsn,
            bytes: Rc::from(b),
        }
    }

    fn pos(lsn: u64, segment: u64, offset: u64) -> Position {
        Position { lsn, segment, offset }
    }

    fn keys(v: &[(String, Slot)]) -> Vec<&str> {
        v.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn relocation_moves_only_records_that_still_point_at_the_original() {
        let mut s = KvStore::default();
        s.apply_put(
            "a",
            "k",
            1,
            0,
            Value::At {
                segment: 1,
                offset: 64,
                len: 1,
            },
        );
        s.apply_put(
            "a",
            "j",
            1,
            0,
            Value::At {
                segment: 1,
                offset: 128,
                len: 1,
            },
        );
        s.apply_put(
            "a",
            "j",
            2,
            0,
            Value::At {
                segment: 9,
                offset: 64,
                len: 1,
            },
        );
        let body = |key: &str, v: u64| crate::kv::entry::encode_put(v, 0, "a", key, b"x");
        assert!(s.needs((1, 64), ENTRY_KV_PUT, &body("k", 1)));
        assert!(!s.needs((1, 128), ENTRY_KV_PUT, &body("j", 1)), "overwritten");
        assert!(!s.needs((1, 64), ENTRY_KV_DELETE, b""));
        assert!(s
            .relocate((1, 64), &pos(20, 9, 512), ENTRY_KV_PUT, &body("k", 1))
            .unwrap());
        assert_eq!(
            s.get("a", "k", 0).unwrap().value,
            Value::At {
                segment: 9,
                offset: 512,
                len: 1
            }
        );
        assert!(!s.needs((1, 64), ENTRY_KV_PUT, &body("k", 1)), "moved");
        // A copy of an entry the record no longer points at is dead at once.
        assert!(!s
            .relocate((1, 128), &pos(21, 9, 640), ENTRY_KV_PUT, &body("j", 1))
            .unwrap());
        assert_eq!(s.get("a", "j", 0).unwrap().version, 2);
        let dead9 = s.dead_bytes().find(|(seg, _)| *seg == 9).map(|(_, d)| d);
        assert_eq!(
            dead9,
            Some(crate::log::format::stored_bytes(24 + body("j", 1).len()) as u64)
        );
    }

    #[test]
    fn versions_continue_across_delete() {
        let mut s = KvStore::default();
        let v = s.plan_put("a", "k", Cond::Always, 0).unwrap();
        assert_eq!(v, 1);
        s.apply_put("a", "k", v, 0, pending(1, b"x"));
        let v = s.plan_put("a", "k", Cond::Always, 0).unwrap();
        s.apply_put("a", "k", v, 0, pending(2, b"y"));
        let d = s.plan_delete("a", "k", None, 0).unwrap();
        assert_eq!(d, 3);
        s.apply_delete("a", "k", d, 3);
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
        s.apply_put("a", "k", 1, 0, pending(1, b"x"));
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
        s.apply_put("a", "k", 1, 1000, pending(1, b"x"));
        assert!(s.get("a", "k", 999).is_some());
        assert!(s.get("a", "k", 1000).is_none());
        assert_eq!(s.plan_put("a", "k", Cond::IfNotExists, 1000), Ok(2));
        assert_eq!(s.plan_delete("a", "k", None, 1000), Err(Refused::NotFound));
    }

    #[test]
    fn pending_values_are_served_until_settled() {
        let mut s = KvStore::default();
        s.apply_put("a", "k", 1, 0, pending(7, b"hello"));
        let slot = s.get("a", "k", 0).unwrap();
        assert_eq!(slot.value, pending(7, b"hello"));
        assert_eq!(s.slot_pending_lsn("a", "k"), Some(7));
        s.settle("a", "k", 1, &pos(7, 1, 4096), 5);
        assert_eq!(
            s.get("a", "k", 0).unwrap().value,
            Value::At {
                segment: 1,
                offset: 4096,
                len: 5
            }
        );
        assert!(s.pending_values.is_empty(), "settled bytes are dropped");
        assert_eq!(s.slot_pending_lsn("a", "k"), None);
    }

    #[test]
    fn scan_prefix_after_limit() {
        let mut s = KvStore::default();
        for (i, k) in ["user:1", "user:2", "user:3", "usex", "admin"].iter().enumerate() {
            s.apply_put("a", k, i as u64 + 1, 0, pending(i as u64 + 1, b"v"));
        }
        s.apply_delete("a", "user:2", 10, 42);
        let (got, more, pending) = s.scan("a", "user:", None, 10, 0);
        assert_eq!(pending, Some(42), "a pending delete in range must be waited for");
        assert_eq!(keys(&got), vec!["user:1", "user:3"]);
        assert!(!more);
        let (got, more, _) = s.scan("a", "", None, 2, 0);
        assert_eq!(keys(&got), vec!["admin", "user:1"]);
        assert!(more);
        let (got, _, _) = s.scan("a", "", Some("user:1"), 10, 0);
        assert_eq!(keys(&got), vec!["user:3", "usex"]);
        assert!(s.scan("b", "", None, 10, 0).0.is_empty());
    }

    #[test]
    fn sweep_frees_dead_keys_but_versions_keep_growing() {
        let mut s = KvStore::default();
        let at = |i: u64| Value::At {
            segment: 1,
            offset: 64 + 64 * i,
            len: 1,
        };
        for i in 0..100u64 {
            s.apply_put("a", &format!("k{i:03}"), 5, if i % 2 == 0 { 1000 } else { 0 }, at(i));
        }
        s.apply_delete("a", "k001", 6, 500);
        s.settle_delete("a", "k001", 6, &pos(500, 1, 9000));
        s.apply_delete("a", "k003", 6, 999);
        s.apply_put("a", "k004", 6, 10, pending(1000, b"x"));
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
        s.apply_put("a", "k", 1, 0, pending(1, b"x"));
        s.apply_put("a", "k", 2, 0, pending(2, b"y"));
        s.settle("a", "k", 1, &pos(1, 1, 64), 1);
        assert!(
            matches!(s.get("a", "k", 0).unwrap().value, Value::Pending { .. }),
            "a newer write stays pending"
        );
        s.settle("a", "k", 2, &pos(2, 1, 128), 1);
        assert!(matches!(s.get("a", "k", 0).unwrap().value, Value::At { .. }));
    }

    #[test]
    fn dead_bytes_count_every_replaced_entry_once() {
        let mut s = KvStore::default();
        let put = put_entry_bytes(1, 1, 5);
        let del = delete_entry_bytes(1, 1);
        // v1 settled in segment 1, overwritten by v2 (settled in segment 100).
        s.apply_put("a", "k", 1, 0, pending(1, b"hello"));
        s.settle("a", "k", 1, &pos(1, 1, 64), 5);
        s.apply_put("a", "k", 2, 0, pending(100, b"hello"));
        assert_eq!(s.dead_bytes().collect::<Vec<_>>(), vec![(1, put)]);
        // v3 replaces v2 before v2 settles: v2's entry is dead when it settles.
        s.apply_put("a", "k", 3, 0, pending(101, b"hello"));
        s.settle("a", "k", 2, &pos(100, 100, 64), 5);
        s.settle("a", "k", 3, &pos(101, 100, 128), 5);
        assert_eq!(s.dead_bytes().collect::<Vec<_>>(), vec![(1, put), (100, put)]);
        // A delete kills v3; the swept tombstone is dead too.
        s.apply_delete("a", "k", 4, 102);
        s.settle_delete("a", "k", 4, &pos(102, 100, 192));
        assert_eq!(s.dead_bytes().collect::<Vec<_>>(), vec![(1, put), (100, 2 * put)]);
        assert_eq!(s.sweep(0, 100), 1);
        assert_eq!(s.dead_bytes().collect::<Vec<_>>(), vec![(1, put), (100, 2 * put + del)]);
        // Replay counts the same way.
        let mut r = KvStore::default();
        let b1 = super::super::entry::encode_put(1, 0, "a", "k", b"hello");
        let b2 = super::super::entry::encode_put(2, 0, "a", "k", b"hello");
        for (lsn, b, off) in [(1, &b1, 64), (2, &b2, 128)] {
            let e = EntryRef {
                lsn,
                entry_type: ENTRY_KV_PUT,
                flags: 0,
                body: b,
            };
            assert!(r.replay(&e, pos(lsn, 1, off)).unwrap());
        }
        assert_eq!(r.dead_bytes().collect::<Vec<_>>(), vec![(1, put)]);
    }
}
