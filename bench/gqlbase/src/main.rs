//! The dashboard-query benchmark's baseline: the least work that still answers the same
//! GraphQL query with the same JSON. A bare async-graphql schema behind the stock
//! `async-graphql-axum` handler, built from the same crate versions as the gateway, with the
//! gateway's field names for `queue(serviceId, date)` (entries with state, client, staff and
//! service) as plain `SimpleObject`s, answered from memory: no database, no API key check, no
//! DataLoader, no id encoding, no limits, no middleware. This is async-graphql's ceiling for
//! the shape, which `bench/run-query.sh` divides the gateway's rate by.
//!
//! The entries are read at start from a file holding the gateway's own answer to the benchmark
//! query (`{"data":{"queue":[…]}}`), so both servers send the same values and the same number
//! of bytes (the script checks the sizes).
//!
//! usage: `carebridge-bench-gqlbase ADDRESS ANSWER.json`

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use async_graphql::{
    Context, EmptyMutation, EmptySubscription, Enum, ID, Object, Schema, SimpleObject,
};
use async_graphql_axum::GraphQL;
use axum::Router;
use axum::routing::{get, post_service};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

#[derive(Enum, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum QueueStateKind {
    Waiting,
    Arrived,
    Serving,
    Served,
    NoShow,
    Moved,
    Cancelled,
    Pharmacy,
    Billing,
    Ended,
    Other,
}

#[derive(SimpleObject, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct QueueState {
    kind: QueueStateKind,
    #[serde(default)]
    raw_code: Option<i64>,
    #[serde(default)]
    raw_name: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

#[derive(SimpleObject, Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
struct Client {
    id: ID,
    vendor_id: String,
    source_id: String,
    name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
    email: Option<String>,
}

#[derive(SimpleObject, Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
struct Staff {
    id: ID,
    vendor_id: String,
    source_id: String,
    name: Option<String>,
    email: Option<String>,
}

#[derive(SimpleObject, Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
struct Service {
    id: ID,
    vendor_id: String,
    source_id: String,
    name: Option<String>,
    duration_minutes: Option<i32>,
}

#[derive(SimpleObject, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct QueueEntry {
    id: ID,
    #[serde(default)]
    vendor_id: String,
    #[serde(default)]
    source_id: String,
    state: QueueState,
    #[serde(default)]
    client: Option<Client>,
    #[serde(default)]
    service: Option<Service>,
    #[serde(default)]
    staff: Option<Staff>,
    #[serde(default)]
    queue_date: Option<NaiveDate>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    joined_at: Option<DateTime<Utc>>,
    #[serde(default)]
    vendor_updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    deleted: bool,
}

struct Query;

#[Object]
impl Query {
    /// The stored board, whatever the arguments (the benchmark asks for one board only).
    async fn queue(&self, ctx: &Context<'_>, service_id: ID, date: NaiveDate) -> Vec<QueueEntry> {
        let _ = (service_id, date);
        ctx.data_unchecked::<Arc<Vec<QueueEntry>>>()
            .as_ref()
            .clone()
    }
}

#[derive(Deserialize)]
struct Answer {
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    queue: Vec<QueueEntry>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(answer)) = (args.next(), args.next()) else {
        eprintln!("usage: carebridge-bench-gqlbase ADDRESS ANSWER.json");
        return ExitCode::FAILURE;
    };
    let entries = match std::fs::read(&answer)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice::<Answer>(&bytes).map_err(|e| e.to_string()))
    {
        Ok(answer) => answer.data.queue,
        Err(error) => {
            eprintln!("cannot read the answer file {answer}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(Arc::new(entries))
        .finish();
    let listener = match tokio::net::TcpListener::bind(&address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("cannot listen on {address}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let router = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/graphql", post_service(GraphQL::new(schema)));
    match axum::serve(listener, router).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
