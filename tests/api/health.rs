//! Liveness and readiness.

use sea_orm::{ConnectionTrait, EntityTrait, PaginatorTrait};

use crate::helpers::{TestDatabase, spawn_app};

#[tokio::test]
async fn healthz_answers_ok_while_the_process_runs() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["status"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_ready_when_the_database_answers() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    let id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header");
    assert_eq!(id.to_str().expect("ascii").len(), 36, "a UUID");
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/nope"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.expect("json");
    assert!(body["error"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn readyz_reports_unavailable_when_the_database_is_gone() {
    let app = spawn_app().await;
    match &app.database {
        TestDatabase::Postgres { server_url, name } => {
            // The server drops the database under the running gateway.
            let admin = sea_orm::Database::connect(server_url.as_str())
                .await
                .expect("admin");
            admin
                .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .await
                .expect("drop database");
        }
        TestDatabase::Sqlite { .. } | TestDatabase::Shared { .. } => {
            // An open SQLite file cannot be taken away from a running process, so the
            // gateway's own pool is closed: every later database call fails as if unreachable.
            app.app_db
                .close_by_ref()
                .await
                .expect("close the gateway's pool");
        }
    }
    let mut status = 0;
    for _ in 0..20 {
        status = app
            .client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16();
        if status == 503 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(status, 503);
    let healthz = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    assert_eq!(healthz.status(), 200, "the process itself is still alive");
}

#[tokio::test]
async fn migrations_create_the_model_tables() {
    let app = spawn_app().await;
    assert_eq!(
        entity::webhook_event::Entity::find()
            .count(&app.db)
            .await
            .expect("inbox"),
        0
    );
    assert_eq!(
        entity::queue_entry::Entity::find()
            .count(&app.db)
            .await
            .expect("queue"),
        0
    );
    assert_eq!(
        entity::domain_event::Entity::find()
            .count(&app.db)
            .await
            .expect("events"),
        0
    );
    let sources = entity::source::Entity::find()
        .all(&app.db)
        .await
        .expect("sources");
    assert_eq!(
        sources.len(),
        4,
        "config sources are mirrored into the database"
    );
    app.stop().await;
}
