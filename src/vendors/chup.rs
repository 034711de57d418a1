//! Chup Online: HMAC verification of `{"payload": {...}, "signature": "<hex>"}` deliveries and the
//! mappers for live-queue tickets, appointments, clients, services and staff.
//!
//! Chup signs with HMAC-SHA256 and a per-clinic secret but does not document which bytes. The
//! verifier therefore tries, in order, the raw `payload` text exactly as it sits in the body
//! (pulled out with a borrowed [`RawValue`], never re-serialized) and a PHP `json_encode`
//! re-encoding of it (Chup runs Laravel; see `php_json.rs`), and records which one matched.
//!
//! Only the live-queue `data` fields are public (VENDORS.md § live_queue). The appointment,
//! client, service and staff shapes read here are our assumption of a Laravel-style model,
//! documented in `fixtures/chup/README.md`; every field is optional except `data.id`, so a
//! different real shape degrades to fewer fields rather than failures. Live-queue `state` is an
//! integer in some deliveries and `{name, value}` in others, `notes` is `[]` or a leaked Laravel
//! collection `{"items": [], "escapeWhenCastingToString": false}`; both are read as either.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::php_json;
use super::wire::{self, describe_json_error, instant, opt_id, opt_int, opt_text};
use super::{Delivery, MapError, Rejection, Verification, VerifyError};
use crate::domain::{
    Action, AppointmentChange, AppointmentStatus, AppointmentStatusKind, Change, ClientChange,
    MapOutcome, Normalized, QueueEntryChange, QueueState, QueueStateKind, ServiceChange,
    StaffChange,
};

/// The delivery envelope. `payload` is borrowed as raw text because the signature covers bytes.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    signature: Option<Value>,
}

/// Pulls the raw `payload` object and the `signature` value out of a body, or says why the body
/// has nothing to verify.
fn parse_envelope(body: &[u8]) -> Result<(&RawValue, Option<Value>), String> {
    let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => format!("body is not a Chup envelope: {}", describe_json_error(&e)),
            _ => format!("body is not JSON: {}", describe_json_error(&e)),
        }
    })?;
    if !wire::is_object_text(body) {
        return Err("chup delivery is not a JSON object".to_owned());
    }
    let payload = envelope.payload.ok_or("chup delivery has no `payload`")?;
    if !wire::is_object_text(payload.get().as_bytes()) {
        return Err("chup `payload` is not a JSON object".to_owned());
    }
    Ok((payload, envelope.signature))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Option<Vec<u8>> {
    // HMAC accepts keys of any length, so this never fails in practice; it is still not unwrapped.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(message);
    Some(mac.finalize().into_bytes().as_slice().to_vec())
}

fn matches(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    hmac_sha256(key, message)
        .is_some_and(|expected| bool::from(expected.as_slice().ct_eq(signature)))
}

/// Verifies a Chup body: HMAC over the raw payload text first, then over its PHP re-encoding.
pub(super) fn verify_signature(body: &[u8], key: &[u8]) -> Result<Verification, VerifyError> {
    let (payload, signature) = parse_envelope(body).map_err(VerifyError::Malformed)?;
    let signature = match signature {
        None | Some(Value::Null) => return Err(VerifyError::MissingSignature),
        Some(Value::String(s)) if s.trim().is_empty() => return Err(VerifyError::MissingSignature),
        Some(Value::String(s)) => s,
        Some(_) => return Err(VerifyError::BadSignature),
    };
    // `hex` accepts both cases; Chup's docs show lowercase but do not promise it.
    let signature = hex::decode(signature.trim()).map_err(|_| VerifyError::BadSignature)?;
    if signature.len() != 32 {
        return Err(VerifyError::BadSignature);
    }
    let raw = payload.get();
    if matches(key, raw.as_bytes(), &signature) {
        return Ok(Verification::HmacRaw);
    }
    let php = php_json::encode(raw).map_err(|_| VerifyError::BadSignature)?;
    if matches(key, php.as_bytes(), &signature) {
        return Ok(Verification::HmacPhpJson);
    }
    Err(VerifyError::BadSignature)
}

/// Returns the envelope with a correct lowercase-hex signature over the raw `payload` text, as
/// Chup would send it (used by tests and the `replay` CLI). The payload bytes are kept verbatim;
/// other top-level fields are dropped (only `payload` is signed). A body that is not a Chup
/// envelope is returned unchanged, and will then fail verification as malformed.
pub fn sign_chup(body_without_sig: &[u8], key: &[u8]) -> Vec<u8> {
    sign_with(body_without_sig, key, |raw| Some(raw.to_owned()))
}

/// Like [`sign_chup`], but the signature covers the PHP `json_encode` re-encoding of the payload
/// while the body keeps the payload text as written: the second form the verifier accepts.
pub fn sign_chup_php(body_without_sig: &[u8], key: &[u8]) -> Vec<u8> {
    sign_with(body_without_sig, key, |raw| php_json::encode(raw).ok())
}

fn sign_with(body: &[u8], key: &[u8], signed_form: impl Fn(&str) -> Option<String>) -> Vec<u8> {
    let Ok((payload, _)) = parse_envelope(body) else {
        return body.to_vec();
    };
    let raw = payload.get();
    let Some(signature) = signed_form(raw).and_then(|text| hmac_sha256(key, text.as_bytes()))
    else {
        return body.to_vec();
    };
    format!(
        "{{\"payload\":{raw},\"signature\":\"{}\"}}",
        hex::encode(signature)
    )
    .into_bytes()
}

/// The payload text the signature covers: the raw text, or its PHP re-encoding when that is what
/// verified. No event id exists and the signature is a function of this text, so its hash is the
/// dedupe key: a signed payload re-sent with other spacing (accepted through the PHP form) is
/// the same delivery, not a new one.
fn signed_form(raw: &str, verification: Verification) -> std::borrow::Cow<'_, str> {
    match verification {
        Verification::HmacPhpJson => php_json::encode(raw)
            .map(std::borrow::Cow::Owned)
            .unwrap_or(std::borrow::Cow::Borrowed(raw)),
        Verification::HmacRaw | Verification::UrlToken => std::borrow::Cow::Borrowed(raw),
    }
}

/// The part of the payload every event shares; `data` stays raw until the event is known.
#[derive(Deserialize)]
struct PayloadHead<'a> {
    #[serde(default, deserialize_with = "opt_text")]
    event: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    timestamp: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// The events the mappers below handle (and the metric labels of Chup events).
pub(super) const EVENT_TYPES: &[&str] = &[
    "live_queue_created",
    "live_queue_updated",
    "live_queue_deleted",
    "appointment_created",
    "appointment_updated",
    "appointment_deleted",
    "client_created",
    "client_updated",
    "client_deleted",
    "service_created",
    "service_updated",
    "service_deleted",
    "service_staffs_updated",
    "staff_created",
    "staff_updated",
    "staff_deleted",
    "staff_services_updated",
];

/// Maps a delivery verified by `verification` (which form of the payload the signature covers).
pub(super) fn normalize(body: &[u8], verification: Verification) -> Result<Delivery, Rejection> {
    let (payload, _) = parse_envelope(body).map_err(Rejection::new)?;
    let raw = payload.get();
    let dedupe_key = format!(
        "sha256:{}",
        wire::sha256_hex(signed_form(raw, verification).as_bytes())
    );
    let head: PayloadHead<'_> = serde_json::from_str(raw).map_err(|e| {
        Rejection::new(format!(
            "chup `payload` is not readable: {}",
            describe_json_error(&e)
        ))
    })?;
    let event = head
        .event
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .ok_or_else(|| Rejection::new("chup payload has no `event`"))?;
    let outcome = map_event(&event, head.timestamp.as_deref(), head.data);
    Ok(Delivery {
        event_type: Some(event),
        dedupe_key: Some(dedupe_key),
        outcome,
    })
}

fn map_event(
    event: &str,
    timestamp: Option<&str>,
    data: Option<&RawValue>,
) -> Result<MapOutcome, MapError> {
    let action = if event.ends_with("_deleted") {
        Action::Delete
    } else {
        Action::Upsert
    };
    let ctx = Ctx {
        event,
        action,
        sent_at: instant("payload.timestamp", timestamp)?,
    };
    match event {
        "live_queue_created" | "live_queue_updated" | "live_queue_deleted" => {
            live_queue(&ctx, data)
        }
        "appointment_created" | "appointment_updated" | "appointment_deleted" => {
            appointment(&ctx, data)
        }
        "client_created" | "client_updated" | "client_deleted" => client(&ctx, data),
        "service_created" | "service_updated" | "service_deleted" | "service_staffs_updated" => {
            service(&ctx, data)
        }
        "staff_created" | "staff_updated" | "staff_deleted" | "staff_services_updated" => {
            staff(&ctx, data)
        }
        other => Ok(MapOutcome::Unsupported {
            event_type: other.to_owned(),
            reason: format!("Chup event `{other}` is not one CareBridge maps"),
        }),
    }
}

/// What every mapper needs besides `data`.
struct Ctx<'e> {
    event: &'e str,
    action: Action,
    sent_at: Option<DateTime<FixedOffset>>,
}

impl Ctx<'_> {
    fn data<'a, T: Deserialize<'a>>(&self, data: Option<&'a RawValue>) -> Result<T, MapError> {
        let event = self.event;
        let raw = data
            .filter(|r| wire::is_object_text(r.get().as_bytes()))
            .ok_or_else(|| MapError::new(format!("chup `{event}` has no `payload.data` object")))?;
        serde_json::from_str(raw.get()).map_err(|e| {
            MapError::new(format!(
                "chup `{event}` `payload.data`: {}",
                describe_json_error(&e)
            ))
        })
    }

    fn id(&self, id: Option<String>) -> Result<String, MapError> {
        id.ok_or_else(|| MapError::new(format!("chup `{}` has no `payload.data.id`", self.event)))
    }

    fn mapped(
        &self,
        occurred_at: Option<DateTime<Utc>>,
        changes: Vec<Change>,
    ) -> Result<MapOutcome, MapError> {
        Ok(MapOutcome::Mapped(Normalized {
            event_type: self.event.to_owned(),
            occurred_at,
            changes,
        }))
    }

    /// The ordering-guard version: `updated_at` (a deletion's `deleted_at` first), falling back
    /// to the payload's `timestamp`.
    fn version(&self, stamps: &Stamps) -> Result<Option<DateTime<Utc>>, MapError> {
        let updated = instant("data.updated_at", stamps.updated_at.as_deref())?;
        let deleted = instant("data.deleted_at", stamps.deleted_at.as_deref())?;
        let best = match self.action {
            Action::Delete => deleted.or(updated),
            Action::Upsert => updated,
        };
        Ok(best.or(self.sent_at).map(|t| t.with_timezone(&Utc)))
    }
}

/// Laravel's timestamps, flattened into every data struct.
#[derive(Deserialize, Default)]
struct Stamps {
    #[serde(default, deserialize_with = "opt_text")]
    created_at: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    updated_at: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    deleted_at: Option<String>,
}

/// Chup's state/status field: a bare code (`1`), a bare name, or a PHP enum `{name, value}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum WireState {
    Code(i64),
    Name(String),
    Named {
        #[serde(default, deserialize_with = "opt_text")]
        name: Option<String>,
        #[serde(default, deserialize_with = "opt_int")]
        value: Option<i64>,
    },
}

impl WireState {
    /// (numeric code, name); a name made only of digits is a code sent as a string.
    fn parts(self) -> (Option<i64>, Option<String>) {
        match self {
            WireState::Code(code) => (Some(code), None),
            WireState::Name(name) => match name.trim().parse::<i64>() {
                Ok(code) => (Some(code), None),
                Err(_) => (None, Some(name).filter(|n| !n.trim().is_empty())),
            },
            WireState::Named { name, value } => (value, name.filter(|n| !n.trim().is_empty())),
        }
    }
}

/// `{id, name}` items of `staffs` / `services` lists.
#[derive(Deserialize)]
struct Ref {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    name: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Live queue
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct LiveQueueData {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    appointment_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    appointment_date: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    registered_client_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    registered_client_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    registered_client_phone: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    client_name: Option<String>,
    #[serde(default)]
    state: Option<WireState>,
    #[serde(default, deserialize_with = "opt_text")]
    state_name: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    service_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    service_name: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    staff_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    staff_name: Option<String>,
    #[serde(default)]
    notes: Option<Value>,
    #[serde(flatten)]
    stamps: Stamps,
}

fn live_queue(ctx: &Ctx<'_>, data: Option<&RawValue>) -> Result<MapOutcome, MapError> {
    let d: LiveQueueData = ctx.data(data)?;
    let vendor_id = ctx.id(d.id)?;
    let version = ctx.version(&d.stamps)?;
    let created = instant("data.created_at", d.stamps.created_at.as_deref())?;
    let updated = instant("data.updated_at", d.stamps.updated_at.as_deref())?;

    let mut changes = Vec::new();
    if let Some(id) = &d.registered_client_id {
        changes.push(Change::Client(ClientChange {
            vendor_id: id.clone(),
            full_name: d.registered_client_name.or(d.client_name),
            phone: wire::phone(d.registered_client_phone.as_deref(), true),
            ..ClientChange::default()
        }));
    }
    push_service(&mut changes, d.service_id.as_deref(), d.service_name);
    push_staff(&mut changes, d.staff_id.as_deref(), d.staff_name);

    let state = match d.state.map(WireState::parts) {
        Some((code, name)) => Some(queue_state(code, name, d.state_name)),
        None => d
            .state_name
            .map(|label| queue_state(None, None, Some(label))),
    };
    // The board day is the clinic-local day the ticket was taken, in Chup's own offset.
    let queue_date = created.map(|c| c.date_naive()).or_else(|| {
        d.appointment_date
            .as_deref()
            .and_then(|t| NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d").ok())
    });
    let time_zone = created
        .or(updated)
        .or(ctx.sent_at)
        .as_ref()
        .map(wire::offset_text);

    changes.push(Change::QueueEntry(QueueEntryChange {
        vendor_id,
        action: ctx.action,
        client_id: d.registered_client_id,
        service_id: d.service_id,
        staff_id: d.staff_id,
        appointment_id: d.appointment_id,
        state,
        queue_date,
        time_zone,
        notes: d.notes.and_then(normalize_notes),
        vendor_created_at: created.map(|c| c.with_timezone(&Utc)),
        version,
    }));
    ctx.mapped(version, changes)
}

/// Reads `notes` as a list: `[]` as sent, a leaked Laravel collection as its `items`.
fn normalize_notes(notes: Value) -> Option<Value> {
    match notes {
        Value::Null => None,
        Value::Object(mut map) if map.get("items").is_some_and(Value::is_array) => {
            map.remove("items")
        }
        other => Some(other),
    }
}

/// Builds the open queue state: the name decides when it is known, then the two documented
/// codes (1 "In Queue", 3 ARRIVED), then the human label; raw values are always kept.
fn queue_state(code: Option<i64>, name: Option<String>, label: Option<String>) -> QueueState {
    let kind = name
        .as_deref()
        .and_then(classify_queue_name)
        .or(match code {
            Some(1) => Some(QueueStateKind::Waiting),
            Some(3) => Some(QueueStateKind::Arrived),
            _ => None,
        })
        .or_else(|| label.as_deref().and_then(classify_queue_name))
        .unwrap_or(QueueStateKind::Other);
    QueueState {
        kind,
        raw_code: code,
        raw_name: name,
        label,
    }
}

fn classify_queue_name(raw: &str) -> Option<QueueStateKind> {
    let key = wire::enum_key(raw);
    let kind = match key.as_str() {
        "WAITING" | "IN_QUEUE" | "INQUEUE" | "QUEUE" | "QUEUED" => QueueStateKind::Waiting,
        "ARRIVED" => QueueStateKind::Arrived,
        "SERVING" => QueueStateKind::Serving,
        "SERVED" => QueueStateKind::Served,
        "NO_SHOW" | "NOSHOW" => QueueStateKind::NoShow,
        "MOVED" => QueueStateKind::Moved,
        "CANCELLED" | "CANCELED" => QueueStateKind::Cancelled,
        "PAID" => QueueStateKind::Billing,
        "COMPLETED" => QueueStateKind::Ended,
        k if k.starts_with("PHARMACY") || k.starts_with("DISPENSE") => QueueStateKind::Pharmacy,
        k if k.starts_with("BILLING") => QueueStateKind::Billing,
        k if k.starts_with("END") => QueueStateKind::Ended,
        _ => return None,
    };
    Some(kind)
}

fn push_service(changes: &mut Vec<Change>, id: Option<&str>, name: Option<String>) {
    if let Some(id) = id {
        changes.push(Change::Service(ServiceChange {
            vendor_id: id.to_owned(),
            name,
            ..ServiceChange::default()
        }));
    }
}

fn push_staff(changes: &mut Vec<Change>, id: Option<&str>, name: Option<String>) {
    if let Some(id) = id {
        changes.push(Change::Staff(StaffChange {
            vendor_id: id.to_owned(),
            name,
            ..StaffChange::default()
        }));
    }
}

// ---------------------------------------------------------------------------------------------
// Appointment (assumed shape)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct AppointmentData {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    client_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    client_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    client_phone: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    client_email: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    service_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    service_name: Option<String>,
    #[serde(default, deserialize_with = "opt_id")]
    staff_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    staff_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    appointment_date: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    appointment_time: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    start_at: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    end_at: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    duration: Option<i64>,
    #[serde(default)]
    status: Option<WireState>,
    #[serde(default, deserialize_with = "opt_text")]
    status_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    title: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    remarks: Option<String>,
    #[serde(flatten)]
    stamps: Stamps,
}

fn appointment(ctx: &Ctx<'_>, data: Option<&RawValue>) -> Result<MapOutcome, MapError> {
    let d: AppointmentData = ctx.data(data)?;
    let vendor_id = ctx.id(d.id)?;
    let version = ctx.version(&d.stamps)?;
    let created = instant("data.created_at", d.stamps.created_at.as_deref())?;
    let start_at = instant("data.start_at", d.start_at.as_deref())?;
    let end_at = instant("data.end_at", d.end_at.as_deref())?;
    // Without `start_at`, the date and time are clinic-local in the offset Chup stamps elsewhere.
    let offset = start_at.or(created).or(ctx.sent_at).map(|t| *t.offset());
    let starts_at = match start_at {
        Some(s) => Some(s.with_timezone(&Utc)),
        None => local_date_time(
            d.appointment_date.as_deref(),
            d.appointment_time.as_deref(),
            offset,
        )?,
    };
    let ends_at = match (end_at, starts_at, d.duration) {
        (Some(e), _, _) => Some(e.with_timezone(&Utc)),
        // `appointment_date` accepts chrono's signed years up to +262142, where adding the
        // duration can overflow: that is a field the mapping cannot use, not a panic.
        (None, Some(s), Some(minutes)) if (0..=24 * 60).contains(&minutes) => Some(
            s.checked_add_signed(chrono::Duration::minutes(minutes))
                .ok_or_else(|| MapError::new("`data.appointment_date` is out of range"))?,
        ),
        _ => None,
    };

    let mut changes = Vec::new();
    if let Some(id) = &d.client_id {
        changes.push(Change::Client(ClientChange {
            vendor_id: id.clone(),
            full_name: d.client_name,
            phone: wire::phone(d.client_phone.as_deref(), true),
            email: d.client_email,
            ..ClientChange::default()
        }));
    }
    push_staff(&mut changes, d.staff_id.as_deref(), d.staff_name);
    push_service(&mut changes, d.service_id.as_deref(), d.service_name);

    let status = match d.status.map(WireState::parts) {
        Some((code, name)) => appointment_status(code, name, d.status_name),
        None => d
            .status_name
            .and_then(|label| appointment_status(None, None, Some(label))),
    };
    changes.push(Change::Appointment(AppointmentChange {
        vendor_id,
        action: ctx.action,
        client_id: d.client_id,
        staff_id: d.staff_id,
        service_id: d.service_id,
        starts_at,
        ends_at,
        time_zone: offset.map(|o| o.to_string()),
        status,
        title: d.title,
        notes: d.remarks,
        version,
        ..AppointmentChange::default()
    }));
    ctx.mapped(version, changes)
}

/// Combines `appointment_date` ("YYYY-MM-DD") and `appointment_time` ("HH:MM[:SS]") in `offset`.
fn local_date_time(
    date: Option<&str>,
    time: Option<&str>,
    offset: Option<FixedOffset>,
) -> Result<Option<DateTime<Utc>>, MapError> {
    let (Some(date), Some(time), Some(offset)) = (date, time, offset) else {
        return Ok(None);
    };
    let date = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .map_err(|_| MapError::new("`data.appointment_date` is not YYYY-MM-DD"))?;
    let time = NaiveTime::parse_from_str(time.trim(), "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(time.trim(), "%H:%M"))
        .map_err(|_| MapError::new("`data.appointment_time` is not HH:MM:SS"))?;
    Ok(offset
        .from_local_datetime(&date.and_time(time))
        .single()
        .map(|t| t.with_timezone(&Utc)))
}

fn appointment_status(
    code: Option<i64>,
    name: Option<String>,
    label: Option<String>,
) -> Option<AppointmentStatus> {
    let raw = name
        .clone()
        .or_else(|| code.map(|c| c.to_string()))
        .or_else(|| label.clone())?;
    let kind = name
        .as_deref()
        .or(label.as_deref())
        .and_then(classify_appointment_name)
        .unwrap_or(AppointmentStatusKind::Other);
    Some(AppointmentStatus {
        kind,
        raw: Some(raw),
        raw_sub_status: None,
    })
}

fn classify_appointment_name(raw: &str) -> Option<AppointmentStatusKind> {
    let kind = match wire::enum_key(raw).as_str() {
        "BOOKED" | "PENDING" | "SCHEDULED" | "NEW" => AppointmentStatusKind::Booked,
        "CONFIRMED" => AppointmentStatusKind::Confirmed,
        "CHECKED_IN" | "CHECKEDIN" | "ARRIVED" => AppointmentStatusKind::CheckedIn,
        "IN_PROGRESS" | "INPROGRESS" | "SERVING" => AppointmentStatusKind::InProgress,
        "COMPLETED" | "DONE" | "SERVED" | "ENDED" => AppointmentStatusKind::Completed,
        "CANCELLED" | "CANCELED" => AppointmentStatusKind::Cancelled,
        "NO_SHOW" | "NOSHOW" => AppointmentStatusKind::NoShow,
        "RESCHEDULED" => AppointmentStatusKind::Rescheduled,
        _ => return None,
    };
    Some(kind)
}

// ---------------------------------------------------------------------------------------------
// Client, service, staff (assumed shapes)
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ClientData {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    first_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    last_name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    phone: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    email: Option<String>,
    #[serde(default)]
    custom_fields: Option<Value>,
    #[serde(flatten)]
    stamps: Stamps,
}

fn client(ctx: &Ctx<'_>, data: Option<&RawValue>) -> Result<MapOutcome, MapError> {
    let d: ClientData = ctx.data(data)?;
    let vendor_id = ctx.id(d.id)?;
    let version = ctx.version(&d.stamps)?;
    let full_name = d
        .name
        .or_else(|| wire::join_name(d.first_name.as_deref(), d.last_name.as_deref()));
    let change = ClientChange {
        vendor_id,
        action: ctx.action,
        first_name: d.first_name,
        last_name: d.last_name,
        full_name,
        phone: wire::phone(d.phone.as_deref(), true),
        email: d.email,
        custom_fields: d.custom_fields.filter(|v| !v.is_null()),
        version,
    };
    ctx.mapped(version, vec![Change::Client(change)])
}

#[derive(Deserialize)]
struct ServiceData {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    duration: Option<i64>,
    #[serde(default)]
    staffs: Option<Vec<Ref>>,
    #[serde(flatten)]
    stamps: Stamps,
}

fn service(ctx: &Ctx<'_>, data: Option<&RawValue>) -> Result<MapOutcome, MapError> {
    let d: ServiceData = ctx.data(data)?;
    let vendor_id = ctx.id(d.id)?;
    let version = ctx.version(&d.stamps)?;
    let mut changes = Vec::new();
    let staff_ids = d.staffs.map(|staffs| {
        staffs
            .into_iter()
            .filter_map(|s| {
                let id = s.id?;
                push_staff(&mut changes, Some(&id), s.name);
                Some(id)
            })
            .collect()
    });
    changes.push(Change::Service(ServiceChange {
        vendor_id,
        action: ctx.action,
        name: d.name,
        duration_minutes: d.duration.and_then(|m| i32::try_from(m).ok()),
        staff_ids,
        version,
    }));
    ctx.mapped(version, changes)
}

#[derive(Deserialize)]
struct StaffData {
    #[serde(default, deserialize_with = "opt_id")]
    id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    email: Option<String>,
    #[serde(default)]
    services: Option<Vec<Ref>>,
    #[serde(flatten)]
    stamps: Stamps,
}

fn staff(ctx: &Ctx<'_>, data: Option<&RawValue>) -> Result<MapOutcome, MapError> {
    let d: StaffData = ctx.data(data)?;
    let vendor_id = ctx.id(d.id)?;
    let version = ctx.version(&d.stamps)?;
    let mut changes = Vec::new();
    let service_ids = d.services.map(|services| {
        services
            .into_iter()
            .filter_map(|s| {
                let id = s.id?;
                push_service(&mut changes, Some(&id), s.name);
                Some(id)
            })
            .collect()
    });
    changes.push(Change::Staff(StaffChange {
        vendor_id,
        action: ctx.action,
        name: d.name,
        email: d.email,
        time_zone: None,
        service_ids,
        version,
    }));
    ctx.mapped(version, changes)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::NaiveDate;
    use serde_json::json;

    use super::*;
    use crate::domain::Vendor;
    use crate::vendors::tests::{CHUP_KEY, deliver, deliver_json, fixture, mapped, utc};
    use crate::vendors::{Credentials, Webhook};

    fn verify(body: Vec<u8>, key: &[u8]) -> Result<Verification, VerifyError> {
        Webhook::new(Vendor::Chup, Bytes::from(body), None)
            .verify(Credentials::HmacKey(key))
            .map(|hook| hook.verification())
    }

    fn queue_entry(n: &Normalized) -> &QueueEntryChange {
        n.changes
            .iter()
            .find_map(|c| {
                if let Change::QueueEntry(q) = c {
                    Some(q)
                } else {
                    None
                }
            })
            .expect("a queue entry change")
    }

    fn appointment_change(n: &Normalized) -> &AppointmentChange {
        n.changes
            .iter()
            .find_map(|c| {
                if let Change::Appointment(a) = c {
                    Some(a)
                } else {
                    None
                }
            })
            .expect("an appointment change")
    }

    fn with_signature(body: &[u8], signature: Value) -> Vec<u8> {
        let mut value: Value = serde_json::from_slice(body).unwrap();
        value["signature"] = signature;
        serde_json::to_vec(&value).unwrap()
    }

    // --- verification ---------------------------------------------------------------------

    #[test]
    fn a_signature_over_the_raw_payload_verifies_as_hmac_raw() {
        let body = sign_chup(&fixture("chup", "live_queue_updated_arrived"), CHUP_KEY);
        assert_eq!(verify(body, CHUP_KEY), Ok(Verification::HmacRaw));
    }

    #[test]
    fn a_signature_over_the_php_re_encoding_verifies_as_hmac_php_json() {
        let body = sign_chup_php(&fixture("chup", "client_created"), CHUP_KEY);
        assert_eq!(verify(body, CHUP_KEY), Ok(Verification::HmacPhpJson));
    }

    #[test]
    fn the_two_signed_forms_differ_for_a_payload_with_non_ascii_and_slashes() {
        let original = fixture("chup", "client_created");
        let text = String::from_utf8(original.clone()).unwrap();
        assert!(text.contains("陈美玲") && text.contains("https://"));
        let raw = sign_chup(&original, CHUP_KEY);
        let php = sign_chup_php(&original, CHUP_KEY);
        assert_ne!(raw, php);
        // The PHP form of this payload escapes both the CJK name and the URL's slashes.
        let (payload, _) = parse_envelope(&original).unwrap();
        let encoded = php_json::encode(payload.get()).unwrap();
        assert!(
            encoded.contains(r#""Tan Mei Ling \u9648\u7f8e\u73b2""#),
            "{encoded}"
        );
        assert!(
            encoded.contains(r#"https:\/\/chup.online\/storage\/avatars\/3735.png"#),
            "{encoded}"
        );
    }

    #[test]
    fn a_compact_php_encoded_body_verifies_as_raw() {
        let body = br#"{"payload":{"event":"client_updated","data":{"id":1,"name":"Jos\u00e9","url":"https:\/\/x.my\/a"}},"signature":""}"#;
        assert_eq!(
            verify(sign_chup(body, CHUP_KEY), CHUP_KEY),
            Ok(Verification::HmacRaw)
        );
        // The PHP re-encoding of an already PHP-encoded payload is the same text.
        assert_eq!(
            verify(sign_chup_php(body, CHUP_KEY), CHUP_KEY),
            Ok(Verification::HmacRaw)
        );
    }

    #[test]
    fn an_uppercase_hex_signature_is_accepted() {
        let signed =
            String::from_utf8(sign_chup(&fixture("chup", "live_queue_created"), CHUP_KEY)).unwrap();
        let value: Value = serde_json::from_str(&signed).unwrap();
        let lower = value["signature"].as_str().unwrap().to_owned();
        assert!(lower.chars().all(|c| !c.is_ascii_uppercase()));
        // Only the signature text changes; the payload bytes stay exactly as signed.
        let upper = signed.replace(&lower, &lower.to_ascii_uppercase());
        assert_ne!(upper, signed);
        assert_eq!(
            verify(upper.into_bytes(), CHUP_KEY),
            Ok(Verification::HmacRaw)
        );
    }

    #[test]
    fn a_tampered_payload_fails_with_bad_signature() {
        let signed = String::from_utf8(sign_chup(
            &fixture("chup", "live_queue_updated_arrived"),
            CHUP_KEY,
        ))
        .unwrap();
        let tampered = signed.replace("\"ARRIVED\"", "\"SERVED\"");
        assert_ne!(signed, tampered);
        assert_eq!(
            verify(tampered.into_bytes(), CHUP_KEY),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_wrong_key_fails_with_bad_signature() {
        let body = sign_chup(
            &fixture("chup", "live_queue_updated_arrived"),
            b"another clinic's key",
        );
        assert_eq!(verify(body, CHUP_KEY), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_missing_empty_or_null_signature_is_missing_signature() {
        let unsigned = fixture("chup", "live_queue_updated_arrived");
        assert_eq!(
            verify(unsigned.clone(), CHUP_KEY),
            Err(VerifyError::MissingSignature)
        );
        assert_eq!(
            verify(with_signature(&unsigned, Value::Null), CHUP_KEY),
            Err(VerifyError::MissingSignature)
        );
        let without: Vec<u8> =
            br#"{"payload": {"event": "client_updated", "data": {"id": 1}}}"#.to_vec();
        assert_eq!(
            verify(without, CHUP_KEY),
            Err(VerifyError::MissingSignature)
        );
    }

    #[test]
    fn a_signature_that_is_not_32_bytes_of_hex_is_bad_signature() {
        let unsigned = fixture("chup", "live_queue_updated_arrived");
        for bad in [
            json!("zz"),
            json!("abcd"),
            json!(12345),
            json!("e43bbd70a719bc9cd51be1122cc170d6ec43dd16918b163311be622a042bcd39ff"),
        ] {
            assert_eq!(
                verify(with_signature(&unsigned, bad.clone()), CHUP_KEY),
                Err(VerifyError::BadSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_published_example_signature_does_not_verify_with_a_guessed_key() {
        let doc = with_signature(
            &fixture("chup", "live_queue_updated_arrived"),
            json!("e43bbd70a719bc9cd51be1122cc170d6ec43dd16918b163311be622a042bcd39"),
        );
        assert_eq!(verify(doc, b""), Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_body_without_payload_is_malformed() {
        for body in [
            &br#"{"signature": "ab"}"#[..],
            br#"{"payload": "x", "signature": "ab"}"#,
            br#"[{"event": "x"}, "ab"]"#,
            b"[1,2]",
            b"",
        ] {
            assert!(
                matches!(
                    verify(body.to_vec(), CHUP_KEY),
                    Err(VerifyError::Malformed(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn signing_a_body_that_is_not_an_envelope_returns_it_unchanged() {
        assert_eq!(sign_chup(b"not json", CHUP_KEY), b"not json".to_vec());
    }

    // --- dedupe and dispatch --------------------------------------------------------------

    #[test]
    fn the_dedupe_key_is_the_sha256_of_the_raw_payload_text() {
        let body = sign_chup(&fixture("chup", "live_queue_updated_arrived"), CHUP_KEY);
        let (payload, _) = parse_envelope(&body).unwrap();
        let expected = format!("sha256:{}", wire::sha256_hex(payload.get().as_bytes()));
        let (delivery, _) = mapped(Vendor::Chup, "live_queue_updated_arrived");
        assert_eq!(delivery.dedupe_key, Some(expected));
        assert_eq!(delivery.event_type.as_deref(), Some("live_queue_updated"));
        let (other, _) = mapped(Vendor::Chup, "live_queue_updated_serving");
        assert_ne!(delivery.dedupe_key, other.dedupe_key);
    }

    #[test]
    fn an_unknown_chup_event_is_unsupported_not_an_error() {
        let delivery = deliver_json(
            Vendor::Chup,
            &json!({"payload": {"event": "invoice_created", "data": {"id": 1}}, "signature": ""}),
        )
        .unwrap();
        match delivery.outcome {
            Ok(MapOutcome::Unsupported { event_type, reason }) => {
                assert_eq!(event_type, "invoice_created");
                assert!(reason.contains("invoice_created"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_payload_without_event_is_rejected() {
        let rejection = deliver_json(
            Vendor::Chup,
            &json!({"payload": {"data": {"id": 1}}, "signature": ""}),
        )
        .unwrap_err();
        assert_eq!(rejection.message(), "chup payload has no `event`");
    }

    #[test]
    fn a_known_event_without_data_or_id_fails_mapping() {
        let no_data = deliver_json(
            Vendor::Chup,
            &json!({"payload": {"event": "live_queue_updated"}, "signature": ""}),
        )
        .unwrap();
        assert!(
            no_data
                .outcome
                .unwrap_err()
                .message()
                .contains("no `payload.data`")
        );
        let no_id = deliver_json(Vendor::Chup, &json!({"payload": {"event": "client_updated", "data": {"name": "x"}}, "signature": ""})).unwrap();
        assert!(no_id.outcome.unwrap_err().message().contains("data.id"));
    }

    #[test]
    fn an_unparseable_updated_at_fails_mapping_naming_the_field_only() {
        let delivery = deliver_json(
            Vendor::Chup,
            &json!({"payload": {"event": "live_queue_updated", "data": {"id": 1, "updated_at": "yesterday-ish"}}, "signature": ""}),
        )
        .unwrap();
        let err = delivery.outcome.unwrap_err();
        assert!(
            err.message().contains("data.updated_at") && !err.message().contains("yesterday"),
            "{err}"
        );
    }

    #[test]
    fn a_field_of_the_wrong_type_fails_mapping_without_quoting_the_value() {
        let delivery = deliver_json(
            Vendor::Chup,
            &json!({"payload": {"event": "live_queue_updated", "data": {"id": 1, "registered_client_name": {"first": "Saad"}}}, "signature": ""}),
        )
        .unwrap();
        let err = delivery.outcome.unwrap_err();
        assert!(!err.message().contains("Saad"), "{err}");
    }

    // --- live queue -----------------------------------------------------------------------

    #[test]
    fn the_arrived_fixture_maps_to_an_arrived_ticket_with_client_service_and_staff() {
        let (_, n) = mapped(Vendor::Chup, "live_queue_updated_arrived");
        assert_eq!(n.event_type, "live_queue_updated");
        assert_eq!(n.occurred_at, Some(utc("2024-01-16T16:41:09Z")));
        assert_eq!(
            n.changes[0],
            Change::Client(ClientChange {
                vendor_id: "3734".into(),
                full_name: Some("Saad".into()),
                phone: Some("+923093927454".into()),
                ..ClientChange::default()
            })
        );
        assert_eq!(
            n.changes[1],
            Change::Service(ServiceChange {
                vendor_id: "220".into(),
                name: Some("Registration".into()),
                ..ServiceChange::default()
            })
        );
        assert_eq!(
            n.changes[2],
            Change::Staff(StaffChange {
                vendor_id: "246".into(),
                name: Some("Registration".into()),
                ..StaffChange::default()
            })
        );
        let q = queue_entry(&n);
        assert_eq!(q.vendor_id, "19242");
        assert_eq!(q.action, Action::Upsert);
        assert_eq!(
            q.state,
            Some(QueueState {
                kind: QueueStateKind::Arrived,
                raw_code: Some(3),
                raw_name: Some("ARRIVED".into()),
                label: Some("Arrived".into()),
            })
        );
        assert_eq!(q.client_id.as_deref(), Some("3734"));
        assert_eq!(q.service_id.as_deref(), Some("220"));
        assert_eq!(q.staff_id.as_deref(), Some("246"));
        assert_eq!(q.appointment_id, None);
        // 00:35 on the 17th in +08:00 is still the 16th in UTC; the board day is the local one.
        assert_eq!(q.queue_date, NaiveDate::from_ymd_opt(2024, 1, 17));
        assert_eq!(q.time_zone.as_deref(), Some("+08:00"));
        assert_eq!(q.vendor_created_at, Some(utc("2024-01-16T16:35:22Z")));
        assert_eq!(q.version, Some(utc("2024-01-16T16:41:09Z")));
        assert_eq!(q.notes, Some(json!([])));
    }

    #[test]
    fn joining_the_queue_with_integer_state_1_is_waiting_in_queue() {
        let (_, n) = mapped(Vendor::Chup, "live_queue_created");
        let q = queue_entry(&n);
        assert_eq!(
            q.state,
            Some(QueueState {
                kind: QueueStateKind::Waiting,
                raw_code: Some(1),
                raw_name: None,
                label: Some("In Queue".into())
            })
        );
        assert_eq!(q.notes, Some(json!([])));
        assert_eq!(q.version, Some(utc("2024-01-16T16:35:22Z")));
    }

    #[test]
    fn every_workflow_step_maps_to_its_queue_state() {
        let steps = [
            ("live_queue_created", QueueStateKind::Waiting, "19242"),
            (
                "live_queue_updated_arrived",
                QueueStateKind::Arrived,
                "19242",
            ),
            ("live_queue_updated_alert", QueueStateKind::Arrived, "19242"),
            (
                "live_queue_updated_serving",
                QueueStateKind::Serving,
                "19242",
            ),
            ("live_queue_updated_served", QueueStateKind::Served, "19242"),
            ("live_queue_updated_moved", QueueStateKind::Moved, "19242"),
            (
                "live_queue_updated_no_show",
                QueueStateKind::NoShow,
                "19242",
            ),
            (
                "live_queue_updated_back_to_queue_from_no_show",
                QueueStateKind::Waiting,
                "19242",
            ),
            (
                "live_queue_updated_pharmacy_received",
                QueueStateKind::Pharmacy,
                "19242",
            ),
            (
                "live_queue_updated_pharmacy_dispense",
                QueueStateKind::Pharmacy,
                "19242",
            ),
            (
                "live_queue_updated_billing_paid",
                QueueStateKind::Billing,
                "19242",
            ),
            (
                "live_queue_updated_end_visit",
                QueueStateKind::Ended,
                "19242",
            ),
            (
                "live_queue_created_from_appointment",
                QueueStateKind::Waiting,
                "19243",
            ),
            (
                "live_queue_updated_no_show_cancelled_by_system",
                QueueStateKind::Cancelled,
                "19243",
            ),
            (
                "live_queue_updated_cancel",
                QueueStateKind::Cancelled,
                "19244",
            ),
            ("live_queue_deleted", QueueStateKind::Cancelled, "19244"),
        ];
        let mut last_version = None;
        for (name, kind, id) in steps {
            let (_, n) = mapped(Vendor::Chup, name);
            let q = queue_entry(&n);
            assert_eq!(q.state.as_ref().map(|s| s.kind), Some(kind), "{name}");
            assert_eq!(q.vendor_id, id, "{name}");
            if id == "19242" {
                assert!(
                    q.version > last_version,
                    "{name} is newer than the step before"
                );
                last_version = q.version;
            }
        }
    }

    #[test]
    fn moving_a_ticket_changes_its_service_and_staff() {
        let (_, n) = mapped(Vendor::Chup, "live_queue_updated_moved");
        let q = queue_entry(&n);
        assert_eq!(
            (q.service_id.as_deref(), q.staff_id.as_deref()),
            (Some("221"), Some("247"))
        );
        assert_eq!(
            q.state.as_ref().and_then(|s| s.raw_name.as_deref()),
            Some("MOVED")
        );
    }

    #[test]
    fn an_alert_note_travels_as_the_notes_list() {
        let (_, n) = mapped(Vendor::Chup, "live_queue_updated_alert");
        let notes = queue_entry(&n).notes.clone().unwrap();
        assert_eq!(notes[0]["type"], "alert");
        assert_eq!(
            notes[0]["message"],
            "Please proceed to Counter 2 / Kaunter 2"
        );
    }

    #[test]
    fn a_system_cancelled_no_show_keeps_its_label() {
        let (_, n) = mapped(
            Vendor::Chup,
            "live_queue_updated_no_show_cancelled_by_system",
        );
        let state = queue_entry(&n).state.clone().unwrap();
        assert_eq!(state.label.as_deref(), Some("No Show (Canceled by System)"));
        assert_eq!(state.raw_name.as_deref(), Some("CANCELLED"));
    }

    #[test]
    fn a_ticket_from_an_appointment_links_it_and_normalizes_the_malaysian_phone() {
        let (_, n) = mapped(Vendor::Chup, "live_queue_created_from_appointment");
        let q = queue_entry(&n);
        assert_eq!(q.appointment_id.as_deref(), Some("88123"));
        assert_eq!(q.queue_date, NaiveDate::from_ymd_opt(2024, 1, 19));
        match &n.changes[0] {
            Change::Client(c) => {
                assert_eq!(c.phone.as_deref(), Some("+60123456789"));
                assert_eq!(c.full_name.as_deref(), Some("Tan Mei Ling 陈美玲"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn live_queue_deleted_deletes_the_ticket_but_not_its_client() {
        let (_, n) = mapped(Vendor::Chup, "live_queue_deleted");
        let q = queue_entry(&n);
        assert_eq!(q.action, Action::Delete);
        assert_eq!(q.version, Some(utc("2024-01-17T01:15:41Z")));
        assert!(matches!(&n.changes[0], Change::Client(c) if c.action == Action::Upsert));
    }

    #[test]
    fn state_codes_and_names_are_read_in_every_spelling() {
        let cases = [
            (json!("3"), None, QueueStateKind::Arrived, Some(3), None),
            (
                json!("serving"),
                None,
                QueueStateKind::Serving,
                None,
                Some("serving"),
            ),
            (
                json!({"name": "CHECKED_OUT_X", "value": 3}),
                None,
                QueueStateKind::Arrived,
                Some(3),
                Some("CHECKED_OUT_X"),
            ),
            (json!(99), None, QueueStateKind::Other, Some(99), None),
            (
                json!(99),
                Some("Pharmacy (Received)"),
                QueueStateKind::Pharmacy,
                Some(99),
                None,
            ),
            (
                json!({"name": "NOSHOW"}),
                None,
                QueueStateKind::NoShow,
                None,
                Some("NOSHOW"),
            ),
            (
                Value::Null,
                Some("Served"),
                QueueStateKind::Served,
                None,
                None,
            ),
        ];
        for (state, label, kind, code, name) in cases {
            let data = json!({"id": "19242", "state": state, "state_name": label});
            let delivery = deliver_json(
                Vendor::Chup,
                &json!({"payload": {"event": "live_queue_updated", "data": data}, "signature": ""}),
            )
            .unwrap();
            let Ok(MapOutcome::Mapped(n)) = delivery.outcome else {
                panic!("{state}")
            };
            let s = queue_entry(&n).state.clone().unwrap();
            assert_eq!(
                (s.kind, s.raw_code, s.raw_name.as_deref()),
                (kind, code, name),
                "{state}"
            );
        }
    }

    #[test]
    fn a_ticket_without_created_at_falls_back_to_the_appointment_date_and_payload_timestamp() {
        let body = json!({"payload": {"event": "live_queue_updated", "timestamp": "2024-02-01T09:00:00+08:00",
            "data": {"id": 7, "appointment_date": "2024-02-01", "notes": null}}, "signature": ""});
        let Ok(MapOutcome::Mapped(n)) = deliver_json(Vendor::Chup, &body).unwrap().outcome else {
            panic!()
        };
        let q = queue_entry(&n);
        assert_eq!(q.queue_date, NaiveDate::from_ymd_opt(2024, 2, 1));
        assert_eq!(q.time_zone.as_deref(), Some("+08:00"));
        assert_eq!(q.version, Some(utc("2024-02-01T01:00:00Z")));
        assert_eq!((q.notes.clone(), q.state.clone()), (None, None));
    }

    // --- appointments, clients, services, staff ------------------------------------------

    #[test]
    fn appointment_created_maps_times_status_and_the_non_ascii_client() {
        let (_, n) = mapped(Vendor::Chup, "appointment_created");
        assert!(
            matches!(&n.changes[0], Change::Client(c) if c.full_name.as_deref() == Some("Tan Mei Ling 陈美玲")
            && c.email.as_deref() == Some("meiling.tan@example.com.my") && c.phone.as_deref() == Some("+60123456789"))
        );
        assert!(matches!(&n.changes[1], Change::Staff(s) if s.vendor_id == "247"));
        assert!(matches!(&n.changes[2], Change::Service(s) if s.vendor_id == "221"));
        let a = appointment_change(&n);
        assert_eq!(a.vendor_id, "88123");
        assert_eq!(a.starts_at, Some(utc("2024-01-18T02:30:00Z")));
        assert_eq!(a.ends_at, Some(utc("2024-01-18T02:45:00Z")));
        assert_eq!(a.time_zone.as_deref(), Some("+08:00"));
        assert_eq!(
            a.status,
            Some(AppointmentStatus {
                kind: AppointmentStatusKind::Booked,
                raw: Some("BOOKED".into()),
                raw_sub_status: None
            })
        );
        assert_eq!(
            a.notes.as_deref(),
            Some("Follow-up: blood test results / BP check")
        );
        assert_eq!(a.version, Some(utc("2024-01-16T08:20:05Z")));
    }

    #[test]
    fn appointment_updated_is_the_reschedule() {
        let (_, n) = mapped(Vendor::Chup, "appointment_updated");
        let a = appointment_change(&n);
        assert_eq!(
            a.status.as_ref().map(|s| s.kind),
            Some(AppointmentStatusKind::Rescheduled)
        );
        assert_eq!(a.starts_at, Some(utc("2024-01-19T07:00:00Z")));
    }

    #[test]
    fn appointment_deleted_is_a_delete() {
        let (_, n) = mapped(Vendor::Chup, "appointment_deleted");
        let a = appointment_change(&n);
        assert_eq!((a.vendor_id.as_str(), a.action), ("88130", Action::Delete));
    }

    #[test]
    fn an_appointment_without_start_at_uses_date_time_and_duration() {
        let body = json!({"payload": {"event": "appointment_created", "timestamp": "2024-01-16T16:20:05+08:00",
            "data": {"id": 5, "appointment_date": "2024-01-18", "appointment_time": "10:30", "duration": 30, "status": 1}}, "signature": ""});
        let Ok(MapOutcome::Mapped(n)) = deliver_json(Vendor::Chup, &body).unwrap().outcome else {
            panic!()
        };
        let a = appointment_change(&n);
        assert_eq!(a.starts_at, Some(utc("2024-01-18T02:30:00Z")));
        assert_eq!(a.ends_at, Some(utc("2024-01-18T03:00:00Z")));
        assert_eq!(
            a.status.as_ref().map(|s| (s.kind, s.raw.as_deref())),
            Some((AppointmentStatusKind::Other, Some("1")))
        );
    }

    #[test]
    fn an_end_past_the_last_representable_date_fails_mapping_instead_of_panicking() {
        // Panicked with "`DateTime + TimeDelta` overflowed" (found while writing the fuzz
        // targets, reproduced with `chup_signed`; see fuzz/README.md).
        let body = json!({"payload": {"event": "appointment_created", "timestamp": "2024-01-17T00:35:22+00:00",
            "data": {"id": 1, "appointment_date": "+262142-12-31", "appointment_time": "23:00", "duration": 1440}}, "signature": ""});
        let err = deliver_json(Vendor::Chup, &body)
            .unwrap()
            .outcome
            .unwrap_err();
        assert!(err.message().contains("appointment_date"), "{err}");
    }

    #[test]
    fn client_events_map_to_client_changes() {
        let (_, n) = mapped(Vendor::Chup, "client_created");
        assert_eq!(
            n.changes,
            vec![Change::Client(ClientChange {
                vendor_id: "3735".into(),
                full_name: Some("Tan Mei Ling 陈美玲".into()),
                phone: Some("+60123456789".into()),
                email: Some("meiling.tan@example.com".into()),
                version: Some(utc("2024-01-15T01:12:40Z")),
                ..ClientChange::default()
            })]
        );
        let (_, n) = mapped(Vendor::Chup, "client_updated");
        assert!(
            matches!(&n.changes[0], Change::Client(c) if c.email.as_deref() == Some("meiling.tan@example.com.my"))
        );
        let (_, n) = mapped(Vendor::Chup, "client_deleted");
        assert!(
            matches!(&n.changes[0], Change::Client(c) if c.action == Action::Delete && c.vendor_id == "3790"
            && c.version == Some(utc("2024-01-17T09:45:12Z")))
        );
    }

    #[test]
    fn service_staffs_updated_lists_the_staff_before_the_service() {
        let (_, n) = mapped(Vendor::Chup, "service_staffs_updated");
        assert_eq!(n.changes.len(), 3);
        assert!(
            matches!(&n.changes[0], Change::Staff(s) if s.vendor_id == "247" && s.name.as_deref() == Some("Dr. Aisyah Rahman"))
        );
        assert!(matches!(&n.changes[1], Change::Staff(s) if s.vendor_id == "250"));
        match &n.changes[2] {
            Change::Service(s) => {
                assert_eq!(s.vendor_id, "221");
                assert_eq!(s.staff_ids, Some(vec!["247".to_owned(), "250".to_owned()]));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn service_events_carry_duration_and_deletion() {
        let (_, n) = mapped(Vendor::Chup, "service_created");
        assert!(
            matches!(&n.changes[0], Change::Service(s) if s.duration_minutes == Some(15) && s.staff_ids == Some(vec![]))
        );
        let (_, n) = mapped(Vendor::Chup, "service_updated");
        assert!(
            matches!(&n.changes[0], Change::Service(s) if s.name.as_deref() == Some("Consultation (GP)") && s.staff_ids.is_none())
        );
        let (_, n) = mapped(Vendor::Chup, "service_deleted");
        assert!(
            matches!(&n.changes[0], Change::Service(s) if s.action == Action::Delete && s.vendor_id == "224")
        );
    }

    #[test]
    fn staff_events_map_to_staff_changes_with_their_services() {
        let (_, n) = mapped(Vendor::Chup, "staff_services_updated");
        assert!(matches!(&n.changes[0], Change::Service(s) if s.vendor_id == "221"));
        assert!(matches!(&n.changes[1], Change::Service(s) if s.vendor_id == "224"));
        assert!(
            matches!(&n.changes[2], Change::Staff(s) if s.service_ids == Some(vec!["221".into(), "224".into()]))
        );
        let (_, n) = mapped(Vendor::Chup, "staff_created");
        assert!(
            matches!(&n.changes[0], Change::Staff(s) if s.email.as_deref() == Some("kumar.selvam@kliniksejahtera.my"))
        );
        let (_, n) = mapped(Vendor::Chup, "staff_deleted");
        assert!(matches!(&n.changes[0], Change::Staff(s) if s.action == Action::Delete));
        let (_, n) = mapped(Vendor::Chup, "staff_updated");
        assert!(
            matches!(&n.changes[0], Change::Staff(s) if s.name.as_deref() == Some("Dr. Aisyah binti Rahman"))
        );
    }

    #[test]
    fn ids_sent_as_strings_are_the_same_ids() {
        let body = json!({"payload": {"event": "live_queue_updated", "data": {"id": "19242", "registered_client_id": " 3734 ", "service_id": 220}}, "signature": ""});
        let Ok(MapOutcome::Mapped(n)) = deliver(Vendor::Chup, serde_json::to_vec(&body).unwrap())
            .unwrap()
            .outcome
        else {
            panic!()
        };
        let q = queue_entry(&n);
        assert_eq!(
            (
                q.vendor_id.as_str(),
                q.client_id.as_deref(),
                q.service_id.as_deref()
            ),
            ("19242", Some("3734"), Some("220"))
        );
    }
}
