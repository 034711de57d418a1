//! The websocket benchmarks' baseline: the least work that still does the gateway's job for a
//! dashboard screen, with stock parts. Signed Chup webhooks come in (verified with the
//! gateway's own verifier, as `bench/echo` does), become an in-memory queue entry, and go out
//! through a `tokio::sync::broadcast` to subscribers served by the stock
//! `async_graphql_axum::GraphQLSubscription` handler (default buffers, async-graphql's own
//! protocol engine). No storage, no event log, no auth.
//!
//! The schema has the gateway's shape for what `wsbench` asks: `services { id vendorId }` and
//! `queueChanged(serviceId)` with `id vendorId state { kind label } client { name phone }
//! service { name } staff { name } joinedAt`, so one client drives both servers.
//!
//! usage: `carebridge-bench-wsbase ADDRESS SECRET`

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use async_graphql::{Context, ID, Object, Schema, SimpleObject, Subscription};
use async_graphql_axum::{GraphQL, GraphQLSubscription};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, get_service, post};
use bytes::Bytes;
use carebridge::domain::Vendor;
use carebridge::vendors::{Credentials, Unverified, Webhook};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

#[derive(SimpleObject, Clone)]
struct QueueState {
    kind: String,
    label: Option<String>,
}

#[derive(SimpleObject, Clone)]
struct Client {
    name: Option<String>,
    phone: Option<String>,
}

#[derive(SimpleObject, Clone)]
struct Service {
    id: ID,
    vendor_id: String,
    name: Option<String>,
}

#[derive(SimpleObject, Clone)]
struct Staff {
    name: Option<String>,
}

#[derive(SimpleObject, Clone)]
struct QueueEntry {
    id: ID,
    vendor_id: String,
    state: QueueState,
    client: Option<Client>,
    service: Option<Service>,
    staff: Option<Staff>,
    joined_at: Option<String>,
}

#[derive(Clone)]
struct Hub {
    secret: Arc<str>,
    sender: broadcast::Sender<Arc<QueueEntry>>,
    services: Arc<Mutex<BTreeMap<String, Service>>>,
}

struct Query;

#[Object]
impl Query {
    async fn services(&self, ctx: &Context<'_>) -> Vec<Service> {
        let hub = ctx.data_unchecked::<Hub>();
        let services = hub
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        services.values().cloned().collect()
    }
}

struct Subscription;

#[Subscription]
impl Subscription {
    async fn queue_changed(
        &self,
        ctx: &Context<'_>,
        service_id: Option<ID>,
    ) -> impl Stream<Item = Arc<QueueEntry>> + use<> {
        let receiver = ctx.data_unchecked::<Hub>().sender.subscribe();
        BroadcastStream::new(receiver).filter_map(move |entry| {
            let wanted = entry.ok().filter(|entry| {
                service_id.as_ref().is_none_or(|id| {
                    entry
                        .service
                        .as_ref()
                        .is_some_and(|service| &service.id == id)
                })
            });
            async move { wanted }
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(secret)) = (args.next(), args.next()) else {
        eprintln!("usage: carebridge-bench-wsbase ADDRESS SECRET");
        return ExitCode::FAILURE;
    };
    let listener = match tokio::net::TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let hub = Hub {
        secret: secret.into(),
        sender: broadcast::channel(4096).0,
        services: Arc::default(),
    };
    let schema = Schema::build(Query, async_graphql::EmptyMutation, Subscription)
        .data(hub.clone())
        .finish();
    let router = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/webhooks/{source}", post(receive))
        .route(
            "/graphql",
            get_service(GraphQLSubscription::new(schema.clone()))
                .post_service(GraphQL::new(schema)),
        )
        .with_state(hub);
    match axum::serve(listener, router).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Verify, parse, publish: the gateway's job minus storage.
async fn receive(State(hub): State<Hub>, body: Bytes) -> (StatusCode, &'static str) {
    let webhook = Webhook::<Unverified>::new(Vendor::Chup, body, None);
    let Ok(verified) = webhook.verify(Credentials::HmacKey(hub.secret.as_bytes())) else {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"bad signature"}"#);
    };
    let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(verified.body()) else {
        return (StatusCode::BAD_REQUEST, r#"{"error":"not JSON"}"#);
    };
    let Some(entry) = queue_entry(&envelope["payload"]["data"]) else {
        return (StatusCode::BAD_REQUEST, r#"{"error":"not a queue entry"}"#);
    };
    if let Some(service) = &entry.service {
        let mut services = hub
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        services
            .entry(service.vendor_id.clone())
            .or_insert_with(|| service.clone());
    }
    // No receiver is not an error: nobody is watching.
    let _nobody_listening = hub.sender.send(Arc::new(entry));
    (
        StatusCode::OK,
        r#"{"id":0,"status":"PROCESSED","duplicate":false}"#,
    )
}

fn queue_entry(data: &serde_json::Value) -> Option<QueueEntry> {
    let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
    let number = |value: &serde_json::Value| value.as_u64().map(|n| n.to_string());
    let ticket = number(&data["id"])?;
    let service = number(&data["service_id"]).map(|vendor_id| Service {
        id: ID(format!("Service:{vendor_id}")),
        name: text(&data["service_name"]),
        vendor_id,
    });
    Some(QueueEntry {
        id: ID(format!("QueueEntry:{ticket}")),
        vendor_id: ticket,
        state: QueueState {
            kind: text(&data["state"]["name"]).unwrap_or_default(),
            label: text(&data["state_name"]),
        },
        client: Some(Client {
            name: text(&data["registered_client_name"]),
            phone: text(&data["registered_client_phone"]),
        }),
        service,
        staff: Some(Staff {
            name: text(&data["staff_name"]),
        }),
        joined_at: text(&data["created_at"]),
    })
}
