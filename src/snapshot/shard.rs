//! A shard's snapshots: taking one (capture every partition in one step on the shard's thread,
//! encode, wait until the LSN it stands for is durable, fill in the places of entries that were
//! still in flight, write the file atomically), loading the newest usable one before the log is
//! replayed, and keeping the two newest.
//!
//! Invariants: a snapshot file exists under its final name only once every entry up to its LSN
//! is durable and the file itself is durable (temporary file, fdatasync, rename, directory
//! fsync); one snapshot is taken at a time per shard; the state is captured without yielding, so
//! it is exactly the state after the entries up to its LSN (entries are applied when appended).
//! A file of version 1 (a whole shard's state, before per-partition state) is restored by
//! splitting each machine's state into the partitions its objects belong to.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tracing::{info, warn};

use super::codec::{fill_place, Dec, Enc};
use super::compact::PassStats;
use super::file;
use crate::log::format::parse_segment_file_name;
use crate::log::io::{tmp_path, Fs};
use crate::log::metrics::LogMetrics;
use crate::machine::{Engine, PartitionState};

/// A section as a machine's capture took it.
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
    /// Encodes what is left in one go (no yielding).
    pub fn finish_now(self) -> Enc {
        match self {
            Captured::Encoded(e) => e,
            Captured::Kv(mut kv) => {
                let mut e = Enc::new();
                while !kv.encode_some(&mut e, usize::MAX) {}
                e
            }
        }
    }

    /// Encodes what is left, yielding to the shard's other tasks between steps; returns the
    /// section and the longest step.
    async fn finish(self) -> (Enc, Duration) {
        match self {
            Captured::Encoded(e) => (e, Duration::ZERO),
            Captured::Kv(mut kv) => {
                let mut e = Enc::new();
                let mut longest = Duration::ZERO;
                loop {
                    let step = crate::clock::Stopwatch::start();
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
pub async fn take(engine: &Engine) -> Result<Option<Taken>, String> {
    if engine.snapshots.borrow().taking {
        return Ok(None);
    }
    engine.snapshots.borrow_mut().taking = true;
    let r = take_now(engine).await;
    engine.snapshots.borrow_mut().taking = false;
    r
}

/// Partition `p`'s section, from its machines' sections.
fn partition_section(p: u32, machines: Vec<Enc>) -> Enc {
    let mut enc = Enc::new();
    enc.u32(file::PARTITION_SECTION_VERSION);
    enc.u32(p);
    for m in machines {
        enc.nested(m);
    }
    enc
}

/// Every partition's section, encoded at once (no yielding): the state after exactly the
/// entries applied so far. For replay hooks and tests; the snapshot writer yields instead.
pub fn encode_partitions_now(engine: &Engine) -> Vec<(u32, Enc)> {
    engine
        .parts()
        .iter()
        .map(|p| {
            (
                p.id,
                partition_section(p.id, p.capture().into_iter().map(Captured::finish_now).collect()),
            )
        })
        .collect()
}

/// Every partition's section of the engine's state now, encoded (placeholders for entries in
/// flight), and the longest the shard was held while encoding.
pub async fn encode_partitions(engine: &Engine) -> (Vec<Enc>, Duration) {
    let started = crate::clock::Stopwatch::start();
    // One step, no yield: the state after exactly the entries applied so far (the KV stores
    // frozen, to be encoded step by step while the shard goes on).
    let captured: Vec<(u32, Vec<Captured>)> = engine.parts().iter().map(|p| (p.id, p.capture())).collect();
    let mut pause = started.elapsed();
    let mut out = Vec::with_capacity(captured.len());
    for (p, sections) in captured {
        let mut machines = Vec::with_capacity(sections.len());
        for c in sections {
            let (e, longest) = c.finish().await;
            pause = pause.max(longest);
            machines.push(e);
        }
        out.push(partition_section(p, machines));
    }
    (out, pause)
}

/// Each partition's section as a snapshot taken now holds it, for a quiescent engine whose
/// entries are all settled (after recovery): (partition, section bytes). An entry still in
/// flight is an error (its place is not in the section yet).
pub async fn sections(engine: &Engine) -> Result<Vec<(u32, Vec<u8>)>, String> {
    let ids: Vec<u32> = engine.parts().iter().map(|p| p.id).collect();
    let (encs, _) = encode_partitions(engine).await;
    let mut out = Vec::with_capacity(encs.len());
    for (p, enc) in ids.into_iter().zip(encs) {
        let (bytes, pending, _) = enc.finish();
        if let Some((_, lsn)) = pending.first() {
            return Err(format!("partition {p}: entry {lsn} is not settled yet"));
        }
        out.push((p, bytes));
    }
    Ok(out)
}

/// Takes a snapshot now (the caller holds `taking`); `Ok(None)` if the log is empty.
pub async fn take_now(engine: &Engine) -> Result<Option<Taken>, String> {
    let log = engine.log().map_err(|e| e.to_string())?.clone();
    let metrics = &*engine.log_metrics;
    let started = crate::clock::Stopwatch::start();
    let lsn = log.next_lsn() - 1;
    if lsn == 0 {
        return Ok(None);
    }
    let bytes_total = log_bytes(metrics);
    let (encs, pause) = encode_partitions(engine).await;

    log.wait_durable(lsn).await.map_err(|e| e.to_string())?;
    let mut bodies = Vec::with_capacity(encs.len() + 1);
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
    let bytes = file::encode(engine.shard_id as u32, lsn, engine.now_ms(), &bodies);
    drop(bodies);
    let size = bytes.len() as u64;
    let path = log.dir().join(file::file_name(lsn));
    if let Err(e) = log.fs().write_atomic(&path, bytes).await {
        let _ = log.fs().remove(&tmp_path(&path)).await;
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    let mut kept = {
        let mut s = engine.snapshots.borrow_mut();
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
            warn!(shard = engine.shard_id, file = %p.display(), error = %e, "cannot remove an old snapshot");
        }
    }
    engine.snapshots.borrow_mut().kept = kept;
    let total = started.elapsed();
    metrics.snapshots_total.inc();
    metrics.snapshot_bytes_total.add(size);
    metrics.snapshot_pause_us_max.max(pause.as_micros() as u64);
    info!(
        shard = engine.shard_id,
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
pub async fn take_and_compact(engine: &Engine) -> Result<Option<PassStats>, String> {
    if engine.snapshots.borrow().taking {
        return Ok(None);
    }
    engine.snapshots.borrow_mut().taking = true;
    let r = match take_now(engine).await {
        Ok(_) => {
            let mut moved = std::mem::take(&mut engine.snapshots.borrow_mut().moved);
            let p = super::compact::pass(engine, &mut moved).await;
            engine.snapshots.borrow_mut().moved = moved;
            p.map(Some).map_err(|e| format!("compaction: {e}"))
        }
        Err(e) => Err(e),
    };
    engine.snapshots.borrow_mut().taking = false;
    r
}

/// Decodes a parsed file's state: every partition of the engine's shard, each once (a file of
/// version 1 is split into them).
pub fn decode_state(engine: &Engine, p: &file::Parsed<'_>) -> Result<Vec<(u32, PartitionState)>, String> {
    let ctx = engine.restore_ctx();
    let mine: Vec<u32> = engine.parts().iter().map(|p| p.id).collect();
    if p.version == 1 {
        return split_v1(engine, p).map_err(|e| {
            format!(
                "{e} (a snapshot written by a flo older than per-partition state: start that version once, \
                 without traffic, and stop it cleanly, then start this one)"
            )
        });
    }
    let mut out = Vec::with_capacity(mine.len());
    for (i, (_, body)) in p.sections.iter().enumerate().skip(1) {
        let (part, sections) = file::split_partition(body).map_err(|e| format!("section {i}: {e}"))?;
        if mine.get(i - 1) != Some(&part) {
            return Err(format!("section {i} holds partition {part}, not the shard's next one"));
        }
        out.push((part, PartitionState::restore(part, sections, &ctx).map_err(|c| c.0)?));
    }
    if out.len() != mine.len() {
        return Err(format!("{} partitions, the shard has {}", out.len(), mine.len()));
    }
    Ok(out)
}

/// A version-1 file's whole-shard state, split into the shard's partitions.
fn split_v1(engine: &Engine, p: &file::Parsed<'_>) -> Result<Vec<(u32, PartitionState)>, String> {
    let pr = &engine.partitioner;
    let ids: Vec<u32> = engine.parts().iter().map(|p| p.id).collect();
    let first = ids[0];
    fn whole<T>(
        p: &file::Parsed<'_>,
        id: u32,
        what: &str,
        f: impl FnOnce(&mut Dec<'_>) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut d = p.section(id);
        let v = f(&mut d).map_err(|e| format!("{what} section: {e}"))?;
        d.done(&format!("{what} section"))?;
        Ok(v)
    }
    let namespaces = whole(p, file::SECTION_NAMESPACES, "namespace", |d| {
        crate::namespace::NamespaceRegistry::decode(d, None)
    })?;
    let kv = whole(p, file::SECTION_KV, "KV", |d| crate::kv::KvStore::decode(d, None))?;
    let queues = whole(p, file::SECTION_QUEUES, "queue", |d| {
        crate::queue::state::QueueStore::decode(d, None)
    })?;
    let streams = whole(p, file::SECTION_STREAMS, "stream", |d| {
        crate::stream::state::StreamStore::decode(d, None)
    })?;
    let ts = whole(p, file::SECTION_TS, "time-series", |d| {
        crate::ts::series::SeriesStore::decode(d, None)
    })?;

    let mut ns_into = ids.iter().map(|&i| (i, Default::default())).collect();
    namespaces.split(pr, &mut ns_into);
    let mut kv_into = ids.iter().map(|&i| (i, Default::default())).collect();
    kv.split(pr, first, p.created_at_ms, &mut kv_into)?;
    let mut q_into = ids.iter().map(|&i| (i, Default::default())).collect();
    queues.split(pr, first, &mut q_into);
    let mut s_into = ids.iter().map(|&i| (i, Default::default())).collect();
    streams.split(pr, first, &mut s_into);
    let mut ts_into = ids.iter().map(|&i| (i, Default::default())).collect();
    ts.split(pr, first, &mut ts_into)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let take = |what: &str| format!("no {what} state for partition {id}");
        let state = PartitionState {
            namespaces: ns_into.remove(&id).ok_or_else(|| take("namespaces"))?,
            kv: kv_into.remove(&id).ok_or_else(|| take("KV"))?,
            queues: q_into.remove(&id).ok_or_else(|| take("queues"))?,
            streams: s_into.remove(&id).ok_or_else(|| take("streams"))?,
            ts: ts_into.remove(&id).ok_or_else(|| take("time series"))?,
        };
        out.push((id, state));
    }
    let strays = [ns_into.len(), kv_into.len(), q_into.len(), s_into.len(), ts_into.len()];
    if strays.iter().any(|&n| n > 0) {
        return Err("objects of partitions that are not this shard's".into());
    }
    Ok(out)
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

/// Checks a snapshot file of the engine's shard named for `lsn` and restores it into the
/// engine; returns the segments it needs with their live bytes. `segments` are the segments in
/// the directory, ascending.
fn restore_file(engine: &Engine, lsn: u64, bytes: &[u8], segments: &[u64]) -> Result<BTreeMap<u64, u64>, Unusable> {
    let p = file::decode(bytes)?;
    if p.shard_id != engine.shard_id as u32 {
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
    let state = decode_state(engine, &p)?;
    engine.restore(state);
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

/// Restores the newest usable snapshot in `dir` into the engine and returns its LSN (0 when
/// there is none: the whole log is replayed). A snapshot that cannot be used (damaged, or
/// needing a segment that is gone) is passed over for the one before it, with a warning.
pub async fn load(engine: &Engine, dir: &Path) -> Result<u64, String> {
    load_from(engine, dir).await.map(|l| l.lsn)
}

/// [`load`], saying how many snapshots were passed over; records the snapshots on disk in the
/// engine's bookkeeping and removes `.tmp` leftovers.
pub async fn load_from(engine: &Engine, dir: &Path) -> Result<Loaded, String> {
    let fs = &engine.fs;
    let shard_id = engine.shard_id;
    let snapshots = &engine.snapshots;
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
        let started = crate::clock::Stopwatch::start();
        let r = match fs.read_small(&path) {
            Ok(Some(bytes)) => restore_file(engine, lsn, &bytes, &segments),
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
pub fn compaction_waiting(engine: &Engine) -> bool {
    let percent = engine.config.log.compact_live_percent;
    let Ok(log) = engine.log() else { return false };
    let s = engine.snapshots.borrow();
    if percent == 0 {
        return false;
    }
    if !s.moved.is_empty() {
        return true;
    }
    if s.kept.len() < KEEP {
        return !log.sealed_segments().is_empty();
    }
    let Some((_, Some(live))) = s.kept.last() else {
        return false;
    };
    log.sealed_segments()
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

/// Takes a snapshot and compacts after it if enough log was written since the last one (the
/// shard's snapshot timer calls this every [`TIMER_EVERY`]); prepares a segment first if the
/// disk had no room for one.
pub async fn maybe_take(engine: &Engine) {
    let every = engine.config.log.snapshot_bytes;
    let segment = engine.config.log.segment_bytes;
    let Ok(log) = engine.log() else {
        return;
    };
    if log.out_of_space() {
        // Try again for the next segment: space may have been freed.
        let _ = log.make_spare().await;
    }
    let written = log_bytes(&engine.log_metrics);
    let (since, last_size) = {
        let s = engine.snapshots.borrow();
        (written.saturating_sub(s.bytes_at_last), s.last_size)
    };
    // `compaction_waiting` walks the sealed segments: asked only when it can matter.
    if !due(since, every, segment, last_size, true)
        || !due(since, every, segment, last_size, compaction_waiting(engine))
    {
        return;
    }
    if engine.snapshots.borrow().taking {
        return;
    }
    if let Err(e) = take_and_compact(engine).await {
        warn!(shard = engine.shard_id, error = %e, "snapshot or compaction failed; the log keeps everything it needs");
        // Do not retry at once (a full disk): wait for another `every` bytes.
        engine.snapshots.borrow_mut().bytes_at_last = written;
    }
}

/// How often the shard's snapshot timer looks.
pub const TIMER_EVERY: Duration = Duration::from_millis(200);

/// At clean shutdown: waits for a snapshot in progress, then takes one more.
pub async fn at_shutdown(engine: &Engine) {
    while engine.snapshots.borrow().taking {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    let Ok(log) = engine.log() else {
        return;
    };
    if engine
        .snapshots
        .borrow()
        .kept
        .last()
        .is_some_and(|(l, _)| *l + 1 == log.next_lsn())
    {
        return;
    }
    if let Err(e) = take(engine).await {
        warn!(shard = engine.shard_id, error = %e, "snapshot at shutdown failed; the next start replays more log");
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
