//! Replica determinism over the crash simulation's workload: the log one run wrote, recovered
//! by "replicas" that differ in everything that must not matter — their clocks (years apart),
//! their `queue.*`, `ts.*` and `kv.*` settings, and the snapshot they start from (the newest, an
//! older one, or one taken at an arbitrary entry in between) — ends in byte-identical
//! per-partition snapshot sections, hence equal digests.
//!
//! A replica that applied one entry more is told apart (the comparison can fail).

use std::collections::BTreeMap;

use super::{config, life, shard_dir, Scenario, LONG_SCENARIOS, SCENARIOS};
use crate::clock::Clock;
use crate::config::Config;
use crate::crash_tally::runtime;
use crate::log::either::EitherFs;
use crate::log::io::Fs;
use crate::log::sim::{CrashMode, SimFs};
use crate::server::digest::{digest, PartitionDigest};
use crate::server::shard::{log_options, Shard};
use crate::snapshot::codec::Enc;
use crate::snapshot::{file, shard as snap};

/// A partition's section bytes, by partition.
type Sections = BTreeMap<u32, Vec<u8>>;

const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;
/// The reference replica's clock: 2026.
const NOW_MS: u64 = 1_796_000_000_000;

/// Settings that decide (dedup windows, delivery limits, head ages, tombstone retention), all
/// different from the run's: applying must not read them.
fn other_settings() -> Config {
    let mut c = config();
    c.queue.dedup_window_ms = 1;
    c.queue.max_deliveries = 1;
    c.ts.head_age_ms = 1_000;
    c.kv.tombstone_retention_ms = 0;
    c
}

/// A copy of a stopped run's disk.
fn copy(image: &SimFs) -> SimFs {
    image.crash(0, CrashMode::KeepAll)
}

/// The snapshots in the shard's directory, by LSN.
fn snapshot_lsns(fs: &SimFs) -> Vec<u64> {
    let mut lsns: Vec<u64> = fs
        .list(&shard_dir())
        .expect("the shard's directory")
        .iter()
        .filter_map(|n| file::parse_file_name(n))
        .collect();
    lsns.sort_unstable();
    lsns
}

async fn remove_snapshots(fs: &SimFs, keep: impl Fn(u64) -> bool) {
    for lsn in snapshot_lsns(fs) {
        if !keep(lsn) {
            fs.remove(&shard_dir().join(file::file_name(lsn)))
                .await
                .expect("remove a snapshot");
        }
    }
}

/// What a replica ended with: its sections, the snapshot it started from, the last LSN of the
/// log, and the sections captured right after entry `capture_at` (if asked).
struct Recovered {
    sections: Sections,
    started_at: u64,
    last_lsn: u64,
    captured: Option<Vec<(u32, Enc)>>,
    shard: std::rc::Rc<Shard>,
}

/// Recovers `image` as a start does, with `config` and `clock`, capturing every partition's
/// section right after entry `capture_at` is replayed.
async fn recover(image: SimFs, config: Config, clock: Clock, capture_at: Option<u64>) -> Recovered {
    let shard = std::rc::Rc::new(Shard::for_tests_with(config, EitherFs::Sim(image), clock));
    let engine = &shard.engine;
    let dir = shard_dir();
    let started_at = snap::load(engine, &dir).await.expect("a usable snapshot or none");
    let mut captured = None;
    let (log, _) = crate::log::open(
        engine.fs.clone(),
        dir,
        log_options(&shard.node, shard.id),
        shard.node.log_metrics[shard.id].clone(),
        started_at,
        |e, pos| {
            engine.replay(e, pos).map_err(|c| c.0)?;
            if Some(e.lsn) == capture_at {
                captured = Some(snap::encode_partitions_now(engine));
            }
            Ok(())
        },
    )
    .await
    .expect("the image recovers");
    let last_lsn = log.next_lsn() - 1;
    engine.set_log(std::rc::Rc::new(log));
    let sections = snap::sections(engine).await.expect("settled after recovery");
    Recovered {
        sections: sections.into_iter().collect(),
        started_at,
        last_lsn,
        captured,
        shard,
    }
}

/// The snapshot file a server would have written of `parts` at `lsn`.
fn snapshot_file(lsn: u64, parts: Vec<(u32, Enc)>) -> Vec<u8> {
    let mut live: BTreeMap<u64, u64> = BTreeMap::new();
    let mut bodies = Vec::with_capacity(parts.len() + 1);
    for (_, enc) in parts {
        let (buf, pending, l) = enc.finish();
        assert!(pending.is_empty(), "replayed entries are all placed");
        for (s, b) in l {
            *live.entry(s).or_default() += b;
        }
        bodies.push(buf);
    }
    live.retain(|_, b| *b > 0);
    bodies.insert(0, file::encode_segments(&live));
    file::encode(0, lsn, 0, &bodies)
}

fn digests(sections: &Sections) -> Vec<PartitionDigest> {
    sections.iter().map(|(p, b)| digest(0, *p, b)).collect()
}

/// Asserts `got` is `want`, partition by partition, naming the first that differs.
fn assert_same(want: &Sections, got: &Sections, what: &str) {
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{what}: partitions"
    );
    const MACHINES: [&str; 5] = ["namespaces", "kv", "queues", "streams", "time series"];
    for (p, w) in want {
        if got[p] == *w {
            continue;
        }
        let (_, ws) = file::split_partition(w).expect("a partition section");
        let (_, gs) = file::split_partition(&got[p]).expect("a partition section");
        let i = (0..5).find(|&i| ws[i] != gs[i]).unwrap_or(0);
        let at = ws[i].iter().zip(gs[i]).position(|(a, b)| a != b);
        panic!(
            "{what}: partition {p} differs in its {} section at byte {at:?} ({} bytes, want {})",
            MACHINES[i],
            gs[i].len(),
            ws[i].len()
        );
    }
    assert_eq!(digests(want), digests(got), "{what}: digests");
}

async fn replicas_agree(sc: Scenario) {
    let (image, run) = life(sc, |_, _| {}).await;
    let run = run.expect("a fresh disk opens");
    assert!(run.errors.borrow().is_empty(), "{sc}: {:?}", run.errors.borrow());
    let snaps = snapshot_lsns(&image);
    assert!(snaps.len() >= 2, "{sc}: the run keeps two snapshots: {snaps:?}");
    let (older, newest) = (snaps[0], snaps[snaps.len() - 1]);

    let reference = recover(copy(&image), config(), Clock::manual(NOW_MS), None).await;
    assert_eq!(reference.started_at, newest);
    let non_empty = reference.sections.values().filter(|b| b.len() > 64).count();
    assert!(non_empty >= 1, "{sc}: the workload leaves state");

    // Ten years on, with every deciding setting changed.
    let later = recover(
        copy(&image),
        other_settings(),
        Clock::manual(NOW_MS + 10 * YEAR_MS),
        None,
    )
    .await;
    assert_same(
        &reference.sections,
        &later.sections,
        &format!("{sc}: a later clock, other settings"),
    );

    // From the older snapshot, replaying more of the log, a year before.
    let from_older = copy(&image);
    remove_snapshots(&from_older, |lsn| lsn == older).await;
    let r = recover(from_older, config(), Clock::manual(NOW_MS - YEAR_MS), None).await;
    assert_eq!(r.started_at, older);
    assert_same(
        &reference.sections,
        &r.sections,
        &format!("{sc}: from snapshot {older}"),
    );

    // From snapshots taken at entries between the older snapshot and the end: each is captured
    // while replaying, written as a snapshot file in place of the others, and recovered from.
    let last = reference.last_lsn;
    assert!(last > older + 3, "{sc}: entries after the older snapshot");
    let points: Vec<u64> = (0..=8).map(|i| older + 1 + (last - 1 - older - 1) * i / 8).collect();
    for x in points {
        let scratch = copy(&image);
        remove_snapshots(&scratch, |lsn| lsn == older).await;
        let r = recover(scratch, config(), Clock::manual(NOW_MS), Some(x)).await;
        let parts = r.captured.expect("the entry was replayed");
        let at_x = copy(&image);
        remove_snapshots(&at_x, |_| false).await;
        at_x.write_atomic(&shard_dir().join(file::file_name(x)), snapshot_file(x, parts))
            .await
            .expect("write the snapshot");
        let r = recover(at_x, other_settings(), Clock::manual(NOW_MS + 3 * YEAR_MS), None).await;
        assert_eq!(r.started_at, x);
        assert_same(
            &reference.sections,
            &r.sections,
            &format!("{sc}: from a snapshot at {x}"),
        );
    }

    // One more entry applied is a different state: the comparison sees it.
    let diverged = recover(copy(&image), config(), Clock::manual(NOW_MS), None).await;
    let engine = &diverged.shard.engine;
    let cmd = crate::kv::exec::KvCmd::Write(crate::kv::KvCommand::Put {
        ns: run.ns.clone(),
        key: run.names.keys[0].clone(),
        value: b"one more".to_vec(),
        expires_at_ms: 0,
        cond: crate::kv::Cond::Always,
    });
    let log = engine.log().expect("open").clone();
    let flusher = monoio::spawn(log.clone().run_flusher());
    crate::kv::exec::execute(engine, cmd).await.expect("a put");
    log.stop();
    flusher.await;
    let after = snap::sections(engine).await.expect("settled");
    let after: Sections = after.into_iter().collect();
    let differ: Vec<u32> = reference
        .sections
        .iter()
        .filter(|(p, b)| after[*p] != **b)
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(
        differ.len(),
        1,
        "{sc}: exactly the written key's partition differs: {differ:?}"
    );
    assert_ne!(digests(&reference.sections), digests(&after));
}

#[test]
fn replicas_replaying_one_log_end_in_identical_partitions() {
    for sc in SCENARIOS.iter().chain(&LONG_SCENARIOS) {
        runtime().block_on(replicas_agree(*sc));
    }
}
