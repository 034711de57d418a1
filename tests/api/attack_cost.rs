//! Issue 19: attacks reproduced against the real gateway (see the README's Security section).
//!
//! Item 5, query cost: every list counts its page size, aliases and root fields are bounded, a
//! request refused for cost is a 4xx with a code before any database work, and one key at its
//! concurrency bound gets 429 while other keys go on.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::post as on_post;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{ADMIN_KEY, READ_KEY, TestApp, WRITE_KEY, spawn_app, spawn_app_with};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Posts `query` with `key`, accepting `accept`; the status, Retry-After and JSON body.
async fn post(app: &TestApp, key: &str, accept: &str, query: &str) -> (u16, Option<String>, Value) {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(key)
        .header("accept", accept)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("graphql request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        status,
        retry_after,
        response.json().await.expect("JSON body"),
    )
}

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

/// Asserts `query` is refused for cost on both media types, 400 with `QUERY_TOO_COMPLEX`,
/// without one database statement. The gateway's background loops tick once a second on the
/// same statement counter, so the fewest statements over three tries is what counts.
async fn assert_refused_for_cost(app: &TestApp, key: &str, query: &str) {
    for accept in [GRAPHQL_RESPONSE, "application/json"] {
        let mut fewest = u64::MAX;
        for _ in 0..3 {
            let before = app.statements.get();
            let (status, _, body) = post(app, key, accept, query).await;
            fewest = fewest.min(app.statements.get() - before);
            assert_eq!(status, 400, "{accept}: {body}");
            assert_eq!(code(&body), Some("QUERY_TOO_COMPLEX"), "{accept}: {body}");
            assert!(body.get("data").is_none(), "nothing ran: {body}");
        }
        assert_eq!(fewest, 0, "a request refused for cost runs no statement");
    }
}

fn aliases(count: usize, field: &str) -> String {
    let fields: Vec<String> = (0..count).map(|i| format!("a{i}: {field}")).collect();
    format!("{{ {} }}", fields.join(" "))
}

#[tokio::test]
async fn twelve_hundred_aliases_of_a_thousand_events_are_refused_before_any_database_work() {
    let app = spawn_app().await;
    let query = aliases(1200, "events(first: 1000) { cursor kind payload }");
    assert_refused_for_cost(&app, READ_KEY, &query).await;

    // The same attack through a fragment spread and an inline fragment.
    let fields: Vec<String> = (0..1200)
        .map(|i| format!("a{i}: events(first: 1000) {{ cursor }}"))
        .collect();
    let fragment = format!(
        "{{ ...Many }} fragment Many on Query {{ ... on Query {{ {} }} }}",
        fields.join(" ")
    );
    assert_refused_for_cost(&app, READ_KEY, &fragment).await;
}

#[tokio::test]
async fn events_alerts_and_audit_log_count_their_page_size_times_their_fields() {
    let app = spawn_app().await;
    let events =
        "{ events(first: 1000) { cursor kind sourceId entityType occurredAt recordedAt payload } }";
    assert_refused_for_cost(&app, READ_KEY, events).await;
    let alerts = "{ alerts(first: 500) { id visitId message status attempts lastError idempotencyKey createdAt sentAt queueEntry { id vendorId } } }";
    assert_refused_for_cost(&app, READ_KEY, alerts).await;
    let audit = "{ a: auditLog(first: 1000) { at actor action detail } b: auditLog(first: 1000) { at actor action detail } }";
    assert_refused_for_cost(&app, ADMIN_KEY, audit).await;
    // Nested lists count too: a page of entries times each one's history.
    let nested = "{ queueEntries(first: 100) { nodes { stateHistory { changedAt sourceEvent { id entities { entityType entityId change } } } } } }";
    assert_refused_for_cost(&app, READ_KEY, nested).await;

    // An honest page of a few fields still answers.
    for (key, query) in [
        (READ_KEY, "{ events(first: 1000) { cursor kind } }"),
        (READ_KEY, "{ alerts(first: 500) { id status } }"),
        (ADMIN_KEY, "{ auditLog(first: 1000) { at action } }"),
    ] {
        let (status, _, body) = post(&app, key, GRAPHQL_RESPONSE, query).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert!(body.get("errors").is_none(), "{query}: {body}");
    }
}

#[tokio::test]
async fn a_page_size_over_the_maximum_is_bad_user_input() {
    let app = spawn_app().await;
    for (key, query) in [
        (READ_KEY, "{ events(first: 1001) { cursor } }"),
        (READ_KEY, "{ alerts(first: 501) { id } }"),
        (ADMIN_KEY, "{ auditLog(first: 1001) { at } }"),
        (READ_KEY, "{ clients(first: 101) { totalCount } }"),
    ] {
        let (_, _, body) = post(&app, key, GRAPHQL_RESPONSE, query).await;
        assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{query}: {body}");
    }
}

#[tokio::test]
async fn too_many_root_fields_or_aliases_in_one_selection_are_refused() {
    let app = spawn_app().await;
    // Cheap fields, each its own database query: many of them are refused by count alone.
    assert_refused_for_cost(&app, READ_KEY, &aliases(40, "sources { id }")).await;
    assert_refused_for_cost(
        &app,
        READ_KEY,
        &aliases(40, "node(id: \"Q2xpZW50OjE=\") { id }"),
    )
    .await;
    let wide: Vec<String> = (0..150).map(|i| format!("a{i}: id")).collect();
    let nested = format!(
        "{{ clients(first: 1) {{ nodes {{ {} }} }} }}",
        wide.join(" ")
    );
    assert_refused_for_cost(&app, READ_KEY, &nested).await;
    // Root fields spread in from fragments are root fields too.
    let half: Vec<String> = (0..20).map(|i| format!("a{i}: sources {{ id }}")).collect();
    let other: Vec<String> = (0..20).map(|i| format!("b{i}: sources {{ id }}")).collect();
    let spread = format!(
        "{{ ...A ...B }} fragment A on Query {{ {} }} fragment B on Query {{ {} }}",
        half.join(" "),
        other.join(" ")
    );
    assert_refused_for_cost(&app, READ_KEY, &spread).await;

    // A mutation with many root fields is refused the same way, and nothing is sent.
    let sends: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "s{i}: sendAlert(input: {{visitId: \"v{i}\", message: \"hi\", idempotencyKey: \"k{i}\"}}) {{ id }}"
            )
        })
        .collect();
    let mutation = format!("mutation {{ {} }}", sends.join(" "));
    let (status, _, body) = post(&app, WRITE_KEY, GRAPHQL_RESPONSE, &mutation).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), Some("QUERY_TOO_COMPLEX"), "{body}");
    let (_, _, audit) = post(&app, ADMIN_KEY, GRAPHQL_RESPONSE, "{ auditLog { action } }").await;
    assert_eq!(
        audit["data"]["auditLog"],
        json!([]),
        "a refused mutation ran nothing, so it has no audit row"
    );

    // A dashboard-sized query still answers.
    let (status, _, body) = post(
        &app,
        READ_KEY,
        GRAPHQL_RESPONSE,
        &aliases(5, "sources { id }"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_query_refused_for_cost_over_websockets_is_an_error_for_that_operation() {
    let app = spawn_app().await;
    let mut request = format!("ws://{}/graphql", app.address)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {READ_KEY}")}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("send");
    let heavy = aliases(1200, "events(first: 1000) { cursor kind payload }");
    let before = app.statements.get();
    for (id, query) in [("heavy", heavy.as_str()), ("light", "{ sources { id } }")] {
        let subscribe = json!({"type": "subscribe", "id": id, "payload": {"query": query}});
        socket
            .send(Message::Text(subscribe.to_string().into()))
            .await
            .expect("send");
    }
    let mut heavy_error = None;
    let mut light_data = None;
    while heavy_error.is_none() || light_data.is_none() {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer within 10 s")
            .expect("open")
            .expect("frame");
        let Message::Text(text) = message else {
            continue;
        };
        let value: Value = serde_json::from_str(&text).expect("json");
        match (value["type"].as_str(), value["id"].as_str()) {
            (Some("error"), Some("heavy")) => heavy_error = Some(value["payload"][0].clone()),
            // A request error may also come as a `next` whose `data` is null: nothing ran.
            (Some("next"), Some("heavy")) => {
                assert!(
                    value["payload"]["data"].is_null(),
                    "the heavy query ran: {text:.200}"
                );
                heavy_error = Some(value["payload"]["errors"][0].clone());
            }
            (Some("next"), Some("light")) => light_data = Some(value["payload"].clone()),
            _ => {}
        }
    }
    let error = heavy_error.expect("error");
    assert_eq!(error["extensions"]["code"], "QUERY_TOO_COMPLEX", "{error}");
    assert!(light_data.expect("data")["data"]["sources"].is_array());
    assert!(
        app.statements.get() - before < 10,
        "only the light query touched the database"
    );
}

/// A vCita stand-in whose subscribe call reports that it arrived and then waits to be released:
/// the request that made it holds its key's slot for as long as the test wants.
struct HeldVcita {
    url: String,
    arrived: mpsc::UnboundedReceiver<()>,
    release: Arc<Notify>,
}

async fn held_vcita() -> HeldVcita {
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let held = release.clone();
    let router = Router::new().route(
        "/v1/subscriptions/standard/subscribe",
        on_post(move || {
            let arrived_tx = arrived_tx.clone();
            let held = held.clone();
            async move {
                let _ignored_if_test_gone = arrived_tx.send(());
                held.notified().await;
                axum::Json(json!({"response": "Subscribed"}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    HeldVcita {
        url,
        arrived,
        release,
    }
}

#[tokio::test]
async fn a_key_over_its_concurrency_bound_gets_429_while_another_keys_query_succeeds() {
    let mut vcita = held_vcita().await;
    let config = format!(
        "{}\n[limits]\nmax_concurrent_requests_per_key = 1\n",
        crate::fake_vendors::vendor_config("http://127.0.0.1:9", &vcita.url, "Bearer", 1)
    );
    let app = spawn_app_with(&config).await;
    let subscribe = r#"mutation { subscribeVcitaWebhook(input: {event: "client/created", targetUrl: "https://his.example/hook"}) { status } }"#;
    let client = app.client.clone();
    let url = app.url("/graphql");
    let held = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(WRITE_KEY)
            .json(&json!({ "query": subscribe }))
            .send()
            .await
            .expect("held request")
            .json::<Value>()
            .await
            .expect("json")
    });
    tokio::time::timeout(Duration::from_secs(10), vcita.arrived.recv())
        .await
        .expect("the held request reached vCita")
        .expect("arrived");

    let mut fewest = u64::MAX;
    for accept in [GRAPHQL_RESPONSE, "application/json", GRAPHQL_RESPONSE] {
        let before = app.statements.get();
        let (status, retry_after, body) = post(&app, WRITE_KEY, accept, "{ sources { id } }").await;
        fewest = fewest.min(app.statements.get() - before);
        assert_eq!(status, 429, "{accept}: {body}");
        assert_eq!(code(&body), Some("RATE_LIMITED"), "{body}");
        assert!(
            retry_after.is_some_and(|s| s.parse::<u64>().is_ok()),
            "Retry-After in seconds"
        );
    }
    assert_eq!(fewest, 0, "refused before any database work");
    let (status, _, body) = post(&app, READ_KEY, GRAPHQL_RESPONSE, "{ sources { id } }").await;
    assert_eq!(status, 200, "another key is not held up: {body}");
    assert!(body["data"]["sources"].is_array(), "{body}");

    vcita.release.notify_one();
    let answer = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("the held request finishes")
        .expect("task");
    assert_eq!(
        answer["data"]["subscribeVcitaWebhook"]["status"], "SUBSCRIBED",
        "{answer}"
    );
    let (status, _, body) = post(&app, WRITE_KEY, GRAPHQL_RESPONSE, "{ sources { id } }").await;
    assert_eq!(status, 200, "the slot is free again: {body}");
}

#[tokio::test]
async fn over_websockets_a_key_at_its_bound_gets_an_error_for_that_operation_only() {
    let mut vcita = held_vcita().await;
    let config = format!(
        "{}\n[limits]\nmax_concurrent_requests_per_key = 1\n",
        crate::fake_vendors::vendor_config("http://127.0.0.1:9", &vcita.url, "Bearer", 1)
    );
    let app = spawn_app_with(&config).await;
    let mut request = format!("ws://{}/graphql", app.address)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {WRITE_KEY}")}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("send");
    let subscribe = r#"mutation { subscribeVcitaWebhook(input: {event: "client/created", targetUrl: "https://his.example/hook"}) { status } }"#;
    let held = json!({"type": "subscribe", "id": "held", "payload": {"query": subscribe}});
    socket
        .send(Message::Text(held.to_string().into()))
        .await
        .expect("send");
    tokio::time::timeout(Duration::from_secs(10), vcita.arrived.recv())
        .await
        .expect("the held operation reached vCita")
        .expect("arrived");
    let second =
        json!({"type": "subscribe", "id": "second", "payload": {"query": "{ sources { id } }"}});
    socket
        .send(Message::Text(second.to_string().into()))
        .await
        .expect("send");
    let mut refused = None;
    let mut held_done = None;
    while refused.is_none() || held_done.is_none() {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer within 10 s")
            .expect("open")
            .expect("frame");
        let Message::Text(text) = message else {
            continue;
        };
        let value: Value = serde_json::from_str(&text).expect("json");
        match (value["type"].as_str(), value["id"].as_str()) {
            (Some("error"), Some("second")) => {
                refused = Some(value["payload"][0].clone());
                vcita.release.notify_one();
            }
            (Some("next"), Some("second")) => {
                assert!(value["payload"]["data"].is_null(), "it ran: {text}");
                refused = Some(value["payload"]["errors"][0].clone());
                vcita.release.notify_one();
            }
            (Some("next"), Some("held")) => held_done = Some(value["payload"].clone()),
            _ => {}
        }
    }
    assert_eq!(
        refused.expect("refused")["extensions"]["code"],
        "RATE_LIMITED"
    );
    let held = held_done.expect("held");
    assert_eq!(
        held["data"]["subscribeVcitaWebhook"]["status"], "SUBSCRIBED",
        "{held}"
    );
}
