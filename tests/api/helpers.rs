//! `spawn_app()` and friends: start the real application in-process against its own database.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use carebridge::config::{Config, EnvOverrides, Mode};
use carebridge::startup::Application;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The API key every test config grants all scopes.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const READ_KEY: &str = "test-read-key-0123456789";
pub const WRITE_KEY: &str = "test-write-key-0123456789";
pub const CHUP_SECRET: &str = "test-chup-secret";
pub const VCITA_TOKEN: &str = "test-vcita-token";
pub const VSEE_TOKEN: &str = "test-vsee-token";
pub const TIMETAP_TOKEN: &str = "test-timetap-token";

/// Sources and keys of the default test config; `extra` is appended (e.g. `[chup]`).
pub fn test_config_toml(extra: &str) -> String {
    format!(
        r#"
        [[sources]]
        id = "chup-main"
        vendor = "chup"
        secret = "{CHUP_SECRET}"
        [[sources]]
        id = "vcita-main"
        vendor = "vcita"
        token = "{VCITA_TOKEN}"
        [[sources]]
        id = "vsee-main"
        vendor = "vsee"
        token = "{VSEE_TOKEN}"
        [[sources]]
        id = "timetap-main"
        vendor = "timetap"
        token = "{TIMETAP_TOKEN}"
        [[api_keys]]
        name = "test-admin"
        key = "{ADMIN_KEY}"
        scopes = ["read", "write", "admin"]
        [[api_keys]]
        name = "test-read"
        key = "{READ_KEY}"
        scopes = ["read"]
        [[api_keys]]
        name = "test-write"
        key = "{WRITE_KEY}"
        scopes = ["read", "write"]
        {extra}
        "#
    )
}

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    /// A separate connection to the app's database, for assertions.
    pub db: DatabaseConnection,
    /// The gateway's own pool (a clone), for tests that take the database away from it.
    pub app_db: DatabaseConnection,
    /// The ingest writer's own pool (a clone).
    pub writer_db: DatabaseConnection,
    /// Statements the gateway's pool has run.
    pub statements: carebridge::store::StatementCounter,
    pub database: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Stops the server gracefully and waits for it; the database is dropped with `self`.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    /// Stops the server but keeps the database (another app may still be using it).
    pub async fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ignored_if_already_stopped = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&test_config_toml("")).await
}

/// Starts the app with this config text on a fresh database and port 0.
pub async fn spawn_app_with(config_toml: &str) -> TestApp {
    spawn_app_on(config_toml, TestDatabase::create().await).await
}

/// A second gateway process on the same database as `app` (a replica behind a balancer).
pub async fn spawn_replica(app: &TestApp) -> TestApp {
    spawn_replica_with(app, &test_config_toml("")).await
}

/// A replica with its own config text.
pub async fn spawn_replica_with(app: &TestApp, config_toml: &str) -> TestApp {
    let database = match &app.database {
        TestDatabase::Postgres { server_url, name } => TestDatabase::Shared {
            url: replace_database_name(server_url, name),
        },
        TestDatabase::Sqlite { path, .. } => TestDatabase::Shared {
            url: format!("sqlite://{}?mode=rwc", path.display()),
        },
        TestDatabase::Shared { url } => TestDatabase::Shared { url: url.clone() },
    };
    spawn_app_on(config_toml, database).await
}

async fn spawn_app_on(config_toml: &str, database: TestDatabase) -> TestApp {
    let env = EnvOverrides {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(database.url()),
    };
    let config = Config::from_toml(config_toml, Mode::File(PathBuf::from("test.toml")), &env)
        .expect("test config is valid");
    let app = Application::build(config).await.expect("app builds");
    let address = app.local_addr();
    let app_db = app.state().db.clone();
    let writer_db = app.state().ingestor.database().clone();
    let statements = app.state().statements.clone();
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = shutdown_rx.await;
    }));
    let db = Database::connect(database.url())
        .await
        .expect("assertion connection");
    TestApp {
        address,
        client: reqwest::Client::new(),
        db,
        app_db,
        writer_db,
        statements,
        database,
        shutdown: Some(shutdown_tx),
        server: Some(server),
    }
}

/// The PostgreSQL server URL tests use, if any (`TEST_DATABASE_URL`).
pub fn postgres_server_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// One test's own database; dropped with the test.
pub enum TestDatabase {
    Sqlite {
        _dir: tempfile::TempDir,
        path: PathBuf,
    },
    Postgres {
        server_url: String,
        name: String,
    },
    /// Another app's database (not dropped by this handle).
    Shared {
        url: String,
    },
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        match postgres_server_url() {
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("carebridge.db");
                TestDatabase::Sqlite { _dir: dir, path }
            }
            Some(server_url) => {
                let template = postgres_template(&server_url).await;
                let name = format!("carebridge_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(&server_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                    .await
                    .expect("clone template database");
                admin.close().await.ok();
                TestDatabase::Postgres { server_url, name }
            }
        }
    }

    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite { path, .. } => format!("sqlite://{}?mode=rwc", path.display()),
            TestDatabase::Postgres { server_url, name } => replace_database_name(server_url, name),
            TestDatabase::Shared { url } => url.clone(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { server_url, name } = self {
            let (server_url, name) = (server_url.clone(), name.clone());
            // Drop runs outside async; a short-lived runtime on its own thread does the cleanup.
            let cleanup = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(async {
                        if let Ok(admin) = Database::connect(&server_url).await {
                            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            if let Err(error) = admin.execute_unprepared(&sql).await {
                                eprintln!("could not drop test database {name}: {error}");
                            }
                            admin.close().await.ok();
                        }
                    });
                }
            });
            let _ = cleanup.join();
        }
    }
}

/// A migrated template database, built once per process under an advisory lock (other test
/// processes may be building it too) and named after the migration list, so a new migration
/// gets a new template.
async fn postgres_template(server_url: &str) -> String {
    static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    static NAME: OnceLock<String> = OnceLock::new();
    let name = NAME
        .get_or_init(|| {
            use sea_orm_migration::MigratorTrait;
            let names: Vec<String> = migration::Migrator::migrations()
                .iter()
                .map(|m| m.name().to_owned())
                .collect();
            let digest = carebridge::auth::sha256(names.join(",").as_bytes());
            format!("carebridge_template_{}", &hex::encode(digest)[..12])
        })
        .clone();
    TEMPLATE
        .get_or_init(|| async {
            let admin = Database::connect(server_url)
                .await
                .expect("connect to TEST_DATABASE_URL");
            admin
                .execute_unprepared("SELECT pg_advisory_lock(7206)")
                .await
                .expect("lock");
            let exists = admin
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
                ))
                .await
                .expect("query pg_database")
                .is_some();
            if !exists {
                // Built under a temporary name and renamed, so a crash never leaves a half-built
                // template under the real name.
                let building = format!("{name}_building");
                admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
                    .await
                    .expect("drop stale template");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {building}"))
                    .await
                    .expect("create");
                let db = carebridge::store::connect(&replace_database_name(server_url, &building))
                    .await
                    .expect("connect template");
                carebridge::store::migrate(&db)
                    .await
                    .expect("migrate template");
                db.close().await.ok();
                admin
                    .execute_unprepared(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .await
                    .expect("rename template");
            }
            admin
                .execute_unprepared("SELECT pg_advisory_unlock(7206)")
                .await
                .expect("unlock");
            admin.close().await.ok();
            name.clone()
        })
        .await
        .clone()
}

fn replace_database_name(server_url: &str, name: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server_url, None),
    };
    let without_db = match base.rfind('/') {
        Some(slash)
            if base[..slash].contains("://") && slash > base.find("://").unwrap_or(0) + 2 =>
        {
            &base[..slash]
        }
        _ => base,
    };
    match query {
        Some(query) => format!("{without_db}/{name}?{query}"),
        None => format!("{without_db}/{name}"),
    }
}

/// Sends a GraphQL request with a bearer key and returns the JSON response body.
pub async fn gql(
    app: &TestApp,
    key: &str,
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "query": query, "variables": variables }))
        .send()
        .await
        .expect("graphql request");
    response.json().await.expect("graphql JSON body")
}

/// The path of the built `carebridge` binary, for tests of the real process.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_carebridge")
}

/// A port that was free a moment ago (for tests that start the binary).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port")
}

/// A fixture file's bytes, as stored in `fixtures/<vendor>/<name>.json`.
pub fn fixture(vendor: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/fixtures/{vendor}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|error| panic!("fixture {path}: {error}"))
}

/// Posts raw bytes as a vendor would to one of the test config's sources: Chup bodies are
/// signed with the source's secret, the others get the source's `?token=`.
pub async fn post_webhook(app: &TestApp, source: &str, body: Vec<u8>) -> reqwest::Response {
    let (body, token) = match source {
        "chup-main" => (
            carebridge::vendors::chup::sign_chup(&body, CHUP_SECRET.as_bytes()),
            None,
        ),
        "vcita-main" => (body, Some(VCITA_TOKEN)),
        "vsee-main" => (body, Some(VSEE_TOKEN)),
        "timetap-main" => (body, Some(TIMETAP_TOKEN)),
        other => panic!("no test source {other}"),
    };
    let mut url = app.url(&format!("/webhooks/{source}"));
    if let Some(token) = token {
        url.push_str(&format!("?token={token}"));
    }
    app.client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("webhook request")
}

/// Posts a fixture to the test source of its vendor and returns the JSON answer, asserting 200.
pub async fn ingest(app: &TestApp, vendor: &str, name: &str) -> serde_json::Value {
    let response = post_webhook(app, &format!("{vendor}-main"), fixture(vendor, name)).await;
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 200, "{vendor}/{name}: {body}");
    body
}

/// Every fixture name of a vendor directory, sorted.
pub fn fixture_names(vendor: &str) -> Vec<String> {
    let dir = format!("{}/fixtures/{vendor}", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".json").map(str::to_owned))
        .collect();
    names.sort();
    names
}
