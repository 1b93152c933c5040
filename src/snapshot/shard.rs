//! A shard's snapshots: taking one (encode every primitive in one step on the shard's thread,
//! wait until the LSN it stands for is durable, fill in the places of entries that were still
//! in flight, write the file atomically), loading the newest usable one before the log is
//! replayed, and keeping the two newest.
//!
//! The work is generic over the file system (`F: Fs`, the real disk or the simulated one of the
//! tests) and over the state it snapshots ([`Machines`]): a [`Ctx`] carries the log, the shard's
//! id and settings, its [`Snapshots`] and metrics. [`Shard`] is the server's [`Machines`]; the
//! server's entry points ([`take`], [`load`], [`timer`], [`at_shutdown`]) build the [`Ctx`] from
//! it.
//!
//! Invariants: a snapshot file exists under its final name only once every entry up to its LSN
//! is durable and the file itself is durable (temporary file, fdatasync, rename, directory
//! fsync); one snapshot is taken at a time per shard; the state is encoded without yielding, so
//! it is exactly the state after the entries up to its LSN (entries are applied when appended).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::codec::{fill_place, Dec, Enc};
use super::compact::PassStats;
use super::file::{self, SECTIONS};
use crate::log::format::parse_segment_file_name;
use crate::log::io::{tmp_path, Fs};
use crate::log::metrics::LogMetrics;
use crate::log::{Log, Position};
use crate::server::shard::Shard;

/// The state machines of a shard, as snapshots and compaction see them. Every method runs on
/// the shard's thread without yielding.
pub trait Machines {
    /// Captures every section body after the segments section, in [`SECTIONS`] order
    /// (namespaces, KV, queues, streams, time series): encoded at once, or frozen to be encoded
    /// step by step afterwards.
    fn capture(&self) -> Vec<Captured>;
    /// Restores the state from a parsed, checked file (every section): replaces the state only
    /// if every section decodes, and leaves it as it was otherwise.
    fn restore(&self, p: &file::Parsed<'_>) -> Result<(), String>;
    /// Whether the state still needs the entry at `from` (segment, offset), of `entry_type`
    /// with `body` (the original's, for a copy).
    fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool;
    /// Applies a durable copy at `to` of the entry that was at `from` (live and in replay):
    /// true if the state points at the copy from now on, false if the copy is dead.
    fn relocate(&self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, String>;
}

/// What taking snapshots and compacting work with: one shard's state machines, its open log
/// (whose directory and file system hold the snapshots too), and its snapshot bookkeeping.
pub struct Ctx<'a, F: Fs, M: Machines> {
    pub machines: &'a M,
    pub log: Rc<Log<F>>,
    pub shard_id: usize,
    /// `log.compact_live_percent`: sealed segments whose needed bytes are under this share are
    /// compacted (0: never).
    pub compact_live_percent: u64,
    pub snapshots: &'a SnapshotCell,
    pub metrics: &'a LogMetrics,
}

/// The server's [`Ctx`] of a shard whose log is open.
pub fn ctx(shard: &Shard) -> Result<Ctx<'_, crate::server::shard::ShardFs, Shard>, String> {
    Ok(Ctx {
        machines: shard,
        log: shard.log().map_err(|e| e.message())?.clone(),
        shard_id: shard.id,
        compact_live_percent: shard.node.config.log.compact_live_percent,
        snapshots: &shard.snapshots,
        metrics: &shard.node.log_metrics[shard.id],
    })
}

/// A section as [`Machines::capture`] took it.
pub enum Captured {
    /// Encoded already.
    Encoded(Enc),
    /// The KV store frozen (copy on write): encoded [`KV_STEP`] records at a time, letting the
    /// shard run in between.
    Kv(Box<crate::kv::KvSnapshot>),
}

/// KV records encoded per step of a snapshot (about a millisecond's work). Unit tests take
/// small steps, so the crash tests' writers change the store between them.
pub const KV_STEP: usize = if cfg!(test) { 5 } else { 32 * 1024 };

impl Captured {
    /// Encodes what is left, yielding to the shard's other tasks between steps; returns the
    /// section and the longest step.
    async fn finish(self) -> (Enc, Duration) {
        match self {
            Captured::Encoded(e) => (e, Duration::ZERO),
            Captured::Kv(mut kv) => {
                let mut e = Enc::new();
                let mut longest = Duration::ZERO;
                loop {
                    let step = Instant::now();
                    let done = kv.encode_some(&mut e, KV_STEP);
                    longest = longest.max(step.elapsed());
                    if done {
                        return (e, longest);
                    }
                    crate::sched::yield_now().await;
                }
            }
        }
    }
}

/// Snapshot files kept per shard: the newest, and the one before it to fall back on.
pub const KEEP: usize = 2;

/// What a shard knows about its snapshots.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// A snapshot is being taken.
    pub taking: bool,
    /// [`log_bytes`] when the last snapshot was taken.
    pub bytes_at_last: u64,
    /// The size of the last snapshot file taken (0: none yet).
    pub last_size: u64,
    /// The snapshots on disk, oldest first: (LSN, segments their places point at with the
    /// live bytes there — `None` for an older snapshot found at start and not read).
    pub kept: Vec<(u64, Option<BTreeMap<u64, u64>>)>,
    /// Segments compaction copied out, waiting to be deleted.
    pub moved: std::collections::BTreeSet<u64>,
}

/// What taking one snapshot did.
#[derive(Debug, Clone)]
pub struct Taken {
    pub lsn: u64,
    pub bytes: u64,
    /// How long the shard was held while the state was encoded.
    pub pause: Duration,
    pub total: Duration,
}

/// Takes a snapshot of the shard now, unless one is being taken (then `Ok(None)`), or the log
/// is empty.
pub async fn take(shard: &Rc<Shard>) -> Result<Option<Taken>, String> {
    if shard.snapshots.borrow().taking {
        return Ok(None);
    }
    let ctx = ctx(shard)?;
    shard.snapshots.borrow_mut().taking = true;
    let r = take_now(&ctx).await;
    shard.snapshots.borrow_mut().taking = false;
    r
}

/// Takes a snapshot now (the caller holds `taking`); `Ok(None)` if the log is empty.
pub async fn take_now<F: Fs, M: Machines>(ctx: &Ctx<'_, F, M>) -> Result<Option<Taken>, String> {
    let log = &ctx.log;
    let metrics = ctx.metrics;
    let started = Instant::now();
    let lsn = log.next_lsn() - 1;
    if lsn == 0 {
        return Ok(None);
    }
    let bytes_total = log_bytes(metrics);
    // One step, no yield: the state after exactly the entries up to `lsn` (the KV store frozen,
    // to be encoded step by step while the shard goes on).
    let captured = ctx.machines.capture();
    let mut pause = started.elapsed();
    if captured.len() != SECTIONS.len() - 1 {
        return Err(format!(
            "{} sections captured, {} expected",
            captured.len(),
            SECTIONS.len() - 1
        ));
    }
    let mut encs = Vec::with_capacity(captured.len());
    for c in captured {
        let (e, longest) = c.finish().await;
        pause = pause.max(longest);
        encs.push(e);
    }

    log.wait_durable(lsn).await.map_err(|e| e.to_string())?;
    let mut bodies = Vec::with_capacity(SECTIONS.len());
    let mut live: BTreeMap<u64, u64> = BTreeMap::new();
    let mut wanted: Vec<u64> = Vec::new();
    let parts: Vec<_> = encs.into_iter().map(Enc::finish).collect();
    for (_, pending, l) in &parts {
        wanted.extend(pending.iter().map(|&(_, lsn)| lsn));
        for (&s, &b) in l {
            *live.entry(s).or_default() += b;
        }
    }
    wanted.sort_unstable();
    wanted.dedup();
    let places = log.places_of(&wanted).map_err(|e| e.to_string())?;
    let place_of: std::collections::HashMap<u64, (u64, u64, u64)> = wanted.iter().copied().zip(places).collect();
    for (mut buf, pending, _) in parts {
        for (at, lsn) in pending {
            let (segment, offset, stored) = place_of[&lsn];
            fill_place(&mut buf, at, segment, offset);
            *live.entry(segment).or_default() += stored;
        }
        bodies.push(buf);
    }
    live.retain(|_, b| *b > 0);
    bodies.insert(0, file::encode_segments(&live));
    let bytes = file::encode(ctx.shard_id as u32, lsn, crate::metrics::now_ms(), &bodies);
    drop(bodies);
    let size = bytes.len() as u64;
    let path = log.dir().join(file::file_name(lsn));
    if let Err(e) = log.fs().write_atomic(&path, bytes).await {
        let _ = log.fs().remove(&tmp_path(&path)).await;
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    let mut kept = {
        let mut s = ctx.snapshots.borrow_mut();
        s.bytes_at_last = bytes_total;
        s.last_size = size;
        s.kept.retain(|(l, _)| *l != lsn);
        s.kept.push((lsn, Some(live)));
        std::mem::take(&mut s.kept)
    };
    // Older snapshots beyond the kept ones go (their files; a failure only leaves a file).
    let extra = kept.len().saturating_sub(KEEP);
    for (old, _) in kept.drain(..extra) {
        let p = log.dir().join(file::file_name(old));
        if let Err(e) = log.fs().remove(&p).await {
            warn!(shard = ctx.shard_id, file = %p.display(), error = %e, "cannot remove an old snapshot");
        }
    }
    ctx.snapshots.borrow_mut().kept = kept;
    let total = started.elapsed();
    metrics.snapshots_total.inc();
    metrics.snapshot_bytes_total.add(size);
    metrics.snapshot_pause_us_max.max(pause.as_micros() as u64);
    info!(
        shard = ctx.shard_id,
        lsn,
        bytes = size,
        pause_ms = format!("{:.1}", pause.as_secs_f64() * 1e3),
        ms = total.as_millis() as u64,
        "snapshot taken"
    );
    Ok(Some(Taken {
        lsn,
        bytes: size,
        pause,
        total,
    }))
}

/// Takes a snapshot, then runs a compaction pass after it — what the timer does each time.
/// `Ok(None)` if a snapshot is being taken already.
pub async fn take_and_compact<F: Fs, M: Machines>(ctx: &Ctx<'_, F, M>) -> Result<Option<PassStats>, String> {
    if ctx.snapshots.borrow().taking {
        return Ok(None);
    }
    ctx.snapshots.borrow_mut().taking = true;
    let r = match take_now(ctx).await {
        Ok(_) => {
            let mut moved = std::mem::take(&mut ctx.snapshots.borrow_mut().moved);
            let p = super::compact::pass(ctx, &mut moved).await;
            ctx.snapshots.borrow_mut().moved = moved;
            p.map(Some).map_err(|e| format!("compaction: {e}"))
        }
        Err(e) => Err(e),
    };
    ctx.snapshots.borrow_mut().taking = false;
    r
}

/// Decodes section `id` of a parsed file with `f`, which must read it whole.
pub fn section<T>(
    p: &file::Parsed<'_>,
    id: u32,
    f: impl FnOnce(&mut Dec<'_>) -> Result<T, String>,
) -> Result<T, String> {
    let mut d = p.section(id);
    let v = f(&mut d).map_err(|e| format!("section {id}: {e}"))?;
    d.done(&format!("section {id}"))?;
    Ok(v)
}

impl Machines for Shard {
    fn capture(&self) -> Vec<Captured> {
        let encoded = |f: &dyn Fn(&mut Enc)| {
            let mut e = Enc::new();
            f(&mut e);
            Captured::Encoded(e)
        };
        vec![
            encoded(&|e| self.namespaces.borrow().snapshot(e)),
            Captured::Kv(Box::new(self.kv.borrow().freeze())),
            encoded(&|e| self.queues.borrow().snapshot(e)),
            encoded(&|e| self.streams.borrow().snapshot(e)),
            encoded(&|e| self.ts.borrow().snapshot(e)),
        ]
    }

    fn restore(&self, p: &file::Parsed<'_>) -> Result<(), String> {
        let config = crate::queue::exec::store(&self.node.config).config;
        let namespaces = section(
            p,
            file::SECTION_NAMESPACES,
            crate::namespace::NamespaceRegistry::restore,
        )?;
        let kv = section(p, file::SECTION_KV, crate::kv::KvStore::restore)?;
        let queues = section(p, file::SECTION_QUEUES, |d| {
            crate::queue::state::QueueStore::restore(config, d)
        })?;
        let streams = section(p, file::SECTION_STREAMS, crate::stream::state::StreamStore::restore)?;
        let ts = section(p, file::SECTION_TS, crate::ts::series::SeriesStore::restore)?;
        *self.namespaces.borrow_mut() = namespaces;
        *self.kv.borrow_mut() = kv;
        *self.queues.borrow_mut() = queues;
        *self.streams.borrow_mut() = streams;
        *self.ts.borrow_mut() = ts;
        Ok(())
    }

    fn needs(&self, from: (u64, u64), entry_type: u16, body: &[u8]) -> bool {
        match entry_type {
            100..=199 => self.kv.borrow().needs(from, entry_type, body),
            200..=299 => self.queues.borrow().needs(from, entry_type, body),
            300..=399 => self.streams.borrow().needs(from, entry_type, body),
            400..=499 => self.ts.borrow().needs(from, entry_type, body),
            _ => false,
        }
    }

    fn relocate(&self, from: (u64, u64), to: &Position, entry_type: u16, body: &[u8]) -> Result<bool, String> {
        match entry_type {
            100..=199 => self.kv.borrow_mut().relocate(from, to, entry_type, body),
            200..=299 => self.queues.borrow_mut().relocate(from, to, entry_type, body),
            300..=399 => self.streams.borrow_mut().relocate(from, to, entry_type, body),
            400..=499 => self.ts.borrow_mut().relocate(from, to, entry_type, body),
            t => Err(format!("a relocated entry of type {t}, which is never copied")),
        }
    }
}

/// Why a snapshot file cannot be used.
enum Unusable {
    /// The header's LSN is not the one in the file's name.
    LsnMismatch(u64),
    Other(String),
}

impl From<String> for Unusable {
    fn from(why: String) -> Unusable {
        Unusable::Other(why)
    }
}

/// Checks a snapshot file of shard `shard_id` named for `lsn` and restores it into `machines`;
/// returns the segments it needs with their live bytes. `segments` are the segments in the
/// directory, ascending.
fn restore_file<M: Machines>(
    machines: &M,
    shard_id: usize,
    lsn: u64,
    bytes: &[u8],
    segments: &[u64],
) -> Result<BTreeMap<u64, u64>, Unusable> {
    let p = file::decode(bytes)?;
    if p.shard_id != shard_id as u32 {
        return Err(format!("written by shard {}", p.shard_id).into());
    }
    let live = file::decode_segments(&mut p.section(file::SECTION_SEGMENTS))?;
    for (s, _) in &live {
        if segments.binary_search(s).is_err() {
            return Err(format!(
                "it needs segment {} which is not there",
                crate::log::format::segment_file_name(*s)
            )
            .into());
        }
    }
    if p.lsn != lsn {
        return Err(Unusable::LsnMismatch(p.lsn));
    }
    machines.restore(&p)?;
    Ok(live.into_iter().collect())
}

/// What [`load_from`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The LSN of the snapshot restored (0: none, the whole log is replayed).
    pub lsn: u64,
    /// Snapshots passed over because they could not be used.
    pub passed_over: usize,
}

/// Restores the newest usable snapshot in `dir` into the shard's state and returns its LSN
/// (0 when there is none: the whole log is replayed). A snapshot that cannot be used (damaged,
/// or needing a segment that is gone) is passed over for the one before it, with a warning.
pub async fn load<F: Fs>(shard: &Shard, fs: &F, dir: &Path) -> Result<u64, String> {
    load_from(shard, shard.id, &shard.snapshots, fs, dir)
        .await
        .map(|l| l.lsn)
}

/// [`load`] for any state: restores the newest usable snapshot of shard `shard_id` in `dir`
/// into `machines` and records the snapshots on disk in `snapshots`; removes `.tmp` leftovers.
pub async fn load_from<F: Fs, M: Machines>(
    machines: &M,
    shard_id: usize,
    snapshots: &SnapshotCell,
    fs: &F,
    dir: &Path,
) -> Result<Loaded, String> {
    let names = match fs.list(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut snaps: Vec<u64> = Vec::new();
    let mut segments: Vec<u64> = Vec::new();
    for name in &names {
        if let Some(lsn) = file::parse_file_name(name) {
            snaps.push(lsn);
        } else if let Some(lsn) = parse_segment_file_name(name) {
            segments.push(lsn);
        } else if name.starts_with("snapshot-") && name.ends_with(".tmp") {
            // A snapshot that was being written: never complete, never used.
            let _ = fs.remove(&dir.join(name)).await;
        }
    }
    segments.sort_unstable();
    snaps.sort_unstable_by(|a, b| b.cmp(a));
    let mut passed_over = 0;
    for lsn in snaps.iter().copied() {
        let path = dir.join(file::file_name(lsn));
        let started = Instant::now();
        let r = match fs.read_small(&path) {
            Ok(Some(bytes)) => restore_file(machines, shard_id, lsn, &bytes, &segments),
            Ok(None) => Err(Unusable::Other("it disappeared".to_string())),
            Err(e) => Err(Unusable::Other(format!("cannot read it: {e}"))),
        };
        match r {
            Ok(live) => {
                let mut s = snapshots.borrow_mut();
                // The snapshots older than this one stay listed so compaction keeps what they
                // need — all of them, so the next snapshot removes those beyond the kept ones
                // (a crash between writing a snapshot and removing the oldest leaves one more).
                s.kept = snaps.iter().copied().filter(|&l| l < lsn).map(|l| (l, None)).collect();
                s.kept.reverse();
                s.kept.push((lsn, Some(live)));
                info!(
                    shard = shard_id,
                    file = %path.display(),
                    lsn,
                    ms = started.elapsed().as_millis() as u64,
                    "snapshot loaded"
                );
                return Ok(Loaded { lsn, passed_over });
            }
            Err(Unusable::LsnMismatch(found)) => {
                warn!(shard = shard_id, file = %path.display(), lsn = found, "snapshot's LSN does not match its name; passing it over")
            }
            Err(Unusable::Other(why)) => {
                warn!(shard = shard_id, file = %path.display(), reason = %why, "snapshot unusable; falling back to an older one or the whole log")
            }
        }
        passed_over += 1;
    }
    if passed_over > 0 {
        warn!(
            shard = shard_id,
            passed_over, "no usable snapshot: replaying the whole log"
        );
    }
    Ok(Loaded { lsn: 0, passed_over })
}

/// Whether compaction has work that waits for snapshots: segments copied out and waiting to
/// be deleted, sealed segments under the live share that the newest snapshot covers, or sealed
/// segments while fewer than [`KEEP`] snapshots exist (nothing can be freed before they do).
pub fn compaction_waiting<F: Fs, M: Machines>(ctx: &Ctx<'_, F, M>) -> bool {
    let percent = ctx.compact_live_percent;
    let s = ctx.snapshots.borrow();
    if percent == 0 {
        return false;
    }
    if !s.moved.is_empty() {
        return true;
    }
    if s.kept.len() < KEEP {
        return !ctx.log.sealed_segments().is_empty();
    }
    let Some((_, Some(live))) = s.kept.last() else {
        return false;
    };
    ctx.log
        .sealed_segments()
        .iter()
        .any(|&(first, _, bytes)| bytes > 0 && live.get(&first).copied().unwrap_or(0) * 100 < bytes * percent)
}

/// Removes the snapshots of `dir` past LSN `lsn` (after `--repair` cut the log there).
pub async fn remove_after<F: Fs>(fs: &F, dir: &Path, lsn: u64) -> Result<(), String> {
    let names = fs
        .list(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for name in names {
        if file::parse_file_name(&name).is_some_and(|l| l > lsn) {
            let p = dir.join(&name);
            fs.remove(&p)
                .await
                .map_err(|e| format!("cannot remove {}: {e}", p.display()))?;
        }
    }
    fs.sync_dir(dir)
        .await
        .map_err(|e| format!("cannot sync {}: {e}", dir.display()))
}

/// The log bytes that count toward the next snapshot: those this process wrote, plus those its
/// recovery replayed — written by earlier processes after the last snapshot, and replayed again
/// at every start until a snapshot covers them. Without the second part, a server killed more
/// often than every `snapshot_bytes` of writes would never snapshot, and its recovery would
/// replay an ever longer log.
pub fn log_bytes(metrics: &LogMetrics) -> u64 {
    metrics.bytes_total.get() + metrics.recovered_bytes.get()
}

/// Smallest log written between two snapshots taken for compaction.
const MIN_COMPACTION_INTERVAL: u64 = 1 << 20;
/// While compaction waits, a snapshot is due after this many times its predecessor's size of
/// log, so snapshot files stay at most a quarter of what the log writes.
const SNAPSHOT_AMORTIZATION: u64 = 4;

/// Whether a snapshot is due, `since` log bytes after the last one (of `last_size` bytes):
/// after `every` bytes (0: never, only at shutdown); while compaction `waiting`, sooner — after
/// four times the last snapshot's size (at least 1 MiB), but at most a `segment`'s worth.
pub fn due(since: u64, every: u64, segment: u64, last_size: u64, waiting: bool) -> bool {
    if every == 0 {
        return false;
    }
    if since >= every {
        return true;
    }
    let soon = last_size
        .saturating_mul(SNAPSHOT_AMORTIZATION)
        .clamp(MIN_COMPACTION_INTERVAL, segment.max(MIN_COMPACTION_INTERVAL));
    since >= soon && waiting
}

/// Takes a snapshot when one is [`due`], then runs a compaction pass.
pub async fn timer(shard: Rc<Shard>) {
    let every = shard.node.config.log.snapshot_bytes;
    let segment = shard.node.config.log.segment_bytes;
    loop {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_millis(200)) => {},
            _ = shard.stop.wait() => break,
        }
        let Ok(ctx) = ctx(&shard) else {
            continue;
        };
        let log = &ctx.log;
        if log.out_of_space() {
            // Try again for the next segment: space may have been freed.
            let _ = log.make_spare().await;
        }
        let written = log_bytes(ctx.metrics);
        let (since, last_size) = {
            let s = shard.snapshots.borrow();
            (written.saturating_sub(s.bytes_at_last), s.last_size)
        };
        // `compaction_waiting` walks the sealed segments: asked only when it can matter.
        if !due(since, every, segment, last_size, true)
            || !due(since, every, segment, last_size, compaction_waiting(&ctx))
        {
            continue;
        }
        if shard.snapshots.borrow().taking {
            continue;
        }
        if let Err(e) = take_and_compact(&ctx).await {
            warn!(shard = shard.id, error = %e, "snapshot or compaction failed; the log keeps everything it needs");
            // Do not retry at once (a full disk): wait for another `every` bytes.
            shard.snapshots.borrow_mut().bytes_at_last = written;
        }
    }
}

/// At clean shutdown: waits for a snapshot in progress, then takes one more.
pub async fn at_shutdown(shard: &Rc<Shard>) {
    while shard.snapshots.borrow().taking {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    let Some(log) = shard.log.get() else {
        return;
    };
    if shard
        .snapshots
        .borrow()
        .kept
        .last()
        .is_some_and(|(l, _)| *l + 1 == log.next_lsn())
    {
        return;
    }
    if let Err(e) = take(shard).await {
        warn!(shard = shard.id, error = %e, "snapshot at shutdown failed; the next start replays more log");
    }
}

/// Shared, per shard.
pub type SnapshotCell = RefCell<Snapshots>;

#[cfg(test)]
mod tests {
    use super::due;

    const MIB: u64 = 1 << 20;

    #[test]
    fn snapshots_are_due_by_bytes_and_sooner_while_compaction_waits() {
        // Off: never, however much was written.
        assert!(!due(u64::MAX, 0, 64 * MIB, 0, true));
        // The configured interval, waiting or not.
        assert!(due(256 * MIB, 256 * MIB, 64 * MIB, 0, false));
        assert!(!due(256 * MIB - 1, 256 * MIB, 64 * MIB, 10 * MIB, false));
        // Waiting: four times the last snapshot's size...
        assert!(!due(4 * MIB - 1, 256 * MIB, 64 * MIB, MIB, true));
        assert!(due(4 * MIB, 256 * MIB, 64 * MIB, MIB, true));
        // ...at least 1 MiB (tiny or no snapshot yet)...
        assert!(!due(MIB - 1, 256 * MIB, 64 * MIB, 0, true));
        assert!(due(MIB, 256 * MIB, 64 * MIB, 100, true));
        // ...and at most a segment's worth (a big state).
        assert!(due(64 * MIB, 256 * MIB, 64 * MIB, 100 * MIB, true));
        assert!(!due(64 * MIB - 1, 256 * MIB, 64 * MIB, 100 * MIB, true));
        // Segments smaller than the minimum: the minimum.
        assert!(!due(MIB / 2, 256 * MIB, MIB / 4, 0, true));
    }
}
