//! The history checkers of `tests/common/history.rs` on hand-made histories: ones a correct
//! server may produce must be accepted (overlapping operations taking effect in either order,
//! unknown outcomes taking effect or not), and ones that break the contract — a stale read, a
//! lost write, a version going back, a CAS against the wrong version, a duplicate or premature
//! delivery, a stream gap — must be rejected, so a kill loop that passes has proven something.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

#[path = "common/history.rs"]
mod history;

use std::collections::BTreeMap;

use history::{
    check_kv, check_queues, check_streams, Delivery, Entry, KvCall, KvEntry, KvOp, KvRes, Outcome, QueueEntry, QueueOp,
    QueueRes, StreamEntry, StreamOp, StreamRes, NEVER,
};

// ----- KV -----

/// An operation of `client` on key "k" from `invoke` to `complete` (ns; NEVER: unbounded).
fn kv(client: usize, invoke: u64, complete: u64, op: KvOp, outcome: Outcome<KvRes>) -> KvEntry {
    Entry {
        client,
        invoke_ns: invoke,
        complete_ns: complete,
        op: KvCall { key: "k".into(), op },
        outcome,
    }
}

fn put(v: &str) -> KvOp {
    KvOp::Put { value: v.into() }
}

fn cas(v: &str, expect: u64) -> KvOp {
    KvOp::CasPut {
        value: v.into(),
        expect,
    }
}

fn written(version: u64) -> Outcome<KvRes> {
    Outcome::Ok(KvRes::Written { version })
}

fn found(v: &str, version: u64) -> Outcome<KvRes> {
    Outcome::Ok(KvRes::Found {
        value: v.into(),
        version,
    })
}

fn conflict(current: u64) -> Outcome<KvRes> {
    Outcome::Ok(KvRes::Conflict { current })
}

fn not_found() -> Outcome<KvRes> {
    Outcome::Ok(KvRes::NotFound)
}

fn accepted(h: &[KvEntry]) {
    let r = check_kv(h);
    assert!(
        r.non_linearizable.is_empty() && r.phantom.is_empty() && r.lost.is_empty(),
        "a legal history was rejected: {r:#?}"
    );
}

fn rejected(h: &[KvEntry]) -> String {
    let r = check_kv(h);
    assert_eq!(r.non_linearizable.len(), 1, "an illegal history was accepted: {h:#?}");
    let text = r.non_linearizable[0].to_string();
    assert!(text.contains("\"k\""), "the explanation names the key: {text}");
    text
}

#[test]
fn kv_sequential_history_with_cas_and_deletes_is_accepted() {
    accepted(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(0, 2, 3, cas("b", 1), written(2)),
        kv(0, 4, 5, cas("c", 1), conflict(2)),
        kv(0, 6, 7, KvOp::Get, found("b", 2)),
        kv(0, 8, 9, KvOp::Delete, written(3)),
        kv(0, 10, 11, KvOp::Get, not_found()),
        kv(0, 12, 13, KvOp::CasDelete { expect: 0 }, not_found()),
        kv(0, 14, 15, KvOp::CasDelete { expect: 3 }, conflict(0)),
        kv(0, 16, 17, cas("d", 0), written(4)),
        kv(0, 18, 19, KvOp::CasDelete { expect: 4 }, written(5)),
        // A re-created key continues above its tombstone (the server may skip ahead).
        kv(0, 20, 21, put("e"), written(9)),
        kv(0, 22, 23, KvOp::Get, found("e", 9)),
    ]);
}

#[test]
fn kv_overlapping_writes_may_take_effect_in_either_order() {
    // Two puts overlap; reads after both see whichever was linearized last.
    for (last, v) in [("a", 2), ("b", 2)] {
        let first = if last == "a" { "b" } else { "a" };
        let (va, vb) = if last == "a" { (2, 1) } else { (1, 2) };
        accepted(&[
            kv(0, 0, 10, put("a"), written(va)),
            kv(1, 1, 11, put("b"), written(vb)),
            kv(2, 12, 13, KvOp::Get, found(last, v)),
        ]);
        // A read overlapping both may see the first one.
        accepted(&[
            kv(0, 0, 10, put("a"), written(va)),
            kv(1, 1, 11, put("b"), written(vb)),
            kv(2, 2, 9, KvOp::Get, found(first, 1)),
        ]);
    }
}

#[test]
fn kv_unknown_outcomes_may_take_effect_or_not() {
    // Took effect: a later read sees it.
    accepted(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(1, 2, NEVER, put("b"), Outcome::Unknown),
        kv(0, 5, 6, KvOp::Get, found("b", 2)),
    ]);
    // Did not: a later read does not, and the next write builds on the old version.
    accepted(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(1, 2, 3, put("b"), Outcome::Unknown),
        kv(0, 5, 6, KvOp::Get, found("a", 1)),
        kv(0, 7, 8, cas("c", 1), written(2)),
    ]);
    // An unknown create's version is only bounded; a read pins it, a CAS then builds on it.
    accepted(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(0, 2, 3, KvOp::Delete, written(2)),
        kv(1, 4, 5, cas("b", 0), Outcome::Unknown),
        kv(0, 6, 7, cas("c", 7), written(8)),
        kv(0, 8, 9, KvOp::Get, found("c", 8)),
    ]);
    // Unknown delete that took effect, then a create.
    accepted(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(1, 2, 3, KvOp::CasDelete { expect: 1 }, Outcome::Unknown),
        kv(0, 4, 5, KvOp::Get, not_found()),
        kv(0, 6, 7, cas("b", 0), written(3)),
    ]);
    // A failed operation had no effect at all.
    accepted(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(1, 2, 3, put("b"), Outcome::Fail),
        kv(0, 4, 5, KvOp::Get, found("a", 1)),
    ]);
}

#[test]
fn kv_stale_read_after_an_acknowledged_write_is_rejected() {
    let why = rejected(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(0, 2, 3, put("b"), written(2)),
        kv(1, 4, 5, KvOp::Get, found("a", 1)),
    ]);
    assert!(why.contains("Get"), "{why}");
    eprintln!("{why}");
}

#[test]
fn kv_lost_write_is_rejected() {
    rejected(&[kv(0, 0, 1, put("a"), written(1)), kv(1, 2, 3, KvOp::Get, not_found())]);
    let r = check_kv(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(0, 2, 3, put("b"), written(2)),
        kv(1, 4, 5, KvOp::Get, found("a", 1)),
    ]);
    assert_eq!(r.lost.len(), 1, "{r:#?}");
}

#[test]
fn kv_version_going_back_is_rejected() {
    rejected(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(0, 2, 3, put("b"), written(2)),
        kv(0, 4, 5, put("c"), written(2)),
    ]);
    // Across a delete too: the re-created key must continue above the tombstone.
    rejected(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(0, 2, 3, KvOp::Delete, written(2)),
        kv(0, 4, 5, put("b"), written(1)),
    ]);
    // A version the key never had.
    rejected(&[kv(0, 0, 1, put("a"), written(1)), kv(0, 2, 3, KvOp::Get, found("a", 3))]);
}

#[test]
fn kv_cas_against_the_wrong_version_is_rejected() {
    rejected(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(0, 2, 3, put("b"), written(2)),
        kv(1, 4, 5, cas("c", 1), written(3)),
    ]);
    // "Must not exist" succeeding on an existing key.
    rejected(&[kv(0, 0, 1, put("a"), written(1)), kv(1, 2, 3, cas("c", 0), written(2))]);
    // A conflict reporting the wrong current version.
    rejected(&[kv(0, 0, 1, put("a"), written(1)), kv(1, 2, 3, cas("c", 5), conflict(4))]);
    // A CAS delete that succeeded against the wrong version.
    rejected(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(0, 2, 3, KvOp::CasDelete { expect: 7 }, written(2)),
    ]);
}

#[test]
fn kv_value_nobody_wrote_is_rejected_and_reported() {
    let h = [
        kv(0, 0, 1, put("a"), written(1)),
        kv(1, 2, 3, KvOp::Get, found("zz", 1)),
    ];
    rejected(&h);
    assert_eq!(check_kv(&h).phantom.len(), 1);
}

#[test]
fn kv_unknown_write_cannot_take_effect_after_its_bound() {
    // Bounded by a kill at 3: a read at 10 that missed it, then one at 20 seeing it, is illegal.
    rejected(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(1, 2, 3, put("b"), Outcome::Unknown),
        kv(0, 10, 11, KvOp::Get, found("a", 1)),
        kv(0, 20, 21, KvOp::Get, found("b", 2)),
    ]);
    // Unbounded, the same reads are legal.
    accepted(&[
        kv(0, 0, 1, put("a"), written(1)),
        kv(1, 2, NEVER, put("b"), Outcome::Unknown),
        kv(0, 10, 11, KvOp::Get, found("a", 1)),
        kv(0, 20, 21, KvOp::Get, found("b", 2)),
    ]);
}

#[test]
fn kv_search_handles_hundreds_of_contended_ops() {
    // Four clients hammering one key with overlapping puts and reads, all consistent with the
    // order of the writes' versions; plus unknown writes that never took effect.
    let mut h = Vec::new();
    let mut version = 0;
    for i in 0..400u64 {
        let t = i * 10;
        if i % 4 == 3 {
            h.push(kv(3, t, t + 25, KvOp::Get, found(&format!("v{}", version), version)));
        } else if i % 13 == 0 {
            h.push(kv((i % 3) as usize, t, t + 30, put(&format!("u{i}")), Outcome::Unknown));
        } else {
            version += 1;
            // Overlaps the next two operations.
            h.push(kv(
                (i % 3) as usize,
                t,
                t + 25,
                put(&format!("v{version}")),
                written(version),
            ));
        }
    }
    // Reads were recorded before the write they name completed... fix their values up: each
    // read returns the newest write that completed before it was invoked, which is legal.
    let writes: Vec<(u64, String, u64)> = h
        .iter()
        .filter_map(|e| match (&e.op.op, &e.outcome) {
            (KvOp::Put { value }, Outcome::Ok(KvRes::Written { version })) => {
                Some((e.complete_ns, value.clone(), *version))
            }
            _ => None,
        })
        .collect();
    for e in h.iter_mut().filter(|e| e.op.op == KvOp::Get) {
        let last = writes.iter().filter(|w| w.0 < e.invoke_ns).max_by_key(|w| w.2);
        e.outcome = match last {
            Some((_, v, ver)) => found(v, *ver),
            None => not_found(),
        };
    }
    let started = std::time::Instant::now();
    accepted(&h);
    // And the same history with one read made stale is rejected.
    let k = h
        .iter()
        .rposition(|e| {
            e.op.op == KvOp::Get && matches!(&e.outcome, Outcome::Ok(KvRes::Found { version, .. }) if *version > 5)
        })
        .expect("a read");
    h[k].outcome = found("v1", 1);
    rejected(&h);
    eprintln!("400-op searches took {:?}", started.elapsed());
}

// ----- Queues -----

fn delivery(seq: u64, payload: &str, count: u64, leased_at: u64, vis: u64) -> Delivery {
    Delivery {
        queue: 0,
        seq,
        payload: payload.into(),
        delivery_count: count,
        lease_expires_at_ms: leased_at + vis,
        visibility_ms: vis,
        received_ms: leased_at + 1,
    }
}

fn q(op: QueueOp, outcome: Outcome<QueueRes>) -> QueueEntry {
    Entry {
        client: 0,
        invoke_ns: 0,
        complete_ns: 1,
        op,
        outcome,
    }
}

fn enqueue(payloads: &[&str], seqs: Option<&[u64]>) -> QueueEntry {
    q(
        QueueOp::Enqueue {
            queue: 0,
            payloads: payloads.iter().map(|p| p.to_string()).collect(),
        },
        match seqs {
            Some(s) => Outcome::Ok(QueueRes::Enqueued { seqs: s.to_vec() }),
            None => Outcome::Unknown,
        },
    )
}

fn dequeued(ds: Vec<Delivery>) -> QueueEntry {
    q(
        QueueOp::Dequeue {
            queue: 0,
            count: 10,
            visibility_ms: 100,
        },
        Outcome::Ok(QueueRes::Delivered(ds)),
    )
}

fn ack(seqs: &[u64], done: bool, answered_ms: u64) -> QueueEntry {
    q(
        QueueOp::Ack {
            queue: 0,
            seqs: seqs.to_vec(),
        },
        if done {
            Outcome::Ok(QueueRes::Acked {
                acked: seqs.to_vec(),
                not_found: vec![],
                answered_ms,
            })
        } else {
            Outcome::Unknown
        },
    )
}

#[test]
fn queue_legal_history_is_accepted() {
    let h = vec![
        enqueue(&["a", "b"], Some(&[1, 2])),
        enqueue(&["c"], None),     // unknown, and it did land (seq 3)
        enqueue(&["never"], None), // unknown, and it did not
        dequeued(vec![delivery(1, "a", 1, 1000, 100), delivery(2, "b", 1, 1000, 100)]),
        ack(&[1], true, 1050),
        // b's lease ran out; redelivered after it.
        dequeued(vec![delivery(2, "b", 2, 1101, 100)]),
        ack(&[2], false, 0), // unknown ack: b may or may not be acked
    ];
    let drain = vec![delivery(3, "c", 1, 2000, 60_000)];
    let r = check_queues(&h, &drain, &[], 10);
    assert_eq!(r.violations().count(), 0, "{r:#?}");
    assert_eq!((r.enqueued, r.acked), (2, 1));
}

#[test]
fn queue_lost_message_is_rejected() {
    let h = vec![
        enqueue(&["a", "b"], Some(&[1, 2])),
        dequeued(vec![delivery(1, "a", 1, 1000, 100)]),
        ack(&[1], true, 1050),
    ];
    let r = check_queues(&h, &[], &[], 10);
    assert_eq!(r.lost.len(), 1, "{r:#?}");
    // Dead-lettered is not lost.
    let r = check_queues(&h, &[], &[(0, 2, "b".into())], 10);
    assert_eq!(r.violations().count(), 0, "{r:#?}");
}

#[test]
fn queue_unexpected_payload_is_rejected() {
    let h = vec![enqueue(&["a"], Some(&[1]))];
    let r = check_queues(
        &h,
        &[delivery(1, "a", 1, 1000, 100), delivery(2, "zz", 1, 1000, 100)],
        &[],
        10,
    );
    assert_eq!(r.unexpected.len(), 1, "{r:#?}");
    // Under the wrong seq.
    let r = check_queues(&h, &[delivery(5, "a", 1, 1000, 100)], &[], 10);
    assert!(!r.unexpected.is_empty(), "{r:#?}");
}

#[test]
fn queue_duplicate_delivery_after_ack_is_rejected() {
    let h = vec![
        enqueue(&["a"], Some(&[1])),
        dequeued(vec![delivery(1, "a", 1, 1000, 100)]),
        ack(&[1], true, 1050),
        dequeued(vec![delivery(1, "a", 2, 1200, 100)]),
    ];
    let r = check_queues(&h, &[], &[], 10);
    assert_eq!(r.duplicated.len(), 1, "{r:#?}");
    // Acked twice.
    let h = vec![
        enqueue(&["a"], Some(&[1])),
        dequeued(vec![delivery(1, "a", 1, 1000, 100)]),
        ack(&[1], true, 1050),
        ack(&[1], true, 1060),
    ];
    assert_eq!(check_queues(&h, &[], &[], 10).duplicated.len(), 1);
}

#[test]
fn queue_premature_redelivery_is_rejected() {
    let h = vec![
        enqueue(&["a"], Some(&[1])),
        dequeued(vec![delivery(1, "a", 1, 1000, 100)]),
        // Leased again at 1050, while the first lease runs to 1100.
        dequeued(vec![delivery(1, "a", 2, 1050, 100)]),
    ];
    let r = check_queues(&h, &[delivery(1, "a", 3, 1200, 60_000)], &[], 10);
    assert_eq!(r.premature.len(), 1, "{r:#?}");
    // Right after the lease ran out is fine.
    let h = vec![
        enqueue(&["a"], Some(&[1])),
        dequeued(vec![delivery(1, "a", 1, 1000, 100)]),
        dequeued(vec![delivery(1, "a", 2, 1100, 100)]),
    ];
    let r = check_queues(&h, &[delivery(1, "a", 3, 1200, 60_000)], &[], 10);
    assert_eq!(r.violations().count(), 0, "{r:#?}");
}

// ----- Streams -----

fn s(op: StreamOp, outcome: Outcome<StreamRes>) -> StreamEntry {
    Entry {
        client: 0,
        invoke_ns: 0,
        complete_ns: 1,
        op,
        outcome,
    }
}

fn append(payloads: &[&str], first: Option<u64>) -> StreamEntry {
    s(
        StreamOp::Append {
            stream: 0,
            payloads: payloads.iter().map(|p| p.to_string()).collect(),
        },
        match first {
            Some(f) => Outcome::Ok(StreamRes::Appended { first: f }),
            None => Outcome::Unknown,
        },
    )
}

fn read(offset: u64, recs: &[(u64, &str)]) -> StreamEntry {
    s(
        StreamOp::Read { stream: 0, offset },
        Outcome::Ok(StreamRes::Records(
            recs.iter().map(|(o, p)| (*o, p.to_string())).collect(),
        )),
    )
}

fn fin(recs: &[(u64, &str)]) -> BTreeMap<usize, Vec<(u64, String)>> {
    BTreeMap::from([(0, recs.iter().map(|(o, p)| (*o, p.to_string())).collect())])
}

#[test]
fn stream_legal_history_is_accepted() {
    let h = vec![
        append(&["a"], Some(0)),
        append(&["b", "c"], None), // landed
        append(&["x", "y"], None), // did not
        append(&["d"], Some(3)),
        read(1, &[(1, "b"), (2, "c")]),
    ];
    let r = check_streams(&h, &fin(&[(0, "a"), (1, "b"), (2, "c"), (3, "d")]));
    assert_eq!(r.violations().count(), 0, "{r:#?}");
    assert_eq!((r.appended, r.records), (2, 4));
}

#[test]
fn stream_gap_is_rejected() {
    let h = vec![append(&["a"], Some(0)), append(&["b"], Some(2))];
    let r = check_streams(&h, &fin(&[(0, "a"), (2, "b")]));
    assert!(!r.gaps.is_empty(), "{r:#?}");
    // An offset answered twice.
    let h = vec![append(&["a"], Some(0)), append(&["b"], Some(0))];
    let r = check_streams(&h, &fin(&[(0, "a"), (1, "b")]));
    assert!(!r.gaps.is_empty(), "{r:#?}");
    // Half of an unknown batch.
    let h = vec![append(&["a", "b"], None)];
    let r = check_streams(&h, &fin(&[(0, "a")]));
    assert!(!r.gaps.is_empty(), "{r:#?}");
}

#[test]
fn stream_lost_and_phantom_records_are_rejected() {
    let h = vec![append(&["a"], Some(0)), append(&["b"], Some(1))];
    let r = check_streams(&h, &fin(&[(0, "a")]));
    assert_eq!(r.lost.len(), 1, "{r:#?}");
    let r = check_streams(&h, &fin(&[(0, "a"), (1, "b"), (2, "zz")]));
    assert_eq!(r.phantom.len(), 1, "{r:#?}");
    // A record a read saw that is gone or changed.
    let h = vec![append(&["a"], Some(0)), append(&["b"], None), read(1, &[(1, "b")])];
    let r = check_streams(&h, &fin(&[(0, "a")]));
    assert_eq!(r.lost.len(), 1, "{r:#?}");
}
