//! Group commit: deliveries that arrive together share one transaction, and sharing it changes
//! nothing a vendor or a subscriber can see — every delivery stored exactly once, duplicates
//! recognized inside a batch, events published in cursor order, and one delivery that fails to
//! apply stored as FAILED without taking its batch down. No timing is asserted (speed is for
//! `bench/`).

use std::path::PathBuf;

use carebridge::config::{Config, EnvOverrides, Mode};
use carebridge::startup::{AppState, Application};
use carebridge::store::ingest::{Inbound, InboxStatus, Recorded};
use carebridge::vendors::{self, Credentials, Unverified, Webhook};
use entity::{client, domain_event, queue_entry, webhook_event};
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder,
};
use tokio::task::JoinSet;

use crate::helpers::{CHUP_SECRET, TestDatabase, fixture, test_config_toml};

/// The app on port 0 with its state in hand (for the bus and the ingestor), on its own database.
struct GroupApp {
    address: std::net::SocketAddr,
    state: AppState,
    db: DatabaseConnection,
    _database: TestDatabase,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn spawn() -> GroupApp {
    let database = TestDatabase::create().await;
    let env = EnvOverrides {
        listen: Some("127.0.0.1:0".into()),
        database_url: Some(database.url()),
    };
    let config = Config::from_toml(
        &test_config_toml(""),
        Mode::File(PathBuf::from("test.toml")),
        &env,
    )
    .expect("test config is valid");
    let app = Application::build(config).await.expect("app builds");
    let address = app.local_addr();
    let state = app.state().clone();
    let server = tokio::spawn(app.run_until_stopped(std::future::pending()));
    let db = Database::connect(database.url())
        .await
        .expect("assertion connection");
    GroupApp {
        address,
        state,
        db,
        _database: database,
        _server: server,
    }
}

/// A Chup `live_queue_created` body for ticket `ticket` of client `client`, signed.
fn ticket_body(ticket: u32, client: u32) -> Vec<u8> {
    let body = String::from_utf8(fixture("chup", "live_queue_created"))
        .expect("utf8")
        .replace("\"id\": 19242", &format!("\"id\": {ticket}"))
        .replace(
            "\"registered_client_id\": 3734",
            &format!("\"registered_client_id\": {client}"),
        );
    carebridge::vendors::chup::sign_chup(body.as_bytes(), CHUP_SECRET.as_bytes())
}

/// Posts every body at once, each on its own task; returns the JSON answers, asserting 200.
async fn post_all(app: &GroupApp, bodies: Vec<Vec<u8>>) -> Vec<serde_json::Value> {
    let client = reqwest::Client::new();
    let url = format!("http://{}/webhooks/chup-main", app.address);
    let mut requests = JoinSet::new();
    for body in bodies {
        let request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        requests.spawn(async move {
            let response = request.send().await.expect("webhook request");
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.expect("JSON")
        });
    }
    requests.join_all().await
}

/// What the handler would hand the ingestor for this body (for `record_batch`).
fn inbound(app: &GroupApp, body: Vec<u8>) -> Inbound {
    let source = app.state.config.source("chup-main").expect("test source");
    let verified = Webhook::<Unverified>::new(source.vendor, body.into(), None)
        .verify(Credentials::HmacKey(CHUP_SECRET.as_bytes()))
        .expect("signed body verifies");
    Inbound {
        source_id: source.id.clone(),
        vendor: source.vendor,
        content_type: Some("application/json".into()),
        headers: serde_json::json!({}),
        normalized: vendors::normalize(&verified, &app.state.mapper_config),
        webhook: verified,
    }
}

fn status_of(recorded: &Recorded) -> InboxStatus {
    match recorded {
        Recorded::Stored { status, .. } => *status,
        Recorded::Rejected { .. } => InboxStatus::Rejected,
    }
}

#[tokio::test]
async fn two_hundred_webhooks_posted_at_once_are_each_stored_once_and_published_in_cursor_order() {
    let app = spawn().await;
    let mut live = app.state.bus.subscribe();
    let bodies = (0..200)
        .map(|i| ticket_body(50_000 + i, 7_000 + i % 7))
        .collect();
    let answers = post_all(&app, bodies).await;

    let mut ids: Vec<i64> = answers
        .iter()
        .map(|answer| {
            assert_eq!(answer["status"], "PROCESSED", "{answer}");
            answer["id"].as_i64().expect("inbox id")
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every delivery has its own inbox row");
    let stored = webhook_event::Entity::find()
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(stored, 200, "each delivery stored exactly once");
    let tickets = queue_entry::Entity::find()
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(tickets, 200);
    let clients = client::Entity::find().count(&app.db).await.expect("count");
    assert_eq!(
        clients, 7,
        "clients named by many deliveries of a batch exist once"
    );

    let logged: Vec<i64> = domain_event::Entity::find()
        .order_by_asc(domain_event::Column::Cursor)
        .all(&app.db)
        .await
        .expect("events")
        .iter()
        .map(|event| event.cursor.0)
        .collect();
    // Every answer was sent after its batch committed and before that batch's events were
    // published; the last batch may still be publishing, so wait for exactly what was logged.
    let mut published = Vec::with_capacity(logged.len());
    while published.len() < logged.len() {
        published.push(live.recv().await.expect("bus open").cursor.0);
    }
    assert_eq!(
        published, logged,
        "every committed event published once, in cursor order"
    );
}

#[tokio::test]
async fn the_same_delivery_posted_five_times_at_once_is_processed_once_and_four_times_duplicate() {
    let app = spawn().await;
    let body = ticket_body(19_242, 3_734);
    let answers = post_all(&app, vec![body; 5]).await;
    let mut statuses: Vec<&str> = answers
        .iter()
        .map(|answer| answer["status"].as_str().expect("status"))
        .collect();
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [
            "DUPLICATE",
            "DUPLICATE",
            "DUPLICATE",
            "DUPLICATE",
            "PROCESSED"
        ]
    );
    assert_eq!(
        queue_entry::Entity::find()
            .count(&app.db)
            .await
            .expect("count"),
        1
    );
    assert_eq!(
        webhook_event::Entity::find()
            .count(&app.db)
            .await
            .expect("count"),
        5,
        "duplicates are kept too"
    );
}

#[tokio::test]
async fn duplicates_inside_one_batch_see_the_deliveries_before_them() {
    let app = spawn().await;
    let first = ticket_body(1, 10);
    let batch = vec![
        inbound(&app, first.clone()),
        inbound(&app, ticket_body(2, 10)),
        inbound(&app, first),
    ];
    let answers = app.state.ingestor.record_batch(batch).await;
    let statuses: Vec<InboxStatus> = answers
        .iter()
        .map(|answer| status_of(answer.as_ref().expect("stored")))
        .collect();
    assert_eq!(
        statuses,
        [
            InboxStatus::Processed,
            InboxStatus::Processed,
            InboxStatus::Duplicate
        ]
    );
}

/// Makes the database itself refuse one client id, as a constraint would: a trigger raises on
/// inserting client `666`. Nothing in the gateway knows about it.
async fn refuse_client_666(db: &DatabaseConnection) {
    let statements: &[&str] = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => &[
            "CREATE FUNCTION refuse_666() RETURNS trigger AS $$ BEGIN \
             IF NEW.vendor_id = '666' THEN RAISE EXCEPTION 'client 666 refused'; END IF; \
             RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_666 BEFORE INSERT ON clients \
             FOR EACH ROW EXECUTE FUNCTION refuse_666()",
        ],
        _ => &["CREATE TRIGGER refuse_666 BEFORE INSERT ON clients \
             WHEN NEW.vendor_id = '666' BEGIN SELECT RAISE(ABORT, 'client 666 refused'); END"],
    };
    for statement in statements {
        db.execute_unprepared(statement).await.expect("trigger");
    }
}

#[tokio::test]
async fn a_delivery_that_fails_to_apply_is_stored_failed_and_the_rest_of_its_batch_is_stored() {
    let app = spawn().await;
    refuse_client_666(&app.db).await;
    let mut live = app.state.bus.subscribe();
    let good = ticket_body(1, 10);
    let batch = vec![
        inbound(&app, good.clone()),
        inbound(&app, ticket_body(2, 666)),
        inbound(&app, ticket_body(3, 11)),
        inbound(&app, good),
    ];
    let answers = app.state.ingestor.record_batch(batch).await;
    let recorded: Vec<Recorded> = answers
        .into_iter()
        .map(|answer| answer.expect("the batch is stored"))
        .collect();
    let statuses: Vec<InboxStatus> = recorded.iter().map(status_of).collect();
    assert_eq!(
        statuses,
        [
            InboxStatus::Processed,
            InboxStatus::Failed,
            InboxStatus::Processed,
            InboxStatus::Duplicate
        ]
    );

    let Recorded::Stored { id: failed_id, .. } = recorded[1] else {
        panic!("stored")
    };
    let failed = webhook_event::Entity::find_by_id(entity::ids::WebhookEventId(failed_id))
        .one(&app.db)
        .await
        .expect("query")
        .expect("the failed delivery is kept");
    assert_eq!(failed.status, "FAILED");
    assert!(failed.body.is_some(), "its raw bytes are kept for a retry");
    assert!(
        failed.dedupe_key.is_none(),
        "a redelivery is applied, not dropped"
    );
    let tickets: Vec<String> = queue_entry::Entity::find()
        .order_by_asc(queue_entry::Column::VendorId)
        .all(&app.db)
        .await
        .expect("tickets")
        .into_iter()
        .map(|ticket| ticket.vendor_id)
        .collect();
    assert_eq!(
        tickets,
        ["1", "3"],
        "nothing of the failed delivery remains"
    );
    let refused = client::Entity::find()
        .filter(client::Column::VendorId.eq("666"))
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(refused, 0);

    let logged = domain_event::Entity::find()
        .order_by_asc(domain_event::Column::Cursor)
        .all(&app.db)
        .await
        .expect("events");
    assert!(
        logged
            .iter()
            .all(|event| event.webhook_event_id != Some(entity::ids::WebhookEventId(failed_id))),
        "the failed delivery emitted nothing"
    );
    for event in &logged {
        let published = live.recv().await.expect("bus open");
        assert_eq!(published.cursor, event.cursor);
    }
}

/// An ingestor of its own over a pool that counts its statements, on `app`'s database.
async fn counted_ingestor(
    app: &GroupApp,
) -> (
    carebridge::store::ingest::Ingestor,
    carebridge::store::StatementCounter,
) {
    let counter = carebridge::store::StatementCounter::default();
    let db = carebridge::store::connect_counted(&app._database.url(), &counter)
        .await
        .expect("counted pool");
    let histogram = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("b", "b"))
        .expect("histogram");
    let ingestor =
        carebridge::store::ingest::Ingestor::new(db, carebridge::bus::Bus::new(16), histogram);
    (ingestor, counter)
}

/// Writes `bodies` as one batch and returns how many statements it took, asserting each was
/// processed.
async fn statements_for_batch(
    app: &GroupApp,
    ingestor: &carebridge::store::ingest::Ingestor,
    counter: &carebridge::store::StatementCounter,
    bodies: Vec<Vec<u8>>,
) -> u64 {
    let batch = bodies.into_iter().map(|body| inbound(app, body)).collect();
    let before = counter.get();
    for answer in ingestor.record_batch(batch).await {
        assert_eq!(status_of(&answer.expect("stored")), InboxStatus::Processed);
    }
    counter.get() - before
}

#[tokio::test]
async fn a_batch_costs_as_many_statements_for_a_hundred_new_tickets_as_for_ten() {
    let app = spawn().await;
    let (ingestor, counter) = counted_ingestor(&app).await;
    // The fixture's service and staff exist from here on; each batch below creates only
    // tickets and clients.
    statements_for_batch(&app, &ingestor, &counter, vec![ticket_body(1, 1)]).await;

    let ten = (0..10).map(|i| ticket_body(100 + i, 100 + i)).collect();
    let for_ten = statements_for_batch(&app, &ingestor, &counter, ten).await;
    let hundred = (0..100).map(|i| ticket_body(200 + i, 200 + i)).collect();
    let for_hundred = statements_for_batch(&app, &ingestor, &counter, hundred).await;

    assert_eq!(
        for_ten, for_hundred,
        "statements per batch do not grow with the deliveries in it"
    );
    if sea_orm::ConnectionTrait::get_database_backend(&app.db) == sea_orm::DbBackend::Sqlite {
        // Besides BEGIN and COMMIT: every read of the batch in one call to SQLite's thread,
        // every write in one more (store::script).
        assert_eq!(for_ten, 2, "calls to SQLite per batch");
    }
    let tickets = queue_entry::Entity::find()
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(tickets, 111);
    let clients = client::Entity::find().count(&app.db).await.expect("count");
    assert_eq!(clients, 111);
    // Each ticket points at its own client, as named by its delivery.
    let ticket = queue_entry::Entity::find()
        .filter(queue_entry::Column::VendorId.eq("250"))
        .one(&app.db)
        .await
        .expect("query")
        .expect("ticket 250");
    let owner = client::Entity::find_by_id(ticket.client_id.expect("linked"))
        .one(&app.db)
        .await
        .expect("query")
        .expect("its client");
    assert_eq!(owner.vendor_id, "250");
}

#[tokio::test]
async fn a_ticket_created_and_changed_in_one_batch_is_stored_as_last_changed() {
    let app = spawn().await;
    let created = String::from_utf8(fixture("chup", "live_queue_created")).expect("utf8");
    let serving = created
        .replace(
            "\"event\": \"live_queue_created\"",
            "\"event\": \"live_queue_updated\"",
        )
        .replace("\"state\": 1,", "\"state\": 2,")
        .replace(
            "\"state_name\": \"In Queue\"",
            "\"state_name\": \"Serving\"",
        )
        .replace(
            "\"updated_at\": \"2024-01-17T00:35:22+08:00\"",
            "\"updated_at\": \"2024-01-17T00:41:00+08:00\"",
        );
    assert_eq!(serving.matches("Serving").count(), 1, "the fixture changed");
    let sign =
        |body: &str| carebridge::vendors::chup::sign_chup(body.as_bytes(), CHUP_SECRET.as_bytes());
    let batch = vec![inbound(&app, sign(&created)), inbound(&app, sign(&serving))];
    for answer in app.state.ingestor.record_batch(batch).await {
        assert_eq!(status_of(&answer.expect("stored")), InboxStatus::Processed);
    }
    let tickets = queue_entry::Entity::find()
        .all(&app.db)
        .await
        .expect("tickets");
    assert_eq!(tickets.len(), 1, "one ticket");
    assert_eq!(
        tickets[0].state_code,
        Some(2),
        "as the later delivery left it"
    );
    let kinds: Vec<String> = domain_event::Entity::find()
        .order_by_asc(domain_event::Column::Cursor)
        .all(&app.db)
        .await
        .expect("events")
        .into_iter()
        .filter(|event| event.entity_type == "QueueEntry")
        .map(|event| event.kind)
        .collect();
    assert_eq!(kinds, ["QUEUE_ENTRY_CREATED", "QUEUE_ENTRY_CHANGED"]);
}

#[tokio::test]
async fn new_rows_never_reuse_an_id_handed_out_before() {
    let app = spawn().await;
    // What deleting the newest rows leaves behind: the table's id counter is ahead of its
    // largest id. SQLite's AUTOINCREMENT keeps it in `sqlite_sequence`, PostgreSQL in the
    // identity sequence.
    let bump = match app.db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            "SELECT setval(pg_get_serial_sequence('queue_entries', 'id'), 1000)"
        }
        _ => "INSERT INTO sqlite_sequence (name, seq) VALUES ('queue_entries', 1000)",
    };
    app.db.execute_unprepared(bump).await.expect("bump");
    let batch = vec![
        inbound(&app, ticket_body(1, 1)),
        inbound(&app, ticket_body(2, 2)),
    ];
    app.state.ingestor.record_batch(batch).await;
    let mut ids: Vec<i64> = queue_entry::Entity::find()
        .all(&app.db)
        .await
        .expect("tickets")
        .into_iter()
        .map(|ticket| ticket.id.0)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [1001, 1002]);
}

/// PostgreSQL: the writer's and the event tailer's backends never settle on a generic plan. A
/// generic plan made while the tables were empty is a sequential scan, kept until the next
/// `ANALYZE`; on a server without autovacuum every batch's dedupe lookup then read the whole
/// inbox, and every commit's tailer query the whole log (bench/RESULTS.md, fifth session: 204
/// deliveries/s at 195k stored webhooks, 6,195/s after an `ANALYZE`). The shared pool keeps
/// cached plans: planning every dashboard query cost 23 % of the board query's throughput.
#[tokio::test]
async fn the_postgres_writer_and_event_tailer_plan_each_statement_for_its_parameters() {
    let app = spawn().await;
    if app.state.db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return; // SQLite's planner, without statistics, takes the index for these lookups.
    }
    async fn plan_cache_mode(db: &DatabaseConnection) -> String {
        db.query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SHOW plan_cache_mode",
        ))
        .await
        .expect("SHOW")
        .expect("a row")
        .try_get("", "plan_cache_mode")
        .expect("text")
    }
    assert_eq!(
        plan_cache_mode(app.state.ingestor.database()).await,
        "force_custom_plan"
    );
    assert_eq!(
        plan_cache_mode(&app.state.tailer_db).await,
        "force_custom_plan"
    );
    assert_eq!(plan_cache_mode(&app.state.db).await, "auto");
}
