//! Issue 19: attacks reproduced against the real gateway (see the README's Security section).
//!
//! Websockets (item 2): real tokio-tungstenite clients on both subprotocols against a gateway
//! capped at five connections with a short keep-alive. The rule under test: a connection
//! never stops draining its socket or its engine, whatever the client sends or fails to read;
//! the keep-alive keeps working under any load; a client that sends faster than it reads is
//! closed with 4429; one that stops reading is dropped; and a closed or dropped connection
//! gives its slot back at once.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::helpers::{READ_KEY, TestApp, fixture, post_webhook, spawn_app_with, test_config_toml};

const TRANSPORT_WS: &str = "graphql-transport-ws";
const LEGACY_WS: &str = "graphql-ws";
/// `max_websocket_connections` in these tests.
const CAP: usize = 5;
/// Long enough to see a hang for what it is on a loaded machine, not a speed assertion.
const PATIENCE: Duration = Duration::from_secs(30);

type Socket = WebSocketStream<TcpStream>;

/// The test config: five connections, a keep-alive every `ping_secs`, no webhook rate limit
/// (the tests post as fast as they can), plus `extra` `[limits]` lines.
fn config(ping_secs: u64, extra: &str) -> String {
    test_config_toml(&format!(
        "[limits]\nmax_websocket_connections = {CAP}\nws_ping_interval_secs = {ping_secs}\n\
         webhook_rate_per_second = 100000\nwebhook_burst = 100000\n{extra}"
    ))
}

/// Opens a websocket (no `connection_init` yet). `receive_buffer` shrinks the client's TCP
/// receive buffer, so that a client that does not read backs the server up quickly.
async fn try_open(
    app: &TestApp,
    protocol: &str,
    receive_buffer: Option<u32>,
) -> Result<Socket, tungstenite::Error> {
    let socket = if app.address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(bytes) = receive_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    let stream = socket.connect(app.address).await?;
    let mut request = format!("ws://{}/graphql", app.address).into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().expect("header"));
    let (socket, _) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(socket)
}

fn text(value: Value) -> Message {
    Message::Text(value.to_string().into())
}

/// An open, acknowledged connection with the read key.
async fn connect(app: &TestApp, protocol: &str, receive_buffer: Option<u32>) -> Socket {
    let mut socket = try_open(app, protocol, receive_buffer)
        .await
        .expect("websocket connects");
    let init = json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {READ_KEY}")}});
    socket.send(text(init)).await.expect("connection_init");
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
}

/// The next text message as JSON; websocket pings (answered by the library) and legacy `ka`
/// keep-alives are skipped. A close or a silent server fails the test with what happened.
async fn next_json<S>(socket: &mut S) -> Value
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("the server answers (it stopped: the connection is stuck)");
        match message {
            Some(Ok(Message::Text(text))) => {
                let value: Value = serde_json::from_str(&text).expect("JSON message");
                if value["type"] != "ka" {
                    return value;
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Reads until the server's own keep-alive ping arrives (skipping any data meanwhile).
async fn server_ping<S>(socket: &mut S)
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("the server's keep-alive ping (its timer is stuck)");
        match message {
            Some(Ok(Message::Ping(_))) => return,
            Some(Ok(Message::Text(_) | Message::Pong(_))) => {}
            other => panic!("expected the server's keep-alive ping, got {other:?}"),
        }
    }
}

/// A `graphql-transport-ws` ping answered by its pong: the connection is usable.
async fn answers_a_ping(socket: &mut Socket) {
    socket
        .send(text(json!({"type": "ping"})))
        .await
        .expect("ping");
    let pong = next_json(socket).await;
    assert_eq!(pong["type"], "pong", "{pong}");
}

/// Opens `count` connections at once, retrying refusals (503) until `PATIENCE` runs out: the
/// server notices a closed socket asynchronously, but must give its slot back promptly.
async fn take_slots(app: &TestApp, count: usize) -> Vec<Socket> {
    let deadline = Instant::now() + PATIENCE;
    let mut taken = Vec::with_capacity(count);
    while taken.len() < count {
        match try_open(app, TRANSPORT_WS, None).await {
            Ok(socket) => taken.push(socket),
            Err(tungstenite::Error::Http(response)) if response.status() == 503 => {
                assert!(
                    Instant::now() < deadline,
                    "only {} of {count} slots came back: closed connections still hold theirs",
                    taken.len()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("connecting: {other:?}"),
        }
    }
    taken
}

/// One client's flood: `count` pings written at once (fed without waiting for anything),
/// every pong read back meanwhile, then the server's keep-alive ping, then one more ping
/// answered. Returns the still-open connection.
async fn flood_with_pings(app: &TestApp, count: usize) -> Socket {
    let (mut writer, mut reader) = connect(app, TRANSPORT_WS, None).await.split();
    let send = async {
        for _ in 0..count {
            writer
                .feed(text(json!({"type": "ping"})))
                .await
                .expect("ping");
        }
        writer.flush().await.expect("flush");
    };
    let receive = async {
        for _ in 0..count {
            let pong = next_json(&mut reader).await;
            assert_eq!(pong["type"], "pong", "{pong}");
        }
        server_ping(&mut reader).await;
    };
    tokio::join!(send, receive);
    let mut socket = writer.reunite(reader).expect("halves of one socket");
    answers_a_ping(&mut socket).await;
    socket
}

#[tokio::test]
async fn ten_thousand_pings_at_once_are_all_answered_the_keep_alive_goes_on_and_closing_frees_the_slot()
 {
    let app = spawn_app_with(&config(2, "")).await;
    // Five flooding clients at once take every slot.
    let floods = (0..CAP).map(|_| flood_with_pings(&app, 10_000));
    let clients = futures_util::future::join_all(floods).await;
    // Some say goodbye, some just vanish; either way every slot comes back.
    for (n, mut client) in clients.into_iter().enumerate() {
        if n % 2 == 0 {
            client.close(None).await.expect("close");
        }
    }
    let fresh = take_slots(&app, CAP).await;
    drop(fresh);
    app.stop().await;
}

/// The legacy protocol has no ping: its flood is `start`s of a query, each answered (`data`
/// then `complete`) or refused (`error`) once the per-connection cap is reached.
async fn flood_with_starts(app: &TestApp, count: usize) -> Socket {
    let (mut writer, mut reader) = connect(app, LEGACY_WS, None).await.split();
    let send = async {
        for n in 0..count {
            let start = json!({"id": n.to_string(), "type": "start", "payload": {"query": "{ __typename }"}});
            writer.feed(text(start)).await.expect("start");
        }
        writer.flush().await.expect("flush");
    };
    let receive = async {
        let mut ended = HashSet::new();
        while ended.len() < count {
            let message = next_json(&mut reader).await;
            match message["type"].as_str() {
                Some("data") => {
                    assert_eq!(message["payload"]["data"]["__typename"], "Query");
                }
                Some("complete" | "error") => {
                    let id = message["id"].as_str().expect("id").to_owned();
                    assert!(ended.insert(id), "one end per start: {message}");
                }
                _ => panic!("unexpected {message}"),
            }
        }
        server_ping(&mut reader).await;
    };
    tokio::join!(send, receive);
    writer.reunite(reader).expect("halves of one socket")
}

#[tokio::test]
async fn ten_thousand_legacy_starts_at_once_are_each_answered_and_closing_frees_the_slot() {
    let app = spawn_app_with(&config(2, "")).await;
    let floods = (0..CAP).map(|_| flood_with_starts(&app, 10_000));
    let clients = futures_util::future::join_all(floods).await;
    for mut client in clients {
        client.close(None).await.expect("close");
    }
    drop(take_slots(&app, CAP).await);
    app.stop().await;
}

const EVENTS: &str = "subscription { events { cursor kind } }";

/// Subscriptions per connection in the subscribe flood: half of the flood.
const SUBSCRIPTION_CAP: usize = 500;

/// 1,000 live subscribes written at once, each with request extensions so that it runs on the
/// connection's own engine (not a shared execution): the first 500 run, the other 500 are
/// refused in the protocol's words, every one that runs then delivers events, and all 1,000
/// ended at once are answered. `tickets` numbers the webhooks this client posts.
async fn subscribe_a_thousand(app: &TestApp, protocol: &str, tickets: u64) -> Socket {
    let kind = if protocol == TRANSPORT_WS {
        "subscribe"
    } else {
        "start"
    };
    let (mut writer, mut reader) = connect(app, protocol, None).await.split();
    let send = async {
        for n in 0..1_000 {
            let subscribe = json!({"id": format!("s{n}"), "type": kind,
                "payload": {"query": EVENTS, "extensions": {"screen": n}}});
            writer.feed(text(subscribe)).await.expect("subscribe");
        }
        writer.flush().await.expect("flush");
    };
    let id = |message: &Value| -> usize {
        let id = message["id"].as_str().expect("id");
        id[1..].parse().expect("our id")
    };
    let receive = async {
        let mut refused = HashSet::new();
        while refused.len() < 1_000 - SUBSCRIPTION_CAP {
            let message = next_json(&mut reader).await;
            assert_eq!(message["type"], "error", "{message}");
            let cap = format!("at most {SUBSCRIPTION_CAP}");
            assert!(message.to_string().contains(&cap), "{message}");
            let number = id(&message);
            assert!(
                number >= SUBSCRIPTION_CAP,
                "only those above the cap: {message}"
            );
            assert!(refused.insert(number), "refused once: {message}");
        }
        // The accepted ones are live from when the engine first polls them: post tickets
        // until each has had an event.
        let mut delivered = HashSet::new();
        let deadline = Instant::now() + PATIENCE;
        let mut ticket = tickets;
        while delivered.len() < SUBSCRIPTION_CAP {
            assert!(Instant::now() < deadline, "{} delivered", delivered.len());
            // Reading goes on while the webhook is posted, as a real client's would (the
            // library answers the server's pings only while it reads).
            let batch = Instant::now() + Duration::from_secs(1);
            let read = async {
                while let Ok(message) = tokio::time::timeout_at(batch, next_json(&mut reader)).await
                {
                    assert!(
                        matches!(message["type"].as_str(), Some("next" | "data")),
                        "{message}"
                    );
                    assert!(message["payload"].get("errors").is_none(), "{message}");
                    delivered.insert(id(&message));
                }
            };
            tokio::join!(new_ticket(app, ticket), read);
            ticket += 1;
        }
        server_ping(&mut reader).await;
    };
    tokio::join!(send, receive);
    // Then all 1,000 ended at once: the engine answers each stop of a running stream with
    // `complete` (one answer per message, as for pings), and ignores the refused ones.
    let stop = if protocol == TRANSPORT_WS {
        "complete"
    } else {
        "stop"
    };
    let send = async {
        for n in 0..1_000 {
            let end = json!({"id": format!("s{n}"), "type": stop});
            writer.feed(text(end)).await.expect("stop");
        }
        writer.flush().await.expect("flush");
    };
    let receive = async {
        let mut completed = HashSet::new();
        while completed.len() < SUBSCRIPTION_CAP {
            let message = next_json(&mut reader).await;
            match message["type"].as_str() {
                Some("complete") => {
                    let number = id(&message);
                    assert!(number < SUBSCRIPTION_CAP, "{message}");
                    assert!(completed.insert(number), "completed once: {message}");
                }
                Some("next" | "data") => {} // an event that was on its way
                _ => panic!("unexpected {message}"),
            }
        }
        server_ping(&mut reader).await;
    };
    tokio::join!(send, receive);
    writer.reunite(reader).expect("halves of one socket")
}

#[tokio::test]
async fn a_thousand_subscribes_at_once_are_refused_above_the_cap_and_the_connection_stays_usable() {
    let cap = format!("max_subscriptions_per_connection = {SUBSCRIPTION_CAP}");
    let app = spawn_app_with(&config(3, &cap)).await;
    // One protocol after the other: each subscription that starts reads the log's latest
    // cursor, and 1,000 at once would measure the database pool, not the connection.
    let mut current = subscribe_a_thousand(&app, TRANSPORT_WS, 800_000).await;
    answers_a_ping(&mut current).await;
    current.close(None).await.expect("close");
    let legacy = subscribe_a_thousand(&app, LEGACY_WS, 900_000).await;
    drop(legacy);
    drop(take_slots(&app, CAP).await);
    app.stop().await;
}

/// What a dashboard screen asks (the fan-out benchmark's query): a few hundred bytes an event.
const SCREEN: &str = "subscription Screen($serviceId: ID) { queueChanged(serviceId: $serviceId) \
     { id vendorId state { kind label } client { name phone } service { name } staff { name } \
     joinedAt } }";

/// Posts a new Chup ticket (a new queue entry, so an event for every screen and subscriber).
async fn new_ticket(app: &TestApp, ticket: u64) {
    let body = String::from_utf8(fixture("chup", "live_queue_created"))
        .expect("utf8")
        .replace("\"id\": 19242", &format!("\"id\": {ticket}"));
    let response = post_webhook(app, "chup-main", body.into_bytes()).await;
    assert_eq!(response.status(), 200);
}

/// Subscribes `count` times to the screen query under ids `0..count`.
async fn subscribe_screens(socket: &mut Socket, protocol: &str, count: usize) {
    let kind = if protocol == TRANSPORT_WS {
        "subscribe"
    } else {
        "start"
    };
    for n in 0..count {
        let subscribe = json!({"id": n.to_string(), "type": kind, "payload": {"query": SCREEN}});
        socket.feed(text(subscribe)).await.expect("subscribe");
    }
    socket.flush().await.expect("flush");
}

/// An honest dashboard: reads everything until told to stop; returns how many screen updates
/// it got, or panics if the server closed it.
fn honest_dashboard(
    mut socket: Socket,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut updates = 0;
        loop {
            tokio::select! {
                _ = stop.changed() => return updates,
                message = socket.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        let value: Value = serde_json::from_str(&text).expect("JSON");
                        assert_ne!(value["type"], "error", "{value}");
                        if value["type"] == "next" || value["type"] == "data" {
                            updates += 1;
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("an honest dashboard was closed: {other:?}"),
                },
            }
        }
    })
}

#[tokio::test]
async fn clients_that_never_read_a_busy_stream_are_dropped_and_their_slots_freed() {
    let app = spawn_app_with(&config(2, "")).await;
    // Three honest screens, both protocols, reading as they should.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut honest = Vec::new();
    for protocol in [TRANSPORT_WS, LEGACY_WS, TRANSPORT_WS] {
        let mut socket = connect(&app, protocol, None).await;
        subscribe_screens(&mut socket, protocol, 1).await;
        honest.push(honest_dashboard(socket, stopped.clone()));
    }
    // Two that never read their socket, with small receive buffers; the first keeps sending
    // pings (so it never looks idle), the second is silent.
    let mut noisy = connect(&app, TRANSPORT_WS, Some(4096)).await;
    subscribe_screens(&mut noisy, TRANSPORT_WS, 50).await;
    let noisy = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            every.tick().await;
            if noisy.send(text(json!({"type": "ping"}))).await.is_err() {
                return noisy; // the server dropped it; the test still holds the socket
            }
        }
    });
    let mut silent = connect(&app, LEGACY_WS, Some(4096)).await;
    subscribe_screens(&mut silent, LEGACY_WS, 50).await;

    // A busy stream, until both slots come back with the sockets still open on this side.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut ticket = 700_000;
    let mut freed = Vec::new();
    while freed.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "clients that never read still hold {} slot(s)",
            2 - freed.len()
        );
        let posts = (0..10).map(|n| new_ticket(&app, ticket + n));
        futures_util::future::join_all(posts).await;
        ticket += 10;
        match try_open(&app, TRANSPORT_WS, None).await {
            Ok(socket) => freed.push(socket),
            Err(tungstenite::Error::Http(response)) if response.status() == 503 => {}
            Err(other) => panic!("connecting: {other:?}"),
        }
    }
    // The honest screens were not collateral: still open, and they got the updates.
    stop.send(true).expect("dashboards listen");
    for dashboard in honest {
        let updates = dashboard.await.expect("an honest dashboard stayed open");
        assert!(updates > 0, "an honest dashboard got updates");
    }
    drop((silent, freed));
    noisy.abort();
    app.stop().await;
}

/// Pings the flooding client writes before it reads anything: several times what the kernel's
/// socket buffers absorb on loopback (~3 MB of pongs, measured), so the server's queue fills.
const FLOOD: usize = 500_000;

#[tokio::test]
async fn a_client_that_sends_faster_than_it_reads_is_closed_with_4429() {
    // A long keep-alive, so that only the flood can close it, and a long grace for the close
    // frame, so that the client has finished writing when it starts reading.
    let app = spawn_app_with(&config(30, "ws_max_queued_bytes = 65536")).await;
    let mut socket = connect(&app, TRANSPORT_WS, Some(4096)).await;
    // Pings written without reading a single pong.
    for _ in 0..FLOOD {
        let sent = socket.feed(text(json!({"type": "ping"}))).await;
        if sent.is_err() {
            break; // closed under our feet: what follows tells why
        }
    }
    let _unsent_if_closed = socket.flush().await;
    let mut pongs = 0;
    let frame = loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("the server answers or closes");
        match message {
            Some(Ok(Message::Text(_))) => pongs += 1,
            Some(Ok(Message::Close(Some(frame)))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected pongs then a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(frame.code), 4429, "{frame:?}");
    assert!(frame.reason.contains("faster than it reads"), "{frame:?}");
    assert!(pongs < FLOOD, "closed before answering everything");
    // Its slot is back.
    drop(take_slots(&app, CAP).await);
    app.stop().await;
}
