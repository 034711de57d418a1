//! Normalized enums as GraphQL enums, and the objects that pair each with the vendor's raw
//! value. Stored as SCREAMING_SNAKE_CASE text; a value this build does not know reads as OTHER.

use async_graphql::resolver_utils::EnumType;
use async_graphql::{Enum, SimpleObject};

/// Reads a stored enum text; unknown text is `fallback` (the raw value is exposed beside it).
pub fn parse_stored<E: EnumType + Copy>(text: &str, fallback: E) -> E {
    E::items()
        .iter()
        .find(|item| item.name == text)
        .map(|item| item.value)
        .unwrap_or(fallback)
}

pub fn stored_name<E: EnumType + Copy + PartialEq>(value: E) -> &'static str {
    E::items()
        .iter()
        .find(|item| item.value == value)
        .map(|item| item.name)
        .unwrap_or("OTHER")
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum QueueStateKind {
    Waiting,
    Arrived,
    Serving,
    Served,
    NoShow,
    Moved,
    Cancelled,
    Pharmacy,
    Billing,
    Ended,
    Other,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AppointmentStatusKind {
    Booked,
    Confirmed,
    CheckedIn,
    InProgress,
    Completed,
    Cancelled,
    NoShow,
    Rescheduled,
    Other,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum VisitStatusKind {
    Pending,
    Confirmed,
    InProgress,
    Completed,
    Cancelled,
    Other,
}

/// What happened to a delivery in the inbox.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum WebhookStatus {
    Processed,
    Duplicate,
    Stale,
    Failed,
    Unsupported,
    Rejected,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AlertStatus {
    Pending,
    Sent,
    Failed,
}

/// A live-queue state: normalized kind plus what Chup sent.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(guard = "crate::graphql::guard::Reads(crate::graphql::guard::Class::Clinic)")]
pub struct QueueState {
    pub kind: QueueStateKind,
    /// Chup's numeric state (`1` = In Queue, `3` = ARRIVED; others undocumented).
    pub raw_code: Option<i64>,
    /// Chup's state name, e.g. `ARRIVED`.
    pub raw_name: Option<String>,
    /// Chup's human label, e.g. `Arrived`.
    pub label: Option<String>,
}

/// An appointment status: normalized kind plus the vendor's status and sub-status as sent.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(guard = "crate::graphql::guard::Reads(crate::graphql::guard::Class::Clinic)")]
pub struct AppointmentStatus {
    pub kind: AppointmentStatusKind,
    pub raw: Option<String>,
    pub raw_sub_status: Option<String>,
}

/// A telehealth visit status: normalized kind plus VSee's v1 code or v2 name as sent.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(guard = "crate::graphql::guard::Reads(crate::graphql::guard::Class::Clinic)")]
pub struct VisitStatus {
    pub kind: VisitStatusKind,
    pub raw: Option<String>,
}
