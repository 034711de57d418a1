//! Operating the gateway: metrics that move with traffic, retention, erasure and reprocessing.

use serde_json::json;

use crate::helpers::{READ_KEY, TestApp, fixture, ingest, post_webhook, spawn_app};

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    response.text().await.expect("text")
}

/// The value of the first sample whose line starts with `series` (name and labels).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn metrics_appear_and_change_as_traffic_flows() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    assert_eq!(
        sample(&before, "carebridge_webhooks_received_total{"),
        None,
        "no deliveries yet"
    );

    ingest(&app, "chup", "live_queue_created").await;
    ingest(&app, "chup", "live_queue_created").await; // duplicate
    let forged = app
        .client
        .post(app.url("/webhooks/timetap-main?token=forged-token"))
        .header("content-type", "application/json")
        .body(fixture("timetap", "create"))
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status(), 401);
    let rejected = post_webhook(&app, "vsee-main", b"not json".to_vec()).await;
    assert_eq!(rejected.status(), 400);
    let _unknown = app
        .client
        .post(app.url("/webhooks/who"))
        .json(&json!({}))
        .send()
        .await
        .expect("post");

    let after = scrape(&app).await;
    let count = |labels: &str| {
        sample(
            &after,
            &format!("carebridge_webhooks_received_total{{{labels}}}"),
        )
    };
    assert_eq!(
        count("event=\"live_queue_created\",outcome=\"processed\",source=\"chup-main\""),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        count("event=\"live_queue_created\",outcome=\"duplicate\",source=\"chup-main\""),
        Some(1.0)
    );
    assert_eq!(
        count("event=\"-\",outcome=\"unauthorized\",source=\"timetap-main\""),
        Some(1.0)
    );
    assert_eq!(
        count("event=\"-\",outcome=\"rejected\",source=\"vsee-main\""),
        Some(1.0)
    );
    assert_eq!(
        count("event=\"-\",outcome=\"unknown_source\",source=\"unknown\""),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &after,
            "carebridge_webhook_verification_failures_total{source=\"timetap-main\"}"
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &after,
            "carebridge_webhook_ingest_seconds_count{outcome=\"processed\"}"
        )
        .is_some()
    );
    assert!(sample(&after, "carebridge_ingest_commit_batch_size_count").unwrap_or(0.0) >= 2.0);
    let last = sample(
        &after,
        "carebridge_source_last_delivery_timestamp_seconds{source=\"chup-main\"}",
    )
    .expect("last delivery");
    assert!((last - chrono::Utc::now().timestamp() as f64).abs() < 60.0);
    assert!(sample(&after, "carebridge_db_pool_connections{state=\"open\"}").unwrap_or(0.0) >= 1.0);
    assert_eq!(sample(&after, "carebridge_alert_outbox_depth"), Some(0.0));
    // Published events reach the counter once the tailer has run.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while sample(&scrape(&app).await, "carebridge_events_published_total").unwrap_or(0.0) < 4.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "events never counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn websocket_gauges_follow_connections_and_subscriptions() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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
    let send = |value: serde_json::Value| Message::Text(value.to_string().into());
    socket.send(send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {READ_KEY}")}}))).await.expect("init");
    let _ack = socket.next().await;
    for id in ["a", "b"] {
        socket.send(send(json!({"id": id, "type": "subscribe", "payload": {"query": "subscription { events { cursor } }"}}))).await.expect("subscribe");
    }
    socket
        .send(send(json!({"id": "b", "type": "complete"})))
        .await
        .expect("complete");
    let wait_for = |connections: f64, subscriptions: f64| {
        let app = &app;
        async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            loop {
                let metrics = scrape(app).await;
                let seen = (
                    sample(&metrics, "carebridge_websocket_connections"),
                    sample(&metrics, "carebridge_subscriptions"),
                );
                if seen == (Some(connections), Some(subscriptions)) {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "gauges stuck at {seen:?}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(1.0, 1.0).await;
    drop(socket);
    wait_for(0.0, 0.0).await;
    app.stop().await;
}

/// Makes every stored delivery of `source` look `days` old.
async fn age_deliveries(app: &TestApp, source: &str, days: i64) {
    use entity::webhook_event;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    webhook_event::Entity::update_many()
        .col_expr(
            webhook_event::Column::ReceivedAt,
            Expr::value(chrono::Utc::now() - chrono::Duration::days(days)),
        )
        .filter(webhook_event::Column::SourceId.eq(entity::ids::SourceId(source.to_owned())))
        .exec(&app.db)
        .await
        .expect("age rows");
}

async fn bodies(app: &TestApp, source: &str) -> Vec<(Option<Vec<u8>>, String, String)> {
    use entity::webhook_event;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    webhook_event::Entity::find()
        .filter(webhook_event::Column::SourceId.eq(entity::ids::SourceId(source.to_owned())))
        .all(&app.db)
        .await
        .expect("rows")
        .into_iter()
        .map(|row| (row.body, row.body_sha256, row.status))
        .collect()
}

fn retention_config(extra: &str) -> String {
    crate::helpers::test_config_toml(extra).replace(
        "token = \"test-timetap-token\"",
        "token = \"test-timetap-token\"\n        retention_days = 90",
    )
}

#[tokio::test]
async fn prune_removes_aged_raw_bodies_per_source_and_keeps_the_metadata() {
    let config_text = retention_config("");
    let app = crate::helpers::spawn_app_with(&config_text).await;
    ingest(&app, "chup", "live_queue_created").await;
    ingest(&app, "chup", "live_queue_updated_arrived").await;
    ingest(&app, "timetap", "create").await;
    ingest(&app, "vsee", "visit_created_v1").await;
    age_deliveries(&app, "chup-main", 40).await;
    age_deliveries(&app, "timetap-main", 40).await; // kept: this source keeps 90 days

    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("carebridge.toml");
    std::fs::write(&config, &config_text).expect("config");
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
                .expect("run prune")
        })
    };
    let dry = run(&["prune", "--dry-run"]).await.expect("join");
    let printed = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{printed}");
    assert!(
        printed.contains("chup-main\twould remove 2 raw bodies"),
        "{printed}"
    );
    assert!(
        printed.contains("timetap-main\twould remove 0 raw bodies"),
        "{printed}"
    );
    assert!(
        bodies(&app, "chup-main")
            .await
            .iter()
            .all(|(body, _, _)| body.is_some()),
        "a dry run changes nothing"
    );

    let real = run(&["prune"]).await.expect("join");
    assert!(real.status.success());
    let chup = bodies(&app, "chup-main").await;
    assert_eq!(chup.len(), 2, "the inbox rows stay");
    assert!(
        chup.iter().all(|(body, hash, status)| body.is_none()
            && hash.len() == 64
            && status == "PROCESSED")
    );
    assert!(
        bodies(&app, "timetap-main")
            .await
            .iter()
            .all(|(body, _, _)| body.is_some()),
        "its own retention keeps it"
    );
    assert!(
        bodies(&app, "vsee-main")
            .await
            .iter()
            .all(|(body, _, _)| body.is_some()),
        "not old enough"
    );
    let raw = crate::helpers::gql(&app, crate::helpers::ADMIN_KEY, "{ webhookEvents(filter: {sourceIds: [\"chup-main\"]}) { edges { node { rawBody bodySha256 } } } }", json!({})).await;
    assert_eq!(
        raw["data"]["webhookEvents"]["edges"][0]["node"]["rawBody"],
        serde_json::Value::Null
    );
    app.stop().await;
}

#[tokio::test]
async fn the_background_job_prunes_without_being_asked() {
    let app =
        crate::helpers::spawn_app_with(&retention_config("[retention]\ninterval_secs = 1")).await;
    ingest(&app, "chup", "live_queue_created").await;
    age_deliveries(&app, "chup-main", 31).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while bodies(&app, "chup-main")
        .await
        .iter()
        .any(|(body, _, _)| body.is_some())
    {
        assert!(tokio::time::Instant::now() < deadline, "never pruned");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let fresh = ingest(&app, "chup", "live_queue_updated_arrived").await;
    assert_eq!(fresh["status"], "PROCESSED", "ingest goes on");
    app.stop().await;
}

#[tokio::test]
async fn erasing_a_client_removes_their_personal_data_everywhere_and_is_audited() {
    use crate::helpers::{ADMIN_KEY, gql};
    let app = spawn_app().await;
    for name in [
        "live_queue_created",
        "live_queue_updated_arrived",
        "live_queue_updated_alert",
    ] {
        ingest(&app, "chup", name).await;
    }
    ingest(&app, "vsee", "visit_created_v1").await; // another patient, untouched
    let found = gql(
        &app,
        READ_KEY,
        "{ clients(search: \"saad\") { edges { node { id } } } }",
        json!({}),
    )
    .await;
    let id = found["data"]["clients"]["edges"][0]["node"]["id"].clone();

    let refused = gql(
        &app,
        READ_KEY,
        "mutation($id: ID!) { eraseClient(id: $id) { rawBodiesErased } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN");

    let erased = gql(&app, ADMIN_KEY, "mutation($id: ID!) { eraseClient(id: $id) { clientId rawBodiesErased eventsScrubbed recordsScrubbed } }", json!({"id": id})).await;
    let report = &erased["data"]["eraseClient"];
    assert_eq!(report["rawBodiesErased"], 3, "{erased}");
    assert!(report["eventsScrubbed"].as_u64().expect("count") >= 3);

    let after = gql(
        &app,
        ADMIN_KEY,
        "query($id: ID!) { node(id: $id) { ... on Client { name phone email deleted } } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(
        after["data"]["node"],
        json!({"name": null, "phone": null, "email": null, "deleted": true})
    );
    let raw = gql(
        &app,
        ADMIN_KEY,
        "{ webhookEvents { edges { node { vendor rawBody } } } }",
        json!({}),
    )
    .await;
    let text = raw.to_string();
    assert!(
        !text.contains("Saad") && !text.contains("923093927454"),
        "no raw body mentions the client"
    );
    assert!(
        raw["data"]["webhookEvents"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .any(|e| e["node"]["vendor"] == "vsee" && e["node"]["rawBody"].is_string()),
        "other patients' deliveries stay"
    );
    let ticket = gql(
        &app,
        READ_KEY,
        "{ queueEntries { edges { node { vendorId notes state { kind } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        ticket["data"]["queueEntries"]["edges"][0]["node"]["notes"],
        serde_json::Value::Null,
        "the alert note text is gone"
    );
    assert_eq!(
        ticket["data"]["queueEntries"]["edges"][0]["node"]["state"]["kind"], "ARRIVED",
        "the ticket itself stays"
    );
    let log = gql(
        &app,
        ADMIN_KEY,
        "{ auditLog { actor action detail } }",
        json!({}),
    )
    .await;
    let entry = log["data"]["auditLog"]
        .as_array()
        .expect("log")
        .iter()
        .find(|e| e["detail"]["fields"] == json!(["eraseClient"]))
        .cloned()
        .expect("erasure audited");
    assert_eq!(entry["actor"], "test-admin");
    app.stop().await;
}
