//! Requests by route and status: a latency histogram for each (route, code) pair, kept per
//! shard and summed over shards when rendered.
//!
//! The request path pays two clock reads and three relaxed atomic adds: each shard writes only
//! its own table, so there are no locks and no shared cache lines between shards. A pair's cell
//! is allocated the first time the pair is seen (a `OnceLock`; one atomic load afterwards), so
//! the table stays small although routes × codes is about a thousand pairs.
//!
//! Label sets are bounded: `route` is one of [`Route::ALL`] (never the raw path), `code` one of
//! [`CODES`], or the status class (`4xx`) for any other status.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

use crate::api::router::Endpoint;

macro_rules! routes {
    ($($variant:ident => $name:literal,)*) => {
        /// The `route` label: what a request was for, as the router decided.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Route { $($variant,)* }

        impl Route {
            /// Every route, in declaration order (`ALL[r as usize] == r`).
            pub const ALL: &'static [Route] = &[$(Route::$variant,)*];

            /// The label value.
            pub fn name(self) -> &'static str {
                match self { $(Route::$variant => $name,)* }
            }
        }
    };
}

routes! {
    Unrouted => "unrouted",
    Dashboard => "dashboard",
    Health => "health",
    Status => "status",
    MetricsJson => "metrics_json",
    ClusterStatus => "cluster_status",
    ClusterPartitions => "cluster_partitions",
    NamespacesList => "namespaces_list",
    NamespacesCreate => "namespaces_create",
    KvGet => "kv_get",
    KvPut => "kv_put",
    KvDelete => "kv_delete",
    KvScan => "kv_scan",
    QueueEnqueue => "queue_enqueue",
    QueueDequeue => "queue_dequeue",
    QueueAck => "queue_ack",
    QueueNack => "queue_nack",
    QueueTouch => "queue_touch",
    QueuePurge => "queue_purge",
    QueueStats => "queue_stats",
    QueuePeek => "queue_peek",
    QueueDlq => "queue_dlq",
    QueueDlqRequeue => "queue_dlq_requeue",
    QueueOther => "queue_other",
    QueueList => "queue_list",
    StreamRead => "stream_read",
    StreamAppend => "stream_append",
    StreamInfo => "stream_info",
    StreamRetention => "stream_retention",
    StreamTrim => "stream_trim",
    StreamGroupGet => "stream_group_get",
    StreamGroupCreate => "stream_group_create",
    StreamGroupDelete => "stream_group_delete",
    StreamGroupRead => "stream_group_read",
    StreamGroupAck => "stream_group_ack",
    StreamOther => "stream_other",
    StreamList => "stream_list",
    TsWrite => "ts_write",
    TsWriteInflux => "ts_write_influx",
    TsQuery => "ts_query",
    TsSeries => "ts_series",
    TsRetention => "ts_retention",
    TsOther => "ts_other",
    TsList => "ts_list",
    Options => "options",
}

impl Route {
    /// The route of a routed request.
    pub fn of(endpoint: Endpoint, method: &str) -> Route {
        match endpoint {
            Endpoint::Dashboard => Route::Dashboard,
            Endpoint::Health => Route::Health,
            Endpoint::Status => Route::Status,
            Endpoint::Metrics => Route::MetricsJson,
            Endpoint::ClusterStatus => Route::ClusterStatus,
            Endpoint::ClusterPartitions => Route::ClusterPartitions,
            Endpoint::NamespacesList => Route::NamespacesList,
            Endpoint::NamespacesCreate => Route::NamespacesCreate,
            Endpoint::KvKey => match method {
                "PUT" => Route::KvPut,
                "DELETE" => Route::KvDelete,
                _ => Route::KvGet,
            },
            Endpoint::KvScan => Route::KvScan,
            Endpoint::Queue(op) => match op {
                "enqueue" => Route::QueueEnqueue,
                "dequeue" => Route::QueueDequeue,
                "ack" => Route::QueueAck,
                "nack" => Route::QueueNack,
                "touch" => Route::QueueTouch,
                "purge" => Route::QueuePurge,
                "stats" => Route::QueueStats,
                "peek" => Route::QueuePeek,
                "dlq" => Route::QueueDlq,
                "dlq/requeue" => Route::QueueDlqRequeue,
                _ => Route::QueueOther,
            },
            Endpoint::QueueList => Route::QueueList,
            Endpoint::Stream(op) => match (op, method) {
                ("read", _) => Route::StreamRead,
                ("append", _) => Route::StreamAppend,
                ("info", _) => Route::StreamInfo,
                ("retention", _) => Route::StreamRetention,
                ("trim", _) => Route::StreamTrim,
                ("group", "POST") => Route::StreamGroupCreate,
                ("group", "DELETE") => Route::StreamGroupDelete,
                ("group", _) => Route::StreamGroupGet,
                ("group/read", _) => Route::StreamGroupRead,
                ("group/ack", _) => Route::StreamGroupAck,
                _ => Route::StreamOther,
            },
            Endpoint::StreamList => Route::StreamList,
            Endpoint::Ts(op) => match op {
                "write" => Route::TsWrite,
                "influx" => Route::TsWriteInflux,
                "query" => Route::TsQuery,
                "series" => Route::TsSeries,
                "retention" => Route::TsRetention,
                _ => Route::TsOther,
            },
            Endpoint::TsList => Route::TsList,
            Endpoint::Options => Route::Options,
        }
    }
}

/// Statuses with a `code` label of their own; any other is labelled by its class.
pub const CODES: [u16; 21] = [
    200, 201, 204, 304, 400, 401, 403, 404, 405, 408, 409, 412, 413, 414, 415, 429, 431, 500, 503, 505, 507,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const CODE_SLOTS: usize = CODES.len() + CLASSES.len();

/// The slot of a status: its place in [`CODES`], else after them by class.
fn code_slot(status: u16) -> usize {
    match CODES.iter().position(|&c| c == status) {
        Some(i) => i,
        None => CODES.len() + (status / 100).clamp(1, 5) as usize - 1,
    }
}

/// The `code` label of a slot.
fn code_label(slot: usize) -> String {
    match CODES.get(slot) {
        Some(c) => c.to_string(),
        None => CLASSES[slot - CODES.len()].to_string(),
    }
}

/// Upper bounds of the request latency buckets, in seconds (long polls reach the last ones).
pub const LATENCY_BUCKETS_S: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One (route, code) pair's histogram: per-bucket (not cumulative) counts, count, sum.
#[derive(Debug, Default)]
struct Cell {
    buckets: [AtomicU64; LATENCY_BUCKETS_S.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// One shard's table of request histograms.
#[derive(Debug)]
pub struct RequestMetrics {
    cells: Box<[OnceLock<Box<Cell>>]>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            cells: (0..Route::ALL.len() * CODE_SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }
}

/// A pair's figures summed over shards: cumulative bucket counts, count, sum in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Summed {
    pub route: &'static str,
    pub code: String,
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum_s: f64,
}

impl RequestMetrics {
    /// Counts one answered request.
    pub fn observe(&self, route: Route, status: u16, elapsed: Duration) {
        let i = route as usize * CODE_SLOTS + code_slot(status);
        let Some(slot) = self.cells.get(i) else {
            debug_assert!(false, "route and code slots are in range");
            return;
        };
        let cell = slot.get_or_init(Box::default);
        let s = elapsed.as_secs_f64();
        if let Some(b) = LATENCY_BUCKETS_S.iter().position(|&b| s <= b) {
            cell.buckets[b].fetch_add(1, Relaxed);
        }
        cell.count.fetch_add(1, Relaxed);
        cell.sum_ns
            .fetch_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Every pair seen on any of `shards`, summed, in route then code order.
    pub fn sum<'a>(shards: impl Iterator<Item = &'a RequestMetrics> + Clone) -> Vec<Summed> {
        let mut out = Vec::new();
        for (r, route) in Route::ALL.iter().enumerate() {
            for code in 0..CODE_SLOTS {
                let i = r * CODE_SLOTS + code;
                let mut seen = false;
                let mut buckets = [0u64; LATENCY_BUCKETS_S.len()];
                let (mut count, mut sum_ns) = (0u64, 0u64);
                for cell in shards.clone().filter_map(|m| m.cells.get(i).and_then(OnceLock::get)) {
                    seen = true;
                    for (acc, b) in buckets.iter_mut().zip(&cell.buckets) {
                        *acc += b.load(Relaxed);
                    }
                    count += cell.count.load(Relaxed);
                    sum_ns = sum_ns.saturating_add(cell.sum_ns.load(Relaxed));
                }
                if !seen {
                    continue;
                }
                let mut acc = 0;
                let cumulative: Vec<u64> = buckets
                    .iter()
                    .map(|b| {
                        acc += b;
                        acc
                    })
                    .collect();
                // Counters are read one by one while requests go on: never show a bucket above
                // the total.
                let count = count.max(acc);
                out.push(Summed {
                    route: route.name(),
                    code: code_label(code),
                    cumulative,
                    count,
                    sum_s: sum_ns as f64 / 1e9,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table_is_in_declaration_order() {
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{}", r.name());
        }
        let mut names: Vec<_> = Route::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Route::ALL.len(), "route names are unique");
        assert!(names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }

    #[test]
    fn routes_come_from_the_router_not_the_path() {
        let of = |method: &str, path: &str| {
            let r = crate::api::router::route(method, path, "").expect("routes");
            Route::of(r.endpoint, method).name()
        };
        assert_eq!(of("GET", "/api/v1/kv/default/some-key"), "kv_get");
        assert_eq!(of("HEAD", "/api/v1/kv/default/other"), "kv_get");
        assert_eq!(of("PUT", "/api/v1/kv/default/k"), "kv_put");
        assert_eq!(of("DELETE", "/api/v1/kv/default/k"), "kv_delete");
        assert_eq!(of("POST", "/api/v1/queue/default/jobs/enqueue"), "queue_enqueue");
        assert_eq!(
            of("POST", "/api/v1/queue/default/jobs/dlq/requeue"),
            "queue_dlq_requeue"
        );
        assert_eq!(of("POST", "/api/v1/stream/default/s/append"), "stream_append");
        assert_eq!(of("GET", "/api/v1/stream/default/s"), "stream_read");
        assert_eq!(of("POST", "/api/v1/stream/default/s/groups/g"), "stream_group_create");
        assert_eq!(of("POST", "/api/v1/stream/default/s/groups/g/ack"), "stream_group_ack");
        assert_eq!(of("POST", "/api/v1/ts/default/write"), "ts_write");
        assert_eq!(of("POST", "/api/v1/ts/default/query"), "ts_query");
        assert_eq!(of("GET", "/health"), "health");
        assert_eq!(of("GET", "/"), "dashboard");
    }

    #[test]
    fn codes_are_bounded() {
        assert_eq!(code_label(code_slot(200)), "200");
        assert_eq!(code_label(code_slot(507)), "507");
        assert_eq!(code_label(code_slot(418)), "4xx");
        assert_eq!(code_label(code_slot(999)), "5xx");
        assert_eq!(code_label(code_slot(0)), "1xx");
    }

    #[test]
    fn sums_over_shards_cumulatively() {
        let a = RequestMetrics::default();
        let b = RequestMetrics::default();
        a.observe(Route::KvGet, 200, Duration::from_micros(50));
        b.observe(Route::KvGet, 200, Duration::from_millis(3));
        b.observe(Route::KvGet, 200, Duration::from_secs(60));
        a.observe(Route::KvPut, 418, Duration::from_millis(1));
        let s = RequestMetrics::sum([&a, &b].into_iter());
        assert_eq!(s.len(), 2, "only pairs that were seen: {s:?}");
        let get = &s[0];
        assert_eq!((get.route, get.code.as_str(), get.count), ("kv_get", "200", 3));
        assert_eq!(get.cumulative[0], 1, "50 µs is in the first bucket");
        assert_eq!(get.cumulative[5], 2, "3 ms is in the 5 ms bucket");
        assert_eq!(*get.cumulative.last().expect("buckets"), 2, "60 s only in +Inf");
        assert!(get.cumulative.windows(2).all(|w| w[0] <= w[1]));
        assert!((get.sum_s - 60.00305).abs() < 1e-6);
        assert_eq!((s[1].route, s[1].code.as_str(), s[1].count), ("kv_put", "4xx", 1));
    }
}
