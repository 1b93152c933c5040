//! `flo bench-log`: the real log writer (io_uring writes, fdatasync, group commit) driven
//! in-process by N concurrent appenders, then optionally the recovery of what was written.
//! Reports entries/s, MB/s, batches, fdatasyncs, entries per fdatasync, average batch bytes,
//! and recovery MB/s — the figures `scripts/bench-log.sh` compares with fio.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flo::config::Durability;
use flo::log::io::RealFs;
use flo::log::metrics::LogMetrics;
use flo::log::{open, LogOptions};

/// Drive the log writer directly and measure it.
#[derive(clap::Args, Debug, Clone)]
pub struct LogBenchArgs {
    /// Directory for the log (created; must not hold another log).
    #[arg(long)]
    pub dir: PathBuf,
    /// Concurrent appenders, each waiting for its entry to be durable before the next.
    #[arg(long, default_value_t = 64)]
    pub appenders: usize,
    /// Body bytes per entry.
    #[arg(long, default_value_t = 1024)]
    pub entry_bytes: usize,
    /// How long to append (ignored when --total-mib is given).
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub duration: Duration,
    /// Append until this many MiB of entries are written.
    #[arg(long)]
    pub total_mib: Option<u64>,
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub segment_bytes: u64,
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub batch_max_bytes: usize,
    /// Acknowledge after fdatasync (sync) or after the write (async).
    #[arg(long, default_value = "sync")]
    pub durability: String,
    /// Then reopen the log and time its recovery.
    #[arg(long)]
    pub recover: bool,
    /// Only time the recovery of the log already in --dir (e.g. after dropping the page cache).
    #[arg(long)]
    pub recover_only: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: LogBenchArgs) -> std::process::ExitCode {
    match execute(&args) {
        Ok(report) => {
            if args.json {
                println!("{report}");
            } else {
                print_text(&report);
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("flo bench-log: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn print_text(r: &serde_json::Value) {
    println!(
        "flo bench-log: appenders={} entry_bytes={} durability={}",
        r["appenders"], r["entry_bytes"], r["durability"]
    );
    println!(
        "  append: {} entries in {:.2}s = {:.0} entries/s, {:.1} MB/s of log",
        r["entries"],
        r["seconds"].as_f64().unwrap_or(0.0),
        r["entries_per_sec"].as_f64().unwrap_or(0.0),
        r["log_mb_per_sec"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  group commit: {} batches, {} fdatasyncs, {:.1} entries/fdatasync, {:.0} bytes/batch, {:.0} fdatasyncs/s",
        r["batches"],
        r["fsyncs"],
        r["entries_per_fsync"].as_f64().unwrap_or(0.0),
        r["bytes_per_batch"].as_f64().unwrap_or(0.0),
        r["fsyncs_per_sec"].as_f64().unwrap_or(0.0)
    );
    if let Some(mbps) = r["recovery_mb_per_sec"].as_f64() {
        println!(
            "  recovery: {} entries, {} bytes in {:.3}s = {:.0} MB/s",
            r["recovered_entries"],
            r["recovered_bytes"],
            r["recovery_seconds"].as_f64().unwrap_or(0.0),
            mbps
        );
    }
}

fn execute(args: &LogBenchArgs) -> Result<serde_json::Value, String> {
    let durability = match args.durability.as_str() {
        "sync" => Durability::Sync,
        "async" => Durability::Async,
        other => return Err(format!("--durability {other:?}: sync or async")),
    };
    let opts = LogOptions {
        shard_id: 0,
        segment_bytes: args.segment_bytes,
        batch_max_bytes: args.batch_max_bytes,
        durability,
        flush_interval: Duration::from_millis(5),
        commit_wait: Duration::from_millis(1),
        repair: false,
    };
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .map_err(|e| format!("io_uring: {e}"))?;
    let metrics = Arc::new(LogMetrics::default());
    let total_bytes = args.total_mib.map(|m| m * 1024 * 1024);
    if args.recover_only {
        let mut report = serde_json::json!({
            "appenders": 0, "entry_bytes": args.entry_bytes, "durability": args.durability, "entries": 0,
            "seconds": 0.0, "entries_per_sec": 0.0, "log_mb_per_sec": 0.0, "batches": 0, "fsyncs": 0,
            "entries_per_fsync": 0.0, "bytes_per_batch": 0.0, "fsyncs_per_sec": 0.0,
        });
        time_recovery(&mut rt, args, opts, &mut report)?;
        return Ok(report);
    }
    let (entries, seconds) = rt.block_on({
        let (opts, metrics, dir) = (opts.clone(), metrics.clone(), args.dir.clone());
        let (appenders, entry_bytes, duration) = (args.appenders, args.entry_bytes, args.duration);
        async move {
            let (log, _) = open(RealFs, dir, opts, metrics, 0, |_, _| Ok(()))
                .await
                .map_err(|e| e.to_string())?;
            let log = Rc::new(log);
            // Segments are prepared up front, as a running server does in the background.
            log.make_spare().await.map_err(|e| e.to_string())?;
            let flusher = monoio::spawn(log.clone().run_flusher());
            let started = Instant::now();
            let deadline = started + duration;
            let written = Rc::new(std::cell::Cell::new(0u64));
            let mut tasks = Vec::new();
            for a in 0..appenders {
                let (log, written) = (log.clone(), written.clone());
                tasks.push(monoio::spawn(async move {
                    let body = vec![(a % 251) as u8; entry_bytes];
                    let mut n = 0u64;
                    loop {
                        let done = match total_bytes {
                            Some(t) => written.get() >= t,
                            None => Instant::now() >= deadline,
                        };
                        if done {
                            return Ok(n);
                        }
                        let ticket = match log.append(100, &body) {
                            Ok(t) => t,
                            Err(flo::log::LogError::BatchFull) => {
                                monoio::time::sleep(Duration::from_micros(100)).await;
                                continue;
                            }
                            Err(e) => return Err(e.to_string()),
                        };
                        written.set(written.get() + entry_bytes as u64);
                        ticket.await.map_err(|e| e.to_string())?;
                        n += 1;
                    }
                }));
            }
            let mut entries = 0;
            for t in tasks {
                entries += t.await?;
            }
            let seconds = started.elapsed().as_secs_f64();
            log.stop();
            flusher.await;
            Ok::<_, String>((entries, seconds))
        }
    })?;

    let m = &metrics;
    let (fsyncs, batches, bytes) = (m.fsyncs_total.get(), m.batches_total.get(), m.bytes_total.get());
    let mut report = serde_json::json!({
        "appenders": args.appenders,
        "entry_bytes": args.entry_bytes,
        "durability": args.durability,
        "entries": entries,
        "seconds": seconds,
        "entries_per_sec": entries as f64 / seconds,
        "log_bytes": bytes,
        "log_mb_per_sec": bytes as f64 / 1e6 / seconds,
        "batches": batches,
        "fsyncs": fsyncs,
        "fsyncs_per_sec": fsyncs as f64 / seconds,
        "entries_per_fsync": if fsyncs == 0 { 0.0 } else { m.entries_total.get() as f64 / fsyncs as f64 },
        "bytes_per_batch": if batches == 0 { 0.0 } else { bytes as f64 / batches as f64 },
    });

    if args.recover {
        time_recovery(&mut rt, args, opts, &mut report)?;
    }
    Ok(report)
}

fn time_recovery(
    rt: &mut monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>,
    args: &LogBenchArgs,
    opts: LogOptions,
    report: &mut serde_json::Value,
) -> Result<(), String> {
    let started = Instant::now();
    let mut replayed = 0u64;
    let stats = rt.block_on(async {
        open(
            RealFs,
            args.dir.clone(),
            opts,
            Arc::new(LogMetrics::default()),
            0,
            |_, _| {
                replayed += 1;
                Ok(())
            },
        )
        .await
        .map(|(_, stats)| stats)
        .map_err(|e| e.to_string())
    })?;
    let secs = started.elapsed().as_secs_f64();
    report["recovered_entries"] = replayed.into();
    report["recovered_bytes"] = stats.bytes.into();
    report["recovery_seconds"] = secs.into();
    report["recovery_mb_per_sec"] = (stats.bytes as f64 / 1e6 / secs).into();
    Ok(())
}
