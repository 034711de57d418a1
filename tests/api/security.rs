//! API keys and scopes on HTTP and websocket, keys in the database (created and revoked through
//! the real CLI), limits on abuse, PHI kept out of logs, and the audit trail.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{
    ADMIN_KEY, READ_KEY, TIMETAP_TOKEN, TestApp, WRITE_KEY, binary, fixture_names, free_port, gql,
    ingest, spawn_app, spawn_app_with, test_config_toml,
};

fn code(body: &Value) -> Option<&str> {
    body["errors"][0]["extensions"]["code"].as_str()
}

#[tokio::test]
async fn each_scope_sees_exactly_its_fields_over_http() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let raw = "{ webhookEvents { edges { node { status rawBody } } } }";
    let headers = "{ webhookEvents { edges { node { headers } } } }";
    let audit = "{ auditLog { action } }";
    let plain = "{ queueEntries { totalCount } sources { id } }";
    for (key, allowed) in [(READ_KEY, false), (WRITE_KEY, false), (ADMIN_KEY, true)] {
        assert!(
            gql(&app, key, plain, json!({}))
                .await
                .get("errors")
                .is_none(),
            "every key reads"
        );
        for query in [raw, headers, audit] {
            let body = gql(&app, key, query, json!({})).await;
            if allowed {
                assert!(body.get("errors").is_none(), "{key}: {body}");
            } else {
                assert_eq!(code(&body), Some("FORBIDDEN"), "{key}: {body}");
            }
        }
    }
    let partial = gql(&app, READ_KEY, raw, json!({})).await;
    assert_eq!(
        partial["data"]["webhookEvents"]["edges"][0]["node"]["status"], "PROCESSED",
        "only the field is refused"
    );
    app.stop().await;
}

#[tokio::test]
async fn introspection_works_for_any_valid_key() {
    let app = spawn_app().await;
    for key in [READ_KEY, WRITE_KEY, ADMIN_KEY] {
        let body = gql(
            &app,
            key,
            "{ __schema { queryType { name } subscriptionType { name } } }",
            json!({}),
        )
        .await;
        assert_eq!(
            body["data"]["__schema"]["subscriptionType"]["name"],
            "Subscription"
        );
    }
    app.stop().await;
}

fn run_cli(args: &[&str], database_url: &str) -> (bool, String, String) {
    let output = Command::new(binary())
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("CAREBRIDGE_CONFIG")
        .output()
        .expect("run carebridge");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn ws_init(app: &TestApp, key: &str) -> Value {
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
    let init =
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {key}")}});
    socket
        .send(Message::Text(init.to_string().into()))
        .await
        .expect("send");
    match tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("answer")
    {
        Some(Ok(Message::Text(text))) => serde_json::from_str(&text).expect("json"),
        Some(Ok(Message::Close(Some(frame)))) => json!({"close": u16::from(frame.code)}),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn database_keys_are_created_listed_and_revoked_through_the_cli() {
    let app = spawn_app().await;
    let url = app.database.url();
    let (ok, key, stderr) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            run_cli(
                &[
                    "keys",
                    "create",
                    "--name",
                    "his-app",
                    "--scopes",
                    "read,write",
                ],
                &url,
            )
        })
        .await
        .expect("join")
    };
    assert!(ok, "{stderr}");
    let key = key.trim().to_owned();
    assert!(key.starts_with("cbk_") && key.len() > 40, "{key}");

    let body = gql(&app, &key, "{ sources { id } }", json!({})).await;
    assert!(body.get("errors").is_none(), "the new key reads: {body}");
    let raw = gql(
        &app,
        &key,
        "{ webhookEvents { edges { node { rawBody } } } }",
        json!({}),
    )
    .await;
    assert!(
        raw.get("errors").is_none(),
        "no events, so no field to refuse"
    );
    assert_eq!(ws_init(&app, &key).await["type"], "connection_ack");

    let (ok, listing, _) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || run_cli(&["keys", "list"], &url))
            .await
            .expect("join")
    };
    assert!(ok);
    assert!(listing.contains("his-app\tread,write"), "{listing}");
    assert!(!listing.contains(&key), "the key itself is never listed");

    let (ok, _, stderr) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || run_cli(&["keys", "revoke", "--name", "his-app"], &url))
            .await
            .expect("join")
    };
    assert!(ok, "{stderr}");
    let refused = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&key)
        .json(&json!({"query": "{ sources { id } }"}))
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 401);
    assert_eq!(
        ws_init(&app, &key).await["close"],
        4403,
        "revoked keys are refused on websockets too"
    );

    let audit = gql(
        &app,
        ADMIN_KEY,
        "{ auditLog { actor action detail } }",
        json!({}),
    )
    .await;
    let actions: Vec<&str> = audit["data"]["auditLog"]
        .as_array()
        .expect("log")
        .iter()
        .map(|e| e["action"].as_str().expect("action"))
        .collect();
    assert!(
        actions.contains(&"keys.create") && actions.contains(&"keys.revoke"),
        "{actions:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_keys_are_refused_everywhere() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth("cbk_unknown")
        .json(&json!({"query": "{ sources { id } }"}))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401);
    let get = app
        .client
        .get(app.url("/graphql?query=%7Bsources%7Bid%7D%7D"))
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), 401);
    assert_eq!(ws_init(&app, "cbk_unknown").await["close"], 4403);
    app.stop().await;
}

#[tokio::test]
async fn a_source_over_its_rate_is_answered_429_with_retry_after() {
    let app = spawn_app_with(&test_config_toml(
        "[limits]\nwebhook_rate_per_second = 1\nwebhook_burst = 2",
    ))
    .await;
    let url = app.url(&format!("/webhooks/timetap-main?token={TIMETAP_TOKEN}"));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        let response = app
            .client
            .post(&url)
            .header("content-type", "application/json")
            .body(crate::helpers::fixture("timetap", "create"))
            .send()
            .await
            .expect("post");
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().expect("ascii").to_owned());
            let body: Value = response.json().await.expect("json");
            assert!(body["error"].as_str().expect("message").contains("retry"));
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(retry_after.as_deref(), Some("1"));
    let forged = app
        .client
        .post(app.url("/webhooks/timetap-main?token=forged-token"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(
        forged.status(),
        401,
        "forged deliveries are refused by verification, not counted"
    );
    let other_source = crate::helpers::post_webhook(
        &app,
        "vsee-main",
        crate::helpers::fixture("vsee", "visit_created_v1"),
    )
    .await;
    assert_eq!(other_source.status(), 200, "limits are per source");
    app.stop().await;
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_answered_408() {
    let app = spawn_app_with(&test_config_toml("[limits]\nrequest_timeout_secs = 1")).await;
    let address = app.address;
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        write!(stream, "POST /webhooks/timetap-main?token={TIMETAP_TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{").expect("write");
        std::thread::sleep(Duration::from_millis(1500));
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    })
    .await
    .expect("join");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"error\""), "a JSON body: {response}");
    app.stop().await;
}

#[tokio::test]
async fn websocket_connections_and_subscriptions_per_connection_are_capped() {
    let app = spawn_app_with(&test_config_toml(
        "[limits]\nmax_websocket_connections = 1\nmax_subscriptions_per_connection = 2",
    ))
    .await;
    let mut request = format!("ws://{}/graphql", app.address)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut first, _) = tokio_tungstenite::connect_async(request.clone())
        .await
        .expect("first connects");
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("second connection must be refused with 503, got {other:?}"),
    }

    let send = |value: Value| Message::Text(value.to_string().into());
    first.send(send(json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {READ_KEY}")}}))).await.expect("init");
    let _ack = first.next().await;
    for id in ["a", "b", "c"] {
        first.send(send(json!({"id": id, "type": "subscribe", "payload": {"query": "subscription { events { cursor } }"}}))).await.expect("subscribe");
    }
    let refusal = loop {
        match tokio::time::timeout(Duration::from_secs(5), first.next())
            .await
            .expect("a message")
        {
            Some(Ok(Message::Text(text))) => {
                break serde_json::from_str::<Value>(&text).expect("json");
            }
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(refusal["id"], "c");
    assert_eq!(refusal["type"], "error");
    assert!(
        refusal["payload"][0]["message"]
            .as_str()
            .expect("message")
            .contains("at most 2")
    );
    ingest(&app, "chup", "live_queue_created").await;
    let next = tokio::time::timeout(Duration::from_secs(5), first.next())
        .await
        .expect("event");
    assert!(
        matches!(next, Some(Ok(Message::Text(_)))),
        "the two accepted subscriptions still deliver"
    );
    app.stop().await;
}

/// Values from the fixtures that identify patients (and staff contact data).
fn personal_values() -> Vec<String> {
    const KEYS: [&str; 14] = [
        "registered_client_name",
        "registered_client_phone",
        "client_name",
        "client_phone",
        "client_email",
        "first_name",
        "last_name",
        "firstName",
        "lastName",
        "emailAddress",
        "email",
        "phone",
        "cellPhone",
        "message",
    ];
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match value {
                        Value::String(text) if KEYS.contains(&key.as_str()) && text.len() >= 4 => {
                            found.push(text.clone())
                        }
                        _ => walk(value, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for vendor in ["chup", "vcita", "vsee", "timetap"] {
        for name in fixture_names(vendor) {
            let body: Value =
                serde_json::from_slice(&crate::helpers::fixture(vendor, &name)).expect("json");
            walk(&body, &mut found);
        }
    }
    found.sort();
    found.dedup();
    found
}

#[tokio::test]
async fn a_full_ingest_and_queries_leave_no_personal_data_in_the_logs() {
    let values = personal_values();
    assert!(
        values.iter().any(|v| v == "Saad") && values.iter().any(|v| v.contains('@')),
        "{values:?}"
    );

    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("carebridge.toml");
    std::fs::write(&config, test_config_toml("")).expect("config");
    let database = crate::helpers::TestDatabase::create().await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // Logs go to a file: a pipe nobody reads while the gateway runs would fill up and stall it.
    let log_path = dir.path().join("gateway.log");
    let log_file = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(binary())
        .args([
            "--config",
            config.to_str().expect("utf8"),
            "--log-format",
            "json",
            "serve",
        ])
        .env("CAREBRIDGE_LISTEN", &listen)
        .env("DATABASE_URL", database.url())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::from(log_file.try_clone().expect("clone")))
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("start");
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    while client
        .get(format!("http://{listen}/readyz"))
        .send()
        .await
        .is_err()
    {
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let mut files = Vec::new();
    for vendor in ["chup", "vcita", "vsee", "timetap"] {
        files.extend(
            fixture_names(vendor)
                .into_iter()
                .map(|n| format!("{fixtures}/{vendor}/{n}.json")),
        );
    }
    let (config_arg, base) = (
        config.to_str().expect("utf8").to_owned(),
        format!("http://{listen}"),
    );
    let replay = tokio::task::spawn_blocking(move || {
        Command::new(binary())
            .args(["--config", &config_arg, "replay", "--to", &base])
            .args(&files)
            .output()
            .expect("replay")
    })
    .await
    .expect("join");
    assert!(replay.status.success());
    for query in [
        "{ clients(search: \"saad\") { edges { node { name phone email } } } }",
        "{ webhookEvents(first: 100) { edges { node { rawBody headers error } } } }",
        "{ nope }",
    ] {
        let _answer = client
            .post(format!("http://{listen}/graphql"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"query": query}))
            .send()
            .await
            .expect("query");
    }
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let _ = child.wait();
    let logs = std::fs::read_to_string(&log_path).expect("read logs");
    assert!(
        logs.contains("webhook stored"),
        "the logs were captured: {}",
        &logs[..logs.len().min(500)]
    );
    for value in &values {
        assert!(
            !logs.contains(value.as_str()),
            "personal data {value:?} found in the logs"
        );
    }
}

#[tokio::test]
async fn admin_reads_are_audited_with_the_key_name() {
    let app = spawn_app().await;
    ingest(&app, "chup", "live_queue_created").await;
    let query = "query Inspect { webhookEvents { edges { node { rawBody } } } }";
    let read = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"query": query, "operationName": "Inspect"}))
        .send()
        .await
        .expect("post");
    assert_eq!(read.status(), 200);
    let _plain = gql(&app, ADMIN_KEY, "{ sources { id } }", json!({})).await;
    let log = gql(
        &app,
        ADMIN_KEY,
        "{ auditLog { at actor action detail } }",
        json!({}),
    )
    .await;
    let entries = log["data"]["auditLog"].as_array().expect("entries");
    let inspect = entries
        .iter()
        .find(|e| e["detail"]["operation"] == "Inspect")
        .expect("the admin read is logged");
    assert_eq!(inspect["actor"], "test-admin");
    assert_eq!(inspect["action"], "admin_read");
    assert_eq!(inspect["detail"]["fields"], json!(["rawBody"]));
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "admin_read")
            .count(),
        1,
        "plain reads are not audited: {entries:?}"
    );
    app.stop().await;
}

/// Scopes do not imply each other: a key lists every scope it has.
#[tokio::test]
async fn keys_without_read_cannot_query_or_subscribe_but_can_introspect() {
    let extra = r#"
        [[api_keys]]
        name = "writer-only"
        key = "writer-only-key-0123456789"
        scopes = ["write"]
        [[api_keys]]
        name = "admin-only"
        key = "admin-only-key-0123456789"
        scopes = ["admin"]
    "#;
    let app = spawn_app_with(&test_config_toml(extra)).await;
    for key in ["writer-only-key-0123456789", "admin-only-key-0123456789"] {
        let body = gql(
            &app,
            key,
            "{ queueEntries { totalCount } sources { id } }",
            json!({}),
        )
        .await;
        assert_eq!(code(&body), Some("FORBIDDEN"), "{body}");
        let introspection = gql(&app, key, "{ __schema { queryType { name } } }", json!({})).await;
        assert_eq!(
            introspection["data"]["__schema"]["queryType"]["name"],
            "Query"
        );
    }
    let audit = gql(
        &app,
        "admin-only-key-0123456789",
        "{ auditLog { action } }",
        json!({}),
    )
    .await;
    assert!(
        audit.get("errors").is_none(),
        "admin fields need only admin: {audit}"
    );

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
    let send = |value: Value| Message::Text(value.to_string().into());
    socket.send(send(json!({"type": "connection_init", "payload": {"authorization": "Bearer writer-only-key-0123456789"}}))).await.expect("init");
    let _ack = socket.next().await;
    socket.send(send(json!({"id": "s", "type": "subscribe", "payload": {"query": "subscription { events { cursor } }"}}))).await.expect("subscribe");
    let answer = loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("answer")
        {
            Some(Ok(Message::Text(text))) => {
                break serde_json::from_str::<Value>(&text).expect("json");
            }
            Some(Ok(_)) => continue,
            other => panic!("{other:?}"),
        }
    };
    let first_error = if answer["type"] == "error" {
        &answer["payload"][0]
    } else {
        &answer["payload"]["errors"][0]
    };
    assert_eq!(first_error["extensions"]["code"], "FORBIDDEN", "{answer}");
    app.stop().await;
}
