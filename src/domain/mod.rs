//! The vendor-independent clinic model: what a webhook *means* once a vendor mapper has read it.
//!
//! Mappers (`crate::vendors`) turn one verified delivery into a [`Normalized`] value: a list of
//! [`Change`]s, each naming an entity by the vendor's own id within the delivering source. The
//! store resolves those ids to rows, applies the ordering guard and writes lineage. Nothing here
//! knows about HTTP, GraphQL or the database, so every mapper is a pure, unit-testable function.
//!
//! Every enum is *open*: the vendor's raw value travels beside the normalized kind, and an
//! unknown vendor value maps to `Other`, never to an error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The four vendors CareBridge receives webhooks from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Chup,
    Vcita,
    Vsee,
    Timetap,
}

impl Vendor {
    pub const ALL: [Vendor; 4] = [Vendor::Chup, Vendor::Vcita, Vendor::Vsee, Vendor::Timetap];

    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Chup => "chup",
            Vendor::Vcita => "vcita",
            Vendor::Vsee => "vsee",
            Vendor::Timetap => "timetap",
        }
    }

    pub fn parse(text: &str) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.as_str() == text)
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a mapper made of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum MapOutcome {
    /// Understood: apply these changes.
    Mapped(Normalized),
    /// A well-formed delivery of an event no mapper handles (kept as `UNSUPPORTED`).
    Unsupported { event_type: String, reason: String },
}

/// The normalized content of one delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    /// The vendor's event type as sent (Chup `payload.event`, VSee `type`, vCita
    /// `entity_name/event_type`); TimeTap sends none, so its mapper says `appointment`.
    pub event_type: String,
    /// The vendor's own time of this change, used by the ordering guard (Chup `updated_at`,
    /// VSee `created`, vCita `updated_at`; `None` for TimeTap).
    pub occurred_at: Option<DateTime<Utc>>,
    /// Entity changes in dependency order: referenced entities (client, staff, service,
    /// location) come before the entities that reference them.
    pub changes: Vec<Change>,
}

/// One entity change. `vendor_id` is the vendor's id of the entity within the source.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Client(ClientChange),
    Staff(StaffChange),
    Service(ServiceChange),
    Location(LocationChange),
    QueueEntry(QueueEntryChange),
    Appointment(AppointmentChange),
    Visit(VisitChange),
    Payment(PaymentChange),
}

/// Whether the delivery creates/updates the entity or removes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Upsert,
    Delete,
}

/// A patient. Fields are `None` when the delivery does not mention them; the store keeps the
/// stored value then (a queue ticket carries a name and phone, a client_updated much more).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientChange {
    pub vendor_id: String,
    pub action: Action,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The display name; built from first/last when the vendor sends only those.
    pub full_name: Option<String>,
    /// E.164 (`+60123456789`) where the vendor's digits allow it, else the digits as sent.
    pub phone: Option<String>,
    pub email: Option<String>,
    pub custom_fields: Option<serde_json::Value>,
    pub version: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StaffChange {
    pub vendor_id: String,
    pub action: Action,
    pub name: Option<String>,
    pub email: Option<String>,
    /// IANA zone of the staff member (TimeTap `staff.timeZoneCode.timeZoneCode`).
    pub time_zone: Option<String>,
    /// Service vendor ids this staff member performs, when the delivery lists them.
    pub service_ids: Option<Vec<String>>,
    pub version: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServiceChange {
    pub vendor_id: String,
    pub action: Action,
    pub name: Option<String>,
    pub duration_minutes: Option<i32>,
    /// Staff vendor ids assigned to this service, when the delivery lists them.
    pub staff_ids: Option<Vec<String>>,
    pub version: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LocationChange {
    pub vendor_id: String,
    pub action: Action,
    pub name: Option<String>,
    pub kind: Option<String>,
}

/// A Chup live-queue ticket (Chup's alert API calls it a visit).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueEntryChange {
    pub vendor_id: String,
    pub action: Action,
    pub client_id: Option<String>,
    pub service_id: Option<String>,
    pub staff_id: Option<String>,
    pub appointment_id: Option<String>,
    pub state: Option<QueueState>,
    /// The clinic-local day the ticket belongs to (the `queue(serviceId, date)` board).
    pub queue_date: Option<chrono::NaiveDate>,
    /// The vendor's UTC offset or zone as sent ("+08:00").
    pub time_zone: Option<String>,
    pub notes: Option<serde_json::Value>,
    pub vendor_created_at: Option<DateTime<Utc>>,
    pub version: Option<DateTime<Utc>>,
}

/// Normalized live-queue state; the raw code/name/label are always kept beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    pub kind: QueueStateKind,
    pub raw_code: Option<i64>,
    pub raw_name: Option<String>,
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppointmentChange {
    pub vendor_id: String,
    pub action: Action,
    pub client_id: Option<String>,
    pub staff_id: Option<String>,
    pub service_id: Option<String>,
    pub location_id: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// The vendor's zone or offset the times were given in.
    pub time_zone: Option<String>,
    pub status: Option<AppointmentStatus>,
    pub title: Option<String>,
    pub notes: Option<String>,
    pub custom_fields: Option<serde_json::Value>,
    pub version: Option<DateTime<Utc>>,
    /// TimeTap only (it sends no version and no event id): sha256 hex of the delivered
    /// appointment re-serialized canonically (keys sorted, no whitespace). Equal to the stored
    /// appointment's fingerprint ⇒ the delivery changes nothing (a duplicate).
    pub fingerprint: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppointmentStatus {
    pub kind: AppointmentStatusKind,
    /// The vendor's status text as sent (TimeTap `status`, vCita event, Chup state).
    pub raw: Option<String>,
    /// TimeTap's free-form sub-status (CHECKEDIN, custom ones).
    pub raw_sub_status: Option<String>,
}

/// A VSee telehealth visit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VisitChange {
    pub vendor_id: String,
    pub action: Action,
    /// VSee `member_id` (the patient), stored as a client of the source.
    pub client_id: Option<String>,
    /// VSee `provider_id`, stored as staff of the source.
    pub staff_id: Option<String>,
    pub scheduled_start: Option<DateTime<Utc>>,
    pub scheduled_end: Option<DateTime<Utc>>,
    pub actual_start: Option<DateTime<Utc>>,
    pub actual_end: Option<DateTime<Utc>>,
    pub status: Option<VisitStatus>,
    pub status_updated_by: Option<String>,
    pub note: Option<VisitNote>,
    pub invoice: Option<Invoice>,
    /// "1.0" or "2.0".
    pub payload_version: Option<String>,
    pub version: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VisitStatusKind {
    Pending,
    Confirmed,
    InProgress,
    Completed,
    Cancelled,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitStatus {
    pub kind: VisitStatusKind,
    /// v1 code ("40") or v2 name ("completed") as sent.
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitNote {
    pub id: Option<String>,
    /// new | signed | draft, as sent.
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: Option<String>,
    /// pending | processing | paid | closed | forgiven | cancelled | failed | refunded, as sent.
    pub status: Option<String>,
    /// Minor units (cents).
    pub amount_due: Option<i64>,
    pub amount_paid: Option<i64>,
    pub currency: Option<String>,
}

/// A vCita payment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PaymentChange {
    pub vendor_id: String,
    pub action: Action,
    pub client_id: Option<String>,
    /// The amount as the vendor sent it (vCita does not state the unit), as decimal text.
    pub amount: Option<String>,
    pub currency: Option<String>,
    /// paid | pending | refunded …, as sent.
    pub state: Option<String>,
    pub payment_method: Option<String>,
    pub title: Option<String>,
    pub version: Option<DateTime<Utc>>,
}
