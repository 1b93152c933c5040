//! What the metrics port's `/metrics` shows, in the Prometheus text exposition format 0.0.4
//! ([`super::exposition`] keeps the format's rules): process figures under the standard
//! `process_*` names, then Flo's own families, named by Prometheus conventions (`flo_..._total`
//! for counters, base units `_seconds` and `_bytes`).
//!
//! Labels are bounded: `shard` (the shard count), `state` (four queue states), `route` and `code`
//! (fixed sets, see [`super::requests`]); never a key, queue, stream or path.

use std::sync::atomic::Ordering::Relaxed;

use super::exposition::{Exposition, Kind};
use super::requests::{RequestMetrics, LATENCY_BUCKETS_S};
use super::{ShardMetrics, QUEUE_STATES};
use crate::log::metrics::{LogMetrics, ENTRIES_PER_FSYNC_BUCKETS, FSYNC_BUCKETS_S};
use crate::server::Node;

/// Renders every metric of the node.
pub fn render(node: &Node) -> String {
    let mut e = Exposition::new();
    process(&mut e, node);
    let healthy = node.phase.get() == crate::server::shutdown::Phase::Healthy;
    e.single(
        "flo_up",
        "1 while the server is healthy.",
        Kind::Gauge,
        u8::from(healthy),
    );
    e.family("flo_build_info", "Always 1; the version is in the label.", Kind::Gauge);
    e.sample("flo_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
    e.single("flo_shards", "Number of shards.", Kind::Gauge, node.shard_count());
    e.single(
        "flo_partitions",
        "Number of partitions.",
        Kind::Gauge,
        node.partitioner.partitions(),
    );
    shard_metrics(&mut e, node);
    queue_depths(&mut e, node);
    log_metrics(&mut e, node);
    requests(&mut e, node);
    e.finish()
}

fn process(e: &mut Exposition, node: &Node) {
    let (virtual_bytes, resident_bytes) = super::memory_bytes();
    e.single(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        Kind::Gauge,
        resident_bytes,
    );
    e.single(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        Kind::Gauge,
        virtual_bytes,
    );
    e.single(
        "process_open_fds",
        "Number of open file descriptors.",
        Kind::Gauge,
        super::open_fds(),
    );
    if let Some(max) = super::max_fds() {
        e.single(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            Kind::Gauge,
            max,
        );
    }
    if let Some(cpu) = super::cpu_seconds() {
        e.single(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            Kind::Counter,
            cpu,
        );
    }
    e.single(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds.",
        Kind::Gauge,
        node.started_at_ms / 1000,
    );
}

type ShardGet = fn(&ShardMetrics) -> u64;

fn shard_metrics(e: &mut Exposition, node: &Node) {
    let families: [(&str, &str, Kind, ShardGet); 16] = [
        (
            "flo_ops_total",
            "API operations handled, by the shard that accepted the connection.",
            Kind::Counter,
            |m| m.ops_total.load(Relaxed),
        ),
        (
            "flo_http_connections_active",
            "Open API connections.",
            Kind::Gauge,
            |m| m.connections_active.load(Relaxed),
        ),
        (
            "flo_http_connections_total",
            "API connections accepted.",
            Kind::Counter,
            |m| m.connections_total.load(Relaxed),
        ),
        (
            "flo_http_connections_refused_total",
            "Connections refused at the connection limit.",
            Kind::Counter,
            |m| m.connections_refused_total.load(Relaxed),
        ),
        (
            "flo_http_protocol_errors_total",
            "Requests rejected by the HTTP layer.",
            Kind::Counter,
            |m| m.protocol_errors_total.load(Relaxed),
        ),
        (
            "flo_auth_failures_total",
            "Requests refused for a missing or wrong token.",
            Kind::Counter,
            |m| m.auth_failures_total.load(Relaxed),
        ),
        ("flo_overloaded_total", "Requests answered 429.", Kind::Counter, |m| {
            m.overloaded_total.load(Relaxed)
        }),
        (
            "flo_forwarded_commands_total",
            "Commands sent to another shard.",
            Kind::Counter,
            |m| m.forwarded_total.load(Relaxed),
        ),
        (
            "flo_kv_keys",
            "KV keys held in memory (expired and deleted ones until the sweep frees them).",
            Kind::Gauge,
            |m| m.kv_slots.load(Relaxed),
        ),
        (
            "flo_kv_index_bytes",
            "Heap bytes of the KV key indexes.",
            Kind::Gauge,
            |m| m.kv_index_bytes.load(Relaxed),
        ),
        (
            "flo_log_entry_bytes",
            "Bytes of entries in the log's segments.",
            Kind::Gauge,
            |m| m.log_entry_bytes.load(Relaxed),
        ),
        (
            "flo_log_dead_bytes",
            "Bytes of log entries nothing needs any more (compaction reclaims them).",
            Kind::Gauge,
            |m| m.log_dead_bytes.load(Relaxed),
        ),
        (
            "flo_queue_messages",
            "Queue messages held (ready, delayed, leased, dead-lettered).",
            Kind::Gauge,
            |m| m.queue_messages.load(Relaxed),
        ),
        ("flo_stream_records", "Stream records retained.", Kind::Gauge, |m| {
            m.stream_records.load(Relaxed)
        }),
        (
            "flo_ts_series",
            "Time series held (measurement + tags + field).",
            Kind::Gauge,
            |m| m.ts_series.load(Relaxed),
        ),
        (
            "flo_ts_samples",
            "Time-series points stored, in chunks and heads.",
            Kind::Gauge,
            |m| m.ts_samples.load(Relaxed),
        ),
    ];
    for (name, help, kind, get) in families {
        e.family(name, help, kind);
        for (id, m) in node.metrics.iter().enumerate() {
            e.sample(name, &[("shard", id.to_string().as_str())], get(m));
        }
    }
    e.family(
        "flo_http_responses_total",
        "HTTP responses by shard and status class.",
        Kind::Counter,
    );
    for (id, m) in node.metrics.iter().enumerate() {
        let shard = id.to_string();
        for (i, c) in m.responses_by_class.iter().enumerate() {
            let class = format!("{}xx", i + 1);
            e.sample(
                "flo_http_responses_total",
                &[("shard", shard.as_str()), ("class", class.as_str())],
                c.load(Relaxed),
            );
        }
    }
}

fn queue_depths(e: &mut Exposition, node: &Node) {
    e.family(
        "flo_queue_depth",
        "Queue messages by state (ready, leased, delayed, dlq), as of the last queue sweep.",
        Kind::Gauge,
    );
    for (id, m) in node.metrics.iter().enumerate() {
        let shard = id.to_string();
        for (state, d) in QUEUE_STATES.iter().zip(&m.queue_depth) {
            e.sample(
                "flo_queue_depth",
                &[("shard", shard.as_str()), ("state", state)],
                d.load(Relaxed),
            );
        }
    }
}

type LogGet = fn(&LogMetrics) -> u64;
type LogSeconds = fn(&LogMetrics) -> f64;

fn log_metrics(e: &mut Exposition, node: &Node) {
    let counters: [(&str, &str, LogGet); 15] = [
        (
            "flo_scrub_passes_total",
            "Scrub passes over the data at rest done.",
            |m| m.scrub_passes_total.get(),
        ),
        (
            "flo_scrub_bytes_total",
            "Bytes of segments and snapshots the scrub checked.",
            |m| m.scrub_bytes_total.get(),
        ),
        (
            "flo_scrub_problems_total",
            "Damaged segment or snapshot files the scrub found (each logged as an error).",
            |m| m.scrub_problems_total.get(),
        ),
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
        (
            "flo_log_fsyncs_total",
            "Syncs of log segments: fdatasync calls, and batches written with O_DSYNC.",
            |m| m.fsyncs_total.get(),
        ),
        (
            "flo_log_batch_full_total",
            "Appends refused because the open batch was full.",
            |m| m.batch_full_total.get(),
        ),
        (
            "flo_log_commit_waits_total",
            "Times group commit held a batch back for more entries (log.commit_wait_us).",
            |m| m.commit_waits_total.get(),
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
        e.family(name, help, Kind::Counter);
        for (id, m) in node.log_metrics.iter().enumerate() {
            e.sample(name, &[("shard", id.to_string().as_str())], get(m));
        }
    }
    // Per-shard figures kept in whole units (ms, µs) and shown in seconds.
    let seconds: [(&str, &str, Kind, LogSeconds); 3] = [
        (
            "flo_log_recovery_seconds",
            "How long the shard's recovery (snapshot load and log replay) took at start.",
            Kind::Gauge,
            |m| m.recovery_ms.get() as f64 / 1e3,
        ),
        (
            "flo_log_commit_wait_seconds_total",
            "Time group commit held batches back for more entries.",
            Kind::Counter,
            |m| m.commit_wait_us_total.get() as f64 / 1e6,
        ),
        (
            "flo_snapshot_pause_seconds_max",
            "Longest time the shard was held while a snapshot of its state was encoded.",
            Kind::Gauge,
            |m| m.snapshot_pause_us_max.get() as f64 / 1e6,
        ),
    ];
    for (name, help, kind, get) in seconds {
        e.family(name, help, kind);
        for (id, m) in node.log_metrics.iter().enumerate() {
            e.sample(name, &[("shard", id.to_string().as_str())], get(m));
        }
    }
    e.family(
        "flo_log_fsync_seconds",
        "Sync latency of log segments (an O_DSYNC batch write counts its write too).",
        Kind::Histogram,
    );
    for (id, m) in node.log_metrics.iter().enumerate() {
        let (buckets, count, sum) = m.fsync_seconds.snapshot();
        let count = count.max(buckets.last().copied().unwrap_or(0));
        e.histogram(
            "flo_log_fsync_seconds",
            &[("shard", id.to_string().as_str())],
            &FSYNC_BUCKETS_S,
            &buckets,
            count,
            sum,
        );
    }
    e.family(
        "flo_log_entries_per_fsync",
        "Entries each sync of the log made durable (group commit's yield).",
        Kind::Histogram,
    );
    let bounds = ENTRIES_PER_FSYNC_BUCKETS.map(|b| b as f64);
    for (id, m) in node.log_metrics.iter().enumerate() {
        let (buckets, count, sum) = m.entries_per_fsync.snapshot();
        e.histogram(
            "flo_log_entries_per_fsync",
            &[("shard", id.to_string().as_str())],
            &bounds,
            &buckets,
            count,
            sum as f64,
        );
    }
}

fn requests(e: &mut Exposition, node: &Node) {
    let summed = RequestMetrics::sum(node.metrics.iter().map(|m| &m.requests));
    e.family(
        "flo_http_requests_total",
        "API requests answered, by route and status code (all shards).",
        Kind::Counter,
    );
    for s in &summed {
        e.sample(
            "flo_http_requests_total",
            &[("route", s.route), ("code", s.code.as_str())],
            s.count,
        );
    }
    e.family(
        "flo_http_request_duration_seconds",
        "Time from a request's arrival (head and body read) to its answer, by route and status code.",
        Kind::Histogram,
    );
    for s in &summed {
        e.histogram(
            "flo_http_request_duration_seconds",
            &[("route", s.route), ("code", s.code.as_str())],
            &LATENCY_BUCKETS_S,
            &s.cumulative,
            s.count,
            s.sum_s,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exposition::{lint, samples};
    use crate::metrics::requests::Route;
    use std::time::Duration;

    fn node() -> Node {
        let config = crate::config::Config {
            shards: 2,
            ..Default::default()
        };
        let resolved = crate::config::Resolved {
            bind: std::net::IpAddr::from([127, 0, 0, 1]),
            tokens: Vec::new(),
        };
        Node::new(config, resolved).0
    }

    #[test]
    fn render_is_well_formed_with_every_family_once() {
        let node = node();
        node.metrics[0]
            .requests
            .observe(Route::KvPut, 200, Duration::from_millis(2));
        node.metrics[1]
            .requests
            .observe(Route::KvPut, 200, Duration::from_millis(20));
        node.metrics[1]
            .requests
            .observe(Route::QueueEnqueue, 429, Duration::from_micros(10));
        node.log_metrics[0].entries_per_fsync.observe(5);
        node.log_metrics[0].fsync_seconds.observe(Duration::from_millis(1));
        node.metrics[1].queue_depth[3].store(7, Relaxed);
        let text = render(&node);
        lint(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for family in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "flo_up",
            "flo_kv_keys",
            "flo_queue_depth",
            "flo_stream_records",
            "flo_ts_series",
            "flo_ts_samples",
            "flo_log_entries_total",
            "flo_log_fsync_seconds",
            "flo_log_entries_per_fsync",
            "flo_log_recovery_seconds",
            "flo_compaction_copied_bytes_total",
            "flo_http_connections_active",
            "flo_http_requests_total",
            "flo_http_request_duration_seconds",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family} once\n{text}"
            );
            assert_eq!(text.matches(&format!("# HELP {family} ")).count(), 1, "{family}");
        }
        let all = samples(&text).expect("parse");
        let find = |name: &str, labels: &[(&str, &str)]| {
            all.iter()
                .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
                .map(|s| s.value)
        };
        assert_eq!(
            find("flo_http_requests_total", &[("route", "kv_put"), ("code", "200")]),
            Some(2.0),
            "summed over shards"
        );
        assert_eq!(
            find(
                "flo_http_request_duration_seconds_bucket",
                &[("route", "kv_put"), ("code", "200"), ("le", "0.0025")]
            ),
            Some(1.0)
        );
        assert_eq!(
            find(
                "flo_http_request_duration_seconds_bucket",
                &[("route", "kv_put"), ("code", "200"), ("le", "+Inf")]
            ),
            Some(2.0)
        );
        assert_eq!(
            find(
                "flo_http_requests_total",
                &[("route", "queue_enqueue"), ("code", "429")]
            ),
            Some(1.0)
        );
        assert_eq!(
            find("flo_http_requests_total", &[("route", "kv_get")]),
            None,
            "pairs never seen are not shown"
        );
        assert_eq!(find("flo_queue_depth", &[("shard", "1"), ("state", "dlq")]), Some(7.0));
        assert_eq!(find("flo_log_entries_per_fsync_sum", &[("shard", "0")]), Some(5.0));
        assert_eq!(
            find("flo_log_entries_per_fsync_bucket", &[("shard", "0"), ("le", "4")]),
            Some(0.0)
        );
        assert_eq!(
            find("flo_log_entries_per_fsync_bucket", &[("shard", "0"), ("le", "8")]),
            Some(1.0)
        );
        assert!(find("process_resident_memory_bytes", &[]).is_some_and(|v| v > 0.0));
        assert_eq!(find("flo_up", &[]), Some(0.0), "a node that has not started is not up");
    }
}
