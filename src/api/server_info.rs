//! `/health`, `/api/v1/status` and `/api/v1/metrics` (JSON). All answered by the shard that
//! accepted the connection, from node-wide atomics.

use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;
use serde_json::json;

use crate::http::Response;
use crate::server::shard::Shard;
use crate::server::shutdown::Phase;

/// `200 {"status":"healthy"}`, or 503 `starting`/`stopping` with `Retry-After`.
pub fn health(shard: &Shard) -> Response {
    match shard.node.phase.get() {
        Phase::Healthy => Response::json_bytes(200, br#"{"status":"healthy"}"#.to_vec()),
        Phase::Starting => unavailable("starting"),
        Phase::Stopping => unavailable("stopping"),
    }
}

fn unavailable(status: &str) -> Response {
    Response::json(
        503,
        &json!({
            "status": status,
            "error": "unavailable",
            "message": format!("the server is {status}"),
            "details": {},
        }),
    )
    .with_header("Retry-After", "1")
}

#[derive(Serialize)]
struct Status {
    status: &'static str,
    version: &'static str,
    uptime_seconds: u64,
    shard_count: usize,
    node_id: u64,
}

pub fn status(shard: &Shard) -> Response {
    let node = &shard.node;
    let status = Status {
        status: match node.phase.get() {
            Phase::Starting => "starting",
            Phase::Healthy => "healthy",
            Phase::Stopping => "stopping",
        },
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: node.started.elapsed().as_secs(),
        shard_count: node.shard_count(),
        node_id: node.config.node_id,
    };
    Response::json_bytes(200, serde_json::to_vec(&status).unwrap_or_default())
}

#[derive(Serialize)]
struct ShardRow {
    id: usize,
    partitions: u32,
    connections: u64,
    ops_total: u64,
    ops_per_second: f64,
    forwarded_total: u64,
    overloaded_total: u64,
    log_entries_total: u64,
    log_bytes_total: u64,
    log_batches_total: u64,
    log_fsyncs_total: u64,
    /// Entries per fdatasync since start (group commit at work).
    log_entries_per_fsync: f64,
    /// Readers long-polling this shard now (KV waits and watches).
    waiters: u64,
    /// KV slots in memory as of the last sweep (expired and deleted keys until swept).
    kv_slots: u64,
    /// Heap bytes of the KV key indexes.
    kv_index_bytes: u64,
    /// Bytes of entries in the shard's log segments, and those nothing needs any more.
    log_entry_bytes: u64,
    log_dead_bytes: u64,
    /// Queue messages held (ready, delayed, leased, dead-lettered).
    queue_messages: u64,
    /// Stream records retained.
    stream_records: u64,
    /// Time series held and their stored samples.
    ts_series: u64,
    ts_samples: u64,
}

#[derive(Serialize)]
struct Metrics {
    ops_total: u64,
    ops_per_second: f64,
    connections_active: u64,
    connections_total: u64,
    memory_used_bytes: u64,
    open_fds: u64,
    uptime_seconds: u64,
    protocol_errors_total: u64,
    auth_failures_total: u64,
    overloaded_total: u64,
    shards: Vec<ShardRow>,
}

pub fn metrics(shard: &Shard) -> Response {
    let node = &shard.node;
    let now = node.clock.now_ms();
    let rows: Vec<ShardRow> = node
        .metrics
        .iter()
        .enumerate()
        .map(|(id, m)| ShardRow {
            id,
            partitions: node.partitioner.partitions_of_shard(id),
            connections: m.connections_active.load(Relaxed),
            ops_total: m.ops_total.load(Relaxed),
            ops_per_second: round1(m.ops_per_second(now)),
            forwarded_total: m.forwarded_total.load(Relaxed),
            overloaded_total: m.overloaded_total.load(Relaxed),
            waiters: m.waiters.load(Relaxed),
            kv_slots: m.kv_slots.load(Relaxed),
            kv_index_bytes: m.kv_index_bytes.load(Relaxed),
            log_entry_bytes: m.log_entry_bytes.load(Relaxed),
            log_dead_bytes: m.log_dead_bytes.load(Relaxed),
            queue_messages: m.queue_messages.load(Relaxed),
            stream_records: m.stream_records.load(Relaxed),
            ts_series: m.ts_series.load(Relaxed),
            ts_samples: m.ts_samples.load(Relaxed),
            log_entries_total: node.log_metrics[id].entries_total.get(),
            log_bytes_total: node.log_metrics[id].bytes_total.get(),
            log_batches_total: node.log_metrics[id].batches_total.get(),
            log_fsyncs_total: node.log_metrics[id].fsyncs_total.get(),
            log_entries_per_fsync: {
                let f = node.log_metrics[id].fsyncs_total.get();
                if f == 0 {
                    0.0
                } else {
                    round1(node.log_metrics[id].entries_total.get() as f64 / f as f64)
                }
            },
        })
        .collect();
    let sum = |f: fn(&crate::metrics::ShardMetrics) -> u64| node.metrics.iter().map(|m| f(m)).sum::<u64>();
    let body = Metrics {
        ops_total: rows.iter().map(|r| r.ops_total).sum(),
        ops_per_second: round1(rows.iter().map(|r| r.ops_per_second).sum()),
        connections_active: rows.iter().map(|r| r.connections).sum(),
        connections_total: sum(|m| m.connections_total.load(Relaxed)),
        memory_used_bytes: crate::metrics::rss_bytes(),
        open_fds: crate::metrics::open_fds(),
        uptime_seconds: node.started.elapsed().as_secs(),
        protocol_errors_total: sum(|m| m.protocol_errors_total.load(Relaxed)),
        auth_failures_total: sum(|m| m.auth_failures_total.load(Relaxed)),
        overloaded_total: sum(|m| m.overloaded_total.load(Relaxed)),
        shards: rows,
    };
    Response::json_bytes(200, serde_json::to_vec(&body).unwrap_or_default())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {

    use super::*;

    fn shard() -> Shard {
        Shard::for_tests()
    }

    fn status_field(r: &Response) -> String {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["status"].as_str().unwrap().to_string()
    }

    #[test]
    fn health_follows_the_phase() {
        let s = shard();
        let r = health(&s);
        assert_eq!((r.status, status_field(&r).as_str()), (503, "starting"));
        assert!(r.headers.iter().any(|(k, _)| *k == "Retry-After"));
        assert_eq!(status_field(&status(&s)), "starting");
        s.node.phase.advance(Phase::Healthy);
        let r = health(&s);
        assert_eq!((r.status, status_field(&r).as_str()), (200, "healthy"));
        s.node.phase.advance(Phase::Stopping);
        let r = health(&s);
        assert_eq!((r.status, status_field(&r).as_str()), (503, "stopping"));
    }

    #[test]
    fn metrics_rows_cover_every_shard() {
        let s = shard();
        s.node.metrics[1].ops_total.fetch_add(7, Relaxed);
        let v: serde_json::Value = serde_json::from_slice(&metrics(&s).body).unwrap();
        assert_eq!(v["ops_total"], 7);
        assert_eq!(v["shards"].as_array().unwrap().len(), 2);
        assert_eq!(
            v["shards"][0]["partitions"].as_u64().unwrap() + v["shards"][1]["partitions"].as_u64().unwrap(),
            64
        );
    }
}
