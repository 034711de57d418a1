//! TimeTap: the mapper for its webhook, a bare Appointment object posted on every booking, edit
//! and deletion.
//!
//! TimeTap sends no envelope, no event type, no event id and no modification time. So the event
//! type is always `appointment` (the store derives created / rescheduled / cancelled by diffing
//! against the stored appointment), there is no dedupe key, and instead the appointment carries
//! a [`fingerprint`](crate::domain::AppointmentChange::fingerprint) of its canonical JSON: a
//! redelivery equal to what is stored changes nothing, while an edit that reverts an earlier one
//! is still applied (a global body hash would wrongly drop it).
//!
//! Times are `HHmm` integers (800 = 08:00) in the staff member's IANA zone on `startDate` /
//! `endDate` ("YYYY-MM-DD"); they are converted to UTC with chrono-tz. The webhook sample writes
//! the id `calendarid`, the REST API `calendarId`: both are read.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::wire::{self, describe_json_error, opt_id, opt_int, opt_text};
use super::{Delivery, MapError, Rejection};
use crate::domain::{
    Action, AppointmentChange, AppointmentStatus, AppointmentStatusKind, Change, ClientChange,
    LocationChange, MapOutcome, Normalized, ServiceChange, StaffChange,
};

const EVENT_TYPE: &str = "appointment";

/// The metric labels of TimeTap events: it sends none of its own (see [`EVENT_TYPE`]).
pub(super) const EVENT_TYPES: &[&str] = &[EVENT_TYPE];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Appointment {
    #[serde(default, rename = "calendarId", deserialize_with = "opt_id")]
    calendar_id: Option<String>,
    #[serde(default, rename = "calendarid", deserialize_with = "opt_id")]
    calendar_id_lower: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    start_date: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    end_date: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    date: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    start_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_int")]
    end_time: Option<i64>,
    #[serde(default, deserialize_with = "opt_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    sub_status: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    note: Option<String>,
    #[serde(default)]
    reason: Option<Reason>,
    #[serde(default)]
    client: Option<Client>,
    #[serde(default)]
    staff: Option<Staff>,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    fields: Option<Vec<Field>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reason {
    #[serde(default, deserialize_with = "opt_id")]
    reason_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    reason_desc: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    visit_minutes: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Client {
    #[serde(default, deserialize_with = "opt_id")]
    client_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    first_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    last_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    full_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    email_address: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    cell_phone: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    mobile_phone: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    home_phone: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    work_phone: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Staff {
    #[serde(default, deserialize_with = "opt_id")]
    professional_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    full_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    first_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    last_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    user_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    email: Option<String>,
    /// `{timeZoneId, timeZoneCode: "America/New_York", timeZoneDesc}`, or a bare zone name.
    #[serde(default)]
    time_zone_code: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(default, deserialize_with = "opt_id")]
    location_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    location_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    location_type: Option<String>,
    #[serde(default)]
    time_zone_code: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Field {
    #[serde(default, deserialize_with = "opt_text")]
    label: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    scheduler_preference_field_defn_id: Option<String>,
    #[serde(default)]
    value: Option<Value>,
}

pub(super) fn normalize(body: &[u8]) -> Result<Delivery, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::new(format!("body is not JSON: {}", describe_json_error(&e))))?;
    let Value::Object(object) = &value else {
        return Err(Rejection::new(
            "timetap delivery is not a JSON object (an Appointment)",
        ));
    };
    let has_id = ["calendarId", "calendarid"].iter().any(|k| {
        object
            .get(*k)
            .is_some_and(|v| v.is_string() || v.is_number())
    });
    if !has_id {
        return Err(Rejection::new("timetap delivery has no `calendarId`"));
    }
    let fingerprint = wire::sha256_hex(wire::canonical_json(&value).as_bytes());
    let outcome = serde_json::from_slice::<Appointment>(body)
        .map_err(|e| MapError::new(format!("timetap appointment: {}", describe_json_error(&e))))
        .and_then(|appointment| map(appointment, fingerprint));
    Ok(Delivery {
        event_type: Some(EVENT_TYPE.to_owned()),
        dedupe_key: None,
        outcome,
    })
}

fn map(a: Appointment, fingerprint: String) -> Result<MapOutcome, MapError> {
    let vendor_id = a
        .calendar_id
        .or(a.calendar_id_lower)
        .ok_or_else(|| MapError::new("timetap appointment has no usable `calendarId`"))?;

    let zone_name = a
        .staff
        .as_ref()
        .and_then(|s| zone_text(s.time_zone_code.as_ref()))
        .or_else(|| {
            a.location
                .as_ref()
                .and_then(|l| zone_text(l.time_zone_code.as_ref()))
        });
    let zone = zone_name
        .as_deref()
        .map(|name| {
            name.parse::<Tz>().map_err(|_| {
                MapError::new("timetap `staff.timeZoneCode.timeZoneCode` is not an IANA time zone")
            })
        })
        .transpose()?;

    let start_date = local_date("startDate", a.start_date.as_deref().or(a.date.as_deref()))?;
    let end_date = local_date("endDate", a.end_date.as_deref())?;
    let start_time = hhmm("startTime", a.start_time)?;
    let end_time = hhmm("endTime", a.end_time)?;
    let (starts_at, ends_at) = match (zone, start_date) {
        (Some(zone), Some(date)) => {
            let starts_at = start_time
                .map(|t| to_utc(zone, date, t, "startTime"))
                .transpose()?;
            let ends_at = match end_time {
                Some(end) => {
                    // Without an endDate an end before the start crosses midnight.
                    let day = match (end_date, start_time) {
                        (Some(day), _) => day,
                        (None, Some(start)) if end < start => date
                            .succ_opt()
                            .ok_or_else(|| MapError::new("timetap `startDate` is out of range"))?,
                        (None, _) => date,
                    };
                    Some(to_utc(zone, day, end, "endTime")?)
                }
                None => None,
            };
            (starts_at, ends_at)
        }
        _ => (None, None),
    };

    let mut changes = Vec::new();
    let client_id = a.client.and_then(|c| {
        let id = c.client_id?;
        let phone = c
            .cell_phone
            .or(c.mobile_phone)
            .or(c.phone)
            .or(c.home_phone)
            .or(c.work_phone);
        changes.push(Change::Client(ClientChange {
            vendor_id: id.clone(),
            full_name: c
                .full_name
                .or_else(|| wire::join_name(c.first_name.as_deref(), c.last_name.as_deref())),
            first_name: c.first_name,
            last_name: c.last_name,
            phone: wire::phone(phone.as_deref(), false),
            email: c.email_address,
            ..ClientChange::default()
        }));
        Some(id)
    });
    let staff_id = a.staff.and_then(|s| {
        let id = s.professional_id?;
        let name = s
            .full_name
            .or_else(|| wire::join_name(s.first_name.as_deref(), s.last_name.as_deref()))
            .or(s.user_name);
        changes.push(Change::Staff(StaffChange {
            vendor_id: id.clone(),
            name,
            email: s.email,
            time_zone: zone_name.clone(),
            ..StaffChange::default()
        }));
        Some(id)
    });
    let service_id = a.reason.and_then(|r| {
        let id = r.reason_id?;
        changes.push(Change::Service(ServiceChange {
            vendor_id: id.clone(),
            name: r.reason_desc,
            duration_minutes: r.visit_minutes.and_then(|m| i32::try_from(m).ok()),
            ..ServiceChange::default()
        }));
        Some(id)
    });
    let location_id = a.location.and_then(|l| {
        let id = l.location_id?;
        changes.push(Change::Location(LocationChange {
            vendor_id: id.clone(),
            action: Action::Upsert,
            name: l.location_name,
            kind: l.location_type,
        }));
        Some(id)
    });

    changes.push(Change::Appointment(AppointmentChange {
        vendor_id,
        action: Action::Upsert,
        client_id,
        staff_id,
        service_id,
        location_id,
        starts_at,
        ends_at,
        time_zone: zone_name,
        status: Some(status(a.status, a.sub_status)),
        title: None,
        notes: a.note,
        custom_fields: a.fields.and_then(custom_fields),
        version: None,
        fingerprint: Some(fingerprint),
    }));
    Ok(MapOutcome::Mapped(Normalized {
        event_type: EVENT_TYPE.to_owned(),
        occurred_at: None,
        changes,
    }))
}

fn zone_text(code: Option<&Value>) -> Option<String> {
    let text = match code? {
        Value::String(s) => s.as_str(),
        Value::Object(map) => map.get("timeZoneCode").and_then(Value::as_str)?,
        _ => return None,
    };
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn local_date(field: &str, raw: Option<&str>) -> Result<Option<NaiveDate>, MapError> {
    let Some(raw) = raw.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| MapError::new(format!("timetap `{field}` is not YYYY-MM-DD")))
}

/// An `HHmm` integer (800 = 08:00, 1330 = 13:30) as minutes past midnight; 2400 is the end of day.
fn hhmm(field: &str, value: Option<i64>) -> Result<Option<u32>, MapError> {
    let Some(value) = value else { return Ok(None) };
    let (hours, minutes) = (value / 100, value % 100);
    if !(0..=2400).contains(&value) || minutes >= 60 || (hours == 24 && minutes != 0) {
        return Err(MapError::new(format!(
            "timetap `{field}` is not an HHmm time (like 800 or 1330)"
        )));
    }
    // In range 0..=1440, so the conversion cannot fail.
    Ok(u32::try_from(hours * 60 + minutes).ok())
}

fn to_utc(zone: Tz, date: NaiveDate, minutes: u32, field: &str) -> Result<DateTime<Utc>, MapError> {
    // 2400 is midnight of the next day, which does not exist after chrono's last date.
    let local = date
        .and_time(NaiveTime::MIN)
        .checked_add_signed(Duration::minutes(i64::from(minutes)))
        .ok_or_else(|| MapError::new(format!("timetap `{field}` is out of range on that date")))?;
    // An ambiguous wall time (autumn fold) takes the earlier instant; a skipped one fails.
    zone.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| MapError::new(format!("timetap `{field}` falls in a daylight-saving gap")))
}

/// OPEN (with sub-statuses CHECKEDIN, CONFIRMED, IN_PROGRESS), COMPLETED, CANCELLED|CANCEL,
/// NO_SHOW. A missing status is OPEN (every appointment starts there); custom ones are `Other`.
fn status(status: Option<String>, sub_status: Option<String>) -> AppointmentStatus {
    let main = status.as_deref().map(wire::enum_key);
    let sub = sub_status.as_deref().map(wire::enum_key);
    let cancelled_sub = matches!(sub.as_deref(), Some("CANCEL" | "CANCELLED" | "CANCELED"));
    let kind = match main.as_deref() {
        _ if cancelled_sub => AppointmentStatusKind::Cancelled,
        None | Some("" | "OPEN") => match sub.as_deref() {
            Some("CHECKEDIN" | "CHECKED_IN") => AppointmentStatusKind::CheckedIn,
            Some("CONFIRMED") => AppointmentStatusKind::Confirmed,
            Some("INPROGRESS" | "IN_PROGRESS") => AppointmentStatusKind::InProgress,
            _ => AppointmentStatusKind::Booked,
        },
        Some("COMPLETED" | "COMPLETE") => AppointmentStatusKind::Completed,
        Some("CANCELLED" | "CANCELED" | "CANCEL") => AppointmentStatusKind::Cancelled,
        Some("NO_SHOW" | "NOSHOW") => AppointmentStatusKind::NoShow,
        Some(_) => AppointmentStatusKind::Other,
    };
    AppointmentStatus {
        kind,
        raw: status,
        raw_sub_status: sub_status,
    }
}

/// `fields[]` as `{label: value}`; a field without a label is keyed by its definition id.
fn custom_fields(fields: Vec<Field>) -> Option<Value> {
    let mut map = Map::new();
    for field in fields {
        let Some(key) = field.label.or(field.scheduler_preference_field_defn_id) else {
            continue;
        };
        map.insert(key, field.value.unwrap_or(Value::Null));
    }
    (!map.is_empty()).then_some(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::Vendor;
    use crate::vendors::tests::{deliver_json, fixture, mapped, utc};

    fn appointment_of(n: &Normalized) -> AppointmentChange {
        n.changes
            .iter()
            .find_map(|c| {
                if let Change::Appointment(a) = c {
                    Some(a.clone())
                } else {
                    None
                }
            })
            .expect("appointment")
    }

    fn map_value(value: &Value) -> Result<AppointmentChange, MapError> {
        deliver_json(Vendor::Timetap, value)
            .expect("accepted")
            .outcome
            .map(|o| match o {
                MapOutcome::Mapped(n) => appointment_of(&n),
                other => panic!("{other:?}"),
            })
    }

    #[test]
    fn the_create_fixture_maps_every_child_object() {
        let (delivery, n) = mapped(Vendor::Timetap, "create");
        assert_eq!(delivery.event_type.as_deref(), Some("appointment"));
        assert_eq!(delivery.dedupe_key, None);
        assert_eq!(
            (n.event_type.as_str(), n.occurred_at),
            ("appointment", None)
        );
        assert_eq!(
            n.changes[0],
            Change::Client(ClientChange {
                vendor_id: "2530974".into(),
                first_name: Some("Jon".into()),
                last_name: Some("Snow".into()),
                full_name: Some("Jon Snow".into()),
                phone: Some("+12125550147".into()),
                email: Some("jsnow@castleblack.mil".into()),
                ..ClientChange::default()
            })
        );
        assert_eq!(
            n.changes[1],
            Change::Staff(StaffChange {
                vendor_id: "42441".into(),
                name: Some("Dr. Indiana Jones".into()),
                email: Some("djones2@marshallcollege.edu".into()),
                time_zone: Some("America/New_York".into()),
                ..StaffChange::default()
            })
        );
        assert_eq!(
            n.changes[2],
            Change::Service(ServiceChange {
                vendor_id: "96439".into(),
                name: Some("Service3".into()),
                duration_minutes: Some(45),
                ..ServiceChange::default()
            })
        );
        assert_eq!(
            n.changes[3],
            Change::Location(LocationChange {
                vendor_id: "29945".into(),
                action: Action::Upsert,
                name: Some("MyOffice".into()),
                kind: Some("Office".into()),
            })
        );
        let a = appointment_of(&n);
        assert_eq!(a.vendor_id, "10390617");
        assert_eq!(
            (a.client_id.as_deref(), a.staff_id.as_deref()),
            (Some("2530974"), Some("42441"))
        );
        assert_eq!(
            (a.service_id.as_deref(), a.location_id.as_deref()),
            (Some("96439"), Some("29945"))
        );
        // 2024-03-12 is after the US switch to daylight time: 08:00 EDT is 12:00 UTC.
        assert_eq!(a.starts_at, Some(utc("2024-03-12T12:00:00Z")));
        assert_eq!(a.ends_at, Some(utc("2024-03-12T12:45:00Z")));
        assert_eq!(a.time_zone.as_deref(), Some("America/New_York"));
        assert_eq!(
            a.status,
            Some(AppointmentStatus {
                kind: AppointmentStatusKind::Booked,
                raw: Some("OPEN".into()),
                raw_sub_status: None
            })
        );
        assert_eq!(
            a.notes.as_deref(),
            Some("Jon would like a notification before his appointment.")
        );
        assert_eq!(
            a.custom_fields,
            Some(
                json!({"Comments": "These are comments ", "My Custom Field": "Custom field value"})
            )
        );
        assert_eq!(a.version, None);
        assert_eq!(a.fingerprint.as_ref().map(String::len), Some(64));
    }

    #[test]
    fn eight_hundred_in_new_york_in_winter_is_thirteen_hundred_utc() {
        let a = map_value(
            &json!({"calendarId": 1, "startDate": "2024-01-15", "startTime": 800, "endTime": 845,
            "staff": {"professionalId": 2, "timeZoneCode": {"timeZoneCode": "America/New_York"}}}),
        )
        .unwrap();
        assert_eq!(a.starts_at, Some(utc("2024-01-15T13:00:00Z")));
        assert_eq!(a.ends_at, Some(utc("2024-01-15T13:45:00Z")));
    }

    #[test]
    fn calendarid_and_calendar_id_name_the_same_appointment() {
        let (_, created) = mapped(Vendor::Timetap, "create");
        let (_, edited) = mapped(Vendor::Timetap, "edit");
        let (created, edited) = (appointment_of(&created), appointment_of(&edited));
        assert_eq!(created.vendor_id, edited.vendor_id);
        assert_ne!(created.fingerprint, edited.fingerprint);
        assert_eq!(
            edited.custom_fields.unwrap()["My Custom Field"],
            "Updated custom value"
        );
        let string_id = map_value(&json!({"calendarId": "10390617"})).unwrap();
        assert_eq!(string_id.vendor_id, "10390617");
    }

    #[test]
    fn the_fingerprint_ignores_formatting_and_key_order_but_not_content() {
        let original = fixture("timetap", "create");
        let value: Value = serde_json::from_slice(&original).unwrap();
        let compact = serde_json::to_vec(&value).unwrap();
        assert_ne!(original, compact);
        let a = appointment_of(&mapped(Vendor::Timetap, "create").1);
        let Ok(MapOutcome::Mapped(b)) = crate::vendors::tests::deliver(Vendor::Timetap, compact)
            .unwrap()
            .outcome
        else {
            panic!()
        };
        assert_eq!(a.fingerprint, appointment_of(&b).fingerprint);
        let reordered = map_value(&json!({"startTime": 800, "calendarId": 5})).unwrap();
        let ordered = map_value(&json!({"calendarId": 5, "startTime": 800})).unwrap();
        assert_eq!(reordered.fingerprint, ordered.fingerprint);
        assert_ne!(
            ordered.fingerprint,
            map_value(&json!({"calendarId": 5, "startTime": 900}))
                .unwrap()
                .fingerprint
        );
    }

    #[test]
    fn the_lifecycle_fixtures_map_to_their_statuses() {
        let cases = [
            ("create", AppointmentStatusKind::Booked, None),
            ("edit", AppointmentStatusKind::Booked, None),
            ("reschedule", AppointmentStatusKind::Booked, None),
            (
                "checked_in",
                AppointmentStatusKind::CheckedIn,
                Some("CHECKEDIN"),
            ),
            ("complete", AppointmentStatusKind::Completed, None),
            ("cancel", AppointmentStatusKind::Cancelled, Some("CANCEL")),
            ("no_show", AppointmentStatusKind::NoShow, None),
        ];
        for (name, kind, sub) in cases {
            let a = appointment_of(&mapped(Vendor::Timetap, name).1);
            let status = a.status.unwrap();
            assert_eq!(
                (status.kind, status.raw_sub_status.as_deref()),
                (kind, sub),
                "{name}"
            );
            assert_eq!(a.vendor_id, "10390617", "{name}");
        }
        let rescheduled = appointment_of(&mapped(Vendor::Timetap, "reschedule").1);
        assert_eq!(rescheduled.starts_at, Some(utc("2024-03-14T17:30:00Z")));
        assert_eq!(rescheduled.ends_at, Some(utc("2024-03-14T18:15:00Z")));
    }

    #[test]
    fn statuses_are_open_with_raw_values_kept() {
        let cases = [
            (json!(null), json!(null), AppointmentStatusKind::Booked),
            (
                json!("OPEN"),
                json!("CONFIRMED"),
                AppointmentStatusKind::Confirmed,
            ),
            (
                json!("OPEN"),
                json!("IN_PROGRESS"),
                AppointmentStatusKind::InProgress,
            ),
            (
                json!("OPEN"),
                json!("Waiting for forms"),
                AppointmentStatusKind::Booked,
            ),
            (
                json!("CANCEL"),
                json!(null),
                AppointmentStatusKind::Cancelled,
            ),
            (json!("NOSHOW"), json!(null), AppointmentStatusKind::NoShow),
            (json!("WAITLIST"), json!(null), AppointmentStatusKind::Other),
        ];
        for (status, sub, kind) in cases {
            let a =
                map_value(&json!({"calendarId": 1, "status": status, "subStatus": sub})).unwrap();
            let s = a.status.unwrap();
            assert_eq!(s.kind, kind, "{status} {sub}");
            assert_eq!(s.raw, status.as_str().map(str::to_owned));
            assert_eq!(s.raw_sub_status, sub.as_str().map(str::to_owned));
        }
    }

    #[test]
    fn without_a_date_or_zone_the_times_stay_unknown_and_date_is_accepted() {
        let a = map_value(&json!({"calendarId": 1, "startTime": 800, "staff": {"professionalId": 2, "timeZoneCode": {"timeZoneCode": "America/New_York"}}})).unwrap();
        assert_eq!(
            (a.starts_at, a.time_zone.as_deref()),
            (None, Some("America/New_York"))
        );
        let a = map_value(&json!({"calendarId": 1, "startDate": "2024-01-15", "startTime": 800}))
            .unwrap();
        assert_eq!((a.starts_at, a.time_zone), (None, None));
        let a = map_value(
            &json!({"calendarId": 1, "date": "2024-01-15", "startTime": 930, "endTime": 30,
            "staff": {"professionalId": 2, "timeZoneCode": "Europe/London"}}),
        )
        .unwrap();
        assert_eq!(a.starts_at, Some(utc("2024-01-15T09:30:00Z")));
        // An end before the start without an endDate crosses midnight.
        assert_eq!(a.ends_at, Some(utc("2024-01-16T00:30:00Z")));
    }

    #[test]
    fn impossible_times_zones_and_dates_fail_mapping() {
        let staff =
            json!({"professionalId": 2, "timeZoneCode": {"timeZoneCode": "America/New_York"}});
        for (body, field) in [
            (
                json!({"calendarId": 1, "startDate": "2024-01-15", "startTime": 2575, "staff": staff}),
                "startTime",
            ),
            (
                json!({"calendarId": 1, "startDate": "15/01/2024", "startTime": 800, "staff": staff}),
                "startDate",
            ),
            (
                json!({"calendarId": 1, "startDate": "2024-01-15", "startTime": 800, "staff": {"timeZoneCode": {"timeZoneCode": "Mars/Olympus"}}}),
                "timeZoneCode",
            ),
            // 02:30 does not exist in New York on the spring-forward day.
            (
                json!({"calendarId": 1, "startDate": "2024-03-10", "startTime": 230, "staff": staff}),
                "daylight",
            ),
        ] {
            let err = map_value(&body).unwrap_err();
            assert!(err.message().contains(field), "{err}");
        }
    }

    #[test]
    fn times_past_the_last_representable_date_fail_mapping_instead_of_panicking() {
        // Both panicked ("`NaiveDateTime + TimeDelta` overflowed", "`NaiveDate + TimeDelta`
        // overflowed"): `startDate` takes chrono's signed years up to +262142 (found while
        // writing the fuzz targets, reproduced with `timetap`; see fuzz/README.md).
        let new_york = json!({"timeZoneCode": {"timeZoneCode": "America/New_York"}});
        let utc = json!({"timeZoneCode": {"timeZoneCode": "UTC"}});
        for (body, field) in [
            // 2400 on the last date is the day after it.
            (
                json!({"calendarId": 1, "startDate": "+262142-12-31", "endTime": 2400, "staff": new_york}),
                "endTime",
            ),
            // An end before the start without an endDate crosses into the day after it.
            (
                json!({"calendarId": 1, "startDate": "+262142-12-31", "startTime": 2300, "endTime": 100, "staff": utc}),
                "startDate",
            ),
        ] {
            let err = map_value(&body).unwrap_err();
            assert!(err.message().contains(field), "{err}");
        }
    }

    #[test]
    fn a_body_without_calendar_id_or_not_an_object_is_rejected() {
        let r = deliver_json(
            Vendor::Timetap,
            &json!({"businessId": 20398, "startTime": 800}),
        )
        .unwrap_err();
        assert_eq!(r.message(), "timetap delivery has no `calendarId`");
        let r = deliver_json(Vendor::Timetap, &json!([{"calendarId": 1}])).unwrap_err();
        assert!(r.message().contains("not a JSON object"));
    }

    #[test]
    fn fields_without_labels_are_keyed_by_their_definition_id() {
        let a = map_value(&json!({"calendarId": 1, "fields": [{"schedulerPreferenceFieldDefnId": 107740, "value": "x"}, {"value": "dropped"}]})).unwrap();
        assert_eq!(a.custom_fields, Some(json!({"107740": "x"})));
        assert_eq!(
            map_value(&json!({"calendarId": 1, "fields": []}))
                .unwrap()
                .custom_fields,
            None
        );
    }
}
