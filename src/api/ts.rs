//! Time-series handlers: line-protocol writes (Flo's own and the InfluxDB-compatible ones),
//! FloQL queries, measurement and series listings, retention.
//!
//! The shard that receives a write coordinates it (`format-spec/ts.md`): it parses and validates
//! the whole body first (nothing is written for a bad line, except in InfluxDB's partial-write
//! mode), splits the lines by the shard owning their series, sends each owner its part, and
//! answers once every part is durable — after recording a write of several parts as committed
//! in the node's commit table. A part that fails aborts the others. Queries fan out to every
//! shard and are merged here.

use std::io::Read;
use std::rc::Rc;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::namespaces::parse_body;
use super::params::{bad, from_every_shard};
use super::path;
use crate::http::Response;
use crate::server::inbox::{Command, Reply};
use crate::server::shard::Shard;
use crate::ts::exec::{TsCmd, TsReply};
use crate::ts::line::{LineError, Precision};
use crate::ts::part::Part;
use crate::ts::split;

/// Bodies at least this large are parsed in pieces, one on every shard at once.
const PARALLEL_PARSE_BYTES: usize = 64 * 1024;

/// A body, inflated when it is gzip (known by its magic bytes: line protocol never starts
/// with 0x1f), at most `limit` bytes.
fn inflate(body: &[u8], limit: u64) -> Result<std::borrow::Cow<'_, [u8]>, ApiError> {
    if !body.starts_with(&[0x1f, 0x8b]) {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit as usize));
    let mut dec = flate2::read::GzDecoder::new(body).take(limit + 1);
    dec.read_to_end(&mut out)
        .map_err(|e| bad(format!("the gzip body cannot be inflated: {e}")))?;
    if out.len() as u64 > limit {
        return Err(ApiError::PayloadTooLarge(format!(
            "the inflated body is over the limit of {limit} bytes"
        )));
    }
    Ok(std::borrow::Cow::Owned(out))
}

fn precision(query: &str, influx: bool) -> Result<Precision, ApiError> {
    let Some(p) = path::query_param(query, "precision")? else {
        return Ok(if influx { Precision::Ns } else { Precision::Ms });
    };
    let p = match (influx, &*p) {
        (true, "n") => "ns",
        (true, "u") => "us",
        (_, other) => other,
    };
    Precision::parse(p).ok_or_else(|| bad(format!("precision must be one of ns, us, ms, s (got {p:?})")))
}

/// A random batch id, never 0.
#[allow(
    clippy::disallowed_methods,
    reason = "the time of day seeds a random id; it decides nothing"
)]
fn batch_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish().max(1)
}

/// `POST /api/v1/ts/:ns/write`, `POST /write?db=` and `POST /api/v2/write?bucket=`.
pub async fn write(shard: &Rc<Shard>, ns: &str, query: &str, body: &[u8], influx: bool) -> Result<Response, ApiError> {
    let precision = precision(query, influx)?;
    let body = inflate(body, shard.node.config.http.max_body_bytes)?;
    let now_ns = (shard.node.clock.now_ms() as i64).saturating_mul(1_000_000);
    let parsed = parse_lines(shard, &body, precision, now_ns, influx)
        .await
        .map_err(|e| ApiError::Invalid {
            message: format!("line {}: {}", e.line, e.reason),
            details: json!({ "line": e.line, "reason": e.reason }),
        })?;
    if !parsed.parts.is_empty() {
        shard.ensure_namespace(ns).await?;
        write_parts(shard, ns, parsed.parts).await?;
    }
    if parsed.rejected > 0 {
        let first = parsed
            .bad_lines
            .iter()
            .map(|e| format!("line {}: {}", e.line, e.reason))
            .collect::<Vec<_>>()
            .join("; ");
        return Err(ApiError::Invalid {
            message: format!("partial write: {first} dropped={}", parsed.rejected),
            details: json!({
                "points_written": parsed.points,
                "dropped": parsed.rejected,
                "lines": parsed.bad_lines.iter().map(|e| json!({"line": e.line, "reason": e.reason})).collect::<Vec<_>>(),
            }),
        });
    }
    if influx {
        return Ok(Response {
            status: 204,
            content_type: crate::http::response::TEXT,
            headers: Vec::new(),
            body: Vec::new(),
        });
    }
    Ok(Response::json(
        200,
        &json!({ "points_written": parsed.points, "fields_dropped": parsed.fields_dropped }),
    ))
}

/// Parses a body into the parts of its owners: here for a small body, else in pieces of whole
/// lines on every shard at once (a piece whose shard is too busy to take it is parsed here).
async fn parse_lines(
    shard: &Rc<Shard>,
    body: &[u8],
    precision: Precision,
    now_ns: i64,
    partial: bool,
) -> Result<split::Parsed, LineError> {
    let partitioner = &shard.node.partitioner;
    let shards = shard.node.shard_count();
    let reading = |first_line| split::Reading {
        first_line,
        precision,
        now_ns,
        partial,
    };
    if shards == 1 || body.len() < PARALLEL_PARSE_BYTES {
        return split::parse(partitioner, body, reading(1));
    }
    let shared: Arc<[u8]> = Arc::from(body);
    let pieces: Vec<split::Piece> = split::pieces(&shared, shards)
        .into_iter()
        .map(|(from, to, first_line)| split::Piece {
            body: shared.clone(),
            range: from..to,
            reading: reading(first_line),
        })
        .collect();
    let waiting: Vec<_> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (i != shard.id)
                .then(|| shard.forward(i, Command::Ts(TsCmd::Parse(p.clone()))).ok())
                .flatten()
        })
        .collect();
    // This shard's own piece (and any a busy shard could not take) while the others parse.
    let mut here: Vec<_> = pieces
        .iter()
        .zip(&waiting)
        .map(|(p, w)| w.is_none().then(|| p.parse(partitioner)))
        .collect();
    let mut parsed = Vec::with_capacity(pieces.len());
    for ((p, w), done) in pieces.iter().zip(waiting).zip(here.iter_mut()) {
        let r = match (done.take(), w) {
            (Some(r), _) => r,
            (None, Some(rx)) => match rx.await {
                Ok(Reply::Ts(TsReply::Parsed(r))) => r,
                // The shard went away or answered oddly: parse the piece here.
                _ => p.parse(partitioner),
            },
            (None, None) => p.parse(partitioner),
        };
        // Pieces are in body order: the first error is the body's first bad line.
        parsed.push(r?);
    }
    Ok(split::join(parsed))
}

/// A shard's parts sent to it, waiting for the answer.
enum Waiting {
    Here(monoio::task::JoinHandle<Reply>),
    There(futures_channel::oneshot::Receiver<Reply>),
}

/// The shards owning `parts`' partitions, each once, ascending: the write's owners, each of
/// which says once that it is done with a committed batch.
pub(crate) fn owners(partitioner: &crate::partition::Partitioner, parts: &[(u32, Part)]) -> Vec<usize> {
    let mut owners: Vec<usize> = parts.iter().map(|(p, _)| partitioner.shard_of_partition(*p)).collect();
    owners.sort_unstable();
    owners.dedup();
    owners
}

/// Sends every shard its parts and waits until all are durable; a write of several parts is
/// committed in the node's table before this returns, or aborted everywhere when one failed.
async fn write_parts(shard: &Rc<Shard>, ns: &str, parts: Vec<(u32, Part)>) -> Result<(), ApiError> {
    let node = &shard.node;
    let part_count = u16::try_from(parts.len())
        .map_err(|_| ApiError::PayloadTooLarge("the write has more parts than one write may have".into()))?;
    let batch = if part_count == 1 { 0 } else { batch_id() };
    let at_ms = node.clock.now_ms();
    let owners = owners(&node.partitioner, &parts);
    let mut by_shard: Vec<Vec<(u32, Part)>> = (0..node.shard_count()).map(|_| Vec::new()).collect();
    for (p, part) in parts {
        by_shard[node.partitioner.shard_of_partition(p)].push((p, part));
    }
    let mut waiting = Vec::with_capacity(owners.len());
    let mut failed: Option<ApiError> = None;
    for (s, parts) in by_shard.into_iter().enumerate() {
        if parts.is_empty() {
            continue;
        }
        let cmd = Command::Ts(TsCmd::Write {
            ns: ns.to_string(),
            batch_id: batch,
            part_count,
            at_ms,
            parts,
        });
        if s == shard.id {
            let here = shard.clone();
            waiting.push(Waiting::Here(monoio::spawn(async move { here.execute(cmd).await })));
        } else {
            match shard.forward(s, cmd) {
                Ok(rx) => waiting.push(Waiting::There(rx)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
    }
    for w in waiting {
        let reply = match w {
            Waiting::Here(h) => h.await,
            Waiting::There(rx) => rx.await.unwrap_or_else(|_| {
                Reply::Failed(crate::machine::Error::Unavailable(
                    "a shard stopped before answering".into(),
                ))
            }),
        };
        match reply {
            Reply::Ts(TsReply::Done) => {}
            Reply::Failed(e) => {
                failed.get_or_insert(ApiError::from(e));
            }
            other => {
                failed.get_or_insert(ApiError::Internal(format!("unexpected reply {other:?}")));
            }
        }
    }
    if let Some(e) = failed {
        if batch != 0 {
            tell(shard, &owners, || Command::Ts(TsCmd::Abort { batch_id: batch }));
        }
        return Err(e);
    }
    if batch != 0 {
        node.ts_commits.insert(batch, owners.len() as u16);
        tell(shard, &owners, || Command::Ts(TsCmd::Commit { batch_id: batch }));
    }
    Ok(())
}

/// Sends a command to each of `shards` without waiting for it to run (waiting for room in a
/// full inbox: the message must arrive).
fn tell(shard: &Rc<Shard>, shards: &[usize], make: impl Fn() -> Command) {
    for &s in shards {
        let cmd = make();
        let here = shard.clone();
        monoio::spawn(async move {
            if s == here.id {
                let _ = here.execute(cmd).await;
            } else {
                let _ = here.node.inboxes[s].send(cmd).await;
            }
        });
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QueryBody {
    query: String,
}

/// `POST /api/v1/ts/:ns/query`.
pub async fn query(shard: &Rc<Shard>, ns: &str, body: &[u8]) -> Result<Response, ApiError> {
    let q: QueryBody = parse_body(body)?;
    let parsed = crate::ts::floql::parse(&q.query).map_err(|e| ApiError::Invalid {
        message: e.message.clone(),
        details: json!({ "position": e.position }),
    })?;
    let plan = crate::ts::query::Plan::new(&parsed, shard.node.clock.now_ms() as i64).map_err(query_error)?;
    let plan = Arc::new(plan);
    // Every shard shows the multi-part writes committed before this instant, and no other.
    let snapshot = shard.node.ts_commits.begin_query();
    let outputs = from_every_shard(
        shard,
        || {
            Command::Ts(TsCmd::Query {
                ns: ns.to_string(),
                plan: plan.clone(),
                snapshot: snapshot.seq,
            })
        },
        |r| match r {
            Reply::Ts(TsReply::Query(o)) => Ok(vec![o]),
            other => Err(other),
        },
    )
    .await?;
    drop(snapshot);
    let series = plan.finish(outputs).map_err(query_error)?;
    let mut out = Vec::with_capacity(256);
    crate::ts::query::render(&series, &mut out);
    Ok(Response::json_bytes(200, out))
}

fn query_error(e: crate::ts::query::QueryError) -> ApiError {
    ApiError::Invalid {
        message: e.message,
        details: json!({ "position": e.position }),
    }
}

/// `GET /api/v1/ts/:ns`: measurements with their series, fields, samples and bytes.
pub async fn list(shard: &Rc<Shard>, ns: &str) -> Result<Response, ApiError> {
    let maps = from_every_shard(
        shard,
        || Command::Ts(TsCmd::Measurements { ns: ns.to_string() }),
        |r| match r {
            Reply::Ts(TsReply::Measurements(m)) => Ok(vec![m]),
            other => Err(other),
        },
    )
    .await?;
    let mut all: std::collections::BTreeMap<String, crate::ts::series::MeasurementStats> = Default::default();
    for m in maps {
        for (name, st) in m {
            let e = all.entry(name).or_default();
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
    let measurements: Vec<_> = all
        .into_iter()
        .map(|(name, mut st)| {
            st.fields.sort();
            json!({
                "name": name,
                "series_count": st.series,
                "fields": st.fields,
                "samples": st.samples,
                "bytes": st.bytes,
            })
        })
        .collect();
    Ok(Response::json(200, &json!({ "measurements": measurements })))
}

/// `GET /api/v1/ts/:ns/:measurement/series`.
pub async fn series(shard: &Rc<Shard>, ns: &str, measurement: &str) -> Result<Response, ApiError> {
    let mut all = from_every_shard(
        shard,
        || {
            Command::Ts(TsCmd::Series {
                ns: ns.to_string(),
                measurement: measurement.to_string(),
            })
        },
        |r| match r {
            Reply::Ts(TsReply::Series(s)) => Ok(s),
            other => Err(other),
        },
    )
    .await?;
    if all.is_empty() {
        return Err(ApiError::NotFound(format!(
            "measurement {measurement:?} not found in namespace {ns:?}"
        )));
    }
    all.sort_by(|a, b| (&a.tags, &a.field).cmp(&(&b.tags, &b.field)));
    let series: Vec<_> = all
        .iter()
        .map(|s| {
            let tags: serde_json::Map<String, serde_json::Value> =
                s.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            json!({ "measurement": measurement, "tags": tags, "field": s.field, "points": s.samples })
        })
        .collect();
    Ok(Response::json(200, &json!({ "series": series, "count": series.len() })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionBody {
    max_age_ms: u64,
}

/// `PUT /api/v1/ts/:ns/:measurement/retention` `{"max_age_ms": n}` (0 removes it).
pub async fn retention(shard: &Rc<Shard>, ns: &str, measurement: &str, body: &[u8]) -> Result<Response, ApiError> {
    let r: RetentionBody = parse_body(body)?;
    if r.max_age_ms > i64::MAX as u64 {
        return Err(bad("max_age_ms is out of range"));
    }
    shard.ensure_namespace(ns).await?;
    from_every_shard(
        shard,
        || {
            Command::Ts(TsCmd::Retention {
                ns: ns.to_string(),
                measurement: measurement.to_string(),
                max_age_ms: r.max_age_ms,
            })
        },
        |r| match r {
            Reply::Ts(TsReply::Done) => Ok(Vec::<()>::new()),
            other => Err(other),
        },
    )
    .await?;
    Ok(Response::json(
        200,
        &json!({ "measurement": measurement, "max_age_ms": r.max_age_ms }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_names_each_owner_shard_once_whatever_the_order_of_its_parts() {
        let partitioner = crate::partition::Partitioner::new(64, 2);
        // Partitions 1, 0 and 3: shards 1, 0, 1 — the split of a large write that once left
        // shard 1 listed twice (its commit-table entry never released, two commits asked of it).
        let parts: Vec<(u32, Part)> = [1, 0, 3].into_iter().map(|p| (p, Part::default())).collect();
        assert_eq!(owners(&partitioner, &parts), [0, 1]);
        let one: Vec<(u32, Part)> = [5, 7, 9].into_iter().map(|p| (p, Part::default())).collect();
        assert_eq!(owners(&partitioner, &one), [1], "parts all of one shard: one owner");
    }
}
