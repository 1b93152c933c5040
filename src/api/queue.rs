//! `/api/v1/queue/:namespace/:queue/<op>` and `GET /api/v1/queue/:namespace`: parse and validate
//! the request (base64, ranges, unknown fields; nothing reaches the log when it is bad), send the
//! command to the queue's owner shard (every shard for the listing), and shape the answer as
//! `spec/API.md` says.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::error::ApiError;
use super::namespaces::parse_body;
use super::params::{bad, from_every_shard, in_range, number_param, shard_reply};
use crate::http::Response;
use crate::queue::entry::{DEDUP_KEY_MAX, MAX_ITEMS};
use crate::queue::exec::{MessageOut, NewMsg, QueueCmd, QueueReply};
use crate::queue::state::QueueCommand;
use crate::queue::state::Stats;
use crate::server::inbox::{Command, Reply};
use crate::server::shard::Shard;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const VISIBILITY_DEFAULT_MS: u64 = 30_000;
const VISIBILITY_MAX_MS: u64 = 43_200_000;
const BLOCK_MAX_MS: u64 = 60_000;
/// Longest `delay_ms` of an enqueue or a nack (30 days).
const DELAY_MAX_MS: u64 = 30 * 24 * 3600 * 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MessageBody {
    payload: String,
    #[serde(default)]
    priority: Option<u64>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    dedup_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchBody {
    messages: Vec<MessageBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DequeueBody {
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    visibility_timeout_ms: Option<u64>,
    #[serde(default)]
    block_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeqsBody {
    sequences: Vec<u64>,
    #[serde(default)]
    delay_ms: Option<u64>,
    #[serde(default)]
    to_dlq: Option<bool>,
    #[serde(default)]
    visibility_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

fn message(shard: &Shard, m: MessageBody) -> Result<NewMsg, ApiError> {
    let payload = B64
        .decode(m.payload.as_bytes())
        .map_err(|e| bad(format!("payload is not base64: {e}")))?;
    let max = shard.node.config.limits.max_value_bytes;
    if payload.len() as u64 > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "payload of {} bytes is over the limit of {max}",
            payload.len()
        )));
    }
    let priority = in_range("priority", m.priority.unwrap_or(0), 0, 255)? as u8;
    let delay_ms = in_range("delay_ms", m.delay_ms.unwrap_or(0), 0, DELAY_MAX_MS)?;
    let dedup_key = m.dedup_key.unwrap_or_default();
    if dedup_key.len() > DEDUP_KEY_MAX {
        return Err(bad(format!("dedup_key is longer than {DEDUP_KEY_MAX} bytes")));
    }
    Ok(NewMsg {
        payload,
        priority,
        delay_ms,
        dedup_key,
    })
}

async fn ask_owner(shard: &Shard, ns: &str, queue: &str, cmd: QueueCmd) -> Result<(QueueReply, usize), ApiError> {
    match shard.ask_owner(ns, queue, Command::Queue(cmd)).await? {
        (Reply::Queue(r), owner) => Ok((r, owner)),
        (other, _) => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
    }
}

fn unexpected(r: QueueReply) -> ApiError {
    ApiError::Internal(format!("unexpected reply {r:?}"))
}

fn stats_json(s: &Stats) -> Json {
    json!({ "name": s.name, "ready_count": s.ready_count, "leased_count": s.leased_count,
            "dlq_count": s.dlq_count, "total_enqueued": s.total_enqueued,
            "total_acked": s.total_acked, "delayed_count": s.delayed_count })
}

fn messages_json(msgs: &[MessageOut], dead: bool) -> Json {
    let rows: Vec<Json> = msgs
        .iter()
        .map(|m| {
            let mut row = json!({ "seq": m.seq, "payload": B64.encode(&m.payload), "priority": m.priority,
                                  "enqueued_at_ms": m.enqueued_at_ms, "delivery_count": m.delivery_count });
            if dead {
                row["dead_at_ms"] = json!(m.time_ms);
            } else if m.time_ms > 0 {
                row["lease_expires_at_ms"] = json!(m.time_ms);
            }
            row
        })
        .collect();
    json!({ "messages": rows })
}

fn seqs(list: Vec<u64>) -> Result<Vec<u64>, ApiError> {
    if list.is_empty() || list.len() > MAX_ITEMS {
        return Err(bad(format!("sequences must hold 1..={MAX_ITEMS} numbers")));
    }
    Ok(list)
}

fn count_param(query: &str, name: &str, default: u64) -> Result<usize, ApiError> {
    let v = number_param(query, name)?.unwrap_or(default);
    Ok(in_range(name, v, 1, MAX_ITEMS as u64)? as usize)
}

/// A request to `/api/v1/queue/:namespace/:queue/<op>`.
pub async fn handle(
    shard: &Shard,
    ns: &str,
    queue: &str,
    op: &str,
    query: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (n, q) = (ns.to_string(), queue.to_string());
    let cmd = match op {
        "enqueue" => {
            let v: Json = parse_body(body)?;
            let batch = v.get("messages").is_some();
            let list = if batch {
                let b: BatchBody = serde_json::from_value(v).map_err(|e| bad(format!("invalid body: {e}")))?;
                if b.messages.is_empty() || b.messages.len() > MAX_ITEMS {
                    return Err(bad(format!("messages must hold 1..={MAX_ITEMS} messages")));
                }
                b.messages
            } else {
                vec![serde_json::from_value(v).map_err(|e| bad(format!("invalid body: {e}")))?]
            };
            let messages = list
                .into_iter()
                .map(|m| message(shard, m))
                .collect::<Result<Vec<_>, _>>()?;
            let total: u64 = messages.iter().map(|m| m.payload.len() as u64 + 64).sum();
            if total > shard.node.config.log.batch_max_bytes / 2 {
                return Err(ApiError::PayloadTooLarge(format!(
                    "a batch of {total} bytes is over half of log.batch_max_bytes"
                )));
            }
            // A namespace comes into existence on its first write.
            shard.ensure_namespace(ns).await?;
            let (r, owner) = ask_owner(
                shard,
                ns,
                queue,
                QueueCmd::Enqueue {
                    ns: n,
                    queue: q,
                    messages,
                },
            )
            .await?;
            let QueueReply::Enqueued { seqs, deduplicated } = r else {
                return Err(unexpected(r));
            };
            let body = match (batch, seqs.first(), deduplicated.first()) {
                (false, Some(seq), Some(dedup)) => json!({ "seq": seq, "deduplicated": dedup }),
                (false, _, _) => return Err(ApiError::Internal("an enqueue answered no seq".into())),
                (true, _, _) => json!({ "seqs": seqs, "deduplicated": deduplicated }),
            };
            return Ok(shard_reply(200, &body, owner));
        }
        "dequeue" => {
            let b: DequeueBody = if body.is_empty() {
                DequeueBody {
                    count: None,
                    visibility_timeout_ms: None,
                    block_ms: None,
                }
            } else {
                parse_body(body)?
            };
            QueueCmd::Dequeue {
                ns: n,
                queue: q,
                count: in_range("count", b.count.unwrap_or(1), 1, MAX_ITEMS as u64)? as usize,
                visibility_ms: in_range(
                    "visibility_timeout_ms",
                    b.visibility_timeout_ms.unwrap_or(VISIBILITY_DEFAULT_MS),
                    1,
                    VISIBILITY_MAX_MS,
                )?,
                block_ms: in_range("block_ms", b.block_ms.unwrap_or(0), 0, BLOCK_MAX_MS)?,
            }
        }
        "ack" | "nack" | "touch" | "dlq/requeue" => {
            let b: SeqsBody = parse_body(body)?;
            let extra = |name: &str, present: bool| {
                if present {
                    Err(bad(format!("{name} is not a field of {op}")))
                } else {
                    Ok(())
                }
            };
            let sequences = seqs(b.sequences)?;
            match op {
                "ack" | "dlq/requeue" => {
                    extra("delay_ms", b.delay_ms.is_some())?;
                    extra("to_dlq", b.to_dlq.is_some())?;
                    extra("visibility_timeout_ms", b.visibility_timeout_ms.is_some())?;
                    if op == "ack" {
                        QueueCmd::Change(QueueCommand::Ack {
                            ns: n,
                            queue: q,
                            seqs: sequences,
                        })
                    } else {
                        QueueCmd::Change(QueueCommand::Requeue {
                            ns: n,
                            queue: q,
                            seqs: sequences,
                        })
                    }
                }
                "nack" => {
                    extra("visibility_timeout_ms", b.visibility_timeout_ms.is_some())?;
                    QueueCmd::Change(QueueCommand::Nack {
                        ns: n,
                        queue: q,
                        seqs: sequences,
                        delay_ms: in_range("delay_ms", b.delay_ms.unwrap_or(0), 0, DELAY_MAX_MS)?,
                        to_dlq: b.to_dlq.unwrap_or(false),
                    })
                }
                _ => {
                    extra("delay_ms", b.delay_ms.is_some())?;
                    extra("to_dlq", b.to_dlq.is_some())?;
                    QueueCmd::Change(QueueCommand::Touch {
                        ns: n,
                        queue: q,
                        seqs: sequences,
                        visibility_ms: in_range(
                            "visibility_timeout_ms",
                            b.visibility_timeout_ms.unwrap_or(VISIBILITY_DEFAULT_MS),
                            1,
                            VISIBILITY_MAX_MS,
                        )?,
                    })
                }
            }
        }
        "purge" => {
            if !body.is_empty() {
                let _: Empty = parse_body(body)?;
            }
            QueueCmd::Change(QueueCommand::Purge { ns: n, queue: q })
        }
        "stats" => QueueCmd::Stats { ns: n, queue: q },
        "peek" => QueueCmd::Peek {
            ns: n,
            queue: q,
            count: count_param(query, "count", 1)?,
        },
        "dlq" => QueueCmd::Dlq {
            ns: n,
            queue: q,
            limit: count_param(query, "limit", 100)?,
        },
        _ => return Err(ApiError::NotFound(format!("no queue operation {op:?}"))),
    };
    let (r, owner) = ask_owner(shard, ns, queue, cmd).await?;
    let body = match (op, r) {
        (_, QueueReply::Messages(m)) => messages_json(&m, op == "dlq"),
        ("stats", QueueReply::Stats(Some(s))) => stats_json(&s),
        ("stats", QueueReply::Stats(None)) => {
            return Err(ApiError::NotFound(format!("queue {queue:?} does not exist in {ns:?}")))
        }
        ("ack", QueueReply::Done { count, not_found }) => json!({ "acked": count, "not_found": not_found }),
        ("nack", QueueReply::Done { count, not_found }) => json!({ "nacked": count, "not_found": not_found }),
        ("touch", QueueReply::Done { count, not_found }) => json!({ "touched": count, "not_found": not_found }),
        ("dlq/requeue", QueueReply::Done { count, not_found }) => {
            json!({ "requeued": count, "not_found": not_found })
        }
        ("purge", QueueReply::Done { count, .. }) => json!({ "purged": count }),
        (_, other) => return Err(unexpected(other)),
    };
    Ok(shard_reply(200, &body, owner))
}

/// `GET /api/v1/queue/:namespace`: every queue of the namespace, from every shard.
pub async fn list(shard: &Shard, ns: &str) -> Result<Response, ApiError> {
    let mut all = from_every_shard(
        shard,
        || Command::Queue(QueueCmd::List { ns: ns.to_string() }),
        |r| match r {
            Reply::Queue(QueueReply::List(stats)) => Ok(stats),
            other => Err(other),
        },
    )
    .await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Json> = all.iter().map(stats_json).collect();
    Ok(Response::json(200, &json!({ "queues": rows })))
}
