//! Queues under SIGKILL with mixed load: producers enqueue unique payloads and consumers
//! dequeue with short leases and ack some of what they get, on a few queues over two shards,
//! while the server is killed and restarted. Every request that failed because of the kill is
//! an "unknown outcome". After the last restart the queues are drained and the history is
//! checked: no acknowledged enqueue lost, no message acked twice, no acked message delivered
//! again, no delivery while an earlier lease on the message was live (leases survive the
//! crash), delivery counts only grow. `FLO_QUEUE_KILLS` sets the number of kill rounds.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{now_ms, Response, Rng, Server};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const NS: &str = "crash";
const QUEUES: [&str; 3] = ["jobs0", "jobs1", "jobs2"];
/// Lease of the consumers: short, so leases run out (and messages are redelivered, up to the
/// dead-letter queue) during the test and across the crashes.
const VIS_MS: u64 = 800;
const MAX_DELIVERIES: u64 = 3;
/// Lease of the drain: never runs out during the test.
const DRAIN_VIS_MS: u64 = 600_000;
/// Same machine, same clock: the server and the client may read it a little apart.
const TOLERANCE_MS: u64 = 50;

fn path(q: usize, op: &str) -> String {
    format!("/api/v1/queue/{NS}/{}/{op}", QUEUES[q])
}

/// One request on a fresh connection; an I/O error (the server was killed) is `Err`.
fn call(api: SocketAddr, method: &str, p: &str, body: &Value) -> std::io::Result<Response> {
    let b = if method == "GET" {
        String::new()
    } else {
        body.to_string()
    };
    common::try_request(api, method, p, &[("Content-Type", "application/json")], b.as_bytes())
}

fn field(v: &Value, k: &str) -> Result<u64, String> {
    v[k].as_u64().ok_or_else(|| format!("no {k} in {v}"))
}

/// A message as a consumer (or the drain) received it.
#[derive(Clone, Debug)]
struct Delivery {
    q: usize,
    seq: u64,
    payload: String,
    delivery_count: u64,
    lease_expires_at_ms: u64,
    visibility_ms: u64,
    /// Client clock when the answer arrived.
    received_ms: u64,
    /// Round of the load (`kills` for the drain after the last restart).
    round: usize,
    who: String,
}

impl Delivery {
    /// When the server leased it, by its own clock.
    fn leased_at(&self) -> u64 {
        self.lease_expires_at_ms.saturating_sub(self.visibility_ms)
    }
}

#[derive(Debug)]
enum Event {
    /// An acknowledged enqueue.
    Enqueued {
        q: usize,
        seq: u64,
        payload: String,
    },
    /// An enqueue whose answer was lost: these payloads may or may not be in the queue.
    EnqueueUnknown {
        q: usize,
        payloads: Vec<String>,
    },
    Delivered(Delivery),
    /// A dequeue whose answer was lost.
    DequeueUnknown,
    /// An acknowledged ack: the seqs it acked (requested minus not_found) and when its answer
    /// arrived.
    Acked {
        q: usize,
        seqs: Vec<u64>,
        not_found: Vec<u64>,
        received_ms: u64,
        who: String,
    },
    /// An ack whose answer was lost: these may or may not have been acked.
    AckUnknown {
        q: usize,
        seqs: Vec<u64>,
    },
    /// An answer that breaks the contract.
    Bad(String),
}

fn producer(api: SocketAddr, round: usize, id: usize, seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut n = 0u64;
    loop {
        let q = rng.below(QUEUES.len() as u64) as usize;
        let count = if rng.chance(60) { 1 } else { 2 + rng.below(4) };
        let payloads: Vec<String> = (0..count)
            .map(|_| {
                n += 1;
                format!("r{round}-p{id}-m{n}")
            })
            .collect();
        let msgs: Vec<Value> = payloads
            .iter()
            .map(|p| json!({"payload": B64.encode(p), "priority": rng.below(4)}))
            .collect();
        let body = if count == 1 {
            msgs[0].clone()
        } else {
            json!({ "messages": msgs })
        };
        let r = match call(api, "POST", &path(q, "enqueue"), &body) {
            Ok(r) => r,
            Err(_) => {
                out.push(Event::EnqueueUnknown { q, payloads });
                return out;
            }
        };
        if r.status != 200 {
            out.push(Event::Bad(format!("enqueue {body}: {} {}", r.status, r.text())));
            return out;
        }
        let v = r.json();
        let seqs: Vec<u64> = if count == 1 {
            v["seq"].as_u64().into_iter().collect()
        } else {
            v["seqs"]
                .as_array()
                .map_or(Vec::new(), |a| a.iter().filter_map(Value::as_u64).collect())
        };
        let dedup_false = if count == 1 {
            v["deduplicated"] == false
        } else {
            v["deduplicated"]
                .as_array()
                .is_some_and(|a| a.len() == payloads.len() && a.iter().all(|d| d == false))
        };
        if seqs.len() != payloads.len() || !dedup_false {
            out.push(Event::Bad(format!("enqueue {body}: answer {v}")));
            return out;
        }
        for (seq, payload) in seqs.into_iter().zip(payloads) {
            out.push(Event::Enqueued { q, seq, payload });
        }
        // Producers are cheaper than consumers: let the consumers keep up.
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn parse_messages(v: &Value, q: usize, vis: u64, round: usize, who: &str) -> Result<Vec<Delivery>, String> {
    let received_ms = now_ms();
    let rows = v["messages"].as_array().ok_or_else(|| format!("no messages in {v}"))?;
    rows.iter()
        .map(|m| {
            let raw = m["payload"].as_str().ok_or_else(|| format!("no payload in {m}"))?;
            let bytes = B64.decode(raw).map_err(|e| format!("payload of {m}: {e}"))?;
            Ok(Delivery {
                q,
                seq: field(m, "seq")?,
                payload: String::from_utf8_lossy(&bytes).into_owned(),
                delivery_count: field(m, "delivery_count")?,
                lease_expires_at_ms: field(m, "lease_expires_at_ms")?,
                visibility_ms: vis,
                received_ms,
                round,
                who: who.to_string(),
            })
        })
        .collect()
}

/// Acks `seqs`; records the outcome. False when the thread should stop.
fn ack(api: SocketAddr, q: usize, seqs: Vec<u64>, who: &str, out: &mut Vec<Event>) -> bool {
    let body = json!({ "sequences": seqs });
    let r = match call(api, "POST", &path(q, "ack"), &body) {
        Ok(r) => r,
        Err(_) => {
            out.push(Event::AckUnknown { q, seqs });
            return false;
        }
    };
    let received_ms = now_ms();
    if r.status != 200 {
        out.push(Event::Bad(format!("ack {body}: {} {}", r.status, r.text())));
        return false;
    }
    let v = r.json();
    let (Some(acked), Some(nf)) = (v["acked"].as_u64(), v["not_found"].as_array()) else {
        out.push(Event::Bad(format!("ack {body}: answer {v}")));
        return false;
    };
    let not_found: Vec<u64> = nf.iter().filter_map(Value::as_u64).collect();
    let done: Vec<u64> = seqs.iter().copied().filter(|s| !not_found.contains(s)).collect();
    if done.len() as u64 != acked || not_found.iter().any(|s| !seqs.contains(s)) {
        out.push(Event::Bad(format!("ack {body}: answer {v} does not add up")));
        return false;
    }
    out.push(Event::Acked {
        q,
        seqs: done,
        not_found,
        received_ms,
        who: who.to_string(),
    });
    true
}

fn consumer(api: SocketAddr, round: usize, id: usize, seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let who = format!("r{round}-c{id}");
    let mut acked_before: Vec<(usize, u64)> = Vec::new();
    loop {
        let q = rng.below(QUEUES.len() as u64) as usize;
        let body = json!({"count": 1 + rng.below(5), "visibility_timeout_ms": VIS_MS});
        let r = match call(api, "POST", &path(q, "dequeue"), &body) {
            Ok(r) => r,
            Err(_) => {
                out.push(Event::DequeueUnknown);
                return out;
            }
        };
        if r.status != 200 {
            out.push(Event::Bad(format!("dequeue {body}: {} {}", r.status, r.text())));
            return out;
        }
        let got = match parse_messages(&r.json(), q, VIS_MS, round, &who) {
            Ok(g) => g,
            Err(e) => {
                out.push(Event::Bad(format!("dequeue {body}: {e}")));
                return out;
            }
        };
        if got.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        // Ack about 60 % of what came; the rest is left for its lease to run out.
        let mut seqs: Vec<u64> = got.iter().map(|d| d.seq).filter(|_| rng.chance(60)).collect();
        out.extend(got.into_iter().map(Event::Delivered));
        // Now and then ack again something acked before (must be not_found)...
        if rng.chance(5) {
            if let Some(&(aq, aseq)) = acked_before.get(rng.below(acked_before.len().max(1) as u64) as usize) {
                if aq == q && !seqs.contains(&aseq) {
                    seqs.push(aseq);
                }
            }
        }
        if seqs.is_empty() {
            continue;
        }
        // ...or ack late, after the lease ran out (the message may be someone else's by now).
        if rng.below(300) == 0 {
            std::thread::sleep(Duration::from_millis(VIS_MS + 100));
        }
        let before = out.len();
        if !ack(api, q, seqs, &who, &mut out) {
            return out;
        }
        if let Some(Event::Acked { seqs, .. }) = out.get(before) {
            acked_before.extend(seqs.iter().map(|&s| (q, s)));
        }
    }
}

/// Dequeues every message left, waiting for outstanding leases to run out (and for messages
/// whose last lease ran out to reach the dead-letter queue); returns the drain's deliveries
/// and the final stats and dead-letter rows of each queue.
fn drain(s: &Server, round: usize) -> (Vec<Delivery>, Vec<Value>, Vec<Vec<Value>>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut all = Vec::new();
    let mut stats = Vec::new();
    let mut dlqs = Vec::new();
    for (q, _) in QUEUES.iter().enumerate() {
        let mut drained = 0u64;
        let st = loop {
            let r = s.post_json(
                &path(q, "dequeue"),
                &json!({"count": 100, "visibility_timeout_ms": DRAIN_VIS_MS}).to_string(),
            );
            assert_eq!(r.status, 200, "drain dequeue of {}: {}", QUEUES[q], r.text());
            let got = parse_messages(&r.json(), q, DRAIN_VIS_MS, round, "drain")
                .unwrap_or_else(|e| panic!("drain dequeue of {}: {e}", QUEUES[q]));
            if !got.is_empty() {
                drained += got.len() as u64;
                all.extend(got);
                continue;
            }
            let r = s.get(&path(q, "stats"));
            if r.status == 404 {
                break json!(null);
            }
            assert_eq!(r.status, 200, "stats of {}: {}", QUEUES[q], r.text());
            let st = r.json();
            let f = |k: &str| field(&st, k).unwrap_or_else(|e| panic!("stats of {}: {e}", QUEUES[q]));
            // Done when only the drain's leases are left and every message is accounted for
            // (none between its last lease and the dead-letter queue).
            if f("ready_count") == 0
                && f("delayed_count") == 0
                && f("leased_count") == drained
                && f("total_enqueued") == f("leased_count") + f("dlq_count") + f("total_acked")
            {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "drain of {}: leases did not run out in time; stats {st}, {drained} drained",
                QUEUES[q]
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let dlq = if st.is_null() {
            Vec::new()
        } else {
            let r = s.get(&format!("{}?limit=1000", path(q, "dlq")));
            assert_eq!(r.status, 200, "dlq of {}: {}", QUEUES[q], r.text());
            let rows = r.json()["messages"].as_array().expect("dlq messages").clone();
            assert_eq!(
                rows.len() as u64,
                st["dlq_count"].as_u64().unwrap(),
                "dlq of {} lists as many as dlq_count: {st}",
                QUEUES[q]
            );
            rows
        };
        stats.push(st);
        dlqs.push(dlq);
    }
    (all, stats, dlqs)
}

#[test]
fn queues_keep_their_promises_across_sigkill_under_load() {
    let started = Instant::now();
    let kills = common::env_u64("FLO_QUEUE_KILLS", 3) as usize;
    let seed = common::env_u64("FLO_QUEUE_SEED", 0x0c0f_fee0_dead_beef);
    let mut rng = Rng(seed);
    let mut s = Server::builder()
        .shards(2)
        .config(&format!(
            "[queue]\nmax_deliveries = {MAX_DELIVERIES}\ndedup_window_ms = 300000\n"
        ))
        .start();

    let mut events: Vec<Event> = Vec::new();
    for round in 0..kills {
        let api = s.api;
        let mut handles = Vec::new();
        for id in 0..3 {
            let ps = rng.next();
            handles.push(std::thread::spawn(move || producer(api, round, id, ps)));
            let cs = rng.next();
            handles.push(std::thread::spawn(move || consumer(api, round, id, cs)));
        }
        // Kill at some moment while every thread is busy.
        let busy = Duration::from_millis(500 + rng.below(1000));
        common::kill_round(&mut s, round, busy, handles, &mut events);
    }
    let (drained, stats, dlqs) = drain(&s, kills);

    // --- What the clients saw. ---
    let mut violations: Vec<String> = Vec::new();
    let mut enqueued: HashMap<(usize, u64), String> = HashMap::new();
    let mut unknown_payloads: HashSet<(usize, String)> = HashSet::new();
    let mut deliveries: BTreeMap<(usize, u64), Vec<Delivery>> = BTreeMap::new();
    // (q, seq) → the acks that acked it: (answer time, who).
    let mut acked: HashMap<(usize, u64), Vec<(u64, String)>> = HashMap::new();
    let mut maybe_acked: HashSet<(usize, u64)> = HashSet::new();
    let (mut unknown, mut acks_sent, mut not_found_acks) = (0u64, 0u64, 0u64);
    for e in events {
        match e {
            Event::Enqueued { q, seq, payload } => {
                if let Some(old) = enqueued.insert((q, seq), payload.clone()) {
                    violations.push(format!(
                        "{} seq {seq} was answered to two enqueues ({old:?} and {payload:?})",
                        QUEUES[q]
                    ));
                }
            }
            Event::EnqueueUnknown { q, payloads } => {
                unknown += 1;
                unknown_payloads.extend(payloads.into_iter().map(|p| (q, p)));
            }
            Event::Delivered(d) => deliveries.entry((d.q, d.seq)).or_default().push(d),
            Event::DequeueUnknown => unknown += 1,
            Event::Acked {
                q,
                seqs,
                not_found,
                received_ms,
                who,
            } => {
                acks_sent += 1;
                not_found_acks += not_found.len() as u64;
                for seq in seqs {
                    acked.entry((q, seq)).or_default().push((received_ms, who.clone()));
                }
            }
            Event::AckUnknown { q, seqs } => {
                unknown += 1;
                maybe_acked.extend(seqs.into_iter().map(|s| (q, s)));
            }
            Event::Bad(e) => violations.push(format!("bad answer: {e}")),
        }
    }
    for d in drained.iter().cloned() {
        deliveries.entry((d.q, d.seq)).or_default().push(d);
    }
    let drained_set: HashSet<(usize, u64)> = drained.iter().map(|d| (d.q, d.seq)).collect();
    let mut dead: HashMap<(usize, u64), Value> = HashMap::new();
    for (q, rows) in dlqs.iter().enumerate() {
        for row in rows {
            let seq = field(row, "seq").unwrap_or_else(|e| panic!("dlq row: {e}"));
            if drained_set.contains(&(q, seq)) {
                violations.push(format!(
                    "{} seq {seq} is both in the dlq and delivered by the drain",
                    QUEUES[q]
                ));
            }
            dead.insert((q, seq), row.clone());
        }
    }

    // No message acked twice.
    let mut duplicate_acks = 0;
    for ((q, seq), by) in &acked {
        if by.len() > 1 {
            duplicate_acks += 1;
            violations.push(format!("{} seq {seq} acked more than once: {by:?}", QUEUES[*q]));
        }
    }

    // Payloads: each delivered seq carries the payload its enqueue was answered with (or one
    // of an enqueue whose answer was lost); no payload under two seqs.
    let mut seq_of_payload: HashMap<(usize, String), u64> = HashMap::new();
    let payload_check =
        |q: usize, seq: u64, payload: &str, what: &str, violations: &mut Vec<String>| match enqueued.get(&(q, seq)) {
            Some(p) if p != payload => violations.push(format!(
                "{} seq {seq} {what} with payload {payload:?}, enqueued as {p:?}",
                QUEUES[q]
            )),
            None if !unknown_payloads.contains(&(q, payload.to_string())) => violations.push(format!(
                "{} seq {seq} {what} with payload {payload:?}, which no enqueue sent",
                QUEUES[q]
            )),
            _ => {}
        };
    for ((q, seq), ds) in &deliveries {
        for d in ds {
            payload_check(*q, *seq, &d.payload, "delivered", &mut violations);
            if let Some(other) = seq_of_payload.insert((*q, d.payload.clone()), *seq) {
                if other != *seq {
                    violations.push(format!(
                        "{} payload {:?} delivered under seqs {other} and {seq} (enqueued twice)",
                        QUEUES[*q], d.payload
                    ));
                }
            }
        }
    }
    for ((q, seq), row) in &dead {
        let p = row["payload"]
            .as_str()
            .and_then(|p| B64.decode(p).ok())
            .unwrap_or_default();
        payload_check(*q, *seq, &String::from_utf8_lossy(&p), "in the dlq", &mut violations);
        if row["delivery_count"] != MAX_DELIVERIES {
            violations.push(format!(
                "{} seq {seq} dead-lettered with delivery_count {} (max_deliveries {MAX_DELIVERIES})",
                QUEUES[*q], row["delivery_count"]
            ));
        }
        if acked.contains_key(&(*q, *seq)) {
            violations.push(format!("{} seq {seq} acked, yet in the dlq: {row}", QUEUES[*q]));
        }
    }

    // Deliveries of each message: no overlap of leases, delivery_count grows, nothing after an
    // acknowledged ack.
    let mut premature = 0;
    let mut redeliveries = 0;
    for ((q, seq), ds) in deliveries.iter_mut() {
        let name = QUEUES[*q];
        ds.sort_by_key(|d| (d.received_ms, d.delivery_count));
        redeliveries += ds.len() - 1;
        for pair in ds.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b.received_ms + TOLERANCE_MS < a.lease_expires_at_ms || b.leased_at() < a.lease_expires_at_ms {
                premature += 1;
                violations.push(format!(
                    "{name} seq {seq} delivered while its lease was live: delivery {} (to {}, round {}, lease until {}) \
                     then delivery {} (to {}, round {}, received at {}, leased at {} by the server's clock)",
                    a.delivery_count,
                    a.who,
                    a.round,
                    a.lease_expires_at_ms,
                    b.delivery_count,
                    b.who,
                    b.round,
                    b.received_ms,
                    b.leased_at()
                ));
            }
            if b.delivery_count <= a.delivery_count {
                violations.push(format!(
                    "{name} seq {seq}: delivery_count went from {} ({}, round {}) to {} ({}, round {})",
                    a.delivery_count, a.who, a.round, b.delivery_count, b.who, b.round
                ));
            }
        }
        for d in ds.iter() {
            if d.delivery_count == 0 || d.delivery_count > MAX_DELIVERIES {
                violations.push(format!(
                    "{name} seq {seq} delivered with delivery_count {} (max_deliveries {MAX_DELIVERIES})",
                    d.delivery_count
                ));
            }
        }
        if let Some(by) = acked.get(&(*q, *seq)) {
            let (acked_at, who) = &by[0];
            for d in ds.iter().filter(|d| d.leased_at() > acked_at + TOLERANCE_MS) {
                violations.push(format!(
                    "{name} seq {seq} acked by {who} (answer at {acked_at}) but delivered again: delivery {} to {} \
                     in round {}, leased at {}",
                    d.delivery_count,
                    d.who,
                    d.round,
                    d.leased_at()
                ));
            }
        }
    }

    // Nothing lost: every acknowledged enqueue, and every seq the server counts as enqueued,
    // was acked, is in the drain or the dlq (or was in an ack whose answer was lost).
    let mut lost = 0;
    let accounted = |k: &(usize, u64)| {
        acked.contains_key(k) || drained_set.contains(k) || dead.contains_key(k) || maybe_acked.contains(k)
    };
    let mut keys: Vec<&(usize, u64)> = enqueued.keys().collect();
    keys.sort();
    for k in keys {
        if !accounted(k) {
            lost += 1;
            violations.push(format!(
                "{} seq {} ({:?}) was enqueued (acknowledged) but is lost: not acked, not in the drain, not in the dlq; \
                 deliveries {:?}",
                QUEUES[k.0],
                k.1,
                enqueued[k],
                deliveries.get(k).map(|ds| ds
                    .iter()
                    .map(|d| (d.delivery_count, d.round, d.who.clone()))
                    .collect::<Vec<_>>())
            ));
        }
    }
    for (q, st) in stats.iter().enumerate() {
        let name = QUEUES[q];
        let known_seqs = enqueued.keys().filter(|k| k.0 == q).count() as u64;
        if st.is_null() {
            if known_seqs > 0 {
                violations.push(format!("{name}: stats 404 after {known_seqs} acknowledged enqueues"));
            }
            continue;
        }
        let total = st["total_enqueued"].as_u64().unwrap();
        let max_seq = enqueued.keys().filter(|k| k.0 == q).map(|k| k.1).max().unwrap_or(0);
        if total < max_seq || total < known_seqs {
            violations.push(format!(
                "{name}: total_enqueued {total} below the acknowledged enqueues ({known_seqs}, highest seq {max_seq})"
            ));
        }
        for seq in 1..=total {
            if !accounted(&(q, seq)) && !enqueued.contains_key(&(q, seq)) {
                lost += 1;
                violations.push(format!(
                    "{name} seq {seq} counted in total_enqueued but nowhere: not acked, not in the drain, not in the dlq"
                ));
            }
        }
        let known_acked = acked.keys().filter(|k| k.0 == q).count() as u64;
        let maybe = maybe_acked
            .iter()
            .filter(|k| k.0 == q && !acked.contains_key(k))
            .count() as u64;
        let total_acked = st["total_acked"].as_u64().unwrap();
        if total_acked < known_acked || total_acked > known_acked + maybe {
            violations.push(format!(
                "{name}: total_acked {total_acked}, but {known_acked} acks were acknowledged and {maybe} more \
                 had a lost answer"
            ));
        }
    }

    let total_acked: usize = acked.len();
    println!(
        "queue-crash: {kills} kills, {} enqueued, {total_acked} acked, {lost} lost, {duplicate_acks} duplicate acks, \
         {premature} premature redeliveries ({} deliveries, {redeliveries} redeliveries, {} drained, {} dead-lettered, \
         {acks_sent} acks with {not_found_acks} not_found, {unknown} unknown outcomes, {:.1} s)",
        enqueued.len(),
        deliveries.values().map(Vec::len).sum::<usize>(),
        drained.len(),
        dead.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(!enqueued.is_empty() && total_acked > 0, "the load did nothing");
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed:#x}); the first ones:\n{}",
        violations.len(),
        violations.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}
