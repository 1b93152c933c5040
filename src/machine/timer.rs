//! The shard's timer work: what time alone calls for (leases and delays running out, dead
//! letters, stream retention, heads to cut, time-series retention, records to sweep), decided by
//! each machine's [`Machine::due`] and proposed through the one command path, like any client's
//! command — so only the node that proposes decides, and every replica applies the entries. Also
//! settles what became durable, and publishes the shard's state figures.
//!
//! Rounds: queues every [`QUEUE_EVERY`] (consumers wait on leases and delays), streams every
//! [`STREAM_EVERY`], time series and KV every [`SLOW_EVERY`]. A proposal the log cannot take now
//! (a full batch, a full disk) waits for the next round.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{Engine, Machine};
use crate::kv::KvStore;
use crate::queue::state::{QueueCommand, QueueStore};
use crate::stream::state::StreamStore;
use crate::ts::series::SeriesStore;

/// How often queues are looked at.
pub const QUEUE_EVERY: Duration = Duration::from_millis(10);
/// How often stream retention is enforced.
pub const STREAM_EVERY: Duration = Duration::from_millis(100);
/// How often time-series heads are cut, retention enforced, KV records swept, figures published.
pub const SLOW_EVERY: Duration = Duration::from_secs(1);

/// Which machines a round looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Round {
    pub streams: bool,
    pub slow: bool,
}

/// The commands `M` calls for at `now_ms` in every partition, in partition order.
fn due<M: Machine>(engine: &Engine, now_ms: u64) -> Vec<(u32, M::Command)> {
    let mut out = Vec::new();
    for part in engine.parts() {
        let Ok(ctx) = engine.decide_ctx_at(part.id, now_ms) else {
            return out;
        };
        out.extend(M::cell(part).borrow().due(&ctx).into_iter().map(|c| (part.id, c)));
    }
    out
}

/// What a timer proposal wakes: (namespace, object name).
pub type WakeKey = (String, String);

/// Decides and proposes what `M` calls for now in every partition (each command's `wake` key
/// with it); returns the proposals' outputs.
pub fn propose_due<M: Machine>(
    engine: &Engine,
    mut wake: impl FnMut(&M::Command) -> Option<WakeKey>,
) -> Vec<(Option<WakeKey>, M::Output)> {
    let mut out = Vec::new();
    // One reading of the clock: each command is decided at the time it was found due.
    let now_ms = engine.now_ms();
    for (p, cmd) in due::<M>(engine, now_ms) {
        let key = wake(&cmd);
        match engine.decide_at::<M>(p, cmd, now_ms) {
            Ok((_, Some(proposed))) => out.push((key, proposed.output)),
            Ok((_, None)) => {}
            Err(e) => {
                tracing::debug!(shard = engine.shard_id, partition = p, error = %e, "timer work deferred");
                break;
            }
        }
    }
    out
}

/// One round of timer work.
pub async fn round(engine: &Engine, r: Round) {
    if !engine.is_open() {
        return;
    }
    engine.settle();
    // Queues: leases and delays that ran out (waking their consumers), then dead letters.
    let queue_key = |c: &QueueCommand| match c {
        QueueCommand::Tick { ns, queue } => Some((ns.clone(), queue.clone())),
        _ => None,
    };
    for (key, out) in propose_due::<QueueStore>(engine, queue_key) {
        if let Some((ns, q)) = key.filter(|_| out.woke) {
            engine.queue_watch.wake(&ns, &q);
        }
    }
    if r.streams {
        propose_due::<StreamStore>(engine, |_| None);
    }
    if r.slow {
        crate::ts::exec::upkeep(engine).await;
        propose_due::<SeriesStore>(engine, |_| None);
        propose_due::<KvStore>(engine, |_| None);
        publish(engine);
    }
}

/// Publishes the shard's state figures.
fn publish(engine: &Engine) {
    let m = &engine.metrics;
    let (mut slots, mut index, mut messages, mut records, mut series, mut samples) = (0, 0, 0, 0, 0, 0);
    let mut depths = [0u64; 4];
    for part in engine.parts() {
        {
            let kv = part.kv.borrow();
            slots += kv.slot_count();
            index += kv.index_bytes();
        }
        {
            let q = part.queues.borrow();
            messages += q.message_count();
            for (d, n) in depths.iter_mut().zip(q.depths()) {
                *d += n;
            }
        }
        records += part.streams.borrow().record_count();
        let ts = part.ts.borrow();
        series += ts.len() as u64;
        samples += ts.samples();
    }
    m.kv_slots.store(slots, Relaxed);
    m.kv_index_bytes.store(index, Relaxed);
    m.queue_messages.store(messages, Relaxed);
    for (gauge, d) in m.queue_depth.iter().zip(depths) {
        gauge.store(d, Relaxed);
    }
    m.stream_records.store(records, Relaxed);
    m.ts_series.store(series, Relaxed);
    m.ts_samples.store(samples, Relaxed);
    m.log_dead_bytes.store(engine.dead_bytes(), Relaxed);
    if let Ok(log) = engine.log() {
        m.log_entry_bytes
            .store(log.segments().iter().map(|s| s.1).sum(), Relaxed);
    }
}
