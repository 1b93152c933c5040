use std::ops::RangeBounds;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::super::{line_key, FullHeads, TsPending, COMMITTED_KEEP_MS, HEAD_POINTS};
use super::*;
use crate::log::format::EntryRef;
use crate::log::metrics::LogMetrics;
use crate::log::sim::SimFs;
use crate::log::{Log, LogError, LogOptions, Ticket};
use crate::machine::{At, Machine};
use crate::snapshot::codec::fill_place;
use crate::ts::entry::*;
use crate::ts::series::compact::tests::{unwrap_relocated, ENTRY_RELOCATED};

/// The partition the tests' entries name.
pub(crate) const P: u32 = 0;

/// Timestamps of the tests' points start here.
pub(crate) const T0: i64 = 1_000_000;
/// A clock far after every point: retention drops every durable chunk of its measurement.
pub(crate) const NOW_FAR: u64 = 1 << 40;

/// A line of a write: measurement, tags (sorted by key), field, time, value.
pub(crate) type Line<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, i64, f64);

pub(crate) fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
}

/// An encoded section: bytes, placeholders (offset, LSN), live bytes per segment.
pub(crate) type Encoded = (Vec<u8>, Vec<(usize, u64)>, BTreeMap<u64, u64>);

pub(crate) fn encode(st: &SeriesStore) -> Encoded {
    let mut e = Enc::new();
    st.snapshot(&mut e);
    e.finish()
}

/// Restores a buffer holding exactly one section.
pub(crate) fn restore_all(buf: &[u8]) -> Result<SeriesStore, String> {
    let mut d = Dec::new(buf);
    let st = SeriesStore::decode(&mut d, None)?;
    d.done("time-series section")?;
    Ok(st)
}

pub(crate) fn dead_rows(st: &SeriesStore) -> BTreeMap<u64, u64> {
    let mut rows = BTreeMap::new();
    for (s, d) in st.segments.first_lsn.iter().zip(&st.segments.dead) {
        if *d > 0 {
            rows.insert(*s, *d);
        }
    }
    rows
}

/// An entry's place as (segment, offset), once known.
fn at(e: &EntryAt) -> String {
    match e {
        EntryAt::Placed(p) => format!("{:?}", (p.segment, p.offset)),
        EntryAt::Pending => "in flight".into(),
    }
}

/// Everything a store holds, places as (segment, offset).
pub(crate) fn dump(st: &SeriesStore) -> Vec<String> {
    // The chunks by place are every placed chunk, nothing else.
    let mut placed: Vec<(u64, (u32, u64))> = Vec::new();
    for (i, s) in st.series.iter().enumerate() {
        for c in &s.chunks {
            if let Stored::Placed { loc, .. } = c.stored {
                placed.push((loc, (i as u32 + 1, c.lsn)));
            }
        }
    }
    placed.sort_unstable();
    let mut index: Vec<(u64, (u32, u64))> = st.chunk_at.iter().map(|(l, c)| (*l, *c)).collect();
    index.sort_unstable();
    assert_eq!(placed, index, "chunk_at");
    let mut out = Vec::new();
    for (i, s) in st.series.iter().enumerate() {
        out.push(format!(
            "series {} {:?} {:?} {:?} {:?} sealed {:?}",
            i + 1,
            &*s.namespace,
            s.measurement,
            s.tags,
            s.field,
            s.sealed_until
        ));
        for (name, h) in [("head", &s.head), ("late", &s.late)] {
            let pts: Vec<(i64, u64, u64)> = h.points.iter().map(|p| (p.ts, p.v.to_bits(), p.lsn)).collect();
            out.push(format!("  {name} since {} {pts:?}", h.since_ms));
        }
        for c in &s.chunks {
            let place = match &c.stored {
                Stored::Placed { loc, lsn } => format!("{:?} lsn {lsn}", st.segments.place(*loc)),
                Stored::Cut(_) => format!("in flight lsn {}", c.lsn),
            };
            out.push(format!(
                "  chunk {} kind {} {}..={} n {} bytes {} at {place}",
                c.lsn, c.kind, c.first_ts, c.last_ts, c.count, c.bytes
            ));
        }
    }
    let mut lines: Vec<String> = st
        .by_line
        .iter()
        .flat_map(|(ns, m)| m.iter().map(move |(k, f)| format!("line {ns:?} {k:?} {f:?}")))
        .collect();
    lines.sort();
    out.extend(lines);
    out.push(format!("tags {:?}", st.tag_index));
    out.push(format!("measurements {:?}", st.measurements));
    out.push(format!("retention {:?}", st.retention));
    let mut pending: Vec<String> = st
        .pending
        .iter()
        .map(|(b, p)| {
            let pts: Vec<(u32, i64, u64, u64)> =
                p.points.iter().map(|(i, t, v, l)| (*i, *t, v.to_bits(), *l)).collect();
            format!(
                "pending {b} {:?} {} of {} at {} {pts:?}",
                p.namespace, p.parts, p.part_count, p.at_ms
            )
        })
        .collect();
    pending.sort();
    out.extend(pending);
    let mut entries: Vec<(u64, String, u64, u32)> = st
        .entries
        .iter()
        .map(|(l, e)| (*l, at(&e.at), e.bytes, e.remaining))
        .collect();
    entries.sort();
    out.push(format!("entries {entries:?}"));
    let mut ns: Vec<(String, String)> = st
        .namespaces
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ns.sort();
    out.push(format!("namespaces {ns:?}"));
    let mut committed: Vec<(u64, u16, u64)> = st.committed.iter().map(|(b, c)| (*b, c.parts, c.at_ms)).collect();
    committed.sort_unstable();
    out.push(format!("committed {committed:?} clock {}", st.clock_ms));
    out.push(format!(
        "dead {} {:?} in flight {:?}",
        st.dead_bytes,
        dead_rows(st),
        st.dead_in_flight
    ));
    out.push(format!("samples {}", st.samples));
    out
}

/// A shard's time series on a simulated log, driven as the engine drives the live one:
/// each entry is appended, then applied at once, and settled once durable; heads that fill
/// are cut.
pub(crate) struct Shard {
    pub(crate) log: Rc<Log<SimFs>>,
    pub(crate) st: SeriesStore,
    /// Every entry appended: LSN → (type, body, ticket).
    pub(crate) appended: BTreeMap<u64, (u16, Vec<u8>, Ticket)>,
    /// Entries applied and not settled yet, in LSN order.
    pub(crate) unsettled: Vec<(Ticket, TsPending)>,
    pub(crate) now: u64,
    /// When each multi-part write arrived.
    batch_at: BTreeMap<u64, u64>,
}

impl Shard {
    pub(crate) async fn open() -> Shard {
        // Small segments and batches: the entries spread over several of each.
        let opts = LogOptions {
            shard_id: 0,
            segment_bytes: 64 * 1024,
            batch_max_bytes: 16 * 1024,
            durability: crate::config::Durability::Sync,
            flush_interval: Duration::from_millis(5),
            commit_wait: Duration::ZERO,
            repair: false,
        };
        let dir = PathBuf::from("/data/shard-000");
        let metrics = Arc::new(LogMetrics::default());
        let (log, _) = crate::log::open(SimFs::new(), dir, opts, metrics, 0, |_, _| Ok(()))
            .await
            .expect("open");
        let log = Rc::new(log);
        monoio::spawn(log.clone().run_flusher());
        Shard {
            log,
            st: SeriesStore::default(),
            appended: BTreeMap::new(),
            unsettled: Vec::new(),
            now: 5_000,
            batch_at: BTreeMap::new(),
        }
    }

    /// Appends an entry and applies it at once, as the engine's `propose` does.
    pub(crate) async fn apply(&mut self, entry_type: u16, body: &[u8]) -> (Ticket, FullHeads) {
        let t = self.append(entry_type, body).await;
        let e = EntryRef {
            lsn: t.lsn,
            entry_type,
            flags: 0,
            body,
        };
        let (full, pending) = self.st.apply(&e, At::Pending(t.lsn)).expect("apply");
        if let Some(p) = pending {
            self.unsettled.push((t.clone(), p));
        }
        (t, full)
    }

    /// Settles, in LSN order, what is durable (the engine does so whenever it looks).
    pub(crate) fn settle(&mut self) {
        while let Some(Some(Ok(pos))) = self.unsettled.first().map(|(t, _)| t.placed()) {
            let (_, p) = self.unsettled.remove(0);
            Machine::settle(&mut self.st, p, &pos);
        }
    }

    pub(crate) async fn append(&mut self, entry_type: u16, body: &[u8]) -> Ticket {
        loop {
            match self.log.append(entry_type, body) {
                Ok(t) => {
                    self.appended.insert(t.lsn, (entry_type, body.to_vec(), t.clone()));
                    return t;
                }
                Err(LogError::BatchFull) => self.durable().await,
                Err(e) => panic!("append: {e:?}"),
            }
        }
    }

    /// Lets the flusher make every entry appended so far durable (not settled: see
    /// [`Shard::settle`]).
    pub(crate) async fn durable(&self) {
        if let Some((_, _, t)) = self.appended.values().next_back() {
            t.clone().await.expect("durable");
        }
    }

    pub(crate) fn pos(&self, lsn: u64) -> Position {
        let (_, _, t) = &self.appended[&lsn];
        t.placed().expect("durable").expect("placed")
    }

    /// A part of a write: series ids resolved as `exec::build_points` does (new series get
    /// the next ids), the `TS_POINTS` entry appended and applied, full heads cut.
    pub(crate) async fn write(&mut self, ns: &str, batch: u64, part_count: u16, lines: &[Line<'_>]) -> u64 {
        let mut next = self.st.next_id();
        let mut fresh: Vec<(Vec<u8>, &str, u32)> = Vec::new();
        let mut defs: Vec<NewSeries<'_>> = Vec::new();
        let mut points = Vec::new();
        for &(m, tags, field, ts, v) in lines {
            let mut key = Vec::new();
            line_key(&mut key, m, tags.iter().copied());
            let known = self.st.lookup(ns, &key, field);
            let id = match known.or_else(|| fresh.iter().find(|(k, f, _)| *k == key && *f == field).map(|x| x.2)) {
                Some(id) => id,
                None => {
                    let id = next;
                    next += 1;
                    fresh.push((key, field, id));
                    defs.push(NewSeries {
                        id,
                        measurement: m,
                        tags: tags.to_vec(),
                        field,
                    });
                    id
                }
            };
            points.push((id, ts, v));
        }
        self.now += 1;
        // Every part of a write carries its arrival, which the coordinator stamps once.
        let at_ms = if batch == 0 {
            self.now
        } else {
            *self.batch_at.entry(batch).or_insert(self.now)
        };
        let body = encode_points(ns, P, batch, part_count, at_ms, &defs, &points);
        let (t, full) = self.apply(ENTRY_TS_POINTS, &body).await;
        for id in full {
            self.cut(id, CHUNK_IN_ORDER).await;
        }
        t.lsn
    }

    /// Cuts a head into a `TS_CHUNK`, as `exec::cut_heads` does.
    pub(crate) async fn cut(&mut self, id: u32, kind: u8) -> u64 {
        let chunk = self.st.cut(id, kind).expect("a head with points");
        let ns = self.st.get(id).unwrap().namespace.to_string();
        let body = encode_chunk(&ns, P, id, kind, &chunk);
        self.apply(ENTRY_TS_CHUNK, &body).await.0.lsn
    }

    pub(crate) async fn commit(&mut self, ns: &str, batch: u64) {
        let (_, full) = self.apply(ENTRY_TS_COMMIT, &encode_abort(ns, P, batch)).await;
        for id in full {
            self.cut(id, CHUNK_IN_ORDER).await;
        }
    }

    pub(crate) async fn abort(&mut self, ns: &str, batch: u64) {
        self.apply(ENTRY_TS_ABORT, &encode_abort(ns, P, batch)).await;
    }

    pub(crate) async fn retention(&mut self, ns: &str, m: &str, age: u64) {
        self.apply(ENTRY_TS_RETENTION, &encode_retention(ns, P, m, age)).await;
    }

    /// Drops what retention expires, as the shard timer does.
    pub(crate) async fn drop_expired(&mut self) -> usize {
        let expired = self.st.expired(NOW_FAR);
        for (id, cutoff) in &expired {
            let ns = self.st.get(*id).unwrap().namespace.to_string();
            self.apply(ENTRY_TS_DROP, &encode_drop(&ns, P, *id, *cutoff)).await;
        }
        expired.len()
    }

    /// Replays the (durable) entries in `lsns` into `st`, as recovery does: a `RELOCATED`
    /// copy goes to [`SeriesStore::relocate`] with the original's type and body.
    pub(crate) fn replay_into(&self, st: &mut SeriesStore, lsns: impl RangeBounds<u64>) {
        for (lsn, (entry_type, body, _)) in self.appended.range(lsns) {
            if *entry_type == ENTRY_RELOCATED {
                let (from, t, original) = unwrap_relocated(body).unwrap();
                st.relocate(from, &self.pos(*lsn), t, original)
                    .unwrap_or_else(|e| panic!("entry {lsn}: {e}"));
                continue;
            }
            let e = EntryRef {
                lsn: *lsn,
                entry_type: *entry_type,
                flags: 0,
                body,
            };
            st.apply(&e, At::Placed(self.pos(*lsn)))
                .unwrap_or_else(|c| panic!("entry {lsn}: {c}"));
        }
    }

    /// Reads a chunk from the log, checking that `st` places it where it was written (a
    /// `RELOCATED` copy reads as the original).
    pub(crate) fn load<'s>(
        &'s self,
        st: &'s SeriesStore,
    ) -> impl FnMut(u64, u64) -> Result<Vec<(i64, f64)>, String> + 's {
        move |loc, lsn| {
            let (entry_type, body, _) = self.appended.get(&lsn).ok_or("no such entry")?;
            let (entry_type, body) = if *entry_type == ENTRY_RELOCATED {
                let (_, t, original) = unwrap_relocated(body)?;
                (t, original)
            } else {
                (*entry_type, &body[..])
            };
            let p = self.pos(lsn);
            if entry_type != ENTRY_TS_CHUNK || st.segments.place(loc) != (p.segment, p.offset) {
                return Err(format!(
                    "chunk {lsn} read at {:?}, written at {p:?}",
                    st.segments.place(loc)
                ));
            }
            let c = decode_chunk(body)?;
            crate::ts::chunk::decode(c.bytes).map_err(|e| e.to_string())
        }
    }

    /// What clients and the shard's timer and recovery see of `st`: listings, measurement
    /// stats, every series' points over several ranges, pending batches, retention, dead
    /// bytes.
    pub(crate) fn observe(&self, st: &SeriesStore) -> Vec<String> {
        let mut out = Vec::new();
        for ns in ["app", "ops", "nothing"] {
            out.push(format!("{ns}: {:?}", st.measurement_stats(ns)));
            for (n, m) in st.measurement_names() {
                if n != ns {
                    continue;
                }
                for id in st.select(ns, &m, &[]) {
                    let s = st.get(id).unwrap();
                    out.push(format!("  {m} {id} {:?} {} {}", s.tags, s.field, s.samples()));
                }
                out.push(format!("  {m} host=a {:?}", st.select(ns, &m, &[("host", "a")])));
                out.push(format!("  {m} retention {:?}", st.retention(ns, &m)));
            }
        }
        let ranges = [(i64::MIN, i64::MAX), (T0, T0 + 700), (T0 + 700, i64::MAX), (0, 5)];
        let mut pts = Vec::new();
        for id in 1..=st.len() as u32 {
            for (from, to) in ranges {
                st.read(id, from, to, u64::MAX, self.load(st), &[], &mut pts).unwrap();
                let bits: Vec<(i64, u64)> = pts.iter().map(|(t, v)| (*t, v.to_bits())).collect();
                out.push(format!("series {id} {from}..={to}: {bits:?}"));
            }
        }
        let mut pending: Vec<(u64, String, u16, u16)> = st
            .pending()
            .map(|(b, ns, count, n)| (b, ns.to_string(), count, n))
            .collect();
        pending.sort();
        out.push(format!("pending {pending:?}"));
        let overlay: BTreeMap<u32, Vec<(i64, u64)>> = st
            .pending_points(|_| true)
            .into_iter()
            .map(|(id, p)| (id, p.iter().map(|(t, v)| (*t, v.to_bits())).collect()))
            .collect();
        out.push(format!("pending points {overlay:?}"));
        out.push(format!("expired {:?} full {:?}", st.expired(NOW_FAR), st.full(2)));
        out.push(format!(
            "dead {} {:?} samples {} series {}",
            st.dead_bytes(),
            dead_rows(st),
            st.samples(),
            st.len()
        ));
        out
    }
}

pub(crate) const CPU_A: &[(&str, &str)] = &[("host", "a"), ("region", "eu")];
pub(crate) const CPU_B: &[(&str, &str)] = &[("host", "b"), ("region", "eu")];
pub(crate) const CPU_C: &[(&str, &str)] = &[("host", "c"), ("region", "us")];
pub(crate) const MEM_A: &[(&str, &str)] = &[("host", "a")];

/// Points `from..to` of one series, values from the time.
pub(crate) fn run<'a>(m: &'a str, tags: &'a [(&'a str, &'a str)], field: &'a str, from: i64, to: i64) -> Vec<Line<'a>> {
    (from..to)
        .map(|t| (m, tags, field, t, (t - T0) as f64 * 0.25))
        .collect()
}

/// Everything a store holds before the snapshot: series of two measurements in two
/// namespaces (one line key in both), heads cut into chunks over several segments, late
/// points and a late chunk, retention with a drop, committed, aborted and pending
/// multi-part writes; then, in flight, a chunk and entries not yet durable.
pub(crate) async fn build(sh: &mut Shard) {
    sh.write(
        "app",
        0,
        1,
        &[
            ("cpu", CPU_A, "usage", T0, 1.0),
            ("cpu", CPU_A, "idle", T0, 99.0),
            ("cpu", CPU_B, "usage", T0, 2.0),
            ("mem", MEM_A, "used", T0, 5.0),
        ],
    )
    .await;
    sh.write("ops", 0, 1, &[("cpu", CPU_A, "usage", T0, 7.0)]).await;
    // Heads of series 1 and 3 fill and are cut, several times.
    for round in 0..8 {
        let from = T0 + 1 + round * 400;
        sh.write("app", 0, 1, &run("cpu", CPU_A, "usage", from, from + 400))
            .await;
        let mut b = run("cpu", CPU_B, "usage", from, from + 300);
        b.push(("cpu", CPU_A, "idle", from, -1.0));
        sh.write("app", 0, 1, &b).await;
        if round % 3 == 0 {
            sh.durable().await;
        }
    }
    assert!(sh.st.get(1).unwrap().chunks.len() >= 2);
    // Late points of series 1 (and one rewritten), cut into a late chunk; more late points.
    let sealed = sh.st.get(1).unwrap().sealed_until.unwrap();
    sh.write(
        "app",
        0,
        1,
        &[
            ("cpu", CPU_A, "usage", T0 + 3, 30.0),
            ("cpu", CPU_A, "usage", T0 + 3, 31.0),
            ("cpu", CPU_A, "usage", sealed, 32.0),
            ("cpu", CPU_A, "usage", sealed + 1, 33.0),
        ],
    )
    .await;
    sh.cut(1, CHUNK_LATE).await;
    sh.write("app", 0, 1, &[("cpu", CPU_A, "usage", T0 + 7, 70.0)]).await;
    // Retention: `ops cpu` drops its durable chunk; `app mem` keeps its head.
    sh.cut(5, CHUNK_IN_ORDER).await;
    sh.durable().await;
    sh.settle();
    sh.retention("ops", "cpu", 1_000).await;
    assert_eq!(sh.drop_expired().await, 1);
    sh.retention("app", "mem", 3_600_000).await;
    sh.write("ops", 0, 1, &run("cpu", CPU_A, "usage", T0 + 10, T0 + 20))
        .await;
    sh.cut(5, CHUNK_IN_ORDER).await;
    sh.write("ops", 0, 1, &run("cpu", CPU_A, "usage", T0 + 20, T0 + 25))
        .await;
    // Multi-part writes: 77 pending, 78 with two parts here pending, 80 committed, 81
    // aborted.
    sh.write(
        "app",
        77,
        2,
        &[
            ("cpu", CPU_B, "usage", T0 + 9_000, 77.0),
            ("mem", MEM_A, "used", T0 + 1, 6.0),
        ],
    )
    .await;
    sh.write("app", 78, 3, &[("cpu", CPU_A, "usage", T0 + 3, -3.0)]).await;
    sh.write("app", 78, 3, &[("cpu", CPU_A, "idle", T0 + 9_000, 78.0)])
        .await;
    sh.write("app", 80, 2, &[("cpu", CPU_B, "usage", T0 + 9_001, 80.0)])
        .await;
    sh.commit("app", 80).await;
    sh.write("app", 81, 2, &[("mem", MEM_A, "used", T0 + 2, 81.0)]).await;
    sh.abort("app", 81).await;
    sh.durable().await;
    sh.settle();
    assert!(sh.st.dead_in_flight.is_empty() && sh.unsettled.is_empty());

    // In flight: a new series, a chunk cut from a head, a pending part.
    sh.write(
        "app",
        0,
        1,
        &[
            ("cpu", CPU_C, "usage", T0 + 50, 1.5),
            ("cpu", CPU_A, "idle", T0 + 9_100, 2.5),
            ("mem", MEM_A, "used", T0 + 3, 3.5),
        ],
    )
    .await;
    sh.cut(2, CHUNK_IN_ORDER).await;
    sh.write("app", 90, 2, &[("cpu", CPU_C, "usage", T0 + 51, 90.0)]).await;
    let cut_in_flight = sh.st.series.iter().flat_map(|s| &s.chunks);
    assert_eq!(cut_in_flight.filter(|c| matches!(&c.stored, Stored::Cut(_))).count(), 1);
    assert!(
        sh.st.dead_in_flight.is_empty(),
        "no entry died in flight (see `entries_that_died_in_flight_are_counted_in_their_segments`)"
    );
}

/// The entries after the snapshot: points in order and late, a new series, chunks of heads
/// the snapshot holds, a commit and aborts of parts it holds, retention set and removed, a
/// drop of a chunk it holds.
async fn after(sh: &mut Shard) {
    sh.write(
        "app",
        0,
        1,
        &[
            ("cpu", CPU_A, "usage", T0 + 9_500, 1.0),
            ("cpu", CPU_A, "usage", T0 + 4, 2.0),
            ("cpu", CPU_A, "usage", T0 + 7, 71.0),
            ("cpu", CPU_B, "usage", T0 + 2, 3.0),
            ("disk", MEM_A, "free", T0, 4.0),
        ],
    )
    .await;
    sh.cut(3, CHUNK_IN_ORDER).await;
    sh.cut(1, CHUNK_LATE).await;
    sh.cut(4, CHUNK_IN_ORDER).await;
    sh.commit("app", 77).await;
    sh.abort("app", 78).await;
    sh.abort("app", 90).await;
    sh.cut(3, CHUNK_LATE).await;
    sh.retention("app", "mem", 0).await;
    sh.retention("app", "disk", 5).await;
    sh.durable().await;
    sh.settle();
    assert_eq!(sh.drop_expired().await, 1, "the ops chunk restored from the snapshot");
    sh.write(
        "app",
        0,
        1,
        &run("cpu", CPU_B, "usage", T0 + 9_600, T0 + 9_600 + HEAD_POINTS as i64),
    )
    .await;
    sh.durable().await;
    sh.settle();
}

#[test]
fn a_restored_store_replays_the_rest_of_the_log_as_a_full_replay_does() {
    runtime().block_on(async {
        let mut sh = Shard::open().await;
        build(&mut sh).await;
        let s_lsn = sh.log.next_lsn() - 1;
        let (mut buf, pending, live) = encode(&sh.st);
        assert_eq!(pending.len(), 3, "the chunk and two points entries in flight");
        assert!(
            restore_all(&buf).unwrap_err().contains("never filled"),
            "placeholders are refused"
        );
        // The snapshot writer fills the placeholders once their entries are durable.
        sh.durable().await;
        for (at, lsn) in &pending {
            let p = sh.pos(*lsn);
            fill_place(&mut buf, *at, p.segment, p.offset);
        }
        let mut r = restore_all(&buf).unwrap();

        // (a) The same bytes again, nothing pending; live bytes are the chunks' entries.
        let (again, again_pending, again_live) = encode(&r);
        assert!(again_pending.is_empty());
        assert!(again == buf, "a restored store snapshots to the same bytes");
        let mut chunks: BTreeMap<u64, u64> = BTreeMap::new();
        for c in r.series.iter().flat_map(|s| &s.chunks) {
            let Stored::Placed { loc, .. } = c.stored else {
                panic!("chunk {} not placed", c.lsn)
            };
            *chunks.entry(r.segments.place(loc).0).or_default() += u64::from(c.bytes);
        }
        let counted = |m: &BTreeMap<u64, u64>| -> BTreeMap<u64, u64> {
            m.iter().filter(|(_, b)| **b > 0).map(|(s, b)| (*s, *b)).collect()
        };
        assert_eq!(counted(&again_live), chunks);
        assert!(chunks.len() >= 2, "chunks in several segments");
        assert!(
            live.values().sum::<u64>() < chunks.values().sum::<u64>(),
            "the chunk in flight"
        );

        // What a full replay up to the snapshot holds, heads' start times included (they come
        // from the entries).
        let mut full = SeriesStore::default();
        sh.replay_into(&mut full, ..=s_lsn);
        assert_eq!(dump(&r), dump(&full));
        sh.settle();
        assert_eq!(dump(&r), dump(&sh.st));
        assert_eq!(sh.observe(&r), sh.observe(&sh.st));
        assert_eq!(
            (r.parts_held(77), r.parts_held(78), r.parts_held(90), r.parts_held(81)),
            (1, 2, 1, 0),
            "the recovery exchange's answers"
        );
        assert_eq!(
            (r.parts_held(80), full.parts_held(80), sh.st.parts_held(80)),
            (1, 1, 1),
            "batch 80, committed live before the snapshot, is held"
        );
        assert_eq!(r.retention("app", "mem"), Some(3_600_000));
        assert!(r.dead_bytes() > 0 && dead_rows(&r).len() >= 2);

        // (b) The rest of the log: live on the original, replayed on the restored store and
        // on a full replay, gives the same everywhere.
        after(&mut sh).await;
        sh.replay_into(&mut r, s_lsn + 1..);
        let mut full = SeriesStore::default();
        sh.replay_into(&mut full, ..);
        let seen = sh.observe(&full);
        assert_eq!(sh.observe(&r), seen);
        assert_eq!(sh.observe(&sh.st), seen);
        assert_eq!(dump(&r), dump(&full));
        assert_eq!(dump(&sh.st), dump(&full));
        assert_eq!(
            r.committed.keys().copied().collect::<std::collections::BTreeSet<u64>>(),
            [77, 80].into(),
            "restored from the snapshot, and replayed after it"
        );
        for batch in [77, 78, 80, 90] {
            assert_eq!(r.parts_held(batch), full.parts_held(batch), "batch {batch}");
            assert_eq!(r.parts_held(batch), sh.st.parts_held(batch), "batch {batch}");
        }
        assert!(r.samples() > 4 * HEAD_POINTS as u64);
    });
}

#[test]
fn a_batch_committed_before_the_snapshot_is_held_after_a_restore_until_the_clock_passes_it() {
    runtime().block_on(async {
        let mut sh = Shard::open().await;
        // This partition holds one part of batch 5; another holds the other.
        sh.write("app", 5, 2, &[("cpu", CPU_A, "usage", T0, 1.0)]).await;
        let arrived = sh.now;
        sh.durable().await;
        sh.commit("app", 5).await;
        sh.durable().await;
        sh.settle();
        let (buf, pending, _) = encode(&sh.st);
        assert!(pending.is_empty());
        // A crash here, the other part still pending: the startup exchange asks this
        // partition, restored from the snapshot with nothing after it to replay.
        let r = restore_all(&buf).unwrap();
        assert_eq!(r.parts_held(5), 1, "held, or the other part would be aborted");
        assert!(encode(&r).0 == buf);
        assert_eq!(dump(&r), dump(&sh.st));
        // Kept while the partition's clock (its writes' arrival) is within
        // COMMITTED_KEEP_MS of the batch's, forgotten after — the same live and replayed.
        sh.now = arrived + COMMITTED_KEEP_MS - 2;
        sh.write("app", 0, 1, &[("cpu", CPU_A, "usage", T0 + 1, 2.0)]).await;
        assert_eq!(sh.st.parts_held(5), 1);
        sh.write("app", 0, 1, &[("cpu", CPU_A, "usage", T0 + 2, 3.0)]).await;
        assert_eq!(sh.st.parts_held(5), 0);
        sh.durable().await;
        sh.settle();
        let mut full = SeriesStore::default();
        sh.replay_into(&mut full, ..);
        assert_eq!(dump(&full), dump(&sh.st));
        let (pruned, ..) = encode(&sh.st);
        assert_eq!(restore_all(&pruned).unwrap().parts_held(5), 0);
    });
}

#[test]
fn entries_that_died_in_flight_are_counted_in_their_segments() {
    runtime().block_on(async {
        let mut sh = Shard::open().await;
        sh.write("app", 0, 1, &[("mem", MEM_A, "used", T0, 1.0)]).await;
        sh.durable().await;
        sh.settle();
        // A write whose points are cut at once (an aged head): its entry is dead before it is
        // durable.
        sh.write("app", 0, 1, &run("cpu", CPU_A, "usage", T0, T0 + 200)).await;
        sh.cut(2, CHUNK_IN_ORDER).await;
        let dead: Vec<u64> = sh.st.dead_in_flight.iter().map(|(lsn, _)| *lsn).collect();
        assert!(
            sh.unsettled
                .iter()
                .any(|(t, p)| p.chunk.is_none() && dead.contains(&t.lsn)),
            "a points entry dead before it settled"
        );
        let (mut buf, pending, _) = encode(&sh.st);
        assert_eq!(pending.len(), 2, "the chunk and the dead entry");
        sh.durable().await;
        for (at, lsn) in &pending {
            let p = sh.pos(*lsn);
            fill_place(&mut buf, *at, p.segment, p.offset);
        }
        let r = restore_all(&buf).unwrap();
        // Settled, the original writes the dead entry in its segment's row, as the restored
        // store does.
        sh.settle();
        assert!(sh.st.dead_in_flight.is_empty());
        let (settled, ..) = encode(&sh.st);
        let (restored, ..) = encode(&r);
        assert!(
            restored == settled,
            "restored, the dead entry is counted in its segment"
        );
        assert!(restored != buf, "the one case where a snapshot is not a fixed point");
        assert!(encode(&restore_all(&restored).unwrap()).0 == restored);
        assert_eq!(dump(&r), dump(&sh.st));
        assert_eq!(r.dead_bytes(), sh.st.dead_bytes());
        let mut full = SeriesStore::default();
        sh.replay_into(&mut full, ..);
        assert_eq!(dump(&r), dump(&full));
    });
}

fn pos(lsn: u64) -> Position {
    Position {
        lsn,
        segment: 1 + lsn / 4 * 100,
        offset: 64 * lsn,
    }
}

fn new_series(id: u32, measurement: &'static str, host: &'static str, field: &'static str) -> NewSeries<'static> {
    NewSeries {
        id,
        measurement,
        tags: vec![("host", host), ("region", "eu")],
        field,
    }
}

/// Applies an entry at `lsn` as replay does.
fn placed(st: &mut SeriesStore, lsn: u64, entry_type: u16, body: &[u8]) {
    let e = EntryRef {
        lsn,
        entry_type,
        flags: 0,
        body,
    };
    st.apply(&e, At::Placed(pos(lsn))).unwrap();
}

/// Applies a `TS_POINTS` entry at `lsn` as replay does (a write of `parts` parts).
fn put(
    st: &mut SeriesStore,
    lsn: u64,
    ns: &str,
    batch: u64,
    parts: u16,
    new: &[NewSeries<'_>],
    pts: &[(u32, i64, f64)],
) {
    let body = encode_points(ns, P, batch, parts, 100 + lsn, new, pts);
    placed(st, lsn, ENTRY_TS_POINTS, &body);
}

/// Cuts a head and applies its `TS_CHUNK` at `lsn` as replay does.
fn chunk(st: &mut SeriesStore, id: u32, kind: u8, lsn: u64) {
    let ns = st.get(id).unwrap().namespace.to_string();
    let body = encode_chunk(&ns, P, id, kind, &st.cut(id, kind).unwrap());
    placed(st, lsn, ENTRY_TS_CHUNK, &body);
}

/// A small store built through replay (every entry placed) with every part of the section,
/// a committed batch included.
fn small() -> SeriesStore {
    let mut st = SeriesStore::default();
    let app = [
        new_series(1, "cpu", "a", "usage"),
        new_series(2, "cpu", "b", "usage"),
        new_series(3, "mem", "a", "used"),
    ];
    put(
        &mut st,
        1,
        "app",
        0,
        1,
        &app,
        &[(1, 10, 1.0), (1, 20, 2.0), (2, 10, 3.0), (3, 10, f64::NAN)],
    );
    put(
        &mut st,
        2,
        "ops",
        0,
        1,
        &[new_series(4, "cpu", "a", "usage")],
        &[(4, 10, 1.0)],
    );
    chunk(&mut st, 1, CHUNK_IN_ORDER, 3);
    // Late (15), in order (30), another series (20); the late head cut; another late point.
    put(
        &mut st,
        4,
        "app",
        0,
        1,
        &[],
        &[(1, 15, 4.0), (1, 30, 5.0), (2, 20, 6.0)],
    );
    chunk(&mut st, 1, CHUNK_LATE, 5);
    put(&mut st, 6, "app", 0, 1, &[], &[(1, 5, 7.0)]);
    // A pending part, and a committed one.
    put(&mut st, 7, "app", 9, 2, &[], &[(2, 40, 8.0), (3, 40, -0.0)]);
    put(&mut st, 8, "app", 10, 2, &[], &[(2, 50, 10.0)]);
    st.commit("app", 10).unwrap();
    // Dead bytes in two segments: an overwritten entry; a chunked one and its dropped chunk.
    put(&mut st, 9, "app", 0, 1, &[], &[(2, 10, 11.0)]);
    put(&mut st, 10, "ops", 0, 1, &[], &[(4, 10, 12.0)]);
    chunk(&mut st, 4, CHUNK_IN_ORDER, 11);
    st.drop_chunks("ops", 4, &Dropped::Before(11)).unwrap();
    put(&mut st, 12, "ops", 0, 1, &[], &[(4, 60, 13.0)]);
    st.set_retention("app", "cpu", 60_000);
    st.set_retention("zzz", "m", 1);
    assert!(dead_rows(&st).len() >= 2);
    st
}

#[test]
fn the_small_store_round_trips() {
    let st = small();
    let (buf, pending, _) = encode(&st);
    assert!(pending.is_empty());
    let r = restore_all(&buf).unwrap();
    assert!(encode(&r).0 == buf);
    assert_eq!(dump(&r), dump(&st));
    assert_eq!((r.parts_held(9), r.parts_held(10)), (1, 1));
    assert_eq!(r.get(3).unwrap().head.points[0].v.to_bits(), f64::NAN.to_bits());
    assert_eq!(r.pending[&9].points[1].2.to_bits(), (-0.0f64).to_bits());
    assert_eq!((r.samples(), r.dead_bytes()), (st.samples(), st.dead_bytes()));
    let r2 = restore_all(&encode(&SeriesStore::default()).0).unwrap();
    assert!(r2.is_empty());
}

#[test]
fn damaged_sections_are_errors_never_panics() {
    let st = small();
    let (buf, ..) = encode(&st);
    for n in 0..buf.len() {
        let e = restore_all(&buf[..n]).err();
        assert!(
            e.is_some_and(|e| !e.is_empty()),
            "a section cut at {n} of {}",
            buf.len()
        );
    }
    let mut long = buf.clone();
    long.push(0);
    assert!(restore_all(&long).is_err());
    // Any bit flipped: an error, or a store whose section is exactly the damaged bytes (the
    // layout has one spelling per store, and what is accepted is consistent).
    let mut accepted = 0;
    for i in 0..buf.len() {
        for bit in 0..8 {
            let mut bad = buf.clone();
            bad[i] ^= 1 << bit;
            if let Ok(r) = restore_all(&bad) {
                accepted += 1;
                let again = encode(&r).0;
                let at = again.iter().zip(&bad).position(|(a, b)| a != b);
                assert!(
                    again == bad,
                    "byte {i} bit {bit}: accepted but not canonical (differs at {at:?}, lengths {} {})",
                    again.len(),
                    bad.len()
                );
                for id in 1..=r.len() as u32 {
                    let mut out = Vec::new();
                    r.read(id, i64::MIN, i64::MAX, u64::MAX, |_, _| Ok(Vec::new()), &[], &mut out)
                        .unwrap();
                }
            }
        }
    }
    // Values, times, places and start times cannot be checked here (the snapshot file's
    // checksum catches them); most other flips break a count, an order or a reference.
    assert!(accepted < buf.len() * 8 * 3 / 5, "{accepted} damaged sections accepted");

    let mut wrong_version = buf.clone();
    wrong_version[0] = 3;
    assert!(restore_all(&wrong_version).unwrap_err().contains("version 3"));
    // A count no section could hold is refused before anything is allocated (after the
    // version and the clock).
    let mut huge = buf.clone();
    huge[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(restore_all(&huge).unwrap_err().contains("namespace count"));
}

#[test]
fn inconsistent_sections_are_refused() {
    let st = small();
    let (buf, ..) = encode(&st);
    // Edits of a well-formed store, one at a time, each breaking one rule.
    type Edit = fn(&mut SeriesStore);
    let edits: [(Edit, &str); 9] = [
        (|s| s.series[1].head.points.reverse(), "out of order"),
        (|s| s.series[0].late.points[0].ts = 1_000, "late point"),
        (|s| s.series[0].head.points[0].lsn = 99, "not listed"),
        (
            |s| {
                s.entries.remove(&6);
            },
            "not listed",
        ),
        (|s| s.entries.get_mut(&4).unwrap().bytes = 7, "stored size"),
        (|s| s.series[1].tags[0].1 = "a".into(), "defined twice"),
        (|s| s.pending.get_mut(&9).unwrap().parts = 2, "parts"),
        (|s| s.pending.get_mut(&9).unwrap().points[0].0 = 4, "not defined in"),
        (|s| s.series[0].chunks[0].count = 12, "points"),
    ];
    for (edit, want) in edits {
        let mut bad = small();
        edit(&mut bad);
        let (bytes, ..) = encode(&bad);
        let e = restore_all(&bytes).unwrap_err();
        assert!(e.contains(want), "{e:?} does not say {want:?}");
    }
    assert!(restore_all(&buf).is_ok());
}
