//! Stream commands as they travel to the shard that owns the stream's partition, and their
//! execution there: a change is decided against the partition's stream state and proposed
//! (append, apply at once so the next command sees it), and answered once committed. Reads show
//! committed records only, and answers that reveal other state wait until the entries behind it
//! are committed. Records are rendered into the answer's JSON straight from the mapped segments.

use std::fmt::Write as _;

use super::state::{Group, Info, StreamAnswer, StreamCommand, StreamStore};
use crate::log::LogError;
use crate::machine::{Engine, Error, Machine};

pub use super::state::{Start, MAX_CONSUMERS, MAX_GROUPS};

/// Payload bytes one read answers with, about (at least one record is always answered).
pub const READ_MAX_BYTES: usize = 8 << 20;

/// A stream request for the owner shard of its stream (`List`: for every shard).
#[derive(Debug)]
pub enum StreamCmd {
    /// `body` is an APPEND body from [`AppendBody`] with `count` records, still to be stamped.
    Append {
        ns: String,
        stream: String,
        body: Vec<u8>,
        count: u32,
    },
    Read {
        ns: String,
        stream: String,
        offset: Option<u64>,
        count: usize,
        block_ms: u64,
    },
    Info {
        ns: String,
        stream: String,
    },
    List {
        ns: String,
    },
    /// A retention, trim, group creation, group ack or group deletion (appends wait for room in
    /// the log, and group reads may block: they have their own).
    Change(StreamCommand),
    GroupRead {
        ns: String,
        stream: String,
        group: String,
        consumer: String,
        count: usize,
        block_ms: u64,
    },
    GroupInfo {
        ns: String,
        stream: String,
        group: String,
    },
}

/// A group's figures, as its info shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    pub name: String,
    pub cursor: u64,
    pub pending_count: u64,
    pub consumers: Vec<String>,
    pub lag: u64,
    pub ack_timeout_ms: u64,
    pub max_deliveries: u32,
    pub dead_letter_count: u64,
    pub dead_letters: Vec<u64>,
}

/// The owner shard's answer.
#[derive(Debug, PartialEq)]
pub enum StreamReply {
    Appended {
        first: u64,
        last: u64,
        at_ms: u64,
    },
    /// Records: the whole JSON answer, rendered from the mapped log.
    Records(Vec<u8>),
    Info(Info),
    List(Vec<Info>),
    Trimmed {
        first_offset: u64,
    },
    Group(GroupInfo),
    Acked(u64),
    Deleted,
}

fn no_stream(ns: &str, stream: &str) -> Error {
    Error::not_found(format!("stream {stream:?} not found in namespace {ns:?}"))
}

fn no_group(stream: &str, group: &str) -> Error {
    Error::not_found(format!("group {group:?} not found on stream {stream:?}"))
}

fn corrupt(e: String) -> Error {
    Error::Corrupt(format!("stream read failed: {e}"))
}

/// Waits until the entries behind a stream's current state (and `group`'s) are committed.
async fn settled(engine: &Engine, p: u32, ns: &str, stream: &str, group: Option<&str>) -> Result<(), Error> {
    let lsn = {
        let st = engine.part(p).streams.borrow();
        let Some(s) = st.get(ns, stream) else { return Ok(()) };
        let g = group.and_then(|g| s.groups.get(g)).map_or(0, |g| g.last_lsn);
        s.last_lsn.max(g)
    };
    engine.committed(p, lsn).await
}

/// Decides and proposes a stream command; returns its answer and, once committed, what applying
/// it said (an ACK's count).
async fn change(engine: &Engine, p: u32, cmd: StreamCommand) -> Result<(StreamAnswer, u64), Error> {
    let (answer, proposed) = engine.decide::<StreamStore>(p, cmd)?;
    let mut out = 0;
    if let Some(pr) = proposed {
        engine.commit(&pr).await?;
        out = pr.output;
    }
    Ok((answer, out))
}

/// The start of a records answer.
const RECORDS_OPEN: &str = "{\"records\":[";

/// Appends one record's JSON object to `out` (after a comma when it is not the first). After
/// the first record, room for `more` records like it is reserved (bounded), so a long answer
/// is not built by repeated doubling.
fn render(out: &mut String, offset: u64, at_ms: u64, payload: &[u8], deliveries: Option<u32>, more: usize) {
    let first = out.len() == RECORDS_OPEN.len();
    if !first {
        out.push(',');
    }
    let start = out.len();
    let _ = write!(out, "{{\"offset\":{offset},\"timestamp_ms\":{at_ms},\"payload\":\"");
    crate::b64::encode_append(payload, out);
    out.push('"');
    if let Some(d) = deliveries {
        let _ = write!(out, ",\"delivery_count\":{d}");
    }
    out.push('}');
    if first && more > 0 {
        // Later offsets may have more digits; the answer's tail needs a little too.
        let each = out.len() - start + 4;
        out.reserve(each.saturating_mul(more).min(READ_MAX_BYTES / 3 * 4 + more * 64) + 128);
    }
}

/// Executes a stream command on this shard.
pub async fn execute(engine: &Engine, cmd: StreamCmd) -> Result<StreamReply, Error> {
    match cmd {
        StreamCmd::Append {
            ns,
            stream,
            body,
            count,
        } => append(engine, ns, stream, body, count).await,
        StreamCmd::Read {
            ns,
            stream,
            offset,
            count,
            block_ms,
        } => read(engine, &ns, &stream, offset, count, block_ms).await,
        StreamCmd::Info { ns, stream } => {
            let p = engine.partition_of(&ns, &stream);
            settled(engine, p, &ns, &stream, None).await?;
            info(engine, p, &ns, &stream)?
                .map(StreamReply::Info)
                .ok_or_else(|| no_stream(&ns, &stream))
        }
        StreamCmd::List { ns } => {
            let mut names: Vec<(u32, String)> = Vec::new();
            for part in engine.parts() {
                names.extend(part.streams.borrow().names(&ns).into_iter().map(|n| (part.id, n)));
            }
            names.sort_unstable_by(|a, b| a.1.cmp(&b.1));
            let mut out = Vec::with_capacity(names.len());
            for (p, name) in names {
                settled(engine, p, &ns, &name, None).await?;
                out.extend(info(engine, p, &ns, &name)?);
            }
            Ok(StreamReply::List(out))
        }
        StreamCmd::Change(cmd) => change_stream(engine, cmd).await,
        StreamCmd::GroupRead {
            ns,
            stream,
            group,
            consumer,
            count,
            block_ms,
        } => group_read(engine, &ns, &stream, &group, &consumer, count, block_ms).await,
        StreamCmd::GroupInfo { ns, stream, group } => {
            let p = engine.partition_of(&ns, &stream);
            settled(engine, p, &ns, &stream, Some(&group)).await?;
            group_info(engine, p, &ns, &stream, &group)
        }
    }
}

/// Decides and proposes a client's retention, trim or group change, then answers as its
/// operation does (the stream's or the group's info, what was trimmed or acked).
async fn change_stream(engine: &Engine, cmd: StreamCommand) -> Result<StreamReply, Error> {
    let (ns, stream, group) = match &cmd {
        StreamCommand::Retention { ns, stream, .. }
        | StreamCommand::Trim { ns, stream, .. }
        | StreamCommand::GroupCreate { ns, stream, .. } => (ns.clone(), stream.clone(), None),
        StreamCommand::GroupAck { ns, stream, group, .. } | StreamCommand::GroupDelete { ns, stream, group } => {
            (ns.clone(), stream.clone(), Some(group.clone()))
        }
        _ => {
            return Err(Error::invalid(
                "only retention, trim and group create, ack and delete are changes a client asks for",
            ))
        }
    };
    let p = engine.partition_of(&ns, &stream);
    settled(engine, p, &ns, &stream, group.as_deref()).await?;
    match cmd {
        StreamCommand::Retention { .. } => {
            change(engine, p, cmd).await?;
            enforce_retention(engine, p, &ns, &stream);
            settled(engine, p, &ns, &stream, None).await?;
            info(engine, p, &ns, &stream)?
                .map(StreamReply::Info)
                .ok_or_else(|| no_stream(&ns, &stream))
        }
        StreamCommand::Trim { .. } => match change(engine, p, cmd).await? {
            (StreamAnswer::Trimmed { first_offset }, _) => Ok(StreamReply::Trimmed { first_offset }),
            (other, _) => Err(Error::Corrupt(format!("a trim answered {other:?}"))),
        },
        StreamCommand::GroupCreate { ref group, .. } => {
            let group = group.clone();
            change(engine, p, cmd).await?;
            group_info(engine, p, &ns, &stream, &group)
        }
        StreamCommand::GroupAck { .. } => {
            let (_, acked) = change(engine, p, cmd).await?;
            Ok(StreamReply::Acked(acked))
        }
        _ => {
            change(engine, p, cmd).await?;
            Ok(StreamReply::Deleted)
        }
    }
}

async fn append(engine: &Engine, ns: String, stream: String, body: Vec<u8>, count: u32) -> Result<StreamReply, Error> {
    let p = engine.partition_of(&ns, &stream);
    // A large append waits for room in the open batch rather than being refused while the
    // batch before it is written, and is then decided again (stamped with the offset and time
    // of then) — from the same body: deciding stamps it in place, so a refused proposal hands
    // it back rather than copying it for every attempt.
    let mut body = body;
    let (answer, proposed) = loop {
        let cmd = StreamCommand::Append {
            ns: ns.clone(),
            stream: stream.clone(),
            body,
            count,
        };
        let d = {
            let ctx = engine.decide_ctx(p)?;
            let st = engine.part(p).streams.borrow();
            Machine::decide(&*st, cmd, &ctx)?
        };
        let Some((entry_type, stamped)) = d.entry else {
            return Err(Error::Corrupt("an append decided to write nothing".into()));
        };
        match engine.propose::<StreamStore>(p, entry_type, &stamped) {
            Ok(pr) => break (d.answer, pr),
            Err(Error::Log(LogError::BatchFull)) => {
                engine.room(stamped.len()).await?;
                body = stamped;
            }
            Err(e) => return Err(e),
        }
    };
    let StreamAnswer::Appended { first, last, at_ms } = answer else {
        return Err(Error::Corrupt(format!("an append answered {answer:?}")));
    };
    engine.commit(&proposed).await?;
    engine.stream_watch.wake(&ns, &stream);
    // The append is durable: a retention that cannot be applied now is the timer's to retry,
    // not a reason to answer the append with an error.
    enforce_retention(engine, p, &ns, &stream);
    Ok(StreamReply::Appended { first, last, at_ms })
}

/// Proposes the trim a stream's retention calls for now, if any (not waiting for it: readers
/// wait for it before they show it).
fn enforce_retention(engine: &Engine, p: u32, ns: &str, stream: &str) {
    let cut = {
        let Ok(ctx) = engine.decide_ctx(p) else { return };
        engine.part(p).streams.borrow().retention_cut_of(ns, stream, &ctx)
    };
    let Some(before) = cut else { return };
    let cmd = StreamCommand::Trim {
        ns: ns.to_string(),
        stream: stream.to_string(),
        before,
    };
    if let Err(e) = engine.decide::<StreamStore>(p, cmd) {
        tracing::warn!(shard = engine.shard_id, %ns, %stream, error = %e, "retention deferred");
    }
}

fn info(engine: &Engine, p: u32, ns: &str, stream: &str) -> Result<Option<Info>, Error> {
    let st = engine.part(p).streams.borrow();
    let Some(s) = st.get(ns, stream) else { return Ok(None) };
    Ok(Some(Info {
        name: stream.to_string(),
        first_offset: s.first_offset,
        end_offset: s.durable_next,
        bytes: s.bytes(ns, stream, engine.log()?, &st.segments).map_err(corrupt)?,
        groups: s.groups.keys().cloned().collect(),
        retention: s.retention,
    }))
}

async fn read(
    engine: &Engine,
    ns: &str,
    stream: &str,
    offset: Option<u64>,
    count: usize,
    block_ms: u64,
) -> Result<StreamReply, Error> {
    let p = engine.partition_of(ns, stream);
    let deadline = engine.now_ms().saturating_add(block_ms);
    loop {
        settled(engine, p, ns, stream, None).await?;
        {
            let st = engine.part(p).streams.borrow();
            let s = st.get(ns, stream).ok_or_else(|| no_stream(ns, stream))?;
            let start = offset.unwrap_or(s.first_offset).max(s.first_offset);
            if start < s.durable_next || engine.now_ms() >= deadline {
                let mut json = String::from(RECORDS_OPEN);
                let more = (s.durable_next.saturating_sub(start) as usize)
                    .min(count)
                    .saturating_sub(1);
                let (mut next, mut n, mut bytes) = (start, 0, 0);
                s.read(ns, stream, engine.log()?, &st.segments, start, |o, at, payload| {
                    render(&mut json, o, at, payload, None, more);
                    next = o + 1;
                    n += 1;
                    bytes += payload.len();
                    n < count && bytes < READ_MAX_BYTES
                })
                .map_err(corrupt)?;
                let _ = write!(json, "],\"next_offset\":{next},\"first_offset\":{}}}", s.first_offset);
                return Ok(StreamReply::Records(json.into_bytes()));
            }
        }
        engine.wait_change(&engine.stream_watch, ns, stream, deadline).await?;
    }
}

fn group_info(engine: &Engine, p: u32, ns: &str, stream: &str, group: &str) -> Result<StreamReply, Error> {
    let st = engine.part(p).streams.borrow();
    let s = st.get(ns, stream).ok_or_else(|| no_stream(ns, stream))?;
    let g: &Group = s.groups.get(group).ok_or_else(|| no_group(stream, group))?;
    Ok(StreamReply::Group(GroupInfo {
        name: group.to_string(),
        cursor: g.cursor.max(s.first_offset),
        pending_count: g.pending_count() as u64,
        consumers: g.consumers(),
        lag: s.durable_next.saturating_sub(g.cursor.max(s.first_offset)),
        ack_timeout_ms: g.ack_timeout_ms,
        max_deliveries: g.max_deliveries,
        dead_letter_count: g.dead_letter_count,
        dead_letters: g.dead_letters(),
    }))
}

#[allow(clippy::too_many_arguments)]
async fn group_read(
    engine: &Engine,
    ns: &str,
    stream: &str,
    group: &str,
    consumer: &str,
    count: usize,
    block_ms: u64,
) -> Result<StreamReply, Error> {
    let p = engine.partition_of(ns, stream);
    let deadline = engine.now_ms().saturating_add(block_ms);
    loop {
        settled(engine, p, ns, stream, Some(group)).await?;
        let cmd = StreamCommand::GroupRead {
            ns: ns.to_string(),
            stream: stream.to_string(),
            group: group.to_string(),
            consumer: consumer.to_string(),
            count,
        };
        let (answer, proposed) = engine.decide::<StreamStore>(p, cmd)?;
        let mut json = String::from(RECORDS_OPEN);
        if let StreamAnswer::Read(Some(plan)) = answer {
            render_group_records(engine, p, ns, stream, group, &plan, &mut json)?;
            if let Some(pr) = proposed {
                engine.commit(&pr).await?;
            }
        }
        if json.len() > RECORDS_OPEN.len() || engine.now_ms() >= deadline {
            json.push_str("]}");
            return Ok(StreamReply::Records(json.into_bytes()));
        }
        // Also wake when the next lease runs out: its record is due for redelivery.
        let next_due = {
            let st = engine.part(p).streams.borrow();
            st.get(ns, stream)
                .and_then(|s| s.groups.get(group))
                .and_then(|g| g.next_deadline())
        };
        let until = next_due.map_or(deadline, |d| d.saturating_add(1).min(deadline));
        engine.wait_change(&engine.stream_watch, ns, stream, until).await?;
    }
}

/// Renders the records a group read delivered: redeliveries first, then the new ones.
fn render_group_records(
    engine: &Engine,
    p: u32,
    ns: &str,
    stream: &str,
    group: &str,
    rd: &super::state::GroupReadPlan,
    json: &mut String,
) -> Result<(), Error> {
    let st = engine.part(p).streams.borrow();
    let s = st.get(ns, stream).ok_or_else(|| no_stream(ns, stream))?;
    let g = s.groups.get(group).ok_or_else(|| no_group(stream, group))?;
    let log = engine.log()?;
    let more = (rd.redelivered.len() + (rd.cursor - rd.new_from) as usize).saturating_sub(1);
    // Redeliveries in offset order, each run of consecutive offsets read in one walk (leases
    // taken together run out together, so runs are the common case).
    let mut again = rd.redelivered.clone();
    again.sort_unstable();
    let mut i = 0;
    while i < again.len() {
        let start = i;
        while i + 1 < again.len() && again[i + 1] == again[i] + 1 {
            i += 1;
        }
        let last = again[i];
        s.read(ns, stream, log, &st.segments, again[start], |at, ts, payload| {
            render(json, at, ts, payload, g.deliveries(at), more);
            at < last
        })
        .map_err(corrupt)?;
        i += 1;
    }
    if rd.new_from < rd.cursor {
        s.read(ns, stream, log, &st.segments, rd.new_from, |at, ts, payload| {
            render(json, at, ts, payload, Some(1), more);
            at + 1 < rd.cursor
        })
        .map_err(corrupt)?;
    }
    Ok(())
}
