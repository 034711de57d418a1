//! Issue 19, items 1, 9 and 13, reproduced against the real gateway: a source's URL token
//! reaching a read key through `vcitaSubscriptions`, erasure that left the patient in duplicate
//! and failed deliveries, and two of the gateway's own writers meeting on SQLite (`database is
//! locked`) answered as `INTERNAL`.

use std::collections::BTreeMap;

use entity::{alert, domain_event, vcita_subscription, webhook_event};
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::fake_vendors::{self, vendor_config};
use crate::helpers::{
    ADMIN_KEY, CHUP_SECRET, READ_KEY, TIMETAP_TOKEN, TestApp, VCITA_TOKEN, VSEE_TOKEN, WRITE_KEY,
    fixture, gql, ingest, post_webhook, spawn_app, spawn_app_with,
};

/// Every secret the test configs hold: source tokens and secrets, and the vendor API keys.
const SECRETS: [&str; 6] = [
    VCITA_TOKEN,
    VSEE_TOKEN,
    TIMETAP_TOKEN,
    CHUP_SECRET,
    fake_vendors::VCITA_TOKEN,
    fake_vendors::CHUP_API_KEY,
];

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "{what} carries the secret {secret:?}: {text}"
        );
    }
}

const SUBSCRIBE: &str = "mutation($input: SubscribeVcitaInput!) { subscribeVcitaWebhook(input: $input) { id event targetUrl status lastError } }";
const LIST: &str = "{ vcitaSubscriptions { id event targetUrl status lastError } }";

async fn stored_target_urls(app: &TestApp) -> Vec<String> {
    vcita_subscription::Entity::find()
        .all(&app.db)
        .await
        .expect("subscriptions")
        .into_iter()
        .map(|row| format!("{} {:?}", row.target_url, row.last_error))
        .collect()
}

#[tokio::test]
async fn a_read_or_admin_key_never_sees_a_source_token_in_vcita_subscriptions() {
    let chup = fake_vendors::chup().await;
    let vcita = fake_vendors::vcita("Bearer").await;
    let app = spawn_app_with(&vendor_config(&chup.url, &vcita.url, "Bearer", 3)).await;

    let subscribed = gql(
        &app,
        WRITE_KEY,
        SUBSCRIBE,
        json!({"input": {"event": "client/created", "sourceId": "vcita-main"}}),
    )
    .await;
    assert_eq!(
        subscribed["data"]["subscribeVcitaWebhook"]["status"], "SUBSCRIBED",
        "{subscribed}"
    );
    assert_no_secret("the subscribe answer", &subscribed.to_string());
    assert_eq!(
        subscribed["data"]["subscribeVcitaWebhook"]["targetUrl"],
        "https://carebridge.clinic.example/webhooks/vcita-main"
    );
    // vCita itself must still be given the URL it will post to, token included.
    let sent = vcita.state.calls.lock().expect("lock")[0].body.clone();
    assert_eq!(
        sent["target_url"],
        format!("https://carebridge.clinic.example/webhooks/vcita-main?token={VCITA_TOKEN}")
    );

    // Pasting the source's own URL, token and all, is the same subscription, stored the same.
    let pasted = gql(
        &app,
        WRITE_KEY,
        SUBSCRIBE,
        json!({"input": {"event": "client/updated", "targetUrl":
            format!("https://carebridge.clinic.example/webhooks/vcita-main?token={VCITA_TOKEN}")}}),
    )
    .await;
    assert_eq!(
        pasted["data"]["subscribeVcitaWebhook"]["id"],
        subscribed["data"]["subscribeVcitaWebhook"]["id"],
        "{pasted}"
    );
    assert_no_secret("the pasted-URL answer", &pasted.to_string());

    for key in [READ_KEY, WRITE_KEY, ADMIN_KEY] {
        let listed = gql(&app, key, LIST, json!({})).await;
        assert!(listed["errors"].is_null(), "{listed}");
        assert_eq!(
            listed["data"]["vcitaSubscriptions"]
                .as_array()
                .expect("list")
                .len(),
            1
        );
        assert_no_secret("vcitaSubscriptions", &listed.to_string());
    }
    assert_no_secret(
        "the stored rows",
        &stored_target_urls(&app).await.join("\n"),
    );

    let gone = gql(
        &app,
        WRITE_KEY,
        "mutation { unsubscribeVcitaWebhook(sourceId: \"vcita-main\") { targetUrl status } }",
        json!({}),
    )
    .await;
    assert_eq!(
        gone["data"]["unsubscribeVcitaWebhook"]["status"], "UNSUBSCRIBED",
        "{gone}"
    );
    assert_no_secret("the unsubscribe answer", &gone.to_string());
    let calls = vcita.state.calls.lock().expect("lock").clone();
    assert_eq!(
        calls.last().expect("call").body,
        json!({"target_url": format!("https://carebridge.clinic.example/webhooks/vcita-main?token={VCITA_TOKEN}")}),
        "vCita is asked to drop the URL it was given"
    );

    // Nothing else an operator or a dashboard reads carries a secret either.
    let sources = gql(
        &app,
        READ_KEY,
        "{ sources { id vendor webhookPath } }",
        json!({}),
    )
    .await;
    assert_no_secret("sources", &sources.to_string());
    let audit = gql(
        &app,
        ADMIN_KEY,
        "{ auditLog { actor action detail } }",
        json!({}),
    )
    .await;
    assert_no_secret("the audit log", &audit.to_string());
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_no_secret("/metrics", &metrics);
    app.stop().await;
}

#[tokio::test]
async fn a_subscription_recorded_while_vcita_is_unreachable_keeps_the_token_out() {
    // vCita's address is a port nothing listens on: the call fails in transit.
    let closed = format!("http://127.0.0.1:{}", crate::helpers::free_port());
    let app = spawn_app_with(&vendor_config(&closed, &closed, "Bearer", 3)).await;
    let failed = gql(
        &app,
        WRITE_KEY,
        SUBSCRIBE,
        json!({"input": {"event": "client/created", "sourceId": "vcita-main"}}),
    )
    .await;
    assert_eq!(
        failed["errors"][0]["extensions"]["code"], "VENDOR_ERROR",
        "{failed}"
    );
    assert_no_secret("the failed subscribe answer", &failed.to_string());
    let listed = gql(&app, READ_KEY, LIST, json!({})).await;
    assert_eq!(
        listed["data"]["vcitaSubscriptions"][0]["status"], "FAILED",
        "recorded: {listed}"
    );
    assert_no_secret("vcitaSubscriptions", &listed.to_string());
    let stored = stored_target_urls(&app).await;
    assert_eq!(stored.len(), 1);
    assert_no_secret("the stored rows", &stored.join("\n"));

    let gone = gql(
        &app,
        WRITE_KEY,
        "mutation { unsubscribeVcitaWebhook(sourceId: \"vcita-main\") { status } }",
        json!({}),
    )
    .await;
    assert_no_secret("the failed unsubscribe answer", &gone.to_string());
    assert_no_secret(
        "the stored rows",
        &stored_target_urls(&app).await.join("\n"),
    );
    app.stop().await;
}

#[tokio::test]
async fn a_target_url_carrying_another_sources_token_is_refused() {
    let chup = fake_vendors::chup().await;
    let vcita = fake_vendors::vcita("Bearer").await;
    let app = spawn_app_with(&vendor_config(&chup.url, &vcita.url, "Bearer", 3)).await;
    let refused = gql(
        &app,
        WRITE_KEY,
        SUBSCRIBE,
        json!({"input": {"event": "client/created",
            "targetUrl": format!("https://proxy.example/hook?t={VSEE_TOKEN}")}}),
    )
    .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{refused}"
    );
    assert_no_secret("the refusal", &refused.to_string());
    assert!(vcita.state.calls.lock().expect("lock").is_empty());
    assert!(stored_target_urls(&app).await.is_empty());
    app.stop().await;
}

// ---- Item 9: erasure reaches every delivery that names the client ----

const ERASE: &str = "mutation($id: ID!) { eraseClient(id: $id) { rawBodiesErased } }";

/// The id of the one client whose name matches `search`.
async fn client_id(app: &TestApp, search: &str) -> Value {
    let found = gql(
        app,
        READ_KEY,
        "query($s: String!) { clients(search: $s) { edges { node { id } } } }",
        json!({"s": search}),
    )
    .await;
    let id = found["data"]["clients"]["edges"][0]["node"]["id"].clone();
    assert!(id.is_string(), "client {search}: {found}");
    id
}

/// Status → how many stored raw bodies (and headers) contain any of `values`.
async fn deliveries_naming(app: &TestApp, values: &[&str]) -> BTreeMap<String, usize> {
    let mut found = BTreeMap::new();
    for row in webhook_event::Entity::find()
        .all(&app.db)
        .await
        .expect("inbox")
    {
        let body = String::from_utf8_lossy(row.body.as_deref().unwrap_or_default()).into_owned();
        let text = format!("{body} {}", row.headers);
        if values.iter().any(|value| text.contains(value)) {
            *found.entry(row.status).or_insert(0) += 1;
        }
    }
    found
}

/// `body` with one JSON field replaced (by a text substitution, keeping everything else).
fn with_field(body: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = String::from_utf8(body.to_vec()).expect("utf-8 fixture");
    assert!(text.contains(from), "fixture has {from}");
    text.replacen(from, to, 1).into_bytes()
}

#[tokio::test]
async fn erasure_removes_the_client_from_duplicate_and_failed_deliveries() {
    let app = spawn_app().await;
    // vCita: the client's delivery, the same delivery again (DUPLICATE), and a later update
    // that fails mapping (FAILED) — all three carry Dana's name, phone and email.
    let created = fixture("vcita", "client_created");
    assert_eq!(
        ingest(&app, "vcita", "client_created").await["status"],
        "PROCESSED"
    );
    let again = post_webhook(&app, "vcita-main", created.clone()).await;
    assert_eq!(
        again.json::<Value>().await.expect("json")["status"],
        "DUPLICATE"
    );
    let broken = with_field(
        &created,
        "\"updated_at\": \"2023-04-24T18:28:10.000+03:00\"",
        "\"updated_at\": \"not a time\"",
    );
    let failed = post_webhook(&app, "vcita-main", broken).await;
    assert_eq!(
        failed.json::<Value>().await.expect("json")["status"],
        "FAILED"
    );
    // Chup: a queue ticket twice (DUPLICATE), and a ticket update that fails mapping.
    ingest(&app, "chup", "live_queue_created").await;
    let ticket = post_webhook(&app, "chup-main", fixture("chup", "live_queue_created")).await;
    assert_eq!(
        ticket.json::<Value>().await.expect("json")["status"],
        "DUPLICATE"
    );
    let broken_ticket = with_field(
        &fixture("chup", "live_queue_updated_arrived"),
        "\"updated_at\": \"2024-01-17T00:41:09+08:00\"",
        "\"updated_at\": \"not a time\"",
    );
    let failed_ticket = post_webhook(&app, "chup-main", broken_ticket).await;
    assert_eq!(
        failed_ticket.json::<Value>().await.expect("json")["status"],
        "FAILED"
    );
    // Another patient in the same source, who must keep every delivery.
    ingest(&app, "chup", "client_created").await;

    let dana = ["Dana", "Levi", "54-123-4567", "dana.levi@example.co.il"];
    let saad = ["Saad", "923093927454"];
    let before = deliveries_naming(&app, &dana).await;
    assert_eq!(before.get("DUPLICATE"), Some(&1), "{before:?}");
    assert_eq!(before.get("FAILED"), Some(&1), "{before:?}");

    for (search, values) in [("Dana", &dana[..]), ("Saad", &saad[..])] {
        let id = client_id(&app, search).await;
        let erased = gql(&app, ADMIN_KEY, ERASE, json!({"id": id})).await;
        assert!(erased["errors"].is_null(), "{erased}");
        assert_eq!(
            erased["data"]["eraseClient"]["rawBodiesErased"], 3,
            "{search}: the first delivery, its duplicate and the failed one: {erased}"
        );
        let left = deliveries_naming(&app, values).await;
        assert!(
            left.is_empty(),
            "{search} is still in stored deliveries: {left:?}"
        );
    }
    let other = deliveries_naming(&app, &["meiling.tan@example.com"]).await;
    assert_eq!(
        other.get("PROCESSED"),
        Some(&1),
        "another patient's delivery stays"
    );
    // No derived copy keeps them either: events and what the API shows of deliveries.
    let events = domain_event::Entity::find()
        .all(&app.db)
        .await
        .expect("events");
    let text = serde_json::to_string(&events.iter().map(|e| &e.payload).collect::<Vec<_>>())
        .expect("json");
    for value in dana.iter().chain(saad.iter()) {
        assert!(!text.contains(value), "an event payload keeps {value}");
    }
    let listed = gql(
        &app,
        ADMIN_KEY,
        "{ webhookEvents(first: 100) { edges { node { status error rawBody headers } } } }",
        json!({}),
    )
    .await;
    for value in dana.iter().chain(saad.iter()) {
        assert!(
            !listed.to_string().contains(value),
            "webhookEvents keeps {value}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn erasure_reaches_deliveries_of_the_clients_appointments_whatever_their_status() {
    let app = spawn_app().await;
    ingest(&app, "vcita", "client_created").await;
    for name in ["appointment_created", "appointment_updated"] {
        ingest(&app, "vcita", name).await;
        // Each appointment delivery sent twice: the second is a DUPLICATE.
        let again = post_webhook(&app, "vcita-main", fixture("vcita", name)).await;
        assert_eq!(
            again.json::<Value>().await.expect("json")["status"],
            "DUPLICATE"
        );
    }
    let appointment_ids: Vec<String> = webhook_event::Entity::find()
        .all(&app.db)
        .await
        .expect("inbox")
        .iter()
        .filter(|row| row.event_type.as_deref() == Some("appointment/created"))
        .map(|row| row.id.0.to_string())
        .collect();
    assert_eq!(appointment_ids.len(), 2);
    let id = client_id(&app, "Dana").await;
    let erased = gql(&app, ADMIN_KEY, ERASE, json!({"id": id})).await;
    assert!(erased["errors"].is_null(), "{erased}");
    let bodies: Vec<(String, bool)> = webhook_event::Entity::find()
        .all(&app.db)
        .await
        .expect("inbox")
        .into_iter()
        .map(|row| (row.status, row.body.is_some()))
        .collect();
    assert!(
        bodies.iter().all(|(_, kept)| !kept),
        "every delivery of Dana and her appointments is erased: {bodies:?}"
    );
    app.stop().await;
}

// ---- Item 13: our own writers never fail a request ----

const ALERTS_THEN_ERASE: &str = r#"
mutation($id: ID!, $k1: String!, $k2: String!, $k3: String!) {
  a1: sendAlert(input: {visitId: "19242", message: "one", idempotencyKey: $k1}) { id }
  a2: sendAlert(input: {visitId: "19242", message: "two", idempotencyKey: $k2}) { id }
  a3: sendAlert(input: {visitId: "19243", message: "three", idempotencyKey: $k3}) { id }
  e: eraseClient(id: $id) { clientId }
}"#;

fn alerts_then_erase_vars(id: &Value, round: usize, lane: usize) -> Value {
    let key = |n: u8| format!("round-{lane}-{round}-{n}");
    json!({"id": id, "k1": key(1), "k2": key(2), "k3": key(3)})
}

fn assert_answered(body: &Value) {
    assert!(
        body["errors"].is_null(),
        "a request failed because our own writers met: {body}"
    );
}

#[tokio::test]
async fn alerts_then_an_erasure_in_one_request_never_answer_internal() {
    let chup = fake_vendors::chup().await;
    let vcita = fake_vendors::vcita("Bearer").await;
    let app = spawn_app_with(&vendor_config(&chup.url, &vcita.url, "Bearer", 3)).await;
    ingest(&app, "chup", "live_queue_created").await;
    let id = client_id(&app, "Saad").await;
    for round in 0..40 {
        let body = gql(
            &app,
            ADMIN_KEY,
            ALERTS_THEN_ERASE,
            alerts_then_erase_vars(&id, round, 0),
        )
        .await;
        assert_answered(&body);
    }
    // The outbox settled what it was given.
    let alerts = alert::Entity::find().all(&app.db).await.expect("alerts");
    assert!(alerts.len() >= 40);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_alerts_erasures_and_webhooks_never_answer_internal() {
    let chup = fake_vendors::chup().await;
    let vcita = fake_vendors::vcita("Bearer").await;
    let app = spawn_app_with(&vendor_config(&chup.url, &vcita.url, "Bearer", 3)).await;
    ingest(&app, "chup", "live_queue_created").await;
    ingest(&app, "vcita", "client_created").await;
    let saad = client_id(&app, "Saad").await;
    let dana = client_id(&app, "Dana").await;
    let app = std::sync::Arc::new(app);
    let mut lanes = Vec::new();
    for lane in 0..4 {
        let app = app.clone();
        let id = if lane % 2 == 0 {
            saad.clone()
        } else {
            dana.clone()
        };
        lanes.push(tokio::spawn(async move {
            for round in 0..15 {
                let body = gql(
                    &app,
                    ADMIN_KEY,
                    ALERTS_THEN_ERASE,
                    alerts_then_erase_vars(&id, round, lane),
                )
                .await;
                assert_answered(&body);
            }
        }));
    }
    // Webhooks keep the ingest writer busy meanwhile; none may fail either.
    let webhooks = {
        let app = app.clone();
        tokio::spawn(async move {
            for round in 0..30 {
                let body = with_field(
                    &fixture("vcita", "appointment_created"),
                    "\"appointment_id\": \"",
                    &format!("\"appointment_id\": \"r{round}-"),
                );
                let response = post_webhook(&app, "vcita-main", body).await;
                assert_eq!(response.status(), 200);
            }
        })
    };
    for lane in lanes {
        lane.await.expect("lane");
    }
    webhooks.await.expect("webhooks");
    let app = std::sync::Arc::into_inner(app).expect("only owner");
    app.stop().await;
}
