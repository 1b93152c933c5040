//! Wall-clock time, injected: the one place the server reads the time of day.
//!
//! Time reaches state only through entries: the code that decides a command (the API and the
//! primitives' `decide` steps) reads a [`Clock`] and stamps what it read into the entry it
//! proposes; applying an entry never reads a clock. Clippy's `disallowed-methods`
//! (`clippy.toml`) keeps `SystemTime::now` and `Instant::now` out of the rest of the code:
//! durations are measured with a [`Stopwatch`], and the few modules that pace I/O by the
//! monotonic clock (connection deadlines, group commit, the shard timer) allow it where they use
//! it, with the reason.
//!
//! [`Clock::system`] is the real clock, shifted by `FLO_CLOCK_OFFSET_MS` when that is set: a
//! hook for tests (replicas replaying one log at very different times must end in the same
//! state; a node whose clock is skewed must not break anything). [`Clock::manual`] is set by
//! hand, for simulations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The environment variable that shifts the system clock (test hook; signed milliseconds).
pub const OFFSET_ENV: &str = "FLO_CLOCK_OFFSET_MS";

/// A source of Unix milliseconds.
#[derive(Clone, Debug)]
pub enum Clock {
    /// The system's clock, plus `offset_ms`.
    System { offset_ms: i64 },
    /// A time set by hand (shared by every clone).
    Manual(Arc<AtomicU64>),
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::System { offset_ms: 0 }
    }
}

impl Clock {
    /// The system clock, shifted by `FLO_CLOCK_OFFSET_MS` if it is set; an unreadable value is
    /// an error naming the variable.
    pub fn system() -> Result<Clock, String> {
        let offset_ms = match std::env::var(OFFSET_ENV) {
            Ok(v) => v
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("{OFFSET_ENV}: {v:?} is not a whole number of milliseconds"))?,
            Err(_) => 0,
        };
        Ok(Clock::System { offset_ms })
    }

    /// A clock that reads `start_ms` until [`Clock::set`] moves it.
    pub fn manual(start_ms: u64) -> Clock {
        Clock::Manual(Arc::new(AtomicU64::new(start_ms)))
    }

    /// Sets a manual clock (a system clock ignores it).
    pub fn set(&self, now_ms: u64) {
        if let Clock::Manual(t) = self {
            t.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System { offset_ms } => system_ms().saturating_add_signed(*offset_ms),
            Clock::Manual(t) => t.load(Ordering::Relaxed),
        }
    }

    /// The shift of a system clock (0 for a manual one).
    pub fn offset_ms(&self) -> i64 {
        match self {
            Clock::System { offset_ms } => *offset_ms,
            Clock::Manual(_) => 0,
        }
    }
}

/// The system's Unix milliseconds, unshifted: for the node's own metadata that no entry carries
/// (a segment header's or the topology's creation time). Code that decides reads a [`Clock`].
#[allow(clippy::disallowed_methods, reason = "the clock itself")]
pub fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Measures how long something took, for logs and metrics; never for a decision.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    #[allow(clippy::disallowed_methods, reason = "measuring, not deciding")]
    pub fn start() -> Stopwatch {
        Stopwatch(std::time::Instant::now())
    }

    pub fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clocks_move_together_and_system_clocks_shift() {
        let c = Clock::manual(5);
        let d = c.clone();
        d.set(42);
        assert_eq!(c.now_ms(), 42);
        let shifted = Clock::System { offset_ms: 3_600_000 };
        let real = Clock::default();
        let gap = shifted.now_ms() as i64 - real.now_ms() as i64;
        assert!((3_599_000..=3_601_000).contains(&gap), "{gap}");
        assert_eq!(shifted.offset_ms(), 3_600_000);
    }
}
