//! `GET /api/v1/namespaces` (fan-out to every shard, merged by name, filtered by the token's
//! scope) and `POST /api/v1/namespaces` (on the namespace's owner shard).
//!
//! Answers carry a `Flo-Shard` header naming the shard that owns the namespace record, so
//! clients and tests can see where an object lives.

use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::path::is_valid_name;
use crate::auth::Access;
use crate::http::Response;
use crate::server::inbox::{Command, Reply};
use crate::server::shard::Shard;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    name: String,
}

/// Parses a JSON request body into `T`, answering 400 with serde's message (which names an
/// unknown field or a wrong type) when it does not fit.
pub fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest("request body must be a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

pub async fn create(shard: &Shard, access: &Access<'_>, body: &[u8]) -> Result<Response, ApiError> {
    let req: CreateBody = parse_body(body)?;
    if !is_valid_name(&req.name) {
        return Err(ApiError::BadRequest(format!(
            "invalid namespace name {:?}: names match [A-Za-z0-9_.:-]{{1,128}}",
            req.name
        )));
    }
    if !access.allows_namespace(&req.name) {
        return Err(ApiError::Forbidden(format!(
            "this token may not use namespace {:?}",
            req.name
        )));
    }
    let owner = shard.node.partitioner.namespace_shard(&req.name);
    let command = Command::CreateNamespace {
        name: req.name.clone(),
        created_at_ms: shard.node.clock.now_ms(),
    };
    match shard.ask(owner, command).await? {
        Reply::NamespaceCreated(true) => {
            Ok(Response::json(201, &json!({ "name": req.name })).with_header("Flo-Shard", owner.to_string()))
        }
        Reply::Failed(e) => Err(e.into()),
        Reply::NamespaceCreated(false) => Err(ApiError::Conflict {
            message: format!("namespace {:?} already exists", req.name),
            current_version: None,
        }),
        other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
    }
}

pub async fn list(shard: &Shard, access: &Access<'_>) -> Result<Response, ApiError> {
    let replies = shard.ask_all(|| Command::ListNamespaces).await?;
    let mut records = Vec::new();
    let mut kv_keys: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut queues: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut streams: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    // A measurement's series may live on several shards: count names once.
    let mut measurements: std::collections::HashSet<(String, String)> = std::collections::HashSet::new();
    for r in replies {
        match r {
            Reply::Namespaces {
                records: list,
                kv_keys: k,
                queues: q,
                streams: s,
                measurements: m,
            } => {
                records.extend(list);
                measurements.extend(m);
                for (counts, into) in [(k, &mut kv_keys), (q, &mut queues), (s, &mut streams)] {
                    for (ns, n) in counts {
                        *into.entry(ns).or_default() += n;
                    }
                }
            }
            other => return Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }
    // `default` always exists and is in no partition's state.
    records.push(crate::namespace::NamespaceRecord {
        name: crate::namespace::DEFAULT_NAMESPACE.to_string(),
        created_at_ms: shard.node.created_at_ms,
    });
    records.retain(|r| access.allows_namespace(&r.name));
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "created_at_ms": r.created_at_ms,
                "kv_keys": kv_keys.get(&r.name).copied().unwrap_or(0),
                "queues": queues.get(&r.name).copied().unwrap_or(0),
                "streams": streams.get(&r.name).copied().unwrap_or(0),
                "measurements": measurements.iter().filter(|(ns, _)| *ns == r.name).count(),
            })
        })
        .collect();
    Ok(Response::json(200, &json!({ "namespaces": rows })))
}
