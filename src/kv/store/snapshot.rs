//! The KV section of a partition's snapshot (`format-spec/snapshot.md`, "KV section"): every
//! namespace's records in key order — version, expiry (a tombstone's delete time), and where the
//! entry that made the record is — plus the per-segment dead byte counts. Version 1 of the
//! section (a whole shard's, with per-namespace version floors) is still read, and split into
//! partitions by [`KvStore::split`].
//!
//! Invariants: the encoding is deterministic (namespaces by name, keys in byte order), so a
//! restored store snapshots to the same bytes; a record whose entry is not durable yet is written
//! with a placeholder the snapshot writer fills once it is, and comes back settled; a restored
//! record never points at a placeholder. Values themselves stay in the log: only places are here.

use std::collections::BTreeMap;

use super::{KvStore, Meta, Space, DELETE_AT_BODY_FIXED, DELETE_BODY_FIXED, EXPIRY_MASK, PENDING, TOMBSTONE};
use crate::kv::index::{Index, KeyRef};
use crate::log::places::SegmentTable;
use crate::log::Position;
use crate::partition::Partitioner;
use crate::snapshot::codec::{Dec, Enc};

/// Version of the section's layout: 2 since partitions (no floors; tombstones carry the fixed
/// size of their delete entry); 1 is still read.
const SECTION_VERSION: u32 = 2;
/// Record kinds.
const KIND_VALUE: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
/// Smallest encoded record: key length, version, expiry, kind, place.
const MIN_RECORD_BYTES: usize = 4 + 8 + 8 + 1 + 16;

/// A store's state frozen for a snapshot: every namespace's index shared with the live store
/// (copy on write, `kv/index.rs`) and a copy of the segment table, so the section is encoded a
/// step at a time ([`KvSnapshot::encode_some`]) while the shard goes on changing the store.
pub struct KvSnapshot {
    /// (name, index), by name.
    spaces: Vec<(Box<str>, Index<Meta>)>,
    segments: SegmentTable,
    /// Entries in flight that nothing needs: (LSN, stored bytes), by LSN.
    dead_in_flight: Vec<(u64, u64)>,
    /// Live bytes per segment ordinal, added to the section's figures once at the end.
    live: Vec<u64>,
    begun: bool,
    /// The namespace being written, whether its header is out, and the last key written.
    space: usize,
    header: bool,
    after: Option<Box<[u8]>>,
}

impl KvStore {
    /// Freezes the state for a snapshot: proportional to the number of index leaves, not keys.
    pub fn freeze(&self) -> KvSnapshot {
        let mut spaces: Vec<(Box<str>, Index<Meta>)> = self
            .spaces
            .iter()
            .map(|(name, space)| (name.clone(), space.index.share()))
            .collect();
        spaces.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        KvSnapshot {
            spaces,
            live: vec![0; self.segments.first_lsn.len()],
            segments: self.segments.clone(),
            dead_in_flight: self.dead_in_flight.iter().map(|(l, b)| (*l, *b)).collect(),
            begun: false,
            space: 0,
            header: false,
            after: None,
        }
    }

    /// Writes the whole store in one step.
    pub fn snapshot(&self, enc: &mut Enc) {
        let mut frozen = self.freeze();
        while !frozen.encode_some(enc, usize::MAX) {}
    }
}

impl KvSnapshot {
    /// Writes up to `budget` more records; true once the whole section is written.
    pub fn encode_some(&mut self, enc: &mut Enc, mut budget: usize) -> bool {
        let KvSnapshot {
            spaces,
            segments,
            dead_in_flight,
            live,
            begun,
            space,
            header,
            after,
        } = self;
        if !*begun {
            enc.u32(SECTION_VERSION);
            enc.count(spaces.len());
            *begun = true;
        }
        while let Some((name, index)) = spaces.get(*space) {
            if !*header {
                enc.reserve(index.heap_bytes() + index.len() * 8);
                enc.str(name);
                enc.count(index.len());
                *header = true;
            }
            let lower = match after {
                Some(k) => std::ops::Bound::Excluded(&**k),
                None => std::ops::Bound::Unbounded,
            };
            let mut last: Option<&[u8]> = None;
            for (key, m) in index.range_from(lower) {
                if budget == 0 {
                    if let Some(k) = last {
                        *after = Some(k.into());
                    }
                    return false;
                }
                budget -= 1;
                record(enc, segments, live, name.len(), key, m);
                last = Some(key);
            }
            *space += 1;
            *header = false;
            *after = None;
        }
        for (ordinal, bytes) in live.iter().enumerate() {
            if *bytes > 0 {
                enc.add_live(segments.first_lsn[ordinal], *bytes);
            }
        }
        // Dead once durable: the snapshot writer fills in where they landed, and a restored
        // store counts them dead there, as the live store will when they settle.
        enc.count(dead_in_flight.len());
        for (lsn, bytes) in dead_in_flight.iter() {
            enc.pending_place(*lsn);
            enc.u64(*bytes);
        }
        encode_segment_table(enc, segments);
        true
    }
}

/// Writes one key's record.
fn record(enc: &mut Enc, segments: &SegmentTable, live: &mut [u64], name_len: usize, key: &[u8], m: &Meta) {
    enc.bytes(key);
    // The fixed fields in one write: the shard is held while records are written.
    let mut rec = [0u8; 21];
    rec[..8].copy_from_slice(&m.version.to_le_bytes());
    rec[8..16].copy_from_slice(&(m.expiry_flags & EXPIRY_MASK).to_le_bytes());
    rec[16] = if m.is_tombstone() { KIND_TOMBSTONE } else { KIND_VALUE };
    rec[17..21].copy_from_slice(&m.len.to_le_bytes());
    enc.raw(&rec);
    match m.pending_lsn() {
        Some(lsn) => enc.pending_place(lsn),
        None => {
            let (segment, offset) = segments.place(m.loc);
            enc.place_uncounted(segment, offset);
            // A tombstone's entry is not needed once a snapshot holds its version.
            if !m.is_tombstone() {
                live[(m.loc >> 32) as usize] += m.entry_bytes(name_len, key.len());
            }
        }
    }
}

impl KvStore {
    /// Reads a store written by [`KvStore::snapshot`]: every key must belong to partition
    /// `partition` (`None`: a whole shard's section of version 1, which the caller splits).
    pub fn decode(dec: &mut Dec<'_>, partition: Option<(u32, &Partitioner)>) -> Result<KvStore, String> {
        let version = dec.u32("KV section version")?;
        if version != SECTION_VERSION && version != 1 {
            return Err(format!(
                "KV section version {version} is not supported (only 1 and {SECTION_VERSION})"
            ));
        }
        if version == 1 && partition.is_some() {
            return Err("KV section version 1 (a whole shard's) inside a partition's section".into());
        }
        let mut store = KvStore::default();
        let spaces = dec.count("KV namespace count", 4 + 8)?;
        let mut last_name: Option<String> = None;
        for _ in 0..spaces {
            let name = dec.str("KV namespace name")?;
            if !crate::names::is_valid_name(name) {
                return Err(format!("invalid KV namespace name {name:?}"));
            }
            if last_name.as_deref().is_some_and(|l| l >= name) {
                return Err(format!("KV namespace {name:?} out of order"));
            }
            last_name = Some(name.to_string());
            if version == 1 {
                // The floor of the sweep before records were swept by entries: not kept.
                dec.u64("KV namespace floor")?;
            }
            let mut space = Space::default();
            let keys = dec.count("KV key count", MIN_RECORD_BYTES)?;
            for _ in 0..keys {
                let key = dec.bytes("KV key")?;
                if key.is_empty() || key.len() > crate::names::KEY_MAX_BYTES {
                    return Err(format!("KV key of {} bytes in {name:?}", key.len()));
                }
                if let Some((p, partitioner)) = partition {
                    let home = std::str::from_utf8(key).map(|k| partitioner.partition(name, k));
                    if home != Ok(p) {
                        return Err(format!(
                            "KV key {:?} of {name:?} is not partition {p}'s",
                            String::from_utf8_lossy(key)
                        ));
                    }
                }
                let version_of_key = dec.u64("KV version")?;
                let expires = dec.u64("KV expiry")?;
                if version_of_key == 0 || expires > EXPIRY_MASK {
                    return Err(format!(
                        "KV record of {:?}: version {version_of_key}, expiry {expires}",
                        String::from_utf8_lossy(key)
                    ));
                }
                let (flags, len) = match (dec.u8("KV record kind")?, version) {
                    (KIND_VALUE, _) => (0, dec.u32("KV value length")?),
                    (KIND_TOMBSTONE, 1) => (TOMBSTONE, DELETE_BODY_FIXED),
                    (KIND_TOMBSTONE, _) => match dec.u32("KV tombstone entry size")? {
                        n @ (DELETE_BODY_FIXED | DELETE_AT_BODY_FIXED) => (TOMBSTONE, n),
                        n => return Err(format!("KV tombstone of a delete entry of {n} fixed bytes")),
                    },
                    (k, _) => return Err(format!("KV record kind {k} is unknown")),
                };
                let (segment, offset) = dec.place("KV record place")?;
                let loc = store.segments.loc(&Position {
                    lsn: 0,
                    segment,
                    offset,
                });
                let meta = Meta {
                    version: version_of_key,
                    expiry_flags: expires | flags,
                    loc,
                    len,
                    key: KeyRef::default(),
                };
                debug_assert_eq!(meta.expiry_flags & PENDING, 0);
                if !space.index.push_greatest(key, meta) {
                    return Err(format!(
                        "KV key {:?} of {name:?} out of order",
                        String::from_utf8_lossy(key)
                    ));
                }
            }
            store.spaces.insert(name.into(), space);
        }
        // Entries that were dead in flight (version 2 on): dead where they landed.
        let mut dead_in_flight = Vec::new();
        if version >= 2 {
            for _ in 0..dec.count("KV entries dead in flight", 16 + 8)? {
                let (segment, offset) = dec.place("KV dead entry place")?;
                let bytes = dec.u64("KV dead entry bytes")?;
                let max = crate::log::format::stored_bytes(crate::log::format::MAX_BODY_BYTES) as u64;
                if bytes <= crate::log::format::ENTRY_HEADER_BYTES as u64 || !bytes.is_multiple_of(8) || bytes > max {
                    return Err(format!("KV dead entry of {bytes} bytes: not an entry's stored size"));
                }
                dead_in_flight.push((segment, offset, bytes));
            }
        }
        decode_segment_table(dec, &mut store.segments)?;
        for (segment, offset, bytes) in dead_in_flight {
            let loc = store.segments.loc(&Position {
                lsn: 0,
                segment,
                offset,
            });
            let dead = &mut store.segments.dead[(loc >> 32) as usize];
            *dead = dead
                .checked_add(bytes)
                .ok_or_else(|| format!("KV dead bytes of segment {segment} overflow"))?;
        }
        Ok(store)
    }

    /// Moves every record into the store of the partition its key belongs to (a whole shard's
    /// store, restored from a snapshot older than per-partition state); the dead byte counts go
    /// to `dead_to`'s store.
    ///
    /// A tombstone of version 1 does not say when its key was deleted: it is taken as deleted at
    /// `written_at_ms` (when the snapshot was written), so it guards its key's version for a
    /// tombstone retention from the upgrade on rather than being swept at once.
    pub fn split(
        self,
        partitioner: &Partitioner,
        dead_to: u32,
        written_at_ms: u64,
        into: &mut BTreeMap<u32, KvStore>,
    ) -> Result<(), String> {
        let mut names: Vec<&Box<str>> = self.spaces.keys().collect();
        names.sort_unstable();
        for name in names {
            for (key, m) in self.spaces[name].index.range_from(std::ops::Bound::Unbounded) {
                let k = std::str::from_utf8(key)
                    .map_err(|_| format!("KV key {:?} of {name:?} is not UTF-8", String::from_utf8_lossy(key)))?;
                let target = into.entry(partitioner.partition(name, k)).or_default();
                let (segment, offset) = self.segments.place(m.loc);
                let mut expiry_flags = m.expiry_flags;
                if m.is_tombstone() && expiry_flags & EXPIRY_MASK == 0 {
                    expiry_flags |= written_at_ms.min(EXPIRY_MASK);
                }
                let meta = Meta {
                    loc: target.segments.loc(&Position {
                        lsn: 0,
                        segment,
                        offset,
                    }),
                    expiry_flags,
                    ..*m
                };
                if !target.spaces.contains_key(&**name) {
                    target.spaces.insert(name.clone(), Space::default());
                }
                if let Some(space) = target.spaces.get_mut(&**name) {
                    space.index.push_greatest(key, meta);
                }
            }
        }
        let target = into.entry(dead_to).or_default();
        for (segment, dead) in self.dead_bytes() {
            let ordinal = target.segments.ordinal(segment) as usize;
            target.segments.dead[ordinal] += dead;
        }
        Ok(())
    }
}

/// The dead byte counts of a segment table: count, then (segment's first LSN, dead bytes).
pub fn encode_segment_table(enc: &mut Enc, t: &SegmentTable) {
    let mut rows: Vec<(u64, u64)> = t.first_lsn.iter().copied().zip(t.dead.iter().copied()).collect();
    rows.sort_unstable();
    enc.count(rows.len());
    for (segment, dead) in rows {
        enc.u64(segment);
        enc.u64(dead);
    }
}

/// Adds the dead byte counts written by [`encode_segment_table`] to `t`.
pub fn decode_segment_table(dec: &mut Dec<'_>, t: &mut SegmentTable) -> Result<(), String> {
    let n = dec.count("segment table rows", 16)?;
    let mut last = 0;
    for _ in 0..n {
        let segment = dec.u64("segment table segment")?;
        let dead = dec.u64("segment table dead bytes")?;
        if segment <= last {
            return Err(format!("segment table: segment {segment} out of order"));
        }
        last = segment;
        let ordinal = t.ordinal(segment) as usize;
        t.dead[ordinal] = t.dead[ordinal]
            .checked_add(dead)
            .ok_or("segment table: dead bytes overflow")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
