//! The series one shard owns, as a state machine on its log (`format-spec/ts.md`): the series
//! registry (ids by canonical key), the tag index, and per series its head, its late head and
//! the places of its chunks. Not yet wired to the API (issue 7): the write path, the commit
//! table for multi-part writes and the query executor build on it.
//!
//! Invariants:
//! * Series ids are 1, 2, 3, ... in the order the log defines them; a canonical key (namespace,
//!   measurement, tags sorted by key, field) has one id.
//! * A head is sorted by timestamp with no timestamp twice (a repeated one keeps the value
//!   written last). Every point in a series' head is after `sealed_until`, the last timestamp of
//!   its newest in-order chunk; points at or before it are in the late head.
//! * Points of a multi-part write stay out of the heads until the write is committed.

use std::collections::{BTreeMap, HashMap};

use super::entry::{Chunk, NewSeries, Points, CHUNK_IN_ORDER};
use crate::log::places::SegmentTable;
use crate::log::Position;

/// Points a head holds before it is cut into a chunk.
pub const HEAD_POINTS: usize = 1024;

/// A series' newest points, sorted by timestamp, one value per timestamp.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Head {
    points: Vec<(i64, f64)>,
}

impl Head {
    /// Adds a point; a timestamp already there takes the new value.
    pub fn insert(&mut self, ts: i64, v: f64) {
        match self.points.binary_search_by_key(&ts, |p| p.0) {
            Ok(i) => self.points[i].1 = v,
            Err(i) => self.points.insert(i, (ts, v)),
        }
    }

    pub fn points(&self) -> &[(i64, f64)] {
        &self.points
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// Where one of a series' chunks is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// Place of the `TS_CHUNK` entry (`places.rs`).
    pub loc: u64,
    pub lsn: u64,
    pub kind: u8,
    pub first_ts: i64,
    pub last_ts: i64,
    pub count: u16,
}

/// One series: measurement + tag set + field, in a namespace.
#[derive(Debug)]
pub struct Series {
    pub namespace: Box<str>,
    pub measurement: Box<str>,
    pub tags: Vec<(Box<str>, Box<str>)>,
    pub field: Box<str>,
    pub head: Head,
    pub late: Head,
    /// The last timestamp of the newest in-order chunk.
    pub sealed_until: Option<i64>,
    pub chunks: Vec<ChunkRef>,
}

/// A multi-part write's part, waiting for its commit.
#[derive(Debug)]
struct PendingPart {
    participants: Vec<u16>,
    points: Vec<(u32, i64, f64)>,
}

/// (namespace, measurement, tag key, tag value) of the tag index.
type TagKey = (Box<str>, Box<str>, Box<str>, Box<str>);

/// The canonical key of a series.
pub fn series_key(ns: &str, measurement: &str, tags: &[(&str, &str)], field: &str) -> String {
    debug_assert!(tags.windows(2).all(|w| w[0].0 < w[1].0), "tags sorted by key");
    let mut k = String::with_capacity(ns.len() + measurement.len() + field.len() + tags.len() * 16 + 3);
    for part in [ns, measurement] {
        k.push_str(part);
        k.push('\0');
    }
    for (tk, tv) in tags {
        k.push_str(tk);
        k.push('\u{1}');
        k.push_str(tv);
        k.push('\0');
    }
    k.push('\u{2}');
    k.push_str(field);
    k
}

/// Every series of a shard.
#[derive(Debug, Default)]
pub struct SeriesStore {
    series: Vec<Series>,
    by_key: HashMap<String, u32>,
    /// (namespace, measurement, tag key, tag value) → ids, ascending.
    tag_index: BTreeMap<TagKey, Vec<u32>>,
    /// (namespace, measurement) → ids, ascending.
    measurements: BTreeMap<(Box<str>, Box<str>), Vec<u32>>,
    pending: HashMap<u64, PendingPart>,
    pub segments: SegmentTable,
}

impl SeriesStore {
    /// The id the next new series gets.
    pub fn next_id(&self) -> u32 {
        self.series.len() as u32 + 1
    }

    pub fn lookup(&self, key: &str) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    pub fn get(&self, id: u32) -> Option<&Series> {
        self.series.get((id as usize).checked_sub(1)?)
    }

    fn get_mut(&mut self, id: u32) -> Option<&mut Series> {
        self.series.get_mut((id as usize).checked_sub(1)?)
    }

    /// Series of a measurement whose tags equal every (key, value) given, ascending.
    pub fn select(&self, ns: &str, measurement: &str, equal: &[(&str, &str)]) -> Vec<u32> {
        let key = (Box::from(ns), Box::from(measurement));
        let mut out: Vec<u32> = self.measurements.get(&key).cloned().unwrap_or_default();
        for (k, v) in equal {
            let t = (Box::from(ns), Box::from(measurement), Box::from(*k), Box::from(*v));
            let ids = self.tag_index.get(&t).map(Vec::as_slice).unwrap_or(&[]);
            out.retain(|id| ids.binary_search(id).is_ok());
        }
        out
    }

    /// Defines a series the log introduces (its id must be the next one, its key new).
    pub fn define(&mut self, ns: &str, s: &NewSeries<'_>) -> Result<(), String> {
        if s.id != self.next_id() {
            return Err(format!("series {} defined where {} was next", s.id, self.next_id()));
        }
        let key = series_key(ns, s.measurement, &s.tags, s.field);
        if self.by_key.contains_key(&key) {
            return Err(format!("series {} defined twice", s.id));
        }
        self.by_key.insert(key, s.id);
        for (k, v) in &s.tags {
            self.tag_index
                .entry((ns.into(), s.measurement.into(), (*k).into(), (*v).into()))
                .or_default()
                .push(s.id);
        }
        self.measurements
            .entry((ns.into(), s.measurement.into()))
            .or_default()
            .push(s.id);
        self.series.push(Series {
            namespace: ns.into(),
            measurement: s.measurement.into(),
            tags: s.tags.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
            field: s.field.into(),
            head: Head::default(),
            late: Head::default(),
            sealed_until: None,
            chunks: Vec::new(),
        });
        Ok(())
    }

    /// Puts committed points into the heads; returns the series whose head is now full.
    fn add(&mut self, ns: &str, points: impl Iterator<Item = (u32, i64, f64)>) -> Result<Vec<u32>, String> {
        let mut full = Vec::new();
        for (id, ts, v) in points {
            let s = self
                .get_mut(id)
                .ok_or_else(|| format!("a point of series {id}, never defined"))?;
            if &*s.namespace != ns {
                return Err(format!("series {id} is not of namespace {ns:?}"));
            }
            if s.sealed_until.is_some_and(|t| ts <= t) {
                s.late.insert(ts, v);
            } else {
                s.head.insert(ts, v);
                if s.head.len() == HEAD_POINTS {
                    full.push(id);
                }
            }
        }
        Ok(full)
    }

    /// Applies a `TS_POINTS` entry: defines its series, and puts its points into the heads (one
    /// part) or aside until their write commits (several parts). Returns the full heads.
    pub fn apply_points(&mut self, p: &Points<'_>) -> Result<Vec<u32>, String> {
        for s in &p.new_series {
            self.define(p.namespace, s)?;
        }
        if p.batch_id == 0 {
            return self.add(p.namespace, p.iter());
        }
        if self.pending.contains_key(&p.batch_id) {
            return Err(format!("two parts of batch {} in one shard", p.batch_id));
        }
        for (id, _, _) in p.iter() {
            if self.get(id).is_none_or(|s| &*s.namespace != p.namespace) {
                return Err(format!("a point of series {id}, never defined in {:?}", p.namespace));
            }
        }
        self.pending.insert(
            p.batch_id,
            PendingPart {
                participants: p.participants.clone(),
                points: p.iter().collect(),
            },
        );
        Ok(Vec::new())
    }

    /// Batches with a part here that wait for their commit, with their participants.
    pub fn pending(&self) -> impl Iterator<Item = (u64, &[u16])> {
        self.pending.iter().map(|(b, p)| (*b, p.participants.as_slice()))
    }

    /// A multi-part write committed: its part here goes into the heads.
    pub fn commit(&mut self, ns: &str, batch_id: u64) -> Result<Vec<u32>, String> {
        let part = self
            .pending
            .remove(&batch_id)
            .ok_or_else(|| format!("commit of batch {batch_id}, which has no part here"))?;
        self.add(ns, part.points.into_iter())
    }

    /// `TS_ABORT`: the part of `batch_id` is dropped (nothing if it is not here: an abort may
    /// be written for a part that never became durable).
    pub fn abort(&mut self, batch_id: u64) {
        self.pending.remove(&batch_id);
    }

    /// Encodes the chunk of a series' head (`kind` 0) or late head (1), if it has points.
    pub fn cut(&self, id: u32, kind: u8) -> Option<Vec<u8>> {
        let s = self.get(id)?;
        let head = if kind == CHUNK_IN_ORDER { &s.head } else { &s.late };
        if head.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        super::chunk::encode(head.points(), &mut out);
        Some(out)
    }

    /// Applies a `TS_CHUNK` entry at `pos`: the head it was cut from must hold exactly its points'
    /// span and count; the head empties and the chunk's place is kept.
    pub fn apply_chunk(&mut self, c: &Chunk<'_>, pos: &Position) -> Result<(), String> {
        let loc = self.segments.loc(pos);
        let s = self
            .get_mut(c.series)
            .ok_or_else(|| format!("a chunk of series {}, never defined", c.series))?;
        if &*s.namespace != c.namespace {
            return Err(format!("series {} is not of namespace {:?}", c.series, c.namespace));
        }
        let h = c.header;
        let head = if c.kind == CHUNK_IN_ORDER {
            &mut s.head
        } else {
            &mut s.late
        };
        let span = (head.points.first().map(|p| p.0), head.points.last().map(|p| p.0));
        if head.len() != usize::from(h.count) || span != (Some(h.first_ts), Some(h.last_ts)) {
            return Err(format!(
                "chunk of series {} holds {} points {}..={}, its head {} points {span:?}",
                c.series,
                h.count,
                h.first_ts,
                h.last_ts,
                head.len()
            ));
        }
        head.points.clear();
        if c.kind == CHUNK_IN_ORDER {
            s.sealed_until = Some(h.last_ts);
        }
        s.chunks.push(ChunkRef {
            loc,
            lsn: pos.lsn,
            kind: c.kind,
            first_ts: h.first_ts,
            last_ts: h.last_ts,
            count: h.count,
        });
        Ok(())
    }

    /// Series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::entry::*;
    use super::*;

    fn pos(lsn: u64) -> Position {
        Position {
            lsn,
            segment: 1,
            offset: 64 * lsn,
        }
    }

    fn new_series(id: u32, host: &'static str, field: &'static str) -> NewSeries<'static> {
        NewSeries {
            id,
            measurement: "cpu",
            tags: vec![("host", host), ("region", "eu")],
            field,
        }
    }

    #[test]
    fn series_are_defined_once_indexed_and_selected() {
        let mut st = SeriesStore::default();
        let body = encode_points(
            "app",
            0,
            &[],
            &[
                new_series(1, "a", "usage"),
                new_series(2, "b", "usage"),
                new_series(3, "a", "idle"),
            ],
            &[(1, 10, 1.0), (2, 10, 2.0), (3, 10, 3.0)],
        );
        st.apply_points(&decode_points(&body).unwrap()).unwrap();
        assert_eq!((st.len(), st.next_id()), (3, 4));
        assert_eq!(st.select("app", "cpu", &[]), [1, 2, 3]);
        assert_eq!(st.select("app", "cpu", &[("host", "a")]), [1, 3]);
        assert_eq!(st.select("app", "cpu", &[("host", "a"), ("region", "eu")]), [1, 3]);
        assert!(st.select("app", "cpu", &[("host", "c")]).is_empty());
        assert!(st.select("other", "cpu", &[]).is_empty());
        let key = series_key("app", "cpu", &[("host", "b"), ("region", "eu")], "usage");
        assert_eq!(st.lookup(&key), Some(2));
        assert!(
            st.define("app", &new_series(4, "a", "usage")).is_err(),
            "same key twice"
        );
        assert!(
            st.define("app", &new_series(9, "z", "usage")).is_err(),
            "an id out of order"
        );
        let stray = encode_points("app", 0, &[], &[], &[(7, 1, 1.0)]);
        assert!(
            st.apply_points(&decode_points(&stray).unwrap()).is_err(),
            "an undefined series"
        );
        let other_ns = encode_points("zzz", 0, &[], &[], &[(1, 1, 1.0)]);
        assert!(
            st.apply_points(&decode_points(&other_ns).unwrap()).is_err(),
            "another namespace"
        );
    }

    #[test]
    fn heads_sort_keep_the_last_value_and_fill_into_chunks() {
        let mut st = SeriesStore::default();
        st.define("app", &new_series(1, "a", "usage")).unwrap();
        let add = |st: &mut SeriesStore, pts: &[(u32, i64, f64)]| {
            st.apply_points(&decode_points(&encode_points("app", 0, &[], &[], pts)).unwrap())
                .unwrap()
        };
        assert!(add(&mut st, &[(1, 30, 3.0), (1, 10, 1.0), (1, 20, 2.0), (1, 10, 1.5)]).is_empty());
        assert_eq!(st.get(1).unwrap().head.points(), [(10, 1.5), (20, 2.0), (30, 3.0)]);
        let rest: Vec<(u32, i64, f64)> = (0..HEAD_POINTS as i64 - 3).map(|i| (1, 100 + i, i as f64)).collect();
        assert_eq!(add(&mut st, &rest), [1], "the head is full");
        let chunk = st.cut(1, CHUNK_IN_ORDER).unwrap();
        let body = encode_chunk("app", 1, CHUNK_IN_ORDER, &chunk);
        st.apply_chunk(&decode_chunk(&body).unwrap(), &pos(9)).unwrap();
        let s = st.get(1).unwrap();
        assert!(s.head.is_empty());
        assert_eq!(s.sealed_until, Some(100 + HEAD_POINTS as i64 - 4));
        assert_eq!(
            (s.chunks.len(), s.chunks[0].count as usize, s.chunks[0].lsn),
            (1, HEAD_POINTS, 9)
        );
        // A point at or before the sealed end is late: kept apart, never dropped.
        add(&mut st, &[(1, 15, 9.0), (1, 5_000, 1.0)]);
        let s = st.get(1).unwrap();
        assert_eq!(
            (s.late.points(), s.head.points()),
            (&[(15, 9.0)][..], &[(5_000, 1.0)][..])
        );
        // Replaying a chunk that does not match its head is corruption.
        assert!(st.apply_chunk(&decode_chunk(&body).unwrap(), &pos(10)).is_err());
        let late = encode_chunk("app", 1, CHUNK_LATE, &st.cut(1, CHUNK_LATE).unwrap());
        st.apply_chunk(&decode_chunk(&late).unwrap(), &pos(11)).unwrap();
        let s = st.get(1).unwrap();
        assert!(s.late.is_empty());
        assert_eq!(
            s.sealed_until,
            Some(100 + HEAD_POINTS as i64 - 4),
            "late chunks do not move it"
        );
        assert_eq!(s.chunks[1].kind, CHUNK_LATE);
    }

    #[test]
    fn multi_part_points_wait_for_their_commit() {
        let mut st = SeriesStore::default();
        let part = encode_points("app", 77, &[0, 1], &[new_series(1, "a", "usage")], &[(1, 10, 1.0)]);
        st.apply_points(&decode_points(&part).unwrap()).unwrap();
        assert!(st.get(1).unwrap().head.is_empty(), "invisible until committed");
        assert_eq!(st.pending().collect::<Vec<_>>(), [(77, &[0u16, 1][..])]);
        let again = encode_points("app", 77, &[0, 1], &[], &[(1, 11, 1.0)]);
        assert!(
            st.apply_points(&decode_points(&again).unwrap()).is_err(),
            "a second part of 77 here"
        );
        st.commit("app", 77).unwrap();
        assert_eq!(st.get(1).unwrap().head.points(), [(10, 1.0)]);
        assert!(st.commit("app", 77).is_err());
        let other = encode_points("app", 78, &[0, 1], &[], &[(1, 20, 2.0)]);
        st.apply_points(&decode_points(&other).unwrap()).unwrap();
        st.abort(78);
        assert_eq!(st.pending().count(), 0);
        assert_eq!(st.get(1).unwrap().head.len(), 1, "an aborted part leaves no point");
    }
}
