//! What the shards of one node share about multi-part writes (`format-spec/ts.md`, "A write is
//! atomic across partitions"): the commit table the coordinator fills once every part of a write
//! is durable, and the exchange by which the shards settle, after recovery, the parts their
//! partitions held pending when the node stopped.
//!
//! Visibility: every commit gets the next *commit number*; a query takes the current number as
//! its *snapshot* when it starts, and every shard answering it shows a pending part iff its batch
//! committed at or before that snapshot — so all shards of one query agree on every batch, however
//! their answers interleave with commits. A shard moves a committed part into its heads (logging
//! `TS_COMMIT`) only when no query still running has an older snapshot, so what heads hold is
//! visible to every running query alike.
//!
//! Invariants: a batch enters the commit table only after all its parts are durable, and leaves
//! it once every owner has moved its parts into its heads. Commit numbers only grow.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Debug, Default)]
struct Table {
    /// The last commit number handed out.
    seq: u64,
    /// batch → (its commit number, owners still to move their parts).
    batches: HashMap<u64, (u64, u16)>,
    /// Snapshots of the queries running → how many queries hold each.
    queries: BTreeMap<u64, u32>,
}

/// Committed multi-part writes whose parts are not yet in every owner's heads, and the
/// snapshots of running queries.
#[derive(Debug, Default)]
pub struct CommitTable {
    inner: Mutex<Table>,
}

/// A running query's snapshot; dropping it ends the query.
#[derive(Debug)]
pub struct Snapshot<'a> {
    table: &'a CommitTable,
    pub seq: u64,
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        if let Some(n) = t.queries.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                t.queries.remove(&self.seq);
            }
        }
    }
}

impl CommitTable {
    /// Records `batch` as committed; `owners` shards hold parts of it. Returns its number.
    pub fn insert(&self, batch: u64, owners: u16) -> u64 {
        debug_assert!(owners >= 1);
        let mut t = self.lock();
        t.seq += 1;
        let seq = t.seq;
        t.batches.insert(batch, (seq, owners));
        seq
    }

    /// A query starts: its snapshot is every commit so far.
    pub fn begin_query(&self) -> Snapshot<'_> {
        let mut t = self.lock();
        let seq = t.seq;
        *t.queries.entry(seq).or_default() += 1;
        Snapshot { table: self, seq }
    }

    /// Whether a query with snapshot `seq` sees `batch`'s pending parts.
    pub fn visible(&self, batch: u64, seq: u64) -> bool {
        self.lock().batches.get(&batch).is_some_and(|(c, _)| *c <= seq)
    }

    /// Whether `batch` is committed and every running query sees it, so its parts may move into
    /// the heads.
    pub fn movable(&self, batch: u64) -> bool {
        let t = self.lock();
        let oldest = t.queries.keys().next().copied().unwrap_or(u64::MAX);
        t.batches.get(&batch).is_some_and(|(c, _)| *c <= oldest)
    }

    pub fn is_committed(&self, batch: u64) -> bool {
        self.lock().batches.contains_key(&batch)
    }

    /// One owner has moved its parts of `batch` into its heads.
    pub fn done(&self, batch: u64) {
        let mut t = self.lock();
        if let Some((_, n)) = t.batches.get_mut(&batch) {
            *n -= 1;
            if *n == 0 {
                t.batches.remove(&batch);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding this lock leaves the table consistent (single updates).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The recovery exchange: every shard publishes the batches its partitions hold pending (with
/// the number of parts each write has), then every shard says how many parts of those batches
/// its partitions hold (pending or committed); a batch is committed iff the parts held add up to
/// its part count (a part can be missing only if it never became durable).
#[derive(Debug, Default)]
pub struct RecoveryExchange {
    inner: Mutex<Exchange>,
}

#[derive(Debug, Default)]
struct Exchange {
    /// batch → parts the write has.
    pending: HashMap<u64, u16>,
    /// (batch, shard) → parts held there.
    held: HashMap<(u64, u16), u16>,
    published: usize,
    answered: usize,
}

impl RecoveryExchange {
    fn lock(&self) -> std::sync::MutexGuard<'_, Exchange> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Step 1 of a shard: the batches it holds pending, with their part counts.
    pub fn publish_pending(&self, batches: impl IntoIterator<Item = (u64, u16)>) {
        let mut x = self.lock();
        for (b, n) in batches {
            x.pending.insert(b, n);
        }
        x.published += 1;
    }

    /// Shards that have done step 1.
    pub fn published(&self) -> usize {
        self.lock().published
    }

    /// Every batch some shard holds pending (after every shard did step 1).
    pub fn pending_batches(&self) -> Vec<u64> {
        self.lock().pending.keys().copied().collect()
    }

    /// Step 2 of a shard: how many parts of each of those batches it holds.
    pub fn publish_held(&self, shard: u16, held: impl IntoIterator<Item = (u64, u16)>) {
        let mut x = self.lock();
        for (b, n) in held {
            x.held.insert((b, shard), n);
        }
        x.answered += 1;
    }

    /// Shards that have done step 2.
    pub fn answered(&self) -> usize {
        self.lock().answered
    }

    /// Whether `batch`, a write of `part_count` parts, is committed: the shards hold all of them.
    pub fn committed(&self, batch: u64, part_count: u16) -> bool {
        let x = self.lock();
        let held: u32 = x
            .held
            .iter()
            .filter(|((b, _), _)| *b == batch)
            .map(|(_, n)| u32::from(*n))
            .sum();
        held == u32::from(part_count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_sees_exactly_the_batches_committed_before_it_started() {
        let t = CommitTable::default();
        let early = t.insert(1, 2);
        let q = t.begin_query();
        let late = t.insert(2, 2);
        assert!(early < late);
        assert!(t.visible(1, q.seq) && !t.visible(2, q.seq));
        assert!(t.movable(1), "every running query sees batch 1");
        assert!(!t.movable(2), "the running query must not see batch 2");
        assert!(!t.visible(3, q.seq), "a batch never committed");
        drop(q);
        assert!(t.movable(2), "no query left that predates it");
    }

    #[test]
    fn a_batch_leaves_the_table_when_every_owner_is_done() {
        let t = CommitTable::default();
        t.insert(7, 2);
        assert!(t.is_committed(7));
        t.done(7);
        assert!(t.is_committed(7));
        t.done(7);
        assert!(!t.is_committed(7));
        assert!(t.is_empty());
    }

    #[test]
    fn recovery_commits_only_batches_whose_every_part_is_held() {
        let x = RecoveryExchange::default();
        x.publish_pending([(1, 2), (2, 3)]);
        x.publish_pending([]);
        assert_eq!(x.published(), 2);
        let mut pending = x.pending_batches();
        pending.sort_unstable();
        assert_eq!(pending, [1, 2]);
        x.publish_held(0, [(1, 1), (2, 1)]);
        // Shard 1 committed batch 1 before the crash (held as committed), and holds only one
        // of the two parts of batch 2 its partitions wrote.
        x.publish_held(1, [(1, 1), (2, 1)]);
        assert!(x.committed(1, 2));
        assert!(!x.committed(2, 3));
        assert!(!x.committed(3, 2), "a batch nobody holds");
    }
}
