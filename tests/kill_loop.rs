//! Kill loop on the real binary: client threads run a mixed load — KV gets, puts, CAS puts,
//! deletes and CAS deletes on a small hot key set; queue enqueues of unique payloads, dequeues
//! with short leases and acks of some; stream appends of unique payloads and reads — against one
//! server (two shards, 1 MiB segments, frequent snapshots, compaction on), which is SIGKILLed at
//! a random moment, round after round, and restarted. Every client operation is recorded
//! (`tests/common/history.rs`): invoke and complete times, and its outcome — answered, refused
//! (no effect), or unknown when the kill took the answer (bounded by the moment of the kill).
//! After the last round the queues are drained, the streams read in full and every key read,
//! and the histories are checked: KV linearizable per key (so every acknowledged write is
//! there, no value nobody wrote, no deleted key back, versions only grow), no acknowledged
//! enqueue lost, no payload nobody enqueued, nothing delivered again after its ack or while an
//! earlier lease was live, stream offsets unique and contiguous with the right payloads.
//!
//! `FLO_KILLS` sets the number of kills (50 by default), `FLO_KILL_SEED` replays a run's choices.
//! One summary line is printed; any violation fails the test with the first ones spelled out.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;
#[path = "common/history.rs"]
mod history;
#[path = "common/replicas.rs"]
mod replicas;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{now_ms, Response, Rng, Server};
use history::{
    Delivery, KvCall, KvEntry, KvOp, KvRes, Outcome, QueueEntry, QueueOp, QueueRes, Recorder, StreamEntry, StreamOp,
    StreamRes,
};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const NS: &str = "killloop";
/// Hot keys: few, so several clients contend for each.
const KEYS: u64 = 6;
const QUEUES: [&str; 2] = ["q0", "q1"];
const STREAMS: [&str; 2] = ["s0", "s1"];
const KV_CLIENTS: usize = 3;
const CONSUMERS: usize = 2;
const APPENDERS: usize = 2;
/// Consumer leases: short, so they run out (and messages come again) during the run and
/// across the kills.
const VIS_MS: u64 = 300;
/// The drain's leases never run out during the test.
const DRAIN_VIS_MS: u64 = 600_000;
/// The server and the test read the same clock a little apart.
const TOLERANCE_MS: u64 = 50;

/// One request on a fresh connection; an I/O error (the server was killed) is `Err`.
fn call(api: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Response> {
    let b = body.map(Value::to_string).unwrap_or_default();
    common::try_request(api, method, path, &[("Content-Type", "application/json")], b.as_bytes())
}

fn u64_of(v: &Value, k: &str) -> Result<u64, String> {
    v[k].as_u64().ok_or_else(|| format!("no {k} in {v}"))
}

fn payload_of(v: &Value) -> Result<String, String> {
    let raw = v["payload"]
        .as_str()
        .or(v["value"].as_str())
        .ok_or_else(|| format!("no payload in {v}"))?;
    let bytes = B64.decode(raw).map_err(|e| format!("payload of {v}: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("payload of {v}: {e}"))
}

/// What one client thread did in one round.
#[derive(Default)]
struct Log {
    kv: Vec<KvEntry>,
    queue: Vec<QueueEntry>,
    stream: Vec<StreamEntry>,
    /// Answers that break the contract by themselves (wrong status, malformed body).
    bad: Vec<String>,
}

/// Maps an answer: `Ok` when `parse` accepts it, `Fail` when the server refused before doing
/// anything (429, 503), `Unknown` when there was no answer; anything else is a contract breach.
fn outcome<R>(
    r: std::io::Result<Response>,
    what: &dyn Fn() -> String,
    bad: &mut Vec<String>,
    parse: impl FnOnce(&Response) -> Result<R, String>,
) -> Outcome<R> {
    match r {
        Err(_) => Outcome::Unknown,
        Ok(r) if r.status == 429 || r.status == 503 => Outcome::Fail,
        Ok(r) => match parse(&r) {
            Ok(v) => Outcome::Ok(v),
            Err(e) => {
                bad.push(format!("{}: {} {} ({e})", what(), r.status, r.text()));
                Outcome::Fail
            }
        },
    }
}

fn kv_path(key: &str) -> String {
    format!("/api/v1/kv/{NS}/{key}")
}

/// Runs one KV operation against the server.
fn kv_call(api: SocketAddr, c: &KvCall, bad: &mut Vec<String>) -> Outcome<KvRes> {
    let path = kv_path(&c.key);
    let written = |r: &Response| {
        Ok(KvRes::Written {
            version: u64_of(&r.json(), "version")?,
        })
    };
    let conflict = |r: &Response| {
        Ok(KvRes::Conflict {
            current: u64_of(&r.json(), "current_version")?,
        })
    };
    let what = || format!("{} {:?}", c.key, c.op);
    match &c.op {
        KvOp::Get => outcome(call(api, "GET", &path, None), &what, bad, |r| match r.status {
            200 => {
                let v = r.json();
                Ok(KvRes::Found {
                    value: payload_of(&v)?,
                    version: u64_of(&v, "version")?,
                })
            }
            404 => Ok(KvRes::NotFound),
            _ => Err("unexpected status".into()),
        }),
        KvOp::Put { value } => {
            let body = json!({ "value": B64.encode(value) });
            outcome(call(api, "PUT", &path, Some(&body)), &what, bad, |r| match r.status {
                200 => written(r),
                _ => Err("unexpected status".into()),
            })
        }
        KvOp::CasPut { value, expect } => {
            let body = json!({ "value": B64.encode(value), "cas_version": expect });
            outcome(call(api, "PUT", &path, Some(&body)), &what, bad, |r| match r.status {
                200 => written(r),
                409 => conflict(r),
                _ => Err("unexpected status".into()),
            })
        }
        KvOp::Delete | KvOp::CasDelete { .. } => {
            let path = match &c.op {
                KvOp::CasDelete { expect } => format!("{path}?cas_version={expect}"),
                _ => path,
            };
            outcome(call(api, "DELETE", &path, None), &what, bad, |r| match r.status {
                200 => written(r),
                404 => Ok(KvRes::NotFound),
                409 => conflict(r),
                _ => Err("unexpected status".into()),
            })
        }
    }
}

/// Contended KV load: each client remembers the last version it saw of each key and mostly
/// CASes against it (sometimes against a wrong one, so conflicts happen too).
fn kv_client(api: SocketAddr, round: usize, id: usize, seed: u64) -> Log {
    let mut rng = Rng(seed);
    let mut rec = Recorder::new(id);
    let mut log = Log::default();
    let mut known = [0u64; KEYS as usize];
    for n in 0.. {
        let k = rng.below(KEYS) as usize;
        let value = format!("r{round}-c{id}-n{n}");
        let guess = if rng.chance(80) {
            known[k]
        } else {
            known[k] + rng.below(3)
        };
        let op = match rng.below(100) {
            0..=34 => KvOp::Get,
            35..=54 => KvOp::Put { value },
            55..=79 => KvOp::CasPut { value, expect: guess },
            80..=89 => KvOp::Delete,
            _ => KvOp::CasDelete { expect: guess },
        };
        let c = KvCall {
            key: format!("k{k}"),
            op,
        };
        let is_delete = matches!(c.op, KvOp::Delete | KvOp::CasDelete { .. });
        match rec.run(c, |c| kv_call(api, c, &mut log.bad)) {
            Outcome::Unknown => break,
            Outcome::Fail => std::thread::sleep(Duration::from_millis(5)),
            Outcome::Ok(KvRes::Found { version, .. }) => known[k] = *version,
            Outcome::Ok(KvRes::Written { version }) => known[k] = if is_delete { 0 } else { *version },
            Outcome::Ok(KvRes::NotFound) => known[k] = 0,
            Outcome::Ok(KvRes::Conflict { current }) => known[k] = *current,
        }
    }
    log.kv = rec.entries;
    log
}

fn queue_path(q: usize, op: &str) -> String {
    format!("/api/v1/queue/{NS}/{}/{op}", QUEUES[q])
}

fn parse_deliveries(v: &Value, q: usize, vis: u64) -> Result<Vec<Delivery>, String> {
    let received_ms = now_ms();
    let rows = v["messages"].as_array().ok_or_else(|| format!("no messages in {v}"))?;
    rows.iter()
        .map(|m| {
            Ok(Delivery {
                queue: q,
                seq: u64_of(m, "seq")?,
                payload: payload_of(m)?,
                delivery_count: u64_of(m, "delivery_count")?,
                lease_expires_at_ms: u64_of(m, "lease_expires_at_ms")?,
                visibility_ms: vis,
                received_ms,
            })
        })
        .collect()
}

fn queue_call(api: SocketAddr, op: &QueueOp, bad: &mut Vec<String>) -> Outcome<QueueRes> {
    let what = || format!("{op:?}");
    match op {
        QueueOp::Enqueue { queue, payloads } => {
            let msgs: Vec<Value> = payloads.iter().map(|p| json!({ "payload": B64.encode(p) })).collect();
            let body = if msgs.len() == 1 {
                msgs[0].clone()
            } else {
                json!({ "messages": msgs })
            };
            outcome(
                call(api, "POST", &queue_path(*queue, "enqueue"), Some(&body)),
                &what,
                bad,
                |r| {
                    if r.status != 200 {
                        return Err("unexpected status".into());
                    }
                    let v = r.json();
                    let seqs = if payloads.len() == 1 {
                        vec![u64_of(&v, "seq")?]
                    } else {
                        v["seqs"]
                            .as_array()
                            .map(|a| a.iter().filter_map(Value::as_u64).collect())
                            .unwrap_or_default()
                    };
                    if seqs.len() != payloads.len() {
                        return Err(format!("{} payloads, seqs {seqs:?}", payloads.len()));
                    }
                    Ok(QueueRes::Enqueued { seqs })
                },
            )
        }
        QueueOp::Dequeue {
            queue,
            count,
            visibility_ms,
        } => {
            let body = json!({ "count": count, "visibility_timeout_ms": visibility_ms });
            outcome(
                call(api, "POST", &queue_path(*queue, "dequeue"), Some(&body)),
                &what,
                bad,
                |r| {
                    if r.status != 200 {
                        return Err("unexpected status".into());
                    }
                    Ok(QueueRes::Delivered(parse_deliveries(
                        &r.json(),
                        *queue,
                        *visibility_ms,
                    )?))
                },
            )
        }
        QueueOp::Ack { queue, seqs } => {
            let body = json!({ "sequences": seqs });
            outcome(
                call(api, "POST", &queue_path(*queue, "ack"), Some(&body)),
                &what,
                bad,
                |r| {
                    let answered_ms = now_ms();
                    if r.status != 200 {
                        return Err("unexpected status".into());
                    }
                    let v = r.json();
                    let not_found: Vec<u64> = v["not_found"]
                        .as_array()
                        .ok_or("no not_found")?
                        .iter()
                        .filter_map(Value::as_u64)
                        .collect();
                    let acked: Vec<u64> = seqs.iter().copied().filter(|s| !not_found.contains(s)).collect();
                    if u64_of(&v, "acked")? != acked.len() as u64 {
                        return Err("acked does not add up".into());
                    }
                    Ok(QueueRes::Acked {
                        acked,
                        not_found,
                        answered_ms,
                    })
                },
            )
        }
    }
}

/// Enqueues unique payloads, one or a small batch at a time.
fn producer(api: SocketAddr, round: usize, id: usize, seed: u64) -> Log {
    let mut rng = Rng(seed);
    let mut rec = Recorder::new(id);
    let mut log = Log::default();
    let mut n = 0;
    loop {
        let queue = rng.below(QUEUES.len() as u64) as usize;
        let payloads = (0..1 + rng.below(3))
            .map(|_| {
                n += 1;
                format!("r{round}-p{id}-m{n}")
            })
            .collect();
        match rec.run(QueueOp::Enqueue { queue, payloads }, |op| {
            queue_call(api, op, &mut log.bad)
        }) {
            Outcome::Unknown => break,
            Outcome::Fail => std::thread::sleep(Duration::from_millis(5)),
            Outcome::Ok(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    log.queue = rec.entries;
    log
}

/// Dequeues with short leases and acks about 60 % of what it gets (the rest comes again).
fn consumer(api: SocketAddr, id: usize, seed: u64) -> Log {
    let mut rng = Rng(seed);
    let mut rec = Recorder::new(id);
    let mut log = Log::default();
    loop {
        let queue = rng.below(QUEUES.len() as u64) as usize;
        let op = QueueOp::Dequeue {
            queue,
            count: 1 + rng.below(4),
            visibility_ms: VIS_MS,
        };
        let seqs: Vec<u64> = match rec.run(op, |op| queue_call(api, op, &mut log.bad)) {
            Outcome::Unknown => break,
            Outcome::Ok(QueueRes::Delivered(ds)) if !ds.is_empty() => ds.iter().map(|d| d.seq).collect(),
            _ => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let seqs: Vec<u64> = seqs.into_iter().filter(|_| rng.chance(60)).collect();
        if seqs.is_empty() {
            continue;
        }
        if let Outcome::Unknown = rec.run(QueueOp::Ack { queue, seqs }, |op| queue_call(api, op, &mut log.bad)) {
            break;
        }
    }
    log.queue = rec.entries;
    log
}

fn stream_call(api: SocketAddr, op: &StreamOp, bad: &mut Vec<String>) -> Outcome<StreamRes> {
    let what = || format!("{op:?}");
    match op {
        StreamOp::Append { stream, payloads } => {
            let path = format!("/api/v1/stream/{NS}/{}/append", STREAMS[*stream]);
            let body = if payloads.len() == 1 {
                json!({ "payload": B64.encode(&payloads[0]) })
            } else {
                json!({ "records": payloads.iter().map(|p| json!({ "payload": B64.encode(p) })).collect::<Vec<_>>() })
            };
            outcome(call(api, "POST", &path, Some(&body)), &what, bad, |r| {
                if r.status != 200 {
                    return Err("unexpected status".into());
                }
                let v = r.json();
                let first = if payloads.len() == 1 {
                    u64_of(&v, "offset")?
                } else {
                    let (f, l) = (u64_of(&v, "first_offset")?, u64_of(&v, "last_offset")?);
                    if l + 1 != f + payloads.len() as u64 {
                        return Err(format!("{} records at {f}..={l}", payloads.len()));
                    }
                    f
                };
                Ok(StreamRes::Appended { first })
            })
        }
        StreamOp::Read { stream, offset } => {
            let path = format!("/api/v1/stream/{NS}/{}?offset={offset}&count=200", STREAMS[*stream]);
            outcome(call(api, "GET", &path, None), &what, bad, |r| match r.status {
                404 => Ok(StreamRes::Records(Vec::new())),
                200 => {
                    let v = r.json();
                    let rows = v["records"].as_array().ok_or("no records")?;
                    let recs = rows
                        .iter()
                        .map(|rec| Ok((u64_of(rec, "offset")?, payload_of(rec)?)))
                        .collect::<Result<Vec<_>, String>>()?;
                    Ok(StreamRes::Records(recs))
                }
                _ => Err("unexpected status".into()),
            })
        }
    }
}

/// Appends unique payloads, singly or in small batches.
fn appender(api: SocketAddr, round: usize, id: usize, seed: u64) -> Log {
    let mut rng = Rng(seed);
    let mut rec = Recorder::new(id);
    let mut log = Log::default();
    let mut n = 0;
    loop {
        let stream = rng.below(STREAMS.len() as u64) as usize;
        let payloads = (0..if rng.chance(50) { 1 } else { 2 + rng.below(5) })
            .map(|_| {
                n += 1;
                format!("r{round}-a{id}-m{n}")
            })
            .collect();
        match rec.run(StreamOp::Append { stream, payloads }, |op| {
            stream_call(api, op, &mut log.bad)
        }) {
            Outcome::Unknown => break,
            Outcome::Fail => std::thread::sleep(Duration::from_millis(5)),
            Outcome::Ok(_) => {}
        }
    }
    log.stream = rec.entries;
    log
}

/// Tails the streams, going back now and then.
fn reader(api: SocketAddr, id: usize, seed: u64) -> Log {
    let mut rng = Rng(seed);
    let mut rec = Recorder::new(id);
    let mut log = Log::default();
    let mut pos = [0u64; STREAMS.len()];
    loop {
        let stream = rng.below(STREAMS.len() as u64) as usize;
        if rng.chance(10) {
            pos[stream] = rng.below(pos[stream] + 1);
        }
        let op = StreamOp::Read {
            stream,
            offset: pos[stream],
        };
        match rec.run(op, |op| stream_call(api, op, &mut log.bad)) {
            Outcome::Unknown => break,
            Outcome::Ok(StreamRes::Records(recs)) if !recs.is_empty() => pos[stream] += recs.len() as u64,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    log.stream = rec.entries;
    log
}

/// Dequeues every message left (waiting for the consumers' leases to run out); returns the
/// drain's deliveries and the dead-lettered messages as (queue, seq, payload).
fn drain(
    s: &Server,
    rec: &mut Recorder<QueueOp, QueueRes>,
    bad: &mut Vec<String>,
) -> (Vec<Delivery>, Vec<(usize, u64, String)>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut all = Vec::new();
    let mut dead = Vec::new();
    for (q, name) in QUEUES.iter().enumerate() {
        let mut drained = 0u64;
        loop {
            let op = QueueOp::Dequeue {
                queue: q,
                count: 100,
                visibility_ms: DRAIN_VIS_MS,
            };
            let got = match rec.run(op, |op| queue_call(s.api, op, bad)) {
                Outcome::Ok(QueueRes::Delivered(ds)) => ds.clone(),
                other => panic!("drain dequeue of {}: {other:?}; {bad:?}", name),
            };
            if !got.is_empty() {
                drained += got.len() as u64;
                all.extend(got);
                continue;
            }
            let r = s.get(&queue_path(q, "stats"));
            if r.status == 404 {
                break;
            }
            assert_eq!(r.status, 200, "stats of {}: {}", name, r.text());
            let st = r.json();
            let f = |k: &str| u64_of(&st, k).unwrap_or_else(|e| panic!("stats of {}: {e}", name));
            // Done when only the drain's leases are left and every message is accounted for.
            if f("ready_count") == 0
                && f("delayed_count") == 0
                && f("leased_count") == drained
                && f("total_enqueued") == f("leased_count") + f("dlq_count") + f("total_acked")
            {
                if f("dlq_count") > 0 {
                    let r = s.get(&format!("{}?limit=1000", queue_path(q, "dlq")));
                    assert_eq!(r.status, 200, "dlq of {}: {}", name, r.text());
                    for m in r.json()["messages"].as_array().expect("dlq messages") {
                        dead.push((
                            q,
                            u64_of(m, "seq").expect("dlq seq"),
                            payload_of(m).expect("dlq payload"),
                        ));
                    }
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "drain of {}: leases did not run out in time; stats {st}",
                name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (all, dead)
}

/// Every record of each stream, read from offset 0 by the final reader.
fn read_streams(
    s: &Server,
    rec: &mut Recorder<StreamOp, StreamRes>,
    bad: &mut Vec<String>,
) -> BTreeMap<usize, Vec<(u64, String)>> {
    let mut out = BTreeMap::new();
    for (st, name) in STREAMS.iter().enumerate() {
        let mut recs: Vec<(u64, String)> = Vec::new();
        loop {
            let op = StreamOp::Read {
                stream: st,
                offset: recs.len() as u64,
            };
            match rec.run(op, |op| stream_call(s.api, op, bad)) {
                Outcome::Ok(StreamRes::Records(r)) if r.is_empty() => break,
                Outcome::Ok(StreamRes::Records(r)) => recs.extend(r.iter().cloned()),
                other => panic!("final read of {name}: {other:?}; {bad:?}"),
            }
        }
        out.insert(st, recs);
    }
    out
}

/// The metrics port's exposition text, if it answers.
fn scrape(s: &Server) -> Option<String> {
    Some(common::try_request(s.metrics, "GET", "/metrics", &[], b"").ok()?.text())
}

/// The values of a per-shard metric family.
fn samples(text: &str, name: &str) -> Vec<f64> {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect()
}

/// The server's own recovery time: the slowest shard's `flo_log_recovery_seconds`, in ms.
fn server_recovery_ms(s: &Server) -> Option<f64> {
    samples(&scrape(s)?, "flo_log_recovery_seconds")
        .into_iter()
        .map(|s| s * 1000.0)
        .reduce(f64::max)
}

fn mean_max(xs: &[f64]) -> (f64, f64) {
    let max = xs.iter().copied().fold(0.0, f64::max);
    (xs.iter().sum::<f64>() / xs.len().max(1) as f64, max)
}

#[test]
fn histories_stay_correct_across_sigkills_under_mixed_load() {
    let started = Instant::now();
    let kills = common::env_u64("FLO_KILLS", 50) as usize;
    let seed = common::env_u64("FLO_KILL_SEED", 0x6b11_1100_95ee_d5ed);
    let mut rng = Rng(seed);
    history::now_ns();
    let mut s = Server::builder()
        .shards(2)
        .log_config(
            "segment_bytes = 1048576\nbatch_max_bytes = 65536\nsnapshot_bytes = 131072\ncompact_live_percent = 50\n",
        )
        .config("[queue]\nmax_deliveries = 1000\n[limits]\nmax_value_bytes = 16384\n")
        .start();

    let mut kv: Vec<KvEntry> = Vec::new();
    let mut queue: Vec<QueueEntry> = Vec::new();
    let mut stream: Vec<StreamEntry> = Vec::new();
    let mut bad: Vec<String> = Vec::new();
    let mut recovery_ms: Vec<f64> = Vec::new();
    let mut server_ms: Vec<f64> = Vec::new();
    let (mut snapshots, mut compacted) = (0u64, 0u64);
    for round in 0..kills {
        let api = s.api;
        let mut handles = Vec::new();
        let mut id = 0;
        let mut spawn = |f: Box<dyn FnOnce(usize, u64) -> Log + Send>, rng: &mut Rng| {
            let cs = rng.next();
            let client = round * 100 + id;
            id += 1;
            handles.push(std::thread::spawn(move || f(client, cs)));
        };
        for _ in 0..KV_CLIENTS {
            spawn(Box::new(move |id, cs| kv_client(api, round, id, cs)), &mut rng);
        }
        spawn(Box::new(move |id, cs| producer(api, round, id, cs)), &mut rng);
        for _ in 0..CONSUMERS {
            spawn(Box::new(move |id, cs| consumer(api, id, cs)), &mut rng);
        }
        for _ in 0..APPENDERS {
            spawn(Box::new(move |id, cs| appender(api, round, id, cs)), &mut rng);
        }
        spawn(Box::new(move |id, cs| reader(api, id, cs)), &mut rng);

        // Kill at a random moment while every thread is busy.
        std::thread::sleep(Duration::from_millis(200 + rng.below(800)));
        // What this process did in the background (counters start at zero with each process).
        if let Some(text) = scrape(&s) {
            snapshots += samples(&text, "flo_snapshots_total").iter().sum::<f64>() as u64;
            compacted += samples(&text, "flo_compaction_segments_deleted_total")
                .iter()
                .sum::<f64>() as u64;
        }
        s.sigkill();
        let kill_ns = history::now_ns();
        for h in handles {
            let mut log = h.join().expect("client thread panicked");
            history::bound_unknown(&mut log.kv, kill_ns);
            history::bound_unknown(&mut log.queue, kill_ns);
            history::bound_unknown(&mut log.stream, kill_ns);
            kv.append(&mut log.kv);
            queue.append(&mut log.queue);
            stream.append(&mut log.stream);
            bad.extend(log.bad.into_iter().map(|b| format!("round {round}: {b}")));
        }
        let t = Instant::now();
        s.restart();
        recovery_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if let Some(ms) = server_recovery_ms(&s) {
            server_ms.push(ms);
        }
    }

    // The end: drain the queues, read the streams and every key.
    let last = kills * 100 + 99;
    let mut qrec = Recorder::new(last);
    // The drain's deliveries are checked as `drained`, not twice as part of the history.
    let (drained, dead) = drain(&s, &mut qrec, &mut bad);
    let mut srec = Recorder::new(last);
    let finals = read_streams(&s, &mut srec, &mut bad);
    stream.append(&mut srec.entries);
    let mut krec = Recorder::new(last);
    for k in 0..KEYS {
        let c = KvCall {
            key: format!("k{k}"),
            op: KvOp::Get,
        };
        let o = krec.run(c, |c| kv_call(s.api, c, &mut bad));
        assert!(matches!(o, Outcome::Ok(_)), "final read of k{k}: {o:?}");
    }
    kv.append(&mut krec.entries);

    // Judge.
    let ops = kv.len() + queue.len() + qrec.entries.len() + stream.len();
    let unknown = kv.iter().filter(|e| e.outcome == Outcome::Unknown).count()
        + queue.iter().filter(|e| e.outcome == Outcome::Unknown).count()
        + stream.iter().filter(|e| e.outcome == Outcome::Unknown).count();
    let check_started = Instant::now();
    let k = history::check_kv(&kv);
    let q = history::check_queues(&queue, &drained, &dead, TOLERANCE_MS);
    let st = history::check_streams(&stream, &finals);
    let check_ms = check_started.elapsed().as_millis();
    let (rec_mean, rec_max) = mean_max(&recovery_ms);
    let (srv_mean, srv_max) = mean_max(&server_ms);
    println!(
        "kill-loop: {kills} kills, {ops} ops ({unknown} unknown), {} lost, {} phantom, {} non-linearizable keys, \
         {} duplicate deliveries, {} premature redeliveries, {} stream gaps, recovery mean {rec_mean:.0} ms max \
         {rec_max:.0} ms (spawn to healthy; the shards' own: mean {srv_mean:.0} ms max {srv_max:.0} ms)",
        k.lost.len() + q.lost.len() + st.lost.len(),
        k.phantom.len() + q.unexpected.len() + st.phantom.len(),
        k.non_linearizable.len(),
        q.duplicated.len(),
        q.premature.len(),
        st.gaps.len(),
    );
    println!(
        "kill-loop: seed {seed:#x}; kv {} ops on {} keys ({} unknown), queues {} enqueued, {} deliveries, {} acked, \
         {} drained, {} dead; streams {} appends, {} records; {snapshots} snapshots and {compacted} segments \
         compacted before the kills; checked in {check_ms} ms, {:.1} s in all",
        k.ops,
        k.keys,
        k.unknown,
        q.enqueued,
        q.deliveries,
        q.acked,
        drained.len(),
        dead.len(),
        st.appended,
        st.records,
        started.elapsed().as_secs_f64()
    );

    assert!(
        k.ops > 0 && q.enqueued > 0 && q.acked > 0 && st.appended > 0,
        "the load did nothing"
    );
    // Recovery was exercised from snapshots too, not only from a log replayed from the start.
    assert!(snapshots > 0, "no shard took a snapshot during {kills} rounds");
    let violations: Vec<String> = bad
        .iter()
        .cloned()
        .chain(k.non_linearizable.iter().map(|v| v.to_string()))
        .chain(k.phantom.iter().cloned())
        .chain(k.lost.iter().cloned())
        .chain(q.violations().cloned())
        .chain(st.violations().cloned())
        .collect();
    assert!(
        violations.is_empty(),
        "{} violations (FLO_KILL_SEED={seed:#x}); the first ones:\n{}",
        violations.len(),
        violations.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );

    // Replicas of what the kills left (killed once more, mid-drain of nothing): the same state in
    // every partition whatever their clocks, settings and starting snapshots.
    s.sigkill();
    let agreed = replicas::assert_replicas_agree(&s.data_dir, &s.config_path, 2);
    assert!(agreed.older_snapshots >= 1, "a replica started from an older snapshot");
    println!(
        "kill-loop: {} partitions agree across replicas ({} shards also from an older snapshot)",
        agreed.digests.len(),
        agreed.older_snapshots
    );
}
