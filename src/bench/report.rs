//! Measurements and the final report of `flo bench`.
//!
//! This module owns what is measured ([`Stats`], one per load thread, merged
//! at the end), the figures derived from it ([`Summary`], percentiles from the
//! latency histogram) and their two renderings: the fio-like text report and
//! the `--json` object.
//!
//! Besides the latency of every answer, 2xx answers and rejections (429 and 503, the
//! server's "not now, retry later") each have their own histogram, so an overloaded run
//! shows how fast the excess was turned away apart from how slow the served requests were.
//! Goodput is 2xx answers per second. With `--series` the run is also cut into seconds by
//! each request's start (its intended send time in an open loop), each second with its own
//! counts and latency figures, to see when a server falls behind and when it recovers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histogram tracks; slower responses are clamped to it.
pub const LATENCY_MAX_US: u64 = 60_000_000;
/// Significant decimal digits kept by the latency histogram.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// HTTP status codes are three digits (httparse enforces it).
const STATUS_CODES: usize = 1000;

/// Failed requests, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Connecting (or reconnecting) to the server failed.
    pub connect: u64,
    /// Writing the request or reading the response failed, including the
    /// server closing the connection before the response was complete.
    pub io: u64,
    /// The response was not valid HTTP/1.1 or could not be framed.
    pub http: u64,
    /// The request was still unanswered when the run ended (drain grace over).
    pub timeout: u64,
}

impl ErrorCounts {
    pub fn total(&self) -> u64 {
        self.connect + self.io + self.http + self.timeout
    }

    fn add(&mut self, other: &ErrorCounts) {
        self.connect += other.connect;
        self.io += other.io;
        self.http += other.http;
        self.timeout += other.timeout;
    }
}

/// Significant decimal digits of the per-second histograms (smaller, one per second).
const SERIES_SIGNIFICANT_DIGITS: u8 = 2;
/// Seconds a series holds at most (a week); later seconds are not recorded.
const SERIES_MAX_SECONDS: u64 = 7 * 24 * 3600;

/// Whether `status` is a rejection: the server asked the client to come back later.
pub fn is_rejection(status: u16) -> bool {
    status == 429 || status == 503
}

/// One second of a run's series (requests that started in that second).
#[derive(Clone, Debug)]
pub struct Second {
    /// Requests sent.
    pub sent: u64,
    /// 2xx answers.
    pub ok: u64,
    /// 429 and 503 answers.
    pub rejected: u64,
    /// Other answers.
    pub other: u64,
    /// Requests that failed without an answer.
    pub errors: u64,
    pub ok_latency_us: Histogram<u64>,
    pub rejected_latency_us: Histogram<u64>,
}

impl Second {
    fn new() -> Second {
        let histogram = || {
            Histogram::new_with_bounds(1, LATENCY_MAX_US, SERIES_SIGNIFICANT_DIGITS)
                .expect("constant histogram bounds are valid")
        };
        Second {
            sent: 0,
            ok: 0,
            rejected: 0,
            other: 0,
            errors: 0,
            ok_latency_us: histogram(),
            rejected_latency_us: histogram(),
        }
    }

    fn merge(&mut self, other: &Second) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.rejected += other.rejected;
        self.other += other.other;
        self.errors += other.errors;
        add_histogram(&mut self.ok_latency_us, &other.ok_latency_us);
        add_histogram(&mut self.rejected_latency_us, &other.rejected_latency_us);
    }
}

/// What happened to one request, for the series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Answered { status: u16, latency_us: u64 },
    Failed,
}

/// Measurements of one load thread (or, after [`Stats::merge`], of the run).
/// Only requests started after the warmup are recorded here.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Latency of every answer, and of 2xx answers and rejections (429, 503) apart.
    pub latency_us: Histogram<u64>,
    pub latency_ok_us: Histogram<u64>,
    pub latency_rejected_us: Histogram<u64>,
    /// Requests sent.
    pub sent: u64,
    /// Complete responses, whatever their status.
    pub responses: u64,
    /// Bytes of complete responses (head and body).
    pub response_bytes: u64,
    /// Response count indexed by status code.
    status_counts: Vec<u64>,
    pub errors: ErrorCounts,
    /// Queue workloads: messages whose ack the server confirmed.
    pub messages_acked: u64,
    /// Stream workloads: records appended or read, and their payload bytes.
    pub records: u64,
    pub payload_bytes: u64,
    /// `kv-verify`: keys missing or holding another value.
    pub lost: u64,
    /// Per-second figures, by the second (since the measurement started) a request started
    /// in; `None` unless asked for.
    pub series: Option<Vec<Second>>,
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            latency_us: new_latency_histogram(),
            latency_ok_us: new_latency_histogram(),
            latency_rejected_us: new_latency_histogram(),
            sent: 0,
            lost: 0,
            series: None,
            responses: 0,
            response_bytes: 0,
            status_counts: vec![0; STATUS_CODES],
            errors: ErrorCounts::default(),
            messages_acked: 0,
            records: 0,
            payload_bytes: 0,
        }
    }

    /// The same, recording a series too.
    pub fn with_series() -> Self {
        Stats {
            series: Some(Vec::new()),
            ..Stats::new()
        }
    }

    /// Records one complete response.
    pub fn record_response(&mut self, status: u16, response_bytes: u64, latency_us: u64) {
        self.latency_us.saturating_record(latency_us);
        if (200..300).contains(&status) {
            self.latency_ok_us.saturating_record(latency_us);
        } else if is_rejection(status) {
            self.latency_rejected_us.saturating_record(latency_us);
        }
        self.responses += 1;
        self.response_bytes += response_bytes;
        if let Some(count) = self.status_counts.get_mut(usize::from(status)) {
            *count += 1;
        }
    }

    /// Counts what happened to a request that started `second` seconds into the measurement
    /// in the series (when there is one).
    pub fn record_in_second(&mut self, second: u64, outcome: Outcome) {
        let Some(series) = &mut self.series else { return };
        if second >= SERIES_MAX_SECONDS {
            return;
        }
        let at = second as usize;
        if series.len() <= at {
            series.resize_with(at + 1, Second::new);
        }
        let s = &mut series[at];
        match outcome {
            Outcome::Sent => s.sent += 1,
            Outcome::Failed => s.errors += 1,
            Outcome::Answered { status, latency_us } if (200..300).contains(&status) => {
                s.ok += 1;
                s.ok_latency_us.saturating_record(latency_us);
            }
            Outcome::Answered { status, latency_us } if is_rejection(status) => {
                s.rejected += 1;
                s.rejected_latency_us.saturating_record(latency_us);
            }
            Outcome::Answered { .. } => s.other += 1,
        }
    }

    /// Adds `other`'s measurements to these.
    pub fn merge(&mut self, other: &Stats) {
        add_histogram(&mut self.latency_us, &other.latency_us);
        add_histogram(&mut self.latency_ok_us, &other.latency_ok_us);
        add_histogram(&mut self.latency_rejected_us, &other.latency_rejected_us);
        self.sent += other.sent;
        self.lost += other.lost;
        if let (Some(mine), Some(theirs)) = (&mut self.series, &other.series) {
            if mine.len() < theirs.len() {
                mine.resize_with(theirs.len(), Second::new);
            }
            for (m, t) in mine.iter_mut().zip(theirs) {
                m.merge(t);
            }
        }
        self.responses += other.responses;
        self.response_bytes += other.response_bytes;
        for (mine, theirs) in self.status_counts.iter_mut().zip(&other.status_counts) {
            *mine += theirs;
        }
        self.errors.add(&other.errors);
        self.messages_acked += other.messages_acked;
        self.records += other.records;
        self.payload_bytes += other.payload_bytes;
    }

    /// Non-zero status counts, by status code.
    pub fn status_counts(&self) -> BTreeMap<u16, u64> {
        self.status_counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .filter_map(|(status, count)| Some((u16::try_from(status).ok()?, *count)))
            .collect()
    }
}

/// Adds `other` into `into`. Histograms of one kind share their bounds, so adding cannot run
/// out of range; saturate anyway rather than lose the run.
fn add_histogram(into: &mut Histogram<u64>, other: &Histogram<u64>) {
    if into.add(other).is_err() {
        for value in other.iter_recorded() {
            into.saturating_record_n(value.value_iterated_to(), value.count_at_value());
        }
    }
}

fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, LATENCY_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl LatencySummary {
    /// Percentiles of a latency histogram; all zero when it is empty.
    pub fn from_histogram(latency_us: &Histogram<u64>) -> Self {
        if latency_us.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50: latency_us.value_at_quantile(0.50),
            p90: latency_us.value_at_quantile(0.90),
            p99: latency_us.value_at_quantile(0.99),
            p999: latency_us.value_at_quantile(0.999),
            max: latency_us.max(),
            mean: latency_us.mean(),
        }
    }
}

/// The figures of a finished run, as reported.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub workload: String,
    pub host: String,
    pub connections: usize,
    pub threads: usize,
    /// Measured wall time (warmup excluded).
    pub duration_s: f64,
    /// Warmup before measuring, reported when non-zero.
    pub warmup_s: f64,
    /// Complete responses, whatever their status.
    pub requests_ok: u64,
    pub errors: ErrorCounts,
    pub response_bytes: u64,
    pub latency_us: LatencySummary,
    pub status: BTreeMap<u16, u64>,
    /// Queue workloads: messages acked (0 for the others).
    pub messages_acked: u64,
    /// Stream workloads: records appended or read, and their payload bytes; ts-ingest: points
    /// (lines) written (0 for the others).
    pub records: u64,
    pub payload_bytes: u64,
    /// 2xx answers and their latency; rejections (429, 503) and theirs.
    pub ok: u64,
    pub latency_ok_us: LatencySummary,
    pub rejected: u64,
    pub latency_rejected_us: LatencySummary,
    /// Requests sent.
    pub sent: u64,
    /// Open loop: requests due in the measured time (sent or not).
    pub offered: Option<u64>,
    /// `kv-verify`: keys missing or holding another value.
    pub lost: u64,
    /// Per-second figures (empty unless asked for).
    pub series: Vec<SecondSummary>,
}

/// One second of the series, as reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecondSummary {
    /// Seconds since the measurement started.
    pub t: u64,
    pub sent: u64,
    pub ok: u64,
    pub rejected: u64,
    pub other: u64,
    pub errors: u64,
    pub ok_p50_us: u64,
    pub ok_p99_us: u64,
    pub ok_max_us: u64,
    pub rejected_p99_us: u64,
}

/// The `--json` object. Field order is the output order.
#[derive(Serialize)]
struct JsonReport<'a> {
    workload: &'a str,
    host: &'a str,
    connections: usize,
    threads: usize,
    duration_s: f64,
    warmup_s: f64,
    requests_ok: u64,
    errors: u64,
    error_kinds: ErrorCounts,
    ops_per_sec: f64,
    mb_per_sec: f64,
    response_bytes: u64,
    latency_us: LatencySummary,
    status: BTreeMap<String, u64>,
    messages_acked: u64,
    jobs_per_sec: f64,
    records: u64,
    records_per_sec: f64,
    payload_mb_per_sec: f64,
    ok_2xx: u64,
    goodput_per_sec: f64,
    latency_2xx_us: LatencySummary,
    rejected: u64,
    latency_rejected_us: LatencySummary,
    sent: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    offered: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsent: Option<u64>,
    lost: u64,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    series: &'a [SecondSummary],
}

impl Summary {
    /// Builds the summary of a run from its merged measurements.
    pub fn new(run: RunInfo<'_>, stats: &Stats) -> Self {
        let series = stats.series.as_deref().unwrap_or_default();
        let series = series
            .iter()
            .enumerate()
            .map(|(t, s)| {
                let ok = LatencySummary::from_histogram(&s.ok_latency_us);
                SecondSummary {
                    t: t as u64,
                    sent: s.sent,
                    ok: s.ok,
                    rejected: s.rejected,
                    other: s.other,
                    errors: s.errors,
                    ok_p50_us: ok.p50,
                    ok_p99_us: ok.p99,
                    ok_max_us: ok.max,
                    rejected_p99_us: LatencySummary::from_histogram(&s.rejected_latency_us).p99,
                }
            })
            .collect();
        Summary {
            ok: stats.latency_ok_us.len(),
            latency_ok_us: LatencySummary::from_histogram(&stats.latency_ok_us),
            rejected: stats.latency_rejected_us.len(),
            latency_rejected_us: LatencySummary::from_histogram(&stats.latency_rejected_us),
            sent: stats.sent,
            offered: run.offered,
            lost: stats.lost,
            series,
            workload: run.workload.to_owned(),
            host: run.host.to_owned(),
            connections: run.connections,
            threads: run.threads,
            duration_s: run.duration_s,
            warmup_s: run.warmup_s,
            requests_ok: stats.responses,
            errors: stats.errors,
            response_bytes: stats.response_bytes,
            latency_us: LatencySummary::from_histogram(&stats.latency_us),
            status: stats.status_counts(),
            messages_acked: stats.messages_acked,
            records: stats.records,
            payload_bytes: stats.payload_bytes,
        }
    }

    /// Complete responses per second of measured time.
    pub fn ops_per_sec(&self) -> f64 {
        per_second(self.requests_ok as f64, self.duration_s)
    }

    /// 2xx answers per second of measured time.
    pub fn goodput_per_sec(&self) -> f64 {
        per_second(self.ok as f64, self.duration_s)
    }

    /// Open loop: requests due in the measured time that were never sent (every connection
    /// was busy until the end).
    pub fn unsent(&self) -> Option<u64> {
        self.offered.map(|o| o.saturating_sub(self.sent))
    }

    /// Response megabytes (10^6 bytes) per second of measured time.
    pub fn mb_per_sec(&self) -> f64 {
        per_second(self.response_bytes as f64 / 1e6, self.duration_s)
    }

    /// The fio-like text report, one trailing newline.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "flo bench: workload={} host={} connections={} threads={} duration={:.2}s",
            self.workload, self.host, self.connections, self.threads, self.duration_s
        );
        if self.warmup_s > 0.0 {
            let _ = write!(out, " warmup={:.2}s", self.warmup_s);
        }
        let _ = writeln!(
            out,
            "\n  requests: {} ok, {} errors   ops/s: {:.1}   MB/s: {:.1} (responses)",
            self.requests_ok,
            self.errors.total(),
            self.ops_per_sec(),
            self.mb_per_sec()
        );
        let l = &self.latency_us;
        let _ = writeln!(
            out,
            "  latency (us): p50={} p90={} p99={} p99.9={} max={} mean={:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        out.push_str("  status:");
        if self.status.is_empty() {
            out.push_str(" none");
        }
        for (status, count) in &self.status {
            let _ = write!(out, " {status}={count}");
        }
        let e = &self.errors;
        let _ = writeln!(
            out,
            "\n  errors: connect={} io={} http={} timeout={}",
            e.connect, e.io, e.http, e.timeout
        );
        if self.rejected > 0 || self.ok != self.requests_ok {
            let (o, r) = (&self.latency_ok_us, &self.latency_rejected_us);
            let _ = writeln!(
                out,
                "  2xx: {} (goodput {:.1}/s) latency (us): p50={} p99={} max={}",
                self.ok,
                self.goodput_per_sec(),
                o.p50,
                o.p99,
                o.max
            );
            let _ = writeln!(
                out,
                "  429/503: {} latency (us): p50={} p99={} max={}",
                self.rejected, r.p50, r.p99, r.max
            );
        }
        if let (Some(offered), Some(unsent)) = (self.offered, self.unsent()) {
            let _ = writeln!(
                out,
                "  open loop: {offered} due, {} sent, {unsent} never sent (no connection free)",
                self.sent
            );
        }
        if self.workload == "kv-verify" {
            let _ = writeln!(out, "  verify: {} found, {} lost", self.records, self.lost);
        }
        if !self.series.is_empty() {
            out.push_str("  second   sent     2xx  429/503  other  errors  2xx p50  2xx p99  2xx max  rej p99 (us)\n");
            for s in &self.series {
                let _ = writeln!(
                    out,
                    "  {:>6} {:>6} {:>7} {:>8} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8}",
                    s.t,
                    s.sent,
                    s.ok,
                    s.rejected,
                    s.other,
                    s.errors,
                    s.ok_p50_us,
                    s.ok_p99_us,
                    s.ok_max_us,
                    s.rejected_p99_us
                );
            }
        }
        if self.messages_acked > 0 {
            let _ = writeln!(
                out,
                "  queue: {} messages acked   jobs/s: {:.1}",
                self.messages_acked,
                per_second(self.messages_acked as f64, self.duration_s)
            );
        }
        if self.workload == "kv-verify" {
            // Reported above.
        } else if self.records > 0 && self.workload.starts_with("ts-") {
            let _ = writeln!(
                out,
                "  ts: {} points (lines)   points/s: {:.1}",
                self.records,
                per_second(self.records as f64, self.duration_s)
            );
        } else if self.records > 0 {
            let _ = writeln!(
                out,
                "  stream: {} records   records/s: {:.1}   payload MB/s: {:.1}",
                self.records,
                per_second(self.records as f64, self.duration_s),
                per_second(self.payload_bytes as f64 / 1e6, self.duration_s)
            );
        }
        out
    }

    /// The `--json` report: one JSON object, no trailing newline.
    pub fn to_json(&self) -> String {
        let report = JsonReport {
            workload: &self.workload,
            host: &self.host,
            connections: self.connections,
            threads: self.threads,
            duration_s: self.duration_s,
            warmup_s: self.warmup_s,
            requests_ok: self.requests_ok,
            errors: self.errors.total(),
            error_kinds: self.errors,
            ops_per_sec: self.ops_per_sec(),
            mb_per_sec: self.mb_per_sec(),
            response_bytes: self.response_bytes,
            latency_us: self.latency_us,
            status: self
                .status
                .iter()
                .map(|(status, count)| (status.to_string(), *count))
                .collect(),
            messages_acked: self.messages_acked,
            jobs_per_sec: per_second(self.messages_acked as f64, self.duration_s),
            records: self.records,
            records_per_sec: per_second(self.records as f64, self.duration_s),
            payload_mb_per_sec: per_second(self.payload_bytes as f64 / 1e6, self.duration_s),
            ok_2xx: self.ok,
            goodput_per_sec: self.goodput_per_sec(),
            latency_2xx_us: self.latency_ok_us,
            rejected: self.rejected,
            latency_rejected_us: self.latency_rejected_us,
            sent: self.sent,
            offered: self.offered,
            unsent: self.unsent(),
            lost: self.lost,
            series: &self.series,
        };
        // Plain numbers, strings and maps with string keys always serialize.
        serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// What the run was, for the report header.
#[derive(Clone, Copy, Debug)]
pub struct RunInfo<'a> {
    pub workload: &'a str,
    pub host: &'a str,
    pub connections: usize,
    pub threads: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Open loop: requests due in the measured time.
    pub offered: Option<u64>,
}

fn per_second(amount: f64, duration_s: f64) -> f64 {
    if duration_s > 0.0 {
        amount / duration_s
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_info() -> RunInfo<'static> {
        RunInfo {
            workload: "status",
            host: "127.0.0.1:9002",
            connections: 64,
            threads: 2,
            duration_s: 10.0,
            warmup_s: 0.0,
            offered: None,
        }
    }

    /// True when `value` is within the histogram's 3-digit precision of `expected`.
    fn close(value: u64, expected: u64) -> bool {
        value.abs_diff(expected) <= expected / 500 + 1
    }

    #[test]
    fn percentiles_of_uniform_latencies() {
        let mut stats = Stats::new();
        for latency_us in 1..=10_000 {
            stats.record_response(200, 100, latency_us);
        }
        let l = LatencySummary::from_histogram(&stats.latency_us);
        assert!(close(l.p50, 5_000), "p50={}", l.p50);
        assert!(close(l.p90, 9_000), "p90={}", l.p90);
        assert!(close(l.p99, 9_900), "p99={}", l.p99);
        assert!(close(l.p999, 9_990), "p999={}", l.p999);
        assert!(close(l.max, 10_000), "max={}", l.max);
        assert!((l.mean - 5_000.5).abs() < 5.0, "mean={}", l.mean);
    }

    #[test]
    fn percentiles_pick_the_tail() {
        let mut stats = Stats::new();
        for _ in 0..990 {
            stats.record_response(200, 0, 100);
        }
        for _ in 0..10 {
            stats.record_response(200, 0, 50_000);
        }
        let l = LatencySummary::from_histogram(&stats.latency_us);
        assert_eq!(l.p50, 100);
        assert_eq!(l.p90, 100);
        assert_eq!(l.p99, 100);
        assert!(close(l.p999, 50_000), "p999={}", l.p999);
        assert!(close(l.max, 50_000), "max={}", l.max);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let stats = Stats::new();
        assert_eq!(
            LatencySummary::from_histogram(&stats.latency_us),
            LatencySummary::default()
        );
    }

    #[test]
    fn latency_beyond_range_is_clamped() {
        let mut stats = Stats::new();
        stats.record_response(200, 0, 10 * LATENCY_MAX_US);
        assert_eq!(stats.responses, 1);
        assert!(stats.latency_us.max() >= LATENCY_MAX_US);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.record_response(200, 10, 100);
        b.record_response(200, 20, 300);
        b.record_response(404, 5, 200);
        b.errors.io = 2;
        a.merge(&b);
        assert_eq!(a.responses, 3);
        assert_eq!(a.response_bytes, 35);
        assert_eq!(a.latency_us.len(), 3);
        assert_eq!(a.status_counts(), BTreeMap::from([(200, 2), (404, 1)]));
        assert_eq!(a.errors.io, 2);
        assert_eq!(a.errors.total(), 2);
    }

    #[test]
    fn text_report_lines() {
        let mut stats = Stats::new();
        for _ in 0..1000 {
            stats.record_response(200, 1000, 1000);
        }
        stats.errors.connect = 1;
        let text = Summary::new(run_info(), &stats).to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(
            lines[0],
            "flo bench: workload=status host=127.0.0.1:9002 connections=64 threads=2 duration=10.00s"
        );
        assert_eq!(
            lines[1],
            "  requests: 1000 ok, 1 errors   ops/s: 100.0   MB/s: 0.1 (responses)"
        );
        assert_eq!(
            lines[2],
            "  latency (us): p50=1000 p90=1000 p99=1000 p99.9=1000 max=1000 mean=1000.0"
        );
        assert_eq!(lines[3], "  status: 200=1000");
        assert_eq!(lines[4], "  errors: connect=1 io=0 http=0 timeout=0");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn json_report_shape() {
        let mut stats = Stats::new();
        for _ in 0..30 {
            stats.record_response(200, 500, 2000);
        }
        stats.record_response(503, 100, 10);
        stats.errors.http = 4;
        let json = Summary::new(run_info(), &stats).to_json();
        assert!(!json.contains('\n'), "one line: {json}");
        let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(v["workload"], "status");
        assert_eq!(v["host"], "127.0.0.1:9002");
        assert_eq!(v["connections"], 64);
        assert_eq!(v["threads"], 2);
        assert_eq!(v["duration_s"], 10.0);
        assert_eq!(v["requests_ok"], 31);
        assert_eq!(v["errors"], 4);
        assert_eq!(v["error_kinds"]["http"], 4);
        assert_eq!(v["ops_per_sec"], 3.1);
        assert_eq!(v["mb_per_sec"], 15_100.0 / 1e6 / 10.0);
        for key in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v["latency_us"][key].is_u64(), "latency_us.{key}: {v}");
        }
        assert!(v["latency_us"]["mean"].is_f64());
        assert_eq!(v["latency_us"]["p50"], 2000);
        assert_eq!(v["status"], serde_json::json!({"200": 30, "503": 1}));
    }

    #[test]
    fn rejections_have_their_own_latency_and_goodput_counts_2xx_only() {
        let mut stats = Stats::new();
        for _ in 0..100 {
            stats.record_response(200, 10, 5_000);
        }
        for _ in 0..300 {
            stats.record_response(429, 10, 200);
        }
        stats.record_response(503, 10, 300);
        stats.record_response(404, 10, 40_000);
        let run = RunInfo {
            duration_s: 2.0,
            offered: Some(450),
            ..run_info()
        };
        let summary = Summary::new(run, &stats);
        assert_eq!(summary.requests_ok, 402);
        assert_eq!(summary.ok, 100);
        assert_eq!(summary.rejected, 301);
        assert_eq!(summary.goodput_per_sec(), 50.0);
        assert!(close(summary.latency_ok_us.p99, 5_000));
        assert!(close(summary.latency_rejected_us.p50, 200));
        assert!(close(summary.latency_rejected_us.max, 300));
        assert!(close(summary.latency_us.max, 40_000), "all answers keep one histogram");
        assert_eq!(summary.unsent(), Some(450));
        let text = summary.to_text();
        let (o, r) = (summary.latency_ok_us, summary.latency_rejected_us);
        let ok_line = format!(
            "  2xx: 100 (goodput 50.0/s) latency (us): p50={} p99={} max={}\n",
            o.p50, o.p99, o.max
        );
        assert!(text.contains(&ok_line), "{text}");
        assert!(
            text.contains(&format!("  429/503: 301 latency (us): p50={} p99=", r.p50)),
            "{text}"
        );
        assert!(text.contains("  open loop: 450 due, 0 sent, 450 never sent"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&summary.to_json()).unwrap();
        assert_eq!(v["ok_2xx"], 100);
        assert_eq!(v["rejected"], 301);
        assert_eq!(v["goodput_per_sec"], 50.0);
        assert_eq!(v["offered"], 450);
        assert_eq!(v["unsent"], 450);
        assert_eq!(v["latency_2xx_us"]["p50"], o.p50);
        assert_eq!(v["latency_rejected_us"]["p50"], r.p50);
        assert!(v.get("series").is_none(), "no series unless asked for");
    }

    #[test]
    fn the_series_counts_each_second_apart_and_merges_by_second() {
        let mut a = Stats::with_series();
        let mut b = Stats::with_series();
        a.record_in_second(0, Outcome::Sent);
        a.record_in_second(
            0,
            Outcome::Answered {
                status: 200,
                latency_us: 1_000,
            },
        );
        a.record_in_second(2, Outcome::Sent);
        a.record_in_second(
            2,
            Outcome::Answered {
                status: 429,
                latency_us: 100,
            },
        );
        b.record_in_second(0, Outcome::Sent);
        b.record_in_second(
            0,
            Outcome::Answered {
                status: 200,
                latency_us: 3_000,
            },
        );
        b.record_in_second(3, Outcome::Sent);
        b.record_in_second(3, Outcome::Failed);
        b.record_in_second(
            3,
            Outcome::Answered {
                status: 404,
                latency_us: 9,
            },
        );
        a.record_in_second(SERIES_MAX_SECONDS, Outcome::Sent);
        a.merge(&b);
        let summary = Summary::new(run_info(), &a);
        let s = &summary.series;
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].t, s[0].sent, s[0].ok, s[0].rejected), (0, 2, 2, 0));
        assert!(s[0].ok_p50_us.abs_diff(1_000) <= 10, "{:?}", s[0]);
        assert!(s[0].ok_max_us.abs_diff(3_000) <= 30, "{:?}", s[0]);
        assert_eq!((s[1].sent, s[1].ok, s[1].ok_p99_us), (0, 0, 0));
        assert_eq!((s[2].sent, s[2].rejected, s[2].rejected_p99_us), (1, 1, 100));
        assert_eq!((s[3].sent, s[3].errors, s[3].other, s[3].ok), (1, 1, 1, 0));
        let v: serde_json::Value = serde_json::from_str(&summary.to_json()).unwrap();
        assert_eq!(v["series"].as_array().unwrap().len(), 4);
        assert_eq!(v["series"][2]["rejected"], 1);
        let text = summary.to_text();
        assert!(text.contains("2xx p99"), "{text}");
        assert_eq!(text.lines().filter(|l| l.trim_start().starts_with('2')).count(), 1);
        // Without a series nothing is kept.
        let mut plain = Stats::new();
        plain.record_in_second(0, Outcome::Sent);
        assert!(plain.series.is_none());
    }
}
