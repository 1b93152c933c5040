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

use std::cell::{OnceCell, RefCell};
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
use crate::kv::KvStore;
use crate::log::format::{shard_dir_name, EntryRef};
/// The disk under a shard's log: the real one. In unit tests it is the real disk or the
/// simulated one, chosen per shard (`log/either.rs`), so the crash simulation runs the real
/// executors on the simulated disk.
#[cfg(not(test))]
pub type ShardFs = crate::log::io::RealFs;
#[cfg(test)]
pub type ShardFs = crate::log::either::EitherFs;
use crate::log::{Log, LogError, LogOptions, Position};
use crate::namespace::{decode_create, encode_create, NamespaceRegistry, DEFAULT_NAMESPACE, ENTRY_NAMESPACE_CREATE};

/// io_uring submission queue entries per shard (the start-up checks probe the same size).
const RING_ENTRIES: u32 = super::preflight::RING_ENTRIES;
/// Listen backlog per shard.
const BACKLOG: i32 = 1024;

/// A shard's own state, reachable only from its thread.
pub struct Shard {
    pub id: usize,
    pub node: Arc<Node>,
    pub namespaces: RefCell<NamespaceRegistry>,
    pub stop: StopSignal,
    /// Set once recovery has opened the log.
    pub log: OnceCell<Rc<Log<ShardFs>>>,
    /// The disk the log is on.
    pub fs: ShardFs,
    /// The keys this shard owns.
    pub kv: RefCell<KvStore>,
    /// Readers waiting for keys of this shard to change.
    pub kv_watch: crate::kv::watch::Watchers,
    /// The queues this shard owns.
    pub queues: RefCell<crate::queue::state::QueueStore>,
    /// Consumers long-polling queues of this shard.
    pub queue_watch: crate::kv::watch::Watchers,
    /// The streams this shard owns.
    pub streams: RefCell<crate::stream::state::StreamStore>,
    /// Readers long-polling streams of this shard.
    pub stream_watch: crate::kv::watch::Watchers,
    /// The time series this shard owns.
    pub ts: RefCell<crate::ts::series::SeriesStore>,
    /// Namespaces whose record is known to exist (so a first write need not ask again).
    pub namespaces_known: RefCell<std::collections::HashSet<String>>,
    /// The shard's snapshots on disk and the one being taken.
    pub snapshots: crate::snapshot::shard::SnapshotCell,
    /// Writes this shard's connections have in progress (`http.max_writes_in_flight`).
    pub writes: super::admission::WriteGate,
}

/// Maps a log failure to the API's error model.
pub fn log_error(e: LogError) -> ApiError {
    match e {
        LogError::BatchFull => ApiError::Overloaded(e.to_string()),
        LogError::EntryTooLarge(_) => ApiError::PayloadTooLarge(e.to_string()),
        LogError::Stopping => ApiError::Unavailable("the server is stopping".into()),
        LogError::NoSpace { op: "append" } => ApiError::InsufficientStorage(
            "the disk is full: nothing was written; reads still work, and writes resume once space is freed".into(),
        ),
        other => ApiError::Unavailable(format!("the shard cannot write: {other}")),
    }
}

impl Shard {
    /// Shard `id` of `node`, empty, its log not open yet.
    pub fn new(id: usize, node: Arc<Node>) -> Shard {
        let waiters = node.config.limits.max_waiters_per_shard;
        Shard {
            id,
            namespaces: RefCell::new(NamespaceRegistry::default()),
            stop: StopSignal::default(),
            log: OnceCell::new(),
            fs: ShardFs::default(),
            kv: RefCell::new(KvStore::default()),
            kv_watch: crate::kv::watch::Watchers::new(waiters),
            queues: RefCell::new(crate::queue::exec::store(&node.config)),
            queue_watch: crate::kv::watch::Watchers::new(waiters),
            streams: RefCell::default(),
            stream_watch: crate::kv::watch::Watchers::new(waiters),
            ts: RefCell::default(),
            namespaces_known: RefCell::default(),
            snapshots: RefCell::default(),
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
    pub fn for_tests_on(mut config: crate::config::Config, fs: ShardFs) -> Shard {
        let resolved = config.validate(None).expect("a valid test configuration");
        let (node, _receivers) = Node::new(config, resolved);
        Shard {
            fs,
            ..Shard::new(0, Arc::new(node))
        }
    }
    /// The shard's log, once recovery has opened it.
    pub fn log(&self) -> Result<&Rc<Log<ShardFs>>, ApiError> {
        self.log
            .get()
            .ok_or_else(|| ApiError::Unavailable("the shard is still recovering its log".into()))
    }

    /// Executes a command on this shard.
    pub async fn execute(&self, command: Command) -> Reply {
        match command {
            Command::CreateNamespace { name, created_at_ms } => self.create_namespace(name, created_at_ms).await,
            Command::ListNamespaces => Reply::Namespaces {
                records: self.namespaces.borrow().list(),
                kv_keys: self.kv.borrow().key_counts(crate::metrics::now_ms()),
                queues: self.queues.borrow().counts().into_iter().collect(),
                streams: self.streams.borrow().counts().into_iter().collect(),
                measurements: self.ts.borrow().measurement_names(),
            },
            Command::Queue(cmd) => match crate::queue::exec::execute(self, cmd).await {
                Ok(r) => Reply::Queue(r),
                Err(e) => Reply::Failed(e),
            },
            Command::Stream(cmd) => match crate::stream::exec::execute(self, cmd).await {
                Ok(r) => Reply::Stream(r),
                Err(e) => Reply::Failed(e),
            },
            Command::Ts(cmd) => match crate::ts::exec::execute(self, cmd).await {
                Ok(r) => Reply::Ts(r),
                Err(e) => Reply::Failed(e),
            },
            Command::Kv(cmd) => match crate::kv::exec::execute(self, cmd).await {
                Ok(r) => Reply::Kv(r),
                Err(e) => Reply::Failed(e),
            },
            Command::Stop => {
                self.stop.trigger();
                Reply::Stopping
            }
        }
    }

    /// Creates a namespace record on this (its owner) shard; answered once durable.
    async fn create_namespace(&self, name: String, created_at_ms: u64) -> Reply {
        debug_assert_eq!(
            self.node.partitioner.namespace_shard(&name),
            self.id,
            "namespace on wrong shard"
        );
        if !self.namespaces.borrow_mut().reserve(&name, created_at_ms) {
            return Reply::NamespaceCreated(false);
        }
        let durable = async {
            let ticket = self
                .log()?
                .append(ENTRY_NAMESPACE_CREATE, &encode_create(&name, created_at_ms))
                .map_err(log_error)?;
            ticket.await.map_err(log_error)
        };
        match durable.await {
            Ok(_) => {
                self.namespaces.borrow_mut().commit(&name, created_at_ms);
                Reply::NamespaceCreated(true)
            }
            Err(e) => {
                self.namespaces.borrow_mut().release(&name);
                Reply::Failed(e)
            }
        }
    }

    /// Makes sure `ns` has its namespace record (a namespace comes into existence on its first
    /// write): asks the namespace's owner shard once, then remembers the answer.
    pub async fn ensure_namespace(&self, ns: &str) -> Result<(), ApiError> {
        if self.namespaces_known.borrow().contains(ns) {
            return Ok(());
        }
        let owner = self.node.partitioner.namespace_shard(ns);
        let command = Command::CreateNamespace {
            name: ns.to_string(),
            created_at_ms: crate::metrics::now_ms(),
        };
        // Not through `ask`/`execute`: a KV command runs inside `execute`, so this must not
        // recurse into it.
        let reply = if owner == self.id {
            self.create_namespace(ns.to_string(), crate::metrics::now_ms()).await
        } else {
            self.forward(owner, command)?
                .await
                .map_err(|_| ApiError::Unavailable(format!("shard {owner} stopped before answering")))?
        };
        match reply {
            Reply::NamespaceCreated(_) => {
                self.namespaces_known.borrow_mut().insert(ns.to_string());
                Ok(())
            }
            Reply::Failed(e) => Err(e),
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }

    /// Empties every primitive's state (before recovery starts over).
    fn reset_state(&self) {
        *self.namespaces.borrow_mut() = NamespaceRegistry::default();
        if self.node.partitioner.namespace_shard(DEFAULT_NAMESPACE) == self.id {
            self.namespaces
                .borrow_mut()
                .create(DEFAULT_NAMESPACE, self.node.started_at_ms);
        }
        *self.kv.borrow_mut() = KvStore::default();
        *self.queues.borrow_mut() = crate::queue::exec::store(&self.node.config);
        *self.streams.borrow_mut() = Default::default();
        *self.ts.borrow_mut() = Default::default();
        *self.snapshots.borrow_mut() = Default::default();
    }

    /// Applies one recovered log entry.
    fn replay(&self, entry: &EntryRef<'_>, at: Position) -> Result<(), String> {
        match entry.entry_type {
            ENTRY_NAMESPACE_CREATE => {
                let (name, created_at_ms) = decode_create(entry.body)?;
                self.namespaces.borrow_mut().create(&name, created_at_ms);
                Ok(())
            }
            crate::log::relocated::ENTRY_RELOCATED => crate::snapshot::compact::replay(self, entry.body, at),
            _ if self.kv.borrow_mut().replay(entry, at)? => Ok(()),
            _ if self.queues.borrow_mut().replay(entry, at)? => Ok(()),
            _ if self.streams.borrow_mut().replay(entry, at)? => Ok(()),
            _ if crate::ts::exec::replay(&mut self.ts.borrow_mut(), entry, at)? => Ok(()),
            t => Err(format!(
                "entry type {t} at LSN {} is unknown (written by a newer flo?)",
                entry.lsn
            )),
        }
    }

    /// Waits until `key` of `ns` changes in `watchers` (one of this shard's), or until the
    /// clock reaches `until_ms`; 429 when the shard already has its maximum of waiters. Keeps
    /// the shard's `waiters` figure (KV, queue and stream long-polls together) up to date.
    pub async fn wait_change(
        &self,
        watchers: &crate::kv::watch::Watchers,
        ns: &str,
        key: &str,
        until_ms: u64,
    ) -> Result<(), ApiError> {
        let change = watchers
            .changed(ns, key)
            .ok_or_else(|| ApiError::Overloaded("too many requests are waiting on this shard".into()))?;
        let count = || (self.kv_watch.len() + self.queue_watch.len() + self.stream_watch.len()) as u64;
        let waiters = &self.node.metrics[self.id].waiters;
        waiters.store(count(), Relaxed);
        let left = until_ms.saturating_sub(crate::metrics::now_ms());
        let _ = monoio::time::timeout(Duration::from_millis(left), change).await;
        waiters.store(count(), Relaxed);
        Ok(())
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
            Reply::Failed(e) => Err(e),
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
        if node.partitioner.namespace_shard(DEFAULT_NAMESPACE) == id {
            shard
                .namespaces
                .borrow_mut()
                .create(DEFAULT_NAMESPACE, node.started_at_ms);
        }
        // Listeners are up before recovery, so /health can say "starting" meanwhile.
        monoio::spawn(serve_inbox(shard.clone(), inbox));
        monoio::spawn(sample_rates(shard.clone()));
        monoio::spawn(sweep_kv(shard.clone()));
        monoio::spawn(crate::queue::exec::timer(
            shard.clone(),
            Duration::from_millis(QUEUE_TICK_MS),
        ));
        monoio::spawn(crate::stream::exec::timer(
            shard.clone(),
            Duration::from_millis(STREAM_TICK_MS),
        ));
        monoio::spawn(crate::ts::exec::timer(shard.clone(), Duration::from_millis(TS_TICK_MS)));
        monoio::spawn(crate::snapshot::shard::timer(shard.clone()));
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
                let _ = shard.log.set(log);
                flusher
            }
            Err(e) => {
                let _ = ready.send(Err(format!("shard {id}: {e}")));
                return;
            }
        };
        // Multi-part time-series writes pending at the last stop are settled with the other
        // shards before anything is served.
        let flusher = match crate::ts::exec::resolve_pending(&shard).await {
            Ok(()) => flusher,
            Err(e) => {
                let _ = ready.send(Err(format!(
                    "shard {id}: cannot settle pending time-series writes: {}",
                    e.message()
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
        crate::snapshot::shard::at_shutdown(&shard).await;
        if let Ok(log) = shard.log() {
            log.stop();
        }
        flusher.await;
    });
}

/// Opens the shard's log, replaying every entry into the shard's state.
#[allow(
    clippy::clone_on_copy,
    reason = "ShardFs is the Copy RealFs only outside the unit tests"
)]
pub(crate) async fn recover(shard: &Rc<Shard>) -> Result<Rc<Log<ShardFs>>, LogError> {
    let node = &shard.node;
    let opts = LogOptions {
        shard_id: shard.id as u32,
        segment_bytes: node.config.log.segment_bytes,
        batch_max_bytes: node.config.log.batch_max_bytes as usize,
        durability: node.config.durability,
        flush_interval: Duration::from_millis(node.config.log.flush_interval_ms),
        commit_wait: Duration::from_micros(node.config.log.commit_wait_us),
        repair: node.repair,
    };
    let dir = node.config.data_dir.join(shard_dir_name(shard.id));
    let metrics = node.log_metrics[shard.id].clone();
    let load = || async {
        crate::snapshot::shard::load(shard, &shard.fs, &dir)
            .await
            .map_err(|reason| LogError::Corrupt {
                file: dir.clone(),
                offset: 0,
                reason,
            })
    };
    let from_lsn = load().await?;
    let opened = crate::log::open(
        shard.fs.clone(),
        dir.clone(),
        opts.clone(),
        metrics.clone(),
        from_lsn,
        |e, at| shard.replay(e, at),
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
            crate::snapshot::shard::remove_after(&shard.fs, &dir, log_end)
                .await
                .map_err(|reason| LogError::Corrupt {
                    file: dir.clone(),
                    offset: 0,
                    reason,
                })?;
            shard.reset_state();
            let from_lsn = load().await?;
            crate::log::open(shard.fs.clone(), dir, opts, metrics, from_lsn, |e, at| {
                shard.replay(e, at)
            })
            .await?
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

/// Slots the KV sweep visits per tick.
const KV_SWEEP_BUDGET: usize = 20_000;
/// How often the queue timer looks for leases and delays that ran out.
const QUEUE_TICK_MS: u64 = 10;
/// How often the stream timer enforces retention.
const STREAM_TICK_MS: u64 = 100;
/// How often the time-series timer cuts aged heads, places chunks and enforces retention.
const TS_TICK_MS: u64 = 1000;

/// Frees the memory of expired and deleted keys a little at a time, once a second.
async fn sweep_kv(shard: Rc<Shard>) {
    loop {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_secs(1)) => {},
            _ = shard.stop.wait() => break,
        }
        let now = crate::metrics::now_ms();
        let mut kv = shard.kv.borrow_mut();
        kv.sweep(now, KV_SWEEP_BUDGET);
        let m = &shard.node.metrics[shard.id];
        m.kv_slots.store(kv.slot_count(), Relaxed);
        m.kv_index_bytes.store(kv.index_bytes(), Relaxed);
        let others =
            shard.queues.borrow().dead_bytes() + shard.streams.borrow().dead_bytes() + shard.ts.borrow().dead_bytes();
        m.log_dead_bytes
            .store(kv.dead_bytes().map(|(_, d)| d).sum::<u64>() + others, Relaxed);
        if let Some(log) = shard.log.get() {
            m.log_entry_bytes
                .store(log.segments().iter().map(|s| s.1).sum(), Relaxed);
        }
    }
}

/// Samples the operation counter once a second for the ops/s window.
async fn sample_rates(shard: Rc<Shard>) {
    let metrics = &shard.node.metrics[shard.id];
    loop {
        metrics.sample_rate(crate::metrics::now_ms());
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_secs(1)) => {},
            _ = shard.stop.wait() => break,
        }
    }
}

/// After the listener closed: wait for this shard's connections to finish (bounded by the
/// grace period), then keep serving the inbox until every shard is done.
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
