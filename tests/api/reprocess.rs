//! Reprocess: the current mappers run again over stored raw deliveries, from GraphQL and from
//! the CLI; dry runs write nothing, a second run changes nothing, lineage stays attached to the
//! original inbox row, and old deliveries never revert newer state.

use entity::ids::{SourceId, WebhookEventId};
use entity::{domain_event, webhook_event};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
    sea_query::Expr,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{
    ADMIN_KEY, CHUP_SECRET, TestApp, WRITE_KEY, fixture, gql, ingest, post_webhook, spawn_app,
};

const REPROCESS_ONE: &str = r#"
mutation($id: ID!, $dryRun: Boolean!) {
  reprocessWebhookEvent(id: $id, dryRun: $dryRun) {
    dryRun matched reprocessed skipped changed entityChanges truncated
    deliveries { webhookEventId statusBefore statusAfter error skipped
                 entityChanges { entityType entityId change } }
  }
}"#;

const REPROCESS_MANY: &str = r#"
mutation($filter: WebhookEventFilter, $dryRun: Boolean!) {
  reprocessWebhookEvents(filter: $filter, dryRun: $dryRun) {
    dryRun matched reprocessed skipped changed entityChanges
    deliveries { webhookEventId statusBefore statusAfter skipped
                 entityChanges { entityType change } }
  }
}"#;

/// Stores a signed Chup delivery the way the ingest writer stores one whose apply failed: as
/// `FAILED`, without its dedupe key, nothing applied.
async fn store_failed_delivery(app: &TestApp, name: &str) -> WebhookEventId {
    let body = carebridge::vendors::chup::sign_chup(&fixture("chup", name), CHUP_SECRET.as_bytes());
    let now = chrono::Utc::now();
    let row = webhook_event::ActiveModel {
        source_id: Set(SourceId("chup-main".into())),
        vendor: Set("chup".into()),
        event_type: Set(Some("live_queue_created".into())),
        received_at: Set(now),
        verification: Set(Some("hmac-raw".into())),
        dedupe_key: Set(None),
        body_sha256: Set(hex::encode(Sha256::digest(&body))),
        status: Set("FAILED".into()),
        error: Set(Some(
            "internal error while applying the delivery (see gateway logs)".into(),
        )),
        content_type: Set(Some("application/json".into())),
        headers: Set(json!({})),
        body: Set(Some(body)),
        processed_at: Set(Some(now)),
        ..Default::default()
    };
    row.insert(&app.db).await.expect("inbox row").id
}

async fn inbox_row(app: &TestApp, id: WebhookEventId) -> webhook_event::Model {
    webhook_event::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .expect("query")
        .expect("row")
}

async fn event_count(app: &TestApp) -> u64 {
    domain_event::Entity::find()
        .count(&app.db)
        .await
        .expect("count")
}

async fn queue_states(app: &TestApp) -> Vec<Value> {
    let answer = gql(
        app,
        ADMIN_KEY,
        "{ queueEntries { nodes { vendorId state { rawName } } } }",
        json!({}),
    )
    .await;
    answer["data"]["queueEntries"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .clone()
}

#[tokio::test]
async fn a_failed_delivery_is_applied_once_and_linked_to_its_inbox_row() {
    let app = spawn_app().await;
    let id = store_failed_delivery(&app, "live_queue_created").await;
    let global_id = format!("WebhookEvent:{}", id.0);

    let dry = gql(
        &app,
        ADMIN_KEY,
        REPROCESS_ONE,
        json!({"id": global_id, "dryRun": true}),
    )
    .await;
    let report = &dry["data"]["reprocessWebhookEvent"];
    assert_eq!(report["dryRun"], true, "{dry}");
    assert_eq!(report["reprocessed"], 1, "{dry}");
    assert_eq!(report["changed"], 1, "{dry}");
    let delivery = &report["deliveries"][0];
    assert_eq!(delivery["statusBefore"], "FAILED");
    assert_eq!(delivery["statusAfter"], "PROCESSED");
    let changes = delivery["entityChanges"].as_array().expect("changes");
    assert!(
        changes
            .iter()
            .any(|c| c["entityType"] == "QueueEntry" && c["change"] == "created"),
        "{dry}"
    );
    assert!(
        queue_states(&app).await.is_empty(),
        "a dry run writes nothing"
    );
    assert_eq!(inbox_row(&app, id).await.status, "FAILED");
    assert_eq!(event_count(&app).await, 0);

    let real = gql(
        &app,
        ADMIN_KEY,
        REPROCESS_ONE,
        json!({"id": global_id, "dryRun": false}),
    )
    .await;
    let report = &real["data"]["reprocessWebhookEvent"];
    assert_eq!(report["changed"], 1, "{real}");
    assert_eq!(report["entityChanges"], changes.len(), "{real}");
    assert_eq!(queue_states(&app).await.len(), 1);
    let row = inbox_row(&app, id).await;
    assert_eq!(row.status, "PROCESSED");
    assert_eq!(row.error, None);
    assert!(row.dedupe_key.is_some(), "it now carries its dedupe key");
    // Lineage: the inbox row names what it created, and its events name the inbox row.
    let lineage = gql(
        &app,
        ADMIN_KEY,
        "query($id: ID!) { node(id: $id) { ... on WebhookEvent { entities { entityType change } } } }",
        json!({"id": global_id}),
    )
    .await;
    let entities = lineage["data"]["node"]["entities"]
        .as_array()
        .unwrap_or_else(|| panic!("{lineage}"));
    assert!(
        entities
            .iter()
            .any(|e| e["entityType"] == "QueueEntry" && e["change"] == "created"),
        "{lineage}"
    );
    let events = event_count(&app).await;
    assert!(events > 0);
    let own_events = domain_event::Entity::find()
        .filter(domain_event::Column::WebhookEventId.eq(id))
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(
        own_events, events,
        "every event names the reprocessed delivery"
    );

    // Idempotent: the second run finds nothing to do.
    let again = gql(
        &app,
        ADMIN_KEY,
        REPROCESS_ONE,
        json!({"id": global_id, "dryRun": false}),
    )
    .await;
    let report = &again["data"]["reprocessWebhookEvent"];
    assert_eq!(report["reprocessed"], 1, "{again}");
    assert_eq!(report["changed"], 0, "{again}");
    assert_eq!(report["entityChanges"], 0, "{again}");
    assert_eq!(event_count(&app).await, events, "no new events");
    assert_eq!(queue_states(&app).await.len(), 1);

    // The vendor's redelivery of the same event is now recognised.
    let redelivered = post_webhook(&app, "chup-main", fixture("chup", "live_queue_created")).await;
    let answer: Value = redelivered.json().await.expect("json");
    assert_eq!(answer["status"], "DUPLICATE", "{answer}");
    app.stop().await;
}

#[tokio::test]
async fn reprocess_needs_admin_and_a_known_delivery() {
    let app = spawn_app().await;
    let stored = ingest(&app, "chup", "live_queue_created").await;
    let global_id = format!("WebhookEvent:{}", stored["id"]);
    let forbidden = gql(
        &app,
        WRITE_KEY,
        REPROCESS_ONE,
        json!({"id": global_id, "dryRun": true}),
    )
    .await;
    assert_eq!(
        forbidden["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{forbidden}"
    );
    let missing = gql(
        &app,
        ADMIN_KEY,
        REPROCESS_ONE,
        json!({"id": "WebhookEvent:999999", "dryRun": true}),
    )
    .await;
    assert_eq!(
        missing["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{missing}"
    );
    let wrong_kind = gql(
        &app,
        ADMIN_KEY,
        REPROCESS_ONE,
        json!({"id": "Client:1", "dryRun": true}),
    )
    .await;
    assert_eq!(
        wrong_kind["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{wrong_kind}"
    );
    app.stop().await;
}

#[tokio::test]
async fn old_deliveries_never_revert_newer_state_and_duplicates_and_pruned_ones_are_skipped() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let duplicate = ingest(&app, "chup", "live_queue_created").await;
    assert_eq!(duplicate["status"], "DUPLICATE");
    let arrived = ingest(&app, "chup", "live_queue_updated_arrived").await;
    let served = ingest(&app, "chup", "live_queue_updated_serving").await;
    // Retention pruned the ARRIVED delivery's body.
    webhook_event::Entity::update_many()
        .col_expr(
            webhook_event::Column::Body,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .filter(webhook_event::Column::Id.eq(WebhookEventId(arrived["id"].as_i64().expect("id"))))
        .exec(&app.db)
        .await
        .expect("prune one body");
    let before = queue_states(&app).await;
    let events = event_count(&app).await;

    let answer = gql(
        &app,
        ADMIN_KEY,
        REPROCESS_MANY,
        json!({"filter": {"sourceIds": ["chup-main"]}, "dryRun": false}),
    )
    .await;
    let report = &answer["data"]["reprocessWebhookEvents"];
    assert_eq!(report["matched"], 4, "{answer}");
    assert_eq!(report["skipped"], 2, "{answer}");
    assert_eq!(report["reprocessed"], 2, "{answer}");
    assert_eq!(report["changed"], 0, "{answer}");
    let skipped: Vec<(String, String)> = report["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| {
            (
                d["webhookEventId"].as_str().unwrap_or_default().to_owned(),
                d["skipped"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(skipped.len(), 2, "{answer}");
    assert_eq!(skipped[0].0, format!("WebhookEvent:{}", duplicate["id"]));
    assert!(skipped[0].1.contains("duplicate"), "{skipped:?}");
    assert_eq!(skipped[1].0, format!("WebhookEvent:{}", arrived["id"]));
    assert!(skipped[1].1.contains("pruned"), "{skipped:?}");

    assert_eq!(queue_states(&app).await, before, "the newest state stands");
    assert_eq!(event_count(&app).await, events);
    let statuses: Vec<String> = webhook_event::Entity::find()
        .order_by_asc(webhook_event::Column::Id)
        .all(&app.db)
        .await
        .expect("rows")
        .into_iter()
        .map(|row| row.status)
        .collect();
    assert_eq!(
        statuses,
        ["PROCESSED", "DUPLICATE", "PROCESSED", "PROCESSED"],
        "a superseded delivery stays PROCESSED"
    );
    assert_eq!(served["status"], "PROCESSED");
    app.stop().await;
}

#[tokio::test]
async fn the_cli_applies_a_changed_vsee_status_table_to_stored_visits() {
    let app = spawn_app().await;
    ingest(&app, "vsee", "visit_created_v1").await;
    let updated = ingest(&app, "vsee", "visit_updated_v1").await;
    let visit_status = || async {
        let answer = gql(
            &app,
            ADMIN_KEY,
            "{ visits { nodes { status { kind raw } } } }",
            json!({}),
        )
        .await;
        answer["data"]["visits"]["nodes"][0]["status"].clone()
    };
    assert_eq!(visit_status().await, json!({"kind": "OTHER", "raw": "30"}));

    // The operator learns what VSee's "30" means and tells the gateway.
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("carebridge.toml");
    let text = crate::helpers::test_config_toml("[vsee.status_codes]\n\"30\" = \"in_progress\"");
    std::fs::write(&config, text).expect("config");
    let run = |args: &'static [&'static str]| {
        let config = config.clone();
        let url = app.database.url();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(crate::helpers::binary())
                .arg("--config")
                .arg(&config)
                .args(args)
                .env("DATABASE_URL", url)
                .output()
                .expect("run reprocess")
        })
    };
    let dry = run(&["reprocess", "--source", "vsee-main", "--dry-run"])
        .await
        .expect("join");
    let printed = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        dry.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        printed.contains("would change 1 deliveries and 1 entities"),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "{}\tPROCESSED -> PROCESSED (updated Visit:",
            updated["id"]
        )),
        "{printed}"
    );
    assert_eq!(
        visit_status().await["kind"],
        "OTHER",
        "a dry run writes nothing"
    );

    let events = event_count(&app).await;
    let real = run(&["reprocess", "--source", "vsee-main"])
        .await
        .expect("join");
    let printed = String::from_utf8_lossy(&real.stdout).into_owned();
    assert!(real.status.success(), "{printed}");
    assert!(
        printed.contains("matched 2, reprocessed 2, skipped 0"),
        "{printed}"
    );
    assert_eq!(
        visit_status().await,
        json!({"kind": "IN_PROGRESS", "raw": "30"})
    );
    let new_events = domain_event::Entity::find()
        .filter(
            domain_event::Column::WebhookEventId
                .eq(WebhookEventId(updated["id"].as_i64().expect("id"))),
        )
        .filter(domain_event::Column::Kind.eq("VISIT_UPDATED"))
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(new_events, 2, "the original update and the reprocessed one");
    assert_eq!(event_count(&app).await, events + 1);

    let again = run(&["reprocess", "--source", "vsee-main"])
        .await
        .expect("join");
    let printed = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(
        printed.contains("changed 0 deliveries and 0 entities"),
        "{printed}"
    );
    app.stop().await;
}
