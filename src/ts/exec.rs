//! Time-series commands on the shard that owns the series, and the shard's time-series timer.
//!
//! A write arrives here as a [`Part`]: the lines of one request whose series this shard owns,
//! already validated by the coordinator. The owner resolves series ids (defining new series),
//! appends one `TS_POINTS` entry, applies it at once (log order) and answers when it is durable.
//! Full heads are cut into `TS_CHUNK` entries right after. Parts of a multi-part write stay
//! pending until the commit table says their batch committed; this shard then logs `TS_COMMIT`
//! and moves them into its heads: on the coordinator's word, before any query, and from the
//! timer, whichever comes first.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use super::entry::{
    decode_chunk, decode_points, encode_abort, encode_chunk, encode_drop, encode_points, encode_retention, NewSeries,
    CHUNK_IN_ORDER, ENTRY_TS_ABORT, ENTRY_TS_CHUNK, ENTRY_TS_COMMIT, ENTRY_TS_DROP, ENTRY_TS_POINTS,
    ENTRY_TS_RETENTION,
};
use super::series::{decode_line_key, EntryAt, MeasurementStats, SeriesStore, HEAD_POINTS};
use crate::api::error::ApiError;
use crate::log::format::stored_bytes;
use crate::log::LogError;
use crate::server::shard::{log_error, Shard};

/// How long a write waits for room in the log's open batch before it is answered 429.
const ROOM_WAIT: Duration = Duration::from_secs(5);
/// Points in one `TS_POINTS` entry at most; a larger share of a write takes several parts.
pub const MAX_PART_POINTS: usize = 100_000;

/// The lines of a write that one shard owns, encoded by the coordinator (in memory only):
/// per line `u32 len` + its line key (`series::line_key`), `u32 field count`, per field
/// `u32 len` + name and 8 bytes f64, then the 8-byte timestamp in ms. Names are valid UTF-8
/// (they come from `&str`).
#[derive(Debug, Default)]
pub struct Part {
    buf: Vec<u8>,
    pub points: usize,
}

/// One line of a part, borrowed from it.
pub struct PartLine<'a> {
    pub key: &'a [u8],
    pub fields: Vec<(&'a str, f64)>,
    pub ts_ms: i64,
}

struct PartReader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> PartReader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self.b.get(self.at..self.at + n).ok_or("part cut short")?;
        self.at += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().map_err(|_| "part cut short")?,
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().map_err(|_| "part cut short")?,
        ))
    }
}

impl Part {
    /// Adds a line: its line key and its fields with their stored values.
    pub fn push<'f>(&mut self, key: &[u8], fields: impl Iterator<Item = (&'f str, f64)>, ts_ms: i64) {
        self.buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        let count_at = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        let mut n = 0u32;
        for (f, v) in fields {
            self.buf.extend_from_slice(&(f.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(f.as_bytes());
            self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
            n += 1;
        }
        self.buf[count_at..count_at + 4].copy_from_slice(&n.to_le_bytes());
        self.buf.extend_from_slice(&ts_ms.to_le_bytes());
        self.points += n as usize;
    }

    /// Appends another part's lines.
    pub fn append(&mut self, other: &Part) {
        self.buf.extend_from_slice(&other.buf);
        self.points += other.points;
    }

    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// Calls `f` with every line.
    pub fn lines(&self, mut f: impl FnMut(&PartLine<'_>)) -> Result<(), String> {
        let mut r = PartReader { b: &self.buf, at: 0 };
        let mut line = PartLine {
            key: &[],
            fields: Vec::new(),
            ts_ms: 0,
        };
        while r.at < self.buf.len() {
            let n = r.u32()? as usize;
            line.key = r.bytes(n)?;
            line.fields.clear();
            for _ in 0..r.u32()? {
                let n = r.u32()? as usize;
                let name = std::str::from_utf8(r.bytes(n)?).map_err(|_| "a field name of a part is not UTF-8")?;
                line.fields.push((name, f64::from_bits(r.u64()?)));
            }
            line.ts_ms = r.u64()? as i64;
            f(&line);
        }
        Ok(())
    }
}

/// A time-series request for the shard that owns the series.
#[derive(Debug)]
pub enum TsCmd {
    /// Append a part of a write; answered when it is durable. `participants` is empty for a
    /// write of one part (then `batch_id` is 0).
    Write {
        ns: String,
        batch_id: u64,
        participants: Vec<u16>,
        part: Part,
    },
    /// The coordinator's word that `batch_id` committed: move its parts into the heads.
    Commit { batch_id: u64 },
    /// A part of the write failed elsewhere: drop this shard's parts.
    Abort { ns: String, batch_id: u64 },
    /// The measurements of a namespace this shard holds series of.
    Measurements { ns: String },
    /// The series of a measurement this shard holds.
    Series { ns: String, measurement: String },
    /// Set a measurement's retention (every shard logs its own).
    Retention {
        ns: String,
        measurement: String,
        max_age_ms: u64,
    },
    /// Parse a piece of a large write's body (`split.rs`), so a body's lines are parsed on
    /// every shard at once.
    Parse(super::split::Piece),
    /// Run the shard's part of a query; `snapshot` is its commit snapshot (`commit.rs`).
    Query {
        ns: String,
        plan: std::sync::Arc<super::query::Plan>,
        snapshot: u64,
    },
}

/// One series in a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    pub tags: Vec<(String, String)>,
    pub field: String,
    pub samples: u64,
}

#[derive(Debug)]
pub enum TsReply {
    Done,
    Measurements(BTreeMap<String, MeasurementStats>),
    Series(Vec<SeriesInfo>),
    Query(super::query::ShardOutput),
    Parsed(Result<super::split::Parsed, super::line::LineError>),
}

impl PartialEq for TsReply {
    /// Query outputs are not compared (no test needs it); everything else by value.
    fn eq(&self, other: &TsReply) -> bool {
        match (self, other) {
            (TsReply::Done, TsReply::Done) => true,
            (TsReply::Measurements(a), TsReply::Measurements(b)) => a == b,
            (TsReply::Series(a), TsReply::Series(b)) => a == b,
            _ => false,
        }
    }
}

/// Runs a time-series command on this (the owning) shard.
pub async fn execute(shard: &Shard, cmd: TsCmd) -> Result<TsReply, ApiError> {
    match cmd {
        TsCmd::Write {
            ns,
            batch_id,
            participants,
            part,
        } => write(shard, &ns, batch_id, &participants, &part).await,
        TsCmd::Commit { batch_id } => {
            commit_pending(shard, Some(batch_id)).await?;
            Ok(TsReply::Done)
        }
        TsCmd::Abort { ns, batch_id } => {
            // Not awaited: until the abort is durable the part is pending, and recovery
            // aborts it anyway (its batch never had every part durable).
            append_waiting(shard, ENTRY_TS_ABORT, &encode_abort(&ns, batch_id)).await?;
            shard.ts.borrow_mut().abort(batch_id);
            Ok(TsReply::Done)
        }
        TsCmd::Measurements { ns } => {
            readable(shard).await?;
            Ok(TsReply::Measurements(shard.ts.borrow().measurement_stats(&ns)))
        }
        TsCmd::Series { ns, measurement } => {
            readable(shard).await?;
            let st = shard.ts.borrow();
            let out = st
                .select(&ns, &measurement, &[])
                .into_iter()
                .filter_map(|id| st.get(id))
                .map(|s| SeriesInfo {
                    tags: s.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                    field: s.field.to_string(),
                    samples: s.samples(),
                })
                .collect();
            Ok(TsReply::Series(out))
        }
        TsCmd::Retention {
            ns,
            measurement,
            max_age_ms,
        } => {
            let ticket = append_waiting(
                shard,
                ENTRY_TS_RETENTION,
                &encode_retention(&ns, &measurement, max_age_ms),
            )
            .await?;
            shard.ts.borrow_mut().set_retention(&ns, &measurement, max_age_ms);
            ticket.await.map_err(log_error)?;
            Ok(TsReply::Done)
        }
        TsCmd::Parse(piece) => Ok(TsReply::Parsed(piece.parse(&shard.node.partitioner))),
        TsCmd::Query { ns, plan, snapshot } => query(shard, &ns, &plan, snapshot).await.map(TsReply::Query),
    }
}

/// Appends an entry, waiting (bounded) for room in the open batch.
async fn append_waiting(shard: &Shard, entry_type: u16, body: &[u8]) -> Result<crate::log::Ticket, ApiError> {
    let appended = append_while(shard, entry_type, body, || true).await?;
    appended.ok_or_else(|| ApiError::Internal("an append was given up".into()))
}

/// Appends an entry, waiting (bounded) for room in the open batch, as long as `wanted` says so:
/// it is asked right before each try, so what it checks still holds when the entry is appended
/// (nothing else runs between that and the caller's next step, if the caller does not await).
/// `None` once `wanted` says no.
async fn append_while(
    shard: &Shard,
    entry_type: u16,
    body: &[u8],
    wanted: impl Fn() -> bool,
) -> Result<Option<crate::log::Ticket>, ApiError> {
    let log = shard.log()?;
    loop {
        if !wanted() {
            return Ok(None);
        }
        match log.append(entry_type, body) {
            Ok(t) => return Ok(Some(t)),
            Err(LogError::BatchFull) => {
                if monoio::time::timeout(ROOM_WAIT, log.room(body.len())).await.is_err() {
                    return Err(ApiError::Overloaded(
                        "the log has had no room for this write for too long; retry later".into(),
                    ));
                }
            }
            Err(e) => return Err(log_error(e)),
        }
    }
}

/// A series a part defines: id, measurement, tags, field.
type OwnedSeries = (u32, String, Vec<(String, String)>, String);

/// Builds the `TS_POINTS` body of a part: resolves series ids, numbering new series from the
/// store's next id. Nothing may change the store between this and applying the entry.
fn build_points(
    st: &SeriesStore,
    ns: &str,
    batch_id: u64,
    participants: &[u16],
    part: &Part,
) -> Result<Vec<u8>, ApiError> {
    let mut next = st.next_id();
    // Series this part defines, by line key prefix.
    let mut fresh: HashMap<Vec<u8>, Vec<(String, u32)>> = HashMap::new();
    let mut new_series: Vec<OwnedSeries> = Vec::new();
    let mut points: Vec<(u32, i64, f64)> = Vec::with_capacity(part.points);
    let lines = st.lines_of(ns);
    let mut overflow = false;
    let mut bad_key = false;
    part.lines(|line| {
        let known = lines.and_then(|m| m.get(line.key)).map_or(&[][..], Vec::as_slice);
        for (j, (field, v)) in line.fields.iter().enumerate() {
            // A line's fields come sorted, as they were when its series were defined: the j-th
            // field is most likely the j-th known one.
            let at_j = known.get(j).filter(|(f, _)| **f == **field);
            let found = at_j
                .or_else(|| known.iter().find(|(f, _)| **f == **field))
                .map(|(_, id)| *id)
                .or_else(|| {
                    fresh
                        .get(line.key)
                        .and_then(|l| l.iter().find(|(f, _)| f == field).map(|(_, id)| *id))
                });
            let id = match found {
                Some(id) => id,
                None => {
                    let Some((measurement, tags)) = decode_line_key(line.key) else {
                        bad_key = true;
                        continue;
                    };
                    let id = next;
                    match next.checked_add(1) {
                        Some(n) => next = n,
                        None => overflow = true,
                    }
                    fresh
                        .entry(line.key.to_vec())
                        .or_default()
                        .push((field.to_string(), id));
                    new_series.push((
                        id,
                        measurement.to_string(),
                        tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                        field.to_string(),
                    ));
                    id
                }
            };
            points.push((id, line.ts_ms, *v));
        }
    })
    .map_err(ApiError::Internal)?;
    if bad_key {
        return Err(ApiError::Internal(
            "a part holds a line key that does not decode".into(),
        ));
    }
    if overflow {
        return Err(ApiError::Overloaded(
            "this shard holds the most series it can number".into(),
        ));
    }
    let defs: Vec<NewSeries<'_>> = new_series
        .iter()
        .map(|(id, m, tags, f)| NewSeries {
            id: *id,
            measurement: m,
            tags: tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
            field: f,
        })
        .collect();
    Ok(encode_points(ns, batch_id, participants, &defs, &points))
}

async fn write(shard: &Shard, ns: &str, batch_id: u64, participants: &[u16], part: &Part) -> Result<TsReply, ApiError> {
    let log = shard.log()?;
    let ticket = loop {
        let body = build_points(&shard.ts.borrow(), ns, batch_id, participants, part)?;
        match log.append(ENTRY_TS_POINTS, &body) {
            Ok(ticket) => {
                let points = decode_points(&body).map_err(ApiError::Internal)?;
                let full = shard
                    .ts
                    .borrow_mut()
                    .apply_points(
                        &points,
                        ticket.lsn,
                        EntryAt::InFlight(ticket.clone()),
                        stored_bytes(body.len()) as u64,
                        crate::metrics::now_ms(),
                    )
                    .map_err(ApiError::Internal)?;
                cut_heads(shard, full.into_iter().map(|id| (id, CHUNK_IN_ORDER)));
                break ticket;
            }
            Err(LogError::BatchFull) => {
                // Series may be defined while this waits: the body is built again.
                if monoio::time::timeout(ROOM_WAIT, log.room(body.len())).await.is_err() {
                    return Err(ApiError::Overloaded(
                        "the log has had no room for this write for too long; retry later".into(),
                    ));
                }
            }
            Err(e) => return Err(log_error(e)),
        }
    };
    ticket.await.map_err(log_error)?;
    Ok(TsReply::Done)
}

/// Cuts the given heads into chunks and appends them. A head the open batch has no room for
/// stays as it is; the timer tries again.
fn cut_heads(shard: &Shard, heads: impl Iterator<Item = (u32, u8)>) {
    let Ok(log) = shard.log() else { return };
    for (id, kind) in heads {
        let mut st = shard.ts.borrow_mut();
        let Some(bytes) = st.cut(id, kind) else { continue };
        let Some(ns) = st.get(id).map(|s| s.namespace.to_string()) else {
            continue;
        };
        let body = encode_chunk(&ns, id, kind, &bytes);
        let ticket = match log.append(ENTRY_TS_CHUNK, &body) {
            Ok(t) => t,
            Err(_) => return,
        };
        let applied = decode_chunk(&body).and_then(|c| {
            st.apply_chunk(
                &c,
                ticket.lsn,
                EntryAt::InFlight(ticket.clone()),
                stored_bytes(body.len()) as u64,
            )
        });
        if let Err(e) = applied {
            // The chunk was cut from this very head a moment ago: a mismatch is a bug.
            tracing::error!(shard = shard.id, series = id, error = %e, "a chunk does not match its head");
            continue;
        }
        // A head grown past one chunk's worth is cut again until it is under the mark.
        let left = st.get(id).map_or(0, |s| {
            if kind == CHUNK_IN_ORDER {
                s.head.len()
            } else {
                s.late.len()
            }
        });
        drop(st);
        if left >= HEAD_POINTS {
            cut_heads(shard, std::iter::once((id, kind)));
        }
    }
}

/// Moves the parts of committed batches (all, or just `only`) into the heads, logging
/// `TS_COMMIT` for each — those every running query sees (`CommitTable::movable`); the others
/// wait for a later call (the timer's, at the latest).
pub async fn commit_pending(shard: &Shard, only: Option<u64>) -> Result<(), ApiError> {
    let table = &shard.node.ts_commits;
    let batches: Vec<(u64, String)> = shard
        .ts
        .borrow()
        .pending()
        .filter(|(b, ..)| only.is_none_or(|o| o == *b) && table.movable(*b))
        .map(|(b, ns, ..)| (b, ns.to_string()))
        .collect();
    for (batch, ns) in batches {
        if commit_batch(shard, &ns, batch).await? {
            table.done(batch);
        }
    }
    Ok(())
}

/// Logs `TS_COMMIT` for `batch` and moves its parts here into the heads, unless they are no
/// longer pending: another task may have committed the batch while this one waited for room in
/// the log, and a second `TS_COMMIT` would fail replay. The check, the append and the commit run
/// with no await between them. Returns whether this call committed the batch.
async fn commit_batch(shard: &Shard, ns: &str, batch: u64) -> Result<bool, ApiError> {
    let body = encode_abort(ns, batch);
    let wanted = || shard.ts.borrow().is_pending(batch);
    if append_while(shard, ENTRY_TS_COMMIT, &body, wanted).await?.is_none() {
        return Ok(false);
    }
    let full = shard
        .ts
        .borrow_mut()
        .commit(ns, batch, crate::metrics::now_ms(), false)
        .map_err(ApiError::Internal)?;
    cut_heads(shard, full.into_iter().map(|id| (id, CHUNK_IN_ORDER)));
    Ok(true)
}

/// Makes what this shard answers current: commits batches the table says committed, places
/// chunks that became durable.
async fn readable(shard: &Shard) -> Result<(), ApiError> {
    if shard.ts.borrow().has_pending() {
        commit_pending(shard, None).await?;
    }
    shard.ts.borrow_mut().settle();
    Ok(())
}

/// This shard's part of a query: the matching series' durable points in range, through the
/// plan's per-shard stages.
async fn query(
    shard: &Shard,
    ns: &str,
    plan: &super::query::Plan,
    snapshot: u64,
) -> Result<super::query::ShardOutput, ApiError> {
    readable(shard).await?;
    let log = shard.log()?;
    let durable = log.durable_lsn();
    let st = shard.ts.borrow();
    // Parts of batches this query's snapshot sees but that are still pending here.
    let table = &shard.node.ts_commits;
    let overlay = st.pending_points(|batch| table.visible(batch, snapshot));
    let (mut from, to) = plan.range();
    if let Some(age) = st.retention(ns, plan.measurement()) {
        from = from.max((crate::metrics::now_ms() as i64).saturating_sub(age as i64));
    }
    let mut series = Vec::new();
    let mut total = 0usize;
    let mut points = Vec::new();
    for id in st.select(ns, plan.measurement(), &plan.equal_filters()) {
        let Some(s) = st.get(id) else { continue };
        let tags: Vec<(&str, &str)> = s.tags.iter().map(|(k, v)| (&**k, &**v)).collect();
        if !plan.matches(&tags, &s.field) {
            continue;
        }
        // `lsn` is the entry's at the place: the chunk's own, or the copy compaction moved it to
        // (which reads as the original).
        let load = |loc: u64, lsn: u64| {
            let (segment, offset) = st.segments.place(loc);
            let e = log
                .read_at(&crate::log::Position { lsn, segment, offset })
                .map_err(|e| e.to_string())?;
            if e.entry_type != ENTRY_TS_CHUNK {
                return Err(format!("entry {lsn} is of type {}, not a chunk", e.entry_type));
            }
            let c = decode_chunk(e.body())?;
            super::chunk::decode(c.bytes).map_err(|e| e.to_string())
        };
        let extra = overlay.get(&id).map_or(&[][..], Vec::as_slice);
        st.read(id, from, to, durable, load, extra, &mut points)
            .map_err(|e| ApiError::Internal(format!("reading series {id}: {e}")))?;
        if points.is_empty() {
            continue;
        }
        total += points.len();
        if total > super::query::MAX_POINTS_PER_SHARD {
            return Err(ApiError::BadRequest(format!(
                "the query selects more than {} points; narrow the range or the filters",
                super::query::MAX_POINTS_PER_SHARD
            )));
        }
        series.push(super::query::SeriesData {
            measurement: s.measurement.to_string(),
            field: s.field.to_string(),
            tags: s.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            points: std::mem::take(&mut points),
        });
    }
    drop(st);
    plan.shard(series).map_err(|e| ApiError::Invalid {
        message: e.message,
        details: serde_json::json!({ "position": e.position }),
    })
}

/// The shard's time-series timer: places chunks that became durable, commits what the table
/// says committed, cuts full and aged heads, enforces retention, forgets old commit records,
/// updates the metrics.
pub async fn timer(shard: Rc<Shard>, tick: Duration) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(tick) => {},
            _ = shard.stop.wait() => break,
        }
        if shard.log.get().is_none() {
            continue;
        }
        if let Err(e) = readable(&shard).await {
            tracing::debug!(shard = shard.id, error = %e.message(), "time-series commits wait");
        }
        let now = crate::metrics::now_ms();
        let heads: Vec<(u32, u8)> = {
            let st = shard.ts.borrow();
            let mut heads = st.aged(now, shard.node.config.ts.head_age_ms);
            heads.extend(st.full(HEAD_POINTS));
            heads
        };
        cut_heads(&shard, heads.into_iter());
        let expired = shard.ts.borrow().expired(now);
        for (id, lsns) in expired {
            let Some(ns) = shard.ts.borrow().get(id).map(|s| s.namespace.to_string()) else {
                continue;
            };
            match append_waiting(&shard, ENTRY_TS_DROP, &encode_drop(&ns, id, &lsns)).await {
                Ok(_) => {
                    if let Err(e) = shard.ts.borrow_mut().drop_chunks(&ns, id, &lsns) {
                        tracing::error!(shard = shard.id, error = %e, "retention drop");
                    }
                }
                Err(_) => break,
            }
        }
        shard.ts.borrow_mut().prune_committed(super::series::process_ms());
        let st = shard.ts.borrow();
        let m = &shard.node.metrics[shard.id];
        m.ts_series.store(st.len() as u64, std::sync::atomic::Ordering::Relaxed);
        m.ts_samples.store(st.samples(), std::sync::atomic::Ordering::Relaxed);
    }
}

/// After replay, before the node serves: settles every multi-part write this shard holds
/// pending with the other shards (`commit.rs`), logging `TS_COMMIT` or `TS_ABORT` for each.
pub async fn resolve_pending(shard: &Shard) -> Result<(), ApiError> {
    let node = &shard.node;
    let x = &node.ts_recovery;
    let shards = node.shard_count();
    let mine: Vec<(u64, Vec<u16>)> = shard
        .ts
        .borrow()
        .pending()
        .map(|(b, _, p, _)| (b, p.to_vec()))
        .collect();
    x.publish_pending(mine);
    while x.published() < shards {
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    let me = shard.id as u16;
    let held: Vec<(u64, u16)> = {
        let st = shard.ts.borrow();
        x.pending_batches()
            .into_iter()
            .filter(|(_, p)| p.contains(&me))
            .map(|(b, _)| (b, st.parts_held(b)))
            .collect()
    };
    x.publish_held(me, held);
    while x.answered() < shards {
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    let pending: Vec<(u64, String, Vec<u16>)> = shard
        .ts
        .borrow()
        .pending()
        .map(|(b, ns, p, _)| (b, ns.to_string(), p.to_vec()))
        .collect();
    let (mut committed, mut aborted) = (0, 0);
    for (batch, ns, participants) in pending {
        if x.committed(batch, &participants) {
            commit_batch(shard, &ns, batch).await?;
            committed += 1;
        } else {
            append_waiting(shard, ENTRY_TS_ABORT, &encode_abort(&ns, batch)).await?;
            shard.ts.borrow_mut().abort(batch);
            aborted += 1;
        }
    }
    shard.ts.borrow_mut().forget_committed();
    if committed + aborted > 0 {
        tracing::info!(
            shard = shard.id,
            committed,
            aborted,
            "time-series writes pending at the last stop settled"
        );
    }
    Ok(())
}

/// Replays a time-series entry; `Ok(false)` when the entry is not one.
pub fn replay(
    st: &mut SeriesStore,
    e: &crate::log::format::EntryRef<'_>,
    pos: crate::log::Position,
) -> Result<bool, String> {
    let stored = stored_bytes(e.body.len()) as u64;
    let now = crate::metrics::now_ms();
    match e.entry_type {
        ENTRY_TS_POINTS => {
            let p = decode_points(e.body)?;
            st.apply_points(&p, pos.lsn, EntryAt::Placed(pos), stored, now)?;
        }
        ENTRY_TS_ABORT => {
            let (_, batch) = super::entry::decode_abort(e.body)?;
            st.abort(batch);
        }
        ENTRY_TS_COMMIT => {
            let (ns, batch) = super::entry::decode_abort(e.body)?;
            st.commit(ns, batch, now, true)?;
        }
        ENTRY_TS_CHUNK => {
            let c = decode_chunk(e.body)?;
            st.apply_chunk(&c, pos.lsn, EntryAt::Placed(pos), stored)?;
        }
        ENTRY_TS_RETENTION => {
            let (ns, m, age) = super::entry::decode_retention(e.body)?;
            st.set_retention(ns, m, age);
        }
        ENTRY_TS_DROP => {
            let (ns, id, lsns) = super::entry::decode_drop(e.body)?;
            st.drop_chunks(ns, id, &lsns)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::format::SEGMENT_HEADER_BYTES;
    use crate::log::io::RealFs;
    use crate::log::metrics::LogMetrics;
    use crate::log::LogOptions;

    fn shard() -> Shard {
        Shard::for_tests()
    }

    /// Two tasks find the same committed batch pending and both wait for room in the log: the
    /// batch is committed, and `TS_COMMIT` logged, once (a second would fail replay).
    #[test]
    fn a_batch_two_tasks_commit_is_logged_once() {
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let opts = LogOptions {
                shard_id: 0,
                segment_bytes: 1 << 20,
                batch_max_bytes: 16 * 1024,
                durability: crate::config::Durability::Sync,
                flush_interval: Duration::from_millis(5),
                commit_wait: Duration::ZERO,
                repair: false,
            };
            let metrics = Arc::new(LogMetrics::default());
            let (log, _) = crate::log::open(
                crate::log::either::EitherFs::Real(RealFs),
                dir.path().join("shard-000"),
                opts,
                metrics,
                0,
                |_, _| Ok(()),
            )
            .await
            .unwrap();
            let log = Rc::new(log);
            let shard = Rc::new(shard());
            assert!(shard.log.set(log.clone()).is_ok());

            // A part of batch 7 pending here, its batch committed in the table.
            let new = [NewSeries {
                id: 1,
                measurement: "cpu",
                tags: vec![("host", "a")],
                field: "usage",
            }];
            let body = encode_points("app", 7, &[0, 1], &new, &[(1, 10, 1.0)]);
            let t = log.append(ENTRY_TS_POINTS, &body).unwrap();
            let bytes = stored_bytes(body.len()) as u64;
            let p = decode_points(&body).unwrap();
            shard
                .ts
                .borrow_mut()
                .apply_points(&p, t.lsn, EntryAt::InFlight(t), bytes, 0)
                .unwrap();
            shard.node.ts_commits.insert(7, 1);
            // The open batch is full (the flusher is not running yet): both wait for room.
            let filler = 16 * 1024 - bytes as usize - 8 - crate::log::format::ENTRY_HEADER_BYTES;
            log.append(9_999, &vec![0u8; filler]).unwrap();
            let task = || {
                let s = shard.clone();
                monoio::spawn(async move { commit_pending(&s, None).await })
            };
            let (a, b) = (task(), task());
            monoio::time::sleep(Duration::from_millis(20)).await;
            assert!(shard.ts.borrow().is_pending(7));
            let flusher = monoio::spawn(log.clone().run_flusher());
            a.await.unwrap();
            b.await.unwrap();
            assert!(!shard.ts.borrow().is_pending(7));
            assert!(shard.node.ts_commits.is_empty());
            log.wait_durable(log.next_lsn() - 1).await.unwrap();

            // The log replays: one TS_COMMIT.
            let mut st = SeriesStore::default();
            let mut commits = 0;
            for (segment, _) in log.segments() {
                let es = log.segment_entries(segment).unwrap();
                let mut off = SEGMENT_HEADER_BYTES as u64;
                while let Ok((e, next)) = es.entry(off) {
                    commits += usize::from(e.entry_type == ENTRY_TS_COMMIT);
                    let pos = crate::log::Position {
                        lsn: e.lsn,
                        segment,
                        offset: off,
                    };
                    replay(&mut st, &e, pos).unwrap();
                    off = next;
                }
            }
            assert_eq!(commits, 1);
            assert_eq!(st.get(1).unwrap().head.pairs(), [(10, 1.0)]);
            log.stop();
            flusher.await;
        });
    }
}
