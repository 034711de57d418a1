//! The router: every HTTP route of the gateway and the layers around them (request id,
//! tracing span, body limit, timeout). Each area contributes its own `router()`.

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
            move |response: Response| async move { json_framing_errors(response, max_body_bytes) },
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

/// The body-limit and timeout layers answer in plain text; every error the gateway sends is
/// JSON, so those answers are rewritten here with a message naming the limit.
fn json_framing_errors(response: Response, max_body_bytes: usize) -> Response {
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE if !is_json => error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over the limit of {max_body_bytes} bytes"),
        ),
        StatusCode::REQUEST_TIMEOUT if !is_json => error_response(
            StatusCode::REQUEST_TIMEOUT,
            "request took too long and was dropped",
        ),
        _ => response,
    }
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
