//! The KV section of a shard snapshot (`format-spec/snapshot.md`, "KV section"): every
//! namespace's records in key order — version, expiry, and where the entry that made the record
//! is — plus the per-segment dead byte counts.
//!
//! Invariants: the encoding is deterministic (namespaces by name, keys in byte order), so a
//! restored store snapshots to the same bytes; a record whose entry is not durable yet is written
//! with a placeholder the snapshot writer fills once it is, and comes back settled; a restored
//! record never points at a placeholder. Values themselves stay in the log: only places are here.

use super::{KvStore, Meta, Space, EXPIRY_MASK, PENDING, TOMBSTONE};
use crate::kv::index::{Index, KeyRef};
use crate::log::places::SegmentTable;
use crate::log::Position;
use crate::snapshot::codec::{Dec, Enc};

/// Version of the section's layout.
const SECTION_VERSION: u32 = 1;
/// Record kinds.
const KIND_VALUE: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
/// Smallest encoded record: key length, version, expiry, kind, place.
const MIN_RECORD_BYTES: usize = 4 + 8 + 8 + 1 + 16;

/// A store's state frozen for a snapshot: every namespace's index shared with the live store
/// (copy on write, `kv/index.rs`) and a copy of the segment table, so the section is encoded a
/// step at a time ([`KvSnapshot::encode_some`]) while the shard goes on changing the store.
pub struct KvSnapshot {
    /// (name, floor, index), by name.
    spaces: Vec<(Box<str>, u64, Index<Meta>)>,
    segments: SegmentTable,
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
        let mut spaces: Vec<(Box<str>, u64, Index<Meta>)> = self
            .spaces
            .iter()
            .map(|(name, space)| (name.clone(), space.floor, space.index.share()))
            .collect();
        spaces.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        KvSnapshot {
            spaces,
            live: vec![0; self.segments.first_lsn.len()],
            segments: self.segments.clone(),
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
        while let Some((name, floor, index)) = spaces.get(*space) {
            if !*header {
                enc.reserve(index.heap_bytes() + index.len() * 8);
                enc.str(name);
                enc.u64(*floor);
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
    rec[8..16].copy_from_slice(&m.expires_at_ms().to_le_bytes());
    let n = if m.is_tombstone() {
        rec[16] = KIND_TOMBSTONE;
        17
    } else {
        rec[16] = KIND_VALUE;
        rec[17..21].copy_from_slice(&m.len.to_le_bytes());
        21
    };
    enc.raw(&rec[..n]);
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
    /// Reads a store written by [`KvStore::snapshot`].
    pub fn restore(dec: &mut Dec<'_>) -> Result<KvStore, String> {
        let version = dec.u32("KV section version")?;
        if version != SECTION_VERSION {
            return Err(format!(
                "KV section version {version} is not supported (only {SECTION_VERSION})"
            ));
        }
        let mut store = KvStore::default();
        let spaces = dec.count("KV namespace count", 4 + 8 + 8)?;
        let mut last_name: Option<String> = None;
        for _ in 0..spaces {
            let name = dec.str("KV namespace name")?;
            if last_name.as_deref().is_some_and(|l| l >= name) {
                return Err(format!("KV namespace {name:?} out of order"));
            }
            last_name = Some(name.to_string());
            let mut space = Space {
                floor: dec.u64("KV namespace floor")?,
                ..Space::default()
            };
            let keys = dec.count("KV key count", MIN_RECORD_BYTES)?;
            for _ in 0..keys {
                let key = dec.bytes("KV key")?;
                if key.is_empty() || key.len() > crate::kv::index::KEY_MAX {
                    return Err(format!("KV key of {} bytes in {name:?}", key.len()));
                }
                let version = dec.u64("KV version")?;
                let expires = dec.u64("KV expiry")?;
                if version == 0 || expires > EXPIRY_MASK {
                    return Err(format!(
                        "KV record of {:?}: version {version}, expiry {expires}",
                        String::from_utf8_lossy(key)
                    ));
                }
                let (flags, len) = match dec.u8("KV record kind")? {
                    KIND_VALUE => (0, dec.u32("KV value length")?),
                    KIND_TOMBSTONE => (TOMBSTONE, 0),
                    k => return Err(format!("KV record kind {k} is unknown")),
                };
                let (segment, offset) = dec.place("KV record place")?;
                let loc = store.segments.loc(&Position {
                    lsn: 0,
                    segment,
                    offset,
                });
                let meta = Meta {
                    version,
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
        decode_segment_table(dec, &mut store.segments)?;
        Ok(store)
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
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::kv::store::Value;
    use crate::snapshot::codec::fill_place;

    fn pos(segment: u64, offset: u64) -> Position {
        Position {
            lsn: 0,
            segment,
            offset,
        }
    }

    /// A store with settled, pending, expiring, deleted and overwritten keys in two namespaces.
    fn sample() -> KvStore {
        let mut s = KvStore::default();
        for i in 0..300u64 {
            let key = format!("key-{i:04}");
            let value = Value::At {
                segment: 1 + i / 100 * 1000,
                offset: 64 + i * 128,
                len: 20 + i as u32 % 7,
            };
            s.apply_put("app", &key, 1, if i % 3 == 0 { 5_000 + i } else { 0 }, value);
        }
        // Overwrites (the first entries become dead), a settled and a pending delete.
        s.apply_put(
            "app",
            "key-0001",
            2,
            0,
            Value::At {
                segment: 3001,
                offset: 640,
                len: 9,
            },
        );
        s.apply_delete("app", "key-0002", 2, 3002);
        s.settle_delete("app", "key-0002", 2, &pos(3001, 704));
        s.apply_delete("app", "key-0003", 2, 3003);
        s.apply_put(
            "other",
            "k",
            1,
            0,
            Value::Pending {
                lsn: 3004,
                bytes: Rc::from(&b"pending"[..]),
            },
        );
        s
    }

    fn filled(s: &KvStore) -> Vec<u8> {
        let mut e = Enc::new();
        s.snapshot(&mut e);
        let (mut buf, pending, _) = e.finish();
        for (at, lsn) in pending {
            fill_place(&mut buf, at, 3001, 1000 + lsn);
        }
        buf
    }

    #[test]
    fn a_frozen_store_encodes_as_it_was_while_the_store_changes_between_steps() {
        let mut s = sample();
        let mut writes = 0u64;
        for budget in [1, 7, 64, 1000] {
            let mut whole = Enc::new();
            s.snapshot(&mut whole);
            let whole = whole.finish();
            let mut frozen = s.freeze();
            let mut e = Enc::new();
            let mut step = 0u64;
            while !frozen.encode_some(&mut e, budget) {
                // The live store goes on: overwrites, deletes, new keys and namespaces.
                step += 1;
                let key = format!("key-{:04}", (step * 37) % 320);
                let value = Value::At {
                    segment: 4001,
                    offset: 64 + step * 64,
                    len: 5,
                };
                // Versions above every one written so far.
                writes += 1;
                let v = 100 + writes * 2;
                s.apply_put("app", &key, v, 0, value);
                s.apply_delete("app", &format!("key-{:04}", (step * 53) % 300), v + 1, 5000 + step);
                s.apply_put(
                    "zzz",
                    &key,
                    v,
                    0,
                    Value::At {
                        segment: 4001,
                        offset: 64,
                        len: 1,
                    },
                );
            }
            assert_eq!(step > 0, budget < 300, "budget {budget}");
            // (Not assert_eq: the sections are long.)
            assert!(e.finish() == whole, "budget {budget}: another section");
        }
    }

    #[test]
    fn restore_gives_the_same_records_and_dead_counts() {
        let s = sample();
        let buf = filled(&s);
        let r = KvStore::restore(&mut Dec::new(&buf)).unwrap();
        assert_eq!(filled(&r), buf, "a restored store snapshots to the same bytes");
        assert_eq!(r.slot_count(), s.slot_count());
        let dead = |k: &KvStore| {
            let mut d: Vec<_> = k.dead_bytes().filter(|(_, d)| *d > 0).collect();
            d.sort_unstable();
            d
        };
        assert_eq!(dead(&r), dead(&s));
        // Settled and pending records come back settled at their places, with their versions.
        assert_eq!(
            r.get("app", "key-0001", 0).unwrap().value,
            Value::At {
                segment: 3001,
                offset: 640,
                len: 9
            }
        );
        assert_eq!(
            r.get("other", "k", 0).unwrap().value,
            Value::At {
                segment: 3001,
                offset: 4004,
                len: 7
            }
        );
        assert!(r.get("app", "key-0002", 0).is_none() && r.get("app", "key-0003", 0).is_none());
        assert_eq!(r.latest_version("app", "key-0003"), 2);
        // Expiry survives: visible before, gone after.
        assert!(r.get("app", "key-0003", 0).is_none());
        assert!(r.get("app", "key-0006", 5_005).is_some() && r.get("app", "key-0006", 5_006).is_none());
        // Later writes plan the same versions on both.
        for key in ["key-0001", "key-0002", "key-0150", "new"] {
            assert_eq!(
                r.plan_put("app", key, crate::kv::store::Cond::Always, 0),
                s.plan_put("app", key, crate::kv::store::Cond::Always, 0)
            );
        }
        let scan = |k: &KvStore| {
            k.scan("app", "key-01", None, 1000, 0)
                .0
                .into_iter()
                .map(|(k, s)| (k, s.version))
                .collect::<Vec<_>>()
        };
        assert_eq!(scan(&r), scan(&s));
    }

    #[test]
    fn live_bytes_count_values_not_tombstones() {
        let s = sample();
        let mut e = Enc::new();
        s.snapshot(&mut e);
        let (_, pending, live) = e.finish();
        assert_eq!(pending.len(), 2, "the pending delete and the pending put");
        // Segment 3001 holds key-0001's new value; key-0002's tombstone counts nothing.
        assert_eq!(live.get(&3001), Some(&crate::kv::entry::put_entry_bytes(3, 8, 9)));
        assert!(live.get(&1).is_some_and(|&b| b > 0));
    }

    /// Found by the `snapshot` fuzz target: dead byte counts that overflow when added, and
    /// rows out of order, are refused instead of panicking.
    #[test]
    fn segment_table_overflow_and_disorder_are_refused() {
        let rows = |r: &[(u64, u64)]| {
            let mut e = Enc::new();
            e.count(r.len());
            for &(s, d) in r {
                e.u64(s);
                e.u64(d);
            }
            e.finish().0
        };
        let mut t = SegmentTable::default();
        t.ordinal(5);
        t.dead[0] = u64::MAX;
        assert!(decode_segment_table(&mut Dec::new(&rows(&[(5, 1)])), &mut t)
            .unwrap_err()
            .contains("overflow"));
        let mut t = SegmentTable::default();
        assert!(decode_segment_table(&mut Dec::new(&rows(&[(9, 1), (5, 1)])), &mut t)
            .unwrap_err()
            .contains("order"));
        let mut t = SegmentTable::default();
        decode_segment_table(&mut Dec::new(&rows(&[(5, 1), (9, 2)])), &mut t).unwrap();
        assert_eq!(t.dead, vec![1, 2]);
    }

    #[test]
    fn damaged_input_is_an_error() {
        let buf = filled(&sample());
        for n in 0..buf.len() {
            assert!(KvStore::restore(&mut Dec::new(&buf[..n])).is_err() || n == buf.len());
        }
        let mut bad = buf.clone();
        bad[0] = 9;
        assert!(KvStore::restore(&mut Dec::new(&bad)).unwrap_err().contains("version"));
    }
}
