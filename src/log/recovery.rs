//! Opening a shard's log: scan every segment in LSN order, validate every entry, hand each to
//! the replay callback, cut a torn tail, refuse (or, with `repair`, cut) at corruption, and
//! return the log positioned for appends. The rules are those of `format-spec/log.md`,
//! "Recovery".

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use tracing::{info, warn};

use super::error::LogError;
use super::format::{
    decode_entry, parse_segment_file_name, Decoded, EntryRef, Footer, FormatError, SegmentHeader, Trailer, ENTRY_ALIGN,
    ENTRY_HEADER_BYTES, FLAG_BATCH_START, FLAG_PIPELINED, SEGMENT_HEADER_BYTES, TRAILER_BYTES,
};
use super::io::{Fs, SegmentFile};
use super::metrics::LogMetrics;
use super::segment::{ActiveSegment, SealedSegment, SEAL_RESERVE_BYTES};
use super::writer::{Log, LogOptions, Position};

/// What recovery found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecoveryStats {
    pub segments: usize,
    /// Entries replayed (those after the snapshot's LSN).
    pub entries: u64,
    pub bytes: u64,
    /// Bytes of a torn tail that were cut.
    pub torn_bytes: u64,
    /// With `repair`: entries dropped at the corruption cut (as far as they could be counted).
    pub repaired_dropped_entries: u64,
    pub millis: u64,
}

/// How the scan of one segment ended.
enum ScanEnd {
    /// Clean: entry_bytes = 0 (or the end of the entry area / the sealed footer).
    Clean,
    /// An invalid entry at this offset.
    Bad { offset: u64, reason: String },
}

struct Scanned {
    next_lsn: u64,
    end_pos: u64,
    entries: u64,
    end: ScanEnd,
}

/// Scans entries of `bytes` from `SEGMENT_HEADER_BYTES` up to `limit`, from `first_lsn`.
fn scan(
    bytes: &[u8],
    limit: u64,
    first_lsn: u64,
    on_entry: &mut impl FnMut(&EntryRef<'_>, Position) -> Result<(), String>,
) -> Result<Scanned, (u64, String)> {
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut lsn = first_lsn;
    let mut entries = 0;
    let limit = limit as usize;
    let end = loop {
        if pos + 4 > limit {
            break ScanEnd::Clean;
        }
        match decode_entry(&bytes[pos..limit]) {
            Ok(Decoded::End) => break ScanEnd::Clean,
            Ok(Decoded::Entry(e)) if e.lsn == lsn => {
                let at = Position {
                    lsn,
                    segment: first_lsn,
                    offset: pos as u64,
                };
                on_entry(&e, at).map_err(|m| (pos as u64, m))?;
                pos += e.stored_bytes();
                lsn += 1;
                entries += 1;
            }
            Ok(Decoded::Entry(e)) => {
                break ScanEnd::Bad {
                    offset: pos as u64,
                    reason: format!(
                        "entry has LSN {} where {lsn} belongs (stale or misdirected write)",
                        e.lsn
                    ),
                }
            }
            Err(FormatError::TooShort { .. }) if pos + ENTRY_HEADER_BYTES > limit => break ScanEnd::Clean,
            Err(e) => {
                break ScanEnd::Bad {
                    offset: pos as u64,
                    reason: e.to_string(),
                }
            }
        }
    };
    Ok(Scanned {
        next_lsn: lsn,
        end_pos: pos as u64,
        entries,
        end,
    })
}

/// After an invalid entry at `from` in the last segment: is there a valid-looking entry with
/// an LSN above `lsn` that starts a batch written after the bad one was durable? Then the bad
/// one had been made durable: corruption, not a torn tail. A batch start without
/// `PIPELINED` is such proof; one with it may have been written while the fdatasync of the
/// batch before it was in flight, so only a further batch start after it is (at most one
/// batch is written ahead of the durable ones).
fn later_batch_after(bytes: &[u8], from: usize, limit: usize, lsn: u64) -> Option<(u64, u64)> {
    let mut pipelined_seen = false;
    let mut pos = from + ENTRY_ALIGN;
    while pos + ENTRY_HEADER_BYTES <= limit {
        if bytes[pos..pos + 4] == [0; 4] {
            // A zero length starts no entry; a segment's unused space is all zeros, so go on
            // from the next aligned word that is not.
            let next = first_nonzero(bytes, pos, limit) / ENTRY_ALIGN * ENTRY_ALIGN;
            pos = next.max(pos + ENTRY_ALIGN);
            continue;
        }
        if let Ok(Decoded::Entry(e)) = decode_entry(&bytes[pos..limit]) {
            if e.lsn > lsn && e.flags & FLAG_BATCH_START != 0 {
                if e.flags & FLAG_PIPELINED == 0 || pipelined_seen {
                    return Some((pos as u64, e.lsn));
                }
                pipelined_seen = true;
            }
        }
        pos += ENTRY_ALIGN;
    }
    None
}

/// Counts valid-looking entries after `from` (for the repair report).
fn count_entries_after(bytes: &[u8], from: usize, limit: usize) -> u64 {
    let mut pos = from;
    let mut n = 0;
    while pos + ENTRY_HEADER_BYTES <= limit {
        match decode_entry(&bytes[pos..limit]) {
            Ok(Decoded::Entry(e)) => {
                n += 1;
                pos += e.stored_bytes();
            }
            _ => pos += ENTRY_ALIGN,
        }
    }
    n
}

/// The footer `trailer` points at, if it lies before the trailer (at `trailer_at`) and matches
/// the trailer's CRC.
pub(crate) fn footer_bytes<'a>(bytes: &'a [u8], trailer_at: usize, trailer: &Trailer) -> Option<&'a [u8]> {
    let at = usize::try_from(trailer.footer_offset).ok()?;
    let end = at
        .checked_add(trailer.footer_bytes as usize)
        .filter(|&end| end <= trailer_at)?;
    let footer = &bytes[at..end];
    (crc32fast::hash(footer) == trailer.footer_crc).then_some(footer)
}

/// Compared a block at a time: a segment's unused space is megabytes of zeros.
const ZEROS: [u8; 4096] = [0; 4096];

/// Offset of the first nonzero byte of `bytes[from..limit]`, or `limit`.
pub(crate) fn first_nonzero(bytes: &[u8], from: usize, limit: usize) -> usize {
    let mut pos = from;
    while pos < limit {
        let block = &bytes[pos..limit.min(pos + ZEROS.len())];
        if block != &ZEROS[..block.len()] {
            return pos + block.iter().position(|&b| b != 0).unwrap_or(0);
        }
        pos += block.len();
    }
    limit
}

/// Offset just past the last nonzero byte of `bytes[from..limit]`, or `from`.
fn last_nonzero(bytes: &[u8], from: usize, limit: usize) -> usize {
    let mut end = limit;
    while end > from {
        let start = end.saturating_sub(ZEROS.len()).max(from);
        let block = &bytes[start..end];
        if block != &ZEROS[..block.len()] {
            return start + block.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        }
        end = start;
    }
    from
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> LogError {
    LogError::Corrupt {
        file: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

/// Zeroes `[from, to)` of a file and makes it durable.
async fn zero_range<F: SegmentFile>(file: &F, from: u64, to: u64) -> Result<(), LogError> {
    const CHUNK: u64 = 1024 * 1024;
    let mut pos = from;
    while pos < to {
        let n = (to - pos).min(CHUNK);
        let (r, _) = file.write_at(vec![0u8; n as usize], pos).await;
        r.map_err(|e| LogError::from_io("zero torn tail", &e))?;
        pos += n;
    }
    file.sync_data()
        .await
        .map_err(|e| LogError::from_io("fdatasync torn tail", &e))
}

/// Opens (recovers) the log in `dir`, calling `on_entry` with every valid entry after
/// `from_lsn` and its position, in LSN order.
///
/// `from_lsn` is the LSN of the snapshot the caller restored (0: none, replay everything).
/// Sealed segments wholly at or before it are only checked (header, trailer, footer), not
/// scanned; they need not follow each other, since compaction deletes segments nothing needs.
/// From the segment holding `from_lsn + 1` on, segments must follow each other as always, and
/// the log must reach `from_lsn`.
pub async fn open<F: Fs>(
    fs: F,
    dir: PathBuf,
    opts: LogOptions,
    metrics: Arc<LogMetrics>,
    from_lsn: u64,
    mut on_entry: impl FnMut(&EntryRef<'_>, Position) -> Result<(), String>,
) -> Result<(Log<F>, RecoveryStats), LogError> {
    let started = crate::clock::Stopwatch::start();
    fs.create_dir_all(&dir)
        .map_err(|e| LogError::from_io("create log directory", &e))?;
    let names = fs.list(&dir).map_err(|e| LogError::from_io("list log directory", &e))?;
    let mut segments: Vec<(u64, String)> = Vec::new();
    for name in names {
        if let Some(lsn) = parse_segment_file_name(&name) {
            segments.push((lsn, name));
        } else if name.starts_with("spare-") {
            // A spare that was being prepared or never used: made again when needed.
            fs.remove(&dir.join(&name))
                .await
                .map_err(|e| LogError::from_io("remove spare", &e))?;
        }
    }
    segments.sort();
    // The first segment to scan: the last one starting at or before `from_lsn + 1`.
    let first_scanned = segments.partition_point(|&(lsn, _)| lsn <= from_lsn + 1);
    if let Some((lsn, name)) = segments.first() {
        if first_scanned == 0 {
            let reason = if from_lsn == 0 {
                format!("the log starts at LSN {lsn}, not 1, and no snapshot covers the entries before it")
            } else {
                format!(
                    "the log starts at LSN {lsn}, after the snapshot's LSN {from_lsn}: entries in between are missing"
                )
            };
            return Err(corrupt(&dir.join(name), 0, reason));
        }
    } else if from_lsn > 0 {
        return Err(corrupt(
            &dir,
            0,
            format!("no log segments, but a snapshot at LSN {from_lsn}"),
        ));
    }
    let first_scanned = first_scanned.saturating_sub(1);

    let mut stats = RecoveryStats {
        segments: segments.len(),
        ..RecoveryStats::default()
    };
    let mut sealed = Vec::new();
    let mut active = None;
    let mut next_lsn: Option<u64> = None;
    let replayed = std::cell::Cell::new(0u64);
    let mut replay = |e: &EntryRef<'_>, at: Position| {
        if e.lsn > from_lsn {
            replayed.set(replayed.get() + 1);
            on_entry(e, at)
        } else {
            Ok(())
        }
    };
    let count = segments.len();
    let mut drop_from: Option<usize> = None;
    for (i, (name_lsn, name)) in segments.iter().enumerate() {
        let path = dir.join(name);
        let mut is_last = i + 1 == count;
        let file = fs
            .open(&path)
            .await
            .map_err(|e| LogError::from_io("open segment", &e))?;
        let view = file.view().map_err(|e| LogError::from_io("map segment", &e))?;
        let bytes: &[u8] = &view;
        let header = SegmentHeader::decode(bytes).map_err(|e| corrupt(&path, 0, format!("segment header: {e}")))?;
        if header.shard_id != opts.shard_id {
            return Err(corrupt(
                &path,
                16,
                format!(
                    "segment of shard {} in shard {}'s directory",
                    header.shard_id, opts.shard_id
                ),
            ));
        }
        if header.first_lsn != *name_lsn {
            return Err(corrupt(
                &path,
                24,
                format!("header says first LSN {}, the name {name_lsn}", header.first_lsn),
            ));
        }
        if header.segment_bytes != file.len() {
            return Err(corrupt(
                &path,
                32,
                format!(
                    "header says {} bytes, the file has {}",
                    header.segment_bytes,
                    file.len()
                ),
            ));
        }
        if let Some(expected) = next_lsn {
            if header.first_lsn != expected {
                return Err(corrupt(
                    &path,
                    24,
                    format!(
                        "segment starts at LSN {} but the previous one ended before {expected}",
                        header.first_lsn
                    ),
                ));
            }
        }
        let len = file.len();
        let trailer_at = (len - TRAILER_BYTES as u64) as usize;
        let trailer = match Trailer::decode(&bytes[trailer_at..]) {
            Ok(t) => t,
            // A damaged trailer on the last segment: the crash hit while sealing.
            Err(_) if is_last => None,
            Err(e) => return Err(corrupt(&path, trailer_at as u64, format!("trailer: {e}"))),
        };
        let footer = match trailer {
            Some(t) => {
                let at = t.footer_offset;
                match footer_bytes(bytes, trailer_at, &t) {
                    Some(fb) => Some(Footer::decode(fb).map_err(|e| corrupt(&path, at, format!("footer: {e}")))?),
                    None if is_last => None,
                    None => return Err(corrupt(&path, at, "footer does not match its trailer")),
                }
            }
            None if !is_last && opts.repair => {
                // Repair cuts at the first damage: this segment becomes the last one and the
                // files after it go.
                warn!(file = %path.display(), "repair: a segment followed by another one is not sealed; cutting after it");
                drop_from = Some(i + 1);
                is_last = true;
                None
            }
            None if !is_last => {
                return Err(corrupt(
                    &path,
                    trailer_at as u64,
                    "a segment followed by another one is not sealed",
                ));
            }
            None => None,
        };
        if i < first_scanned {
            // Wholly covered by the snapshot: only its seal is checked.
            let Some(f) = &footer else {
                return Err(corrupt(
                    &path,
                    trailer_at as u64,
                    "a segment before the snapshot's LSN is not sealed",
                ));
            };
            if f.last_lsn > from_lsn || f.first_lsn != header.first_lsn {
                return Err(corrupt(
                    &path,
                    f.entries_end,
                    format!(
                        "footer says LSNs {}..={}, before a segment that starts at or before {}",
                        f.first_lsn,
                        f.last_lsn,
                        from_lsn + 1
                    ),
                ));
            }
            let (last_lsn, entries_end) = (f.last_lsn, f.entries_end);
            drop(view);
            sealed.push(SealedSegment::new(
                path,
                Rc::new(file),
                header.first_lsn,
                last_lsn,
                entries_end,
            ));
            continue;
        }
        let limit = match &footer {
            Some(f) => f.entries_end.min(len - SEAL_RESERVE_BYTES),
            None => len - SEAL_RESERVE_BYTES,
        };
        let scanned = scan(bytes, limit, header.first_lsn, &mut replay)
            .map_err(|(at, m)| corrupt(&path, at, format!("cannot replay the entry: {m}")))?;
        stats.bytes += scanned.end_pos - SEGMENT_HEADER_BYTES as u64;
        let mut end_pos = scanned.end_pos;
        match scanned.end {
            ScanEnd::Clean => {
                if let Some(f) = &footer {
                    if f.entries_end != scanned.end_pos || f.entry_count != scanned.entries {
                        let reason = format!(
                            "footer says {} entries up to offset {}, found {} up to {}",
                            f.entry_count, f.entries_end, scanned.entries, scanned.end_pos
                        );
                        if !opts.repair {
                            return Err(corrupt(&path, scanned.end_pos, reason));
                        }
                        warn!(file = %path.display(), %reason, "repair: cutting the log here");
                        drop_from = Some(i + 1);
                    }
                }
            }
            ScanEnd::Bad { offset, reason } => {
                let later = if is_last {
                    later_batch_after(bytes, offset as usize, limit as usize, scanned.next_lsn)
                } else {
                    None
                };
                let is_corruption = !is_last || footer.is_some() || later.is_some();
                if is_corruption && !opts.repair {
                    let why = match later {
                        Some((at, lsn)) => format!(
                            "{reason}; a later batch (LSN {lsn} at offset {at}) follows, so this was acknowledged data"
                        ),
                        None => reason,
                    };
                    return Err(corrupt(&path, offset, why));
                }
                let cut_to = last_nonzero(bytes, offset as usize, limit as usize) as u64;
                if is_corruption {
                    let dropped = count_entries_after(bytes, offset as usize, limit as usize);
                    stats.repaired_dropped_entries += dropped;
                    warn!(file = %path.display(), offset, dropped, %reason, "repair: cutting the log at corruption");
                    drop_from = Some(i + 1);
                } else {
                    stats.torn_bytes += cut_to - offset;
                    info!(file = %path.display(), offset, bytes = cut_to - offset, "cutting a torn tail (never acknowledged)");
                }
                zero_range(&file, offset, cut_to.max(offset)).await?;
                end_pos = offset;
            }
        }
        next_lsn = Some(scanned.next_lsn);
        let cut_sealed = footer.is_some() && drop_from.is_some();
        drop(view);
        if footer.is_none() || cut_sealed {
            if cut_sealed {
                // A sealed segment cut by repair loses its seal and takes writes again.
                zero_range(&file, end_pos, len).await?;
            }
            active = Some(ActiveSegment::new(
                path.clone(),
                Rc::new(file),
                header.first_lsn,
                end_pos,
                scanned.next_lsn - header.first_lsn,
            ));
        } else {
            sealed.push(SealedSegment::new(
                path,
                Rc::new(file),
                header.first_lsn,
                scanned.next_lsn - 1,
                end_pos,
            ));
        }
        if drop_from.is_some() {
            break;
        }
    }
    if let Some(from) = drop_from {
        for (_, name) in &segments[from..] {
            let path = dir.join(name);
            // These files were never validated (the scan stopped at the cut): any size may come.
            if let Ok(f) = fs.open(&path).await {
                if let Ok(v) = f.view() {
                    let end = v.len().saturating_sub(SEAL_RESERVE_BYTES as usize);
                    stats.repaired_dropped_entries += count_entries_after(&v, SEGMENT_HEADER_BYTES, end);
                }
            }
            warn!(file = %path.display(), "repair: removing a segment after the cut");
            fs.remove(&path)
                .await
                .map_err(|e| LogError::from_io("remove segment", &e))?;
        }
        fs.sync_dir(&dir)
            .await
            .map_err(|e| LogError::from_io("fsync log directory", &e))?;
    }
    if let Some(next) = next_lsn {
        if next <= from_lsn {
            return Err(LogError::SnapshotAhead {
                log_end: next - 1,
                snapshot: from_lsn,
            });
        }
    }
    stats.entries = replayed.get();
    stats.millis = started.elapsed().as_millis() as u64;
    metrics.recovered_entries.add(stats.entries);
    metrics.recovered_bytes.add(stats.bytes);
    metrics.recovery_ms.add(stats.millis);
    let log = Log::from_recovered(fs, dir, opts, metrics, next_lsn.unwrap_or(1), active, sealed);
    Ok((log, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Rng;

    /// Sparse buffers: zeros with a few nonzero bytes, at block edges and anywhere.
    fn buffers() -> Vec<Vec<u8>> {
        let mut rng = Rng(7);
        let mut out = vec![vec![0; 10_000], vec![1; 5000], Vec::new()];
        for _ in 0..200 {
            let mut b = vec![0u8; 1 + rng.index(3 * ZEROS.len())];
            for _ in 0..rng.index(4) {
                let at = match rng.below(3) {
                    0 => (ZEROS.len() * rng.index(3)).min(b.len() - 1),
                    1 => (ZEROS.len() * (1 + rng.index(3))).saturating_sub(1).min(b.len() - 1),
                    _ => rng.index(b.len()),
                };
                b[at] = 1 + rng.below(255) as u8;
            }
            out.push(b);
        }
        out
    }

    #[test]
    fn zero_scans_agree_with_a_byte_at_a_time_scan() {
        let mut rng = Rng(8);
        for b in buffers() {
            for _ in 0..20 {
                let limit = rng.index(b.len() + 1);
                let from = rng.index(limit + 1);
                let first = b[from..limit].iter().position(|&x| x != 0).map_or(limit, |p| from + p);
                let last = b[from..limit]
                    .iter()
                    .rposition(|&x| x != 0)
                    .map_or(from, |p| from + p + 1);
                assert_eq!(first_nonzero(&b, from, limit), first, "{from}..{limit}");
                assert_eq!(last_nonzero(&b, from, limit), last, "{from}..{limit}");
            }
        }
    }

    #[test]
    fn later_batch_is_found_past_zeros_and_garbage() {
        use crate::log::format::{encode_entry, FLAG_BATCH_START};
        let mut seg = vec![0u8; 64 * 1024];
        let mut entry = Vec::new();
        encode_entry(&mut entry, 9, 1, FLAG_BATCH_START, b"later batch");
        let at = 40_000 / ENTRY_ALIGN * ENTRY_ALIGN;
        seg[at..at + entry.len()].copy_from_slice(&entry);
        assert_eq!(later_batch_after(&seg, 0, seg.len(), 8), Some((at as u64, 9)));
        assert_eq!(later_batch_after(&seg, 0, seg.len(), 9), None, "not a later LSN");
        assert_eq!(later_batch_after(&seg, at, seg.len(), 8), None, "only after `from`");
        // Garbage (nonzero words that are no entry) before it does not hide it.
        for (i, x) in seg[1000..1100].iter_mut().enumerate() {
            *x = i as u8 | 1;
        }
        assert_eq!(later_batch_after(&seg, 0, seg.len(), 8), Some((at as u64, 9)));
    }

    #[test]
    fn a_pipelined_batch_alone_proves_nothing_a_second_batch_does() {
        use crate::log::format::{add_entry_flags, encode_entry, FLAG_BATCH_START};
        let mut seg = vec![0u8; 64 * 1024];
        let mut first = Vec::new();
        encode_entry(&mut first, 9, 1, FLAG_BATCH_START, b"written while 8 was syncing");
        add_entry_flags(&mut first, FLAG_PIPELINED);
        assert!(matches!(decode_entry(&first), Ok(Decoded::Entry(e)) if e.flags == FLAG_BATCH_START | FLAG_PIPELINED));
        seg[1024..1024 + first.len()].copy_from_slice(&first);
        assert_eq!(
            later_batch_after(&seg, 0, seg.len(), 8),
            None,
            "batch 8 may be a torn tail"
        );
        let mut second = Vec::new();
        encode_entry(&mut second, 10, 1, FLAG_BATCH_START, b"written after 8 was durable");
        add_entry_flags(&mut second, FLAG_PIPELINED);
        seg[8192..8192 + second.len()].copy_from_slice(&second);
        assert_eq!(later_batch_after(&seg, 0, seg.len(), 8), Some((8192, 10)));
    }
}
