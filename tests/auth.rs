//! Bearer-token authentication and token scopes, against the real binary.
//!
//! Covers: auth off (nothing needs a header), tokens from `FLO_AUTH_TOKENS` and from
//! `[auth] token_sha256`, the 401/403 error shapes, `/health` staying public, the metrics port
//! taking the same tokens, `auth_failures_total`, scoped tokens (`read_only`, `namespaces`) on
//! every kind of route (once auth and scope pass, the handler answers — a success or its own
//! 4xx — so anything but 401/403 means "allowed"), the InfluxDB write paths, and the
//! same token getting the same answer from every shard.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpStream;

use common::{Response, Server};
use sha2::{Digest, Sha256};

/// Full access, configured by digest.
const ROOT: &str = "root";
/// Read-only, every namespace.
const READER: &str = "reader-token";
/// Read and write, namespaces `app` and `app2` only.
const APP: &str = "app-token";
/// Read-only, namespace `app` only.
const APP_READER: &str = "app-reader-token";
/// A token no configuration knows.
const WRONG: &str = "not-a-token";

fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The config with one full-access digest and the three scoped tokens above.
fn scoped_config() -> String {
    format!(
        r#"[auth]
enabled = true
token_sha256 = ["{root}"]

[[auth.tokens]]
sha256 = "{reader}"
read_only = true

[[auth.tokens]]
sha256 = "{app}"
namespaces = ["app", "app2", "appx"]

[[auth.tokens]]
sha256 = "{app_reader}"
namespaces = ["app"]
read_only = true
"#,
        root = sha256_hex(ROOT),
        reader = sha256_hex(READER),
        app = sha256_hex(APP),
        app_reader = sha256_hex(APP_READER),
    )
}

fn start_scoped(shards: usize) -> Server {
    Server::builder().shards(shards).config(&scoped_config()).start()
}

/// One request on a fresh connection with `Authorization: <authorization>` (none if `None`).
fn call_with(server: &Server, method: &str, path: &str, authorization: Option<&str>, body: &str) -> Response {
    let mut headers = Vec::new();
    if let Some(a) = authorization {
        headers.push(("Authorization", a));
    }
    if !body.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    server.request(method, path, &headers, body.as_bytes())
}

/// One request with `Authorization: Bearer <token>` (no header if `None`).
fn call(server: &Server, method: &str, path: &str, token: Option<&str>, body: &str) -> Response {
    let header = token.map(|t| format!("Bearer {t}"));
    call_with(server, method, path, header.as_deref(), body)
}

/// `GET /metrics` on the metrics port.
fn prometheus(server: &Server, authorization: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = authorization.map(|a| vec![("Authorization", a)]).unwrap_or_default();
    common::try_request(server.metrics, "GET", "/metrics", &headers, b"").expect("metrics port request")
}

/// `auth_failures_total` from `/api/v1/metrics`, read with `token`.
fn auth_failures(server: &Server, token: Option<&str>) -> u64 {
    let r = call(server, "GET", "/api/v1/metrics", token, "");
    assert_eq!(r.status, 200, "metrics: {}", r.text());
    r.json()["auth_failures_total"]
        .as_u64()
        .expect("auth_failures_total is a number")
}

/// The namespace names `GET /api/v1/namespaces` shows to `token`.
fn namespace_names(server: &Server, token: &str) -> BTreeSet<String> {
    let r = call(server, "GET", "/api/v1/namespaces", Some(token), "");
    assert_eq!(r.status, 200, "list namespaces: {}", r.text());
    names_of(&r)
}

fn names_of(r: &Response) -> BTreeSet<String> {
    r.json()["namespaces"]
        .as_array()
        .expect("namespaces array")
        .iter()
        .map(|n| n["name"].as_str().expect("name").to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn create_body(name: &str) -> String {
    format!(r#"{{"name":"{name}"}}"#)
}

#[track_caller]
fn assert_error_shape(r: &Response, status: u16, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text());
    let v = r.json();
    assert_eq!(v["error"], code, "{what}: {v}");
    assert!(v["message"].is_string(), "{what}: message missing: {v}");
    assert!(v["details"].is_object(), "{what}: details missing: {v}");
}

#[track_caller]
fn assert_unauthorized(r: &Response, what: &str) {
    assert_error_shape(r, 401, "unauthorized", what);
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"), "{what}: WWW-Authenticate");
}

#[track_caller]
fn assert_forbidden(r: &Response, what: &str) {
    assert_error_shape(r, 403, "forbidden", what);
}

/// The route's auth and scope checks passed: the answer is the handler's own (a success, or an
/// error of the handler such as 404 or 400), never 401 or 403.
#[track_caller]
fn assert_allowed(r: &Response, what: &str) {
    assert!(r.status != 401 && r.status != 403, "{what}: refused: {}", r.text());
    if r.status >= 400 {
        assert!(r.json()["error"].is_string(), "{what}: {}", r.text());
    }
}

/// Requests (method, path, body) on routes of every primitive, `{ns}` standing for the
/// namespace. Reads for a read-only
/// token.
const ROUTE_READS: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/kv/{ns}/k", ""),
    ("GET", "/api/v1/kv/{ns}", ""),
    ("GET", "/api/v1/queue/{ns}/jobs/stats", ""),
    ("GET", "/api/v1/queue/{ns}/jobs/peek", ""),
    ("GET", "/api/v1/stream/{ns}/events", ""),
    ("GET", "/api/v1/stream/{ns}/events/info", ""),
    ("GET", "/api/v1/ts/{ns}", ""),
    ("GET", "/api/v1/ts/{ns}/cpu/series", ""),
    ("POST", "/api/v1/ts/{ns}/query", r#"{"query":"x"}"#),
];

/// Like [`ROUTE_READS`], but writes (a dequeue leases, so it is one).
const ROUTE_WRITES: &[(&str, &str, &str)] = &[
    ("PUT", "/api/v1/kv/{ns}/k", r#"{"value":"dg=="}"#),
    ("DELETE", "/api/v1/kv/{ns}/k", ""),
    ("POST", "/api/v1/queue/{ns}/jobs/enqueue", r#"{"payload":"p"}"#),
    ("POST", "/api/v1/queue/{ns}/jobs/dequeue", "{}"),
    ("POST", "/api/v1/queue/{ns}/jobs/ack", "{}"),
    ("POST", "/api/v1/queue/{ns}/jobs/purge", "{}"),
    ("POST", "/api/v1/stream/{ns}/events/append", r#"{"data":"d"}"#),
    ("PUT", "/api/v1/stream/{ns}/events/retention", "{}"),
    ("POST", "/api/v1/stream/{ns}/events/groups/g", "{}"),
    ("POST", "/api/v1/stream/{ns}/events/groups/g/read", "{}"),
    ("DELETE", "/api/v1/stream/{ns}/events/groups/g", ""),
    ("POST", "/api/v1/ts/{ns}/write", "cpu v=1"),
    ("PUT", "/api/v1/ts/{ns}/cpu/retention", "{}"),
    ("POST", "/write?db={ns}", "cpu v=1"),
    ("POST", "/api/v2/write?bucket={ns}", "cpu v=1"),
];

/// Every unbuilt route, reads then writes.
fn unbuilt_routes() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    ROUTE_READS.iter().chain(ROUTE_WRITES)
}

/// `path` with `{ns}` replaced by `namespace`.
fn at(path: &str, namespace: &str) -> String {
    path.replace("{ns}", namespace)
}

#[test]
fn auth_off_needs_no_token() {
    let server = Server::builder().start();
    for path in [
        "/health",
        "/api/v1/status",
        "/api/v1/metrics",
        "/api/v1/cluster/status",
        "/api/v1/cluster/partitions",
        "/api/v1/namespaces",
    ] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        assert_eq!(r.header("WWW-Authenticate"), None, "GET {path}");
    }
    for &(method, path, body) in unbuilt_routes() {
        let path = at(path, "app");
        assert_allowed(&call(&server, method, &path, None, body), &format!("{method} {path}"));
    }
    let r = server.post_json("/api/v1/namespaces", &create_body("fresh"));
    assert_eq!(r.status, 201, "create namespace: {}", r.text());
    // A token nobody configured is ignored, not refused, while auth is off.
    let r = call(&server, "GET", "/api/v1/status", Some(WRONG), "");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = prometheus(&server, None);
    assert_eq!(r.status, 200, "metrics port: {}", r.text());
    assert_eq!(auth_failures(&server, None), 0);
}

#[test]
fn env_tokens_guard_api_and_metrics_port() {
    let server = Server::builder().arg("--auth").env("FLO_AUTH_TOKENS", "t1,t2").start();
    let before = auth_failures(&server, Some("t1"));
    let mut failures = 0;

    // Every protected route refuses a request without a token.
    for path in [
        "/api/v1/status",
        "/api/v1/metrics",
        "/api/v1/cluster/status",
        "/api/v1/cluster/partitions",
        "/api/v1/namespaces",
        "/api/v1/kv/default/k",
    ] {
        assert_unauthorized(&server.get(path), &format!("GET {path} without a token"));
        failures += 1;
    }
    for &(method, path, body) in ROUTE_WRITES {
        let path = at(path, "default");
        let what = format!("{method} {path} without a token");
        assert_unauthorized(&call(&server, method, &path, None, body), &what);
        failures += 1;
    }
    let r = server.post_json("/api/v1/namespaces", &create_body("sneaky"));
    assert_unauthorized(&r, "create namespace without a token");
    failures += 1;

    // Wrong tokens and wrong schemes.
    for header in [
        "Bearer not-a-token",
        "Bearer t1x",
        "Bearer t",
        "Bearer T1",
        "Bearer t1,t2",
        "Bearer",
        "Bearer ",
        "t1",
        "Basic dDE6",
        "Basic t1",
        "Digest t1",
    ] {
        let r = call_with(&server, "GET", "/api/v1/status", Some(header), "");
        assert_unauthorized(&r, &format!("Authorization: {header:?}"));
        failures += 1;
    }

    // The right tokens, the scheme in any case.
    for header in ["Bearer t1", "bearer t2", "BEARER t1", "Bearer  t2 "] {
        let r = call_with(&server, "GET", "/api/v1/status", Some(header), "");
        assert_eq!(r.status, 200, "Authorization: {header:?}: {}", r.text());
        assert_eq!(r.json()["status"], "healthy");
    }
    for path in [
        "/api/v1/metrics",
        "/api/v1/cluster/status",
        "/api/v1/cluster/partitions",
        "/api/v1/namespaces",
    ] {
        let r = call(&server, "GET", path, Some("t2"), "");
        assert_eq!(r.status, 200, "GET {path} with t2: {}", r.text());
    }
    for &(method, path, body) in unbuilt_routes() {
        let path = at(path, "default");
        let what = format!("{method} {path} with t1");
        assert_allowed(&call(&server, method, &path, Some("t1"), body), &what);
    }
    let r = call(&server, "POST", "/api/v1/namespaces", Some("t1"), &create_body("app"));
    assert_eq!(r.status, 201, "create namespace with t1: {}", r.text());
    // The unauthorized create above did not create "sneaky".
    assert!(!namespace_names(&server, "t1").contains("sneaky"));

    // /health stays public.
    let r = server.get("/health");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "healthy");

    // The metrics port takes the same tokens.
    assert_unauthorized(&prometheus(&server, None), "metrics port without a token");
    assert_unauthorized(
        &prometheus(&server, Some("Bearer nope")),
        "metrics port with a wrong token",
    );
    failures += 2;
    let r = prometheus(&server, Some("Bearer t2"));
    assert_eq!(r.status, 200, "metrics port with t2: {}", r.text());
    assert!(r.text().contains("flo_auth_failures_total"), "{}", r.text());

    let after = auth_failures(&server, Some("t1"));
    assert!(
        after >= before + failures,
        "auth_failures_total went from {before} to {after} after {failures} refused requests"
    );
}

#[test]
fn influx_write_paths_take_token_scheme_and_p_parameter() {
    let server = Server::builder().arg("--auth").env("FLO_AUTH_TOKENS", "t1").start();
    for path in ["/write?db=app", "/api/v2/write?bucket=app"] {
        let r = call_with(&server, "POST", path, Some("Token t1"), "cpu v=1");
        assert_allowed(&r, &format!("POST {path} with Token t1"));
        let r = call_with(&server, "POST", path, Some("Token nope"), "cpu v=1");
        assert_unauthorized(&r, &format!("POST {path} with Token nope"));
        let r = call_with(&server, "POST", path, None, "cpu v=1");
        assert_unauthorized(&r, &format!("POST {path} without a token"));
    }
    let r = call_with(&server, "POST", "/write?db=app&p=t1", None, "cpu v=1");
    assert_allowed(&r, "POST /write?p=t1");
    let r = call_with(&server, "POST", "/write?db=app&p=nope", None, "cpu v=1");
    assert_unauthorized(&r, "POST /write?p=nope");
}

#[test]
fn config_file_digests_enable_auth() {
    // Uppercase hex is a digest too.
    let config = format!(
        "[auth]\nenabled = true\ntoken_sha256 = [\"{}\", \"{}\"]\n",
        sha256_hex(ROOT),
        sha256_hex("second").to_uppercase()
    );
    let server = Server::builder().config(&config).start();
    assert_unauthorized(&server.get("/api/v1/status"), "no token");
    for token in [ROOT, "second"] {
        let r = call(&server, "GET", "/api/v1/status", Some(token), "");
        assert_eq!(r.status, 200, "Bearer {token}: {}", r.text());
    }
    // The digest is not itself a token.
    let digest = sha256_hex(ROOT);
    let r = call(&server, "GET", "/api/v1/status", Some(&digest), "");
    assert_unauthorized(&r, "the digest presented as a token");
    let r = call(&server, "GET", "/api/v1/status", Some(WRONG), "");
    assert_unauthorized(&r, "wrong token");
    assert_unauthorized(&prometheus(&server, None), "metrics port without a token");
    let r = prometheus(&server, Some(&format!("Bearer {ROOT}")));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.get("/health").status, 200);
    assert!(auth_failures(&server, Some(ROOT)) >= 4);
}

#[test]
fn auth_flag_and_env_tokens_add_to_config_digests() {
    // `enabled = false` in the file; `--auth` turns it on; file and env tokens both work.
    let config = format!("[auth]\nenabled = false\ntoken_sha256 = [\"{}\"]\n", sha256_hex(ROOT));
    let server = Server::builder()
        .config(&config)
        .arg("--auth")
        .env("FLO_AUTH_TOKENS", "from-env")
        .start();
    assert_unauthorized(&server.get("/api/v1/status"), "no token");
    for token in [ROOT, "from-env"] {
        let r = call(&server, "GET", "/api/v1/status", Some(token), "");
        assert_eq!(r.status, 200, "Bearer {token}: {}", r.text());
    }
}

#[test]
fn read_only_token_reads_but_never_writes() {
    let server = start_scoped(2);
    // Without `namespaces`, a read-only token reads every namespace.
    for namespace in ["app", "other"] {
        for &(method, path, body) in ROUTE_READS {
            let path = at(path, namespace);
            let what = format!("{method} {path} read-only");
            assert_allowed(&call(&server, method, &path, Some(READER), body), &what);
        }
        for &(method, path, body) in ROUTE_WRITES {
            let path = at(path, namespace);
            let r = call(&server, method, &path, Some(READER), body);
            assert_forbidden(&r, &format!("{method} {path} read-only"));
            assert_eq!(r.header("WWW-Authenticate"), None, "403 is not a challenge");
            // The same request with full access passes, so the 403 is the scope's doing.
            let r = call(&server, method, &path, Some(ROOT), body);
            assert_allowed(&r, &format!("{method} {path} root"));
        }
    }
    for path in [
        "/api/v1/status",
        "/api/v1/metrics",
        "/api/v1/cluster/status",
        "/api/v1/namespaces",
    ] {
        let r = call(&server, "GET", path, Some(READER), "");
        assert_eq!(r.status, 200, "GET {path} read-only: {}", r.text());
    }
    let r = call(&server, "POST", "/api/v1/namespaces", Some(READER), &create_body("ro"));
    assert_forbidden(&r, "create namespace read-only");
    assert!(!namespace_names(&server, ROOT).contains("ro"));
    let r = prometheus(&server, Some(&format!("Bearer {READER}")));
    assert_eq!(r.status, 200, "metrics port read-only: {}", r.text());
    // 403s are not authentication failures.
    assert_eq!(auth_failures(&server, Some(ROOT)), 0);
}

#[test]
fn namespace_scoped_token_stays_in_its_namespaces() {
    let server = start_scoped(2);
    for &(method, path, body) in unbuilt_routes() {
        for namespace in ["app", "app2"] {
            let path = at(path, namespace);
            let what = format!("{method} {path} app token");
            assert_allowed(&call(&server, method, &path, Some(APP), body), &what);
        }
        // `default` is a namespace like any other.
        for namespace in ["other", "default", "app3", "ap"] {
            let path = at(path, namespace);
            let r = call(&server, method, &path, Some(APP), body);
            assert_forbidden(&r, &format!("{method} {path} app token"));
        }
    }

    // Namespace-scoped and read-only at once: both limits apply.
    let r = call(&server, "GET", "/api/v1/kv/app/k", Some(APP_READER), "");
    assert_allowed(&r, "app reader GET in app");
    let r = call(&server, "GET", "/api/v1/kv/app2/k", Some(APP_READER), "");
    assert_forbidden(&r, "app reader GET in app2");
    let r = call(&server, "PUT", "/api/v1/kv/app/k", Some(APP_READER), "{}");
    assert_forbidden(&r, "app reader PUT in app");
    let r = call(&server, "POST", "/api/v1/ts/app/query", Some(APP_READER), "{}");
    assert_allowed(&r, "app reader ts query in app");

    // Creating namespaces: only inside the scope.
    // (`app` exists already: the KV writes above created it.)
    for name in ["app", "other", "zeta"] {
        let r = call(&server, "POST", "/api/v1/namespaces", Some(ROOT), &create_body(name));
        let expect = if name == "app" { 409 } else { 201 };
        assert_eq!(r.status, expect, "root creates {name}: {}", r.text());
    }
    let r = call(
        &server,
        "POST",
        "/api/v1/namespaces",
        Some(APP),
        &create_body("outside"),
    );
    assert_forbidden(&r, "app token creates outside");
    // app2 exists already (the token's KV writes created it): passing the scope check, the
    // create meets a conflict, not a 403.
    let r = call(&server, "POST", "/api/v1/namespaces", Some(APP), &create_body("app2"));
    assert_error_shape(&r, 409, "conflict", "app token creates app2");
    let r = call(&server, "POST", "/api/v1/namespaces", Some(APP), &create_body("appx"));
    assert_eq!(r.status, 201, "app token creates appx in its scope: {}", r.text());
    assert_eq!(r.json()["name"], "appx");
    let r = call(&server, "POST", "/api/v1/namespaces", Some(APP), &create_body("app"));
    assert_error_shape(&r, 409, "conflict", "app token creates existing app");

    // Listings show only the token's namespaces.
    assert_eq!(namespace_names(&server, APP), set(&["app", "app2", "appx"]));
    assert_eq!(namespace_names(&server, APP_READER), set(&["app"]));
    let all = namespace_names(&server, ROOT);
    assert!(
        all.is_superset(&set(&["app", "app2", "other", "zeta"])),
        "root sees {all:?}"
    );
    assert!(!all.contains("outside"), "a refused create left {all:?}");
    assert_eq!(namespace_names(&server, READER), all);
}

#[test]
fn influx_write_respects_namespace_scope() {
    let server = start_scoped(2);
    let bearer = format!("Bearer {APP}");
    let token = format!("Token {APP}");
    for auth in [bearer.as_str(), token.as_str()] {
        for (path, allowed) in [
            ("/write?db=other", false),
            ("/write?db=app", true),
            ("/write?db=app2&precision=s", true),
            ("/api/v2/write?bucket=other", false),
            ("/api/v2/write?bucket=app", true),
        ] {
            let r = call_with(&server, "POST", path, Some(auth), "cpu v=1");
            let what = format!("POST {path} with {auth:?}");
            if allowed {
                assert_allowed(&r, &what);
            } else {
                assert_forbidden(&r, &what);
            }
        }
    }
    let r = call_with(&server, "POST", "/write?db=other&p=app-token", None, "cpu v=1");
    assert_forbidden(&r, "POST /write?db=other&p=<app token>");
    let r = call_with(&server, "POST", "/write?db=app&p=app-token", None, "cpu v=1");
    assert_allowed(&r, "POST /write?db=app&p=<app token>");
    let r = call_with(&server, "POST", "/write?db=app&p=app-reader-token", None, "cpu v=1");
    assert_forbidden(&r, "POST /write?db=app&p=<app reader token>");
}

/// A keep-alive connection: every request on it is answered by the shard that accepted it.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(server: &Server) -> Conn {
        Conn {
            stream: server.connect(),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, method: &str, path: &str, token: Option<&str>, body: &str) -> Response {
        let header = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(h) = &header {
            headers.push(("Authorization", h.as_str()));
        }
        let bytes = common::request_bytes(method, path, &headers, body.as_bytes());
        self.stream.write_all(&bytes).expect("write request");
        common::read_response_buffered(&mut self.stream, &mut self.buf).expect("read response")
    }

    /// Per-shard `ops_total`, read on this connection.
    fn shard_ops(&mut self) -> Vec<u64> {
        let r = self.send("GET", "/api/v1/metrics", Some(ROOT), "");
        assert_eq!(r.status, 200, "metrics: {}", r.text());
        r.json()["shards"]
            .as_array()
            .expect("shards rows")
            .iter()
            .map(|row| row["ops_total"].as_u64().expect("ops_total"))
            .collect()
    }

    /// Which shard serves this connection: the only one whose `ops_total` moves between two
    /// reads on it (nothing else talks to the test's server meanwhile).
    fn shard(&mut self) -> usize {
        let a = self.shard_ops();
        let b = self.shard_ops();
        let moved: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        assert_eq!(moved.len(), 1, "ops_total {a:?} then {b:?}");
        assert_eq!(b[moved[0]], a[moved[0]] + 1, "ops_total {a:?} then {b:?}");
        moved[0]
    }
}

#[test]
fn every_shard_gives_a_token_the_same_answer() {
    let server = start_scoped(2);
    // Fresh connections until at least 8 were made and both shards accepted some
    // (SO_REUSEPORT spreads them); each runs the same checks and must get the same answers.
    let mut kept: [Option<Conn>; 2] = [None, None];
    let mut connections = 0u64;
    while connections < 8 || kept.iter().any(Option::is_none) {
        assert!(connections < 200, "200 fresh connections never reached both shards");
        connections += 1;
        let mut conn = Conn::open(&server);
        let shard = conn.shard();
        let on = format!("connection {connections} on shard {shard}");
        assert_unauthorized(&conn.send("GET", "/api/v1/status", None, ""), &on);
        assert_unauthorized(&conn.send("GET", "/api/v1/status", Some(WRONG), ""), &on);
        let r = conn.send("GET", "/api/v1/status", Some(ROOT), "");
        assert_eq!(r.status, 200, "{on}: {}", r.text());
        assert_eq!(r.json()["shard_count"], 2, "{on}");
        assert_allowed(&conn.send("GET", "/api/v1/kv/app/k", Some(APP), ""), &on);
        assert_forbidden(&conn.send("GET", "/api/v1/kv/other/k", Some(APP), ""), &on);
        assert_forbidden(&conn.send("PUT", "/api/v1/kv/app/k", Some(READER), "{}"), &on);
        let r = conn.send("POST", "/api/v1/ts/app/query", Some(READER), "{}");
        assert_allowed(&r, &on);
        let r = conn.send("POST", "/api/v1/namespaces", Some(APP), &create_body("x"));
        assert_forbidden(&r, &on);
        kept[shard].get_or_insert(conn);
    }
    let [Some(mut on0), Some(mut on1)] = kept else {
        unreachable!()
    };

    // A scoped token creating namespaces through both shards: for each name one of the two
    // requests reaches the owner from the other shard (the 201 when shard 1 owns it, else the
    // 409 only the owner can know about).
    for name in ["app", "app2"] {
        let r = on0.send("POST", "/api/v1/namespaces", Some(APP), &create_body(name));
        assert_eq!(r.status, 201, "create {name} via shard 0: {}", r.text());
        let owner = r.header("Flo-Shard").expect("Flo-Shard header");
        assert!(owner == "0" || owner == "1", "Flo-Shard: {owner}");
        let r = on1.send("POST", "/api/v1/namespaces", Some(APP), &create_body(name));
        assert_error_shape(&r, 409, "conflict", &format!("create {name} via shard 1"));
    }
    let r = on0.send("POST", "/api/v1/namespaces", Some(ROOT), &create_body("other"));
    assert_eq!(r.status, 201, "root creates other: {}", r.text());

    // The fan-out listing, filtered by the token, is the same from either shard.
    for (shard, conn) in [(0, &mut on0), (1, &mut on1)] {
        let r = conn.send("GET", "/api/v1/namespaces", Some(APP), "");
        assert_eq!(r.status, 200, "shard {shard}: {}", r.text());
        assert_eq!(names_of(&r), set(&["app", "app2"]), "app token via shard {shard}");
        let r = conn.send("GET", "/api/v1/namespaces", Some(ROOT), "");
        let all = names_of(&r);
        assert!(
            all.is_superset(&set(&["app", "app2", "other"])),
            "root via shard {shard}: {all:?}"
        );
    }
    let failures = auth_failures(&server, Some(ROOT));
    assert!(
        failures >= 2 * connections,
        "{failures} auth failures counted for {connections} connections with 2 each"
    );
}

#[test]
fn anonymous_clients_learn_nothing_about_routes() {
    let server = Server::builder().arg("--auth").env("FLO_AUTH_TOKENS", "t1").start();
    // Without a token every protected path is 401 before routing: unknown paths, wrong
    // methods and bad names alike.
    for (method, path) in [
        ("GET", "/api/v1/nope"),
        ("DELETE", "/api/v1/status"),
        ("GET", "/api/v1/kv/bad%2Fns/k"),
        ("OPTIONS", "/api/v1/status"),
        ("POST", "/write"),
    ] {
        assert_unauthorized(&call(&server, method, path, None, ""), &format!("{method} {path}"));
    }
    // With the token the routing answers come back.
    assert_eq!(call(&server, "GET", "/api/v1/nope", Some("t1"), "").status, 404);
    assert_eq!(call(&server, "DELETE", "/api/v1/status", Some("t1"), "").status, 405);
    assert_eq!(
        call(&server, "GET", "/api/v1/kv/bad%2Fns/k", Some("t1"), "").status,
        400
    );
    // Paths outside /api/ are not protected: an unknown one is a plain 404.
    assert_eq!(call(&server, "GET", "/nope", None, "").status, 404);
}

#[test]
fn a_second_authorization_header_is_refused() {
    let server = Server::builder().arg("--auth").env("FLO_AUTH_TOKENS", "t1").start();
    let out = server.raw(
        b"GET /api/v1/status HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer wrong\r\nAuthorization: Bearer t1\r\n\r\n",
    );
    let rs = common::parse_all(&out);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].status, 400);
}

#[test]
fn influx_writes_must_name_their_namespace() {
    let server = start_scoped(2);
    // A scoped token cannot slip past its scope by leaving the namespace out.
    assert_error_shape(
        &call(&server, "POST", "/write", Some(APP), ""),
        400,
        "bad_request",
        "/write",
    );
    assert_error_shape(
        &call(&server, "POST", "/api/v2/write?org=o", Some(APP), ""),
        400,
        "bad_request",
        "/api/v2/write",
    );
}
