//! Live subscriptions over a real websocket client: both subprotocols, every event kind,
//! resume after a disconnect, ordering under concurrency, refusals, keep-alive, and replicas.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{
    ADMIN_KEY, READ_KEY, TestApp, fixture, ingest, post_webhook, spawn_app, spawn_app_with,
    spawn_replica, test_config_toml,
};

pub(crate) const TRANSPORT_WS: &str = "graphql-transport-ws";
pub(crate) const LEGACY_WS: &str = "graphql-ws";

pub(crate) struct Client {
    pub(crate) socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    protocol: &'static str,
}

async fn open(app: &TestApp, protocol: &str) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
    let mut request = format!("ws://{}/graphql", app.address)
        .into_client_request()
        .expect("request");
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connects");
    socket
}

pub(crate) async fn connect(app: &TestApp, protocol: &'static str, key: &str) -> Client {
    let mut client = Client {
        socket: open(app, protocol).await,
        protocol,
    };
    client.send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {key}")}})).await;
    let ack = client.next_json().await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    client
}

impl Client {
    pub(crate) async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    pub(crate) async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = if self.protocol == TRANSPORT_WS {
            "subscribe"
        } else {
            "start"
        };
        self.send(
            json!({"id": id, "type": kind, "payload": {"query": query, "variables": variables}}),
        )
        .await;
    }

    /// The next JSON message (pings answered by the library, keep-alives skipped).
    pub(crate) async fn next_json(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("a message within 10 s")
                .expect("socket open")
                .expect("no socket error");
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).expect("JSON message");
                if value["type"] != "ka" {
                    return value;
                }
            }
        }
    }

    /// The next data payload of subscription `id` (`next` or legacy `data`).
    pub(crate) async fn next_data(&mut self, id: &str) -> Value {
        loop {
            let message = self.next_json().await;
            if message["id"] == id && (message["type"] == "next" || message["type"] == "data") {
                return message["payload"].clone();
            }
            assert_ne!(message["type"], "error", "{message}");
        }
    }

    async fn next_events(&mut self, id: &str, count: usize) -> Vec<Value> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            let payload = self.next_data(id).await;
            assert!(payload.get("errors").is_none(), "{payload}");
            events.push(payload["data"]["events"].clone());
        }
        events
    }

    /// The close frame the server sends (code, reason).
    async fn closed_with(mut self) -> (u16, String) {
        loop {
            match tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("closes within 10 s")
            {
                Some(Ok(Message::Close(Some(frame)))) => {
                    return (frame.code.into(), frame.reason.to_string());
                }
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

const EVENTS: &str = "subscription($after: String, $filter: EventFilter) {
    events(after: $after, filter: $filter) { cursor kind sourceId entityType entity { id } } }";

fn cursor(event: &Value) -> i64 {
    event["cursor"]
        .as_str()
        .expect("cursor")
        .parse()
        .expect("numeric cursor")
}

async fn all_logged_events(app: &TestApp) -> Vec<(i64, String)> {
    let body = crate::helpers::gql(
        app,
        READ_KEY,
        "{ events(first: 1000) { cursor kind } }",
        json!({}),
    )
    .await;
    body["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (cursor(e), e["kind"].as_str().expect("kind").to_owned()))
        .collect()
}

#[tokio::test]
async fn every_event_kind_arrives_in_commit_order_on_graphql_transport_ws() {
    let app = spawn_app().await;
    let mut client = connect(&app, TRANSPORT_WS, READ_KEY).await;
    client.subscribe("all", EVENTS, json!({})).await;
    // The subscription is live once the server has processed `subscribe`; a query round trip
    // on the same server orders us after it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for (vendor, name) in [
        ("chup", "live_queue_created"),
        ("chup", "live_queue_updated_arrived"),
        ("chup", "live_queue_deleted"),
        ("chup", "appointment_created"),
        ("chup", "appointment_updated"),
        ("chup", "appointment_deleted"),
        ("timetap", "create"),
        ("timetap", "cancel"),
        ("vsee", "visit_created_v1"),
        ("vsee", "visit_ended_v1"),
        ("vcita", "payment_paid"),
        ("vcita", "client_updated"),
    ] {
        ingest(&app, vendor, name).await;
    }
    let logged = all_logged_events(&app).await;
    let received = client.next_events("all", logged.len()).await;
    let received: Vec<(i64, String)> = received
        .iter()
        .map(|e| (cursor(e), e["kind"].as_str().expect("kind").to_owned()))
        .collect();
    assert_eq!(
        received, logged,
        "exactly the logged events, in cursor order"
    );
    let kinds: std::collections::BTreeSet<&str> =
        received.iter().map(|(_, kind)| kind.as_str()).collect();
    for kind in [
        "QUEUE_ENTRY_CREATED",
        "QUEUE_ENTRY_CHANGED",
        "QUEUE_ENTRY_DELETED",
        "APPOINTMENT_CREATED",
        "APPOINTMENT_RESCHEDULED",
        "APPOINTMENT_DELETED",
        "APPOINTMENT_CANCELLED",
        "VISIT_CREATED",
        "VISIT_ENDED",
        "PAYMENT_CREATED",
        "CLIENT_CREATED",
        "SERVICE_CREATED",
        "STAFF_CREATED",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_delivers_events_too() {
    let app = spawn_app().await;
    let mut client = connect(&app, LEGACY_WS, READ_KEY).await;
    client
        .subscribe(
            "1",
            EVENTS,
            json!({"filter": {"kinds": ["QUEUE_ENTRY_CREATED"]}}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    ingest(&app, "chup", "live_queue_created").await;
    let events = client.next_events("1", 1).await;
    assert_eq!(events[0]["kind"], "QUEUE_ENTRY_CREATED");
    assert!(
        events[0]["entity"]["id"]
            .as_str()
            .expect("id")
            .starts_with("QueueEntry:")
    );
    app.stop().await;
}

#[tokio::test]
async fn resuming_after_a_disconnect_yields_exactly_the_missed_events_then_live_ones() {
    let app = spawn_app().await;
    let mut client = connect(&app, TRANSPORT_WS, READ_KEY).await;
    client
        .subscribe("s", EVENTS, json!({"filter": {"sourceIds": ["chup-main"]}}))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    ingest(&app, "chup", "live_queue_created").await;
    let seen = client.next_events("s", 4).await; // client, service, staff, ticket
    let last_seen = seen.last().map(cursor).expect("a cursor");
    drop(client);

    for name in [
        "live_queue_updated_arrived",
        "live_queue_updated_serving",
        "live_queue_updated_served",
    ] {
        ingest(&app, "chup", name).await;
    }
    let missed: Vec<i64> = all_logged_events(&app)
        .await
        .into_iter()
        .map(|(c, _)| c)
        .filter(|c| *c > last_seen)
        .collect();
    assert_eq!(missed.len(), 3);

    let mut client = connect(&app, TRANSPORT_WS, READ_KEY).await;
    client
        .subscribe(
            "s",
            EVENTS,
            json!({"after": last_seen.to_string(), "filter": {"sourceIds": ["chup-main"]}}),
        )
        .await;
    let replayed: Vec<i64> = client
        .next_events("s", 3)
        .await
        .iter()
        .map(cursor)
        .collect();
    assert_eq!(
        replayed, missed,
        "the missed events, in order, nothing before them"
    );
    ingest(&app, "chup", "live_queue_updated_moved").await;
    // The move brings a new service and staff member first, then the ticket change.
    loop {
        let live = client.next_events("s", 1).await.remove(0);
        assert!(
            cursor(&live) > *missed.last().expect("missed"),
            "no duplicate at the seam"
        );
        if live["kind"] == "QUEUE_ENTRY_CHANGED" {
            break;
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn two_hundred_concurrent_webhooks_all_arrive_in_cursor_order_even_with_a_tiny_buffer() {
    let app = spawn_app_with(&test_config_toml("[limits]\nevent_buffer = 2")).await;
    let mut client = connect(&app, TRANSPORT_WS, READ_KEY).await;
    client
        .subscribe(
            "q",
            EVENTS,
            json!({"filter": {"kinds": ["QUEUE_ENTRY_CREATED"]}}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let template = String::from_utf8(fixture("chup", "live_queue_created")).expect("utf8");
    let posts = (0..200).map(|n| {
        let body = template.replace("\"id\": 19242", &format!("\"id\": {}", 500_000 + n));
        let app = &app;
        async move {
            let response = post_webhook(app, "chup-main", body.into_bytes()).await;
            assert_eq!(response.status(), 200);
        }
    });
    futures_util::future::join_all(posts).await;
    let received: Vec<i64> = client
        .next_events("q", 200)
        .await
        .iter()
        .map(cursor)
        .collect();
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing cursors"
    );
    let logged: Vec<i64> = all_logged_events(&app)
        .await
        .into_iter()
        .filter(|(_, kind)| kind == "QUEUE_ENTRY_CREATED")
        .map(|(c, _)| c)
        .collect();
    assert_eq!(received, logged);
    app.stop().await;
}

#[tokio::test]
async fn entity_subscriptions_carry_the_changed_entity() {
    let app = spawn_app().await;
    let mut client = connect(&app, TRANSPORT_WS, READ_KEY).await;
    client
        .subscribe(
            "q",
            "subscription { queueChanged { vendorId state { kind } client { name } } }",
            json!({}),
        )
        .await;
    client
        .subscribe(
            "a",
            "subscription { appointmentChanged { vendorId status { kind } } }",
            json!({}),
        )
        .await;
    client
        .subscribe(
            "v",
            "subscription { visitChanged { vendorId status { kind raw } } }",
            json!({}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    ingest(&app, "chup", "live_queue_created").await;
    let ticket = client.next_data("q").await;
    assert_eq!(
        ticket["data"]["queueChanged"],
        json!({"vendorId": "19242", "state": {"kind": "WAITING"}, "client": {"name": "Saad"}})
    );
    ingest(&app, "timetap", "create").await;
    let appointment = client.next_data("a").await;
    assert_eq!(
        appointment["data"]["appointmentChanged"]["status"]["kind"],
        "BOOKED"
    );
    ingest(&app, "vsee", "visit_ended_v1").await;
    let visit = client.next_data("v").await;
    assert_eq!(
        visit["data"]["visitChanged"]["status"],
        json!({"kind": "COMPLETED", "raw": "40"})
    );
    app.stop().await;
}

#[tokio::test]
async fn a_bad_cursor_ends_only_that_subscription() {
    let app = spawn_app().await;
    let mut client = connect(&app, TRANSPORT_WS, READ_KEY).await;
    client.subscribe("good", EVENTS, json!({})).await;
    for (id, after) in [("malformed", "abc"), ("future", "999999")] {
        client.subscribe(id, EVENTS, json!({"after": after})).await;
        let error = loop {
            let message = client.next_json().await;
            if message["id"] == id {
                break message;
            }
        };
        let code = &error["payload"]["errors"][0]["extensions"]["code"];
        assert_eq!(code, "BAD_USER_INPUT", "{error}");
        let complete = client.next_json().await;
        assert_eq!(
            complete,
            json!({"id": id, "type": "complete"}),
            "the subscription ends"
        );
    }
    ingest(&app, "chup", "live_queue_created").await;
    let still_live = client.next_events("good", 1).await;
    assert!(
        still_live[0]["kind"].is_string(),
        "the connection and its other subscription carry on"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_cursor_older_than_the_retained_history_asks_for_a_resync() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    ingest(&app, "chup", "live_queue_updated_arrived").await;
    let pruned = carebridge::store::events::prune_events(
        &app.db,
        chrono::Utc::now() + chrono::Duration::seconds(1),
    )
    .await
    .expect("prune");
    assert!(pruned > 0);
    let mut client = connect(&app, TRANSPORT_WS, READ_KEY).await;
    client.subscribe("old", EVENTS, json!({"after": "1"})).await;
    let error = client.next_json().await;
    let first_error = &error["payload"]["errors"][0];
    assert_eq!(first_error["extensions"]["resync"], true, "{error}");
    assert_eq!(
        first_error["extensions"]["code"], "BAD_USER_INPUT",
        "{error}"
    );
    assert!(
        first_error["message"]
            .as_str()
            .expect("message")
            .contains("resync")
    );
    assert_eq!(
        client.next_json().await,
        json!({"id": "old", "type": "complete"})
    );
    app.stop().await;
}

#[tokio::test]
async fn refused_keys_and_protocol_violations_close_the_socket_with_the_protocols_codes() {
    let app = spawn_app().await;
    // An unknown key: 4403 before any data.
    let mut socket = Client {
        socket: open(&app, TRANSPORT_WS).await,
        protocol: TRANSPORT_WS,
    };
    socket
        .send(json!({"type": "connection_init", "payload": {"authorization": "Bearer nope"}}))
        .await;
    assert_eq!(socket.closed_with().await.0, 4403);
    // No key at all.
    let mut socket = Client {
        socket: open(&app, TRANSPORT_WS).await,
        protocol: TRANSPORT_WS,
    };
    socket.send(json!({"type": "connection_init"})).await;
    assert_eq!(socket.closed_with().await.0, 4403);
    // Subscribing before connection_init.
    let mut socket = Client {
        socket: open(&app, TRANSPORT_WS).await,
        protocol: TRANSPORT_WS,
    };
    socket.subscribe("x", EVENTS, json!({})).await;
    assert_eq!(socket.closed_with().await.0, 4401);
    // A malformed message after a good start.
    let mut client = connect(&app, TRANSPORT_WS, ADMIN_KEY).await;
    client
        .socket
        .send(Message::Text("{not json".into()))
        .await
        .expect("send");
    let (code, reason) = client.closed_with().await;
    assert_eq!(code, 4400);
    assert!(reason.contains("JSON"), "{reason}");
    // An unknown message type.
    let mut client = connect(&app, TRANSPORT_WS, ADMIN_KEY).await;
    client.send(json!({"type": "explode"})).await;
    assert_eq!(client.closed_with().await.0, 4400);
    // An unknown subprotocol.
    let socket = Client {
        socket: open(&app, "mqtt").await,
        protocol: TRANSPORT_WS,
    };
    assert_eq!(socket.closed_with().await.0, 4406);
    app.stop().await;
}

#[tokio::test]
async fn the_server_pings_and_closes_a_connection_that_stops_answering() {
    let app = spawn_app_with(&test_config_toml("[limits]\nws_ping_interval_secs = 1")).await;
    let client = connect(&app, TRANSPORT_WS, READ_KEY).await;
    // Not reading means not answering pings (tungstenite replies only while it reads).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let mut socket = client.socket;
    let mut pings = 0;
    let close = loop {
        match socket.next().await {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(Some(frame)))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected pings then a close, got {other:?}"),
        }
    };
    assert!(pings >= 1, "the server pinged");
    assert_eq!(u16::from(close.code), 4408);

    // A client that keeps reading answers the pings and stays connected.
    let mut live = connect(&app, TRANSPORT_WS, READ_KEY).await;
    live.subscribe("e", EVENTS, json!({})).await;
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(3500);
    let mut answered = 0;
    while let Ok(message) = tokio::time::timeout_at(quiet_until, live.socket.next()).await {
        match message {
            Some(Ok(Message::Ping(_))) => answered += 1, // the library queues the pong
            other => panic!("only pings expected while idle, got {other:?}"),
        }
    }
    assert!(answered >= 2, "pinged every second and still open");
    ingest(&app, "chup", "live_queue_created").await;
    assert!(!live.next_events("e", 1).await.is_empty());
    app.stop().await;
}

/// Two gateway processes on one database: subscribe on one, post to the other. On PostgreSQL
/// the event crosses by LISTEN/NOTIFY; on SQLite the tailer's periodic look finds it.
#[tokio::test]
async fn an_event_committed_by_one_replica_reaches_subscribers_of_the_other() {
    let first = spawn_app().await;
    let second = spawn_replica(&first).await;
    let mut client = connect(&first, TRANSPORT_WS, READ_KEY).await;
    client
        .subscribe(
            "r",
            EVENTS,
            json!({"filter": {"kinds": ["QUEUE_ENTRY_CREATED"]}}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let template = String::from_utf8(fixture("chup", "live_queue_created")).expect("utf8");
    let posts = (0..40).map(|n| {
        let body = template.replace("\"id\": 19242", &format!("\"id\": {}", 700_000 + n));
        let target = if n % 2 == 0 { &first } else { &second };
        async move {
            let response = post_webhook(target, "chup-main", body.into_bytes()).await;
            assert_eq!(response.status(), 200);
        }
    });
    futures_util::future::join_all(posts).await;
    let received: Vec<i64> = client
        .next_events("r", 40)
        .await
        .iter()
        .map(cursor)
        .collect();
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "commit order across replicas: {received:?}"
    );
    second.stop().await;
    first.stop().await;
}
