use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::super::super::entry::*;
use super::super::{Payload, Queue};
use super::*;
use crate::config::Durability;
use crate::log::format::{EntryRef, SEGMENT_HEADER_BYTES};
use crate::log::metrics::LogMetrics;
use crate::log::sim::{CrashMode, SimFs};
use crate::log::{Log, LogOptions};
use crate::machine::{At, Machine};
use crate::snapshot::codec::{Dec, Enc};
use crate::test_rng::Rng;

/// The log entry type of a copy (`format-spec/log.md`).
const RELOCATED: u16 = 2;
/// The `max_deliveries` leases record.
const MAX_DELIVERIES: u32 = 2;
/// The first segment, the one compacted.
const VICTIM: u64 = 1;
/// A lease or delay that does not run out during a test.
const LONG: u64 = 1_000_000;
const A: &str = "app";
const B: &str = "billing";
const JOBS: &str = "jobs";
const MAIL: &str = "mail";
const STALE: &str = "stale";
const PART: &str = "partial";
const FILL: &str = "filler";

/// The body of a copy of the entry of `entry_type` with `body` at `from`.
fn copy_body(from: (u64, u64), entry_type: u16, body: &[u8]) -> Vec<u8> {
    crate::log::relocated::encode(from.0, from.1, entry_type, body)
}

/// (from, original type, original body) of a copy's body.
type Uncopied<'a> = ((u64, u64), u16, &'a [u8]);

fn uncopy(b: &[u8]) -> Result<Uncopied<'_>, String> {
    let r = crate::log::relocated::decode(b)?;
    Ok(((r.from_segment, r.from_offset), r.entry_type, r.body))
}

/// A recovered entry applied as the shard replays it: a copy through `relocate`.
fn replay_entry(store: &mut QueueStore, e: &EntryRef<'_>, pos: Position) -> Result<(), String> {
    if e.entry_type == RELOCATED {
        let (from, t, body) = uncopy(e.body)?;
        return store.relocate(from, &pos, t, body).map(drop);
    }
    store.apply(e, At::Placed(pos)).map(drop).map_err(|c| c.0)
}

fn opts() -> LogOptions {
    LogOptions {
        shard_id: 0,
        segment_bytes: 1024 * 1024,
        batch_max_bytes: 512 * 1024,
        durability: Durability::Sync,
        flush_interval: Duration::from_millis(5),
        commit_wait: Duration::ZERO,
        repair: false,
    }
}

fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
}

/// Opens the log on `fs`, replaying into `store` its entries after LSN `after`, and starts
/// its flusher.
async fn open_log(fs: SimFs, store: &mut QueueStore, after: u64) -> (Rc<Log<SimFs>>, monoio::task::JoinHandle<()>) {
    let metrics = Arc::new(LogMetrics::default());
    let (log, _) = crate::log::open(fs, PathBuf::from("/data/shard-000"), opts(), metrics, 0, |e, pos| {
        if e.lsn <= after {
            return Ok(());
        }
        replay_entry(store, e, pos)
    })
    .await
    .expect("open the log");
    let log = Rc::new(log);
    let flusher = monoio::spawn(log.clone().run_flusher());
    (log, flusher)
}

/// A shard driving its store as `exec.rs` does, on a real log on the simulated disk.
struct Shard {
    log: Rc<Log<SimFs>>,
    store: QueueStore,
    now: u64,
}

impl Shard {
    /// Appends an entry and applies it at once, as the engine's `propose` does (an entry
    /// with payloads is settled by the caller).
    fn apply(&mut self, kind: u16, body: &[u8]) -> (crate::log::Ticket, Option<super::super::QueuePending>) {
        let t = self.log.append(kind, body).expect("append");
        let e = EntryRef {
            lsn: t.lsn,
            entry_type: kind,
            flags: 0,
            body,
        };
        let (_, pending) = self.store.apply(&e, At::Pending(t.lsn)).expect("apply");
        (t, pending)
    }

    /// Time moves to `at` (never back): every queue whose leases or delays ran out by then
    /// gets a `TICK`, as the timer makes them.
    fn tick(&mut self, at: u64) -> u64 {
        self.now = self.now.max(at).max(self.store.clock_ms());
        let now = self.now;
        let mut keys = self.store.keys();
        keys.sort();
        for (ns, q) in keys {
            if self
                .store
                .get(&ns, &q)
                .and_then(|x| x.next_due())
                .is_some_and(|d| d <= now)
            {
                let h = Head {
                    namespace: &ns,
                    name: &q,
                    at_ms: now,
                };
                self.apply(ENTRY_QUEUE_TICK, &encode_op(&h, None));
            }
        }
        now
    }

    fn head<'a>(&mut self, ns: &'a str, q: &'a str) -> Head<'a> {
        let at_ms = self.tick(self.now);
        Head {
            namespace: ns,
            name: q,
            at_ms,
        }
    }

    /// Enqueues (priority, delay, dedup key, payload)s; returns their seqs and the entry's
    /// place once it is durable and settled.
    async fn enqueue(&mut self, ns: &str, q: &str, items: &[(u8, u64, &str, Vec<u8>)]) -> (Vec<u64>, Position) {
        let h = self.head(ns, q);
        let next = self.store.get(ns, q).map_or(1, Queue::next_seq);
        let mut msgs: Vec<NewMessage<'_>> = (items.iter().enumerate())
            .map(|(i, (priority, delay, key, payload))| NewMessage {
                seq: next + i as u64,
                visible_at_ms: if *delay > 0 { h.at_ms + delay } else { 0 },
                priority: *priority,
                dedup_key: key,
                payload,
                payload_offset: 0,
            })
            .collect();
        let body = encode_enqueue(&h, &mut msgs);
        let (ticket, pending) = self.apply(ENTRY_QUEUE_ENQUEUE, &body);
        let pos = ticket.await.expect("durable");
        Machine::settle(&mut self.store, pending.expect("an enqueue settles"), &pos);
        (msgs.iter().map(|m| m.seq).collect(), pos)
    }

    /// An operation entry on `seqs`, applied at once (durable later).
    fn op(&mut self, ns: &str, q: &str, kind: u16, time_ms: u64, flags: u32, seqs: &[u64]) {
        let h = self.head(ns, q);
        let op = Op {
            time_ms,
            flags,
            seqs: seqs.to_vec(),
        };
        self.apply(kind, &encode_op(&h, Some(&op)));
    }

    fn lease(&mut self, ns: &str, q: &str, count: usize, visibility: u64) -> Vec<u64> {
        let now = self.tick(self.now);
        let seqs = (self.store.get_mut(ns, q))
            .map(|x| x.top_ready(count))
            .unwrap_or_default();
        if !seqs.is_empty() {
            self.op(ns, q, ENTRY_QUEUE_LEASE, now + visibility, MAX_DELIVERIES, &seqs);
        }
        seqs
    }

    fn ack(&mut self, ns: &str, q: &str, seqs: &[u64]) {
        self.op(ns, q, ENTRY_QUEUE_ACK, 0, 0, seqs);
    }

    fn purge(&mut self, ns: &str, q: &str) -> u64 {
        let h = self.head(ns, q);
        let t = self
            .log
            .append(ENTRY_QUEUE_PURGE, &encode_op(&h, None))
            .expect("append");
        let e = EntryRef {
            lsn: t.lsn,
            entry_type: ENTRY_QUEUE_PURGE,
            flags: 0,
            body: &encode_op(&h, None),
        };
        self.store.apply(&e, At::Pending(t.lsn)).expect("apply").0.purged
    }

    async fn durable(&self) {
        let last = self.log.next_lsn() - 1;
        self.log.wait_durable(last).await.expect("durable");
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A held message's payload as a reader gets it: its place, and its bytes read through
/// `Log::read_entry` (a copy reads as its original).
fn payload(s: &QueueStore, log: &Log<SimFs>, q: &Queue, seq: u64) -> (Option<(u64, u64)>, Vec<u8>) {
    match q.payload(seq, s.segments()).expect("a held message") {
        Payload::Pending(b) => (None, b.to_vec()),
        Payload::At {
            segment,
            offset,
            rel,
            len,
        } => {
            let e = log.read_entry(segment, offset).expect("read the entry");
            assert_eq!(e.entry_type, ENTRY_QUEUE_ENQUEUE, "message {seq} at {segment}/{offset}");
            let b = e.body()[rel as usize..(rel + len) as usize].to_vec();
            (Some((segment, offset)), b)
        }
    }
}

/// Everything a client can see of a store (payloads read from `log`), and with `places`
/// where each payload is read from.
fn observe(s: &QueueStore, log: &Log<SimFs>, places: bool) -> String {
    let mut out = String::new();
    writeln!(out, "clock {}", s.clock_ms).unwrap();
    let mut spaces: Vec<String> = s.counts().into_keys().collect();
    spaces.sort();
    for ns in spaces {
        for name in s.names(&ns) {
            let q = s.get(&ns, &name).unwrap();
            writeln!(
                out,
                "{ns}/{name}: {:?} next {} last lsn {} held {} peek {:?} dlq {:?} expired {:?} due {:?}",
                q.stats(&name),
                q.next_seq(),
                q.last_lsn,
                q.slots.len(),
                q.peek(1000),
                q.dlq(1000),
                q.expired(),
                q.next_due()
            )
            .unwrap();
            for seq in 1..q.next_seq() {
                let Some(m) = q.msg(seq) else { continue };
                let (at, b) = payload(s, log, q, seq);
                write!(
                    out,
                    "  {seq} {:?} prio {} deliveries {} time {} enqueued {} last {} payload {}/{:016x}",
                    m.state,
                    m.priority,
                    m.delivery_count,
                    m.time_ms,
                    m.enqueued_at_ms,
                    m.last_lease,
                    b.len(),
                    fnv(&b)
                )
                .unwrap();
                if places {
                    write!(out, " at {at:?} copy {}", m.relocated).unwrap();
                }
                out.push('\n');
            }
            let mut keys: Vec<_> = q.dedup.iter().collect();
            keys.sort();
            for (k, v) in keys {
                writeln!(out, "  key {k} {v:?}").unwrap();
            }
        }
    }
    out
}

/// Dead bytes per segment (by first LSN), those with some.
fn dead(s: &QueueStore) -> BTreeMap<u64, u64> {
    let t = s.segments();
    (t.first_lsn.iter().copied().zip(t.dead.iter().copied()))
        .filter(|&(_, d)| d > 0)
        .collect()
}

/// A section, its placeholders and its live bytes per segment.
type Encoded = (Vec<u8>, Vec<(usize, u64)>, BTreeMap<u64, u64>);

fn encode(s: &QueueStore) -> Encoded {
    let mut e = Enc::new();
    s.snapshot(&mut e);
    e.finish()
}

fn restore(b: &[u8]) -> QueueStore {
    let mut d = Dec::new(b);
    let s = QueueStore::decode(&mut d, None).expect("restore");
    d.done("queue section").expect("the whole section");
    s
}

/// (seq, record bytes) of each message of an ENQUEUE body, and its queue.
fn records(body: &[u8]) -> (String, String, Vec<(u64, u64)>) {
    let (h, _, msgs) = decode_any_enqueue(ENTRY_QUEUE_ENQUEUE, body).expect("an ENQUEUE body");
    let recs = (msgs.iter())
        .map(|m| (m.seq, MESSAGE_RECORD_BYTES + m.payload.len() as u64))
        .collect();
    (h.namespace.to_string(), h.name.to_string(), recs)
}

fn bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Fills the victim segment with entries of several queues whose messages end in every state
/// (some acked or purged already, so that some entries are fully gone), then rolls to the
/// next segment. Returns the places of the ENQUEUE entries by name.
async fn fill_victim(sh: &mut Shard, rng: &mut Rng) -> BTreeMap<&'static str, Position> {
    let mut p = |n: usize| bytes(rng, n);
    let mut at = BTreeMap::new();
    // app/jobs 1..=5: 2 leased, 5 expired (its second lease ran out), 1 dead (nacked to the
    // dead-letter queue), 3 ready, 4 delayed.
    let items = [
        (5, 0, "", p(10)),
        (1, 0, "k1", p(300)),
        (5, 0, "", p(0)),
        (0, LONG, "", p(2000)),
        (2, 0, "k2", p(77)),
    ];
    let (seqs, pos) = sh.enqueue(A, JOBS, &items).await;
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    at.insert("jobs 1..=5", pos);
    sh.tick(sh.now + 10);
    assert_eq!(sh.lease(A, JOBS, 1, LONG), [2]);
    assert_eq!(sh.lease(A, JOBS, 1, 50), [5]);
    sh.tick(sh.now + 60);
    assert_eq!(sh.lease(A, JOBS, 1, 50), [5], "its last lease");
    sh.tick(sh.now + 60);
    assert_eq!(sh.lease(A, JOBS, 1, LONG), [1]);
    sh.op(A, JOBS, ENTRY_QUEUE_NACK, sh.now, FLAG_TO_DLQ, &[1]);
    // app/jobs 6, 7: both acked, the entry fully gone.
    let (seqs, pos) = sh.enqueue(A, JOBS, &[(0, 0, "", p(40)), (0, 0, "", p(41))]).await;
    at.insert("jobs 6, 7", pos);
    assert_eq!(sh.lease(A, JOBS, 2, LONG), seqs);
    sh.ack(A, JOBS, &seqs);
    // app/jobs 8, 9: 8 acked, 9 ready.
    let (seqs, pos) = sh.enqueue(A, JOBS, &[(0, 0, "", p(50)), (9, 0, "k9", p(500))]).await;
    at.insert("jobs 8, 9", pos);
    assert_eq!(sh.lease(A, JOBS, 1, LONG), [seqs[0]]);
    sh.ack(A, JOBS, &seqs[..1]);
    // app/mail 1..=3: 1 dead-lettered by the timer then requeued, 2 nacked with a delay, 3
    // leased and touched.
    let (_, pos) = sh
        .enqueue(A, MAIL, &[(0, 0, "", p(5)), (1, 0, "", p(6)), (2, 0, "", p(7))])
        .await;
    at.insert("mail 1..=3", pos);
    for _ in 0..2 {
        assert_eq!(sh.lease(A, MAIL, 1, 50), [1]);
        sh.tick(sh.now + 60);
    }
    assert_eq!(sh.store.get(A, MAIL).unwrap().expired(), [1]);
    sh.op(A, MAIL, ENTRY_QUEUE_DEAD, sh.now, 0, &[1]);
    sh.op(A, MAIL, ENTRY_QUEUE_REQUEUE, 0, 0, &[1]);
    assert_eq!(sh.lease(A, MAIL, 3, LONG), [1, 2, 3]);
    sh.op(A, MAIL, ENTRY_QUEUE_NACK, sh.now + LONG, 0, &[2]);
    sh.op(A, MAIL, ENTRY_QUEUE_NACK, 0, 0, &[1]);
    sh.op(A, MAIL, ENTRY_QUEUE_TOUCH, sh.now + 2 * LONG, 0, &[3]);
    // billing/jobs: 2 leased; 1 and the whole next entry (3) purged.
    let (_, pos) = sh.enqueue(B, JOBS, &[(5, 0, "x", p(20)), (1, 0, "", p(21))]).await;
    at.insert("billing 1, 2", pos);
    let (_, pos) = sh.enqueue(B, JOBS, &[(5, 0, "", p(22))]).await;
    at.insert("billing 3", pos);
    assert_eq!(sh.lease(B, JOBS, 1, LONG), [2]);
    assert_eq!(sh.purge(B, JOBS), 2);
    // app/stale 1, 2 and app/partial 1..=3: leased (1, 2) and ready (3); acked while their
    // copies are being written.
    let (_, pos) = sh.enqueue(A, STALE, &[(0, 0, "", p(30)), (0, 0, "", p(31))]).await;
    at.insert("stale 1, 2", pos);
    assert_eq!(sh.lease(A, STALE, 2, LONG), [1, 2]);
    let (_, pos) = sh
        .enqueue(A, PART, &[(0, 0, "", p(32)), (0, 0, "", p(33)), (1, 0, "", p(34))])
        .await;
    at.insert("partial 1..=3", pos);
    assert_eq!(sh.lease(A, PART, 2, LONG), [1, 2]);
    // Large fillers until the segment rolls; the last in the victim stays held.
    let mut filler = 0;
    loop {
        filler += 1;
        let (_, pos) = sh
            .enqueue(A, FILL, &[((filler == 6) as u8 * 9, 0, "", p(150 * 1024))])
            .await;
        if pos.segment != VICTIM {
            break;
        }
        if filler == 6 {
            at.insert("filler 6", pos);
        }
    }
    assert_eq!(filler, 7, "six fillers fill the victim");
    let leased = sh.lease(A, FILL, 6, LONG);
    assert_eq!(leased, [1, 2, 3, 4, 5, 7]);
    sh.ack(A, FILL, &leased);
    sh.durable().await;
    assert!(at.values().all(|p| p.segment == VICTIM));
    at
}

/// An entry of the victim segment.
struct Found {
    lsn: u64,
    from: (u64, u64),
    kind: u16,
    body: Vec<u8>,
}

fn walk_victim(log: &Log<SimFs>) -> Vec<Found> {
    let (first, used) = log.segments()[0];
    assert_eq!(first, VICTIM);
    let end = SEGMENT_HEADER_BYTES as u64 + used;
    let entries = log.segment_entries(VICTIM).expect("the victim");
    let mut out = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES as u64;
    while offset < end {
        let (e, next) = entries.entry(offset).expect("an entry");
        out.push(Found {
            lsn: e.lsn,
            from: (VICTIM, offset),
            kind: e.entry_type,
            body: e.body.to_vec(),
        });
        offset = next;
    }
    out
}

/// A held message (namespace, queue, seq), its place, and whether that is a copy.
type Held = ((String, String, u64), (u64, u64), bool);

/// Each held message's place, over every queue.
fn places(s: &QueueStore) -> Vec<Held> {
    let mut out = Vec::new();
    for (ns, name) in s.keys() {
        let q = s.get(&ns, &name).unwrap();
        for seq in 1..q.next_seq() {
            let Some(m) = q.msg(seq) else { continue };
            let Some(Payload::At { segment, offset, .. }) = q.payload(seq, s.segments()) else {
                panic!("{ns}/{name} {seq} is not settled");
            };
            out.push(((ns.to_string(), name.to_string(), seq), (segment, offset), m.relocated));
        }
    }
    out.sort();
    out
}

#[test]
fn compaction_moves_every_held_message_to_copies_and_replay_agrees() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let (log, flusher) = open_log(fs.clone(), &mut QueueStore::default(), 0).await;
        let mut sh = Shard {
            log,
            store: QueueStore::default(),
            now: 1_700_000_000_000,
        };
        let mut rng = Rng(0xc0_4ac7);
        let at = fill_victim(&mut sh, &mut rng).await;
        assert!(sh.log.segments().len() >= 2, "the victim is sealed");

        // The snapshot the compaction runs after: the victim is wholly before it.
        let snapshot_lsn = sh.log.durable_lsn();
        let (section, pending, _) = encode(&sh.store);
        assert!(pending.is_empty());
        let victim = walk_victim(&sh.log);
        assert!(victim.iter().all(|f| f.lsn <= snapshot_lsn));

        // What is needed: exactly the ENQUEUE entries with a message still held.
        let mut needed = Vec::new();
        for f in &victim {
            let want = f.kind == ENTRY_QUEUE_ENQUEUE && {
                let (ns, q, recs) = records(&f.body);
                let queue = sh.store.get(&ns, &q).unwrap();
                recs.iter().any(|&(seq, _)| queue.msg(seq).is_some())
            };
            assert_eq!(sh.store.needs(f.from, f.kind, &f.body), want, "entry {}", f.lsn);
            if want {
                needed.push(f);
            }
        }
        let named = |name: &str| (VICTIM, at[name].offset);
        let needed_at: Vec<(u64, u64)> = needed.iter().map(|f| f.from).collect();
        for name in [
            "jobs 1..=5",
            "jobs 8, 9",
            "mail 1..=3",
            "billing 1, 2",
            "stale 1, 2",
            "partial 1..=3",
            "filler 6",
        ] {
            assert!(needed_at.contains(&named(name)), "{name} is needed");
        }
        for name in ["jobs 6, 7", "billing 3"] {
            assert!(!needed_at.contains(&named(name)), "{name}: its messages are gone");
        }
        assert_eq!(needed.len(), 7, "no operation entry, no acked filler");
        assert!(victim.iter().any(|f| f.kind != ENTRY_QUEUE_ENQUEUE));

        // The copies, at the tail; meanwhile app/stale's messages are acked and so is the
        // first of app/partial.
        let tickets: Vec<_> = (needed.iter().copied())
            .map(|f| {
                let t = sh.log.append(RELOCATED, &copy_body(f.from, f.kind, &f.body));
                (t.expect("append a copy"), f)
            })
            .collect();
        sh.ack(A, STALE, &[1, 2]);
        sh.ack(A, PART, &[1]);
        sh.durable().await;
        let before = observe(&sh.store, &sh.log, false);
        let dead_before = dead(&sh.store);
        let mut copies = Vec::new();
        for (t, f) in tickets {
            let to = t.await.expect("the copy is durable");
            let moved = sh.store.relocate(f.from, &to, f.kind, &f.body).expect("relocate");
            assert_eq!(moved, f.from != named("stale 1, 2"), "entry {}", f.lsn);
            copies.push((to, f, moved));
        }

        // Clients see what they saw, payloads included, all read from the copies.
        assert_eq!(observe(&sh.store, &sh.log, false), before);
        for (key, (segment, offset), relocated) in places(&sh.store) {
            assert_ne!(segment, VICTIM, "{key:?} reads from the victim");
            assert!(
                relocated
                    == copies
                        .iter()
                        .any(|(to, ..)| (to.segment, to.offset) == (segment, offset))
            );
        }
        assert!(
            places(&sh.store).iter().all(|p| p.2),
            "every held message was in the victim"
        );
        for f in &victim {
            assert!(!sh.store.needs(f.from, f.kind, &f.body), "entry {}", f.lsn);
        }
        for (to, f, moved) in &copies {
            assert_eq!(sh.store.needs((to.segment, to.offset), f.kind, &f.body), *moved);
        }

        // Dead bytes: every record of the victim; in the copies' segments, a copy with no
        // message left whole, the others' records of messages gone.
        let enqueue_records = |f: &Found| records(&f.body).2.iter().map(|r| r.1).sum::<u64>();
        let all: u64 = (victim.iter())
            .filter(|f| f.kind == ENTRY_QUEUE_ENQUEUE)
            .map(enqueue_records)
            .sum();
        let dead_after = dead(&sh.store);
        assert_eq!(dead_after[&VICTIM], all, "the queues need nothing of the victim");
        let mut want = dead_before.clone();
        want.insert(VICTIM, all);
        for (to, f, moved) in &copies {
            let d = if *moved {
                let (ns, q, recs) = records(&f.body);
                let queue = sh.store.get(&ns, &q).unwrap();
                (recs.iter())
                    .filter(|&&(seq, _)| queue.msg(seq).is_none())
                    .map(|r| r.1)
                    .sum()
            } else {
                stored_bytes(RELOCATION_BYTES + f.body.len()) as u64
            };
            *want.entry(to.segment).or_default() += d;
        }
        want.retain(|_, d| *d > 0);
        assert_eq!(dead_after, want);
        let stale_copy = copies.iter().find(|c| !c.2).unwrap();
        let stale_overhead =
            stored_bytes(RELOCATION_BYTES + stale_copy.1.body.len()) as u64 - enqueue_records(stale_copy.1);

        // A snapshot of the compacted store restores exactly; its live bytes are the copies'
        // stored sizes (each listed entry's last message is held).
        let (bytes, pending, live) = encode(&sh.store);
        assert!(pending.is_empty());
        let restored = restore(&bytes);
        assert!(encode(&restored).0 == bytes, "canonical");
        assert_eq!(observe(&restored, &sh.log, true), observe(&sh.store, &sh.log, true));
        assert_eq!(dead(&restored), dead_after);
        let mut truth: BTreeMap<u64, u64> = BTreeMap::new();
        let mut listed: Vec<(u64, u64)> = places(&sh.store).iter().map(|p| p.1).collect();
        listed.sort();
        listed.dedup();
        for (segment, offset) in listed {
            let entries = sh.log.segment_entries(segment).unwrap();
            let (kind, _, next) = entries.peek(offset).unwrap();
            assert_eq!(kind, ENTRY_QUEUE_ENQUEUE, "a copy reads as its original");
            *truth.entry(segment).or_default() += next - offset;
        }
        assert_eq!(live, truth, "live bytes per segment");

        // Acking a relocated message counts its record dead in its copy's segment.
        let (segment, _) = payload(&sh.store, &sh.log, sh.store.get(A, JOBS).unwrap(), 2)
            .0
            .unwrap();
        let record = MESSAGE_RECORD_BYTES + 300;
        sh.ack(A, JOBS, &[2]);
        let mut want = dead_after.clone();
        *want.entry(segment).or_default() += record;
        assert_eq!(dead(&sh.store), want);
        sh.durable().await;

        // A replay of the whole log, and one from the snapshot taken before the compaction,
        // give the live state; the stale copy is the one difference in dead bytes.
        sh.log.stop();
        flusher.await;
        let image = fs.crash(7, CrashMode::KeepAll);
        let mut full = QueueStore::default();
        let (log, _f1) = open_log(image.clone(), &mut full, 0).await;
        let mut resumed = restore(&section);
        let (_log2, _f2) = open_log(image, &mut resumed, snapshot_lsn).await;
        for s in [&full, &resumed] {
            assert_eq!(s.clock_ms, sh.store.clock_ms, "the clock comes from the entries");
        }
        let live_view = observe(&sh.store, &log, true);
        assert_eq!(observe(&full, &log, true), live_view);
        assert_eq!(observe(&resumed, &log, true), live_view);
        assert!(
            encode(&resumed).0 == encode(&full).0,
            "from the snapshot as from the start"
        );
        let mut want = dead(&sh.store);
        *want.get_mut(&stale_copy.0.segment).unwrap() -= stale_overhead;
        assert_eq!(
            dead(&full),
            want,
            "replay counts the stale copy's records, not its overhead"
        );
        for f in &victim {
            assert!(!full.needs(f.from, f.kind, &f.body));
        }

        // And they serve the same from here on.
        let mut drained = Vec::new();
        for s in [&mut sh.store, &mut full, &mut resumed] {
            let mut keys = s.keys();
            keys.sort();
            let got: Vec<_> = (keys.into_iter())
                .map(|(ns, q)| {
                    let seqs = s.get_mut(&ns, &q).unwrap().pop_ready(1000);
                    (ns, q, seqs)
                })
                .collect();
            drained.push(got);
        }
        assert!(drained[0].iter().any(|d| !d.2.is_empty()));
        assert_eq!(drained[1], drained[0]);
        assert_eq!(drained[2], drained[0]);
    });
}

// ---- Small stores, no log.

fn head<'a>(ns: &'a str, q: &'a str) -> Head<'a> {
    Head {
        namespace: ns,
        name: q,
        at_ms: 100,
    }
}

fn pos(lsn: u64, segment: u64, offset: u64) -> Position {
    Position { lsn, segment, offset }
}

/// An ENQUEUE of `payloads` to app/jobs from seq `first`, applied to `s` at `at` (pending
/// if `None`); its body.
fn enqueue(s: &mut QueueStore, first: u64, payloads: &[&[u8]], at: Option<Position>) -> Vec<u8> {
    let mut msgs: Vec<NewMessage<'_>> = (payloads.iter().enumerate())
        .map(|(i, p)| NewMessage {
            seq: first + i as u64,
            visible_at_ms: 0,
            priority: 0,
            dedup_key: "",
            payload: p,
            payload_offset: 0,
        })
        .collect();
    let body = encode_enqueue(&head(A, JOBS), &mut msgs);
    let at = at.map_or(At::Pending(first), At::Placed);
    s.apply_enqueue(A, JOBS, 100, first, LEGACY_DEDUP_WINDOW_MS, &msgs, at)
        .unwrap();
    body
}

fn op(s: &mut QueueStore, kind: u16, seqs: &[u64]) -> Vec<u8> {
    let o = Op {
        time_ms: if kind == ENTRY_QUEUE_LEASE { 500 } else { 0 },
        flags: 0,
        seqs: seqs.to_vec(),
    };
    if kind == ENTRY_QUEUE_LEASE {
        let popped = s.get_mut(A, JOBS).unwrap().pop_ready(seqs.len());
        assert_eq!(popped, seqs);
    }
    s.apply_op(kind, A, JOBS, 50, &o).unwrap();
    encode_op(&head(A, JOBS), Some(&o))
}

fn place_of(s: &QueueStore, seq: u64) -> (u64, u64) {
    match s.get(A, JOBS).unwrap().payload(seq, s.segments()) {
        Some(Payload::At { segment, offset, .. }) => (segment, offset),
        _ => panic!("message {seq} is not settled"),
    }
}

#[test]
fn only_enqueues_of_held_messages_at_that_place_are_needed() {
    let mut s = QueueStore::default();
    let p = pos(1, VICTIM, 64);
    let body = enqueue(&mut s, 1, &[b"one", b"two"], Some(p));
    let from = (VICTIM, 64);
    assert!(s.needs(from, ENTRY_QUEUE_ENQUEUE, &body));
    assert!(!s.needs((VICTIM, 128), ENTRY_QUEUE_ENQUEUE, &body), "another place");
    assert!(!s.needs((9, 64), ENTRY_QUEUE_ENQUEUE, &body), "a segment it never used");
    let lease = op(&mut s, ENTRY_QUEUE_LEASE, &[1, 2]);
    let ack = op(&mut s, ENTRY_QUEUE_ACK, &[1]);
    let purge = encode_op(&head(A, JOBS), None);
    for (kind, b) in [
        (ENTRY_QUEUE_LEASE, &lease),
        (ENTRY_QUEUE_ACK, &ack),
        (ENTRY_QUEUE_PURGE, &purge),
    ] {
        assert!(!s.needs((VICTIM, 200), kind, b), "type {kind}");
    }
    assert!(s.needs(from, ENTRY_QUEUE_ENQUEUE, &body), "2 is held");
    op(&mut s, ENTRY_QUEUE_ACK, &[2]);
    assert!(!s.needs(from, ENTRY_QUEUE_ENQUEUE, &body), "fully acked");
    let mut other = QueueStore::default();
    assert!(!other.needs(from, ENTRY_QUEUE_ENQUEUE, &body), "no such queue");
    assert!(
        s.needs(from, ENTRY_QUEUE_ENQUEUE, &body[..body.len() - 1]),
        "what cannot be judged is kept"
    );

    // Copies of entries nothing needs are dead at once, whole; bodies that do not decode
    // are errors.
    let to = pos(9, 9, 64);
    assert_eq!(other.relocate(from, &to, ENTRY_QUEUE_ENQUEUE, &body), Ok(false));
    assert_eq!(other.dead_bytes(), stored_bytes(24 + body.len()) as u64);
    assert_eq!(other.relocate(from, &to, ENTRY_QUEUE_ACK, &ack), Ok(false));
    assert_eq!(other.relocate(from, &to, ENTRY_QUEUE_PURGE, &purge), Ok(false));
    let dead = stored_bytes(24 + body.len()) + stored_bytes(24 + ack.len()) + stored_bytes(24 + purge.len());
    assert_eq!(other.dead_bytes(), dead as u64);
    assert!(other.relocate(from, &to, ENTRY_QUEUE_ENQUEUE, &body[1..]).is_err());
    assert!(other.relocate(from, &to, ENTRY_QUEUE_ACK, &body).is_err());
    assert!(other.relocate(from, &to, 100, &body).is_err());
    assert_eq!(other.dead_bytes(), dead as u64, "errors count nothing");
}

#[test]
fn a_message_not_settled_yet_is_needed_and_stays_at_its_copy() {
    // The ENQUEUE is durable at p but the shard has not settled it when the copy is made.
    let mut s = QueueStore::default();
    enqueue(&mut s, 1, &[b"earlier"], Some(pos(1, VICTIM, 64)));
    let body = enqueue(&mut s, 2, &[b"a", b"bb"], None);
    let p = pos(2, VICTIM, 128);
    assert!(s.needs((p.segment, p.offset), ENTRY_QUEUE_ENQUEUE, &body));
    let to = pos(40, 30, 64);
    assert_eq!(
        s.relocate((p.segment, p.offset), &to, ENTRY_QUEUE_ENQUEUE, &body),
        Ok(true)
    );
    s.settle_enqueue(A, JOBS, &[2, 3], &p);
    assert_eq!((place_of(&s, 2), place_of(&s, 3)), ((30, 64), (30, 64)));
    assert_eq!(place_of(&s, 1), (VICTIM, 64));
    assert_eq!(dead(&s), BTreeMap::from([(VICTIM, 24 + 1 + 24 + 2)]));
    assert!(s.get(A, JOBS).unwrap().pending.is_empty());
}

#[test]
fn a_copy_is_compacted_again_as_its_original() {
    let mut s = QueueStore::default();
    let body = enqueue(&mut s, 1, &[b"one", b"two", b"three"], Some(pos(1, VICTIM, 64)));
    let records = 3 * 24 + 3 + 3 + 5;
    op(&mut s, ENTRY_QUEUE_LEASE, &[1]);
    op(&mut s, ENTRY_QUEUE_ACK, &[1]);
    let c1 = pos(20, 20, 640);
    assert_eq!(s.relocate((VICTIM, 64), &c1, ENTRY_QUEUE_ENQUEUE, &body), Ok(true));
    // 1's record was dead in the victim already; the rest move; 1's is dead in the copy.
    assert_eq!(dead(&s), BTreeMap::from([(VICTIM, records), (20, 24 + 3)]));
    assert!(!s.needs((VICTIM, 64), ENTRY_QUEUE_ENQUEUE, &body));
    assert!(s.needs((20, 640), ENTRY_QUEUE_ENQUEUE, &body));
    // The segment of the copy is compacted in turn.
    let c2 = pos(70, 70, 64);
    assert_eq!(s.relocate((20, 640), &c2, ENTRY_QUEUE_ENQUEUE, &body), Ok(true));
    assert_eq!(
        dead(&s),
        BTreeMap::from([(VICTIM, records), (20, records), (70, 24 + 3)])
    );
    assert_eq!((place_of(&s, 2), place_of(&s, 3)), ((70, 64), (70, 64)));
    // The snapshot names the newest copy, counted at its stored size.
    let (b, _, live) = encode(&s);
    assert_eq!(live, BTreeMap::from([(70, stored_bytes(24 + body.len()) as u64)]));
    let r = restore(&b);
    assert_eq!((place_of(&r, 2), place_of(&r, 3)), ((70, 64), (70, 64)));
    assert!(r.get(A, JOBS).unwrap().msg(2).unwrap().relocated);
    assert_eq!(dead(&r), dead(&s));
    // Acking a moved message counts its record in the copy's segment; state is untouched.
    let before = s.get(A, JOBS).unwrap().stats(JOBS);
    op(&mut s, ENTRY_QUEUE_LEASE, &[2]);
    op(&mut s, ENTRY_QUEUE_ACK, &[2]);
    assert_eq!(dead(&s)[&70], 24 + 3 + 24 + 3);
    let after = s.get(A, JOBS).unwrap().stats(JOBS);
    assert_eq!(
        (after.ready_count, after.total_acked),
        (before.ready_count - 1, before.total_acked + 1)
    );
}
