//! The router: every HTTP route of the gateway and the layers around them (request id,
//! tracing span, body limit, timeout, JSON for every error, default security headers). Each
//! area contributes its own `router()`. Connections themselves are served by `server`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::startup::AppState;
use crate::store;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let max_body_bytes = state.config.limits.max_body_bytes;
    let timeout = Duration::from_secs(state.config.limits.request_timeout_secs);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::graphql::router())
        .merge(crate::ingest::router())
        .merge(crate::web::router())
        .fallback(not_found)
        .with_state(state)
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::map_response(
            move |response: Response| async move {
                secure_defaults(json_errors(response, max_body_bytes).await)
            },
        ))
        // Outermost last: the id is set first, then the span that every log line inherits.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The span of one request: method, path (never the query, which carries source tokens) and
/// the request id.
fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        path = request.uri().path(),
    )
}

/// The process is up (no dependency checked).
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The gateway can do its job: the database answers.
async fn readyz(State(state): State<AppState>) -> Response {
    match store::ping(&state.db).await {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            error_response(StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}

/// Every error the gateway sends is JSON with a reason, as the README promises, but axum's
/// rejections (405 with an empty body, a malformed websocket upgrade, a bad path) and the
/// body-limit and timeout layers answer in plain text or nothing: those answers are rewritten
/// here, keeping their status and headers (`Allow`, `Retry-After`) and their reason.
async fn json_errors(response: Response, max_body_bytes: usize) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, REJECTION_TEXT_LIMIT)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let allow = parts
        .headers
        .get(axum::http::header::ALLOW)
        .and_then(|value| value.to_str().ok());
    let message = rejection_message(status, allow, text, max_body_bytes);
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let mut json = error_response(status, message);
    json.headers_mut().extend(parts.headers);
    json
}

/// Longest rejection text kept as a reason; framework rejections are one line.
const REJECTION_TEXT_LIMIT: usize = 4096;

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.split(';').next().unwrap_or("").trim())
        .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"))
}

/// The reason of a rewritten rejection: ours for the limits, else the framework's own text,
/// else the status's name.
fn rejection_message(
    status: StatusCode,
    allow: Option<&str>,
    text: Option<String>,
    max_body_bytes: usize,
) -> String {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request body is over the limit of {max_body_bytes} bytes")
        }
        StatusCode::REQUEST_TIMEOUT => "request took too long and was dropped".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => match allow {
            Some(allow) if !allow.is_empty() => {
                format!("method not allowed on this route; it accepts {allow}")
            }
            _ => "method not allowed on this route".to_owned(),
        },
        _ => text.unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("request refused")
                .to_lowercase()
        }),
    }
}

/// Headers every answer carries unless its handler chose otherwise: API answers hold patient
/// data, so no cache may keep them, and no browser may sniff them into another type.
fn secure_defaults(mut response: Response) -> Response {
    use axum::http::header;
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(axum::http::HeaderValue::from_static("nosniff"));
    response
}

/// Prometheus text format. Unauthenticated, like most scrape targets: it carries counts by
/// source and outcome, never personal data; restrict it at the network if that matters.
async fn metrics(State(state): State<AppState>) -> Response {
    refresh_gauges(&state).await;
    let content_type = [(
        axum::http::header::CONTENT_TYPE,
        "text/plain; version=0.0.4",
    )];
    (content_type, state.metrics.render()).into_response()
}

/// Gauges read from the database and the pool at scrape time.
async fn refresh_gauges(state: &AppState) {
    match store::outbound::pending_count(&state.db).await {
        Ok(pending) => state.metrics.outbox_depth.set(pending as i64),
        Err(error) => tracing::warn!(%error, "metrics: cannot count pending alerts"),
    }
    let (size, idle) = match state.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            let pool = state.db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        _ => {
            let pool = state.db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
    };
    state
        .metrics
        .db_pool
        .with_label_values(&["open"])
        .set(i64::from(size));
    state
        .metrics
        .db_pool
        .with_label_values(&["idle"])
        .set(idle as i64);
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "no such route")
}

/// Every error body the gateway sends over plain HTTP: `{"error": "..."}`.
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_405_names_the_allowed_methods() {
        let message = rejection_message(StatusCode::METHOD_NOT_ALLOWED, Some("GET,HEAD"), None, 10);
        assert_eq!(
            message,
            "method not allowed on this route; it accepts GET,HEAD"
        );
    }

    #[test]
    fn a_framework_rejection_keeps_its_reason_or_names_its_status() {
        let text = Some("Missing `Sec-WebSocket-Key` header".to_owned());
        assert_eq!(
            rejection_message(StatusCode::BAD_REQUEST, None, text, 10),
            "Missing `Sec-WebSocket-Key` header"
        );
        assert_eq!(
            rejection_message(StatusCode::UNSUPPORTED_MEDIA_TYPE, None, None, 10),
            "unsupported media type"
        );
    }
}
