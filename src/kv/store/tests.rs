use super::super::entry::{ENTRY_KV_DELETE, ENTRY_KV_PUT};
use super::*;
use crate::log::format::EntryRef;
use crate::machine::{At, Corrupt, Machine};

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
    s.apply_delete("a", "k", d, 7, 3);
    assert!(s.get("a", "k", 0).is_none());
    assert_eq!(s.plan_delete("a", "k", None, 0), Err(Refused::NotFound));
    assert_eq!(
        s.plan_put("a", "k", Cond::Always, 0),
        Ok(4),
        "the tombstone keeps the version"
    );
    assert_eq!(
        s.plan_put("a", "other", Cond::Always, 0),
        Ok(1),
        "another key starts at 1"
    );
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
    s.apply_delete("a", "user:2", 10, 0, 42);
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

/// Sweeps as the timer decides them (records dead for `retention` at `now`, `budget` records
/// looked at), applied as entries; returns the records removed.
fn sweep(s: &mut KvStore, now: u64, retention: u64, budget: usize) -> usize {
    let mut removed = 0;
    for (ns, records) in s.sweepable(now, retention, budget) {
        let named: Vec<(&str, u64)> = records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        removed += s.apply_sweep(&ns, now, &named);
    }
    removed
}

#[test]
fn sweep_frees_dead_keys_after_the_retention_and_new_versions_start_over() {
    let mut s = KvStore::default();
    let at = |i: u64| Value::At {
        segment: 1,
        offset: 64 + 64 * i,
        len: 1,
    };
    for i in 0..100u64 {
        s.apply_put("a", &format!("k{i:03}"), 5, if i % 2 == 0 { 1000 } else { 0 }, at(i));
    }
    s.apply_delete("a", "k001", 6, 1500, 500);
    s.settle_delete("a", "k001", 6, &pos(500, 1, 9000));
    s.apply_delete("a", "k003", 6, 1500, 999);
    s.apply_put("a", "k004", 6, 10, pending(1000, b"x"));
    assert_eq!(s.slot_count(), 100);
    // Dead, but not for the retention yet: nothing goes.
    assert_eq!(sweep(&mut s, 2000, 1000, 1000), 49, "only the evens expired at 1000");
    // Small budgets: several calls cover the namespace.
    let mut freed = 0;
    for _ in 0..20 {
        freed += sweep(&mut s, 3000, 1000, 15);
    }
    // The settled tombstone k001 (deleted at 1500).
    assert_eq!(freed, 1);
    assert_eq!(s.slot_count(), 50);
    assert!(s.slot_pending_lsn("a", "k003").is_some(), "pending tombstones stay");
    assert!(s.slot_pending_lsn("a", "k004").is_some(), "pending puts stay");
    // A swept key starts over; a kept tombstone still guards its key.
    assert_eq!(s.plan_put("a", "k000", Cond::Always, 3000), Ok(1));
    assert_eq!(s.plan_put("a", "k001", Cond::Always, 3000), Ok(1));
    assert_eq!(s.plan_put("a", "k003", Cond::Always, 3000), Ok(7));
    assert_eq!(
        s.plan_put("a", "k000", Cond::Version(5), 3000),
        Err(Refused::Conflict { current_version: 0 })
    );
}

#[test]
fn the_sweep_goes_through_every_namespace_whatever_their_sizes() {
    // The first namespace's size is a multiple of the budget: the second is still reached.
    let mut s = KvStore::default();
    let at = Value::At {
        segment: 1,
        offset: 64,
        len: 1,
    };
    for i in 0..40u64 {
        s.apply_put("a", &format!("k{i:02}"), 1, 10, at.clone());
    }
    s.apply_put("b", "only", 1, 10, at.clone());
    s.apply_put("c", "live", 1, 0, at);
    let mut freed = 0;
    for _ in 0..5 {
        freed += sweep(&mut s, 100, 0, 20);
    }
    assert_eq!(freed, 41);
    assert_eq!(s.latest_version("b", "only"), 0);
    assert_eq!(s.latest_version("c", "live"), 1, "visible records stay");
}

#[test]
fn a_sweep_removes_only_the_versions_it_names_and_only_what_cannot_be_seen() {
    let mut s = KvStore::default();
    s.apply_put("a", "k", 1, 10, pending(1, b"x"));
    s.settle("a", "k", 1, &pos(1, 1, 64), 1);
    // Rewritten since the sweep was decided: its version no longer matches.
    s.apply_put("a", "k", 2, 0, pending(2, b"y"));
    s.settle("a", "k", 2, &pos(2, 1, 128), 1);
    assert_eq!(s.apply_sweep("a", 100, &[("k", 1)]), 0);
    // Visible at the sweep's time: kept, even if named.
    assert_eq!(s.apply_sweep("a", 100, &[("k", 2)]), 0);
    assert_eq!(s.latest_version("a", "k"), 2);
    assert_eq!(s.apply_sweep("nowhere", 100, &[("k", 2)]), 0);
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
    s.apply_delete("a", "k", 4, 0, 102);
    s.settle_delete("a", "k", 4, &pos(102, 100, 192));
    assert_eq!(s.dead_bytes().collect::<Vec<_>>(), vec![(1, put), (100, 2 * put)]);
    assert_eq!(sweep(&mut s, 0, 0, 100), 1);
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
        r.apply(&e, At::Placed(pos(lsn, 1, off))).unwrap();
    }
    assert_eq!(r.dead_bytes().collect::<Vec<_>>(), vec![(1, put)]);
}

/// Applies an entry at its place in segment 1, as replay does.
fn apply_at(s: &mut KvStore, lsn: u64, entry_type: u16, body: &[u8]) -> Result<(), Corrupt> {
    let e = EntryRef {
        lsn,
        entry_type,
        flags: 0,
        body,
    };
    s.apply(&e, At::Placed(pos(lsn, 1, 64 * lsn))).map(|_| ())
}

#[test]
fn a_sweep_removes_what_could_not_be_seen_at_its_own_time_whenever_it_is_applied() {
    use super::super::entry::{encode_put, encode_sweep, ENTRY_KV_SWEEP};
    // Expires at 1000. A sweep stamped 900 names it: not gone yet then, so it stays, however
    // late the entry is applied; one stamped 1000 removes it.
    let mut s = KvStore::default();
    apply_at(&mut s, 1, ENTRY_KV_PUT, &encode_put(1, 1_000, "a", "k", b"v")).unwrap();
    apply_at(&mut s, 2, ENTRY_KV_SWEEP, &encode_sweep(900, "a", &[("k", 1)])).unwrap();
    assert_eq!(s.latest_version("a", "k"), 1, "visible at the sweep's time: kept");
    apply_at(&mut s, 3, ENTRY_KV_SWEEP, &encode_sweep(1_000, "a", &[("k", 1)])).unwrap();
    assert_eq!(s.latest_version("a", "k"), 0, "expired at the sweep's time: removed");
    // A sweep naming an older version than the record's leaves it.
    apply_at(&mut s, 4, ENTRY_KV_PUT, &encode_put(1, 0, "a", "j", b"v")).unwrap();
    apply_at(&mut s, 5, ENTRY_KV_PUT, &encode_put(2, 500, "a", "j", b"w")).unwrap();
    apply_at(&mut s, 6, ENTRY_KV_SWEEP, &encode_sweep(600, "a", &[("j", 1)])).unwrap();
    assert_eq!(s.latest_version("a", "j"), 2);
    // An entry whose version is not above its key's record's is damage, and changes nothing.
    let before = s.dead_bytes().collect::<Vec<_>>();
    assert!(apply_at(&mut s, 7, ENTRY_KV_PUT, &encode_put(2, 0, "a", "j", b"x")).is_err());
    assert_eq!(s.dead_bytes().collect::<Vec<_>>(), before);
    assert_eq!(s.latest_version("a", "j"), 2);
}

#[test]
fn an_entry_settles_only_the_record_it_made() {
    // j v1 (LSN 10) is swept while in flight and j is written again at v1 (LSN 12) before LSN
    // 10 is durable: LSN 10 settling must not point the new record at the old value.
    let mut s = KvStore::default();
    s.apply_put("a", "j", 1, 1, pending(10, b"old"));
    s.apply_sweep("a", 5, &[("j", 1)]);
    s.apply_put("a", "j", 1, 0, pending(12, b"new"));
    s.settle("a", "j", 1, &pos(10, 1, 64), 3);
    assert_eq!(s.slot_pending_lsn("a", "j"), Some(12), "still the new entry's");
    let dead: u64 = s.dead_bytes().map(|(_, d)| d).sum();
    assert_eq!(dead, put_entry_bytes(1, 1, 3), "the old entry is dead where it landed");
    s.settle("a", "j", 1, &pos(12, 1, 128), 3);
    assert_eq!(s.slot_pending_lsn("a", "j"), None);
}
