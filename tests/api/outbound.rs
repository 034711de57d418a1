//! Mutations that act on vendors, through the real GraphQL endpoint against local fake Chup
//! and vCita servers: token reuse and refresh, retries with backoff, idempotency, restarts,
//! failures, scopes, audit, and vCita's documented header, body and refusal.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use crate::fake_vendors::{self, ReceivedAlert, vendor_config};
use crate::helpers::{ADMIN_KEY, READ_KEY, TestApp, WRITE_KEY, gql, ingest, spawn_app_with};

const SEND: &str = "mutation($input: SendAlertInput!) { sendAlert(input: $input) { id status attempts visitId message idempotencyKey } }";

async fn send_alert(app: &TestApp, visit_id: &str, message: &str, key: &str) -> Value {
    let input = json!({"visitId": visit_id, "message": message, "idempotencyKey": key});
    gql(app, WRITE_KEY, SEND, json!({"input": input})).await
}

/// Waits (bounded) for an alert to reach a final status; returns it.
async fn settled(app: &TestApp, alert_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = gql(app, READ_KEY, "query($id: ID!) { node(id: $id) { ... on Alert { id status attempts lastError sentAt } } }", json!({"id": alert_id})).await;
        let alert = body["data"]["node"].clone();
        if alert["status"] != "PENDING" {
            return alert;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "alert still pending: {alert}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn alert_id(body: &Value) -> String {
    body["data"]["sendAlert"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no alert: {body}"))
        .to_owned()
}

async fn with_fakes(
    max_attempts: u32,
) -> (
    TestApp,
    fake_vendors::Fake<fake_vendors::ChupState>,
    fake_vendors::Fake<fake_vendors::VcitaState>,
) {
    let chup = fake_vendors::chup().await;
    let vcita = fake_vendors::vcita("Bearer").await;
    let app = spawn_app_with(&vendor_config(
        &chup.url,
        &vcita.url,
        "Bearer",
        max_attempts,
    ))
    .await;
    (app, chup, vcita)
}

#[tokio::test]
async fn alerts_are_sent_with_one_token_fetched_once_and_reused() {
    let (app, chup, _vcita) = with_fakes(5).await;
    ingest(&app, "chup", "live_queue_created").await;
    let ticket = gql(
        &app,
        READ_KEY,
        "{ queueEntries { edges { node { id } } } }",
        json!({}),
    )
    .await;
    let ticket_id = ticket["data"]["queueEntries"]["edges"][0]["node"]["id"].clone();
    let first = gql(&app, WRITE_KEY, SEND, json!({"input": {"queueEntryId": ticket_id, "message": "Your turn is next", "idempotencyKey": "k1"}})).await;
    assert_eq!(
        first["data"]["sendAlert"]["status"], "PENDING",
        "returned at once, before sending: {first}"
    );
    assert_eq!(
        first["data"]["sendAlert"]["visitId"], "19242",
        "the Chup ticket id is the visit id"
    );
    assert_eq!(settled(&app, &alert_id(&first)).await["status"], "SENT");
    for (n, message) in ["Please come to room 3", "Room 3 is ready"]
        .iter()
        .enumerate()
    {
        let body = send_alert(&app, "19242", message, &format!("k{}", n + 2)).await;
        assert_eq!(settled(&app, &alert_id(&body)).await["status"], "SENT");
    }
    assert_eq!(
        chup.state.token_requests.load(Ordering::SeqCst),
        1,
        "one token for all alerts"
    );
    let sent: Vec<(String, String)> = chup
        .state
        .sent()
        .into_iter()
        .map(|a| (a.visit_id, a.message))
        .collect();
    assert_eq!(
        sent[0],
        ("19242".to_owned(), "Your turn is next".to_owned())
    );
    assert_eq!(sent.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_on_401() {
    let (app, chup, _vcita) = with_fakes(5).await;
    let first = send_alert(&app, "19242", "one", "a").await;
    assert_eq!(settled(&app, &alert_id(&first)).await["status"], "SENT");
    chup.state.expire_tokens();
    let second = send_alert(&app, "19242", "two", "b").await;
    let alert = settled(&app, &alert_id(&second)).await;
    assert_eq!(alert["status"], "SENT");
    assert_eq!(
        alert["attempts"], 1,
        "the refresh happens inside one attempt"
    );
    assert_eq!(chup.state.token_requests.load(Ordering::SeqCst), 2);
    app.stop().await;
}

#[tokio::test]
async fn chup_down_for_a_while_means_the_alert_is_sent_exactly_once_after_it_recovers() {
    let (app, chup, _vcita) = with_fakes(8).await;
    chup.state.down_for.store(3, Ordering::SeqCst);
    let body = send_alert(&app, "19242", "Your turn is next", "down-1").await;
    let alert = settled(&app, &alert_id(&body)).await;
    assert_eq!(alert["status"], "SENT");
    assert_eq!(alert["attempts"], 4, "three 503s, then success");
    assert_eq!(chup.state.sent().len(), 1, "sent exactly once");
    let attempts = chup.state.alert_attempts.lock().expect("lock").clone();
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[2] > gaps[0], "backoff grows: {gaps:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let (app, chup, _vcita) = with_fakes(5).await;
    chup.state.rate_limit_next.store(true, Ordering::SeqCst);
    let body = send_alert(&app, "19242", "hello", "rl").await;
    assert_eq!(settled(&app, &alert_id(&body)).await["status"], "SENT");
    let attempts = chup.state.alert_attempts.lock().expect("lock").clone();
    assert!(
        attempts[1] - attempts[0] >= Duration::from_millis(950),
        "waited for Retry-After: 1"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_never_sends_twice() {
    let (app, chup, _vcita) = with_fakes(5).await;
    let first = send_alert(&app, "19242", "Your turn is next", "same-key").await;
    let again = send_alert(&app, "19242", "Your turn is next", "same-key").await;
    assert_eq!(
        alert_id(&first),
        alert_id(&again),
        "the first alert is returned"
    );
    assert_eq!(settled(&app, &alert_id(&first)).await["status"], "SENT");
    let third = send_alert(&app, "19242", "Your turn is next", "same-key").await;
    assert_eq!(third["data"]["sendAlert"]["status"], "SENT");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent: Vec<ReceivedAlert> = chup.state.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].idempotency_key.as_deref(),
        Some("same-key"),
        "the key travels to Chup"
    );
    let conflicting = send_alert(&app, "19242", "a different text", "same-key").await;
    assert_eq!(
        conflicting["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_alert_left_pending_by_a_restart_is_sent_by_the_next_process() {
    let chup = fake_vendors::chup().await;
    let vcita = fake_vendors::vcita("Bearer").await;
    let config = vendor_config(&chup.url, &vcita.url, "Bearer", 50);
    chup.state.down.store(true, Ordering::SeqCst);
    let mut app = spawn_app_with(&config).await;
    let body = send_alert(&app, "19242", "Your turn is next", "restart-1").await;
    let id = alert_id(&body);
    // Wait until at least two attempts have failed and been scheduled again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let alert = gql(
            &app,
            READ_KEY,
            "query($id: ID!) { node(id: $id) { ... on Alert { attempts lastError } } }",
            json!({"id": id}),
        )
        .await;
        if alert["data"]["node"]["attempts"].as_i64().unwrap_or(0) >= 2
            && alert["data"]["node"]["lastError"].is_string()
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no retries seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = crate::helpers::spawn_replica_with(&app, &config).await;
    app.shut_down().await; // the first process is gone; only the second can send now
    chup.state.down.store(false, Ordering::SeqCst);
    let alert = settled(&second, &id).await;
    assert_eq!(alert["status"], "SENT");
    assert_eq!(
        chup.state.sent().len(),
        1,
        "sent once, by the second process"
    );
    second.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn retries_stop_at_the_limit_and_refusals_fail_at_once_with_the_reason() {
    let (app, chup, _vcita) = with_fakes(3).await;
    chup.state.down.store(true, Ordering::SeqCst);
    let body = send_alert(&app, "19242", "hello", "give-up").await;
    let alert = settled(&app, &alert_id(&body)).await;
    assert_eq!(alert["status"], "FAILED");
    assert_eq!(alert["attempts"], 3);
    assert_eq!(alert["lastError"], "Chup answered 503");
    chup.state.down.store(false, Ordering::SeqCst);
    let refused = send_alert(&app, "no-such-visit", "hello", "refused").await;
    let alert = settled(&app, &alert_id(&refused)).await;
    assert_eq!(alert["status"], "FAILED");
    assert_eq!(alert["attempts"], 1, "a 404 is not retried");
    assert_eq!(alert["lastError"], "Chup answered 404");
    let failed = gql(
        &app,
        READ_KEY,
        "{ alerts(status: FAILED) { idempotencyKey } }",
        json!({}),
    )
    .await;
    assert_eq!(
        failed["data"]["alerts"].as_array().expect("alerts").len(),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn alert_status_changes_are_domain_events() {
    let (app, _chup, _vcita) = with_fakes(3).await;
    let body = send_alert(&app, "19242", "hello", "events").await;
    settled(&app, &alert_id(&body)).await;
    let events = gql(
        &app,
        READ_KEY,
        "{ events { kind entityType entity { id } } }",
        json!({}),
    )
    .await;
    let kinds: Vec<&str> = events["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["ALERT_CREATED", "ALERT_SENT"]);
    assert_eq!(events["data"]["events"][1]["entity"]["id"], alert_id(&body));
    app.stop().await;
}

#[tokio::test]
async fn bad_alert_input_is_refused_clearly() {
    let (app, _chup, _vcita) = with_fakes(3).await;
    let long = "x".repeat(501);
    for input in [
        json!({"visitId": "1", "message": "   ", "idempotencyKey": "a"}),
        json!({"visitId": "1", "message": long, "idempotencyKey": "a"}),
        json!({"message": "hi", "idempotencyKey": "a"}),
        json!({"visitId": "1", "queueEntryId": "QueueEntry:1", "message": "hi", "idempotencyKey": "a"}),
        json!({"visitId": "1", "message": "hi", "idempotencyKey": ""}),
    ] {
        let body = gql(&app, WRITE_KEY, SEND, json!({"input": input})).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{body}"
        );
    }
    let unknown = gql(&app, WRITE_KEY, SEND, json!({"input": {"queueEntryId": "QueueEntry:999", "message": "hi", "idempotencyKey": "a"}})).await;
    assert_eq!(unknown["errors"][0]["extensions"]["code"], "NOT_FOUND");
    app.stop().await;
}

#[tokio::test]
async fn mutations_need_the_write_scope_and_are_audited() {
    let (app, _chup, _vcita) = with_fakes(3).await;
    let input = json!({"input": {"visitId": "1", "message": "hi", "idempotencyKey": "scoped"}});
    let refused = gql(&app, READ_KEY, SEND, input.clone()).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN");
    let allowed = gql(&app, WRITE_KEY, SEND, input).await;
    assert!(allowed.get("errors").is_none(), "{allowed}");
    let log = gql(
        &app,
        ADMIN_KEY,
        "{ auditLog { actor action detail } }",
        json!({}),
    )
    .await;
    let entries = log["data"]["auditLog"].as_array().expect("log");
    let by_writer = entries
        .iter()
        .filter(|e| e["action"] == "mutation" && e["actor"] == "test-write")
        .count();
    let by_reader = entries
        .iter()
        .filter(|e| e["action"] == "mutation" && e["actor"] == "test-read")
        .count();
    assert_eq!(
        (by_writer, by_reader),
        (1, 1),
        "attempts are audited whoever makes them: {entries:?}"
    );
    assert_eq!(
        entries
            .iter()
            .find(|e| e["actor"] == "test-write")
            .expect("entry")["detail"]["fields"],
        json!(["sendAlert"])
    );
    assert!(
        !log.to_string().contains("\"hi\""),
        "argument values are not in the audit log"
    );
    app.stop().await;
}

const SUBSCRIBE: &str = "mutation($input: SubscribeVcitaInput!) { subscribeVcitaWebhook(input: $input) { id event targetUrl status lastError lastVerifiedAt } }";

#[tokio::test]
async fn vcita_subscriptions_send_the_documented_header_and_body() {
    let (app, _chup, vcita) = with_fakes(3).await;
    let body = gql(&app, WRITE_KEY, SUBSCRIBE, json!({"input": {"event": "client/created", "targetUrl": "https://his.example/hooks/vcita"}})).await;
    let subscription = &body["data"]["subscribeVcitaWebhook"];
    assert_eq!(subscription["status"], "SUBSCRIBED", "{body}");
    assert!(subscription["lastVerifiedAt"].is_string());
    let calls = vcita.state.calls.lock().expect("lock").clone();
    assert_eq!(calls[0].path, "subscribe");
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some("Bearer vcita-api-token")
    );
    assert_eq!(
        calls[0].body,
        json!({"event": "client/created", "target_url": "https://his.example/hooks/vcita"})
    );

    let own = gql(
        &app,
        WRITE_KEY,
        SUBSCRIBE,
        json!({"input": {"event": "payment/paid", "sourceId": "vcita-main"}}),
    )
    .await;
    assert_eq!(
        own["data"]["subscribeVcitaWebhook"]["targetUrl"],
        "https://carebridge.clinic.example/webhooks/vcita-main",
        "a source's own URL, shown without its token (issue 19, item 1): {own}"
    );
    assert_eq!(
        vcita.state.calls.lock().expect("lock")[1].body["target_url"],
        "https://carebridge.clinic.example/webhooks/vcita-main?token=test-vcita-token",
        "vCita is given the source's URL, token included, without pasting it"
    );

    let gone = gql(&app, WRITE_KEY, "mutation { unsubscribeVcitaWebhook(targetUrl: \"https://his.example/hooks/vcita\") { status } }", json!({})).await;
    assert_eq!(
        gone["data"]["unsubscribeVcitaWebhook"]["status"],
        "UNSUBSCRIBED"
    );
    let calls = vcita.state.calls.lock().expect("lock").clone();
    assert_eq!(
        calls.last().expect("call").body,
        json!({"target_url": "https://his.example/hooks/vcita"})
    );
    let listed = gql(
        &app,
        READ_KEY,
        "{ vcitaSubscriptions { event status } }",
        json!({}),
    )
    .await;
    assert_eq!(
        listed["data"]["vcitaSubscriptions"]
            .as_array()
            .expect("list")
            .len(),
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn the_legacy_token_scheme_is_sent_when_configured() {
    let chup = fake_vendors::chup().await;
    let vcita = fake_vendors::vcita("Token").await;
    let app = spawn_app_with(&vendor_config(&chup.url, &vcita.url, "Token", 3)).await;
    let body = gql(
        &app,
        WRITE_KEY,
        SUBSCRIBE,
        json!({"input": {"event": "appointment/created", "targetUrl": "https://his.example/a"}}),
    )
    .await;
    assert_eq!(
        body["data"]["subscribeVcitaWebhook"]["status"], "SUBSCRIBED",
        "{body}"
    );
    assert_eq!(
        vcita.state.calls.lock().expect("lock")[0]
            .authorization
            .as_deref(),
        Some("Token vcita-api-token")
    );
    app.stop().await;
}

#[tokio::test]
async fn not_subscribed_and_bad_events_are_clear_errors() {
    let (app, _chup, _vcita) = with_fakes(3).await;
    let refused = gql(
        &app,
        WRITE_KEY,
        SUBSCRIBE,
        json!({"input": {"event": "client/created", "targetUrl": "https://unreachable.example/x"}}),
    )
    .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "VENDOR_ERROR",
        "{refused}"
    );
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("Not Subscribed")
    );
    let recorded = gql(
        &app,
        READ_KEY,
        "{ vcitaSubscriptions { status lastError } }",
        json!({}),
    )
    .await;
    assert_eq!(
        recorded["data"]["vcitaSubscriptions"][0]["status"],
        "FAILED"
    );
    for event in ["client/create", "invoice/issued", ""] {
        let body = gql(
            &app,
            WRITE_KEY,
            SUBSCRIBE,
            json!({"input": {"event": event, "targetUrl": "https://his.example/x"}}),
        )
        .await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{event}: {body}"
        );
    }
    let read_only = gql(
        &app,
        READ_KEY,
        SUBSCRIBE,
        json!({"input": {"event": "client/created", "targetUrl": "https://his.example/x"}}),
    )
    .await;
    assert_eq!(read_only["errors"][0]["extensions"]["code"], "FORBIDDEN");
    app.stop().await;
}
