//! Encoding and restoring the KV section of a snapshot: the time a shard is held while a
//! snapshot is encoded (target with 1 M keys over 2 shards: < 50 ms per shard), and the restore
//! part of recovery.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use flo::kv::store::Value;
use flo::kv::KvStore;
use flo::snapshot::codec::{Dec, Enc};

/// A shard's half of 1 M keys: 500 k keys of 7–8 bytes (`k0`..), 100-byte values spread over
/// 40 segments.
fn store(keys: u64) -> KvStore {
    let mut s = KvStore::default();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..keys {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let value = Value::At {
            segment: 1 + (x % 40) * 300_000,
            offset: 64 + (x >> 20) % 60_000_000,
            len: 100,
        };
        s.apply_put("bench", &format!("k{i}"), 1, 0, value);
    }
    s
}

fn bench(c: &mut Criterion) {
    let s = store(500_000);
    let mut g = c.benchmark_group("snapshot_kv_500k");
    g.sample_size(10);
    g.bench_function("encode", |b| {
        b.iter(|| {
            let mut e = Enc::new();
            s.snapshot(&mut e);
            black_box(e.len())
        })
    });
    let mut e = Enc::new();
    s.snapshot(&mut e);
    let (bytes, _, _) = e.finish();
    g.bench_function("restore", |b| {
        b.iter(|| black_box(KvStore::decode(&mut Dec::new(&bytes), None).map(|r| r.slot_count())))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
