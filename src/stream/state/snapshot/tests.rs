use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::config::Durability;
use crate::log::format::stored_bytes;
use crate::log::format::EntryRef;
use crate::log::metrics::LogMetrics;
use crate::log::sim::{CrashMode, SimFs};
use crate::log::{Log, LogOptions, Ticket};
use crate::machine::{At, Machine};
use crate::snapshot::codec::fill_place;
use crate::stream::entry::*;
use crate::stream::state::{ReadPlan, StreamPending, POINT_STRIDE};
use crate::test_rng::Rng;

/// A section's bytes, its placeholders (offset, LSN) and its live bytes per segment.
pub(crate) type Encoded = (Vec<u8>, Vec<(usize, u64)>, BTreeMap<u64, u64>);

pub(crate) fn encode(st: &StreamStore) -> Encoded {
    let mut enc = Enc::new();
    st.snapshot(&mut enc);
    enc.finish()
}

pub(crate) fn decode(b: &[u8]) -> Result<StreamStore, String> {
    let mut dec = Dec::new(b);
    let st = StreamStore::decode(&mut dec, None)?;
    dec.done("stream section")?;
    Ok(st)
}

/// Nonzero dead bytes per segment (by first LSN).
pub(crate) fn dead_map(st: &StreamStore) -> BTreeMap<u64, u64> {
    let t = &st.segments;
    t.first_lsn
        .iter()
        .zip(&t.dead)
        .filter(|&(_, &d)| d > 0)
        .map(|(&s, &d)| (s, d))
        .collect()
}

pub(crate) fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3)
    })
}

pub(crate) fn payload(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

// ---- A shard on the simulated disk: entries written to a real log, applied as exec.rs does.

pub(crate) fn opts() -> LogOptions {
    LogOptions {
        shard_id: 0,
        segment_bytes: 1024 * 1024,
        batch_max_bytes: 512 * 1024,
        durability: Durability::Sync,
        flush_interval: Duration::from_millis(5),
        commit_wait: Duration::ZERO,
        repair: false,
    }
}

pub(crate) fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime")
}

/// Opens the log on `fs`, replaying what it holds into `st` (a full replay), and starts its
/// flusher.
pub(crate) async fn open_log(fs: SimFs, st: &mut StreamStore) -> (Rc<Log<SimFs>>, monoio::task::JoinHandle<()>) {
    let metrics = Arc::new(LogMetrics::default());
    let (log, _) = crate::log::open(fs, PathBuf::from("/data/shard-000"), opts(), metrics, 0, |e, pos| {
        replay_entry(st, e, pos)
    })
    .await
    .expect("open the log");
    let log = Rc::new(log);
    let flusher = monoio::spawn(log.clone().run_flusher());
    (log, flusher)
}

/// A recovered entry applied as the engine replays it: a copy as its original moving.
pub(crate) fn replay_entry(st: &mut StreamStore, e: &EntryRef<'_>, pos: Position) -> Result<(), String> {
    if e.entry_type == crate::log::relocated::ENTRY_RELOCATED {
        let r = crate::log::relocated::decode(e.body)?;
        return st
            .relocate((r.from_segment, r.from_offset), &pos, r.entry_type, r.body)
            .map(drop);
    }
    st.apply(e, At::Placed(pos)).map(drop).map_err(|c| c.0)
}

pub(crate) const STREAMS: [(&str, &str); 5] = [("a", "s1"), ("a", "s2"), ("b", "s1"), ("b", "t"), ("c", "x")];
pub(crate) const GROUPS: [&str; 2] = ["g1", "g2"];
pub(crate) const CONSUMERS: [&str; 3] = ["w1", "w2", "w3"];

pub(crate) struct Appended {
    pub(crate) ns: &'static str,
    pub(crate) name: &'static str,
    pub(crate) first: u64,
    pub(crate) end: u64,
    pub(crate) stored: u64,
    pub(crate) ticket: Ticket,
}

/// The shard: its log, and the stores every entry is applied to — the live one and, from
/// the snapshot on, the restored one. Values both must answer alike are asked of both.
pub(crate) struct Shard {
    pub(crate) log: Rc<Log<SimFs>>,
    pub(crate) stores: Vec<StreamStore>,
    pub(crate) now: u64,
    pub(crate) appends: Vec<Appended>,
    /// Per store, the appends applied and not settled yet.
    pub(crate) unsettled: Vec<Vec<(Ticket, StreamPending)>>,
}

impl Shard {
    /// A shard with `stores` on `log` at time `now`.
    pub(crate) fn new(log: Rc<Log<SimFs>>, stores: Vec<StreamStore>, now: u64) -> Shard {
        let n = stores.len();
        Shard {
            log,
            stores,
            now,
            appends: Vec::new(),
            unsettled: (0..n).map(|_| Vec::new()).collect(),
        }
    }

    /// Another store applying every entry from now on (a restored one).
    pub(crate) fn add_store(&mut self, st: StreamStore) {
        self.stores.push(st);
        self.unsettled.push(Vec::new());
    }

    /// The stream clock for an entry about to be written (entries are the only thing that
    /// moves it, so that a full replay's clock is the live one).
    pub(crate) fn stamp(&mut self) -> u64 {
        let at = self.now.max(self.stores[0].clock_ms());
        for st in &self.stores[1..] {
            assert_eq!(st.clock_ms(), self.stores[0].clock_ms(), "stream clocks");
        }
        at
    }

    /// Appends an entry and applies it to every store at once, as the engine's `propose`
    /// does; returns what applying it answered (alike on every store).
    pub(crate) fn apply(&mut self, kind: u16, body: &[u8]) -> (Ticket, u64) {
        let t = self.log.append(kind, body).expect("append");
        let e = EntryRef {
            lsn: t.lsn,
            entry_type: kind,
            flags: 0,
            body,
        };
        let mut outs = Vec::new();
        for (i, st) in self.stores.iter_mut().enumerate() {
            let (out, pending) = st.apply(&e, At::Pending(t.lsn)).expect("apply");
            if let Some(p) = pending {
                self.unsettled[i].push((t.clone(), p));
            }
            outs.push(out);
        }
        assert!(outs.windows(2).all(|w| w[0] == w[1]), "applied alike: {outs:?}");
        (t, outs[0])
    }

    pub(crate) fn now(&self) -> u64 {
        self.now.max(self.stores[0].clock_ms())
    }

    /// What every store answers alike.
    pub(crate) fn agreed<T: PartialEq + std::fmt::Debug>(&self, f: impl Fn(&StreamStore) -> T) -> T {
        let v = f(&self.stores[0]);
        for (i, st) in self.stores.iter().enumerate().skip(1) {
            assert_eq!(f(st), v, "store {i} answers otherwise than the live store");
        }
        v
    }

    pub(crate) fn stream(&self, ns: &str, name: &str) -> Option<&Stream> {
        self.stores[0].get(ns, name)
    }

    pub(crate) fn head(&mut self, ns: &'static str, name: &'static str) -> Head<'static> {
        let at_ms = self.stamp();
        Head {
            namespace: ns,
            name,
            at_ms,
        }
    }

    pub(crate) fn append(&mut self, ns: &'static str, name: &'static str, payloads: &[Vec<u8>]) {
        let head = self.head(ns, name);
        let first = self.agreed(|st| st.get(ns, name).map_or(0, |s| s.next_offset));
        let body = encode_append(&head, first, payloads);
        let (ticket, _) = self.apply(ENTRY_STREAM_APPEND, &body);
        let stored = stored_bytes(body.len()) as u64;
        let count = payloads.len() as u32;
        self.appends.push(Appended {
            ns,
            name,
            first,
            end: first + u64::from(count),
            stored,
            ticket,
        });
    }

    pub(crate) fn trim(&mut self, ns: &'static str, name: &'static str, before: u64) {
        let head = self.head(ns, name);
        self.apply(ENTRY_STREAM_TRIM, &encode_trim(&head, before));
    }

    pub(crate) fn retention(&mut self, ns: &'static str, name: &'static str, r: Retention) {
        let head = self.head(ns, name);
        self.apply(ENTRY_STREAM_RETENTION, &encode_retention(&head, &r));
    }

    /// As exec.rs enforces retention: a trim to the cut the limits give now.
    pub(crate) fn enforce_retention(&mut self, ns: &'static str, name: &'static str) {
        let (log, now) = (self.log.clone(), self.now());
        let cut = self.agreed(|st| {
            let s = st.get(ns, name).expect("stream");
            s.retention_cut(ns, name, &log, &st.segments, now)
                .expect("retention cut")
        });
        if cut > self.stream(ns, name).expect("stream").first_offset {
            self.trim(ns, name, cut);
        }
    }

    pub(crate) fn group(&mut self, ns: &'static str, name: &'static str, group: &'static str, op: GroupOp<'_>) -> u64 {
        let head = self.head(ns, name);
        self.apply(group_entry_type(&op), &encode_group(&head, group, &op)).1
    }

    /// As exec.rs reads a group: planned at now, written with every decision.
    pub(crate) fn read(
        &mut self,
        ns: &'static str,
        name: &'static str,
        group: &'static str,
        consumer: &'static str,
        n: usize,
    ) {
        let now = self.now();
        let plan: ReadPlan = self.agreed(|st| {
            let s = st.get(ns, name).expect("stream");
            s.groups[group].plan_read(now, n, s.first_offset, s.durable_next)
        });
        if plan.is_empty() {
            return;
        }
        let timeout = self.stream(ns, name).expect("stream").groups[group].ack_timeout_ms;
        let op = GroupOp::Read(Read {
            consumer,
            deadline_ms: now + timeout,
            new_from: plan.new_from,
            cursor: plan.cursor,
            redelivered: plan.redelivered,
            given_up: plan.given_up,
        });
        self.group(ns, name, group, op);
    }

    /// Waits until every entry is durable, then settles every store's appends.
    pub(crate) async fn durable(&mut self) {
        let last = self.log.next_lsn() - 1;
        self.log.wait_durable(last).await.expect("durable");
        self.settle();
    }

    /// Settles, in every store, the appends that are durable.
    pub(crate) fn settle(&mut self) {
        for (st, unsettled) in self.stores.iter_mut().zip(&mut self.unsettled) {
            while let Some(Some(Ok(pos))) = unsettled.first().map(|(t, _)| t.placed()) {
                let (_, p) = unsettled.remove(0);
                Machine::settle(st, p, &pos);
            }
        }
    }

    pub(crate) fn position(&self, lsn: u64) -> Position {
        let a = self.appends.iter().find(|a| a.ticket.lsn == lsn).expect("an append");
        a.ticket.placed().expect("durable").expect("placed")
    }

    /// One random operation, never waiting: appends of small and large records, trims,
    /// retention, group creation, reads (with redeliveries and give-ups as leases run out),
    /// acks and deletions.
    pub(crate) fn step(&mut self, rng: &mut Rng) {
        self.now += rng.below(40);
        let existing: Vec<(&'static str, &'static str)> = STREAMS
            .iter()
            .copied()
            .filter(|(ns, n)| self.stream(ns, n).is_some())
            .collect();
        let roll = rng.below(100);
        if roll < 40 || existing.is_empty() {
            let (ns, name) = *rng.pick(&STREAMS);
            let n = 1 + rng.index(4);
            let payloads: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    let len = if rng.chance(10) {
                        20_000 + rng.index(20_000)
                    } else {
                        rng.index(3000)
                    };
                    payload(rng, len)
                })
                .collect();
            self.append(ns, name, &payloads);
            return;
        }
        let (ns, name) = *rng.pick(&existing);
        let s = self.stream(ns, name).expect("stream");
        let (first, durable) = (s.first_offset, s.durable_next);
        let groups: Vec<&'static str> = GROUPS.iter().copied().filter(|g| s.groups.contains_key(*g)).collect();
        match roll {
            40..=46 => self.trim(ns, name, first + rng.below(durable - first + 1)),
            47..=51 => {
                let r = Retention {
                    max_age_ms: if rng.chance(30) { 300 + rng.below(3000) } else { 0 },
                    max_bytes: if rng.chance(40) { 60_000 + rng.below(300_000) } else { 0 },
                    max_records: if rng.chance(40) { 30 + rng.below(200) } else { 0 },
                };
                self.retention(ns, name, r);
                self.enforce_retention(ns, name);
            }
            52..=56 => self.enforce_retention(ns, name),
            57..=63 => {
                let g = *rng.pick(&GROUPS);
                if !groups.contains(&g) {
                    let op = GroupOp::Create {
                        cursor: first + rng.below(durable - first + 1),
                        ack_timeout_ms: 20 + rng.below(200),
                        max_deliveries: 1 + rng.below(3) as u32,
                    };
                    self.group(ns, name, g, op);
                }
            }
            64..=86 if !groups.is_empty() => {
                let (g, c) = (*rng.pick(&groups), *rng.pick(&CONSUMERS));
                self.read(ns, name, g, c, 1 + rng.index(12));
            }
            87..=97 if !groups.is_empty() => {
                let g = *rng.pick(&groups);
                let pending: Vec<u64> = s.groups[g].pending.keys().copied().collect();
                let mut offsets = Vec::new();
                if !pending.is_empty() {
                    offsets.extend((0..rng.index(6)).map(|_| *rng.pick(&pending)));
                }
                if offsets.is_empty() || rng.chance(20) {
                    offsets.push(durable + rng.below(3)); // not pending: ignored
                }
                self.group(ns, name, g, GroupOp::Ack(offsets));
            }
            98..=99 if !groups.is_empty() => {
                let g = *rng.pick(&groups);
                self.group(ns, name, g, GroupOp::Delete);
            }
            _ => {}
        }
    }
}

/// What a store shows: what `info`, reads, retention and group reads answer, and the state
/// behind them — all but the index points (a restored index can be finer) and the entry
/// byte total `cum` (its differences are what counts; `bytes` shows them).
pub(crate) fn observe(st: &StreamStore, log: &Log<SimFs>) -> Vec<String> {
    let mut counts: Vec<(String, u64)> = st.counts().into_iter().collect();
    counts.sort();
    let mut out = vec![format!(
        "clock {} records {} counts {counts:?}",
        st.clock,
        st.record_count()
    )];
    let mut keys = st.keys();
    keys.sort();
    for (ns, name) in keys {
        let s = st.get(&ns, &name).expect("stream");
        let bytes = s.bytes(&ns, &name, log, &st.segments).expect("bytes");
        let mut records = Vec::new();
        s.read(&ns, &name, log, &st.segments, 0, |o, at, p| {
            records.push((o, at, fnv(p)));
            true
        })
        .expect("read");
        let mut middle = Vec::new();
        let from = (s.first_offset + s.durable_next) / 2;
        s.read(&ns, &name, log, &st.segments, from, |o, _, _| {
            middle.push(o);
            middle.len() < 3
        })
        .expect("read from the middle");
        let cuts: Vec<u64> = [st.clock, st.clock + 1000, st.clock + 100_000]
            .iter()
            .map(|&now| s.retention_cut(&ns, &name, log, &st.segments, now).expect("cut"))
            .collect();
        out.push(format!(
                "{ns}/{name}: offsets {}..{}..{} in flight {} last_lsn {} {:?} bytes {bytes} cuts {cuts:?} from {from}: {middle:?}",
                s.first_offset,
                s.durable_next,
                s.next_offset,
                s.in_flight.len(),
                s.last_lsn,
                s.retention,
            ));
        out.push(format!("{ns}/{name} records {records:?}"));
        for (gname, g) in &s.groups {
            let mut ids: Vec<(&String, &u32)> = g.consumer_ids.iter().collect();
            ids.sort();
            out.push(format!(
                "{ns}/{name}/{gname}: cursor {} timeout {} max {} last_lsn {} pending {:?} deadlines {:?} \
                     consumers {:?} {ids:?} dead letters {:?} of {}",
                g.cursor,
                g.ack_timeout_ms,
                g.max_deliveries,
                g.last_lsn,
                g.pending,
                g.deadlines,
                g.consumers,
                g.dead_letters,
                g.dead_letter_count
            ));
            for now in [0, st.clock, st.clock + 100, st.clock + 100_000] {
                for count in [1, 5, 1000] {
                    let plan = g.plan_read(now, count, s.first_offset, s.durable_next);
                    out.push(format!("{ns}/{name}/{gname} read at {now} of {count}: {plan:?}"));
                }
            }
        }
    }
    out
}

pub(crate) fn same(a: &[String], b: &[String], what: &str) {
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x, y, "{what}");
    }
    assert_eq!(a.len(), b.len(), "{what}: lines");
}

/// Appends, trims and group operations left in flight: a stream made in flight, appends after
/// settled points, appends wholly trimmed before they are durable, and one trimmed to its middle.
fn in_flight_script(sh: &mut Shard, rng: &mut Rng) {
    let small = |rng: &mut Rng| -> Vec<Vec<u8>> {
        let n = 1 + rng.index(3);
        (0..n)
            .map(|_| {
                let len = 1 + rng.index(2000);
                payload(rng, len)
            })
            .collect()
    };
    for _ in 0..2 {
        let p = small(rng);
        sh.append("d", "fresh", &p);
    }
    for _ in 0..3 {
        let p = small(rng);
        sh.append("a", "s2", &p);
    }
    for _ in 0..3 {
        let p = small(rng);
        sh.append("a", "s1", &p);
    }
    let end_of_second = sh.appends[sh.appends.len() - 2].end;
    sh.trim("a", "s1", end_of_second);
    let four: Vec<Vec<u8>> = (0..4).map(|_| payload(rng, 100)).collect();
    sh.append("b", "t", &four);
    let p = small(rng);
    sh.append("b", "t", &p);
    let middle = sh.appends[sh.appends.len() - 2].first + 2;
    sh.trim("b", "t", middle);
    if sh.stream("b", "s1").is_some_and(|s| !s.groups.contains_key("g1")) {
        let first = sh.stream("b", "s1").expect("stream").first_offset;
        sh.group(
            "b",
            "s1",
            "g1",
            GroupOp::Create {
                cursor: first,
                ack_timeout_ms: 50,
                max_deliveries: 2,
            },
        );
    }
    if sh.stream("b", "s1").is_some() {
        sh.read("b", "s1", "g1", "w9", 3);
    }
    for _ in 0..15 {
        sh.step(rng);
    }
}

#[test]
fn a_restored_store_continues_like_the_live_store_and_a_full_replay() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let (log, _flusher) = open_log(fs.clone(), &mut StreamStore::default()).await;
        let mut sh = Shard::new(log, vec![StreamStore::default()], 1_700_000_000_000);
        let mut rng = Rng(0x5eed);
        for i in 0..300 {
            sh.step(&mut rng);
            // Otherwise entries stay in flight for the next steps.
            if i % 3 == 2 {
                sh.durable().await;
            }
        }
        sh.durable().await;
        assert!(sh.log.segments().len() >= 2, "the scenario spans segments");
        in_flight_script(&mut sh, &mut rng);

        // The snapshot, with appends in flight.
        // (namespace, stream, first offset, LSN) of the appends in flight.
        let unresolved: Vec<(&str, &str, u64, u64)> = sh
            .appends
            .iter()
            .filter(|a| a.ticket.placed().is_none())
            .map(|a| (a.ns, a.name, a.first, a.ticket.lsn))
            .collect();
        let stored: BTreeMap<u64, u64> = sh.appends.iter().map(|a| (a.ticket.lsn, a.stored)).collect();
        let stored_of = |lsn: u64| stored[&lsn];
        let (buf, pending, live) = encode(&sh.stores[0]);
        let (mut kept, mut dropped) = (Vec::new(), Vec::new());
        for a in &sh.appends {
            if a.ticket.placed().is_none() {
                let s = sh.stream(a.ns, a.name).expect("stream");
                if a.end > s.first_offset {
                    kept.push(a.ticket.lsn);
                } else {
                    dropped.push((a.ticket.lsn, a.stored));
                }
            }
        }
        let mut placeholders: Vec<u64> = pending.iter().map(|p| p.1).collect();
        placeholders.sort_unstable();
        let mut in_flight: Vec<u64> = kept.iter().chain(dropped.iter().map(|d| &d.0)).copied().collect();
        in_flight.sort_unstable();
        assert_eq!(placeholders, in_flight, "a placeholder per in-flight append");
        assert!(kept.len() >= 8 && dropped.len() >= 2, "{kept:?} {dropped:?}");

        // (a) Filled with made-up places, the section restores, settling the appends that
        // were in flight where the places say; a snapshot of that store is a fixed point, and
        // each kept append's bytes are live at its place.
        let fake = |lsn: u64| ((1u64 << 40) | lsn, 64 + 8 * lsn);
        let mut filled = buf.clone();
        for &(at, lsn) in &pending {
            let (segment, offset) = fake(lsn);
            fill_place(&mut filled, at, segment, offset);
        }
        let restored = decode(&filled).expect("restore");
        let (again, again_pending, again_live) = encode(&restored);
        assert!(again_pending.is_empty());
        assert!(
            encode(&decode(&again).expect("restore")).0 == again,
            "a settled store's snapshot is a fixed point"
        );
        let mut want = live.clone();
        for &lsn in &kept {
            *want.entry(fake(lsn).0).or_default() += stored_of(lsn);
        }
        assert_eq!(again_live, want);

        // The in-flight appends become durable and the live store settles them; the real
        // places fill the placeholders, and the restored store is the live one exactly:
        // index points, entry bytes and dead bytes per segment.
        sh.durable().await;
        let mut real = buf.clone();
        for &(at, lsn) in &pending {
            let pos = sh.position(lsn);
            fill_place(&mut real, at, pos.segment, pos.offset);
        }
        let restored = decode(&real).expect("restore");
        assert!(
            encode(&restored).0 == encode(&sh.stores[0]).0,
            "restored is the live store once settled"
        );
        assert_eq!(dead_map(&restored), dead_map(&sh.stores[0]), "dead bytes per segment");
        assert!(
            dropped
                .iter()
                .all(|(lsn, _)| dead_map(&restored).contains_key(&sh.position(*lsn).segment)),
            "an append trimmed in flight is dead where it landed"
        );

        // Live bytes are exactly, per segment, those of each stream's entries from its first
        // point on (where reads walk from).
        let (_, _, again_live) = encode(&restored);
        let mut truth: BTreeMap<u64, u64> = BTreeMap::new();
        for a in &sh.appends {
            let s = sh.stream(a.ns, a.name).expect("stream");
            if s.points.front().is_some_and(|p| a.first >= p.offset) {
                *truth.entry(sh.position(a.ticket.lsn).segment).or_default() += a.stored;
            }
        }
        assert_eq!(again_live, truth, "live bytes per segment");
        let mut with_placeholders = live.clone();
        for &lsn in &kept {
            *with_placeholders.entry(sh.position(lsn).segment).or_default() += stored_of(lsn);
        }
        assert_eq!(
            with_placeholders, truth,
            "live bytes of the snapshot and its kept appends' places"
        );
        let _ = &unresolved;

        // (b) From here on every entry goes to both stores; they answer alike throughout.
        same(
            &observe(&sh.stores[0], &sh.log),
            &observe(&restored, &sh.log),
            "restored",
        );
        sh.add_store(restored);
        for i in 0..300 {
            sh.step(&mut rng);
            if i % 3 == 2 {
                sh.durable().await;
                same(
                    &observe(&sh.stores[0], &sh.log),
                    &observe(&sh.stores[1], &sh.log),
                    "after more entries",
                );
            }
        }
        sh.durable().await;
        let (live_view, restored_view) = (observe(&sh.stores[0], &sh.log), observe(&sh.stores[1], &sh.log));
        same(&live_view, &restored_view, "at the end");

        // And as a full replay of the whole log does.
        let image = fs.crash(1, CrashMode::KeepAll);
        let mut full = StreamStore::default();
        let (log, _flusher) = open_log(image, &mut full).await;
        same(&observe(&full, &log), &restored_view, "full replay");
    });
}

// ---- A small store built as replay builds it, for damaged input.

fn small_store() -> StreamStore {
    let mut st = StreamStore::default();
    let mut lsn = 0;
    let mut append = |st: &mut StreamStore, ns: &str, name: &str, count: u32, at: (u64, u64)| {
        lsn += 1;
        let first = st.get(ns, name).map_or(0, |s| s.next_offset);
        let at_ms = 5000 + 10 * lsn;
        st.clock = st.clock.max(at_ms);
        let pos = Position {
            lsn,
            segment: at.0,
            offset: at.1,
        };
        st.apply_append(ns, name, first, count, 1000 + 8 * lsn, at_ms, lsn, At::Placed(pos))
            .expect("append");
    };
    append(&mut st, "a", "s", 10, (1, 64));
    append(&mut st, "a", "t", 5, (1, 1100));
    append(&mut st, "a", "s", 10, (1, 2200));
    append(&mut st, "a", "s", 10, (1, 64 + POINT_STRIDE));
    append(&mut st, "b", "s", 3, (9, 64));
    append(&mut st, "a", "s", 10, (9, 2000));
    append(&mut st, "a", "t", 5, (9, 3000));
    st.apply_trim("a", "t", 10, 20).expect("trim");
    st.apply_trim("a", "s", 12, 21).expect("trim");
    let r = Retention {
        max_age_ms: 0,
        max_bytes: 1 << 20,
        max_records: 30,
    };
    st.apply_retention("b", "s", r, 22).expect("retention");
    let create = GroupOp::Create {
        cursor: 12,
        ack_timeout_ms: 100,
        max_deliveries: 2,
    };
    st.apply_group("a", "s", "g", &create, 23).expect("create");
    st.apply_group("a", "s", "h", &create, 24).expect("create");
    let read = |st: &mut StreamStore, now: u64, consumer: &str, n: usize, lsn: u64| {
        let s = st.get("a", "s").expect("stream");
        let p = s.groups["g"].plan_read(now, n, s.first_offset, s.durable_next);
        let op = GroupOp::Read(Read {
            consumer,
            deadline_ms: now + 100,
            new_from: p.new_from,
            cursor: p.cursor,
            redelivered: p.redelivered,
            given_up: p.given_up,
        });
        st.apply_group("a", "s", "g", &op, lsn).expect("read");
    };
    read(&mut st, 6000, "w1", 4, 25);
    read(&mut st, 6050, "w2", 4, 26);
    st.apply_group("a", "s", "g", &GroupOp::Ack(vec![13]), 27).expect("ack");
    read(&mut st, 6150, "w2", 4, 28);
    read(&mut st, 6300, "w1", 8, 29);
    let g = &st.get("a", "s").expect("stream").groups["g"];
    assert!(g.dead_letter_count > 0 && g.pending_count() > 0 && g.consumer_count() == 2);
    st
}

#[test]
fn an_empty_store_is_a_version_and_three_zeros() {
    let (buf, pending, live) = encode(&StreamStore::default());
    let mut want = STREAM_SECTION_VERSION.to_le_bytes().to_vec();
    want.extend_from_slice(&[0; 24]);
    assert_eq!((buf.clone(), pending.len(), live.len()), (want, 0, 0));
    let st = decode(&buf).expect("restore");
    assert_eq!((st.clock, st.keys().len(), st.segments.first_lsn.len()), (0, 0, 0));
}

#[test]
fn damaged_sections_are_refused_without_panicking() {
    let st = small_store();
    let (buf, pending, _) = encode(&st);
    assert!(pending.is_empty());
    assert!(encode(&decode(&buf).expect("restore")).0 == buf);
    for n in 0..buf.len() {
        assert!(decode(&buf[..n]).is_err(), "a prefix of {n} bytes accepted");
    }
    let mut long = buf.clone();
    long.push(0);
    assert!(decode(&long).is_err(), "a byte left over");
    let mut version = buf.clone();
    version[0] = 3;
    assert!(decode(&version).expect_err("refused").contains("version 3"));
    // A flipped byte is refused, or it changed a value that no check can tell from another
    // (a clock, a deadline, a name's letter): then the store re-encodes to the same bytes.
    let (mut refused, mut accepted) = (0, 0);
    for i in 0..buf.len() {
        for mask in [0x01u8, 0x10, 0x80, 0xff] {
            let mut b = buf.clone();
            b[i] ^= mask;
            match decode(&b) {
                Err(e) => {
                    assert!(!e.is_empty());
                    refused += 1;
                }
                Ok(st) => {
                    assert!(encode(&st).0 == b, "byte {i} ^ {mask:#x}: accepted, but not as written");
                    accepted += 1;
                }
            }
        }
    }
    assert!(refused > accepted, "{refused} refused, {accepted} accepted");
    // Random damage anywhere, and random bytes after a valid version.
    let mut rng = Rng(11);
    for _ in 0..3000 {
        let mut b = buf.clone();
        for _ in 0..1 + rng.index(4) {
            let i = rng.index(b.len());
            b[i] = rng.next_u64() as u8;
        }
        if let Ok(st) = decode(&b) {
            assert!(encode(&st).0 == b);
        }
        let mut g = 1u32.to_le_bytes().to_vec();
        g.extend((0..rng.index(200)).map(|_| if rng.chance(50) { 0 } else { rng.next_u64() as u8 }));
        if let Ok(st) = decode(&g) {
            assert!(encode(&st).0 == g);
        }
    }
}

// ---- Sections written from format-spec/snapshot-stream.md alone, and the checks.

#[derive(Clone)]
struct SpecSection {
    version: u32,
    clock: u64,
    dead: Vec<(u64, u64)>,
    namespaces: Vec<(String, Vec<SpecStream>)>,
}

#[derive(Clone)]
struct SpecStream {
    name: String,
    first: u64,
    next: u64,
    /// Version 2 only.
    durable: u64,
    cum: u64,
    last_lsn: u64,
    retention: [u64; 3],
    /// offset, at_ms, cum, segment, segment offset
    points: Vec<[u64; 5]>,
    /// Version 2 only: first offset, record count, at_ms, stored bytes, segment, offset.
    in_flight: Vec<(u64, u32, u64, u64, u64, u64)>,
    groups: Vec<SpecGroup>,
}

#[derive(Clone)]
struct SpecGroup {
    name: String,
    cursor: u64,
    ack_timeout_ms: u64,
    max_deliveries: u32,
    last_lsn: u64,
    consumers: Vec<String>,
    /// offset, consumer, deliveries, deadline
    pending: Vec<(u64, u32, u32, u64)>,
    dead_letter_count: u64,
    dead_letters: Vec<u64>,
}

fn spec_bytes(s: &SpecSection) -> Vec<u8> {
    let mut b = Vec::new();
    let u64s = |b: &mut Vec<u8>, v: &[u64]| v.iter().for_each(|x| b.extend_from_slice(&x.to_le_bytes()));
    let text = |b: &mut Vec<u8>, t: &str| {
        b.extend_from_slice(&(t.len() as u32).to_le_bytes());
        b.extend_from_slice(t.as_bytes());
    };
    b.extend_from_slice(&s.version.to_le_bytes());
    u64s(&mut b, &[s.clock, s.dead.len() as u64]);
    for &(segment, bytes) in &s.dead {
        u64s(&mut b, &[segment, bytes]);
    }
    u64s(&mut b, &[s.namespaces.len() as u64]);
    for (ns, streams) in &s.namespaces {
        text(&mut b, ns);
        u64s(&mut b, &[streams.len() as u64]);
        for st in streams {
            text(&mut b, &st.name);
            u64s(&mut b, &[st.first, st.next]);
            if s.version >= 2 {
                u64s(&mut b, &[st.durable]);
            }
            u64s(&mut b, &[st.cum, st.last_lsn]);
            u64s(&mut b, &st.retention);
            u64s(&mut b, &[st.points.len() as u64]);
            for p in &st.points {
                u64s(&mut b, p);
            }
            if s.version >= 2 {
                u64s(&mut b, &[st.in_flight.len() as u64]);
                for &(first, count, at_ms, stored, segment, offset) in &st.in_flight {
                    u64s(&mut b, &[first]);
                    b.extend_from_slice(&count.to_le_bytes());
                    u64s(&mut b, &[at_ms, stored, segment, offset]);
                }
            }
            u64s(&mut b, &[st.groups.len() as u64]);
            for g in &st.groups {
                text(&mut b, &g.name);
                u64s(&mut b, &[g.cursor, g.ack_timeout_ms]);
                b.extend_from_slice(&g.max_deliveries.to_le_bytes());
                u64s(&mut b, &[g.last_lsn, g.consumers.len() as u64]);
                for c in &g.consumers {
                    text(&mut b, c);
                }
                u64s(&mut b, &[g.pending.len() as u64]);
                for &(offset, consumer, deliveries, deadline) in &g.pending {
                    u64s(&mut b, &[offset]);
                    b.extend_from_slice(&consumer.to_le_bytes());
                    b.extend_from_slice(&deliveries.to_le_bytes());
                    u64s(&mut b, &[deadline]);
                }
                u64s(&mut b, &[g.dead_letter_count, g.dead_letters.len() as u64]);
                u64s(&mut b, &g.dead_letters);
            }
        }
    }
    b
}

fn spec_base() -> SpecSection {
    let group = SpecGroup {
        name: "g".into(),
        cursor: 35,
        ack_timeout_ms: 100,
        max_deliveries: 3,
        last_lsn: 31,
        consumers: vec!["w2".into(), "w1".into()],
        pending: vec![(16, 0, 1, 1500), (30, 1, 2, 1400)],
        dead_letter_count: 5,
        dead_letters: vec![14, 12],
    };
    let s = SpecStream {
        name: "s".into(),
        first: 15,
        next: 40,
        durable: 40,
        cum: 4000,
        last_lsn: 30,
        retention: [0, 0, 25],
        points: vec![
            [10, 1000, 1000, 1, 64],
            [20, 1200, 2000, 9, 64],
            [30, 1300, 3000, 9, 70_000],
        ],
        in_flight: vec![],
        groups: vec![group],
    };
    let t = SpecStream {
        name: "t".into(),
        first: 3,
        next: 3,
        durable: 3,
        cum: 500,
        last_lsn: 12,
        retention: [0; 3],
        points: vec![],
        in_flight: vec![],
        groups: vec![],
    };
    SpecSection {
        version: 2,
        clock: 5000,
        dead: vec![(1, 100), (9, 50)],
        namespaces: vec![("a".into(), vec![s, t.clone()]), ("b".into(), vec![t])],
    }
}

#[test]
fn a_section_written_from_the_spec_restores_and_re_encodes_identically() {
    let bytes = spec_bytes(&spec_base());
    let st = decode(&bytes).expect("restore");
    assert!(encode(&st).0 == bytes);
    let s = st.get("a", "s").expect("stream");
    assert_eq!(
        (s.first_offset, s.durable_next, s.next_offset, s.record_count()),
        (15, 40, 40, 25)
    );
    assert_eq!(s.points.len(), 3);
    assert_eq!(st.segments.place(s.points[2].loc), (9, 70_000));
    let g = &s.groups["g"];
    assert_eq!(g.consumers(), ["w1", "w2"]);
    assert_eq!((g.pending[&30].consumer, g.deliveries(30)), (1, Some(2)));
    assert_eq!(g.next_deadline(), Some(1400));
    assert_eq!((g.dead_letters(), g.dead_letter_count), (vec![14, 12], 5));
    assert_eq!(st.dead_bytes(), 150);
    assert_eq!(st.get("b", "t").expect("stream").record_count(), 0);
}

#[test]
fn appends_in_flight_are_settled_on_restore_as_the_live_store_settles_them() {
    let mut x = spec_base();
    {
        let s = &mut x.namespaces[0].1[0];
        s.durable = 36;
        // Records 36..38 in segment 9 less than a stride after the last point (no point of
        // their own), 38..40 in segment 12 (a point: a new segment).
        s.in_flight = vec![(36, 2, 1400, 80, 9, 70_200), (38, 2, 1400, 96, 12, 64)];
    }
    let st = decode(&spec_bytes(&x)).expect("restore");
    let s = st.get("a", "s").expect("stream");
    assert_eq!((s.durable_next, s.next_offset, s.cum), (40, 40, 4000 + 80 + 96));
    let points: Vec<(u64, (u64, u64), u64)> = s
        .points
        .iter()
        .map(|p| (p.offset, st.segments.place(p.loc), p.cum))
        .collect();
    assert_eq!(
        points[2..],
        [(30, (9, 70_000), 3000), (38, (12, 64), 4080)],
        "a point where settling makes one, none where it does not"
    );
    // Re-encoded, the appends are settled: a version 2 section without appends in flight.
    let (again, pending, _) = encode(&st);
    assert!(pending.is_empty());
    assert!(decode(&again).is_ok());
    // An append trimmed before it was durable is dead where it landed.
    let mut y = spec_base();
    {
        let s = &mut y.namespaces[1].1[0];
        s.next = 5;
        s.first = 5;
        s.in_flight = vec![(3, 2, 1400, 80, 9, 128)];
    }
    let st = decode(&spec_bytes(&y)).expect("restore");
    assert_eq!(st.dead_bytes(), 150 + 80);
    for (want, bad) in [
        ("after offset 36", vec![(37, 2, 1400, 80, 9, 70_200)]),
        ("past the next offset", vec![(36, 5, 1400, 80, 9, 70_200)]),
        ("not the stored size", vec![(36, 4, 1400, 81, 9, 70_200)]),
        ("past the clock", vec![(36, 4, 6000, 80, 9, 70_200)]),
        ("only up to 38", vec![(36, 2, 1400, 80, 9, 70_200)]),
    ] {
        let mut z = x.clone();
        z.namespaces[0].1[0].in_flight = bad;
        let err = decode(&spec_bytes(&z))
            .err()
            .unwrap_or_else(|| panic!("accepted: {want}"));
        assert!(err.contains(want), "{want:?} expected, got {err:?}");
    }
}

#[test]
fn version_one_sections_are_still_read() {
    let mut x = spec_base();
    x.version = 1;
    let st = decode(&spec_bytes(&x)).expect("restore");
    let s = st.get("a", "s").expect("stream");
    assert_eq!((s.durable_next, s.next_offset, s.points.len()), (40, 40, 3));
    let mut v2 = spec_base();
    v2.version = 2;
    assert!(encode(&st).0 == spec_bytes(&v2), "written again as version 2");
}

#[test]
fn inconsistent_sections_are_refused() {
    type Damage = fn(&mut SpecSection);
    fn s(x: &mut SpecSection) -> &mut SpecStream {
        &mut x.namespaces[0].1[0]
    }
    fn g(x: &mut SpecSection) -> &mut SpecGroup {
        &mut s(x).groups[0]
    }
    let cases: [(&str, Damage); 31] = [
        ("format version 3", |x| x.version = 3),
        ("not in increasing order", |x| x.dead.swap(0, 1)),
        ("0 dead bytes", |x| x.dead[0].1 = 0),
        ("0, or not in increasing order", |x| x.dead[0].0 = 0),
        ("sorted order", |x| x.namespaces.swap(0, 1)),
        ("sorted order", |x| x.namespaces[1].0 = "a".into()),
        ("no streams", |x| x.namespaces[1].1.clear()),
        ("sorted order", |x| x.namespaces[0].1.swap(0, 1)),
        ("not 1..=128", |x| x.namespaces[1].0 = String::new()),
        ("not 1..=128", |x| s(x).name = "x".repeat(129)),
        ("past the next offset", |x| s(x).first = 41),
        ("more records than entries", |x| s(x).last_lsn = 0),
        ("does not follow", |x| s(x).points.swap(1, 2)),
        ("does not follow", |x| s(x).points[1][2] = 1000),
        ("does not follow", |x| s(x).points[1][1] = 999),
        ("past the next offset", |x| s(x).durable = 41),
        ("not below the durable next offset", |x| {
            s(x).next = 30;
            s(x).durable = 30;
        }),
        ("past the stream clock", |x| x.clock = 1250),
        ("do not hold the first offset", |x| s(x).first = 22),
        ("do not hold the first offset", |x| s(x).first = 9),
        ("no index point", |x| {
            x.namespaces[1].1[0].next = 4;
            x.namespaces[1].1[0].durable = 4;
        }),
        ("not past the last index point", |x| s(x).cum = 3000),
        ("never filled", |x| s(x).points[0][3] = 0),
        ("past any segment", |x| s(x).points[0][4] = 1 << 32),
        ("past the stream's next offset", |x| g(x).cursor = 41),
        ("max_deliveries 0", |x| g(x).max_deliveries = 0),
        ("listed twice", |x| g(x).consumers[1] = "w2".into()),
        ("outside [first offset 15, cursor 35)", |x| g(x).pending[1].0 = 35),
        ("not in increasing order", |x| g(x).pending.swap(0, 1)),
        ("leased to consumer 2 of 2", |x| g(x).pending[0].1 = 2),
        ("delivered 0 times", |x| g(x).pending[0].2 = 0),
    ];
    for (want, damage) in cases {
        let mut x = spec_base();
        damage(&mut x);
        let err = decode(&spec_bytes(&x))
            .err()
            .unwrap_or_else(|| panic!("accepted: {want}"));
        assert!(err.contains(want), "{want:?} expected, got {err:?}");
    }
    let more: [(&str, Damage); 4] = [
        ("outside [first offset 15", |x| g(x).pending[0].0 = 14),
        ("of 1 (at most 100", |x| g(x).dead_letter_count = 1),
        ("never delivered", |x| g(x).dead_letters[0] = 35),
        ("of 1000 (at most 100 are kept)", |x| {
            g(x).dead_letter_count = 1000;
            g(x).dead_letters = (0..101).collect();
        }),
    ];
    for (want, damage) in more {
        let mut x = spec_base();
        damage(&mut x);
        let err = decode(&spec_bytes(&x))
            .err()
            .unwrap_or_else(|| panic!("accepted: {want}"));
        assert!(err.contains(want), "{want:?} expected, got {err:?}");
    }
    // Counts the rest of the input cannot hold are refused before anything is allocated.
    let mut b = spec_bytes(&spec_base());
    b[12..20].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = decode(&b).expect_err("refused");
    assert!(err.contains("cannot fit"), "{err}");
    // Errors name where they are.
    let mut x = spec_base();
    g(&mut x).pending[0].2 = 0;
    let err = decode(&spec_bytes(&x)).expect_err("refused");
    assert!(err.starts_with("stream a/s: group g: "), "{err}");
}
