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
