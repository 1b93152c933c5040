//! The API: routes each request, checks auth and scope, runs the handler, and turns errors
//! into the error model. One module per resource holds its handlers.
//!
//! A handler never touches storage of another shard: it asks the owning shard through
//! `Shard::ask`/`ask_all`. A panic in a handler is a bug, and it is not caught: it ends the
//! process (`server::fail_stop_on_panic`), whose next start rebuilds the state from the log.

pub mod cluster;
pub mod dashboard;
pub mod error;
pub mod kv;
pub mod namespaces;
pub mod params;
pub mod path;
pub mod queue;
pub mod router;
pub mod server_info;
pub mod stream;
pub mod ts;

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use crate::auth::Access;
use crate::http::{Request, Response, Service};
use crate::metrics::requests::Route as RouteLabel;
use crate::server::shard::Shard;
use error::ApiError;
use router::{Endpoint, Route};

/// The API service of one connection on one shard.
pub struct Api {
    shard: Rc<Shard>,
}

impl Api {
    pub fn new(shard: Rc<Shard>) -> Self {
        Api { shard }
    }

    /// Answers a request; sets `label` to its route (for the metrics) once it is routed.
    async fn dispatch(&self, req: &Request<'_>, label: &mut RouteLabel) -> Result<Response, ApiError> {
        let access = self.authenticate(req)?;
        let route = router::route(req.method, req.path, req.query)?;
        *label = RouteLabel::of(route.endpoint, req.method);
        if route.endpoint != Endpoint::Dashboard {
            self.shard.node.metrics[self.shard.id].ops_total.fetch_add(1, Relaxed);
        }
        check_scope(&access, &route)?;
        let shard = &self.shard;
        // Past the shard's limit of writes in progress, a write is refused before any work.
        let _write_slot = if crate::server::admission::is_gated_write(&route.endpoint, req.method) {
            let slot = shard.writes.admit();
            if slot.is_none() {
                shard.node.metrics[shard.id].overloaded_total.fetch_add(1, Relaxed);
                return Err(ApiError::Overloaded(
                    "too many writes in progress on this shard; retry later".into(),
                ));
            }
            slot
        } else {
            None
        };
        let needs_data = matches!(
            route.endpoint,
            Endpoint::NamespacesList
                | Endpoint::NamespacesCreate
                | Endpoint::KvKey
                | Endpoint::KvScan
                | Endpoint::Queue(_)
                | Endpoint::QueueList
                | Endpoint::Stream(_)
                | Endpoint::StreamList
                | Endpoint::Ts(_)
                | Endpoint::TsList
        );
        if needs_data && shard.node.phase.get() == crate::server::shutdown::Phase::Starting {
            return Err(ApiError::Unavailable(
                "the server is starting (recovering its logs)".into(),
            ));
        }
        match route.endpoint {
            Endpoint::Dashboard => Ok(dashboard::page()),
            Endpoint::Health => Ok(server_info::health(shard)),
            Endpoint::Status => Ok(server_info::status(shard)),
            Endpoint::Metrics => Ok(server_info::metrics(shard)),
            Endpoint::ClusterStatus => Ok(cluster::status(shard)),
            Endpoint::ClusterPartitions => Ok(cluster::partitions(shard)),
            Endpoint::NamespacesList => namespaces::list(shard, &access).await,
            Endpoint::NamespacesCreate => namespaces::create(shard, &access, req.body).await,
            Endpoint::KvKey => {
                let ns = route.namespace.as_deref().unwrap_or("");
                let key = route.key.as_deref().unwrap_or("");
                match req.method {
                    "GET" | "HEAD" => kv::get(shard, ns, key, req.query).await,
                    "PUT" => kv::put(shard, ns, key, req.body).await,
                    "DELETE" => kv::delete(shard, ns, key, req.query).await,
                    _ => Err(ApiError::MethodNotAllowed { allow: route.allow }),
                }
            }
            Endpoint::KvScan => kv::scan(shard, route.namespace.as_deref().unwrap_or(""), req.query).await,
            Endpoint::Queue(op) => {
                let ns = route.namespace.as_deref().unwrap_or("");
                let q = route.key.as_deref().unwrap_or("");
                queue::handle(shard, ns, q, op, req.query, req.body).await
            }
            Endpoint::QueueList => queue::list(shard, route.namespace.as_deref().unwrap_or("")).await,
            Endpoint::Stream(op) => {
                let ns = route.namespace.as_deref().unwrap_or("");
                let s = route.key.as_deref().unwrap_or("");
                let group = route.sub.as_deref();
                stream::handle(shard, ns, s, group, op, req.method, req.query, req.body).await
            }
            Endpoint::StreamList => stream::list(shard, route.namespace.as_deref().unwrap_or("")).await,
            Endpoint::Ts(op) => {
                let ns = route.namespace.as_deref().unwrap_or("");
                let m = route.key.as_deref().unwrap_or("");
                match op {
                    "write" => ts::write(shard, ns, req.query, req.body, false).await,
                    "influx" => ts::write(shard, ns, req.query, req.body, true).await,
                    "query" => ts::query(shard, ns, req.body).await,
                    "series" => ts::series(shard, ns, m).await,
                    _ => ts::retention(shard, ns, m, req.body).await,
                }
            }
            Endpoint::TsList => ts::list(shard, route.namespace.as_deref().unwrap_or("")).await,
            Endpoint::Options => Ok(Response {
                status: 204,
                content_type: crate::http::response::TEXT,
                headers: vec![("Allow", route.allow.to_string())],
                body: Vec::new(),
            }),
        }
    }

    /// Checks the token of a request to a protected path (401 when missing or wrong).
    fn authenticate(&self, req: &Request<'_>) -> Result<Access<'_>, ApiError> {
        let auth = &self.shard.node.auth;
        if !auth.enabled() || !router::is_protected(req.path) {
            return Ok(Access::FULL);
        }
        match auth.check(req.authorization).or_else(|| influx_query_token(auth, req)) {
            Some(access) => Ok(access),
            None => {
                self.shard.node.metrics[self.shard.id]
                    .auth_failures_total
                    .fetch_add(1, Relaxed);
                Err(ApiError::Unauthorized)
            }
        }
    }
}

/// Checks a token's scope against a routed request (403 outside it).
fn check_scope(access: &Access<'_>, route: &Route<'_>) -> Result<(), ApiError> {
    if let Some(ns) = route.namespace.as_deref() {
        if !access.allows_namespace(ns) {
            return Err(ApiError::Forbidden(format!("this token may not use namespace {ns:?}")));
        }
    }
    if route.write && !access.allows_write() {
        return Err(ApiError::Forbidden("this token is read-only".into()));
    }
    Ok(())
}

/// InfluxDB 1.x clients send the token as the `p` query parameter of `/write`.
fn influx_query_token<'a>(auth: &'a crate::auth::Auth, req: &Request<'_>) -> Option<Access<'a>> {
    if req.path != "/write" {
        return None;
    }
    let token = path::query_param(req.query, "p").ok().flatten()?;
    auth.check_token(token.as_bytes())
}

impl Service for Api {
    async fn call(&self, req: &Request<'_>) -> Response {
        let started = crate::clock::Stopwatch::start();
        let mut label = RouteLabel::Unrouted;
        let resp = match self.dispatch(req, &mut label).await {
            Ok(resp) => resp,
            Err(e) => e.to_response(),
        };
        let m = &self.shard.node.metrics[self.shard.id];
        m.count_response(resp.status);
        m.requests.observe(label, resp.status, started.elapsed());
        resp
    }

    fn protocol_error(&self, status: u16) {
        let m = &self.shard.node.metrics[self.shard.id];
        m.protocol_errors_total.fetch_add(1, Relaxed);
        m.count_response(status);
    }
}

/// The metrics port's service: `GET /metrics` in Prometheus text format.
pub struct MetricsApi {
    shard: Rc<Shard>,
}

impl MetricsApi {
    pub fn new(shard: Rc<Shard>) -> Self {
        MetricsApi { shard }
    }
}

impl Service for MetricsApi {
    async fn call(&self, req: &Request<'_>) -> Response {
        let node = &self.shard.node;
        if req.path != "/metrics" {
            return ApiError::NotFound(format!("no route for {} (try /metrics)", req.path)).to_response();
        }
        if req.method != "GET" && req.method != "HEAD" {
            return ApiError::MethodNotAllowed { allow: "GET, HEAD" }.to_response();
        }
        if node.auth.check(req.authorization).is_none() {
            node.metrics[self.shard.id].auth_failures_total.fetch_add(1, Relaxed);
            return ApiError::Unauthorized.to_response();
        }
        Response {
            status: 200,
            content_type: crate::http::response::PROMETHEUS_TEXT,
            headers: Vec::new(),
            body: crate::metrics::prometheus::render(node).into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(api: &Api, method: &str, path: &str, body: &[u8]) -> Response {
        let req = Request {
            method,
            path,
            query: "",
            authorization: None,
            body,
        };
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime");
        rt.block_on(api.call(&req))
    }

    #[test]
    fn writes_past_the_shards_limit_are_refused_at_once_and_the_rest_still_served() {
        let shard = Rc::new(Shard::for_tests());
        let api = Api::new(shard.clone());
        let limit = shard.node.config.http.max_writes_in_flight;
        let held: Vec<_> = (0..limit).map(|_| shard.writes.admit().expect("room")).collect();
        let put = call(&api, "PUT", "/api/v1/kv/app/k", br#"{"value":"eA=="}"#);
        assert_eq!(put.status, 429);
        assert!(put.headers.iter().any(|(k, v)| *k == "Retry-After" && v == "1"));
        assert!(String::from_utf8_lossy(&put.body).contains("too many writes in progress"));
        let append = call(&api, "POST", "/api/v1/stream/app/s/append", br#"{"payload":"eA=="}"#);
        assert_eq!(append.status, 429);
        assert_eq!(shard.node.metrics[0].overloaded_total.load(Relaxed), 2);
        // Probes and reads are not writes: the gate does not touch them (this shard has not
        // recovered a log, so a read answers 503 "starting", never 429).
        assert_eq!(call(&api, "GET", "/health", b"").status, 503);
        assert_eq!(call(&api, "GET", "/api/v1/kv/app/k", b"").status, 503);
        assert_eq!(shard.writes.in_flight(), limit, "refused writes took no place");
        drop(held);
        // With room again the write gets past the gate (to the 503 of a shard still starting).
        assert_eq!(
            call(&api, "PUT", "/api/v1/kv/app/k", br#"{"value":"eA=="}"#).status,
            503
        );
        assert_eq!(shard.writes.in_flight(), 0, "its place was given back");
    }
}
