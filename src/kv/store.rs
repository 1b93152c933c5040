//! The KV state machine of one partition: per namespace, an ordered [`Index`] key → [`Meta`]
//! (version, expiry, where the value is), 32 bytes a key plus the key's bytes. No I/O: the engine
//! appends the entry, applies it here at once (so the next write's CAS sees it), and readers wait
//! until the entry is durable before answering.
//!
//! It also keeps, per log segment, the bytes of KV entries nothing needs any more (overwritten or
//! deleted values, swept tombstones and expired keys): the log's dead-bytes figure.
//!
//! Invariants: a key's version only grows while its record exists; a record is removed only by a
//! `KV_SWEEP` entry naming its version, once it can no longer be seen (deleted, or expired) — a
//! key written after that starts again at version 1, and one that never existed starts at 1; a
//! tombstone keeps its version and the time of its delete; a record is either pending (its entry
//! is not durable yet: it holds the entry's LSN, and a put's bytes wait in `pending_values` until
//! it is) or settled at a (segment, offset) read from the mapped segment; every entry is counted
//! dead at most once, and only once it is settled; applying depends only on the entry and the
//! state (versions, absolute expiry and delete times are in the entries), so replay gives the
//! state the live partition had.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::rc::Rc;

mod machine;
mod snapshot;
pub use machine::{KvAnswer, KvCommand, KvPending};
pub use snapshot::{decode_segment_table, encode_segment_table, KvSnapshot};

use super::entry::{delete_entry_bytes, put_entry_bytes};
use super::index::{Index, KeyRef, Keyed};
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
/// The fixed body bytes of the two delete entries: a tombstone's `len` says which made it.
const DELETE_BODY_FIXED: u32 = 12;
const DELETE_AT_BODY_FIXED: u32 = 20;

/// One key's packed record.
#[derive(Clone, Copy, Debug)]
pub struct Meta {
    version: u64,
    /// Expiry in Unix ms (0 = never), or for a tombstone the time of its delete (0 = unknown),
    /// | `TOMBSTONE` | `PENDING`.
    expiry_flags: u64,
    /// Pending: the entry's LSN. Settled: segment ordinal << 32 | offset in the segment.
    loc: u64,
    /// The value's length; for a tombstone, the fixed body bytes of the delete entry that made it.
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
        if self.is_tombstone() {
            0
        } else {
            self.expiry_flags & EXPIRY_MASK
        }
    }
    fn is_tombstone(&self) -> bool {
        self.expiry_flags & TOMBSTONE != 0
    }
    fn is_pending(&self) -> bool {
        self.expiry_flags & PENDING != 0
    }
    /// Whether a reader may see the value at `now_ms`.
    fn is_visible(&self, now_ms: u64) -> bool {
        let exp = self.expiry_flags & EXPIRY_MASK;
        !self.is_tombstone() && (exp == 0 || exp > now_ms)
    }
    /// Since when the record cannot be seen: its delete, or its expiry (`None` while it can be
    /// seen at `now_ms`).
    fn dead_since(&self, now_ms: u64) -> Option<u64> {
        (!self.is_visible(now_ms)).then_some(self.expiry_flags & EXPIRY_MASK)
    }
    fn pending_lsn(&self) -> Option<u64> {
        self.is_pending().then_some(self.loc)
    }
    /// Stored bytes of the entry that made this record.
    fn entry_bytes(&self, ns_len: usize, key_len: usize) -> u64 {
        if self.is_tombstone() {
            crate::log::format::stored_bytes(self.len as usize + ns_len + key_len) as u64
        } else {
            put_entry_bytes(ns_len, key_len, self.len as usize)
        }
    }
}

/// One namespace's keys.
#[derive(Default)]
struct Space {
    index: Index<Meta>,
}

/// One partition's keys.
#[derive(Default)]
pub struct KvStore {
    spaces: HashMap<Box<str>, Space>,
    /// The bytes of puts not durable yet, by LSN (readers that looked before the entry settled
    /// take them from here).
    pending_values: HashMap<u64, Rc<[u8]>>,
    segments: SegmentTable,
    /// Entries applied but not durable yet that nothing needs any more (a put or delete
    /// replaced or swept while in flight, a sweep itself): LSN → stored bytes. Each is counted
    /// dead in its segment once it settles; a snapshot lists them, so a restored store counts
    /// them as the live one will.
    dead_in_flight: BTreeMap<u64, u64>,
    /// Where the next sweep decision goes on from: (namespace, last key looked at). A hint of
    /// the node that decides, not state: never in snapshots, never read when applying.
    sweep_from: RefCell<Option<SweepCursor>>,
}

/// (namespace, last key looked at) of the sweep's decisions.
type SweepCursor = (Box<str>, Box<[u8]>);

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

    /// The version of a key's latest entry, tombstones included (0 if it has no record).
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
    /// on (its record's, or 0 when it has none), from one look-up.
    fn versions(&self, ns: &str, key: &str, now_ms: u64) -> (u64, u64) {
        match self.meta(ns, key) {
            Some(m) => (if m.is_visible(now_ms) { m.version } else { 0 }, m.version),
            None => (0, 0),
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

    /// Sets a key's record, counting the entry it replaces dead (once settled). The new version
    /// must be above the record's (an entry that says otherwise is damaged; a key without a
    /// record takes any version: 1 since records are swept, higher in older logs): else nothing
    /// changes and the error says so.
    fn set(&mut self, ns: &str, key: &str, meta: Meta) -> Result<(), String> {
        if !self.spaces.contains_key(ns) {
            self.spaces.insert(ns.into(), Space::default());
        }
        let Some(space) = self.spaces.get_mut(ns) else {
            return Ok(());
        };
        if let Some(old) = space.index.insert(key.as_bytes(), meta) {
            if old.version >= meta.version {
                space.index.insert(key.as_bytes(), old);
                return Err(format!(
                    "key {key:?} in {ns:?}: version {} after {}",
                    meta.version, old.version
                ));
            }
            let bytes = old.entry_bytes(ns.len(), key.len());
            match old.pending_lsn() {
                Some(lsn) => {
                    self.dead_in_flight.insert(lsn, bytes);
                }
                None => self.segments.mark_dead(old.loc, bytes),
            }
        }
        Ok(())
    }

    /// Applies a put (live or replayed) whose version is known to be the key's next.
    pub fn apply_put(&mut self, ns: &str, key: &str, version: u64, expires_at_ms: u64, value: Value) {
        let r = self.put_checked(ns, key, version, expires_at_ms, value);
        debug_assert!(r.is_ok(), "{r:?}");
    }

    /// Applies a put; a version not above the key's record's is an error and changes nothing.
    pub fn put_checked(
        &mut self,
        ns: &str,
        key: &str,
        version: u64,
        expires_at_ms: u64,
        value: Value,
    ) -> Result<(), String> {
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
        let r = self.set(ns, key, meta);
        if r.is_err() && flags == PENDING {
            self.pending_values.remove(&loc);
        }
        r
    }

    /// Applies a delete made at `deleted_at_ms` (0: a `KV_DELETE`, which does not say): pending
    /// at `lsn` until settled. Its version is known to be the key's next.
    pub fn apply_delete(&mut self, ns: &str, key: &str, version: u64, deleted_at_ms: u64, lsn: u64) {
        let r = self.delete_checked(ns, key, version, deleted_at_ms, lsn);
        debug_assert!(r.is_ok(), "{r:?}");
    }

    /// Applies a delete; a version not above the key's record's is an error and changes nothing.
    pub fn delete_checked(
        &mut self,
        ns: &str,
        key: &str,
        version: u64,
        deleted_at_ms: u64,
        lsn: u64,
    ) -> Result<(), String> {
        let meta = Meta {
            version,
            expiry_flags: TOMBSTONE | PENDING | deleted_at_ms.min(EXPIRY_MASK),
            loc: lsn,
            len: if deleted_at_ms == 0 {
                DELETE_BODY_FIXED
            } else {
                DELETE_AT_BODY_FIXED
            },
            key: KeyRef::default(),
        };
        self.set(ns, key, meta)
    }

    /// The entry of `version` (of `bytes` stored bytes) is durable at `pos`: the record points
    /// there from now on — or, if a newer write replaced it (or a sweep removed it) meanwhile,
    /// the entry is dead at once.
    pub fn settle_entry(&mut self, ns: &str, key: &str, version: u64, pos: &Position, bytes: u64) {
        self.pending_values.remove(&pos.lsn);
        let loc = self.segments.loc(pos);
        let meta = self.spaces.get_mut(ns).and_then(|s| s.index.get_mut(key.as_bytes()));
        match meta {
            // The record this entry made: its version, still pending on this very entry.
            Some(m) if m.version == version && m.pending_lsn() == Some(pos.lsn) => {
                m.loc = loc;
                m.expiry_flags &= !PENDING;
            }
            _ => {
                self.dead_in_flight.remove(&pos.lsn);
                self.segments.mark_dead(loc, bytes);
            }
        }
    }

    /// An entry applied at `lsn` (`bytes` stored) that nothing needs (a sweep): dead once it
    /// settles ([`KvStore::settle_dead`]).
    pub fn dead_from_the_start(&mut self, lsn: u64, bytes: u64) {
        self.dead_in_flight.insert(lsn, bytes);
    }

    /// An entry that nothing needs is durable at `pos`: its bytes are dead there.
    pub fn settle_dead(&mut self, pos: &Position, bytes: u64) {
        self.dead_in_flight.remove(&pos.lsn);
        let loc = self.segments.loc(pos);
        self.segments.mark_dead(loc, bytes);
    }

    /// The put of `version` with a value of `len` bytes is durable at `pos`.
    pub fn settle(&mut self, ns: &str, key: &str, version: u64, pos: &Position, len: u32) {
        let bytes = put_entry_bytes(ns.len(), key.len(), len as usize);
        self.settle_entry(ns, key, version, pos, bytes);
    }

    /// The `KV_DELETE` of `version` is durable at `pos`.
    pub fn settle_delete(&mut self, ns: &str, key: &str, version: u64, pos: &Position) {
        let bytes = delete_entry_bytes(ns.len(), key.len());
        self.settle_entry(ns, key, version, pos, bytes);
    }

    /// Applies a sweep decided at `at_ms`: removes each named record that still has the named
    /// version and cannot be seen at `at_ms`; its entry's bytes are dead. Returns how many.
    pub fn apply_sweep(&mut self, ns: &str, at_ms: u64, records: &[(&str, u64)]) -> usize {
        let Some(space) = self.spaces.get_mut(ns) else {
            return 0;
        };
        let mut removed = 0;
        for &(key, version) in records {
            let gone = space
                .index
                .get(key.as_bytes())
                .is_some_and(|m| m.version == version && !m.is_visible(at_ms));
            if !gone {
                continue;
            }
            if let Some(m) = space.index.remove(key.as_bytes()) {
                let bytes = m.entry_bytes(ns.len(), key.len());
                match m.pending_lsn() {
                    // Dead once it settles (`settle_entry` finds no record).
                    Some(lsn) => {
                        self.dead_in_flight.insert(lsn, bytes);
                    }
                    None => {
                        self.segments.mark_dead(m.loc, bytes);
                        removed += 1;
                    }
                }
            }
        }
        if space.index.is_empty() {
            self.spaces.remove(ns);
        }
        removed
    }

    /// Decides what the next sweep removes: records that cannot be seen at `now_ms` and have not
    /// been seen for `retention_ms` (their delete or expiry that long ago), whose entries are
    /// durable — visiting at most `budget` records, going on from where the last call stopped
    /// (through every namespace in name order, then around again), so no namespace waits on
    /// another. Returns (namespace, [(key, version)]) groups of at most `SWEEP_MAX_RECORDS`.
    pub fn sweepable(&self, now_ms: u64, retention_ms: u64, budget: usize) -> Vec<(String, Vec<(String, u64)>)> {
        let mut names: Vec<&Box<str>> = self.spaces.keys().collect();
        if names.is_empty() {
            return Vec::new();
        }
        names.sort_unstable();
        let mut from = self.sweep_from.borrow_mut();
        let mut i = match &*from {
            Some((ns, _)) => names.partition_point(|n| ***n < **ns),
            None => 0,
        };
        let mut out: Vec<(String, Vec<(String, u64)>)> = Vec::new();
        let mut visited = 0;
        // Each namespace at most once (the first from where the last call stopped).
        for _ in 0..names.len() {
            let name = names[i % names.len()];
            let after: Option<Box<[u8]>> = match &*from {
                Some((ns, key)) if **ns == **name => Some(key.clone()),
                _ => None,
            };
            let lower = match &after {
                Some(k) => Bound::Excluded(&**k),
                None => Bound::Unbounded,
            };
            let space = &self.spaces[name];
            let mut found: Vec<(String, u64)> = Vec::new();
            let mut last: Option<&[u8]> = None;
            let mut finished = true;
            for (k, m) in space.index.range_from(lower) {
                if visited >= budget {
                    finished = false;
                    break;
                }
                visited += 1;
                last = Some(k);
                let old_enough = m
                    .dead_since(now_ms)
                    .is_some_and(|since| since.saturating_add(retention_ms) <= now_ms);
                if old_enough && !m.is_pending() {
                    if let Ok(k) = std::str::from_utf8(k) {
                        found.push((k.to_string(), m.version));
                    }
                }
            }
            for chunk in found.chunks(super::entry::SWEEP_MAX_RECORDS) {
                out.push((name.to_string(), chunk.to_vec()));
            }
            if !finished {
                let key: Box<[u8]> = match last {
                    Some(k) => Box::from(k),
                    None => after.unwrap_or_default(),
                };
                *from = Some((name.clone(), key));
                return out;
            }
            // This namespace is done: the next one starts from its beginning.
            i += 1;
            *from = Some((names[i % names.len()].clone(), Box::from(&[][..])));
            if visited >= budget {
                return out;
            }
        }
        out
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

    /// Compaction: whether the KV entry at `from` (segment, offset), of `entry_type` with
    /// `body`, is still needed — only a put its key's record points at. (A tombstone's delete
    /// entry is not: snapshots hold its version.)
    pub fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        if entry_type != super::entry::ENTRY_KV_PUT {
            return false;
        }
        let Ok(p) = super::entry::decode_put(body) else {
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
        use super::entry::{decode_put, ENTRY_KV_DELETE, ENTRY_KV_DELETE_AT, ENTRY_KV_PUT, ENTRY_KV_SWEEP};
        let copy_bytes = crate::log::format::stored_bytes(crate::log::relocated::PREFIX_BYTES + body.len()) as u64;
        let to_loc = self.segments.loc(to);
        let (ns, key, version) = match entry_type {
            ENTRY_KV_PUT => {
                let p = decode_put(body)?;
                (p.namespace, p.key, p.version)
            }
            ENTRY_KV_DELETE | ENTRY_KV_DELETE_AT | ENTRY_KV_SWEEP => {
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
}

#[cfg(test)]
mod tests;
