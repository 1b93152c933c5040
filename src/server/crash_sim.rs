//! Crash simulation of a whole shard: the real executors of every primitive (`kv/exec.rs`,
//! `queue/exec.rs`, `stream/exec.rs`, `ts/exec.rs`) run a mixed workload with group commit on
//! the simulated disk (`log/sim.rs`), with snapshots and compaction passes among them, and the
//! shard is recovered the way the server recovers it (`shard::recover`).
//!
//! Three harnesses share the workload and the checks:
//!
//! * **crash states**: the process dies before its k-th I/O, for every k of the run; each
//!   crash point is recovered from its distinct power-loss images (unsynced writes kept,
//!   dropped, torn at 512-byte sectors, or left as garbage; unsynced renames lost) — a crash
//!   state is one (k, image) pair. One run of the workload yields them all: a hook of the
//!   simulated disk takes the images before each I/O, with a copy of what the clients had been
//!   told by then, and checker threads recover and check them while the run goes on (a test
//!   shows these are the states of a process killed at that I/O);
//! * **I/O errors**: the k-th I/O fails with `EIO` or `ENOSPC`, once or for good, while the
//!   workload runs on (the log refuses every later write), then the disk is recovered from what
//!   a restart finds; and faults during recovery itself, which must fail cleanly and leave the
//!   image recoverable once the fault clears;
//! * **corruption**: sealed segments and snapshots of a finished run get flipped bits, zeroed
//!   sectors and blocks copied from elsewhere; recovery must refuse, or fall back to an older
//!   snapshot, and what it serves must be right.
//!
//! After every recovery the state is read back through the executors (and the queue store) and
//! checked against what the clients were told:
//!
//! * **lost**: an acknowledged write missing or older (a key behind its acknowledged version, a
//!   deleted key back, an acknowledged message gone or an acknowledged ack undone, an
//!   acknowledged lease lost, an acknowledged stream record or time-series point missing);
//! * **phantom**: something nobody wrote (an unknown value, payload or point, a version other
//!   than the one acknowledged for that value, a stream whose offsets are not a prefix of the
//!   appends in order, a part of an append or a time-series write without the rest), or a
//!   second recovery of the same image that reads differently;
//! * **panics**: anything that panicked or hung.
//!
//! `FLO_CRASH_SIM_IMAGES` sets the distinct images wanted per crash point (default 48; a point
//! with nothing unsynced has one), `FLO_CRASH_SIM_STRIDE` takes every n-th I/O as a crash point
//! (default 1: all), `FLO_CRASH_SIM_THREADS` the checker threads (default: the CPUs),
//! `FLO_CRASH_SIM_SEED` other workloads; `FLO_FAULT_SIM_POINTS` the fault points (default 40,
//! each with four kinds of fault) and `FLO_CORRUPTION_CASES` the damaged images (default 400).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::shard::{recover, Shard};
use crate::config::{Config, Durability};
use crate::crash_tally::{run_guarded, runtime};
use crate::kv::exec::{KvCmd, KvReply};
use crate::kv::{Cond, KvCommand};
use crate::log::either::EitherFs;
use crate::log::io::Fs;
use crate::log::sim::{CrashMode, DiskImage, FaultKind, Imager, SimFs, SplitMix64 as Rng};
use crate::queue::exec::{NewMsg, QueueCmd, QueueReply};
use crate::queue::state::QueueCommand;
use crate::stream::entry::AppendBody;
use crate::stream::exec::{StreamCmd, StreamReply};
use crate::ts::exec::{TsCmd, TsReply};
use crate::ts::part::Part;

#[cfg(test)]
mod determinism;

const HOSTS: usize = 3;
const KEYS: usize = 10;
/// Leases outlive every run: a leased message must stay leased across a crash.
const LEASE_MS: u64 = 3_600_000;
/// Time-series timestamps start here (ms), one series' points a millisecond apart.
const TS_BASE_MS: i64 = 1_700_000_000_000;
/// A crash point (its recoveries and checks) that has not ended after this long hangs.
const POINT_TIMEOUT: Duration = Duration::from_secs(240);

/// Small segments (the minimum), small batches and frequent snapshots, so a short run seals
/// segments, snapshots and compacts many times.
fn config() -> Config {
    let mut c = Config {
        shards: 2,
        data_dir: PathBuf::from("/data"),
        durability: Durability::Sync,
        ..Config::default()
    };
    c.log.segment_bytes = crate::log::format::MIN_SEGMENT_BYTES;
    c.log.batch_max_bytes = 32 * 1024;
    c.log.snapshot_bytes = 32 * 1024;
    c.log.flush_interval_ms = 5;
    // Group commit's wait depends on how long syncs take in real time; the simulation must be
    // deterministic (the same I/Os in the same order for a seed), so it runs without it.
    c.log.commit_wait_us = 0;
    c.log.compact_live_percent = 50;
    c.limits.max_value_bytes = 16 * 1024;
    // Nothing is forwarded between shards here; a small inbox is cheap to make per recovery.
    c.http.inbox_capacity = 16;
    c
}

fn shard_dir() -> PathBuf {
    config().data_dir.join(crate::log::format::shard_dir_name(0))
}

/// A namespace whose record shard 0 owns (the test shard is shard 0 of two).
fn namespace(shard: &Shard) -> String {
    (0..)
        .map(|i| format!("sim{i}"))
        .find(|n| shard.node.partitioner.namespace_shard(n) == 0)
        .expect("some namespace belongs to shard 0")
}

/// The objects of the workload, all of them shard 0's (the test shard): keys, queues and
/// streams of the namespace; and time-series hosts whose series all fall in one partition (so a
/// write is one part: multi-part writes have their own crash tests, `tests/ts_crash.rs`).
struct Names {
    keys: Vec<String>,
    queues: Vec<String>,
    streams: Vec<String>,
    /// Each host's tags: `host=h<i>` and a `salt` that puts its series in `partition`.
    hosts: Vec<[(String, String); 2]>,
    partition: u32,
}

fn names(shard: &Shard, ns: &str) -> Names {
    let p = &shard.node.partitioner;
    let mine = |prefix: &str, count: usize| -> Vec<String> {
        (0..)
            .map(|i| format!("{prefix}{i:02}"))
            .filter(|n| p.shard(ns, n) == 0)
            .take(count)
            .collect()
    };
    let partition = |tags: &[(String, String)]| {
        let mut key = Vec::new();
        crate::ts::series::line_key(&mut key, "cpu", tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        crate::ts::series::line_key_partition(&key, p)
    };
    let tags = |h: usize, salt: u32| {
        [
            ("host".to_string(), format!("h{h}")),
            ("salt".to_string(), salt.to_string()),
        ]
    };
    let target = (0..)
        .map(|s| partition(&tags(0, s)))
        .find(|&q| p.shard_of_partition(q) == 0);
    let target = target.expect("a partition of shard 0");
    let hosts = (0..HOSTS)
        .map(|h| {
            let salt = (0..).find(|&s| partition(&tags(h, s)) == target).expect("a salt");
            tags(h, salt)
        })
        .collect();
    Names {
        keys: mine("key-", KEYS),
        queues: mine("jobs-", 2),
        streams: mine("events-", 2),
        hosts,
        partition: target,
    }
}

/// A payload that names its writer and operation, padded to `len` with seeded bytes.
fn payload(tag: String, len: usize, rng: &mut Rng) -> Bytes {
    let mut v = tag.into_bytes();
    v.push(b'|');
    while v.len() < len {
        v.push(rng.next_u64() as u8);
    }
    v.into()
}

// ---------------------------------------------------------------------------------------------
// What the clients were told
// ---------------------------------------------------------------------------------------------

/// A payload, shared: the model is cloned at every crash point.
type Bytes = Arc<[u8]>;

/// Hashes the first bytes of what it is given only: every payload starts with a unique tag
/// (`payload`), and the payloads are kilobytes long.
#[derive(Default)]
struct TagHasher(u64);

impl std::hash::Hasher for TagHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(24) {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The model's maps: checked for every crash state, so hashed cheaply.
type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<TagHasher>>;
type FastSet<K> = HashSet<K, std::hash::BuildHasherDefault<TagHasher>>;
type PayloadMap<V> = FastMap<Bytes, V>;

/// Everything the workload submitted and every answer it got.
#[derive(Default, Clone)]
struct Model {
    /// KV value → (key, version if its write was acknowledged).
    kv_values: PayloadMap<(String, Option<u64>)>,
    /// key → the newest acknowledged write: version, value (`None`: a delete).
    kv_acked: FastMap<String, (u64, Option<Bytes>)>,
    /// Queue payload → (queue, seq if its enqueue was acknowledged).
    q_payloads: PayloadMap<(usize, Option<u64>)>,
    /// (queue, seq) → payload, of acknowledged enqueues.
    q_acked: BTreeMap<(usize, u64), Bytes>,
    /// Messages an acknowledged dequeue leased.
    q_leased: FastSet<(usize, u64)>,
    /// Messages an ack was sent for, and those whose ack was acknowledged.
    q_ack_sent: FastSet<(usize, u64)>,
    q_ack_done: FastSet<(usize, u64)>,
    /// Stream record payload → (stream, append number, index in the append).
    s_payloads: PayloadMap<(usize, u64, usize)>,
    /// Append number → its record count.
    s_appends: FastMap<u64, usize>,
    /// (stream, offset) → payload, of acknowledged appends.
    s_acked: BTreeMap<(usize, u64), Bytes>,
    /// (host, ts) → (value, write number).
    ts_points: FastMap<(usize, i64), (f64, u64)>,
    /// Write number → its point count.
    ts_writes: FastMap<u64, usize>,
    /// Points of acknowledged writes.
    ts_acked: Vec<(usize, i64, f64)>,
    acks: u64,
}

/// Shared by the workload's tasks.
struct Run {
    shard: Rc<Shard>,
    ns: String,
    names: Names,
    /// Shared with the crash-point hook, which clones it.
    model: Rc<RefCell<Model>>,
    /// Next append / time-series write number, and each host's next timestamp.
    next_op: Cell<u64>,
    ts_next: RefCell<[i64; HOSTS]>,
    /// Snapshots or compaction passes that failed while the disk was alive.
    errors: RefCell<Vec<String>>,
    writers_done: Cell<bool>,
    stats: RefCell<RunStats>,
}

#[derive(Default, Debug, Clone, Copy)]
struct RunStats {
    snapshots: u64,
    deleted_segments: u64,
    copied_segments: u64,
}

impl Run {
    fn op_number(&self) -> u64 {
        let n = self.next_op.get();
        self.next_op.set(n + 1);
        n
    }
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

async fn kv_op(run: &Run, w: u64, i: u64, rng: &mut Rng, seen: &mut HashMap<String, u64>) {
    let key = run.names.keys[rng.index(KEYS)].clone();
    let ns = run.ns.clone();
    if run.shard.ensure_namespace(&ns).await.is_err() {
        return;
    }
    let roll = rng.below(100);
    if roll < 15 {
        let cas = seen.get(&key).copied().filter(|_| rng.chance(50));
        let cmd = KvCmd::Write(KvCommand::Delete {
            ns,
            key: key.clone(),
            cas,
        });
        if let Ok(KvReply::Written { version }) = crate::kv::exec::execute(&run.shard.engine, cmd).await {
            let mut m = run.model.borrow_mut();
            m.acks += 1;
            seen.insert(key.clone(), version);
            if m.kv_acked.get(&key).is_none_or(|(v, _)| *v < version) {
                m.kv_acked.insert(key, (version, None));
            }
        }
        return;
    }
    let value = payload(format!("kv-{w}-{i}"), 16 + rng.index(6000), rng);
    let cond = match roll {
        15..=39 => Cond::Version(seen.get(&key).copied().unwrap_or(0)),
        40..=44 => Cond::IfNotExists,
        _ => Cond::Always,
    };
    run.model
        .borrow_mut()
        .kv_values
        .insert(value.clone(), (key.clone(), None));
    let cmd = KvCmd::Write(KvCommand::Put {
        ns,
        key: key.clone(),
        value: value.to_vec(),
        expires_at_ms: 0,
        cond,
    });
    match crate::kv::exec::execute(&run.shard.engine, cmd).await {
        Ok(KvReply::Written { version }) => {
            let mut m = run.model.borrow_mut();
            m.acks += 1;
            seen.insert(key.clone(), version);
            m.kv_values.insert(value.clone(), (key.clone(), Some(version)));
            if m.kv_acked.get(&key).is_none_or(|(v, _)| *v < version) {
                m.kv_acked.insert(key, (version, Some(value)));
            }
        }
        Ok(KvReply::Refused(_)) => {
            run.model.borrow_mut().kv_values.remove(&value[..]);
            // Learn the version, as a client does from the 409.
            let get = KvCmd::Get {
                ns: run.ns.clone(),
                key: key.clone(),
                wait: None,
            };
            if let Ok(KvReply::Found(k)) = crate::kv::exec::execute(&run.shard.engine, get).await {
                seen.insert(key, k.version);
            }
        }
        _ => {}
    }
}

async fn queue_op(run: &Run, w: u64, i: u64, rng: &mut Rng, leased: &mut Vec<(usize, u64)>) {
    let q = rng.index(run.names.queues.len());
    let (ns, queue) = (run.ns.clone(), run.names.queues[q].clone());
    if run.shard.ensure_namespace(&ns).await.is_err() {
        return;
    }
    match rng.below(10) {
        0..=4 => {
            let n = 1 + rng.index(3);
            let payloads: Vec<Bytes> = (0..n)
                .map(|j| payload(format!("q-{w}-{i}-{j}"), 8 + rng.index(600), rng))
                .collect();
            {
                let mut m = run.model.borrow_mut();
                for p in &payloads {
                    m.q_payloads.insert(p.clone(), (q, None));
                }
            }
            let messages = payloads
                .iter()
                .map(|p| NewMsg {
                    payload: p.to_vec(),
                    priority: rng.below(3) as u8,
                    delay_ms: 0,
                    dedup_key: String::new(),
                })
                .collect();
            let cmd = QueueCmd::Enqueue { ns, queue, messages };
            if let Ok(QueueReply::Enqueued { seqs, .. }) = crate::queue::exec::execute(&run.shard.engine, cmd).await {
                let mut m = run.model.borrow_mut();
                m.acks += 1;
                for (p, seq) in payloads.into_iter().zip(seqs) {
                    m.q_payloads.insert(p.clone(), (q, Some(seq)));
                    m.q_acked.insert((q, seq), p);
                }
            }
        }
        5..=7 => {
            let cmd = QueueCmd::Dequeue {
                ns,
                queue,
                count: 1 + rng.index(3),
                visibility_ms: LEASE_MS,
                block_ms: 0,
            };
            if let Ok(QueueReply::Messages(got)) = crate::queue::exec::execute(&run.shard.engine, cmd).await {
                let mut m = run.model.borrow_mut();
                m.acks += 1;
                for msg in got {
                    m.q_leased.insert((q, msg.seq));
                    leased.push((q, msg.seq));
                }
            }
        }
        _ => {
            let mine: Vec<u64> = leased.iter().filter(|(lq, _)| *lq == q).map(|(_, s)| *s).collect();
            if mine.is_empty() {
                return;
            }
            let seqs: Vec<u64> = mine.into_iter().filter(|_| rng.chance(70)).collect();
            if seqs.is_empty() {
                return;
            }
            leased.retain(|(lq, s)| !(*lq == q && seqs.contains(s)));
            run.model.borrow_mut().q_ack_sent.extend(seqs.iter().map(|s| (q, *s)));
            let cmd = QueueCmd::Change(QueueCommand::Ack {
                ns,
                queue,
                seqs: seqs.clone(),
            });
            if let Ok(QueueReply::Done { not_found, .. }) = crate::queue::exec::execute(&run.shard.engine, cmd).await {
                let mut m = run.model.borrow_mut();
                m.acks += 1;
                for s in seqs.into_iter().filter(|s| !not_found.contains(s)) {
                    m.q_ack_done.insert((q, s));
                }
            }
        }
    }
}

async fn stream_op(run: &Run, w: u64, i: u64, rng: &mut Rng) {
    let st = rng.index(run.names.streams.len());
    if run.shard.ensure_namespace(&run.ns).await.is_err() {
        return;
    }
    let op = run.op_number();
    let n = 1 + rng.index(4);
    let payloads: Vec<Bytes> = (0..n)
        .map(|j| payload(format!("s-{w}-{i}-{j}"), 8 + rng.index(900), rng))
        .collect();
    let mut body = AppendBody::new(&run.ns, &run.names.streams[st], 256);
    for p in &payloads {
        let _ = body.push_with(|b| {
            b.extend_from_slice(p);
            Ok::<(), ()>(())
        });
    }
    {
        let mut m = run.model.borrow_mut();
        m.s_appends.insert(op, n);
        for (j, p) in payloads.iter().enumerate() {
            m.s_payloads.insert(p.clone(), (st, op, j));
        }
    }
    let cmd = StreamCmd::Append {
        ns: run.ns.clone(),
        stream: run.names.streams[st].clone(),
        body: body.finish(),
        count: n as u32,
    };
    if let Ok(StreamReply::Appended { first, last, .. }) = crate::stream::exec::execute(&run.shard.engine, cmd).await {
        let mut m = run.model.borrow_mut();
        m.acks += 1;
        assert_eq!(last + 1 - first, n as u64, "an append of {n} records");
        for (j, p) in payloads.into_iter().enumerate() {
            m.s_acked.insert((st, first + j as u64), p);
        }
    }
}

async fn ts_op(run: &Run, rng: &mut Rng) {
    if run.shard.ensure_namespace(&run.ns).await.is_err() {
        return;
    }
    let op = run.op_number();
    let mut part = Part::default();
    let mut points = Vec::new();
    for _ in 0..1 + rng.index(4) {
        let host = rng.index(HOSTS);
        let ts = {
            let mut next = run.ts_next.borrow_mut();
            next[host] += 1 + rng.below(3) as i64;
            next[host]
        };
        let value = (op * 16 + points.len() as u64) as f64 + 0.25;
        let mut key = Vec::new();
        let tags = &run.names.hosts[host];
        crate::ts::series::line_key(&mut key, "cpu", tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        part.push(&key, [("usage", value)].into_iter(), ts);
        points.push((host, ts, value));
    }
    {
        let mut m = run.model.borrow_mut();
        m.ts_writes.insert(op, points.len());
        for &(h, ts, v) in &points {
            m.ts_points.insert((h, ts), (v, op));
        }
    }
    let partition = run.names.partition;
    let cmd = TsCmd::Write {
        ns: run.ns.clone(),
        batch_id: 0,
        part_count: 1,
        at_ms: TS_BASE_MS as u64,
        parts: vec![(partition, part)],
    };
    if let Ok(TsReply::Done) = crate::ts::exec::execute(&run.shard.engine, cmd).await {
        let mut m = run.model.borrow_mut();
        m.acks += 1;
        m.ts_acked.extend(points);
    }
}

/// One client: `count` operations of every primitive, one after the other.
async fn writer(run: Rc<Run>, w: u64, count: u64, seed: u64) {
    let mut rng = Rng(seed);
    let mut seen = HashMap::new();
    let mut leased = Vec::new();
    for i in 0..count {
        if run.shard.log().is_ok_and(|l| l.poisoned().is_some()) {
            return;
        }
        match rng.below(100) {
            0..=39 => kv_op(&run, w, i, &mut rng, &mut seen).await,
            40..=64 => queue_op(&run, w, i, &mut rng, &mut leased).await,
            65..=84 => stream_op(&run, w, i, &mut rng).await,
            _ => ts_op(&run, &mut rng).await,
        }
    }
}

/// The snapshot timer of `snapshot/shard.rs`, by bytes of log rather than by the clock (so a
/// run is the same every time).
async fn snapshotter(run: Rc<Run>) {
    let engine = &run.shard.engine;
    let every = engine.config.log.snapshot_bytes;
    while !run.writers_done.get() {
        crate::sched::yield_now().await;
        let Ok(log) = engine.log() else {
            return;
        };
        if log.poisoned().is_some() {
            return;
        }
        let written = engine.log_metrics.bytes_total.get();
        if written.saturating_sub(engine.snapshots.borrow().bytes_at_last) < every {
            continue;
        }
        match crate::snapshot::shard::take_and_compact(engine).await {
            Ok(Some(p)) => {
                let mut s = run.stats.borrow_mut();
                s.snapshots += 1;
                s.deleted_segments += p.deleted;
                s.copied_segments += p.copied_segments;
            }
            Ok(None) => {}
            Err(e) => {
                if log.poisoned().is_none() && !dead(&run.shard) {
                    run.errors.borrow_mut().push(e);
                }
                engine.snapshots.borrow_mut().bytes_at_last = written;
            }
        }
    }
}

fn dead(shard: &Shard) -> bool {
    match &shard.engine.fs {
        EitherFs::Sim(fs) => fs.is_dead(),
        EitherFs::Real(_) => false,
    }
}

/// A workload: its seed and size.
#[derive(Clone, Copy, Debug)]
struct Scenario {
    seed: u64,
    writers: u64,
    ops_per_writer: u64,
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "scenario {}", self.seed)
    }
}

/// A new shard on `fs` with its log recovered (an empty disk: a new log).
async fn open_shard(fs: SimFs) -> Result<Rc<Shard>, String> {
    let shard = Rc::new(Shard::for_tests_on(config(), EitherFs::Sim(fs)));
    let log = recover(&shard).await.map_err(|e| e.to_string())?;
    shard.engine.set_log(log);
    Ok(shard)
}

/// Runs the workload on a new disk set up by `prepare` (a crash point, a fault); returns the
/// disk and what happened. The log stops at the end (as a killed process's does not matter).
async fn life(sc: Scenario, prepare: impl FnOnce(&SimFs, &Rc<RefCell<Model>>)) -> (SimFs, Option<Rc<Run>>) {
    let fs = SimFs::new();
    let mut rng = Rng(sc.seed);
    fs.set_sync_turns(1 + rng.below(3) as u32);
    let _ = fs.create_dir_all(&shard_dir());
    let model = Rc::default();
    prepare(&fs, &model);
    let Ok(shard) = open_shard(fs.clone()).await else {
        return (fs, None);
    };
    let log = shard.log().expect("opened").clone();
    let flusher = monoio::spawn(log.clone().run_flusher());
    let ns = namespace(&shard);
    let names = names(&shard, &ns);
    let run = Rc::new(Run {
        shard,
        ns,
        names,
        model,
        next_op: Cell::new(0),
        ts_next: RefCell::new([TS_BASE_MS; HOSTS]),
        errors: RefCell::default(),
        writers_done: Cell::new(false),
        stats: RefCell::default(),
    });
    let timer = monoio::spawn(snapshotter(run.clone()));
    let handles: Vec<_> = (0..sc.writers)
        .map(|w| monoio::spawn(writer(run.clone(), w, sc.ops_per_writer, rng.next_u64())))
        .collect();
    for h in handles {
        h.await;
    }
    run.writers_done.set(true);
    timer.await;
    log.stop();
    flusher.await;
    (fs, Some(run))
}

// ---------------------------------------------------------------------------------------------
// Reading a recovered shard back
// ---------------------------------------------------------------------------------------------

/// What a recovered shard holds, read through the executors.
#[derive(Debug, PartialEq, Default)]
struct Dump {
    /// key → (latest version, visible value).
    kv: BTreeMap<String, (u64, Option<Vec<u8>>)>,
    /// (queue, seq) → (leased?, delivery count, payload).
    queue: BTreeMap<(usize, u64), (bool, u16, Vec<u8>)>,
    /// Each queue's next seq.
    next_seq: Vec<u64>,
    /// Each stream's records from its first offset: (offset, payload).
    streams: Vec<Vec<(u64, Vec<u8>)>>,
    /// (host, ts) → value.
    ts: BTreeMap<(usize, i64), f64>,
}

async fn dump(shard: &Shard, ns: &str) -> Result<Dump, String> {
    let mut d = Dump::default();
    let names = names(shard, ns);
    let engine = &*shard.engine;
    for key in names.keys {
        let version = engine.part_of(ns, &key).kv.borrow().latest_version(ns, &key);
        if version == 0 {
            continue;
        }
        let get = KvCmd::Get {
            ns: ns.to_string(),
            key: key.clone(),
            wait: None,
        };
        let value = match crate::kv::exec::execute(engine, get).await {
            Ok(KvReply::Found(s)) if s.version == version => s.value,
            Ok(KvReply::NotFound) => None,
            other => return Err(format!("GET {key}: {other:?} (latest version {version})")),
        };
        d.kv.insert(key, (version, value));
    }
    for (q, name) in names.queues.iter().enumerate() {
        let p = engine.partition_of(ns, name);
        let (next, present) = {
            let store = engine.part(p).queues.borrow();
            match store.get(ns, name) {
                None => (1, Vec::new()),
                Some(queue) => {
                    let next = queue.next_seq();
                    let present: Vec<(u64, bool, u16)> = (1..next)
                        .filter_map(|s| {
                            queue
                                .msg(s)
                                .map(|m| (s, m.state == crate::queue::state::State::Leased, m.delivery_count))
                        })
                        .collect();
                    (next, present)
                }
            }
        };
        d.next_seq.push(next);
        let seqs: Vec<u64> = present.iter().map(|p| p.0).collect();
        let got = crate::queue::exec::messages(engine, p, ns, name, &seqs).map_err(|e| e.message())?;
        if got.len() != seqs.len() {
            return Err(format!(
                "queue {name}: {} of {} messages readable",
                got.len(),
                seqs.len()
            ));
        }
        for ((s, leased, deliveries), m) in present.into_iter().zip(got) {
            d.queue.insert((q, s), (leased, deliveries, m.payload));
        }
    }
    for name in &names.streams {
        let mut records = Vec::new();
        let st = engine.part_of(ns, name).streams.borrow();
        if let Some(s) = st.get(ns, name) {
            let log = engine.log().map_err(|e| e.message())?;
            s.read(ns, name, log, &st.segments, s.first_offset, |o, _, p| {
                records.push((o, p.to_vec()));
                true
            })
            .map_err(|e| format!("stream {name}: {e}"))?;
        }
        d.streams.push(records);
    }
    let query = crate::ts::floql::parse(&format!("cpu[{TS_BASE_MS}..{}]", TS_BASE_MS + 10_000_000))
        .map_err(|e| e.message.clone())?;
    let plan = Arc::new(crate::ts::query::Plan::new(&query, TS_BASE_MS).map_err(|e| e.message.clone())?);
    let cmd = TsCmd::Query {
        ns: ns.to_string(),
        plan: plan.clone(),
        snapshot: shard.node.ts_commits.begin_query().seq,
    };
    match crate::ts::exec::execute(engine, cmd).await {
        Ok(TsReply::Query(out)) => {
            for series in plan.finish(vec![out]).map_err(|e| e.message.clone())? {
                let host = series
                    .tags
                    .iter()
                    .find(|(k, _)| k == "host")
                    .and_then(|(_, v)| v.strip_prefix('h'))
                    .and_then(|h| h.parse::<usize>().ok())
                    .ok_or_else(|| format!("a series with tags {:?}", series.tags))?;
                for (ts, v) in series.points {
                    d.ts.insert((host, ts), v);
                }
            }
        }
        Err(e) if e.message().contains("no measurement") || e.message().contains("not found") => {}
        other => return Err(format!("query: {other:?}")),
    }
    Ok(d)
}

/// Problems found in one recovered image.
#[derive(Default, Debug)]
struct Found {
    lost: Vec<String>,
    phantom: Vec<String>,
}

fn check(m: &Model, d: &Dump) -> Found {
    let mut f = Found::default();
    // KV.
    let mut keys: Vec<&String> = d.kv.keys().chain(m.kv_acked.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let got = d.kv.get(key);
        if let Some((version, Some(value))) = got {
            match m.kv_values.get(&value[..]) {
                Some((owner, _)) if owner != key => f.phantom.push(format!("{key}: holds {owner}'s value")),
                Some((_, Some(v))) if v != version => f
                    .phantom
                    .push(format!("{key}: version {version} holds the value acknowledged as {v}")),
                Some(_) => {}
                None => f
                    .phantom
                    .push(format!("{key}: version {version} holds a value nobody wrote")),
            }
        }
        if let Some((av, aval)) = m.kv_acked.get(key) {
            let (version, value) = got.cloned().unwrap_or((0, None));
            if version < *av {
                f.lost.push(format!(
                    "{key}: version {version} after acknowledged version {av} ({})",
                    if aval.is_some() {
                        "a put"
                    } else {
                        "a delete: deleted data came back"
                    }
                ));
            } else if version == *av && value.as_deref() != aval.as_deref() {
                f.lost.push(format!("{key}: acknowledged version {av} reads otherwise"));
            }
        }
    }
    // Queues.
    for (&(q, s), (leased, _, payload)) in &d.queue {
        match m.q_payloads.get(&payload[..]) {
            Some(&(pq, seq)) if pq != q || seq.is_some_and(|x| x != s) => f
                .phantom
                .push(format!("queue {q} message {s}: payload of queue {pq} message {seq:?}")),
            Some(_) => {}
            None => f
                .phantom
                .push(format!("queue {q} message {s}: a payload nobody enqueued")),
        }
        if m.q_ack_done.contains(&(q, s)) {
            f.lost.push(format!("queue {q} message {s}: acknowledged ack undone"));
        } else if m.q_leased.contains(&(q, s)) && !leased {
            f.lost.push(format!(
                "queue {q} message {s}: its acknowledged lease is gone (deliverable again)"
            ));
        }
    }
    for (&(q, s), p) in &m.q_acked {
        if !d.queue.contains_key(&(q, s)) && !m.q_ack_sent.contains(&(q, s)) {
            f.lost
                .push(format!("queue {q} message {s}: acknowledged enqueue missing"));
        }
        if d.queue.get(&(q, s)).is_some_and(|(_, _, got)| got[..] != p[..]) {
            f.phantom.push(format!("queue {q} message {s}: another payload"));
        }
        if d.next_seq.get(q).is_some_and(|&n| n <= s) {
            f.lost.push(format!("queue {q}: next seq at or below acknowledged {s}"));
        }
    }
    // Streams: a prefix of the appends, whole appends only, every acknowledged record.
    for (st, records) in d.streams.iter().enumerate() {
        let mut expect = records.first().map_or(0, |r| r.0);
        let mut open: Option<(u64, usize, usize)> = None; // (append, next index, count)
        for (o, p) in records {
            if *o != expect {
                f.phantom
                    .push(format!("stream {st}: offset {o} after {}", expect.wrapping_sub(1)));
            }
            expect = o + 1;
            match m.s_payloads.get(&p[..]) {
                Some(&(pst, op, j)) if pst == st => {
                    let n = m.s_appends.get(&op).copied().unwrap_or(0);
                    match open {
                        Some((a, next, _)) if a == op && next == j => {}
                        Some((a, next, cnt)) if next < cnt => f.phantom.push(format!(
                            "stream {st}: append {a} cut after {next} of {cnt} records, then append {op}"
                        )),
                        _ if j != 0 => f.phantom.push(format!("stream {st}: append {op} starts at record {j}")),
                        _ => {}
                    }
                    open = Some((op, j + 1, n));
                }
                _ => f
                    .phantom
                    .push(format!("stream {st} offset {o}: a payload nobody appended there")),
            }
            if let Some(a) = m.s_acked.get(&(st, *o)) {
                if a[..] != p[..] {
                    f.lost
                        .push(format!("stream {st} offset {o}: not the acknowledged record"));
                }
            }
        }
        if let Some((a, next, cnt)) = open {
            if next < cnt {
                f.phantom
                    .push(format!("stream {st}: append {a} cut after {next} of {cnt} records"));
            }
        }
        let last = m.s_acked.range((st, 0)..(st + 1, 0)).next_back();
        if let Some((&(_, o), _)) = last {
            if expect <= o {
                f.lost.push(format!("stream {st}: ends before acknowledged offset {o}"));
            }
        }
    }
    // Time series: acknowledged points present, no point nobody wrote, writes whole.
    for &(h, ts, v) in &m.ts_acked {
        if d.ts.get(&(h, ts)) != Some(&v) {
            f.lost.push(format!("ts host {h} at {ts}: acknowledged point missing"));
        }
    }
    let mut seen_of_write: FastMap<u64, usize> = FastMap::default();
    for (&(h, ts), &v) in &d.ts {
        match m.ts_points.get(&(h, ts)) {
            Some(&(w, op)) if w == v => *seen_of_write.entry(op).or_default() += 1,
            _ => f
                .phantom
                .push(format!("ts host {h} at {ts}: a point nobody wrote ({v})")),
        }
    }
    for (op, n) in seen_of_write {
        let whole = m.ts_writes.get(&op).copied().unwrap_or(0);
        if n != whole {
            f.phantom.push(format!("ts write {op}: {n} of its {whole} points"));
        }
    }
    f
}

// ---------------------------------------------------------------------------------------------
// Recovery and the harnesses
// ---------------------------------------------------------------------------------------------

/// Recovers `image` as the server does and reads it back; the error says which failed
/// (`recovery: ...` or `read: ...`).
async fn recover_dump(image: SimFs) -> Result<(Dump, String), String> {
    let shard = open_shard(image).await.map_err(|e| format!("recovery: {e}"))?;
    let ns = namespace(&shard);
    let d = dump(&shard, &ns).await.map_err(|e| format!("read: {e}"))?;
    let snapshot = shard.engine.snapshots.borrow().kept.last().map_or(0, |(l, _)| *l);
    shard.log().map(|l| l.stop()).ok();
    Ok((d, format!("from snapshot LSN {snapshot}")))
}

/// Totals over every harness.
type Totals = crate::crash_tally::Tally;

/// Recovers `image` and checks it against `model`; when `twice`, recovers it again (after the
/// first recovery's repairs) and checks that it reads the same.
async fn check_image(image: &SimFs, model: &Model, what: &str, twice: bool, totals: &mut Totals) {
    let first = match recover_dump(image.clone()).await {
        Ok((d, _)) => d,
        Err(e) => return totals.failed_recovery(what, &e),
    };
    let found = check(model, &first);
    totals.record(what, &found.lost, &found.phantom);
    if !twice {
        return;
    }
    match recover_dump(image.clone()).await {
        Ok((again, _)) if again == first => {}
        Ok(_) => {
            totals.phantom += 1;
            totals
                .failures
                .push(format!("{what}: a second recovery reads differently"));
        }
        Err(e) => totals.failed_recovery(&format!("{what}, again"), &e),
    }
}

/// The distinct images of a crash point, up to `want`: everything kept, only what was synced,
/// and seeded mixes of kept, dropped, torn and garbage writes with unsynced renames kept or
/// lost. One image when nothing is unsynced (every mode gives it).
fn distinct_images(imager: &Imager<'_>, want: usize, rng: &mut Rng) -> Vec<(String, DiskImage)> {
    let mut out: Vec<(String, DiskImage)> = vec![("KeepAll".into(), imager.image(0, CrashMode::KeepAll))];
    if !imager.unsynced() {
        return out;
    }
    fn add(out: &mut Vec<(String, DiskImage)>, name: String, image: DiskImage) {
        if !out.iter().any(|(_, seen)| *seen == image) {
            out.push((name, image));
        }
    }
    add(&mut out, "DropAll".into(), imager.image(0, CrashMode::DropAll));
    for attempt in 0..want * 3 {
        if out.len() >= want {
            break;
        }
        let seed = rng.next_u64();
        let mode = if attempt % 2 == 0 {
            CrashMode::Random
        } else {
            CrashMode::Garbage
        };
        add(&mut out, format!("{mode:?} {seed:#x}"), imager.image(seed, mode));
    }
    out
}

/// A crash point's distinct images and what the clients had been told by then, for a checker.
struct CrashPoint {
    what: String,
    model: Arc<Model>,
    images: Vec<(String, DiskImage)>,
}

/// How a capturing run picks and images its crash points.
#[derive(Clone, Copy)]
struct Capture {
    /// Every `stride`-th I/O operation is a crash point.
    stride: u64,
    /// Distinct images wanted per crash point.
    images: usize,
}

fn seed_of_point(sc: Scenario, k: u64) -> u64 {
    sc.seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Runs the workload of `sc` once and sends, for every crash point (before each chosen I/O
/// operation, and at the end), its distinct images and a copy of the model to `to`. Returns
/// the run's operation count, acknowledgements, coverage and failures on the live disk.
async fn capture_run(
    sc: Scenario,
    capture: Capture,
    to: &std::sync::mpsc::SyncSender<CrashPoint>,
) -> Result<(u64, u64, RunStats, Vec<String>), String> {
    let hook_to = to.clone();
    let (fs, run) = life(sc, |fs, model| {
        let model = Rc::clone(model);
        fs.set_op_hook(Some(Box::new(move |k, imager| {
            if k % capture.stride != 0 {
                return;
            }
            let images = distinct_images(&imager, capture.images, &mut Rng(seed_of_point(sc, k)));
            let point = CrashPoint {
                what: format!("{sc} crash at op {k}"),
                model: Arc::new(model.borrow().clone()),
                images,
            };
            let _ = hook_to.send(point);
        })));
    })
    .await;
    fs.set_op_hook(None);
    let run = run.ok_or("a fresh disk did not open")?;
    let total = fs.ops();
    let model = Arc::new(run.model.borrow().clone());
    let images = fs.with_imager(|imager| distinct_images(&imager, capture.images, &mut Rng(seed_of_point(sc, total))));
    let _ = to.send(CrashPoint {
        what: format!("{sc} at the end ({total} ops)"),
        model,
        images,
    });
    let acks = run.model.borrow().acks;
    let errors = run.errors.borrow().iter().map(|e| format!("{sc}: {e}")).collect();
    let stats = *run.stats.borrow();
    Ok((total, acks, stats, errors))
}

/// Recovers and checks every image of `point` (every eighth also twice).
fn check_point(point: CrashPoint, totals: &mut Totals) {
    totals.points += 1;
    guarded(&point.what, totals, async |t: &mut Totals| {
        for (i, (name, image)) in point.images.iter().enumerate() {
            let what = format!("{}, {name}", point.what);
            check_image(&SimFs::from_image(image), &point.model, &what, i % 8 == 0, t).await;
        }
    });
}

/// The full run of `sc`: its I/O operation count, acknowledgements and coverage.
fn full_run(sc: Scenario) -> (u64, u64, RunStats) {
    runtime().block_on(async {
        let (fs, run) = life(sc, |_, _| {}).await;
        let run = run.expect("a fresh disk opens");
        assert!(run.errors.borrow().is_empty(), "{sc}: {:?}", run.errors.borrow());
        let acks = run.model.borrow().acks;
        let stats = *run.stats.borrow();
        (fs.ops(), acks, stats)
    })
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Longer workloads, for the corruption harness: more sealed segments and snapshots to damage.
const LONG_SCENARIOS: [Scenario; 2] = [
    Scenario {
        seed: 11,
        writers: 4,
        ops_per_writer: 500,
    },
    Scenario {
        seed: 12,
        writers: 6,
        ops_per_writer: 350,
    },
];

/// Workloads of a few thousand operations: each seals, snapshots and compacts, and what a
/// crash state holds stays small enough to check a hundred thousand of them.
const SCENARIOS: [Scenario; 5] = [
    Scenario {
        seed: 11,
        writers: 4,
        ops_per_writer: 330,
    },
    Scenario {
        seed: 12,
        writers: 6,
        ops_per_writer: 220,
    },
    Scenario {
        seed: 13,
        writers: 5,
        ops_per_writer: 260,
    },
    Scenario {
        seed: 14,
        writers: 3,
        ops_per_writer: 440,
    },
    Scenario {
        seed: 15,
        writers: 8,
        ops_per_writer: 165,
    },
];

/// Runs `f` on a fresh runtime with a timeout, counting a panic or hang.
fn guarded(what: &str, totals: &mut Totals, f: impl AsyncFnOnce(&mut Totals)) {
    if let Err(why) = run_guarded(POINT_TIMEOUT, async || f(&mut *totals).await) {
        totals.aborted(what, why);
    }
}

fn crash_points(total: u64, runs: u64, rng: &mut Rng) -> Vec<u64> {
    if total <= runs {
        return (0..=total).collect();
    }
    let mut ks: Vec<u64> = (0..runs.saturating_sub(2)).map(|_| rng.below(total)).collect();
    ks.push(0);
    ks.push(total);
    ks.sort_unstable();
    ks.dedup();
    ks
}

#[test]
fn mixed_workload_crash_states_lose_nothing_and_invent_nothing() {
    let capture = Capture {
        stride: env("FLO_CRASH_SIM_STRIDE", 1).max(1),
        images: env("FLO_CRASH_SIM_IMAGES", 48).max(1) as usize,
    };
    let seed = env("FLO_CRASH_SIM_SEED", 0);
    let threads = env(
        "FLO_CRASH_SIM_THREADS",
        std::thread::available_parallelism().map_or(2, |n| n.get() as u64),
    )
    .max(1);
    let started = crate::clock::Stopwatch::start();
    let mut totals = Totals::default();
    let mut coverage = Vec::new();
    let (to, from) = std::sync::mpsc::sync_channel::<CrashPoint>(2 * threads as usize);
    let from = std::sync::Mutex::new(from);
    std::thread::scope(|scope| {
        let checkers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut t = Totals::default();
                    loop {
                        let next = from.lock().map_err(|_| ()).and_then(|rx| rx.recv().map_err(|_| ()));
                        match next {
                            Ok(point) => check_point(point, &mut t),
                            Err(()) => return t,
                        }
                    }
                })
            })
            .collect();
        for sc in SCENARIOS {
            let sc = Scenario {
                seed: sc.seed + seed * 100,
                ..sc
            };
            let r = catch_unwind(AssertUnwindSafe(|| runtime().block_on(capture_run(sc, capture, &to))));
            match r {
                Ok(Ok((total, acks, stats, errors))) => {
                    assert!(acks > 300, "{sc}: only {acks} acknowledgements");
                    assert!(
                        stats.snapshots > 3 && stats.deleted_segments > 0,
                        "{sc}: the run must snapshot and compact: {stats:?}"
                    );
                    totals.errors += errors.len() as u64;
                    totals.failures.extend(errors);
                    coverage.push(format!("{sc}: {total} ops, {acks} acks, {stats:?}"));
                }
                Ok(Err(e)) => {
                    totals.errors += 1;
                    totals.failures.push(format!("{sc}: {e}"));
                }
                Err(_) => {
                    totals.panics += 1;
                    totals.failures.push(format!("{sc}: the workload panicked"));
                }
            }
        }
        drop(to);
        for c in checkers {
            match c.join() {
                Ok(t) => totals.merge(t),
                Err(_) => {
                    totals.panics += 1;
                    totals.failures.push("a checker thread panicked".into());
                }
            }
        }
    });
    println!(
        "crash-sim: {} crash states, {} acked lost, {} phantom, {} panics",
        totals.states, totals.lost, totals.phantom, totals.panics
    );
    println!(
        "crash-sim: {} crash points (every {} I/O), up to {} distinct images each, {} threads, {:.1} s; {}",
        totals.points,
        capture.stride,
        capture.images,
        threads,
        started.elapsed().as_secs_f64(),
        coverage.join("; ")
    );
    for f in totals.failures.iter().take(20) {
        println!("  {f}");
    }
    assert_eq!(
        (totals.lost, totals.phantom, totals.panics, totals.errors),
        (0, 0, 0, 0),
        "{:#?}",
        totals.failures.iter().take(40).collect::<Vec<_>>()
    );
    assert_eq!(coverage.len(), SCENARIOS.len());
}

/// The capture is sound: the images taken before the k-th I/O of a whole run recover to what
/// the disk of a process killed at its k-th I/O recovers to, in every mode.
#[test]
fn captured_crash_states_are_those_of_a_killed_process() {
    let sc = SCENARIOS[1];
    let (total, _, _) = full_run(sc);
    let mut rng = Rng(sc.seed + 3);
    let ks = crash_points(total, 8, &mut rng);
    let modes = [
        (0, CrashMode::KeepAll),
        (0, CrashMode::DropAll),
        (5, CrashMode::Random),
        (6, CrashMode::Garbage),
    ];
    runtime().block_on(async {
        let captured: Rc<RefCell<BTreeMap<u64, Vec<DiskImage>>>> = Rc::default();
        let into = captured.clone();
        let wanted = ks.clone();
        let (fs, _) = life(sc, |fs, _| {
            fs.set_op_hook(Some(Box::new(move |k, imager| {
                if wanted.contains(&k) {
                    let images = modes.iter().map(|&(seed, mode)| imager.image(seed, mode)).collect();
                    into.borrow_mut().insert(k, images);
                }
            })));
        })
        .await;
        fs.set_op_hook(None);
        let captured = std::mem::take(&mut *captured.borrow_mut());
        for &k in ks.iter().filter(|&&k| k < total) {
            let (killed, _) = life(sc, |fs, _| fs.crash_after(k)).await;
            let images = captured.get(&k).unwrap_or_else(|| panic!("op {k} not captured"));
            for (&(seed, mode), image) in modes.iter().zip(images) {
                let a = recover_dump(SimFs::from_image(image)).await.map(|(d, _)| d);
                let b = recover_dump(killed.crash(seed, mode)).await.map(|(d, _)| d);
                assert_eq!(a, b, "{sc} op {k} {mode:?}: captured and killed differ");
            }
        }
        assert!(captured.len() >= 6, "{:?}", captured.keys().collect::<Vec<_>>());
    });
}

// ---------------------------------------------------------------------------------------------
// I/O errors
// ---------------------------------------------------------------------------------------------

const FAULTS: [FaultKind; 4] = [
    FaultKind::Eio,
    FaultKind::Enospc,
    FaultKind::EioForever,
    FaultKind::EnospcForever,
];

/// What a restart finds after the process stopped on an I/O error: its page cache (the
/// process exited), only what was synced (the machine lost power too), or a mix.
fn restart_images(fs: &SimFs, rng: &mut Rng) -> Vec<(String, SimFs)> {
    let seed = rng.next_u64();
    vec![
        ("restart".to_string(), fs.crash(0, CrashMode::KeepAll)),
        ("power loss".to_string(), fs.crash(0, CrashMode::DropAll)),
        (format!("torn {seed:#x}"), fs.crash(seed, CrashMode::Random)),
    ]
}

/// The workload's `k`-th I/O fails with `kind`; the workload runs on (nothing is acknowledged
/// once the log has failed); then the disk is recovered from what a restart finds.
async fn fault_point(sc: Scenario, k: u64, kind: FaultKind, totals: &mut Totals) -> bool {
    let (fs, run) = life(sc, |fs, _| fs.fail_at(k, kind)).await;
    let model = run.as_ref().map(|r| r.model.borrow().clone()).unwrap_or_default();
    let poisoned = run
        .as_ref()
        .is_some_and(|r| r.shard.log().is_ok_and(|l| l.poisoned().is_some()));
    let mut rng = Rng(sc.seed ^ k.wrapping_mul(31) ^ kind as u64);
    for (name, image) in restart_images(&fs, &mut rng) {
        let what = format!("{sc} {kind:?} at op {k}, {name}");
        check_image(&image, &model, &what, true, totals).await;
    }
    poisoned
}

/// Recovery of `image` fails at its `j`-th I/O with `kind`: it must fail cleanly or recover
/// right, and once the fault clears the image (as that recovery left it) recovers right.
async fn recovery_fault(
    image: &SimFs,
    model: &Model,
    j: u64,
    kind: FaultKind,
    what: &str,
    totals: &mut Totals,
) -> bool {
    let faulty = image.crash(0, CrashMode::KeepAll);
    faulty.fail_at(j, kind);
    let refused = match recover_dump(faulty.clone()).await {
        Ok((d, _)) => {
            let found = check(model, &d);
            totals.record(&format!("{what}, faulty recovery"), &found.lost, &found.phantom);
            false
        }
        Err(_) => true,
    };
    let mut rng = Rng(j);
    for (name, after) in restart_images(&faulty, &mut rng) {
        check_image(&after, model, &format!("{what}, then {name}"), true, totals).await;
    }
    refused
}

#[test]
fn io_errors_acknowledge_nothing_unsynced_and_leave_a_recoverable_disk() {
    let points = env("FLO_FAULT_SIM_POINTS", 40);
    let started = crate::clock::Stopwatch::start();
    let mut totals = Totals::default();
    let (mut poisoned, mut recovery_faults, mut recovery_refused) = (0u64, 0u64, 0u64);
    let sc = SCENARIOS[0];
    let (total, _, _) = full_run(sc);
    let mut rng = Rng(sc.seed + 7);
    for k in crash_points(total, points, &mut rng) {
        for kind in FAULTS {
            totals.points += 1;
            let what = format!("{sc} {kind:?} at op {k}");
            guarded(&what, &mut totals, async |t: &mut Totals| {
                poisoned += u64::from(fault_point(sc, k, kind, t).await);
            });
        }
    }
    // Faults during recovery, at every I/O of the recovery of some crash images.
    for k in crash_points(total, points / 8, &mut rng) {
        let what = format!("{sc} crash after {k} ops");
        guarded(&what, &mut totals, async |t: &mut Totals| {
            let (fs, run) = life(sc, |fs, _| fs.crash_after(k)).await;
            let model = run.as_ref().map(|r| r.model.borrow().clone()).unwrap_or_default();
            let image = fs.crash(k, CrashMode::Random);
            let probe = image.crash(0, CrashMode::KeepAll);
            let _ = recover_dump(probe.clone()).await;
            for j in 0..probe.ops() {
                for kind in [FaultKind::Eio, FaultKind::EnospcForever] {
                    recovery_faults += 1;
                    let what = format!("{what}, recovery {kind:?} at op {j}");
                    recovery_refused += u64::from(recovery_fault(&image, &model, j, kind, &what, t).await);
                }
            }
        });
    }
    println!(
        "io-errors: {} faulted runs ({poisoned} poisoned the log), {recovery_faults} faulted recoveries \
         ({recovery_refused} refused cleanly), {} states checked, {} acked lost, {} phantom, {} panics in {:.1} s",
        totals.points,
        totals.states,
        totals.lost,
        totals.phantom,
        totals.panics,
        started.elapsed().as_secs_f64()
    );
    for f in totals.failures.iter().take(20) {
        println!("  {f}");
    }
    assert_eq!(
        (totals.lost, totals.phantom, totals.panics),
        (0, 0, 0),
        "{:#?}",
        totals.failures.iter().take(40).collect::<Vec<_>>()
    );
    assert!(poisoned > 0 && recovery_faults > 0 && recovery_refused > 0);
}

// ---------------------------------------------------------------------------------------------
// Corruption
// ---------------------------------------------------------------------------------------------

/// How one damaged image fared.
#[derive(Default, Debug)]
struct Corruption {
    cases: u64,
    /// Recovery refused the image.
    refused: u64,
    /// Recovery passed over the damaged newest snapshot to an older one (or the whole log).
    fell_back: u64,
    /// Recovered, and a read of the damaged data failed its checksum.
    failed_read: u64,
    /// Recovered and every answer right: the damage hit bytes nothing reads (zero tails,
    /// entries no state points at, older snapshots).
    unread: u64,
    /// Of those not found at start (not refused, no fall back), the ones the scrub reported.
    scrubbed: u64,
    /// Found by nothing: not at start, not by the scrub.
    undetected: u64,
    /// Recovered and some answer wrong.
    wrong: u64,
}

/// Recovers `image` and runs a scrub pass on it: the problems it reports.
async fn scrub_image(image: SimFs) -> Result<Vec<String>, String> {
    let shard = open_shard(image).await?;
    let report = super::scrub::pass(&shard).await;
    shard.log().map(|l| l.stop()).ok();
    Ok(report?.problems)
}

/// Damages a sealed segment or a snapshot of `image` with `rng`: a flipped bit, a zeroed
/// sector, or a sector copied from elsewhere. Returns what was done, or `None` if the damage
/// would change nothing.
fn damage(image: &SimFs, rng: &mut Rng) -> Option<String> {
    let dir = shard_dir();
    let names = image.list(&dir).ok()?;
    let mut segments: Vec<(u64, String)> = names
        .iter()
        .filter_map(|n| crate::log::format::parse_segment_file_name(n).map(|l| (l, n.clone())))
        .collect();
    segments.sort();
    segments.pop(); // the active segment: its unsynced tail is the crash tests' business
    let snapshots: Vec<String> = names
        .iter()
        .filter(|n| crate::snapshot::file::parse_file_name(n).is_some())
        .cloned()
        .collect();
    let targets: Vec<String> = segments.into_iter().map(|(_, n)| n).chain(snapshots).collect();
    let target = rng.pick(&targets).clone();
    let path = dir.join(&target);
    let bytes = image.file_bytes(&path)?;
    // Damage where the file holds data: its bytes up to the last nonzero one.
    let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
    if used == 0 {
        return None;
    }
    let at = rng.below(used);
    let sector = at / 512 * 512;
    let end = (sector + 512).min(bytes.len() as u64);
    match rng.below(3) {
        0 => {
            let bit = rng.below(8);
            image.corrupt(&path, at, 1 << bit).ok()?;
            Some(format!("{target}: bit {bit} of byte {at} flipped"))
        }
        1 => {
            let old = &bytes[sector as usize..end as usize];
            if old.iter().all(|&b| b == 0) {
                return None;
            }
            image.overwrite(&path, sector, &vec![0; old.len()]).ok()?;
            Some(format!("{target}: sector at {sector} zeroed"))
        }
        _ => {
            let from_name = rng.pick(&targets).clone();
            let from = image.file_bytes(&dir.join(&from_name))?;
            let from_used = from.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1) as u64;
            let src = rng.below(from_used.max(1)) / 512 * 512;
            let len = (end - sector).min(from.len() as u64 - src) as usize;
            let block = &from[src as usize..src as usize + len];
            if block == &bytes[sector as usize..sector as usize + len] {
                return None;
            }
            image.overwrite(&path, sector, block).ok()?;
            Some(format!(
                "{target}: sector at {sector} overwritten by {from_name}'s at {src}"
            ))
        }
    }
}

#[test]
fn corrupted_segments_and_snapshots_are_detected_and_never_served() {
    let cases = env("FLO_CORRUPTION_CASES", 400);
    let started = crate::clock::Stopwatch::start();
    let mut totals = Totals::default();
    let mut c = Corruption::default();
    for sc in LONG_SCENARIOS {
        guarded(&format!("{sc} corruption"), &mut totals, async |t: &mut Totals| {
            let (fs, run) = life(sc, |_, _| {}).await;
            let run = run.expect("a fresh disk opens");
            let model = run.model.borrow().clone();
            drop(run);
            let base = fs.crash(0, CrashMode::DropAll);
            let (_, from) = recover_dump(base.crash(0, CrashMode::KeepAll))
                .await
                .expect("the undamaged image recovers");
            let mut rng = Rng(sc.seed + 99);
            let mut done = 0;
            while done < cases / LONG_SCENARIOS.len() as u64 {
                let image = base.crash(0, CrashMode::KeepAll);
                let Some(what) = damage(&image, &mut rng) else {
                    continue;
                };
                done += 1;
                c.cases += 1;
                let what = format!("{sc}, {what}");
                let found_at_start = match recover_dump(image.clone()).await {
                    Err(e) if e.starts_with("read:") => {
                        c.failed_read += 1;
                        false
                    }
                    Err(_) => {
                        c.refused += 1;
                        true
                    }
                    Ok((d, at)) => {
                        let found = check(&model, &d);
                        if !found.lost.is_empty() || !found.phantom.is_empty() {
                            c.wrong += 1;
                        }
                        if at != from {
                            c.fell_back += 1;
                        } else if found.lost.is_empty() && found.phantom.is_empty() {
                            c.unread += 1;
                        }
                        t.record(&what, &found.lost, &found.phantom);
                        at != from
                    }
                };
                if !found_at_start {
                    match scrub_image(image.clone()).await {
                        Ok(problems) if !problems.is_empty() => c.scrubbed += 1,
                        Ok(_) => {
                            c.undetected += 1;
                            t.failures.push(format!("{what}: found by nothing"));
                        }
                        Err(e) => {
                            c.undetected += 1;
                            t.failures.push(format!("{what}: the scrub's recovery failed: {e}"));
                        }
                    }
                }
            }
        });
    }
    println!(
        "corruption: {} damaged images: {} refused at start, {} fell back to an older snapshot, {} failed \
         the read of the damaged data, {} damaged only bytes nothing reads; the scrub reported {} of the {} not \
         found at start, {} found by nothing; {} wrong answers; {} panics in {:.1} s",
        c.cases,
        c.refused,
        c.fell_back,
        c.failed_read,
        c.unread,
        c.scrubbed,
        c.scrubbed + c.undetected,
        c.undetected,
        c.wrong,
        totals.panics,
        started.elapsed().as_secs_f64()
    );
    for f in totals.failures.iter().take(20) {
        println!("  {f}");
    }
    assert_eq!(
        (c.wrong, c.undetected, totals.panics),
        (0, 0, 0),
        "{:#?}",
        totals.failures
    );
    // Not vacuous: damage was found at start (a damaged newest snapshot passed over) and on
    // reads of damaged values.
    assert!(c.fell_back > 0 && c.failed_read > 0 && c.scrubbed > 0, "{c:?}");
}
