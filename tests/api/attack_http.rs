//! Issue 19: attacks reproduced against the real gateway (see the README's Security section).
//!
//! This file: the HTTP server itself — slow and idle connections and the connection cap
//! (item 8), the pages' Content-Security-Policy (item 11), JSON answers for every framework
//! rejection and bounded GraphQL text inputs (item 12). Connections are raw TCP sockets, so a
//! test sees exactly what an attacker's socket sees.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    ADMIN_KEY, TestApp, fixture, gql, post_webhook, spawn_app, spawn_app_with, test_config_toml,
};

/// How long a test waits for the server to close a socket before calling it a hang.
const HANG: Duration = Duration::from_secs(20);

fn limits(lines: &str) -> String {
    test_config_toml(&format!("[limits]\n{lines}"))
}

async fn open(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address).await.expect("tcp connect")
}

/// Reads until the server closes the socket (EOF or reset); `Err` if it is still open after
/// `HANG`.
async fn closed_by_server(socket: &mut TcpStream) -> Result<(), &'static str> {
    let mut buffer = [0_u8; 4096];
    let read_to_end = async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(HANG, read_to_end)
        .await
        .map_err(|_| "the server kept the connection open")
}

/// Sends a keep-alive `GET /healthz` and reads its whole answer, leaving the connection idle.
async fn request_health(socket: &mut TcpStream) {
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: carebridge\r\n\r\n")
        .await
        .expect("write request");
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 1024];
    let complete = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer);
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            return false;
        };
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .expect("content-length");
        body.len() >= length
    };
    while !complete(&answer) {
        let n = tokio::time::timeout(HANG, socket.read(&mut buffer))
            .await
            .expect("answer in time")
            .expect("read answer");
        assert!(n > 0, "server closed before answering");
        answer.extend_from_slice(&buffer[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
}

/// Starts a request and then sends one more header line every 200 ms, never finishing it,
/// until the server closes the socket; `Err` if it has not after `HANG`.
async fn slowloris_until_closed(socket: &mut TcpStream) -> Result<(), &'static str> {
    let trickle = async {
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: carebridge\r\n")
            .await
            .map_err(|_| ())?;
        let mut buffer = [0_u8; 256];
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                read = socket.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => return Ok::<(), ()>(()),
                    Ok(_) => continue,
                },
                _ = tick.tick() => {
                    if socket.write_all(b"X-Slow: still-here\r\n").await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    };
    tokio::time::timeout(HANG, trickle)
        .await
        .map_err(|_| "the server kept the slow connection open")
        .map(|_| ())
}

#[tokio::test]
async fn a_slowloris_connection_is_closed_after_the_header_read_timeout() {
    let app = spawn_app_with(&limits(
        "header_read_timeout_secs = 1\nidle_timeout_secs = 60",
    ))
    .await;
    let mut socket = open(&app).await;
    slowloris_until_closed(&mut socket)
        .await
        .expect("slowloris closed");
    request_health(&mut open(&app).await).await;
    app.stop().await;
}

#[tokio::test]
async fn a_connection_that_never_sends_a_request_is_closed_after_the_header_read_timeout() {
    let app = spawn_app_with(&limits(
        "header_read_timeout_secs = 1\nidle_timeout_secs = 60",
    ))
    .await;
    let mut socket = open(&app).await;
    closed_by_server(&mut socket)
        .await
        .expect("silent socket closed");
    app.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_with(&limits(
        "header_read_timeout_secs = 60\nidle_timeout_secs = 1",
    ))
    .await;
    let mut socket = open(&app).await;
    request_health(&mut socket).await;
    closed_by_server(&mut socket)
        .await
        .expect("idle socket closed");
    app.stop().await;
}

#[tokio::test]
async fn a_connection_in_use_is_kept_alive_across_requests() {
    let app = spawn_app_with(&limits(
        "header_read_timeout_secs = 60\nidle_timeout_secs = 60",
    ))
    .await;
    let mut socket = open(&app).await;
    for _ in 0..3 {
        request_health(&mut socket).await;
    }
    app.stop().await;
}

async fn webhook_within(app: &TestApp, limit: Duration) -> reqwest::StatusCode {
    // `app.client` has no pooled connection yet: the vendor's retry opens a new one.
    let response = tokio::time::timeout(
        limit,
        post_webhook(app, "chup-main", fixture("chup", "client_created")),
    )
    .await
    .expect("the webhook was answered while the connection cap was held");
    response.status()
}

#[tokio::test]
async fn a_webhook_gets_through_while_idle_keep_alive_connections_hold_every_slot() {
    let app = spawn_app_with(&limits(
        "max_connections = 4\nheader_read_timeout_secs = 60\nidle_timeout_secs = 60",
    ))
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut socket = open(&app).await;
        request_health(&mut socket).await;
        idle.push(socket);
    }
    assert_eq!(webhook_within(&app, HANG).await, 200);
    // Room was made by closing the connection idle longest, not by having no cap.
    let mut oldest = idle.remove(0);
    closed_by_server(&mut oldest)
        .await
        .expect("the longest-idle connection was closed to make room");
    app.stop().await;
}

#[tokio::test]
async fn a_webhook_gets_through_while_slowloris_connections_hold_every_slot() {
    let app = spawn_app_with(&limits(
        "max_connections = 3\nheader_read_timeout_secs = 60\nidle_timeout_secs = 60",
    ))
    .await;
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut socket = open(&app).await;
        socket
            .write_all(b"POST /webhooks/chup-main HTTP/1.1\r\nHost: carebridge\r\n")
            .await
            .expect("start a request");
        slow.push(socket);
    }
    // Every slot is taken once the server has read from each of them; a health request on a
    // fourth connection proves the server is past accepting them.
    request_health(&mut open(&app).await).await;
    assert_eq!(webhook_within(&app, HANG).await, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_websocket_is_not_closed_by_the_http_idle_timeout() {
    let app = spawn_app_with(&limits(
        "header_read_timeout_secs = 1\nidle_timeout_secs = 1\nws_ping_interval_secs = 60",
    ))
    .await;
    let mut client =
        crate::subscriptions::connect(&app, crate::subscriptions::TRANSPORT_WS, ADMIN_KEY).await;
    // Longer than both HTTP timeouts: a websocket is not an idle HTTP connection.
    let mut silent = open(&app).await;
    closed_by_server(&mut silent)
        .await
        .expect("an idle HTTP socket opened later is closed first");
    tokio::time::sleep(Duration::from_secs(2)).await;
    client.send(json!({"type": "ping"})).await;
    assert_eq!(client.next_json().await["type"], "pong");
    app.stop().await;
}

// ---- Content-Security-Policy and security headers ----

fn directives(policy: &str) -> Vec<(String, Vec<String>)> {
    policy
        .split(';')
        .filter_map(|directive| {
            let mut words = directive.split_whitespace();
            let name = words.next()?.to_ascii_lowercase();
            Some((name, words.map(str::to_owned).collect()))
        })
        .collect()
}

#[tokio::test]
async fn the_pages_allow_connections_to_their_own_origin_only() {
    let app = spawn_app().await;
    for path in ["/", "/playground/"] {
        let response = app.client.get(app.url(path)).send().await.expect("page");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        let policy = headers["content-security-policy"].to_str().expect("ascii");
        let directives = directives(policy);
        let sources = |name: &str| {
            directives
                .iter()
                .find(|(directive, _)| directive == name)
                .map(|(_, sources)| sources.clone())
                .unwrap_or_else(|| panic!("{path}: no {name} in {policy}"))
        };
        assert_eq!(sources("connect-src"), ["'self'"], "{path}: {policy}");
        assert_eq!(sources("default-src"), ["'self'"], "{path}");
        assert_eq!(sources("script-src"), ["'self'"], "{path}");
        assert_eq!(sources("object-src"), ["'none'"], "{path}");
        assert_eq!(sources("frame-ancestors"), ["'none'"], "{path}");
        assert_eq!(sources("base-uri"), ["'none'"], "{path}");
        for (name, sources) in &directives {
            for source in sources {
                let loose = ["*", "ws:", "wss:", "http:", "https:", "'unsafe-eval'"];
                assert!(!loose.contains(&source.as_str()), "{path}: {name} {source}");
            }
        }
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(
            headers["cross-origin-opener-policy"], "same-origin",
            "{path}"
        );
    }
    app.stop().await;
}

// ---- every answer is JSON ----

async fn assert_json_error(response: reqwest::Response, status: u16, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(content_type.contains("json"), "{what}: {content_type}");
    let body: Value = response.json().await.expect("JSON body");
    let message = body["error"]
        .as_str()
        .or_else(|| body["errors"][0]["message"].as_str())
        .unwrap_or_default();
    assert!(!message.is_empty(), "{what}: {body}");
}

#[tokio::test]
async fn a_wrong_method_on_any_route_is_answered_405_in_json_with_the_allowed_methods() {
    let app = spawn_app().await;
    let cases = [
        (reqwest::Method::DELETE, "/graphql"),
        (reqwest::Method::PUT, "/graphql"),
        (reqwest::Method::POST, "/healthz"),
        (reqwest::Method::POST, "/readyz"),
        (reqwest::Method::DELETE, "/metrics"),
        (reqwest::Method::GET, "/webhooks/chup-main"),
        (reqwest::Method::POST, "/"),
        (reqwest::Method::POST, "/playground/"),
        (reqwest::Method::PATCH, "/assets/app.js"),
    ];
    for (method, path) in cases {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        assert!(
            response.headers().contains_key("allow"),
            "{method} {path}: Allow kept"
        );
        assert_json_error(response, 405, &format!("{method} {path}")).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_routes_and_malformed_upgrades_are_answered_in_json() {
    let app = spawn_app().await;
    for path in ["/nope", "/assets/nope.js", "/webhooks", "/graphql/x"] {
        let response = app.client.get(app.url(path)).send().await.expect("get");
        assert_json_error(response, 404, path).await;
    }
    let response = app
        .client
        .get(app.url("/graphql"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .expect("half an upgrade");
    let status = response.status().as_u16();
    assert!((400..500).contains(&status), "{status}");
    assert_json_error(response, status, "upgrade without a key").await;
    app.stop().await;
}

// ---- bounded GraphQL text inputs ----

fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_long_or_nul_client_search_is_bad_user_input() {
    let app = spawn_app().await;
    crate::helpers::ingest(&app, "chup", "client_created").await;
    let query = "query($s: String) { clients(search: $s) { edges { node { id } } } }";
    for search in ["x".repeat(100_000), "\u{0}".into(), "ab\u{0}c".into()] {
        let body = gql(&app, ADMIN_KEY, query, json!({ "s": search })).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
        assert!(body["errors"][0]["message"].as_str().is_some(), "{body}");
    }
    // The same in the query text itself, not only in variables.
    let literal = r#"{ clients(search: "\u0000") { edges { node { id } } } }"#;
    let body = gql(&app, ADMIN_KEY, literal, json!({})).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    // An ordinary search still answers.
    let body = gql(&app, ADMIN_KEY, query, json!({ "s": "a" })).await;
    assert!(body.get("errors").is_none(), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn nul_bytes_and_huge_lists_in_any_graphql_argument_are_bad_user_input() {
    let app = spawn_app().await;
    let cases = [
        (
            "query($v: [String!]) { clients(sourceIds: $v) { edges { node { id } } } }",
            json!({ "v": ["chup-main\u{0}"] }),
        ),
        (
            "query($v: String) { webhookEvents(filter: {eventType: $v}) { edges { node { id } } } }",
            json!({ "v": "client\u{0}created" }),
        ),
        (
            "query($v: [String!]) { payments(filter: {states: $v}) { edges { node { id } } } }",
            json!({ "v": ["paid\u{0}"] }),
        ),
        (
            "query($v: [String!]) { services(sourceIds: $v) { id } }",
            json!({ "v": ["\u{0}"] }),
        ),
        (
            "query($v: String) { events(after: $v) { cursor } }",
            json!({ "v": "1\u{0}" }),
        ),
        (
            "query($v: [String!]) { clients(sourceIds: $v) { edges { node { id } } } }",
            json!({ "v": vec!["a"; 40_000] }),
        ),
    ];
    for (query, variables) in cases {
        let body = gql(&app, ADMIN_KEY, query, variables).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{query}: {body}");
    }
    app.stop().await;
}
