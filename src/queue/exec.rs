//! Queue commands as they travel to the queue's owner shard, and their execution there: check
//! against the state, append the entry, apply it at once (so the next command sees it), answer
//! once it is durable. Answers that only reveal state wait until the entries behind that state
//! are durable. Also the shard's queue timer: leases and delays running out, dead-lettering.

use std::rc::Rc;

use super::entry::*;
use super::state::{At, Payload, QueueStore, State, Stats};
use crate::api::error::ApiError;
use crate::server::shard::{log_error, Shard};

/// A message to enqueue (validated by the API).
#[derive(Debug)]
pub struct NewMsg {
    pub payload: Vec<u8>,
    pub priority: u8,
    pub delay_ms: u64,
    pub dedup_key: String,
}

/// A queue request for the owner shard of its queue (`List`: for every shard).
#[derive(Debug)]
pub enum QueueCmd {
    Enqueue {
        ns: String,
        queue: String,
        messages: Vec<NewMsg>,
    },
    Dequeue {
        ns: String,
        queue: String,
        count: usize,
        visibility_ms: u64,
        block_ms: u64,
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
    Stats {
        ns: String,
        queue: String,
    },
    Peek {
        ns: String,
        queue: String,
        count: usize,
    },
    Dlq {
        ns: String,
        queue: String,
        limit: usize,
    },
    List {
        ns: String,
    },
}

/// A message as answers carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageOut {
    pub seq: u64,
    pub payload: Vec<u8>,
    pub priority: u8,
    pub enqueued_at_ms: u64,
    pub delivery_count: u16,
    /// Lease expiry (leased) or dead-letter time (dead); 0 otherwise.
    pub time_ms: u64,
}

/// The owner shard's answer.
#[derive(Debug, PartialEq)]
pub enum QueueReply {
    Enqueued {
        seqs: Vec<u64>,
        deduplicated: Vec<bool>,
    },
    Messages(Vec<MessageOut>),
    /// Ack, nack, touch, requeue, purge: how many were changed, and the seqs that could not be.
    Done {
        count: u64,
        not_found: Vec<u64>,
    },
    Stats(Option<Stats>),
    List(Vec<Stats>),
}

/// The queue clock: now, never earlier than any entry made (or replayed) before.
fn clock(shard: &Shard) -> u64 {
    shard.queues.borrow_mut().clock(crate::metrics::now_ms())
}

fn head<'a>(ns: &'a str, queue: &'a str, at_ms: u64) -> Head<'a> {
    Head {
        namespace: ns,
        name: queue,
        at_ms,
    }
}

/// Waits until the entries behind a queue's current state are durable.
async fn settled(shard: &Shard, ns: &str, queue: &str) -> Result<(), ApiError> {
    let lsn = shard.queues.borrow().get(ns, queue).map_or(0, |q| q.last_lsn);
    if lsn > 0 {
        shard.log()?.wait_durable(lsn).await.map_err(log_error)?;
    }
    Ok(())
}

/// Executes a queue command on this shard.
pub async fn execute(shard: &Shard, cmd: QueueCmd) -> Result<QueueReply, ApiError> {
    match cmd {
        QueueCmd::Enqueue { ns, queue, messages } => enqueue(shard, &ns, &queue, messages).await,
        QueueCmd::Dequeue {
            ns,
            queue,
            count,
            visibility_ms,
            block_ms,
        } => dequeue(shard, &ns, &queue, count, visibility_ms, block_ms).await,
        QueueCmd::Ack { ns, queue, seqs } => operate(shard, &ns, &queue, ENTRY_QUEUE_ACK, seqs, 0, 0).await,
        QueueCmd::Nack {
            ns,
            queue,
            seqs,
            delay_ms,
            to_dlq,
        } => {
            let now = clock(shard);
            let (time, flags) = match (to_dlq, delay_ms) {
                (true, _) => (now, FLAG_TO_DLQ),
                (false, 0) => (0, 0),
                (false, d) => (now.saturating_add(d), 0),
            };
            operate(shard, &ns, &queue, ENTRY_QUEUE_NACK, seqs, time, flags).await
        }
        QueueCmd::Touch {
            ns,
            queue,
            seqs,
            visibility_ms,
        } => {
            let until = clock(shard).saturating_add(visibility_ms);
            operate(shard, &ns, &queue, ENTRY_QUEUE_TOUCH, seqs, until, 0).await
        }
        QueueCmd::Requeue { ns, queue, seqs } => operate(shard, &ns, &queue, ENTRY_QUEUE_REQUEUE, seqs, 0, 0).await,
        QueueCmd::Purge { ns, queue } => {
            let now = clock(shard);
            if shard.queues.borrow().get(&ns, &queue).is_none() {
                return Ok(QueueReply::Done {
                    count: 0,
                    not_found: Vec::new(),
                });
            }
            shard.queues.borrow_mut().advance(&ns, &queue, now);
            let ticket = shard
                .log()?
                .append(ENTRY_QUEUE_PURGE, &encode_op(&head(&ns, &queue, now), None))
                .map_err(log_error)?;
            let count = shard.queues.borrow_mut().apply_purge(&ns, &queue, ticket.lsn);
            ticket.await.map_err(log_error)?;
            Ok(QueueReply::Done {
                count,
                not_found: Vec::new(),
            })
        }
        QueueCmd::Stats { ns, queue } => {
            let now = clock(shard);
            shard.queues.borrow_mut().advance(&ns, &queue, now);
            settled(shard, &ns, &queue).await?;
            Ok(QueueReply::Stats(
                shard.queues.borrow().get(&ns, &queue).map(|q| q.stats(&queue)),
            ))
        }
        QueueCmd::Peek { ns, queue, count } => {
            let now = clock(shard);
            shard.queues.borrow_mut().advance(&ns, &queue, now);
            settled(shard, &ns, &queue).await?;
            let seqs = shard
                .queues
                .borrow()
                .get(&ns, &queue)
                .map(|q| q.peek(count))
                .unwrap_or_default();
            Ok(QueueReply::Messages(messages(shard, &ns, &queue, &seqs)?))
        }
        QueueCmd::Dlq { ns, queue, limit } => {
            settled(shard, &ns, &queue).await?;
            let seqs = shard
                .queues
                .borrow()
                .get(&ns, &queue)
                .map(|q| q.dlq(limit))
                .unwrap_or_default();
            Ok(QueueReply::Messages(messages(shard, &ns, &queue, &seqs)?))
        }
        QueueCmd::List { ns } => {
            let now = clock(shard);
            let names = shard.queues.borrow().names(&ns);
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                shard.queues.borrow_mut().advance(&ns, &name, now);
                settled(shard, &ns, &name).await?;
                if let Some(q) = shard.queues.borrow().get(&ns, &name) {
                    out.push(q.stats(&name));
                }
            }
            Ok(QueueReply::List(out))
        }
    }
}

async fn enqueue(shard: &Shard, ns: &str, queue: &str, messages: Vec<NewMsg>) -> Result<QueueReply, ApiError> {
    shard.ensure_namespace(ns).await?;
    let log = shard.log()?;
    let now = clock(shard);
    // Which messages are duplicates (of an earlier message, or of one earlier in this batch),
    // and the seq every message answers with.
    let mut seqs = Vec::with_capacity(messages.len());
    let mut deduplicated = Vec::with_capacity(messages.len());
    let mut fresh = Vec::new();
    {
        let store = shard.queues.borrow();
        let q = store.get(ns, queue);
        let mut next = q.map_or(1, |q| q.next_seq());
        let mut in_batch: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
        for m in &messages {
            let key = m.dedup_key.as_str();
            let hit = if key.is_empty() {
                None
            } else {
                in_batch
                    .get(key)
                    .copied()
                    .or_else(|| q.and_then(|q| q.dedup_hit(key, now)))
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
                            now.saturating_add(m.delay_ms)
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
    }
    if fresh.is_empty() {
        settled(shard, ns, queue).await?;
        return Ok(QueueReply::Enqueued { seqs, deduplicated });
    }
    let body = encode_enqueue(&head(ns, queue, now), &mut fresh);
    let added: Vec<u64> = fresh.iter().map(|m| m.seq).collect();
    let ticket = log.append(ENTRY_QUEUE_ENQUEUE, &body).map_err(log_error)?;
    {
        let mut store = shard.queues.borrow_mut();
        store.advance(ns, queue, now);
        store
            .apply_enqueue(ns, queue, now, ticket.lsn, &fresh, At::Pending)
            .map_err(ApiError::Internal)?;
    }
    // Long-polling consumers see the new messages at once; their leases wait for durability.
    shard.queue_watch.wake(ns, queue);
    let pos = ticket.await.map_err(log_error)?;
    shard.queues.borrow_mut().settle_enqueue(ns, queue, &added, &pos);
    Ok(QueueReply::Enqueued { seqs, deduplicated })
}

async fn dequeue(
    shard: &Shard,
    ns: &str,
    queue: &str,
    count: usize,
    visibility_ms: u64,
    block_ms: u64,
) -> Result<QueueReply, ApiError> {
    let deadline = crate::metrics::now_ms().saturating_add(block_ms);
    loop {
        let now = clock(shard);
        let seqs = {
            let mut store = shard.queues.borrow_mut();
            store.advance(ns, queue, now);
            store.get_mut(ns, queue).map(|q| q.pop_ready(count)).unwrap_or_default()
        };
        if !seqs.is_empty() {
            // The lease records the max_deliveries in effect, which decides (now and in
            // replay) whether it is the message's last.
            let max_deliveries = shard.queues.borrow().config.max_deliveries;
            let op = Op {
                time_ms: now.saturating_add(visibility_ms),
                flags: max_deliveries,
                seqs,
            };
            let appended = shard.log().and_then(|log| {
                log.append(ENTRY_QUEUE_LEASE, &encode_op(&head(ns, queue, now), Some(&op)))
                    .map_err(log_error)
            });
            let ticket = match appended {
                Ok(t) => t,
                Err(e) => {
                    if let Some(q) = shard.queues.borrow_mut().get_mut(ns, queue) {
                        q.unpop(&op.seqs);
                    }
                    return Err(e);
                }
            };
            shard
                .queues
                .borrow_mut()
                .apply_op(ENTRY_QUEUE_LEASE, ns, queue, ticket.lsn, &op)
                .map_err(ApiError::Internal)?;
            let out = messages(shard, ns, queue, &op.seqs)?;
            ticket.await.map_err(log_error)?;
            return Ok(QueueReply::Messages(out));
        }
        if crate::metrics::now_ms() >= deadline {
            return Ok(QueueReply::Messages(Vec::new()));
        }
        shard.wait_change(&shard.queue_watch, ns, queue, deadline).await?;
    }
}

/// ACK, NACK, TOUCH, REQUEUE: applies to the messages in the state the operation needs; the
/// others are answered as not found.
async fn operate(
    shard: &Shard,
    ns: &str,
    queue: &str,
    kind: u16,
    seqs: Vec<u64>,
    time_ms: u64,
    flags: u32,
) -> Result<QueueReply, ApiError> {
    let now = clock(shard);
    let want = if kind == ENTRY_QUEUE_REQUEUE {
        State::Dead
    } else {
        State::Leased
    };
    let (found, not_found) = {
        let mut store = shard.queues.borrow_mut();
        store.advance(ns, queue, now);
        let q = store.get(ns, queue);
        let mut seen = std::collections::HashSet::new();
        let mut found = Vec::new();
        let mut not_found = Vec::new();
        for s in seqs {
            if !seen.insert(s) {
                continue;
            }
            match q.and_then(|q| q.msg(s)) {
                Some(m) if m.state == want => found.push(s),
                _ => not_found.push(s),
            }
        }
        (found, not_found)
    };
    if found.is_empty() {
        settled(shard, ns, queue).await?;
        return Ok(QueueReply::Done { count: 0, not_found });
    }
    let op = Op {
        time_ms,
        flags,
        seqs: found,
    };
    let ticket = shard
        .log()?
        .append(kind, &encode_op(&head(ns, queue, now), Some(&op)))
        .map_err(log_error)?;
    shard
        .queues
        .borrow_mut()
        .apply_op(kind, ns, queue, ticket.lsn, &op)
        .map_err(ApiError::Internal)?;
    if kind == ENTRY_QUEUE_NACK || kind == ENTRY_QUEUE_REQUEUE {
        shard.queue_watch.wake(ns, queue);
    }
    ticket.await.map_err(log_error)?;
    Ok(QueueReply::Done {
        count: op.seqs.len() as u64,
        not_found,
    })
}

/// The answers for `seqs`, payloads read from memory (pending) or the mapped segments.
pub(crate) fn messages(shard: &Shard, ns: &str, queue: &str, seqs: &[u64]) -> Result<Vec<MessageOut>, ApiError> {
    let store = shard.queues.borrow();
    let Some(q) = store.get(ns, queue) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(seqs.len());
    // Messages of one batch share an entry: map and check it (CRC) once for all of them.
    let mut entry = None;
    for &seq in seqs {
        let (Some(m), Some(p)) = (q.msg(seq), q.payload(seq, store.segments())) else {
            continue;
        };
        let payload = match p {
            Payload::Pending(b) => b.to_vec(),
            Payload::At {
                segment,
                offset,
                rel,
                len,
            } => {
                let e = match &entry {
                    Some((at, e)) if *at == (segment, offset) => e,
                    _ => {
                        let e = shard.log()?.read_entry(segment, offset).map_err(log_error)?;
                        &entry.insert(((segment, offset), e)).1
                    }
                };
                let (rel, len) = (rel as usize, len as usize);
                match e.body().get(rel..rel + len) {
                    Some(b) if e.entry_type == ENTRY_QUEUE_ENQUEUE => b.to_vec(),
                    _ => {
                        return Err(ApiError::Internal(format!(
                            "the payload of message {seq} of {queue:?} is not at segment {segment} offset {offset}"
                        )))
                    }
                }
            }
        };
        let time_ms = match m.state {
            State::Leased | State::Dead => m.time_ms,
            _ => 0,
        };
        out.push(MessageOut {
            seq,
            payload,
            priority: m.priority,
            enqueued_at_ms: m.enqueued_at_ms,
            delivery_count: m.delivery_count,
            time_ms,
        });
    }
    Ok(out)
}

/// The shard's queue timer: lets leases and delays run out (waking consumers) and dead-letters
/// messages whose last lease ran out. Runs every `tick` until the shard stops.
pub async fn timer(shard: Rc<Shard>, tick: std::time::Duration) {
    let mut last_dedup_sweep = 0;
    loop {
        monoio::select! {
            _ = monoio::time::sleep(tick) => {},
            _ = shard.stop.wait() => break,
        }
        let now = clock(&shard);
        let keys = shard.queues.borrow().keys();
        for (ns, queue) in keys {
            let due = shard.queues.borrow().get(&ns, &queue).and_then(|q| q.next_due());
            if due.is_some_and(|d| d <= now) && shard.queues.borrow_mut().advance(&ns, &queue, now) {
                shard.queue_watch.wake(&ns, &queue);
            }
            let expired: Vec<u64> = shard
                .queues
                .borrow()
                .get(&ns, &queue)
                .map(|q| q.expired().iter().take(MAX_ITEMS).copied().collect())
                .unwrap_or_default();
            if expired.is_empty() {
                continue;
            }
            let op = Op {
                time_ms: now,
                flags: 0,
                seqs: expired,
            };
            let Ok(log) = shard.log() else { continue };
            let Ok(ticket) = log.append(ENTRY_QUEUE_DEAD, &encode_op(&head(&ns, &queue, now), Some(&op))) else {
                continue; // a full batch or a failed log: the next tick tries again
            };
            if let Err(e) = shard
                .queues
                .borrow_mut()
                .apply_op(ENTRY_QUEUE_DEAD, &ns, &queue, ticket.lsn, &op)
            {
                tracing::error!(shard = shard.id, error = %e, "dead-lettering failed");
            }
        }
        if now >= last_dedup_sweep + 1000 {
            last_dedup_sweep = now;
            shard.queues.borrow_mut().sweep_dedup(now);
            let (count, depths) = {
                let queues = shard.queues.borrow();
                (queues.message_count(), queues.depths())
            };
            let m = &shard.node.metrics[shard.id];
            m.queue_messages.store(count, std::sync::atomic::Ordering::Relaxed);
            for (gauge, d) in m.queue_depth.iter().zip(depths) {
                gauge.store(d, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Builds the store with the node's settings.
pub fn store(config: &crate::config::Config) -> QueueStore {
    QueueStore::new(super::state::QueueConfig {
        max_deliveries: config.queue.max_deliveries,
        dedup_window_ms: config.queue.dedup_window_ms,
    })
}
