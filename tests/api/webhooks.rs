//! Webhook ingestion through real HTTP: every fixture, the stored entities, duplicates,
//! ordering, lineage, TimeTap's derived events, and every refusal.

use entity::{
    appointment, client, domain_event, entity_lineage, payment, queue_entry, queue_state_history,
    visit, webhook_event,
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};

use crate::helpers::{
    CHUP_SECRET, TIMETAP_TOKEN, TestApp, fixture, fixture_names, ingest, post_webhook, spawn_app,
    test_config_toml,
};

async fn inbox_row(app: &TestApp, id: i64) -> webhook_event::Model {
    webhook_event::Entity::find_by_id(entity::ids::WebhookEventId(id))
        .one(&app.db)
        .await
        .expect("query")
        .expect("inbox row exists")
}

async fn queue_ticket(app: &TestApp, vendor_id: &str) -> queue_entry::Model {
    queue_entry::Entity::find()
        .filter(queue_entry::Column::VendorId.eq(vendor_id))
        .one(&app.db)
        .await
        .expect("query")
        .expect("ticket exists")
}

async fn event_count(app: &TestApp) -> u64 {
    domain_event::Entity::find()
        .count(&app.db)
        .await
        .expect("count")
}

#[tokio::test]
async fn every_fixture_of_every_vendor_is_acknowledged_and_stored() {
    let app = spawn_app().await;
    let mut total = 0;
    for vendor in ["chup", "vcita", "vsee", "timetap"] {
        for name in fixture_names(vendor) {
            let answer = ingest(&app, vendor, &name).await;
            let id = answer["id"].as_i64().expect("inbox id");
            let row = inbox_row(&app, id).await;
            assert_eq!(
                row.body.as_deref(),
                Some(fixture_body(vendor, &name).as_slice()),
                "{vendor}/{name}: raw bytes kept"
            );
            assert_ne!(row.status, "FAILED", "{vendor}/{name}: {:?}", row.error);
            total += 1;
        }
    }
    let stored = webhook_event::Entity::find()
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(stored, total, "one inbox row per acknowledged delivery");
    app.stop().await;
}

/// The bytes the gateway received: Chup fixtures are signed on the way.
fn fixture_body(vendor: &str, name: &str) -> Vec<u8> {
    let body = fixture(vendor, name);
    if vendor == "chup" {
        carebridge::vendors::chup::sign_chup(&body, CHUP_SECRET.as_bytes())
    } else {
        body
    }
}

#[tokio::test]
async fn the_chup_queue_workflow_moves_one_ticket_through_its_states() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let ticket = queue_ticket(&app, "19242").await;
    assert_eq!(ticket.state, "WAITING");
    assert_eq!(ticket.state_code, Some(1));
    assert_eq!(
        ticket.queue_date.map(|d| d.to_string()).as_deref(),
        Some("2024-01-17")
    );
    let patient = client::Entity::find_by_id(ticket.client_id.expect("client linked"))
        .one(&app.db)
        .await
        .expect("query")
        .expect("client");
    assert_eq!(patient.phone.as_deref(), Some("+923093927454"));
    assert_eq!(patient.full_name.as_deref(), Some("Saad"));

    let steps = [
        ("live_queue_updated_arrived", "ARRIVED"),
        ("live_queue_updated_serving", "SERVING"),
        ("live_queue_updated_served", "SERVED"),
        ("live_queue_updated_moved", "MOVED"),
        ("live_queue_updated_no_show", "NO_SHOW"),
        ("live_queue_updated_back_to_queue_from_no_show", "WAITING"),
        ("live_queue_updated_pharmacy_received", "PHARMACY"),
        ("live_queue_updated_billing_paid", "BILLING"),
        ("live_queue_updated_end_visit", "ENDED"),
    ];
    for (name, state) in steps {
        let answer = ingest(&app, "chup", name).await;
        assert_eq!(answer["status"], "PROCESSED", "{name}");
        assert_eq!(queue_ticket(&app, "19242").await.state, state, "{name}");
    }
    let ticket = queue_ticket(&app, "19242").await;
    let history = queue_state_history::Entity::find()
        .filter(queue_state_history::Column::QueueEntryId.eq(ticket.id))
        .order_by_asc(queue_state_history::Column::Id)
        .all(&app.db)
        .await
        .expect("history");
    let states: Vec<&str> = history.iter().map(|row| row.state.as_str()).collect();
    assert_eq!(
        states,
        [
            "WAITING", "ARRIVED", "SERVING", "SERVED", "MOVED", "NO_SHOW", "WAITING", "PHARMACY",
            "BILLING", "ENDED"
        ]
    );
    assert!(
        history.iter().all(|row| row.webhook_event_id.is_some()),
        "each transition names its event"
    );

    let lineage = entity_lineage::Entity::find()
        .filter(entity_lineage::Column::EntityType.eq("QueueEntry"))
        .filter(entity_lineage::Column::EntityId.eq(ticket.id.0))
        .count(&app.db)
        .await
        .expect("lineage");
    assert_eq!(
        lineage, 10,
        "every delivery that touched the ticket is in its lineage"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_same_delivery_three_times_changes_and_emits_nothing_after_the_first() {
    let app = spawn_app().await;
    let first = ingest(&app, "chup", "live_queue_created").await;
    assert_eq!(first["status"], "PROCESSED");
    assert_eq!(first["duplicate"], false);
    let events_after_first = event_count(&app).await;
    let ticket_after_first = queue_ticket(&app, "19242").await;
    for _ in 0..2 {
        let again = ingest(&app, "chup", "live_queue_created").await;
        assert_eq!(again["status"], "DUPLICATE");
        assert_eq!(again["duplicate"], true);
    }
    assert_eq!(event_count(&app).await, events_after_first);
    assert_eq!(queue_ticket(&app, "19242").await, ticket_after_first);
    assert_eq!(
        webhook_event::Entity::find()
            .count(&app.db)
            .await
            .expect("count"),
        3,
        "all three kept"
    );
    app.stop().await;
}

#[tokio::test]
async fn duplicates_are_recognized_for_every_vendor_with_an_event_identity() {
    let app = spawn_app().await;
    for (vendor, name) in [
        ("vsee", "visit_created_v1"),
        ("vcita", "client_created"),
        ("timetap", "create"),
    ] {
        assert_eq!(
            ingest(&app, vendor, name).await["status"],
            "PROCESSED",
            "{vendor}"
        );
        assert_eq!(
            ingest(&app, vendor, name).await["status"],
            "DUPLICATE",
            "{vendor}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_older_update_arriving_late_is_stale_and_does_not_overwrite() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    ingest(&app, "chup", "live_queue_updated_serving").await;
    let events_before = event_count(&app).await;
    let late = ingest(&app, "chup", "live_queue_updated_arrived").await;
    assert_eq!(late["status"], "STALE");
    assert_eq!(queue_ticket(&app, "19242").await.state, "SERVING");
    assert_eq!(
        event_count(&app).await,
        events_before,
        "a stale delivery emits nothing"
    );
    let row = inbox_row(&app, late["id"].as_i64().expect("id")).await;
    assert!(row.body.is_some(), "the stale delivery is still kept");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_queue_state_is_kept_raw_and_never_fails() {
    let app = spawn_app().await;
    let body = String::from_utf8(fixture("chup", "live_queue_updated_arrived"))
        .expect("utf8")
        .replace("\"ARRIVED\"", "\"TELEPORTED\"")
        .replace("\"value\": 3", "\"value\": 99")
        .replace("\"Arrived\"", "\"Teleported\"");
    let response = post_webhook(&app, "chup-main", body.into_bytes()).await;
    assert_eq!(response.status(), 200);
    let ticket = queue_ticket(&app, "19242").await;
    assert_eq!(ticket.state, "OTHER");
    assert_eq!(ticket.state_code, Some(99));
    assert_eq!(ticket.state_name.as_deref(), Some("TELEPORTED"));
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_event_type_is_stored_as_unsupported() {
    let app = spawn_app().await;
    let body = String::from_utf8(fixture("chup", "client_created"))
        .expect("utf8")
        .replace("\"client_created\"", "\"invoice_created\"");
    let response = post_webhook(&app, "chup-main", body.into_bytes()).await;
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.expect("json");
    assert_eq!(answer["status"], "UNSUPPORTED");
    let row = inbox_row(&app, answer["id"].as_i64().expect("id")).await;
    assert_eq!(row.event_type.as_deref(), Some("invoice_created"));
    assert!(row.error.is_some(), "the reason is recorded");
    let pivot = ingest(&app, "vcita", "pivot_event").await;
    assert_eq!(pivot["status"], "UNSUPPORTED");
    app.stop().await;
}

#[tokio::test]
async fn both_chup_signing_forms_are_accepted_and_recorded() {
    let app = spawn_app().await;
    let raw_signed = carebridge::vendors::chup::sign_chup(
        &fixture("chup", "client_created"),
        CHUP_SECRET.as_bytes(),
    );
    let php_signed = carebridge::vendors::chup::sign_chup_php(
        &fixture("chup", "client_updated"),
        CHUP_SECRET.as_bytes(),
    );
    for (body, expected) in [(raw_signed, "hmac-raw"), (php_signed, "hmac-php-json")] {
        let response = app
            .client
            .post(app.url("/webhooks/chup-main"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        let answer: serde_json::Value = response.json().await.expect("json");
        let row = inbox_row(&app, answer["id"].as_i64().expect("id")).await;
        assert_eq!(row.verification.as_deref(), Some(expected));
    }
    app.stop().await;
}

#[tokio::test]
async fn timetap_event_types_are_derived_by_diffing_against_the_stored_appointment() {
    let app = spawn_app().await;
    let mut derived = Vec::new();
    for name in ["create", "edit", "reschedule", "checked_in", "complete"] {
        let answer = ingest(&app, "timetap", name).await;
        derived.push(
            inbox_row(&app, answer["id"].as_i64().expect("id"))
                .await
                .event_type
                .unwrap_or_default(),
        );
    }
    assert_eq!(
        derived,
        [
            "appointment_created",
            "appointment_updated",
            "appointment_rescheduled",
            "appointment_checked_in",
            "appointment_completed"
        ]
    );
    let booked = appointment::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("appointment");
    assert_eq!(booked.status, "COMPLETED");
    // 2024-03-14 13:30 in America/New_York (EDT, UTC-4) is 17:30 UTC.
    assert_eq!(
        booked.starts_at.map(|t| t.to_rfc3339()).as_deref(),
        Some("2024-03-14T17:30:00+00:00")
    );
    assert_eq!(booked.time_zone.as_deref(), Some("America/New_York"));
    app.stop().await;
}

#[tokio::test]
async fn a_timetap_edit_that_reverts_an_earlier_one_is_applied_not_dropped() {
    let app = spawn_app().await;
    ingest(&app, "timetap", "create").await;
    ingest(&app, "timetap", "reschedule").await;
    let back = ingest(&app, "timetap", "create").await;
    assert_eq!(
        back["status"], "PROCESSED",
        "same body as an older delivery, but not what is stored"
    );
    let booked = appointment::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("appointment");
    assert_eq!(
        booked.starts_at.map(|t| t.to_rfc3339()).as_deref(),
        Some("2024-03-12T12:00:00+00:00")
    );
    assert_eq!(
        ingest(&app, "timetap", "create").await["status"],
        "DUPLICATE"
    );
    app.stop().await;
}

#[tokio::test]
async fn vsee_and_vcita_deliveries_build_visits_and_payments() {
    let app = spawn_app().await;
    ingest(&app, "vsee", "visit_created_v2").await;
    ingest(&app, "vsee", "visit_ended_v1").await;
    ingest(&app, "vsee", "visit_invoice_processed_v2").await;
    let telehealth = visit::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("visit");
    assert_eq!(telehealth.vendor_id, "28540");
    assert_eq!(telehealth.status, "COMPLETED");
    assert_eq!(telehealth.invoice_amount_due, Some(2500));
    assert_eq!(telehealth.invoice_currency.as_deref(), Some("USD"));

    ingest(&app, "vcita", "payment_paid").await;
    let paid = payment::Entity::find()
        .one(&app.db)
        .await
        .expect("query")
        .expect("payment");
    assert_eq!(paid.state.as_deref(), Some("paid"));
    assert!(paid.client_id.is_some(), "the paying client is linked");
    app.stop().await;
}

#[tokio::test]
async fn domain_events_are_appended_with_the_entity_changes() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    ingest(&app, "chup", "live_queue_updated_arrived").await;
    let events = domain_event::Entity::find()
        .filter(domain_event::Column::EntityType.eq("QueueEntry"))
        .order_by_asc(domain_event::Column::Cursor)
        .all(&app.db)
        .await
        .expect("events");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["QUEUE_ENTRY_CREATED", "QUEUE_ENTRY_CHANGED"]);
    assert!(events[0].cursor < events[1].cursor);
    assert_eq!(events[1].payload["state"], "ARRIVED");
    assert!(
        events[1].service_id.is_some(),
        "events carry the service for subscription filters"
    );
    app.stop().await;
}

// ---- refusals ----

async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("every error body is JSON");
    (
        status,
        body["error"].as_str().expect("error message").to_owned(),
    )
}

async fn stored_count(app: &TestApp) -> u64 {
    webhook_event::Entity::find()
        .count(&app.db)
        .await
        .expect("count")
}

#[tokio::test]
async fn an_unknown_source_is_404() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/webhooks/nope"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("request");
    let (status, message) = error_of(response).await;
    assert_eq!(status, 404);
    assert!(message.contains("unknown source"), "{message}");
    app.stop().await;
}

#[tokio::test]
async fn a_bad_or_missing_chup_signature_is_401_and_stores_nothing() {
    let app = spawn_app().await;
    let wrong =
        carebridge::vendors::chup::sign_chup(&fixture("chup", "client_created"), b"wrong-secret");
    let unsigned = fixture("chup", "client_created");
    for body in [wrong, unsigned] {
        let response = app
            .client
            .post(app.url("/webhooks/chup-main"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let (status, message) = error_of(response).await;
        assert_eq!(status, 401);
        assert!(message.contains("signature"), "{message}");
    }
    assert_eq!(stored_count(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_bad_or_missing_url_token_is_401_and_stores_nothing() {
    let app = spawn_app().await;
    for url in [
        "/webhooks/timetap-main",
        "/webhooks/timetap-main?token=wrong-token-value",
    ] {
        let response = app
            .client
            .post(app.url(url))
            .header("content-type", "application/json")
            .body(fixture("timetap", "create"))
            .send()
            .await
            .expect("request");
        let (status, message) = error_of(response).await;
        assert_eq!(status, 401);
        assert!(message.contains("token"), "{message}");
    }
    assert_eq!(stored_count(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_and_kept_as_rejected_when_the_token_was_valid() {
    let app = spawn_app().await;
    let url = app.url(&format!("/webhooks/timetap-main?token={TIMETAP_TOKEN}"));
    let response = app
        .client
        .post(url)
        .header("content-type", "application/json")
        .body("not json {")
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(status, 400);
    assert_eq!(body["status"], "REJECTED");
    let row = inbox_row(&app, body["id"].as_i64().expect("id")).await;
    assert_eq!(row.status, "REJECTED");
    assert_eq!(row.body.as_deref(), Some(b"not json {".as_slice()));

    let shapeless = app
        .client
        .post(app.url(&format!(
            "/webhooks/vsee-main?token={}",
            crate::helpers::VSEE_TOKEN
        )))
        .header("content-type", "application/json")
        .body("[1,2,3]")
        .send()
        .await
        .expect("request");
    assert_eq!(shapeless.status(), 400, "JSON but not the vendor's shape");
    app.stop().await;
}

#[tokio::test]
async fn a_chup_body_that_is_not_json_is_400_and_not_stored() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/webhooks/chup-main"))
        .header("content-type", "application/json")
        .body("<xml/>")
        .send()
        .await
        .expect("request");
    let (status, _) = error_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(
        stored_count(&app).await,
        0,
        "an unverifiable body is not kept"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app =
        crate::helpers::spawn_app_with(&test_config_toml("[limits]\nmax_body_bytes = 2048")).await;
    let mut body = String::from("{\"pad\":\"");
    body.push_str(&"x".repeat(4096));
    body.push_str("\"}");
    let url = app.url(&format!("/webhooks/timetap-main?token={TIMETAP_TOKEN}"));
    let response = app
        .client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let (status, message) = error_of(response).await;
    assert_eq!(status, 413);
    assert!(message.contains("2048"), "{message}");
    assert_eq!(stored_count(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let app = spawn_app().await;
    let url = app.url(&format!("/webhooks/timetap-main?token={TIMETAP_TOKEN}"));
    let response = app
        .client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=1")
        .send()
        .await
        .expect("request");
    let (status, message) = error_of(response).await;
    assert_eq!(status, 415);
    assert!(message.contains("application/json"), "{message}");
    app.stop().await;
}

#[tokio::test]
async fn storage_down_is_503_and_nothing_is_half_written() {
    let app = spawn_app().await;
    for pool in [&app.app_db, &app.writer_db] {
        pool.close_by_ref()
            .await
            .expect("close the gateway's pools");
    }
    let response = post_webhook(&app, "chup-main", fixture("chup", "live_queue_created")).await;
    let (status, message) = error_of(response).await;
    assert_eq!(status, 503);
    assert!(message.contains("retry"), "{message}");
    assert_eq!(stored_count(&app).await, 0);
    assert_eq!(
        queue_entry::Entity::find()
            .count(&app.db)
            .await
            .expect("count"),
        0
    );
}
