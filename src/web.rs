//! The web pages: the live clinic dashboard at `/` and the GraphiQL playground at
//! `/playground/`. `build.rs` builds them from `web/` (Vite) into `OUT_DIR`, and they are
//! embedded here, so the one binary serves them with no files beside it. The pages need no API
//! key to load: the user types the key into the page, which sends it to `/graphql` only.
//!
//! Hashed files under `/assets/` are cached for a year; the HTML pages are revalidated every
//! time (they name the current hashes). Every answer carries a Content-Security-Policy that
//! allows nothing but this origin (plus the websocket to `/graphql`).

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use include_dir::{Dir, include_dir};

use crate::http::error_response;
use crate::startup::AppState;

static PAGES: Dir<'static> = include_dir!("$OUT_DIR/web");

/// Same origin only. Styles may be inline (GraphiQL's editor sets them from script); the
/// editor's fonts and icons come as `data:` URLs; workers are same-origin module scripts.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self' ws: wss:; \
    worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'; \
    frame-ancestors 'none'";

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
    (
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
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        file.contents(),
    )
        .into_response()
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
