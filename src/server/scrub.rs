//! The scrub of one shard: a background pass over its data at rest — every sealed segment
//! (`log/scrub.rs`) and every snapshot file (`snapshot/file.rs` `decode`) — that finds damage
//! recovery and reads have not met: rot in entries nothing reads any more, in the zeros of a
//! segment, in older snapshots kept for falling back to.
//!
//! It runs once the shard has recovered, then every `log.scrub_interval_s` (0: never), one file
//! at a time, pausing after each file for as long as reading it at [`BYTES_PER_S`] would take,
//! so the shard keeps serving (the reads are page faults of the shard's thread, as its own
//! reads of mapped segments are). It repairs nothing: each
//! problem is logged as an error naming the file and offset and counted
//! (`flo_scrub_problems_total`); what to do (restore, `--repair`) is the operator's call.

use std::rc::Rc;
use std::time::Duration;

use tracing::{error, info};

use super::shard::Shard;
use crate::log::io::Fs;

/// The pace of a pass: after each file it waits as long as this rate says the file takes.
pub const BYTES_PER_S: u64 = 256 * 1024 * 1024;

async fn pause_for(bytes: usize) {
    monoio::time::sleep(Duration::from_secs_f64(bytes as f64 / BYTES_PER_S as f64)).await;
}

/// What one pass found.
#[derive(Debug, Default)]
pub struct Report {
    pub segments: u64,
    pub snapshots: u64,
    pub bytes: u64,
    /// One line per damaged file: the file, where, and what is wrong.
    pub problems: Vec<String>,
}

/// Checks every sealed segment and snapshot file of `shard` (whose log is open).
pub async fn pass(shard: &Shard) -> Result<Report, String> {
    let log = shard.log().map_err(|e| e.message())?.clone();
    let mut report = Report::default();
    let segments = log.sealed_views().map_err(|e| e.to_string())?;
    for (path, view) in segments {
        report.segments += 1;
        report.bytes += view.len() as u64;
        if let Err((at, why)) = crate::log::scrub::check_sealed(&view, shard.id as u32) {
            report.problems.push(format!("{}: offset {at}: {why}", path.display()));
        }
        let len = view.len();
        drop(view);
        pause_for(len).await;
    }
    let (fs, dir) = (log.fs(), log.dir());
    let names = fs
        .list(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for name in names {
        if crate::snapshot::file::parse_file_name(&name).is_none() {
            continue;
        }
        let path = dir.join(&name);
        match fs.read_small(&path) {
            // Taken away by a newer snapshot meanwhile.
            Ok(None) => continue,
            Ok(Some(bytes)) => {
                report.snapshots += 1;
                report.bytes += bytes.len() as u64;
                if let Err(why) = crate::snapshot::file::decode(&bytes) {
                    report.problems.push(format!("{}: {why}", path.display()));
                }
                pause_for(bytes.len()).await;
            }
            Err(e) => report.problems.push(format!("{}: cannot read it: {e}", path.display())),
        }
    }
    Ok(report)
}

/// Scrubs `shard` after its recovery, then every `log.scrub_interval_s`, until it stops.
pub async fn timer(shard: Rc<Shard>) {
    let every = shard.node.config.log.scrub_interval_s;
    if every == 0 {
        return;
    }
    let mut wait = Duration::from_millis(200);
    loop {
        monoio::select! {
            _ = monoio::time::sleep(wait) => {},
            _ = shard.stop.wait() => return,
        }
        if shard.log().is_err() {
            continue; // still recovering
        }
        wait = Duration::from_secs(every);
        let started = crate::clock::Stopwatch::start();
        let metrics = &shard.node.log_metrics[shard.id];
        match pass(&shard).await {
            Ok(r) => {
                metrics.scrub_passes_total.inc();
                metrics.scrub_bytes_total.add(r.bytes);
                metrics.scrub_problems_total.add(r.problems.len() as u64);
                for p in &r.problems {
                    error!(shard = shard.id, problem = %p, "scrub: damaged data at rest");
                }
                info!(
                    shard = shard.id,
                    segments = r.segments,
                    snapshots = r.snapshots,
                    bytes = r.bytes,
                    problems = r.problems.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "scrub pass done"
                );
            }
            Err(e) => error!(shard = shard.id, error = %e, "scrub pass failed"),
        }
    }
}
