//! Multiplexed live subscriptions over real websocket clients: identical live subscriptions on
//! different connections (and protocols) share one execution and each get every event exactly
//! once; different variables or scopes do not share; members come and go without disturbing
//! the others; `after` subscriptions keep their own replaying stream; errors reach every member.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ADMIN_KEY, READ_KEY, TestApp, fixture, gql, post_webhook, spawn_app};
use crate::subscriptions::{Client, LEGACY_WS, TRANSPORT_WS, connect};

/// What a dashboard screen asks (the fan-out benchmark's query).
const SCREEN: &str = "subscription Screen($serviceId: ID) { queueChanged(serviceId: $serviceId) \
     { id vendorId state { kind label } client { name phone } service { name } staff { name } \
     joinedAt } }";

/// Posts a new Chup ticket `ticket` in Chup service `service` (created on first sight).
async fn new_ticket(app: &TestApp, ticket: u64, service: u64) {
    let body = String::from_utf8(fixture("chup", "live_queue_created"))
        .expect("utf8")
        .replace("\"id\": 19242", &format!("\"id\": {ticket}"))
        .replace("\"service_id\": 220", &format!("\"service_id\": {service}"))
        .replace(
            "\"service_name\": \"Registration\"",
            &format!("\"service_name\": \"Service {service}\""),
        );
    let response = post_webhook(app, "chup-main", body.into_bytes()).await;
    assert_eq!(response.status(), 200);
}

/// The global id of the Chup service `vendor_id`.
async fn service_id(app: &TestApp, vendor_id: &str) -> String {
    let body = gql(app, READ_KEY, "{ services { id vendorId } }", json!({})).await;
    body["data"]["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|service| service["vendorId"] == vendor_id)
        .and_then(|service| service["id"].as_str())
        .unwrap_or_else(|| panic!("service {vendor_id} in {body}"))
        .to_owned()
}

/// The gateway's count of running shared executions.
async fn shared_executions(app: &TestApp) -> i64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix("carebridge_shared_subscription_executions "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the shared executions gauge")
}

/// Waits until `expected` shared executions run, then a moment more: a group's stream
/// subscribes to the bus on its first poll, just after it starts.
async fn wait_shared(app: &TestApp, expected: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let running = shared_executions(app).await;
        if running == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{running} shared executions, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The next `count` data messages of this connection as (subscription id, message type,
/// payload); an error or completion instead is a failure.
async fn data_messages(client: &mut Client, count: usize) -> Vec<(String, String, Value)> {
    let mut messages = Vec::with_capacity(count);
    while messages.len() < count {
        let message = client.next_json().await;
        let kind = message["type"].as_str().expect("type").to_owned();
        assert!(kind == "next" || kind == "data", "{message}");
        assert!(message["payload"].get("errors").is_none(), "{message}");
        let id = message["id"].as_str().expect("id").to_owned();
        messages.push((id, kind, message["payload"].clone()));
    }
    messages
}

fn ticket(payload: &Value) -> &str {
    payload["data"]["queueChanged"]["vendorId"]
        .as_str()
        .expect("a ticket")
}

/// The tickets a subscription received, in order.
fn tickets_of<'a>(messages: &'a [(String, String, Value)], id: &str) -> Vec<&'a str> {
    messages
        .iter()
        .filter(|(of, _, _)| of == id)
        .map(|(_, _, payload)| ticket(payload))
        .collect()
}

#[tokio::test]
async fn identical_live_subscriptions_share_one_execution_and_each_gets_every_event_once() {
    let app = spawn_app().await;
    new_ticket(&app, 1001, 220).await;
    let service = service_id(&app, "220").await;
    let variables = json!({ "serviceId": service });
    // Two subscriptions on one connection, one on another connection in the legacy protocol:
    // all the same live subscription.
    let mut current = connect(&app, TRANSPORT_WS, READ_KEY).await;
    current.subscribe("s", SCREEN, variables.clone()).await;
    current.subscribe("t", SCREEN, variables.clone()).await;
    let mut legacy = connect(&app, LEGACY_WS, READ_KEY).await;
    legacy.subscribe("1", SCREEN, variables).await;
    wait_shared(&app, 1).await;

    new_ticket(&app, 1002, 220).await;
    new_ticket(&app, 1003, 220).await;
    new_ticket(&app, 1004, 220).await;
    let on_current = data_messages(&mut current, 6).await;
    let on_legacy = data_messages(&mut legacy, 3).await;
    for id in ["s", "t"] {
        assert_eq!(
            tickets_of(&on_current, id),
            ["1002", "1003", "1004"],
            "{id}"
        );
    }
    assert_eq!(tickets_of(&on_legacy, "1"), ["1002", "1003", "1004"]);
    assert!(on_current.iter().all(|(_, kind, _)| kind == "next"));
    assert!(on_legacy.iter().all(|(_, kind, _)| kind == "data"));
    // The same answer on both protocols, with every field of the screen.
    assert_eq!(on_current[0].2, on_legacy[0].2);
    let entry = &on_legacy[0].2["data"]["queueChanged"];
    assert_eq!(entry["client"]["name"], "Saad");
    assert!(entry["client"]["phone"].is_string(), "{entry}");
    assert_eq!(entry["service"], json!({"name": "Service 220"}));
    assert_eq!(entry["state"]["kind"], "WAITING");
    assert!(entry["staff"]["name"].is_string(), "{entry}");

    // Nothing twice: the next message of each is the next event.
    new_ticket(&app, 1005, 220).await;
    let after = data_messages(&mut current, 2).await;
    assert_eq!(tickets_of(&after, "s"), ["1005"]);
    assert_eq!(tickets_of(&after, "t"), ["1005"]);
    assert_eq!(
        tickets_of(&data_messages(&mut legacy, 1).await, "1"),
        ["1005"]
    );
    assert_eq!(shared_executions(&app).await, 1, "still one execution");
    app.stop().await;
}

#[tokio::test]
async fn different_variables_or_scopes_do_not_share_and_get_only_their_own_events() {
    let app = spawn_app().await;
    new_ticket(&app, 2001, 220).await;
    new_ticket(&app, 2002, 221).await;
    let (registration, consultation) =
        (service_id(&app, "220").await, service_id(&app, "221").await);
    let mut first = connect(&app, TRANSPORT_WS, READ_KEY).await;
    let mut second = connect(&app, TRANSPORT_WS, READ_KEY).await;
    let mut other_service = connect(&app, TRANSPORT_WS, READ_KEY).await;
    let mut admin = connect(&app, TRANSPORT_WS, ADMIN_KEY).await;
    for client in [&mut first, &mut second, &mut admin] {
        client
            .subscribe("q", SCREEN, json!({ "serviceId": registration }))
            .await;
    }
    other_service
        .subscribe("q", SCREEN, json!({ "serviceId": consultation }))
        .await;
    // Registration as `read`, registration as `read write admin`, consultation.
    wait_shared(&app, 3).await;

    new_ticket(&app, 2003, 220).await;
    new_ticket(&app, 2004, 221).await;
    new_ticket(&app, 2005, 220).await;
    new_ticket(&app, 2006, 221).await;
    for client in [&mut first, &mut second, &mut admin] {
        let messages = data_messages(client, 2).await;
        assert_eq!(tickets_of(&messages, "q"), ["2003", "2005"]);
    }
    let messages = data_messages(&mut other_service, 2).await;
    assert_eq!(tickets_of(&messages, "q"), ["2004", "2006"]);
    app.stop().await;
}

#[tokio::test]
async fn members_leave_without_disturbing_the_others_and_the_last_one_out_stops_the_execution() {
    let app = spawn_app().await;
    new_ticket(&app, 3001, 220).await;
    let variables = json!({ "serviceId": service_id(&app, "220").await });
    let mut completes = connect(&app, TRANSPORT_WS, READ_KEY).await;
    let mut stops = connect(&app, LEGACY_WS, READ_KEY).await;
    let mut stays = connect(&app, TRANSPORT_WS, READ_KEY).await;
    for client in [&mut completes, &mut stops, &mut stays] {
        client.subscribe("s", SCREEN, variables.clone()).await;
    }
    wait_shared(&app, 1).await;

    completes.send(json!({"id": "s", "type": "complete"})).await;
    assert_eq!(
        completes.next_json().await,
        json!({"id": "s", "type": "complete"})
    );
    stops.send(json!({"id": "s", "type": "stop"})).await;
    assert_eq!(
        stops.next_json().await,
        json!({"id": "s", "type": "complete"})
    );
    assert_eq!(shared_executions(&app).await, 1, "one member is left");

    new_ticket(&app, 3002, 220).await;
    let messages = data_messages(&mut stays, 1).await;
    assert_eq!(tickets_of(&messages, "s"), ["3002"]);
    let quiet = tokio::time::timeout(Duration::from_millis(300), completes.next_json()).await;
    assert!(quiet.is_err(), "a completed member gets nothing: {quiet:?}");

    // The last member's connection closes: the shared execution stops.
    drop(stays);
    wait_shared(&app, 0).await;
    // A new subscriber starts a fresh one.
    completes.subscribe("again", SCREEN, variables).await;
    wait_shared(&app, 1).await;
    new_ticket(&app, 3003, 220).await;
    let messages = data_messages(&mut completes, 1).await;
    assert_eq!(tickets_of(&messages, "again"), ["3003"]);
    app.stop().await;
}

#[tokio::test]
async fn a_subscription_with_after_replays_then_goes_live_beside_a_shared_one() {
    let app = spawn_app().await;
    new_ticket(&app, 4001, 220).await;
    let service = service_id(&app, "220").await;
    let logged = gql(
        &app,
        READ_KEY,
        "{ events(first: 1000) { cursor } }",
        json!({}),
    )
    .await;
    let last_cursor = logged["data"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|event| event["cursor"].as_str()?.parse::<i64>().ok())
        .max()
        .expect("a cursor");
    let mut live = connect(&app, TRANSPORT_WS, READ_KEY).await;
    live.subscribe("live", SCREEN, json!({ "serviceId": service }))
        .await;
    wait_shared(&app, 1).await;
    new_ticket(&app, 4002, 220).await;
    assert_eq!(
        tickets_of(&data_messages(&mut live, 1).await, "live"),
        ["4002"]
    );

    for protocol in [TRANSPORT_WS, LEGACY_WS] {
        let mut resuming = connect(&app, protocol, READ_KEY).await;
        resuming
            .subscribe(
                "replay",
                "subscription($serviceId: ID, $after: String) { \
                 queueChanged(serviceId: $serviceId, after: $after) { vendorId } }",
                json!({ "serviceId": service, "after": last_cursor.to_string() }),
            )
            .await;
        let replayed = data_messages(&mut resuming, 1).await;
        assert_eq!(tickets_of(&replayed, "replay"), ["4002"], "{protocol}");
        assert_eq!(shared_executions(&app).await, 1, "`after` is not shared");
    }
    let mut resuming = connect(&app, TRANSPORT_WS, READ_KEY).await;
    resuming
        .subscribe(
            "replay",
            "subscription($after: String) { queueChanged(after: $after) { vendorId } }",
            json!({ "after": last_cursor.to_string() }),
        )
        .await;
    assert_eq!(
        tickets_of(&data_messages(&mut resuming, 1).await, "replay"),
        ["4002"]
    );
    new_ticket(&app, 4003, 220).await;
    assert_eq!(
        tickets_of(&data_messages(&mut resuming, 1).await, "replay"),
        ["4003"],
        "then live"
    );
    assert_eq!(
        tickets_of(&data_messages(&mut live, 1).await, "live"),
        ["4003"]
    );
    app.stop().await;
}

#[tokio::test]
async fn an_error_from_a_shared_execution_reaches_every_member_and_ends_it() {
    let app = spawn_app().await;
    let variables = json!({ "serviceId": "not an id" });
    let mut current = connect(&app, TRANSPORT_WS, READ_KEY).await;
    let mut legacy = connect(&app, LEGACY_WS, READ_KEY).await;
    current.subscribe("bad", SCREEN, variables.clone()).await;
    legacy.subscribe("bad", SCREEN, variables).await;
    for client in [&mut current, &mut legacy] {
        let error = client.next_json().await;
        assert!(
            error["type"] == "next" || error["type"] == "data",
            "{error}"
        );
        assert_eq!(error["id"], "bad");
        assert_eq!(
            error["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{error}"
        );
        assert_eq!(
            client.next_json().await,
            json!({"id": "bad", "type": "complete"})
        );
    }
    wait_shared(&app, 0).await;
    // The connections carry on.
    new_ticket(&app, 5001, 220).await;
    let variables = json!({ "serviceId": service_id(&app, "220").await });
    current.subscribe("good", SCREEN, variables).await;
    wait_shared(&app, 1).await;
    new_ticket(&app, 5002, 220).await;
    assert_eq!(
        tickets_of(&data_messages(&mut current, 1).await, "good"),
        ["5002"]
    );
    app.stop().await;
}

#[tokio::test]
async fn different_live_subscriptions_woken_by_one_event_load_its_rows_together() {
    let app = spawn_app().await;
    new_ticket(&app, 9001, 220).await;
    new_ticket(&app, 9002, 221).await;
    let variables = json!({ "serviceId": service_id(&app, "220").await });
    // Six different queries (an alias each), so six executions, each loading the changed queue
    // entry and its client, service and staff.
    const SUBSCRIBERS: usize = 6;
    let mut screen = connect(&app, TRANSPORT_WS, READ_KEY).await;
    for n in 0..SUBSCRIBERS {
        let query = SCREEN.replace("joinedAt", &format!("joinedAt{n}: joinedAt"));
        screen
            .subscribe(&format!("s{n}"), &query, variables.clone())
            .await;
    }
    wait_shared(&app, SUBSCRIBERS as i64).await;
    new_ticket(&app, 9003, 220).await;
    data_messages(&mut screen, SUBSCRIBERS).await;

    // The statements of ingesting a ticket nobody watches, then of one that all six receive.
    let before = app.statements.get();
    new_ticket(&app, 9004, 221).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let unwatched = app.statements.get() - before;
    let before = app.statements.get();
    new_ticket(&app, 9005, 220).await;
    let messages = data_messages(&mut screen, SUBSCRIBERS).await;
    let watched = app.statements.get() - before;

    assert!(
        messages
            .iter()
            .all(|(_, _, payload)| ticket(payload) == "9005")
    );
    assert_eq!(
        messages[0].2["data"]["queueChanged"]["service"],
        json!({"name": "Service 220"})
    );
    // One load per kind (queue entry, client, service, staff) for all six, not six of each
    // (24); slack for a background task's statement. (On a two-thread runtime a subscriber
    // now and then asks after its batch has started: 4 to 8 seen, 12 to 16 without the yield
    // before each batch; too close to assert.)
    let loads = watched.saturating_sub(unwatched);
    assert!(
        loads <= 6,
        "{loads} statements to deliver one event to {SUBSCRIBERS} executions \
         ({watched} watched vs {unwatched} unwatched)"
    );
    app.stop().await;
}
