//! The queue state machine of one partition. Per queue: messages by sequence number in a deque
//! (40 bytes a message; payloads stay in the log and are read from the mapped segment), a ready
//! heap by (priority, seq), a delay heap by visible-at, a lease heap by expiry, the dead-letter
//! set, and the dedup map. No I/O: the shard appends an entry, applies it here at once, and
//! answers once it is durable. The records of acked and purged messages are counted as dead
//! bytes of their segment, for compaction, which moves the messages still held to copies of
//! their entries (`state/compact.rs`).
//!
//! Invariants: a message is in exactly one state; the ready heap holds exactly the ready
//! messages and the delay heap exactly the delayed ones (the lease heap may hold stale entries,
//! checked against the message's lease time when popped); counts match the states; `advance(t)`
//! is the only way time moves a message (and forgets dedup keys whose window ended), and it is
//! called only when an entry applies, with the entry's `at_ms`, before the entry — live and in
//! replay alike, so replay rebuilds the same state. Reads never move time: what time alone
//! would change is changed by a `TICK` entry the timer (or a reader) proposes.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::rc::Rc;

use super::entry::NewMessage;
use crate::log::places::SegmentTable;
use crate::log::Position;
use crate::machine::At;

mod compact;
mod machine;
mod snapshot;

pub use machine::{NewMsg, QueueAnswer, QueueCommand, QueueOutput, QueuePending};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Acked or purged (a hole until the front of the deque passes it).
    Gone,
    Ready,
    Delayed,
    Leased,
    /// Its last lease ran out after `max_deliveries` deliveries; a DEAD entry will move it.
    Expired,
    Dead,
}

/// Marks a payload not settled in the log yet (it is in `pending`).
const PENDING: u64 = u64::MAX;
/// The fixed part of a message's record in an ENQUEUE entry (`format-spec/queue.md`).
const MESSAGE_RECORD_BYTES: u64 = 24;

/// One message.
#[derive(Clone, Copy, Debug)]
pub struct Msg {
    pub enqueued_at_ms: u64,
    /// Delayed: visible at; Leased: lease expiry; Dead: dead at.
    pub time_ms: u64,
    /// Settled: segment ordinal << 32 | entry offset; else `PENDING`.
    loc: u64,
    payload_rel: u32,
    pub payload_len: u32,
    pub delivery_count: u16,
    pub priority: u8,
    pub state: State,
    /// Leased for the last time: when this lease runs out the message is dead-lettered. Decided
    /// when leased, with the `max_deliveries` the LEASE entry records, so replay never depends
    /// on the configuration of the day.
    last_lease: bool,
    /// Its payload is read from a RELOCATED copy of its ENQUEUE entry (`compact.rs`), whose
    /// stored size is 24 bytes more than the original's.
    relocated: bool,
}

const _: () = assert!(std::mem::size_of::<Msg>() == 40);

/// Where a payload is.
pub enum Payload {
    Pending(Rc<[u8]>),
    /// In the entry at `offset` of the segment starting at LSN `segment`, `rel` bytes into its
    /// body.
    At {
        segment: u64,
        offset: u64,
        rel: u32,
        len: u32,
    },
}

/// Counters a queue reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub name: String,
    pub ready_count: u64,
    pub leased_count: u64,
    pub dlq_count: u64,
    pub delayed_count: u64,
    pub total_enqueued: u64,
    pub total_acked: u64,
}

/// One queue.
#[derive(Default)]
pub struct Queue {
    /// Sequence number of `slots[0]`.
    base: u64,
    slots: VecDeque<Msg>,
    ready: BinaryHeap<Reverse<(u8, u64)>>,
    delayed: BinaryHeap<Reverse<(u64, u64)>>,
    leases: BinaryHeap<Reverse<(u64, u64)>>,
    expired: Vec<u64>,
    dlq: BTreeSet<(u64, u64)>,
    dedup: HashMap<Box<str>, (u64, u64)>,
    /// (window end, key) of every dedup key, so `advance` forgets them in time order (an entry
    /// whose end no longer matches its key's is stale and passed over).
    dedup_ends: BinaryHeap<Reverse<(u64, Box<str>)>>,
    /// Payloads of messages whose ENQUEUE is not durable yet, by seq, with that entry's LSN
    /// (a snapshot names the entry by it until the entry is durable).
    pending: HashMap<u64, (u64, Rc<[u8]>)>,
    leased_count: u64,
    total_enqueued: u64,
    total_acked: u64,
    /// The newest entry applied to this queue (readers wait for it to be durable).
    pub last_lsn: u64,
}

impl Queue {
    /// The sequence number the next message gets.
    pub fn next_seq(&self) -> u64 {
        self.base.max(1) + self.slots.len() as u64
    }

    pub fn msg(&self, seq: u64) -> Option<&Msg> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.slots.get(i).filter(|m| m.state != State::Gone)
    }

    fn msg_mut(&mut self, seq: u64) -> Option<&mut Msg> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(i).filter(|m| m.state != State::Gone)
    }

    /// The seq a live dedup key names, if any.
    pub fn dedup_hit(&self, key: &str, now_ms: u64) -> Option<u64> {
        self.dedup
            .get(key)
            .filter(|(_, until)| *until > now_ms)
            .map(|(s, _)| *s)
    }

    pub fn stats(&self, name: &str) -> Stats {
        Stats {
            name: name.to_string(),
            ready_count: self.ready.len() as u64,
            leased_count: self.leased_count,
            dlq_count: self.dlq.len() as u64,
            delayed_count: self.delayed.len() as u64,
            total_enqueued: self.total_enqueued,
            total_acked: self.total_acked,
        }
    }

    /// Lets leases and delays that end at or before `now_ms` run out, and forgets dedup keys
    /// whose window ended by then; true if a message became ready. Only applying an entry calls
    /// it (with the entry's time).
    fn advance(&mut self, now_ms: u64) -> bool {
        while let Some(Reverse((end, _))) = self.dedup_ends.peek() {
            if *end > now_ms {
                break;
            }
            let Some(Reverse((end, key))) = self.dedup_ends.pop() else {
                break;
            };
            if self.dedup.get(&key).is_some_and(|&(_, until)| until == end) {
                self.dedup.remove(&key);
            }
        }
        let mut woke = false;
        while let Some(&Reverse((at, seq))) = self.delayed.peek() {
            if at > now_ms {
                break;
            }
            self.delayed.pop();
            if let Some(m) = self.msg_mut(seq) {
                debug_assert_eq!(m.state, State::Delayed);
                m.state = State::Ready;
                let p = m.priority;
                self.ready.push(Reverse((p, seq)));
                woke = true;
            }
        }
        while let Some(&Reverse((at, seq))) = self.leases.peek() {
            if at > now_ms {
                break;
            }
            self.leases.pop();
            let Some(m) = self.msg_mut(seq) else { continue };
            if m.state != State::Leased || m.time_ms != at {
                continue; // stale: acked, nacked or touched since
            }
            if m.last_lease {
                m.state = State::Expired;
                self.expired.push(seq);
            } else {
                m.state = State::Ready;
                let p = m.priority;
                self.ready.push(Reverse((p, seq)));
                woke = true;
            }
            self.leased_count -= 1;
        }
        woke
    }

    /// Pops the lease-heap entries at its head that no lease stands behind any more (acked,
    /// nacked or touched since), so that [`Queue::next_due`] is a time something happens and
    /// no TICK is written for nothing. Depends only on the state: replay does the same.
    fn drop_stale_leases(&mut self) {
        while let Some(&Reverse((at, seq))) = self.leases.peek() {
            if self
                .msg(seq)
                .is_some_and(|m| m.state == State::Leased && m.time_ms == at)
            {
                break;
            }
            self.leases.pop();
        }
    }

    /// The earliest time a delay or lease ends.
    pub fn next_due(&self) -> Option<u64> {
        let d = self.delayed.peek().map(|r| r.0 .0);
        let l = self.leases.peek().map(|r| r.0 .0);
        d.into_iter().chain(l).min()
    }

    /// The earliest time a dedup key's window ends.
    pub fn next_dedup_end(&self) -> Option<u64> {
        self.dedup_ends.peek().map(|r| r.0 .0)
    }

    /// The `count` ready messages a lease takes next, in delivery order (the heap is left as it
    /// was: only its layout may differ, which nothing reads).
    pub fn top_ready(&mut self, count: usize) -> Vec<u64> {
        let seqs = self.pop_ready(count);
        self.unpop(&seqs);
        seqs
    }

    /// Messages whose lease ran out at their last delivery, for a DEAD entry.
    pub fn expired(&self) -> &[u64] {
        &self.expired
    }

    /// Takes up to `count` ready messages in delivery order.
    fn pop_ready(&mut self, count: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(count.min(self.ready.len()));
        while out.len() < count {
            match self.ready.pop() {
                Some(Reverse((_, seq))) => out.push(seq),
                None => break,
            }
        }
        out
    }

    fn unpop(&mut self, seqs: &[u64]) {
        for &s in seqs {
            if let Some(m) = self.msg(s) {
                let p = m.priority;
                self.ready.push(Reverse((p, s)));
            }
        }
    }

    /// Up to `count` ready messages in delivery order, without leasing them.
    pub fn peek(&self, count: usize) -> Vec<u64> {
        // The `count` smallest of the heap, kept in a bounded max-heap.
        let mut best: BinaryHeap<(u8, u64)> = BinaryHeap::with_capacity(count + 1);
        for Reverse(k) in self.ready.iter() {
            best.push(*k);
            if best.len() > count {
                best.pop();
            }
        }
        best.into_sorted_vec().into_iter().map(|(_, s)| s).collect()
    }

    /// Dead-lettered messages, oldest death first.
    pub fn dlq(&self, limit: usize) -> Vec<u64> {
        self.dlq.iter().take(limit).map(|(_, s)| *s).collect()
    }

    /// Where a message's payload is.
    pub fn payload(&self, seq: u64, segments: &SegmentTable) -> Option<Payload> {
        let m = self.msg(seq)?;
        if m.loc == PENDING {
            return self.pending.get(&seq).map(|(_, b)| Payload::Pending(b.clone()));
        }
        let (segment, offset) = segments.place(m.loc);
        Some(Payload::At {
            segment,
            offset,
            rel: m.payload_rel,
            len: m.payload_len,
        })
    }

    fn trim(&mut self) {
        while self.slots.front().is_some_and(|m| m.state == State::Gone) {
            self.slots.pop_front();
            self.base += 1;
        }
    }

    /// Removes a message; returns the log place and size of its record in its ENQUEUE entry
    /// (now dead bytes) if the entry had settled.
    fn remove(&mut self, seq: u64) -> Option<(u64, u64)> {
        let m = self.msg_mut(seq)?;
        m.state = State::Gone;
        let dead = (m.loc != PENDING).then_some((m.loc, MESSAGE_RECORD_BYTES + u64::from(m.payload_len)));
        self.pending.remove(&seq);
        self.trim();
        dead
    }
}

/// Why an entry could not be applied in replay (corruption, or a bug).
pub type ReplayError = String;

/// One partition's queues.
#[derive(Default)]
pub struct QueueStore {
    /// The queue clock: the latest time an applied entry was stamped with.
    clock_ms: u64,
    /// Namespace → queue name → queue (nested so lookups by `&str` allocate nothing).
    queues: HashMap<Box<str>, HashMap<Box<str>, Queue>>,
    segments: SegmentTable,
}

impl QueueStore {
    /// The latest time an applied entry carried: a decision stamps its entry no earlier.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    pub fn get(&self, ns: &str, q: &str) -> Option<&Queue> {
        self.queues.get(ns)?.get(q)
    }

    pub fn get_mut(&mut self, ns: &str, q: &str) -> Option<&mut Queue> {
        self.queues.get_mut(ns)?.get_mut(q)
    }

    fn queue(&mut self, ns: &str, q: &str) -> &mut Queue {
        if !self.queues.contains_key(ns) {
            self.queues.insert(ns.into(), HashMap::new());
        }
        let space = self.queues.get_mut(ns).expect("inserted above");
        if !space.contains_key(q) {
            space.insert(q.into(), Queue::default());
        }
        space.get_mut(q).expect("inserted above")
    }

    pub fn segments(&self) -> &SegmentTable {
        &self.segments
    }

    /// Bytes of acked and purged messages' records, all segments together.
    pub fn dead_bytes(&self) -> u64 {
        self.segments.dead.iter().sum()
    }

    /// Names of the queues of `ns`.
    pub fn names(&self, ns: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .queues
            .get(ns)
            .map(|space| space.keys().map(|q| q.to_string()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Queues per namespace (for namespace listings).
    pub fn counts(&self) -> HashMap<String, u64> {
        self.queues
            .iter()
            .map(|(ns, space)| (ns.to_string(), space.len() as u64))
            .collect()
    }

    /// Every queue, for the timer.
    pub fn keys(&self) -> Vec<(Box<str>, Box<str>)> {
        self.queues
            .iter()
            .flat_map(|(ns, space)| space.keys().map(move |q| (ns.clone(), q.clone())))
            .collect()
    }

    fn advance(&mut self, ns: &str, q: &str, now_ms: u64) -> bool {
        self.get_mut(ns, q).is_some_and(|queue| queue.advance(now_ms))
    }

    /// Messages held, in every state, over all queues.
    pub fn message_count(&self) -> u64 {
        self.queues
            .values()
            .flat_map(HashMap::values)
            .map(|q| q.slots.len() as u64)
            .sum()
    }

    /// Messages by state over all queues: ready, leased, delayed, dead-lettered.
    pub fn depths(&self) -> [u64; 4] {
        let mut d = [0u64; 4];
        for q in self.queues.values().flat_map(HashMap::values) {
            d[0] += q.ready.len() as u64;
            d[1] += q.leased_count;
            d[2] += q.delayed.len() as u64;
            d[3] += q.dlq.len() as u64;
        }
        d
    }

    /// Applies an ENQUEUE or ADD (dedup keys kept for `window` ms); the messages' payloads are
    /// held in memory while the entry is pending.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_enqueue(
        &mut self,
        ns: &str,
        qname: &str,
        at_ms: u64,
        lsn: u64,
        window: u64,
        messages: &[NewMessage<'_>],
        at: At,
    ) -> Result<(), ReplayError> {
        let loc = match at {
            At::Pending(_) => PENDING,
            At::Placed(pos) => self.segments.loc(&pos),
        };
        let q = self.queue(ns, qname);
        for m in messages {
            if m.seq != q.next_seq() {
                return Err(format!(
                    "queue {qname:?}: message {} where {} was next",
                    m.seq,
                    q.next_seq()
                ));
            }
            if q.slots.is_empty() {
                q.base = m.seq;
            }
            // Grow by an eighth, not double: the slack is memory every message pays for.
            if q.slots.len() == q.slots.capacity() {
                q.slots.reserve_exact((q.slots.len() / 8).max(64));
            }
            if q.ready.len() == q.ready.capacity() {
                q.ready.reserve_exact((q.ready.len() / 8).max(64));
            }
            let delayed = m.visible_at_ms > at_ms;
            q.slots.push_back(Msg {
                enqueued_at_ms: at_ms,
                time_ms: if delayed { m.visible_at_ms } else { 0 },
                loc,
                payload_rel: m.payload_offset as u32,
                payload_len: m.payload.len() as u32,
                delivery_count: 0,
                priority: m.priority,
                state: if delayed { State::Delayed } else { State::Ready },
                last_lease: false,
                relocated: false,
            });
            if delayed {
                q.delayed.push(Reverse((m.visible_at_ms, m.seq)));
            } else {
                q.ready.push(Reverse((m.priority, m.seq)));
            }
            if loc == PENDING {
                q.pending.insert(m.seq, (lsn, Rc::from(m.payload)));
            }
            if !m.dedup_key.is_empty() {
                let end = at_ms.saturating_add(window);
                q.dedup.insert(m.dedup_key.into(), (m.seq, end));
                q.dedup_ends.push(Reverse((end, m.dedup_key.into())));
            }
            q.total_enqueued += 1;
        }
        q.last_lsn = q.last_lsn.max(lsn);
        Ok(())
    }

    /// An ENQUEUE is durable at `pos`: its payloads are read from the log from now on. A
    /// message compaction relocated meanwhile (`compact.rs`) stays at its copy.
    pub fn settle_enqueue(&mut self, ns: &str, qname: &str, seqs: &[u64], pos: &Position) {
        let loc = self.segments.loc(pos);
        if let Some(q) = self.get_mut(ns, qname) {
            for &s in seqs {
                q.pending.remove(&s);
                if let Some(m) = q.msg_mut(s).filter(|m| m.loc == PENDING) {
                    m.loc = loc;
                }
            }
        }
    }

    /// Applies an operation entry to `seqs`. Live callers pass only messages in the right state;
    /// in replay a message in the wrong state is an error.
    pub fn apply_op(
        &mut self,
        kind: u16,
        ns: &str,
        qname: &str,
        lsn: u64,
        op: &super::entry::Op,
    ) -> Result<(), ReplayError> {
        use super::entry::*;
        let Some(q) = self.queues.get_mut(ns).and_then(|s| s.get_mut(qname)) else {
            return Err(format!("operation on queue {qname:?} of {ns:?}, which has no messages"));
        };
        q.last_lsn = q.last_lsn.max(lsn);
        for &seq in &op.seqs {
            let Some(&found) = q.msg(seq) else {
                return Err(format!("queue {qname:?}: message {seq} is not there"));
            };
            let mut m = found;
            let want = match kind {
                ENTRY_QUEUE_LEASE => State::Ready,
                ENTRY_QUEUE_ACK | ENTRY_QUEUE_NACK | ENTRY_QUEUE_TOUCH => State::Leased,
                ENTRY_QUEUE_DEAD => State::Expired,
                ENTRY_QUEUE_REQUEUE => State::Dead,
                _ => return Err(format!("entry type {kind} is not a queue operation")),
            };
            if m.state != want {
                return Err(format!("queue {qname:?}: message {seq} is {:?}, not {want:?}", m.state));
            }
            match kind {
                ENTRY_QUEUE_LEASE => {
                    // Taken off the ready heap already (`pop_ready`, live or in replay).
                    m.state = State::Leased;
                    m.time_ms = op.time_ms;
                    m.delivery_count = m.delivery_count.saturating_add(1);
                    // `flags` holds the max_deliveries in effect when the lease was made.
                    m.last_lease = op.flags > 0 && u32::from(m.delivery_count) >= op.flags;
                    q.leases.push(Reverse((op.time_ms, seq)));
                    q.leased_count += 1;
                }
                ENTRY_QUEUE_ACK => {
                    q.leased_count -= 1;
                    q.total_acked += 1;
                    if let Some((loc, bytes)) = q.remove(seq) {
                        self.segments.mark_dead(loc, bytes);
                    }
                    continue;
                }
                ENTRY_QUEUE_NACK => {
                    q.leased_count -= 1;
                    if op.flags & FLAG_TO_DLQ != 0 {
                        m.state = State::Dead;
                        m.time_ms = op.time_ms;
                        q.dlq.insert((op.time_ms, seq));
                    } else if op.time_ms > 0 {
                        m.state = State::Delayed;
                        m.time_ms = op.time_ms;
                        q.delayed.push(Reverse((op.time_ms, seq)));
                    } else {
                        m.state = State::Ready;
                        q.ready.push(Reverse((m.priority, seq)));
                    }
                }
                ENTRY_QUEUE_TOUCH => {
                    m.time_ms = op.time_ms;
                    q.leases.push(Reverse((op.time_ms, seq)));
                }
                ENTRY_QUEUE_DEAD => {
                    m.state = State::Dead;
                    m.time_ms = op.time_ms;
                    q.dlq.insert((op.time_ms, seq));
                    q.expired.retain(|&s| s != seq);
                }
                _ => {
                    // REQUEUE
                    q.dlq.remove(&(m.time_ms, seq));
                    m.state = State::Ready;
                    m.delivery_count = 0;
                    m.time_ms = 0;
                    q.ready.push(Reverse((m.priority, seq)));
                }
            }
            if let Some(slot) = q.msg_mut(seq) {
                *slot = m;
            }
        }
        q.drop_stale_leases();
        Ok(())
    }

    /// Applies a PURGE: ready and delayed messages go; returns how many.
    pub fn apply_purge(&mut self, ns: &str, qname: &str, lsn: u64) -> u64 {
        let Some(q) = self.queues.get_mut(ns).and_then(|s| s.get_mut(qname)) else {
            return 0;
        };
        q.last_lsn = q.last_lsn.max(lsn);
        let seqs: Vec<u64> = q
            .ready
            .drain()
            .map(|Reverse((_, s))| s)
            .chain(q.delayed.drain().map(|Reverse((_, s))| s))
            .collect();
        for &s in &seqs {
            if let Some((loc, bytes)) = q.remove(s) {
                self.segments.mark_dead(loc, bytes);
            }
        }
        seqs.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::*;
    use super::*;

    const NS: &str = "app";
    const Q: &str = "jobs";

    /// The dedup window the tests' enqueues carry.
    const WINDOW: u64 = 1000;

    fn store() -> QueueStore {
        QueueStore::default()
    }

    fn enqueue(s: &mut QueueStore, at: u64, items: &[(u8, u64, &str)]) -> Vec<u64> {
        let next = s.get(NS, Q).map_or(1, Queue::next_seq);
        let msgs: Vec<NewMessage<'_>> = items
            .iter()
            .enumerate()
            .map(|(i, (p, vis, key))| NewMessage {
                seq: next + i as u64,
                visible_at_ms: *vis,
                priority: *p,
                dedup_key: key,
                payload: b"x",
                payload_offset: 0,
            })
            .collect();
        s.apply_enqueue(NS, Q, at, 1, WINDOW, &msgs, At::Pending(1)).unwrap();
        msgs.iter().map(|m| m.seq).collect()
    }

    fn op(s: &mut QueueStore, kind: u16, time_ms: u64, flags: u32, seqs: &[u64]) -> Result<(), String> {
        let o = Op {
            time_ms,
            flags,
            seqs: seqs.to_vec(),
        };
        s.apply_op(kind, NS, Q, 2, &o)
    }

    /// A lease at `now` of up to `count` messages, recording `max` deliveries.
    fn lease_max(s: &mut QueueStore, max: u32, now: u64, count: usize, until: u64) -> Vec<u64> {
        s.advance(NS, Q, now);
        let seqs = s.get_mut(NS, Q).unwrap().pop_ready(count);
        if !seqs.is_empty() {
            op(s, ENTRY_QUEUE_LEASE, until, max, &seqs).unwrap();
        }
        seqs
    }

    fn lease(s: &mut QueueStore, now: u64, count: usize, until: u64) -> Vec<u64> {
        lease_max(s, 5, now, count, until)
    }

    #[test]
    fn priority_then_fifo() {
        let mut s = store();
        enqueue(&mut s, 0, &[(5, 0, ""), (1, 0, ""), (5, 0, ""), (0, 0, "")]);
        assert_eq!(s.get(NS, Q).unwrap().peek(10), vec![4, 2, 1, 3]);
        assert_eq!(lease(&mut s, 0, 3, 100), vec![4, 2, 1]);
        let st = s.get(NS, Q).unwrap().stats(Q);
        assert_eq!((st.ready_count, st.leased_count, st.total_enqueued), (1, 3, 4));
    }

    #[test]
    fn a_lease_acked_or_touched_leaves_no_time_due_behind() {
        let mut s = store();
        enqueue(&mut s, 0, &[(0, 0, ""), (0, 0, "")]);
        assert_eq!(lease(&mut s, 0, 2, 100), vec![1, 2]);
        assert_eq!(s.get(NS, Q).unwrap().next_due(), Some(100));
        op(&mut s, ENTRY_QUEUE_TOUCH, 500, 0, &[1]).unwrap();
        op(&mut s, ENTRY_QUEUE_ACK, 0, 0, &[2]).unwrap();
        // Nothing happens at 100 any more: the next time due is the touched lease's end.
        assert_eq!(s.get(NS, Q).unwrap().next_due(), Some(500));
        op(&mut s, ENTRY_QUEUE_ACK, 0, 0, &[1]).unwrap();
        assert_eq!(s.get(NS, Q).unwrap().next_due(), None, "no lease left");
    }

    #[test]
    fn leases_expire_then_dead_letter_after_max_deliveries() {
        let mut s = store();
        enqueue(&mut s, 0, &[(0, 0, "")]);
        assert_eq!(lease_max(&mut s, 2, 0, 1, 100), vec![1]);
        assert!(lease_max(&mut s, 2, 50, 1, 150).is_empty(), "invisible while leased");
        assert_eq!(
            lease_max(&mut s, 2, 100, 1, 200),
            vec![1],
            "ready again when the lease ends"
        );
        assert_eq!(s.get(NS, Q).unwrap().msg(1).unwrap().delivery_count, 2);
        assert!(lease_max(&mut s, 2, 200, 1, 300).is_empty());
        assert_eq!(s.get(NS, Q).unwrap().expired(), &[1]);
        op(&mut s, ENTRY_QUEUE_DEAD, 200, 0, &[1]).unwrap();
        let q = s.get(NS, Q).unwrap();
        assert_eq!((q.dlq(10), q.stats(Q).dlq_count, q.expired().len()), (vec![1], 1, 0));
        op(&mut s, ENTRY_QUEUE_REQUEUE, 0, 0, &[1]).unwrap();
        assert_eq!(lease(&mut s, 300, 1, 400), vec![1]);
        assert_eq!(s.get(NS, Q).unwrap().msg(1).unwrap().delivery_count, 1);
    }

    #[test]
    fn the_max_deliveries_a_lease_recorded_decides() {
        // Leases made under max_deliveries = 2: the second is the last one, the first is not.
        let mut s = store();
        enqueue(&mut s, 0, &[(0, 0, "")]);
        s.get_mut(NS, Q).unwrap().pop_ready(1);
        op(&mut s, ENTRY_QUEUE_LEASE, 100, 2, &[1]).unwrap();
        s.advance(NS, Q, 100);
        assert_eq!(s.get(NS, Q).unwrap().msg(1).unwrap().state, State::Ready);
        s.get_mut(NS, Q).unwrap().pop_ready(1);
        op(&mut s, ENTRY_QUEUE_LEASE, 200, 2, &[1]).unwrap();
        s.advance(NS, Q, 200);
        assert_eq!(s.get(NS, Q).unwrap().expired(), &[1]);
    }

    #[test]
    fn ack_nack_touch_delay_purge() {
        let mut s = store();
        enqueue(&mut s, 0, &[(0, 0, ""), (0, 0, ""), (0, 500, ""), (0, 0, "")]);
        assert_eq!(s.get(NS, Q).unwrap().stats(Q).delayed_count, 1);
        assert_eq!(lease(&mut s, 0, 2, 100), vec![1, 2]);
        op(&mut s, ENTRY_QUEUE_ACK, 0, 0, &[1]).unwrap();
        assert!(
            op(&mut s, ENTRY_QUEUE_ACK, 0, 0, &[1]).is_err(),
            "acked twice is corruption"
        );
        op(&mut s, ENTRY_QUEUE_TOUCH, 1000, 0, &[2]).unwrap();
        assert!(lease(&mut s, 200, 5, 300).contains(&4));
        assert!(!s.get(NS, Q).unwrap().peek(10).contains(&2), "a touched lease holds");
        op(&mut s, ENTRY_QUEUE_NACK, 0, 0, &[2]).unwrap();
        assert_eq!(s.get(NS, Q).unwrap().peek(10), vec![2]);
        // Purge drops the ready 2 and the delayed 3 (visible at 500), not the leased 4.
        s.advance(NS, Q, 250);
        assert_eq!(s.apply_purge(NS, Q, 3), 2);
        let st = s.get(NS, Q).unwrap().stats(Q);
        assert_eq!(
            (st.ready_count, st.delayed_count, st.leased_count, st.total_acked),
            (0, 0, 1, 1)
        );
        // 4's lease (until 300) runs out: ready again, delivered a second time.
        s.advance(NS, Q, 600);
        assert_eq!(s.get(NS, Q).unwrap().peek(10), vec![4]);
        assert_eq!(lease(&mut s, 600, 5, 700), vec![4]);
        assert_eq!(s.get(NS, Q).unwrap().msg(4).unwrap().delivery_count, 2);
        op(&mut s, ENTRY_QUEUE_NACK, 0, FLAG_TO_DLQ, &[4]).unwrap();
        assert_eq!(s.get(NS, Q).unwrap().stats(Q).dlq_count, 1);
    }

    #[test]
    fn acked_and_purged_messages_are_dead_bytes() {
        let mut s = store();
        let at = |offset| Position {
            lsn: 1,
            segment: 1,
            offset,
        };
        let msgs: Vec<NewMessage<'_>> = (1..=3)
            .map(|seq| NewMessage {
                seq,
                visible_at_ms: 0,
                priority: 0,
                dedup_key: "",
                payload: b"hello",
                payload_offset: 0,
            })
            .collect();
        s.apply_enqueue(NS, Q, 0, 1, WINDOW, &msgs, At::Placed(at(64))).unwrap();
        assert_eq!(s.dead_bytes(), 0);
        assert_eq!(lease(&mut s, 0, 1, 100), vec![1]);
        op(&mut s, ENTRY_QUEUE_ACK, 0, 0, &[1]).unwrap();
        assert_eq!(s.dead_bytes(), 24 + 5);
        assert_eq!(s.apply_purge(NS, Q, 3), 2);
        assert_eq!(s.dead_bytes(), 3 * (24 + 5));
    }

    #[test]
    fn dedup_keys_live_for_the_window() {
        let mut s = store();
        enqueue(&mut s, 0, &[(0, 0, "k")]);
        let q = s.get(NS, Q).unwrap();
        assert_eq!(q.dedup_hit("k", 999), Some(1));
        assert_eq!(q.dedup_hit("k", 1000), None);
        s.advance(NS, Q, 999);
        assert_eq!(s.get(NS, Q).unwrap().dedup.len(), 1);
        s.advance(NS, Q, 1000);
        assert_eq!(s.get(NS, Q).unwrap().dedup.len(), 0, "time running on forgets the key");
        assert!(s.get(NS, Q).unwrap().dedup_ends.is_empty());
    }

    #[test]
    fn memory_per_waiting_message() {
        let mut s = store();
        let n = 100_000u64;
        let items: Vec<(u8, u64, &str)> = (0..1000).map(|i| ((i % 7) as u8, 0, "")).collect();
        for _ in 0..n / 1000 {
            enqueue(&mut s, 0, &items);
        }
        let q = s.get_mut(NS, Q).unwrap();
        q.pending.clear();
        q.pending.shrink_to_fit();
        let bytes = q.slots.capacity() * std::mem::size_of::<Msg>()
            + q.ready.capacity() * std::mem::size_of::<Reverse<(u8, u64)>>();
        let per = bytes as f64 / n as f64;
        assert!(per <= 64.0, "{per:.1} bytes a waiting message");
    }
}
