//! One shard: a thread pinned to a CPU running a monoio io_uring runtime. It accepts API
//! connections on its own SO_REUSEPORT listener, serves them, executes the commands other
//! shards send to its inbox, and (shard 0) serves the metrics port.
//!
//! Only this thread touches the shard's state ([`Shard`] is `!Send`); other shards reach it
//! through the inbox. Start: bind, accept (so `/health` can say "starting"), recover the log by
//! replaying it into the shard's state, then report ready. Stop: the listener closes, idle
//! connections close, requests in flight finish (bounded by `http.shutdown_grace_ms`), the shard
//! keeps answering its inbox until every shard has drained (a request forwarded during the
//! drain still gets its answer), then its log writes what is pending, syncs, and stops.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::{AcqRel, Relaxed};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use futures_channel::oneshot;
use monoio::io::AsyncWriteRentExt;
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use tracing::{debug, info, warn};

use super::inbox::{Command, Envelope, ForwardError, Reply};
use super::shutdown::StopSignal;
use super::Node;
use crate::api::error::ApiError;
use crate::api::{Api, MetricsApi};
use crate::http::response::encode;
use crate::log::format::shard_dir_name;
use crate::log::{Log, LogError, LogOptions};
pub use crate::machine::ShardFs;
use crate::machine::{Engine, Error};
use crate::namespace::{Create, NamespaceRegistry};

/// io_uring submission queue entries per shard (the start-up checks probe the same size).
const RING_ENTRIES: u32 = super::preflight::RING_ENTRIES;
/// Listen backlog per shard.
const BACKLOG: i32 = 1024;

/// A shard's own state, reachable only from its thread.
pub struct Shard {
    pub id: usize,
    pub node: Arc<Node>,
    pub stop: StopSignal,
    /// Its partitions' state machines, its log and clock.
    pub engine: Rc<Engine>,
    /// Namespaces whose record is known to exist (so a first write need not ask again).
    pub namespaces_known: RefCell<std::collections::HashSet<String>>,
    /// Writes this shard's connections have in progress (`http.max_writes_in_flight`).
    pub writes: super::admission::WriteGate,
}

impl Shard {
    /// Shard `id` of `node`, empty, its log not open yet.
    pub fn new(id: usize, node: Arc<Node>) -> Shard {
        Shard::on(id, node, ShardFs::default())
    }

    /// Shard `id` of `node` with its log on `fs`.
    pub fn on(id: usize, node: Arc<Node>, fs: ShardFs) -> Shard {
        Shard {
            id,
            stop: StopSignal::default(),
            engine: Rc::new(Engine::new(id, node.partitioner, node.engine_shared(id), fs)),
            namespaces_known: RefCell::default(),
            writes: super::admission::WriteGate::new(node.config.http.max_writes_in_flight),
            node,
        }
    }

    /// Shard 0 of a default two-shard node that runs nothing, for unit tests.
    #[cfg(test)]
    pub fn for_tests() -> Shard {
        let config = crate::config::Config {
            shards: 2,
            ..crate::config::Config::default()
        };
        Shard::for_tests_on(config, ShardFs::default())
    }

    /// Shard 0 of a node with `config` that runs nothing, its log on `fs`, for unit tests.
    #[cfg(test)]
    pub fn for_tests_on(config: crate::config::Config, fs: ShardFs) -> Shard {
        Shard::for_tests_with(config, fs, crate::clock::Clock::default())
    }

    /// Shard 0 of a node with `config` and `clock` that runs nothing, its log on `fs`.
    #[cfg(test)]
    pub fn for_tests_with(mut config: crate::config::Config, fs: ShardFs, clock: crate::clock::Clock) -> Shard {
        let resolved = config.validate(None).expect("a valid test configuration");
        let (node, _receivers) = Node::with_clock(config, resolved, clock);
        Shard::on(0, Arc::new(node), fs)
    }

    /// The only shard of a one-shard node with `clock`, its log new on the simulated disk and
    /// open (its flusher running on the current runtime), for unit tests of the executors.
    #[cfg(test)]
    pub async fn on_sim_disk(clock: crate::clock::Clock) -> Rc<Shard> {
        use crate::log::io::Fs as _;
        let config = crate::config::Config {
            shards: 1,
            data_dir: std::path::PathBuf::from("/data"),
            durability: crate::config::Durability::Sync,
            ..crate::config::Config::default()
        };
        let fs = crate::log::sim::SimFs::new();
        let _ = fs.create_dir_all(&config.data_dir.join(crate::log::format::shard_dir_name(0)));
        let shard = Rc::new(Shard::for_tests_with(
            config,
            crate::log::either::EitherFs::Sim(fs),
            clock,
        ));
        let log = recover(&shard).await.expect("a new log");
        monoio::spawn(log.clone().run_flusher());
        shard.engine.set_log(log);
        shard
    }

    /// The shard's log, once recovery has opened it.
    pub fn log(&self) -> Result<&Rc<Log<ShardFs>>, ApiError> {
        Ok(self.engine.log()?)
    }

    /// Executes a command on this shard.
    pub async fn execute(&self, command: Command) -> Reply {
        let engine = &*self.engine;
        let r = match command {
            Command::CreateNamespace { name, created_at_ms } => {
                return match self.create_namespace(name, created_at_ms).await {
                    Ok(created) => Reply::NamespaceCreated(created),
                    Err(e) => Reply::Failed(e),
                }
            }
            Command::ListNamespaces => {
                let now = engine.now_ms();
                let mut records = Vec::new();
                let (mut kv_keys, mut queues, mut streams, mut measurements) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let mut waits = Vec::new();
                for part in engine.parts() {
                    let (r, w) = part.namespaces.borrow().list();
                    records.extend(r);
                    waits.extend(w.map(|index| (part.id, index)));
                    kv_keys.extend(part.kv.borrow().key_counts(now));
                    queues.extend(part.queues.borrow().counts());
                    streams.extend(part.streams.borrow().counts());
                    measurements.extend(part.ts.borrow().measurement_names());
                }
                // Records whose creation is still in flight are listed once it is committed.
                for (p, index) in waits {
                    if let Err(e) = engine.committed(p, index).await {
                        return Reply::Failed(e);
                    }
                }
                return Reply::Namespaces {
                    records,
                    kv_keys,
                    queues,
                    streams,
                    measurements,
                };
            }
            Command::Queue(cmd) => crate::queue::exec::execute(engine, cmd).await.map(Reply::Queue),
            Command::Stream(cmd) => crate::stream::exec::execute(engine, cmd).await.map(Reply::Stream),
            Command::Ts(cmd) => crate::ts::exec::execute(engine, cmd).await.map(Reply::Ts),
            Command::Kv(cmd) => crate::kv::exec::execute(engine, cmd).await.map(Reply::Kv),
            Command::Stop => {
                self.stop.trigger();
                return Reply::Stopping;
            }
        };
        r.unwrap_or_else(Reply::Failed)
    }

    /// Creates a namespace record on this (its owner) shard; answered once committed (also
    /// when it existed: the entry that created it may still be in flight).
    async fn create_namespace(&self, name: String, created_at_ms: u64) -> Result<bool, Error> {
        let engine = &self.engine;
        let p = engine.partition_of(&name, "");
        let (answer, proposed) = engine.decide::<NamespaceRegistry>(p, Create { name, created_at_ms })?;
        if let Some(pr) = proposed {
            engine.commit(&pr).await?;
        }
        if let Some(lsn) = answer.wait {
            engine.committed(p, lsn).await?;
        }
        Ok(answer.created)
    }

    /// Makes sure `ns` has its namespace record (a namespace comes into existence on its first
    /// write): asks the namespace's owner shard once, then remembers the answer.
    pub async fn ensure_namespace(&self, ns: &str) -> Result<(), ApiError> {
        if self.namespaces_known.borrow().contains(ns) {
            return Ok(());
        }
        let owner = self.node.partitioner.namespace_shard(ns);
        let created_at_ms = self.node.clock.now_ms();
        let reply = if owner == self.id {
            self.execute(Command::CreateNamespace {
                name: ns.to_string(),
                created_at_ms,
            })
            .await
        } else {
            let command = Command::CreateNamespace {
                name: ns.to_string(),
                created_at_ms,
            };
            self.forward(owner, command)?
                .await
                .map_err(|_| ApiError::Unavailable(format!("shard {owner} stopped before answering")))?
        };
        match reply {
            Reply::NamespaceCreated(_) => {
                self.namespaces_known.borrow_mut().insert(ns.to_string());
                Ok(())
            }
            Reply::Failed(e) => Err(e.into()),
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }

    /// Runs `command` on `shard`: here if it is this shard, else through its inbox.
    pub async fn ask(&self, shard: usize, command: Command) -> Result<Reply, ApiError> {
        if shard == self.id {
            return Ok(self.execute(command).await);
        }
        let rx = self.forward(shard, command)?;
        rx.await
            .map_err(|_| ApiError::Unavailable(format!("shard {shard} stopped before answering")))
    }

    /// Runs `command` on the shard that owns object `name` of `ns`; returns its reply (a
    /// failure as the error) and which shard answered.
    pub async fn ask_owner(&self, ns: &str, name: &str, command: Command) -> Result<(Reply, usize), ApiError> {
        let owner = self.node.partitioner.shard(ns, name);
        match self.ask(owner, command).await? {
            Reply::Failed(e) => Err(e.into()),
            r => Ok((r, owner)),
        }
    }

    pub fn forward(&self, shard: usize, command: Command) -> Result<oneshot::Receiver<Reply>, ApiError> {
        let metrics = &self.node.metrics[self.id];
        metrics.forwarded_total.fetch_add(1, Relaxed);
        self.node.inboxes[shard].forward(command).map_err(|e| match e {
            ForwardError::Full => {
                metrics.overloaded_total.fetch_add(1, Relaxed);
                ApiError::Overloaded(format!("shard {shard} has too much queued work; retry later"))
            }
            ForwardError::Closed => ApiError::Unavailable(format!("shard {shard} is stopped")),
        })
    }

    /// Runs a command on every shard (the commands are sent first, then the answers awaited,
    /// so the shards work in parallel). Answers are in shard order.
    pub async fn ask_all(&self, make: impl Fn() -> Command) -> Result<Vec<Reply>, ApiError> {
        let shards = self.node.shard_count();
        let mut pending = Vec::with_capacity(shards);
        for s in 0..shards {
            pending.push(if s == self.id {
                None
            } else {
                Some(self.forward(s, make())?)
            });
        }
        let mut out = Vec::with_capacity(shards);
        for (s, p) in pending.into_iter().enumerate() {
            out.push(match p {
                None => self.execute(make()).await,
                Some(rx) => rx
                    .await
                    .map_err(|_| ApiError::Unavailable(format!("shard {s} stopped before answering")))?,
            });
        }
        Ok(out)
    }
}

/// The shard thread's body. Reports on `ready` once its listeners are bound (or why not).
pub fn run(id: usize, node: Arc<Node>, inbox: async_channel::Receiver<Envelope>, ready: Sender<Result<(), String>>) {
    if node.config.pin_shards {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if let Err(e) = monoio::utils::bind_to_cpu_set(Some(id % cpus)) {
            warn!(shard = id, error = %e, "cannot pin shard thread to a CPU; running unpinned");
        }
    }
    let runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(RING_ENTRIES)
        .enable_timer()
        .build();
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "shard {id}: cannot create an io_uring instance ({e}); flo needs Linux 5.11+ with io_uring \
                 enabled (check sysctl kernel.io_uring_disabled and RLIMIT_MEMLOCK)"
            )));
            return;
        }
    };
    runtime.block_on(async move {
        let api_addr = SocketAddr::new(node.bind, node.config.dashboard_port);
        let opts = ListenerOpts::new().reuse_port(true).reuse_addr(true).backlog(BACKLOG);
        let listener = match TcpListener::bind_with_config(api_addr, &opts) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!(
                    "dashboard_port: shard {id} cannot listen on {api_addr}: {e}"
                )));
                return;
            }
        };
        let metrics_listener = if id == 0 {
            let addr = SocketAddr::new(node.bind, node.config.metrics_port);
            let opts = ListenerOpts::new().reuse_port(false).reuse_addr(true).backlog(BACKLOG);
            match TcpListener::bind_with_config(addr, &opts) {
                Ok(l) => Some(l),
                Err(e) => {
                    let _ = ready.send(Err(format!("metrics_port: cannot listen on {addr}: {e}")));
                    return;
                }
            }
        } else {
            None
        };
        let shard = Rc::new(Shard::new(id, node.clone()));
        // Listeners are up before recovery, so /health can say "starting" meanwhile.
        monoio::spawn(serve_inbox(shard.clone(), inbox));
        monoio::spawn(sample_rates(shard.clone()));
        monoio::spawn(timer(shard.clone()));
        monoio::spawn(snapshot_timer(shard.clone()));
        monoio::spawn(super::scrub::timer(shard.clone()));
        if let Some(l) = metrics_listener {
            monoio::spawn(accept_metrics(shard.clone(), l));
        }
        let accepting = monoio::spawn({
            let shard = shard.clone();
            async move { accept_api(&shard, listener).await }
        });

        let flusher = match recover(&shard).await {
            Ok(log) => {
                let flusher = monoio::spawn(log.clone().run_flusher());
                shard.engine.set_log(log);
                flusher
            }
            Err(e) => {
                let _ = ready.send(Err(format!("shard {id}: {e}")));
                return;
            }
        };
        // Multi-part time-series writes pending at the last stop are settled with the other
        // shards before anything is served.
        let flusher = match crate::ts::exec::resolve_pending(&shard.engine).await {
            Ok(()) => flusher,
            Err(e) => {
                let _ = ready.send(Err(format!(
                    "shard {id}: cannot settle pending time-series writes: {e}"
                )));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        accepting.await;
        drain(&shard).await;
        // Other shards' connections may still forward work here: the log keeps running until
        // every shard has drained, then writes what is pending and stops.
        all_drained(&shard).await;
        crate::snapshot::shard::at_shutdown(&shard.engine).await;
        if let Ok(log) = shard.log() {
            log.stop();
        }
        flusher.await;
    });
}

/// The options shard `id`'s log opens with.
pub(crate) fn log_options(node: &Node, id: usize) -> LogOptions {
    LogOptions {
        shard_id: id as u32,
        segment_bytes: node.config.log.segment_bytes,
        batch_max_bytes: node.config.log.batch_max_bytes as usize,
        durability: node.config.durability,
        flush_interval: Duration::from_millis(node.config.log.flush_interval_ms),
        commit_wait: Duration::from_micros(node.config.log.commit_wait_us),
        repair: node.repair,
    }
}

/// Opens the shard's log, replaying every entry into the shard's state.
#[allow(
    clippy::clone_on_copy,
    reason = "ShardFs is the Copy RealFs only outside the unit tests"
)]
pub(crate) async fn recover(shard: &Rc<Shard>) -> Result<Rc<Log<ShardFs>>, LogError> {
    let node = &shard.node;
    let engine = &shard.engine;
    let opts = log_options(node, shard.id);
    let dir = node.config.data_dir.join(shard_dir_name(shard.id));
    let metrics = node.log_metrics[shard.id].clone();
    let load = || async {
        crate::snapshot::shard::load(engine, &dir)
            .await
            .map_err(|reason| LogError::Corrupt {
                file: dir.clone(),
                offset: 0,
                reason,
            })
    };
    let replay = |e: &crate::log::format::EntryRef<'_>, at| engine.replay(e, at).map_err(|c| c.0);
    let from_lsn = load().await?;
    let opened = crate::log::open(
        engine.fs.clone(),
        dir.clone(),
        opts.clone(),
        metrics.clone(),
        from_lsn,
        replay,
    )
    .await;
    let (log, stats) = match opened {
        // `--repair` cut the log before the snapshot's LSN: the snapshots past the cut hold
        // state the log no longer has. They go, and recovery starts over without them.
        Err(LogError::SnapshotAhead { log_end, snapshot }) if node.repair => {
            warn!(
                shard = shard.id,
                log_end, snapshot, "repair: dropping snapshots past the cut log's end"
            );
            crate::snapshot::shard::remove_after(&engine.fs, &dir, log_end)
                .await
                .map_err(|reason| LogError::Corrupt {
                    file: dir.clone(),
                    offset: 0,
                    reason,
                })?;
            engine.reset();
            let from_lsn = load().await?;
            crate::log::open(engine.fs.clone(), dir, opts, metrics, from_lsn, replay).await?
        }
        other => other?,
    };
    let mb_per_s = if stats.millis > 0 {
        stats.bytes as f64 / 1e3 / stats.millis as f64
    } else {
        0.0
    };
    info!(
        shard = shard.id,
        segments = stats.segments,
        entries = stats.entries,
        bytes = stats.bytes,
        torn_bytes = stats.torn_bytes,
        ms = stats.millis,
        mb_per_s = format!("{mb_per_s:.0}"),
        "log recovered"
    );
    if stats.repaired_dropped_entries > 0 {
        warn!(
            shard = shard.id,
            dropped = stats.repaired_dropped_entries,
            "repair dropped entries after corruption"
        );
    }
    let log = Rc::new(log);
    // Prepare a segment in the background, so one is ready before the first append needs it.
    monoio::spawn({
        let log = log.clone();
        let id = shard.id;
        async move {
            if let Err(e) = log.make_spare().await {
                warn!(shard = id, error = %e, "cannot prepare a log segment yet");
            }
        }
    });
    Ok(log)
}

/// Accepts API connections until the shard stops.
async fn accept_api(shard: &Rc<Shard>, listener: TcpListener) {
    let node = &shard.node;
    let metrics = &node.metrics[shard.id];
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = shard.stop.wait() => None,
        };
        let (stream, peer) = match accepted {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                // Out of descriptors or memory: back off instead of spinning.
                warn!(shard = shard.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let open = node.connections.fetch_add(1, AcqRel) + 1;
        metrics.connections_total.fetch_add(1, Relaxed);
        if open > node.config.http.max_connections {
            metrics.connections_refused_total.fetch_add(1, Relaxed);
            metrics.overloaded_total.fetch_add(1, Relaxed);
            debug!(shard = shard.id, %peer, "connection limit reached");
            let node = node.clone();
            monoio::spawn(async move {
                refuse(stream).await;
                node.connections.fetch_sub(1, AcqRel);
            });
            continue;
        }
        metrics.connections_active.fetch_add(1, Relaxed);
        let shard = shard.clone();
        monoio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let api = Api::new(shard.clone());
            crate::http::serve(stream, &api, &shard.node.limits, &shard.stop).await;
            shard.node.metrics[shard.id].connections_active.fetch_sub(1, Relaxed);
            shard.node.connections.fetch_sub(1, AcqRel);
        });
    }
    drop(listener);
    debug!(shard = shard.id, "listener closed");
}

/// Answers a connection over the limit with 429 and closes it.
async fn refuse(mut stream: TcpStream) {
    let mut out = Vec::with_capacity(256);
    let resp = ApiError::Overloaded("too many open connections; retry later".into()).to_response();
    encode(&resp, &mut out, true, false, false);
    let _ = monoio::time::timeout(Duration::from_secs(1), stream.write_all(out)).await;
}

/// Accepts metrics connections (shard 0 only) until the shard stops.
async fn accept_metrics(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = shard.stop.wait() => None,
        };
        match accepted {
            None => break,
            Some(Ok((stream, _))) => {
                let shard = shard.clone();
                monoio::spawn(async move {
                    let api = MetricsApi::new(shard.clone());
                    crate::http::serve(stream, &api, &shard.node.limits, &shard.stop).await;
                });
            }
            Some(Err(e)) => {
                warn!(error = %e, "metrics accept failed");
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Executes commands from other shards, each in its own task so a command waiting for the
/// log does not hold up the others (they join the same group commit).
async fn serve_inbox(shard: Rc<Shard>, inbox: async_channel::Receiver<Envelope>) {
    while let Ok(env) = inbox.recv().await {
        let shard = shard.clone();
        monoio::spawn(async move {
            let reply = shard.execute(env.command).await;
            if let Some(tx) = env.reply {
                // The asking request may have gone away; its answer is then dropped.
                let _ = tx.send(reply);
            }
        });
    }
}

/// The shard's timer: a round of the engine's timer work every `machine::timer::QUEUE_EVERY`,
/// with streams and the slow machines at their own pace, until the shard stops.
#[allow(
    clippy::disallowed_methods,
    reason = "when to look is monotonic pacing; what a round proposes is stamped by the engine's clock"
)]
async fn timer(shard: Rc<Shard>) {
    use crate::machine::timer::{round, Round, QUEUE_EVERY, SLOW_EVERY, STREAM_EVERY};
    let (mut stream_at, mut slow_at) = (monoio::time::Instant::now(), monoio::time::Instant::now());
    loop {
        monoio::select! {
            _ = monoio::time::sleep(QUEUE_EVERY) => {},
            _ = shard.stop.wait() => break,
        }
        let now = monoio::time::Instant::now();
        let r = Round {
            streams: now >= stream_at,
            slow: now >= slow_at,
        };
        if r.streams {
            stream_at = now + STREAM_EVERY;
        }
        if r.slow {
            slow_at = now + SLOW_EVERY;
        }
        round(&shard.engine, r).await;
    }
}

/// The shard's snapshot timer: snapshots and compaction when enough log was written, until the
/// shard stops.
async fn snapshot_timer(shard: Rc<Shard>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(crate::snapshot::shard::TIMER_EVERY) => {},
            _ = shard.stop.wait() => break,
        }
        crate::snapshot::shard::maybe_take(&shard.engine).await;
    }
}

/// Samples the operation counter once a second for the ops/s window.
async fn sample_rates(shard: Rc<Shard>) {
    let metrics = &shard.node.metrics[shard.id];
    loop {
        metrics.sample_rate(shard.node.clock.now_ms());
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_secs(1)) => {},
            _ = shard.stop.wait() => break,
        }
    }
}

/// After the listener closed: wait for this shard's connections to finish (bounded by the
/// grace period), then keep serving the inbox until every shard is done.
#[allow(clippy::disallowed_methods, reason = "the shutdown grace period is monotonic pacing")]
async fn drain(shard: &Rc<Shard>) {
    let node = &shard.node;
    let grace = Duration::from_millis(node.config.http.shutdown_grace_ms);
    let deadline = monoio::time::Instant::now() + grace;
    let metrics = &node.metrics[shard.id];
    while metrics.connections_active.load(Relaxed) > 0 && monoio::time::Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    let left = metrics.connections_active.load(Relaxed);
    if left > 0 {
        warn!(
            shard = shard.id,
            connections = left,
            "grace period over; closing connections still busy"
        );
    }
}

/// Waits (serving the inbox meanwhile) until every shard has drained its connections.
async fn all_drained(shard: &Rc<Shard>) {
    let node = &shard.node;
    node.drained.fetch_add(1, AcqRel);
    while node.drained.load(std::sync::atomic::Ordering::Acquire) < node.shard_count() {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
}
