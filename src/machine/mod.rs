//! The state machines on the log, and the one path by which state changes.
//!
//! Every primitive (namespaces, KV, queues, streams, time series) is a [`Machine`]: it decides
//! commands against its state into entries, applies entries, says which stored entries it still
//! needs and takes their compaction copies, and captures and restores its snapshot section. A
//! shard holds one instance of each per partition it owns ([`Partition`]); the [`Engine`] drives
//! them all through one [`Engine::propose`] (append → apply → commit → answer) and one routing
//! table of entry types ([`kind_of`], [`Partition::apply`]), used alike live, in replay, by
//! compaction and by snapshots.
//!
//! Invariants:
//! * Applying an entry depends only on the machine's state and the entry: never on a clock, the
//!   configuration or the order of a hash map. Time reaches state only as a time a decision
//!   stamped into an entry; so replicas (and a replay, at any later time, under any settings)
//!   that apply the same entries end in the same state.
//! * A partition's state depends only on that partition's entries: [`Machine::partition_of`]
//!   names the partition of every entry from its body, and nothing applied in one partition
//!   reads or changes another.
//! * An entry is applied exactly once, in log order: live when it is appended ([`At::Pending`],
//!   settled at its place once it is durable), in replay at its place ([`At::Placed`]). Entries
//!   decided against a state always apply to it; one that does not is a bug, and the process
//!   stops rather than serve state out of step with its log.
//! * Readers see only committed state: an answer that reveals an entry waits for the partition's
//!   watermark to pass it ([`Engine::committed`]).

pub mod engine;
pub mod error;
pub mod timer;

use std::cell::RefCell;

pub use engine::{Engine, Proposed, ShardFs};
pub use error::{Corrupt, Error, Refusal};

use crate::log::format::EntryRef;
use crate::log::Position;
use crate::partition::Partitioner;

/// Where an applied entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// Appended, not durable yet: its LSN; its place comes with [`Machine::settle`].
    Pending(u64),
    /// Durable at this place (replay).
    Placed(Position),
}

impl At {
    /// The entry's LSN.
    pub fn lsn(&self) -> u64 {
        match self {
            At::Pending(lsn) => *lsn,
            At::Placed(p) => p.lsn,
        }
    }
}

/// The machines, as the routing table names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Kv,
    Queue,
    Stream,
    Ts,
}

/// The routing table of entry types (`format-spec/log.md`, "Entry types"): which machine applies
/// an entry. `None` for `RELOCATED` (the log's own; its original is routed) and unknown types.
pub fn kind_of(entry_type: u16) -> Option<Kind> {
    Some(match entry_type {
        crate::namespace::ENTRY_NAMESPACE_CREATE => Kind::Namespace,
        100..=199 => Kind::Kv,
        200..=299 => Kind::Queue,
        300..=399 => Kind::Stream,
        400..=499 => Kind::Ts,
        _ => return None,
    })
}

/// What deciding a command gives: the entry to propose (none when the command changes nothing)
/// and the answer it carries once committed.
#[derive(Debug)]
pub struct Decided<A> {
    pub entry: Option<(u16, Vec<u8>)>,
    pub answer: A,
}

impl<A> Decided<A> {
    /// A decision to write `body` as an entry of `entry_type`.
    pub fn write(entry_type: u16, body: Vec<u8>, answer: A) -> Decided<A> {
        Decided {
            entry: Some((entry_type, body)),
            answer,
        }
    }

    /// A decision that writes nothing.
    pub fn nothing(answer: A) -> Decided<A> {
        Decided { entry: None, answer }
    }
}

/// What timer work and decisions may read besides the state: the time the entry will carry, the
/// settings of the day (they shape decisions, never how an entry applies) and the log (to read
/// records a decision weighs).
pub struct DecideCtx<'a> {
    /// The partition deciding.
    pub partition: u32,
    /// Partitions the deciding shard holds (timer work shares a shard's budget among them).
    pub partitions_here: usize,
    /// Where objects live (a decision checks that what it writes belongs to its partition).
    pub partitioner: &'a Partitioner,
    pub now_ms: u64,
    pub config: &'a crate::config::Config,
    pub log: &'a crate::log::Log<ShardFs>,
}

/// A primitive's state in one partition, as a state machine on the log.
pub trait Machine: Sized + 'static {
    /// Its entries in the routing table.
    const KIND: Kind;
    /// A command that changes the state (already checked by the API).
    type Command;
    /// What a decided command answers.
    type Answer;
    /// What applying an entry live tells the one who proposed it.
    type Output;
    /// What settling an entry applied before it was durable needs (kept by the engine).
    type Pending: Into<AnyPending>;

    /// Decides `cmd` against the state into the entry to propose, stamped `ctx.now_ms`; a
    /// refusal writes nothing.
    fn decide(&self, cmd: Self::Command, ctx: &DecideCtx<'_>) -> Result<Decided<Self::Answer>, Error>;
    /// Timer work: the commands the state calls for at `ctx.now_ms` (leases and delays running
    /// out, retention, heads to cut, records to sweep), decided and proposed by the timer.
    fn due(&self, ctx: &DecideCtx<'_>) -> Vec<Self::Command>;

    /// This machine of a partition.
    fn cell(p: &Partition) -> &RefCell<Self>;
    /// The partition an entry of this machine belongs to, from its body alone.
    fn partition_of(entry_type: u16, body: &[u8], partitioner: &Partitioner) -> Result<u32, Corrupt>;
    /// Applies an entry, in log order. Deterministic: the state and the entry decide.
    fn apply(&mut self, e: &EntryRef<'_>, at: At) -> Result<(Self::Output, Option<Self::Pending>), Corrupt>;
    /// An entry applied [`At::Pending`] is durable at `pos`.
    fn settle(&mut self, pending: Self::Pending, pos: &Position);
    /// Whether the state still reads the entry at `from` (segment, offset), of `entry_type` with
    /// `body` (the original's, for a copy).
    fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool;
    /// A durable copy at `to` of the entry at `from`: true if the state reads the copy from now
    /// on, false if the copy is dead at once. Live and in replay.
    fn relocate(&mut self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, Corrupt>;
    /// The machine's snapshot section, encoded or frozen to be encoded step by step.
    fn capture(&self) -> crate::snapshot::shard::Captured;
    /// The state a snapshot section holds (of partition `partition`: every object in it must
    /// belong there).
    fn restore(
        dec: &mut crate::snapshot::codec::Dec<'_>,
        partition: u32,
        ctx: &RestoreCtx<'_>,
    ) -> Result<Self, Corrupt>;
    /// Bytes of this machine's entries nothing needs any more, all segments together.
    fn dead_bytes(&self) -> u64;
}

/// What restoring a section may need to know.
pub struct RestoreCtx<'a> {
    pub partitioner: &'a Partitioner,
}

/// One partition's state: every machine's, each in its own cell (a machine is borrowed on its
/// own, so one primitive's work never holds another's).
pub struct Partition {
    pub id: u32,
    pub namespaces: RefCell<crate::namespace::NamespaceRegistry>,
    pub kv: RefCell<crate::kv::KvStore>,
    pub queues: RefCell<crate::queue::state::QueueStore>,
    pub streams: RefCell<crate::stream::state::StreamStore>,
    pub ts: RefCell<crate::ts::series::SeriesStore>,
}

impl Partition {
    /// An empty partition.
    pub fn new(id: u32) -> Partition {
        Partition {
            id,
            namespaces: RefCell::default(),
            kv: RefCell::default(),
            queues: RefCell::default(),
            streams: RefCell::default(),
            ts: RefCell::default(),
        }
    }

    /// Applies a placed entry (replay) of any machine, through the routing table.
    pub fn apply_placed(&self, e: &EntryRef<'_>, pos: Position) -> Result<(), Corrupt> {
        fn placed<M: Machine>(p: &Partition, e: &EntryRef<'_>, pos: Position) -> Result<(), Corrupt> {
            let (_, pending) = M::cell(p).borrow_mut().apply(e, At::Placed(pos))?;
            debug_assert!(pending.is_none(), "a placed entry has nothing to settle");
            Ok(())
        }
        match kind_of(e.entry_type) {
            Some(Kind::Namespace) => placed::<crate::namespace::NamespaceRegistry>(self, e, pos),
            Some(Kind::Kv) => placed::<crate::kv::KvStore>(self, e, pos),
            Some(Kind::Queue) => placed::<crate::queue::state::QueueStore>(self, e, pos),
            Some(Kind::Stream) => placed::<crate::stream::state::StreamStore>(self, e, pos),
            Some(Kind::Ts) => placed::<crate::ts::series::SeriesStore>(self, e, pos),
            None => Err(unknown(e.entry_type, e.lsn)),
        }
    }

    /// Whether any machine still reads the entry at `from`.
    pub fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        match kind_of(entry_type) {
            Some(Kind::Namespace) | None => false,
            Some(Kind::Kv) => self.kv.borrow().needs(from, entry_type, body),
            Some(Kind::Queue) => self.queues.borrow().needs(from, entry_type, body),
            Some(Kind::Stream) => self.streams.borrow().needs(from, entry_type, body),
            Some(Kind::Ts) => self.ts.borrow().needs(from, entry_type, body),
        }
    }

    /// A durable copy at `to` of the entry at `from` (see [`Machine::relocate`]).
    pub fn relocate(&self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, Corrupt> {
        match kind_of(entry_type) {
            Some(Kind::Kv) => Machine::relocate(&mut *self.kv.borrow_mut(), from, to, entry_type, body),
            Some(Kind::Queue) => Machine::relocate(&mut *self.queues.borrow_mut(), from, to, entry_type, body),
            Some(Kind::Stream) => Machine::relocate(&mut *self.streams.borrow_mut(), from, to, entry_type, body),
            Some(Kind::Ts) => Machine::relocate(&mut *self.ts.borrow_mut(), from, to, entry_type, body),
            Some(Kind::Namespace) | None => Err(Corrupt(format!(
                "a relocated entry of type {entry_type}, which is never copied"
            ))),
        }
    }

    /// Settles an entry of this partition applied before it was durable, now durable at `pos`.
    pub fn settle(&self, pending: AnyPending, pos: &Position) {
        match pending {
            AnyPending::Namespace(p) => Machine::settle(&mut *self.namespaces.borrow_mut(), p, pos),
            AnyPending::Kv(p) => Machine::settle(&mut *self.kv.borrow_mut(), p, pos),
            AnyPending::Queue(p) => Machine::settle(&mut *self.queues.borrow_mut(), p, pos),
            AnyPending::Stream(p) => Machine::settle(&mut *self.streams.borrow_mut(), p, pos),
            AnyPending::Ts(p) => Machine::settle(&mut *self.ts.borrow_mut(), p, pos),
        }
    }

    /// Every machine's snapshot section, in the order of the partition section
    /// (`format-spec/snapshot.md`): namespaces, KV, queues, streams, time series.
    pub fn capture(&self) -> Vec<crate::snapshot::shard::Captured> {
        vec![
            self.namespaces.borrow().capture(),
            self.kv.borrow().capture(),
            self.queues.borrow().capture(),
            self.streams.borrow().capture(),
            self.ts.borrow().capture(),
        ]
    }

    /// Replaces every machine's state.
    pub fn replace(&self, state: PartitionState) {
        *self.namespaces.borrow_mut() = state.namespaces;
        *self.kv.borrow_mut() = state.kv;
        *self.queues.borrow_mut() = state.queues;
        *self.streams.borrow_mut() = state.streams;
        *self.ts.borrow_mut() = state.ts;
    }

    /// Bytes of entries nothing needs any more, every machine together.
    pub fn dead_bytes(&self) -> u64 {
        Machine::dead_bytes(&*self.kv.borrow())
            + Machine::dead_bytes(&*self.queues.borrow())
            + Machine::dead_bytes(&*self.streams.borrow())
            + Machine::dead_bytes(&*self.ts.borrow())
    }
}

/// A partition's state, every machine's, outside a partition (restored, not yet in place).
#[derive(Default)]
pub struct PartitionState {
    pub namespaces: crate::namespace::NamespaceRegistry,
    pub kv: crate::kv::KvStore,
    pub queues: crate::queue::state::QueueStore,
    pub streams: crate::stream::state::StreamStore,
    pub ts: crate::ts::series::SeriesStore,
}

impl PartitionState {
    /// Decodes partition `p`'s machine sections (in [`Partition::capture`]'s order); each must be
    /// read whole.
    pub fn restore(p: u32, sections: [&[u8]; 5], ctx: &RestoreCtx<'_>) -> Result<PartitionState, Corrupt> {
        use crate::snapshot::codec::Dec;
        fn one<M: Machine>(body: &[u8], p: u32, ctx: &RestoreCtx<'_>, what: &str) -> Result<M, Corrupt> {
            let mut d = Dec::new(body);
            let m = M::restore(&mut d, p, ctx).map_err(|e| Corrupt(format!("partition {p}, {what}: {e}")))?;
            d.done(&format!("partition {p}, {what}"))?;
            Ok(m)
        }
        let [ns, kv, q, s, ts] = sections;
        Ok(PartitionState {
            namespaces: one(ns, p, ctx, "namespaces")?,
            kv: one(kv, p, ctx, "KV")?,
            queues: one(q, p, ctx, "queues")?,
            streams: one(s, p, ctx, "streams")?,
            ts: one(ts, p, ctx, "time series")?,
        })
    }
}

/// The error for an entry type no machine knows.
pub fn unknown(entry_type: u16, lsn: u64) -> Corrupt {
    Corrupt(format!(
        "entry type {entry_type} at LSN {lsn} is unknown (written by a newer flo?)"
    ))
}

/// What an entry applied before it was durable needs once its place is known, of whichever
/// machine applied it: the engine keeps these in log order (an enum, not a boxed closure: one
/// allocation less on every write).
pub enum AnyPending {
    Namespace(String),
    Kv(crate::kv::KvPending),
    Queue(crate::queue::state::QueuePending),
    Stream(crate::stream::state::StreamPending),
    Ts(crate::ts::series::TsPending),
}

impl From<String> for AnyPending {
    fn from(p: String) -> AnyPending {
        AnyPending::Namespace(p)
    }
}

impl From<crate::kv::KvPending> for AnyPending {
    fn from(p: crate::kv::KvPending) -> AnyPending {
        AnyPending::Kv(p)
    }
}

impl From<crate::queue::state::QueuePending> for AnyPending {
    fn from(p: crate::queue::state::QueuePending) -> AnyPending {
        AnyPending::Queue(p)
    }
}

impl From<crate::stream::state::StreamPending> for AnyPending {
    fn from(p: crate::stream::state::StreamPending) -> AnyPending {
        AnyPending::Stream(p)
    }
}

impl From<crate::ts::series::TsPending> for AnyPending {
    fn from(p: crate::ts::series::TsPending) -> AnyPending {
        AnyPending::Ts(p)
    }
}
