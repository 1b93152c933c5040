//! Counters: one [`ShardMetrics`] per shard (written by its shard, read by any), the
//! operations-per-second window, and process figures read from `/proc`.
//!
//! Counters are relaxed atomics: each is written by one shard thread and only summed by
//! readers, so no ordering between counters is promised or needed.

pub mod exposition;
pub mod prometheus;
pub mod requests;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Samples kept for the ops/s window, one per second.
const RATE_SLOTS: usize = 8;

/// The `state` labels of [`ShardMetrics::queue_depth`], in its order.
pub const QUEUE_STATES: [&str; 4] = ["ready", "leased", "delayed", "dlq"];

/// One shard's counters.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// API operations (routed requests, whatever their answer).
    pub ops_total: AtomicU64,
    /// Requests rejected by the HTTP layer before routing.
    pub protocol_errors_total: AtomicU64,
    pub connections_active: AtomicU64,
    pub connections_total: AtomicU64,
    /// Connections refused because `http.max_connections` was reached.
    pub connections_refused_total: AtomicU64,
    pub auth_failures_total: AtomicU64,
    /// Requests answered 429 (full inbox, too many connections, too many writes in progress).
    pub overloaded_total: AtomicU64,
    /// Commands this shard sent to other shards.
    pub forwarded_total: AtomicU64,
    /// Readers long-polling this shard now.
    pub waiters: AtomicU64,
    /// KV slots in memory (visible or not yet swept), as of the last sweep.
    pub kv_slots: AtomicU64,
    /// Heap bytes of the KV key indexes, as of the last sweep.
    pub kv_index_bytes: AtomicU64,
    /// Bytes of log entries in this shard's segments, and how many of them nothing needs any
    /// more (overwritten, deleted, expired), as of the last sweep.
    pub log_entry_bytes: AtomicU64,
    pub log_dead_bytes: AtomicU64,
    /// Queue messages held (every state), as of the last queue timer sweep.
    pub queue_messages: AtomicU64,
    /// Queue messages by state ([`QUEUE_STATES`]), as of the last queue timer sweep.
    pub queue_depth: [AtomicU64; 4],
    /// Stream records retained, as of the last stream timer tick.
    pub stream_records: AtomicU64,
    /// Time series held, and their stored samples, as of the last time-series timer tick.
    pub ts_series: AtomicU64,
    pub ts_samples: AtomicU64,
    /// Responses by status class: index 0 = 1xx .. 4 = 5xx.
    pub responses_by_class: [AtomicU64; 5],
    /// Requests by route and status, with their latency.
    pub requests: requests::RequestMetrics,
    window: RateWindow,
}

impl ShardMetrics {
    pub fn count_response(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses_by_class[class].fetch_add(1, Relaxed);
    }

    /// Records a sample of `ops_total` for the rate window; called once a second by the shard.
    pub fn sample_rate(&self, now_ms: u64) {
        self.window.push(now_ms, self.ops_total.load(Relaxed));
    }

    /// Operations per second over the last few seconds.
    pub fn ops_per_second(&self, now_ms: u64) -> f64 {
        self.window.rate(now_ms, self.ops_total.load(Relaxed))
    }
}

#[derive(Debug, Default)]
struct RateWindow {
    /// (time in ms, ops_total at that time); time 0 = empty slot.
    slots: [(AtomicU64, AtomicU64); RATE_SLOTS],
    next: AtomicUsize,
}

impl RateWindow {
    fn push(&self, now_ms: u64, ops: u64) {
        let i = self.next.fetch_add(1, Relaxed) % RATE_SLOTS;
        self.slots[i].1.store(ops, Relaxed);
        self.slots[i].0.store(now_ms.max(1), Relaxed);
    }

    fn rate(&self, now_ms: u64, ops_now: u64) -> f64 {
        let oldest = self
            .slots
            .iter()
            .map(|(t, o)| (t.load(Relaxed), o.load(Relaxed)))
            .filter(|&(t, _)| t != 0 && t < now_ms && now_ms - t <= (RATE_SLOTS as u64) * 1000)
            .min_by_key(|&(t, _)| t);
        match oldest {
            Some((t, ops)) => ops_now.saturating_sub(ops) as f64 * 1000.0 / (now_ms - t) as f64,
            None => 0.0,
        }
    }
}

/// Resident set size of this process in bytes (0 if `/proc` is unreadable).
pub fn rss_bytes() -> u64 {
    memory_bytes().1
}

/// Virtual and resident memory of this process in bytes, from `/proc/self/statm` (0 if it is
/// unreadable).
pub fn memory_bytes() -> (u64, u64) {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return (0, 0);
    };
    let mut fields = statm.split_whitespace().map(|s| s.parse::<u64>().unwrap_or(0));
    let (size, resident) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    (size * page, resident * page)
}

/// The soft limit on open file descriptors (`None` when unlimited or unreadable).
pub fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0 && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur)
}

/// User plus system CPU time of this process in seconds, from `/proc/self/stat`.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_seconds_of(&stat, clock_ticks())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The command name
/// (field 2) is in parentheses and may hold spaces, so fields are counted after its last `)`.
fn cpu_seconds_of(stat: &str, ticks_per_s: u64) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_s as f64)
}

/// Open file descriptors of this process (0 if `/proc` is unreadable).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_window() {
        let m = ShardMetrics::default();
        assert_eq!(m.ops_per_second(10_000), 0.0);
        m.sample_rate(10_000);
        m.ops_total.store(500, Relaxed);
        m.sample_rate(11_000);
        m.ops_total.store(1000, Relaxed);
        assert!((m.ops_per_second(12_000) - 500.0).abs() < 1e-9);
        // Samples older than the window are ignored.
        assert_eq!(m.ops_per_second(100_000), 0.0);
    }

    #[test]
    fn process_figures() {
        assert!(rss_bytes() > 0);
        let (virt, rss) = memory_bytes();
        assert!(virt >= rss && rss > 0);
        assert!(open_fds() > 0);
        assert!(cpu_seconds().is_some());
    }

    #[test]
    fn cpu_time_from_a_stat_line() {
        // pid (comm with ) and spaces) state ppid ... utime=250 stime=150 at fields 14, 15.
        let line = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 5 0 0";
        assert_eq!(cpu_seconds_of(line, 100), Some(4.0));
        assert_eq!(cpu_seconds_of("garbage", 100), None);
    }
}
