//! VSee Clinic: mappers for visit webhooks (payload versions 1.0 and 2.0) and `user.created`.
//!
//! VSee signs nothing; the URL token is the authentication. The two payload versions differ in
//! types more than in fields: v1 sends unix seconds and the status as strings ("40"), v2 sends
//! integers and a status name ("completed"), and renames `completed_by` to
//! `status_updated_by`. Rather than branching on `version`, every field accepts both spellings,
//! which also covers deliveries with no `version` at all. A numeric status is a v1 code and is
//! looked up in [`MapperConfig::vsee_status_codes`] (VSee publishes no code table); a name goes
//! through the built-in table unless the config overrides it.
//!
//! VSee publishes no `user.created` sample. The shape read here (`data: {id, first_name,
//! last_name, email, phone, type: "patient" | "provider"}`) is our assumption, documented in
//! `fixtures/vsee/README.md`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::wire::{self, describe_json_error, opt_id, opt_int, opt_text};
use super::{Delivery, MapError, MapperConfig, Rejection};
use crate::domain::{
    Change, ClientChange, Invoice, MapOutcome, Normalized, StaffChange, VisitChange, VisitNote,
    VisitStatus, VisitStatusKind,
};

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, deserialize_with = "opt_text")]
    version: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "opt_text")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    created: Option<i64>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The events the mappers below handle (and the metric labels of VSee events).
pub(super) const EVENT_TYPES: &[&str] = &[
    "visit.created",
    "visit.updated",
    "visit.ended",
    "visit.note.signed_and_sent",
    "visit.invoice.processed",
    "user.created",
];

pub(super) fn normalize(body: &[u8], config: &MapperConfig) -> Result<Delivery, Rejection> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Rejection::new(format!(
                "body is not a VSee delivery: {}",
                describe_json_error(&e)
            )),
            _ => Rejection::new(format!("body is not JSON: {}", describe_json_error(&e))),
        }
    })?;
    if !wire::is_object_text(body) {
        return Err(Rejection::new("vsee delivery is not a JSON object"));
    }
    let event_type = envelope
        .kind
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Rejection::new("vsee delivery has no `type`"))?;
    let outcome = map_event(
        &event_type,
        &envelope.version,
        envelope.created,
        envelope.data,
        config,
    );
    // The top-level `id` is VSee's event id (a UUID): the natural dedupe key.
    Ok(Delivery {
        event_type: Some(event_type),
        dedupe_key: envelope.id,
        outcome,
    })
}

fn map_event(
    event_type: &str,
    version: &Option<String>,
    created: Option<i64>,
    data: Option<&RawValue>,
    config: &MapperConfig,
) -> Result<MapOutcome, MapError> {
    match event_type {
        "visit.created"
        | "visit.updated"
        | "visit.ended"
        | "visit.note.signed_and_sent"
        | "visit.invoice.processed" => {
            let occurred_at = wire::unix_seconds("created", created)?;
            let d: VisitData = parse_data(event_type, data)?;
            let changes = visit(d, version, occurred_at, config, event_type)?;
            Ok(MapOutcome::Mapped(Normalized {
                event_type: event_type.to_owned(),
                occurred_at,
                changes,
            }))
        }
        "user.created" => {
            let occurred_at = wire::unix_seconds("created", created)?;
            let d: UserData = parse_data(event_type, data)?;
            user(d, occurred_at, event_type)
        }
        other => Ok(MapOutcome::Unsupported {
            event_type: other.to_owned(),
            reason: format!("VSee event `{other}` is not one CareBridge maps"),
        }),
    }
}

fn parse_data<'a, T: Deserialize<'a>>(
    event_type: &str,
    data: Option<&'a RawValue>,
) -> Result<T, MapError> {
    let raw = data
        .filter(|d| wire::is_object_text(d.get().as_bytes()))
        .ok_or_else(|| MapError::new(format!("vsee `{event_type}` has no `data` object")))?;
    serde_json::from_str(raw.get()).map_err(|e| {
        MapError::new(format!(
            "vsee `{event_type}` `data`: {}",
            describe_json_error(&e)
        ))
    })
}

#[derive(Deserialize)]
struct VisitData {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    member_id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    provider_id: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    start: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    end: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    actual_start: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    actual_end: Option<i64>,
    #[serde(default, deserialize_with = "opt_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    status_updated_by: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    completed_by: Option<String>,
    #[serde(default)]
    note: Option<NoteData>,
    #[serde(default)]
    invoice: Option<InvoiceData>,
}

#[derive(Deserialize)]
struct NoteData {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    status: Option<String>,
}

#[derive(Deserialize)]
struct InvoiceData {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    status: Option<String>,
    /// Cents; VSee marks the unit "[TBD]", a fractional value fails mapping rather than guess.
    #[serde(default, deserialize_with = "opt_int")]
    amount_due: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    amount_paid: Option<i64>,
    #[serde(default, deserialize_with = "opt_text")]
    currency: Option<String>,
}

fn visit(
    d: VisitData,
    version: &Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    config: &MapperConfig,
    event_type: &str,
) -> Result<Vec<Change>, MapError> {
    let vendor_id =
        d.id.ok_or_else(|| MapError::new(format!("vsee `{event_type}` has no `data.id`")))?;
    let mut changes = Vec::new();
    // The patient and provider are referenced by id only; the store creates or keeps them.
    if let Some(id) = &d.member_id {
        changes.push(Change::Client(ClientChange {
            vendor_id: id.clone(),
            ..ClientChange::default()
        }));
    }
    if let Some(id) = &d.provider_id {
        changes.push(Change::Staff(StaffChange {
            vendor_id: id.clone(),
            ..StaffChange::default()
        }));
    }
    changes.push(Change::Visit(VisitChange {
        vendor_id,
        action: crate::domain::Action::Upsert,
        client_id: d.member_id,
        staff_id: d.provider_id,
        scheduled_start: wire::unix_seconds("data.start", d.start)?,
        scheduled_end: wire::unix_seconds("data.end", d.end)?,
        actual_start: wire::unix_seconds("data.actual_start", d.actual_start)?,
        actual_end: wire::unix_seconds("data.actual_end", d.actual_end)?,
        status: d
            .status
            .filter(|s| !s.trim().is_empty())
            .map(|raw| visit_status(raw, config)),
        status_updated_by: d.status_updated_by.or(d.completed_by),
        note: d.note.map(|n| VisitNote {
            id: n.id,
            status: n.status,
        }),
        invoice: d.invoice.map(|i| Invoice {
            id: i.id,
            status: i.status,
            amount_due: i.amount_due,
            amount_paid: i.amount_paid,
            currency: i.currency,
        }),
        payload_version: version.clone(),
        version: occurred_at,
    }));
    Ok(changes)
}

/// The configured map wins for any raw value; otherwise a v1 code (digits) is `Other` and a v2
/// name goes through the built-in table. The raw value is always kept.
fn visit_status(raw: String, config: &MapperConfig) -> VisitStatus {
    let key = raw.trim();
    let kind = config
        .vsee_status_codes
        .get(key)
        .copied()
        .unwrap_or_else(|| {
            if key.bytes().all(|b| b.is_ascii_digit()) {
                VisitStatusKind::Other
            } else {
                match wire::enum_key(key).as_str() {
                    "PENDING" | "NEW" => VisitStatusKind::Pending,
                    "CONFIRMED" => VisitStatusKind::Confirmed,
                    "INPROGRESS" | "IN_PROGRESS" => VisitStatusKind::InProgress,
                    "COMPLETED" | "COMPLETE" => VisitStatusKind::Completed,
                    "CANCELLED" | "CANCELED" => VisitStatusKind::Cancelled,
                    _ => VisitStatusKind::Other,
                }
            }
        });
    VisitStatus { kind, raw }
}

#[derive(Deserialize)]
struct UserData {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    first_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    last_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    email: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    phone: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "opt_text")]
    user_type: Option<String>,
}

fn user(
    d: UserData,
    occurred_at: Option<DateTime<Utc>>,
    event_type: &str,
) -> Result<MapOutcome, MapError> {
    let vendor_id =
        d.id.ok_or_else(|| MapError::new(format!("vsee `{event_type}` has no `data.id`")))?;
    let name = wire::join_name(d.first_name.as_deref(), d.last_name.as_deref());
    let role = d
        .user_type
        .as_deref()
        .map(|t| t.trim().to_ascii_lowercase());
    let change = match role.as_deref() {
        None | Some("patient" | "member" | "guest") => Change::Client(ClientChange {
            vendor_id,
            first_name: d.first_name,
            last_name: d.last_name,
            full_name: name,
            phone: wire::phone(d.phone.as_deref(), false),
            email: d.email,
            version: occurred_at,
            ..ClientChange::default()
        }),
        Some("provider" | "doctor") => Change::Staff(StaffChange {
            vendor_id,
            name,
            email: d.email,
            version: occurred_at,
            ..StaffChange::default()
        }),
        Some(other) => {
            return Ok(MapOutcome::Unsupported {
                event_type: event_type.to_owned(),
                reason: format!("VSee user type `{other}` is neither a patient nor a provider"),
            });
        }
    };
    Ok(MapOutcome::Mapped(Normalized {
        event_type: event_type.to_owned(),
        occurred_at,
        changes: vec![change],
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::{Action, Vendor};
    use crate::vendors::normalize;
    use crate::vendors::tests::{deliver_json, fixture, mapped, utc, verified};

    fn visit_of(n: &Normalized) -> VisitChange {
        n.changes
            .iter()
            .find_map(|c| {
                if let Change::Visit(v) = c {
                    Some(v.clone())
                } else {
                    None
                }
            })
            .expect("a visit")
    }

    fn with_status(name: &str, status: Value) -> Value {
        let mut value: Value = serde_json::from_slice(&fixture("vsee", name)).unwrap();
        value["data"]["status"] = status;
        value
    }

    fn status_of(value: &Value) -> VisitStatus {
        let Ok(MapOutcome::Mapped(n)) = deliver_json(Vendor::Vsee, value).unwrap().outcome else {
            panic!()
        };
        visit_of(&n).status.expect("a status")
    }

    #[test]
    fn a_v1_visit_ended_maps_string_times_code_40_and_completed_by() {
        let (delivery, n) = mapped(Vendor::Vsee, "visit_ended_v1");
        assert_eq!(delivery.event_type.as_deref(), Some("visit.ended"));
        assert_eq!(
            delivery.dedupe_key.as_deref(),
            Some("5c34979c-30dc-496c-8cd3-6eb9925862c1")
        );
        assert_eq!(n.occurred_at, Some(utc("2019-01-08T12:29:16Z")));
        assert_eq!(
            n.changes[0],
            Change::Client(ClientChange {
                vendor_id: "60610".into(),
                ..ClientChange::default()
            })
        );
        assert_eq!(
            n.changes[1],
            Change::Staff(StaffChange {
                vendor_id: "60700".into(),
                ..StaffChange::default()
            })
        );
        assert_eq!(
            visit_of(&n),
            VisitChange {
                vendor_id: "28540".into(),
                action: Action::Upsert,
                client_id: Some("60610".into()),
                staff_id: Some("60700".into()),
                scheduled_start: Some(utc("2019-01-08T12:29:06Z")),
                scheduled_end: Some(utc("2019-01-08T12:44:06Z")),
                actual_start: Some(utc("2019-01-08T12:29:06Z")),
                actual_end: Some(utc("2019-01-08T12:29:15Z")),
                status: Some(VisitStatus {
                    kind: VisitStatusKind::Completed,
                    raw: "40".into()
                }),
                status_updated_by: Some("60610".into()),
                note: None,
                invoice: None,
                payload_version: Some("1.0".into()),
                version: Some(utc("2019-01-08T12:29:16Z")),
            }
        );
    }

    #[test]
    fn an_unknown_v1_code_is_other_with_the_raw_code_kept() {
        assert_eq!(
            status_of(&with_status("visit_ended_v1", json!("70"))),
            VisitStatus {
                kind: VisitStatusKind::Other,
                raw: "70".into()
            }
        );
        // The fixture's "30" for "in progress" is a guess that the default config does not make.
        let (_, n) = mapped(Vendor::Vsee, "visit_updated_v1");
        assert_eq!(
            visit_of(&n).status,
            Some(VisitStatus {
                kind: VisitStatusKind::Other,
                raw: "30".into()
            })
        );
    }

    #[test]
    fn a_v1_code_10_is_pending_and_a_numeric_status_is_read_as_a_code() {
        let (_, n) = mapped(Vendor::Vsee, "visit_created_v1");
        let v = visit_of(&n);
        assert_eq!(
            v.status,
            Some(VisitStatus {
                kind: VisitStatusKind::Pending,
                raw: "10".into()
            })
        );
        assert_eq!((v.actual_start, v.actual_end), (None, None));
        assert_eq!(
            status_of(&with_status("visit_ended_v2", json!(40))).kind,
            VisitStatusKind::Completed
        );
    }

    #[test]
    fn the_configured_map_decides_codes_and_may_override_names() {
        let mut config = MapperConfig::default();
        config
            .vsee_status_codes
            .insert("30".into(), VisitStatusKind::InProgress);
        config
            .vsee_status_codes
            .insert("completed".into(), VisitStatusKind::Other);
        let run = |name: &str| {
            let Ok(MapOutcome::Mapped(n)) =
                normalize(&verified(Vendor::Vsee, fixture("vsee", name)), &config)
                    .unwrap()
                    .outcome
            else {
                panic!()
            };
            visit_of(&n).status.unwrap().kind
        };
        assert_eq!(run("visit_updated_v1"), VisitStatusKind::InProgress);
        assert_eq!(run("visit_ended_v2"), VisitStatusKind::Other);
    }

    #[test]
    fn v2_status_names_map_to_one_enum() {
        let cases = [
            ("pending", VisitStatusKind::Pending),
            ("new", VisitStatusKind::Pending),
            ("confirmed", VisitStatusKind::Confirmed),
            ("inprogress", VisitStatusKind::InProgress),
            ("in_progress", VisitStatusKind::InProgress),
            ("completed", VisitStatusKind::Completed),
            ("canceled", VisitStatusKind::Cancelled),
            ("cancelled", VisitStatusKind::Cancelled),
            ("waiting_for_provider", VisitStatusKind::Other),
        ];
        for (raw, kind) in cases {
            assert_eq!(
                status_of(&with_status("visit_ended_v2", json!(raw))),
                VisitStatus {
                    kind,
                    raw: raw.into()
                }
            );
        }
    }

    #[test]
    fn a_v2_visit_reads_integer_times_and_status_updated_by() {
        let (_, n) = mapped(Vendor::Vsee, "visit_updated_v2");
        let v = visit_of(&n);
        assert_eq!(
            v.status,
            Some(VisitStatus {
                kind: VisitStatusKind::InProgress,
                raw: "inprogress".into()
            })
        );
        assert_eq!(v.scheduled_start, Some(utc("2019-01-08T12:29:06Z")));
        assert_eq!(v.status_updated_by.as_deref(), Some("60700"));
        assert_eq!(v.payload_version.as_deref(), Some("2.0"));
    }

    #[test]
    fn a_cancelled_visit_without_provider_references_only_the_patient() {
        let (_, n) = mapped(Vendor::Vsee, "visit_ended_v2_cancelled");
        assert_eq!(n.changes.len(), 2);
        let v = visit_of(&n);
        assert_eq!((v.vendor_id.as_str(), v.staff_id.clone()), ("28541", None));
        assert_eq!(v.status.map(|s| s.kind), Some(VisitStatusKind::Cancelled));
    }

    #[test]
    fn the_note_and_invoice_are_carried_in_both_versions() {
        for version in ["v1", "v2"] {
            let (_, n) = mapped(
                Vendor::Vsee,
                &format!("visit_note_signed_and_sent_{version}"),
            );
            assert_eq!(
                visit_of(&n).note,
                Some(VisitNote {
                    id: Some("9917".into()),
                    status: Some("signed".into())
                })
            );
            let (_, n) = mapped(Vendor::Vsee, &format!("visit_invoice_processed_{version}"));
            assert_eq!(
                visit_of(&n).invoice,
                Some(Invoice {
                    id: Some("132".into()),
                    status: Some("pending".into()),
                    amount_due: Some(2500),
                    amount_paid: Some(1500),
                    currency: Some("USD".into()),
                })
            );
        }
    }

    #[test]
    fn an_invoice_id_may_be_a_number_but_a_fractional_amount_fails() {
        let mut value: Value =
            serde_json::from_slice(&fixture("vsee", "visit_invoice_processed_v2")).unwrap();
        value["data"]["invoice"]["id"] = json!(132);
        value["data"]["note"] = json!({"id": 77, "status": "draft"});
        let Ok(MapOutcome::Mapped(n)) = deliver_json(Vendor::Vsee, &value).unwrap().outcome else {
            panic!()
        };
        assert_eq!(
            visit_of(&n).invoice.and_then(|i| i.id).as_deref(),
            Some("132")
        );
        assert_eq!(visit_of(&n).note.and_then(|i| i.id).as_deref(), Some("77"));
        value["data"]["invoice"]["amount_due"] = json!(25.5);
        assert!(deliver_json(Vendor::Vsee, &value).unwrap().outcome.is_err());
    }

    #[test]
    fn a_delivery_without_version_reads_fields_by_their_types() {
        let body = json!({"id": "e1", "type": "visit.created", "created": "1546950000",
            "data": {"id": 1, "member_id": 2, "start": "1546950546", "end": 1546951446, "status": "10"}});
        let Ok(MapOutcome::Mapped(n)) = deliver_json(Vendor::Vsee, &body).unwrap().outcome else {
            panic!()
        };
        let v = visit_of(&n);
        assert_eq!(
            (v.vendor_id.as_str(), v.payload_version.clone()),
            ("1", None)
        );
        assert_eq!(v.scheduled_end, Some(utc("2019-01-08T12:44:06Z")));
        assert_eq!(v.status.map(|s| s.kind), Some(VisitStatusKind::Pending));
    }

    #[test]
    fn user_created_maps_patients_to_clients_and_providers_to_staff() {
        let (_, n) = mapped(Vendor::Vsee, "user_created_patient");
        assert_eq!(
            n.changes,
            vec![Change::Client(ClientChange {
                vendor_id: "60610".into(),
                first_name: Some("Maria".into()),
                last_name: Some("González".into()),
                full_name: Some("Maria González".into()),
                phone: Some("+14155550198".into()),
                email: Some("maria.gonzalez@example.com".into()),
                version: Some(utc("2019-01-08T09:33:20Z")),
                ..ClientChange::default()
            })]
        );
        let (_, n) = mapped(Vendor::Vsee, "user_created_provider");
        assert!(
            matches!(&n.changes[0], Change::Staff(s) if s.vendor_id == "60700" && s.name.as_deref() == Some("James Okafor"))
        );
    }

    #[test]
    fn a_user_of_another_type_and_an_unknown_event_are_unsupported() {
        let admin = json!({"id": "e", "type": "user.created", "data": {"id": 9, "type": "admin"}});
        assert!(matches!(
            deliver_json(Vendor::Vsee, &admin).unwrap().outcome,
            Ok(MapOutcome::Unsupported { .. })
        ));
        let other = json!({"id": "e", "type": "visit.reminder_sent", "data": {}});
        let d = deliver_json(Vendor::Vsee, &other).unwrap();
        assert!(
            matches!(d.outcome, Ok(MapOutcome::Unsupported { event_type, .. }) if event_type == "visit.reminder_sent")
        );
        assert_eq!(d.dedupe_key.as_deref(), Some("e"));
    }

    #[test]
    fn a_delivery_without_type_is_rejected_and_without_data_fails() {
        let r = deliver_json(Vendor::Vsee, &json!(["v", "e", "visit.ended"])).unwrap_err();
        assert_eq!(r.message(), "vsee delivery is not a JSON object");
        let d = deliver_json(
            Vendor::Vsee,
            &json!({"id": "e", "type": "visit.ended", "data": ["28540"]}),
        )
        .unwrap();
        assert!(
            d.outcome
                .unwrap_err()
                .message()
                .contains("no `data` object")
        );
        let r = deliver_json(Vendor::Vsee, &json!({"id": "e", "data": {}})).unwrap_err();
        assert_eq!(r.message(), "vsee delivery has no `type`");
        let d = deliver_json(Vendor::Vsee, &json!({"id": "e", "type": "visit.ended"})).unwrap();
        assert!(d.outcome.unwrap_err().message().contains("no `data`"));
        let d = deliver_json(
            Vendor::Vsee,
            &json!({"id": "e", "type": "visit.ended", "data": {"member_id": "1"}}),
        )
        .unwrap();
        assert!(d.outcome.unwrap_err().message().contains("data.id"));
    }
}
