//! The stream store as a [`Machine`]: what each stream command decides against the state, and
//! how each stream entry applies (`format-spec/stream.md`).
//!
//! A decision stamps its entry with the stream clock's time (now, never earlier than an entry
//! already applied), and decides from the records already durable: a group reads, and a trim
//! cuts, only those. Applying an entry moves the clock to its time and nothing else reads one.

use super::{ReadPlan, StreamStore};
use crate::log::format::{stored_bytes, EntryRef};
use crate::log::Position;
use crate::machine::{At, Corrupt, DecideCtx, Decided, Error, Kind, Machine, Partition, RestoreCtx};
use crate::partition::Partitioner;
use crate::snapshot::codec::{Dec, Enc};
use crate::snapshot::shard::Captured;
use crate::stream::entry::*;

/// Consumer groups per stream, at most.
pub const MAX_GROUPS: usize = 64;
/// Consumers per group, at most.
pub const MAX_CONSUMERS: usize = 1000;

/// Where a new group starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Earliest,
    Latest,
    Offset(u64),
}

/// A stream command that changes state.
#[derive(Debug)]
pub enum StreamCommand {
    /// `body` is an APPEND body from [`AppendBody`] with `count` records, still to be stamped.
    Append {
        ns: String,
        stream: String,
        body: Vec<u8>,
        count: u32,
    },
    Retention {
        ns: String,
        stream: String,
        retention: Retention,
    },
    /// Drop the records before `before` (no further than the durable ones).
    Trim {
        ns: String,
        stream: String,
        before: u64,
    },
    GroupCreate {
        ns: String,
        stream: String,
        group: String,
        start: Start,
        ack_timeout_ms: u64,
        max_deliveries: u32,
    },
    GroupRead {
        ns: String,
        stream: String,
        group: String,
        consumer: String,
        count: usize,
    },
    GroupAck {
        ns: String,
        stream: String,
        group: String,
        offsets: Vec<u64>,
    },
    GroupDelete {
        ns: String,
        stream: String,
        group: String,
    },
}

/// What a group read delivers: redeliveries, then new records `[new_from, cursor)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReadPlan {
    pub redelivered: Vec<u64>,
    pub new_from: u64,
    pub cursor: u64,
}

/// What a stream command answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamAnswer {
    Appended {
        first: u64,
        last: u64,
        at_ms: u64,
    },
    /// The records before this offset are gone.
    Trimmed {
        first_offset: u64,
    },
    /// A group read; `None` when it had nothing to deliver.
    Read(Option<GroupReadPlan>),
    /// Retention set, group created, acked (the count is the output of applying it) or deleted.
    Done,
}

/// An APPEND applied before it was durable.
pub struct StreamPending {
    ns: Box<str>,
    name: Box<str>,
    lsn: u64,
}

fn head<'a>(ns: &'a str, stream: &'a str, at_ms: u64) -> Head<'a> {
    Head {
        namespace: ns,
        name: stream,
        at_ms,
    }
}

fn no_stream(ns: &str, stream: &str) -> Error {
    Error::not_found(format!("stream {stream:?} not found in namespace {ns:?}"))
}

fn no_group(stream: &str, group: &str) -> Error {
    Error::not_found(format!("group {group:?} not found on stream {stream:?}"))
}

impl Machine for StreamStore {
    const KIND: Kind = Kind::Stream;
    type Command = StreamCommand;
    type Answer = StreamAnswer;
    /// An ACK's count of records that were pending.
    type Output = u64;
    type Pending = StreamPending;

    fn cell(p: &Partition) -> &std::cell::RefCell<Self> {
        &p.streams
    }

    fn partition_of(_entry_type: u16, body: &[u8], partitioner: &Partitioner) -> Result<u32, Corrupt> {
        let h = crate::log::body::read_head(&mut crate::log::body::Reader::new(body), "stream name")?;
        Ok(partitioner.partition(h.namespace, h.name))
    }

    fn decide(&self, cmd: StreamCommand, ctx: &DecideCtx<'_>) -> Result<Decided<StreamAnswer>, Error> {
        let at = ctx.now_ms.max(self.clock_ms());
        Ok(match cmd {
            StreamCommand::Append {
                ns,
                stream,
                mut body,
                count,
            } => {
                debug_assert!(decode_append(&body).is_ok_and(|a| a.count == count && a.head.name == stream));
                let first = self.get(&ns, &stream).map_or(0, |s| s.next_offset);
                stamp_append(&mut body, at, first);
                Decided::write(
                    ENTRY_STREAM_APPEND,
                    body,
                    StreamAnswer::Appended {
                        first,
                        last: first + u64::from(count) - 1,
                        at_ms: at,
                    },
                )
            }
            StreamCommand::Retention { ns, stream, retention } => {
                self.get(&ns, &stream).ok_or_else(|| no_stream(&ns, &stream))?;
                let body = encode_retention(&head(&ns, &stream, at), &retention);
                Decided::write(ENTRY_STREAM_RETENTION, body, StreamAnswer::Done)
            }
            StreamCommand::Trim { ns, stream, before } => {
                let s = self.get(&ns, &stream).ok_or_else(|| no_stream(&ns, &stream))?;
                let cut = before.min(s.durable_next);
                if cut <= s.first_offset {
                    return Ok(Decided::nothing(StreamAnswer::Trimmed {
                        first_offset: s.first_offset,
                    }));
                }
                let body = encode_trim(&head(&ns, &stream, at), cut);
                Decided::write(ENTRY_STREAM_TRIM, body, StreamAnswer::Trimmed { first_offset: cut })
            }
            StreamCommand::GroupCreate {
                ns,
                stream,
                group,
                start,
                ack_timeout_ms,
                max_deliveries,
            } => {
                let s = self.get(&ns, &stream).ok_or_else(|| no_stream(&ns, &stream))?;
                if s.groups.contains_key(&group) {
                    return Err(Error::conflict(
                        format!("group {group:?} already exists on stream {stream:?}"),
                        None,
                    ));
                }
                if s.groups.len() >= MAX_GROUPS {
                    return Err(Error::invalid(format!(
                        "stream {stream:?} already has {MAX_GROUPS} consumer groups, the most it may have"
                    )));
                }
                let cursor = match start {
                    Start::Earliest => s.first_offset,
                    Start::Latest => s.durable_next,
                    Start::Offset(o) => o.min(s.durable_next).max(s.first_offset),
                };
                let op = GroupOp::Create {
                    cursor,
                    ack_timeout_ms,
                    max_deliveries,
                };
                let body = encode_group(&head(&ns, &stream, at), &group, &op);
                Decided::write(ENTRY_GROUP_CREATE, body, StreamAnswer::Done)
            }
            StreamCommand::GroupRead {
                ns,
                stream,
                group,
                consumer,
                count,
            } => {
                let s = self.get(&ns, &stream).ok_or_else(|| no_stream(&ns, &stream))?;
                let g = s.groups.get(&group).ok_or_else(|| no_group(&stream, &group))?;
                if !g.has_consumer(&consumer) && g.consumer_count() >= MAX_CONSUMERS {
                    return Err(Error::invalid(format!(
                        "group {group:?} already has {MAX_CONSUMERS} consumers, the most it may have"
                    )));
                }
                let plan: ReadPlan = g.plan_read(at, count, s.first_offset, s.durable_next);
                if plan.is_empty() {
                    return Ok(Decided::nothing(StreamAnswer::Read(None)));
                }
                let rd = Read {
                    consumer: &consumer,
                    deadline_ms: at.saturating_add(g.ack_timeout_ms),
                    new_from: plan.new_from,
                    cursor: plan.cursor,
                    redelivered: plan.redelivered.clone(),
                    given_up: plan.given_up,
                };
                let body = encode_group(&head(&ns, &stream, at), &group, &GroupOp::Read(rd));
                Decided::write(
                    ENTRY_GROUP_READ,
                    body,
                    StreamAnswer::Read(Some(GroupReadPlan {
                        redelivered: plan.redelivered,
                        new_from: plan.new_from,
                        cursor: plan.cursor,
                    })),
                )
            }
            StreamCommand::GroupAck {
                ns,
                stream,
                group,
                mut offsets,
            } => {
                let s = self.get(&ns, &stream).ok_or_else(|| no_stream(&ns, &stream))?;
                let g = s.groups.get(&group).ok_or_else(|| no_group(&stream, &group))?;
                offsets.sort_unstable();
                offsets.dedup();
                offsets.retain(|&o| g.deliveries(o).is_some());
                if offsets.is_empty() {
                    return Ok(Decided::nothing(StreamAnswer::Done));
                }
                let body = encode_group(&head(&ns, &stream, at), &group, &GroupOp::Ack(offsets));
                Decided::write(ENTRY_GROUP_ACK, body, StreamAnswer::Done)
            }
            StreamCommand::GroupDelete { ns, stream, group } => {
                let s = self.get(&ns, &stream).ok_or_else(|| no_stream(&ns, &stream))?;
                s.groups.get(&group).ok_or_else(|| no_group(&stream, &group))?;
                let body = encode_group(&head(&ns, &stream, at), &group, &GroupOp::Delete);
                Decided::write(ENTRY_GROUP_DELETE, body, StreamAnswer::Done)
            }
        })
    }

    fn due(&self, ctx: &DecideCtx<'_>) -> Vec<StreamCommand> {
        let mut keys = self.keys();
        keys.sort_unstable();
        keys.into_iter()
            .filter_map(|(ns, stream)| {
                let cut = self.retention_cut_of(&ns, &stream, ctx)?;
                Some(StreamCommand::Trim {
                    ns,
                    stream,
                    before: cut,
                })
            })
            .collect()
    }

    fn apply(&mut self, e: &EntryRef<'_>, at: At) -> Result<(u64, Option<StreamPending>), Corrupt> {
        let lsn = at.lsn();
        match e.entry_type {
            ENTRY_STREAM_APPEND => {
                let a = decode_append(e.body)?;
                self.clock = self.clock.max(a.head.at_ms);
                let stored = stored_bytes(e.body.len()) as u64;
                let (ns, name) = (a.head.namespace, a.head.name);
                self.apply_append(ns, name, a.first_offset, a.count, stored, a.head.at_ms, lsn, at)?;
                let pending = matches!(at, At::Pending(_)).then(|| StreamPending {
                    ns: ns.into(),
                    name: name.into(),
                    lsn,
                });
                Ok((0, pending))
            }
            ENTRY_STREAM_TRIM => {
                let (h, before) = decode_trim(e.body)?;
                self.clock = self.clock.max(h.at_ms);
                self.apply_trim(h.namespace, h.name, before, lsn)?;
                Ok((0, None))
            }
            ENTRY_STREAM_RETENTION => {
                let (h, r) = decode_retention(e.body)?;
                self.clock = self.clock.max(h.at_ms);
                self.apply_retention(h.namespace, h.name, r, lsn)?;
                Ok((0, None))
            }
            t @ ENTRY_GROUP_CREATE..=ENTRY_GROUP_DELETE => {
                let (h, group, op) = decode_group(t, e.body)?;
                self.clock = self.clock.max(h.at_ms);
                let acked = self.apply_group(h.namespace, h.name, group, &op, lsn)?;
                Ok((acked, None))
            }
            t => Err(Corrupt(format!(
                "stream entry type {t} is unknown (written by a newer flo?)"
            ))),
        }
    }

    fn settle(&mut self, p: StreamPending, pos: &Position) {
        StreamStore::settle(self, &p.ns, &p.name, p.lsn, pos);
    }

    fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        StreamStore::needs(self, from, entry_type, body)
    }

    fn relocate(&mut self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, Corrupt> {
        Ok(StreamStore::relocate(self, from, to, entry_type, body)?)
    }

    fn capture(&self) -> Captured {
        let mut e = Enc::new();
        self.snapshot(&mut e);
        Captured::Encoded(e)
    }

    fn restore(dec: &mut Dec<'_>, partition: u32, ctx: &RestoreCtx<'_>) -> Result<Self, Corrupt> {
        Ok(StreamStore::decode(dec, Some((partition, ctx.partitioner)))?)
    }

    fn dead_bytes(&self) -> u64 {
        StreamStore::dead_bytes(self)
    }
}

impl StreamStore {
    /// The first offset a stream's retention keeps now, if records before it are to go.
    pub fn retention_cut_of(&self, ns: &str, stream: &str, ctx: &DecideCtx<'_>) -> Option<u64> {
        let s = self.get(ns, stream)?;
        if !s.retention.any() {
            return None;
        }
        let now = ctx.now_ms.max(self.clock_ms());
        match s.retention_cut(ns, stream, ctx.log, &self.segments, now) {
            Ok(cut) if cut > s.first_offset => Some(cut),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(%ns, %stream, error = %e, "stream retention cannot read the log; deferred");
                None
            }
        }
    }
}
