//! Model-based test of queues through the real binary: random enqueues (single and batch,
//! priorities, dedup keys, long delays), dequeues, acks, nacks (to ready, delayed or the
//! dead-letter queue), touches, requeues from the dead-letter queue, peeks, dead-letter
//! listings, stats, listings and purges on a few queues, every answer compared with a
//! reference model, with SIGKILL and SIGTERM restarts in between (after which the whole state
//! is compared). Leases and delays are far longer than the test, so the model needs no clock.
//! Seeded (`FLO_MODEL_SEED`); `FLO_MODEL_OPS` scales it.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use base64::Engine as _;
use common::{now_ms, Response, Rng, Server, Trace};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const NS: &str = "qmodel";
/// The last one is used rarely, so it stays missing for a while.
const QUEUES: [&str; 3] = ["alpha", "beta", "gamma"];
/// Visibility of every dequeue and touch: no lease runs out during the test.
const LONG_MS: u64 = 600_000;
/// Delay of delayed enqueues and nacks: no delay runs out during the test.
const DELAY_MS: u64 = 3_600_000;
/// Slack between the server's clock and ours (same clock, read a little apart).
const CLOCK_SLACK_MS: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Ready,
    Delayed,
    Leased,
    Dead,
}

#[derive(Clone, Debug)]
struct Msg {
    payload: Vec<u8>,
    priority: u64,
    state: St,
    delivery_count: u64,
    /// Our clock before and after the enqueue request.
    enqueued_window: (u64, u64),
    /// `enqueued_at_ms` as first seen; must never change.
    enqueued_at: Option<u64>,
    /// Dead: the order of its death among the queue's deaths, and our clock around it.
    death: (u64, u64, u64),
}

/// One queue of the reference model. Acked and purged messages are removed.
#[derive(Debug)]
struct Model {
    exists: bool,
    next_seq: u64,
    msgs: BTreeMap<u64, Msg>,
    dedup: HashMap<String, u64>,
    total_enqueued: u64,
    total_acked: u64,
    deaths: u64,
}

impl Model {
    fn new() -> Self {
        Model {
            exists: false,
            next_seq: 1,
            msgs: BTreeMap::new(),
            dedup: HashMap::new(),
            total_enqueued: 0,
            total_acked: 0,
            deaths: 0,
        }
    }
    /// Ready messages in delivery order: lower priority first, then seq.
    fn ready(&self) -> Vec<u64> {
        let mut v: Vec<(u64, u64)> = self
            .msgs
            .iter()
            .filter(|(_, m)| m.state == St::Ready)
            .map(|(s, m)| (m.priority, *s))
            .collect();
        v.sort();
        v.into_iter().map(|(_, s)| s).collect()
    }
    fn with(&self, st: St) -> Vec<u64> {
        self.msgs
            .iter()
            .filter(|(_, m)| m.state == st)
            .map(|(s, _)| *s)
            .collect()
    }
    fn counts(&self) -> Counts {
        let n = |st| self.with(st).len() as u64;
        Counts {
            ready: n(St::Ready),
            leased: n(St::Leased),
            delayed: n(St::Delayed),
            dlq: n(St::Dead),
            enqueued: self.total_enqueued,
            acked: self.total_acked,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    ready: u64,
    leased: u64,
    delayed: u64,
    dlq: u64,
    enqueued: u64,
    acked: u64,
}

struct Run {
    s: Server,
    rng: Rng,
    queues: Vec<Model>,
    t: Trace,
}

impl Run {
    // --- Talking to the server. ---

    fn path(q: usize, op: &str) -> String {
        format!("/api/v1/queue/{NS}/{}/{op}", QUEUES[q])
    }

    fn post(&self, q: usize, op: &str, body: &Value) -> Response {
        self.s.post_json(&Self::path(q, op), &body.to_string())
    }

    /// A POST that must answer 200; its JSON body.
    fn post_ok(&self, q: usize, op: &str, body: &Value) -> Value {
        let r = self.post(q, op, body);
        self.t.check(r.status == 200, || {
            format!("{op} {} {body}: {} {}", QUEUES[q], r.status, r.text())
        });
        self.json(&r)
    }

    fn get_ok(&self, p: &str) -> Value {
        let r = self.s.get(p);
        self.t
            .check(r.status == 200, || format!("GET {p}: {} {}", r.status, r.text()));
        self.json(&r)
    }

    fn json(&self, r: &Response) -> Value {
        serde_json::from_slice(&r.body).unwrap_or_else(|e| self.t.fail(format!("not JSON ({e}): {}", r.text())))
    }

    fn rows(&self, v: &Value) -> Vec<Value> {
        v["messages"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| self.t.fail(format!("no messages in {v}")))
    }

    fn u64_of(&self, v: &Value, k: &str) -> u64 {
        v[k].as_u64().unwrap_or_else(|| self.t.fail(format!("no {k} in {v}")))
    }

    fn seqs_of(&self, rows: &[Value]) -> Vec<u64> {
        rows.iter().map(|r| self.u64_of(r, "seq")).collect()
    }

    /// A message row (dequeue, peek or dlq) against the model: payload, priority (when the row
    /// has one), delivery_count, enqueued_at_ms (when the row has one).
    fn check_row(&mut self, q: usize, row: &Value, what: &str) {
        let seq = self.u64_of(row, "seq");
        let Some(m) = self.queues[q].msgs.get(&seq).cloned() else {
            self.t.fail(format!(
                "{what}: {} has no message {seq} in the model: {row}",
                QUEUES[q]
            ));
        };
        let payload = row["payload"]
            .as_str()
            .and_then(|p| B64.decode(p).ok())
            .unwrap_or_else(|| self.t.fail(format!("{what}: bad payload in {row}")));
        self.t
            .eq(payload, m.payload.clone(), &format!("{what}: payload of seq {seq}"));
        if !row["priority"].is_null() || what.starts_with("dequeue") || what.starts_with("peek") {
            self.t.eq(
                row["priority"].as_u64(),
                Some(m.priority),
                &format!("{what}: priority of seq {seq}"),
            );
        }
        self.t.eq(
            row["delivery_count"].as_u64(),
            Some(m.delivery_count),
            &format!("{what}: delivery_count of seq {seq}"),
        );
        if let Some(at) = row["enqueued_at_ms"].as_u64() {
            match m.enqueued_at {
                Some(first) => self
                    .t
                    .eq(at, first, &format!("{what}: enqueued_at_ms of seq {seq} changed")),
                None => {
                    let (lo, hi) = m.enqueued_window;
                    self.t.check(
                        lo.saturating_sub(CLOCK_SLACK_MS) <= at && at <= hi + CLOCK_SLACK_MS,
                        || format!("{what}: enqueued_at_ms {at} of seq {seq} outside the enqueue's [{lo}, {hi}]"),
                    );
                    self.queues[q].msgs.get_mut(&seq).unwrap().enqueued_at = Some(at);
                }
            }
        } else if what.starts_with("dequeue") || what.starts_with("peek") {
            self.t.fail(format!("{what}: no enqueued_at_ms in {row}"));
        }
    }

    /// Picks a queue: the last one seldom.
    fn pick_queue(&mut self) -> usize {
        if self.rng.below(20) == 0 {
            2
        } else {
            self.rng.below(2) as usize
        }
    }

    /// Seqs for an operation that applies to messages in `target`: a few of those, sometimes
    /// with one that is not (another state, acked or purged, or never enqueued). Distinct,
    /// shuffled, never empty.
    fn pick_seqs(&mut self, q: usize, target: St) -> Vec<u64> {
        let m = &self.queues[q];
        let mut pool = m.with(target);
        let others: Vec<u64> = m
            .msgs
            .iter()
            .filter(|(_, x)| x.state != target)
            .map(|(s, _)| *s)
            .collect();
        let gone: Vec<u64> = (1..m.next_seq).filter(|s| !m.msgs.contains_key(s)).collect();
        let next = m.next_seq;
        self.rng.shuffle(&mut pool);
        let k = self.rng.below(pool.len().min(3) as u64 + 1) as usize;
        let mut out: Vec<u64> = pool[..k].to_vec();
        if out.is_empty() || self.rng.chance(30) {
            let extra = match self.rng.below(3) {
                0 if !others.is_empty() => others[self.rng.below(others.len() as u64) as usize],
                1 if !gone.is_empty() => gone[self.rng.below(gone.len() as u64) as usize],
                _ => next + self.rng.below(5),
            };
            if !out.contains(&extra) {
                out.push(extra);
            }
        }
        self.rng.shuffle(&mut out);
        out
    }

    /// The answer of ack/nack/touch/requeue: `count_key` (when present) and `not_found`
    /// against the expected split of `seqs`.
    fn check_done(&self, what: &str, v: &Value, count_key: &str, found: &[u64], seqs: &[u64], required: bool) {
        let mut want_nf: Vec<u64> = seqs.iter().copied().filter(|s| !found.contains(s)).collect();
        want_nf.sort();
        if required || !v[count_key].is_null() {
            self.t.eq(
                v[count_key].as_u64(),
                Some(found.len() as u64),
                &format!("{what}: {count_key} in {v}"),
            );
        }
        if required || !v["not_found"].is_null() {
            let mut nf: Vec<u64> = v["not_found"]
                .as_array()
                .unwrap_or_else(|| self.t.fail(format!("{what}: no not_found in {v}")))
                .iter()
                .map(|x| {
                    x.as_u64()
                        .unwrap_or_else(|| self.t.fail(format!("{what}: not_found {v}")))
                })
                .collect();
            nf.sort();
            self.t.eq(nf, want_nf, &format!("{what}: not_found in {v}"));
        }
    }

    // --- Operations. ---

    fn enqueue(&mut self, batch: bool) {
        let q = self.pick_queue();
        let n = if batch { 2 + self.rng.below(5) } else { 1 };
        let mut items = Vec::new();
        let mut bodies = Vec::new();
        for _ in 0..n {
            let len = if self.rng.below(25) == 0 {
                0
            } else {
                1 + self.rng.below(24)
            };
            let payload: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
            let priority = self.rng.below(4);
            let delayed = self.rng.chance(8);
            let key = self.rng.chance(15).then(|| format!("key-{}", self.rng.below(40)));
            let mut b = json!({ "payload": B64.encode(&payload) });
            if priority > 0 || self.rng.chance(50) {
                b["priority"] = json!(priority);
            }
            if delayed {
                b["delay_ms"] = json!(DELAY_MS);
            } else if self.rng.chance(10) {
                b["delay_ms"] = json!(0);
            }
            if let Some(k) = &key {
                b["dedup_key"] = json!(k);
            }
            items.push((payload, priority, delayed, key));
            bodies.push(b);
        }
        let body = if batch {
            json!({ "messages": bodies })
        } else {
            bodies[0].clone()
        };
        self.t.note(format!("enqueue {} {body}", QUEUES[q]));
        let before = now_ms();
        let v = self.post_ok(q, "enqueue", &body);
        let after = now_ms();
        let m = &mut self.queues[q];
        m.exists = true;
        let mut want_seqs = Vec::new();
        let mut want_dedup = Vec::new();
        for (payload, priority, delayed, key) in items {
            if let Some(&seq) = key.as_ref().and_then(|k| m.dedup.get(k)) {
                want_seqs.push(seq);
                want_dedup.push(true);
                continue;
            }
            let seq = m.next_seq;
            m.next_seq += 1;
            m.total_enqueued += 1;
            if let Some(k) = key {
                m.dedup.insert(k, seq);
            }
            m.msgs.insert(
                seq,
                Msg {
                    payload,
                    priority,
                    state: if delayed { St::Delayed } else { St::Ready },
                    delivery_count: 0,
                    enqueued_window: (before, after),
                    enqueued_at: None,
                    death: (0, 0, 0),
                },
            );
            want_seqs.push(seq);
            want_dedup.push(false);
        }
        let want = if batch {
            json!({ "seqs": want_seqs, "deduplicated": want_dedup })
        } else {
            json!({ "seq": want_seqs[0], "deduplicated": want_dedup[0] })
        };
        self.t.eq(v, want, &format!("enqueue {}", QUEUES[q]));
    }

    fn dequeue(&mut self) {
        let q = self.pick_queue();
        let count = 1 + self.rng.below(4);
        let body = json!({ "count": count, "visibility_timeout_ms": LONG_MS });
        self.t.note(format!("dequeue {} {body}", QUEUES[q]));
        let before = now_ms();
        let v = self.post_ok(q, "dequeue", &body);
        let after = now_ms();
        let rows = self.rows(&v);
        let want: Vec<u64> = self.queues[q].ready().into_iter().take(count as usize).collect();
        self.t.eq(
            self.seqs_of(&rows),
            want.clone(),
            &format!("dequeue {}: seqs", QUEUES[q]),
        );
        for (row, seq) in rows.iter().zip(&want) {
            let m = self.queues[q].msgs.get_mut(seq).unwrap();
            m.state = St::Leased;
            m.delivery_count += 1;
            self.check_row(q, row, &format!("dequeue {}", QUEUES[q]));
            let lease = self.u64_of(row, "lease_expires_at_ms");
            self.t.check(
                before + LONG_MS - CLOCK_SLACK_MS <= lease && lease <= after + LONG_MS + CLOCK_SLACK_MS,
                || format!("dequeue: lease_expires_at_ms {lease} is not [{before}, {after}] + {LONG_MS}: {row}"),
            );
        }
    }

    /// ack, nack, touch or requeue.
    fn operate(&mut self, op: &str) {
        let q = self.pick_queue();
        if !self.queues[q].exists {
            return self.stats(q);
        }
        let target = if op == "dlq/requeue" { St::Dead } else { St::Leased };
        let seqs = self.pick_seqs(q, target);
        let mut body = json!({ "sequences": seqs });
        let mut nack_to = St::Ready;
        match op {
            "nack" => {
                if self.rng.chance(25) {
                    body["to_dlq"] = json!(true);
                    body["delay_ms"] = json!(0);
                    nack_to = St::Dead;
                } else if self.rng.chance(15) {
                    body["delay_ms"] = json!(DELAY_MS);
                    nack_to = St::Delayed;
                } else {
                    if self.rng.chance(50) {
                        body["delay_ms"] = json!(0);
                    }
                    if self.rng.chance(30) {
                        body["to_dlq"] = json!(false);
                    }
                }
            }
            "touch" => body["visibility_timeout_ms"] = json!(LONG_MS),
            _ => {}
        }
        self.t.note(format!("{op} {} {body}", QUEUES[q]));
        let before = now_ms();
        let v = self.post_ok(q, op, &body);
        let after = now_ms();
        let found: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|s| self.queues[q].msgs.get(s).is_some_and(|m| m.state == target))
            .collect();
        let what = format!("{op} {} {body}", QUEUES[q]);
        match op {
            "ack" => self.check_done(&what, &v, "acked", &found, &seqs, true),
            "nack" => self.check_done(&what, &v, "nacked", &found, &seqs, true),
            "touch" => self.check_done(&what, &v, "touched", &found, &seqs, false),
            _ => self.check_done(&what, &v, "requeued", &found, &seqs, false),
        }
        let m = &mut self.queues[q];
        for s in found {
            match op {
                "ack" => {
                    m.msgs.remove(&s);
                    m.total_acked += 1;
                }
                "nack" => {
                    if nack_to == St::Dead {
                        m.deaths += 1;
                        m.msgs.get_mut(&s).unwrap().death = (m.deaths, before, after);
                    }
                    m.msgs.get_mut(&s).unwrap().state = nack_to;
                }
                "touch" => {}
                _ => {
                    let x = m.msgs.get_mut(&s).unwrap();
                    x.state = St::Ready;
                    x.delivery_count = 0;
                }
            }
        }
    }

    fn peek(&mut self) {
        let q = self.pick_queue();
        let count = 1 + self.rng.below(8);
        self.t.note(format!("peek {} count={count}", QUEUES[q]));
        self.check_peek(q, count as usize);
    }

    fn check_peek(&mut self, q: usize, count: usize) {
        let v = self.get_ok(&format!("{}?count={count}", Self::path(q, "peek")));
        let rows = self.rows(&v);
        let want: Vec<u64> = self.queues[q].ready().into_iter().take(count).collect();
        self.t.eq(
            self.seqs_of(&rows),
            want,
            &format!("peek {} count={count}: seqs", QUEUES[q]),
        );
        for row in &rows {
            self.check_row(q, row, &format!("peek {}", QUEUES[q]));
        }
    }

    fn dlq(&mut self) {
        let q = self.pick_queue();
        if !self.queues[q].exists {
            return self.stats(q);
        }
        self.t.note(format!("dlq {}", QUEUES[q]));
        self.check_dlq(q);
    }

    fn check_dlq(&mut self, q: usize) {
        let v = self.get_ok(&format!("{}?limit=1000", Self::path(q, "dlq")));
        let rows = self.rows(&v);
        let mut got = self.seqs_of(&rows);
        got.sort();
        self.t
            .eq(got, self.queues[q].with(St::Dead), &format!("dlq {}: seqs", QUEUES[q]));
        let mut by_death = Vec::new();
        for row in &rows {
            self.check_row(q, row, &format!("dlq {}", QUEUES[q]));
            let seq = self.u64_of(row, "seq");
            let at = self.u64_of(row, "dead_at_ms");
            let (order, lo, hi) = self.queues[q].msgs[&seq].death;
            self.t.check(
                lo.saturating_sub(CLOCK_SLACK_MS) <= at && at <= hi + CLOCK_SLACK_MS,
                || format!("dlq: dead_at_ms {at} of seq {seq} outside its nack's [{lo}, {hi}]"),
            );
            by_death.push((order, at, seq));
        }
        by_death.sort();
        for w in by_death.windows(2) {
            self.t.check(w[0].1 <= w[1].1, || {
                format!(
                    "dlq: seq {} died after seq {} but has an earlier dead_at_ms",
                    w[1].2, w[0].2
                )
            });
        }
    }

    fn stats(&mut self, q: usize) {
        self.t.note(format!("stats {}", QUEUES[q]));
        self.check_stats(q);
    }

    fn check_stats(&mut self, q: usize) {
        let r = self.s.get(&Self::path(q, "stats"));
        if !self.queues[q].exists {
            self.t.eq(
                r.status,
                404,
                &format!("stats of {}, which never existed: {}", QUEUES[q], r.text()),
            );
            return;
        }
        self.t.check(r.status == 200, || {
            format!("stats {}: {} {}", QUEUES[q], r.status, r.text())
        });
        let v = self.json(&r);
        self.t.eq(v["name"].as_str(), Some(QUEUES[q]), "stats: name");
        self.t.eq(
            self.counts_of(&v),
            self.queues[q].counts(),
            &format!("stats {}: {v}", QUEUES[q]),
        );
    }

    fn counts_of(&self, v: &Value) -> Counts {
        Counts {
            ready: self.u64_of(v, "ready_count"),
            leased: self.u64_of(v, "leased_count"),
            delayed: self.u64_of(v, "delayed_count"),
            dlq: self.u64_of(v, "dlq_count"),
            enqueued: self.u64_of(v, "total_enqueued"),
            acked: self.u64_of(v, "total_acked"),
        }
    }

    fn list(&mut self) {
        self.t.note("list".into());
        let v = self.get_ok(&format!("/api/v1/queue/{NS}"));
        let rows = v["queues"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| self.t.fail(format!("no queues in {v}")));
        let mut got: Vec<(String, Counts)> = rows
            .iter()
            .map(|r| (r["name"].as_str().unwrap_or("?").to_string(), self.counts_of(r)))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want: Vec<(String, Counts)> = (0..QUEUES.len())
            .filter(|&q| self.queues[q].exists)
            .map(|q| (QUEUES[q].to_string(), self.queues[q].counts()))
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        self.t.eq(got, want, "queue listing");
    }

    fn purge(&mut self) {
        let q = self.pick_queue();
        if !self.queues[q].exists {
            return self.stats(q);
        }
        self.t.note(format!("purge {}", QUEUES[q]));
        let v = self.post_ok(q, "purge", &json!({}));
        let m = &mut self.queues[q];
        let before = m.msgs.len();
        m.msgs.retain(|_, x| !matches!(x.state, St::Ready | St::Delayed));
        let purged = (before - m.msgs.len()) as u64;
        if !v["purged"].is_null() {
            self.t.eq(v["purged"].as_u64(), Some(purged), "purge: purged");
        }
    }

    fn restart(&mut self, kill: bool) {
        self.t
            .note(if kill { "SIGKILL + restart" } else { "SIGTERM + restart" }.into());
        if kill {
            self.s.sigkill();
        } else {
            let status = self.s.sigterm();
            self.t
                .check(status.success(), || format!("SIGTERM exit status {status}"));
        }
        self.s.restart();
        self.check_all();
    }

    /// The whole state of every queue against the model: stats, every ready message in order,
    /// the dead-letter queue, and every lease still there (touched again, which changes nothing
    /// the model tracks).
    fn check_all(&mut self) {
        for (q, _) in QUEUES.iter().enumerate() {
            self.check_stats(q);
            self.check_peek(q, 1000);
            if !self.queues[q].exists {
                continue;
            }
            self.check_dlq(q);
            let leased = self.queues[q].with(St::Leased);
            if !leased.is_empty() {
                let body = json!({ "sequences": leased, "visibility_timeout_ms": LONG_MS });
                let v = self.post_ok(q, "touch", &body);
                let what = format!("every lease of {} is still there (touch {body})", QUEUES[q]);
                self.check_done(&what, &v, "touched", &leased, &leased, false);
            }
        }
        self.list();
    }
}

#[test]
fn queues_match_a_model_across_restarts() {
    let ops = common::env_u64("FLO_MODEL_OPS", 600);
    let seed = common::env_u64("FLO_MODEL_SEED", 0x51ee_d0f0_9e0e_0001);
    let s = Server::builder()
        .shards(1)
        .config("[queue]\nmax_deliveries = 5\ndedup_window_ms = 3600000\n")
        .start();
    let mut run = Run {
        s,
        rng: Rng(seed),
        queues: (0..QUEUES.len()).map(|_| Model::new()).collect(),
        t: Trace::new(seed),
    };
    let started = std::time::Instant::now();
    let mut restarts = 0;
    for op in 0..ops {
        run.t.op = op;
        // At least one restart of each kind, and more at random.
        if let Some(kill) = common::restart_due(&mut run.rng, op, ops, 120) {
            run.restart(kill);
            restarts += 1;
        }
        match run.rng.below(100) {
            0..=19 => run.enqueue(false),
            20..=26 => run.enqueue(true),
            27..=46 => run.dequeue(),
            47..=63 => run.operate("ack"),
            64..=71 => run.operate("nack"),
            72..=74 => run.operate("touch"),
            75..=79 => run.operate("dlq/requeue"),
            80..=85 => run.peek(),
            86..=88 => run.dlq(),
            89..=94 => {
                let q = run.pick_queue();
                run.stats(q)
            }
            95..=97 => run.list(),
            _ => {
                if run.rng.chance(40) {
                    run.purge()
                } else {
                    run.dequeue()
                }
            }
        }
    }
    run.t.op = ops;
    run.check_all();
    let totals: Vec<String> = (0..QUEUES.len())
        .map(|q| format!("{}: {:?}", QUEUES[q], run.queues[q].counts()))
        .collect();
    println!(
        "queue-model: seed {seed:#x}, {ops} operations, {restarts} restarts, {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        totals.join("; ")
    );
}
