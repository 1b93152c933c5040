use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::log::format::SEGMENT_HEADER_BYTES;
use crate::log::sim::{CrashMode, SimFs};
use crate::log::Log;
use crate::stream::state::snapshot::tests::{
    dead_map, decode, encode, observe, open_log, payload, runtime, same, Shard, STREAMS,
};
use crate::test_rng::Rng;

/// The control store: told nothing of compaction, it keeps reading the victims (which the
/// tests never delete). Every other store relocates.
const CONTROL: usize = 1;

fn encode_copy(from: (u64, u64), t: u16, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(COPY_HEAD_BYTES + body.len());
    b.extend_from_slice(&from.0.to_le_bytes());
    b.extend_from_slice(&from.1.to_le_bytes());
    b.extend_from_slice(&t.to_le_bytes());
    b.extend_from_slice(&[0; 6]);
    b.extend_from_slice(body);
    b
}

/// Everything a store holds, index points by place included: what a replay of the same
/// entries must rebuild exactly.
fn exact(st: &StreamStore) -> Vec<String> {
    let mut out = vec![format!("clock {} dead {:?}", st.clock, dead_map(st))];
    let mut keys = st.keys();
    keys.sort();
    for (ns, name) in keys {
        let s = st.get(&ns, &name).expect("stream");
        let points: Vec<(u64, (u64, u64), u64, u64)> = s
            .points
            .iter()
            .map(|p| (p.offset, st.segments.place(p.loc), p.at_ms, p.cum))
            .collect();
        out.push(format!(
            "{ns}/{name}: {}..{}..{} cum {} last_lsn {} {:?} in flight {} points {points:?}",
            s.first_offset,
            s.durable_next,
            s.next_offset,
            s.cum,
            s.last_lsn,
            s.retention,
            s.in_flight.len()
        ));
        for (g, x) in &s.groups {
            out.push(format!(
                "{ns}/{name}/{g}: {} {} {} {} {:?} {:?} {:?} {:?} {}",
                x.cursor,
                x.ack_timeout_ms,
                x.max_deliveries,
                x.last_lsn,
                x.pending,
                x.deadlines,
                x.consumers,
                x.dead_letters,
                x.dead_letter_count
            ));
        }
    }
    out
}

/// (place, type, body) of every entry of a segment, copies as their originals: what the
/// compactor walks.
fn segment_entries(log: &Log<SimFs>, segment: u64) -> Vec<((u64, u64), u16, Vec<u8>)> {
    let (_, bytes) = *log.segments().iter().find(|s| s.0 == segment).expect("the segment");
    let end = SEGMENT_HEADER_BYTES as u64 + bytes;
    let entries = log.segment_entries(segment).expect("map the segment");
    let mut out = Vec::new();
    let mut offset = SEGMENT_HEADER_BYTES as u64;
    while offset < end {
        let (e, next) = entries.entry(offset).expect("an entry");
        let (t, body) = original(e.entry_type, e.body);
        out.push(((segment, offset), t, body.to_vec()));
        offset = next;
    }
    out
}

/// What every relocating store answers alike.
fn relocating<T: PartialEq + std::fmt::Debug>(sh: &mut Shard, mut f: impl FnMut(&mut StreamStore) -> T) -> T {
    let mut v: Option<T> = None;
    for (i, st) in sh.stores.iter_mut().enumerate() {
        if i == CONTROL {
            continue;
        }
        let x = f(st);
        match &v {
            None => v = Some(x),
            Some(y) => assert_eq!(&x, y, "store {i} answers otherwise than the live store"),
        }
    }
    v.expect("a relocating store")
}

/// A copy the compactor made: where, of which stream, in which chunk, and whether live.
#[derive(Debug)]
struct Copy {
    to: Position,
    stream: (String, String),
    chunk: usize,
    live: bool,
}

/// Copies the entries of `victim` the streams need to the log's tail as `RELOCATED` entries,
/// as the compactor does: walking the victim in chunks of about `chunk` bytes of copies,
/// relocating each chunk once it is durable. With `busy`, between chunks every stream with
/// entries in the victim gets a new append, then `steps` random operations run, and a store
/// restored from a snapshot of the live one after the first chunk joins the relocating ones.
async fn compact(sh: &mut Shard, rng: &mut Rng, victim: u64, chunk: usize, busy: Option<usize>) -> Vec<Copy> {
    let entries = segment_entries(&sh.log, victim);
    let streams: BTreeSet<(&'static str, &'static str)> = STREAMS
        .iter()
        .copied()
        .filter(|&(ns, name)| {
            entries
                .iter()
                .any(|(_, t, b)| *t == ENTRY_STREAM_APPEND && is_of(b, ns, name))
        })
        .collect();
    let mut out = Vec::new();
    let mut next = 0;
    while next < entries.len() {
        let mut copies = Vec::new();
        let mut bytes = 0;
        while next < entries.len() && bytes < chunk {
            let (from, t, body) = &entries[next];
            if relocating(sh, |st| st.needs(*from, *t, body)) {
                let copy = encode_copy(*from, *t, body);
                bytes += copy.len();
                let ticket = sh.log.append(ENTRY_RELOCATED, &copy).expect("append a copy");
                copies.push((next, ticket));
            }
            next += 1;
        }
        if copies.is_empty() {
            continue;
        }
        sh.durable().await;
        let k = out.last().map_or(0, |c: &Copy| c.chunk + 1);
        for (j, ticket) in copies {
            let (from, t, body) = &entries[j];
            let to = ticket.placed().expect("durable").expect("placed");
            let live = relocating(sh, |st| st.relocate(*from, &to, *t, body).expect("relocate"));
            let a = decode_append(body).expect("an append");
            let stream = (a.head.namespace.to_string(), a.head.name.to_string());
            out.push(Copy {
                to,
                stream,
                chunk: k,
                live,
            });
        }
        let Some(steps) = busy else {
            continue;
        };
        if k == 0 {
            let (buf, pending, _) = encode(&sh.stores[0]);
            assert!(pending.is_empty());
            sh.add_store(decode(&buf).expect("restore"));
        }
        if next < entries.len() {
            for &(ns, name) in &streams {
                let p = vec![payload(rng, 100)];
                sh.append(ns, name, &p);
            }
            sh.durable().await;
            for _ in 0..steps {
                sh.step(rng);
                sh.durable().await;
            }
        }
    }
    out
}

/// Stored bytes of the stream appends in a segment, and of their copies (whole).
fn stream_bytes(log: &Log<SimFs>, segment: u64) -> u64 {
    let (_, bytes) = *log.segments().iter().find(|s| s.0 == segment).expect("the segment");
    let entries = log.segment_entries(segment).expect("map the segment");
    let mut offset = SEGMENT_HEADER_BYTES as u64;
    let mut sum = 0;
    while offset < SEGMENT_HEADER_BYTES as u64 + bytes {
        let (e, next) = entries.entry(offset).expect("an entry");
        if original(e.entry_type, e.body).0 == ENTRY_STREAM_APPEND {
            sum += next - offset;
        }
        offset = next;
    }
    sum
}

/// Checks a compacted victim: no relocating store has a point in it, nothing in it is
/// needed any more, a snapshot counts no live bytes in it, and every stream append in it
/// (original or copy) is counted dead; and reads with the victim made unreadable answer as
/// the control's, which reads it.
fn check_compacted(sh: &mut Shard, victim: u64) {
    let log = sh.log.clone();
    let control = observe(&sh.stores[CONTROL], &log);
    let all = stream_bytes(&log, victim);
    for (i, st) in sh.stores.iter_mut().enumerate() {
        if i == CONTROL {
            continue;
        }
        for (ns, name) in st.keys() {
            let s = st.get(&ns, &name).expect("stream");
            for p in &s.points {
                let segment = st.segments.place(p.loc).0;
                assert_ne!(segment, victim, "store {i}: {ns}/{name} still reads the victim");
            }
        }
        for (from, t, body) in segment_entries(&log, victim) {
            assert!(!st.needs(from, t, &body), "store {i}: {from:?} still needed");
        }
        let (_, _, live) = encode(st);
        assert_eq!(live.get(&victim), None, "store {i}: live bytes in the victim");
        assert_eq!(
            dead_map(st).get(&victim),
            Some(&all),
            "store {i}: dead bytes of the victim"
        );
        // The victim unreadable: a read that went to it would fail.
        let ordinal = st.segments.ordinal(victim) as usize;
        st.segments.first_lsn[ordinal] = u64::MAX;
        let view = observe(st, &log);
        st.segments.first_lsn[ordinal] = victim;
        same(
            &view,
            &control,
            &format!("store {i}, the victim unreadable, against the control"),
        );
    }
}

/// A random operation that keeps most records: appends (small and large records), small
/// trims, group creation, reads and acks.
fn grow(sh: &mut Shard, rng: &mut Rng) {
    sh.now += rng.below(40);
    let (ns, name) = *rng.pick(&STREAMS);
    let Some(s) = sh.stream(ns, name).filter(|_| rng.chance(25)) else {
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
        sh.append(ns, name, &payloads);
        return;
    };
    let (first, durable) = (s.first_offset, s.durable_next);
    let group = s.groups.contains_key("g1");
    let pending: Vec<u64> = s
        .groups
        .get("g1")
        .map(|g| g.pending.keys().copied().collect())
        .unwrap_or_default();
    match rng.below(4) {
        0 => sh.trim(ns, name, first + rng.below((durable - first).min(6) + 1)),
        1 if !group => {
            let op = GroupOp::Create {
                cursor: first,
                ack_timeout_ms: 20 + rng.below(100),
                max_deliveries: 2,
            };
            sh.group(ns, name, "g1", op);
        }
        2 if !pending.is_empty() => {
            let acks = vec![*rng.pick(&pending)];
            sh.group(ns, name, "g1", GroupOp::Ack(acks));
        }
        _ if group => sh.read(ns, name, "g1", "w1", 1 + rng.index(12)),
        _ => {}
    }
}

#[test]
fn relocated_streams_read_as_before_and_replay_to_the_live_state() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let (log, _flusher) = open_log(fs.clone(), &mut StreamStore::default()).await;
        let mut sh = Shard::new(
            log.clone(),
            vec![StreamStore::default(), StreamStore::default()],
            1_700_000_000_000,
        );
        let mut rng = Rng(0xc0ffee);
        // Each step durable before the next, so that the live stores are what a replay
        // builds (a trim of appends still in flight is not: see snapshot.rs); until the tail
        // segment is mostly full, so that the copies spill into the next one.
        while log.segments().len() < 3 || log.segments().last().is_some_and(|s| s.1 < 700 * 1024) {
            grow(&mut sh, &mut rng);
            sh.durable().await;
        }
        let victim = log.segments()[0].0;
        let interleaved: BTreeSet<(&str, &str)> = sh
            .appends
            .iter()
            .filter(|a| sh.position(a.ticket.lsn).segment == victim)
            .map(|a| (a.ns, a.name))
            .collect();
        assert!(
            interleaved.len() >= 4,
            "streams interleaved in the victim: {interleaved:?}"
        );

        // The first victim: copies in chunks, with new appends of the same streams and
        // random operations between chunks, and a store restored mid-way.
        let copies = compact(&mut sh, &mut rng, victim, 24 * 1024, Some(2)).await;
        assert_eq!(sh.stores.len(), 3, "the restored store joined");
        let live = copies.iter().filter(|c| c.live).count();
        assert!(
            live > 20 && live < copies.len(),
            "{live} of {} copies live",
            copies.len()
        );
        let tails: BTreeSet<u64> = copies.iter().map(|c| c.to.segment).collect();
        assert!(tails.len() >= 2, "the copies span two tail segments: {tails:?}");
        let split = copies.iter().any(|c| {
            copies
                .iter()
                .any(|d| d.live && c.live && d.stream == c.stream && d.chunk == c.chunk + 1)
        });
        assert!(split, "a stream's copies in two chunks, with an append of it between");
        // Copies of interleaved streams continue their runs: few points are at copies.
        let at_copies: BTreeSet<(u64, u64)> = copies.iter().map(|c| (c.to.segment, c.to.offset)).collect();
        let st = &sh.stores[0];
        let runs = st
            .keys()
            .iter()
            .flat_map(|(ns, name)| st.get(ns, name).expect("stream").points.iter())
            .filter(|p| at_copies.contains(&st.segments.place(p.loc)))
            .count();
        assert!(runs * 2 < live, "{runs} points at {live} live copies");
        check_compacted(&mut sh, victim);

        // Life goes on (appends, trims, retention, group reads and acks), as for the control.
        for _ in 0..150 {
            sh.step(&mut rng);
            sh.durable().await;
        }
        sh.agreed(|st| observe(st, &log));

        // The first tail segment, copies and all, is a victim in turn (copies of copies),
        // with nothing else happening: every answer is the one from before.
        let tail = *tails.first().expect("a tail segment");
        while log.segments().last().expect("a segment").0 == tail {
            sh.step(&mut rng);
            sh.durable().await;
        }
        let before = sh.agreed(|st| observe(st, &log));
        let again = compact(&mut sh, &mut rng, tail, 64 * 1024, None).await;
        assert!(again.iter().any(|c| c.live), "live copies of copies");
        same(
            &sh.agreed(|st| observe(st, &log)),
            &before,
            "after the second compaction",
        );
        check_compacted(&mut sh, tail);
        check_compacted(&mut sh, victim);
        for _ in 0..50 {
            sh.step(&mut rng);
            sh.durable().await;
        }
        sh.agreed(|st| observe(st, &log));

        // A snapshot of the compacted store restores exactly and re-encodes to its bytes.
        let (buf, _, _) = encode(&sh.stores[0]);
        let restored = decode(&buf).expect("restore");
        same(&exact(&restored), &exact(&sh.stores[0]), "restored");
        assert!(encode(&restored).0 == buf, "re-encoding changes the bytes");

        // A full replay, RELOCATED entries and all, rebuilds the live state exactly.
        let image = fs.crash(1, CrashMode::KeepAll);
        let mut full = StreamStore::default();
        let (replayed, _flusher) = open_log(image, &mut full).await;
        same(&exact(&full), &exact(&sh.stores[0]), "full replay");
        let control = observe(&sh.stores[CONTROL], &log);
        same(&observe(&full, &replayed), &control, "full replay's answers");
    });
}

/// Appends a copy of each entry (place, type, body), waits until they are durable (without
/// settling the streams), and gives their places.
async fn copy(sh: &Shard, entries: &[&((u64, u64), u16, Vec<u8>)]) -> Vec<Position> {
    let mut tickets = Vec::new();
    for (from, t, body) in entries {
        let b = encode_copy(*from, *t, body);
        sh.log.room(b.len()).await;
        tickets.push(sh.log.append(ENTRY_RELOCATED, &b).expect("append a copy"));
    }
    let mut places = Vec::new();
    for t in tickets {
        places.push(t.await.expect("durable"));
    }
    places
}

#[test]
fn needs_and_relocate_at_the_edges() {
    let mut rt = runtime();
    rt.block_on(async {
        let fs = SimFs::new();
        let (log, _flusher) = open_log(fs.clone(), &mut StreamStore::default()).await;
        let mut sh = Shard::new(
            log.clone(),
            vec![StreamStore::default(), StreamStore::default()],
            1_700_000_000_000,
        );
        let mut rng = Rng(7);
        let small = |rng: &mut Rng| -> Vec<Vec<u8>> { (0..3).map(|_| payload(rng, 200)).collect() };
        // x: X0..X5 of 3 records each; y: Y0..Y2; z: two appends, then trimmed to its end.
        for i in 0..6 {
            let p = small(&mut rng);
            sh.append("a", "x", &p);
            if i % 2 == 0 {
                let p = small(&mut rng);
                sh.append("a", "y", &p);
            }
            if i < 2 {
                let p = small(&mut rng);
                sh.append("a", "z", &p);
            }
            sh.durable().await;
        }
        sh.trim("a", "z", 6);
        let r = Retention {
            max_age_ms: 0,
            max_bytes: 0,
            max_records: 1000,
        };
        sh.retention("a", "y", r);
        let create = GroupOp::Create {
            cursor: 0,
            ack_timeout_ms: 100,
            max_deliveries: 2,
        };
        sh.group("a", "x", "g1", create);
        sh.read("a", "x", "g1", "w1", 5);
        // X0 wholly trimmed, X1 in part: the first point still walks over X0.
        sh.trim("a", "x", 4);
        sh.durable().await;
        // X6 and the fill: durable, but not settled.
        let p = small(&mut rng);
        sh.append("a", "x", &p);
        let victim = log.segments()[0].0;
        while log.segments().len() < 2 {
            let p: Vec<Vec<u8>> = (0..4).map(|_| payload(&mut rng, 40_000)).collect();
            sh.append("b", "fill", &p);
            log.wait_durable(log.next_lsn() - 1).await.expect("durable");
        }
        let entries = segment_entries(&log, victim);
        let of = |e: &((u64, u64), u16, Vec<u8>)| -> Option<(String, u64)> {
            let a = decode_append(&e.2).ok().filter(|_| e.1 == ENTRY_STREAM_APPEND)?;
            Some((a.head.name.to_string(), a.first_offset))
        };
        let find = |name: &str, first: u64| -> &((u64, u64), u16, Vec<u8>) {
            entries
                .iter()
                .find(|e| of(e) == Some((name.to_string(), first)))
                .expect("the entry")
        };

        // What is needed: every append of x (X0 too: walked over; X6: durable, settled
        // first as the engine does before compaction asks), of y and of the fill; no
        // append of z (trimmed away), no trim, retention or group entry.
        sh.settle();
        let st = &sh.stores[0];
        let mut kinds = BTreeSet::new();
        for e in &entries {
            let want = of(e).is_some_and(|(name, _)| name != "z");
            assert_eq!(st.needs(e.0, e.1, &e.2), want, "{:?}", (e.0, e.1, of(e)));
            kinds.insert(e.1);
        }
        assert_eq!(
            kinds.len(),
            5,
            "appends, trims, retention, group create and read: {kinds:?}"
        );
        assert!(st.get("a", "x").is_some_and(|s| s.in_flight.is_empty()));
        let x2 = find("x", 6);
        assert!(!st.needs((victim + 1, x2.0 .1), x2.1, &x2.2), "elsewhere: not needed");
        let head = Head {
            namespace: "a",
            name: "nope",
            at_ms: 1,
        };
        let ghost = encode_append(&head, 0, &[vec![1]]);
        assert!(!st.needs(x2.0, ENTRY_STREAM_APPEND, &ghost), "no such stream");
        assert!(!st.needs(x2.0, ENTRY_STREAM_APPEND, &x2.2[..10]), "does not decode");

        // The needed entries but Y1 (the compactor "skipped" it), copied; then x trimmed to
        // the middle of X2 before the copies are relocated: X1 is trimmed meanwhile.
        let y1 = find("y", 3);
        let needed: Vec<_> = entries
            .iter()
            .filter(|e| sh.stores[0].needs(e.0, e.1, &e.2) && e.0 != y1.0)
            .collect();
        let places = copy(&sh, &needed).await;
        sh.trim("a", "x", 8);
        let bytes_of = |st: &StreamStore, name: &str| {
            let s = st.get("a", name).expect("stream");
            s.bytes("a", name, &log, &st.segments).expect("bytes")
        };
        let mut dead_copies: BTreeMap<u64, u64> = BTreeMap::new();
        let count = |dead: &mut BTreeMap<u64, u64>, to: &Position, body: &[u8], live: bool| {
            let copy = stored_bytes(COPY_HEAD_BYTES + body.len()) as u64;
            *dead.entry(to.segment).or_default() += if live { 24 } else { copy };
        };
        for (e, to) in needed.iter().zip(&places) {
            let live = sh.stores[0].relocate(e.0, to, e.1, &e.2).expect("relocate");
            let (name, first) = of(e).expect("an append");
            let want = match (name.as_str(), first) {
                ("x", 0) | ("x", 3) => false, // all trimmed: the first point moves past them
                ("y", 6) => false,            // Y1 is still read from the victim
                _ => true,
            };
            assert_eq!(live, want, "{name} from {first}");
            count(&mut dead_copies, to, &e.2, live);
        }
        let st = &sh.stores[0];
        let x = st.get("a", "x").expect("x");
        let p = x.points[0];
        assert_eq!(p.offset, 6, "x's first point is at X2's copy");
        assert_ne!(st.segments.place(p.loc).0, victim);
        let st = &sh.stores[0];
        let control = bytes_of(&sh.stores[CONTROL], "x");
        assert_eq!(bytes_of(st, "x"), control, "bytes unchanged by dropping X0 and X1");
        let y = st.get("a", "y").expect("y");
        let in_victim: Vec<u64> = y
            .points
            .iter()
            .filter(|p| st.segments.place(p.loc).0 == victim)
            .map(|p| p.offset)
            .collect();
        assert_eq!(in_victim, [3], "y's rest point: Y1 and Y2 still read from the victim");

        // A copy of an entry moved already, and of a trim, are dead at once.
        let trim = entries.iter().find(|e| e.1 == ENTRY_STREAM_TRIM).expect("a trim entry");
        let again = copy(&sh, &[x2, trim]).await;
        for (e, to) in [x2, trim].iter().zip(&again) {
            assert!(!sh.stores[0].relocate(e.0, to, e.1, &e.2).expect("relocate"));
            count(&mut dead_copies, to, &e.2, false);
        }
        // Bodies that do not decode, and entries not the streams', are errors.
        let to = Position {
            lsn: log.next_lsn(),
            segment: again[0].segment,
            offset: 64,
        };
        let st = &mut sh.stores[0];
        assert!(st.relocate(x2.0, &to, ENTRY_STREAM_APPEND, &x2.2[..30]).is_err());
        assert!(st.relocate(x2.0, &to, ENTRY_GROUP_READ, &x2.2).is_err());
        assert!(st.relocate(x2.0, &to, 999, &x2.2).is_err());
        assert!(!st
            .relocate(x2.0, &to, ENTRY_STREAM_APPEND, &ghost)
            .expect("no such stream"));
        count(&mut dead_copies, &to, &ghost, false);

        // The compactor's next pass over the victim finds Y1 and Y2 still needed.
        let rest: Vec<_> = entries.iter().filter(|e| sh.stores[0].needs(e.0, e.1, &e.2)).collect();
        let names: Vec<_> = rest.iter().map(|e| of(e).expect("an append")).collect();
        assert_eq!(names, [("y".to_string(), 3), ("y".to_string(), 6)]);
        let places = copy(&sh, &rest).await;
        for (e, to) in rest.iter().zip(&places) {
            assert!(sh.stores[0].relocate(e.0, to, e.1, &e.2).expect("relocate"));
            count(&mut dead_copies, to, &e.2, true);
        }
        let st = &sh.stores[0];
        let runs: Vec<u64> = st.get("a", "y").expect("y").points.iter().map(|p| p.offset).collect();
        assert_eq!(runs, [0, 3], "Y2's copy continues Y1's run");
        sh.durable().await;
        check_compacted(&mut sh, victim);
        let mut dead = dead_map(&sh.stores[0]);
        dead.remove(&victim);
        assert_eq!(
            dead, dead_copies,
            "dead bytes of the tail: copies' heads, and dead copies"
        );

        // A full replay answers alike.
        let image = fs.crash(1, CrashMode::KeepAll);
        let mut full = StreamStore::default();
        let (replayed, _flusher) = open_log(image, &mut full).await;
        let control = observe(&sh.stores[CONTROL], &log);
        same(&observe(&full, &replayed), &control, "full replay's answers");
        same(&observe(&sh.stores[0], &log), &control, "live answers");
    });
}
