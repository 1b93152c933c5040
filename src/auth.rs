//! Bearer-token authentication and token scopes.
//!
//! Tokens are known only by their SHA-256 digests. A presented token is hashed and compared
//! with every configured digest in constant time (no early exit, so timing does not reveal
//! which digest or how many bytes matched). A scoped token may be limited to namespaces and to
//! reads.

use sha2::{Digest, Sha256};

use crate::config::TokenSpec;

/// The configured tokens.
#[derive(Debug, Clone)]
pub struct Auth {
    enabled: bool,
    tokens: Vec<TokenSpec>,
}

/// What a request may do.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// `None`: auth is off, or a full-access token.
    scope: Option<&'a TokenSpec>,
}

impl Access<'static> {
    /// Everything allowed (auth off).
    pub const FULL: Access<'static> = Access { scope: None };
}

impl Access<'_> {
    /// May this request touch `namespace`?
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        match self.scope.and_then(|t| t.namespaces.as_ref()) {
            None => true,
            Some(list) => list.iter().any(|n| n == namespace),
        }
    }

    /// May this request change state?
    pub fn allows_write(&self) -> bool {
        !self.scope.is_some_and(|t| t.read_only)
    }

    /// True when the token is limited to some namespaces (listings must filter).
    pub fn is_namespace_scoped(&self) -> bool {
        self.scope.is_some_and(|t| t.namespaces.is_some())
    }
}

impl Auth {
    pub fn new(enabled: bool, tokens: Vec<TokenSpec>) -> Self {
        assert!(!enabled || !tokens.is_empty(), "auth enabled without tokens");
        Auth { enabled, tokens }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Checks an `Authorization` header value. `None` when auth is on and the header is
    /// missing, not `Bearer`, or the token is unknown.
    pub fn check(&self, authorization: Option<&[u8]>) -> Option<Access<'_>> {
        if !self.enabled {
            return Some(Access::FULL);
        }
        let token = bearer_token(authorization?)?;
        self.check_token(token)
    }

    /// Checks a bare token (InfluxDB's `p=` parameter or `Token` scheme use this).
    pub fn check_token(&self, token: &[u8]) -> Option<Access<'_>> {
        if !self.enabled {
            return Some(Access::FULL);
        }
        let digest: [u8; 32] = Sha256::digest(token).into();
        let mut found: Option<&TokenSpec> = None;
        for t in &self.tokens {
            let diff = t
                .digest
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            // Branch-free selection keeps every comparison the same length.
            let equal = std::hint::black_box(diff) == 0;
            if equal && found.is_none() {
                found = Some(t);
            }
        }
        found.map(|t| Access {
            scope: (t.namespaces.is_some() || t.read_only).then_some(t),
        })
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive), or of InfluxDB's `Token <token>`.
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") && !scheme.eq_ignore_ascii_case(b"token") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(token: &str, namespaces: Option<Vec<&str>>, read_only: bool) -> TokenSpec {
        TokenSpec {
            digest: Sha256::digest(token.as_bytes()).into(),
            namespaces: namespaces.map(|v| v.into_iter().map(String::from).collect()),
            read_only,
        }
    }

    #[test]
    fn disabled_allows_everything() {
        let a = Auth::new(false, vec![]);
        let acc = a.check(None).unwrap();
        assert!(acc.allows_write() && acc.allows_namespace("x"));
    }

    #[test]
    fn tokens_and_scopes() {
        let a = Auth::new(
            true,
            vec![
                spec("root", None, false),
                spec("ro", Some(vec!["app"]), true),
                spec("app", Some(vec!["app"]), false),
            ],
        );
        assert!(a.check(None).is_none());
        assert!(a.check(Some(b"Bearer nope")).is_none());
        assert!(a.check(Some(b"Basic cm9vdA==")).is_none());
        assert!(a.check(Some(b"Bearer")).is_none());
        let root = a.check(Some(b"bearer  root ")).unwrap();
        assert!(root.allows_write() && root.allows_namespace("other") && !root.is_namespace_scoped());
        let ro = a.check(Some(b"Bearer ro")).unwrap();
        assert!(!ro.allows_write() && ro.allows_namespace("app") && !ro.allows_namespace("other"));
        let app = a.check(Some(b"Bearer app")).unwrap();
        assert!(app.allows_write() && app.is_namespace_scoped());
    }
}
