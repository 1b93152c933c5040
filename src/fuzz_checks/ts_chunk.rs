//! The time-series chunk codec (`format-spec/ts-chunk.md`) on arbitrary bytes:
//! 1. decoding never panics; what decodes is a valid series, and re-encoding it (the encoder may
//!    choose another encoding, so points are compared, not bytes) decodes to the same points;
//! 2. the bytes read as points (sorted, timestamps deduped) round-trip bit for bit.

use crate::ts::chunk::{decode, encode, header, Decoder, MAX_CHUNK_BYTES, MAX_POINTS};

fn bits(points: &[(i64, f64)]) -> Vec<(i64, u64)> {
    points.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    u64::from_le_bytes(a)
}

/// Round trip through every decoding path; returns the chunk length.
fn round_trip(points: &[(i64, f64)]) -> usize {
    let mut chunk = Vec::new();
    encode(points, &mut chunk);
    assert!(chunk.len() <= MAX_CHUNK_BYTES);
    let got = decode(&chunk).expect("an encoded chunk decodes");
    assert_eq!(bits(&got), bits(points));
    let streamed: Vec<(i64, f64)> = Decoder::new(&chunk).unwrap().map(|p| p.unwrap()).collect();
    assert_eq!(bits(&streamed), bits(points));
    chunk.len()
}

/// Points from the bytes. The first byte picks the shapes: bit 0 decimal values (`k / 10^d`)
/// rather than raw bits, bit 1 small increasing timestamp steps rather than raw timestamps;
/// bits 2..5 the decimals.
fn points_of(data: &[u8]) -> Vec<(i64, f64)> {
    let Some((&mode, rest)) = data.split_first() else {
        return Vec::new();
    };
    let d = i32::from((mode >> 2) % 10);
    let mut t = 1_700_000_000_000i64;
    let mut points: Vec<(i64, f64)> = rest
        .chunks(16)
        .take(MAX_POINTS)
        .map(|r| {
            let (a, b) = r.split_at(r.len().min(8));
            let ts = if mode & 2 != 0 {
                t = t.wrapping_add((le_u64(a) % 4) as i64 * 1000 + (le_u64(a) >> 8) as i64 % 3);
                t
            } else {
                le_u64(a) as i64
            };
            let v = if mode & 1 != 0 {
                ((le_u64(b) as i64) % (1 << 24)) as f64 / 10f64.powi(d)
            } else {
                f64::from_bits(le_u64(b))
            };
            (ts, v)
        })
        .collect();
    points.sort_by_key(|p| p.0);
    points.dedup_by_key(|p| p.0);
    points
}

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    if let Ok(points) = decode(data) {
        let h = header(data).unwrap();
        assert_eq!(points.len(), usize::from(h.count));
        assert!(points.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!((points[0].0, points[points.len() - 1].0), (h.first_ts, h.last_ts));
        round_trip(&points);
    } else if let Ok(d) = Decoder::new(data) {
        // The streaming decoder ends with the same error, never after it.
        let items: Vec<_> = d.collect();
        assert!(items.last().is_some_and(|i| i.is_err()));
        assert_eq!(items.iter().filter(|i| i.is_err()).count(), 1);
    }

    let points = points_of(data);
    if !points.is_empty() {
        round_trip(&points);
    }
}
