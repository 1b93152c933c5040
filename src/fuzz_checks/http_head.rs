//! The request-head parser on arbitrary bytes: never panics; a complete head's ranges lie
//! inside it; parsing is prefix-stable (the head alone parses to the same result, and every
//! shorter prefix is "need more" or the same error class).

use crate::http::head::parse_head;

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    match parse_head(data) {
        Ok(Some(h)) => {
            assert!(h.len <= data.len());
            for r in [&h.method, &h.path, &h.query] {
                assert!(r.start <= r.end && r.end <= h.len);
            }
            if let Some(a) = &h.authorization {
                assert!(a.end <= h.len);
            }
            assert_eq!(parse_head(&data[..h.len]), Ok(Some(h.clone())));
            // A complete head is never "need more" in any prefix that contains it.
            assert!(matches!(parse_head(&data[..h.len - 1]), Ok(None) | Err(_)));
        }
        Ok(None) => {}
        Err(e) => {
            assert!(matches!(e.status(), 400 | 414 | 417 | 431 | 505));
        }
    }
}
