//! The queue section of a shard snapshot (`format-spec/snapshot-queue.md`): [`QueueStore::snapshot`]
//! writes every queue of the shard as it stands once every entry applied so far is durable, and
//! [`QueueStore::restore`] builds the store back, so that replaying the entries after the
//! snapshot's LSN gives what a full replay of the log would have.
//!
//! What is written:
//! * per queue, its messages in seq order from its base, holes (acked or purged messages the
//!   front has not passed yet) as a state byte alone; each message names its ENQUEUE entry (or
//!   the `RELOCATED` copy compaction moved it to, `compact.rs`) by an index into the queue's
//!   table of entries, one place and kind per entry, so that an entry's stored bytes count once
//!   as live bytes however many of its messages are held;
//! * an entry that is not durable yet is written as a placeholder (its LSN) which the snapshot
//!   writer fills in once the entry is durable; restore settles its messages at that place, and
//!   the payloads held in memory meanwhile are not written;
//! * the lease heap as it is, stale entries included (`Queue::next_due` sees them), the expired
//!   list in its order, the dedup map, the counters, `last_lsn`, the clock, and the dead bytes of
//!   every segment that has some.
//!
//! Not written, rebuilt from the message states, which the store's invariants make exactly
//! equivalent: the ready heap (Ready messages by (priority, seq)), the delay heap (Delayed by
//! (time, seq)), the dead-letter set (Dead by (time, seq)) and the leased count.
//!
//! Invariants: the encoding is canonical — namespaces, queues, segments, leases and dedup keys
//! ascending, entries in the order their first message comes — so `snapshot(restore(b))` is `b`
//! byte for byte; restore refuses input not in that form or breaking the store's invariants (an
//! unknown state, an index out of range, a leased message without its lease, an expired list
//! that is not exactly the expired messages…), never panics, and allocates only what the bytes
//! left can back.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};

use super::super::entry::DEDUP_KEY_MAX;
use super::compact::RELOCATION_BYTES;
use super::{Msg, Queue, QueueConfig, QueueStore, State, PENDING};
use crate::api::path::NAME_MAX_BYTES;
use crate::log::format::{stored_bytes, ENTRY_ALIGN, MAX_BODY_BYTES, SEGMENT_HEADER_BYTES};
use crate::log::places::SegmentTable;
use crate::log::Position;
use crate::snapshot::codec::{Dec, Enc, PLACE_BYTES};

/// The layout version of the queue section.
pub const SECTION_VERSION: u32 = 1;

// Message state bytes.
const STATE_GONE: u8 = 0;
const STATE_READY: u8 = 1;
const STATE_DELAYED: u8 = 2;
const STATE_LEASED: u8 = 3;
const STATE_EXPIRED: u8 = 4;
const STATE_DEAD: u8 = 5;

// Entry kinds.
const ENTRY_ORIGINAL: u8 = 0;
const ENTRY_COPY: u8 = 1;

// The fewest bytes an item of each list takes, for `Dec::count`.
const SEGMENT_BYTES: usize = 16;
/// A place and its kind.
const ENTRY_BYTES: usize = PLACE_BYTES + 1;
/// A name (4 + at least 1) and a count of queues.
const NAMESPACE_MIN_BYTES: usize = 4 + 1 + 8;
/// A name, base, last_lsn, two counters, and five counts.
const QUEUE_MIN_BYTES: usize = 4 + 1 + 4 * 8 + 5 * 8;
/// A hole: its state byte alone (a held message takes 33 bytes).
const HOLE_BYTES: usize = 1;
const EXPIRED_BYTES: usize = 8;
const LEASE_BYTES: usize = 16;
/// A key (4 + at least 1), seq, until.
const DEDUP_MIN_BYTES: usize = 4 + 1 + 8 + 8;

fn state_byte(s: State) -> u8 {
    match s {
        State::Gone => STATE_GONE,
        State::Ready => STATE_READY,
        State::Delayed => STATE_DELAYED,
        State::Leased => STATE_LEASED,
        State::Expired => STATE_EXPIRED,
        State::Dead => STATE_DEAD,
    }
}

fn state_of(b: u8) -> Option<State> {
    Some(match b {
        STATE_GONE => State::Gone,
        STATE_READY => State::Ready,
        STATE_DELAYED => State::Delayed,
        STATE_LEASED => State::Leased,
        STATE_EXPIRED => State::Expired,
        STATE_DEAD => State::Dead,
        _ => return None,
    })
}

/// The ENQUEUE entry a held message's record is in.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    /// Settled: the packed location in the store's segment table.
    At(u64),
    /// Not durable yet: the entry's LSN.
    Pending(u64),
}

/// A queue read from the section: its held messages' `loc` is an index into `places`, the
/// (segment, offset) of their ENQUEUE entries, until the segment table is built.
struct Decoded {
    ns: Box<str>,
    name: Box<str>,
    queue: Queue,
    places: Vec<(u64, u64)>,
}

/// A hole: an acked or purged message behind the front of its queue.
fn hole() -> Msg {
    Msg {
        enqueued_at_ms: 0,
        time_ms: 0,
        loc: 0,
        payload_rel: 0,
        payload_len: 0,
        delivery_count: 0,
        priority: 0,
        state: State::Gone,
        last_lease: false,
        relocated: false,
    }
}

impl QueueStore {
    /// Writes the whole store (`format-spec/snapshot-queue.md`). Messages whose ENQUEUE entry is
    /// not durable yet are written with a placeholder place (see [`Enc::pending_place`]).
    pub fn snapshot(&self, enc: &mut Enc) {
        enc.u32(SECTION_VERSION);
        enc.u64(self.clock_ms);
        let mut dead: Vec<(u64, u64)> = (self.segments.first_lsn.iter().copied())
            .zip(self.segments.dead.iter().copied())
            .filter(|&(_, bytes)| bytes > 0)
            .collect();
        dead.sort_unstable();
        enc.count(dead.len());
        for (first_lsn, bytes) in dead {
            enc.u64(first_lsn);
            enc.u64(bytes);
        }
        let mut spaces: Vec<_> = self.queues.iter().collect();
        spaces.sort_unstable_by(|a, b| a.0.cmp(b.0));
        enc.count(spaces.len());
        for (ns, space) in spaces {
            enc.str(ns);
            let mut queues: Vec<_> = space.iter().collect();
            queues.sort_unstable_by(|a, b| a.0.cmp(b.0));
            enc.count(queues.len());
            for (name, q) in queues {
                enc.str(name);
                snapshot_queue(q, &self.segments, enc);
            }
        }
    }

    /// Reads a section written by [`QueueStore::snapshot`] (its placeholders filled in) into a
    /// store with `config`. Reads exactly the section: the caller checks where it ends.
    pub fn restore(config: QueueConfig, dec: &mut Dec<'_>) -> Result<QueueStore, String> {
        let version = dec.u32("queue section version")?;
        if version != SECTION_VERSION {
            return Err(format!(
                "queue section version {version}: this build reads version {SECTION_VERSION}"
            ));
        }
        let clock_ms = dec.u64("queue clock")?;

        // Every segment the section names, so that the table's ordinals follow LSN order as
        // they do after a replay.
        let mut all_segments = BTreeSet::new();
        let n = dec.count("queue segments", SEGMENT_BYTES)?;
        let mut dead = Vec::with_capacity(n);
        for _ in 0..n {
            let first_lsn = dec.u64("queue segment first LSN")?;
            let bytes = dec.u64("queue segment dead bytes")?;
            if first_lsn == 0 {
                return Err("queue segments: a segment starting at LSN 0".into());
            }
            if dead.last().is_some_and(|&(prev, _)| prev >= first_lsn) {
                return Err(format!("queue segments: segment {first_lsn} out of order"));
            }
            if bytes == 0 {
                return Err(format!("queue segments: segment {first_lsn} listed with no dead bytes"));
            }
            dead.push((first_lsn, bytes));
            all_segments.insert(first_lsn);
        }

        // Queues read so far; the segment table is built once every place is known.
        let mut decoded: Vec<Decoded> = Vec::new();
        let spaces = dec.count("namespaces of queues", NAMESPACE_MIN_BYTES)?;
        let mut prev_ns: Option<&str> = None;
        for _ in 0..spaces {
            let ns = read_name(dec, "namespace of queues")?;
            if prev_ns.is_some_and(|p| p >= ns) {
                return Err(format!("namespace {ns:?}: out of order"));
            }
            prev_ns = Some(ns);
            let queues = dec.count("queues of a namespace", QUEUE_MIN_BYTES)?;
            if queues == 0 {
                return Err(format!("namespace {ns:?}: listed with no queues"));
            }
            let mut prev_q: Option<&str> = None;
            for _ in 0..queues {
                let name = read_name(dec, "queue name")?;
                if prev_q.is_some_and(|p| p >= name) {
                    return Err(format!("queue {name:?} of {ns:?}: out of order"));
                }
                prev_q = Some(name);
                let (q, places) = restore_queue(dec).map_err(|e| format!("queue {name:?} of {ns:?}: {e}"))?;
                all_segments.extend(places.iter().map(|&(segment, _)| segment));
                decoded.push(Decoded {
                    ns: ns.into(),
                    name: name.into(),
                    queue: q,
                    places,
                });
            }
        }

        let mut segments = SegmentTable::default();
        for &first_lsn in &all_segments {
            segments.ordinal(first_lsn);
        }
        for (first_lsn, bytes) in dead {
            let i = segments.ordinal(first_lsn) as usize;
            segments.dead[i] = bytes;
        }
        let mut store = QueueStore::new(config);
        store.clock_ms = clock_ms;
        for Decoded {
            ns,
            name,
            queue: mut q,
            places,
        } in decoded
        {
            let locs: Vec<u64> = places
                .iter()
                .map(|&(segment, offset)| {
                    segments.loc(&Position {
                        lsn: 0,
                        segment,
                        offset,
                    })
                })
                .collect();
            for m in q.slots.iter_mut().filter(|m| m.state != State::Gone) {
                // The index was checked against `places` when the message was read.
                m.loc = locs
                    .get(m.loc as usize)
                    .copied()
                    .ok_or("message entry index out of range")?;
            }
            store.queues.entry(ns).or_default().insert(name, q);
        }
        store.segments = segments;
        Ok(store)
    }
}

/// A namespace or queue name: 1..=128 bytes of UTF-8.
fn read_name<'a>(dec: &mut Dec<'a>, what: &str) -> Result<&'a str, String> {
    let name = dec.str(what)?;
    if !(1..=NAME_MAX_BYTES).contains(&name.len()) {
        return Err(format!("{what}: {} bytes, not 1..={NAME_MAX_BYTES}", name.len()));
    }
    Ok(name)
}

fn snapshot_queue(q: &Queue, segments: &SegmentTable, enc: &mut Enc) {
    enc.u64(q.base);
    enc.u64(q.last_lsn);
    enc.u64(q.total_enqueued);
    enc.u64(q.total_acked);

    // The entries of the held messages, in the order their first message comes, each with the
    // end of the furthest payload of it held (the entry's body is at least that long) and
    // whether it is a RELOCATED copy (all messages at one place agree).
    let mut entries: Vec<(Source, u64, bool)> = Vec::new();
    let mut index: HashMap<Source, u32> = HashMap::new();
    let mut refs: Vec<u32> = Vec::with_capacity(q.slots.len());
    for (i, m) in q.slots.iter().enumerate() {
        if m.state == State::Gone {
            continue;
        }
        let source = if m.loc == PENDING {
            let seq = q.base + i as u64;
            let (lsn, _) = q
                .pending
                .get(&seq)
                .expect("a message not settled keeps its payload and its entry's LSN in `pending`");
            Source::Pending(*lsn)
        } else {
            Source::At(m.loc)
        };
        let k = *index.entry(source).or_insert_with(|| {
            entries.push((source, 0, m.relocated));
            (entries.len() - 1) as u32
        });
        let end = u64::from(m.payload_rel) + u64::from(m.payload_len);
        let entry = &mut entries[k as usize];
        debug_assert_eq!(entry.2, m.relocated, "messages at one place are all copies or none");
        entry.1 = entry.1.max(end);
        refs.push(k);
    }
    enc.count(entries.len());
    for &(source, body_end, copy) in &entries {
        match source {
            Source::At(loc) => {
                let (segment, offset) = segments.place(loc);
                // Exact while the entry's last message is held; less when it is gone (the
                // store keeps no entry sizes; the gone records are counted as dead bytes). A
                // copy's body is the original's behind the relocation header.
                let body = usize::try_from(body_end).unwrap_or(usize::MAX);
                let body = if copy {
                    body.saturating_add(RELOCATION_BYTES)
                } else {
                    body
                };
                enc.place(segment, offset, stored_bytes(body) as u64);
            }
            // Not durable yet, so not a copy (compaction copies durable entries only).
            Source::Pending(lsn) => enc.pending_place(lsn),
        }
        enc.u8(if copy { ENTRY_COPY } else { ENTRY_ORIGINAL });
    }

    enc.count(q.slots.len());
    let mut refs = refs.into_iter();
    for m in &q.slots {
        enc.u8(state_byte(m.state));
        if m.state == State::Gone {
            continue;
        }
        enc.u32(refs.next().unwrap_or_default());
        enc.u32(m.payload_rel);
        enc.u32(m.payload_len);
        enc.u8(m.priority);
        enc.bool(m.last_lease);
        enc.u16(m.delivery_count);
        enc.u64(m.enqueued_at_ms);
        enc.u64(m.time_ms);
    }

    enc.count(q.expired.len());
    for &seq in &q.expired {
        enc.u64(seq);
    }

    let mut leases: Vec<(u64, u64)> = q.leases.iter().map(|Reverse(l)| *l).collect();
    leases.sort_unstable();
    enc.count(leases.len());
    for (at, seq) in leases {
        enc.u64(at);
        enc.u64(seq);
    }

    let mut dedup: Vec<_> = q.dedup.iter().collect();
    dedup.sort_unstable_by(|a, b| a.0.cmp(b.0));
    enc.count(dedup.len());
    for (key, &(seq, until)) in dedup {
        enc.str(key);
        enc.u64(seq);
        enc.u64(until);
    }
}

/// Reads one queue; its messages' `loc` is an index into the entry places returned with it.
fn restore_queue(dec: &mut Dec<'_>) -> Result<(Queue, Vec<(u64, u64)>), String> {
    let base = dec.u64("queue base")?;
    let last_lsn = dec.u64("queue last LSN")?;
    let total_enqueued = dec.u64("queue total enqueued")?;
    let total_acked = dec.u64("queue total acked")?;

    let n = dec.count("message entries", ENTRY_BYTES)?;
    let mut places = Vec::with_capacity(n);
    let mut copies = Vec::with_capacity(n);
    let mut seen = HashSet::with_capacity(n);
    for i in 0..n {
        let (segment, offset) = dec.place("message entry place")?;
        if offset < SEGMENT_HEADER_BYTES as u64 || offset % ENTRY_ALIGN as u64 != 0 {
            return Err(format!("message entry {i}: offset {offset} is not an entry's"));
        }
        if !seen.insert((segment, offset)) {
            return Err(format!(
                "message entry {i}: segment {segment} offset {offset} listed twice"
            ));
        }
        places.push((segment, offset));
        copies.push(match dec.u8("message entry kind")? {
            ENTRY_ORIGINAL => false,
            ENTRY_COPY => true,
            k => return Err(format!("message entry {i}: unknown kind {k}")),
        });
    }

    let n = dec.count("messages", HOLE_BYTES)?;
    if n > 0 && base == 0 {
        return Err("messages from sequence number 0".into());
    }
    let next_seq = base.max(1).checked_add(n as u64).ok_or("sequence numbers past 2^64")?;
    let mut slots = VecDeque::with_capacity(n);
    let mut ready = Vec::new();
    let mut delayed = Vec::new();
    let mut dlq = BTreeSet::new();
    let (mut leased_count, mut expired_count) = (0u64, 0usize);
    // Entries are numbered in the order their first message comes.
    let mut entries_used = 0usize;
    for i in 0..n {
        let seq = base + i as u64;
        let b = dec.u8("message state")?;
        let state = state_of(b).ok_or_else(|| format!("message {seq}: unknown state {b}"))?;
        if state == State::Gone {
            if i == 0 {
                return Err(format!("message {seq}: a hole at the front"));
            }
            slots.push_back(hole());
            continue;
        }
        let entry = dec.u32("message entry")? as usize;
        if entry >= places.len() {
            return Err(format!("message {seq}: entry {entry} of {}", places.len()));
        }
        if entry > entries_used {
            return Err(format!("message {seq}: entry {entry} before entry {entries_used}"));
        }
        if entry == entries_used {
            entries_used += 1;
        }
        let payload_rel = dec.u32("message payload offset")?;
        let payload_len = dec.u32("message payload length")?;
        if u64::from(payload_rel) + u64::from(payload_len) > MAX_BODY_BYTES as u64 {
            return Err(format!("message {seq}: payload past the largest entry body"));
        }
        let priority = dec.u8("message priority")?;
        let last_lease = dec.bool("message last lease")?;
        let delivery_count = dec.u16("message delivery count")?;
        let enqueued_at_ms = dec.u64("message enqueued at")?;
        let time_ms = dec.u64("message time")?;
        match state {
            State::Ready => ready.push(Reverse((priority, seq))),
            State::Delayed => delayed.push(Reverse((time_ms, seq))),
            State::Leased => leased_count += 1,
            State::Expired => expired_count += 1,
            State::Dead => {
                dlq.insert((time_ms, seq));
            }
            State::Gone => {}
        }
        slots.push_back(Msg {
            enqueued_at_ms,
            time_ms,
            loc: entry as u64,
            payload_rel,
            payload_len,
            delivery_count,
            priority,
            state,
            last_lease,
            relocated: copies[entry],
        });
    }
    if entries_used != places.len() {
        return Err(format!("message entry {entries_used}: no message is in it"));
    }
    let state_at = |seq: u64| {
        let i = usize::try_from(seq.checked_sub(base)?).ok()?;
        slots.get(i).map(|m: &Msg| m.state)
    };

    let n = dec.count("expired messages", EXPIRED_BYTES)?;
    if n != expired_count {
        return Err(format!("{n} expired messages listed, {expired_count} held"));
    }
    let mut expired = Vec::with_capacity(n);
    let mut seen = HashSet::with_capacity(n);
    for _ in 0..n {
        let seq = dec.u64("expired message")?;
        if state_at(seq) != Some(State::Expired) {
            return Err(format!("expired message {seq}: not an expired message"));
        }
        if !seen.insert(seq) {
            return Err(format!("expired message {seq}: listed twice"));
        }
        expired.push(seq);
    }

    let n = dec.count("leases", LEASE_BYTES)?;
    let mut leases = Vec::with_capacity(n);
    for _ in 0..n {
        let at = dec.u64("lease expiry")?;
        let seq = dec.u64("lease message")?;
        if seq == 0 || seq >= next_seq {
            return Err(format!("lease of message {seq}, which never was"));
        }
        if leases.last().is_some_and(|&prev| prev > (at, seq)) {
            return Err(format!("lease of message {seq} until {at}: out of order"));
        }
        leases.push((at, seq));
    }
    for (i, m) in slots.iter().enumerate() {
        let seq = base + i as u64;
        if m.state == State::Leased && leases.binary_search(&(m.time_ms, seq)).is_err() {
            return Err(format!("message {seq}: leased until {}, with no such lease", m.time_ms));
        }
    }

    let n = dec.count("dedup keys", DEDUP_MIN_BYTES)?;
    let mut dedup = HashMap::with_capacity(n);
    let mut prev: Option<&str> = None;
    for _ in 0..n {
        let key = dec.str("dedup key")?;
        let seq = dec.u64("dedup message")?;
        let until = dec.u64("dedup window end")?;
        if !(1..=DEDUP_KEY_MAX).contains(&key.len()) {
            return Err(format!("dedup key of {} bytes, not 1..={DEDUP_KEY_MAX}", key.len()));
        }
        if prev.is_some_and(|p| p >= key) {
            return Err(format!("dedup key {key:?}: out of order"));
        }
        prev = Some(key);
        if seq == 0 || seq >= next_seq {
            return Err(format!("dedup key {key:?}: message {seq}, which never was"));
        }
        dedup.insert(key.into(), (seq, until));
    }

    let q = Queue {
        base,
        slots,
        ready: BinaryHeap::from(ready),
        delayed: BinaryHeap::from(delayed),
        leases: leases.into_iter().map(Reverse).collect(),
        expired,
        dlq,
        dedup,
        pending: HashMap::new(),
        leased_count,
        total_enqueued,
        total_acked,
        last_lsn,
    };
    Ok((q, places))
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::super::super::entry::*;
    use super::super::{At, Payload};
    use super::*;
    use crate::log::format::EntryRef;
    use crate::snapshot::codec::fill_place;

    const CONFIG: QueueConfig = QueueConfig {
        max_deliveries: 2,
        dedup_window_ms: 1000,
    };
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

    /// A shard driving its store as `exec.rs` does: each entry appended, applied at once (an
    /// ENQUEUE as pending), settled once "durable"; the log is kept, at fake places, for replays.
    struct Live {
        store: QueueStore,
        log: Vec<Rec>,
        /// ENQUEUE entries not settled yet: (LSN, namespace, queue, seqs).
        unsettled: Vec<(u64, String, String, Vec<u64>)>,
        segment: u64,
        offset: u64,
    }

    impl Live {
        fn new() -> Live {
            Live {
                store: QueueStore::new(CONFIG),
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

        /// The ENQUEUE entries up to `lsn` are durable.
        fn settle(&mut self, lsn: u64) {
            let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsettled)
                .into_iter()
                .partition(|(l, ..)| *l <= lsn);
            self.unsettled = rest;
            for (l, ns, q, seqs) in done {
                let pos = self.pos(l);
                self.store.settle_enqueue(&ns, &q, &seqs, &pos);
            }
        }

        /// The queue clock at `at`, every queue's leases and delays run out to it (the timer).
        fn now(&mut self, at: u64) -> u64 {
            let now = self.store.clock(at);
            for (ns, q) in self.store.keys() {
                self.store.advance(&ns, &q, now);
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
                let lsn = self.append(ENTRY_QUEUE_ENQUEUE, encode_enqueue(&h, &mut fresh));
                self.store.apply_enqueue(ns, q, now, lsn, &fresh, At::Pending).unwrap();
                self.unsettled
                    .push((lsn, ns.into(), q.into(), fresh.iter().map(|m| m.seq).collect()));
            }
            seqs
        }

        fn entry(&mut self, ns: &str, q: &str, now: u64, kind: u16, op: &Op) {
            let h = Head {
                namespace: ns,
                name: q,
                at_ms: now,
            };
            let lsn = self.append(kind, encode_op(&h, Some(op)));
            self.store.apply_op(kind, ns, q, lsn, op).unwrap();
        }

        fn lease(&mut self, ns: &str, q: &str, at: u64, count: usize, visibility: u64) -> Vec<u64> {
            let now = self.now(at);
            let seqs = self
                .store
                .get_mut(ns, q)
                .map(|x| x.pop_ready(count))
                .unwrap_or_default();
            if !seqs.is_empty() {
                let op = Op {
                    time_ms: now + visibility,
                    flags: CONFIG.max_deliveries,
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
            let lsn = self.append(ENTRY_QUEUE_PURGE, encode_op(&h, None));
            self.store.apply_purge(ns, q, lsn)
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
        let s = QueueStore::restore(CONFIG, &mut d)?;
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
            assert_eq!(s.replay(&e, r.pos), Ok(true), "entry {}", r.pos.lsn);
        }
    }

    /// Lets time run to `at` on every queue.
    fn run_to(s: &mut QueueStore, at: u64) {
        let now = s.clock(at);
        for (ns, q) in s.keys() {
            s.advance(&ns, &q, now);
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

            // What a full replay of the log up to the snapshot gives, once its time has run
            // as far as the live shard's.
            let mut full = QueueStore::new(CONFIG);
            replay(&mut full, &live.log);
            run_to(&mut full, live.store.clock_ms);
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
            // Then time alone: delays and leases run out (the last ones at 6760).
            for at in [end, end + 150, end + 10_000] {
                for s in [&mut live.store, &mut restored, &mut full] {
                    run_to(s, at);
                }
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
        assert_eq!(q.next_due(), Some(130), "the stale lease of the touch is kept");
        for s in [&mut live.store, &mut restored] {
            run_to(s, 399);
            assert_eq!(s.get(A, JOBS).unwrap().msg(5).unwrap().state, State::Leased);
            assert_eq!(s.get(A, MAIL).unwrap().peek(10), [1, 2]);
            run_to(s, 400);
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
            .filter(|r| r.kind == ENTRY_QUEUE_ENQUEUE && r.pos.segment == pos.segment)
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
                            run_to(&mut s, u64::MAX / 2);
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
}
