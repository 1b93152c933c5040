//! Prometheus text exposition format 0.0.4 for the metrics port: process figures and the
//! per-shard counters, named by Prometheus conventions (`flo_..._total`, `_bytes`, `_seconds`).

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::ShardMetrics;
use crate::server::Node;

/// Renders every metric of the node.
pub fn render(node: &Node) -> String {
    let mut out = String::with_capacity(4096);
    gauge(
        &mut out,
        "flo_up",
        "1 while the server is healthy.",
        match node.phase.get() {
            crate::server::shutdown::Phase::Healthy => 1,
            _ => 0,
        },
    );
    gauge(&mut out, "flo_shards", "Number of shards.", node.shard_count() as u64);
    gauge(
        &mut out,
        "flo_partitions",
        "Number of partitions.",
        u64::from(node.partitioner.partitions()),
    );
    gauge(
        &mut out,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        super::rss_bytes(),
    );
    gauge(
        &mut out,
        "process_open_fds",
        "Number of open file descriptors.",
        super::open_fds(),
    );
    header(
        &mut out,
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds.",
        "gauge",
    );
    let _ = writeln!(out, "process_start_time_seconds {}", node.started_at_ms / 1000);

    per_shard(
        &mut out,
        node,
        "flo_ops_total",
        "API operations handled, by the shard that accepted the connection.",
        "counter",
        |m| m.ops_total.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_http_connections_active",
        "Open API connections.",
        "gauge",
        |m| m.connections_active.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_http_connections_total",
        "API connections accepted.",
        "counter",
        |m| m.connections_total.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_http_connections_refused_total",
        "Connections refused at the connection limit.",
        "counter",
        |m| m.connections_refused_total.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_http_protocol_errors_total",
        "Requests rejected by the HTTP layer.",
        "counter",
        |m| m.protocol_errors_total.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_auth_failures_total",
        "Requests refused for a missing or wrong token.",
        "counter",
        |m| m.auth_failures_total.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_overloaded_total",
        "Requests answered 429.",
        "counter",
        |m| m.overloaded_total.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_forwarded_commands_total",
        "Commands sent to another shard.",
        "counter",
        |m| m.forwarded_total.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_kv_keys",
        "KV keys held in memory (expired and deleted ones until the sweep frees them).",
        "gauge",
        |m| m.kv_slots.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_kv_index_bytes",
        "Heap bytes of the KV key indexes.",
        "gauge",
        |m| m.kv_index_bytes.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_log_entry_bytes",
        "Bytes of entries in the log's segments.",
        "gauge",
        |m| m.log_entry_bytes.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_log_dead_bytes",
        "Bytes of log entries nothing needs any more (compaction reclaims them).",
        "gauge",
        |m| m.log_dead_bytes.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_queue_messages",
        "Queue messages held (ready, delayed, leased, dead-lettered).",
        "gauge",
        |m| m.queue_messages.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_stream_records",
        "Stream records retained.",
        "gauge",
        |m| m.stream_records.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_ts_series",
        "Time series held (measurement + tags + field).",
        "gauge",
        |m| m.ts_series.load(Relaxed),
    );
    per_shard(
        &mut out,
        node,
        "flo_ts_samples",
        "Time-series samples stored, in chunks and heads.",
        "gauge",
        |m| m.ts_samples.load(Relaxed),
    );
    log_metrics(&mut out, node);
    header(
        &mut out,
        "flo_http_responses_total",
        "HTTP responses by shard and status class.",
        "counter",
    );
    for (id, m) in node.metrics.iter().enumerate() {
        for (i, c) in m.responses_by_class.iter().enumerate() {
            let _ = writeln!(
                out,
                "flo_http_responses_total{{shard=\"{id}\",class=\"{}xx\"}} {}",
                i + 1,
                c.load(Relaxed)
            );
        }
    }
    out
}

fn log_metrics(out: &mut String, node: &Node) {
    use crate::log::metrics::{LogMetrics, FSYNC_BUCKETS_S};
    type Get = fn(&LogMetrics) -> u64;
    let counters: [(&str, &str, Get); 11] = [
        ("flo_log_entries_total", "Entries appended to the log.", |m| {
            m.entries_total.get()
        }),
        (
            "flo_log_bytes_total",
            "Bytes appended to the log (framing and padding included).",
            |m| m.bytes_total.get(),
        ),
        ("flo_log_batches_total", "Group-commit batches written.", |m| {
            m.batches_total.get()
        }),
        ("flo_log_fsyncs_total", "fdatasync calls on log segments.", |m| {
            m.fsyncs_total.get()
        }),
        (
            "flo_log_batch_full_total",
            "Appends refused because the open batch was full.",
            |m| m.batch_full_total.get(),
        ),
        ("flo_log_recovered_entries_total", "Entries replayed at start.", |m| {
            m.recovered_entries.get()
        }),
        (
            "flo_log_recovered_bytes_total",
            "Bytes of log replayed at start.",
            |m| m.recovered_bytes.get(),
        ),
        ("flo_snapshots_total", "Snapshots of the shard's state written.", |m| {
            m.snapshots_total.get()
        }),
        ("flo_snapshot_bytes_total", "Bytes of snapshot files written.", |m| {
            m.snapshot_bytes_total.get()
        }),
        (
            "flo_compaction_segments_deleted_total",
            "Log segments deleted by compaction.",
            |m| m.compacted_segments_total.get(),
        ),
        (
            "flo_compaction_copied_bytes_total",
            "Bytes compaction copied to the log's tail to free segments.",
            |m| m.compaction_copied_bytes_total.get(),
        ),
    ];
    for (name, help, get) in counters {
        header(out, name, help, "counter");
        for (id, m) in node.log_metrics.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{id}\"}} {}", get(m));
        }
    }
    header(
        out,
        "flo_log_recovery_seconds",
        "How long the shard's log recovery took.",
        "gauge",
    );
    for (id, m) in node.log_metrics.iter().enumerate() {
        let _ = writeln!(
            out,
            "flo_log_recovery_seconds{{shard=\"{id}\"}} {}",
            m.recovery_ms.get() as f64 / 1000.0
        );
    }
    header(
        out,
        "flo_snapshot_pause_seconds_max",
        "Longest time the shard was held while a snapshot of its state was encoded.",
        "gauge",
    );
    for (id, m) in node.log_metrics.iter().enumerate() {
        let _ = writeln!(
            out,
            "flo_snapshot_pause_seconds_max{{shard=\"{id}\"}} {}",
            m.snapshot_pause_us_max.get() as f64 / 1e6
        );
    }
    header(
        out,
        "flo_log_fsync_seconds",
        "fdatasync latency of log segments.",
        "histogram",
    );
    for (id, m) in node.log_metrics.iter().enumerate() {
        let (buckets, count, sum) = m.fsync_seconds.snapshot();
        for (le, c) in FSYNC_BUCKETS_S.iter().zip(buckets) {
            let _ = writeln!(out, "flo_log_fsync_seconds_bucket{{shard=\"{id}\",le=\"{le}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "flo_log_fsync_seconds_bucket{{shard=\"{id}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "flo_log_fsync_seconds_sum{{shard=\"{id}\"}} {sum}");
        let _ = writeln!(out, "flo_log_fsync_seconds_count{{shard=\"{id}\"}} {count}");
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn per_shard(out: &mut String, node: &Node, name: &str, help: &str, kind: &str, f: impl Fn(&ShardMetrics) -> u64) {
    header(out, name, help, kind);
    for (id, m) in node.metrics.iter().enumerate() {
        let _ = writeln!(out, "{name}{{shard=\"{id}\"}} {}", f(m));
    }
}
