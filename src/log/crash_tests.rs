//! Crash simulation of the log on the simulated disk: concurrent appenders, a crash after the
//! k-th I/O for random k, a random power-loss image (unsynced writes kept, dropped or torn at
//! sectors; unsynced names kept or lost), then recovery. After every recovery: every
//! acknowledged entry is there and intact, the entries form a gap-free prefix of what was
//! appended (no holes, no reordering, no garbage), recovering again gives the same entries,
//! and nothing panics. Also: I/O errors poison the log, ENOSPC is reported as such.
//!
//! `FLO_CRASH_RUNS` scales the number of crash points (default 2000).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::io::Fs;
use super::metrics::LogMetrics;
use super::sim::{CrashMode, FaultKind, SimFs, SplitMix64 as Rng};
use super::{open, LogError, LogOptions};
use crate::config::Durability;
use crate::crash_tally::runtime;

thread_local! {
    /// The durability mode the helpers open logs with (tests of async mode switch it).
    static DURABILITY: std::cell::Cell<Durability> = const { std::cell::Cell::new(Durability::Sync) };
}

/// Options of the simulated logs. No group-commit wait: it depends on real time, and the
/// simulations must do the same I/Os in the same order for a seed (its own tests set it).
fn opts() -> LogOptions {
    LogOptions {
        shard_id: 0,
        segment_bytes: 1024 * 1024,
        batch_max_bytes: 64 * 1024,
        durability: DURABILITY.with(|d| d.get()),
        flush_interval: Duration::from_millis(5),
        commit_wait: Duration::ZERO,
        repair: false,
    }
}

fn dir() -> PathBuf {
    PathBuf::from("/data/shard-000")
}

/// Opens the log on `fs` with `o` and starts its flusher.
async fn open_running(
    fs: SimFs,
    o: LogOptions,
    metrics: Arc<LogMetrics>,
) -> (Rc<super::Log<SimFs>>, monoio::task::JoinHandle<()>) {
    let (log, _) = open(fs, dir(), o, metrics, 0, |_, _| Ok(())).await.expect("open");
    let log = Rc::new(log);
    let flusher = monoio::spawn(log.clone().run_flusher());
    (log, flusher)
}

/// The body appended by `task` as its `i`-th entry: recognisable and checkable.
fn body(task: u64, i: u64, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len.max(16));
    b.extend_from_slice(&task.to_le_bytes());
    b.extend_from_slice(&i.to_le_bytes());
    let mut x = task * 1_000_003 + i;
    while b.len() < len {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        b.push((x >> 56) as u8);
    }
    b
}

/// What the writers saw: every appended LSN's body, and the LSNs acknowledged durable.
#[derive(Default)]
struct History {
    appended: BTreeMap<u64, Vec<u8>>,
    acked: Vec<u64>,
}

/// Opens the log on `fs`, runs `tasks` appenders of `per_task` entries each until done or
/// the disk dies, and returns what they saw.
async fn write_load(fs: SimFs, rng: &mut Rng, tasks: u64, per_task: u64) -> History {
    let history = Rc::new(RefCell::new(History::default()));
    let Ok((log, _)) = open(fs, dir(), opts(), Arc::new(LogMetrics::default()), 0, |_, _| Ok(())).await else {
        return History::default();
    };
    let log = Rc::new(log);
    let flusher = monoio::spawn(log.clone().run_flusher());
    let mut handles = Vec::new();
    for t in 0..tasks {
        let sizes: Vec<usize> = (0..per_task).map(|_| 1 + rng.below(3000) as usize).collect();
        let (log, history) = (log.clone(), history.clone());
        // Odd tasks stream: they append again after a turn of the scheduler instead of waiting
        // for the acknowledgement, so entries arrive while an fdatasync is in flight.
        let streaming = t % 2 == 1;
        handles.push(monoio::spawn(async move {
            let mut acks = Vec::new();
            for (i, len) in sizes.into_iter().enumerate() {
                let b = body(t, i as u64, len);
                let ticket = loop {
                    match log.append(7, &b) {
                        // A full batch: streaming ran ahead of the disk; wait for what is out.
                        Err(LogError::BatchFull) if !acks.is_empty() => {
                            acks.remove(0).await;
                        }
                        Err(LogError::BatchFull) => monoio::time::sleep(Duration::from_micros(50)).await,
                        r => break r,
                    }
                };
                let Ok(ticket) = ticket else { break };
                history.borrow_mut().appended.insert(ticket.lsn, b);
                let history = history.clone();
                let ack = async move {
                    let r = ticket.await;
                    if let Ok(pos) = &r {
                        history.borrow_mut().acked.push(pos.lsn);
                    }
                    r.is_ok()
                };
                if streaming {
                    acks.push(monoio::spawn(ack));
                    crate::sched::yield_now().await;
                } else if !ack.await {
                    break;
                }
            }
            for a in acks {
                a.await;
            }
        }));
    }
    for h in handles {
        h.await;
    }
    log.stop();
    flusher.await;
    Rc::try_unwrap(history).map(RefCell::into_inner).unwrap_or_default()
}

/// Recovers the log on `fs`; returns (lsn, body) of every replayed entry.
async fn recover(fs: SimFs) -> Result<Vec<(u64, Vec<u8>)>, LogError> {
    let mut out = Vec::new();
    let (log, _) = open(fs, dir(), opts(), Arc::new(LogMetrics::default()), 0, |e, _| {
        out.push((e.lsn, e.body.to_vec()));
        Ok(())
    })
    .await?;
    drop(log);
    Ok(out)
}

fn check(history: &History, recovered: &[(u64, Vec<u8>)], what: &str) {
    for (i, (lsn, b)) in recovered.iter().enumerate() {
        assert_eq!(
            *lsn,
            i as u64 + 1,
            "{what}: entries must be a gap-free prefix from LSN 1"
        );
        assert_eq!(
            history.appended.get(lsn),
            Some(b),
            "{what}: LSN {lsn} holds something never appended there"
        );
    }
    let n = recovered.len() as u64;
    for lsn in &history.acked {
        assert!(*lsn <= n, "{what}: acknowledged LSN {lsn} lost (recovered {n})");
    }
}

#[test]
fn random_crashes_lose_nothing_acknowledged() {
    let runs: u64 = std::env::var("FLO_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut rt = runtime();
    let (mut crash_points, mut acked_total, mut recovered_total) = (0u64, 0u64, 0u64);
    rt.block_on(async {
        for seed in 0..runs {
            let mut rng = Rng(seed);
            let fs = SimFs::new();
            // An fdatasync takes a while, so batches are written while one is in flight.
            fs.set_sync_turns(1 + rng.below(3) as u32);
            // Up to ~1.3 MiB per run: segment rolls happen in many runs.
            let crash_after = rng.below(700);
            fs.crash_after(crash_after);
            let history = write_load(fs.clone(), &mut rng, 4, 120).await;
            let mode = match rng.below(3) {
                0 => CrashMode::KeepAll,
                1 => CrashMode::DropAll,
                _ => CrashMode::Random,
            };
            let image = fs.crash(rng.next_u64(), mode);
            let what = format!("seed {seed} crash after {crash_after} ops, {mode:?}");
            let recovered = recover(image.clone())
                .await
                .unwrap_or_else(|e| panic!("{what}: recovery failed: {e}"));
            check(&history, &recovered, &what);
            // Recovering again (after the first recovery's repairs) gives the same entries.
            let again = recover(image.clone())
                .await
                .unwrap_or_else(|e| panic!("{what}: second recovery: {e}"));
            assert_eq!(again, recovered, "{what}: recovery is not idempotent");
            // The recovered log takes new appends after what it kept.
            let more = write_load(image.clone(), &mut rng, 1, 3).await;
            let after = recover(image)
                .await
                .unwrap_or_else(|e| panic!("{what}: third recovery: {e}"));
            assert_eq!(
                after.len(),
                recovered.len() + more.acked.len(),
                "{what}: appends after recovery"
            );
            crash_points += 1;
            acked_total += history.acked.len() as u64;
            recovered_total += recovered.len() as u64;
        }
    });
    println!("log crash-sim: {crash_points} crash points, {acked_total} acked entries, {recovered_total} recovered, 0 lost, 0 phantom, 0 panics");
    assert!(acked_total > 0 && recovered_total >= acked_total);
}

#[test]
fn io_errors_poison_the_log_and_nothing_after_is_acknowledged() {
    let mut rt = runtime();
    rt.block_on(async {
        for (seed, kind) in [
            (1u64, FaultKind::Eio),
            (2, FaultKind::Enospc),
            (3, FaultKind::EioForever),
        ] {
            for fail_op in [3u64, 10, 40, 90] {
                let mut rng = Rng(seed * 100 + fail_op);
                let fs = SimFs::new();
                fs.fail_at(fs.ops() + fail_op, kind);
                let history = write_load(fs.clone(), &mut rng, 3, 60).await;
                // The process restarts (page cache intact): everything acknowledged is there.
                let image = fs.crash(rng.next_u64(), CrashMode::DropAll);
                let recovered = recover(image).await.expect("recovery after an I/O error");
                check(&history, &recovered, &format!("{kind:?} at op {fail_op}"));
                assert!(
                    (history.acked.len() as u64) < 180,
                    "{kind:?} at op {fail_op}: a failed write or sync must stop acknowledgements"
                );
            }
        }
    });
}

#[test]
fn enospc_is_reported_as_no_space() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let (log, flusher) = open_running(fs.clone(), opts(), Arc::new(LogMetrics::default())).await;
        let t = log.append(7, b"first").unwrap();
        assert_eq!(t.await.map(|p| p.lsn), Ok(1));
        fs.fail_at(fs.ops(), FaultKind::EnospcForever);
        let t = log.append(7, b"second").unwrap();
        let r = t.await;
        assert!(matches!(r, Err(LogError::NoSpace { .. })), "{r:?}");
        assert!(
            matches!(log.append(7, b"third"), Err(LogError::NoSpace { .. })),
            "poisoned"
        );
        flusher.await;
    });
}

#[test]
fn corruption_before_a_later_batch_is_refused_and_repair_cuts_it() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let mut rng = Rng(7);
        // Sequential appenders: one entry per batch.
        let history = write_load(fs.clone(), &mut rng, 1, 20).await;
        assert_eq!(history.acked.len(), 20);
        let seg = dir().join("00000000000000000001.log");
        // Damage the 5th entry's body: entries before it stay, a later batch follows it.
        let recovered = recover(fs.clone()).await.unwrap();
        let mut pos = 64u64;
        for (_, b) in recovered.iter().take(4) {
            pos += super::format::stored_bytes(b.len()) as u64;
        }
        fs.corrupt(&seg, pos + 30, 0x5a).unwrap();
        let e = recover(fs.clone()).await.unwrap_err();
        assert!(
            matches!(&e, LogError::Corrupt { offset, file, .. } if *offset == pos && file == &seg),
            "{e}"
        );
        // Repair cuts at the damaged entry and keeps the four before it.
        let mut kept = Vec::new();
        let repair = LogOptions { repair: true, ..opts() };
        let (_, stats) = open(fs.clone(), dir(), repair, Arc::new(LogMetrics::default()), 0, |e, _| {
            kept.push(e.lsn);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(kept, vec![1, 2, 3, 4]);
        assert_eq!(
            stats.repaired_dropped_entries, 15,
            "the 15 valid entries after the damaged one"
        );
        assert_eq!(recover(fs.clone()).await.unwrap().len(), 4, "the cut is durable");
    });
}

#[test]
fn stale_entries_of_another_lsn_are_not_data() {
    // A misdirected write: a valid entry with the wrong LSN where the next entry belongs.
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let mut rng = Rng(9);
        let _ = write_load(fs.clone(), &mut rng, 1, 3).await;
        let recovered = recover(fs.clone()).await.unwrap();
        let end: u64 = 64
            + recovered
                .iter()
                .map(|(_, b)| super::format::stored_bytes(b.len()) as u64)
                .sum::<u64>();
        let mut stale = Vec::new();
        super::format::encode_entry(&mut stale, 99, 7, 0, b"from elsewhere");
        let seg = dir().join("00000000000000000001.log");
        let f = fs.open(&seg).await.unwrap();
        let (r, _) = super::io::SegmentFile::write_at(&f, stale, end).await;
        r.unwrap();
        super::io::SegmentFile::sync_data(&f).await.unwrap();
        drop(f);
        // Last segment, no later batch: a torn tail, cut; the three real entries stay.
        let again = recover(fs.clone()).await.unwrap();
        assert_eq!(again, recovered);
        assert!(fs.file_bytes(Path::new(&seg)).unwrap()[end as usize..end as usize + 64]
            .iter()
            .all(|&b| b == 0));
    });
}

#[test]
fn scan_from_reads_durable_entries_across_segments() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let (log, flusher) = open_running(fs.clone(), opts(), Arc::new(LogMetrics::default())).await;
        // ~2.5 MiB of entries: three segments.
        let mut positions = Vec::new();
        for i in 0..800u64 {
            let t = log.append(7, &body(0, i, 3000)).unwrap();
            let pos = t.await.unwrap();
            assert_eq!(pos.lsn, i + 1);
            positions.push(pos);
        }
        // An entry appended but not yet durable is not visible.
        let pending = log.append(7, b"pending").unwrap();
        let mut seen = Vec::new();
        log.scan_from(700, |e| {
            seen.push((e.lsn, e.body.to_vec()));
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 101, "700..=800");
        for (lsn, b) in &seen {
            assert_eq!(b, &body(0, lsn - 1, 3000));
        }
        let mut first = None;
        log.scan_from(1, |e| {
            first = Some(e.lsn);
            false
        })
        .unwrap();
        assert_eq!(first, Some(1));
        // Every position a ticket gave reads back its entry, from sealed and active segments.
        assert!(
            positions
                .iter()
                .map(|p| p.segment)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= 3
        );
        for (i, pos) in positions.iter().enumerate() {
            let e = log.read_at(pos).unwrap();
            assert_eq!((e.lsn, e.entry_type), (i as u64 + 1, 7));
            assert_eq!(e.body(), &body(0, i as u64, 3000)[..]);
        }
        // Waiting for durability: the pending entry's LSN resolves once its batch is synced.
        log.wait_durable(801).await.unwrap();
        assert_eq!(pending.await.map(|p| p.lsn), Ok(801));
        log.stop();
        flusher.await;
    });
}

#[test]
fn async_mode_survives_a_process_crash() {
    // Async durability acknowledges after the write; a process crash keeps the page cache
    // (CrashMode::KeepAll), so nothing acknowledged may be lost.
    DURABILITY.with(|d| d.set(Durability::Async));
    let mut rt = runtime();
    rt.block_on(async {
        for seed in 0..200u64 {
            let mut rng = Rng(10_000 + seed);
            let fs = SimFs::new();
            let crash_after = rng.below(400);
            fs.crash_after(crash_after);
            let history = write_load(fs.clone(), &mut rng, 4, 60).await;
            let image = fs.crash(rng.next_u64(), CrashMode::KeepAll);
            let what = format!("async seed {seed} crash after {crash_after}");
            let recovered = recover(image).await.unwrap_or_else(|e| panic!("{what}: {e}"));
            check(&history, &recovered, &what);
        }
    });
}

#[test]
fn async_mode_syncs_by_time_under_steady_load() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let metrics = Arc::new(LogMetrics::default());
        let o = LogOptions {
            durability: Durability::Async,
            flush_interval: Duration::from_millis(1),
            ..opts()
        };
        let (log, flusher) = open_running(fs, o, metrics.clone()).await;
        let started = crate::clock::Stopwatch::start();
        let mut i = 0u64;
        // Never idle: the next entry is appended as soon as the previous one is acknowledged.
        while started.elapsed() < Duration::from_millis(50) {
            let t = log.append(7, &body(0, i, 200)).unwrap();
            t.await.unwrap();
            i += 1;
        }
        assert!(
            metrics.fsyncs_total.get() >= 2,
            "{} fsyncs in 50 ms of load",
            metrics.fsyncs_total.get()
        );
        assert!(log.durable_lsn() > 0);
        log.stop();
        flusher.await;
        assert_eq!(log.durable_lsn(), i, "stop makes everything durable");
    });
}

#[test]
fn group_commit_waits_for_the_writers_of_the_last_batch() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        // A slow disk: the wait is bounded by how long the last sync took.
        fs.set_sync_delay(Duration::from_millis(20));
        let metrics = Arc::new(LogMetrics::default());
        let o = LogOptions {
            commit_wait: Duration::from_secs(10),
            ..opts()
        };
        let (log, flusher) = open_running(fs, o, metrics.clone()).await;

        // A lone writer never waits: its last batch had one entry.
        for i in 0..5 {
            log.append(7, &body(0, i, 100)).unwrap().await.unwrap();
        }
        assert_eq!(metrics.commit_waits_total.get(), 0);
        assert_eq!(metrics.batches_total.get(), 5);

        // Four writers answered by one batch...
        let four: Vec<_> = (0..4).map(|i| log.append(7, &body(1, i, 100)).unwrap()).collect();
        for t in four {
            t.await.unwrap();
        }
        assert_eq!(metrics.batches_total.get(), 6);
        // ...come back one by one: the first waits for the other three, and one sync carries
        // all four.
        let first = log.append(7, &body(2, 0, 100)).unwrap();
        crate::sched::yield_now().await;
        assert_eq!(metrics.commit_waits_total.get(), 1, "the flusher is waiting");
        assert_eq!(metrics.batches_total.get(), 6, "nothing written yet");
        let rest: Vec<_> = (1..4).map(|i| log.append(7, &body(2, i, 100)).unwrap()).collect();
        first.await.unwrap();
        for t in rest {
            t.await.unwrap();
        }
        assert_eq!(metrics.batches_total.get(), 7, "one batch for the four");
        assert_eq!(metrics.commit_waits_total.get(), 1);

        // A writer whose peers do not come back waits at most a sync's time, then goes alone.
        log.append(7, &body(3, 0, 100)).unwrap().await.unwrap();
        assert_eq!(metrics.batches_total.get(), 8);
        assert_eq!(metrics.commit_waits_total.get(), 2);
        assert_eq!(log.durable_lsn(), 14);
        log.stop();
        flusher.await;
    });
}

#[test]
fn group_commit_never_waits_when_off_in_async_mode_or_on_a_fast_disk() {
    let mut rt = runtime();
    // (durability, commit_wait, how long a sync takes)
    for (durability, commit_wait, sync) in [
        (Durability::Sync, Duration::ZERO, Duration::from_millis(20)),
        (Durability::Async, Duration::from_secs(10), Duration::from_millis(20)),
        // A disk that syncs faster than the runtime's timers can time a wait.
        (Durability::Sync, Duration::from_secs(10), Duration::ZERO),
    ] {
        rt.block_on(async {
            let fs = SimFs::new();
            fs.set_sync_delay(sync);
            let metrics = Arc::new(LogMetrics::default());
            let o = LogOptions {
                durability,
                commit_wait,
                ..opts()
            };
            let (log, flusher) = open_running(fs, o, metrics.clone()).await;
            let four: Vec<_> = (0..4).map(|i| log.append(7, &body(1, i, 100)).unwrap()).collect();
            for t in four {
                t.await.unwrap();
            }
            let batches = metrics.batches_total.get();
            let first = log.append(7, &body(2, 0, 100)).unwrap();
            crate::sched::yield_now().await;
            first.await.unwrap();
            assert_eq!(
                metrics.batches_total.get(),
                batches + 1,
                "{durability:?}: written alone"
            );
            assert_eq!(metrics.commit_waits_total.get(), 0, "{durability:?}");
            log.stop();
            flusher.await;
        });
    }
}

#[test]
fn an_entry_the_replay_refuses_names_its_place() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let mut rng = Rng(11);
        let _ = write_load(fs.clone(), &mut rng, 1, 3).await;
        let mut seen = 0;
        let r = open(fs, dir(), opts(), Arc::new(LogMetrics::default()), 0, |e, _| {
            seen += 1;
            if e.lsn == 2 {
                Err("entry type 7 is unknown".into())
            } else {
                Ok(())
            }
        })
        .await;
        let Err(LogError::Corrupt { offset, reason, .. }) = r else {
            panic!("must refuse")
        };
        assert!(offset > 64 && reason.contains("unknown"), "{offset} {reason}");
        assert_eq!(seen, 2);
    });
}

#[test]
fn positions_given_at_replay_read_back_their_entries() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let mut rng = Rng(12);
        let history = write_load(fs.clone(), &mut rng, 4, 200).await;
        let mut replayed = Vec::new();
        let (log, _) = open(fs, dir(), opts(), Arc::new(LogMetrics::default()), 0, |e, at| {
            assert_eq!(e.lsn, at.lsn);
            replayed.push(at);
            Ok(())
        })
        .await
        .unwrap();
        assert_eq!(replayed.len(), history.acked.len());
        assert!(
            replayed
                .iter()
                .map(|p| p.segment)
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= 2
        );
        for at in &replayed {
            let e = log.read_at(at).unwrap();
            assert_eq!(Some(&e.body().to_vec()), history.appended.get(&at.lsn));
        }
    });
}

#[test]
fn repair_copes_with_a_truncated_later_segment() {
    // A later file the scan never validated (it stops at the cut) may be any size: repair must
    // count and remove it without trusting its length.
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let mut rng = Rng(13);
        let history = write_load(fs.clone(), &mut rng, 1, 10).await;
        assert_eq!(history.acked.len(), 10);
        let seg = dir().join("00000000000000000001.log");
        fs.corrupt(&seg, 64 + 30, 0x11).unwrap();
        let stub = dir().join(super::format::segment_file_name(500));
        fs.write_small_atomic(&stub, b"short").await.unwrap();
        let repair = LogOptions { repair: true, ..opts() };
        let (_, stats) = open(fs.clone(), dir(), repair, Arc::new(LogMetrics::default()), 0, |_, _| {
            Ok(())
        })
        .await
        .expect("repair succeeds");
        assert_eq!(stats.repaired_dropped_entries, 9);
        assert!(!fs.exists(&stub), "the later file is removed");
        assert!(recover(fs).await.unwrap().is_empty());
    });
}
