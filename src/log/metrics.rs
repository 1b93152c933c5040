//! The log's counters and the fsync latency histogram (fixed buckets, Prometheus style),
//! written by the shard's flusher and read by the metrics endpoints.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
    /// Raises the value to `v` if it is lower (a high-water mark).
    pub fn max(&self, v: u64) {
        self.0.fetch_max(v, Relaxed);
    }
}

/// Upper bounds of the fsync latency buckets, in seconds.
pub const FSYNC_BUCKETS_S: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A latency histogram with the buckets above (+Inf implied).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; FSYNC_BUCKETS_S.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = FSYNC_BUCKETS_S.iter().position(|&b| s <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Cumulative counts per bucket (Prometheus `le` semantics), then the total count and sum.
    pub fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let mut acc = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Relaxed);
                acc
            })
            .collect();
        (
            cumulative,
            self.count.load(Relaxed),
            self.sum_ns.load(Relaxed) as f64 / 1e9,
        )
    }
}

/// Upper bounds of the entries-per-fdatasync buckets.
pub const ENTRIES_PER_FSYNC_BUCKETS: [u64; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

/// How many entries each fdatasync made durable (group commit's yield), with the buckets
/// above (+Inf implied).
#[derive(Debug, Default)]
pub struct CountHistogram {
    buckets: [AtomicU64; ENTRIES_PER_FSYNC_BUCKETS.len()],
    count: AtomicU64,
    sum: AtomicU64,
}

impl CountHistogram {
    pub fn observe(&self, n: u64) {
        if let Some(i) = ENTRIES_PER_FSYNC_BUCKETS.iter().position(|&b| n <= b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(n, Relaxed);
    }

    /// Cumulative counts per bucket, then the total count and sum.
    pub fn snapshot(&self) -> (Vec<u64>, u64, u64) {
        let mut acc = 0;
        let cumulative: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                acc += b.load(Relaxed);
                acc
            })
            .collect();
        (cumulative, self.count.load(Relaxed).max(acc), self.sum.load(Relaxed))
    }
}

/// One shard's log figures.
#[derive(Debug, Default)]
pub struct LogMetrics {
    pub entries_total: Counter,
    pub bytes_total: Counter,
    pub batches_total: Counter,
    pub fsyncs_total: Counter,
    pub batch_full_total: Counter,
    /// Group commit's waits for more entries before a write, and their total length.
    pub commit_waits_total: Counter,
    pub commit_wait_us_total: Counter,
    pub fsync_seconds: Histogram,
    /// Entries each fdatasync of the writer made durable.
    pub entries_per_fsync: CountHistogram,
    /// Recovery: entries replayed, bytes scanned, and how long it took.
    pub recovered_entries: Counter,
    pub recovered_bytes: Counter,
    pub recovery_ms: Counter,
    /// Snapshots: how many were written, their bytes, and the longest the shard was held
    /// while one was encoded (microseconds).
    pub snapshots_total: Counter,
    pub snapshot_bytes_total: Counter,
    pub snapshot_pause_us_max: Counter,
    /// Compaction: segments freed and the bytes it copied to free them.
    pub compacted_segments_total: Counter,
    pub compaction_copied_bytes_total: Counter,
    /// Scrub passes done, the bytes they checked, and the damaged files they found.
    pub scrub_passes_total: Counter,
    pub scrub_bytes_total: Counter,
    pub scrub_problems_total: Counter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(5));
        let (b, count, sum) = h.snapshot();
        assert_eq!(b[0], 1);
        assert_eq!(b[5], 2);
        assert_eq!(*b.last().unwrap(), 2, "5 s is only in +Inf");
        assert_eq!(count, 3);
        assert!((sum - 5.00305).abs() < 1e-6);
    }

    #[test]
    fn entries_per_fsync_buckets() {
        let h = CountHistogram::default();
        for n in [1, 3, 64, 10_000] {
            h.observe(n);
        }
        let (b, count, sum) = h.snapshot();
        assert_eq!((b[0], b[1], b[2], b[6]), (1, 1, 2, 3), "1 | 2 | 3 in 4 | 64 in 64");
        assert_eq!(*b.last().expect("buckets"), 3, "10 000 only in +Inf");
        assert_eq!((count, sum), (4, 10_068));
    }
}
