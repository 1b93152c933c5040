//! A shard's snapshots: taking one (encode every primitive in one step on the shard's thread,
//! wait until the LSN it stands for is durable, fill in the places of entries that were still
//! in flight, write the file atomically), loading the newest usable one before the log is
//! replayed, and keeping the two newest.
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
use super::file::{self, SECTIONS};
use crate::log::format::parse_segment_file_name;
use crate::log::io::{tmp_path, Fs};
use crate::server::shard::Shard;

/// Snapshot files kept per shard: the newest, and the one before it to fall back on.
pub const KEEP: usize = 2;

/// What a shard knows about its snapshots.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// A snapshot is being taken.
    pub taking: bool,
    /// The log's `bytes_total` when the last snapshot was taken.
    pub bytes_at_last: u64,
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
    shard.snapshots.borrow_mut().taking = true;
    let r = take_now(shard).await;
    shard.snapshots.borrow_mut().taking = false;
    r
}

async fn take_now(shard: &Rc<Shard>) -> Result<Option<Taken>, String> {
    let log = shard.log().map_err(|e| e.message())?.clone();
    let metrics = &shard.node.log_metrics[shard.id];
    let started = Instant::now();
    let lsn = log.next_lsn() - 1;
    if lsn == 0 {
        return Ok(None);
    }
    let bytes_total = metrics.bytes_total.get();
    // One step, no yield: the state after exactly the entries up to `lsn`.
    let mut encs: Vec<Enc> = Vec::with_capacity(SECTIONS.len() - 1);
    let mut e = Enc::new();
    shard.namespaces.borrow().snapshot(&mut e);
    encs.push(e);
    let mut e = Enc::new();
    shard.kv.borrow().snapshot(&mut e);
    encs.push(e);
    let mut e = Enc::new();
    shard.queues.borrow().snapshot(&mut e);
    encs.push(e);
    let mut e = Enc::new();
    shard.streams.borrow().snapshot(&mut e);
    encs.push(e);
    let mut e = Enc::new();
    shard.ts.borrow().snapshot(&mut e);
    encs.push(e);
    let pause = started.elapsed();

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
    let bytes = file::encode(shard.id as u32, lsn, crate::metrics::now_ms(), &bodies);
    drop(bodies);
    let size = bytes.len() as u64;
    let path = log.dir().join(file::file_name(lsn));
    if let Err(e) = log.fs().write_atomic(&path, bytes).await {
        let _ = log.fs().remove(&tmp_path(&path)).await;
        return Err(format!("cannot write {}: {e}", path.display()));
    }
    let mut kept = {
        let mut s = shard.snapshots.borrow_mut();
        s.bytes_at_last = bytes_total;
        s.kept.retain(|(l, _)| *l != lsn);
        s.kept.push((lsn, Some(live)));
        std::mem::take(&mut s.kept)
    };
    // Older snapshots beyond the kept ones go (their files; a failure only leaves a file).
    let extra = kept.len().saturating_sub(KEEP);
    for (old, _) in kept.drain(..extra) {
        let p = log.dir().join(file::file_name(old));
        if let Err(e) = log.fs().remove(&p).await {
            warn!(shard = shard.id, file = %p.display(), error = %e, "cannot remove an old snapshot");
        }
    }
    shard.snapshots.borrow_mut().kept = kept;
    let total = started.elapsed();
    metrics.snapshots_total.inc();
    metrics.snapshot_bytes_total.add(size);
    metrics.snapshot_pause_us_max.max(pause.as_micros() as u64);
    info!(
        shard = shard.id,
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

/// The restored state of a shard, before it is installed.
struct Restored {
    lsn: u64,
    live: BTreeMap<u64, u64>,
    namespaces: crate::namespace::NamespaceRegistry,
    kv: crate::kv::KvStore,
    queues: crate::queue::state::QueueStore,
    streams: crate::stream::state::StreamStore,
    ts: crate::ts::series::SeriesStore,
}

fn section<T>(p: &file::Parsed<'_>, id: u32, f: impl FnOnce(&mut Dec<'_>) -> Result<T, String>) -> Result<T, String> {
    let mut d = p.section(id);
    let v = f(&mut d).map_err(|e| format!("section {id}: {e}"))?;
    d.done(&format!("section {id}"))?;
    Ok(v)
}

fn restore(shard: &Shard, bytes: &[u8], segments: &[u64]) -> Result<Restored, String> {
    let p = file::decode(bytes)?;
    if p.shard_id != shard.id as u32 {
        return Err(format!("written by shard {}", p.shard_id));
    }
    let live = file::decode_segments(&mut p.section(file::SECTION_SEGMENTS))?;
    for (s, _) in &live {
        if segments.binary_search(s).is_err() {
            return Err(format!(
                "it needs segment {} which is not there",
                crate::log::format::segment_file_name(*s)
            ));
        }
    }
    let config = crate::queue::exec::store(&shard.node.config).config;
    Ok(Restored {
        lsn: p.lsn,
        live: live.into_iter().collect(),
        namespaces: section(
            &p,
            file::SECTION_NAMESPACES,
            crate::namespace::NamespaceRegistry::restore,
        )?,
        kv: section(&p, file::SECTION_KV, crate::kv::KvStore::restore)?,
        queues: section(&p, file::SECTION_QUEUES, |d| {
            crate::queue::state::QueueStore::restore(config, d)
        })?,
        streams: section(&p, file::SECTION_STREAMS, crate::stream::state::StreamStore::restore)?,
        ts: section(&p, file::SECTION_TS, crate::ts::series::SeriesStore::restore)?,
    })
}

/// Restores the newest usable snapshot in `dir` into the shard's state and returns its LSN
/// (0 when there is none: the whole log is replayed). A snapshot that cannot be used (damaged,
/// or needing a segment that is gone) is passed over for the one before it, with a warning.
pub async fn load<F: Fs>(shard: &Shard, fs: &F, dir: &Path) -> Result<u64, String> {
    let names = match fs.list(dir) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
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
            Ok(Some(bytes)) => restore(shard, &bytes, &segments),
            Ok(None) => Err("it disappeared".to_string()),
            Err(e) => Err(format!("cannot read it: {e}")),
        };
        match r {
            Ok(r) if r.lsn == lsn => {
                *shard.namespaces.borrow_mut() = r.namespaces;
                *shard.kv.borrow_mut() = r.kv;
                *shard.queues.borrow_mut() = r.queues;
                *shard.streams.borrow_mut() = r.streams;
                *shard.ts.borrow_mut() = r.ts;
                let mut s = shard.snapshots.borrow_mut();
                // The snapshots older than this one stay listed so compaction keeps what they need.
                s.kept = snaps
                    .iter()
                    .copied()
                    .filter(|&l| l < lsn)
                    .take(KEEP - 1)
                    .map(|l| (l, None))
                    .collect();
                s.kept.reverse();
                s.kept.push((lsn, Some(r.live)));
                info!(
                    shard = shard.id,
                    file = %path.display(),
                    lsn,
                    ms = started.elapsed().as_millis() as u64,
                    "snapshot loaded"
                );
                return Ok(lsn);
            }
            Ok(r) => {
                warn!(shard = shard.id, file = %path.display(), lsn = r.lsn, "snapshot's LSN does not match its name; passing it over")
            }
            Err(why) => {
                warn!(shard = shard.id, file = %path.display(), reason = %why, "snapshot unusable; falling back to an older one or the whole log")
            }
        }
        passed_over += 1;
    }
    if passed_over > 0 {
        warn!(
            shard = shard.id,
            passed_over, "no usable snapshot: replaying the whole log"
        );
    }
    Ok(0)
}

/// Whether compaction has work that waits for snapshots: segments copied out and waiting to
/// be deleted, or sealed segments under the live share that the newest snapshot covers.
fn compaction_waiting(shard: &Shard) -> bool {
    let percent = shard.node.config.log.compact_live_percent;
    let Some(log) = shard.log.get() else {
        return false;
    };
    let s = shard.snapshots.borrow();
    if percent == 0 {
        return false;
    }
    if !s.moved.is_empty() {
        return true;
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

/// Takes a snapshot whenever `log.snapshot_bytes` of log were written since the last one — or
/// a segment's worth, while compaction waits for snapshots — then runs a compaction pass.
pub async fn timer(shard: Rc<Shard>) {
    let every = shard.node.config.log.snapshot_bytes;
    let segment = shard.node.config.log.segment_bytes;
    loop {
        monoio::select! {
            _ = monoio::time::sleep(Duration::from_millis(200)) => {},
            _ = shard.stop.wait() => break,
        }
        let Some(log) = shard.log.get() else {
            continue;
        };
        if log.out_of_space() {
            // Try again for the next segment: space may have been freed.
            let _ = log.make_spare().await;
        }
        if every == 0 {
            continue;
        }
        let written = shard.node.log_metrics[shard.id].bytes_total.get();
        let since = written.saturating_sub(shard.snapshots.borrow().bytes_at_last);
        if since < every && !(since >= segment && compaction_waiting(&shard)) {
            continue;
        }
        if shard.snapshots.borrow().taking {
            continue;
        }
        shard.snapshots.borrow_mut().taking = true;
        let r = take_now(&shard).await;
        let r = match r {
            Ok(_) => {
                let mut moved = std::mem::take(&mut shard.snapshots.borrow_mut().moved);
                let p = super::compact::pass(&shard, &mut moved).await;
                shard.snapshots.borrow_mut().moved = moved;
                p.map(|_| ()).map_err(|e| format!("compaction: {e}"))
            }
            Err(e) => Err(e),
        };
        shard.snapshots.borrow_mut().taking = false;
        if let Err(e) = r {
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
