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
    s.apply_delete("app", "key-0002", 2, 777, 3002);
    s.settle_delete(
        "app",
        "key-0002",
        2,
        &Position {
            lsn: 3002,
            ..pos(3001, 704)
        },
    );
    s.apply_delete("app", "key-0003", 2, 0, 3003);
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

impl KvStore {
    /// A whole section, of any partition.
    fn decode_all(d: &mut Dec<'_>) -> Result<KvStore, String> {
        KvStore::decode(d, None)
    }
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
fn entries_dead_in_flight_are_dead_where_they_land_once_restored() {
    let mut s = KvStore::default();
    let pending = |lsn: u64| Value::Pending {
        lsn,
        bytes: Rc::from(&b"v"[..]),
    };
    // v1 replaced by v2 while both in flight; v3 deleted while in flight; a sweep removes
    // the pending tombstone; the sweep entry itself is dead from the start.
    s.apply_put("a", "k", 1, 0, pending(10));
    s.apply_put("a", "k", 2, 0, pending(11));
    s.apply_put("a", "j", 1, 0, pending(12));
    s.apply_delete("a", "j", 2, 500, 13);
    assert_eq!(
        s.apply_sweep("a", 600, &[("j", 2)]),
        0,
        "a pending record is not counted yet"
    );
    s.dead_from_the_start(14, 64);
    let (mut buf, placeholders, _) = {
        let mut e = Enc::new();
        s.snapshot(&mut e);
        e.finish()
    };
    // Each entry lands at (7, 100 * lsn); the live store settles them there.
    let at = |lsn: u64| Position {
        lsn,
        segment: 7,
        offset: 100 * lsn,
    };
    for (off, lsn) in placeholders {
        fill_place(&mut buf, off, 7, 100 * lsn);
    }
    s.settle("a", "k", 1, &at(10), 1);
    s.settle("a", "k", 2, &at(11), 1);
    s.settle("a", "j", 1, &at(12), 1);
    s.settle_entry("a", "j", 2, &at(13), crate::kv::entry::delete_at_entry_bytes(1, 1));
    s.settle_dead(&at(14), 64);
    assert!(s.dead_in_flight.is_empty());
    let restored = KvStore::decode_all(&mut Dec::new(&buf)).unwrap();
    let encode = |st: &KvStore| {
        let mut e = Enc::new();
        st.snapshot(&mut e);
        e.finish().0
    };
    assert!(
        encode(&restored) == encode(&s),
        "restored is the live store once settled"
    );
    let dead: u64 = restored.dead_bytes().map(|(_, d)| d).sum();
    let want = crate::kv::entry::put_entry_bytes(1, 1, 1) * 2 + crate::kv::entry::delete_at_entry_bytes(1, 1) + 64;
    assert_eq!(dead, want, "k v1, j v1, j's tombstone, the sweep");
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
            s.apply_delete(
                "app",
                &format!("key-{:04}", (step * 53) % 300),
                v + 1,
                step,
                5000 + step,
            );
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
    let r = KvStore::decode_all(&mut Dec::new(&buf)).unwrap();
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
        assert!(KvStore::decode_all(&mut Dec::new(&buf[..n])).is_err() || n == buf.len());
    }
    let mut bad = buf.clone();
    bad[0] = 9;
    assert!(KvStore::decode_all(&mut Dec::new(&bad))
        .unwrap_err()
        .contains("version"));
}

/// A KV section of version 1 (a whole shard's): one namespace with a floor, a value and a
/// tombstone (whose delete time version 1 did not keep), and `extra` raw keys as values.
fn v1_section(extra: &[&[u8]]) -> Vec<u8> {
    let mut e = Enc::new();
    e.u32(1);
    e.count(1);
    e.str("app");
    e.u64(7); // the floor, dropped
    e.count(2 + extra.len());
    let mut keys: Vec<(&[u8], u8)> = vec![(b"gone", 1), (b"live", 0)];
    keys.extend(extra.iter().map(|k| (*k, 0)));
    keys.sort();
    for (key, kind) in keys {
        e.bytes(key);
        e.u64(3);
        e.u64(0);
        e.u8(kind);
        if kind == 0 {
            e.u32(5);
        }
        e.place_uncounted(1, 64);
    }
    e.count(0);
    e.finish().0
}

#[test]
fn version_one_tombstones_count_as_deleted_when_the_snapshot_was_written() {
    let p = Partitioner::new(4, 1);
    let old = KvStore::decode(&mut Dec::new(&v1_section(&[])), None).unwrap();
    let mut into: BTreeMap<u32, KvStore> = (0..4).map(|i| (i, KvStore::default())).collect();
    old.split(&p, 0, 50_000, &mut into).unwrap();
    let home = &into[&p.partition("app", "gone")];
    assert_eq!(
        home.latest_version("app", "gone"),
        3,
        "the tombstone guards its version"
    );
    assert!(
        home.sweepable(50_000 + 59_999, 60_000, 100).is_empty(),
        "kept a retention from then"
    );
    assert_eq!(
        home.sweepable(50_000 + 60_000, 60_000, 100),
        [("app".to_string(), vec![("gone".to_string(), 3)])]
    );
    // A key that is not UTF-8 is refused, not dropped.
    let bad = KvStore::decode(&mut Dec::new(&v1_section(&[b"\xff"])), None).unwrap();
    let mut into: BTreeMap<u32, KvStore> = (0..4).map(|i| (i, KvStore::default())).collect();
    assert!(bad.split(&p, 0, 50_000, &mut into).unwrap_err().contains("not UTF-8"));
}

#[test]
fn entries_dead_in_flight_are_refused_when_they_cannot_be_an_entry() {
    let mut s = KvStore::default();
    s.apply_put(
        "a",
        "k",
        1,
        0,
        Value::Pending {
            lsn: 9,
            bytes: Rc::from(&b"v"[..]),
        },
    );
    s.dead_from_the_start(10, 64);
    let encode = |bytes: u64| {
        let mut e = Enc::new();
        s.snapshot(&mut e);
        let (mut buf, placeholders, _) = e.finish();
        for (off, lsn) in placeholders {
            fill_place(&mut buf, off, 7, 100 * lsn);
        }
        // The dead entry's bytes are the 8 bytes before the segment table (count 0: 8 bytes).
        let at = buf.len() - 16;
        buf[at..at + 8].copy_from_slice(&bytes.to_le_bytes());
        buf
    };
    assert!(KvStore::decode_all(&mut Dec::new(&encode(64))).is_ok());
    for bytes in [0, 20, u64::MAX - 7] {
        let err = KvStore::decode_all(&mut Dec::new(&encode(bytes))).err();
        assert!(err.is_some_and(|e| e.contains("stored size")), "{bytes}");
    }
}
