//! Paths and queries: percent-decoding, the name rule for namespaces, queues, streams, groups
//! and measurements (`[A-Za-z0-9_.:-]{1,128}`), the KV key rule (UTF-8, 1..=1024 bytes), and
//! query-string parameters.

use std::borrow::Cow;

use super::error::ApiError;

pub use crate::names::{is_valid_name, KEY_MAX_BYTES, NAME_MAX_BYTES};

/// Decodes `%XX` escapes; invalid escapes or a result that is not UTF-8 are `None`.
/// `plus_is_space` applies the form rule for query strings.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<Cow<'_, str>> {
    if !s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+')) {
        return Some(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = (*bytes.get(i + 1)? as char).to_digit(16)?;
                let lo = (*bytes.get(i + 2)? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

/// Decodes a path segment that holds a name of `kind` and checks the name rule.
pub fn name<'a>(segment: &'a str, kind: &str) -> Result<Cow<'a, str>, ApiError> {
    let decoded = percent_decode(segment, false)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid percent-encoding in {kind} name")))?;
    if !is_valid_name(&decoded) {
        return Err(ApiError::BadRequest(format!(
            "invalid {kind} name {decoded:?}: names match [A-Za-z0-9_.:-]{{1,128}}"
        )));
    }
    Ok(decoded)
}

/// Decodes a path segment that holds a KV key and checks the key rule.
pub fn key(segment: &str) -> Result<Cow<'_, str>, ApiError> {
    let decoded =
        percent_decode(segment, false).ok_or_else(|| ApiError::BadRequest("invalid percent-encoding in key".into()))?;
    if decoded.is_empty() || decoded.len() > KEY_MAX_BYTES {
        return Err(ApiError::BadRequest(format!(
            "keys are 1..={KEY_MAX_BYTES} bytes of UTF-8"
        )));
    }
    Ok(decoded)
}

/// The value of query parameter `name` (decoded), if present. A parameter given without
/// `=` has the empty value.
pub fn query_param<'a>(query: &'a str, name: &str) -> Result<Option<Cow<'a, str>>, ApiError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k =
            percent_decode(k, true).ok_or_else(|| ApiError::BadRequest("invalid percent-encoding in query".into()))?;
        if k == name {
            return percent_decode(v, true)
                .map(Some)
                .ok_or_else(|| ApiError::BadRequest(format!("invalid percent-encoding in query parameter {name}")));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("my-app_1.x:y"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a/b"));
        assert!(
            is_valid_name(".."),
            "dots are name characters; names never become paths"
        );
        assert!(is_valid_name(&"a".repeat(128)));
        assert!(!is_valid_name(&"a".repeat(129)));
        assert!(name("..%2F..", "namespace").is_err());
        assert_eq!(name("ab%2Dc", "queue").unwrap(), "ab-c");
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%2Fb", false).unwrap(), "a/b");
        assert_eq!(percent_decode("a+b", true).unwrap(), "a b");
        assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
        assert!(percent_decode("%zz", false).is_none());
        assert!(percent_decode("%4", false).is_none());
        assert!(percent_decode("%ff", false).is_none());
        assert_eq!(percent_decode("%C3%A9", false).unwrap(), "é");
    }

    #[test]
    fn keys_and_queries() {
        assert!(key("").is_err());
        assert!(key(&"k".repeat(1025)).is_err());
        assert_eq!(key("user%3A1").unwrap(), "user:1");
        assert_eq!(query_param("a=1&limit=5&b", "limit").unwrap().unwrap(), "5");
        assert_eq!(query_param("a=1&b", "b").unwrap().unwrap(), "");
        assert!(query_param("a=1", "z").unwrap().is_none());
        assert!(query_param("p=%zz", "p").is_err());
    }
}
