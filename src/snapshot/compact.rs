//! Compaction: frees sealed segments whose entries are mostly no longer needed.
//!
//! A pass runs right after a snapshot. It first deletes the segments nothing needs any more,
//! then copies the still-needed entries of mostly-dead segments to the log's tail:
//!
//! * **Needed** is decided by the state machines (`needs`): a KV put its key points at, a queue
//!   message's payload, a retained stream record, a time-series chunk. Everything else in a
//!   segment covered by a snapshot (acks, leases, deletes, points already in heads, ...) is
//!   only needed to rebuild state the snapshot already holds.
//! * A copy is a `RELOCATED` entry (`src/log/relocated.rs`) naming the original's place; once
//!   durable, the state machine repoints its record (`relocate`) — unless the record changed
//!   meanwhile, and then the copy is dead. Replay applies copies the same way.
//! * A segment is deleted only when [`KEEP`] snapshots are kept, every one of them is at or
//!   after its last LSN (so no fallback replays it) and none of them lists it among the segments
//!   it needs. With a single snapshot the fallback would be the whole log, which needs every
//!   segment: nothing is deleted before the second one. A segment copied in one pass is
//!   therefore deleted two snapshots later, after the snapshots that still pointed into it are
//!   gone.
//!
//! Every step is crash-safe: copies are ordinary appended entries; until a snapshot that points
//! at the copies replaces the ones pointing at the originals, the originals stay; a deletion is
//! of a file no kept snapshot and no replayed entry can reach.
//!
//! Copies go out in chunks of [`COPY_CHUNK_BYTES`], each made durable before the next, with a
//! pause between chunks, so foreground writes keep the disk most of the time.
//!
//! A pass asks and tells the shard's [`Engine`], which routes each entry to the machine of its
//! partition.

use std::collections::BTreeSet;
use std::time::Duration;

use tracing::{info, warn};

use super::shard::KEEP;
use crate::log::format::{stored_bytes, SEGMENT_HEADER_BYTES};
use crate::log::relocated::{self, ENTRY_RELOCATED};
use crate::log::Ticket;
use crate::machine::Engine;

/// Bytes of copies per chunk.
const COPY_CHUNK_BYTES: usize = 1 << 20;
/// Pause between chunks.
const CHUNK_PAUSE: Duration = Duration::from_millis(2);

/// What one pass did.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassStats {
    pub deleted: u64,
    pub copied_segments: u64,
    pub copied_entries: u64,
    pub copied_bytes: u64,
}

/// One compaction pass (after a snapshot). `moved` remembers segments already copied out.
pub async fn pass(engine: &Engine, moved: &mut BTreeSet<u64>) -> Result<PassStats, String> {
    let percent = engine.config.log.compact_live_percent;
    let log = engine.log().map_err(|e| e.to_string())?;
    let mut stats = PassStats::default();
    if percent == 0 {
        return Ok(stats);
    }
    let (oldest, newest, maps_known, live_newest, needed_by_kept) = {
        let s = engine.snapshots.borrow();
        let Some((newest, live)) = s.kept.last() else {
            return Ok(stats);
        };
        let oldest = s.kept.first().map_or(*newest, |k| k.0);
        // With fewer than KEEP snapshots the fallback is the whole log: nothing may go yet.
        let known = s.kept.len() >= KEEP && s.kept.iter().all(|k| k.1.is_some());
        let needed: BTreeSet<u64> = s
            .kept
            .iter()
            .flat_map(|k| k.1.iter().flat_map(|m| m.keys().copied()))
            .collect();
        (oldest, *newest, known, live.clone().unwrap_or_default(), needed)
    };
    // 1. Delete what nothing needs.
    if maps_known {
        for (first, last, _) in log.sealed_segments() {
            if last <= oldest && !needed_by_kept.contains(&first) {
                log.remove_sealed(first).await.map_err(|e| e.to_string())?;
                moved.remove(&first);
                stats.deleted += 1;
                engine.log_metrics.compacted_segments_total.inc();
            }
        }
    }
    // 2. Copy the needed entries out of mostly-dead segments the newest snapshot covers.
    for (first, last, bytes) in log.sealed_segments() {
        if last > newest || moved.contains(&first) || bytes == 0 {
            continue;
        }
        let live = live_newest.get(&first).copied().unwrap_or(0);
        if live * 100 >= bytes * percent {
            continue;
        }
        if live > 0 {
            let (entries, copied) = copy_segment(engine, first).await?;
            stats.copied_entries += entries;
            stats.copied_bytes += copied;
            stats.copied_segments += 1;
        }
        moved.insert(first);
    }
    if stats.deleted > 0 || stats.copied_segments > 0 {
        info!(
            shard = engine.shard_id,
            deleted = stats.deleted,
            copied_segments = stats.copied_segments,
            copied_entries = stats.copied_entries,
            copied_bytes = stats.copied_bytes,
            "compaction pass"
        );
    }
    Ok(stats)
}

/// A copy waiting to be durable: where the original was, its ticket, its type and body.
struct Copy {
    from_offset: u64,
    ticket: Ticket,
    entry_type: u16,
    body: Vec<u8>,
}

/// Copies the needed entries of segment `segment` to the tail; returns (entries, bytes).
async fn copy_segment(engine: &Engine, segment: u64) -> Result<(u64, u64), String> {
    let log = engine.log().map_err(|e| e.to_string())?;
    let entries = log.segment_entries(segment).map_err(|e| e.to_string())?;
    let end = entries.end();
    let mut offset = SEGMENT_HEADER_BYTES as u64;
    let mut chunk: Vec<Copy> = Vec::new();
    let mut chunk_bytes = 0usize;
    let (mut count, mut copied) = (0u64, 0u64);
    while offset < end {
        let (e, next) = entries.entry(offset)?;
        let (entry_type, inner) = (e.entry_type, e.body);
        if engine.needs((segment, offset), entry_type, inner) {
            let body = relocated::encode(segment, offset, entry_type, inner);
            log.room_for_background(body.len()).await;
            let ticket = log.append(ENTRY_RELOCATED, &body).map_err(|e| e.to_string())?;
            chunk_bytes += stored_bytes(body.len());
            chunk.push(Copy {
                from_offset: offset,
                ticket,
                entry_type,
                body: inner.to_vec(),
            });
        }
        offset = next;
        if chunk_bytes >= COPY_CHUNK_BYTES {
            let (n, b) = settle(engine, segment, std::mem::take(&mut chunk)).await?;
            count += n;
            copied += b;
            chunk_bytes = 0;
            monoio::time::sleep(CHUNK_PAUSE).await;
        }
    }
    let (n, b) = settle(engine, segment, chunk).await?;
    engine.log_metrics.compaction_copied_bytes_total.add(copied + b);
    Ok((count + n, copied + b))
}

/// Waits for a chunk's copies to be durable and repoints the state at them.
async fn settle(engine: &Engine, segment: u64, chunk: Vec<Copy>) -> Result<(u64, u64), String> {
    let mut bytes = 0;
    let n = chunk.len() as u64;
    for c in chunk {
        let at = c.ticket.await.map_err(|e| e.to_string())?;
        bytes += stored_bytes(relocated::PREFIX_BYTES + c.body.len()) as u64;
        if let Err(e) = engine.relocate((segment, c.from_offset), &at, c.entry_type, &c.body) {
            warn!(shard = engine.shard_id, error = %e, "compaction: a copy could not be applied");
            return Err(e.0);
        }
    }
    Ok((n, bytes))
}
