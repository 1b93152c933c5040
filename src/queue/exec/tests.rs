//! The queue executor against a real engine on the simulated disk, with a clock set by hand.

use super::*;
use crate::clock::Clock;
use crate::server::shard::Shard;

const T0: u64 = 1_800_000_000_000;

fn msg(payload: &str, priority: u8, delay_ms: u64) -> NewMsg {
    NewMsg {
        payload: payload.as_bytes().to_vec(),
        priority,
        delay_ms,
        dedup_key: String::new(),
    }
}

async fn enqueue(engine: &Engine, queue: &str, m: NewMsg) {
    let cmd = QueueCmd::Enqueue {
        ns: "app".into(),
        queue: queue.into(),
        messages: vec![m],
    };
    execute(engine, cmd).await.expect("enqueue");
}

/// A node whose clock reads earlier than its partition's queue clock (set back, or behind the
/// node that wrote the log) still leases what applying the lease takes: time runs first to the
/// time the lease is stamped with, so a delayed message of higher priority that is due by then
/// is the one leased — never a lease that does not apply (which would stop the process).
#[test]
fn a_lease_decided_behind_the_partition_clock_leases_what_it_applies_to() {
    crate::crash_tally::runtime().block_on(async {
        let clock = Clock::manual(T0);
        let sh = Shard::on_sim_disk(clock.clone()).await;
        let engine = &sh.engine;
        let a = "jobs";
        let p = engine.partition_of("app", a);
        let b = (0..)
            .map(|i| format!("other{i}"))
            .find(|q| engine.partition_of("app", q) == p)
            .expect("another queue of the partition");
        enqueue(engine, a, msg("low", 5, 0)).await;
        enqueue(engine, a, msg("urgent", 0, 100)).await;
        // Another queue of the partition moves its clock a second on.
        clock.set(T0 + 1_000);
        enqueue(engine, &b, msg("x", 0, 0)).await;
        // The node's clock goes back: the delay of "urgent" has not ended by it, but has by the
        // partition's clock.
        clock.set(T0 + 10);
        let cmd = QueueCmd::Dequeue {
            ns: "app".into(),
            queue: a.into(),
            count: 1,
            visibility_ms: 30_000,
            block_ms: 0,
        };
        let QueueReply::Messages(got) = execute(engine, cmd).await.expect("dequeue") else {
            panic!("a dequeue answers messages");
        };
        let payloads: Vec<&[u8]> = got.iter().map(|m| &m.payload[..]).collect();
        assert_eq!(payloads, [&b"urgent"[..]], "the first by priority once its delay ended");
        assert_eq!(got[0].time_ms, T0 + 1_000 + 30_000, "leased from the partition's time");
    });
}
