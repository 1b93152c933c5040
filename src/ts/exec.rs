//! Time-series commands on the shard that owns the series' partitions.
//!
//! A write arrives here as the [`Part`]s of this shard's partitions: the lines of one request
//! whose series they own, already validated by the coordinator. Each partition decides its part
//! (resolving series ids, defining new series) into one `TS_POINTS` entry, proposed and applied
//! at once (log order), and the write is answered when every part here is durable. Full heads
//! are cut into `TS_CHUNK` entries right after. Parts of a multi-part write stay pending until
//! the commit table says their batch committed; each partition holding one then proposes
//! `TS_COMMIT` and moves it into its heads: on the coordinator's word, before any query, and from
//! the timer, whichever comes first.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::entry::{decode_chunk, CHUNK_IN_ORDER, ENTRY_TS_CHUNK};
use super::part::Part;
use super::series::{FullHeads, MeasurementStats, SeriesStore, TsCommand};
use crate::machine::{Engine, Error, Refusal};

pub use super::part::MAX_PART_POINTS;

/// A time-series request for the shard that owns the series.
#[derive(Debug)]
pub enum TsCmd {
    /// This shard's parts of a write, by partition; answered when they are durable. A write of
    /// `part_count` parts in all (1: `batch_id` is 0), arrived at `at_ms`.
    Write {
        ns: String,
        batch_id: u64,
        part_count: u16,
        at_ms: u64,
        parts: Vec<(u32, Part)>,
    },
    /// The coordinator's word that `batch_id` committed: move its parts into the heads.
    Commit { batch_id: u64 },
    /// A part of the write failed elsewhere: drop this shard's parts.
    Abort { batch_id: u64 },
    /// The measurements of a namespace this shard holds series of.
    Measurements { ns: String },
    /// The series of a measurement this shard holds.
    Series { ns: String, measurement: String },
    /// Set a measurement's retention (every partition logs its own).
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
pub async fn execute(engine: &Engine, cmd: TsCmd) -> Result<TsReply, Error> {
    match cmd {
        TsCmd::Write {
            ns,
            batch_id,
            part_count,
            at_ms,
            parts,
        } => write(engine, &ns, batch_id, part_count, at_ms, parts).await,
        TsCmd::Commit { batch_id } => {
            commit_pending(engine, Some(batch_id)).await?;
            Ok(TsReply::Done)
        }
        TsCmd::Abort { batch_id } => {
            // Not awaited: until the abort is durable the part is pending, and recovery
            // aborts it anyway (its batch never had every part durable). Every partition holding
            // a part is tried, whatever one of them answers.
            let mut failed = None;
            for p in partitions_holding(engine, batch_id) {
                if let Err(e) = engine
                    .decide_waiting::<SeriesStore>(p, || TsCommand::Abort { batch_id })
                    .await
                {
                    failed.get_or_insert(e);
                }
            }
            failed.map_or(Ok(TsReply::Done), Err)
        }
        TsCmd::Measurements { ns } => {
            readable(engine).await?;
            let mut out: BTreeMap<String, MeasurementStats> = BTreeMap::new();
            for part in engine.parts() {
                for (name, st) in part.ts.borrow().measurement_stats(&ns) {
                    let e = out.entry(name).or_default();
                    e.series += st.series;
                    e.samples += st.samples;
                    e.bytes += st.bytes;
                    for f in st.fields {
                        if !e.fields.contains(&f) {
                            e.fields.push(f);
                        }
                    }
                }
            }
            Ok(TsReply::Measurements(out))
        }
        TsCmd::Series { ns, measurement } => {
            readable(engine).await?;
            let mut out = Vec::new();
            for part in engine.parts() {
                let st = part.ts.borrow();
                out.extend(
                    st.select(&ns, &measurement, &[])
                        .into_iter()
                        .filter_map(|id| st.get(id))
                        .map(|s| SeriesInfo {
                            tags: s.tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                            field: s.field.to_string(),
                            samples: s.samples(),
                        }),
                );
            }
            Ok(TsReply::Series(out))
        }
        TsCmd::Retention {
            ns,
            measurement,
            max_age_ms,
        } => {
            let mut proposed = Vec::new();
            for part in engine.parts() {
                let cmd = || TsCommand::Retention {
                    ns: ns.clone(),
                    measurement: measurement.clone(),
                    max_age_ms,
                };
                proposed.extend(engine.decide_waiting::<SeriesStore>(part.id, cmd).await?.1);
            }
            for pr in &proposed {
                engine.commit(pr).await?;
            }
            Ok(TsReply::Done)
        }
        TsCmd::Parse(piece) => Ok(TsReply::Parsed(piece.parse(&engine.partitioner))),
        TsCmd::Query { ns, plan, snapshot } => query(engine, &ns, &plan, snapshot).await.map(TsReply::Query),
    }
}

/// Proposes this shard's parts of a write, one `TS_POINTS` per part (waiting, bounded, for room
/// in the log), cuts the heads they fill, and answers once every part is durable.
async fn write(
    engine: &Engine,
    ns: &str,
    batch_id: u64,
    part_count: u16,
    at_ms: u64,
    parts: Vec<(u32, Part)>,
) -> Result<TsReply, Error> {
    let mut proposed = Vec::with_capacity(parts.len());
    for (p, part) in parts {
        if !engine.owns(p) {
            return Err(Error::Corrupt(format!("a part of partition {p}, not this shard's")));
        }
        let part = Rc::new(part);
        let cmd = || TsCommand::Points {
            ns: ns.to_string(),
            batch_id,
            part_count,
            at_ms,
            part: part.clone(),
        };
        let (_, pr) = engine.decide_waiting::<SeriesStore>(p, cmd).await?;
        if let Some(pr) = pr {
            cut_heads(engine, p, &pr.output);
            proposed.push(pr);
        }
    }
    for pr in &proposed {
        engine.commit(pr).await?;
    }
    Ok(TsReply::Done)
}

/// Cuts the in-order heads that are full into chunks (a head grown past one chunk's worth is cut
/// again until it is under the mark). A cut the log has no room for is the timer's to make.
fn cut_heads(engine: &Engine, p: u32, full: &FullHeads) {
    for &series in full {
        loop {
            match engine.decide::<SeriesStore>(
                p,
                TsCommand::Cut {
                    series,
                    kind: CHUNK_IN_ORDER,
                },
            ) {
                Ok((_, Some(_))) => {}
                Ok((_, None)) => break,
                Err(e) => {
                    tracing::debug!(shard = engine.shard_id, partition = p, series, error = %e, "a cut waits for the timer");
                    break;
                }
            }
            let left = engine.part(p).ts.borrow().get(series).map_or(0, |s| s.head.len());
            if left < super::series::HEAD_POINTS {
                break;
            }
        }
    }
}

/// The partitions of this shard holding parts of `batch` pending.
fn partitions_holding(engine: &Engine, batch: u64) -> Vec<u32> {
    engine
        .parts()
        .iter()
        .filter(|p| p.ts.borrow().is_pending(batch))
        .map(|p| p.id)
        .collect()
}

/// Moves the parts of committed batches (all, or just `only`) into the heads, each partition
/// holding one proposing `TS_COMMIT` — those every running query sees (`CommitTable::movable`);
/// the others wait for a later call (the timer's, at the latest). The commit that leaves no part
/// of a batch pending on this shard tells the table this owner is done with it (exactly once:
/// the check follows the proposal with no await between).
pub async fn commit_pending(engine: &Engine, only: Option<u64>) -> Result<(), Error> {
    let table = &engine.ts_commits;
    let mut batches: Vec<u64> = Vec::new();
    for part in engine.parts() {
        batches.extend(
            part.ts
                .borrow()
                .pending()
                .map(|(b, ..)| b)
                .filter(|b| only.is_none_or(|o| o == *b) && table.movable(*b)),
        );
    }
    batches.sort_unstable();
    batches.dedup();
    for batch in batches {
        for p in partitions_holding(engine, batch) {
            let (_, proposed) = engine
                .decide_waiting::<SeriesStore>(p, || TsCommand::Commit { batch_id: batch })
                .await?;
            if let Some(pr) = proposed {
                cut_heads(engine, p, &pr.output);
                if partitions_holding(engine, batch).is_empty() {
                    table.done(batch);
                }
            }
        }
    }
    Ok(())
}

/// Makes what this shard answers current: commits batches the table says committed.
async fn readable(engine: &Engine) -> Result<(), Error> {
    if engine.parts().iter().any(|p| p.ts.borrow().has_pending()) {
        commit_pending(engine, None).await?;
    }
    engine.settle();
    Ok(())
}

/// This shard's part of a query: the matching series' committed points in range, over every
/// partition, through the plan's per-shard stages.
async fn query(
    engine: &Engine,
    ns: &str,
    plan: &super::query::Plan,
    snapshot: u64,
) -> Result<super::query::ShardOutput, Error> {
    readable(engine).await?;
    let log = engine.log()?;
    let table = &engine.ts_commits;
    let now = engine.now_ms() as i64;
    let mut series = Vec::new();
    let mut total = 0usize;
    let mut points = Vec::new();
    for part in engine.parts() {
        let st = part.ts.borrow();
        let durable = engine.watermark(part.id);
        // Parts of batches this query's snapshot sees but that are still pending here.
        let overlay = st.pending_points(|batch| table.visible(batch, snapshot));
        let (mut from, to) = plan.range();
        if let Some(age) = st.retention(ns, plan.measurement()) {
            from = from.max(now.saturating_sub(age as i64));
        }
        for id in st.select(ns, plan.measurement(), &plan.equal_filters()) {
            let Some(s) = st.get(id) else { continue };
            let tags: Vec<(&str, &str)> = s.tags.iter().map(|(k, v)| (&**k, &**v)).collect();
            if !plan.matches(&tags, &s.field) {
                continue;
            }
            // `lsn` is the entry's at the place: the chunk's own, or the copy compaction moved it
            // to (which reads as the original).
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
                .map_err(|e| Error::Corrupt(format!("reading series {id} of partition {}: {e}", part.id)))?;
            if points.is_empty() {
                continue;
            }
            total += points.len();
            if total > super::query::MAX_POINTS_PER_SHARD {
                return Err(Error::invalid(format!(
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
    }
    plan.shard(series).map_err(|e| {
        Error::Refused(Refusal::Invalid {
            message: e.message,
            position: Some(e.position),
        })
    })
}

/// The time-series part of the shard's timer: commits what the table says committed (the
/// engine's timer proposes the heads to cut and the retention drops).
pub async fn upkeep(engine: &Engine) {
    if !engine.is_open() {
        return;
    }
    if let Err(e) = readable(engine).await {
        tracing::debug!(shard = engine.shard_id, error = %e, "time-series commits wait");
    }
}

/// After replay, before the node serves: settles every multi-part write this shard's
/// partitions hold pending with the other shards (`commit.rs`), proposing `TS_COMMIT` or
/// `TS_ABORT` for each.
pub async fn resolve_pending(engine: &Engine) -> Result<(), Error> {
    let x = &engine.ts_recovery;
    let shards = engine.partitioner.shards() as usize;
    let mut mine: Vec<(u64, u16)> = Vec::new();
    for part in engine.parts() {
        mine.extend(part.ts.borrow().pending().map(|(b, _, count, _)| (b, count)));
    }
    x.publish_pending(mine);
    while x.published() < shards {
        monoio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let held: Vec<(u64, u16)> = x
        .pending_batches()
        .into_iter()
        .map(|b| {
            let n: u16 = engine.parts().iter().map(|p| p.ts.borrow().parts_held(b)).sum();
            (b, n)
        })
        .collect();
    x.publish_held(engine.shard_id as u16, held);
    while x.answered() < shards {
        monoio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let mut pending: Vec<(u32, u64, u16)> = Vec::new();
    for part in engine.parts() {
        pending.extend(part.ts.borrow().pending().map(|(b, _, count, _)| (part.id, b, count)));
    }
    let (mut committed, mut aborted) = (0, 0);
    let mut proposed = Vec::new();
    for (p, batch, count) in pending {
        let commit = x.committed(batch, count);
        if commit {
            committed += 1;
        } else {
            aborted += 1;
        }
        let cmd = || {
            if commit {
                TsCommand::Commit { batch_id: batch }
            } else {
                TsCommand::Abort { batch_id: batch }
            }
        };
        let (_, pr) = engine.decide_waiting::<SeriesStore>(p, cmd).await?;
        if let Some(pr) = pr {
            cut_heads(engine, p, &pr.output);
            proposed.push(pr);
        }
    }
    for pr in &proposed {
        engine.commit(pr).await?;
    }
    if committed + aborted > 0 {
        tracing::info!(
            shard = engine.shard_id,
            committed,
            aborted,
            "time-series writes pending at the last stop settled"
        );
    }
    Ok(())
}
