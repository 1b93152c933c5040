//! Model-based test of streams through the real binary: random single and batch appends, reads
//! at random offsets and counts (below the first retained offset, past the end, with defaults),
//! explicit trims, info, listings, and consumer groups (create with every kind of start, read by
//! a few consumers, ack, info, delete) on a few streams, every answer compared with a reference
//! model, with SIGKILL and SIGTERM restarts in between (after which the whole state is
//! compared). Ack timeouts are far longer than the test, so nothing is redelivered by time and
//! the model needs no clock; retention limits (enforced asynchronously) are left out.
//! Seeded (`FLO_MODEL_SEED`); `FLO_MODEL_OPS` scales it.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use base64::Engine as _;
use common::{now_ms, Response, Rng, Server, Trace};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const NS: &str = "smodel";
/// The last one is used rarely, so it stays missing for a while.
const STREAMS: [&str; 3] = ["alpha", "beta", "gamma"];
const GROUPS: [&str; 3] = ["g1", "g2", "g3"];
const CONSUMERS: [&str; 3] = ["c1", "c2", "c3"];
/// Ack timeout of every group: nothing times out during the test.
const LONG_MS: u64 = 600_000;
/// Slack between the server's clock and ours (same clock, read a little apart).
const CLOCK_SLACK_MS: u64 = 100;

#[derive(Clone, Debug)]
struct Group {
    /// The next offset never delivered, as the model counts it (not moved by trims).
    cursor: u64,
    /// Pending offset → delivery count.
    pending: BTreeMap<u64, u64>,
    /// Consumers that were handed records.
    consumers: BTreeSet<String>,
    /// Consumers that read and got nothing: the server may or may not list them.
    maybe_consumers: BTreeSet<String>,
    max_deliveries: u64,
}

/// One stream of the reference model.
#[derive(Debug, Default)]
struct Model {
    exists: bool,
    first: u64,
    /// Every record ever appended (trimmed ones too), by offset: payload and timestamp.
    records: Vec<(Vec<u8>, u64)>,
    groups: BTreeMap<String, Group>,
}

impl Model {
    fn next(&self) -> u64 {
        self.records.len() as u64
    }
}

struct Run {
    s: Server,
    rng: Rng,
    streams: Vec<Model>,
    t: Trace,
}

impl Run {
    // --- Talking to the server. ---

    fn stream_path(st: usize) -> String {
        format!("/api/v1/stream/{NS}/{}", STREAMS[st])
    }

    fn group_path(st: usize, g: &str, op: &str) -> String {
        if op.is_empty() {
            format!("/api/v1/stream/{NS}/{}/groups/{g}", STREAMS[st])
        } else {
            format!("/api/v1/stream/{NS}/{}/groups/{g}/{op}", STREAMS[st])
        }
    }

    fn json(&self, r: &Response) -> Value {
        serde_json::from_slice(&r.body).unwrap_or_else(|e| self.t.fail(format!("not JSON ({e}): {}", r.text())))
    }

    /// The answer must have `status`; its JSON body.
    fn expect(&self, r: &Response, status: u16, what: &str) -> Value {
        self.t.check(r.status == status, || {
            format!("{what}: status {} (want {status}): {}", r.status, r.text())
        });
        let v = self.json(r);
        if status >= 400 {
            let code = match status {
                404 => "not_found",
                409 => "conflict",
                _ => "bad_request",
            };
            self.t
                .eq(v["error"].as_str(), Some(code), &format!("{what}: error code in {v}"));
        }
        v
    }

    fn u64_of(&self, v: &Value, k: &str) -> u64 {
        v[k].as_u64().unwrap_or_else(|| self.t.fail(format!("no {k} in {v}")))
    }

    /// (offset, timestamp, payload, delivery_count) of each record of an answer.
    fn records_of(&self, v: &Value) -> Vec<(u64, u64, Vec<u8>, Option<u64>)> {
        v["records"]
            .as_array()
            .unwrap_or_else(|| self.t.fail(format!("no records in {v}")))
            .iter()
            .map(|r| {
                let payload = r["payload"]
                    .as_str()
                    .and_then(|p| B64.decode(p).ok())
                    .unwrap_or_else(|| self.t.fail(format!("bad payload in {r}")));
                (
                    self.u64_of(r, "offset"),
                    self.u64_of(r, "timestamp_ms"),
                    payload,
                    r["delivery_count"].as_u64(),
                )
            })
            .collect()
    }

    /// The model's records `from..to` of stream `st` with the delivery count `dc`.
    fn want_records(&self, st: usize, from: u64, to: u64, dc: Option<u64>) -> Vec<(u64, u64, Vec<u8>, Option<u64>)> {
        (from..to)
            .map(|o| {
                let (p, ts) = &self.streams[st].records[o as usize];
                (o, *ts, p.clone(), dc)
            })
            .collect()
    }

    /// Picks a stream: the last one seldom.
    fn pick_stream(&mut self) -> usize {
        if self.rng.below(20) == 0 {
            2
        } else {
            self.rng.below(2) as usize
        }
    }

    fn pick<'a>(&mut self, names: &[&'a str]) -> &'a str {
        names[self.rng.below(names.len() as u64) as usize]
    }

    /// An offset around the stream's retained range: below it, in it, at or past its end.
    fn pick_offset(&mut self, st: usize) -> u64 {
        let next = self.streams[st].next();
        match self.rng.below(10) {
            0 => next + self.rng.below(1000),
            1 => self.streams[st].first,
            _ => self.rng.below(next + 4),
        }
    }

    // --- Operations. ---

    fn append(&mut self, batch: bool) {
        let st = self.pick_stream();
        let n = if batch { 1 + self.rng.below(8) } else { 1 };
        let payloads: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                let len = if self.rng.below(25) == 0 {
                    0
                } else {
                    1 + self.rng.below(40)
                };
                (0..len).map(|_| self.rng.next() as u8).collect()
            })
            .collect();
        let body = if batch {
            json!({ "records": payloads.iter().map(|p| json!({"payload": B64.encode(p)})).collect::<Vec<_>>() })
        } else {
            json!({ "payload": B64.encode(&payloads[0]) })
        };
        self.t
            .note(format!("append {} {} records (batch: {batch})", STREAMS[st], n));
        let before = now_ms();
        let r = self
            .s
            .post_json(&format!("{}/append", Self::stream_path(st)), &body.to_string());
        let after = now_ms();
        let v = self.expect(&r, 200, &format!("append to {}", STREAMS[st]));
        let ts = self.u64_of(&v, "timestamp_ms");
        self.t.check(
            before.saturating_sub(CLOCK_SLACK_MS) <= ts && ts <= after + CLOCK_SLACK_MS,
            || format!("append: timestamp_ms {ts} outside [{before}, {after}]"),
        );
        let m = &mut self.streams[st];
        let first = m.next();
        m.exists = true;
        m.records.extend(payloads.into_iter().map(|p| (p, ts)));
        let want = if batch {
            json!({"first_offset": first, "last_offset": first + n - 1, "timestamp_ms": ts})
        } else {
            json!({"offset": first, "timestamp_ms": ts})
        };
        self.t.eq(v, want, &format!("append to {}", STREAMS[st]));
    }

    fn read(&mut self) {
        let st = self.pick_stream();
        let offset = (!self.rng.chance(10)).then(|| self.pick_offset(st));
        let count = (!self.rng.chance(10)).then(|| 1 + self.rng.below(12));
        let mut q = Vec::new();
        if let Some(o) = offset {
            q.push(format!("offset={o}"));
        }
        if let Some(c) = count {
            q.push(format!("count={c}"));
        }
        if self.rng.chance(20) {
            q.push("block_ms=0".into());
        }
        let p = format!("{}?{}", Self::stream_path(st), q.join("&"));
        self.t.note(format!("GET {p}"));
        self.check_read(st, &p, offset, count.unwrap_or(100));
    }

    fn check_read(&mut self, st: usize, p: &str, offset: Option<u64>, count: u64) {
        let r = self.s.get(p);
        let m = &self.streams[st];
        if !m.exists {
            self.expect(&r, 404, &format!("read of {}, which never existed", STREAMS[st]));
            return;
        }
        let v = self.expect(&r, 200, &format!("GET {p}"));
        let start = offset.unwrap_or(m.first).max(m.first);
        let end = (start + count).min(m.next()).max(start);
        let want_next = end;
        self.t.eq(
            self.records_of(&v),
            self.want_records(st, start, end, None),
            &format!("GET {p}: records"),
        );
        self.t.eq(
            v["next_offset"].as_u64(),
            Some(want_next),
            &format!("GET {p}: next_offset"),
        );
        self.t.eq(
            v["first_offset"].as_u64(),
            Some(self.streams[st].first),
            &format!("GET {p}: first_offset"),
        );
    }

    fn trim(&mut self) {
        let st = self.pick_stream();
        let before = self.pick_offset(st);
        self.t.note(format!("trim {} before {before}", STREAMS[st]));
        let r = self.s.post_json(
            &format!("{}/trim", Self::stream_path(st)),
            &json!({ "before_offset": before }).to_string(),
        );
        if !self.streams[st].exists {
            self.expect(&r, 404, &format!("trim of {}, which never existed", STREAMS[st]));
            return;
        }
        let v = self.expect(&r, 200, &format!("trim {} before {before}", STREAMS[st]));
        let m = &mut self.streams[st];
        m.first = m.first.max(before.min(m.next()));
        let first = m.first;
        for g in m.groups.values_mut() {
            g.pending.retain(|&o, _| o >= first);
        }
        self.t.eq(v, json!({ "first_offset": first }), "trim answer");
    }

    /// The model's info of stream `st` (bytes aside: checked alone).
    fn want_info(&self, st: usize) -> Value {
        let m = &self.streams[st];
        let count = m.next() - m.first;
        json!({
            "name": STREAMS[st],
            "first_offset": m.first,
            "last_offset": if count == 0 { Value::Null } else { json!(m.next() - 1) },
            "record_count": count,
            "consumer_groups": m.groups.keys().collect::<Vec<_>>(),
            "bytes": Value::Null,
            "retention": {"max_age_ms": null, "max_bytes": null, "max_records": null},
        })
    }

    /// Checks an info object against the model; `bytes` is positive exactly when records are
    /// retained (its exact value is the server's business).
    fn check_info_value(&self, st: usize, v: &Value, what: &str) {
        let mut got = v.clone();
        let bytes = v["bytes"]
            .as_u64()
            .unwrap_or_else(|| self.t.fail(format!("{what}: no bytes in {v}")));
        let count = self.streams[st].next() - self.streams[st].first;
        self.t.check((bytes > 0) == (count > 0), || {
            format!("{what}: bytes {bytes} with {count} records retained: {v}")
        });
        got["bytes"] = Value::Null;
        self.t.eq(got, self.want_info(st), what);
    }

    fn info(&mut self, st: usize) {
        self.t.note(format!("info {}", STREAMS[st]));
        self.check_info(st);
    }

    fn check_info(&mut self, st: usize) {
        let r = self.s.get(&format!("{}/info", Self::stream_path(st)));
        if !self.streams[st].exists {
            self.expect(&r, 404, &format!("info of {}, which never existed", STREAMS[st]));
            return;
        }
        let v = self.expect(&r, 200, &format!("info {}", STREAMS[st]));
        self.check_info_value(st, &v, &format!("info {}", STREAMS[st]));
    }

    fn list(&mut self) {
        self.t.note("list".into());
        let r = self.s.get(&format!("/api/v1/stream/{NS}"));
        let existing: Vec<usize> = (0..STREAMS.len()).filter(|&st| self.streams[st].exists).collect();
        if existing.is_empty() && r.status == 404 {
            // The namespace may not exist before the first append.
            return;
        }
        let v = self.expect(&r, 200, "listing");
        let rows = v["streams"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| self.t.fail(format!("no streams in {v}")));
        let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap_or("?")).collect();
        let want: Vec<&str> = existing.iter().map(|&st| STREAMS[st]).collect();
        self.t.eq(names, want, "listing: names, sorted");
        for (row, st) in rows.iter().zip(existing) {
            self.check_info_value(st, row, &format!("listing row of {}", STREAMS[st]));
        }
    }

    // --- Groups. ---

    /// The group's info against the model. The cursor of a group whose cursor a trim passed
    /// may be reported as it was or as the first retained offset; lag counts the retained
    /// records not yet delivered either way.
    fn check_group_value(&self, st: usize, g: &str, v: &Value, what: &str) {
        let m = &self.streams[st];
        let grp = &m.groups[g];
        let cursor = self.u64_of(v, "cursor");
        self.t
            .check(cursor == grp.cursor || cursor == grp.cursor.max(m.first), || {
                format!(
                    "{what}: cursor {cursor}, want {} (first_offset {}): {v}",
                    grp.cursor, m.first
                )
            });
        let consumers: Vec<String> = v["consumers"]
            .as_array()
            .unwrap_or_else(|| self.t.fail(format!("{what}: no consumers in {v}")))
            .iter()
            .map(|c| c.as_str().unwrap_or("?").to_string())
            .collect();
        let listed: BTreeSet<String> = consumers.iter().cloned().collect();
        self.t.check(
            consumers.windows(2).all(|w| w[0] < w[1])
                && grp.consumers.is_subset(&listed)
                && listed
                    .iter()
                    .all(|c| grp.consumers.contains(c) || grp.maybe_consumers.contains(c)),
            || {
                format!(
                    "{what}: consumers {consumers:?}, want {:?} (sorted), maybe with some of {:?}",
                    grp.consumers, grp.maybe_consumers
                )
            },
        );
        let want = json!({
            "name": g,
            "cursor": cursor,
            "pending_count": grp.pending.len(),
            "consumers": consumers,
            "lag": m.next() - cursor.max(m.first),
            "ack_timeout_ms": LONG_MS,
            "max_deliveries": grp.max_deliveries,
            "dead_letter_count": 0,
            "dead_letters": [],
        });
        self.t.eq(v.clone(), want, what);
    }

    fn group_create(&mut self) {
        let st = self.pick_stream();
        let g = self.pick(&GROUPS);
        let mut body = json!({ "ack_timeout_ms": LONG_MS });
        let next = self.streams[st].next();
        let first = self.streams[st].first;
        let cursor = match self.rng.below(5) {
            0 => {
                body["start"] = json!("earliest");
                first
            }
            1 => {
                body["start"] = json!("latest");
                next
            }
            2 => next,
            _ => {
                let o = self.rng.below(next + 1);
                body["start"] = json!(o);
                o.clamp(first, next)
            }
        };
        let max_deliveries = if self.rng.chance(30) {
            5
        } else {
            let d = 1 + self.rng.below(5);
            body["max_deliveries"] = json!(d);
            d
        };
        self.t.note(format!("create group {} {g} {body}", STREAMS[st]));
        let r = self.s.post_json(&Self::group_path(st, g, ""), &body.to_string());
        let what = format!("create group {} {g} {body}", STREAMS[st]);
        if !self.streams[st].exists {
            self.expect(&r, 404, &what);
            return;
        }
        if self.streams[st].groups.contains_key(g) {
            self.expect(&r, 409, &what);
            return;
        }
        let v = self.expect(&r, 201, &what);
        self.streams[st].groups.insert(
            g.to_string(),
            Group {
                cursor,
                pending: BTreeMap::new(),
                consumers: BTreeSet::new(),
                maybe_consumers: BTreeSet::new(),
                max_deliveries,
            },
        );
        self.check_group_value(st, g, &v, &what);
    }

    /// Answers 404 (and true) when the stream or group does not exist in the model.
    fn group_missing(&self, st: usize, g: &str, r: &Response, what: &str) -> bool {
        if !self.streams[st].exists || !self.streams[st].groups.contains_key(g) {
            self.expect(r, 404, &format!("{what}: no such stream or group"));
            return true;
        }
        false
    }

    fn group_read(&mut self) {
        let st = self.pick_stream();
        let g = self.pick(&GROUPS);
        let c = self.pick(&CONSUMERS);
        let count = (!self.rng.chance(15)).then(|| 1 + self.rng.below(6));
        let mut body = json!({ "consumer": c });
        if let Some(n) = count {
            body["count"] = json!(n);
        }
        if self.rng.chance(20) {
            body["block_ms"] = json!(0);
        }
        let what = format!("group read {} {g} {body}", STREAMS[st]);
        self.t.note(what.clone());
        let r = self.s.post_json(&Self::group_path(st, g, "read"), &body.to_string());
        if self.group_missing(st, g, &r, &what) {
            return;
        }
        let v = self.expect(&r, 200, &what);
        let m = &self.streams[st];
        let from = m.groups[g].cursor.max(m.first);
        let to = (from + count.unwrap_or(10)).min(m.next()).max(from);
        self.t.eq(
            self.records_of(&v),
            self.want_records(st, from, to, Some(1)),
            &format!("{what}: records"),
        );
        let grp = self.streams[st].groups.get_mut(g).unwrap();
        if to > from {
            grp.cursor = to;
            grp.pending.extend((from..to).map(|o| (o, 1)));
            grp.consumers.insert(c.to_string());
        } else if !grp.consumers.contains(c) {
            grp.maybe_consumers.insert(c.to_string());
        }
    }

    fn group_ack(&mut self) {
        let st = self.pick_stream();
        let g = self.pick(&GROUPS);
        let next = self.streams[st].next();
        let pending: Vec<u64> = self.streams[st]
            .groups
            .get(g)
            .map_or(Vec::new(), |grp| grp.pending.keys().copied().collect());
        let mut offs: BTreeSet<u64> = BTreeSet::new();
        let k = self.rng.below(pending.len().min(4) as u64 + 1);
        for _ in 0..k {
            offs.insert(pending[self.rng.below(pending.len() as u64) as usize]);
        }
        if offs.is_empty() || self.rng.chance(30) {
            offs.insert(self.rng.below(next + 3));
        }
        let mut offs: Vec<u64> = offs.into_iter().collect();
        self.rng.shuffle(&mut offs);
        let what = format!("ack {} {g} {offs:?}", STREAMS[st]);
        self.t.note(what.clone());
        let r = self
            .s
            .post_json(&Self::group_path(st, g, "ack"), &json!({ "offsets": offs }).to_string());
        if self.group_missing(st, g, &r, &what) {
            return;
        }
        let v = self.expect(&r, 200, &what);
        let grp = self.streams[st].groups.get_mut(g).unwrap();
        let acked = offs.iter().filter(|o| grp.pending.remove(o).is_some()).count();
        self.t.eq(v, json!({ "acked": acked }), &what);
    }

    fn group_info(&mut self) {
        let st = self.pick_stream();
        let g = self.pick(&GROUPS);
        self.t.note(format!("group info {} {g}", STREAMS[st]));
        self.check_group(st, g);
    }

    fn check_group(&mut self, st: usize, g: &str) {
        let r = self.s.get(&Self::group_path(st, g, ""));
        let what = format!("group info {} {g}", STREAMS[st]);
        if self.group_missing(st, g, &r, &what) {
            return;
        }
        let v = self.expect(&r, 200, &what);
        self.check_group_value(st, g, &v, &what);
    }

    fn group_delete(&mut self) {
        let st = self.pick_stream();
        let g = self.pick(&GROUPS);
        let what = format!("delete group {} {g}", STREAMS[st]);
        self.t.note(what.clone());
        let r = self.s.delete(&Self::group_path(st, g, ""));
        if self.group_missing(st, g, &r, &what) {
            return;
        }
        let v = self.expect(&r, 200, &what);
        self.t.eq(v, json!({"deleted": true}), &what);
        self.streams[st].groups.remove(g);
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

    /// The whole state against the model: every stream's info and every retained record (read
    /// from below the first offset, following next_offset), every group's info.
    fn check_all(&mut self) {
        for st in 0..STREAMS.len() {
            self.check_info(st);
            if !self.streams[st].exists {
                self.check_read(st, &Self::stream_path(st), None, 100);
                continue;
            }
            let mut offset = 0;
            loop {
                let p = format!("{}?offset={offset}&count=1000", Self::stream_path(st));
                self.check_read(st, &p, Some(offset), 1000);
                let next = offset.max(self.streams[st].first) + 1000;
                if next >= self.streams[st].next() {
                    break;
                }
                offset = next;
            }
            for g in GROUPS {
                self.check_group(st, g);
            }
        }
        self.list();
    }
}

#[test]
fn streams_match_a_model_across_restarts() {
    let ops = common::env_u64("FLO_MODEL_OPS", 2000);
    let seed = common::env_u64("FLO_MODEL_SEED", 0x57ee_d0f0_9e0e_0001);
    let s = Server::builder().shards(2).start();
    let mut run = Run {
        s,
        rng: Rng(seed),
        streams: (0..STREAMS.len()).map(|_| Model::default()).collect(),
        t: Trace::new(seed),
    };
    let started = std::time::Instant::now();
    let mut restarts = 0;
    for op in 0..ops {
        run.t.op = op;
        // At least one restart of each kind, and more at random.
        if let Some(kill) = common::restart_due(&mut run.rng, op, ops, 150) {
            run.restart(kill);
            restarts += 1;
        }
        match run.rng.below(100) {
            0..=17 => run.append(false),
            18..=29 => run.append(true),
            30..=44 => run.read(),
            45..=49 => run.trim(),
            50..=54 => {
                let st = run.pick_stream();
                run.info(st)
            }
            55..=57 => run.list(),
            58..=65 => run.group_create(),
            66..=79 => run.group_read(),
            80..=89 => run.group_ack(),
            90..=95 => run.group_info(),
            _ => run.group_delete(),
        }
    }
    run.t.op = ops;
    run.check_all();
    let totals: Vec<String> = (0..STREAMS.len())
        .map(|st| {
            let m = &run.streams[st];
            format!(
                "{}: {} records from {}, groups {:?}",
                STREAMS[st],
                m.next() - m.first,
                m.first,
                m.groups.keys().collect::<Vec<_>>()
            )
        })
        .collect();
    println!(
        "stream-model: seed {seed:#x}, {ops} operations, {restarts} restarts, {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        totals.join("; ")
    );
}
