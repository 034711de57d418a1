//! The migration must build, tear down and rebuild the whole schema on both backends CareBridge
//! supports, and the `entity` crate must be able to write and read through it. Each test gets
//! its own database (a temp-file SQLite db, or a fresh PostgreSQL database created on the
//! server named by `TEST_DATABASE_URL` and dropped afterwards), so tests run in parallel.
//!
//! PostgreSQL tests are skipped, with a note on stderr, when `TEST_DATABASE_URL` is unset.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeZone, Utc};
use entity::ids::{EventCursor, ServiceId, SourceId, WebhookEventId};
use entity::{domain_event, source, webhook_event};
use migration::sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityTrait,
    ModelTrait, Set, Statement,
};
use migration::{Migrator, MigratorTrait, SchemaManager};

/// Every table the migration owns, in creation order.
const TABLES: [&str; 18] = [
    "sources",
    "webhook_events",
    "clients",
    "staff",
    "services",
    "locations",
    "appointments",
    "queue_entries",
    "queue_state_history",
    "visits",
    "payments",
    "entity_lineage",
    "domain_events",
    "alerts",
    "vcita_subscriptions",
    "api_keys",
    "audit_log",
    "event_log_state",
];

// ---------------------------------------------------------------------------------------------
// Per-test databases
// ---------------------------------------------------------------------------------------------

/// A migrated-from-nothing SQLite database in a temp dir that lives as long as the value.
struct SqliteDb {
    _dir: tempfile::TempDir,
    conn: DatabaseConnection,
}

async fn sqlite_db() -> SqliteDb {
    let dir = tempfile::tempdir().expect("create temp dir");
    let path = dir.path().join("carebridge.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let conn = Database::connect(&url).await.expect("connect to sqlite");
    SqliteDb { _dir: dir, conn }
}

/// A unique-per-call database name: concurrent tests and concurrent runs never collide.
fn unique_db_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "carebridge_migtest_{:x}_{}_{}",
        nanos,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Replaces the database name in a `postgres://…/name?params` URL.
fn with_database(server_url: &str, db_name: &str) -> String {
    let (base, query) = match server_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server_url, None),
    };
    // `postgres://host/db` → keep everything up to the last '/' after the authority.
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let prefix = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{prefix}/{db_name}?{query}"),
        None => format!("{prefix}/{db_name}"),
    }
}

/// Runs `body` against a fresh PostgreSQL database and drops it afterwards, even if `body`
/// panics. Returns without running anything when `TEST_DATABASE_URL` is unset.
async fn with_postgres<F, Fut>(test: &str, body: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(server_url) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!(
            "skipping {test}: TEST_DATABASE_URL is not set \
             (e.g. postgres://postgres@127.0.0.1:5432/test)"
        );
        return;
    };
    let admin = Database::connect(&server_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    let name = unique_db_name();
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");

    let conn = Database::connect(&with_database(&server_url, &name))
        .await
        .expect("connect to the test database");
    // Spawned so a failing assertion surfaces as a JoinError instead of skipping the cleanup.
    let outcome = tokio::spawn(body(conn.clone())).await;
    conn.close().await.expect("close test database connection");

    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop test database");
    admin.close().await.expect("close admin connection");

    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

// ---------------------------------------------------------------------------------------------
// Shared scenarios, run on each backend
// ---------------------------------------------------------------------------------------------

async fn assert_tables(db: &DatabaseConnection, expected: bool) {
    let manager = SchemaManager::new(db);
    for table in TABLES {
        let exists = manager.has_table(table).await.expect("has_table");
        assert_eq!(
            exists, expected,
            "table {table} exists = {exists}, expected {expected}"
        );
    }
}

async fn up_down_up_round_trips(db: &DatabaseConnection) {
    Migrator::up(db, None).await.expect("first up");
    assert_tables(db, true).await;

    Migrator::down(db, None).await.expect("down");
    assert_tables(db, false).await;

    Migrator::up(db, None).await.expect("second up");
    assert_tables(db, true).await;

    every_entity_selects_its_columns(db).await;

    let applied = Migrator::get_applied_migrations(db).await.expect("applied");
    let applied: Vec<&str> = applied.iter().map(|m| m.name()).collect();
    let expected: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(applied, expected, "every migration applied, in order");
    assert_eq!(applied[0], "m20261123_000001_create_tables");
}

/// A `SELECT` of every column of every entity: fails if any entity's table or column name
/// differs from the migration's.
async fn every_entity_selects_its_columns(db: &DatabaseConnection) {
    use entity::prelude::*;

    macro_rules! select_all {
        ($($entity:ty),+ $(,)?) => {$(
            <$entity>::find()
                .all(db)
                .await
                .unwrap_or_else(|e| panic!("select from {}: {e}", stringify!($entity)));
        )+};
    }
    select_all!(
        Source,
        WebhookEvent,
        Client,
        Staff,
        Service,
        Location,
        Appointment,
        QueueEntry,
        QueueStateHistory,
        Visit,
        Payment,
        EntityLineage,
        DomainEvent,
        Alert,
        VcitaSubscription,
        ApiKey,
        AuditLog,
        entity::event_log_state::Entity,
    );
}

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, h, m, s)
        .single()
        .expect("valid fixed instant")
}

async fn insert_webhook_event(db: &DatabaseConnection, n: u8) -> webhook_event::Model {
    webhook_event::ActiveModel {
        source_id: Set(SourceId::from("chup-main")),
        vendor: Set("chup".to_owned()),
        event_type: Set(Some("queue.updated".to_owned())),
        received_at: Set(at(9, 30, u32::from(n))),
        verification: Set(Some("VERIFIED".to_owned())),
        dedupe_key: Set(Some(format!("evt-{n}"))),
        body_sha256: Set(format!("{n:064x}")),
        status: Set("PROCESSED".to_owned()),
        content_type: Set(Some("application/json".to_owned())),
        headers: Set(serde_json::json!({ "x-chup-signature": "abc", "n": n })),
        body: Set(Some(vec![0x7b, n, 0x00, 0xff, 0x7d])),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert webhook event")
}

async fn insert_domain_event(
    db: &DatabaseConnection,
    webhook_event_id: WebhookEventId,
    n: i64,
) -> domain_event::Model {
    domain_event::ActiveModel {
        kind: Set("QUEUE_ENTRY_CHANGED".to_owned()),
        source_id: Set(Some(SourceId::from("chup-main"))),
        entity_type: Set("QueueEntry".to_owned()),
        entity_id: Set(n),
        webhook_event_id: Set(Some(webhook_event_id)),
        occurred_at: Set(at(9, 31, 0)),
        recorded_at: Set(at(9, 31, 1)),
        service_id: Set(Some(ServiceId(7))),
        payload: Set(serde_json::json!({ "state": "WAITING", "n": n })),
        ..Default::default()
    }
    .insert(db)
    .await
    .expect("insert domain event")
}

/// Entities write and read back through the migrated schema with the same column names and
/// types, auto ids increase, and a deleted cursor is never handed out again.
async fn entities_round_trip_with_increasing_ids(db: &DatabaseConnection) {
    Migrator::up(db, None).await.expect("up");

    source::ActiveModel {
        id: Set(SourceId::from("chup-main")),
        vendor: Set("chup".to_owned()),
        created_at: Set(at(9, 0, 0)),
        last_delivery_at: Set(None),
    }
    .insert(db)
    .await
    .expect("insert source");

    let first = insert_webhook_event(db, 1).await;
    let second = insert_webhook_event(db, 2).await;
    assert!(
        second.id > first.id,
        "webhook ids must increase: {first:?} then {second:?}"
    );

    let read = webhook_event::Entity::find_by_id(second.id)
        .one(db)
        .await
        .expect("find webhook event")
        .expect("webhook event exists");
    assert_eq!(read, second);
    assert_eq!(read.body.as_deref(), Some(&[0x7b, 2, 0x00, 0xff, 0x7d][..]));
    assert_eq!(read.headers["x-chup-signature"], "abc");
    assert_eq!(read.received_at, at(9, 30, 2));
    assert_eq!(read.processed_at, None);

    let src = read
        .find_related(source::Entity)
        .one(db)
        .await
        .expect("load related source")
        .expect("source exists");
    assert_eq!(src.id, SourceId::from("chup-main"));

    // The foreign key is declared (SQLite only accepts it inside CREATE TABLE) and enforced.
    let orphan = webhook_event::ActiveModel {
        source_id: Set(SourceId::from("no-such-source")),
        vendor: Set("chup".to_owned()),
        received_at: Set(at(9, 40, 0)),
        body_sha256: Set("00".to_owned()),
        status: Set("PROCESSED".to_owned()),
        headers: Set(serde_json::json!({})),
        ..Default::default()
    }
    .insert(db)
    .await;
    assert!(orphan.is_err(), "insert with an unknown source must fail");

    let e1 = insert_domain_event(db, first.id, 1).await;
    let e2 = insert_domain_event(db, second.id, 2).await;
    assert!(
        e2.cursor > e1.cursor,
        "cursors must increase: {e1:?} then {e2:?}"
    );
    let read = domain_event::Entity::find_by_id(e2.cursor)
        .one(db)
        .await
        .expect("find domain event")
        .expect("domain event exists");
    assert_eq!(read, e2);
    assert_eq!(read.service_id, Some(ServiceId(7)));

    // Deleting the newest event must not let its cursor be reused.
    domain_event::Entity::delete_by_id(e2.cursor)
        .exec(db)
        .await
        .expect("delete newest domain event");
    let e3 = insert_domain_event(db, second.id, 3).await;
    assert!(
        e3.cursor > e2.cursor,
        "cursor {:?} was reused after deleting {:?}",
        e3.cursor,
        e2.cursor
    );
    assert_ne!(e3.cursor, EventCursor(e2.cursor.0));
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_schema_goes_up_down_and_up_again() {
    let db = sqlite_db().await;
    up_down_up_round_trips(&db.conn).await;
}

#[tokio::test]
async fn sqlite_entities_round_trip_with_increasing_ids() {
    let db = sqlite_db().await;
    entities_round_trip_with_increasing_ids(&db.conn).await;
}

#[tokio::test]
async fn sqlite_surrogate_keys_are_autoincrement_so_cursors_are_never_reused() {
    let db = sqlite_db().await;
    Migrator::up(&db.conn, None).await.expect("up");
    for table in ["domain_events", "webhook_events", "clients", "alerts"] {
        let row = db
            .conn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                [table.into()],
            ))
            .await
            .expect("query sqlite_master")
            .expect("table is in sqlite_master");
        let ddl: String = row.try_get("", "sql").expect("sql column");
        assert!(
            ddl.contains("integer NOT NULL PRIMARY KEY AUTOINCREMENT"),
            "{table} DDL lacks INTEGER PRIMARY KEY AUTOINCREMENT: {ddl}"
        );
    }
}

#[tokio::test]
async fn sqlite_reads_a_queue_board_in_order_from_its_index_without_sorting() {
    let db = sqlite_db().await;
    Migrator::up(&db.conn, None).await.expect("up");
    // The statement `queue(serviceId, date)` runs (sea-orm's shape of it).
    let plan = db
        .conn
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "EXPLAIN QUERY PLAN SELECT * FROM queue_entries WHERE service_id = 1 \
             AND queue_date = '2024-01-16' AND deleted = false \
             ORDER BY vendor_created_at ASC, id ASC",
        ))
        .await
        .expect("explain the board query");
    let steps: Vec<String> = plan
        .iter()
        .map(|row| row.try_get::<String>("", "detail").expect("detail column"))
        .collect();
    assert!(
        steps
            .iter()
            .any(|step| step.contains("idx_queue_entries_service_date_order")),
        "the board does not use its index: {steps:?}"
    );
    assert!(
        !steps.iter().any(|step| step.contains("TEMP B-TREE")),
        "the board is sorted after reading: {steps:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn postgres_schema_goes_up_down_and_up_again() {
    with_postgres(
        "postgres_schema_goes_up_down_and_up_again",
        |db| async move {
            up_down_up_round_trips(&db).await;
        },
    )
    .await;
}

#[tokio::test]
async fn postgres_entities_round_trip_with_increasing_ids() {
    with_postgres(
        "postgres_entities_round_trip_with_increasing_ids",
        |db| async move {
            entities_round_trip_with_increasing_ids(&db).await;
        },
    )
    .await;
}

#[test]
fn database_url_rewrite_keeps_host_and_params() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}

/// Rows stored before migration 4 with a source's token in `target_url` lose it: the URL keeps
/// its route and gains `source_id`; a row whose URL becomes another's (a rotated token) goes,
/// the most recently updated staying; other URLs are untouched. `down` keeps the schema.
async fn stored_source_tokens_are_removed(db: &DatabaseConnection) {
    use entity::vcita_subscription;
    Migrator::up(db, Some(3)).await.expect("up to 3");
    let backend = db.get_database_backend();
    let insert = |id: i64, url: &str, updated: &str| {
        Statement::from_sql_and_values(
            backend,
            match backend {
                DbBackend::Postgres => {
                    "INSERT INTO vcita_subscriptions (id, event, target_url, status, created_at, updated_at) \
                     VALUES ($1, 'client/created', $2, 'SUBSCRIBED', $3::timestamptz, $3::timestamptz)"
                }
                _ => {
                    "INSERT INTO vcita_subscriptions (id, event, target_url, status, created_at, updated_at) \
                     VALUES (?, 'client/created', ?, 'SUBSCRIBED', ?, ?)"
                }
            },
            match backend {
                DbBackend::Postgres => vec![id.into(), url.into(), updated.into()],
                _ => vec![id.into(), url.into(), updated.into(), updated.into()],
            },
        )
    };
    for (id, url, updated) in [
        (
            1,
            "https://cb.example/webhooks/vcita-a?token=old-secret",
            "2026-01-01T00:00:00Z",
        ),
        (
            2,
            "https://cb.example/webhooks/vcita-a?token=new-secret",
            "2026-02-01T00:00:00Z",
        ),
        (
            3,
            "https://cb.example/webhooks/vcita-b?token=b-secret",
            "2026-01-01T00:00:00Z",
        ),
        (4, "https://his.example/hooks/vcita", "2026-01-01T00:00:00Z"),
    ] {
        db.execute_raw(insert(id, url, updated))
            .await
            .expect("insert an old row");
    }
    Migrator::up(db, None).await.expect("up");
    let rows = vcita_subscription::Entity::find()
        .all(db)
        .await
        .expect("rows");
    let mut rows: Vec<(i64, String, Option<String>)> = rows
        .into_iter()
        .map(|r| (r.id.0, r.target_url, r.source_id.map(|s| s.0)))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (
                2,
                "https://cb.example/webhooks/vcita-a".to_owned(),
                Some("vcita-a".to_owned())
            ),
            (
                3,
                "https://cb.example/webhooks/vcita-b".to_owned(),
                Some("vcita-b".to_owned())
            ),
            (4, "https://his.example/hooks/vcita".to_owned(), None),
        ]
    );
    Migrator::down(db, Some(1)).await.expect("down one");
    assert!(
        !SchemaManager::new(db)
            .has_column("vcita_subscriptions", "source_id")
            .await
            .expect("has_column")
    );
    Migrator::up(db, None).await.expect("up again");
}

#[tokio::test]
async fn sqlite_stored_source_tokens_are_removed() {
    let db = sqlite_db().await;
    stored_source_tokens_are_removed(&db.conn).await;
}

#[tokio::test]
async fn postgres_stored_source_tokens_are_removed() {
    with_postgres(
        "postgres_stored_source_tokens_are_removed",
        |db| async move {
            stored_source_tokens_are_removed(&db).await;
        },
    )
    .await;
}
