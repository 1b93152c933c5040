//! `GET /` (and `HEAD /`): the web dashboard, one self-contained HTML page (inline CSS and
//! vanilla JS, hand-drawn SVG charts) embedded in the binary at build time from
//! `dashboard/index.html`.
//!
//! The page is public even when auth is on: it holds no data, and everything it shows comes
//! from `/api/v1/*`, which checks tokens as usual. When an API call answers 401 the page asks
//! for a bearer token and keeps it in the tab's `sessionStorage`.
//!
//! The page fetches nothing from the internet; the `Content-Security-Policy` sent with it makes
//! the browser refuse any script, style, image or connection that is not inline or from this
//! server. `Cache-Control: no-cache` makes a browser revalidate it, so an upgraded server is
//! never shown with an old page.

use crate::http::Response;

/// The page, as built into the binary.
pub const PAGE: &str = include_str!("dashboard/index.html");

pub const HTML: &str = "text/html; charset=utf-8";

/// What the page may load: inline script and style, and API calls to its own origin.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The dashboard page.
pub fn page() -> Response {
    Response {
        status: 200,
        content_type: HTML,
        headers: vec![
            ("Cache-Control", "no-cache".to_string()),
            ("Content-Security-Policy", CSP.to_string()),
            ("X-Content-Type-Options", "nosniff".to_string()),
            ("Referrer-Policy", "no-referrer".to_string()),
        ],
        body: PAGE.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_html_and_self_contained() {
        let r = page();
        assert_eq!((r.status, r.content_type), (200, HTML));
        let body = std::str::from_utf8(&r.body).unwrap();
        assert!(body.starts_with("<!doctype html>"));
        assert!(body.contains("/api/v1/"));
        // Nothing is loaded from elsewhere: no absolute URLs but the SVG namespace name.
        let urls: Vec<&str> = body
            .match_indices("://")
            .map(|(i, _)| &body[i.saturating_sub(8)..(i + 30).min(body.len())])
            .filter(|s| !s.contains("http://www.w3.org/2000/svg"))
            .collect();
        assert!(urls.is_empty(), "external URLs in the page: {urls:?}");
        for (name, _) in [("Cache-Control", ()), ("Content-Security-Policy", ())] {
            assert!(r.headers.iter().any(|(k, _)| *k == name), "{name}");
        }
    }
}
