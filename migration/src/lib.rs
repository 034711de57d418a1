//! CareBridge's schema, as ordered, append-only, reversible migrations.
//!
//! The app's CLI (`carebridge migrate`) and its startup run [`Migrator`]; nothing here runs
//! while the GraphQL schema is built. Every migration must work on both SQLite (single-node
//! deployments, tests) and PostgreSQL, so only `sea-query` statements are used, never raw
//! dialect SQL. Migrations are never edited once released: add a new one instead.
//!
//! # Layout
//!
//! - [`Migrator`]: the ordered list the CLI applies.
//! - `m20261123_000001_create_tables`: the initial schema (inbox, normalized entities, event
//!   log, outbox, admin tables). Its table and column names are mirrored by the `entity` crate.
//! - `m20261123_000003_queue_board_index`: the index behind `queue(serviceId, date)`, in the
//!   board's order.
//! - `m20261201_000004_vcita_subscription_source`: vCita subscriptions of the gateway's own
//!   sources store the source id, never its URL token (and the tokens already stored go).

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_create_tables;
mod m20261123_000002_event_log_state;
mod m20261123_000003_queue_board_index;
mod m20261201_000004_vcita_subscription_source;

/// Applies CareBridge's migrations in order; `MigratorTrait::up`/`down` are the entry points.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_tables::Migration),
            Box::new(m20261123_000002_event_log_state::Migration),
            Box::new(m20261123_000003_queue_board_index::Migration),
            Box::new(m20261201_000004_vcita_subscription_source::Migration),
        ]
    }
}
