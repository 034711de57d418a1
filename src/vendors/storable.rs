//! What a delivery may carry into the database: the values both backends store alike.
//!
//! SQLite stores almost anything; PostgreSQL refuses a NUL character in `text` and `jsonb`,
//! a btree index entry over about 2.7 KB, and instants before 4713 BC. A value only one of them
//! refuses used to be `PROCESSED` on one and `FAILED` (or, inside a group-commit batch, a 503
//! for the whole batch) on the other. So every mapped delivery passes through [`fit`] at the
//! dispatch point, before anything is written: a value outside the common ground turns the
//! outcome into a [`MapError`] naming the field and the rule (stored `FAILED`, raw bytes kept,
//! reprocessable), and the few values the inbox row itself needs (event type, dedupe key,
//! messages) are made storable rather than refused. Pure, like the rest of the vendor layer.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::Value;

use super::{Delivery, MapError, Rejection, wire};
use crate::domain::{
    AppointmentChange, Change, ClientChange, Invoice, LocationChange, MapOutcome, Normalized,
    PaymentChange, QueueEntryChange, ServiceChange, StaffChange, VisitChange, VisitNote,
};

/// Longest value stored in an indexed column (vendor ids, phone, email, dedupe key). PostgreSQL
/// refuses a btree entry over 2,704 bytes after compression; 512 leaves room for the other
/// columns of a composite index and is far above any real id or address.
pub const MAX_KEY_BYTES: usize = 512;

/// Instants are stored only within these years: PostgreSQL refuses years before 4713 BC, and
/// SQLite's text timestamps sort correctly only with four-digit years.
const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// Makes a delivery storable on both backends (see the module docs).
pub(super) fn fit(result: Result<Delivery, Rejection>) -> Result<Delivery, Rejection> {
    let delivery = match result {
        Ok(delivery) => delivery,
        Err(rejection) => return Err(Rejection::new(text(rejection.message()))),
    };
    let problem = delivery
        .event_type
        .as_deref()
        .and_then(|event| check_text("event type", event).err())
        .or_else(|| match &delivery.outcome {
            Ok(MapOutcome::Mapped(normalized)) => check_normalized(normalized).err(),
            _ => None,
        });
    let outcome = match (problem, delivery.outcome) {
        (Some(problem), _) => Err(problem),
        (None, Ok(MapOutcome::Unsupported { event_type, reason })) => Ok(MapOutcome::Unsupported {
            event_type: text(&event_type),
            reason: text(&reason),
        }),
        (None, Err(error)) => Err(MapError::new(text(error.message()))),
        (None, mapped) => mapped,
    };
    Ok(Delivery {
        event_type: delivery.event_type.as_deref().map(text),
        dedupe_key: delivery.dedupe_key.as_deref().map(key),
        outcome,
    })
}

/// Text for the inbox row: a NUL becomes U+FFFD, so the operator still sees where it was.
fn text(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}

/// A dedupe key both backends can index: kept as is when it fits, else its digest (which
/// identifies the same delivery as well as the key did).
fn key(value: &str) -> String {
    if value.len() <= MAX_KEY_BYTES && !value.contains('\0') {
        value.to_owned()
    } else {
        format!("sha256:{}", wire::sha256_hex(value.as_bytes()))
    }
}

fn nul(field: &str) -> MapError {
    MapError::new(format!(
        "`{field}` contains a NUL character (U+0000), which the gateway does not store"
    ))
}

fn check_text(field: &str, value: &str) -> Result<(), MapError> {
    if value.contains('\0') {
        Err(nul(field))
    } else {
        Ok(())
    }
}

fn check_opt_text(field: &str, value: Option<&str>) -> Result<(), MapError> {
    value.map_or(Ok(()), |value| check_text(field, value))
}

/// A value that is indexed or looked up by: no NUL, at most [`MAX_KEY_BYTES`].
fn check_key(field: &str, value: &str) -> Result<(), MapError> {
    check_text(field, value)?;
    if value.len() > MAX_KEY_BYTES {
        return Err(MapError::new(format!(
            "`{field}` is longer than {MAX_KEY_BYTES} bytes, the most the gateway stores in a key"
        )));
    }
    Ok(())
}

fn check_opt_key(field: &str, value: Option<&str>) -> Result<(), MapError> {
    value.map_or(Ok(()), |value| check_key(field, value))
}

fn check_keys(field: &str, values: Option<&[String]>) -> Result<(), MapError> {
    values
        .unwrap_or_default()
        .iter()
        .try_for_each(|value| check_key(field, value))
}

/// JSON stored as `jsonb`: no NUL in any string or object key.
fn check_json(field: &str, value: Option<&Value>) -> Result<(), MapError> {
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(text) => text.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    match value {
        Some(value) if has_nul(value) => Err(nul(field)),
        _ => Ok(()),
    }
}

fn check_year(field: &str, year: i32) -> Result<(), MapError> {
    if YEARS.contains(&year) {
        Ok(())
    } else {
        Err(MapError::new(format!(
            "`{field}` is outside the years {}–{} the gateway stores",
            YEARS.start(),
            YEARS.end()
        )))
    }
}

fn check_instant(field: &str, value: Option<DateTime<Utc>>) -> Result<(), MapError> {
    value.map_or(Ok(()), |at| check_year(field, at.year()))
}

fn check_date(field: &str, value: Option<NaiveDate>) -> Result<(), MapError> {
    value.map_or(Ok(()), |day| check_year(field, day.year()))
}

/// Every value of every change. The structs are destructured without `..`, so a field added to
/// the domain does not compile until it is checked here.
fn check_normalized(normalized: &Normalized) -> Result<(), MapError> {
    let Normalized {
        event_type,
        occurred_at,
        changes,
    } = normalized;
    check_text("event type", event_type)?;
    check_instant("occurred_at", *occurred_at)?;
    changes.iter().try_for_each(check_change)
}

fn check_change(change: &Change) -> Result<(), MapError> {
    match change {
        Change::Client(change) => check_client(change),
        Change::Staff(change) => check_staff(change),
        Change::Service(change) => check_service(change),
        Change::Location(change) => check_location(change),
        Change::QueueEntry(change) => check_queue_entry(change),
        Change::Appointment(change) => check_appointment(change),
        Change::Visit(change) => check_visit(change),
        Change::Payment(change) => check_payment(change),
    }
}

fn check_client(change: &ClientChange) -> Result<(), MapError> {
    let ClientChange {
        vendor_id,
        action: _,
        first_name,
        last_name,
        full_name,
        phone,
        email,
        custom_fields,
        version,
    } = change;
    check_key("client.id", vendor_id)?;
    check_opt_text("client.first_name", first_name.as_deref())?;
    check_opt_text("client.last_name", last_name.as_deref())?;
    check_opt_text("client.full_name", full_name.as_deref())?;
    check_opt_key("client.phone", phone.as_deref())?;
    check_opt_key("client.email", email.as_deref())?;
    check_json("client.custom_fields", custom_fields.as_ref())?;
    check_instant("client.version", *version)
}

fn check_staff(change: &StaffChange) -> Result<(), MapError> {
    let StaffChange {
        vendor_id,
        action: _,
        name,
        email,
        time_zone,
        service_ids,
        version,
    } = change;
    check_key("staff.id", vendor_id)?;
    check_opt_text("staff.name", name.as_deref())?;
    check_opt_text("staff.email", email.as_deref())?;
    check_opt_text("staff.time_zone", time_zone.as_deref())?;
    check_keys("staff.service_ids", service_ids.as_deref())?;
    check_instant("staff.version", *version)
}

fn check_service(change: &ServiceChange) -> Result<(), MapError> {
    let ServiceChange {
        vendor_id,
        action: _,
        name,
        duration_minutes: _,
        staff_ids,
        version,
    } = change;
    check_key("service.id", vendor_id)?;
    check_opt_text("service.name", name.as_deref())?;
    check_keys("service.staff_ids", staff_ids.as_deref())?;
    check_instant("service.version", *version)
}

fn check_location(change: &LocationChange) -> Result<(), MapError> {
    let LocationChange {
        vendor_id,
        action: _,
        name,
        kind,
    } = change;
    check_key("location.id", vendor_id)?;
    check_opt_text("location.name", name.as_deref())?;
    check_opt_text("location.kind", kind.as_deref())
}

fn check_queue_entry(change: &QueueEntryChange) -> Result<(), MapError> {
    let QueueEntryChange {
        vendor_id,
        action: _,
        client_id,
        service_id,
        staff_id,
        appointment_id,
        state,
        queue_date,
        time_zone,
        notes,
        vendor_created_at,
        version,
    } = change;
    check_key("queue_entry.id", vendor_id)?;
    check_opt_key("queue_entry.client_id", client_id.as_deref())?;
    check_opt_key("queue_entry.service_id", service_id.as_deref())?;
    check_opt_key("queue_entry.staff_id", staff_id.as_deref())?;
    check_opt_key("queue_entry.appointment_id", appointment_id.as_deref())?;
    if let Some(state) = state {
        check_opt_text("queue_entry.state_name", state.raw_name.as_deref())?;
        check_opt_text("queue_entry.state_label", state.label.as_deref())?;
    }
    check_date("queue_entry.queue_date", *queue_date)?;
    check_opt_text("queue_entry.time_zone", time_zone.as_deref())?;
    check_json("queue_entry.notes", notes.as_ref())?;
    check_instant("queue_entry.created_at", *vendor_created_at)?;
    check_instant("queue_entry.version", *version)
}

fn check_appointment(change: &AppointmentChange) -> Result<(), MapError> {
    let AppointmentChange {
        vendor_id,
        action: _,
        client_id,
        staff_id,
        service_id,
        location_id,
        starts_at,
        ends_at,
        time_zone,
        status,
        title,
        notes,
        custom_fields,
        version,
        fingerprint,
    } = change;
    check_key("appointment.id", vendor_id)?;
    check_opt_key("appointment.client_id", client_id.as_deref())?;
    check_opt_key("appointment.staff_id", staff_id.as_deref())?;
    check_opt_key("appointment.service_id", service_id.as_deref())?;
    check_opt_key("appointment.location_id", location_id.as_deref())?;
    check_instant("appointment.starts_at", *starts_at)?;
    check_instant("appointment.ends_at", *ends_at)?;
    check_opt_text("appointment.time_zone", time_zone.as_deref())?;
    if let Some(status) = status {
        check_opt_text("appointment.status", status.raw.as_deref())?;
        check_opt_text("appointment.sub_status", status.raw_sub_status.as_deref())?;
    }
    check_opt_text("appointment.title", title.as_deref())?;
    check_opt_text("appointment.notes", notes.as_deref())?;
    check_json("appointment.custom_fields", custom_fields.as_ref())?;
    check_instant("appointment.version", *version)?;
    check_opt_text("appointment.fingerprint", fingerprint.as_deref())
}

fn check_visit(change: &VisitChange) -> Result<(), MapError> {
    let VisitChange {
        vendor_id,
        action: _,
        client_id,
        staff_id,
        scheduled_start,
        scheduled_end,
        actual_start,
        actual_end,
        status,
        status_updated_by,
        note,
        invoice,
        payload_version,
        version,
    } = change;
    check_key("visit.id", vendor_id)?;
    check_opt_key("visit.client_id", client_id.as_deref())?;
    check_opt_key("visit.staff_id", staff_id.as_deref())?;
    check_instant("visit.scheduled_start", *scheduled_start)?;
    check_instant("visit.scheduled_end", *scheduled_end)?;
    check_instant("visit.actual_start", *actual_start)?;
    check_instant("visit.actual_end", *actual_end)?;
    if let Some(status) = status {
        check_text("visit.status", &status.raw)?;
    }
    check_opt_text("visit.status_updated_by", status_updated_by.as_deref())?;
    if let Some(VisitNote { id, status }) = note {
        check_opt_text("visit.note.id", id.as_deref())?;
        check_opt_text("visit.note.status", status.as_deref())?;
    }
    if let Some(Invoice {
        id,
        status,
        amount_due: _,
        amount_paid: _,
        currency,
    }) = invoice
    {
        check_opt_text("visit.invoice.id", id.as_deref())?;
        check_opt_text("visit.invoice.status", status.as_deref())?;
        check_opt_text("visit.invoice.currency", currency.as_deref())?;
    }
    check_opt_text("visit.payload_version", payload_version.as_deref())?;
    check_instant("visit.version", *version)
}

fn check_payment(change: &PaymentChange) -> Result<(), MapError> {
    let PaymentChange {
        vendor_id,
        action: _,
        client_id,
        amount,
        currency,
        state,
        payment_method,
        title,
        version,
    } = change;
    check_key("payment.id", vendor_id)?;
    check_opt_key("payment.client_id", client_id.as_deref())?;
    check_opt_text("payment.amount", amount.as_deref())?;
    check_opt_text("payment.currency", currency.as_deref())?;
    check_opt_text("payment.state", state.as_deref())?;
    check_opt_text("payment.payment_method", payment_method.as_deref())?;
    check_opt_text("payment.title", title.as_deref())?;
    check_instant("payment.version", *version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Action, QueueState, QueueStateKind};

    fn mapped(changes: Vec<Change>) -> Result<Delivery, Rejection> {
        Ok(Delivery {
            event_type: Some("client_created".into()),
            dedupe_key: Some("k".into()),
            outcome: Ok(MapOutcome::Mapped(Normalized {
                event_type: "client_created".into(),
                occurred_at: None,
                changes,
            })),
        })
    }

    fn failure(result: Result<Delivery, Rejection>) -> String {
        match fit(result).map(|d| d.outcome) {
            Ok(Err(error)) => error.message().to_owned(),
            other => panic!("expected a mapping failure, got {other:?}"),
        }
    }

    fn client(edit: impl FnOnce(&mut ClientChange)) -> Change {
        let mut change = ClientChange {
            vendor_id: "1".into(),
            action: Action::Upsert,
            ..ClientChange::default()
        };
        edit(&mut change);
        Change::Client(change)
    }

    #[test]
    fn a_storable_delivery_passes_unchanged() {
        let delivery = mapped(vec![client(|c| c.full_name = Some("Saad".into()))]);
        assert_eq!(fit(delivery.clone()), delivery);
    }

    #[test]
    fn a_nul_in_a_name_or_a_custom_field_fails_mapping_naming_the_field_not_the_value() {
        let name = failure(mapped(vec![client(|c| {
            c.full_name = Some("Sa\0ad".into())
        })]));
        assert!(
            name.contains("`client.full_name`") && name.contains("U+0000"),
            "{name}"
        );
        assert!(!name.contains("Sa"), "{name}");
        let custom = failure(mapped(vec![client(|c| {
            c.custom_fields = Some(serde_json::json!({"a": ["x", {"b\0": 1}]}))
        })]));
        assert!(custom.contains("`client.custom_fields`"), "{custom}");
    }

    #[test]
    fn a_nul_in_the_event_type_fails_the_delivery_and_is_stored_as_u_fffd() {
        let delivery = Ok(Delivery {
            event_type: Some("pivot\0/event".into()),
            dedupe_key: Some("pivot\0/event/1".into()),
            outcome: Ok(MapOutcome::Unsupported {
                event_type: "pivot\0/event".into(),
                reason: "`pivot\0/event` is not mapped".into(),
            }),
        });
        let fitted = fit(delivery).expect("a delivery");
        assert_eq!(fitted.event_type.as_deref(), Some("pivot\u{FFFD}/event"));
        assert!(fitted.dedupe_key.is_some_and(|k| k.starts_with("sha256:")));
        assert!(matches!(fitted.outcome, Err(e) if e.message().contains("`event type`")));
    }

    #[test]
    fn over_long_keys_fail_and_over_long_dedupe_keys_are_digested() {
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        let message = failure(mapped(vec![client(|c| c.vendor_id = long.clone())]));
        assert!(
            message.contains("`client.id`") && message.contains("bytes"),
            "{message}"
        );
        let mut delivery = mapped(Vec::new()).expect("delivery");
        delivery.dedupe_key = Some(long.clone());
        let fitted = fit(Ok(delivery)).expect("delivery");
        assert_eq!(
            fitted.dedupe_key,
            Some(format!("sha256:{}", wire::sha256_hex(long.as_bytes())))
        );
    }

    #[test]
    fn instants_outside_years_one_to_9999_fail_mapping() {
        let ancient = DateTime::from_timestamp(-283_000_000_000, 0);
        assert!(ancient.is_some());
        let message = failure(mapped(vec![client(|c| c.version = ancient)]));
        assert!(message.contains("`client.version`") && message.contains("years"));
        let far = NaiveDate::from_ymd_opt(10_000, 1, 1);
        let ticket = Change::QueueEntry(QueueEntryChange {
            vendor_id: "1".into(),
            queue_date: far,
            state: Some(QueueState {
                kind: QueueStateKind::Waiting,
                raw_code: Some(i64::MAX),
                raw_name: None,
                label: None,
            }),
            ..QueueEntryChange::default()
        });
        assert!(failure(mapped(vec![ticket])).contains("queue_date"));
    }

    #[test]
    fn rejection_and_failure_messages_lose_their_nul() {
        let rejected = fit(Err(Rejection::new("no `a\0`"))).expect_err("rejected");
        assert_eq!(rejected.message(), "no `a\u{FFFD}`");
    }
}
