//! What the crash simulations (`log/crash_tests.rs`, `snapshot/crash_tests.rs`,
//! `server/crash_sim.rs`) share: the totals they keep over their crash states (states checked,
//! acknowledged writes lost, phantoms, panics, failures on a live disk, and the first messages
//! of each kind), the runtime they run on, and the guard that turns a panic or hang of one crash
//! point into a count instead of the end of the test. Test-only.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// A runtime like a shard's: io_uring, with timers.
pub(crate) fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
}

/// Runs `f` on a fresh runtime, for at most `timeout`; the error says whether it hung or
/// panicked.
pub(crate) fn run_guarded(timeout: Duration, f: impl AsyncFnOnce()) -> Result<(), &'static str> {
    let r = catch_unwind(AssertUnwindSafe(|| {
        runtime().block_on(async { monoio::time::timeout(timeout, f()).await.is_ok() })
    }));
    match r {
        Ok(true) => Ok(()),
        Ok(false) => Err("hangs"),
        Err(_) => Err("panicked"),
    }
}

/// Totals over crash states.
#[derive(Default, Debug)]
pub(crate) struct Tally {
    pub(crate) states: u64,
    pub(crate) points: u64,
    pub(crate) lost: u64,
    pub(crate) phantom: u64,
    pub(crate) panics: u64,
    /// Snapshots or compaction passes that failed on a disk that was alive and healthy.
    pub(crate) errors: u64,
    pub(crate) failures: Vec<String>,
}

impl Tally {
    /// One recovered state and what its check found.
    pub(crate) fn record(&mut self, what: &str, lost: &[String], phantom: &[String]) {
        self.states += 1;
        self.lost += lost.len() as u64;
        self.phantom += phantom.len() as u64;
        for m in lost.iter().chain(phantom).take(3) {
            self.failures.push(format!("{what}: {m}"));
        }
    }

    /// Adds the totals of `other` (another checker thread's).
    pub(crate) fn merge(&mut self, other: Tally) {
        self.states += other.states;
        self.points += other.points;
        self.lost += other.lost;
        self.phantom += other.phantom;
        self.panics += other.panics;
        self.errors += other.errors;
        self.failures.extend(other.failures);
    }

    /// A crash point that hung or panicked (`why`, from [`run_guarded`]).
    pub(crate) fn aborted(&mut self, what: &str, why: &str) {
        self.panics += 1;
        self.failures.push(format!("{what}: {why}"));
    }

    /// One state that could not be recovered at all: everything acknowledged in it is lost.
    pub(crate) fn failed_recovery(&mut self, what: &str, why: &str) {
        self.states += 1;
        self.lost += 1;
        self.failures.push(format!("{what}: recovery failed: {why}"));
    }
}
