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
use super::{Msg, Queue, QueueStore, State, PENDING};
use crate::log::format::{stored_bytes, ENTRY_ALIGN, MAX_BODY_BYTES, SEGMENT_HEADER_BYTES};
use crate::log::places::SegmentTable;
use crate::log::Position;
use crate::names::NAME_MAX_BYTES;
use crate::partition::Partitioner;
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

    /// Reads a section written by [`QueueStore::snapshot`] (its placeholders filled in); every
    /// queue must belong to partition `partition` (`None`: a whole shard's section, from a
    /// snapshot older than per-partition state, which the caller splits). Reads exactly the
    /// section: the caller checks where it ends.
    pub fn decode(dec: &mut Dec<'_>, partition: Option<(u32, &Partitioner)>) -> Result<QueueStore, String> {
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
                if let Some((p, partitioner)) = partition {
                    if partitioner.partition(ns, name) != p {
                        return Err(format!("queue {name:?} of {ns:?} is not partition {p}'s"));
                    }
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
        let mut store = QueueStore {
            clock_ms,
            ..QueueStore::default()
        };
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

impl QueueStore {
    /// Moves every queue into the store of the partition it belongs to (a whole shard's store,
    /// restored from a snapshot older than per-partition state); each gets the shard's clock, and
    /// the dead byte counts go to `dead_to`'s store.
    pub fn split(
        mut self,
        partitioner: &Partitioner,
        dead_to: u32,
        into: &mut std::collections::BTreeMap<u32, QueueStore>,
    ) {
        let mut keys: Vec<(Box<str>, Box<str>)> = self
            .queues
            .iter()
            .flat_map(|(ns, space)| space.keys().map(move |q| (ns.clone(), q.clone())))
            .collect();
        keys.sort_unstable();
        for (ns, name) in keys {
            let Some(mut q) = self.queues.get_mut(&ns).and_then(|s| s.remove(&name)) else {
                continue;
            };
            let target = into.entry(partitioner.partition(&ns, &name)).or_default();
            target.clock_ms = target.clock_ms.max(self.clock_ms);
            for m in q
                .slots
                .iter_mut()
                .filter(|m| m.state != State::Gone && m.loc != PENDING)
            {
                let (segment, offset) = self.segments.place(m.loc);
                m.loc = target.segments.loc(&Position {
                    lsn: 0,
                    segment,
                    offset,
                });
            }
            target.queues.entry(ns).or_default().insert(name, q);
        }
        let target = into.entry(dead_to).or_default();
        target.clock_ms = target.clock_ms.max(self.clock_ms);
        for (segment, dead) in self.segments.first_lsn.iter().zip(&self.segments.dead) {
            let ordinal = target.segments.ordinal(*segment) as usize;
            target.segments.dead[ordinal] += dead;
        }
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
    let mut dedup: HashMap<Box<str>, (u64, u64)> = HashMap::with_capacity(n);
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
    let dedup_ends = dedup
        .iter()
        .map(|(k, &(_, until))| Reverse((until, k.clone())))
        .collect();

    let q = Queue {
        base,
        slots,
        ready: BinaryHeap::from(ready),
        delayed: BinaryHeap::from(delayed),
        leases: leases.into_iter().map(Reverse).collect(),
        expired,
        dlq,
        dedup,
        dedup_ends,
        pending: HashMap::new(),
        leased_count,
        total_enqueued,
        total_acked,
        last_lsn,
    };
    Ok((q, places))
}

#[cfg(test)]
mod tests;
