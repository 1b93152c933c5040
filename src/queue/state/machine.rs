//! The queue store as a [`Machine`]: what each queue command decides against the state, and how
//! each queue entry applies (`format-spec/queue.md`).
//!
//! A decision stamps its entry with the queue clock's time: now, but never earlier than an entry
//! already applied. Applying an entry first lets time run to that stamp (leases and delays that
//! ended run out, dedup windows that ended close), then applies the entry; so a decision checks
//! what it needs at the stamp (a lease still running then, a dedup key still open then). What
//! time alone changes is moved by a `TICK` entry: the timer proposes one when a delay or lease has
//! run out, and so does a reader or a lease that needs the state as of now.

use std::collections::HashMap;

use super::{QueueStore, State};
use crate::log::format::EntryRef;
use crate::log::Position;
use crate::machine::{At, Corrupt, DecideCtx, Decided, Error, Kind, Machine, Partition, RestoreCtx};
use crate::partition::Partitioner;
use crate::queue::entry::*;
use crate::snapshot::codec::{Dec, Enc};
use crate::snapshot::shard::Captured;

/// A message to enqueue (validated by the API).
#[derive(Debug)]
pub struct NewMsg {
    pub payload: Vec<u8>,
    pub priority: u8,
    pub delay_ms: u64,
    pub dedup_key: String,
}

/// A queue command that changes state.
#[derive(Debug)]
pub enum QueueCommand {
    Add {
        ns: String,
        queue: String,
        messages: Vec<NewMsg>,
    },
    /// Lease these ready messages (the queue's next ones: `Queue::top_ready`).
    Lease {
        ns: String,
        queue: String,
        seqs: Vec<u64>,
        visibility_ms: u64,
    },
    Ack {
        ns: String,
        queue: String,
        seqs: Vec<u64>,
    },
    Nack {
        ns: String,
        queue: String,
        seqs: Vec<u64>,
        delay_ms: u64,
        to_dlq: bool,
    },
    Touch {
        ns: String,
        queue: String,
        seqs: Vec<u64>,
        visibility_ms: u64,
    },
    Requeue {
        ns: String,
        queue: String,
        seqs: Vec<u64>,
    },
    Purge {
        ns: String,
        queue: String,
    },
    /// Let time run on a queue (leases and delays that ended run out).
    Tick {
        ns: String,
        queue: String,
    },
    /// Dead-letter messages whose last lease ran out.
    Dead {
        ns: String,
        queue: String,
        seqs: Vec<u64>,
    },
}

/// What a queue command answers. `wait`: the entry behind the state an answer that writes
/// nothing reveals, to be committed before it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueAnswer {
    Enqueued {
        seqs: Vec<u64>,
        deduplicated: Vec<bool>,
        wait: Option<u64>,
    },
    Leased(Vec<u64>),
    /// Ack, nack, touch, requeue: how many were changed, and the seqs that could not be.
    Done {
        count: u64,
        not_found: Vec<u64>,
        wait: Option<u64>,
    },
    /// A purge (its count is the output of applying it), a tick, a dead-lettering.
    Applied,
}

/// What applying a queue entry tells its proposer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueOutput {
    /// Messages became ready (consumers waiting on the queue should look).
    pub woke: bool,
    /// Messages a PURGE removed.
    pub purged: u64,
}

/// An ENQUEUE or ADD applied before it was durable: its messages, to settle at its place.
pub struct QueuePending {
    ns: Box<str>,
    queue: Box<str>,
    seqs: Vec<u64>,
}

fn head<'a>(ns: &'a str, queue: &'a str, at_ms: u64) -> Head<'a> {
    Head {
        namespace: ns,
        name: queue,
        at_ms,
    }
}

impl QueueStore {
    /// The entry behind a queue's state (0: none).
    fn last_index(&self, ns: &str, queue: &str) -> Option<u64> {
        self.get(ns, queue).map(|q| q.last_lsn).filter(|&l| l > 0)
    }

    fn decide_add(&self, ns: &str, queue: &str, messages: &[NewMsg], at: u64, window: u64) -> Decided<QueueAnswer> {
        // Which messages are duplicates (of an earlier message, or of one earlier in this batch),
        // and the seq every message answers with.
        let q = self.get(ns, queue);
        let mut next = q.map_or(1, |q| q.next_seq());
        let mut seqs = Vec::with_capacity(messages.len());
        let mut deduplicated = Vec::with_capacity(messages.len());
        let mut fresh = Vec::new();
        let mut in_batch: HashMap<&str, u64> = HashMap::new();
        for m in messages {
            let key = m.dedup_key.as_str();
            let hit = if key.is_empty() {
                None
            } else {
                in_batch
                    .get(key)
                    .copied()
                    .or_else(|| q.and_then(|q| q.dedup_hit(key, at)))
            };
            match hit {
                Some(seq) => {
                    seqs.push(seq);
                    deduplicated.push(true);
                }
                None => {
                    if !key.is_empty() {
                        in_batch.insert(key, next);
                    }
                    fresh.push(NewMessage {
                        seq: next,
                        visible_at_ms: if m.delay_ms > 0 {
                            at.saturating_add(m.delay_ms)
                        } else {
                            0
                        },
                        priority: m.priority,
                        dedup_key: key,
                        payload: &m.payload,
                        payload_offset: 0,
                    });
                    seqs.push(next);
                    deduplicated.push(false);
                    next += 1;
                }
            }
        }
        if fresh.is_empty() {
            return Decided::nothing(QueueAnswer::Enqueued {
                seqs,
                deduplicated,
                wait: self.last_index(ns, queue),
            });
        }
        let body = encode_add(&head(ns, queue, at), window, &mut fresh);
        Decided::write(
            ENTRY_QUEUE_ADD,
            body,
            QueueAnswer::Enqueued {
                seqs,
                deduplicated,
                wait: None,
            },
        )
    }

    /// ACK, NACK, TOUCH, REQUEUE: the messages in the state the operation needs at `at` (a lease
    /// still running then); the others are answered as not found.
    #[allow(clippy::too_many_arguments)]
    fn decide_op(
        &self,
        ns: &str,
        queue: &str,
        kind: u16,
        seqs: Vec<u64>,
        at: u64,
        time_ms: u64,
        flags: u32,
    ) -> Decided<QueueAnswer> {
        let q = self.get(ns, queue);
        let mut seen = std::collections::HashSet::new();
        let mut found = Vec::new();
        let mut not_found = Vec::new();
        for s in seqs {
            if !seen.insert(s) {
                continue;
            }
            let ok = match q.and_then(|q| q.msg(s)) {
                Some(m) if kind == ENTRY_QUEUE_REQUEUE => m.state == State::Dead,
                Some(m) => m.state == State::Leased && m.time_ms > at,
                None => false,
            };
            if ok {
                found.push(s);
            } else {
                not_found.push(s);
            }
        }
        if found.is_empty() {
            return Decided::nothing(QueueAnswer::Done {
                count: 0,
                not_found,
                wait: self.last_index(ns, queue),
            });
        }
        let count = found.len() as u64;
        let op = Op {
            time_ms,
            flags,
            seqs: found,
        };
        Decided::write(
            kind,
            encode_op(&head(ns, queue, at), Some(&op)),
            QueueAnswer::Done {
                count,
                not_found,
                wait: None,
            },
        )
    }

    /// Applies an operation entry (LEASE .. REQUEUE).
    fn apply_any_op(&mut self, kind: u16, ns: &str, qn: &str, lsn: u64, body: &[u8]) -> Result<(), Corrupt> {
        let (_, op) = decode_op(body)?;
        if kind == ENTRY_QUEUE_LEASE {
            // A lease takes the top of the ready heap at its time: the decision named them.
            let q = self
                .get_mut(ns, qn)
                .ok_or_else(|| Corrupt::from("a lease on a queue with no messages"))?;
            let mut popped = q.pop_ready(op.seqs.len());
            let mut want = op.seqs.clone();
            popped.sort_unstable();
            want.sort_unstable();
            if popped != want {
                return Err(Corrupt(format!(
                    "queue {qn:?}: lease of {want:?} but {popped:?} were first"
                )));
            }
        }
        Ok(self.apply_op(kind, ns, qn, lsn, &op)?)
    }
}

impl Machine for QueueStore {
    const KIND: Kind = Kind::Queue;
    type Command = QueueCommand;
    type Answer = QueueAnswer;
    type Output = QueueOutput;
    type Pending = QueuePending;

    fn cell(p: &Partition) -> &std::cell::RefCell<Self> {
        &p.queues
    }

    fn partition_of(_entry_type: u16, body: &[u8], partitioner: &Partitioner) -> Result<u32, Corrupt> {
        let h = decode_head(body)?;
        Ok(partitioner.partition(h.namespace, h.name))
    }

    fn decide(&self, cmd: QueueCommand, ctx: &DecideCtx<'_>) -> Result<Decided<QueueAnswer>, Error> {
        let at = ctx.now_ms.max(self.clock_ms());
        let cfg = &ctx.config.queue;
        Ok(match cmd {
            QueueCommand::Add { ns, queue, messages } => {
                self.decide_add(&ns, &queue, &messages, at, cfg.dedup_window_ms)
            }
            QueueCommand::Lease {
                ns,
                queue,
                seqs,
                visibility_ms,
            } => {
                let q = self.get(&ns, &queue);
                let ready = |s: &u64| q.and_then(|q| q.msg(*s)).is_some_and(|m| m.state == State::Ready);
                if seqs.is_empty() || !seqs.iter().all(ready) {
                    return Err(Error::Corrupt(format!("a lease of {seqs:?}, not all ready")));
                }
                // Applying runs the queue's time to `at` before it takes the top ready messages:
                // if a delay or lease ends by then, they may not be the ones named. The caller
                // lets time run first (a TICK); were it not run, this refuses rather than write
                // a lease that would not apply.
                if q.and_then(|q| q.next_due()).is_some_and(|d| d <= at) {
                    return Err(Error::busy("the queue's time has not run to the lease's; retry"));
                }
                // The lease records the max_deliveries in effect, which decides (now and in
                // replay) whether it is the message's last.
                let op = Op {
                    time_ms: at.saturating_add(visibility_ms),
                    flags: cfg.max_deliveries,
                    seqs,
                };
                let body = encode_op(&head(&ns, &queue, at), Some(&op));
                Decided::write(ENTRY_QUEUE_LEASE, body, QueueAnswer::Leased(op.seqs))
            }
            QueueCommand::Ack { ns, queue, seqs } => self.decide_op(&ns, &queue, ENTRY_QUEUE_ACK, seqs, at, 0, 0),
            QueueCommand::Nack {
                ns,
                queue,
                seqs,
                delay_ms,
                to_dlq,
            } => {
                let (time, flags) = match (to_dlq, delay_ms) {
                    (true, _) => (at, FLAG_TO_DLQ),
                    (false, 0) => (0, 0),
                    (false, d) => (at.saturating_add(d), 0),
                };
                self.decide_op(&ns, &queue, ENTRY_QUEUE_NACK, seqs, at, time, flags)
            }
            QueueCommand::Touch {
                ns,
                queue,
                seqs,
                visibility_ms,
            } => {
                let until = at.saturating_add(visibility_ms);
                self.decide_op(&ns, &queue, ENTRY_QUEUE_TOUCH, seqs, at, until, 0)
            }
            QueueCommand::Requeue { ns, queue, seqs } => {
                self.decide_op(&ns, &queue, ENTRY_QUEUE_REQUEUE, seqs, at, 0, 0)
            }
            QueueCommand::Purge { ns, queue } => {
                if self.get(&ns, &queue).is_none() {
                    return Ok(Decided::nothing(QueueAnswer::Done {
                        count: 0,
                        not_found: Vec::new(),
                        wait: None,
                    }));
                }
                Decided::write(
                    ENTRY_QUEUE_PURGE,
                    encode_op(&head(&ns, &queue, at), None),
                    QueueAnswer::Applied,
                )
            }
            QueueCommand::Tick { ns, queue } => {
                if self.get(&ns, &queue).is_none() {
                    return Ok(Decided::nothing(QueueAnswer::Applied));
                }
                Decided::write(
                    ENTRY_QUEUE_TICK,
                    encode_op(&head(&ns, &queue, at), None),
                    QueueAnswer::Applied,
                )
            }
            QueueCommand::Dead { ns, queue, seqs } => {
                let q = self.get(&ns, &queue);
                let expired = |s: &u64| q.and_then(|q| q.msg(*s)).is_some_and(|m| m.state == State::Expired);
                let seqs: Vec<u64> = seqs.into_iter().filter(expired).take(MAX_ITEMS).collect();
                if seqs.is_empty() {
                    return Ok(Decided::nothing(QueueAnswer::Applied));
                }
                let op = Op {
                    time_ms: at,
                    flags: 0,
                    seqs,
                };
                let body = encode_op(&head(&ns, &queue, at), Some(&op));
                Decided::write(ENTRY_QUEUE_DEAD, body, QueueAnswer::Applied)
            }
        })
    }

    fn due(&self, ctx: &DecideCtx<'_>) -> Vec<QueueCommand> {
        let now = ctx.now_ms;
        let mut keys: Vec<(&str, &str)> = self
            .queues
            .iter()
            .flat_map(|(ns, space)| space.keys().map(move |q| (&**ns, &**q)))
            .collect();
        keys.sort_unstable();
        let mut out = Vec::new();
        for (ns, queue) in keys {
            let Some(q) = self.get(ns, queue) else { continue };
            // Dedup windows alone are closed at most about once a second.
            let dedup_due = q.next_dedup_end().is_some_and(|d| d.saturating_add(1000) <= now);
            if q.next_due().is_some_and(|d| d <= now) || dedup_due {
                out.push(QueueCommand::Tick {
                    ns: ns.to_string(),
                    queue: queue.to_string(),
                });
            }
            if !q.expired().is_empty() {
                out.push(QueueCommand::Dead {
                    ns: ns.to_string(),
                    queue: queue.to_string(),
                    seqs: q.expired().iter().take(MAX_ITEMS).copied().collect(),
                });
            }
        }
        out
    }

    fn apply(&mut self, e: &EntryRef<'_>, at: At) -> Result<(QueueOutput, Option<QueuePending>), Corrupt> {
        let h = decode_head(e.body)?;
        let (ns, qn) = (h.namespace, h.name);
        let lsn = at.lsn();
        self.clock_ms = self.clock_ms.max(h.at_ms);
        let mut out = QueueOutput {
            woke: self.advance(ns, qn, h.at_ms),
            purged: 0,
        };
        let mut pending = None;
        match e.entry_type {
            ENTRY_QUEUE_ENQUEUE | ENTRY_QUEUE_ADD => {
                let (_, window, msgs) = decode_any_enqueue(e.entry_type, e.body)?;
                self.apply_enqueue(ns, qn, h.at_ms, lsn, window, &msgs, at)?;
                out.woke = true;
                if let At::Pending(_) = at {
                    pending = Some(QueuePending {
                        ns: ns.into(),
                        queue: qn.into(),
                        seqs: msgs.iter().map(|m| m.seq).collect(),
                    });
                }
            }
            ENTRY_QUEUE_PURGE => {
                decode_purge(e.body)?;
                out.purged = self.apply_purge(ns, qn, lsn);
            }
            ENTRY_QUEUE_TICK => {
                decode_purge(e.body)?;
                let q = self
                    .get_mut(ns, qn)
                    .ok_or_else(|| Corrupt(format!("a tick of queue {qn:?} of {ns:?}, which has no messages")))?;
                q.last_lsn = q.last_lsn.max(lsn);
            }
            kind @ ENTRY_QUEUE_LEASE..=ENTRY_QUEUE_REQUEUE => {
                self.apply_any_op(kind, ns, qn, lsn, e.body)?;
                out.woke |= kind == ENTRY_QUEUE_NACK || kind == ENTRY_QUEUE_REQUEUE;
            }
            t => {
                return Err(Corrupt(format!(
                    "queue entry type {t} is unknown (written by a newer flo?)"
                )))
            }
        }
        Ok((out, pending))
    }

    fn settle(&mut self, p: QueuePending, pos: &Position) {
        self.settle_enqueue(&p.ns, &p.queue, &p.seqs, pos);
    }

    fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        QueueStore::needs(self, from, entry_type, body)
    }

    fn relocate(&mut self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, Corrupt> {
        Ok(QueueStore::relocate(self, from, to, entry_type, body)?)
    }

    fn capture(&self) -> Captured {
        let mut e = Enc::new();
        self.snapshot(&mut e);
        Captured::Encoded(e)
    }

    fn restore(dec: &mut Dec<'_>, partition: u32, ctx: &RestoreCtx<'_>) -> Result<Self, Corrupt> {
        Ok(QueueStore::decode(dec, Some((partition, ctx.partitioner)))?)
    }

    fn dead_bytes(&self) -> u64 {
        QueueStore::dead_bytes(self)
    }
}
