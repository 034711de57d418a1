//! Issue 19: attacks reproduced against the real gateway (see the README's Security section).
//!
//! Items 3 and 4: every executed mutation field and admin read is audited exactly once, over
//! HTTP and both websocket protocols, however the document spells it (fragments, inline
//! fragments, aliases, several root fields, the operation name inside the document); and a key
//! reads only what its scopes allow, on every path (mutation results, `node`, subscriptions).

use serde_json::{Value, json};

use crate::fake_vendors::{self, vendor_config};
use crate::helpers::{ADMIN_KEY, READ_KEY, TestApp, WRITE_KEY, gql, ingest, spawn_app};
use crate::helpers::{post_webhook, spawn_app_with};
use crate::subscriptions::{Client, LEGACY_WS, TRANSPORT_WS, connect};

/// A key that may act on vendors but read nothing.
const WRITE_ONLY_KEY: &str = "write-only-key-0123456789";

fn write_only_key() -> String {
    format!(
        "\n[[api_keys]]\nname = \"write-only\"\nkey = \"{WRITE_ONLY_KEY}\"\nscopes = [\"write\"]\n"
    )
}

/// The audit rows so far, oldest first, without the rows of reading the log itself.
async fn audit_rows(app: &TestApp) -> Vec<Value> {
    let log = gql(
        app,
        ADMIN_KEY,
        "{ auditLog(first: 1000) { actor action detail } }",
        json!({}),
    )
    .await;
    let mut rows: Vec<Value> = log["data"]["auditLog"]
        .as_array()
        .unwrap_or_else(|| panic!("audit log: {log}"))
        .iter()
        .filter(|row| row["detail"]["fields"] != json!(["auditLog"]))
        .cloned()
        .collect();
    rows.reverse();
    rows
}

/// The one audit row written since `before` rows, asserting there is exactly one.
async fn the_new_row(app: &TestApp, before: usize) -> Value {
    let rows = audit_rows(app).await;
    assert_eq!(rows.len(), before + 1, "exactly one new row: {rows:#?}");
    rows[before].clone()
}

async fn first_client_id(app: &TestApp) -> String {
    let body = gql(
        app,
        READ_KEY,
        "{ clients { edges { node { id } } } }",
        json!({}),
    )
    .await;
    body["data"]["clients"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a client: {body}"))
        .to_owned()
}

async fn first_ticket_id(app: &TestApp) -> String {
    let body = gql(
        app,
        READ_KEY,
        "{ queueEntries { edges { node { id } } } }",
        json!({}),
    )
    .await;
    body["data"]["queueEntries"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a ticket: {body}"))
        .to_owned()
}

fn assert_row(row: &Value, actor: &str, action: &str, fields: Value, operation: Value) {
    assert_eq!(row["actor"], actor, "{row}");
    assert_eq!(row["action"], action, "{row}");
    assert_eq!(row["detail"]["fields"], fields, "{row}");
    assert_eq!(row["detail"]["operation"], operation, "{row}");
}

#[tokio::test]
async fn a_mutation_spread_from_a_fragment_is_audited_once_as_a_mutation_with_its_operation_name() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let client = first_client_id(&app).await;
    let before = audit_rows(&app).await.len();
    let query = "mutation Forget($id: ID!) { ...F } \
                 fragment F on Mutation { eraseClient(id: $id) { clientId } }";
    let body = gql(&app, ADMIN_KEY, query, json!({"id": client})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let row = the_new_row(&app, before).await;
    assert_row(
        &row,
        "test-admin",
        "mutation",
        json!(["eraseClient"]),
        json!("Forget"),
    );
    assert!(
        !row.to_string().contains(&client),
        "argument values stay out"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_mutation_inside_an_inline_fragment_is_audited_even_when_it_fails() {
    let app = spawn_app().await;
    let before = audit_rows(&app).await.len();
    let query = "mutation { ... on Mutation { sendAlert(input: {visitId: \"7\", \
                 message: \"Dr Who will see you\", idempotencyKey: \"inline\"}) { id } } }";
    // No Chup configured: the mutation runs and refuses; the attempt is still on record.
    let body = gql(&app, WRITE_KEY, query, json!({})).await;
    assert!(body.get("errors").is_some(), "{body}");
    let row = the_new_row(&app, before).await;
    assert_row(
        &row,
        "test-write",
        "mutation",
        json!(["sendAlert"]),
        Value::Null,
    );
    assert!(!row.to_string().contains("Dr Who"), "no argument values");
    app.stop().await;
}

#[tokio::test]
async fn aliases_and_several_root_fields_make_one_row_naming_each_field_once() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let client = first_client_id(&app).await;
    let before = audit_rows(&app).await.len();
    // The operation name is only in the document, not sent separately.
    let query = "mutation Cleanup($id: ID!) { \
        one: sendAlert(input: {visitId: \"1\", message: \"a\", idempotencyKey: \"a\"}) { id } \
        two: sendAlert(input: {visitId: \"2\", message: \"b\", idempotencyKey: \"b\"}) { id } \
        gone: eraseClient(id: $id) { clientId } }";
    let _answer = gql(&app, ADMIN_KEY, query, json!({"id": client})).await;
    let row = the_new_row(&app, before).await;
    assert_row(
        &row,
        "test-admin",
        "mutation",
        json!(["eraseClient", "sendAlert"]),
        json!("Cleanup"),
    );
    app.stop().await;
}

#[tokio::test]
async fn an_admin_read_in_a_named_document_is_audited_with_that_name() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let before = audit_rows(&app).await.len();
    let query = "query Peek { webhookEvents { edges { node { ...Raw } } } } \
                 fragment Raw on WebhookEvent { body: rawBody headers }";
    let body = gql(&app, ADMIN_KEY, query, json!({})).await;
    assert!(body.get("errors").is_none(), "{body}");
    let row = the_new_row(&app, before).await;
    assert_row(
        &row,
        "test-admin",
        "admin_read",
        json!(["headers", "rawBody"]),
        json!("Peek"),
    );
    app.stop().await;
}

/// Sends one operation on a websocket as `subscribe`/`start` and returns its first answer.
async fn over_websocket(app: &TestApp, protocol: &'static str, query: &str, vars: Value) -> Value {
    let mut client: Client = connect(app, protocol, ADMIN_KEY).await;
    client.subscribe("op", query, vars).await;
    let answer = client.next_data("op").await;
    assert!(answer.get("errors").is_none(), "{answer}");
    answer
}

#[tokio::test]
async fn mutations_over_either_websocket_protocol_are_audited_once() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let client = first_client_id(&app).await;
    let query = "mutation ForgetOverWs($id: ID!) { eraseClient(id: $id) { clientId } }";
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let before = audit_rows(&app).await.len();
        over_websocket(&app, protocol, query, json!({"id": client})).await;
        let row = the_new_row(&app, before).await;
        assert_row(
            &row,
            "test-admin",
            "mutation",
            json!(["eraseClient"]),
            json!("ForgetOverWs"),
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn admin_reads_over_either_websocket_protocol_are_audited_once() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let query = "query PeekOverWs { webhookEvents { edges { node { rawBody } } } }";
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let before = audit_rows(&app).await.len();
        let answer = over_websocket(&app, protocol, query, json!({})).await;
        assert!(
            answer["data"]["webhookEvents"]["edges"][0]["node"]["rawBody"].is_string(),
            "{answer}"
        );
        let row = the_new_row(&app, before).await;
        assert_row(
            &row,
            "test-admin",
            "admin_read",
            json!(["rawBody"]),
            json!("PeekOverWs"),
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_subscription_reading_raw_bodies_is_audited_once_not_per_event() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let before = audit_rows(&app).await.len();
    // From the current cursor, so events posted after the subscribe arrive whenever the
    // subscription starts (no race with the webhooks below).
    let query = "subscription Watch($after: String) { \
                 queueChanged(after: $after) { id sourceEvents { rawBody } } }";
    let after = json!({"after": latest_cursor(&app).await});
    let mut subscriber = connect(&app, TRANSPORT_WS, ADMIN_KEY).await;
    subscriber.subscribe("w", query, after.clone()).await;
    let mut second = connect(&app, LEGACY_WS, ADMIN_KEY).await;
    second.subscribe("w", query, after).await;
    for (n, fixture) in ["live_queue_updated_arrived", "live_queue_updated_serving"]
        .into_iter()
        .enumerate()
    {
        let answer =
            post_webhook(&app, "chup-main", crate::helpers::fixture("chup", fixture)).await;
        assert_eq!(answer.status(), 200);
        for client in [&mut subscriber, &mut second] {
            let event = client.next_data("w").await;
            assert!(event.get("errors").is_none(), "event {n}: {event}");
            let events = event["data"]["queueChanged"]["sourceEvents"]
                .as_array()
                .expect("source events");
            assert!(events.iter().all(|e| e["rawBody"].is_string()), "{event}");
        }
    }
    let rows = audit_rows(&app).await;
    let new = &rows[before..];
    assert_eq!(new.len(), 2, "one row per subscriber: {new:#?}");
    for row in new {
        assert_row(
            row,
            "test-admin",
            "admin_read",
            json!(["rawBody"]),
            json!("Watch"),
        );
    }
    app.stop().await;
}

async fn latest_cursor(app: &TestApp) -> String {
    let body = gql(
        app,
        READ_KEY,
        "{ events(first: 1000) { cursor } }",
        json!({}),
    )
    .await;
    body["data"]["events"]
        .as_array()
        .and_then(|events| events.last())
        .and_then(|event| event["cursor"].as_str())
        .unwrap_or_else(|| panic!("an event: {body}"))
        .to_owned()
}

const SEND_AND_PEEK: &str = "mutation($input: SendAlertInput!) { sendAlert(input: $input) { \
    id status idempotencyKey queueEntry { id client { name phone email } } } }";

fn forbidden(body: &Value) -> bool {
    body["errors"].as_array().is_some_and(|errors| {
        errors
            .iter()
            .all(|e| e["extensions"]["code"] == "FORBIDDEN")
    })
}

#[tokio::test]
async fn a_write_only_key_gets_its_alert_receipt_but_no_patient_from_the_result() {
    let chup = fake_vendors::chup().await;
    let vcita = fake_vendors::vcita("Bearer").await;
    let config = vendor_config(&chup.url, &vcita.url, "Bearer", 3) + &write_only_key();
    let app = spawn_app_with(&config).await;
    ingest(&app, "chup", "live_queue_created").await;
    let ticket = first_ticket_id(&app).await;
    let input = |key: &str| json!({"input": {"queueEntryId": ticket, "message": "Your turn", "idempotencyKey": key}});

    let body = gql(&app, WRITE_ONLY_KEY, SEND_AND_PEEK, input("w1")).await;
    assert!(forbidden(&body), "{body}");
    let alert = &body["data"]["sendAlert"];
    assert!(alert["id"].is_string(), "the receipt is readable: {body}");
    assert_eq!(alert["status"], "PENDING", "{body}");
    assert_eq!(alert["idempotencyKey"], "w1", "{body}");
    assert!(alert["queueEntry"].is_null(), "{body}");
    let text = body.to_string();
    assert!(
        !text.contains("Saad") && !text.contains("923093927454"),
        "no patient data: {text}"
    );
    // Nor the message text or the vCita target, through any other mutation's result.
    let message = gql(
        &app,
        WRITE_ONLY_KEY,
        "mutation($input: SendAlertInput!) { sendAlert(input: $input) { message visitId } }",
        input("w2"),
    )
    .await;
    assert!(forbidden(&message), "{message}");
    let hook = gql(
        &app,
        WRITE_ONLY_KEY,
        "mutation { subscribeVcitaWebhook(input: {event: \"client/created\", \
         targetUrl: \"https://hooks.example/x\"}) { id status targetUrl } }",
        json!({}),
    )
    .await;
    assert!(forbidden(&hook), "{hook}");
    assert!(
        hook["data"]["subscribeVcitaWebhook"]["id"].is_string(),
        "{hook}"
    );
    assert!(
        hook["data"]["subscribeVcitaWebhook"]["targetUrl"].is_null(),
        "{hook}"
    );

    // A key with `read` as well sees the patient through the same path.
    let reader = gql(&app, WRITE_KEY, SEND_AND_PEEK, input("r1")).await;
    assert!(reader.get("errors").is_none(), "{reader}");
    assert_eq!(
        reader["data"]["sendAlert"]["queueEntry"]["client"]["name"],
        "Saad"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_write_only_key_reads_no_patient_through_node_or_subscriptions() {
    let app = spawn_app_with(&crate::helpers::test_config_toml(&write_only_key())).await;
    ingest(&app, "chup", "live_queue_created").await;
    let client = first_client_id(&app).await;
    let query = "query($id: ID!) { node(id: $id) { id ... on Client { name phone email } } }";
    let body = gql(&app, WRITE_ONLY_KEY, query, json!({"id": client})).await;
    assert!(forbidden(&body), "{body}");
    assert!(!body.to_string().contains("Saad"), "{body}");
    let reader = gql(&app, READ_KEY, query, json!({"id": client})).await;
    assert_eq!(reader["data"]["node"]["name"], "Saad", "{reader}");

    let payloads = "subscription { queueChanged { client { name } } events { entity { \
                    ... on QueueEntry { client { name } } } } }";
    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let mut subscriber = connect(&app, protocol, WRITE_ONLY_KEY).await;
        subscriber.subscribe("s", payloads, json!({})).await;
        let answer = subscriber.next_json().await;
        assert!(!answer.to_string().contains("Saad"), "{answer}");
        let errors = if answer["type"] == "error" {
            answer["payload"].clone()
        } else {
            answer["payload"]["errors"].clone()
        };
        let errors = if errors.is_array() {
            errors
        } else {
            json!([errors])
        };
        assert_eq!(
            errors[0]["extensions"]["code"], "FORBIDDEN",
            "{protocol}: {answer}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_named_mutation_sent_over_get_is_refused_and_does_not_run() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let client = first_client_id(&app).await;
    // One named operation and no `operationName`: the one that would run is still a mutation.
    let query = format!("mutation Forget {{ eraseClient(id: \"{client}\") {{ clientId }} }}");
    let params = serde_urlencoded::to_string([("query", query.as_str())]).expect("encode");
    let answer = app
        .client
        .get(app.url(&format!("/graphql?{params}")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("get");
    assert_eq!(answer.status(), 405);
    let still_there = gql(
        &app,
        READ_KEY,
        "query($id: ID!) { node(id: $id) { ... on Client { name } } }",
        json!({"id": client}),
    )
    .await;
    assert_eq!(still_there["data"]["node"]["name"], "Saad", "{still_there}");
    app.stop().await;
}
