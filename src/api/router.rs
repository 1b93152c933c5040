//! The route table: every path of the API contract (`spec/API.md`), the methods each allows,
//! the names in it that must be validated, the namespace it touches (for token scopes), and
//! whether the request is a write.
//!
//! Order of answers: unknown path → 404; known path, method not in its list → 405 with
//! `Allow`; invalid names → 400. `HEAD` is allowed wherever `GET` is; `OPTIONS` on any known
//! path answers 204 with `Allow`.

use std::borrow::Cow;

use super::error::ApiError;
use super::path;

/// What a request is for, once routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/`: the web dashboard's page (public; it holds no data).
    Dashboard,
    Health,
    Status,
    Metrics,
    ClusterStatus,
    ClusterPartitions,
    NamespacesList,
    NamespacesCreate,
    /// `/api/v1/kv/:namespace/:key` (GET, HEAD, PUT, DELETE).
    KvKey,
    /// `/api/v1/kv/:namespace` (the scan).
    KvScan,
    /// `/api/v1/queue/:namespace/:queue/<op>`; the operation (`dlq/requeue` for the requeue).
    Queue(&'static str),
    /// `/api/v1/queue/:namespace`.
    QueueList,
    /// `/api/v1/stream/:namespace/:stream[/<op>]`: `read` (the stream's own path), `append`,
    /// `info`, `retention`, `trim`, `group` (`groups/:group`), `group/read`, `group/ack`.
    Stream(&'static str),
    /// `/api/v1/stream/:namespace`.
    StreamList,
    /// `/api/v1/ts/:namespace/<op>`: `write`, `query`, `series` (`:measurement/series`),
    /// `retention` (`:measurement/retention`); `influx` for `/write` and `/api/v2/write`.
    Ts(&'static str),
    /// `/api/v1/ts/:namespace`: the measurements.
    TsList,
    /// `OPTIONS` on a known path (or `OPTIONS *`).
    Options,
}

/// A routed request.
#[derive(Debug)]
pub struct Route<'a> {
    pub endpoint: Endpoint,
    /// The methods the path allows (the `Allow` header's value).
    pub allow: &'static str,
    /// The namespace the request is about, if any (decoded and validated).
    pub namespace: Option<Cow<'a, str>>,
    /// True when the request changes state (for read-only tokens).
    pub write: bool,
    /// The object's name (decoded and validated): the KV key, the queue or the stream.
    pub key: Option<Cow<'a, str>>,
    /// The name inside the object (decoded and validated): the stream's consumer group.
    pub sub: Option<Cow<'a, str>>,
}

/// True for the paths that need a token when auth is on: everything under `/api/` and the
/// InfluxDB `/write`. Checked before routing, so an anonymous client learns nothing about
/// which paths exist.
pub fn is_protected(raw_path: &str) -> bool {
    raw_path.starts_with("/api/") || raw_path == "/write"
}

const GET: &str = "GET, HEAD";
const POST: &str = "POST";
const PUT: &str = "PUT";
const GET_POST: &str = "GET, HEAD, POST";
const KV_KEY: &str = "GET, HEAD, PUT, DELETE";
const GROUP: &str = "GET, HEAD, POST, DELETE";
const ANY: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";

/// Most path segments any route has.
const SEGMENTS_MAX: usize = 8;

/// Routes `method path?query`.
pub fn route<'a>(method: &str, raw_path: &'a str, query: &'a str) -> Result<Route<'a>, ApiError> {
    if raw_path == "*" {
        return Ok(Route {
            endpoint: Endpoint::Options,
            allow: ANY,
            namespace: None,
            write: false,
            key: None,
            sub: None,
        });
    }
    let not_found = || ApiError::NotFound(format!("no route for {raw_path}"));
    let mut segs: [&str; SEGMENTS_MAX] = [""; SEGMENTS_MAX];
    let mut n = 0;
    for s in raw_path.strip_prefix('/').ok_or_else(not_found)?.split('/') {
        if n == SEGMENTS_MAX {
            return Err(not_found());
        }
        segs[n] = s;
        n += 1;
    }
    let segs = &segs[..n];

    // (allowed methods, endpoint for the method, namespace segment, other names to check)
    type Names<'s> = [(Option<&'s str>, &'static str); 2];
    let none: Names = [(None, ""), (None, "")];
    let (allow, endpoint, ns_seg, names, key_seg): (&'static str, Endpoint, Option<&str>, Names, Option<&str>) =
        match segs {
            [""] => (GET, Endpoint::Dashboard, None, none, None),
            ["health"] => (GET, Endpoint::Health, None, none, None),
            ["api", "v1", "status"] => (GET, Endpoint::Status, None, none, None),
            ["api", "v1", "metrics"] => (GET, Endpoint::Metrics, None, none, None),
            ["api", "v1", "cluster", "status"] => (GET, Endpoint::ClusterStatus, None, none, None),
            ["api", "v1", "cluster", "partitions"] => (GET, Endpoint::ClusterPartitions, None, none, None),
            ["api", "v1", "namespaces"] => {
                let e = if method == "POST" {
                    Endpoint::NamespacesCreate
                } else {
                    Endpoint::NamespacesList
                };
                (GET_POST, e, None, none, None)
            }
            ["api", "v1", "kv", ns] => (GET, Endpoint::KvScan, Some(*ns), none, None),
            ["api", "v1", "kv", ns, key] => (KV_KEY, Endpoint::KvKey, Some(*ns), none, Some(*key)),
            ["api", "v1", "queue", ns] => (GET, Endpoint::QueueList, Some(*ns), none, None),
            ["api", "v1", "queue", ns, q, op] => {
                let (allow, op) = match *op {
                    "enqueue" => (POST, "enqueue"),
                    "dequeue" => (POST, "dequeue"),
                    "ack" => (POST, "ack"),
                    "nack" => (POST, "nack"),
                    "touch" => (POST, "touch"),
                    "purge" => (POST, "purge"),
                    "stats" => (GET, "stats"),
                    "peek" => (GET, "peek"),
                    "dlq" => (GET, "dlq"),
                    _ => return Err(not_found()),
                };
                (
                    allow,
                    Endpoint::Queue(op),
                    Some(*ns),
                    [(Some(*q), "queue"), (None, "")],
                    Some(*q),
                )
            }
            ["api", "v1", "queue", ns, q, "dlq", "requeue"] => (
                POST,
                Endpoint::Queue("dlq/requeue"),
                Some(*ns),
                [(Some(*q), "queue"), (None, "")],
                Some(*q),
            ),
            ["api", "v1", "stream", ns] => (GET, Endpoint::StreamList, Some(*ns), none, None),
            ["api", "v1", "stream", ns, s] => (
                GET,
                Endpoint::Stream("read"),
                Some(*ns),
                [(Some(*s), "stream"), (None, "")],
                Some(*s),
            ),
            ["api", "v1", "stream", ns, s, op] => {
                let (allow, op) = match *op {
                    "append" => (POST, "append"),
                    "trim" => (POST, "trim"),
                    "info" => (GET, "info"),
                    "retention" => (PUT, "retention"),
                    _ => return Err(not_found()),
                };
                (
                    allow,
                    Endpoint::Stream(op),
                    Some(*ns),
                    [(Some(*s), "stream"), (None, "")],
                    Some(*s),
                )
            }
            ["api", "v1", "stream", ns, s, "groups", g] => (
                GROUP,
                Endpoint::Stream("group"),
                Some(*ns),
                [(Some(*s), "stream"), (Some(*g), "group")],
                Some(*s),
            ),
            ["api", "v1", "stream", ns, s, "groups", g, op @ ("read" | "ack")] => (
                POST,
                Endpoint::Stream(if *op == "read" { "group/read" } else { "group/ack" }),
                Some(*ns),
                [(Some(*s), "stream"), (Some(*g), "group")],
                Some(*s),
            ),
            ["api", "v1", "ts", ns] => (GET, Endpoint::TsList, Some(*ns), none, None),
            ["api", "v1", "ts", ns, op @ ("write" | "query")] => (
                POST,
                Endpoint::Ts(if *op == "write" { "write" } else { "query" }),
                Some(*ns),
                none,
                None,
            ),
            ["api", "v1", "ts", ns, m, op] => {
                let (allow, op) = match *op {
                    "series" => (GET, "series"),
                    "retention" => (PUT, "retention"),
                    _ => return Err(not_found()),
                };
                (
                    allow,
                    Endpoint::Ts(op),
                    Some(*ns),
                    none,
                    // A measurement follows line-protocol rules, not the names' pattern.
                    Some(*m),
                )
            }
            ["write"] | ["api", "v2", "write"] => (POST, Endpoint::Ts("influx"), None, none, None),
            _ => return Err(not_found()),
        };

    let endpoint = if method == "OPTIONS" {
        Endpoint::Options
    } else if method_allowed(allow, method) {
        endpoint
    } else {
        return Err(ApiError::MethodNotAllowed { allow });
    };

    let mut namespace = match ns_seg {
        Some(seg) => Some(path::name(seg, "namespace")?),
        None => None,
    };
    let mut sub = None;
    for (i, (seg, kind)) in names.into_iter().enumerate() {
        if let Some(seg) = seg {
            let decoded = path::name(seg, kind)?;
            if i == 1 {
                sub = Some(decoded);
            }
        }
    }
    let key = match key_seg {
        Some(k) => Some(path::key(k)?),
        None => None,
    };
    // The InfluxDB-compatible paths carry the namespace in the query.
    if matches!(segs, ["write"] | ["api", "v2", "write"]) {
        let param = if segs.len() == 1 { "db" } else { "bucket" };
        let Some(db) = path::query_param(query, param)? else {
            return Err(ApiError::BadRequest(format!(
                "the {param} query parameter (the namespace) is required"
            )));
        };
        if !path::is_valid_name(&db) {
            return Err(ApiError::BadRequest(format!(
                "invalid namespace name {db:?} in {param}"
            )));
        }
        namespace = Some(db);
    }
    let is_ts_query = matches!(segs, ["api", "v1", "ts", _, "query"]);
    let write = !matches!(method, "GET" | "HEAD" | "OPTIONS") && !is_ts_query;
    Ok(Route {
        endpoint,
        allow,
        namespace,
        write,
        key,
        sub,
    })
}

fn method_allowed(allow: &str, method: &str) -> bool {
    allow.split(", ").any(|m| m == method)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(method: &str, path: &str) -> u16 {
        match route(method, path, "") {
            Ok(_) => 200,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn every_contract_path_is_routed() {
        for (m, p) in [
            ("GET", "/"),
            ("GET", "/health"),
            ("GET", "/api/v1/status"),
            ("GET", "/api/v1/metrics"),
            ("GET", "/api/v1/cluster/status"),
            ("GET", "/api/v1/cluster/partitions"),
            ("GET", "/api/v1/namespaces"),
            ("POST", "/api/v1/namespaces"),
            ("GET", "/api/v1/kv/default/user%3A1"),
            ("PUT", "/api/v1/kv/default/a%2Fb"),
            ("DELETE", "/api/v1/kv/default/k"),
            ("GET", "/api/v1/kv/default"),
            ("POST", "/api/v1/queue/default/tasks/enqueue"),
            ("POST", "/api/v1/queue/default/tasks/dequeue"),
            ("POST", "/api/v1/queue/default/tasks/ack"),
            ("POST", "/api/v1/queue/default/tasks/nack"),
            ("POST", "/api/v1/queue/default/tasks/touch"),
            ("POST", "/api/v1/queue/default/tasks/purge"),
            ("GET", "/api/v1/queue/default/tasks/stats"),
            ("GET", "/api/v1/queue/default/tasks/peek"),
            ("GET", "/api/v1/queue/default/tasks/dlq"),
            ("POST", "/api/v1/queue/default/tasks/dlq/requeue"),
            ("GET", "/api/v1/queue/default"),
            ("POST", "/api/v1/stream/default/events/append"),
            ("GET", "/api/v1/stream/default/events"),
            ("GET", "/api/v1/stream/default/events/info"),
            ("POST", "/api/v1/stream/default/events/groups/g1"),
            ("GET", "/api/v1/stream/default/events/groups/g1"),
            ("DELETE", "/api/v1/stream/default/events/groups/g1"),
            ("POST", "/api/v1/stream/default/events/groups/g1/read"),
            ("POST", "/api/v1/stream/default/events/groups/g1/ack"),
            ("PUT", "/api/v1/stream/default/events/retention"),
            ("POST", "/api/v1/stream/default/events/trim"),
            ("GET", "/api/v1/stream/default"),
            ("POST", "/api/v1/ts/default/write"),
            ("POST", "/api/v1/ts/default/query"),
            ("GET", "/api/v1/ts/default"),
            ("GET", "/api/v1/ts/default/cpu/series"),
            ("PUT", "/api/v1/ts/default/cpu/retention"),
        ] {
            assert_eq!(status_of(m, p), 200, "{m} {p}");
            assert_eq!(status_of("OPTIONS", p), 200, "OPTIONS {p}");
        }
        assert!(route("POST", "/write", "db=x").is_ok());
        assert!(route("POST", "/api/v2/write", "bucket=x&org=o").is_ok());
    }

    #[test]
    fn the_dashboard_is_at_the_root_and_public() {
        for m in ["GET", "HEAD"] {
            let r = route(m, "/", "").unwrap();
            assert_eq!((r.endpoint, r.write, r.namespace), (Endpoint::Dashboard, false, None));
        }
        assert_eq!(status_of("POST", "/"), 405);
        assert_eq!(status_of("OPTIONS", "/"), 200);
        assert_eq!(status_of("GET", "//"), 404);
        assert_eq!(status_of("GET", "/index.html"), 404);
        assert!(!is_protected("/"));
    }

    #[test]
    fn errors_in_order() {
        assert_eq!(status_of("GET", "/nope"), 404);
        assert_eq!(status_of("GET", "/api/v1/status/"), 404);
        assert_eq!(status_of("GET", "/api/v1/queue/default/tasks/frobnicate"), 404);
        assert_eq!(status_of("GET", "/a/b/c/d/e/f/g/h/i"), 404);
        assert_eq!(status_of("DELETE", "/api/v1/status"), 405);
        assert_eq!(status_of("GET", "/api/v1/queue/default/tasks/enqueue"), 405);
        assert_eq!(status_of("GET", "/api/v1/kv/bad%2Fns/k"), 400);
        assert_eq!(status_of("GET", "/api/v1/kv/default/%zz"), 400);
        assert_eq!(status_of("GET", "/api/v1/queue/%2E%2E%2F/q/stats"), 400);
        let e = route("PUT", "/api/v1/status", "").unwrap_err();
        assert_eq!(e, ApiError::MethodNotAllowed { allow: GET });
    }

    #[test]
    fn scope_facts() {
        let r = route("POST", "/api/v1/ts/metrics/query", "").unwrap();
        assert!(!r.write);
        assert_eq!(r.namespace.as_deref(), Some("metrics"));
        let r = route("POST", "/api/v1/queue/app/q/dequeue", "").unwrap();
        assert!(r.write);
        assert_eq!(status_of("POST", "/write"), 400, "db is required");
        assert_eq!(status_of("POST", "/api/v2/write"), 400, "bucket is required");
        let r = route("POST", "/write", "db=telegraf&precision=s").unwrap();
        assert_eq!(r.namespace.as_deref(), Some("telegraf"));
        assert!(!is_protected("/health"));
        assert!(!is_protected("*"));
        assert!(is_protected("/api/v1/status") && is_protected("/api/v1/nope") && is_protected("/write"));
        assert_eq!(status_of("HEAD", "/api/v1/status"), 200);
        let r = route("POST", "/api/v1/stream/app/ev%3A1/groups/g%2E1/read", "").unwrap();
        assert_eq!(r.endpoint, Endpoint::Stream("group/read"));
        assert_eq!((r.key.as_deref(), r.sub.as_deref()), (Some("ev:1"), Some("g.1")));
        assert!(r.write);
        let r = route("GET", "/api/v1/stream/app/ev", "offset=3").unwrap();
        assert_eq!((r.endpoint, r.write), (Endpoint::Stream("read"), false));
    }
}
