//! The GraphQL endpoint and the committed schema file.

use serde_json::json;

use crate::helpers::{ADMIN_KEY, gql, spawn_app};

#[tokio::test]
async fn sources_lists_the_configured_webhook_endpoints() {
    let app = spawn_app().await;
    let body = gql(
        &app,
        ADMIN_KEY,
        "{ sources { id vendor webhookPath } }",
        json!({}),
    )
    .await;
    let sources = body["data"]["sources"].as_array().expect("sources");
    assert_eq!(sources.len(), 4);
    assert_eq!(
        sources[0],
        json!({"id": "chup-main", "vendor": "chup", "webhookPath": "/webhooks/chup-main"})
    );
    app.stop().await;
}

#[test]
fn schema_graphql_matches_the_live_schema() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql at the repository root");
    assert!(
        committed == carebridge::graphql::sdl(),
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}
