//! Small pieces every primitive's handlers share: the 400 for bad input, range checks, numeric
//! query parameters, and answers that say which shard owned the object.

use serde_json::Value as Json;

use super::error::ApiError;
use super::path;
use crate::http::Response;
use crate::server::inbox::{Command, Reply};
use crate::server::shard::Shard;

pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// `v` if it is in `lo..=hi`, else a 400 naming the field.
pub fn in_range(name: &str, v: u64, lo: u64, hi: u64) -> Result<u64, ApiError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(bad(format!("{name} must be in {lo}..={hi}")))
    }
}

/// A numeric query parameter, if present.
pub fn number_param(query: &str, name: &str) -> Result<Option<u64>, ApiError> {
    match path::query_param(query, name)? {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| bad(format!("{name}={v:?} is not a number"))),
    }
}

/// Runs the command `make` builds on every shard and joins what `pick` takes from each answer
/// (a failure, or an answer `pick` does not know, is the error).
pub async fn from_every_shard<T>(
    shard: &Shard,
    make: impl Fn() -> Command,
    pick: impl Fn(Reply) -> Result<Vec<T>, Reply>,
) -> Result<Vec<T>, ApiError> {
    let mut all = Vec::new();
    for r in shard.ask_all(make).await? {
        match pick(r) {
            Ok(items) => all.extend(items),
            Err(Reply::Failed(e)) => return Err(e.into()),
            Err(other) => return Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }
    Ok(all)
}

/// A JSON answer with the `Flo-Shard` header naming the shard that owns the object.
pub fn shard_reply(status: u16, body: &Json, owner: usize) -> Response {
    Response::json(status, body).with_header("Flo-Shard", owner.to_string())
}
