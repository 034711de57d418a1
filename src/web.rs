//! The web pages: the live clinic dashboard at `/` and the GraphiQL playground at
//! `/playground/`. `build.rs` builds them from `web/` (Vite) into `OUT_DIR`, and they are
//! embedded here, so the one binary serves them with no files beside it. The pages need no API
//! key to load: the user types the key into the page, which sends it to `/graphql` only.
//!
//! Hashed files under `/assets/` are cached for a year; the HTML pages are revalidated every
//! time (they name the current hashes). Every answer carries a Content-Security-Policy that
//! allows nothing but this origin (its websocket included) and the headers of
//! `SECURITY_HEADERS`.

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use include_dir::{Dir, include_dir};

use crate::http::error_response;
use crate::startup::AppState;

static PAGES: Dir<'static> = include_dir!("$OUT_DIR/web");

/// Same origin only, and nothing looser than a page needs. `connect-src 'self'` covers the
/// websocket to this origin's `/graphql` too (CSP3 matches `ws:`/`wss:` to the page's own
/// host under `'self'`; Chromium does), while a bare `ws:`/`wss:` would let any script send the
/// key it finds in localStorage to any host. Styles may be inline (GraphiQL's editor sets them
/// from script); the editor's fonts and icons come as `data:` URLs; workers are same-origin
/// module scripts or `blob:` URLs the editor creates. No page uses `<base>`, plugins or frames.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; \
    worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// Beside the CSP: no framing by older browsers either, no window shared with an opener from
/// another origin, no embedding of these files by other sites, no powerful features.
const SECURITY_HEADERS: [(header::HeaderName, &str); 6] = [
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    (
        header::HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    ),
    (
        header::HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    ),
];

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { page("index.html") }))
        .route("/playground", get(to_playground))
        .route(
            "/playground/",
            get(|| async { page("playground/index.html") }),
        )
        .route(
            "/favicon.svg",
            get(|| async { file("favicon.svg", REVALIDATE) }),
        )
        .route("/assets/{*path}", get(asset))
}

/// `/playground` → `/playground/`, so the page's relative asset URLs resolve (a relative
/// `Location`, which also works behind a path prefix).
async fn to_playground(RawQuery(query): RawQuery) -> Redirect {
    match query {
        Some(query) => Redirect::permanent(&format!("playground/?{query}")),
        None => Redirect::permanent("playground/"),
    }
}

fn page(path: &str) -> Response {
    file(path, REVALIDATE)
}

async fn asset(Path(path): Path<String>) -> Response {
    file(&format!("assets/{path}"), IMMUTABLE)
}

fn file(path: &str, cache: &'static str) -> Response {
    let Some(file) = PAGES.get_file(path) else {
        return error_response(StatusCode::NOT_FOUND, "no such file");
    };
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(path)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
        ],
        file.contents(),
    )
        .into_response();
    for (name, value) in SECURITY_HEADERS {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The media types Vite emits; anything else is served as bytes.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("ttf") => "font/ttf",
        Some("woff") => "font/woff",
        Some("woff2") => "font/woff2",
        Some("wasm") => "application/wasm",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_pages_are_embedded() {
        assert!(PAGES.get_file("index.html").is_some());
        assert!(PAGES.get_file("playground/index.html").is_some());
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type("assets/a-1.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("assets/codicon-x.ttf"), "font/ttf");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }
}
