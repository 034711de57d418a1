//! CareBridge: a GraphQL integration gateway for clinic SaaS webhooks.
//!
//! Vendors (Chup Online, vCita, VSee Clinic, TimeTap) POST webhooks; CareBridge verifies them,
//! keeps the raw bytes, normalizes them into one clinic model and serves it over GraphQL.
//!
//! # Layout
//!
//! - [`config`]: the TOML file and environment, validated into typed values.
//! - [`domain`]: the vendor-independent clinic model (no I/O, no frameworks).
//! - [`vendors`]: per-vendor verification, payload types and pure mappers.
//! - [`ingest`]: `POST /webhooks/{source_id}`.
//! - [`bus`]: in-process fan-out of committed domain events.
//! - [`graphql`]: the API schema and `/graphql`.
//! - [`outbound`]: Chup alerts (the outbox worker) and vCita subscriptions.
//! - [`metrics`]: Prometheus metrics of one application.
//! - [`store`]: sea-orm persistence: connect, migrate, transactions.
//! - [`auth`]: API keys and scopes.
//! - [`startup`]: `Application::build` (config + listener → running app), shutdown signal.
//! - [`http`]: the router and its layers.
//! - [`server`]: the connection loop: header and idle timeouts, the connection cap.
//! - [`web`]: the dashboard (`/`) and playground (`/playground/`), built by `build.rs` and
//!   embedded.
//! - [`telemetry`]: structured logs with request ids.
//! - [`cli`]: the `carebridge` command line.
//!
//! Dependencies point one way: `domain` ← `vendors` ← `store` ← `ingest`, `graphql` ←
//! `http`/`startup`.
#![forbid(unsafe_code)]

pub mod auth;
pub mod bus;
pub mod cli;
pub mod config;
pub mod domain;
pub mod graphql;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod outbound;
pub mod server;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod vendors;
pub mod web;
