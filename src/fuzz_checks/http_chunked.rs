//! The chunked decoder on arbitrary bytes: never panics, never exceeds the limit, and
//! decoding in two pieces (split at an arbitrary point) gives exactly what decoding the whole
//! input at once gives.

use crate::http::body::ChunkedDecoder;

const LIMIT: u64 = 1 << 16;

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let input = &data[1..];
    let split = split.min(input.len());

    let mut whole = ChunkedDecoder::new();
    let mut out_whole = Vec::new();
    let r_whole = whole.decode(input, &mut out_whole, LIMIT);

    let mut parts = ChunkedDecoder::new();
    let mut out_parts = Vec::new();
    let first = parts.decode(&input[..split], &mut out_parts, LIMIT);
    let r_parts = match first {
        Ok(true) => Ok(true),
        Ok(false) => parts.decode(input, &mut out_parts, LIMIT),
        Err(e) => Err(e),
    };
    match (&r_whole, &r_parts) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b);
            assert_eq!(out_whole, out_parts);
            if *a {
                assert_eq!(whole.consumed(), parts.consumed());
            }
        }
        // An error seen early on a prefix must also be seen on the whole input.
        (Err(_), Err(_)) => {}
        _ => panic!("split decoding disagrees: {r_whole:?} vs {r_parts:?}"),
    }
    assert!(out_whole.len() as u64 <= LIMIT);
    assert!(whole.consumed() <= input.len());
}
