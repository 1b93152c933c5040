//! The FloQL parser on arbitrary text (bytes read as UTF-8, lossily): never panics; an error
//! points at a char boundary inside the text; a query that parses prints (canonical FloQL) to
//! text that parses to an equal query and prints the same again.

use crate::ts::floql::{parse, MAX_QUERY_BYTES};

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match parse(&text) {
        Ok(q) => {
            let canonical = q.to_string();
            // Canonical text can be longer than the input (spaces around `|`, `1e15` printed in
            // full); past the length limit it is rightly refused.
            if canonical.len() > MAX_QUERY_BYTES {
                return;
            }
            match parse(&canonical) {
                Ok(back) => {
                    assert_eq!(back, q, "{text:?} printed as {canonical:?}");
                    assert_eq!(back.to_string(), canonical, "canonical text is a fixed point");
                }
                Err(e) => panic!("{text:?} printed as {canonical:?}, which does not parse: {e}"),
            }
        }
        Err(e) => {
            assert!(e.position <= text.len(), "{e:?} past the end of {text:?}");
            assert!(
                text.is_char_boundary(e.position),
                "{e:?} inside a character of {text:?}"
            );
            assert!(!e.message.is_empty());
        }
    }
}
