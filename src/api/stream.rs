//! `/api/v1/stream/:namespace/:stream[/<op>]`, its consumer groups, and `GET
//! /api/v1/stream/:namespace`: parse and validate the request (base64, ranges, unknown fields;
//! nothing reaches the log when it is bad), send the command to the stream's owner shard (every
//! shard for the listing), and shape the answer as `spec/API.md` says. Records arrive already
//! rendered as JSON by the owner shard, which reads them from the mapped log.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::error::ApiError;
use super::namespaces::parse_body;
use super::params::{bad, from_every_shard, in_range, number_param, shard_reply};
use super::path;
use crate::http::Response;
use crate::server::inbox::{Command, Reply};
use crate::server::shard::Shard;
use crate::stream::entry::{AppendBody, Retention, MAX_DELIVERIES, MAX_ITEMS};
use crate::stream::exec::{GroupInfo, Start, StreamCmd, StreamReply};
use crate::stream::state::{Info, StreamCommand};

const READ_COUNT_DEFAULT: u64 = 100;
const GROUP_COUNT_DEFAULT: u64 = 10;
const BLOCK_MAX_MS: u64 = 60_000;
const ACK_TIMEOUT_DEFAULT_MS: u64 = 30_000;
const ACK_TIMEOUT_MAX_MS: u64 = 43_200_000;
const MAX_DELIVERIES_DEFAULT: u64 = 5;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecordBody<'a> {
    #[serde(borrow)]
    payload: Cow<'a, str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppendRequest<'a> {
    #[serde(default, borrow)]
    payload: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    records: Option<Vec<RecordBody<'a>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrimBody {
    before_offset: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionBody {
    #[serde(default)]
    max_age_ms: Option<u64>,
    #[serde(default)]
    max_bytes: Option<u64>,
    #[serde(default)]
    max_records: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupBody {
    #[serde(default)]
    start: Option<Json>,
    #[serde(default)]
    ack_timeout_ms: Option<u64>,
    #[serde(default)]
    max_deliveries: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupReadBody {
    consumer: String,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    block_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckBody {
    offsets: Vec<u64>,
}

/// Decodes an append request's payloads straight into the APPEND body the log will hold:
/// (body, record count, whether it was a batch).
fn append_body(shard: &Shard, ns: &str, stream: &str, body: &[u8]) -> Result<(Vec<u8>, u32, bool), ApiError> {
    let req: AppendRequest = parse_body(body)?;
    let (list, batch) = match (req.payload, req.records) {
        (Some(p), None) => (vec![p], false),
        (None, Some(records)) => {
            if records.is_empty() || records.len() > MAX_ITEMS {
                return Err(bad(format!("records must hold 1..={MAX_ITEMS} records")));
            }
            (records.into_iter().map(|r| r.payload).collect(), true)
        }
        _ => return Err(bad("an append has either payload or records (a batch), not both")),
    };
    let max = shard.node.config.limits.max_value_bytes;
    let too_large = |n: u64| ApiError::PayloadTooLarge(format!("payload of {n} bytes is over the limit of {max}"));
    let estimate: usize = list.iter().map(|p| p.len() / 4 * 3 + 4).sum();
    let mut out = AppendBody::new(ns, stream, estimate + 300);
    for p in &list {
        // Padding aside, 4 base64 characters are 3 bytes: refuse before decoding.
        if (p.len() / 4 * 3) as u64 > max + 2 {
            return Err(too_large((p.len() / 4 * 3) as u64));
        }
        let n = out
            .push_with(|buf| crate::b64::decode_append(p.as_bytes(), buf))
            .map_err(|e| bad(format!("payload is not base64: {e}")))?;
        if n as u64 > max {
            return Err(too_large(n as u64));
        }
    }
    let count = out.count();
    let out = out.finish();
    if out.len() as u64 > shard.node.config.log.batch_max_bytes / 2 {
        return Err(ApiError::PayloadTooLarge(format!(
            "a batch of {} bytes is over half of log.batch_max_bytes",
            out.len()
        )));
    }
    Ok((out, count, batch))
}

fn start(v: Option<Json>) -> Result<Start, ApiError> {
    match v {
        None => Ok(Start::Latest),
        Some(Json::String(s)) if s == "earliest" => Ok(Start::Earliest),
        Some(Json::String(s)) if s == "latest" => Ok(Start::Latest),
        Some(Json::Number(n)) if n.as_u64().is_some() => Ok(Start::Offset(n.as_u64().unwrap_or(0))),
        Some(other) => Err(bad(format!(
            "start must be \"earliest\", \"latest\" or an offset, not {other}"
        ))),
    }
}

fn limit(name: &str, v: Option<u64>) -> Result<u64, ApiError> {
    match v {
        None => Ok(0),
        Some(v) => in_range(name, v, 1, u64::MAX),
    }
}

pub fn info_json(i: &Info) -> Json {
    let opt = |v: u64| if v == 0 { Json::Null } else { json!(v) };
    json!({
        "name": i.name,
        "first_offset": i.first_offset,
        "last_offset": if i.end_offset > i.first_offset { json!(i.end_offset - 1) } else { Json::Null },
        "record_count": i.end_offset - i.first_offset,
        "consumer_groups": i.groups,
        "bytes": i.bytes,
        "retention": {
            "max_age_ms": opt(i.retention.max_age_ms),
            "max_bytes": opt(i.retention.max_bytes),
            "max_records": opt(i.retention.max_records),
        },
    })
}

fn group_json(g: &GroupInfo) -> Json {
    json!({
        "name": g.name, "cursor": g.cursor, "pending_count": g.pending_count, "consumers": g.consumers,
        "lag": g.lag, "ack_timeout_ms": g.ack_timeout_ms, "max_deliveries": g.max_deliveries,
        "dead_letter_count": g.dead_letter_count, "dead_letters": g.dead_letters,
    })
}

/// A request to `/api/v1/stream/:namespace/:stream[/<op>]`; `group` for the group routes.
#[allow(clippy::too_many_arguments)]
pub async fn handle(
    shard: &Shard,
    ns: &str,
    stream: &str,
    group: Option<&str>,
    op: &str,
    method: &str,
    query: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (n, s) = (ns.to_string(), stream.to_string());
    let g = || group.unwrap_or_default().to_string();
    let mut batch = false;
    let mut created = false;
    let cmd = match (op, method) {
        ("append", _) => {
            let (body, count, is_batch) = append_body(shard, ns, stream, body)?;
            batch = is_batch;
            // A namespace comes into existence on its first write.
            shard.ensure_namespace(ns).await?;
            StreamCmd::Append {
                ns: n,
                stream: s,
                body,
                count,
            }
        }
        ("read", _) => StreamCmd::Read {
            ns: n,
            stream: s,
            offset: number_param(query, "offset")?,
            count: in_range(
                "count",
                number_param(query, "count")?.unwrap_or(READ_COUNT_DEFAULT),
                1,
                MAX_ITEMS as u64,
            )? as usize,
            block_ms: in_range(
                "block_ms",
                number_param(query, "block_ms")?.unwrap_or(0),
                0,
                BLOCK_MAX_MS,
            )?,
        },
        ("info", _) => StreamCmd::Info { ns: n, stream: s },
        ("trim", _) => {
            let b: TrimBody = parse_body(body)?;
            StreamCmd::Change(StreamCommand::Trim {
                ns: n,
                stream: s,
                before: b.before_offset,
            })
        }
        ("retention", _) => {
            let b: RetentionBody = parse_body(body)?;
            StreamCmd::Change(StreamCommand::Retention {
                ns: n,
                stream: s,
                retention: Retention {
                    max_age_ms: limit("max_age_ms", b.max_age_ms)?,
                    max_bytes: limit("max_bytes", b.max_bytes)?,
                    max_records: limit("max_records", b.max_records)?,
                },
            })
        }
        ("group", "POST") => {
            let b: GroupBody = if body.is_empty() {
                GroupBody {
                    start: None,
                    ack_timeout_ms: None,
                    max_deliveries: None,
                }
            } else {
                parse_body(body)?
            };
            created = true;
            StreamCmd::Change(StreamCommand::GroupCreate {
                ns: n,
                stream: s,
                group: g(),
                start: start(b.start)?,
                ack_timeout_ms: in_range(
                    "ack_timeout_ms",
                    b.ack_timeout_ms.unwrap_or(ACK_TIMEOUT_DEFAULT_MS),
                    1,
                    ACK_TIMEOUT_MAX_MS,
                )?,
                max_deliveries: in_range(
                    "max_deliveries",
                    b.max_deliveries.unwrap_or(MAX_DELIVERIES_DEFAULT),
                    1,
                    u64::from(MAX_DELIVERIES),
                )? as u32,
            })
        }
        ("group", "DELETE") => StreamCmd::Change(StreamCommand::GroupDelete {
            ns: n,
            stream: s,
            group: g(),
        }),
        ("group", _) => StreamCmd::GroupInfo {
            ns: n,
            stream: s,
            group: g(),
        },
        ("group/read", _) => {
            let b: GroupReadBody = parse_body(body)?;
            if !path::is_valid_name(&b.consumer) {
                return Err(bad(format!(
                    "invalid consumer name {:?}: names are 1..=128 characters of A-Z a-z 0-9 _ . : -",
                    b.consumer
                )));
            }
            StreamCmd::GroupRead {
                ns: n,
                stream: s,
                group: g(),
                consumer: b.consumer,
                count: in_range("count", b.count.unwrap_or(GROUP_COUNT_DEFAULT), 1, MAX_ITEMS as u64)? as usize,
                block_ms: in_range("block_ms", b.block_ms.unwrap_or(0), 0, BLOCK_MAX_MS)?,
            }
        }
        ("group/ack", _) => {
            let b: AckBody = parse_body(body)?;
            if b.offsets.is_empty() || b.offsets.len() > MAX_ITEMS {
                return Err(bad(format!("offsets must hold 1..={MAX_ITEMS} numbers")));
            }
            StreamCmd::Change(StreamCommand::GroupAck {
                ns: n,
                stream: s,
                group: g(),
                offsets: b.offsets,
            })
        }
        _ => return Err(ApiError::NotFound(format!("no stream operation {op:?}"))),
    };
    let (r, owner) = match shard.ask_owner(ns, stream, Command::Stream(cmd)).await? {
        (Reply::Stream(r), owner) => (r, owner),
        (other, _) => return Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
    };
    let body = match r {
        StreamReply::Appended { first, last, at_ms } if batch => {
            json!({ "first_offset": first, "last_offset": last, "timestamp_ms": at_ms })
        }
        StreamReply::Appended { first, at_ms, .. } => json!({ "offset": first, "timestamp_ms": at_ms }),
        StreamReply::Records(json) => {
            return Ok(Response::json_bytes(200, json).with_header("Flo-Shard", owner.to_string()));
        }
        StreamReply::Info(i) => info_json(&i),
        StreamReply::Trimmed { first_offset } => json!({ "first_offset": first_offset }),
        StreamReply::Group(g) => group_json(&g),
        StreamReply::Acked(n) => json!({ "acked": n }),
        StreamReply::Deleted => json!({ "deleted": true }),
        StreamReply::List(_) => return Err(ApiError::Internal("a listing answered one stream".into())),
    };
    Ok(shard_reply(if created { 201 } else { 200 }, &body, owner))
}

/// `GET /api/v1/stream/:namespace`: every stream of the namespace, from every shard.
pub async fn list(shard: &Shard, ns: &str) -> Result<Response, ApiError> {
    let mut all = from_every_shard(
        shard,
        || Command::Stream(StreamCmd::List { ns: ns.to_string() }),
        |r| match r {
            Reply::Stream(StreamReply::List(infos)) => Ok(infos),
            other => Err(other),
        },
    )
    .await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Json> = all.iter().map(info_json).collect();
    Ok(Response::json(200, &json!({ "streams": rows })))
}
