//! Stream commands as they travel to the stream's owner shard, and their execution there: check
//! against the state, append the entry, apply it at once (so the next command sees it), answer
//! once it is durable. Reads show durable records only, and answers that reveal other state
//! wait until the entries behind it are durable. Records are rendered into the answer's JSON
//! straight from the mapped segments. Also the shard's stream timer: retention.

use std::fmt::Write as _;
use std::rc::Rc;

use super::entry::*;
use super::state::{At, Group, Info, ReadPlan, StreamStore};
use crate::api::error::ApiError;
use crate::server::shard::{log_error, Shard};

/// Payload bytes one read answers with, about (at least one record is always answered).
pub const READ_MAX_BYTES: usize = 8 << 20;
/// How long an append waits for room in the log's open batch before it is answered 429.
const ROOM_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
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
    Retention {
        ns: String,
        stream: String,
        retention: Retention,
    },
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
        block_ms: u64,
    },
    GroupAck {
        ns: String,
        stream: String,
        group: String,
        offsets: Vec<u64>,
    },
    GroupInfo {
        ns: String,
        stream: String,
        group: String,
    },
    GroupDelete {
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

fn head<'a>(ns: &'a str, stream: &'a str, at_ms: u64) -> Head<'a> {
    Head {
        namespace: ns,
        name: stream,
        at_ms,
    }
}

fn clock(shard: &Shard) -> u64 {
    shard.streams.borrow_mut().clock(crate::metrics::now_ms())
}

fn no_stream(ns: &str, stream: &str) -> ApiError {
    ApiError::NotFound(format!("stream {stream:?} not found in namespace {ns:?}"))
}

fn no_group(stream: &str, group: &str) -> ApiError {
    ApiError::NotFound(format!("group {group:?} not found on stream {stream:?}"))
}

fn corrupt(e: String) -> ApiError {
    ApiError::Internal(format!("stream read failed: {e}"))
}

/// Waits until the entries behind a stream's current state (and `group`'s) are durable, then
/// moves the stream's durable appends into its index.
async fn settled(shard: &Shard, ns: &str, stream: &str, group: Option<&str>) -> Result<(), ApiError> {
    let lsn = {
        let st = shard.streams.borrow();
        let Some(s) = st.get(ns, stream) else { return Ok(()) };
        let g = group.and_then(|g| s.groups.get(g)).map_or(0, |g| g.last_lsn);
        s.last_lsn.max(g)
    };
    if lsn > 0 {
        shard.log()?.wait_durable(lsn).await.map_err(log_error)?;
    }
    settle(shard, ns, stream)
}

/// Settles a stream's durable appends, waking the readers waiting for them.
fn settle(shard: &Shard, ns: &str, stream: &str) -> Result<(), ApiError> {
    if shard.streams.borrow_mut().settle(ns, stream).map_err(log_error)? {
        shard.stream_watch.wake(ns, stream);
    }
    Ok(())
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
pub async fn execute(shard: &Shard, cmd: StreamCmd) -> Result<StreamReply, ApiError> {
    match cmd {
        StreamCmd::Append {
            ns,
            stream,
            body,
            count,
        } => append(shard, &ns, &stream, body, count).await,
        StreamCmd::Read {
            ns,
            stream,
            offset,
            count,
            block_ms,
        } => read(shard, &ns, &stream, offset, count, block_ms).await,
        StreamCmd::Info { ns, stream } => {
            settled(shard, &ns, &stream, None).await?;
            info(shard, &ns, &stream)?
                .map(StreamReply::Info)
                .ok_or_else(|| no_stream(&ns, &stream))
        }
        StreamCmd::List { ns } => {
            let names = shard.streams.borrow().names(&ns);
            let mut out = Vec::with_capacity(names.len());
            for name in names {
                settled(shard, &ns, &name, None).await?;
                out.extend(info(shard, &ns, &name)?);
            }
            Ok(StreamReply::List(out))
        }
        StreamCmd::Retention { ns, stream, retention } => {
            settled(shard, &ns, &stream, None).await?;
            if shard.streams.borrow().get(&ns, &stream).is_none() {
                return Err(no_stream(&ns, &stream));
            }
            let now = clock(shard);
            let ticket = shard
                .log()?
                .append(
                    ENTRY_STREAM_RETENTION,
                    &encode_retention(&head(&ns, &stream, now), &retention),
                )
                .map_err(log_error)?;
            shard
                .streams
                .borrow_mut()
                .apply_retention(&ns, &stream, retention, ticket.lsn)
                .map_err(ApiError::Internal)?;
            ticket.await.map_err(log_error)?;
            if let Err(e) = enforce_retention(shard, &ns, &stream) {
                tracing::warn!(shard = shard.id, %ns, %stream, error = %e.message(), "retention deferred");
            }
            settled(shard, &ns, &stream, None).await?;
            info(shard, &ns, &stream)?
                .map(StreamReply::Info)
                .ok_or_else(|| no_stream(&ns, &stream))
        }
        StreamCmd::Trim { ns, stream, before } => {
            settled(shard, &ns, &stream, None).await?;
            let (first, end) = match shard.streams.borrow().get(&ns, &stream) {
                Some(s) => (s.first_offset, s.durable_next),
                None => return Err(no_stream(&ns, &stream)),
            };
            let cut = before.min(end);
            if cut <= first {
                return Ok(StreamReply::Trimmed { first_offset: first });
            }
            trim(shard, &ns, &stream, cut)?.await.map_err(log_error)?;
            Ok(StreamReply::Trimmed { first_offset: cut })
        }
        StreamCmd::GroupCreate {
            ns,
            stream,
            group,
            start,
            ack_timeout_ms,
            max_deliveries,
        } => {
            settled(shard, &ns, &stream, None).await?;
            let cursor = {
                let st = shard.streams.borrow();
                let s = st.get(&ns, &stream).ok_or_else(|| no_stream(&ns, &stream))?;
                if s.groups.contains_key(&group) {
                    return Err(ApiError::Conflict {
                        message: format!("group {group:?} already exists on stream {stream:?}"),
                        current_version: None,
                    });
                }
                if s.groups.len() >= MAX_GROUPS {
                    return Err(ApiError::BadRequest(format!(
                        "stream {stream:?} already has {MAX_GROUPS} consumer groups, the most it may have"
                    )));
                }
                match start {
                    Start::Earliest => s.first_offset,
                    Start::Latest => s.durable_next,
                    Start::Offset(o) => o.min(s.durable_next).max(s.first_offset),
                }
            };
            let op = GroupOp::Create {
                cursor,
                ack_timeout_ms,
                max_deliveries,
            };
            group_op(shard, &ns, &stream, &group, &op).await?;
            group_info(shard, &ns, &stream, &group)
        }
        StreamCmd::GroupRead {
            ns,
            stream,
            group,
            consumer,
            count,
            block_ms,
        } => group_read(shard, &ns, &stream, &group, &consumer, count, block_ms).await,
        StreamCmd::GroupAck {
            ns,
            stream,
            group,
            mut offsets,
        } => {
            settled(shard, &ns, &stream, Some(&group)).await?;
            offsets.sort_unstable();
            offsets.dedup();
            {
                let st = shard.streams.borrow();
                let s = st.get(&ns, &stream).ok_or_else(|| no_stream(&ns, &stream))?;
                let g = s.groups.get(&group).ok_or_else(|| no_group(&stream, &group))?;
                offsets.retain(|&o| g.deliveries(o).is_some());
            }
            if offsets.is_empty() {
                return Ok(StreamReply::Acked(0));
            }
            let acked = group_op(shard, &ns, &stream, &group, &GroupOp::Ack(offsets)).await?;
            Ok(StreamReply::Acked(acked))
        }
        StreamCmd::GroupInfo { ns, stream, group } => {
            settled(shard, &ns, &stream, Some(&group)).await?;
            group_info(shard, &ns, &stream, &group)
        }
        StreamCmd::GroupDelete { ns, stream, group } => {
            settled(shard, &ns, &stream, Some(&group)).await?;
            {
                let st = shard.streams.borrow();
                let s = st.get(&ns, &stream).ok_or_else(|| no_stream(&ns, &stream))?;
                s.groups.get(&group).ok_or_else(|| no_group(&stream, &group))?;
            }
            group_op(shard, &ns, &stream, &group, &GroupOp::Delete).await?;
            Ok(StreamReply::Deleted)
        }
    }
}

async fn append(shard: &Shard, ns: &str, stream: &str, mut body: Vec<u8>, count: u32) -> Result<StreamReply, ApiError> {
    debug_assert!(decode_append(&body).is_ok_and(|a| a.count == count && a.head.name == stream));
    shard.ensure_namespace(ns).await?;
    let log = shard.log()?;
    // A large append waits for room in the open batch rather than being refused while the
    // batch before it is written; from here to `apply_append` nothing awaits, so the room and
    // the offset stay ours.
    if monoio::time::timeout(ROOM_WAIT, log.room(body.len())).await.is_err() {
        return Err(ApiError::Overloaded(
            "the log has had no room for this append for too long; retry later".into(),
        ));
    }
    let now = clock(shard);
    let first = shard.streams.borrow().get(ns, stream).map_or(0, |s| s.next_offset);
    stamp_append(&mut body, now, first);
    let ticket = log.append(ENTRY_STREAM_APPEND, &body).map_err(log_error)?;
    let stored = crate::log::format::stored_bytes(body.len()) as u64;
    drop(body);
    shard
        .streams
        .borrow_mut()
        .apply_append(
            ns,
            stream,
            first,
            count,
            stored,
            now,
            ticket.lsn,
            At::InFlight(ticket.clone()),
        )
        .map_err(ApiError::Internal)?;
    ticket.await.map_err(log_error)?;
    settle(shard, ns, stream)?;
    // The append is durable: a retention that cannot be applied now is the timer's to retry,
    // not a reason to answer the append with an error.
    if let Err(e) = enforce_retention(shard, ns, stream) {
        tracing::warn!(shard = shard.id, %ns, %stream, error = %e.message(), "retention deferred");
    }
    Ok(StreamReply::Appended {
        first,
        last: first + u64::from(count) - 1,
        at_ms: now,
    })
}

/// Appends and applies a TRIM before `cut`; the ticket resolves when it is durable.
fn trim(shard: &Shard, ns: &str, stream: &str, cut: u64) -> Result<crate::log::Ticket, ApiError> {
    let now = clock(shard);
    let ticket = shard
        .log()?
        .append(ENTRY_STREAM_TRIM, &encode_trim(&head(ns, stream, now), cut))
        .map_err(log_error)?;
    shard
        .streams
        .borrow_mut()
        .apply_trim(ns, stream, cut, ticket.lsn)
        .map_err(ApiError::Internal)?;
    Ok(ticket)
}

/// Trims what the stream's retention no longer keeps (not waiting for the trim's durability:
/// readers wait for it before they show it).
fn enforce_retention(shard: &Shard, ns: &str, stream: &str) -> Result<(), ApiError> {
    let now = clock(shard);
    let cut = {
        let st = shard.streams.borrow();
        let Some(s) = st.get(ns, stream) else { return Ok(()) };
        if !s.retention.any() {
            return Ok(());
        }
        let cut = s
            .retention_cut(ns, stream, shard.log()?, &st.segments, now)
            .map_err(corrupt)?;
        if cut <= s.first_offset {
            return Ok(());
        }
        cut
    };
    trim(shard, ns, stream, cut).map(drop)
}

fn info(shard: &Shard, ns: &str, stream: &str) -> Result<Option<Info>, ApiError> {
    let st = shard.streams.borrow();
    let Some(s) = st.get(ns, stream) else { return Ok(None) };
    Ok(Some(Info {
        name: stream.to_string(),
        first_offset: s.first_offset,
        end_offset: s.durable_next,
        bytes: s.bytes(ns, stream, shard.log()?, &st.segments).map_err(corrupt)?,
        groups: s.groups.keys().cloned().collect(),
        retention: s.retention,
    }))
}

async fn read(
    shard: &Shard,
    ns: &str,
    stream: &str,
    offset: Option<u64>,
    count: usize,
    block_ms: u64,
) -> Result<StreamReply, ApiError> {
    let deadline = crate::metrics::now_ms().saturating_add(block_ms);
    loop {
        settled(shard, ns, stream, None).await?;
        {
            let st = shard.streams.borrow();
            let s = st.get(ns, stream).ok_or_else(|| no_stream(ns, stream))?;
            let start = offset.unwrap_or(s.first_offset).max(s.first_offset);
            if start < s.durable_next || crate::metrics::now_ms() >= deadline {
                let mut json = String::from(RECORDS_OPEN);
                let more = (s.durable_next.saturating_sub(start) as usize)
                    .min(count)
                    .saturating_sub(1);
                let (mut next, mut n, mut bytes) = (start, 0, 0);
                s.read(ns, stream, shard.log()?, &st.segments, start, |o, at, payload| {
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
        shard.wait_change(&shard.stream_watch, ns, stream, deadline).await?;
    }
}

/// Appends and applies a group entry; answers when it is durable (an ACK with the count).
async fn group_op(shard: &Shard, ns: &str, stream: &str, group: &str, op: &GroupOp<'_>) -> Result<u64, ApiError> {
    let now = clock(shard);
    let ticket = shard
        .log()?
        .append(group_entry_type(op), &encode_group(&head(ns, stream, now), group, op))
        .map_err(log_error)?;
    let n = shard
        .streams
        .borrow_mut()
        .apply_group(ns, stream, group, op, ticket.lsn)
        .map_err(ApiError::Internal)?;
    ticket.await.map_err(log_error)?;
    Ok(n)
}

fn group_info(shard: &Shard, ns: &str, stream: &str, group: &str) -> Result<StreamReply, ApiError> {
    let st = shard.streams.borrow();
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
    shard: &Shard,
    ns: &str,
    stream: &str,
    group: &str,
    consumer: &str,
    count: usize,
    block_ms: u64,
) -> Result<StreamReply, ApiError> {
    let deadline = crate::metrics::now_ms().saturating_add(block_ms);
    loop {
        settled(shard, ns, stream, Some(group)).await?;
        let now = clock(shard);
        let (plan, ack_timeout_ms, next_due): (ReadPlan, u64, Option<u64>) = {
            let st = shard.streams.borrow();
            let s = st.get(ns, stream).ok_or_else(|| no_stream(ns, stream))?;
            let g = s.groups.get(group).ok_or_else(|| no_group(stream, group))?;
            if !g.has_consumer(consumer) && g.consumer_count() >= MAX_CONSUMERS {
                return Err(ApiError::BadRequest(format!(
                    "group {group:?} already has {MAX_CONSUMERS} consumers, the most it may have"
                )));
            }
            (
                g.plan_read(now, count, s.first_offset, s.durable_next),
                g.ack_timeout_ms,
                g.next_deadline(),
            )
        };
        let mut json = String::from(RECORDS_OPEN);
        if !plan.is_empty() {
            let rd = Read {
                consumer,
                deadline_ms: now.saturating_add(ack_timeout_ms),
                new_from: plan.new_from,
                cursor: plan.cursor,
                redelivered: plan.redelivered,
                given_up: plan.given_up,
            };
            let op = GroupOp::Read(rd.clone());
            let ticket = shard
                .log()?
                .append(ENTRY_GROUP_READ, &encode_group(&head(ns, stream, now), group, &op))
                .map_err(log_error)?;
            {
                let mut st = shard.streams.borrow_mut();
                st.apply_group(ns, stream, group, &op, ticket.lsn)
                    .map_err(ApiError::Internal)?;
                render_group_records(&st, shard, ns, stream, group, &rd, &mut json)?;
            }
            ticket.await.map_err(log_error)?;
        }
        if json.len() > RECORDS_OPEN.len() || crate::metrics::now_ms() >= deadline {
            json.push_str("]}");
            return Ok(StreamReply::Records(json.into_bytes()));
        }
        // Also wake when the next lease runs out: its record is due for redelivery.
        let until = next_due.map_or(deadline, |d| d.saturating_add(1).min(deadline));
        shard.wait_change(&shard.stream_watch, ns, stream, until).await?;
    }
}

/// Renders the records a group read delivered: redeliveries first, then the new ones.
fn render_group_records(
    st: &StreamStore,
    shard: &Shard,
    ns: &str,
    stream: &str,
    group: &str,
    rd: &Read<'_>,
    json: &mut String,
) -> Result<(), ApiError> {
    let s = st.get(ns, stream).ok_or_else(|| no_stream(ns, stream))?;
    let g = s.groups.get(group).ok_or_else(|| no_group(stream, group))?;
    let log = shard.log()?;
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

/// The shard's stream timer: settles appends whose tasks went away, enforces retention (age
/// limits need a clock), and publishes the record count. Runs every `tick` until the shard stops.
pub async fn timer(shard: Rc<Shard>, tick: std::time::Duration) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(tick) => {},
            _ = shard.stop.wait() => break,
        }
        let keys = shard.streams.borrow().keys();
        for (ns, stream) in keys {
            let result = settle(&shard, &ns, &stream).and_then(|()| enforce_retention(&shard, &ns, &stream));
            if let Err(e) = result {
                tracing::debug!(shard = shard.id, %ns, %stream, error = %e.message(), "stream upkeep deferred");
            }
        }
        let count = shard.streams.borrow().record_count();
        shard.node.metrics[shard.id]
            .stream_records
            .store(count, std::sync::atomic::Ordering::Relaxed);
    }
}
