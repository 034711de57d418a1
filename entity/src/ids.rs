//! Typed primary and foreign keys, so a `QueueEntryId` can never be passed where a `ClientId`
//! belongs (STYLE.md principle 3).
//!
//! Each id is a transparent newtype over the column's storage type, made a sea-orm column type
//! with `DeriveValueType` (which also gives `TryFromU64`, needed for auto-increment keys read
//! back through `last_insert_id` on SQLite). The field is public: the database, not a
//! constructor, is what makes an id valid, and the API layer converts ids to and from GraphQL
//! `ID`s explicitly.

use sea_orm::DeriveValueType;
use serde::{Deserialize, Serialize};

/// Declares `bigint` surrogate-key newtypes with the conversions every layer needs.
macro_rules! int_ids {
    ($($(#[$doc:meta])* $name:ident;)+) => {$(
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            DeriveValueType, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<i64> for $name {
            fn from(raw: i64) -> Self {
                Self(raw)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> Self {
                id.0
            }
        }
    )+};
}

int_ids! {
    /// `webhook_events.id`: one delivery in the inbox.
    WebhookEventId;
    /// `clients.id`.
    ClientId;
    /// `staff.id`.
    StaffId;
    /// `services.id`.
    ServiceId;
    /// `locations.id`.
    LocationId;
    /// `appointments.id`.
    AppointmentId;
    /// `queue_entries.id`.
    QueueEntryId;
    /// `queue_state_history.id`.
    QueueStateHistoryId;
    /// `visits.id`.
    VisitId;
    /// `payments.id`.
    PaymentId;
    /// `domain_events.cursor`: strictly increasing and never reused, so subscribers can resume.
    EventCursor;
    /// `alerts.id`.
    AlertId;
    /// `vcita_subscriptions.id`.
    VcitaSubscriptionId;
    /// `api_keys.id`.
    ApiKeyId;
    /// `audit_log.id`.
    AuditLogId;
}

/// `sources.id`: the operator-chosen name of a configured webhook source (e.g. `chup-main`).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, DeriveValueType, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct SourceId(pub String);

/// sea-orm requires every primary key type to be convertible from an auto-increment value;
/// a source id never is, exactly like sea-orm's own impl for `String`.
impl sea_orm::TryFromU64 for SourceId {
    fn try_from_u64(_: u64) -> Result<Self, sea_orm::DbErr> {
        Err(sea_orm::DbErr::ConvertFromU64("SourceId"))
    }
}

impl SourceId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for SourceId {
    fn from(raw: String) -> Self {
        Self(raw)
    }
}

impl From<&str> for SourceId {
    fn from(raw: &str) -> Self {
        Self(raw.to_owned())
    }
}

impl From<SourceId> for String {
    fn from(id: SourceId) -> Self {
        id.0
    }
}
