//! vCita (inTandem): mappers for `{entity_name, event_type, data, ...}` deliveries of clients,
//! appointments and payments.
//!
//! vCita signs nothing; the URL token checked in `mod.rs` is the whole authentication. The body
//! shape is the current platform's (VENDORS.md § vCita V6–V9); the legacy hook.vcita.com body is
//! undocumented and assumed to be the same. `event_type` is not trusted to say what happened
//! (vCita's own "client created" sample says `updated`): clients and payments are upserted either
//! way, and only appointment status is read from it. Platform aliases are accepted (lead →
//! client, meeting → appointment). Directory-level events (`pivot/event`, `pivot/update`,
//! account/business) are well-formed but change no clinic entity, so they are `Unsupported`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::wire::{self, describe_json_error, instant, opt_id, opt_int, opt_text};
use super::{Delivery, MapError, Rejection};
use crate::domain::{
    Action, AppointmentChange, AppointmentStatus, AppointmentStatusKind, Change, ClientChange,
    MapOutcome, Normalized, PaymentChange, ServiceChange, StaffChange,
};

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, deserialize_with = "opt_text")]
    entity_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    event_type: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The clinic entities vCita deliveries can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entity {
    Client,
    Appointment,
    Payment,
}

/// Fields needed for the dedupe key, read leniently before the entity is mapped.
#[derive(Deserialize, Default)]
struct Probe {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    client_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    appointment_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    payment_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    updated_at: Option<String>,
}

/// Event types (`entity_name/event_type`) of the deliveries in the vendor's documents: the
/// metric labels of vCita events (anything else is counted as `other`).
pub(super) const EVENT_TYPES: &[&str] = &[
    "client/created",
    "client/updated",
    "client/deleted",
    "appointment/created",
    "appointment/updated",
    "appointment/deleted",
    "appointment/scheduled",
    "appointment/rescheduled",
    "appointment/cancelled",
    "payment/created",
    "payment/updated",
    "payment/deleted",
    "payment/paid",
    "account/closed",
    "pivot/event",
    "pivot/update",
];

pub(super) fn normalize(body: &[u8]) -> Result<Delivery, Rejection> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Rejection::new(format!(
                "body is not a vCita delivery: {}",
                describe_json_error(&e)
            )),
            _ => Rejection::new(format!("body is not JSON: {}", describe_json_error(&e))),
        }
    })?;
    if !wire::is_object_text(body) {
        return Err(Rejection::new("vcita delivery is not a JSON object"));
    }
    let entity_name = non_blank(envelope.entity_name)
        .ok_or_else(|| Rejection::new("vcita delivery has no `entity_name`"))?;
    let event = non_blank(envelope.event_type)
        .ok_or_else(|| Rejection::new("vcita delivery has no `event_type`"))?;
    let event_type = format!("{entity_name}/{event}");
    let data = envelope
        .data
        .filter(|d| wire::is_object_text(d.get().as_bytes()));

    let entity = match wire::enum_key(&entity_name).to_ascii_lowercase().as_str() {
        "client" | "clients" | "lead" | "leads" => Some(Entity::Client),
        "appointment" | "appointments" | "meeting" | "meetings" => Some(Entity::Appointment),
        "payment" | "payments" => Some(Entity::Payment),
        _ => None,
    };
    let probe: Probe = data
        .and_then(|d| serde_json::from_str(d.get()).ok())
        .unwrap_or_default();
    let entity_id = match entity {
        Some(Entity::Client) => probe.client_id.or(probe.id),
        Some(Entity::Appointment) => probe.appointment_id.or(probe.id),
        Some(Entity::Payment) => probe.payment_id.or(probe.id),
        None => probe.id,
    };
    let dedupe_key = match (entity_id, probe.updated_at) {
        (Some(id), Some(updated_at)) => format!("{entity_name}/{event}/{id}/{updated_at}"),
        // The digest of the canonical JSON, not of the bytes: a redelivery with other spacing
        // or key order is the same delivery.
        _ => format!("sha256:{}", body_digest(body)),
    };

    let outcome = match entity {
        Some(entity) => map_entity(entity, &event_type, &event, data),
        None => Ok(unsupported(&event_type, &entity_name)),
    };
    Ok(Delivery {
        event_type: Some(event_type),
        dedupe_key: Some(dedupe_key),
        outcome,
    })
}

/// SHA-256 hex of the body's canonical JSON (the body parsed as an envelope, so it is JSON).
fn body_digest(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => wire::sha256_hex(wire::canonical_json(&value).as_bytes()),
        Err(_) => wire::sha256_hex(body),
    }
}

fn non_blank(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

fn unsupported(event_type: &str, entity_name: &str) -> MapOutcome {
    let key = entity_name.trim().to_ascii_lowercase();
    let reason = if key.starts_with("pivot")
        || matches!(key.as_str(), "account" | "business" | "directory")
    {
        "vCita directory-level event about the business account: there is no clinic entity to change".to_owned()
    } else {
        format!(
            "vCita entity `{entity_name}` is not one CareBridge maps (clients, appointments, payments)"
        )
    };
    MapOutcome::Unsupported {
        event_type: event_type.to_owned(),
        reason,
    }
}

fn map_entity(
    entity: Entity,
    event_type: &str,
    event: &str,
    data: Option<&RawValue>,
) -> Result<MapOutcome, MapError> {
    let raw =
        data.ok_or_else(|| MapError::new(format!("vcita `{event_type}` has no `data` object")))?;
    let action = match wire::enum_key(event).as_str() {
        "DELETED" | "DELETE" => Action::Delete,
        _ => Action::Upsert,
    };
    let parse_error = |e: serde_json::Error| {
        MapError::new(format!(
            "vcita `{event_type}` `data`: {}",
            describe_json_error(&e)
        ))
    };
    let (occurred_at, changes) = match entity {
        Entity::Client => client(
            serde_json::from_str(raw.get()).map_err(parse_error)?,
            action,
            event_type,
        )?,
        Entity::Appointment => appointment(
            serde_json::from_str(raw.get()).map_err(parse_error)?,
            action,
            event,
            event_type,
        )?,
        Entity::Payment => payment(
            serde_json::from_str(raw.get()).map_err(parse_error)?,
            action,
            event,
            event_type,
        )?,
    };
    Ok(MapOutcome::Mapped(Normalized {
        event_type: event_type.to_owned(),
        occurred_at,
        changes,
    }))
}

fn utc(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, MapError> {
    Ok(instant(field, raw)?.map(|t| t.with_timezone(&Utc)))
}

fn required_id(id: Option<String>, field: &str, event_type: &str) -> Result<String, MapError> {
    id.ok_or_else(|| MapError::new(format!("vcita `{event_type}` has no `data.{field}`")))
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(default, deserialize_with = "opt_id")]
    client_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    first_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    last_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    full_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    phone: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    email: Option<String>,
    #[serde(default)]
    custom_fields: Option<Value>,
    #[serde(default, deserialize_with = "opt_text")]
    updated_at: Option<String>,
}

type Mapped = (Option<DateTime<Utc>>, Vec<Change>);

fn client(d: ClientData, action: Action, event_type: &str) -> Result<Mapped, MapError> {
    let vendor_id = required_id(d.client_id.or(d.id), "client_id", event_type)?;
    let version = utc("data.updated_at", d.updated_at.as_deref())?;
    let full_name = d
        .full_name
        .or_else(|| wire::join_name(d.first_name.as_deref(), d.last_name.as_deref()));
    let change = ClientChange {
        vendor_id,
        action,
        first_name: d.first_name,
        last_name: d.last_name,
        full_name,
        // vCita's phone format is free text: only `+`-prefixed numbers are normalized.
        phone: wire::phone(d.phone.as_deref(), false),
        email: d.email,
        custom_fields: d.custom_fields.filter(|v| !v.is_null()),
        version,
    };
    Ok((version, vec![Change::Client(change)]))
}

#[derive(Deserialize)]
struct AppointmentData {
    #[serde(default, deserialize_with = "opt_id")]
    appointment_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    client_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    staff_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    service_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    service_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    title: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    start_time: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    end_time: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    duration: Option<i64>,
    #[serde(default, deserialize_with = "opt_text")]
    notes: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    updated_at: Option<String>,
}

fn appointment(
    d: AppointmentData,
    action: Action,
    event: &str,
    event_type: &str,
) -> Result<Mapped, MapError> {
    let vendor_id = required_id(d.appointment_id.or(d.id), "appointment_id", event_type)?;
    let version = utc("data.updated_at", d.updated_at.as_deref())?;
    let start = instant("data.start_time", d.start_time.as_deref())?;
    let end = instant("data.end_time", d.end_time.as_deref())?;
    let starts_at = start.map(|s| s.with_timezone(&Utc));
    let ends_at = match (end, starts_at, d.duration) {
        (Some(e), _, _) => Some(e.with_timezone(&Utc)),
        (None, Some(s), Some(minutes)) if (0..=24 * 60).contains(&minutes) => {
            Some(s + chrono::Duration::minutes(minutes))
        }
        _ => None,
    };

    // Referenced entities first, as bare ids: the store creates or keeps them.
    let mut changes = Vec::new();
    if let Some(id) = &d.client_id {
        changes.push(Change::Client(ClientChange {
            vendor_id: id.clone(),
            ..ClientChange::default()
        }));
    }
    if let Some(id) = &d.staff_id {
        changes.push(Change::Staff(StaffChange {
            vendor_id: id.clone(),
            ..StaffChange::default()
        }));
    }
    if let Some(id) = &d.service_id {
        changes.push(Change::Service(ServiceChange {
            vendor_id: id.clone(),
            name: d.service_name,
            ..ServiceChange::default()
        }));
    }
    changes.push(Change::Appointment(AppointmentChange {
        vendor_id,
        action,
        client_id: d.client_id,
        staff_id: d.staff_id,
        service_id: d.service_id,
        starts_at,
        ends_at,
        time_zone: start.or(end).as_ref().map(wire::offset_text),
        status: appointment_status(event, d.status.or(d.state)),
        title: d.title,
        notes: d.notes,
        version,
        ..AppointmentChange::default()
    }));
    Ok((version, changes))
}

/// Status from the event name (scheduled, rescheduled, cancelled, …). A plain `updated` says
/// nothing about status: then a `status`/`state` field in `data` decides, and without one the
/// status is left `None` so the store keeps what it has instead of overwriting it with `Other`.
fn appointment_status(event: &str, data_status: Option<String>) -> Option<AppointmentStatus> {
    let from_event = classify_appointment(event);
    let (kind, raw) = match (from_event, wire::enum_key(event).as_str(), data_status) {
        (Some(kind), _, _) => (kind, event.to_owned()),
        (None, "UPDATED" | "UPDATE", Some(status)) => (
            classify_appointment(&status).unwrap_or(AppointmentStatusKind::Other),
            status,
        ),
        (None, "UPDATED" | "UPDATE", None) => return None,
        (None, _, _) => (AppointmentStatusKind::Other, event.to_owned()),
    };
    Some(AppointmentStatus {
        kind,
        raw: Some(raw),
        raw_sub_status: None,
    })
}

fn classify_appointment(raw: &str) -> Option<AppointmentStatusKind> {
    let kind = match wire::enum_key(raw).as_str() {
        "SCHEDULED" | "CREATED" | "BOOKED" | "REQUESTED" => AppointmentStatusKind::Booked,
        "CONFIRMED" | "ACCEPTED" => AppointmentStatusKind::Confirmed,
        "RESCHEDULED" => AppointmentStatusKind::Rescheduled,
        "CANCELLED" | "CANCELED" | "DELETED" => AppointmentStatusKind::Cancelled,
        "COMPLETED" => AppointmentStatusKind::Completed,
        "NO_SHOW" | "NOSHOW" => AppointmentStatusKind::NoShow,
        _ => return None,
    };
    Some(kind)
}

#[derive(Deserialize)]
struct PaymentData<'a> {
    #[serde(default, deserialize_with = "opt_id")]
    payment_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    client_id: Option<String>,
    /// Raw so a number keeps its exact decimal spelling (`12.50` is not `12.5`).
    #[serde(borrow, default)]
    amount: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "opt_text")]
    currency: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    state: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    payment_method: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    title: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    updated_at: Option<String>,
}

fn payment(
    d: PaymentData<'_>,
    action: Action,
    event: &str,
    event_type: &str,
) -> Result<Mapped, MapError> {
    let vendor_id = required_id(d.payment_id.or(d.id), "payment_id", event_type)?;
    let version = utc("data.updated_at", d.updated_at.as_deref())?;
    let amount = match d.amount.map(|a| a.get().trim()) {
        None | Some("null") => None,
        Some(text) if text.starts_with('"') => serde_json::from_str::<String>(text)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        Some(text) if text.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) => {
            Some(text.to_owned())
        }
        Some(_) => {
            return Err(MapError::new(format!(
                "vcita `{event_type}` `data.amount` is not a number"
            )));
        }
    };
    // A `paid` event without a state field still says what state the payment is in.
    let state = d
        .state
        .or_else(|| (wire::enum_key(event) == "PAID").then(|| "paid".to_owned()));
    let mut changes = Vec::new();
    if let Some(id) = &d.client_id {
        changes.push(Change::Client(ClientChange {
            vendor_id: id.clone(),
            ..ClientChange::default()
        }));
    }
    changes.push(Change::Payment(PaymentChange {
        vendor_id,
        action,
        client_id: d.client_id,
        amount,
        currency: d.currency,
        state,
        payment_method: d.payment_method,
        title: d.title,
        version,
    }));
    Ok((version, changes))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::Vendor;
    use crate::vendors::tests::{deliver, deliver_json, fixture, mapped, utc};

    fn appointment_of(name: &str) -> AppointmentChange {
        let (_, n) = mapped(Vendor::Vcita, name);
        n.changes
            .into_iter()
            .find_map(|c| {
                if let Change::Appointment(a) = c {
                    Some(a)
                } else {
                    None
                }
            })
            .expect("an appointment change")
    }

    fn payment_of(name: &str) -> PaymentChange {
        let (_, n) = mapped(Vendor::Vcita, name);
        n.changes
            .into_iter()
            .find_map(|c| {
                if let Change::Payment(p) = c {
                    Some(p)
                } else {
                    None
                }
            })
            .expect("a payment")
    }

    #[test]
    fn client_created_maps_names_phone_custom_fields_and_version() {
        let (delivery, n) = mapped(Vendor::Vcita, "client_created");
        assert_eq!(delivery.event_type.as_deref(), Some("client/created"));
        assert_eq!(
            delivery.dedupe_key.as_deref(),
            Some("client/created/c7h2k9p4m1x8z3q6/2023-04-24T18:28:10.000+03:00")
        );
        assert_eq!(n.occurred_at, Some(utc("2023-04-24T15:28:10Z")));
        assert_eq!(
            n.changes,
            vec![Change::Client(ClientChange {
                vendor_id: "c7h2k9p4m1x8z3q6".into(),
                action: Action::Upsert,
                first_name: Some("Dana".into()),
                last_name: Some("Levi".into()),
                full_name: Some("Dana Levi".into()),
                phone: Some("+972541234567".into()),
                email: Some("dana.levi@example.co.il".into()),
                custom_fields: Some(
                    json!({"Preferred language": "Hebrew", "Referred by": "Instagram"})
                ),
                version: Some(utc("2023-04-24T15:28:10Z")),
            })]
        );
    }

    #[test]
    fn client_updated_and_deleted_upsert_and_delete() {
        let (_, n) = mapped(Vendor::Vcita, "client_updated");
        assert!(
            matches!(&n.changes[0], Change::Client(c) if c.phone.as_deref() == Some("+972547654321") && c.action == Action::Upsert)
        );
        let (_, n) = mapped(Vendor::Vcita, "client_deleted");
        assert!(
            matches!(&n.changes[0], Change::Client(c) if c.action == Action::Delete && c.vendor_id == "k1m9n2b8v3c7x4z5")
        );
    }

    #[test]
    fn the_platform_aliases_lead_and_meeting_are_clients_and_appointments() {
        let lead = deliver_json(Vendor::Vcita, &json!({"entity_name": "lead", "event_type": "created", "data": {"client_id": "abc", "first_name": "A"}})).unwrap();
        assert!(
            matches!(lead.outcome, Ok(MapOutcome::Mapped(n)) if matches!(&n.changes[0], Change::Client(c) if c.vendor_id == "abc"))
        );
        let meeting = deliver_json(Vendor::Vcita, &json!({"entity_name": "meeting", "event_type": "scheduled", "data": {"appointment_id": "m1"}})).unwrap();
        assert!(
            matches!(meeting.outcome, Ok(MapOutcome::Mapped(n)) if matches!(&n.changes[0], Change::Appointment(a) if a.vendor_id == "m1"))
        );
    }

    #[test]
    fn appointment_scheduled_is_booked_with_utc_times_and_referenced_client_and_staff_first() {
        let (delivery, n) = mapped(Vendor::Vcita, "appointment_scheduled");
        // The V7 sample has no updated_at, so the dedupe key falls back to the hash of the
        // body's canonical JSON (the same whatever its spacing or key order).
        let expected = format!(
            "sha256:{}",
            body_digest(&fixture("vcita", "appointment_scheduled"))
        );
        let compact: serde_json::Value =
            serde_json::from_slice(&fixture("vcita", "appointment_scheduled")).unwrap_or_default();
        let respaced = normalize(&serde_json::to_vec(&compact).unwrap_or_default());
        assert_eq!(
            respaced.map(|d| d.dedupe_key).ok(),
            Some(Some(expected.clone()))
        );
        assert_eq!(delivery.dedupe_key, Some(expected));
        assert_eq!(n.occurred_at, None);
        assert!(
            matches!(&n.changes[0], Change::Client(c) if c.vendor_id == "c7h2k9p4m1x8z3q6" && c.full_name.is_none())
        );
        assert!(matches!(&n.changes[1], Change::Staff(s) if s.vendor_id == "s3n8v1c5x7b2m4k9"));
        let a = appointment_of("appointment_scheduled");
        assert_eq!(a.starts_at, Some(utc("2023-05-08T07:00:00Z")));
        assert_eq!(a.ends_at, Some(utc("2023-05-08T07:45:00Z")));
        assert_eq!(a.time_zone.as_deref(), Some("+03:00"));
        assert_eq!(a.title.as_deref(), Some("Initial consultation"));
        assert_eq!(
            a.status,
            Some(AppointmentStatus {
                kind: AppointmentStatusKind::Booked,
                raw: Some("scheduled".into()),
                raw_sub_status: None
            })
        );
    }

    #[test]
    fn appointment_status_follows_the_event_name() {
        let cases = [
            (
                "appointment_created",
                Some(AppointmentStatusKind::Booked),
                Action::Upsert,
            ),
            (
                "appointment_rescheduled",
                Some(AppointmentStatusKind::Rescheduled),
                Action::Upsert,
            ),
            (
                "appointment_cancelled",
                Some(AppointmentStatusKind::Cancelled),
                Action::Upsert,
            ),
            (
                "appointment_deleted",
                Some(AppointmentStatusKind::Cancelled),
                Action::Delete,
            ),
            // `updated` says nothing about status: the stored one is kept.
            ("appointment_updated", None, Action::Upsert),
        ];
        for (name, kind, action) in cases {
            let a = appointment_of(name);
            assert_eq!(a.status.map(|s| s.kind), kind, "{name}");
            assert_eq!(a.action, action, "{name}");
        }
        assert_eq!(
            appointment_of("appointment_rescheduled").starts_at,
            Some(utc("2023-05-09T10:30:00Z"))
        );
    }

    #[test]
    fn other_event_names_keep_the_raw_event_as_status() {
        for (event, kind) in [
            ("no_show", AppointmentStatusKind::NoShow),
            ("completed", AppointmentStatusKind::Completed),
            ("reminder_sent", AppointmentStatusKind::Other),
        ] {
            let d = deliver_json(Vendor::Vcita, &json!({"entity_name": "appointment", "event_type": event, "data": {"appointment_id": "a"}})).unwrap();
            let Ok(MapOutcome::Mapped(n)) = d.outcome else {
                panic!("{event}")
            };
            let Change::Appointment(a) = &n.changes[0] else {
                panic!()
            };
            assert_eq!(
                a.status,
                Some(AppointmentStatus {
                    kind,
                    raw: Some(event.into()),
                    raw_sub_status: None
                })
            );
        }
    }

    #[test]
    fn payments_keep_the_amount_as_sent_and_their_state() {
        let p = payment_of("payment_paid");
        assert_eq!(p.vendor_id, "p5q8w2e7r1t4y9u3");
        assert_eq!(p.amount.as_deref(), Some("333"));
        assert_eq!(p.currency.as_deref(), Some("ILS"));
        assert_eq!(p.state.as_deref(), Some("paid"));
        assert_eq!(p.payment_method.as_deref(), Some("Bank Transfer"));
        assert_eq!(p.client_id.as_deref(), Some("c7h2k9p4m1x8z3q6"));
        assert_eq!(p.version, Some(utc("2023-05-09T11:41:27Z")));
        assert_eq!(
            payment_of("payment_created").state.as_deref(),
            Some("pending")
        );
        assert_eq!(
            payment_of("payment_updated").state.as_deref(),
            Some("refunded")
        );
        let deleted = payment_of("payment_deleted");
        assert_eq!(
            (deleted.action, deleted.amount.as_deref()),
            (Action::Delete, Some("12.50"))
        );
    }

    #[test]
    fn a_decimal_amount_keeps_its_exact_spelling() {
        let body = br#"{"entity_name":"payment","event_type":"paid","data":{"payment_id":"p","amount":12.50}}"#.to_vec();
        let Ok(MapOutcome::Mapped(n)) = deliver(Vendor::Vcita, body).unwrap().outcome else {
            panic!()
        };
        let Change::Payment(p) = &n.changes[0] else {
            panic!()
        };
        assert_eq!(
            (p.amount.as_deref(), p.state.as_deref()),
            (Some("12.50"), Some("paid"))
        );
        let bad = deliver_json(Vendor::Vcita, &json!({"entity_name": "payment", "event_type": "paid", "data": {"payment_id": "p", "amount": {"v": 1}}})).unwrap();
        assert!(bad.outcome.unwrap_err().message().contains("data.amount"));
    }

    #[test]
    fn directory_events_are_unsupported_with_a_clear_reason() {
        for name in ["pivot_event", "pivot_update", "account_closed"] {
            let delivery = deliver(Vendor::Vcita, fixture("vcita", name)).unwrap();
            match delivery.outcome {
                Ok(MapOutcome::Unsupported { reason, .. }) => {
                    assert!(reason.contains("no clinic entity"), "{reason}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        let d = deliver(Vendor::Vcita, fixture("vcita", "pivot_update")).unwrap();
        assert_eq!(d.event_type.as_deref(), Some("pivot/update"));
    }

    #[test]
    fn an_entity_nobody_maps_is_unsupported() {
        let d = deliver_json(
            Vendor::Vcita,
            &json!({"entity_name": "invoice", "event_type": "issued", "data": {"id": "i"}}),
        )
        .unwrap();
        assert!(
            matches!(d.outcome, Ok(MapOutcome::Unsupported { event_type, .. }) if event_type == "invoice/issued")
        );
    }

    #[test]
    fn a_body_without_the_envelope_is_rejected() {
        let r = deliver_json(
            Vendor::Vcita,
            &json!({"uid": "x", "email": "a@b", "name": "bare account"}),
        )
        .unwrap_err();
        assert_eq!(r.message(), "vcita delivery has no `entity_name`");
        let r =
            deliver_json(Vendor::Vcita, &json!({"entity_name": "client", "data": {}})).unwrap_err();
        assert_eq!(r.message(), "vcita delivery has no `event_type`");
        let r = deliver_json(Vendor::Vcita, &json!(["client", "created", {}])).unwrap_err();
        assert_eq!(r.message(), "vcita delivery is not a JSON object");
        let r = deliver_json(Vendor::Vcita, &json!("client")).unwrap_err();
        assert!(
            r.message().starts_with("body is not a vCita delivery"),
            "{r}"
        );
    }

    #[test]
    fn missing_data_or_id_and_bad_timestamps_fail_mapping() {
        let d = deliver_json(
            Vendor::Vcita,
            &json!({"entity_name": "client", "event_type": "created"}),
        )
        .unwrap();
        assert!(d.outcome.unwrap_err().message().contains("no `data`"));
        let d = deliver_json(
            Vendor::Vcita,
            &json!({"entity_name": "client", "event_type": "created", "data": {"first_name": "x"}}),
        )
        .unwrap();
        assert!(d.outcome.unwrap_err().message().contains("data.client_id"));
        let d = deliver_json(Vendor::Vcita, &json!({"entity_name": "client", "event_type": "updated", "data": {"client_id": "c", "updated_at": "29/10/2019"}})).unwrap();
        assert!(d.outcome.unwrap_err().message().contains("data.updated_at"));
    }
}
