//! The totals the crash simulations keep over their crash states (`snapshot/crash_tests.rs`,
//! `server/crash_sim.rs`): states checked, acknowledged writes lost, phantoms, panics, failures
//! on a live disk, and the first messages of each kind. Test-only.

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

    /// One state that could not be recovered at all: everything acknowledged in it is lost.
    pub(crate) fn failed_recovery(&mut self, what: &str, why: &str) {
        self.states += 1;
        self.lost += 1;
        self.failures.push(format!("{what}: recovery failed: {why}"));
    }
}
