//! Local stand-ins for the vendor APIs we cannot reach, behaving as their documents say:
//! Chup issues a bearer token for the right `api_key` + `business_id` + `email` and accepts
//! alerts only with a current token; vCita's hook API checks the account's authorization header
//! and answers `{"response": "Subscribed"}`, or HTTP 500 `{"response": "Not Subscribed"}`.
//! Each can be told to fail the way real services do (down, expired tokens, rate limits).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

pub const CHUP_API_KEY: &str = "chup-api-key";
pub const CHUP_BUSINESS: &str = "4242";
pub const CHUP_EMAIL: &str = "it@clinic.example";
pub const VCITA_TOKEN: &str = "vcita-api-token";

#[derive(Debug, Clone)]
pub struct ReceivedAlert {
    pub visit_id: String,
    pub message: String,
    pub idempotency_key: Option<String>,
}

#[derive(Default)]
pub struct ChupState {
    pub token_requests: AtomicUsize,
    valid_tokens: Mutex<Vec<String>>,
    pub alerts: Mutex<Vec<ReceivedAlert>>,
    pub alert_attempts: Mutex<Vec<Instant>>,
    /// Answer this many alert requests with 503 first.
    pub down_for: AtomicUsize,
    /// Answer every alert request with 503.
    pub down: AtomicBool,
    /// Answer the next alert request with 429 + Retry-After: 1.
    pub rate_limit_next: AtomicBool,
    /// Answer an accepted alert this many milliseconds after recording it, like a real API
    /// over a network: the alert is Chup's before the caller hears so.
    pub latency_ms: AtomicU64,
}

impl ChupState {
    /// Every token issued so far stops working (as if they expired).
    pub fn expire_tokens(&self) {
        self.valid_tokens.lock().expect("lock").clear();
    }

    pub fn sent(&self) -> Vec<ReceivedAlert> {
        self.alerts.lock().expect("lock").clone()
    }
}

pub struct Fake<S> {
    pub url: String,
    pub state: Arc<S>,
    server: tokio::task::JoinHandle<()>,
}

impl<S> Drop for Fake<S> {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve<S: Send + Sync + 'static>(router: Router, state: Arc<S>) -> Fake<S> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Fake { url, state, server }
}

pub async fn chup() -> Fake<ChupState> {
    let state = Arc::new(ChupState::default());
    let router = Router::new()
        .route("/api/v1/auth/token", post(chup_token))
        .route("/api/v1/alerts", post(chup_alert))
        .with_state(state.clone());
    serve(router, state).await
}

async fn chup_token(State(state): State<Arc<ChupState>>, Json(body): Json<Value>) -> Response {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let right =
        body == json!({"api_key": CHUP_API_KEY, "business_id": CHUP_BUSINESS, "email": CHUP_EMAIL});
    if !right {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unauthenticated."})),
        )
            .into_response();
    }
    let token = format!("chup-token-{}", uuid::Uuid::new_v4().simple());
    state.valid_tokens.lock().expect("lock").push(token.clone());
    Json(json!({"token": token, "expires_in": 3600})).into_response()
}

async fn chup_alert(
    State(state): State<Arc<ChupState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    state
        .alert_attempts
        .lock()
        .expect("lock")
        .push(Instant::now());
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let known = token.is_some_and(|t| {
        state
            .valid_tokens
            .lock()
            .expect("lock")
            .iter()
            .any(|v| v == t)
    });
    if !known {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Unauthenticated."})),
        )
            .into_response();
    }
    if state.down.load(Ordering::SeqCst)
        || state
            .down_for
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance").into_response();
    }
    if state.rate_limit_next.swap(false, Ordering::SeqCst) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response();
    }
    let (Some(visit_id), Some(message)) = (body["visit_id"].as_str(), body["message"].as_str())
    else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "visit_id and message are required"})),
        )
            .into_response();
    };
    if visit_id == "no-such-visit" {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"message": "Visit not found"})),
        )
            .into_response();
    }
    state.alerts.lock().expect("lock").push(ReceivedAlert {
        visit_id: visit_id.to_owned(),
        message: message.to_owned(),
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    let latency = state.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    Json(json!({"success": true})).into_response()
}

#[derive(Debug, Clone)]
pub struct HookCall {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
pub struct VcitaState {
    pub calls: Mutex<Vec<HookCall>>,
    /// The authorization header the account expects (`Bearer …` or legacy `Token …`).
    pub expected_authorization: Mutex<String>,
}

pub async fn vcita(scheme: &str) -> Fake<VcitaState> {
    let state = Arc::new(VcitaState::default());
    *state.expected_authorization.lock().expect("lock") = format!("{scheme} {VCITA_TOKEN}");
    let router = Router::new()
        .route(
            "/v1/subscriptions/standard/subscribe",
            post(vcita_subscribe),
        )
        .route(
            "/v1/subscriptions/standard/unsubscribe",
            post(vcita_unsubscribe),
        )
        .with_state(state.clone());
    serve(router, state).await
}

fn vcita_call(
    state: &VcitaState,
    path: &str,
    headers: &HeaderMap,
    body: &Value,
) -> Option<Response> {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.calls.lock().expect("lock").push(HookCall {
        path: path.to_owned(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    let expected = state.expected_authorization.lock().expect("lock").clone();
    (authorization.as_deref() != Some(expected.as_str())).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"status": "Error", "error": "Unauthorized"})),
        )
            .into_response()
    })
}

async fn vcita_subscribe(
    State(state): State<Arc<VcitaState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = vcita_call(&state, "subscribe", &headers, &body) {
        return refused;
    }
    let target = body["target_url"].as_str().unwrap_or("");
    if body["event"].as_str().is_none() || target.is_empty() || target.contains("unreachable") {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"response": "Not Subscribed"})),
        )
            .into_response();
    }
    Json(json!({"response": "Subscribed"})).into_response()
}

async fn vcita_unsubscribe(
    State(state): State<Arc<VcitaState>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = vcita_call(&state, "unsubscribe", &headers, &body) {
        return refused;
    }
    Json(json!({"response": "Unsubscribed"})).into_response()
}

/// The test config with `[chup]` and `[vcita]` pointing at the fakes. The alert lease is 5 s,
/// not 60: an app stopped in a test aborts its outbox worker, possibly between claiming an
/// alert and settling it, and the next process may only retry it once the lease runs out —
/// within the tests' 20 s waits. A send to a local fake takes milliseconds, far below 5 s.
pub fn vendor_config(
    chup_url: &str,
    vcita_url: &str,
    vcita_scheme: &str,
    max_attempts: u32,
) -> String {
    let sections = format!(
        r#"
        [chup]
        api_base = "{chup_url}"
        api_key = "{CHUP_API_KEY}"
        business_id = "{CHUP_BUSINESS}"
        email = "{CHUP_EMAIL}"
        max_attempts = {max_attempts}
        retry_base_ms = 20
        lease_secs = 5
        [vcita]
        api_base = "{vcita_url}"
        token = "{VCITA_TOKEN}"
        auth_scheme = "{vcita_scheme}"
        "#
    );
    // Top-level keys must come before the first table.
    format!(
        "public_url = \"https://carebridge.clinic.example\"\n{}",
        crate::helpers::test_config_toml(&sections)
    )
}
