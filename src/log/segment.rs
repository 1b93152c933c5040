//! Segments as the writer and readers see them. "Sealed" is a type, not a flag: an
//! [`ActiveSegment`] takes batches at its tail; sealing it (footer, trailer, fdatasync) turns it
//! into a [`SealedSegment`], which is immutable and read through its mapping.

use std::path::PathBuf;
use std::rc::Rc;

use super::error::LogError;
use super::format::{align_up, FOOTER_FIXED_BYTES, SEGMENT_HEADER_BYTES, TRAILER_BYTES};
use super::io::SegmentFile;

/// Room kept free at the end of a segment for the footer and the trailer.
pub const SEAL_RESERVE_BYTES: u64 = (align_up(FOOTER_FIXED_BYTES) + TRAILER_BYTES) as u64;

/// The segment taking writes.
pub struct ActiveSegment<F: SegmentFile> {
    pub path: PathBuf,
    /// Shared so the flusher can do I/O on it without holding the log's state borrowed.
    pub file: Rc<F>,
    pub first_lsn: u64,
    /// Offset where the next batch goes (8-aligned).
    pub write_pos: u64,
    /// Entries written so far.
    pub entry_count: u64,
    /// A cached mapping, for files whose mappings see later writes.
    view: std::cell::OnceCell<Rc<F::View>>,
}

impl<F: SegmentFile> ActiveSegment<F> {
    pub fn new(path: PathBuf, file: Rc<F>, first_lsn: u64, write_pos: u64, entry_count: u64) -> Self {
        assert!(write_pos >= SEGMENT_HEADER_BYTES as u64 && write_pos.is_multiple_of(8));
        ActiveSegment {
            path,
            file,
            first_lsn,
            write_pos,
            entry_count,
            view: std::cell::OnceCell::new(),
        }
    }

    /// A mapping of the segment that shows every write made so far.
    pub fn view(&self) -> Result<Rc<F::View>, LogError> {
        if !self.file.live_views() {
            return map(&*self.file);
        }
        if let Some(v) = self.view.get() {
            return Ok(v.clone());
        }
        let v = map(&*self.file)?;
        Ok(self.view.get_or_init(|| v).clone())
    }

    /// Seals this segment into its immutable form (after its footer and trailer are durable).
    pub fn into_sealed(self, last_lsn: u64, entries_end: u64) -> SealedSegment<F> {
        let view = self.view;
        let mut s = SealedSegment::new(self.path, self.file, self.first_lsn, last_lsn, entries_end);
        s.view = view;
        s
    }

    /// Whether `bytes` more fit before the footer reserve.
    pub fn fits(&self, bytes: u64) -> bool {
        self.write_pos + bytes + SEAL_RESERVE_BYTES <= self.file.len()
    }
}

/// A sealed, immutable segment.
pub struct SealedSegment<F: SegmentFile> {
    pub path: PathBuf,
    pub file: Rc<F>,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub entries_end: u64,
    view: std::cell::OnceCell<Rc<F::View>>,
}

impl<F: SegmentFile> SealedSegment<F> {
    pub fn new(path: PathBuf, file: Rc<F>, first_lsn: u64, last_lsn: u64, entries_end: u64) -> Self {
        SealedSegment {
            path,
            file,
            first_lsn,
            last_lsn,
            entries_end,
            view: std::cell::OnceCell::new(),
        }
    }

    /// The segment's mapping, made once: a sealed segment never changes.
    pub fn view(&self) -> Result<Rc<F::View>, LogError> {
        if let Some(v) = self.view.get() {
            return Ok(v.clone());
        }
        let v = map(&*self.file)?;
        Ok(self.view.get_or_init(|| v).clone())
    }
}

fn map<F: SegmentFile>(file: &F) -> Result<Rc<F::View>, LogError> {
    file.view()
        .map(Rc::new)
        .map_err(|e| LogError::from_io("map segment", &e))
}
