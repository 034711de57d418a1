//! The HTTP side of webhooks: `POST /webhooks/{source_id}`. The handler only extracts, checks
//! the request's framing (source, content type), verifies, asks the vendor layer what the body
//! means and hands the result to the store; every answer is JSON a vendor's delivery log can
//! show.

use axum::Json;
use axum::Router;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde::Serialize;

use crate::config::SourceCredential;
use crate::startup::AppState;
use crate::store::ingest::{Inbound, Recorded};
use crate::vendors::{self, Credentials, Unverified, VerifyError, Webhook};

pub mod rate_limit;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/webhooks/{source_id}",
        post(receive).fallback(method_not_allowed),
    )
}

/// Any method but POST on a webhook URL: 405 with `Allow` and a JSON reason (axum's own 405 has
/// an empty body).
async fn method_not_allowed() -> Response {
    let mut response = IngestError::MethodNotAllowed.into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    response
}

/// The `?token=` of a webhook URL, read from the raw query string so that every malformed query
/// is answered by [`IngestError`] (JSON), not by the extractor's plain-text rejection. A token
/// given twice is refused: which one to check would be a guess.
fn url_token(query: Option<&str>) -> Result<Option<String>, IngestError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| IngestError::BadUrl("the query string is not valid URL encoding".into()))?;
    let mut tokens = pairs.into_iter().filter(|(name, _)| name == "token");
    let token = tokens.next().map(|(_, value)| value);
    if tokens.next().is_some() {
        return Err(IngestError::BadUrl(
            "the URL has more than one `token`; send it once".into(),
        ));
    }
    Ok(token)
}

/// What a vendor gets back for a stored delivery.
#[derive(Debug, Serialize)]
struct Receipt {
    /// The inbox id of this delivery.
    id: i64,
    status: &'static str,
    duplicate: bool,
}

/// Why a delivery was refused; converted to a status code and a JSON message once, here.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("unknown source {0:?}")]
    UnknownSource(String),
    /// The path or query string cannot be read (bad percent-encoding, a repeated `token`).
    #[error("{0}")]
    BadUrl(String),
    /// The request body could not be read (cut off, or over the size limit).
    #[error("the request body could not be read: {0}")]
    UnreadableBody(String),
    #[error("webhooks are delivered with POST")]
    MethodNotAllowed,
    #[error("content type {0:?} is not JSON; send application/json")]
    UnsupportedContentType(String),
    #[error("{0}")]
    Unauthorized(VerifyError),
    #[error("{0}")]
    Malformed(String),
    #[error("{reason}")]
    Rejected { id: i64, reason: String },
    #[error("storage unavailable; retry later")]
    StorageUnavailable,
    #[error("too many deliveries for this source; retry after {0} s")]
    RateLimited(u64),
    /// The source's credential does not fit its vendor: our configuration, not the sender.
    #[error("this source is misconfigured on the gateway; its operator has been told")]
    Misconfigured,
}

impl IngestError {
    /// The outcome label of a refused delivery (metrics).
    fn outcome(&self) -> &'static str {
        match self {
            IngestError::UnknownSource(_) => "unknown_source",
            IngestError::BadUrl(_) | IngestError::UnreadableBody(_) => "malformed",
            IngestError::MethodNotAllowed => "method_not_allowed",
            IngestError::UnsupportedContentType(_) => "unsupported_media_type",
            IngestError::Unauthorized(_) => "unauthorized",
            IngestError::Malformed(_) => "malformed",
            IngestError::Rejected { .. } => "rejected",
            IngestError::StorageUnavailable => "unavailable",
            IngestError::RateLimited(_) => "rate_limited",
            IngestError::Misconfigured => "misconfigured",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = match &self {
            IngestError::UnknownSource(_) => StatusCode::NOT_FOUND,
            IngestError::BadUrl(_) => StatusCode::BAD_REQUEST,
            IngestError::UnreadableBody(_) => StatusCode::BAD_REQUEST,
            IngestError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            IngestError::UnsupportedContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IngestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IngestError::Malformed(_) | IngestError::Rejected { .. } => StatusCode::BAD_REQUEST,
            IngestError::StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            IngestError::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut body = serde_json::json!({ "error": self.to_string() });
        if let IngestError::Rejected { id, .. } = &self {
            body["id"] = (*id).into();
            body["status"] = "REJECTED".into();
        }
        let mut response = (status, Json(body)).into_response();
        if let IngestError::RateLimited(seconds) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// Every extractor's rejection is taken as a `Result` and turned into an [`IngestError`], so
/// that no refusal on this path is axum's plain text.
#[tracing::instrument(skip_all, fields(source, event))]
async fn receive(
    State(state): State<AppState>,
    source_id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Receipt>, IngestError> {
    let started = std::time::Instant::now();
    let mut event = "-";
    let source_id = match source_id {
        Ok(Path(source_id)) => source_id,
        Err(_) => {
            let error = IngestError::BadUrl("the webhook path is not valid UTF-8".into());
            let result = Err(error);
            record_metrics(&state, None, event, &result, started.elapsed());
            return result;
        }
    };
    let source = state
        .config
        .source(&source_id)
        .map(|source| source.id.as_str());
    tracing::Span::current().record("source", source.unwrap_or("unknown"));
    let result = match (url_token(query.as_deref()), body) {
        (Err(error), _) => Err(error),
        (_, Err(rejection)) => Err(IngestError::UnreadableBody(rejection.body_text())),
        (Ok(token), Ok(body)) => {
            ingest(&state, &source_id, token, &headers, body, &mut event).await
        }
    };
    record_metrics(&state, source, event, &result, started.elapsed());
    result
}

/// Counts the delivery by source, event and outcome. Every label comes from a closed set: a
/// configured source id (else `unknown`), a known event type (else `other`, see
/// [`vendors::event_label`]) and an outcome of [`IngestError::outcome`] or an inbox status.
fn record_metrics(
    state: &AppState,
    source: Option<&str>,
    event: &'static str,
    result: &Result<Json<Receipt>, IngestError>,
    elapsed: std::time::Duration,
) {
    let outcome = match result {
        Ok(Json(receipt)) => receipt.status.to_ascii_lowercase(),
        Err(error) => error.outcome().to_owned(),
    };
    let source = source.unwrap_or("unknown");
    let metrics = &state.metrics;
    metrics
        .webhooks
        .with_label_values(&[source, event, outcome.as_str()])
        .inc();
    metrics
        .ingest_seconds
        .with_label_values(&[outcome.as_str()])
        .observe(elapsed.as_secs_f64());
    if matches!(result, Err(IngestError::Unauthorized(_))) {
        metrics
            .verification_failures
            .with_label_values(&[source])
            .inc();
    }
    if source != "unknown" {
        metrics
            .last_delivery
            .with_label_values(&[source])
            .set(chrono::Utc::now().timestamp());
    }
}

async fn ingest(
    state: &AppState,
    source_id: &str,
    url_token: Option<String>,
    headers: &HeaderMap,
    body: Bytes,
    event: &mut &'static str,
) -> Result<Json<Receipt>, IngestError> {
    let source = state
        .config
        .source(source_id)
        .ok_or_else(|| IngestError::UnknownSource(source_id.to_owned()))?;
    let content_type = json_content_type(headers)?;

    let credentials = match &source.credential {
        SourceCredential::HmacSecret(secret) => Credentials::HmacKey(secret.expose().as_bytes()),
        SourceCredential::UrlToken(token) => Credentials::UrlToken(token.expose()),
    };
    let webhook = Webhook::<Unverified>::new(source.vendor, body, url_token);
    let verified = webhook.verify(credentials).map_err(|error| match error {
        VerifyError::Malformed(reason) => IngestError::Malformed(reason),
        VerifyError::WrongCredentials => {
            tracing::error!("source credential does not match its vendor");
            IngestError::Misconfigured
        }
        other => {
            tracing::warn!(reason = %other, "webhook refused: verification failed");
            IngestError::Unauthorized(other)
        }
    })?;

    if let Err(wait) = state.webhook_rate.check(source.id.as_str()) {
        tracing::warn!("webhook refused: source over its rate limit");
        return Err(IngestError::RateLimited(
            wait.as_secs_f64().ceil().max(1.0) as u64
        ));
    }
    let normalized = vendors::normalize(&verified, &state.mapper_config);
    if let Ok(delivery) = &normalized {
        // The label, not the event type as sent: that is the sender's text, of any size.
        *event = vendors::event_label(source.vendor, delivery.event_type.as_deref());
        tracing::Span::current().record("event", *event);
    }
    let inbound = Inbound {
        source_id: source.id.clone(),
        vendor: source.vendor,
        content_type,
        headers: kept_headers(headers),
        webhook: verified,
        normalized,
    };
    match state.ingestor.record(inbound).await {
        Ok(Recorded::Stored { id, status }) => {
            tracing::info!(inbox_id = id, status = status.as_str(), "webhook stored");
            Ok(Json(Receipt {
                id,
                status: status.as_str(),
                duplicate: status.is_duplicate(),
            }))
        }
        Ok(Recorded::Rejected { id, reason }) => {
            tracing::warn!(inbox_id = id, "webhook rejected: not the vendor's shape");
            Err(IngestError::Rejected { id, reason })
        }
        Err(error) => {
            tracing::error!(%error, "webhook not stored: storage failed");
            Err(IngestError::StorageUnavailable)
        }
    }
}

/// Accepts JSON media types, and a missing header (no vendor documents its content type, so a
/// missing one is not proof of a wrong body); anything else is refused with 415.
fn json_content_type(headers: &HeaderMap) -> Result<Option<String>, IngestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").to_owned();
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if is_json {
        Ok(Some(text))
    } else {
        Err(IngestError::UnsupportedContentType(text))
    }
}

/// Request headers worth keeping for an operator, minus anything that could carry a secret.
fn kept_headers(headers: &HeaderMap) -> serde_json::Value {
    const SECRET_HEADERS: [&str; 5] = [
        "authorization",
        "cookie",
        "proxy-authorization",
        "x-api-key",
        "x-apitoken",
    ];
    let mut kept = serde_json::Map::new();
    for (name, value) in headers {
        if SECRET_HEADERS.contains(&name.as_str()) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            kept.insert(name.as_str().to_owned(), value.into());
        }
    }
    serde_json::Value::Object(kept)
}
