//! Encoding and decoding log entries (framing + CRC-32), the per-entry CPU cost under every
//! append and every replayed entry. `cargo bench --bench log_format`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flo::log::format::{decode_entry, encode_entry, Decoded};
use std::hint::black_box;

fn entries(c: &mut Criterion) {
    for size in [100usize, 1024, 16 * 1024] {
        let body = vec![0xabu8; size];
        let mut g = c.benchmark_group(format!("entry_{size}B"));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("encode", |b| {
            b.iter_batched(
                || Vec::with_capacity(size + 64),
                |mut out| {
                    encode_entry(&mut out, 42, 100, 0, black_box(&body));
                    out
                },
                BatchSize::SmallInput,
            )
        });
        let mut encoded = Vec::new();
        encode_entry(&mut encoded, 42, 100, 0, &body);
        g.bench_function("decode", |b| {
            b.iter(|| match decode_entry(black_box(&encoded)) {
                Ok(Decoded::Entry(e)) => e.lsn,
                _ => unreachable!(),
            })
        });
        g.finish();
    }
}

criterion_group!(benches, entries);
criterion_main!(benches);
