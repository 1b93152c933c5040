//! Queue commands as they travel to the shard that owns the queue's partition, and their
//! execution there: a change is decided against the partition's queue state and proposed
//! (append, apply at once so the next command sees it), and answered once committed. Answers
//! that only reveal state wait until the entries behind that state are committed; when time has
//! run out on a lease or a delay they first propose a `TICK`, so they show the queue as of now.

use super::entry::{ENTRY_QUEUE_ADD, ENTRY_QUEUE_ENQUEUE};
use super::state::{Payload, QueueAnswer, QueueCommand, QueueStore, State, Stats};
use crate::machine::{Engine, Error};

pub use super::state::NewMsg;

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
    /// An ACK, NACK, TOUCH, REQUEUE or PURGE (the others are decided by `Enqueue`, `Dequeue`
    /// and the timer).
    Change(QueueCommand),
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

/// Waits until the entries behind a queue's current state are committed.
async fn settled(engine: &Engine, p: u32, ns: &str, queue: &str) -> Result<(), Error> {
    let lsn = engine.part(p).queues.borrow().get(ns, queue).map_or(0, |q| q.last_lsn);
    engine.committed(p, lsn).await
}

/// Proposes a `TICK` of the queue if a lease or delay has run out by now (so the state shows the
/// queue as of now); wakes its consumers if messages became ready.
fn tick_if_due(engine: &Engine, p: u32, ns: &str, queue: &str, now: u64) -> Result<(), Error> {
    let due = engine
        .part(p)
        .queues
        .borrow()
        .get(ns, queue)
        .and_then(|q| q.next_due())
        .is_some_and(|d| d <= now);
    if due {
        let cmd = QueueCommand::Tick {
            ns: ns.to_string(),
            queue: queue.to_string(),
        };
        let (_, proposed) = engine.decide_at::<QueueStore>(p, cmd, now)?;
        if proposed.is_some_and(|pr| pr.output.woke) {
            engine.queue_watch.wake(ns, queue);
        }
    }
    Ok(())
}

/// Lets time run on a queue before a read shows it; a tick the log cannot take now (a full
/// batch, a full disk) leaves the read to answer from the state as it is (the timer ticks
/// later) rather than fail.
fn tick_for_read(engine: &Engine, p: u32, ns: &str, queue: &str) {
    let now = engine.now_ms().max(engine.part(p).queues.borrow().clock_ms());
    if let Err(e) = tick_if_due(engine, p, ns, queue, now) {
        tracing::debug!(shard = engine.shard_id, %ns, %queue, error = %e, "a read answers before its tick");
    }
}

/// Decides and proposes an ACK, NACK, TOUCH, REQUEUE or PURGE; answers once committed.
async fn operate(engine: &Engine, p: u32, ns: &str, queue: &str, cmd: QueueCommand) -> Result<QueueReply, Error> {
    let (answer, proposed) = engine.decide::<QueueStore>(p, cmd)?;
    if let Some(pr) = &proposed {
        if pr.output.woke {
            engine.queue_watch.wake(ns, queue);
        }
        engine.commit(pr).await?;
    }
    match answer {
        QueueAnswer::Done { count, not_found, wait } => {
            if let Some(lsn) = wait {
                engine.committed(p, lsn).await?;
            }
            Ok(QueueReply::Done { count, not_found })
        }
        QueueAnswer::Applied => Ok(QueueReply::Done {
            count: proposed.map_or(0, |pr| pr.output.purged),
            not_found: Vec::new(),
        }),
        other => Err(Error::Corrupt(format!("a queue operation answered {other:?}"))),
    }
}

/// Executes a queue command on this shard.
pub async fn execute(engine: &Engine, cmd: QueueCmd) -> Result<QueueReply, Error> {
    match cmd {
        QueueCmd::Enqueue { ns, queue, messages } => enqueue(engine, ns, queue, messages).await,
        QueueCmd::Dequeue {
            ns,
            queue,
            count,
            visibility_ms,
            block_ms,
        } => dequeue(engine, &ns, &queue, count, visibility_ms, block_ms).await,
        QueueCmd::Change(cmd) => {
            let (ns, queue) = match &cmd {
                QueueCommand::Ack { ns, queue, .. }
                | QueueCommand::Nack { ns, queue, .. }
                | QueueCommand::Touch { ns, queue, .. }
                | QueueCommand::Requeue { ns, queue, .. }
                | QueueCommand::Purge { ns, queue } => (ns.clone(), queue.clone()),
                _ => {
                    return Err(Error::invalid(
                        "only ACK, NACK, TOUCH, REQUEUE and PURGE are a client's to ask",
                    ))
                }
            };
            let p = engine.partition_of(&ns, &queue);
            operate(engine, p, &ns, &queue, cmd).await
        }
        QueueCmd::Stats { ns, queue } => {
            let p = engine.partition_of(&ns, &queue);
            tick_for_read(engine, p, &ns, &queue);
            settled(engine, p, &ns, &queue).await?;
            Ok(QueueReply::Stats(
                engine.part(p).queues.borrow().get(&ns, &queue).map(|q| q.stats(&queue)),
            ))
        }
        QueueCmd::Peek { ns, queue, count } => {
            let p = engine.partition_of(&ns, &queue);
            tick_for_read(engine, p, &ns, &queue);
            settled(engine, p, &ns, &queue).await?;
            let seqs = engine
                .part(p)
                .queues
                .borrow()
                .get(&ns, &queue)
                .map(|q| q.peek(count))
                .unwrap_or_default();
            Ok(QueueReply::Messages(messages(engine, p, &ns, &queue, &seqs)?))
        }
        QueueCmd::Dlq { ns, queue, limit } => {
            let p = engine.partition_of(&ns, &queue);
            settled(engine, p, &ns, &queue).await?;
            let seqs = engine
                .part(p)
                .queues
                .borrow()
                .get(&ns, &queue)
                .map(|q| q.dlq(limit))
                .unwrap_or_default();
            Ok(QueueReply::Messages(messages(engine, p, &ns, &queue, &seqs)?))
        }
        QueueCmd::List { ns } => {
            let mut names: Vec<(u32, String)> = Vec::new();
            for part in engine.parts() {
                names.extend(part.queues.borrow().names(&ns).into_iter().map(|n| (part.id, n)));
            }
            names.sort_unstable_by(|a, b| a.1.cmp(&b.1));
            let mut out = Vec::with_capacity(names.len());
            for (p, name) in names {
                tick_for_read(engine, p, &ns, &name);
                settled(engine, p, &ns, &name).await?;
                if let Some(q) = engine.part(p).queues.borrow().get(&ns, &name) {
                    out.push(q.stats(&name));
                }
            }
            Ok(QueueReply::List(out))
        }
    }
}

async fn enqueue(engine: &Engine, ns: String, queue: String, messages: Vec<NewMsg>) -> Result<QueueReply, Error> {
    let p = engine.partition_of(&ns, &queue);
    let cmd = QueueCommand::Add {
        ns: ns.clone(),
        queue: queue.clone(),
        messages,
    };
    let (answer, proposed) = engine.decide::<QueueStore>(p, cmd)?;
    let QueueAnswer::Enqueued {
        seqs,
        deduplicated,
        wait,
    } = answer
    else {
        return Err(Error::Corrupt(format!("an enqueue answered {answer:?}")));
    };
    match proposed {
        Some(pr) => {
            // Long-polling consumers see the new messages at once; their leases wait for
            // durability.
            engine.queue_watch.wake(&ns, &queue);
            engine.commit(&pr).await?;
        }
        None => engine.committed(p, wait.unwrap_or(0)).await?,
    }
    Ok(QueueReply::Enqueued { seqs, deduplicated })
}

async fn dequeue(
    engine: &Engine,
    ns: &str,
    queue: &str,
    count: usize,
    visibility_ms: u64,
    block_ms: u64,
) -> Result<QueueReply, Error> {
    let p = engine.partition_of(ns, queue);
    let deadline = engine.now_ms().saturating_add(block_ms);
    loop {
        // One time: the queue's time runs to it, the ready messages are those of then, and the
        // lease is stamped with it — so it applies to exactly what it named. Never before the
        // partition's queue clock (a clock set back, another queue's entries), since a lease is
        // stamped no earlier than that.
        let now = engine.now_ms().max(engine.part(p).queues.borrow().clock_ms());
        tick_if_due(engine, p, ns, queue, now)?;
        let seqs = engine
            .part(p)
            .queues
            .borrow_mut()
            .get_mut(ns, queue)
            .map(|q| q.top_ready(count))
            .unwrap_or_default();
        if !seqs.is_empty() {
            let cmd = QueueCommand::Lease {
                ns: ns.to_string(),
                queue: queue.to_string(),
                seqs,
                visibility_ms,
            };
            let (answer, proposed) = engine.decide_at::<QueueStore>(p, cmd, now)?;
            let QueueAnswer::Leased(seqs) = answer else {
                return Err(Error::Corrupt(format!("a lease answered {answer:?}")));
            };
            let out = messages(engine, p, ns, queue, &seqs)?;
            if let Some(pr) = proposed {
                engine.commit(&pr).await?;
            }
            return Ok(QueueReply::Messages(out));
        }
        let now = engine.now_ms();
        if now >= deadline {
            return Ok(QueueReply::Messages(Vec::new()));
        }
        // Also wake when a lease or delay runs out: its message is ready then.
        let next = engine.part(p).queues.borrow().get(ns, queue).and_then(|q| q.next_due());
        let until = next.map_or(deadline, |d| d.saturating_add(1).min(deadline));
        engine.wait_change(&engine.queue_watch, ns, queue, until).await?;
    }
}

/// The answers for `seqs`, payloads read from memory (pending) or the mapped segments.
pub(crate) fn messages(engine: &Engine, p: u32, ns: &str, queue: &str, seqs: &[u64]) -> Result<Vec<MessageOut>, Error> {
    let store = engine.part(p).queues.borrow();
    let Some(q) = store.get(ns, queue) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(seqs.len());
    // Messages of one batch share an entry: map and check it (CRC) once for all of them.
    let mut entry = None;
    for &seq in seqs {
        let (Some(m), Some(pl)) = (q.msg(seq), q.payload(seq, store.segments())) else {
            continue;
        };
        let payload = match pl {
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
                        let e = engine.log()?.read_entry(segment, offset)?;
                        &entry.insert(((segment, offset), e)).1
                    }
                };
                let (rel, len) = (rel as usize, len as usize);
                match e.body().get(rel..rel + len) {
                    Some(b) if e.entry_type == ENTRY_QUEUE_ENQUEUE || e.entry_type == ENTRY_QUEUE_ADD => b.to_vec(),
                    _ => {
                        return Err(Error::Corrupt(format!(
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

#[cfg(test)]
mod tests;
