//! The log of one shard: appends, group commit, segment roll-over, poisoning.
//!
//! `append` encodes an entry into the open batch and returns a [`Ticket`]; the flusher task
//! writes each batch with one `pwrite` at the tail of the active segment and one `fdatasync`,
//! with at most one batch in flight, and completes every ticket of the batch when it is durable
//! (`sync`) or written (`async`, where a timer makes it durable every `flush_interval`).
//!
//! Invariants: LSNs are handed out consecutively from `next_lsn`; batches are written in LSN
//! order, each only after the previous one is durable (sync mode); after any failed write or
//! sync the log is poisoned and acknowledges nothing more; a spare segment is prepared in the
//! background as soon as one is taken, so a ready segment normally exists before the active one
//! fills.
#![allow(
    clippy::disallowed_methods,
    reason = "group commit is paced by the monotonic clock (flush interval, commit wait, fsync timings); no state reads it"
)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tracing::{error, info};

use super::error::LogError;
use super::format::{
    add_entry_flags, decode_entry, encode_entry, segment_file_name, stored_bytes, Decoded, EntryRef, Footer,
    SegmentHeader, Trailer, FLAG_BATCH_START, FLAG_PIPELINED, MAX_BODY_BYTES, SEGMENT_HEADER_BYTES, TRAILER_BYTES,
};
use super::io::{Fs, SegmentFile};
use super::metrics::LogMetrics;
use super::segment::{ActiveSegment, SealedSegment};
use crate::config::Durability;

/// What a sync makes durable: up to this LSN, by syncing this file.
type SyncTarget<File> = (u64, Rc<File>);

/// Group commit waits for more entries only on a disk whose last sync took at least this long:
/// the runtime's timers tick in milliseconds, so a shorter wait could not be kept.
const GATHER_MIN_SYNC: Duration = Duration::from_micros(250);

/// A segment filled faster than this marks the log as bandwidth-bound (see `make_spare`).
const FAST_FILL: Duration = Duration::from_secs(2);

/// How a shard's log behaves.
#[derive(Clone, Debug)]
pub struct LogOptions {
    pub shard_id: u32,
    pub segment_bytes: u64,
    /// Largest batch; an append that does not fit in the open batch is refused (overload).
    pub batch_max_bytes: usize,
    pub durability: Durability,
    /// Sync mode: at most how long a batch smaller than the last waits for more entries
    /// before it is written (never longer than the last sync took; zero: never waits).
    pub commit_wait: Duration,
    /// Async mode: how often written data is made durable.
    pub flush_interval: Duration,
    /// Recovery may cut the log at corruption instead of refusing to start.
    pub repair: bool,
}

/// Where a durable entry is: its LSN, the segment (by its first LSN) and the entry's offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub lsn: u64,
    pub segment: u64,
    pub offset: u64,
}

/// The completion of one batch, shared by its tickets.
#[derive(Default)]
pub struct BatchSignal {
    result: RefCell<Option<Result<(), LogError>>>,
    /// (first LSN of the segment, offset) where the batch was written.
    placed: Cell<Option<(u64, u64)>>,
    wakers: RefCell<Vec<Waker>>,
}

impl BatchSignal {
    fn complete(&self, r: Result<(), LogError>) {
        *self.result.borrow_mut() = Some(r);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// An appended entry; resolves to its [`Position`] when its batch is durable (or to the error
/// that failed the log). Clones observe the same entry.
#[derive(Clone)]
pub struct Ticket {
    pub lsn: u64,
    /// Offset of the entry inside its batch.
    rel: u64,
    signal: Rc<BatchSignal>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("lsn", &self.lsn).finish_non_exhaustive()
    }
}

impl Ticket {
    /// The entry's position once its batch is durable (or the error that failed the log);
    /// `None` while the batch is in flight.
    pub fn placed(&self) -> Option<Result<Position, LogError>> {
        let r = self.signal.result.borrow();
        Some(r.as_ref()?.clone().and_then(|()| {
            let (segment, base) = self.signal.placed.get().ok_or(LogError::Stopping)?;
            Ok(Position {
                lsn: self.lsn,
                segment,
                offset: base + self.rel,
            })
        }))
    }
}

impl Future for Ticket {
    type Output = Result<Position, LogError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(out) = self.placed() {
            return Poll::Ready(out);
        }
        let mut wakers = self.signal.wakers.borrow_mut();
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

struct Batch {
    buf: Vec<u8>,
    first_lsn: u64,
    entries: u64,
    signal: Rc<BatchSignal>,
}

/// Room the next batch's buffer starts with, at most: as much as the batch before it used, so
/// a steady load does not grow every buffer from empty, but not more than this.
const BATCH_START_CAPACITY_MAX: usize = 256 * 1024;

impl Batch {
    fn new(first_lsn: u64) -> Batch {
        Batch::with_capacity(first_lsn, 0)
    }

    fn with_capacity(first_lsn: u64, capacity: usize) -> Batch {
        Batch {
            buf: Vec::with_capacity(capacity.min(BATCH_START_CAPACITY_MAX)),
            first_lsn,
            entries: 0,
            signal: Rc::new(BatchSignal::default()),
        }
    }
}

pub(crate) struct Inner<F: SegmentFile> {
    pub next_lsn: u64,
    batch: Batch,
    pub active: Option<ActiveSegment<F>>,
    pub sealed: Vec<SealedSegment<F>>,
    spare: Option<(PathBuf, F)>,
    spare_in_progress: bool,
    spare_seq: u64,
    /// Highest LSN written (page cache) and highest made durable.
    pub written_lsn: u64,
    pub durable_lsn: u64,
    poisoned: Option<LogError>,
    stopping: bool,
    /// The last attempt to make a spare segment found the disk full: appends that do not fit
    /// in the active segment are refused (not poisoning the log) until one can be made.
    no_space: bool,
    /// Bytes of the batch the flusher took and has not written yet.
    inflight_bytes: u64,
}

/// A sealed segment's path and mapping.
pub type SealedView<F> = (PathBuf, Rc<<<F as Fs>::File as SegmentFile>::View>);

/// One shard's log.
pub struct Log<F: Fs> {
    pub(crate) fs: F,
    pub(crate) dir: PathBuf,
    pub(crate) opts: LogOptions,
    pub(crate) inner: RefCell<Inner<F::File>>,
    pub(crate) metrics: Arc<LogMetrics>,
    /// Wakes the flusher when a batch has entries or the log stops.
    flusher_waker: RefCell<Option<Waker>>,
    /// Entries of the last batch made durable, and how long the last sync took: what
    /// [`Log::gather`] waits for, and at most how long.
    last_batch_entries: Cell<u64>,
    last_sync_took: Cell<Duration>,
    /// Wakes whoever waits for the spare segment.
    spare_waiters: RefCell<Vec<Waker>>,
    /// Appenders waiting for room in the open batch.
    room_waiters: RefCell<Vec<Waker>>,
    flusher_running: Cell<bool>,
    /// Tasks waiting for an LSN to become durable.
    durable_waiters: RefCell<Vec<Waker>>,
    /// When the last fdatasync finished (async mode syncs every `flush_interval`).
    last_sync: Cell<Instant>,
    /// When the active segment was opened, and whether the one before it filled in less than
    /// [`FAST_FILL`].
    last_roll: Cell<Option<Instant>>,
    filling_fast: Cell<bool>,
}

impl<F: Fs> Log<F> {
    /// A log positioned after recovery: `next_lsn` is the next LSN to hand out.
    pub(crate) fn from_recovered(
        fs: F,
        dir: PathBuf,
        opts: LogOptions,
        metrics: Arc<LogMetrics>,
        next_lsn: u64,
        active: Option<ActiveSegment<F::File>>,
        sealed: Vec<SealedSegment<F::File>>,
    ) -> Log<F> {
        assert!(next_lsn >= 1);
        assert!(
            opts.batch_max_bytes as u64 + SEGMENT_HEADER_BYTES as u64 + super::segment::SEAL_RESERVE_BYTES
                <= opts.segment_bytes
        );
        Log {
            fs,
            dir,
            metrics,
            inner: RefCell::new(Inner {
                next_lsn,
                batch: Batch::new(next_lsn),
                active,
                sealed,
                spare: None,
                spare_in_progress: false,
                spare_seq: 0,
                written_lsn: next_lsn - 1,
                durable_lsn: next_lsn - 1,
                poisoned: None,
                stopping: false,
                no_space: false,
                inflight_bytes: 0,
            }),
            opts,
            flusher_waker: RefCell::new(None),
            last_batch_entries: Cell::new(0),
            last_sync_took: Cell::new(Duration::ZERO),
            spare_waiters: RefCell::new(Vec::new()),
            room_waiters: RefCell::new(Vec::new()),
            flusher_running: Cell::new(false),
            durable_waiters: RefCell::new(Vec::new()),
            last_sync: Cell::new(Instant::now()),
            last_roll: Cell::new(None),
            filling_fast: Cell::new(false),
        }
    }

    /// Appends an entry to the open batch. The returned ticket resolves when it is durable.
    pub fn append(&self, entry_type: u16, body: &[u8]) -> Result<Ticket, LogError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(LogError::EntryTooLarge(body.len()));
        }
        let mut inner = self.inner.borrow_mut();
        if let Some(e) = &inner.poisoned {
            return Err(e.clone());
        }
        if inner.stopping {
            return Err(LogError::Stopping);
        }
        let need = stored_bytes(body.len());
        if !inner.batch.buf.is_empty() && inner.batch.buf.len() + need > self.opts.batch_max_bytes {
            self.metrics.batch_full_total.inc();
            return Err(LogError::BatchFull);
        }
        // Out of disk: only what fits in the active segment (already allocated) is taken, so a
        // roll never needs space the disk does not have. Nothing is applied or half-written.
        if inner.no_space && inner.spare.is_none() {
            let fits = inner
                .active
                .as_ref()
                .is_some_and(|a| a.fits(inner.inflight_bytes + inner.batch.buf.len() as u64 + need as u64));
            if !fits {
                return Err(LogError::NoSpace { op: "append" });
            }
        }
        let lsn = inner.next_lsn;
        inner.next_lsn += 1;
        let flags = if inner.batch.entries == 0 { FLAG_BATCH_START } else { 0 };
        debug_assert_eq!(inner.batch.first_lsn + inner.batch.entries, lsn);
        let rel = inner.batch.buf.len() as u64;
        encode_entry(&mut inner.batch.buf, lsn, entry_type, flags, body);
        inner.batch.entries += 1;
        let signal = inner.batch.signal.clone();
        drop(inner);
        if let Some(w) = self.flusher_waker.borrow_mut().take() {
            w.wake();
        }
        Ok(Ticket { lsn, rel, signal })
    }

    /// Whether the disk was full at the last attempt to make a segment.
    pub fn out_of_space(&self) -> bool {
        self.inner.borrow().no_space
    }

    /// The next LSN to be handed out.
    pub fn next_lsn(&self) -> u64 {
        self.inner.borrow().next_lsn
    }

    /// The highest durable LSN.
    pub fn durable_lsn(&self) -> u64 {
        self.inner.borrow().durable_lsn
    }

    /// Calls `f` with every durable entry from `from_lsn` on, in LSN order, until `f` returns
    /// false. Entries not yet durable are never shown ("nothing unstable is visible"). Reads
    /// walk the mapped segments; nothing is copied.
    pub fn scan_from(&self, from_lsn: u64, mut f: impl FnMut(&EntryRef<'_>) -> bool) -> Result<(), LogError> {
        let inner = self.inner.borrow();
        let durable = inner.durable_lsn;
        let mut segments: Vec<(&Rc<F::File>, u64, u64)> = inner
            .sealed
            .iter()
            .filter(|s| s.last_lsn >= from_lsn)
            .map(|s| (&s.file, s.first_lsn, s.entries_end))
            .collect();
        if let Some(a) = &inner.active {
            segments.push((&a.file, a.first_lsn, a.write_pos));
        }
        for (file, first_lsn, end) in segments {
            let view = file.view().map_err(|e| LogError::from_io("map segment", &e))?;
            let mut pos = SEGMENT_HEADER_BYTES;
            let mut lsn = first_lsn;
            while (pos as u64) < end && lsn <= durable {
                let e = match decode_entry(&view[pos..end as usize]) {
                    Ok(Decoded::Entry(e)) if e.lsn == lsn => e,
                    other => {
                        return Err(LogError::Corrupt {
                            file: self.dir.clone(),
                            offset: pos as u64,
                            reason: format!("entry {lsn} unreadable: {other:?}"),
                        })
                    }
                };
                if lsn >= from_lsn && !f(&e) {
                    return Ok(());
                }
                pos += e.stored_bytes();
                lsn += 1;
            }
        }
        Ok(())
    }

    /// The error that poisoned the log, if any.
    pub fn poisoned(&self) -> Option<LogError> {
        self.inner.borrow().poisoned.clone()
    }

    /// Asks the flusher to write what is pending, make it durable, and return.
    pub fn stop(&self) {
        self.inner.borrow_mut().stopping = true;
        if let Some(w) = self.flusher_waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn poison(&self, e: LogError) {
        let mut inner = self.inner.borrow_mut();
        if inner.poisoned.is_none() {
            error!(shard = self.opts.shard_id, error = %e, "the log is poisoned: no more writes are accepted until restart");
            inner.poisoned = Some(e);
        }
        drop(inner);
        self.wake_durable_waiters();
    }

    fn wake_durable_waiters(&self) {
        for w in self.durable_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once `lsn` is durable (at once if it is), or with the error that poisoned the
    /// log. Readers use it so that nothing they answer can be lost.
    pub fn wait_durable(&self, lsn: u64) -> WaitDurable<'_, F> {
        WaitDurable { log: self, lsn }
    }

    /// Every segment in use, oldest first: (its first LSN, bytes of entries written to it).
    pub fn segments(&self) -> Vec<(u64, u64)> {
        let inner = self.inner.borrow();
        let header = SEGMENT_HEADER_BYTES as u64;
        let mut out: Vec<(u64, u64)> = inner
            .sealed
            .iter()
            .map(|s| (s.first_lsn, s.entries_end - header))
            .collect();
        if let Some(a) = &inner.active {
            out.push((a.first_lsn, a.write_pos - header));
        }
        out
    }

    /// The entry at a position returned by a ticket, read from the mapped segment without
    /// copying. The entry must be durable.
    pub fn read_at(&self, pos: &Position) -> Result<MappedEntry<F::File>, LogError> {
        debug_assert!(pos.lsn <= self.durable_lsn(), "reading an entry that is not durable");
        let e = self.read_entry(pos.segment, pos.offset)?;
        if e.lsn != pos.lsn {
            return Err(LogError::Corrupt {
                file: self.dir.join(super::format::segment_file_name(pos.segment)),
                offset: pos.offset,
                reason: format!("entry {} expected, entry {} found", pos.lsn, e.lsn),
            });
        }
        Ok(e)
    }

    /// The sealed segments' paths and mappings, oldest first (for the scrub).
    pub fn sealed_views(&self) -> Result<Vec<SealedView<F>>, LogError> {
        let inner = self.inner.borrow();
        inner.sealed.iter().map(|s| Ok((s.path.clone(), s.view()?))).collect()
    }

    /// The sealed segments, oldest first: (first LSN, last LSN, bytes of entries).
    pub fn sealed_segments(&self) -> Vec<(u64, u64, u64)> {
        let header = SEGMENT_HEADER_BYTES as u64;
        self.inner
            .borrow()
            .sealed
            .iter()
            .map(|s| (s.first_lsn, s.last_lsn, s.entries_end - header))
            .collect()
    }

    /// Deletes the sealed segment starting at `first_lsn` (compaction, once nothing needs it):
    /// it leaves the log's list at once; the file goes, then the directory is synced. Mappings
    /// readers still hold stay valid until they drop them.
    pub async fn remove_sealed(&self, first_lsn: u64) -> Result<(), LogError> {
        let seg = {
            let mut inner = self.inner.borrow_mut();
            let i = inner
                .sealed
                .binary_search_by_key(&first_lsn, |s| s.first_lsn)
                .map_err(|_| LogError::Corrupt {
                    file: self.dir.join(segment_file_name(first_lsn)),
                    offset: 0,
                    reason: "no such sealed segment to remove".into(),
                })?;
            inner.sealed.remove(i)
        };
        self.fs
            .remove(&seg.path)
            .await
            .map_err(|e| LogError::from_io("remove compacted segment", &e))?;
        self.fs
            .sync_dir(&self.dir)
            .await
            .map_err(|e| LogError::from_io("fsync log directory", &e))
    }

    /// The directory of the log's segments.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The file system the log writes through.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    /// The places of durable entries, given by LSN in ascending order: (segment's first LSN,
    /// offset, stored bytes) each. Walks entry headers from the start of each segment involved,
    /// so it is for a handful of recent entries (a snapshot's placeholders), not bulk lookups.
    pub fn places_of(&self, lsns: &[u64]) -> Result<Vec<(u64, u64, u64)>, LogError> {
        debug_assert!(lsns.windows(2).all(|w| w[0] < w[1]), "ascending LSNs");
        let inner = self.inner.borrow();
        let mut out = Vec::with_capacity(lsns.len());
        // (segment, its view, offset of the next entry to look at, its LSN)
        type Cursor<V> = (u64, Rc<V>, usize, u64);
        let mut cur: Option<Cursor<<F::File as SegmentFile>::View>> = None;
        for &lsn in lsns {
            let missing = |why: &str| LogError::Corrupt {
                file: self.dir.clone(),
                offset: 0,
                reason: format!("entry {lsn} cannot be found: {why}"),
            };
            if lsn > inner.durable_lsn {
                return Err(missing("it is not durable"));
            }
            let segment = match &inner.active {
                Some(a) if a.first_lsn <= lsn => a.first_lsn,
                _ => {
                    let i = inner.sealed.partition_point(|s| s.first_lsn <= lsn);
                    let s = i
                        .checked_sub(1)
                        .map(|i| &inner.sealed[i])
                        .ok_or_else(|| missing("no segment"))?;
                    s.first_lsn
                }
            };
            if cur.as_ref().is_none_or(|c| c.0 != segment) {
                let view = match &inner.active {
                    Some(a) if a.first_lsn == segment => a.view()?,
                    _ => {
                        let i = inner
                            .sealed
                            .binary_search_by_key(&segment, |s| s.first_lsn)
                            .map_err(|_| missing("no segment"))?;
                        inner.sealed[i].view()?
                    }
                };
                cur = Some((segment, view, SEGMENT_HEADER_BYTES, segment));
            }
            let Some((_, view, at, at_lsn)) = cur.as_mut() else {
                return Err(missing("no segment"));
            };
            loop {
                let rest = view.get(*at..).unwrap_or(&[]);
                let (_, found, _, stored) = match super::format::peek_entry(rest) {
                    Ok(Some(p)) => p,
                    _ => return Err(missing("the segment's entries end before it")),
                };
                if found != *at_lsn {
                    return Err(missing(&format!("entry {found} found where {at_lsn} belongs")));
                }
                let here = *at as u64;
                *at += stored;
                *at_lsn += 1;
                if found == lsn {
                    out.push((segment, here, stored as u64));
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The segment starting at LSN `segment`, mapped, for walking its durable entries.
    pub fn segment_entries(&self, segment: u64) -> Result<SegmentEntries<F::File>, LogError> {
        let inner = self.inner.borrow();
        let (view, end) = match &inner.active {
            Some(a) if a.first_lsn == segment => (a.view()?, a.write_pos),
            _ => {
                let i = inner
                    .sealed
                    .binary_search_by_key(&segment, |s| s.first_lsn)
                    .map_err(|_| LogError::Corrupt {
                        file: self.dir.join(super::format::segment_file_name(segment)),
                        offset: 0,
                        reason: format!("no segment starts at LSN {segment}"),
                    })?;
                (inner.sealed[i].view()?, inner.sealed[i].entries_end)
            }
        };
        Ok(SegmentEntries {
            end: usize::try_from(end).unwrap_or(usize::MAX).min(view.len()),
            view,
            durable_lsn: inner.durable_lsn,
        })
    }

    /// The durable entry at `offset` of the segment starting at LSN `segment`.
    pub fn read_entry(&self, segment: u64, offset: u64) -> Result<MappedEntry<F::File>, LogError> {
        let inner = self.inner.borrow();
        let corrupt = |reason: String| LogError::Corrupt {
            file: self.dir.join(super::format::segment_file_name(segment)),
            offset,
            reason,
        };
        let view = match &inner.active {
            Some(a) if a.first_lsn == segment => a.view()?,
            _ => {
                let i = inner
                    .sealed
                    .binary_search_by_key(&segment, |s| s.first_lsn)
                    .map_err(|_| corrupt(format!("no segment starts at LSN {segment}")))?;
                inner.sealed[i].view()?
            }
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(view.len());
        let e = match decode_entry(&view[start..]) {
            Ok(Decoded::Entry(e)) if e.lsn <= inner.durable_lsn => e,
            other => return Err(corrupt(format!("no durable entry there: {other:?}"))),
        };
        let mut body_start = start + super::format::ENTRY_HEADER_BYTES;
        let (mut entry_type, lsn, mut len) = (e.entry_type, e.lsn, e.body.len());
        // A compaction copy reads as its original.
        if entry_type == super::relocated::ENTRY_RELOCATED {
            let r = super::relocated::decode(e.body).map_err(corrupt)?;
            entry_type = r.entry_type;
            body_start += super::relocated::PREFIX_BYTES;
            len = r.body.len();
        }
        Ok(MappedEntry {
            view,
            entry_type,
            lsn,
            body: body_start..body_start + len,
        })
    }

    /// The flusher: runs until `stop` (then writes and syncs what is left) or until poisoned.
    ///
    /// A large batch (a quarter of `batch_max_bytes` or more) is synced in the background while the
    /// next batch is written, so the disk is not idle while the next batch is copied into the
    /// page cache; small batches are synced inline, which keeps batches of small appends large.
    /// Either way a batch is acknowledged only by a sync that started after its write ended.
    pub async fn run_flusher(self: Rc<Self>) {
        assert!(!self.flusher_running.replace(true), "one flusher per log");
        let mut syncing: Option<(monoio::task::JoinHandle<Result<(), LogError>>, Batch)> = None;
        loop {
            if syncing.is_none() {
                self.gather().await;
            }
            let batch = {
                let mut inner = self.inner.borrow_mut();
                if inner.batch.entries == 0 {
                    None
                } else {
                    let next = Batch::with_capacity(inner.next_lsn, inner.batch.buf.len());
                    inner.inflight_bytes = inner.batch.buf.len() as u64;
                    Some(std::mem::replace(&mut inner.batch, next))
                }
            };
            if batch.is_some() {
                self.wake_room_waiters();
            }
            let Some(mut batch) = batch else {
                if let Some((sync, done)) = syncing.take() {
                    if !self.finish(sync.await, done) {
                        return;
                    }
                    continue;
                }
                if self.inner.borrow().stopping {
                    let _ = self.sync_written().await;
                    return;
                }
                self.wait_for_work().await;
                continue;
            };
            if syncing.is_some() {
                // Written before the previous batch is durable: recovery must not take this
                // batch alone as proof that the one before it was (format-spec/log.md).
                add_entry_flags(&mut batch.buf, FLAG_PIPELINED);
            }
            // A small batch with nothing else in flight is written and synced in one request.
            let durable_write =
                syncing.is_none() && self.opts.durability == Durability::Sync && !self.is_large(batch.buf.len());
            let result = self.write_batch(&mut batch, durable_write).await;
            self.prepare_spare_in_background();
            if let Some((sync, done)) = syncing.take() {
                if !self.finish(sync.await, done) {
                    batch
                        .signal
                        .complete(Err(self.poisoned().unwrap_or(LogError::Stopping)));
                    return;
                }
            }
            let result = match (result, self.opts.durability) {
                (Ok(()), _) if durable_write => Ok(()),
                (Ok(()), Durability::Sync) if self.is_large(batch.buf.len()) => match self.sync_target() {
                    Ok(Some((target, file))) => {
                        let log = self.clone();
                        let sync = monoio::spawn(async move { log.sync_file(target, file).await });
                        syncing = Some((sync, batch));
                        continue;
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
                (Ok(()), Durability::Sync) => self.sync_written().await,
                // Async: acknowledged once written; under steady load the sync is due by time,
                // not only when the flusher goes idle.
                (Ok(()), Durability::Async) if self.last_sync.get().elapsed() >= self.opts.flush_interval => {
                    batch.signal.complete(Ok(()));
                    if let Err(e) = self.sync_written().await {
                        self.poison(e);
                        self.fail_pending();
                        return;
                    }
                    continue;
                }
                (r, _) => r,
            };
            if !self.finish(result, batch) {
                return;
            }
        }
    }

    /// Completes a batch with its result; false (after failing what is pending) once the log
    /// is poisoned.
    fn finish(&self, result: Result<(), LogError>, batch: Batch) -> bool {
        if result.is_ok() {
            self.last_batch_entries.set(batch.entries);
        }
        if let Err(e) = &result {
            self.poison(e.clone());
        }
        batch.signal.complete(result);
        if self.inner.borrow().poisoned.is_some() {
            self.fail_pending();
            return false;
        }
        true
    }

    /// Starts making the next spare segment unless one is ready or on its way.
    fn prepare_spare_in_background(self: &Rc<Self>) {
        let needed = {
            let inner = self.inner.borrow();
            inner.spare.is_none() && !inner.spare_in_progress && inner.poisoned.is_none() && !inner.stopping
        };
        if needed {
            let log = self.clone();
            monoio::spawn(async move {
                if let Err(e) = log.make_spare().await {
                    // Not fatal yet: the roll that needs a spare tries again and fails loudly.
                    tracing::warn!(shard = log.opts.shard_id, error = %e, "cannot prepare the next log segment");
                }
            });
        }
    }

    /// Fails every entry still waiting in the open batch (after poisoning).
    fn fail_pending(&self) {
        let e = self.poisoned().unwrap_or(LogError::Stopping);
        let batch = {
            let mut inner = self.inner.borrow_mut();
            let next = Batch::new(inner.next_lsn);
            std::mem::replace(&mut inner.batch, next)
        };
        batch.signal.complete(Err(e));
        self.wake_room_waiters();
    }

    fn wake_room_waiters(&self) {
        for w in self.room_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once an entry with a body of `body_bytes` fits in the open batch (or the log
    /// can take no appends at all, so that `append` answers why). Appenders of large entries
    /// wait here instead of being refused while a batch is in flight; the room is theirs only
    /// if they append before their next await.
    pub fn room(&self, body_bytes: usize) -> Room<'_, F> {
        Room {
            log: self,
            body_bytes,
            limit: self.opts.batch_max_bytes,
        }
    }

    /// Like [`Log::room`], but for background work (compaction): resolves once the entry fits
    /// within half of the batch limit, so appenders in the foreground always find room beside it.
    pub fn room_for_background(&self, body_bytes: usize) -> Room<'_, F> {
        Room {
            log: self,
            body_bytes,
            limit: self.opts.batch_max_bytes / 2,
        }
    }

    /// Whether a batch of `bytes` is large (a quarter of `batch_max_bytes` or more): it is
    /// synced in the background while the next is written, never waits for more entries, and
    /// is not written with `O_DSYNC`.
    fn is_large(&self, bytes: usize) -> bool {
        bytes >= self.opts.batch_max_bytes / 4
    }

    /// Group commit's wait (sync mode). The writers a batch acknowledges tend to write again
    /// at once (a client waiting for its answer before it sends the next request). Taking the
    /// open batch the moment the last sync ends would leave them to the sync after, so each
    /// sync would carry half of them. So while the open batch has fewer entries than the last
    /// durable batch had, this waits for more: until it has as many, or until as long as the
    /// last sync took has passed (and at most `commit_wait`). A lone writer never waits (its
    /// last batch had one entry), and neither does a batch that is already large, nor one on a
    /// disk that syncs faster than the timers can measure ([`GATHER_MIN_SYNC`]). The deadline
    /// is checked at every append as well as by the timer, which fires only when the shard has
    /// nothing else to run.
    async fn gather(&self) {
        if self.opts.durability != Durability::Sync || self.opts.commit_wait.is_zero() {
            return;
        }
        let (entries, bytes) = {
            let inner = self.inner.borrow();
            (inner.batch.entries, inner.batch.buf.len())
        };
        let target = self.last_batch_entries.get();
        if entries == 0 || entries >= target || self.is_large(bytes) {
            return;
        }
        let took = self.last_sync_took.get();
        if took < GATHER_MIN_SYNC {
            return;
        }
        let wait = self.opts.commit_wait.min(took);
        let started = Instant::now();
        let more = WaitWork {
            log: self,
            min_entries: target,
            deadline: Some(started + wait),
        };
        self.metrics.commit_waits_total.inc();
        let _ = monoio::time::timeout(wait, more).await;
        self.metrics
            .commit_wait_us_total
            .add(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
    }

    /// Waits until the open batch has entries, the log stops, or (async mode) the flush
    /// interval passes with written-but-unsynced data, which it then syncs.
    async fn wait_for_work(&self) {
        let wait = WaitWork {
            log: self,
            min_entries: 1,
            deadline: None,
        };
        if self.opts.durability == Durability::Async {
            if monoio::time::timeout(self.opts.flush_interval, wait).await.is_err() {
                let _ = self.sync_written().await.map_err(|e| self.poison(e));
            }
        } else {
            wait.await;
        }
    }

    /// Makes everything written durable.
    async fn sync_written(&self) -> Result<(), LogError> {
        match self.sync_target()? {
            Some((target, file)) => self.sync_file(target, file).await,
            None => Ok(()),
        }
    }

    /// What a sync started now makes durable: up to the last LSN written, in the active
    /// segment's file (`None` when everything written is durable already).
    fn sync_target(&self) -> Result<Option<SyncTarget<F::File>>, LogError> {
        let inner = self.inner.borrow();
        if inner.written_lsn == inner.durable_lsn {
            return Ok(None);
        }
        match &inner.active {
            Some(a) => Ok(Some((inner.written_lsn, a.file.clone()))),
            // Written data always lives in the active segment.
            None => Err(LogError::Stopping),
        }
    }

    /// Syncs `file`, then counts everything up to `target` as durable.
    async fn sync_file(&self, target: u64, file: Rc<F::File>) -> Result<(), LogError> {
        let started = Instant::now();
        let r = file.sync_data().await;
        self.synced(target, started, r.map_err(|e| LogError::from_io("fdatasync", &e)))
    }

    /// Counts a sync that started at `started` and, if it succeeded, everything up to `target`
    /// as durable.
    fn synced(&self, target: u64, started: Instant, r: Result<(), LogError>) -> Result<(), LogError> {
        self.last_sync.set(Instant::now());
        self.metrics.fsyncs_total.inc();
        self.metrics.fsync_seconds.observe(started.elapsed());
        self.last_sync_took.set(started.elapsed());
        r?;
        let mut inner = self.inner.borrow_mut();
        let before = inner.durable_lsn;
        inner.durable_lsn = inner.durable_lsn.max(target);
        let made_durable = inner.durable_lsn - before;
        drop(inner);
        self.metrics.entries_per_fsync.observe(made_durable);
        self.wake_durable_waiters();
        Ok(())
    }

    /// Writes one batch at the tail, rolling to a new segment when it does not fit. With
    /// `durable`, the write also makes the batch durable; the caller asks for that only when
    /// everything written before it is durable already.
    async fn write_batch(&self, batch: &mut Batch, durable: bool) -> Result<(), LogError> {
        let len = batch.buf.len() as u64;
        let needs_roll = {
            let inner = self.inner.borrow();
            match &inner.active {
                Some(a) => !a.fits(len),
                None => true,
            }
        };
        if needs_roll {
            self.roll(batch.first_lsn).await?;
        }
        let (pos, file) = {
            let inner = self.inner.borrow();
            let a = inner.active.as_ref().ok_or(LogError::Stopping)?;
            debug_assert!(a.fits(len));
            debug_assert_eq!(
                a.first_lsn + a.entry_count,
                batch.first_lsn,
                "batch continues the segment"
            );
            batch.signal.placed.set(Some((a.first_lsn, a.write_pos)));
            (a.write_pos, a.file.clone())
        };
        // io_uring owns the buffer while it writes; the batch gets it back afterwards.
        let started = Instant::now();
        let buf = std::mem::take(&mut batch.buf);
        let (r, buf) = if durable {
            debug_assert_eq!(self.durable_lsn(), self.inner.borrow().written_lsn, "all else durable");
            file.write_durable_at(buf, pos).await
        } else {
            file.write_at(buf, pos).await
        };
        batch.buf = buf;
        r.map_err(|e| LogError::from_io(if durable { "write (O_DSYNC)" } else { "write" }, &e))?;
        let mut inner = self.inner.borrow_mut();
        inner.inflight_bytes = 0;
        let a = inner.active.as_mut().ok_or(LogError::Stopping)?;
        a.write_pos += len;
        a.entry_count += batch.entries;
        inner.written_lsn = batch.first_lsn + batch.entries - 1;
        drop(inner);
        self.metrics.entries_total.add(batch.entries);
        self.metrics.bytes_total.add(len);
        self.metrics.batches_total.inc();
        if durable {
            self.synced(batch.first_lsn + batch.entries - 1, started, Ok(()))?;
        }
        Ok(())
    }

    /// Seals the active segment (if any) and activates a new one starting at `first_lsn`.
    async fn roll(&self, first_lsn: u64) -> Result<(), LogError> {
        let now = Instant::now();
        if let Some(prev) = self.last_roll.replace(Some(now)) {
            self.filling_fast.set(now.duration_since(prev) < FAST_FILL);
        }
        self.seal_active().await?;
        let (spare_path, file) = self.take_spare().await?;
        let header = SegmentHeader {
            shard_id: self.opts.shard_id,
            first_lsn,
            segment_bytes: file.len(),
            created_at_ms: crate::clock::system_ms(),
        };
        let (r, _) = file.write_at(header.encode().to_vec(), 0).await;
        r.map_err(|e| LogError::from_io("write segment header", &e))?;
        file.sync_data()
            .await
            .map_err(|e| LogError::from_io("fdatasync segment header", &e))?;
        let path = self.dir.join(segment_file_name(first_lsn));
        self.fs
            .rename(&spare_path, &path)
            .await
            .map_err(|e| LogError::from_io("rename segment", &e))?;
        self.fs
            .sync_dir(&self.dir)
            .await
            .map_err(|e| LogError::from_io("fsync log directory", &e))?;
        info!(shard = self.opts.shard_id, first_lsn, "new log segment");
        self.inner.borrow_mut().active = Some(ActiveSegment::new(
            path,
            Rc::new(file),
            first_lsn,
            SEGMENT_HEADER_BYTES as u64,
            0,
        ));
        Ok(())
    }

    /// Writes the footer and trailer of the active segment and makes them durable.
    async fn seal_active(&self) -> Result<(), LogError> {
        let Some(active) = self.inner.borrow_mut().active.take() else {
            return Ok(());
        };
        let footer = Footer {
            first_lsn: active.first_lsn,
            last_lsn: active.first_lsn + active.entry_count - 1,
            entry_count: active.entry_count,
            entries_end: active.write_pos,
            live_bytes: active.write_pos - SEGMENT_HEADER_BYTES as u64,
            dead_bytes: 0,
            index_count: 0,
        };
        let fbytes = footer.encode();
        let trailer = Trailer {
            footer_offset: active.write_pos,
            footer_bytes: fbytes.len() as u32,
            footer_crc: crc32fast::hash(&fbytes),
        };
        // The segment's entries are final now: readers find it among the sealed ones at once,
        // not only once its footer is durable (in between it would be in neither place).
        let file = active.file.clone();
        let len = file.len();
        let sealed = active.into_sealed(footer.last_lsn, footer.entries_end);
        self.inner.borrow_mut().sealed.push(sealed);
        let (r, _) = file.write_at(fbytes.to_vec(), footer.entries_end).await;
        r.map_err(|e| LogError::from_io("write footer", &e))?;
        let (r, _) = file
            .write_at(trailer.encode().to_vec(), len - TRAILER_BYTES as u64)
            .await;
        r.map_err(|e| LogError::from_io("write trailer", &e))?;
        file.sync_data()
            .await
            .map_err(|e| LogError::from_io("fdatasync seal", &e))?;
        Ok(())
    }

    /// The prepared spare segment, made now if none is ready.
    async fn take_spare(&self) -> Result<(PathBuf, F::File), LogError> {
        loop {
            let (ready, in_progress) = {
                let mut inner = self.inner.borrow_mut();
                (inner.spare.take(), inner.spare_in_progress)
            };
            if let Some(s) = ready {
                return Ok(s);
            }
            if !in_progress {
                break;
            }
            SpareWait { log: self }.await;
        }
        self.make_spare().await?;
        self.inner.borrow_mut().spare.take().ok_or(LogError::Stopping)
    }

    /// Creates a zero-filled spare segment and keeps it for the next roll.
    pub async fn make_spare(&self) -> Result<(), LogError> {
        let seq = {
            let mut inner = self.inner.borrow_mut();
            if inner.spare.is_some() || inner.spare_in_progress {
                return Ok(());
            }
            inner.spare_in_progress = true;
            inner.spare_seq += 1;
            inner.spare_seq
        };
        let path = self.dir.join(format!("spare-{seq}.seg"));
        // A log that filled its last segment fast is bandwidth-bound: writing the zeros would
        // double its disk traffic. Otherwise they are written, so small syncs stay cheap.
        let write_zeros = !self.filling_fast.get();
        let r = self.fs.create_zeroed(&path, self.opts.segment_bytes, write_zeros).await;
        let r = match r {
            Ok(f) => self.fs.sync_dir(&self.dir).await.map(|()| f),
            Err(e) => Err(e),
        };
        let out = {
            let mut inner = self.inner.borrow_mut();
            inner.spare_in_progress = false;
            match r {
                Ok(f) => {
                    if inner.no_space {
                        info!(shard = self.opts.shard_id, "disk space is back: writes resume");
                    }
                    inner.no_space = false;
                    inner.spare = Some((path.clone(), f));
                    Ok(())
                }
                Err(e) => {
                    let e = LogError::from_io("create spare segment", &e);
                    if matches!(e, LogError::NoSpace { .. }) && !inner.no_space {
                        error!(
                        shard = self.opts.shard_id,
                        "disk full: no room for the next log segment; writes are refused (507) once the active one fills"
                    );
                        inner.no_space = true;
                    }
                    Err(e)
                }
            }
        };
        if out.is_err() {
            // A partly made spare holds space: give it back.
            let _ = self.fs.remove(&path).await;
        }
        for w in self.spare_waiters.borrow_mut().drain(..) {
            w.wake();
        }
        out
    }
}

/// A durable entry read through a shared mapping of its segment.
pub struct MappedEntry<F: SegmentFile> {
    view: Rc<F::View>,
    pub entry_type: u16,
    pub lsn: u64,
    body: std::ops::Range<usize>,
}

impl<F: SegmentFile> MappedEntry<F> {
    /// The entry's body, straight from the mapping.
    pub fn body(&self) -> &[u8] {
        &self.view[self.body.clone()]
    }
}

/// The durable entries of one segment through its mapping, for readers that walk entries in
/// order (streams): [`SegmentEntries::peek`] skips an entry by its header alone,
/// [`SegmentEntries::entry`] decodes and checks one.
pub struct SegmentEntries<F: SegmentFile> {
    view: Rc<F::View>,
    end: usize,
    durable_lsn: u64,
}

impl<F: SegmentFile> SegmentEntries<F> {
    fn rest(&self, offset: u64) -> Result<&[u8], String> {
        let at = usize::try_from(offset).unwrap_or(usize::MAX);
        if at >= self.end {
            return Err(format!("offset {offset} is past the segment's entries"));
        }
        Ok(&self.view[at..self.end])
    }

    /// Offset just past the last durable entry.
    pub fn end(&self) -> u64 {
        self.end as u64
    }

    /// The type and body of the durable entry at `offset`, and the offset of the entry after
    /// it; the body is not checked. A compaction copy reads as its original.
    pub fn peek(&self, offset: u64) -> Result<(u16, &[u8], u64), String> {
        match super::format::peek_entry(self.rest(offset)?) {
            Ok(Some((t, lsn, body, stored))) if lsn <= self.durable_lsn => {
                let (t, body) = super::relocated::inner(t, body);
                Ok((t, body, offset + stored as u64))
            }
            other => Err(format!("no durable entry at offset {offset}: {other:?}")),
        }
    }

    /// The durable entry at `offset`, decoded and checked, and the offset of the entry after it.
    /// A compaction copy reads as its original (type and body; the LSN is the copy's).
    pub fn entry(&self, offset: u64) -> Result<(EntryRef<'_>, u64), String> {
        match decode_entry(self.rest(offset)?) {
            Ok(Decoded::Entry(e)) if e.lsn <= self.durable_lsn => {
                let next = offset + e.stored_bytes() as u64;
                let (entry_type, body) = super::relocated::inner(e.entry_type, e.body);
                Ok((EntryRef { entry_type, body, ..e }, next))
            }
            other => Err(format!("no durable entry at offset {offset}: {other:?}")),
        }
    }
}

/// The future of [`Log::room`].
pub struct Room<'a, F: Fs> {
    log: &'a Log<F>,
    body_bytes: usize,
    limit: usize,
}

impl<F: Fs> Future for Room<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = self.log.inner.borrow();
        let need = stored_bytes(self.body_bytes);
        if inner.batch.buf.is_empty()
            || inner.batch.buf.len() + need <= self.limit
            || inner.poisoned.is_some()
            || inner.stopping
        {
            return Poll::Ready(());
        }
        let mut waiters = self.log.room_waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The future of [`Log::wait_durable`].
pub struct WaitDurable<'a, F: Fs> {
    log: &'a Log<F>,
    lsn: u64,
}

impl<F: Fs> Future for WaitDurable<'_, F> {
    type Output = Result<(), LogError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.log.inner.borrow();
        if inner.durable_lsn >= self.lsn {
            return Poll::Ready(Ok(()));
        }
        if let Some(e) = &inner.poisoned {
            return Poll::Ready(Err(e.clone()));
        }
        let mut waiters = self.log.durable_waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

struct WaitWork<'a, F: Fs> {
    log: &'a Log<F>,
    /// Ready once the open batch has this many entries, or once this time has come.
    min_entries: u64,
    deadline: Option<Instant>,
}

impl<F: Fs> Future for WaitWork<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = self.log.inner.borrow();
        if inner.batch.entries >= self.min_entries
            || inner.stopping
            || self.deadline.is_some_and(|d| Instant::now() >= d)
        {
            return Poll::Ready(());
        }
        *self.log.flusher_waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

struct SpareWait<'a, F: Fs> {
    log: &'a Log<F>,
}

impl<F: Fs> Future for SpareWait<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = self.log.inner.borrow();
        if !inner.spare_in_progress {
            return Poll::Ready(());
        }
        self.log.spare_waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}
