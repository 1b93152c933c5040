//! Time series under SIGKILL: writer threads send line-protocol batches to a two-shard server
//! (small segments, so segments roll between and across the crashes) while a reader thread runs
//! raw queries, and the server is killed at a random moment and restarted, round after round.
//!
//! Every batch writes the same 16-ish hosts (`cpu,host=hNN usage=..,idle=..`), whose series
//! spread over both shards, so most writes are multi-part writes that must be atomic across
//! partitions (`format-spec/ts.md`, "A write is atomic across partitions"); some cover only
//! hosts of one partition (single-part writes). Most batches have one timestamp, some 40 (640 lines, so heads
//! fill to 1024 points and chunks are cut, in order or not), some are late (older than points
//! already written, so they go to the late heads). Timestamps are unique per batch, and every
//! value says which batch, host and line wrote it, so any point can be checked exactly.
//!
//! A write whose answer was lost is an "unknown outcome". After every restart each host is
//! queried raw over the whole time range and checked: every acknowledged batch is there whole,
//! with exactly its values; every batch is there whole or not at all (never a part); no point
//! that no client wrote; points ascending, no timestamp twice; an unknown batch kept (or absent)
//! after one restart is kept (or absent) after the next; every batch a live query showed whole is
//! still there. The live queries themselves are checked too: a query shows a batch whole (within
//! its range) or not at all.
//!
//! `FLO_TS_KILLS` sets the number of kill rounds, `FLO_TS_SEED` replays a run.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;
#[path = "common/replicas.rs"]
mod replicas;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Response, Rng, Server};
use serde_json::{json, Value};

const NS: &str = "tscrash";
const HOSTS: usize = 16;
const WRITERS: usize = 4;
/// Timestamps are `BASE + round * ROUND_SPAN + k * LANES + lane`: lane `w` (< WRITERS) for the
/// in-order writes of writer `w`, lane `WRITERS + w` for its late writes.
const BASE: i64 = 1_600_000_000_000;
const ROUND_SPAN: i64 = 100_000_000;
const LANES: i64 = 2 * WRITERS as i64;
/// In-order writes start at this `k`; late writes count up from 0, so they are always older than
/// the in-order points of their round.
const FIRST_K: i64 = 1000;
/// Timestamps of a large batch (× HOSTS lines).
const LARGE_TS: usize = 40;
/// Half-width of the live reader's window, in ms.
const LIVE_WINDOW: i64 = 200;

fn host_name(h: usize) -> String {
    format!("h{h:02}")
}

fn round_base(round: usize) -> i64 {
    BASE + round as i64 * ROUND_SPAN
}

/// The whole time range the test may write in, for `kills` rounds.
fn full_range(kills: usize) -> (i64, i64) {
    (BASE, round_base(kills + 1))
}

/// One write request: every host of `hosts` at every timestamp of `ts`, two fields each.
#[derive(Clone, Debug)]
struct Batch {
    /// `(round * WRITERS + writer) << 24 | seq`: unique per batch.
    uid: u64,
    hosts: Vec<usize>,
    ts: Vec<i64>,
    kind: &'static str,
}

impl Batch {
    fn round(&self) -> u64 {
        (self.uid >> 24) / WRITERS as u64
    }
    fn writer(&self) -> u64 {
        (self.uid >> 24) % WRITERS as u64
    }
    fn seq(&self) -> u64 {
        self.uid & 0xff_ffff
    }
    fn lines(&self) -> usize {
        self.hosts.len() * self.ts.len()
    }
    fn points(&self) -> usize {
        2 * self.lines()
    }
    /// Points of this batch with a timestamp in `lo..=hi`, per shard owning the host.
    fn points_in(&self, lo: i64, hi: i64, owner: &[usize; HOSTS]) -> [usize; 2] {
        let ts = self.ts.iter().filter(|&&t| t >= lo && t <= hi).count();
        let mut out = [0; 2];
        for &h in &self.hosts {
            out[owner[h]] += 2 * ts;
        }
        out
    }
    fn describe(&self) -> String {
        let (lo, hi) = (self.ts.iter().min().unwrap(), self.ts.iter().max().unwrap());
        format!(
            "batch {:#x} (round {}, writer {}, seq {}, {}, {} hosts × {} timestamps {lo}..={hi})",
            self.uid,
            self.round(),
            self.writer(),
            self.seq(),
            self.kind,
            self.hosts.len(),
            self.ts.len()
        )
    }
}

/// The value a batch writes for `host` and `field` at its `j`-th timestamp, and its text in the
/// body. `usage` is the integer `uid * 16 + host`; `idle` adds a quarter, a half or three
/// quarters: all exact in f64 and in decimal, and `floor(v / 16)` is the uid.
fn value(uid: u64, host: usize, field: &str, j: usize) -> (f64, String) {
    let n = uid * 16 + host as u64;
    match field {
        "usage" => (n as f64, n.to_string()),
        _ => {
            let q = 1 + j % 3;
            let frac = ["", "25", "5", "75"][q];
            (n as f64 + q as f64 / 4.0, format!("{n}.{frac}"))
        }
    }
}

fn body(b: &Batch) -> String {
    let mut out = String::with_capacity(b.lines() * 60);
    for (j, ts) in b.ts.iter().enumerate() {
        for &h in &b.hosts {
            out.push_str(&format!(
                "cpu,host={} usage={},idle={} {ts}\n",
                host_name(h),
                value(b.uid, h, "usage", j).1,
                value(b.uid, h, "idle", j).1
            ));
        }
    }
    out
}

#[derive(Debug)]
enum Event {
    /// A write answered 200.
    Acked(Batch),
    /// A write whose answer was lost: all of it or nothing.
    Unknown(Batch),
    /// A write answered 429: nothing of it.
    Rejected(Batch),
    /// What a live query `cpu[lo..hi]` showed: per batch uid, its points on each shard.
    Snapshot {
        round: usize,
        lo: i64,
        hi: i64,
        counts: Vec<(u64, [usize; 2])>,
    },
    /// An answer that breaks the contract.
    Bad(String),
}

fn post(api: SocketAddr, p: &str, ctype: &str, body: &[u8]) -> std::io::Result<Response> {
    common::try_request(api, "POST", p, &[("Content-Type", ctype)], body)
}

fn query(api: SocketAddr, q: &str) -> std::io::Result<Response> {
    let body = json!({ "query": q }).to_string();
    post(
        api,
        &format!("/api/v1/ts/{NS}/query"),
        "application/json",
        body.as_bytes(),
    )
}

fn writer(api: SocketAddr, round: usize, w: usize, shard_hosts: [Vec<usize>; 2], seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let rb = round_base(round);
    let (mut k, mut late_k, mut seq) = (FIRST_K, 0i64, 0u64);
    let all: Vec<usize> = (0..HOSTS).collect();
    loop {
        seq += 1;
        let uid = (((round * WRITERS + w) as u64) << 24) | seq;
        let r = rng.below(100);
        let (kind, hosts, ts): (&str, Vec<usize>, Vec<i64>) = if r < 8 {
            // Late: older than every in-order point of the round.
            let n = 1 + rng.below(4) as i64;
            let ts = (late_k..late_k + n)
                .map(|i| rb + i * LANES + (WRITERS + w) as i64)
                .collect();
            late_k += n;
            ("late", all.clone(), ts)
        } else if r < 20 {
            // Large: 40 timestamps of every host; now and then sent newest first.
            let mut ts: Vec<i64> = (k..k + LARGE_TS as i64).map(|i| rb + i * LANES + w as i64).collect();
            k += LARGE_TS as i64;
            if rng.chance(30) {
                ts.reverse();
            }
            ("large", all.clone(), ts)
        } else if r < 35 {
            // Single-part: some hosts of one shard only.
            let mine = &shard_hosts[rng.below(2) as usize];
            let mut hosts: Vec<usize> = mine.iter().copied().filter(|_| rng.chance(60)).collect();
            if hosts.is_empty() {
                hosts.push(mine[rng.below(mine.len() as u64) as usize]);
            }
            let ts = vec![rb + k * LANES + w as i64];
            k += 1;
            ("one-shard", hosts, ts)
        } else {
            let ts = vec![rb + k * LANES + w as i64];
            k += 1;
            ("small", all.clone(), ts)
        };
        let b = Batch { uid, hosts, ts, kind };
        let text = body(&b);
        let r = match post(api, &format!("/api/v1/ts/{NS}/write"), "text/plain", text.as_bytes()) {
            Ok(r) => r,
            Err(_) => {
                out.push(Event::Unknown(b));
                return out;
            }
        };
        match r.status {
            200 => {
                let v = r.json();
                if v["points_written"] != b.lines() || v["fields_dropped"] != 0 {
                    out.push(Event::Bad(format!("write of {}: answer {v}", b.describe())));
                    return out;
                }
                out.push(Event::Acked(b));
            }
            429 => {
                out.push(Event::Rejected(b));
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                out.push(Event::Bad(format!(
                    "write of {}: {} {}",
                    b.describe(),
                    r.status,
                    r.text()
                )));
                return out;
            }
        }
    }
}

/// A query answer as (host, field) → points; checks the shape of each series.
type Found = BTreeMap<(usize, String), Vec<(i64, f64)>>;

fn parse_answer(v: &Value) -> Result<Found, String> {
    let rows = v["series"].as_array().ok_or_else(|| format!("no series in {v}"))?;
    let mut out = Found::new();
    for s in rows {
        let host = s["tags"]["host"]
            .as_str()
            .and_then(|h| h.strip_prefix('h'))
            .and_then(|h| h.parse::<usize>().ok())
            .filter(|&h| h < HOSTS);
        let field = s["field"].as_str().filter(|f| *f == "usage" || *f == "idle");
        let tag_count = s["tags"].as_object().map_or(0, |t| t.len());
        let (Some(host), Some(field), "cpu", 1) = (host, field, s["measurement"].as_str().unwrap_or(""), tag_count)
        else {
            return Err(format!(
                "a series no client wrote: {} {} {}",
                s["measurement"], s["tags"], s["field"]
            ));
        };
        let pts = s["points"]
            .as_array()
            .ok_or_else(|| format!("no points in series {host} {field}"))?;
        let mut points = Vec::with_capacity(pts.len());
        for p in pts {
            let (Some(t), Some(x)) = (p[0].as_i64(), p[1].as_f64()) else {
                return Err(format!("bad point {p} in series h{host:02} {field}"));
            };
            points.push((t, x));
        }
        if out.insert((host, field.to_string()), points).is_some() {
            return Err(format!("series h{host:02} {field} answered twice"));
        }
    }
    Ok(out)
}

/// Queries raw points near the newest ones it saw (now and then the late region), recording
/// which batches each answer showed and how many of their points.
fn reader(api: SocketAddr, round: usize, owner: [usize; HOSTS], seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let rb = round_base(round);
    let mut center = rb + FIRST_K * LANES;
    loop {
        let (lo, hi) = if rng.chance(15) {
            (rb, rb + FIRST_K * LANES - 1)
        } else {
            (center - LIVE_WINDOW, center + LIVE_WINDOW)
        };
        let r = match query(api, &format!("cpu[{lo}..{hi}]")) {
            Ok(r) => r,
            Err(_) => return out,
        };
        if r.status == 404 {
            continue;
        }
        if r.status != 200 {
            out.push(Event::Bad(format!(
                "live query cpu[{lo}..{hi}]: {} {}",
                r.status,
                r.text()
            )));
            return out;
        }
        let found = match parse_answer(&r.json()) {
            Ok(f) => f,
            Err(e) => {
                out.push(Event::Bad(format!("live query cpu[{lo}..{hi}]: {e}")));
                return out;
            }
        };
        let mut counts: HashMap<u64, [usize; 2]> = HashMap::new();
        for ((host, field), points) in &found {
            for &(t, x) in points {
                if t < lo || t > hi {
                    out.push(Event::Bad(format!(
                        "live query cpu[{lo}..{hi}] answered a point at {t} (h{host:02} {field})"
                    )));
                    return out;
                }
                if t >= rb + FIRST_K * LANES {
                    center = center.max(t);
                }
                counts.entry((x / 16.0).floor() as u64).or_default()[owner[*host]] += 1;
            }
        }
        out.push(Event::Snapshot {
            round,
            lo,
            hi,
            counts: counts.into_iter().collect(),
        });
    }
}

/// What the checks carry from one restart to the next, and what they counted.
#[derive(Default)]
struct Checks {
    /// Which shard owns each host's series.
    owner: [usize; HOSTS],
    /// Per unknown batch, whether the restarts so far found it.
    kept: HashMap<u64, bool>,
    /// Live queries that showed part of a batch (they do not stop the crash rounds).
    live: Vec<String>,
    lost: usize,
    partial: usize,
    phantom: usize,
    flipped: usize,
    live_partial: usize,
    live_queries: usize,
    kept_count: usize,
    absent: usize,
}

/// Every batch any client sent so far, by uid, with whether it was acknowledged (`Some(true)`),
/// unknown (`None`) or rejected (`Some(false)`).
struct Sent<'a> {
    batches: HashMap<u64, (&'a Batch, Option<bool>)>,
    by_ts: HashMap<i64, u64>,
}

fn sent(events: &[Event]) -> Result<Sent<'_>, String> {
    let mut s = Sent {
        batches: HashMap::new(),
        by_ts: HashMap::new(),
    };
    for e in events {
        let (b, status) = match e {
            Event::Acked(b) => (b, Some(true)),
            Event::Unknown(b) => (b, None),
            Event::Rejected(b) => (b, Some(false)),
            _ => continue,
        };
        if s.batches.insert(b.uid, (b, status)).is_some() {
            return Err(format!("the test sent {} twice", b.describe()));
        }
        for &t in &b.ts {
            if let Some(other) = s.by_ts.insert(t, b.uid) {
                return Err(format!(
                    "the test wrote timestamp {t} in two batches ({other:#x} and {:#x})",
                    b.uid
                ));
            }
        }
    }
    Ok(s)
}

/// Queries every host over the whole range and checks it against everything the clients saw.
/// Returns the violations and the number of points found.
fn verify(s: &Server, events: &[Event], kills: usize, round: usize, checks: &mut Checks) -> (Vec<String>, usize) {
    let mut violations = Vec::new();
    let sent = sent(events).unwrap_or_else(|e| panic!("{e}"));
    let (lo, hi) = full_range(kills);
    let mut have: HashMap<u64, usize> = HashMap::new();
    let mut total = 0usize;
    let mut phantom = 0usize;
    for h in 0..HOSTS {
        let q = format!("cpu{{host={}}}[{lo}..{hi}]", host_name(h));
        let r = query(s.api, &q).unwrap_or_else(|e| panic!("query {q}: {e}"));
        if r.status == 404 {
            continue;
        }
        assert_eq!(r.status, 200, "query {q} after restart {round}: {}", r.text());
        let found = match parse_answer(&r.json()) {
            Ok(f) => f,
            Err(e) => {
                violations.push(format!("after restart {round}: query {q}: {e}"));
                continue;
            }
        };
        for ((host, field), points) in &found {
            if *host != h {
                violations.push(format!("after restart {round}: query {q} answered host h{host:02}"));
                continue;
            }
            total += points.len();
            for w in points.windows(2) {
                if w[1].0 <= w[0].0 {
                    violations.push(format!(
                        "after restart {round}: h{host:02} {field}: points not ascending: {:?} then {:?}",
                        w[0], w[1]
                    ));
                    break;
                }
            }
            for &(t, x) in points {
                let batch = sent.by_ts.get(&t).and_then(|u| sent.batches.get(u));
                let Some((b, _)) = batch else {
                    phantom += 1;
                    violations.push(format!(
                        "after restart {round}: h{host:02} {field} holds [{t}, {x}], a timestamp no client wrote \
                         (value says batch {:#x})",
                        (x / 16.0).floor() as u64
                    ));
                    continue;
                };
                let j = b.ts.iter().position(|&bt| bt == t).expect("by_ts agrees");
                let want = value(b.uid, *host, field, j).0;
                if !b.hosts.contains(host) || x.to_bits() != want.to_bits() {
                    phantom += 1;
                    violations.push(format!(
                        "after restart {round}: h{host:02} {field} holds [{t}, {x}]; {} wrote {}",
                        b.describe(),
                        if b.hosts.contains(host) {
                            format!("{want} there")
                        } else {
                            "nothing for this host".to_string()
                        }
                    ));
                    continue;
                }
                *have.entry(b.uid).or_default() += 1;
            }
        }
    }
    checks.phantom += phantom;

    // Every batch: acknowledged ones whole, unknown ones whole or not at all (and as before),
    // rejected ones not at all.
    let mut uids: Vec<&u64> = sent.batches.keys().collect();
    uids.sort();
    for uid in uids {
        let (b, status) = sent.batches[uid];
        let n = have.get(uid).copied().unwrap_or(0);
        let want = b.points();
        match status {
            Some(true) if n != want => {
                if n == 0 {
                    checks.lost += 1;
                    violations.push(format!(
                        "after restart {round}: acknowledged {} is lost: none of its {want} points is there",
                        b.describe()
                    ));
                } else {
                    checks.partial += 1;
                    violations.push(format!(
                        "after restart {round}: acknowledged {} is there in part: {n} of its {want} points",
                        b.describe()
                    ));
                }
            }
            None if n != 0 && n != want => {
                checks.partial += 1;
                violations.push(format!(
                    "after restart {round}: {} (answer lost) is there in part: {n} of its {want} points",
                    b.describe()
                ));
            }
            None => {
                let now = n == want;
                if let Some(&before) = checks.kept.get(uid) {
                    if before != now {
                        checks.flipped += 1;
                        violations.push(format!(
                            "after restart {round}: {} (answer lost) was {} after an earlier restart, now {}",
                            b.describe(),
                            if before { "there" } else { "absent" },
                            if now { "there" } else { "absent" },
                        ));
                    }
                }
                checks.kept.insert(*uid, now);
            }
            Some(false) if n != 0 => {
                checks.partial += 1;
                violations.push(format!(
                    "after restart {round}: {} was answered 429, yet {n} of its {want} points are there",
                    b.describe()
                ));
            }
            _ => {}
        }
    }

    // Live queries: each showed a batch whole within its range, or not at all (`live`); what it
    // showed whole is still there.
    for e in events {
        let Event::Snapshot {
            round: r,
            lo,
            hi,
            counts,
        } = e
        else {
            continue;
        };
        checks.live_queries += 1;
        for &(uid, n) in counts {
            let Some((b, _)) = sent.batches.get(&uid) else {
                checks.phantom += 1;
                violations.push(format!(
                    "a live query cpu[{lo}..{hi}] in round {r} showed {n:?} points (per shard) of batch {uid:#x}, which \
                     no client sent"
                ));
                continue;
            };
            let want = b.points_in(*lo, *hi, &checks.owner);
            if n != want {
                checks.live_partial += 1;
                checks.live.push(format!(
                    "a live query cpu[{lo}..{hi}] in round {r} showed part of {}: of the points it has in that range, \
                     {} of {} on shard 0 and {} of {} on shard 1",
                    b.describe(),
                    n[0],
                    want[0],
                    n[1],
                    want[1]
                ));
            } else if have.get(&uid).copied().unwrap_or(0) != b.points() {
                checks.lost += 1;
                violations.push(format!(
                    "after restart {round}: {} is gone, but a live query cpu[{lo}..{hi}] in round {r} showed it",
                    b.describe()
                ));
            }
        }
    }
    checks.kept_count = checks.kept.values().filter(|&&k| k).count();
    checks.absent = checks.kept.len() - checks.kept_count;
    (violations, total)
}

#[test]
fn time_series_writes_stay_whole_and_durable_across_sigkill() {
    let started = Instant::now();
    let kills = common::env_u64("FLO_TS_KILLS", 12) as usize;
    let seed = common::env_u64("FLO_TS_SEED", 0x7153_c0a5_4ed0_0001);
    let mut rng = Rng(seed);
    let mut s = common::small_segment_server();
    // Which shard owns each host's series (`format-spec/ts.md`: the line key's hash).
    let mut shard_hosts: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    let mut owner = [0usize; HOSTS];
    for (h, o) in owner.iter_mut().enumerate() {
        *o = common::spec_ts_owner_shard("cpu", &[("host", &host_name(h))], 64, 2) as usize;
        shard_hosts[*o].push(h);
    }
    assert!(
        !shard_hosts[0].is_empty() && !shard_hosts[1].is_empty(),
        "the hosts cover both shards: {shard_hosts:?}"
    );

    let mut events: Vec<Event> = Vec::new();
    let mut violations: Vec<String> = Vec::new();
    let mut checks = Checks {
        owner,
        ..Checks::default()
    };
    let mut found = 0;
    let mut rounds = 0;
    for round in 0..kills {
        let api = s.api;
        let mut handles = Vec::new();
        for w in 0..WRITERS {
            let seed = rng.next();
            let hosts = shard_hosts.clone();
            handles.push(std::thread::spawn(move || writer(api, round, w, hosts, seed)));
        }
        let rs = rng.next();
        handles.push(std::thread::spawn(move || reader(api, round, owner, rs)));
        // Kill at some moment while every thread is busy.
        let busy = Duration::from_millis(300 + rng.below(1500));
        common::kill_round(&mut s, round, busy, handles, &mut events);
        rounds += 1;
        for e in &events {
            if let Event::Bad(b) = e {
                violations.push(format!("round {round}: bad answer: {b}"));
            }
        }
        events.retain(|e| !matches!(e, Event::Bad(_)));
        let (v, n) = verify(&s, &events, kills, round, &mut checks);
        violations.extend(v);
        found = n;
        // Live snapshots are checked once, after the restart that ends their round.
        events.retain(|e| !matches!(e, Event::Snapshot { .. }));
        if !violations.is_empty() {
            break;
        }
    }

    // The server goes on writing after the crashes: a last batch is there at once.
    if violations.is_empty() {
        let t = round_base(kills);
        let r = s.request(
            "POST",
            &format!("/api/v1/ts/{NS}/write"),
            &[],
            format!("cpu,host=h00 usage=1,idle=2 {t}\ncpu,host=h01 usage=1,idle=2 {t}\n").as_bytes(),
        );
        assert_eq!(r.status, 200, "write after the last restart: {}", r.text());
        let r = query(s.api, &format!("cpu[{t}..{t}] | count()")).expect("query");
        assert_eq!(r.status, 200, "{}", r.text());
        let n = r.json()["series"].as_array().map_or(0, Vec::len);
        assert_eq!(n, 4, "the last write's 4 series: {}", r.text());
    }

    let acked: Vec<&Batch> = events
        .iter()
        .filter_map(|e| match e {
            Event::Acked(b) => Some(b),
            _ => None,
        })
        .collect();
    let acked_points: usize = acked.iter().map(|b| b.points()).sum();
    let multi = acked.iter().filter(|b| b.kind != "one-shard").count();
    let unknown = events.iter().filter(|e| matches!(e, Event::Unknown(_))).count();
    let rejected = events.iter().filter(|e| matches!(e, Event::Rejected(_))).count();
    println!(
        "ts-crash: seed {seed:#x}, {rounds} kills, {} acked batches ({multi} multi-shard, {acked_points} points), \
         {unknown} unknown ({} kept, {} absent), {rejected} rejected, {found} points found, {} lost, {} partial, \
         {} phantom, {} flipped, {} live partial views in {} live queries, {:.1} s",
        acked.len(),
        checks.kept_count,
        checks.absent,
        checks.lost,
        checks.partial,
        checks.phantom,
        checks.flipped,
        checks.live_partial,
        checks.live_queries,
        started.elapsed().as_secs_f64()
    );
    assert!(!acked.is_empty() && multi > 0, "the load did nothing");
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed:#x}); the first ones:\n{}",
        violations.len(),
        violations.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
    // A write is atomic for readers too (`format-spec/ts.md`: "no query sees part of it").
    assert!(
        checks.live.is_empty(),
        "{} live queries showed part of a multi-shard write (seed {seed:#x}); the first ones:\n{}",
        checks.live.len(),
        checks.live.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );

    // Replicas of what the last kill left agree on every partition's state.
    s.sigkill();
    let agreed = replicas::assert_replicas_agree(&s.data_dir, &s.config_path, 2);
    println!(
        "ts-crash: {} partitions agree across replicas ({} shards also from an older snapshot)",
        agreed.digests.len(),
        agreed.older_snapshots
    );
}
