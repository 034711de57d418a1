//! The real binary: start-up refusals, the `migrate` command, graceful shutdown.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{TestDatabase, binary, free_port, test_config_toml};

fn write_config(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let path = dir.path().join("carebridge.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs the binary to completion with a time limit; returns (exit success, stderr).
fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new(binary());
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("CAREBRIDGE_CONFIG");
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start carebridge");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut stderr)
                .expect("read");
            return (status.success(), stderr);
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("carebridge did not exit for {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_broken_config_file_stops_the_start_with_a_message() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write_config(&dir, "[[sources]\nid =");
    let (ok, stderr) = run_to_exit(&["--config", path.to_str().expect("utf8"), "serve"], &[]);
    assert!(!ok);
    assert!(stderr.contains("carebridge.toml"), "{stderr}");
}

#[test]
fn an_unknown_config_key_stops_the_start_and_is_named() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write_config(&dir, "listen = \"127.0.0.1:0\"\nlisten_adress = \"x\"\n");
    let (ok, stderr) = run_to_exit(&["--config", path.to_str().expect("utf8")], &[]);
    assert!(!ok);
    assert!(stderr.contains("listen_adress"), "{stderr}");
}

#[test]
fn a_missing_config_file_stops_the_start() {
    let (ok, stderr) = run_to_exit(&["--config", "/nonexistent/carebridge.toml"], &[]);
    assert!(!ok);
    assert!(stderr.contains("cannot read config file"), "{stderr}");
}

#[test]
fn an_unreachable_database_stops_the_start_without_leaking_the_password() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (ok, stderr) = run_to_exit(
        &["serve"],
        &[
            ("CAREBRIDGE_LISTEN", &listen),
            ("DATABASE_URL", "postgres://u:hunter2@127.0.0.1:1/x"),
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("cannot open database"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(
        std::net::TcpStream::connect(&listen).is_err(),
        "no port left open"
    );
}

#[test]
fn development_mode_refuses_a_non_loopback_address() {
    let (ok, stderr) = run_to_exit(&["serve"], &[("CAREBRIDGE_LISTEN", "0.0.0.0:0")]);
    assert!(!ok);
    assert!(stderr.contains("loopback"), "{stderr}");
}

#[test]
fn version_is_printed() {
    let output = Command::new(binary())
        .arg("--version")
        .output()
        .expect("run");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn the_migrate_command_prepares_an_empty_database() {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let database = TestDatabase::create().await;
    let url = database.url();
    let (ok, stderr) = tokio::task::spawn_blocking(move || {
        run_to_exit(&["migrate"], &[("DATABASE_URL", url.as_str())])
    })
    .await
    .expect("join");
    assert!(ok, "{stderr}");
    assert!(stderr.contains("migrations applied"), "{stderr}");
    let db = sea_orm::Database::connect(database.url())
        .await
        .expect("connect");
    assert_eq!(
        entity::appointment::Entity::find()
            .count(&db)
            .await
            .expect("table exists"),
        0
    );
    db.close().await.ok();
}

/// SIGTERM during a request whose body is still arriving: the request completes with a
/// normal answer, then the process exits 0.
#[tokio::test]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(&dir, &test_config_toml(""));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(binary())
        .args(["--config", config.to_str().expect("utf8"), "serve"])
        .env("CAREBRIDGE_LISTEN", &listen)
        .env("DATABASE_URL", database.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client
        .get(format!("http://{listen}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server never came up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let body = br#"{"query":"{ sources { id } }"}"#;
    let (first, rest) = body.split_at(10);
    let mut stream = std::net::TcpStream::connect(&listen).expect("connect");
    write!(
        stream,
        "POST /graphql HTTP/1.1\r\nHost: {listen}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer test-admin-key-0123456789\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .expect("headers");
    stream.write_all(first).expect("first part");
    stream.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        child.try_wait().expect("wait").is_none(),
        "still serving the in-flight request"
    );

    stream.write_all(rest).expect("rest of body");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("chup-main"), "{response}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "process did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn replay_posts_fixtures_signed_or_tokenized_as_each_vendor_would() {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let app = crate::helpers::spawn_app().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(&dir, &test_config_toml(""));
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");
    let files = [
        format!("{fixtures}/chup/live_queue_created.json"),
        format!("{fixtures}/timetap/create.json"),
        format!("{fixtures}/vsee/visit_created_v1.json"),
        format!("{fixtures}/vcita/client_created.json"),
    ];
    let base = app.url("");
    let config_arg = config.to_str().expect("utf8").to_owned();
    let output = tokio::task::spawn_blocking(move || {
        let mut command = Command::new(binary());
        command
            .args(["--config", &config_arg, "replay", "--to", &base])
            .args(&files);
        command.output().expect("run replay")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|line| line.starts_with("200 "))
            .count(),
        4,
        "{stdout}"
    );
    let stored = entity::webhook_event::Entity::find()
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(stored, 4);
    app.stop().await;
}
