//! Base64 (RFC 4648 §4, standard alphabet, padding required) on the bulk paths: stream records
//! travel as base64 in both directions, so their encoder and decoder are SIMD ones. Strict: a
//! missing or wrong padding, a character outside the alphabet or stray bits are errors.

/// Appends the base64 of `src` to `out`.
pub fn encode_append(src: &[u8], out: &mut String) {
    base64_simd::STANDARD.encode_append(src, out);
}

/// Appends the bytes `src` encodes to `out`; on error `out` is as it was.
pub fn decode_append(src: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let len = out.len();
    base64_simd::STANDARD.decode_append(src, out).map_err(|_| {
        out.truncate(len);
        "invalid base64 (standard alphabet with padding expected)".to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn agrees_with_the_scalar_codec() {
        let reference = base64::engine::general_purpose::STANDARD;
        for n in [0usize, 1, 2, 3, 4, 31, 32, 33, 100, 1000, 65_537] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
            let mut s = String::from("x");
            encode_append(&data, &mut s);
            assert_eq!(&s[1..], reference.encode(&data), "encode {n}");
            let mut back = vec![9u8];
            decode_append(&s.as_bytes()[1..], &mut back).unwrap();
            assert_eq!(&back[1..], &data[..], "decode {n}");
        }
        for bad in [
            "a", "ab", "abc", "ab=c", "a===", "YQ", "YR==", "Y Q==", "YQ==YQ==", "!!!!",
        ] {
            let mut out = vec![1u8];
            assert!(decode_append(bad.as_bytes(), &mut out).is_err(), "{bad:?}");
            assert_eq!(out, [1], "nothing appended for {bad:?}");
            assert!(reference.decode(bad).is_err(), "the scalar codec refuses {bad:?} too");
        }
    }
}
