//! sea-orm entities for CareBridge: persistence types only.
//!
//! These types mirror the `migration` crate's tables column for column; they are never exposed
//! through GraphQL (no async-graphql derives here — the API has its own types converted `From`
//! these). Keys are typed ([`ids`]) so ids of different tables cannot be mixed up.
//!
//! Storage conventions, shared by every module:
//! - instants are `DateTimeUtc` (`timestamp with time zone` on PostgreSQL, RFC 3339 text on
//!   SQLite); calendar dates are `Date` (`chrono::NaiveDate`);
//! - JSON is `Json` (`serde_json::Value`) in `jsonb` columns; raw bodies are `Vec<u8>`;
//! - normalized entities carry `source_id` + `vendor_id` (unique together), a `version`
//!   ordering guard taken from the vendor payload, and a soft-delete `deleted` flag.
//!
//! # Layout
//!
//! - [`ids`]: typed keys (`ClientId`, `QueueEntryId`, `EventCursor`, …).
//! - [`prelude`]: `Entity as X` re-exports plus the ids.
//! - one module per table: [`source`], [`webhook_event`] (the inbox), [`client`], [`staff`],
//!   [`service`], [`location`], [`appointment`], [`queue_entry`], [`queue_state_history`],
//!   [`visit`], [`payment`], [`entity_lineage`], [`domain_event`] (the live-stream log),
//!   [`alert`] (outbox), [`vcita_subscription`], [`api_key`], [`audit_log`].

pub mod ids;
pub mod prelude;

pub mod alert;
pub mod api_key;
pub mod appointment;
pub mod audit_log;
pub mod client;
pub mod domain_event;
pub mod entity_lineage;
pub mod event_log_state;
pub mod location;
pub mod payment;
pub mod queue_entry;
pub mod queue_state_history;
pub mod service;
pub mod source;
pub mod staff;
pub mod vcita_subscription;
pub mod visit;
pub mod webhook_event;
