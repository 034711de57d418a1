//! Issue 19: attacks reproduced against the real gateway (see the README's Security section).
//!
//! The webhook path: values one database cannot store (a NUL, an over-long key, an instant
//! outside the years both store), metric labels taken from the sender, Chup dedupe bypassed by
//! re-spacing a signed payload, and refusals that were not JSON. Every test runs on SQLite and,
//! with `TEST_DATABASE_URL`, on PostgreSQL, and expects the same answer on both.

use entity::ids::WebhookEventId;
use entity::webhook_event;
use futures_util::future::join_all;
use sea_orm::EntityTrait;
use sha2::{Digest, Sha256};

use crate::helpers::{CHUP_SECRET, TestApp, VCITA_TOKEN, fixture, post_webhook, spawn_app};

/// Replaces `from` (which must occur) in a fixture's text.
fn edit(vendor: &str, name: &str, edits: &[(&str, &str)]) -> Vec<u8> {
    let mut text = String::from_utf8(fixture(vendor, name)).expect("utf8 fixture");
    for (from, to) in edits {
        assert!(text.contains(from), "{vendor}/{name} has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    text.into_bytes()
}

/// A signed Chup `live_queue_created` for ticket `ticket`, with extra edits of the text.
fn chup_ticket(ticket: u32, edits: &[(&str, &str)]) -> Vec<u8> {
    let id = format!("\"id\": {ticket}");
    let mut all = vec![("\"id\": 19242", id.as_str())];
    all.extend_from_slice(edits);
    let body = edit("chup", "live_queue_created", &all);
    carebridge::vendors::chup::sign_chup(&body, CHUP_SECRET.as_bytes())
}

/// A vCita `client/created` for client `client`, with extra edits of the text.
fn vcita_client(client: u32, edits: &[(&str, &str)]) -> Vec<u8> {
    let id = format!("\"client_id\": \"c{client}\"");
    let mut all = vec![("\"client_id\": \"c7h2k9p4m1x8z3q6\"", id.as_str())];
    all.extend_from_slice(edits);
    edit("vcita", "client_created", &all)
}

/// Posts and returns the HTTP status and JSON answer.
async fn post(app: &TestApp, source: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let response = post_webhook(app, source, body).await;
    let status = response.status().as_u16();
    let answer = response.json().await.expect("a JSON answer");
    (status, answer)
}

async fn inbox_row(app: &TestApp, answer: &serde_json::Value) -> webhook_event::Model {
    let id = answer["id"].as_i64().expect("an inbox id");
    webhook_event::Entity::find_by_id(WebhookEventId(id))
        .one(&app.db)
        .await
        .expect("query")
        .expect("the delivery is stored")
}

/// `len` bytes of hex that do not compress (so PostgreSQL cannot squeeze them into an index).
fn incompressible(seed: &str, len: usize) -> String {
    let mut out = String::new();
    let mut block = Sha256::digest(seed.as_bytes());
    while out.len() < len {
        out.push_str(&hex::encode(block));
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

#[tokio::test]
async fn nul_bytes_anywhere_are_failed_with_a_reason_and_never_fail_the_honest_deliveries_of_their_batch()
 {
    let app = spawn_app().await;
    // (source, body, what the poison is in): five of each, each its own delivery.
    let mut poisoned: Vec<(&str, Vec<u8>)> = Vec::new();
    for i in 0..5 {
        poisoned.push((
            "chup-main",
            chup_ticket(
                90_000 + i,
                &[("\"live_queue_created\"", "\"live_queue_created\\u0000\"")],
            ),
        ));
        poisoned.push((
            "chup-main",
            chup_ticket(
                91_000 + i,
                &[(
                    "\"registered_client_name\": \"Saad\"",
                    "\"registered_client_name\": \"Sa\\u0000ad\"",
                )],
            ),
        ));
        poisoned.push((
            "vcita-main",
            vcita_client(
                92_000 + i,
                &[(
                    "\"entity_name\": \"client\"",
                    "\"entity_name\": \"client\\u0000\"",
                )],
            ),
        ));
        poisoned.push((
            "vcita-main",
            vcita_client(
                93_000 + i,
                &[(
                    "\"Referred by\": \"Instagram\"",
                    "\"Referred by\": \"Insta\\u0000gram\"",
                )],
            ),
        ));
    }
    let honest: Vec<Vec<u8>> = (0..150).map(|i| chup_ticket(50_000 + i, &[])).collect();

    // Interleaved and all at once, so that poisoned and honest deliveries share batches.
    let mut requests = Vec::new();
    let mut honest_iter = honest.into_iter();
    for (source, body) in &poisoned {
        for body in honest_iter.by_ref().take(7) {
            requests.push(("honest", "chup-main", body));
        }
        requests.push(("poisoned", *source, body.clone()));
    }
    requests.extend(honest_iter.map(|body| ("honest", "chup-main", body)));
    let answers = join_all(requests.iter().map(|(kind, source, body)| {
        let app = &app;
        async move { (*kind, body.clone(), post(app, source, body.clone()).await) }
    }))
    .await;

    let mut honest_count = 0;
    for (kind, sent, (status, answer)) in answers {
        assert_eq!(status, 200, "{kind}: {answer}");
        if kind == "honest" {
            honest_count += 1;
            assert_eq!(answer["status"], "PROCESSED", "{answer}");
            continue;
        }
        assert_eq!(answer["status"], "FAILED", "{answer}");
        let row = inbox_row(&app, &answer).await;
        assert_eq!(row.status, "FAILED");
        let reason = row.error.unwrap_or_default();
        assert!(
            reason.contains("U+0000"),
            "a reason naming the NUL: {reason}"
        );
        assert_eq!(row.body.as_deref(), Some(sent.as_slice()), "raw bytes kept");
        assert!(
            !row.event_type.unwrap_or_default().contains('\0'),
            "what is stored is storable"
        );
    }
    assert_eq!(honest_count, 150);
}

#[tokio::test]
async fn instants_and_keys_one_database_cannot_store_are_failed_the_same_on_both() {
    let app = spawn_app().await;
    // An appointment in 5000 BC: chrono and SQLite take it, PostgreSQL refuses the timestamp.
    let ancient = carebridge::vendors::chup::sign_chup(
        &edit(
            "chup",
            "appointment_created",
            &[
                (
                    "\"appointment_date\": \"2024-01-18\"",
                    "\"appointment_date\": \"-5000-01-18\"",
                ),
                (
                    "\"start_at\": \"2024-01-18T10:30:00+08:00\"",
                    "\"start_at\": null",
                ),
                (
                    "\"end_at\": \"2024-01-18T10:45:00+08:00\"",
                    "\"end_at\": null",
                ),
            ],
        ),
        CHUP_SECRET.as_bytes(),
    );
    // An id larger than a PostgreSQL index row can hold.
    let long_id = incompressible("long id", 4_000);
    let long = edit(
        "vsee",
        "user_created_patient",
        &[("\"id\": \"60610\"", &format!("\"id\": \"{long_id}\""))],
    );
    for (source, body, expected) in [
        ("chup-main", ancient, "years"),
        ("vsee-main", long, "bytes"),
    ] {
        let (status, answer) = post(&app, source, body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["status"], "FAILED", "{answer}");
        let row = inbox_row(&app, &answer).await;
        let reason = row.error.unwrap_or_default();
        assert!(reason.contains(expected), "{reason}");
        assert_eq!(row.body.as_deref(), Some(body.as_slice()));
    }
    // The gateway is still fine for everyone else.
    let (status, answer) = post(&app, "chup-main", chup_ticket(7, &[])).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("PROCESSED"))
    );
}

#[tokio::test]
async fn metrics_stay_small_however_many_distinct_event_types_vendors_send() {
    let app = spawn_app().await;
    for i in 0..40 {
        let entity = format!("e{i}{}", incompressible(&format!("entity {i}"), 20_000));
        let body = vcita_client(
            i,
            &[(
                "\"entity_name\": \"client\"",
                &format!("\"entity_name\": \"{entity}\""),
            )],
        );
        let (status, answer) = post(&app, "vcita-main", body).await;
        assert_eq!(status, 200, "{answer}");
        let event = format!(
            "made_up_{i}_{}",
            incompressible(&format!("event {i}"), 2_000)
        );
        let body = chup_ticket(
            60_000 + i,
            &[("\"live_queue_created\"", &format!("\"{event}\""))],
        );
        let (status, answer) = post(&app, "chup-main", body).await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (200, Some("UNSUPPORTED"))
        );
        let kind = format!("visit.{}", incompressible(&format!("type {i}"), 2_000));
        let body = edit(
            "vsee",
            "user_created_patient",
            &[(
                "\"type\": \"user.created\"",
                &format!("\"type\": \"{kind}\""),
            )],
        );
        let (status, _) = post(&app, "vsee-main", body).await;
        assert_eq!(status, 200);
    }
    ingest_known(&app).await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.len() < 64 * 1024,
        "/metrics is {} bytes after 120 made-up event types",
        metrics.len()
    );
    assert!(
        metrics.contains("event=\"other\""),
        "unknown events are `other`"
    );
    assert!(
        metrics.contains("event=\"live_queue_created\""),
        "known events keep their name"
    );
    assert!(!metrics.contains("made_up_"));
}

async fn ingest_known(app: &TestApp) {
    let (status, answer) = post(app, "chup-main", chup_ticket(1, &[])).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("PROCESSED"))
    );
}

/// A Chup body `{"payload": <payload>}` signed over `signed_form` (sign_chup signs the raw text,
/// sign_chup_php its PHP re-encoding).
fn chup_envelope(payload: &str) -> Vec<u8> {
    format!("{{\"payload\":{payload}}}").into_bytes()
}

#[tokio::test]
async fn a_signed_chup_payload_resent_pretty_printed_is_a_duplicate() {
    let app = spawn_app().await;
    let fixture: serde_json::Value =
        serde_json::from_slice(&fixture("chup", "live_queue_created")).expect("json");
    let payload = &fixture["payload"];
    // What a PHP sender signs and sends: `json_encode` of the payload.
    let compact = serde_json::to_string(payload).expect("json");
    let signed_form = carebridge::vendors::php_json::encode(&compact).expect("php form");
    let original =
        carebridge::vendors::chup::sign_chup(&chup_envelope(&signed_form), CHUP_SECRET.as_bytes());
    // The same payload, same signature, different spacing: it verifies through the PHP path.
    let pretty = serde_json::to_string_pretty(payload).expect("json");
    let respaced =
        carebridge::vendors::chup::sign_chup_php(&chup_envelope(&pretty), CHUP_SECRET.as_bytes());
    assert_ne!(original, respaced);
    let signature = |body: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(body).expect("json")["signature"].clone()
    };
    assert_eq!(signature(&original), signature(&respaced), "one signature");

    let send = |body: Vec<u8>| {
        app.client
            .post(app.url("/webhooks/chup-main"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let first: serde_json::Value = send(original)
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(first["status"], "PROCESSED", "{first}");
    let again = send(respaced).await.expect("post");
    assert_eq!(again.status(), 200);
    let again: serde_json::Value = again.json().await.expect("json");
    assert_eq!(again["status"], "DUPLICATE", "{again}");
}

#[tokio::test]
async fn a_vcita_delivery_without_an_event_id_resent_with_other_spacing_is_a_duplicate() {
    let app = spawn_app().await;
    let body = fixture("vcita", "appointment_scheduled");
    let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let compact = serde_json::to_vec(&value).expect("json");
    let (_, first) = post(&app, "vcita-main", body).await;
    assert_eq!(first["status"], "PROCESSED", "{first}");
    let (_, again) = post(&app, "vcita-main", compact).await;
    assert_eq!(again["status"], "DUPLICATE", "{again}");
}

#[tokio::test]
async fn every_refusal_on_the_webhook_path_is_json_with_a_reason() {
    let app = spawn_app().await;
    let body = fixture("vcita", "client_created");
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "token twice",
            app.client
                .post(app.url(&format!(
                    "/webhooks/vcita-main?token={VCITA_TOKEN}&token=other"
                )))
                .header("content-type", "application/json")
                .body(body.clone()),
        ),
        (
            "undecodable query",
            app.client
                .post(app.url("/webhooks/vcita-main?token=%FF%FE"))
                .header("content-type", "application/json")
                .body(body.clone()),
        ),
        (
            "undecodable path",
            app.client
                .post(app.url(&format!("/webhooks/%FF?token={VCITA_TOKEN}")))
                .header("content-type", "application/json")
                .body(body.clone()),
        ),
        (
            "wrong method",
            app.client
                .get(app.url(&format!("/webhooks/vcita-main?token={VCITA_TOKEN}"))),
        ),
        (
            "wrong content type",
            app.client
                .post(app.url(&format!("/webhooks/vcita-main?token={VCITA_TOKEN}")))
                .header("content-type", "text/plain")
                .body(body.clone()),
        ),
        (
            "body too large",
            app.client
                .post(app.url(&format!("/webhooks/vcita-main?token={VCITA_TOKEN}")))
                .header("content-type", "application/json")
                .body(vec![b' '; 2 * 1024 * 1024]),
        ),
        (
            "no token",
            app.client
                .post(app.url("/webhooks/vcita-main"))
                .header("content-type", "application/json")
                .body(body.clone()),
        ),
    ];
    for (case, request) in cases {
        let response = request.send().await.expect("request");
        let status = response.status();
        assert!(status.is_client_error(), "{case}: {status}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{case}: {status} answered {content_type:?}"
        );
        let answer: serde_json::Value = response.json().await.expect("JSON");
        let reason = answer["error"].as_str().unwrap_or("");
        assert!(!reason.is_empty(), "{case}: {answer}");
        assert!(
            !reason.contains(VCITA_TOKEN),
            "{case}: the token is never echoed"
        );
    }
}
