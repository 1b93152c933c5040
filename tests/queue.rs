//! Queues through the real binary: enqueue/dequeue/ack and stats, priority and FIFO order,
//! delays, dedup, batches, leases that expire into redelivery and the dead-letter queue, nack,
//! touch, peek, purge, listings, bad input, long-polling, durability across SIGKILL, and
//! queues spread over shards.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{now_ms, Response, Server};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Slack for comparing the server's clock with ours (both read the same wall clock, but an
/// event loop may read it a little before or after it handles our request).
const CLOCK_SLACK_MS: u64 = 100;

fn path(ns: &str, q: &str, op: &str) -> String {
    format!("/api/v1/queue/{ns}/{q}/{op}")
}

fn post(s: &Server, ns: &str, q: &str, op: &str, body: &Value) -> Response {
    s.post_json(&path(ns, q, op), &body.to_string())
}

/// POST that must answer 200; returns the JSON body.
fn post_ok(s: &Server, ns: &str, q: &str, op: &str, body: &Value) -> Value {
    let r = post(s, ns, q, op, body);
    assert_eq!(r.status, 200, "{op} {ns}/{q} {body}: {}", r.text());
    r.json()
}

/// Enqueues `payload` with extra fields from `extra` (an object, may be `json!({})`); returns
/// the whole answer.
fn enqueue_with(s: &Server, ns: &str, q: &str, payload: &[u8], extra: Value) -> Value {
    let mut body = json!({ "payload": B64.encode(payload) });
    for (k, v) in extra.as_object().expect("extra is an object") {
        body[k] = v.clone();
    }
    post_ok(s, ns, q, "enqueue", &body)
}

/// Enqueues a plain message; asserts it was not deduplicated; returns its seq.
fn enqueue(s: &Server, ns: &str, q: &str, payload: &[u8]) -> u64 {
    let r = enqueue_with(s, ns, q, payload, json!({}));
    assert_eq!(r["deduplicated"], false, "{r}");
    r["seq"].as_u64().unwrap_or_else(|| panic!("seq in {r}"))
}

/// Dequeues with `body`; returns the messages.
fn dequeue(s: &Server, ns: &str, q: &str, body: Value) -> Vec<Value> {
    let r = post_ok(s, ns, q, "dequeue", &body);
    r["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("messages in {r}"))
        .clone()
}

fn ack(s: &Server, ns: &str, q: &str, seqs: &[u64]) -> Value {
    post_ok(s, ns, q, "ack", &json!({ "sequences": seqs }))
}

fn stats(s: &Server, ns: &str, q: &str) -> Value {
    let r = s.get(&path(ns, q, "stats"));
    assert_eq!(r.status, 200, "stats {ns}/{q}: {}", r.text());
    r.json()
}

fn dlq(s: &Server, ns: &str, q: &str) -> Vec<Value> {
    let r = s.get(&path(ns, q, "dlq"));
    assert_eq!(r.status, 200, "dlq {ns}/{q}: {}", r.text());
    r.json()["messages"].as_array().expect("dlq messages").clone()
}

fn peek(s: &Server, ns: &str, q: &str, count: usize) -> Vec<Value> {
    let r = s.get(&format!("{}?count={count}", path(ns, q, "peek")));
    assert_eq!(r.status, 200, "peek {ns}/{q}: {}", r.text());
    r.json()["messages"].as_array().expect("peek messages").clone()
}

fn seqs(msgs: &[Value]) -> Vec<u64> {
    msgs.iter()
        .map(|m| m["seq"].as_u64().unwrap_or_else(|| panic!("seq in {m}")))
        .collect()
}

fn payload(m: &Value) -> Vec<u8> {
    B64.decode(m["payload"].as_str().unwrap_or_else(|| panic!("payload in {m}")))
        .unwrap_or_else(|e| panic!("payload of {m} is not base64: {e}"))
}

/// The counters of a queue's stats, to compare in one assertion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    ready: u64,
    leased: u64,
    delayed: u64,
    dlq: u64,
    enqueued: u64,
    acked: u64,
}

impl Counts {
    fn of(v: &Value) -> Counts {
        let f = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        Counts {
            ready: f("ready_count"),
            leased: f("leased_count"),
            delayed: f("delayed_count"),
            dlq: f("dlq_count"),
            enqueued: f("total_enqueued"),
            acked: f("total_acked"),
        }
    }
}

fn counts(s: &Server, ns: &str, q: &str) -> Counts {
    Counts::of(&stats(s, ns, q))
}

/// Polls dequeue (with `body`) until it returns at least one message.
fn dequeue_eventually(s: &Server, ns: &str, q: &str, body: Value, what: &str) -> Vec<Value> {
    common::poll(what, Duration::from_secs(5), || {
        let m = dequeue(s, ns, q, body.clone());
        (!m.is_empty()).then_some(m)
    })
}

fn assert_bad_request(r: &Response, what: &str) {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    assert_eq!(r.json()["error"], "bad_request", "{what}");
}

#[test]
fn enqueue_dequeue_ack_and_stats_follow_the_contract() {
    let s = Server::start();
    // A queue that never existed: stats 404, dequeue is empty and does not create it.
    let r = s.get(&path("default", "tasks", "stats"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"], "not_found");
    let r = post(&s, "default", "tasks", "dequeue", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"messages": []}));
    assert_eq!(
        s.get(&path("default", "tasks", "stats")).status,
        404,
        "dequeue created the queue"
    );

    let before = now_ms();
    let r = enqueue_with(&s, "default", "tasks", b"hello", json!({}));
    assert_eq!(r, json!({"seq": 1, "deduplicated": false}));
    let bin: Vec<u8> = (0..=255).collect();
    let r = enqueue_with(&s, "default", "tasks", &bin, json!({"priority": 0}));
    assert_eq!(r, json!({"seq": 2, "deduplicated": false}));
    let after = now_ms();
    let st = stats(&s, "default", "tasks");
    assert_eq!(st["name"], "tasks");
    assert_eq!(
        Counts::of(&st),
        Counts {
            ready: 2,
            enqueued: 2,
            ..Counts::default()
        }
    );

    // seq is per queue: another queue, and the same name in another namespace, start at 1.
    assert_eq!(enqueue(&s, "default", "other", b"x"), 1);
    assert_eq!(enqueue(&s, "elsewhere", "tasks", b"x"), 1);
    assert_eq!(counts(&s, "default", "tasks").enqueued, 2);

    // Dequeue leases the oldest message of the best priority.
    let t0 = now_ms();
    let m = dequeue(
        &s,
        "default",
        "tasks",
        json!({"count": 1, "visibility_timeout_ms": 30000}),
    );
    let t1 = now_ms();
    assert_eq!(m.len(), 1, "{m:?}");
    let m = &m[0];
    assert_eq!(m["seq"], 1);
    assert_eq!(payload(m), b"hello");
    assert_eq!(m["priority"], 0, "default priority");
    assert_eq!(m["delivery_count"], 1);
    let enq_at = m["enqueued_at_ms"].as_u64().expect("enqueued_at_ms");
    assert!(
        before.saturating_sub(CLOCK_SLACK_MS) <= enq_at && enq_at <= after + CLOCK_SLACK_MS,
        "enqueued_at_ms {enq_at} outside [{before}, {after}]"
    );
    let lease = m["lease_expires_at_ms"].as_u64().expect("lease_expires_at_ms");
    assert!(
        t0 + 30000 - CLOCK_SLACK_MS <= lease && lease <= t1 + 30000 + CLOCK_SLACK_MS,
        "lease_expires_at_ms {lease} is not dequeue time + 30000 ([{t0}, {t1}])"
    );
    assert_eq!(
        counts(&s, "default", "tasks"),
        Counts {
            ready: 1,
            leased: 1,
            enqueued: 2,
            ..Counts::default()
        }
    );

    // Defaults: count 1, visibility 30 s. Binary payloads round-trip.
    let t0 = now_ms();
    let m = dequeue(&s, "default", "tasks", json!({}));
    let t1 = now_ms();
    assert_eq!(seqs(&m), vec![2]);
    assert_eq!(payload(&m[0]), bin);
    let lease = m[0]["lease_expires_at_ms"].as_u64().unwrap();
    assert!(
        t0 + 30000 - CLOCK_SLACK_MS <= lease && lease <= t1 + 30000 + CLOCK_SLACK_MS,
        "default visibility is 30000 ms: {lease} vs [{t0}, {t1}]"
    );
    // Everything is leased: nothing more to hand out.
    assert!(dequeue(&s, "default", "tasks", json!({"count": 10})).is_empty());
    assert_eq!(
        counts(&s, "default", "tasks"),
        Counts {
            leased: 2,
            enqueued: 2,
            ..Counts::default()
        }
    );

    // Ack: leased messages only; unknown, already acked and ready ones are not found.
    assert_eq!(
        ack(&s, "default", "tasks", &[1, 99]),
        json!({"acked": 1, "not_found": [99]})
    );
    assert_eq!(ack(&s, "default", "tasks", &[1]), json!({"acked": 0, "not_found": [1]}));
    assert_eq!(enqueue(&s, "default", "tasks", b"third"), 3);
    assert_eq!(ack(&s, "default", "tasks", &[3]), json!({"acked": 0, "not_found": [3]}));
    assert_eq!(
        counts(&s, "default", "tasks"),
        Counts {
            ready: 1,
            leased: 1,
            enqueued: 3,
            acked: 1,
            ..Counts::default()
        }
    );
    assert_eq!(ack(&s, "default", "tasks", &[2]), json!({"acked": 1, "not_found": []}));
    assert_eq!(
        counts(&s, "default", "tasks"),
        Counts {
            ready: 1,
            enqueued: 3,
            acked: 2,
            ..Counts::default()
        }
    );
    // The acked messages never come back; the ready one does.
    let m = dequeue(&s, "default", "tasks", json!({"count": 10}));
    assert_eq!(seqs(&m), vec![3]);
    assert_eq!(payload(&m[0]), b"third");
}

#[test]
fn lower_priority_first_then_fifo_and_count_bounds_the_batch() {
    let s = Server::start();
    // (priority, payload) in enqueue order; seqs 1..=7.
    let plan = [
        (5u64, "a"),
        (0, "b"),
        (5, "c"),
        (255, "d"),
        (0, "e"),
        (10, "f"),
        (5, "g"),
    ];
    for (i, (prio, p)) in plan.iter().enumerate() {
        let r = enqueue_with(&s, "default", "prio", p.as_bytes(), json!({ "priority": prio }));
        assert_eq!(r["seq"], i as u64 + 1, "{r}");
    }
    // Expected delivery order: by priority, then seq.
    let mut order: Vec<(u64, u64, &str)> = plan
        .iter()
        .enumerate()
        .map(|(i, (pr, p))| (*pr, i as u64 + 1, *p))
        .collect();
    order.sort();

    let first = dequeue(&s, "default", "prio", json!({"count": 3}));
    assert_eq!(seqs(&first), vec![2, 5, 1], "{first:?}");
    // A later, more urgent message overtakes the waiting ones.
    let urgent = enqueue_with(&s, "default", "prio", b"urgent", json!({"priority": 1}));
    assert_eq!(urgent["seq"], 8);
    let rest = dequeue(&s, "default", "prio", json!({"count": 10}));
    assert_eq!(rest.len(), 5, "count is an upper bound: {rest:?}");
    assert_eq!(seqs(&rest), vec![8, 3, 7, 6, 4]);

    let all: Vec<&Value> = first.iter().chain(rest.iter().skip(1)).collect();
    assert_eq!(all.len(), order.len());
    for (m, (prio, seq, p)) in all.iter().zip(order.iter()) {
        assert_eq!(m["seq"], *seq, "{m}");
        assert_eq!(m["priority"], *prio, "{m}");
        assert_eq!(payload(m), p.as_bytes(), "{m}");
        assert_eq!(m["delivery_count"], 1);
    }
    assert_eq!(rest[0]["priority"], 1);
    assert!(dequeue(&s, "default", "prio", json!({"count": 10})).is_empty());
    assert_eq!(
        counts(&s, "default", "prio"),
        Counts {
            leased: 8,
            enqueued: 8,
            ..Counts::default()
        }
    );
}

#[test]
fn delayed_messages_wait_for_their_time() {
    let s = Server::start();
    let t0 = Instant::now();
    let r = enqueue_with(
        &s,
        "default",
        "later",
        b"delayed",
        json!({"delay_ms": 300, "priority": 0}),
    );
    assert_eq!(r, json!({"seq": 1, "deduplicated": false}));
    assert_eq!(
        enqueue_with(&s, "default", "later", b"b", json!({"priority": 5}))["seq"],
        2
    );
    assert_eq!(
        enqueue_with(&s, "default", "later", b"c", json!({"priority": 5}))["seq"],
        3
    );
    assert_eq!(
        counts(&s, "default", "later"),
        Counts {
            ready: 2,
            delayed: 1,
            enqueued: 3,
            ..Counts::default()
        }
    );
    // Only the ready ones can be had before the delay ends; the delayed one is not in peek.
    let m = dequeue(&s, "default", "later", json!({"count": 1}));
    assert_eq!(seqs(&m), vec![2]);
    if t0.elapsed() < Duration::from_millis(250) {
        assert_eq!(
            seqs(&peek(&s, "default", "later", 10)),
            vec![3],
            "delayed message visible early"
        );
    }
    // Once its time has come it is ready and, being more urgent, goes before seq 3.
    common::poll("delayed message becomes ready", Duration::from_secs(5), || {
        (counts(&s, "default", "later").delayed == 0).then_some(())
    });
    assert!(
        t0.elapsed() >= Duration::from_millis(280),
        "delay ended after {:?}",
        t0.elapsed()
    );
    assert_eq!(
        counts(&s, "default", "later"),
        Counts {
            ready: 2,
            leased: 1,
            enqueued: 3,
            ..Counts::default()
        }
    );
    let m = dequeue(&s, "default", "later", json!({"count": 10}));
    assert_eq!(seqs(&m), vec![1, 3]);
    assert_eq!(payload(&m[0]), b"delayed");
    assert_eq!(m[0]["delivery_count"], 1);

    // A delayed message polled for directly.
    let t0 = Instant::now();
    assert_eq!(
        enqueue_with(&s, "default", "later", b"d", json!({"delay_ms": 300}))["seq"],
        4
    );
    let m = dequeue_eventually(&s, "default", "later", json!({}), "delayed message dequeued");
    assert!(
        t0.elapsed() >= Duration::from_millis(280),
        "dequeued after {:?}",
        t0.elapsed()
    );
    assert_eq!(seqs(&m), vec![4]);
}

#[test]
fn dedup_key_returns_the_original_seq_within_the_window() {
    let s = Server::builder().config("[queue]\ndedup_window_ms = 1000\n").start();
    let t0 = Instant::now();
    let r = enqueue_with(&s, "default", "dd", b"one", json!({"dedup_key": "order-1"}));
    assert_eq!(r, json!({"seq": 1, "deduplicated": false}));
    let r = enqueue_with(&s, "default", "dd", b"again", json!({"dedup_key": "order-1"}));
    assert_eq!(r, json!({"seq": 1, "deduplicated": true}));
    assert_eq!(
        counts(&s, "default", "dd"),
        Counts {
            ready: 1,
            enqueued: 1,
            ..Counts::default()
        }
    );
    // Another key, no key, or the same key in another queue are separate messages.
    assert_eq!(
        enqueue_with(&s, "default", "dd", b"two", json!({"dedup_key": "order-2"}))["seq"],
        2
    );
    assert_eq!(enqueue(&s, "default", "dd", b"three"), 3);
    let r = enqueue_with(&s, "default", "dd2", b"x", json!({"dedup_key": "order-1"}));
    assert_eq!(r, json!({"seq": 1, "deduplicated": false}));
    // The original being consumed does not end its window.
    let m = dequeue(&s, "default", "dd", json!({}));
    assert_eq!(seqs(&m), vec![1]);
    assert_eq!(payload(&m[0]), b"one", "the duplicate did not replace the payload");
    assert_eq!(ack(&s, "default", "dd", &[1])["acked"], 1);
    let r = enqueue_with(&s, "default", "dd", b"again", json!({"dedup_key": "order-1"}));
    assert_eq!(r, json!({"seq": 1, "deduplicated": true}));
    assert_eq!(
        counts(&s, "default", "dd"),
        Counts {
            ready: 2,
            enqueued: 3,
            acked: 1,
            ..Counts::default()
        }
    );
    // After the window the key is free again.
    let r = common::poll("dedup window ends", Duration::from_secs(5), || {
        let r = enqueue_with(&s, "default", "dd", b"later", json!({"dedup_key": "order-1"}));
        (r["deduplicated"] == false).then_some(r)
    });
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "window ended after {:?}",
        t0.elapsed()
    );
    assert_eq!(r["seq"], 4, "{r}");
    assert_eq!(counts(&s, "default", "dd").enqueued, 4);
}

#[test]
fn batch_enqueue_is_all_or_nothing() {
    let s = Server::start();
    assert_eq!(
        enqueue_with(&s, "default", "bq", b"first", json!({"dedup_key": "k"}))["seq"],
        1
    );
    let r = post_ok(
        &s,
        "default",
        "bq",
        "enqueue",
        &json!({"messages": [
            {"payload": B64.encode(b"m2"), "priority": 3},
            {"payload": B64.encode(b"dup"), "dedup_key": "k"},
            {"payload": B64.encode(b"m3")},
            {"payload": B64.encode(b"m4"), "dedup_key": "k4"},
        ]}),
    );
    assert_eq!(
        r,
        json!({"seqs": [2, 1, 3, 4], "deduplicated": [false, true, false, false]})
    );
    assert_eq!(
        counts(&s, "default", "bq"),
        Counts {
            ready: 4,
            enqueued: 4,
            ..Counts::default()
        }
    );
    // The batch's dedup keys count like single ones.
    let r = enqueue_with(&s, "default", "bq", b"x", json!({"dedup_key": "k4"}));
    assert_eq!(r, json!({"seq": 4, "deduplicated": true}));

    // One bad message refuses the whole batch.
    for (bad, what) in [
        (json!({"payload": "not base64!"}), "bad base64"),
        (json!({"payload": "eA==", "priority": 256}), "priority 256"),
        (json!({"payload": "eA==", "bogus": 1}), "unknown field"),
    ] {
        let body = json!({"messages": [{"payload": B64.encode(b"good")}, bad]});
        assert_bad_request(&post(&s, "default", "bq", "enqueue", &body), what);
    }
    assert_eq!(
        counts(&s, "default", "bq"),
        Counts {
            ready: 4,
            enqueued: 4,
            ..Counts::default()
        }
    );
    assert_eq!(seqs(&peek(&s, "default", "bq", 10)), vec![1, 3, 4, 2]);
    // No seq was used up by the refused batches.
    assert_eq!(enqueue(&s, "default", "bq", b"m5"), 5);
    let m = dequeue(&s, "default", "bq", json!({"count": 10}));
    assert_eq!(seqs(&m), vec![1, 3, 4, 5, 2]);
    let payloads: Vec<Vec<u8>> = m.iter().map(payload).collect();
    assert_eq!(
        payloads,
        vec![
            b"first".to_vec(),
            b"m3".to_vec(),
            b"m4".to_vec(),
            b"m5".to_vec(),
            b"m2".to_vec()
        ]
    );
}

#[test]
fn expired_leases_redeliver_then_dead_letter_and_requeue() {
    let s = Server::builder().config("[queue]\nmax_deliveries = 2\n").start();
    let seq = enqueue(&s, "default", "work", b"fragile");
    let started = Instant::now();
    let m = dequeue(&s, "default", "work", json!({"visibility_timeout_ms": 200}));
    assert_eq!(seqs(&m), vec![seq]);
    assert_eq!(m[0]["delivery_count"], 1);
    let first_lease = m[0]["lease_expires_at_ms"].as_u64().unwrap();
    assert_eq!(counts(&s, "default", "work").leased, 1);

    // Not acked: after the lease expires it is delivered again, counted.
    let m = dequeue_eventually(
        &s,
        "default",
        "work",
        json!({"visibility_timeout_ms": 200}),
        "redelivery after the lease expired",
    );
    assert!(
        started.elapsed() >= Duration::from_millis(190),
        "redelivered after {:?}",
        started.elapsed()
    );
    assert!(
        now_ms() + CLOCK_SLACK_MS >= first_lease,
        "redelivered before {first_lease}"
    );
    assert_eq!(seqs(&m), vec![seq]);
    assert_eq!(m[0]["delivery_count"], 2);
    assert_eq!(payload(&m[0]), b"fragile");

    // The second expiry reaches max_deliveries = 2: dead-lettered, not redelivered.
    let before_death = now_ms();
    let dead = common::poll("message dead-lettered", Duration::from_secs(5), || {
        let d = dlq(&s, "default", "work");
        (!d.is_empty()).then_some(d)
    });
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["seq"], seq);
    assert_eq!(payload(&dead[0]), b"fragile");
    assert_eq!(dead[0]["delivery_count"], 2);
    let dead_at = dead[0]["dead_at_ms"].as_u64().expect("dead_at_ms");
    assert!(
        dead_at + CLOCK_SLACK_MS >= before_death.min(first_lease) && dead_at <= now_ms() + CLOCK_SLACK_MS,
        "dead_at_ms {dead_at}"
    );
    assert_eq!(
        counts(&s, "default", "work"),
        Counts {
            dlq: 1,
            enqueued: 1,
            ..Counts::default()
        }
    );
    assert!(dequeue(&s, "default", "work", json!({"count": 10})).is_empty());
    // A dead message is not leased: it cannot be acked.
    assert_eq!(
        ack(&s, "default", "work", &[seq]),
        json!({"acked": 0, "not_found": [seq]})
    );

    // Requeue: ready again, delivery count reset.
    let r = post(&s, "default", "work", "dlq/requeue", &json!({ "sequences": [seq] }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(dlq(&s, "default", "work").is_empty());
    assert_eq!(
        counts(&s, "default", "work"),
        Counts {
            ready: 1,
            enqueued: 1,
            ..Counts::default()
        }
    );
    let m = dequeue(&s, "default", "work", json!({}));
    assert_eq!(seqs(&m), vec![seq]);
    assert_eq!(m[0]["delivery_count"], 1, "requeue resets delivery_count");
    assert_eq!(payload(&m[0]), b"fragile");
    assert_eq!(ack(&s, "default", "work", &[seq])["acked"], 1);
    assert_eq!(
        counts(&s, "default", "work"),
        Counts {
            enqueued: 1,
            acked: 1,
            ..Counts::default()
        }
    );
}

#[test]
fn nack_releases_or_dead_letters_and_touch_extends_a_lease() {
    let s = Server::start();
    let a = enqueue(&s, "default", "nq", b"a");
    let b = enqueue(&s, "default", "nq", b"b");
    let m = dequeue(&s, "default", "nq", json!({"count": 2, "visibility_timeout_ms": 30000}));
    assert_eq!(seqs(&m), vec![a, b]);

    // nack with delay 0: ready again at once, delivered again.
    let r = post_ok(&s, "default", "nq", "nack", &json!({"sequences": [a], "delay_ms": 0}));
    assert_eq!(r, json!({"nacked": 1, "not_found": []}));
    assert_eq!(
        counts(&s, "default", "nq"),
        Counts {
            ready: 1,
            leased: 1,
            enqueued: 2,
            ..Counts::default()
        }
    );
    let m = dequeue(&s, "default", "nq", json!({}));
    assert_eq!(seqs(&m), vec![a]);
    assert_eq!(m[0]["delivery_count"], 2);
    assert_eq!(payload(&m[0]), b"a");

    // to_dlq: straight to the dead-letter queue.
    let r = post_ok(
        &s,
        "default",
        "nq",
        "nack",
        &json!({"sequences": [b], "delay_ms": 0, "to_dlq": true}),
    );
    assert_eq!(r, json!({"nacked": 1, "not_found": []}));
    let dead = dlq(&s, "default", "nq");
    assert_eq!(seqs(&dead), vec![b]);
    assert_eq!(payload(&dead[0]), b"b");
    assert_eq!(dead[0]["delivery_count"], 1);
    assert_eq!(
        counts(&s, "default", "nq"),
        Counts {
            leased: 1,
            dlq: 1,
            enqueued: 2,
            ..Counts::default()
        }
    );

    // Unknown, dead and ready messages cannot be nacked.
    let r = post_ok(&s, "default", "nq", "nack", &json!({"sequences": [999], "delay_ms": 0}));
    assert_eq!(r, json!({"nacked": 0, "not_found": [999]}));
    let r = post_ok(&s, "default", "nq", "nack", &json!({"sequences": [b], "delay_ms": 0}));
    assert_eq!(r, json!({"nacked": 0, "not_found": [b]}));
    let c = enqueue(&s, "default", "nq", b"c");
    let r = post_ok(&s, "default", "nq", "nack", &json!({"sequences": [c], "delay_ms": 0}));
    assert_eq!(r, json!({"nacked": 0, "not_found": [c]}));
    assert_eq!(ack(&s, "default", "nq", &[a]), json!({"acked": 1, "not_found": []}));

    // touch: a short lease made long survives its first expiry.
    let m = dequeue(&s, "default", "nq", json!({"visibility_timeout_ms": 500}));
    assert_eq!(seqs(&m), vec![c]);
    let first_lease = m[0]["lease_expires_at_ms"].as_u64().unwrap();
    let touched_at = Instant::now();
    let r = post(
        &s,
        "default",
        "nq",
        "touch",
        &json!({"sequences": [c], "visibility_timeout_ms": 1500}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Still leased (and not handed out) past the first lease's end.
    while now_ms() < first_lease + 200 {
        let st = counts(&s, "default", "nq");
        assert_eq!(
            (st.leased, st.ready),
            (1, 0),
            "lease lost before the touched deadline: {st:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dequeue(&s, "default", "nq", json!({"count": 10})).is_empty());
    // The touched lease does end, and not before 1500 ms after the touch.
    let m = dequeue_eventually(&s, "default", "nq", json!({}), "redelivery after the touched lease");
    assert!(
        touched_at.elapsed() >= Duration::from_millis(1450),
        "touched lease ended after {:?}",
        touched_at.elapsed()
    );
    assert_eq!(seqs(&m), vec![c]);
    assert_eq!(m[0]["delivery_count"], 2);
    let second_lease = m[0]["lease_expires_at_ms"].as_u64().unwrap();
    assert!(second_lease > first_lease);
}

#[test]
fn peek_purge_and_listing() {
    let s = Server::start();
    for (p, prio) in [("p1", 7u64), ("p2", 2), ("p3", 7), ("p4", 0)] {
        enqueue_with(&s, "shop", "orders", p.as_bytes(), json!({ "priority": prio }));
    }
    enqueue_with(&s, "shop", "orders", b"p5", json!({"delay_ms": 600000}));
    // Lease the most urgent one.
    let m = dequeue(&s, "shop", "orders", json!({"visibility_timeout_ms": 60000}));
    assert_eq!(seqs(&m), vec![4]);

    let before = stats(&s, "shop", "orders");
    assert_eq!(
        Counts::of(&before),
        Counts {
            ready: 3,
            leased: 1,
            delayed: 1,
            enqueued: 5,
            ..Counts::default()
        }
    );
    // Peek: ready messages in delivery order, not the leased or the delayed one, nothing leased.
    let p = peek(&s, "shop", "orders", 10);
    assert_eq!(seqs(&p), vec![2, 1, 3]);
    assert_eq!(payload(&p[0]), b"p2");
    assert_eq!(p[0]["priority"], 2);
    assert_eq!(seqs(&peek(&s, "shop", "orders", 10)), vec![2, 1, 3], "peeking twice");
    assert_eq!(seqs(&peek(&s, "shop", "orders", 1)), vec![2]);
    assert_eq!(stats(&s, "shop", "orders"), before, "peek changed the queue");
    assert_eq!(peek(&s, "shop", "never", 10).len(), 0);

    // The listing holds every queue of the namespace with its stats.
    enqueue(&s, "shop", "refunds", b"r1");
    enqueue(&s, "other", "elsewhere", b"x");
    let list = s.get("/api/v1/queue/shop");
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.json();
    let queues = list["queues"].as_array().unwrap_or_else(|| panic!("queues in {list}"));
    let names: BTreeSet<&str> = queues.iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, BTreeSet::from(["orders", "refunds"]));
    for q in queues {
        let name = q["name"].as_str().unwrap();
        assert_eq!(*q, stats(&s, "shop", name), "listing row of {name}");
    }
    assert_eq!(s.get("/api/v1/queue/nowhere").json()["queues"], json!([]));

    // Purge drops ready and delayed messages; the leased one stays and can be acked.
    let r = post(&s, "shop", "orders", "purge", &json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        counts(&s, "shop", "orders"),
        Counts {
            leased: 1,
            enqueued: 5,
            ..Counts::default()
        }
    );
    assert!(peek(&s, "shop", "orders", 10).is_empty());
    assert!(dequeue(&s, "shop", "orders", json!({"count": 10})).is_empty());
    assert_eq!(ack(&s, "shop", "orders", &[4]), json!({"acked": 1, "not_found": []}));
    // Other queues are untouched, and the purged queue goes on with the next seq.
    assert_eq!(counts(&s, "shop", "refunds").ready, 1);
    assert_eq!(enqueue(&s, "shop", "orders", b"p6"), 6);
    assert_eq!(seqs(&peek(&s, "shop", "orders", 10)), vec![6]);
}

#[test]
fn bad_input_is_refused_and_enqueues_nothing() {
    let s = Server::start();
    for (body, what) in [
        (r#"{"payload":"not base64!"}"#, "bad base64"),
        (r#"{"payload":"eA"}"#, "unpadded base64"),
        (r#"{"payload":"eA==","priority":256}"#, "priority 256"),
        (r#"{"payload":"eA==","priority":-1}"#, "negative priority"),
        (r#"{"payload":"eA==","ttl":5}"#, "unknown field"),
        (r#"{"payload":5}"#, "wrong type"),
        (r#"{"payload":"eA==","delay_ms":"soon"}"#, "wrong delay type"),
        (r#"{}"#, "missing payload"),
        ("", "empty body"),
        ("{", "broken JSON"),
    ] {
        let r = s.post_json(&path("default", "v", "enqueue"), body);
        assert_bad_request(&r, what);
    }
    // Nothing was enqueued: the queue does not even exist.
    assert_eq!(s.get(&path("default", "v", "stats")).status, 404);
    // Bad names.
    assert_bad_request(
        &s.post_json(&path("default", "bad%2Fname", "enqueue"), r#"{"payload":"eA=="}"#),
        "slash in name",
    );
    let long = "q".repeat(129);
    assert_bad_request(
        &s.post_json(&path("default", &long, "enqueue"), r#"{"payload":"eA=="}"#),
        "long name",
    );

    assert_eq!(
        enqueue_with(&s, "default", "v", b"x", json!({"priority": 255})),
        json!({"seq": 1, "deduplicated": false})
    );
    for (body, what) in [
        (r#"{"count":0}"#, "count 0"),
        (r#"{"count":1001}"#, "count 1001"),
        (r#"{"visibility_timeout_ms":0}"#, "visibility 0"),
        (r#"{"visibility_timeout_ms":43200001}"#, "visibility over 12 h"),
        (r#"{"block_ms":60001}"#, "block_ms 60001"),
        (r#"{"count":"1"}"#, "wrong type"),
        (r#"{"count":1,"wait_ms":5}"#, "unknown field"),
    ] {
        let r = s.post_json(&path("default", "v", "dequeue"), body);
        assert_bad_request(&r, what);
    }
    for (op, body, what) in [
        ("ack", r#"{"sequences":"1"}"#, "ack wrong type"),
        ("ack", r#"{"seqs":[1]}"#, "ack unknown field"),
        ("ack", r#"{"sequences":[-1]}"#, "ack negative seq"),
        ("nack", r#"{"sequences":[1],"requeue":true}"#, "nack unknown field"),
        ("touch", r#"{"sequences":[1],"timeout":5}"#, "touch unknown field"),
    ] {
        let r = s.post_json(&path("default", "v", op), body);
        assert_bad_request(&r, what);
    }
    // Nothing was leased or changed by the refused requests.
    assert_eq!(
        counts(&s, "default", "v"),
        Counts {
            ready: 1,
            enqueued: 1,
            ..Counts::default()
        }
    );
    // The bounds themselves are accepted (a message is ready, so block_ms does not wait).
    let started = Instant::now();
    let m = dequeue(
        &s,
        "default",
        "v",
        json!({"count": 1000, "visibility_timeout_ms": 43200000, "block_ms": 60000}),
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(seqs(&m), vec![1]);
    assert_eq!(m[0]["priority"], 255);
    assert_eq!(
        counts(&s, "default", "v"),
        Counts {
            leased: 1,
            enqueued: 1,
            ..Counts::default()
        }
    );
}

/// Starts a dequeue with `block_ms` on another thread; returns its messages and how long it took.
fn blocking_dequeue(s: &Server, ns: &str, q: &str, block_ms: u64) -> std::thread::JoinHandle<(Vec<Value>, Duration)> {
    let (api, p) = (s.api, path(ns, q, "dequeue"));
    let body = json!({ "block_ms": block_ms }).to_string();
    std::thread::spawn(move || {
        let started = Instant::now();
        let r = common::try_request(
            api,
            "POST",
            &p,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .expect("blocking dequeue");
        assert_eq!(r.status, 200, "{}", r.text());
        let msgs = r.json()["messages"].as_array().expect("messages").clone();
        (msgs, started.elapsed())
    })
}

#[test]
fn block_ms_long_polls_until_a_message_arrives() {
    let s = Server::start();
    // Make the queue exist, then empty it.
    let seq = enqueue(&s, "default", "lp", b"warm");
    assert_eq!(seqs(&dequeue(&s, "default", "lp", json!({}))), vec![seq]);
    assert_eq!(ack(&s, "default", "lp", &[seq])["acked"], 1);

    // Nothing arrives: the wait runs its course and answers empty.
    let started = Instant::now();
    let r = post(&s, "default", "lp", "dequeue", &json!({"block_ms": 200}));
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"messages": []}));
    assert!(took >= Duration::from_millis(150), "did not wait: {took:?}");
    assert!(took < Duration::from_secs(5), "waited far past block_ms: {took:?}");

    // Two waiters, one message: one of them gets it at once, the other keeps waiting.
    let w1 = blocking_dequeue(&s, "default", "lp", 20000);
    let w2 = blocking_dequeue(&s, "default", "lp", 20000);
    common::let_waiters_settle(&s, 2);
    assert!(
        !w1.is_finished() && !w2.is_finished(),
        "a long-poll returned with nothing to give"
    );
    let enqueued_at = Instant::now();
    let first = enqueue(&s, "default", "lp", b"wake up");
    common::poll("a waiter is woken", Duration::from_secs(5), || {
        (w1.is_finished() || w2.is_finished()).then_some(())
    });
    assert!(enqueued_at.elapsed() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !(w1.is_finished() && w2.is_finished()),
        "both waiters returned for one message"
    );
    let second = enqueue(&s, "default", "lp", b"and you");
    let (m1, t1) = w1.join().unwrap();
    let (m2, t2) = w2.join().unwrap();
    assert!(
        t1 < Duration::from_secs(9) && t2 < Duration::from_secs(9),
        "{t1:?} {t2:?}"
    );
    let mut got: Vec<u64> = seqs(&m1).into_iter().chain(seqs(&m2)).collect();
    got.sort();
    assert_eq!(got, vec![first, second], "each waiter got one message: {m1:?} {m2:?}");
    for m in m1.iter().chain(m2.iter()) {
        assert_eq!(m["delivery_count"], 1);
        let want: &[u8] = if m["seq"] == first { b"wake up" } else { b"and you" };
        assert_eq!(payload(m), want);
    }
    assert_eq!(counts(&s, "default", "lp").leased, 2);

    // A delayed message that becomes ready during the wait ends it too.
    let started = Instant::now();
    let d = enqueue_with(&s, "default", "lp", b"soon", json!({"delay_ms": 300}))["seq"]
        .as_u64()
        .unwrap();
    let r = post(&s, "default", "lp", "dequeue", &json!({"block_ms": 5000}));
    let took = started.elapsed();
    assert_eq!(seqs(r.json()["messages"].as_array().unwrap()), vec![d], "{}", r.text());
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn block_ms_on_a_queue_not_yet_created_waits_for_its_first_enqueue() {
    let s = Server::start();
    let w = blocking_dequeue(&s, "default", "fresh", 20000);
    common::let_waiters_settle(&s, 1);
    assert!(
        !w.is_finished(),
        "a long-poll on a new queue returned with nothing to give"
    );
    let seq = enqueue(&s, "default", "fresh", b"first");
    let enqueued_at = Instant::now();
    let (m, took) = w.join().unwrap();
    assert!(enqueued_at.elapsed() < Duration::from_secs(5), "woken by the enqueue");
    assert!(took < Duration::from_secs(9), "{took:?}");
    assert_eq!(seqs(&m), vec![seq]);
    assert_eq!(payload(&m[0]), b"first");
}

#[test]
fn queue_state_survives_sigkill() {
    let mut s = Server::builder().shards(2).start();
    let (ns, q) = ("dur", "jobs");
    for i in 1..=4 {
        assert_eq!(enqueue(&s, ns, q, format!("job-{i}").as_bytes()), i);
    }
    let r = enqueue_with(&s, ns, q, b"job-5", json!({"dedup_key": "five", "priority": 3}));
    assert_eq!(r["seq"], 5);
    let r = enqueue_with(&s, ns, q, b"job-6", json!({"delay_ms": 600000}));
    assert_eq!(r["seq"], 6);
    // 1 leased for long, 2 acked, 3 dead-lettered; 4 and 5 ready, 6 delayed.
    let m = dequeue(&s, ns, q, json!({"visibility_timeout_ms": 600000}));
    assert_eq!(seqs(&m), vec![1]);
    let lease1 = m[0]["lease_expires_at_ms"].clone();
    assert_eq!(seqs(&dequeue(&s, ns, q, json!({}))), vec![2]);
    assert_eq!(ack(&s, ns, q, &[2])["acked"], 1);
    assert_eq!(seqs(&dequeue(&s, ns, q, json!({}))), vec![3]);
    let r = post_ok(
        &s,
        ns,
        q,
        "nack",
        &json!({"sequences": [3], "delay_ms": 0, "to_dlq": true}),
    );
    assert_eq!(r["nacked"], 1);
    let before = stats(&s, ns, q);
    assert_eq!(
        Counts::of(&before),
        Counts {
            ready: 2,
            leased: 1,
            delayed: 1,
            dlq: 1,
            enqueued: 6,
            acked: 1
        }
    );

    // Another queue: a message delivered twice (its second lease short, so it is ready after the crash).
    let r1 = enqueue(&s, ns, "retry", b"again and again");
    assert_eq!(
        dequeue(&s, ns, "retry", json!({"visibility_timeout_ms": 200}))[0]["delivery_count"],
        1
    );
    let m = dequeue_eventually(
        &s,
        ns,
        "retry",
        json!({"visibility_timeout_ms": 200}),
        "second delivery",
    );
    assert_eq!(seqs(&m), vec![r1]);
    assert_eq!(m[0]["delivery_count"], 2);

    s.sigkill();
    s.restart();

    assert_eq!(stats(&s, ns, q), before, "stats after restart");
    // The leased message stays invisible, the acked and dead ones never come back.
    let m = dequeue(&s, ns, q, json!({"count": 10, "visibility_timeout_ms": 30000}));
    assert_eq!(seqs(&m), vec![4, 5], "only the ready ones, in priority order: {m:?}");
    assert_eq!(payload(&m[0]), b"job-4");
    assert_eq!(payload(&m[1]), b"job-5");
    assert_eq!(m[1]["priority"], 3);
    for msg in &m {
        assert_eq!(msg["delivery_count"], 1);
    }
    assert_eq!(seqs(&dlq(&s, ns, q)), vec![3]);
    assert_eq!(payload(&dlq(&s, ns, q)[0]), b"job-3");
    // The lease on 1 survived: it can still be acked; 2 was acked already.
    assert_eq!(ack(&s, ns, q, &[1, 2]), json!({"acked": 1, "not_found": [2]}));
    assert!(lease1.as_u64().unwrap() > now_ms(), "the lease had not expired");
    // Dedup keys and seqs carry on.
    let r = enqueue_with(&s, ns, q, b"dup", json!({"dedup_key": "five"}));
    assert_eq!(r, json!({"seq": 5, "deduplicated": true}));
    assert_eq!(enqueue(&s, ns, q, b"job-7"), 7);
    assert_eq!(
        counts(&s, ns, q),
        Counts {
            ready: 1,
            leased: 2,
            delayed: 1,
            dlq: 1,
            enqueued: 7,
            acked: 2
        }
    );

    // Delivery counts persist: the third delivery says 3.
    let m = dequeue_eventually(&s, ns, "retry", json!({}), "delivery after restart");
    assert_eq!(seqs(&m), vec![r1]);
    assert_eq!(m[0]["delivery_count"], 3);
    assert_eq!(payload(&m[0]), b"again and again");
}

#[test]
fn queues_spread_over_shards_all_work_and_are_listed() {
    let shards = 2u64;
    let s = Server::builder()
        .shards(shards as usize)
        .arg("--partitions")
        .arg("64")
        .start();
    let names: Vec<String> = (0..8).map(|i| format!("q{i}")).collect();
    let owners: BTreeSet<u64> = names
        .iter()
        .map(|n| common::spec_owner_shard("spread", n, 64, shards))
        .collect();
    assert_eq!(owners.len(), 2, "the chosen names cover both shards");

    for name in &names {
        for i in 1..=3u64 {
            let r = post(
                &s,
                "spread",
                name,
                "enqueue",
                &json!({"payload": B64.encode(format!("{name}-{i}"))}),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json(), json!({"seq": i, "deduplicated": false}), "{name}");
            if let Some(owner) = r.header("Flo-Shard") {
                let want = common::spec_owner_shard("spread", name, 64, shards);
                assert_eq!(owner, want.to_string(), "{name} lives on its owner shard");
            }
        }
    }
    for name in &names {
        let m = dequeue(&s, "spread", name, json!({"count": 3}));
        assert_eq!(seqs(&m), vec![1, 2, 3], "{name}");
        for (i, msg) in m.iter().enumerate() {
            assert_eq!(payload(msg), format!("{name}-{}", i + 1).as_bytes());
        }
        assert_eq!(
            ack(&s, "spread", name, &[1, 2, 3]),
            json!({"acked": 3, "not_found": []})
        );
        assert_eq!(enqueue(&s, "spread", name, b"left"), 4);
    }
    let list = s.get("/api/v1/queue/spread").json();
    let queues = list["queues"].as_array().unwrap_or_else(|| panic!("queues in {list}"));
    let listed: BTreeSet<String> = queues.iter().map(|q| q["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed, names.iter().cloned().collect::<BTreeSet<_>>());
    for q in queues {
        assert_eq!(
            Counts::of(q),
            Counts {
                ready: 1,
                enqueued: 4,
                acked: 3,
                ..Counts::default()
            },
            "{q}"
        );
    }
}

#[test]
fn metrics_count_the_messages_held() {
    let s = Server::builder().shards(2).start();
    for q in ["m1", "m2", "m3"] {
        enqueue(&s, "metrics", q, b"x");
    }
    let total = |s: &Server| -> u64 {
        s.get("/api/v1/metrics").json()["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["queue_messages"].as_u64().unwrap())
            .sum()
    };
    common::poll("queue_messages reaches 3", Duration::from_secs(10), || {
        (total(&s) == 3).then_some(())
    });
    let text = common::try_request(s.metrics, "GET", "/metrics", &[], b"")
        .unwrap()
        .text();
    assert!(text.contains("# TYPE flo_queue_messages gauge"), "{text}");
}

#[test]
fn changing_max_deliveries_keeps_the_log_replayable() {
    let mut s = Server::builder().config("[queue]\nmax_deliveries = 5\n").start();
    let seq = enqueue(&s, "default", "cfg", b"m");
    // Two deliveries under max_deliveries = 5 (the first lease runs out).
    assert_eq!(
        seqs(&dequeue(&s, "default", "cfg", json!({"visibility_timeout_ms": 100}))),
        vec![seq]
    );
    let m = dequeue_eventually(
        &s,
        "default",
        "cfg",
        json!({"visibility_timeout_ms": 100}),
        "second delivery",
    );
    assert_eq!(m[0]["delivery_count"], 2);
    s.sigkill();
    // Restarted with a lower limit: the log still replays (its leases say which was a last one);
    // the limit applies to the leases made from now on.
    let config = std::fs::read_to_string(&s.config_path).unwrap();
    std::fs::write(
        &s.config_path,
        config.replace("max_deliveries = 5", "max_deliveries = 1"),
    )
    .unwrap();
    s.restart();
    let m = dequeue_eventually(
        &s,
        "default",
        "cfg",
        json!({"visibility_timeout_ms": 100}),
        "third delivery",
    );
    assert_eq!(m[0]["delivery_count"], 3);
    common::poll("dead-lettered after its last lease", Duration::from_secs(10), || {
        dlq(&s, "default", "cfg").iter().any(|d| d["seq"] == seq).then_some(())
    });
}
