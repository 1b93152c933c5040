//! The API's error model: one enum, mapped once to a status, an `error` code and the JSON body
//! `{"error", "message", "details"}` (plus the top-level fields the seed shows on some errors).

use serde_json::{json, Map, Value};

use crate::http::Response;
use crate::log::LogError;
use crate::machine::{Error, Refusal};

/// An error answer of the API.
#[derive(Clone, Debug, PartialEq)]
pub enum ApiError {
    BadRequest(String),
    /// 400 with `details` (the line of bad line protocol, the position in a query).
    Invalid {
        message: String,
        details: Value,
    },
    Unauthorized,
    Forbidden(String),
    NotFound(String),
    /// 404 for a KV key; the seed puts `key` at the top level.
    KeyNotFound {
        key: String,
    },
    MethodNotAllowed {
        allow: &'static str,
    },
    Conflict {
        message: String,
        current_version: Option<u64>,
    },
    PayloadTooLarge(String),
    Overloaded(String),
    Internal(String),
    Unavailable(String),
    /// 507: the disk is full; nothing was written, reads still work, retry once space is back.
    InsufficientStorage(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid { .. } => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) | ApiError::KeyNotFound { .. } => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Conflict { .. } => 409,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::Overloaded(_) => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
            ApiError::InsufficientStorage(_) => 507,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid { .. } => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) | ApiError::KeyNotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict { .. } => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::Internal(_) => "internal",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::InsufficientStorage(_) => "insufficient_storage",
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::Overloaded(m)
            | ApiError::Internal(m)
            | ApiError::Unavailable(m)
            | ApiError::InsufficientStorage(m)
            | ApiError::Invalid { message: m, .. } => m.clone(),
            ApiError::Unauthorized => "missing or invalid bearer token".into(),
            ApiError::KeyNotFound { key } => format!("key {key:?} not found"),
            ApiError::MethodNotAllowed { allow } => format!("method not allowed here (allowed: {allow})"),
            ApiError::Conflict { message, .. } => message.clone(),
        }
    }

    pub fn to_response(&self) -> Response {
        let mut body = Map::new();
        body.insert("error".into(), Value::from(self.code()));
        body.insert("message".into(), Value::from(self.message()));
        let details = match self {
            ApiError::Invalid { details, .. } => details.clone(),
            _ => json!({}),
        };
        body.insert("details".into(), details);
        match self {
            ApiError::KeyNotFound { key } => {
                body.insert("key".into(), Value::from(key.as_str()));
            }
            ApiError::Conflict {
                current_version: Some(v),
                ..
            } => {
                body.insert("current_version".into(), Value::from(*v));
            }
            _ => {}
        }
        let resp = Response::json(self.status(), &Value::Object(body));
        match self {
            ApiError::Unauthorized => resp.with_header("WWW-Authenticate", "Bearer"),
            ApiError::MethodNotAllowed { allow } => resp.with_header("Allow", *allow),
            ApiError::Overloaded(_) | ApiError::Unavailable(_) => resp.with_header("Retry-After", "1"),
            ApiError::InsufficientStorage(_) => resp.with_header("Retry-After", "10"),
            _ => resp,
        }
    }
}

/// The storage layer's errors as the API answers them.
impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::Refused(Refusal::NotFound(m)) => ApiError::NotFound(m),
            Error::Refused(Refusal::Conflict {
                message,
                current_version,
            }) => ApiError::Conflict {
                message,
                current_version,
            },
            Error::Refused(Refusal::Invalid {
                message,
                position: None,
            }) => ApiError::BadRequest(message),
            Error::Refused(Refusal::Invalid {
                message,
                position: Some(p),
            }) => ApiError::Invalid {
                message,
                details: json!({ "position": p }),
            },
            Error::Refused(Refusal::Busy(m)) => ApiError::Overloaded(m),
            Error::Log(e) => log_error(e),
            Error::Corrupt(m) => ApiError::Internal(format!("stored data is damaged: {m}")),
            Error::Unavailable(m) => ApiError::Unavailable(m),
        }
    }
}

/// Maps a log failure to the API's error model.
pub fn log_error(e: LogError) -> ApiError {
    match e {
        LogError::BatchFull => ApiError::Overloaded(e.to_string()),
        LogError::EntryTooLarge(_) => ApiError::PayloadTooLarge(e.to_string()),
        LogError::Stopping => ApiError::Unavailable("the server is stopping".into()),
        LogError::NoSpace { op: "append" } => ApiError::InsufficientStorage(
            "the disk is full: nothing was written; reads still work, and writes resume once space is freed".into(),
        ),
        other => ApiError::Unavailable(format!("the shard cannot write: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_seed_shape() {
        for e in [
            ApiError::BadRequest("x".into()),
            ApiError::Unauthorized,
            ApiError::Forbidden("x".into()),
            ApiError::NotFound("x".into()),
            ApiError::MethodNotAllowed { allow: "GET" },
            ApiError::Overloaded("x".into()),
            ApiError::Unavailable("x".into()),
            ApiError::InsufficientStorage("x".into()),
            ApiError::Invalid {
                message: "x".into(),
                details: json!({"line": 1}),
            },
        ] {
            let r = e.to_response();
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["error"], e.code());
            assert!(v["message"].is_string());
            assert!(v["details"].is_object());
            assert_eq!(r.status, e.status());
        }
    }

    #[test]
    fn seed_top_level_fields() {
        let v: Value =
            serde_json::from_slice(&ApiError::KeyNotFound { key: "user:1".into() }.to_response().body).unwrap();
        assert_eq!(v["key"], "user:1");
        let r = ApiError::Conflict {
            message: "m".into(),
            current_version: Some(6),
        }
        .to_response();
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["current_version"], 6);
        assert_eq!(r.status, 409);
        let r = ApiError::Overloaded("busy".into()).to_response();
        assert!(r.headers.iter().any(|(k, v)| *k == "Retry-After" && v == "1"));
    }

    #[test]
    fn storage_errors_map_to_api_codes() {
        let cases: [(Error, u16, &str); 6] = [
            (Error::Refused(Refusal::NotFound("no q".into())), 404, "not_found"),
            (
                Error::Refused(Refusal::Conflict {
                    message: "m".into(),
                    current_version: Some(3),
                }),
                409,
                "conflict",
            ),
            (
                Error::Refused(Refusal::Invalid {
                    message: "bad".into(),
                    position: None,
                }),
                400,
                "bad_request",
            ),
            (Error::Refused(Refusal::Busy("full".into())), 429, "overloaded"),
            (Error::Corrupt("torn".into()), 500, "internal"),
            (Error::Unavailable("stopped".into()), 503, "unavailable"),
        ];
        for (e, status, code) in cases {
            let a = ApiError::from(e);
            assert_eq!((a.status(), a.code()), (status, code), "{a:?}");
        }
        let a = ApiError::from(Error::Log(LogError::Stopping));
        assert_eq!(a.status(), 503);
    }
}
