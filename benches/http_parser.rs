//! The request parser's cost per request: a small GET, a typical JSON POST head with a
//! dozen headers, a pipelined batch of 16 GETs, and a chunked body.
//!
//! `cargo bench --bench http_parser`

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flo::http::body::ChunkedDecoder;
use flo::http::head::parse_head;
use std::hint::black_box;

const SMALL_GET: &[u8] = b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1:9002\r\n\r\n";

const TYPICAL_POST: &[u8] = b"POST /api/v1/kv/default/user%3A123 HTTP/1.1\r\n\
Host: flo.internal:9002\r\n\
User-Agent: flo-client/0.1 (linux; x86_64)\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate\r\n\
Content-Type: application/json\r\n\
Content-Length: 64\r\n\
Authorization: Bearer 3f2a9c0e4b1d7a6f8e5c2b9a0d3f6e1c\r\n\
X-Request-Id: 5b8f0c6e-2d4a-4f1b-9e3c-7a6d5b4c3e2f\r\n\
Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
Connection: keep-alive\r\n\
Cache-Control: no-cache\r\n\
\r\n";

fn heads(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_head");
    for (name, raw) in [("small_get", SMALL_GET), ("typical_post", TYPICAL_POST)] {
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter(|| parse_head(black_box(raw)).expect("valid").expect("complete"))
        });
    }
    let pipelined: Vec<u8> = SMALL_GET.repeat(16);
    g.throughput(Throughput::Elements(16));
    g.bench_function("pipelined_16_gets", |b| {
        b.iter(|| {
            let mut rest = black_box(pipelined.as_slice());
            let mut n = 0;
            while let Ok(Some(h)) = parse_head(rest) {
                rest = &rest[h.len..];
                n += 1;
            }
            assert_eq!(n, 16);
        })
    });
    g.finish();
}

fn chunked(c: &mut Criterion) {
    let mut body = Vec::new();
    for _ in 0..64 {
        body.extend_from_slice(b"400\r\n");
        body.extend(std::iter::repeat_n(b'x', 0x400));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(64 * 1024));
    g.bench_function("64x1KiB", |b| {
        b.iter_batched(
            || Vec::with_capacity(64 * 1024),
            |mut out| {
                let mut d = ChunkedDecoder::new();
                assert!(d.decode(black_box(&body), &mut out, u64::MAX).expect("valid"));
                out
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, heads, chunked);
criterion_main!(benches);
