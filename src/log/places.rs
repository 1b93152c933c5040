//! Compact places of entries in a shard's log: a segment is known by a small ordinal (in the
//! order state machines first saw it) instead of its 8-byte first LSN, so an entry's place packs
//! into one `u64` (ordinal << 32 | offset; segments are at most 4 GiB). Each table also counts,
//! per segment, the bytes of its owner's entries that nothing needs any more, for compaction.

use std::collections::HashMap;

use super::Position;

/// The segments a state machine's entries were settled in, by ordinal, and the bytes of its
/// entries in each that nothing needs any more.
#[derive(Debug, Default, Clone)]
pub struct SegmentTable {
    pub first_lsn: Vec<u64>,
    pub dead: Vec<u64>,
    ordinal: HashMap<u64, u32>,
}

impl SegmentTable {
    pub fn ordinal(&mut self, first_lsn: u64) -> u32 {
        if self.first_lsn.last() == Some(&first_lsn) {
            return (self.first_lsn.len() - 1) as u32;
        }
        *self.ordinal.entry(first_lsn).or_insert_with(|| {
            self.first_lsn.push(first_lsn);
            self.dead.push(0);
            (self.first_lsn.len() - 1) as u32
        })
    }

    pub fn loc(&mut self, pos: &Position) -> u64 {
        let offset = u32::try_from(pos.offset).expect("segments are at most 4 GiB");
        (u64::from(self.ordinal(pos.segment)) << 32) | u64::from(offset)
    }

    /// The location of (segment's first LSN, offset) if that segment has an ordinal already;
    /// unlike [`SegmentTable::loc`] it adds nothing (for lookups by place).
    pub fn find(&self, segment: u64, offset: u64) -> Option<u64> {
        let offset = u32::try_from(offset).ok()?;
        Some((u64::from(*self.ordinal.get(&segment)?) << 32) | u64::from(offset))
    }

    /// (segment's first LSN, offset) of a settled location.
    pub fn place(&self, loc: u64) -> (u64, u64) {
        (self.first_lsn[(loc >> 32) as usize], loc & u64::from(u32::MAX))
    }

    pub fn mark_dead(&mut self, loc: u64, bytes: u64) {
        self.dead[(loc >> 32) as usize] += bytes;
    }
}
