use std::fmt::Write as _;

use super::super::super::entry::*;
use super::super::{Payload, QueueOutput, QueuePending};
use super::*;
use crate::log::format::EntryRef;
use crate::machine::{At, Machine};
use crate::snapshot::codec::fill_place;

/// The `max_deliveries` leases record, and the dedup window enqueues carry.
const MAX_DELIVERIES: u32 = 2;
const DEDUP_WINDOW_MS: u64 = 1000;
/// Fake segments end here: an entry that would pass it starts the next segment.
const SEGMENT_END: u64 = 1024;
const A: &str = "app";
const B: &str = "billing";
const JOBS: &str = "jobs";
const MAIL: &str = "mail";

struct Rec {
    kind: u16,
    body: Vec<u8>,
    pos: Position,
}

/// An operation on messages as a client (or the timer, `Dead`) asks for it.
#[derive(Clone, Copy)]
enum Do {
    Ack,
    Nack { delay: u64 },
    NackToDlq,
    Touch { visibility: u64 },
    Dead,
    Requeue,
}

/// A shard driving its store as the engine does: each entry appended, applied at once (an
/// ADD as pending), settled once "durable"; the log is kept, at fake places, for replays.
struct Live {
    store: QueueStore,
    log: Vec<Rec>,
    /// ADD entries not settled yet: (LSN, what settling them needs).
    unsettled: Vec<(u64, QueuePending)>,
    segment: u64,
    offset: u64,
}

impl Live {
    fn new() -> Live {
        Live {
            store: QueueStore::default(),
            log: Vec::new(),
            unsettled: Vec::new(),
            segment: 1,
            offset: SEGMENT_HEADER_BYTES as u64,
        }
    }

    fn lsn(&self) -> u64 {
        self.log.len() as u64
    }

    fn pos(&self, lsn: u64) -> Position {
        self.log[lsn as usize - 1].pos
    }

    fn append(&mut self, kind: u16, body: Vec<u8>) -> u64 {
        let lsn = self.lsn() + 1;
        let stored = stored_bytes(body.len()) as u64;
        if self.offset + stored > SEGMENT_END && self.offset > SEGMENT_HEADER_BYTES as u64 {
            self.segment = lsn;
            self.offset = SEGMENT_HEADER_BYTES as u64;
        }
        let pos = Position {
            lsn,
            segment: self.segment,
            offset: self.offset,
        };
        self.offset += stored;
        self.log.push(Rec { kind, body, pos });
        lsn
    }

    /// Appends an entry and applies it at once, as the engine's `propose` does.
    fn apply(&mut self, kind: u16, body: Vec<u8>) -> QueueOutput {
        let lsn = self.append(kind, body);
        let r = &self.log[lsn as usize - 1];
        let e = EntryRef {
            lsn,
            entry_type: kind,
            flags: 0,
            body: &r.body,
        };
        let (out, pending) = self.store.apply(&e, At::Pending(lsn)).unwrap();
        if let Some(p) = pending {
            self.unsettled.push((lsn, p));
        }
        out
    }

    /// The ADD entries up to `lsn` are durable.
    fn settle(&mut self, lsn: u64) {
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsettled)
            .into_iter()
            .partition(|(l, _)| *l <= lsn);
        self.unsettled = rest;
        for (l, p) in done {
            let pos = self.pos(l);
            Machine::settle(&mut self.store, p, &pos);
        }
    }

    /// The queue clock at `at`, every queue whose leases or delays ran out by then ticked to
    /// it (the timer's `TICK` entries).
    fn now(&mut self, at: u64) -> u64 {
        let now = at.max(self.store.clock_ms());
        let mut keys = self.store.keys();
        keys.sort();
        for (ns, q) in keys {
            let due = self
                .store
                .get(&ns, &q)
                .and_then(|x| x.next_due())
                .is_some_and(|d| d <= now);
            if due {
                let h = Head {
                    namespace: &ns,
                    name: &q,
                    at_ms: now,
                };
                self.apply(ENTRY_QUEUE_TICK, encode_op(&h, None));
            }
        }
        now
    }

    /// Enqueues (priority, delay, dedup key, payload)s; a live key answers with its seq.
    fn enqueue(&mut self, ns: &str, q: &str, at: u64, items: &[(u8, u64, &str, &[u8])]) -> Vec<u64> {
        let now = self.now(at);
        let mut next = self.store.get(ns, q).map_or(1, Queue::next_seq);
        let (mut seqs, mut fresh) = (Vec::new(), Vec::new());
        for &(priority, delay, key, payload) in items {
            let hit = self.store.get(ns, q).and_then(|x| x.dedup_hit(key, now));
            if let Some(seq) = hit.filter(|_| !key.is_empty()) {
                seqs.push(seq);
                continue;
            }
            fresh.push(NewMessage {
                seq: next,
                visible_at_ms: if delay > 0 { now + delay } else { 0 },
                priority,
                dedup_key: key,
                payload,
                payload_offset: 0,
            });
            seqs.push(next);
            next += 1;
        }
        if !fresh.is_empty() {
            let h = Head {
                namespace: ns,
                name: q,
                at_ms: now,
            };
            self.apply(ENTRY_QUEUE_ADD, encode_add(&h, DEDUP_WINDOW_MS, &mut fresh));
        }
        seqs
    }

    fn entry(&mut self, ns: &str, q: &str, now: u64, kind: u16, op: &Op) {
        let h = Head {
            namespace: ns,
            name: q,
            at_ms: now,
        };
        self.apply(kind, encode_op(&h, Some(op)));
    }

    fn lease(&mut self, ns: &str, q: &str, at: u64, count: usize, visibility: u64) -> Vec<u64> {
        let now = self.now(at);
        let seqs = self
            .store
            .get_mut(ns, q)
            .map(|x| x.top_ready(count))
            .unwrap_or_default();
        if !seqs.is_empty() {
            let op = Op {
                time_ms: now + visibility,
                flags: MAX_DELIVERIES,
                seqs: seqs.clone(),
            };
            self.entry(ns, q, now, ENTRY_QUEUE_LEASE, &op);
        }
        seqs
    }

    /// An operation on those of `seqs` in the state it needs, as `exec.rs` makes them.
    fn op(&mut self, ns: &str, q: &str, at: u64, what: Do, seqs: &[u64]) -> Vec<u64> {
        let now = self.now(at);
        let (kind, want, time_ms, flags) = match what {
            Do::Ack => (ENTRY_QUEUE_ACK, State::Leased, 0, 0),
            Do::Nack { delay: 0 } => (ENTRY_QUEUE_NACK, State::Leased, 0, 0),
            Do::Nack { delay } => (ENTRY_QUEUE_NACK, State::Leased, now + delay, 0),
            Do::NackToDlq => (ENTRY_QUEUE_NACK, State::Leased, now, FLAG_TO_DLQ),
            Do::Touch { visibility } => (ENTRY_QUEUE_TOUCH, State::Leased, now + visibility, 0),
            Do::Dead => (ENTRY_QUEUE_DEAD, State::Expired, now, 0),
            Do::Requeue => (ENTRY_QUEUE_REQUEUE, State::Dead, 0, 0),
        };
        let queue = self.store.get(ns, q);
        let found: Vec<u64> = (seqs.iter().copied())
            .filter(|&s| queue.and_then(|x| x.msg(s)).is_some_and(|m| m.state == want))
            .collect();
        if !found.is_empty() {
            let op = Op {
                time_ms,
                flags,
                seqs: found.clone(),
            };
            self.entry(ns, q, now, kind, &op);
        }
        found
    }

    fn ack(&mut self, ns: &str, q: &str, at: u64, seqs: &[u64]) -> Vec<u64> {
        self.op(ns, q, at, Do::Ack, seqs)
    }

    /// The timer's DEAD entry for the messages whose last lease ran out.
    fn dead_letter(&mut self, ns: &str, q: &str, at: u64) -> Vec<u64> {
        self.now(at);
        let expired = self.store.get(ns, q).map(|x| x.expired().to_vec()).unwrap_or_default();
        self.op(ns, q, at, Do::Dead, &expired)
    }

    fn purge(&mut self, ns: &str, q: &str, at: u64) -> u64 {
        let now = self.now(at);
        let h = Head {
            namespace: ns,
            name: q,
            at_ms: now,
        };
        self.apply(ENTRY_QUEUE_PURGE, encode_op(&h, None)).purged
    }

    /// Step `i` of the scenario. Entries of earlier steps are durable when it starts; its
    /// own ENQUEUEs stay pending until the next step.
    fn step(&mut self, i: usize) {
        self.settle(self.lsn());
        match i {
            0 => {
                let got = self.enqueue(
                    A,
                    JOBS,
                    10,
                    &[
                        (5, 0, "", b"j1"),
                        (1, 0, "k1", b"j2"),
                        (5, 0, "", b"j3"),
                        (0, 300, "", b"j4, delayed"),
                        (2, 0, "k2", b"j5"),
                    ],
                );
                assert_eq!(got, [1, 2, 3, 4, 5]);
            }
            1 => {
                self.enqueue(A, MAIL, 20, &[(0, 0, "", b"m1"), (0, 0, "", b"m2")]);
                self.enqueue(B, JOBS, 20, &[(3, 0, "x", b"b1")]);
            }
            2 => assert_eq!(self.lease(A, JOBS, 30, 2, 100), [2, 5]),
            3 => {
                assert_eq!(self.ack(A, JOBS, 40, &[2]), [2], "a hole behind 1");
                let got = self.enqueue(A, JOBS, 40, &[(1, 0, "k1", b"dup"), (4, 0, "k3", b"j6")]);
                assert_eq!(got, [2, 6], "k1 is a duplicate of 2");
            }
            4 => {
                // 5's lease until 130 is now stale in the lease heap; so is acked 2's.
                assert_eq!(self.op(A, JOBS, 50, Do::Touch { visibility: 350 }, &[5]), [5]);
                assert_eq!(self.lease(A, MAIL, 50, 1, 50), [1]);
            }
            5 => {
                // m1's lease ran out at 100: its second delivery is its last.
                assert_eq!(self.lease(A, MAIL, 150, 2, 50), [1, 2]);
                assert!(self.store.get(A, MAIL).unwrap().msg(1).unwrap().last_lease);
            }
            6 => {
                self.now(250);
                let mail = self.store.get(A, MAIL).unwrap();
                assert_eq!((mail.expired(), mail.peek(10)), (&[1][..], vec![2]));
            }
            7 => {
                assert_eq!(self.dead_letter(A, MAIL, 260), [1]);
                assert_eq!(
                    self.op(A, JOBS, 270, Do::Nack { delay: 230 }, &[5]),
                    [5],
                    "delayed to 500"
                );
            }
            8 => assert_eq!(self.lease(A, JOBS, 320, 3, 1000), [4, 6, 1]),
            9 => {
                assert_eq!(self.op(A, JOBS, 330, Do::NackToDlq, &[6]), [6]);
                assert_eq!(self.op(A, JOBS, 330, Do::Nack { delay: 0 }, &[4]), [4]);
                assert_eq!(self.lease(A, MAIL, 340, 1, 5000), [2]);
            }
            10 => {
                assert_eq!(self.op(A, MAIL, 400, Do::Requeue, &[1]), [1]);
                // The windows of k1 (from 10) and k2 have passed: new messages.
                let got = self.enqueue(A, JOBS, 1200, &[(0, 0, "k1", b"j7"), (0, 0, "k2", b"j8")]);
                assert_eq!(got, [7, 8]);
            }
            11 => {
                assert_eq!(self.purge(B, JOBS, 1300), 1);
                let billing = self.store.get(B, JOBS).unwrap();
                assert_eq!((billing.slots.len(), billing.next_seq()), (0, 2), "emptied");
            }
            12 => {
                assert_eq!(self.enqueue(B, JOBS, 1400, &[(0, 0, "x", b"b2")]), [2]);
                assert_eq!(self.lease(A, JOBS, 1400, 10, 100), [4, 7, 8, 5, 1, 3]);
                assert_eq!(self.ack(A, JOBS, 1410, &[1, 3, 4]), [1, 3, 4]);
                assert_eq!(self.store.get(A, JOBS).unwrap().base, 5, "the front passed 1..=4");
            }
            13 => {
                // 5's second lease was its last; 7 and 8 are ready again.
                assert_eq!(self.dead_letter(A, JOBS, 1600), [5]);
                let got = self.enqueue(
                    A,
                    MAIL,
                    1600,
                    &[
                        (9, 0, "", b"m3"),
                        (9, 0, "", b"m4"),
                        (9, 0, "", b"m5, the entry's last"),
                    ],
                );
                assert_eq!(got, [3, 4, 5]);
            }
            14 => {
                assert_eq!(self.lease(A, MAIL, 1700, 2, 100), [1, 3]);
                assert_eq!(self.lease(A, MAIL, 1700, 5, 100), [4, 5]);
                // The entry of 3..=5 loses its last message: its size is known no more.
                assert_eq!(self.ack(A, MAIL, 1710, &[5]), [5]);
                self.purge(A, JOBS, 1720);
            }
            15 => {
                assert_eq!(self.op(A, MAIL, 1750, Do::Nack { delay: 100 }, &[3]), [3]);
                assert_eq!(self.enqueue(A, JOBS, 1760, &[(0, 5000, "k4", b"j9")]), [9]);
                // A second ENQUEUE of the queue, leased before either is durable.
                assert_eq!(self.enqueue(A, JOBS, 1760, &[(1, 0, "", b"j10")]), [10]);
                assert_eq!(self.lease(A, JOBS, 1760, 5, 100), [10]);
                self.enqueue(B, MAIL, 1770, &[(0, 0, "", b"bm1")]);
            }
            16 => {
                // Leases that ran out at 1800, and 3's delay at 1850: each leased a second,
                // last time.
                assert_eq!(self.lease(A, MAIL, 1900, 5, 100), [1, 3, 4]);
            }
            17 => {
                self.now(2100);
                assert_eq!(self.store.get(A, MAIL).unwrap().expired(), &[1, 3, 4]);
            }
            18 => {
                assert_eq!(self.dead_letter(A, MAIL, 2200), [1, 3, 4]);
                assert_eq!(self.op(A, MAIL, 2300, Do::Requeue, &[3]), [3]);
            }
            _ => unreachable!(),
        }
    }
}

const STEPS: usize = 19;

fn encode(s: &QueueStore) -> (Vec<u8>, Vec<(usize, u64)>) {
    let mut e = Enc::new();
    s.snapshot(&mut e);
    let (b, pending, _) = e.finish();
    (b, pending)
}

/// The live store's section with its placeholders filled in, as the snapshot writer does.
fn filled(live: &Live) -> Vec<u8> {
    let (mut b, pending) = encode(&live.store);
    for (at, lsn) in pending {
        let pos = live.pos(lsn);
        fill_place(&mut b, at, pos.segment, pos.offset);
    }
    b
}

fn restore(b: &[u8]) -> Result<QueueStore, String> {
    let mut d = Dec::new(b);
    let s = QueueStore::decode(&mut d, None)?;
    d.done("queue section")?;
    Ok(s)
}

fn refusal(b: &[u8]) -> String {
    restore(b).map(|_| ()).unwrap_err()
}

fn replay(s: &mut QueueStore, log: &[Rec]) {
    for r in log {
        let e = EntryRef {
            lsn: r.pos.lsn,
            entry_type: r.kind,
            flags: 0,
            body: &r.body,
        };
        s.apply(&e, At::Placed(r.pos))
            .unwrap_or_else(|c| panic!("entry {}: {c}", r.pos.lsn));
    }
}

/// Everything a client or the shard can see of a store; payloads read from `log`.
fn observe(s: &QueueStore, log: &[Rec]) -> String {
    let mut out = String::new();
    writeln!(out, "clock {} dead bytes {}", s.clock_ms, s.dead_bytes()).unwrap();
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
                let payload = match q.payload(seq, s.segments()).unwrap() {
                    Payload::Pending(b) => format!("pending {:?}", String::from_utf8_lossy(&b)),
                    Payload::At {
                        segment,
                        offset,
                        rel,
                        len,
                    } => {
                        let r = log.iter().find(|r| (r.pos.segment, r.pos.offset) == (segment, offset));
                        let b = &r.unwrap().body[rel as usize..(rel + len) as usize];
                        format!("at {segment}/{offset} {:?}", String::from_utf8_lossy(b))
                    }
                };
                writeln!(
                    out,
                    "  {seq} {:?} prio {} deliveries {} time {} enqueued {} last {} {payload}",
                    m.state, m.priority, m.delivery_count, m.time_ms, m.enqueued_at_ms, m.last_lease
                )
                .unwrap();
            }
            let mut keys: Vec<_> = q.dedup.keys().collect();
            keys.sort();
            for k in keys {
                writeln!(out, "  key {k} {:?}", q.dedup_hit(k, s.clock_ms)).unwrap();
            }
        }
    }
    out
}

/// Leases everything ready, queue by queue (what dequeues would return).
fn drain(s: &mut QueueStore) -> Vec<(Box<str>, Box<str>, Vec<u64>)> {
    let mut keys = s.keys();
    keys.sort();
    (keys.into_iter())
        .map(|(ns, q)| {
            let got = s.get_mut(&ns, &q).unwrap().pop_ready(1000);
            (ns, q, got)
        })
        .collect()
}

/// What the snapshots of a test met, so a scenario that stops exercising a case is noticed.
#[derive(Default, Debug)]
struct Seen {
    placeholders: bool,
    holes: bool,
    states: BTreeSet<u8>,
    stale_leases: bool,
    dedup: bool,
    dead_bytes: bool,
    emptied_queue: bool,
    segments: usize,
}

impl Seen {
    fn note(&mut self, s: &QueueStore, pending: &[(usize, u64)]) {
        self.placeholders |= !pending.is_empty();
        self.dead_bytes |= s.dead_bytes() > 0;
        self.segments = self.segments.max(s.segments.first_lsn.len());
        for q in s.queues.values().flat_map(HashMap::values) {
            self.holes |= q.slots.iter().any(|m| m.state == State::Gone);
            self.states.extend(q.slots.iter().map(|m| state_byte(m.state)));
            self.stale_leases |= q.leases.len() as u64 > q.leased_count;
            self.dedup |= !q.dedup.is_empty();
            self.emptied_queue |= q.slots.is_empty() && q.base > 1;
        }
    }
}

#[test]
fn a_restored_store_replays_what_follows_as_the_original_and_a_full_replay_do() {
    let mut seen = Seen::default();
    for cut in 0..=STEPS {
        let mut live = Live::new();
        for i in 0..cut {
            live.step(i);
        }
        let snapshot_lsn = live.lsn() as usize;
        let (_, pending) = encode(&live.store);
        seen.note(&live.store, &pending);
        let bytes = filled(&live);
        let mut restored = restore(&bytes).unwrap_or_else(|e| panic!("cut {cut}: {e}"));

        // (a) Canonical: the restored store writes the same bytes, with nothing pending.
        let (again, pending) = encode(&restored);
        assert!(pending.is_empty(), "cut {cut}");
        assert!(again == bytes, "cut {cut}: re-snapshot differs");

        // What a full replay of the log up to the snapshot gives.
        let mut full = QueueStore::default();
        replay(&mut full, &live.log);
        assert!(
            encode(&full).0 == bytes,
            "cut {cut}: the snapshot is not what a replay gives"
        );
        live.settle(live.lsn());
        let now = observe(&live.store, &live.log);
        assert_eq!(observe(&restored, &live.log), now, "cut {cut}");
        assert_eq!(observe(&full, &live.log), now, "cut {cut}");

        // (b) The same further entries: made live on the original, replayed on the others.
        for i in cut..STEPS {
            live.step(i);
        }
        live.settle(live.lsn());
        replay(&mut restored, &live.log[snapshot_lsn..]);
        replay(&mut full, &live.log[snapshot_lsn..]);
        let end = live.store.clock_ms;
        // Then time alone: delays and leases run out (the last ones at 6760), by ticks.
        for at in [end, end + 150, end + 10_000] {
            let from = live.log.len();
            live.now(at);
            live.settle(live.lsn());
            replay(&mut restored, &live.log[from..]);
            replay(&mut full, &live.log[from..]);
            let want = observe(&live.store, &live.log);
            assert_eq!(observe(&restored, &live.log), want, "cut {cut}, at {at}");
            assert_eq!(observe(&full, &live.log), want, "cut {cut}, at {at}");
            assert!(encode(&restored).0 == encode(&live.store).0, "cut {cut}, at {at}");
            assert!(encode(&full).0 == encode(&live.store).0, "cut {cut}, at {at}");
        }
        let want = drain(&mut live.store);
        assert!(!want.iter().all(|(.., got)| got.is_empty()));
        assert_eq!(drain(&mut restored), want, "cut {cut}");
        assert_eq!(drain(&mut full), want, "cut {cut}");
    }
    assert!(
        seen.placeholders && seen.holes && seen.stale_leases && seen.dedup,
        "{seen:?}"
    );
    assert!(seen.dead_bytes && seen.emptied_queue && seen.segments >= 2, "{seen:?}");
    let all: BTreeSet<u8> = (STATE_GONE..=STATE_DEAD).collect();
    assert_eq!(seen.states, all, "every state in some snapshot");
}

/// The live store at the end of the scenario, a section of it, and that section filled.
fn scenario(steps: usize) -> (Live, Vec<u8>) {
    let mut live = Live::new();
    for i in 0..steps {
        live.step(i);
    }
    let bytes = filled(&live);
    (live, bytes)
}

#[test]
fn dedup_windows_and_lease_expiry_survive_a_restore() {
    // After step 4: k1 (until 1010) names acked 2, k3 (until 1040) names 6; 5's lease was
    // touched to 400, mail's 1 is leased until 100 (its first delivery).
    let (mut live, bytes) = scenario(5);
    let mut restored = restore(&bytes).unwrap();
    let q = restored.get(A, JOBS).unwrap();
    assert_eq!((q.dedup_hit("k1", 1009), q.dedup_hit("k1", 1010)), (Some(2), None));
    assert_eq!(q.dedup_hit("k3", 60), Some(6));
    // The touch left its old end (130) behind in the lease heap; at the head it is dropped, so
    // what is due next is something that happens.
    assert_eq!(q.next_due(), Some(310), "no stale time due at the head");
    let from = live.log.len();
    live.now(399);
    replay(&mut restored, &live.log[from..]);
    for s in [&live.store, &restored] {
        assert_eq!(s.get(A, JOBS).unwrap().msg(5).unwrap().state, State::Leased);
        assert_eq!(s.get(A, MAIL).unwrap().peek(10), [1, 2]);
    }
    let from = live.log.len();
    live.now(400);
    replay(&mut restored, &live.log[from..]);
    for s in [&live.store, &restored] {
        assert_eq!(s.get(A, JOBS).unwrap().msg(5).unwrap().state, State::Ready);
        assert_eq!(s.get(A, JOBS).unwrap().peek(10), [4, 5, 6, 1, 3]);
        assert_eq!(s.get(A, JOBS).unwrap().dedup_hit("k3", 500), Some(6));
    }
    assert_eq!(
        live.enqueue(A, JOBS, 500, &[(0, 0, "k3", b"again")]),
        [6],
        "a duplicate"
    );
}

#[test]
fn pending_entries_are_placeholders_restored_at_their_places() {
    let (live, _) = scenario(14);
    let (raw, pending) = encode(&live.store);
    // Step 13's two entries: the DEAD of jobs' 5 (no place) and the ENQUEUE of mail's 3..=5.
    let lsn = live.lsn();
    assert_eq!(pending.iter().map(|p| p.1).collect::<Vec<_>>(), [lsn]);
    assert!(refusal(&raw).contains("never filled"));
    let restored = restore(&filled(&live)).unwrap();
    let mail = restored.get(A, MAIL).unwrap();
    assert!(mail.pending.is_empty());
    let pos = live.pos(lsn);
    for seq in 3..=5 {
        match mail.payload(seq, restored.segments()) {
            Some(Payload::At { segment, offset, .. }) => assert_eq!((segment, offset), (pos.segment, pos.offset)),
            _ => panic!("message {seq} is not settled"),
        }
    }
    // Once settled, the live store writes the same bytes; live bytes count each entry once.
    let mut live = live;
    live.settle(lsn);
    let mut e = Enc::new();
    live.store.snapshot(&mut e);
    let (b, p, live_bytes) = e.finish();
    assert!(p.is_empty() && b == filled(&live));
    let mail_entry = stored_bytes(live.log[lsn as usize - 1].body.len()) as u64;
    assert!(live_bytes.get(&pos.segment).is_some_and(|&n| n >= mail_entry));
    let entries: u64 = (live.log.iter())
        .filter(|r| r.kind == ENTRY_QUEUE_ADD && r.pos.segment == pos.segment)
        .map(|r| stored_bytes(r.body.len()) as u64)
        .sum();
    assert!(live_bytes[&pos.segment] <= entries, "an entry counts once");
}

#[test]
fn dead_bytes_per_segment_come_back() {
    let (live, bytes) = scenario(STEPS);
    let restored = restore(&bytes).unwrap();
    let per_segment = |s: &QueueStore| {
        let t = s.segments();
        let mut v: Vec<(u64, u64)> = (t.first_lsn.iter().copied().zip(t.dead.iter().copied()))
            .filter(|&(_, d)| d > 0)
            .collect();
        v.sort_unstable();
        v
    };
    assert!(per_segment(&live.store).len() >= 2);
    assert_eq!(per_segment(&restored), per_segment(&live.store));
    let t = restored.segments();
    assert!(t.first_lsn.windows(2).all(|w| w[0] < w[1]), "ordinals in LSN order");
}

#[test]
fn truncated_or_flipped_sections_are_errors_never_panics() {
    for steps in [5, 9, 14, STEPS] {
        let (_, bytes) = scenario(steps);
        for n in 0..bytes.len() {
            assert!(
                restore(&bytes[..n]).is_err(),
                "{steps} steps, {n} of {} bytes",
                bytes.len()
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(restore(&longer).is_err());
        let mut refused = 0;
        for i in 0..bytes.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                match restore(&b) {
                    Err(e) => {
                        assert!(!e.is_empty());
                        refused += 1;
                    }
                    Ok(mut s) => {
                        // Accepted (a time, a counter, a payload length…): still a store
                        // that works and writes what it read.
                        assert!(encode(&s).0 == b, "{steps} steps, byte {i} ^ {flip:#x}");
                        let mut keys = s.keys();
                        keys.sort();
                        for (ns, q) in keys {
                            s.advance(&ns, &q, u64::MAX / 2);
                        }
                        drain(&mut s);
                    }
                }
            }
        }
        assert!(refused > bytes.len(), "{steps} steps: only {refused} flips refused");
    }
}

/// One message for [`section`]: state, entry, time.
type M = (u8, u32, u64);

/// A section written field by field from `format-spec/snapshot-queue.md`: segments with
/// dead bytes, then one queue app/jobs with base 1, `entries` places, `msgs`, `expired`,
/// `leases` and dedup `keys`.
fn section(
    version: u32,
    segments: &[(u64, u64)],
    entries: &[(u64, u64)],
    msgs: &[M],
    expired: &[u64],
    leases: &[(u64, u64)],
    keys: &[(&str, u64, u64)],
) -> Vec<u8> {
    let mut e = Enc::new();
    e.u32(version);
    e.u64(5000); // clock
    e.count(segments.len());
    for &(s, d) in segments {
        e.u64(s);
        e.u64(d);
    }
    e.count(1);
    e.str(A);
    e.count(1);
    e.str(JOBS);
    e.u64(1); // base
    e.u64(9); // last LSN
    e.u64(msgs.len() as u64); // total enqueued
    e.u64(0); // total acked
    e.count(entries.len());
    for &(s, o) in entries {
        e.place(s, o, 64);
        e.u8(ENTRY_ORIGINAL);
    }
    e.count(msgs.len());
    for &(state, entry, time) in msgs {
        e.u8(state);
        if state == STATE_GONE {
            continue;
        }
        e.u32(entry);
        e.u32(60); // payload_rel
        e.u32(2); // payload_len
        e.u8(7); // priority
        e.bool(false);
        e.u16(1); // delivery count
        e.u64(100); // enqueued at
        e.u64(time);
    }
    e.count(expired.len());
    for &s in expired {
        e.u64(s);
    }
    e.count(leases.len());
    for &(at, s) in leases {
        e.u64(at);
        e.u64(s);
    }
    e.count(keys.len());
    for &(k, s, until) in keys {
        e.str(k);
        e.u64(s);
        e.u64(until);
    }
    e.finish().0
}

#[test]
fn the_layout_is_the_documented_one_and_inconsistent_sections_are_refused() {
    const R: u8 = STATE_READY;
    let one = [(1, 64)];
    let good = section(
        1,
        &[(1, 40)],
        &one,
        &[
            (R, 0, 0),
            (STATE_GONE, 0, 0),
            (STATE_LEASED, 0, 900),
            (STATE_EXPIRED, 0, 800),
        ],
        &[4],
        &[(800, 4), (900, 3)],
        &[("a", 1, 2000), ("b", 2, 2000)],
    );
    let s = restore(&good).unwrap();
    let q = s.get(A, JOBS).unwrap();
    assert_eq!(
        (q.peek(10), q.expired(), q.leased_count, q.next_due()),
        (vec![1], &[4][..], 1, Some(800))
    );
    assert_eq!(s.dead_bytes(), 40);
    assert!(encode(&s).0 == good, "what the document describes is what is written");

    // The entry's kind follows its place: version, clock, one segment, one namespace "app"
    // of one queue "jobs", four u64s, the entry count, the place.
    let kind_at = 4 + 8 + (8 + 16) + (8 + 4 + 3 + 8) + (4 + 4) + 4 * 8 + 8 + 16;
    assert_eq!(good[kind_at], ENTRY_ORIGINAL);
    let mut copy = good.clone();
    copy[kind_at] = ENTRY_COPY;
    let s = restore(&copy).unwrap();
    let q = s.get(A, JOBS).unwrap();
    assert!(q.slots.iter().filter(|m| m.state != State::Gone).all(|m| m.relocated));
    let mut e = Enc::new();
    s.snapshot(&mut e);
    let (again, _, live) = e.finish();
    assert!(again == copy);
    // The furthest payload ends at 62: a copy's body is 24 bytes longer.
    assert_eq!(live[&1], stored_bytes(24 + 62) as u64);
    let mut e = Enc::new();
    restore(&good).unwrap().snapshot(&mut e);
    assert_eq!(e.finish().2[&1], stored_bytes(62) as u64);
    let mut unknown = good.clone();
    unknown[kind_at] = 2;
    assert!(refusal(&unknown).contains("unknown kind 2"));

    let bad: Vec<(Vec<u8>, &str)> = vec![
        (section(2, &[], &one, &[(R, 0, 0)], &[], &[], &[]), "version 2"),
        (
            section(1, &[(1, 0)], &one, &[(R, 0, 0)], &[], &[], &[]),
            "no dead bytes",
        ),
        (
            section(1, &[(5, 1), (2, 1)], &one, &[(R, 0, 0)], &[], &[], &[]),
            "out of order",
        ),
        (section(1, &[], &one, &[(9, 0, 0)], &[], &[], &[]), "unknown state 9"),
        (section(1, &[], &one, &[(R, 1, 0)], &[], &[], &[]), "entry 1 of 1"),
        (
            section(1, &[], &[(1, 64), (1, 128)], &[(R, 0, 0)], &[], &[], &[]),
            "no message is in it",
        ),
        (
            section(1, &[], &[(1, 64), (1, 128)], &[(R, 1, 0), (R, 0, 0)], &[], &[], &[]),
            "before entry 0",
        ),
        (
            section(1, &[], &[(1, 64), (1, 64)], &[(R, 0, 0), (R, 1, 0)], &[], &[], &[]),
            "listed twice",
        ),
        (
            section(1, &[], &[(1, 60)], &[(R, 0, 0)], &[], &[], &[]),
            "not an entry's",
        ),
        (
            section(1, &[], &one, &[(STATE_GONE, 0, 0), (R, 0, 0)], &[], &[], &[]),
            "hole at the front",
        ),
        (
            section(1, &[], &one, &[(STATE_LEASED, 0, 900)], &[], &[(901, 1)], &[]),
            "no such lease",
        ),
        (section(1, &[], &one, &[(R, 0, 0)], &[], &[(5, 2)], &[]), "never was"),
        (
            section(1, &[], &one, &[(R, 0, 0)], &[], &[(6, 1), (5, 1)], &[]),
            "out of order",
        ),
        (
            section(1, &[], &one, &[(STATE_EXPIRED, 0, 0)], &[], &[], &[]),
            "0 expired messages listed",
        ),
        (
            section(1, &[], &one, &[(R, 0, 0)], &[1], &[], &[]),
            "1 expired messages listed, 0",
        ),
        (
            section(
                1,
                &[],
                &one,
                &[(STATE_EXPIRED, 0, 0), (STATE_EXPIRED, 0, 0)],
                &[1, 1],
                &[],
                &[],
            ),
            "listed twice",
        ),
        (
            section(1, &[], &one, &[(R, 0, 0)], &[], &[], &[("b", 1, 9), ("a", 1, 9)]),
            "out of order",
        ),
        (
            section(1, &[], &one, &[(R, 0, 0)], &[], &[], &[("a", 1, 9), ("a", 1, 9)]),
            "out of order",
        ),
        (
            section(1, &[], &one, &[(R, 0, 0)], &[], &[], &[("", 1, 9), ("bb", 1, 9)]),
            "dedup key of 0 bytes",
        ),
        (
            section(1, &[], &one, &[(R, 0, 0)], &[], &[], &[("a", 2, 9)]),
            "never was",
        ),
    ];
    for (b, want) in bad {
        let e = refusal(&b);
        assert!(e.contains(want), "{e:?} does not say {want:?}");
        assert!(
            e.contains("queue \"jobs\" of \"app\"") || !e.contains("message"),
            "{e:?}"
        );
    }

    // A count the bytes left cannot hold is refused before anything is allocated.
    let mut b = good.clone();
    b[12..20].copy_from_slice(&u64::MAX.to_le_bytes()); // the segment count
    assert!(refusal(&b).contains("cannot fit"));
}
