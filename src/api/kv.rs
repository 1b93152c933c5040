//! `GET/PUT/DELETE /api/v1/kv/:namespace/:key` and the scan `GET /api/v1/kv/:namespace`:
//! parse and validate the request (base64, sizes, conditions; nothing reaches the log when it
//! is bad), send the command to the key's owner shard (or every shard, for a scan), and shape
//! the answer as `spec/API.md` says.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value as Json};

use super::error::ApiError;
use super::namespaces::parse_body;
use super::path;
use crate::http::Response;
use crate::kv::exec::{KeyState, KvCmd, KvReply, Wait};
use crate::kv::{Cond, KvCommand, Refused};
use crate::server::inbox::{Command, Reply};
use crate::server::shard::Shard;

/// Default and largest `limit` of a scan.
const SCAN_LIMIT_DEFAULT: usize = 100;
const SCAN_LIMIT_MAX: usize = 1000;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutBody {
    value: String,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    if_not_exists: Option<bool>,
    #[serde(default)]
    cas_version: Option<u64>,
}

fn ttl_remaining(expires_at_ms: u64, now_ms: u64) -> Json {
    if expires_at_ms == 0 {
        Json::Null
    } else {
        Json::from(expires_at_ms.saturating_sub(now_ms).div_ceil(1000))
    }
}

async fn ask_owner(shard: &Shard, ns: &str, key: &str, cmd: KvCmd) -> Result<(KvReply, usize), ApiError> {
    match shard.ask_owner(ns, key, Command::Kv(cmd)).await? {
        (Reply::Kv(r), owner) => Ok((r, owner)),
        (other, _) => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
    }
}

fn unexpected(r: KvReply) -> ApiError {
    ApiError::Internal(format!("unexpected reply {r:?}"))
}

fn conflict(current_version: u64) -> ApiError {
    ApiError::Conflict {
        message: format!("the condition failed: the current version is {current_version}"),
        current_version: Some(current_version),
    }
}

/// Longest `wait_ms`.
const WAIT_MS_MAX: u64 = 60_000;

fn number(query: &str, name: &str) -> Result<Option<u64>, ApiError> {
    match path::query_param(query, name)? {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("{name}={v:?} is not a number"))),
    }
}

/// `GET /api/v1/kv/:namespace/:key[?wait_ms=N[&watch_version=V]]`.
pub async fn get(shard: &Shard, ns: &str, key: &str, query: &str) -> Result<Response, ApiError> {
    let wait_ms = number(query, "wait_ms")?;
    let watch_version = number(query, "watch_version")?;
    if wait_ms.is_some_and(|w| w > WAIT_MS_MAX) {
        return Err(ApiError::BadRequest(format!("wait_ms must be at most {WAIT_MS_MAX}")));
    }
    if watch_version.is_some() && wait_ms.is_none() {
        return Err(ApiError::BadRequest(
            "watch_version needs wait_ms (how long to wait)".into(),
        ));
    }
    let wait = wait_ms.map(|ms| Wait {
        after_version: watch_version,
        deadline_ms: shard.node.clock.now_ms() + ms,
    });
    let cmd = KvCmd::Get {
        ns: ns.to_string(),
        key: key.to_string(),
        wait,
    };
    let (reply, owner) = ask_owner(shard, ns, key, cmd).await?;
    match reply {
        KvReply::Found(k) => {
            let now = shard.node.clock.now_ms();
            let value = B64.encode(k.value.as_deref().unwrap_or_default());
            let body = json!({ "key": key, "value": value, "version": k.version,
                               "ttl_remaining": ttl_remaining(k.expires_at_ms, now) });
            Ok(Response::json(200, &body).with_header("Flo-Shard", owner.to_string()))
        }
        KvReply::NotFound => Err(ApiError::KeyNotFound { key: key.to_string() }),
        other => Err(unexpected(other)),
    }
}

/// `PUT /api/v1/kv/:namespace/:key`.
pub async fn put(shard: &Shard, ns: &str, key: &str, body: &[u8]) -> Result<Response, ApiError> {
    let req: PutBody = parse_body(body)?;
    let value = B64
        .decode(req.value.as_bytes())
        .map_err(|e| ApiError::BadRequest(format!("value is not valid base64 (standard, padded): {e}")))?;
    let max = shard.node.config.limits.max_value_bytes;
    if value.len() as u64 > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "value of {} bytes is over limits.max_value_bytes ({max})",
            value.len()
        )));
    }
    let cond = match (req.if_not_exists.unwrap_or(false), req.cas_version) {
        (false, None) => Cond::Always,
        (true, None) | (true, Some(0)) => Cond::IfNotExists,
        (false, Some(v)) => Cond::Version(v),
        (true, Some(_)) => {
            return Err(ApiError::BadRequest(
                "if_not_exists and a nonzero cas_version contradict each other".into(),
            ))
        }
    };
    let expires_at_ms = match req.ttl_seconds {
        None | Some(0) => 0,
        Some(s) => s
            .checked_mul(1000)
            .and_then(|ms| ms.checked_add(shard.node.clock.now_ms()))
            .ok_or_else(|| ApiError::BadRequest("ttl_seconds is too large".into()))?,
    };
    let cmd = KvCmd::Write(KvCommand::Put {
        ns: ns.to_string(),
        key: key.to_string(),
        value,
        expires_at_ms,
        cond,
    });
    // A namespace comes into existence on its first write.
    shard.ensure_namespace(ns).await?;
    let (reply, owner) = ask_owner(shard, ns, key, cmd).await?;
    match reply {
        KvReply::Written { version } => {
            Ok(Response::json(200, &json!({ "key": key, "version": version }))
                .with_header("Flo-Shard", owner.to_string()))
        }
        KvReply::Refused(Refused::Conflict { current_version }) => Err(conflict(current_version)),
        other => Err(unexpected(other)),
    }
}

/// `DELETE /api/v1/kv/:namespace/:key[?cas_version=N]`.
pub async fn delete(shard: &Shard, ns: &str, key: &str, query: &str) -> Result<Response, ApiError> {
    let cas = match path::query_param(query, "cas_version")? {
        None => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| ApiError::BadRequest(format!("cas_version {v:?} is not a version number")))?,
        ),
    };
    let cmd = KvCmd::Write(KvCommand::Delete {
        ns: ns.to_string(),
        key: key.to_string(),
        cas,
    });
    let (reply, owner) = ask_owner(shard, ns, key, cmd).await?;
    match reply {
        KvReply::Written { version } => Ok(Response::json(
            200,
            &json!({ "key": key, "deleted": true, "version": version }),
        )
        .with_header("Flo-Shard", owner.to_string())),
        KvReply::Refused(Refused::NotFound) => Err(ApiError::KeyNotFound { key: key.to_string() }),
        KvReply::Refused(Refused::Conflict { current_version }) => Err(conflict(current_version)),
        other => Err(unexpected(other)),
    }
}

/// `GET /api/v1/kv/:namespace?prefix=&limit=&after=&values=`: every shard's matching keys,
/// merged in byte order.
pub async fn scan(shard: &Shard, ns: &str, query: &str) -> Result<Response, ApiError> {
    let prefix = path::query_param(query, "prefix")?
        .map(|p| p.into_owned())
        .unwrap_or_default();
    let after = path::query_param(query, "after")?.map(|a| a.into_owned());
    let limit = match path::query_param(query, "limit")? {
        None => SCAN_LIMIT_DEFAULT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=SCAN_LIMIT_MAX).contains(&n) => n,
            _ => return Err(ApiError::BadRequest(format!("limit must be 1..={SCAN_LIMIT_MAX}"))),
        },
    };
    let values = match path::query_param(query, "values")?.as_deref() {
        None | Some("false") => false,
        Some("true") | Some("") => true,
        Some(v) => return Err(ApiError::BadRequest(format!("values={v:?}: true or false"))),
    };
    let replies = shard
        .ask_all(|| {
            Command::Kv(KvCmd::Scan {
                ns: ns.to_string(),
                prefix: prefix.clone(),
                after: after.clone(),
                limit,
                values,
            })
        })
        .await?;
    let mut keys: Vec<KeyState> = Vec::new();
    let mut more = false;
    for r in replies {
        match r {
            Reply::Kv(KvReply::Scanned { keys: k, has_more }) => {
                keys.extend(k);
                more |= has_more;
            }
            Reply::Failed(e) => return Err(e.into()),
            other => return Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }
    keys.sort_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
    if keys.len() > limit {
        keys.truncate(limit);
        more = true;
    }
    let now = shard.node.clock.now_ms();
    let rows: Vec<Json> = keys
        .iter()
        .map(|k| {
            let mut row = json!({ "key": k.key, "version": k.version, "size": k.size,
                                  "ttl_remaining": ttl_remaining(k.expires_at_ms, now) });
            if let Some(v) = &k.value {
                row["value"] = Json::from(B64.encode(v));
            }
            row
        })
        .collect();
    let next_after = if more {
        keys.last().map(|k| Json::from(k.key.as_str()))
    } else {
        None
    };
    Ok(Response::json(
        200,
        &json!({ "keys": rows, "count": rows.len(), "has_more": more, "next_after": next_after.unwrap_or(Json::Null) }),
    ))
}
