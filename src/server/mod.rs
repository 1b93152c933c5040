//! The server process: the node-wide shared state ([`Node`]), start-up (data directory lock,
//! port checks, one pinned thread per shard, each with its own io_uring runtime), and the
//! signal-driven stop (stop accepting, let in-flight requests finish, exit 0).
//!
//! Start-up order: check the machine ([`preflight`]: io_uring, limits, the data directory's
//! file system and free space), lock the data directory, check the ports are free, start every
//! shard (each binds its SO_REUSEPORT listener and reports back), then move the phase from
//! `Starting` to `Healthy` once recovery is done (and tell systemd, [`notify`]). A shard that
//! cannot start stops the whole process with a message saying why.

pub mod admission;
#[cfg(test)]
mod crash_sim;
pub mod digest;
#[cfg(test)]
mod fail_stop_tests;
pub mod inbox;
pub mod notify;
pub mod preflight;
pub mod scrub;
pub mod shard;
pub mod shutdown;

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::auth::Auth;
use crate::config::{Config, Resolved};
use crate::http::budget::BodyBudget;
use crate::http::ConnLimits;
use crate::log::metrics::LogMetrics;
use crate::metrics::ShardMetrics;
use crate::partition::Partitioner;
use inbox::{Command, Inbox};
use shutdown::{Phase, PhaseCell};

/// What every shard shares. Read-only after start, except for atomics.
pub struct Node {
    pub config: Arc<Config>,
    /// The clock decisions read (the system's, shifted in tests).
    pub clock: crate::clock::Clock,
    pub bind: IpAddr,
    pub partitioner: Partitioner,
    pub phase: PhaseCell,
    pub metrics: Box<[Arc<ShardMetrics>]>,
    pub inboxes: Box<[Inbox]>,
    pub auth: Auth,
    pub limits: ConnLimits,
    pub started: crate::clock::Stopwatch,
    pub started_at_ms: u64,
    /// Open API connections across all shards.
    pub connections: AtomicU64,
    /// Shards that have finished draining after a stop.
    pub drained: AtomicUsize,
    /// Each shard's log figures.
    pub log_metrics: Box<[Arc<LogMetrics>]>,
    /// Recovery cuts the log at corruption instead of refusing to start.
    pub repair: bool,
    /// Multi-part time-series writes committed, not yet in every owner's heads.
    pub ts_commits: Arc<crate::ts::commit::CommitTable>,
    /// How the shards settle pending multi-part writes after recovery.
    pub ts_recovery: Arc<crate::ts::commit::RecoveryExchange>,
    /// When the data directory was made (its `TOPOLOGY`): the `default` namespace's creation.
    pub created_at_ms: u64,
}

impl Node {
    /// The node of a validated configuration, with one inbox per shard; the receivers go to
    /// the shard threads, in shard order.
    pub fn new(config: Config, resolved: Resolved) -> (Node, Vec<async_channel::Receiver<inbox::Envelope>>) {
        Node::with_clock(config, resolved, crate::clock::Clock::default())
    }

    /// [`Node::new`] with the clock decisions read.
    pub fn with_clock(
        config: Config,
        resolved: Resolved,
        clock: crate::clock::Clock,
    ) -> (Node, Vec<async_channel::Receiver<inbox::Envelope>>) {
        let shards = config.shards;
        assert!(shards >= 1, "config must be validated");
        let (inboxes, receivers): (Vec<Inbox>, Vec<_>) =
            (0..shards).map(|_| inbox::inbox(config.http.inbox_capacity)).unzip();
        let node = Node {
            bind: resolved.bind,
            partitioner: Partitioner::new(config.partitions, shards as u32),
            phase: PhaseCell::default(),
            metrics: (0..shards).map(|_| Arc::new(ShardMetrics::default())).collect(),
            inboxes: inboxes.into_boxed_slice(),
            auth: Auth::new(config.auth.enabled, resolved.tokens),
            limits: ConnLimits {
                max_body_bytes: config.http.max_body_bytes,
                request_timeout: Duration::from_millis(config.http.request_timeout_ms),
                idle_timeout: Duration::from_millis(config.http.idle_timeout_ms),
                body_budget: BodyBudget::new(config.http.max_buffered_body_bytes),
            },
            started: crate::clock::Stopwatch::start(),
            started_at_ms: clock.now_ms(),
            clock,
            connections: AtomicU64::new(0),
            drained: AtomicUsize::new(0),
            log_metrics: (0..shards).map(|_| Arc::new(LogMetrics::default())).collect(),
            repair: false,
            ts_commits: Default::default(),
            ts_recovery: Default::default(),
            created_at_ms: 0,
            config: Arc::new(config),
        };
        (node, receivers)
    }

    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }

    /// What shard `id`'s engine shares with the node.
    pub fn engine_shared(&self, id: usize) -> crate::machine::engine::Shared {
        crate::machine::engine::Shared {
            config: self.config.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics[id].clone(),
            log_metrics: self.log_metrics[id].clone(),
            ts_commits: self.ts_commits.clone(),
            ts_recovery: self.ts_recovery.clone(),
        }
    }
}

/// Makes every panic, on any thread, end the process: it is logged (with the thread and where
/// it happened), then the process aborts. A panic is a bug, and state that a bug left half
/// changed (an entry appended but not applied, a shard thread gone while the others answer
/// for it) must not be served: the next start rebuilds the state from the log.
pub fn fail_stop_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        error!(
            thread = thread.name().unwrap_or("unnamed"),
            panic = %info,
            "a bug stopped the server; its next start recovers the state from the log"
        );
        default(info);
        std::process::abort();
    }));
}

/// Why the server could not start or run (exit code 1).
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Start-time choices that are not configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Cut the log at corruption instead of refusing to start.
    pub repair: bool,
}

/// Runs the server until a stop signal; returns when every shard has stopped.
pub fn run(config: Config, resolved: Resolved, run_opts: RunOptions) -> Result<(), StartError> {
    let findings = preflight::run(&config);
    for f in findings.iter().filter(|f| f.level == preflight::Level::Warning) {
        warn!("{}", f.message);
    }
    if let Some(message) = preflight::errors_message(&findings) {
        return Err(StartError(message));
    }
    let clock = crate::clock::Clock::system().map_err(StartError)?;
    if clock.offset_ms() != 0 {
        warn!(
            offset_ms = clock.offset_ms(),
            "{} is set: the clock is shifted (a test hook)",
            crate::clock::OFFSET_ENV
        );
    }
    let _lock = lock_data_dir(&config.data_dir)?;
    let topology = check_topology(&config)?;
    let api_addr = SocketAddr::new(resolved.bind, config.dashboard_port);
    let metrics_addr = SocketAddr::new(resolved.bind, config.metrics_port);
    check_port_free(api_addr, "dashboard_port")?;
    check_port_free(metrics_addr, "metrics_port")?;

    let shards = config.shards;
    let (mut node, receivers) = Node::with_clock(config, resolved, clock);
    node.repair = run_opts.repair;
    node.created_at_ms = topology.created_at_ms;
    let node = Arc::new(node);

    // From here on SIGTERM/SIGINT no longer kill the process: their handler hands them to the
    // iterator below.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT])
        .map_err(|e| StartError(format!("cannot install signal handlers: {e}")))?;

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::with_capacity(shards);
    for (id, rx) in receivers.into_iter().enumerate() {
        let node = node.clone();
        let ready = ready_tx.clone();
        let t = std::thread::Builder::new()
            .name(format!("flo-shard-{id}"))
            .spawn(move || shard::run(id, node, rx, ready))
            .map_err(|e| StartError(format!("cannot start shard thread {id}: {e}")))?;
        threads.push(t);
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => return Err(StartError(msg)),
            Err(_) => return Err(StartError("a shard thread died during start-up".into())),
        }
    }

    // Every shard has recovered its log.
    node.phase.advance(Phase::Healthy);
    info!(
        api = %api_addr,
        metrics = %metrics_addr,
        shards,
        partitions = node.partitioner.partitions(),
        data_dir = %node.config.data_dir.display(),
        durability = node.config.durability.as_str(),
        auth = node.auth.enabled(),
        version = env!("CARGO_PKG_VERSION"),
        "flo started"
    );
    notify::notify("READY=1\nSTATUS=serving");

    if let Some(sig) = signals.forever().next() {
        info!(
            signal = sig,
            "stopping: no new connections, finishing in-flight requests"
        );
        node.phase.advance(Phase::Stopping);
        notify::notify("STOPPING=1");
        for inbox in node.inboxes.iter() {
            // A closed inbox means that shard already stopped; nothing to tell it.
            let _ = inbox.send_blocking(Command::Stop);
        }
    }
    // A second signal while the shards drain exits at once.
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            warn!(signal = sig, "second stop signal: exiting without waiting");
            std::process::exit(1);
        }
    });
    let mut failed = false;
    for t in threads {
        if t.join().is_err() {
            failed = true;
        }
    }
    if failed {
        error!("a shard thread panicked while stopping");
        return Err(StartError("a shard failed while stopping".into()));
    }
    info!(uptime_s = node.started.elapsed().as_secs(), "flo stopped");
    Ok(())
}

/// Creates the data directory and takes an exclusive lock on `data_dir/LOCK`, so two servers
/// never share one directory. The lock lasts as long as the returned file is open.
fn lock_data_dir(dir: &Path) -> Result<File, StartError> {
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir).map_err(|e| StartError(format!("data_dir {}: cannot create: {e}", dir.display())))?;
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StartError(format!("data_dir {}: cannot open LOCK: {e}", dir.display())))?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let holder = holder.trim();
        let who = if holder.is_empty() {
            String::new()
        } else {
            format!(" (pid {holder})")
        };
        return Err(StartError(format!(
            "data_dir {} is in use by another flo process{who}: LOCK is held",
            dir.display()
        )));
    }
    // The holder's pid, for the message above in the next process that tries.
    use std::io::Write;
    let mut f = &file;
    let _ = file.set_len(0);
    let _ = writeln!(f, "{}", std::process::id());
    Ok(file)
}

/// Writes the data directory's topology on first start, refuses a start with other counts.
fn check_topology(config: &Config) -> Result<crate::log::topology::Topology, StartError> {
    let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .build()
        .map_err(|e| StartError(format!("cannot create an io_uring instance ({e}); flo needs io_uring")))?;
    rt.block_on(crate::log::topology::check_or_write(
        &crate::log::io::RealFs,
        &config.data_dir,
        config.shards as u32,
        config.partitions,
    ))
    .map_err(|e| StartError(e.to_string()))
}

/// Fails if something already listens on `addr`. The shards bind with SO_REUSEPORT, which
/// would otherwise silently share the port with another process of the same user.
fn check_port_free(addr: SocketAddr, key: &str) -> Result<(), StartError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| StartError(format!("{key}: cannot listen on {addr}: {e}")))
}
