use std::collections::{BTreeMap, BTreeSet};

use super::super::snapshot::tests::{
    build, dead_rows, dump, encode, restore_all, run, runtime, Shard, MEM_A, NOW_FAR, T0,
};
use super::super::{EntryAt, HEAD_POINTS};
use super::*;
use crate::log::format::SEGMENT_HEADER_BYTES;
use crate::snapshot::codec::fill_place;
use crate::ts::entry::*;

/// The log's entry type of a compaction copy.
pub(crate) const ENTRY_RELOCATED: u16 = crate::log::relocated::ENTRY_RELOCATED;

/// The body of a `RELOCATED` copy of the entry at `from`: u64 from segment, u64 from offset,
/// u16 original type, 6 zero bytes, the original body.
pub(crate) fn relocated_body(from: (u64, u64), entry_type: u16, body: &[u8]) -> Vec<u8> {
    crate::log::relocated::encode(from.0, from.1, entry_type, body)
}

/// What a `RELOCATED` copy holds: the original's place, type and body.
pub(crate) type Original<'a> = ((u64, u64), u16, &'a [u8]);

/// The original's place, type and body in a `RELOCATED` copy's body (what the log's readers
/// see at a copy's place).
pub(crate) fn unwrap_relocated(b: &[u8]) -> Result<Original<'_>, String> {
    let r = crate::log::relocated::decode(b)?;
    Ok(((r.from_segment, r.from_offset), r.entry_type, r.body))
}

/// One entry of a segment: offset, LSN, type and body (a copy's are its original's).
type SegEntry = (u64, u64, u16, Vec<u8>);

fn entries_of(sh: &Shard, segment: u64) -> Vec<SegEntry> {
    let es = sh.log.segment_entries(segment).unwrap();
    let mut out = Vec::new();
    let mut off = SEGMENT_HEADER_BYTES as u64;
    while let Ok((e, next)) = es.entry(off) {
        let (t, body) = if e.entry_type == ENTRY_RELOCATED {
            let (_, t, b) = unwrap_relocated(e.body).unwrap();
            (t, b.to_vec())
        } else {
            (e.entry_type, e.body.to_vec())
        };
        out.push((off, e.lsn, t, body));
        off = next;
    }
    out
}

/// The places chunks read from (a chunk durable but not settled at its ticket's): place →
/// (series, chunk LSN).
fn read_places(st: &SeriesStore) -> BTreeMap<(u64, u64), (u32, u64)> {
    let mut out = BTreeMap::new();
    for (i, s) in st.series.iter().enumerate() {
        for c in &s.chunks {
            let place = match &c.stored {
                Stored::Placed { loc, .. } => st.segments.place(*loc),
                Stored::Cut(_) => continue,
            };
            assert!(
                out.insert(place, (i as u32 + 1, c.lsn)).is_none(),
                "two chunks at {place:?}"
            );
        }
    }
    out
}

/// A copy compaction appended: the original's place, the copy's LSN, the original's type and
/// body.
struct Copy {
    from: (u64, u64),
    to_lsn: u64,
    entry_type: u16,
    body: Vec<u8>,
}

/// Walks `victims` as the compactor does, asking `needs` of every entry (its answer must be
/// whether a chunk reads from there), and appends a `RELOCATED` copy of each needed one.
async fn copy_needed(sh: &mut Shard, victims: &[u64]) -> Vec<Copy> {
    let reads = read_places(&sh.st);
    let mut needed = Vec::new();
    for &segment in victims {
        for (off, lsn, t, body) in entries_of(sh, segment) {
            let yes = sh.st.needs((segment, off), t, &body);
            assert_eq!(
                yes,
                reads.contains_key(&(segment, off)),
                "entry {lsn} (type {t}) at {segment}/{off}"
            );
            assert!(t == ENTRY_TS_CHUNK || !yes, "only chunks are needed");
            if yes {
                needed.push(((segment, off), t, body));
            }
        }
    }
    let mut copies = Vec::new();
    for (from, entry_type, body) in needed {
        let to_lsn = sh
            .append(ENTRY_RELOCATED, &relocated_body(from, entry_type, &body))
            .await
            .lsn;
        copies.push(Copy {
            from,
            to_lsn,
            entry_type,
            body,
        });
    }
    copies
}

/// Once the copies are durable, tells the store where they are, as the compactor does.
async fn relocate_all(sh: &mut Shard, copies: &[Copy]) -> Vec<bool> {
    sh.durable().await;
    let mut out = Vec::new();
    for c in copies {
        let to = sh.pos(c.to_lsn);
        out.push(sh.st.relocate(c.from, &to, c.entry_type, &c.body).unwrap());
    }
    out
}

/// Every series' points over several ranges, read through the log as the shard reads them (a
/// copy read as its original, which the log does for its readers), never from a segment of
/// `avoid`; the listings, measurement stats but their bytes.
fn reads(sh: &Shard, st: &SeriesStore, avoid: &[u64]) -> Vec<String> {
    let mut load = |loc: u64, lsn: u64| {
        let (segment, offset) = st.segments.place(loc);
        if avoid.contains(&segment) {
            return Err(format!("chunk read from segment {segment}"));
        }
        let e = sh
            .log
            .read_at(&Position { lsn, segment, offset })
            .map_err(|e| e.to_string())?;
        let (t, body) = if e.entry_type == ENTRY_RELOCATED {
            let (_, t, b) = unwrap_relocated(e.body())?;
            (t, b)
        } else {
            (e.entry_type, e.body())
        };
        if t != ENTRY_TS_CHUNK {
            return Err(format!("entry {lsn} is of type {t}"));
        }
        let c = decode_chunk(body)?;
        crate::ts::chunk::decode(c.bytes).map_err(|e| e.to_string())
    };
    let mut out = Vec::new();
    let mut pts = Vec::new();
    for id in 1..=st.len() as u32 {
        for (from, to) in [(i64::MIN, i64::MAX), (T0, T0 + 700), (T0 + 700, i64::MAX)] {
            st.read(id, from, to, u64::MAX, &mut load, &[], &mut pts).unwrap();
            let bits: Vec<(i64, u64)> = pts.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            out.push(format!("series {id} {from}..={to}: {bits:?}"));
        }
    }
    for ns in ["app", "ops"] {
        for (m, mut stats) in st.measurement_stats(ns) {
            stats.bytes = 0;
            out.push(format!("{ns} {m} {stats:?} {:?}", st.select(ns, &m, &[])));
        }
    }
    out.push(format!("{:?} samples {}", st.measurement_names(), st.samples()));
    out
}

/// Bytes of every measurement's series (chunks read from and points not chunked).
fn stored(st: &SeriesStore) -> u64 {
    ["app", "ops"]
        .iter()
        .flat_map(|ns| st.measurement_stats(ns).into_values())
        .map(|m| m.bytes)
        .sum()
}

/// A snapshot of the store as the snapshot writer completes it once everything is durable.
fn snapshot(sh: &Shard) -> Vec<u8> {
    let (mut buf, pending, _) = encode(&sh.st);
    for (at, lsn) in pending {
        let p = sh.pos(lsn);
        fill_place(&mut buf, at, p.segment, p.offset);
    }
    buf
}

/// Restoring `snap` and replaying the log after `s_lsn`, and replaying the whole log, give
/// the live store; so does a snapshot of the live store, restored.
fn replays_agree(sh: &Shard, snaps: &[(&[u8], u64)]) {
    let live = dump(&sh.st);
    let seen = sh.observe(&sh.st);
    for (snap, s_lsn) in snaps {
        let mut r = restore_all(snap).unwrap();
        sh.replay_into(&mut r, s_lsn + 1..);
        assert_eq!(dump(&r), live, "restored at {s_lsn}, replayed after");
        assert_eq!(sh.observe(&r), seen);
    }
    let mut full = SeriesStore::default();
    sh.replay_into(&mut full, ..);
    assert_eq!(dump(&full), live, "a full replay");
    assert_eq!(sh.observe(&full), seen);
    let (buf, pending, _) = encode(&sh.st);
    assert!(pending.is_empty());
    let r = restore_all(&buf).unwrap();
    assert!(
        encode(&r).0 == buf,
        "a snapshot of the compacted store round-trips exactly"
    );
    assert_eq!(dump(&r), live);
    assert_eq!(sh.observe(&r), seen);
}

#[test]
fn compaction_moves_the_chunks_still_read_and_replay_agrees() {
    runtime().block_on(async {
        let mut sh = Shard::open().await;
        build(&mut sh).await;
        // Points of one more series: the segment holding the chunk cut in flight is sealed
        // while the store has not taken that chunk's place yet.
        for i in 0..12 {
            let from = T0 + i * 300;
            sh.write("app", 0, 1, &run("disk", MEM_A, "free", from, from + 300))
                .await;
        }
        sh.durable().await;

        // The snapshot compaction follows, and its victims: the sealed segments.
        let s_lsn = sh.log.next_lsn() - 1;
        let snap = snapshot(&sh);
        let segments: Vec<u64> = sh.log.segments().iter().map(|(s, _)| *s).collect();
        let victims = &segments[..segments.len() - 1];
        assert!(victims.len() >= 2, "{segments:?}");
        let unsettled = sh
            .unsettled
            .iter()
            .filter(|(t, p)| {
                p.chunk.is_some()
                    && t.placed()
                        .is_some_and(|p| p.is_ok_and(|p| victims.contains(&p.segment)))
            })
            .count();
        assert!(unsettled >= 1, "a chunk durable in a victim, its place not taken yet");
        // The compactor settles what is durable before it asks (`Engine::needs`).
        sh.settle();
        let reads_before = read_places(&sh.st);
        let series_moved: BTreeSet<u32> = reads_before
            .iter()
            .filter(|(p, _)| victims.contains(&p.0))
            .map(|(_, (id, _))| *id)
            .collect();
        assert!(series_moved.len() >= 3, "chunks of several series: {series_moved:?}");
        // The `ops` chunk retention dropped before the snapshot is in a victim, not needed.
        let dropped_before = entries_of(&sh, victims[0])
            .into_iter()
            .chain(entries_of(&sh, victims[1]))
            .filter(|e| e.2 == ENTRY_TS_CHUNK && decode_chunk(&e.3).unwrap().series == 5)
            .count();
        assert!(dropped_before >= 1);

        let mut copies = copy_needed(&mut sh, victims).await;
        // A stale copy: the first chunk copied again (a compaction that ran twice).
        let first = &copies[0];
        let body = relocated_body(first.from, first.entry_type, &first.body);
        let stale = Copy {
            from: first.from,
            to_lsn: sh.append(ENTRY_RELOCATED, &body).await.lsn,
            entry_type: first.entry_type,
            body: first.body.clone(),
        };
        copies.push(stale);
        // Retention drops a chunk whose copy is on its way (the `ops` chunk cut last, now
        // settled): the copy comes out dead.
        sh.settle();
        let expired = sh.st.expired(NOW_FAR);
        let last_ts = |id: u32, lsn: u64| {
            let s = sh.st.get(id).unwrap();
            s.chunks.iter().find(|c| c.lsn == lsn).unwrap().last_ts
        };
        let dropped: BTreeSet<(u64, u64)> = reads_before
            .iter()
            .filter(|(_, (id, lsn))| {
                expired
                    .iter()
                    .any(|(e, cutoff)| e == id && last_ts(*id, *lsn) < *cutoff)
            })
            .map(|(p, _)| *p)
            .collect();
        assert!(dropped.iter().any(|p| copies.iter().any(|c| c.from == *p)));
        assert_eq!(sh.drop_expired().await, 1);

        let before = reads(&sh, &sh.st, &[]);
        let (dead0, rows0, bytes0) = (sh.st.dead_bytes(), dead_rows(&sh.st), stored(&sh.st));
        let moved = relocate_all(&mut sh, &copies).await;
        let want: Vec<bool> = copies
            .iter()
            .enumerate()
            .map(|(i, c)| i + 1 < copies.len() && !dropped.contains(&c.from))
            .collect();
        assert_eq!(moved, want, "the stale copy and the dropped chunk's copy are dead");

        // Nothing reads the victims any more, and nothing there is needed.
        assert!(read_places(&sh.st).keys().all(|p| !victims.contains(&p.0)));
        for &segment in victims {
            for (off, _, t, body) in entries_of(&sh, segment) {
                assert!(!sh.st.needs((segment, off), t, &body));
            }
        }
        // The same points, listings and stats; each chunk moved takes 24 bytes more.
        assert_eq!(reads(&sh, &sh.st, victims), before);
        let n_moved = moved.iter().filter(|m| **m).count() as u64;
        assert_eq!(stored(&sh.st), bytes0 + 24 * n_moved);
        // Dead: each moved chunk's original in its victim, each dead copy in its segment.
        let mut rows = rows0;
        let mut dead = dead0;
        for (c, m) in copies.iter().zip(&moved) {
            let (segment, bytes) = if *m {
                (c.from.0, stored_bytes(c.body.len()))
            } else {
                (
                    sh.pos(c.to_lsn).segment,
                    stored_bytes(RELOCATED_HEAD_BYTES + c.body.len()),
                )
            };
            *rows.entry(segment).or_default() += bytes as u64;
            dead += bytes as u64;
        }
        assert_eq!((dead_rows(&sh.st), sh.st.dead_bytes()), (rows, dead));
        replays_agree(&sh, &[(&snap, s_lsn)]);

        // Round 2: more points seal the copies' segment; after a snapshot, compaction moves
        // the copies again (and the chunks written beside them).
        for i in 0..12 {
            let from = T0 + 20_000 + i * 300;
            sh.write("app", 0, 1, &run("disk", MEM_A, "free", from, from + 300))
                .await;
        }
        sh.durable().await;
        sh.settle();
        let s2_lsn = sh.log.next_lsn() - 1;
        let snap2 = snapshot(&sh);
        let segments: Vec<u64> = sh.log.segments().iter().map(|(s, _)| *s).collect();
        let victims2: Vec<u64> = segments[..segments.len() - 1]
            .iter()
            .copied()
            .filter(|s| !victims.contains(s))
            .collect();
        let copy_places: BTreeSet<(u64, u64)> = copies
            .iter()
            .zip(&moved)
            .filter(|(_, m)| **m)
            .map(|(c, _)| {
                let p = sh.pos(c.to_lsn);
                (p.segment, p.offset)
            })
            .collect();
        let before = reads(&sh, &sh.st, victims);
        let copies2 = copy_needed(&mut sh, &victims2).await;
        let again = copies2.iter().filter(|c| copy_places.contains(&c.from)).count();
        assert_eq!(again, copy_places.len(), "every copy moved again");
        assert!(relocate_all(&mut sh, &copies2).await.iter().all(|m| *m));
        let mut avoid = victims.to_vec();
        avoid.extend(&victims2);
        assert_eq!(reads(&sh, &sh.st, &avoid), before);
        replays_agree(&sh, &[(&snap, s_lsn), (&snap2, s2_lsn)]);

        // Retention drops moved chunks: each counts its copy's bytes dead where the copy is.
        sh.retention("app", "cpu", 1_000).await;
        sh.durable().await;
        let mut rows = dead_rows(&sh.st);
        let mut dead = sh.st.dead_bytes();
        let mut n = 0;
        for (id, cutoff) in sh.st.expired(NOW_FAR) {
            for c in &sh.st.get(id).unwrap().chunks {
                if c.last_ts < cutoff {
                    let Stored::Placed { loc, lsn } = c.stored else {
                        unreachable!()
                    };
                    let (segment, _) = sh.st.segments.place(loc);
                    assert!(!avoid.contains(&segment));
                    n += usize::from(lsn != c.lsn);
                    *rows.entry(segment).or_default() += u64::from(c.bytes);
                    dead += u64::from(c.bytes);
                }
            }
        }
        assert!(n >= 2, "moved chunks dropped");
        sh.drop_expired().await;
        sh.durable().await;
        assert_eq!((dead_rows(&sh.st), sh.st.dead_bytes()), (rows, dead));
        replays_agree(&sh, &[(&snap, s_lsn), (&snap2, s2_lsn)]);
        assert!(sh.st.samples() > HEAD_POINTS as u64);
    });
}

/// A chunk at a fixed place: series 1's, entry LSN 2 at (1, 128).
fn one_chunk() -> (SeriesStore, Vec<u8>) {
    let mut st = SeriesStore::default();
    let new = [
        NewSeries {
            id: 1,
            measurement: "cpu",
            tags: vec![("host", "a")],
            field: "usage",
        },
        NewSeries {
            id: 2,
            measurement: "cpu",
            tags: vec![("host", "b")],
            field: "usage",
        },
    ];
    let pts: Vec<(u32, i64, f64)> = (0..10).flat_map(|i| [(1, i, 1.0), (2, i, 2.0)]).collect();
    let body = encode_points("app", 0, 0, 1, 0, &new, &pts);
    let at = |lsn: u64, offset: u64| {
        EntryAt::Placed(Position {
            lsn,
            segment: 1,
            offset,
        })
    };
    st.apply_points(&decode_points(&body).unwrap(), 1, at(1, 64), 64)
        .unwrap();
    let chunk = encode_chunk("app", 0, 1, CHUNK_IN_ORDER, &st.cut(1, CHUNK_IN_ORDER).unwrap());
    st.apply_chunk(&decode_chunk(&chunk).unwrap(), 2, at(2, 128), 64)
        .unwrap();
    (st, chunk)
}

#[test]
fn needs_and_relocate_check_what_they_are_given() {
    let (mut st, chunk) = one_chunk();
    let points = encode_points("app", 0, 0, 1, 0, &[], &[(1, 50, 1.0)]);
    assert!(st.needs((1, 128), ENTRY_TS_CHUNK, &chunk));
    assert!(!st.needs((1, 128), ENTRY_TS_POINTS, &chunk), "by type");
    assert!(!st.needs((1, 64), ENTRY_TS_POINTS, &points));
    assert!(!st.needs((1, 64), ENTRY_TS_CHUNK, &chunk), "no chunk there");
    assert!(!st.needs((7, 128), ENTRY_TS_CHUNK, &chunk), "a segment never seen");
    let to = Position {
        lsn: 40,
        segment: 30,
        offset: 64,
    };
    let other = encode_chunk("app", 0, 2, CHUNK_IN_ORDER, &st.cut(2, CHUNK_IN_ORDER).unwrap());
    for (t, body, why) in [
        (ENTRY_TS_CHUNK, &chunk[..10], "cut short"),
        (ENTRY_TS_CHUNK, &other[..], "another series' chunk"),
        (7, &chunk[..], "not a time-series entry"),
    ] {
        assert!(st.relocate((1, 128), &to, t, body).is_err(), "{why}");
    }
    assert!(st.needs((1, 128), ENTRY_TS_CHUNK, &chunk), "nothing moved");
    assert_eq!(st.dead_bytes(), 0);
    // A points entry is never moved: its copy is dead.
    assert_eq!(st.relocate((1, 64), &to, ENTRY_TS_POINTS, &points), Ok(false));
    let dead = stored_bytes(24 + points.len()) as u64;
    assert_eq!(st.dead_bytes(), dead);
    let to = Position { offset: 4096, ..to };
    assert_eq!(st.relocate((1, 128), &to, ENTRY_TS_CHUNK, &chunk), Ok(true));
    assert!(!st.needs((1, 128), ENTRY_TS_CHUNK, &chunk));
    assert!(st.needs((30, 4096), ENTRY_TS_CHUNK, &chunk));
    assert_eq!(st.dead_bytes(), dead + 64, "the original's bytes");
    let c = &st.get(1).unwrap().chunks[0];
    assert_eq!((c.lsn, c.bytes as usize), (2, stored_bytes(24 + chunk.len())));
    let mut out = Vec::new();
    st.read(
        1,
        i64::MIN,
        i64::MAX,
        u64::MAX,
        |loc, lsn| {
            assert_eq!((st.segments.place(loc), lsn), ((30, 4096), 40), "read from the copy");
            Ok(vec![(0, 1.0)])
        },
        &[],
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [(0, 1.0)]);
    // Moved already: another copy is dead; the chunk is dropped by its own LSN.
    let late = Position { offset: 8192, ..to };
    assert_eq!(st.relocate((1, 128), &late, ENTRY_TS_CHUNK, &chunk), Ok(false));
    st.drop_chunks("app", 1, &Dropped::Before(10)).unwrap();
    assert!(!st.needs((30, 4096), ENTRY_TS_CHUNK, &chunk));
    assert!(st.chunk_at.is_empty());
}
