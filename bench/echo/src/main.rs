//! The ingest benchmark's baseline ("echo"): the least work that still does the same job at the
//! door. A bare axum server, built from the same crate versions as the gateway, that accepts
//! `POST /webhooks/{source}`, verifies the Chup HMAC with the gateway's own verifier
//! (`carebridge::vendors`), parses the payload, and answers 200 without storing anything.
//! `GET /hello` is the HTTP ceiling. No tracing, no middleware: this is the physical limit of
//! the box that `bench/run-ingest.sh` divides the gateway's rate by.
//!
//! usage: `carebridge-bench-echo ADDRESS SECRET` (e.g. `127.0.0.1:18081 bench-chup-secret`)

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use carebridge::domain::Vendor;
use carebridge::vendors::{Credentials, Unverified, Webhook};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(secret)) = (args.next(), args.next()) else {
        eprintln!("usage: carebridge-bench-echo ADDRESS SECRET");
        return ExitCode::FAILURE;
    };
    let listener = match tokio::net::TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let router = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/webhooks/{source}", post(receive))
        .with_state(Arc::<str>::from(secret));
    match axum::serve(listener, router).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Verify (which parses the envelope) and parse the payload, as the gateway must before it
/// can store anything; answer with a receipt of the same shape.
async fn receive(State(secret): State<Arc<str>>, body: Bytes) -> (StatusCode, &'static str) {
    let webhook = Webhook::<Unverified>::new(Vendor::Chup, body, None);
    let Ok(verified) = webhook.verify(Credentials::HmacKey(secret.as_bytes())) else {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"bad signature"}"#);
    };
    match serde_json::from_slice::<serde_json::Value>(verified.body()) {
        Ok(_) => (
            StatusCode::OK,
            r#"{"id":0,"status":"PROCESSED","duplicate":false}"#,
        ),
        Err(_) => (StatusCode::BAD_REQUEST, r#"{"error":"not JSON"}"#),
    }
}
