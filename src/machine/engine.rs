//! One shard's storage engine: the partitions it owns (every machine's state in each), its log,
//! the clock decisions read, the watchers long-polls wait on, and the one path that changes
//! state: [`Engine::propose`] appends an entry and applies it to its partition at once (so the
//! next decision sees it), [`Engine::commit`] answers once it is durable — the partition's
//! watermark — and settles it at its place.
//!
//! Invariants:
//! * Only this shard's thread touches the engine (it is `!Send`); entries are appended and
//!   applied in one synchronous step, so they apply in LSN order.
//! * Every entry applied before it was durable is in `in_flight`, in LSN order, until it is
//!   settled at its place; settling follows durability in LSN order, whoever notices it first
//!   (the proposer, a reader, the timer, a snapshot).
//! * The watermark of a partition is the LSN below which its entries are durable: the log's
//!   durable LSN on one node. Readers wait on it through [`Engine::committed`], never on the
//!   log directly, so a replicated partition can put its commit index there.

use std::cell::{OnceCell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::{
    kind_of, unknown, AnyPending, At, Corrupt, DecideCtx, Decided, Error, Kind, Machine, Partition, RestoreCtx,
};
use crate::clock::Clock;
use crate::config::Config;
use crate::kv::watch::Watchers;
use crate::log::format::EntryRef;
use crate::log::metrics::LogMetrics;
use crate::log::relocated::{self, ENTRY_RELOCATED};
use crate::log::{Log, LogError, Position, Ticket};
use crate::metrics::ShardMetrics;
use crate::partition::Partitioner;

/// The disk under a shard's log: the real one. In unit tests it is the real disk or the
/// simulated one, chosen per shard (`log/either.rs`), so the crash simulation runs the real
/// machines on the simulated disk.
#[cfg(not(test))]
pub type ShardFs = crate::log::io::RealFs;
#[cfg(test)]
pub type ShardFs = crate::log::either::EitherFs;

/// How long a proposal waits for room in the log's open batch before it is refused as busy.
pub const ROOM_WAIT: Duration = Duration::from_secs(5);

/// An entry applied before it was durable, waiting to be settled at its place.
struct InFlight {
    ticket: Ticket,
    partition: u32,
    pending: AnyPending,
}

/// A decision's answer, and the proposal of the entry it wrote (if it wrote one).
pub type DecideResult<A, O> = Result<(A, Option<Proposed<O>>), Error>;

/// What the engine shares with the rest of its node.
pub struct Shared {
    pub config: Arc<Config>,
    pub clock: Clock,
    pub metrics: Arc<ShardMetrics>,
    pub log_metrics: Arc<LogMetrics>,
    pub ts_commits: Arc<crate::ts::commit::CommitTable>,
    pub ts_recovery: Arc<crate::ts::commit::RecoveryExchange>,
}

/// One shard's partitions, log and clock.
pub struct Engine {
    pub shard_id: usize,
    pub partitioner: Partitioner,
    pub config: Arc<Config>,
    pub clock: Clock,
    /// The partitions this shard owns, by `partition / shards`.
    parts: Box<[Partition]>,
    /// Set once recovery has opened the log.
    log: OnceCell<Rc<Log<ShardFs>>>,
    /// The disk the log is on.
    pub fs: ShardFs,
    in_flight: RefCell<VecDeque<InFlight>>,
    /// Readers waiting for keys, queues and streams of this shard to change.
    pub kv_watch: Watchers,
    pub queue_watch: Watchers,
    pub stream_watch: Watchers,
    pub metrics: Arc<ShardMetrics>,
    pub log_metrics: Arc<LogMetrics>,
    /// The shard's snapshots on disk and the one being taken.
    pub snapshots: crate::snapshot::shard::SnapshotCell,
    /// Multi-part time-series writes committed, not yet in every owner's heads (node-wide).
    pub ts_commits: Arc<crate::ts::commit::CommitTable>,
    /// How the shards settle pending multi-part writes after recovery (node-wide).
    pub ts_recovery: Arc<crate::ts::commit::RecoveryExchange>,
}

/// An entry proposed and applied: what applying it said, and its place in the log to wait for.
pub struct Proposed<O> {
    pub output: O,
    /// The entry's index in its partition (its LSN on one node): what readers wait for.
    pub index: u64,
    ticket: Ticket,
}

impl<O> Proposed<O> {
    /// The ticket of the entry (resolves when it is durable).
    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }
}

impl Engine {
    /// Shard `shard_id`'s engine: every partition it owns, empty; its log not open yet.
    pub fn new(shard_id: usize, partitioner: Partitioner, shared: Shared, fs: ShardFs) -> Engine {
        let shards = partitioner.shards();
        let parts: Box<[Partition]> = (0..partitioner.partitions())
            .filter(|p| p % shards == shard_id as u32)
            .map(Partition::new)
            .collect();
        let waiters = shared.config.limits.max_waiters_per_shard;
        Engine {
            shard_id,
            partitioner,
            parts,
            log: OnceCell::new(),
            fs,
            in_flight: RefCell::default(),
            kv_watch: Watchers::new(waiters),
            queue_watch: Watchers::new(waiters),
            stream_watch: Watchers::new(waiters),
            snapshots: RefCell::default(),
            config: shared.config,
            clock: shared.clock,
            metrics: shared.metrics,
            log_metrics: shared.log_metrics,
            ts_commits: shared.ts_commits,
            ts_recovery: shared.ts_recovery,
        }
    }

    /// The shard's log, once recovery has opened it.
    pub fn log(&self) -> Result<&Rc<Log<ShardFs>>, Error> {
        self.log
            .get()
            .ok_or_else(|| Error::Unavailable("the shard is still recovering its log".into()))
    }

    /// Whether recovery has opened the log.
    pub fn is_open(&self) -> bool {
        self.log.get().is_some()
    }

    /// Hands the engine its recovered log.
    pub fn set_log(&self, log: Rc<Log<ShardFs>>) {
        if self.log.set(log).is_err() {
            panic!("shard {}: the log was opened twice", self.shard_id);
        }
    }

    /// Now, by the injected clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The partition of object `name` of `ns` (which may belong to another shard).
    pub fn partition_of(&self, ns: &str, name: &str) -> u32 {
        self.partitioner.partition(ns, name)
    }

    /// Whether this shard owns partition `p`.
    pub fn owns(&self, p: u32) -> bool {
        p < self.partitioner.partitions() && self.partitioner.shard_of_partition(p) == self.shard_id
    }

    /// Partition `p`, which this shard owns (asking for another is a bug).
    pub fn part(&self, p: u32) -> &Partition {
        let part = &self.parts[(p / self.partitioner.shards()) as usize];
        assert_eq!(part.id, p, "partition {p} is not shard {}'s", self.shard_id);
        part
    }

    /// The partition of object `name` of `ns`, which this shard must own.
    pub fn part_of(&self, ns: &str, name: &str) -> &Partition {
        self.part(self.partition_of(ns, name))
    }

    /// Every partition this shard owns, ascending.
    pub fn parts(&self) -> &[Partition] {
        &self.parts
    }

    /// Partition `p`'s decision context at the time the next entry will carry.
    pub fn decide_ctx(&self, p: u32) -> Result<DecideCtx<'_>, Error> {
        self.decide_ctx_at(p, self.now_ms())
    }

    /// Partition `p`'s decision context at `now_ms` (one reading of the clock shared by
    /// several decisions).
    pub fn decide_ctx_at(&self, p: u32, now_ms: u64) -> Result<DecideCtx<'_>, Error> {
        Ok(DecideCtx {
            partition: p,
            partitions_here: self.parts.len(),
            partitioner: &self.partitioner,
            now_ms,
            config: &self.config,
            log: self.log()?,
        })
    }

    /// Appends an entry of machine `M` to the log and applies it to partition `p` at once; the
    /// entry is settled at its place once durable. A refusal of the log applies nothing.
    pub fn propose<M: Machine>(&self, p: u32, entry_type: u16, body: &[u8]) -> Result<Proposed<M::Output>, Error> {
        debug_assert_eq!(
            kind_of(entry_type),
            Some(M::KIND),
            "entry type {entry_type} routed elsewhere"
        );
        let log = self.log()?;
        let part = self.part(p);
        let ticket = log.append(entry_type, body)?;
        let e = EntryRef {
            lsn: ticket.lsn,
            entry_type,
            flags: 0,
            body,
        };
        let applied = M::cell(part).borrow_mut().apply(&e, At::Pending(ticket.lsn));
        let (output, pending) = applied.unwrap_or_else(|c| {
            // Decided against this very state: a bug. The entry is in the log; serving state
            // without it would be out of step with the log, so the process stops.
            panic!(
                "shard {}: entry {} (type {entry_type}) of partition {p} does not apply to the state it was \
                 decided against: {c}",
                self.shard_id, ticket.lsn
            )
        });
        if let Some(pending) = pending {
            self.in_flight.borrow_mut().push_back(InFlight {
                ticket: ticket.clone(),
                partition: p,
                pending: pending.into(),
            });
        }
        Ok(Proposed {
            output,
            index: ticket.lsn,
            ticket,
        })
    }

    /// Decides `cmd` against partition `p`'s state (at the clock's time) and proposes the entry
    /// the decision writes, if any.
    pub fn decide<M: Machine>(&self, p: u32, cmd: M::Command) -> DecideResult<M::Answer, M::Output> {
        self.decide_at::<M>(p, cmd, self.now_ms())
    }

    /// [`Engine::decide`] at `now_ms`: a caller that looked at the state as of a time (what is
    /// ready then) decides at that same time, so the entry applies to what it saw.
    pub fn decide_at<M: Machine>(&self, p: u32, cmd: M::Command, now_ms: u64) -> DecideResult<M::Answer, M::Output> {
        let d = {
            let ctx = self.decide_ctx_at(p, now_ms)?;
            let st = M::cell(self.part(p)).borrow();
            st.decide(cmd, &ctx)?
        };
        self.propose_decided::<M, _>(p, d)
    }

    /// Proposes what a decision writes.
    pub fn propose_decided<M: Machine, A>(&self, p: u32, d: Decided<A>) -> DecideResult<A, M::Output> {
        let proposed = match d.entry {
            Some((t, body)) => Some(self.propose::<M>(p, t, &body)?),
            None => None,
        };
        Ok((d.answer, proposed))
    }

    /// Decides and proposes like [`Engine::decide`], but when the log's open batch has no room
    /// waits for room (at most [`ROOM_WAIT`], then busy) and decides again: the state may have
    /// changed meanwhile. Nothing awaits between a decision and its proposal.
    pub async fn decide_waiting<M: Machine>(
        &self,
        p: u32,
        mut cmd: impl FnMut() -> M::Command,
    ) -> Result<(M::Answer, Option<Proposed<M::Output>>), Error> {
        loop {
            let d = {
                let ctx = self.decide_ctx(p)?;
                let st = M::cell(self.part(p)).borrow();
                st.decide(cmd(), &ctx)?
            };
            let len = d.entry.as_ref().map_or(0, |(_, b)| b.len());
            match self.propose_decided::<M, _>(p, d) {
                Err(Error::Log(LogError::BatchFull)) => self.room(len).await?,
                other => return other,
            }
        }
    }

    /// Waits (at most [`ROOM_WAIT`]) until the log's open batch has room for a body of `len`
    /// bytes.
    pub async fn room(&self, len: usize) -> Result<(), Error> {
        let log = self.log()?;
        match monoio::time::timeout(ROOM_WAIT, log.room(len)).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::busy(
                "the log has had no room for this write for too long; retry later",
            )),
        }
    }

    /// Waits until a proposed entry is committed (durable), settles what is durable, and
    /// returns the entry's place.
    pub async fn commit<O>(&self, proposed: &Proposed<O>) -> Result<Position, Error> {
        let pos = proposed.ticket.clone().await?;
        self.settle();
        Ok(pos)
    }

    /// Waits until partition `p`'s watermark passes `index` (every entry of the partition up
    /// to it is committed), then settles what is durable.
    pub async fn committed(&self, p: u32, index: u64) -> Result<(), Error> {
        debug_assert!(self.owns(p));
        if index > 0 {
            self.log()?.wait_durable(index).await?;
        }
        self.settle();
        Ok(())
    }

    /// The highest index below which partition `p`'s entries are committed.
    pub fn watermark(&self, p: u32) -> u64 {
        debug_assert!(self.owns(p));
        self.log.get().map_or(0, |l| l.durable_lsn())
    }

    /// Settles, in LSN order, every entry applied before it was durable that is durable now.
    pub fn settle(&self) {
        loop {
            let pos = {
                let q = self.in_flight.borrow();
                match q.front().map(|f| f.ticket.placed()) {
                    Some(Some(Ok(pos))) => pos,
                    // Not durable yet, or never (a failed log: the entry stays pending, and
                    // readers waiting for it get the log's error).
                    _ => return,
                }
            };
            let f = self.in_flight.borrow_mut().pop_front().expect("the front was there");
            self.part(f.partition).settle(f.pending, &pos);
        }
    }

    /// Entries applied and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.in_flight.borrow().len()
    }

    /// The partition an entry belongs to, from its body (`None`: a time-series chunk written
    /// before partitions had state of their own, found by its place).
    pub fn partition_of_entry(&self, entry_type: u16, body: &[u8], lsn: u64) -> Result<Option<u32>, Corrupt> {
        let pr = &self.partitioner;
        let p = match kind_of(entry_type) {
            Some(Kind::Namespace) => crate::namespace::NamespaceRegistry::partition_of(entry_type, body, pr)?,
            Some(Kind::Kv) => crate::kv::KvStore::partition_of(entry_type, body, pr)?,
            Some(Kind::Queue) => crate::queue::state::QueueStore::partition_of(entry_type, body, pr)?,
            Some(Kind::Stream) => crate::stream::state::StreamStore::partition_of(entry_type, body, pr)?,
            Some(Kind::Ts) => match crate::ts::series::SeriesStore::partition_of_any(entry_type, body, pr)? {
                Some(p) => p,
                None => return Ok(None),
            },
            None => return Err(unknown(entry_type, lsn)),
        };
        if !self.owns(p) {
            return Err(Corrupt(format!(
                "entry {lsn} (type {entry_type}) belongs to partition {p}, which is not shard {}'s",
                self.shard_id
            )));
        }
        Ok(Some(p))
    }

    /// Applies one recovered entry at its place: through the routing table to its partition's
    /// machine; a `RELOCATED` copy as the original moving.
    pub fn replay(&self, e: &EntryRef<'_>, pos: Position) -> Result<(), Corrupt> {
        if e.entry_type == ENTRY_RELOCATED {
            let r = relocated::decode(e.body)?;
            self.relocate((r.from_segment, r.from_offset), &pos, r.entry_type, r.body)?;
            return Ok(());
        }
        match self.partition_of_entry(e.entry_type, e.body, e.lsn)? {
            Some(p) => self.part(p).apply_placed(e, pos),
            None => Err(Corrupt(format!(
                "entry {} (type {}) was written by a flo older than per-partition state, after its last \
                 snapshot: start that version once and stop it cleanly (it snapshots at a clean stop), then \
                 start this one",
                e.lsn, e.entry_type
            ))),
        }
    }

    /// Compaction: whether the entry at `from`, of `entry_type` with `body`, is still needed.
    /// (Settles what is durable first, so nothing durable is still in flight.)
    pub fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        self.settle();
        match self.partition_of_entry(entry_type, body, 0) {
            Ok(Some(p)) => self.part(p).needs(from, entry_type, body),
            Ok(None) => self.parts.iter().any(|p| p.needs(from, entry_type, body)),
            Err(_) => false,
        }
    }

    /// A durable copy at `to` of the entry that was at `from` (live and in replay): true if the
    /// state reads the copy from now on.
    pub fn relocate(&self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, Corrupt> {
        self.settle();
        let p = match self.partition_of_entry(entry_type, body, to.lsn)? {
            Some(p) => p,
            // Found by its place: the partition that reads it, else any (the copy is dead).
            None => {
                self.parts
                    .iter()
                    .find(|p| p.needs(from, entry_type, body))
                    .unwrap_or(&self.parts[0])
                    .id
            }
        };
        self.part(p).relocate(from, to, entry_type, body)
    }

    /// Empties every partition (before recovery starts over).
    pub fn reset(&self) {
        for p in self.parts.iter() {
            *p.namespaces.borrow_mut() = Default::default();
            *p.kv.borrow_mut() = Default::default();
            *p.queues.borrow_mut() = Default::default();
            *p.streams.borrow_mut() = Default::default();
            *p.ts.borrow_mut() = Default::default();
        }
        self.in_flight.borrow_mut().clear();
        *self.snapshots.borrow_mut() = Default::default();
    }

    /// Puts restored state in place, every partition at once.
    pub fn restore(&self, states: Vec<(u32, super::PartitionState)>) {
        for (p, state) in states {
            self.part(p).replace(state);
        }
    }

    /// The context restoring a section needs.
    pub fn restore_ctx(&self) -> RestoreCtx<'_> {
        RestoreCtx {
            partitioner: &self.partitioner,
        }
    }

    /// Bytes of entries nothing needs any more, over every partition.
    pub fn dead_bytes(&self) -> u64 {
        self.parts.iter().map(Partition::dead_bytes).sum()
    }

    /// Waits until `key` of `ns` changes in `watchers` (one of this engine's), or until the
    /// clock reaches `until_ms`; busy when the shard already has its maximum of waiters. Keeps
    /// the shard's `waiters` figure (KV, queue and stream long-polls together) up to date.
    pub async fn wait_change(&self, watchers: &Watchers, ns: &str, key: &str, until_ms: u64) -> Result<(), Error> {
        let change = watchers
            .changed(ns, key)
            .ok_or_else(|| Error::busy("too many requests are waiting on this shard"))?;
        let count = || (self.kv_watch.len() + self.queue_watch.len() + self.stream_watch.len()) as u64;
        self.metrics.waiters.store(count(), Relaxed);
        let left = until_ms.saturating_sub(self.now_ms());
        let _ = monoio::time::timeout(Duration::from_millis(left), change).await;
        self.metrics.waiters.store(count(), Relaxed);
        Ok(())
    }
}
