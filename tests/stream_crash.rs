//! Streams under SIGKILL: appender threads send single and batch appends of unique payloads
//! to a few streams over two shards (small segments, so segments roll between and across the
//! crashes) while reader threads tail the streams, and the server is killed at a random moment
//! and restarted, round after round. An append whose answer was lost is an "unknown outcome".
//! After every restart each stream is read in full and checked: offsets contiguous from 0 to
//! last_offset (info agrees); every acknowledged append readable at its offsets with exactly its
//! payloads and timestamp; no payload that no client sent, none twice; an append with a lost
//! answer is there whole or not at all; every record a read returned is still there, unchanged.
//! `FLO_STREAM_KILLS` sets the number of kill rounds, `FLO_STREAM_SEED` replays a run.
#![allow(
    clippy::disallowed_methods,
    reason = "a client of the server: deadlines and timings by the monotonic clock"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Response, Rng, Server};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const NS: &str = "scrash";
/// Two streams on each shard (by `partitioning.md` with the default 64 partitions).
const STREAMS: [&str; 4] = ["s0", "s1", "s2", "s3"];
const APPENDERS: usize = 4;
const READERS: usize = 2;

fn append_path(st: usize) -> String {
    format!("/api/v1/stream/{NS}/{}/append", STREAMS[st])
}

fn read_path(st: usize, offset: u64, count: u64, block_ms: u64) -> String {
    format!(
        "/api/v1/stream/{NS}/{}?offset={offset}&count={count}&block_ms={block_ms}",
        STREAMS[st]
    )
}

/// One request on a fresh connection; an I/O error (the server was killed) is `Err`.
fn call(api: SocketAddr, method: &str, p: &str, body: Option<&Value>) -> std::io::Result<Response> {
    let b = body.map(Value::to_string).unwrap_or_default();
    common::try_request(api, method, p, &[("Content-Type", "application/json")], b.as_bytes())
}

fn field(v: &Value, k: &str) -> Result<u64, String> {
    v[k].as_u64().ok_or_else(|| format!("no {k} in {v}"))
}

/// A record as a read returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    offset: u64,
    timestamp_ms: u64,
    payload: String,
}

fn parse_records(v: &Value) -> Result<Vec<Rec>, String> {
    let rows = v["records"].as_array().ok_or_else(|| format!("no records in {v}"))?;
    rows.iter()
        .map(|r| {
            let raw = r["payload"].as_str().ok_or_else(|| format!("no payload in {r}"))?;
            let bytes = B64.decode(raw).map_err(|e| format!("payload of {r}: {e}"))?;
            Ok(Rec {
                offset: field(r, "offset")?,
                timestamp_ms: field(r, "timestamp_ms")?,
                payload: String::from_utf8(bytes).map_err(|e| format!("payload of {r}: {e}"))?,
            })
        })
        .collect()
}

/// A read's answer must be contiguous from where it was asked (streams here are never
/// trimmed, so first_offset is 0) and say where to continue.
fn check_read(v: &Value, offset: u64, count: u64) -> Result<Vec<Rec>, String> {
    let rs = parse_records(v)?;
    if field(v, "first_offset")? != 0 {
        return Err(format!("first_offset of an untrimmed stream: {v}"));
    }
    if rs.len() as u64 > count {
        return Err(format!("{} records for count {count}", rs.len()));
    }
    for (i, r) in rs.iter().enumerate() {
        if r.offset != offset + i as u64 {
            return Err(format!(
                "read at {offset}: record {i} has offset {} (offsets {:?})",
                r.offset,
                rs.iter().map(|r| r.offset).collect::<Vec<_>>()
            ));
        }
    }
    let want_next = offset + rs.len() as u64;
    if field(v, "next_offset")? != want_next {
        return Err(format!(
            "read at {offset}: next_offset {} with {} records",
            v["next_offset"],
            rs.len()
        ));
    }
    Ok(rs)
}

#[derive(Debug)]
enum Event {
    /// An acknowledged append: its records have offsets `first..` and timestamp `ts`.
    Appended {
        st: usize,
        first: u64,
        ts: u64,
        payloads: Vec<String>,
    },
    /// An append whose answer was lost: its records are all there or none is.
    Unknown { st: usize, payloads: Vec<String> },
    /// Records a read returned.
    Seen { st: usize, recs: Vec<Rec>, round: usize },
    /// An answer that breaks the contract.
    Bad(String),
}

fn appender(api: SocketAddr, round: usize, id: usize, seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut n = 0u64;
    loop {
        let st = rng.below(STREAMS.len() as u64) as usize;
        let batch = rng.chance(50);
        let count = if batch { 1 + rng.below(20) } else { 1 };
        let payloads: Vec<String> = (0..count)
            .map(|_| {
                n += 1;
                // Unique prefix, then filler of a random length (some records are hundreds of
                // bytes, so segments fill).
                let fill = rng.below(300) as usize;
                let c = (b'a' + rng.below(26) as u8) as char;
                format!("r{round}-a{id}-m{n}|{}", c.to_string().repeat(fill))
            })
            .collect();
        let body = if batch {
            json!({ "records": payloads.iter().map(|p| json!({"payload": B64.encode(p)})).collect::<Vec<_>>() })
        } else {
            json!({ "payload": B64.encode(&payloads[0]) })
        };
        let r = match call(api, "POST", &append_path(st), Some(&body)) {
            Ok(r) => r,
            Err(_) => {
                out.push(Event::Unknown { st, payloads });
                return out;
            }
        };
        if r.status != 200 {
            out.push(Event::Bad(format!(
                "append to {} ({count} records): {} {}",
                STREAMS[st],
                r.status,
                r.text()
            )));
            return out;
        }
        let v = r.json();
        let parsed = if batch {
            field(&v, "first_offset").and_then(|f| {
                let l = field(&v, "last_offset")?;
                if l + 1 != f + count {
                    return Err(format!("batch of {count} answered {v}"));
                }
                Ok((f, field(&v, "timestamp_ms")?))
            })
        } else {
            field(&v, "offset").and_then(|o| Ok((o, field(&v, "timestamp_ms")?)))
        };
        match parsed {
            Ok((first, ts)) => out.push(Event::Appended {
                st,
                first,
                ts,
                payloads,
            }),
            Err(e) => {
                out.push(Event::Bad(format!("append to {}: {e}", STREAMS[st])));
                return out;
            }
        }
    }
}

/// Tails the streams (now and then going back to re-read), checking each answer by itself;
/// what it saw is checked against the streams after the restart.
fn reader(api: SocketAddr, round: usize, seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    let mut pos = [0u64; STREAMS.len()];
    loop {
        let st = rng.below(STREAMS.len() as u64) as usize;
        if rng.chance(10) {
            pos[st] = rng.below(pos[st] + 1);
        }
        let count = 1 + rng.below(300);
        let block_ms = if rng.chance(50) { 0 } else { 100 };
        let r = match call(api, "GET", &read_path(st, pos[st], count, block_ms), None) {
            Ok(r) => r,
            Err(_) => return out,
        };
        if r.status == 404 {
            // Nothing appended to this stream yet (checked after the restart).
            continue;
        }
        if r.status != 200 {
            out.push(Event::Bad(format!(
                "read {} at {}: {} {}",
                STREAMS[st],
                pos[st],
                r.status,
                r.text()
            )));
            return out;
        }
        match check_read(&r.json(), pos[st], count) {
            Ok(recs) => {
                pos[st] += recs.len() as u64;
                if !recs.is_empty() {
                    out.push(Event::Seen { st, recs, round });
                }
            }
            Err(e) => {
                out.push(Event::Bad(format!("read {}: {e}", STREAMS[st])));
                return out;
            }
        }
    }
}

/// Every record of stream `st`, read from 0 following next_offset; `None` if it does not exist.
fn read_stream(s: &Server, st: usize) -> Option<Vec<Rec>> {
    let mut out: Vec<Rec> = Vec::new();
    loop {
        let offset = out.len() as u64;
        let r = s.get(&read_path(st, offset, 1000, 0));
        if r.status == 404 && offset == 0 {
            return None;
        }
        assert_eq!(r.status, 200, "read {} at {offset}: {}", STREAMS[st], r.text());
        let rs = check_read(&r.json(), offset, 1000).unwrap_or_else(|e| panic!("read {}: {e}", STREAMS[st]));
        if rs.is_empty() {
            return Some(out);
        }
        out.extend(rs);
    }
}

/// Checks every stream against everything the clients saw so far; returns the violations and
/// the number of records found.
fn verify(s: &Server, events: &[Event], round: usize) -> (Vec<String>, u64) {
    let mut violations = Vec::new();
    let mut total = 0u64;
    for (st, name) in STREAMS.iter().enumerate() {
        let found = read_stream(s, st);
        let acked: Vec<(u64, u64, &Vec<String>)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Appended {
                    st: x,
                    first,
                    ts,
                    payloads,
                } if *x == st => Some((*first, *ts, payloads)),
                _ => None,
            })
            .collect();
        let Some(found) = found else {
            if !acked.is_empty() {
                violations.push(format!(
                    "after restart {round}: {name} is 404 after {} acknowledged appends",
                    acked.len()
                ));
            }
            continue;
        };
        total += found.len() as u64;
        // Info agrees with what a full read returns.
        let r = s.get(&format!("/api/v1/stream/{NS}/{name}/info"));
        assert_eq!(r.status, 200, "info {name}: {}", r.text());
        let info = r.json();
        let want_last = found.last().map_or(Value::Null, |r| json!(r.offset));
        if info["first_offset"] != 0 || info["last_offset"] != want_last || info["record_count"] != found.len() {
            violations.push(format!(
                "after restart {round}: info of {name} {info} disagrees with a full read of {} records",
                found.len()
            ));
        }

        // Payload → offset, and no payload twice.
        let mut at: HashMap<&str, u64> = HashMap::new();
        for r in &found {
            if let Some(other) = at.insert(r.payload.as_str(), r.offset) {
                violations.push(format!(
                    "after restart {round}: {name} holds {:?} at offsets {other} and {}",
                    r.payload, r.offset
                ));
            }
        }
        // Every acknowledged append is there, at its offsets, with its payloads and timestamp.
        let mut claimed: BTreeMap<u64, &str> = BTreeMap::new();
        for (first, ts, payloads) in &acked {
            for (i, p) in payloads.iter().enumerate() {
                let off = first + i as u64;
                if let Some(other) = claimed.insert(off, p) {
                    violations.push(format!(
                        "{name} offset {off} was answered to two appends ({other:?} and {p:?})"
                    ));
                }
                match found.get(off as usize) {
                    None => violations.push(format!(
                        "after restart {round}: {name} lost acknowledged record {off} ({p:?}); the stream ends at {}",
                        found.len()
                    )),
                    Some(r) if r.payload != *p || r.timestamp_ms != *ts => violations.push(format!(
                        "after restart {round}: {name} offset {off} holds {:?} at {}, acknowledged as {p:?} at {ts}",
                        r.payload, r.timestamp_ms
                    )),
                    Some(_) => {}
                }
            }
        }
        // Appends with a lost answer: all or nothing, in order.
        let mut maybe: HashSet<&str> = HashSet::new();
        for e in events {
            let Event::Unknown { st: x, payloads } = e else {
                continue;
            };
            if *x != st {
                continue;
            }
            maybe.extend(payloads.iter().map(String::as_str));
            let places: Vec<Option<u64>> = payloads.iter().map(|p| at.get(p.as_str()).copied()).collect();
            let all = places.iter().all(Option::is_some);
            let none = places.iter().all(Option::is_none);
            let contiguous = places.windows(2).all(|w| match (w[0], w[1]) {
                (Some(a), Some(b)) => b == a + 1,
                _ => true,
            });
            if !(none || (all && contiguous)) {
                violations.push(format!(
                    "after restart {round}: {name} holds an unanswered append of {} records partly or out of \
                     order: offsets {places:?}",
                    payloads.len()
                ));
            }
        }
        // Nothing that no client sent.
        for r in &found {
            let acked_here = claimed.get(&r.offset) == Some(&r.payload.as_str());
            if !acked_here && !maybe.contains(r.payload.as_str()) {
                violations.push(format!(
                    "after restart {round}: {name} offset {} holds {:?}, which no unanswered append sent{}",
                    r.offset,
                    r.payload,
                    claimed
                        .get(&r.offset)
                        .map(|p| format!(" (acknowledged there: {p:?})"))
                        .unwrap_or_default()
                ));
            }
        }
        // What readers saw is still there, unchanged.
        for e in events {
            let Event::Seen {
                st: x,
                recs,
                round: seen_in,
            } = e
            else {
                continue;
            };
            if *x != st {
                continue;
            }
            for r in recs {
                if found.get(r.offset as usize) != Some(r) {
                    violations.push(format!(
                        "after restart {round}: {name} offset {} was read in round {seen_in} as {:?} at {}, now {:?}",
                        r.offset,
                        r.payload,
                        r.timestamp_ms,
                        found.get(r.offset as usize)
                    ));
                    break;
                }
            }
        }
    }
    (violations, total)
}

#[test]
fn streams_keep_acknowledged_appends_across_sigkill() {
    let started = Instant::now();
    let kills = common::env_u64("FLO_STREAM_KILLS", 3) as usize;
    let seed = common::env_u64("FLO_STREAM_SEED", 0x5eed_0f57_ea3c_4a00);
    let mut rng = Rng(seed);
    let mut s = common::small_segment_server();
    let owners: BTreeSet<u64> = STREAMS.iter().map(|n| common::spec_owner_shard(NS, n, 64, 2)).collect();
    assert_eq!(owners.len(), 2, "the streams cover both shards");

    let mut events: Vec<Event> = Vec::new();
    let mut violations: Vec<String> = Vec::new();
    let mut found = 0;
    for round in 0..kills {
        let api = s.api;
        let mut handles = Vec::new();
        for id in 0..APPENDERS {
            let seed = rng.next();
            handles.push(std::thread::spawn(move || appender(api, round, id, seed)));
        }
        for _ in 0..READERS {
            let seed = rng.next();
            handles.push(std::thread::spawn(move || reader(api, round, seed)));
        }
        // Kill at some moment while every thread is busy.
        let busy = Duration::from_millis(300 + rng.below(1200));
        common::kill_round(&mut s, round, busy, handles, &mut events);
        for e in &events {
            if let Event::Bad(b) = e {
                violations.push(format!("round {round}: bad answer: {b}"));
            }
        }
        events.retain(|e| !matches!(e, Event::Bad(_)));
        let (v, n) = verify(&s, &events, round);
        violations.extend(v);
        found = n;
        if !violations.is_empty() {
            break;
        }
    }
    // The streams go on where they ended.
    if violations.is_empty() {
        for (st, name) in STREAMS.iter().enumerate() {
            let len = read_stream(&s, st).map_or(0, |r| r.len() as u64);
            let r = s.post_json(&append_path(st), &json!({"payload": B64.encode("after")}).to_string());
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["offset"], len, "{name} continues at its end");
        }
    }

    let acked: usize = events
        .iter()
        .map(|e| match e {
            Event::Appended { payloads, .. } => payloads.len(),
            _ => 0,
        })
        .sum();
    let unknown = events.iter().filter(|e| matches!(e, Event::Unknown { .. })).count();
    let seen: usize = events
        .iter()
        .map(|e| match e {
            Event::Seen { recs, .. } => recs.len(),
            _ => 0,
        })
        .sum();
    println!(
        "stream-crash: seed {seed:#x}, {kills} kills, {acked} records acknowledged, {found} found, {unknown} \
         unanswered appends, {seen} records seen by readers, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(acked > 0, "the load did nothing");
    assert!(
        violations.is_empty(),
        "{} violations (seed {seed:#x}); the first ones:\n{}",
        violations.len(),
        violations.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
    );
}
