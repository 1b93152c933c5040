//! The bodies of time-series log entries (`format-spec/ts.md`): encoders and decoders side by
//! side. Decoding never trusts the input: lengths, counts, the canonical order of tags, the
//! batch fields and the chunk header are all checked.
//!
//! Every entry starts with its namespace and, since partitions hold state of their own, the
//! partition it belongs to (form 1). Entries of form 0, written before, carry no partition: their
//! series ids are their shard's; they are decoded (their places are still read, and a data
//! directory stopped cleanly holds no other) but no longer written.

use crate::log::body::{put_name, Reader};

pub const ENTRY_TS_POINTS: u16 = 400;
pub const ENTRY_TS_ABORT: u16 = 401;
pub const ENTRY_TS_CHUNK: u16 = 402;
pub const ENTRY_TS_RETENTION: u16 = 403;
pub const ENTRY_TS_DROP: u16 = 404;
pub const ENTRY_TS_COMMIT: u16 = 405;

/// Chunk kinds of `TS_CHUNK`.
pub const CHUNK_IN_ORDER: u8 = 0;
pub const CHUNK_LATE: u8 = 1;

/// The head's form: entries before per-partition state (no partition), and since.
const FORM_SHARD: u16 = 0;
const FORM_PARTITION: u16 = 1;

/// The head every time-series entry starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsHead<'a> {
    pub namespace: &'a str,
    /// The partition the entry belongs to; `None` for an entry of form 0 (its series ids are
    /// its shard's).
    pub partition: Option<u32>,
}

/// A series defined by the entry that first uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSeries<'a> {
    pub id: u32,
    pub measurement: &'a str,
    /// Sorted by key, keys distinct.
    pub tags: Vec<(&'a str, &'a str)>,
    pub field: &'a str,
}

/// A decoded `TS_POINTS` body; the points are read with [`Points::get`] / [`Points::iter`]
/// straight from the (mapped) body.
#[derive(Clone, Debug, PartialEq)]
pub struct Points<'a> {
    pub namespace: &'a str,
    pub partition: Option<u32>,
    /// 0 for a write with one part.
    pub batch_id: u64,
    /// The parts the write has (1 for a write of one part).
    pub part_count: u16,
    /// Form 0 only: the shards holding a part of the write (empty for one part).
    pub participants: Vec<u16>,
    /// When the write arrived (Unix ms; 0 in form 0, which does not say).
    pub at_ms: u64,
    pub new_series: Vec<NewSeries<'a>>,
    count: usize,
    ids: &'a [u8],
    times: &'a [u8],
    values: &'a [u8],
}

impl<'a> Points<'a> {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Point `i`: (series id, timestamp ms, value).
    pub fn get(&self, i: usize) -> (u32, i64, f64) {
        let at4 = i * 4;
        let at8 = i * 8;
        let id = u32::from_le_bytes(self.ids[at4..at4 + 4].try_into().expect("4 bytes"));
        let ts = i64::from_le_bytes(self.times[at8..at8 + 8].try_into().expect("8 bytes"));
        let v = f64::from_bits(u64::from_le_bytes(
            self.values[at8..at8 + 8].try_into().expect("8 bytes"),
        ));
        (id, ts, v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, i64, f64)> + '_ {
        (0..self.count).map(|i| self.get(i))
    }
}

fn put_head(b: &mut Vec<u8>, ns: &str, partition: u32) {
    b.extend_from_slice(&(ns.len() as u16).to_le_bytes());
    b.extend_from_slice(&FORM_PARTITION.to_le_bytes());
    b.extend_from_slice(&partition.to_le_bytes());
    b.extend_from_slice(ns.as_bytes());
}

fn read_head<'a>(r: &mut Reader<'a>) -> Result<TsHead<'a>, String> {
    let n = r.u16()?;
    let partition = match r.u16()? as u16 {
        FORM_SHARD => None,
        FORM_PARTITION => Some(r.u32()?),
        f => return Err(format!("unknown head form {f}")),
    };
    if !(1..=crate::names::NAME_MAX_BYTES).contains(&n) {
        return Err("namespace length out of range".into());
    }
    Ok(TsHead {
        namespace: r.text(n, "namespace")?,
        partition,
    })
}

/// The head of any time-series entry.
pub fn decode_head(b: &[u8]) -> Result<TsHead<'_>, String> {
    read_head(&mut Reader::new(b))
}

/// A u16-prefixed name of 1..=65535 bytes (line-protocol names are not limited to 128).
fn read_name<'a>(r: &mut Reader<'a>, what: &str) -> Result<&'a str, String> {
    let n = r.u16()?;
    if n == 0 {
        return Err(format!("empty {what}"));
    }
    r.text(n, what)
}

/// Encodes a `TS_POINTS` body: partition `partition`'s part of a write of `part_count` parts
/// (batch id 0 for a write of one part), arrived at `at_ms`.
pub fn encode_points(
    ns: &str,
    partition: u32,
    batch_id: u64,
    part_count: u16,
    at_ms: u64,
    new_series: &[NewSeries<'_>],
    points: &[(u32, i64, f64)],
) -> Vec<u8> {
    assert!(!points.is_empty(), "a TS_POINTS entry holds points");
    assert_eq!(batch_id == 0, part_count == 1, "batch id 0 means one part");
    assert!(part_count >= 1);
    let mut b = Vec::with_capacity(48 + ns.len() + points.len() * 20);
    put_head(&mut b, ns, partition);
    b.extend_from_slice(&batch_id.to_le_bytes());
    b.extend_from_slice(&part_count.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&at_ms.to_le_bytes());
    put_series_and_points(&mut b, new_series, points);
    b
}

/// A `TS_POINTS` body of form 0 (before per-partition state): never written by the server; for
/// tests of old data and the fuzz checks.
pub fn encode_points_form0(
    ns: &str,
    batch_id: u64,
    participants: &[u16],
    new_series: &[NewSeries<'_>],
    points: &[(u32, i64, f64)],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(ns.len() as u16).to_le_bytes());
    b.extend_from_slice(&FORM_SHARD.to_le_bytes());
    b.extend_from_slice(ns.as_bytes());
    b.extend_from_slice(&batch_id.to_le_bytes());
    b.extend_from_slice(&(participants.len().max(1) as u16).to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    for p in participants {
        b.extend_from_slice(&p.to_le_bytes());
    }
    put_series_and_points(&mut b, new_series, points);
    b
}

fn put_series_and_points(b: &mut Vec<u8>, new_series: &[NewSeries<'_>], points: &[(u32, i64, f64)]) {
    b.extend_from_slice(&(new_series.len() as u32).to_le_bytes());
    for s in new_series {
        b.extend_from_slice(&s.id.to_le_bytes());
        put_name(b, s.measurement);
        b.extend_from_slice(&(s.tags.len() as u16).to_le_bytes());
        for (k, v) in &s.tags {
            put_name(b, k);
            put_name(b, v);
        }
        put_name(b, s.field);
    }
    b.extend_from_slice(&(points.len() as u32).to_le_bytes());
    for (id, _, _) in points {
        b.extend_from_slice(&id.to_le_bytes());
    }
    for (_, ts, _) in points {
        b.extend_from_slice(&ts.to_le_bytes());
    }
    for (_, _, v) in points {
        b.extend_from_slice(&v.to_bits().to_le_bytes());
    }
}

pub fn decode_points(b: &[u8]) -> Result<Points<'_>, String> {
    let mut r = Reader::new(b);
    let head = read_head(&mut r)?;
    let batch_id = r.u64()?;
    let part_count = r.u16()? as u16;
    if r.u16()? != 0 {
        return Err("reserved bytes are not 0".into());
    }
    match (batch_id, part_count) {
        (0, 1) => {}
        (0, _) | (_, 0 | 1) => return Err("batch id and part count disagree".into()),
        _ => {}
    }
    let (participants, at_ms) = match head.partition {
        Some(_) => (Vec::new(), r.u64()?),
        None if batch_id == 0 => (Vec::new(), 0),
        None => (
            (0..part_count)
                .map(|_| r.u16().map(|v| v as u16))
                .collect::<Result<_, _>>()?,
            0,
        ),
    };
    let new_count = r.u32()? as usize;
    let mut new_series = Vec::with_capacity(new_count.min(b.len() / 12));
    for _ in 0..new_count {
        let id = r.u32()?;
        if id == 0
            || new_series
                .last()
                .is_some_and(|s: &NewSeries<'_>| s.id.checked_add(1) != Some(id))
        {
            return Err("new series ids must be consecutive from 1 up".into());
        }
        let measurement = read_name(&mut r, "measurement")?;
        let tag_count = r.u16()?;
        let mut tags: Vec<(&str, &str)> = Vec::with_capacity(tag_count.min(b.len() / 6));
        for _ in 0..tag_count {
            let k = read_name(&mut r, "tag key")?;
            let v = read_name(&mut r, "tag value")?;
            if tags.last().is_some_and(|(last, _)| *last >= k) {
                return Err("tags not sorted by key, or a key repeats".into());
            }
            tags.push((k, v));
        }
        let field = read_name(&mut r, "field")?;
        new_series.push(NewSeries {
            id,
            measurement,
            tags,
            field,
        });
    }
    let count = r.u32()? as usize;
    if count == 0 {
        return Err("a TS_POINTS entry without points".into());
    }
    let ids = r.take(count.checked_mul(4).ok_or("point count overflows")?)?;
    let times = r.take(count * 8)?;
    let values = r.take(count * 8)?;
    r.done()?;
    Ok(Points {
        namespace: head.namespace,
        partition: head.partition,
        batch_id,
        part_count,
        participants,
        at_ms,
        new_series,
        count,
        ids,
        times,
        values,
    })
}

/// `TS_ABORT` and `TS_COMMIT` have the same body: the head and the batch id.
pub fn encode_abort(ns: &str, partition: u32, batch_id: u64) -> Vec<u8> {
    assert!(batch_id != 0, "only a multi-part write is aborted or committed");
    let mut b = Vec::with_capacity(16 + ns.len());
    put_head(&mut b, ns, partition);
    b.extend_from_slice(&batch_id.to_le_bytes());
    b
}

pub fn decode_abort(b: &[u8]) -> Result<(TsHead<'_>, u64), String> {
    let mut r = Reader::new(b);
    let head = read_head(&mut r)?;
    let id = r.u64()?;
    r.done()?;
    if id == 0 {
        return Err("abort or commit of batch 0".into());
    }
    Ok((head, id))
}

/// A decoded `TS_CHUNK` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk<'a> {
    pub namespace: &'a str,
    pub partition: Option<u32>,
    pub series: u32,
    pub kind: u8,
    /// The chunk (`ts-chunk.md`); its header has been checked.
    pub bytes: &'a [u8],
    pub header: super::chunk::ChunkHeader,
}

pub fn encode_chunk(ns: &str, partition: u32, series: u32, kind: u8, chunk: &[u8]) -> Vec<u8> {
    assert!(kind <= CHUNK_LATE);
    let mut b = Vec::with_capacity(16 + ns.len() + chunk.len());
    put_head(&mut b, ns, partition);
    b.extend_from_slice(&series.to_le_bytes());
    b.extend_from_slice(&[kind, 0, 0, 0]);
    b.extend_from_slice(chunk);
    b
}

pub fn decode_chunk(b: &[u8]) -> Result<Chunk<'_>, String> {
    let mut r = Reader::new(b);
    let head = read_head(&mut r)?;
    let series = r.u32()?;
    let kind = r.u8()?;
    if series == 0 || kind > CHUNK_LATE || r.take(3)? != [0, 0, 0] {
        return Err("bad series id, chunk kind or reserved bytes".into());
    }
    let bytes = &b[r.at()..];
    let header = super::chunk::header(bytes).map_err(|e| e.to_string())?;
    Ok(Chunk {
        namespace: head.namespace,
        partition: head.partition,
        series,
        kind,
        bytes,
        header,
    })
}

pub fn encode_retention(ns: &str, partition: u32, measurement: &str, max_age_ms: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + ns.len() + measurement.len());
    put_head(&mut b, ns, partition);
    put_name(&mut b, measurement);
    b.extend_from_slice(&max_age_ms.to_le_bytes());
    b
}

pub fn decode_retention(b: &[u8]) -> Result<(TsHead<'_>, &str, u64), String> {
    let mut r = Reader::new(b);
    let head = read_head(&mut r)?;
    let m = read_name(&mut r, "measurement")?;
    let age = r.u64()?;
    r.done()?;
    // Ages are compared with i64 timestamps.
    if age > i64::MAX as u64 {
        return Err(format!("retention max age {age} ms is out of range"));
    }
    Ok((head, m, age))
}

/// What a `TS_DROP` drops of a series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Form 1: every chunk whose last point is before this timestamp (ms).
    Before(i64),
    /// Form 0: the chunks of these `TS_CHUNK` LSNs.
    Lsns(Vec<u64>),
}

/// `TS_DROP`: the chunks of a series wholly before `before_ts`, which retention drops.
pub fn encode_drop(ns: &str, partition: u32, series: u32, before_ts: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(20 + ns.len());
    put_head(&mut b, ns, partition);
    b.extend_from_slice(&series.to_le_bytes());
    b.extend_from_slice(&before_ts.to_le_bytes());
    b
}

pub fn decode_drop(b: &[u8]) -> Result<(TsHead<'_>, u32, Dropped), String> {
    let mut r = Reader::new(b);
    let head = read_head(&mut r)?;
    let series = r.u32()?;
    if series == 0 {
        return Err("bad series id".into());
    }
    let what = match head.partition {
        Some(_) => Dropped::Before(r.u64()? as i64),
        None => {
            let n = r.u32()? as usize;
            if n == 0 || n > b.len() / 8 {
                return Err("bad chunk count".into());
            }
            Dropped::Lsns((0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?)
        }
    };
    r.done()?;
    Ok((head, series, what))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> Vec<NewSeries<'static>> {
        vec![
            NewSeries {
                id: 7,
                measurement: "cpu",
                tags: vec![("host", "web-01"), ("region", "eu")],
                field: "usage",
            },
            NewSeries {
                id: 8,
                measurement: "cpu",
                tags: vec![],
                field: "idle",
            },
        ]
    }

    fn head(partition: u32) -> TsHead<'static> {
        TsHead {
            namespace: "a",
            partition: Some(partition),
        }
    }

    #[test]
    fn points_round_trip_and_every_prefix_is_refused() {
        let pts = [(7, 1_700_000_000_000, 82.5), (8, -5, f64::NAN), (1, i64::MAX, -0.0)];
        for (batch, parts) in [(0u64, 1u16), (99, 3)] {
            let b = encode_points("app", 17, batch, parts, 1_234, &series(), &pts);
            let p = decode_points(&b).unwrap();
            assert_eq!(
                (p.namespace, p.partition, p.batch_id, p.part_count, p.at_ms),
                ("app", Some(17), batch, parts, 1_234)
            );
            assert!(p.participants.is_empty());
            assert_eq!(p.new_series, series());
            assert_eq!(p.len(), 3);
            for (i, (id, ts, v)) in p.iter().enumerate() {
                assert_eq!((id, ts, v.to_bits()), (pts[i].0, pts[i].1, pts[i].2.to_bits()));
            }
            for n in 0..b.len() {
                assert!(decode_points(&b[..n]).is_err(), "prefix {n}");
            }
            let mut long = b.clone();
            long.push(0);
            assert!(decode_points(&long).is_err());
        }
    }

    #[test]
    fn form_zero_points_still_decode() {
        let pts = [(1, 5, 1.5)];
        let b = encode_points_form0("a", 5, &[1, 1], &[], &pts);
        let p = decode_points(&b).unwrap();
        assert_eq!((p.partition, p.batch_id, p.part_count, p.at_ms), (None, 5, 2, 0));
        assert_eq!(p.participants, [1, 1], "a shard may hold several parts of a write");
        let one = encode_points_form0("a", 0, &[], &[], &pts);
        let one = decode_points(&one).unwrap();
        assert_eq!((one.part_count, one.partition), (1, None));
        let mut one_part = b.clone();
        // u16 length, u16 form, "a", u64 batch id: the part count is at 13.
        one_part[13..15].copy_from_slice(&1u16.to_le_bytes());
        assert!(decode_points(&one_part).is_err(), "a batch id with one part");
    }

    #[test]
    fn points_refuse_what_is_not_canonical() {
        let pts = [(1, 0, 1.0)];
        let mut unsorted = series();
        unsorted[0].tags.reverse();
        assert!(decode_points(&encode_points("a", 0, 0, 1, 0, &unsorted, &pts)).is_err());
        let mut gap = series();
        gap[1].id = 9;
        assert!(decode_points(&encode_points("a", 0, 0, 1, 0, &gap, &pts)).is_err());
        let mut one_part = encode_points("a", 0, 5, 2, 0, &[], &pts);
        // u16 length, u16 form, u32 partition, "a", u64 batch id: the part count is at 17.
        one_part[17..19].copy_from_slice(&1u16.to_le_bytes());
        assert!(decode_points(&one_part).is_err(), "a batch id with one part");
        let mut no_batch = encode_points("a", 0, 0, 1, 0, &[], &pts);
        no_batch[17..19].copy_from_slice(&2u16.to_le_bytes());
        assert!(decode_points(&no_batch).is_err(), "batch id 0 with two parts");
        let mut form = encode_points("a", 0, 0, 1, 0, &[], &pts);
        form[2] = 2;
        assert!(decode_points(&form).is_err(), "an unknown head form");
        let mut last_id = series();
        last_id[0].id = u32::MAX;
        assert!(
            decode_points(&encode_points("a", 0, 0, 1, 0, &last_id, &pts)).is_err(),
            "no id after u32::MAX"
        );
        let mut empty_tag = series();
        empty_tag[0].tags[0].1 = "";
        assert!(decode_points(&encode_points("a", 0, 0, 1, 0, &empty_tag, &pts)).is_err());
    }

    #[test]
    fn other_entries_round_trip() {
        assert_eq!(decode_abort(&encode_abort("a", 4, 42)).unwrap(), (head(4), 42));
        let mut chunk = Vec::new();
        super::super::chunk::encode(&[(1, 2.0), (2, 3.0)], &mut chunk);
        let b = encode_chunk("a", 6, 3, CHUNK_LATE, &chunk);
        let c = decode_chunk(&b).unwrap();
        assert_eq!(
            (c.namespace, c.partition, c.series, c.kind, c.bytes),
            ("a", Some(6), 3, CHUNK_LATE, &chunk[..])
        );
        assert_eq!((c.header.count, c.header.first_ts, c.header.last_ts), (2, 1, 2));
        assert!(
            decode_chunk(&b[..b.len() - chunk.len() + 5]).is_err(),
            "a cut chunk header"
        );
        assert_eq!(
            decode_retention(&encode_retention("a", 63, "cpu", 9)).unwrap(),
            (head(63), "cpu", 9)
        );
        assert!(
            decode_retention(&encode_retention("a", 0, "cpu", i64::MAX as u64 + 1)).is_err(),
            "an age no timestamp arithmetic holds"
        );
        assert_eq!(
            decode_drop(&encode_drop("a", 1, 2, -7)).unwrap(),
            (head(1), 2, Dropped::Before(-7))
        );
        let (abort, retention, drop) = (
            encode_abort("a", 0, 1),
            encode_retention("a", 0, "m", 1),
            encode_drop("a", 0, 1, 1),
        );
        for n in 0..abort.len() {
            assert!(decode_abort(&abort[..n]).is_err(), "abort prefix {n}");
        }
        for n in 0..retention.len() {
            assert!(decode_retention(&retention[..n]).is_err(), "retention prefix {n}");
        }
        for n in 0..drop.len() {
            assert!(decode_drop(&drop[..n]).is_err(), "drop prefix {n}");
        }
        assert!(
            decode_abort(&[abort.clone(), vec![0]].concat()).is_err(),
            "trailing byte"
        );
    }
}
