//! The one integration-test binary: the real app on port 0, real HTTP clients, an isolated
//! database per test (a temp SQLite file, or a PostgreSQL database cloned from a migrated
//! template when `TEST_DATABASE_URL` is set). The same tests run on both backends.

mod helpers;

mod attack_cost;
mod attack_http;
mod attack_ingest;
mod attack_scopes_audit;
mod attack_store;
mod attack_websocket;
mod durability;
mod fake_vendors;
mod graphql_basics;
mod graphql_queries;
mod group_commit;
mod health;
mod lifecycle;
mod operations;
mod outbound;
mod reprocess;
mod security;
mod shared_subscriptions;
mod subscriptions;
mod webhooks;
