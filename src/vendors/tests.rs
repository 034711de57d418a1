//! Tests across vendors: fixture loading helpers shared by the per-vendor test modules, URL-token
//! verification, the dispatch, "every fixture maps" sweeps and property tests that feed
//! arbitrary bytes and arbitrary JSON through `verify` + `normalize` to prove they never panic.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::domain::{Change, MapOutcome, Normalized};

pub(crate) const CHUP_KEY: &[u8] = b"chup-test-secret-kl-central";
pub(crate) const TOKEN: &str = "s3cr3t-url-token-for-tests";

/// Reads `fixtures/<vendor>/<name>.json` relative to the crate root.
pub(crate) fn fixture(vendor: &str, name: &str) -> Vec<u8> {
    let path = format!(
        "{}/fixtures/{vendor}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Verifies a body the way the ingest path would: Chup signed with [`CHUP_KEY`], the others
/// with [`TOKEN`] in the URL.
pub(crate) fn verified(vendor: Vendor, body: Vec<u8>) -> Webhook<Verified> {
    let (body, credentials, token) = match vendor {
        Vendor::Chup => (
            chup::sign_chup(&body, CHUP_KEY),
            Credentials::HmacKey(CHUP_KEY),
            None,
        ),
        _ => (body, Credentials::UrlToken(TOKEN), Some(TOKEN.to_owned())),
    };
    Webhook::new(vendor, Bytes::from(body), token)
        .verify(credentials)
        .expect("test body verifies")
}

pub(crate) fn deliver(vendor: Vendor, body: Vec<u8>) -> Result<Delivery, Rejection> {
    normalize(&verified(vendor, body), &MapperConfig::default())
}

/// Maps a fixture and returns the delivery with its normalized content; panics on anything else.
pub(crate) fn mapped(vendor: Vendor, name: &str) -> (Delivery, Normalized) {
    let delivery = deliver(vendor, fixture(vendor.as_str(), name)).expect("fixture is accepted");
    match &delivery.outcome {
        Ok(MapOutcome::Mapped(normalized)) => {
            let normalized = normalized.clone();
            (delivery, normalized)
        }
        other => panic!("{vendor}/{name} did not map: {other:?}"),
    }
}

/// Maps a JSON value built in a test.
pub(crate) fn deliver_json(vendor: Vendor, value: &Value) -> Result<Delivery, Rejection> {
    deliver(vendor, serde_json::to_vec(value).expect("serializable"))
}

pub(crate) fn utc(text: &str) -> chrono::DateTime<chrono::Utc> {
    text.parse().expect("test timestamp")
}

fn fixture_names(vendor: &str) -> Vec<String> {
    let dir = format!("{}/fixtures/{vendor}", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_file_is_valid_json_and_maps_without_error() {
    let mut count = 0;
    for vendor in Vendor::ALL {
        let names = fixture_names(vendor.as_str());
        assert!(names.len() >= 6, "{vendor} has fixtures");
        for name in names {
            let body = fixture(vendor.as_str(), &name);
            serde_json::from_slice::<Value>(&body)
                .unwrap_or_else(|e| panic!("{vendor}/{name}: {e}"));
            let delivery =
                deliver(vendor, body).unwrap_or_else(|e| panic!("{vendor}/{name} rejected: {e}"));
            match delivery.outcome {
                Ok(MapOutcome::Mapped(n)) => {
                    assert!(!n.changes.is_empty(), "{vendor}/{name} has changes")
                }
                // Directory-level vCita events are well-formed but change no clinic entity.
                Ok(MapOutcome::Unsupported { .. }) => {
                    assert!(
                        vendor == Vendor::Vcita
                            && (name.starts_with("pivot") || name.starts_with("account"))
                    )
                }
                Err(e) => panic!("{vendor}/{name} failed: {e}"),
            }
            assert!(delivery.event_type.is_some());
            count += 1;
        }
    }
    assert!(count >= 60, "only {count} fixtures");
}

#[test]
fn referenced_entities_come_before_the_entities_that_reference_them() {
    fn rank(change: &Change) -> u8 {
        match change {
            Change::Client(_) | Change::Staff(_) | Change::Service(_) | Change::Location(_) => 0,
            _ => 1,
        }
    }
    for vendor in Vendor::ALL {
        for name in fixture_names(vendor.as_str()) {
            if let Ok(Ok(MapOutcome::Mapped(n))) =
                deliver(vendor, fixture(vendor.as_str(), &name)).map(|d| d.outcome)
            {
                let ranks: Vec<u8> = n.changes.iter().map(rank).collect();
                assert!(
                    ranks.windows(2).all(|w| w[0] <= w[1]),
                    "{vendor}/{name}: {ranks:?}"
                );
            }
        }
    }
}

#[test]
fn a_matching_url_token_verifies_unsigned_vendors() {
    for vendor in [Vendor::Vcita, Vendor::Vsee, Vendor::Timetap] {
        let hook = Webhook::new(vendor, Bytes::from_static(b"{}"), Some(TOKEN.to_owned()));
        let verified = hook.verify(Credentials::UrlToken(TOKEN)).expect("verifies");
        assert_eq!(verified.verification(), Verification::UrlToken);
        assert_eq!(verified.verification().as_str(), "url-token");
        assert_eq!(verified.vendor(), vendor);
        assert_eq!(verified.body().as_ref(), b"{}");
    }
}

#[test]
fn a_missing_or_empty_url_token_is_missing_token() {
    for token in [None, Some(String::new())] {
        let hook = Webhook::new(Vendor::Vsee, Bytes::from_static(b"{}"), token);
        assert_eq!(
            hook.verify(Credentials::UrlToken(TOKEN)).err(),
            Some(VerifyError::MissingToken)
        );
    }
}

#[test]
fn a_wrong_url_token_of_any_length_is_bad_token() {
    for wrong in [
        "nope",
        "s3cr3t-url-token-for-testz",
        "s3cr3t-url-token-for-tests-and-more",
        " ",
    ] {
        let hook = Webhook::new(
            Vendor::Timetap,
            Bytes::from_static(b"{}"),
            Some(wrong.to_owned()),
        );
        assert_eq!(
            hook.verify(Credentials::UrlToken(TOKEN)).err(),
            Some(VerifyError::BadToken),
            "{wrong}"
        );
    }
}

#[test]
fn credentials_of_the_wrong_kind_are_a_configuration_error() {
    let hook = Webhook::new(
        Vendor::Vcita,
        Bytes::from_static(b"{}"),
        Some(TOKEN.to_owned()),
    );
    assert_eq!(
        hook.verify(Credentials::HmacKey(CHUP_KEY)).err(),
        Some(VerifyError::WrongCredentials)
    );
    let hook = Webhook::new(
        Vendor::Chup,
        Bytes::from_static(b"{}"),
        Some(TOKEN.to_owned()),
    );
    assert_eq!(
        hook.verify(Credentials::UrlToken(TOKEN)).err(),
        Some(VerifyError::WrongCredentials)
    );
}

#[test]
fn debug_output_never_shows_the_token_the_key_or_the_body() {
    let hook = Webhook::new(
        Vendor::Vsee,
        Bytes::from_static(b"{\"name\":\"Saad\"}"),
        Some(TOKEN.to_owned()),
    );
    let text = format!(
        "{hook:?} {:?} {:?}",
        Credentials::UrlToken(TOKEN),
        Credentials::HmacKey(CHUP_KEY)
    );
    assert!(
        !text.contains(TOKEN) && !text.contains("Saad") && !text.contains("chup-test-secret"),
        "{text}"
    );
}

#[test]
fn verify_error_messages_name_the_problem_without_secrets() {
    assert!(
        VerifyError::BadSignature
            .to_string()
            .contains("HMAC-SHA256")
    );
    assert!(VerifyError::MissingToken.to_string().contains("?token="));
    assert_eq!(Verification::HmacRaw.as_str(), "hmac-raw");
    assert_eq!(Verification::HmacPhpJson.to_string(), "hmac-php-json");
}

#[test]
fn the_default_mapper_config_knows_only_the_two_evidenced_vsee_codes() {
    let config = MapperConfig::default();
    assert_eq!(config.vsee_status_codes.len(), 2);
    assert_eq!(
        config.vsee_status_codes.get("40"),
        Some(&VisitStatusKind::Completed)
    );
    assert_eq!(
        config.vsee_status_codes.get("10"),
        Some(&VisitStatusKind::Pending)
    );
}

#[test]
fn a_body_that_is_not_json_is_rejected_by_every_vendor() {
    for vendor in [Vendor::Vcita, Vendor::Vsee, Vendor::Timetap] {
        let rejection = deliver(vendor, b"token=abc&name=Saad".to_vec()).expect_err("rejected");
        assert!(
            rejection.message().starts_with("body is not JSON"),
            "{vendor}: {rejection}"
        );
        assert!(!rejection.message().contains("Saad"));
    }
    let hook = Webhook::new(Vendor::Chup, Bytes::from_static(b"<xml/>"), None);
    match hook.verify(Credentials::HmacKey(CHUP_KEY)) {
        Err(VerifyError::Malformed(reason)) => {
            assert!(reason.starts_with("body is not JSON"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests: nothing a sender can put in a body makes verify + normalize panic.
// ---------------------------------------------------------------------------------------------

/// Arbitrary JSON, biased towards the scalars vendors mix up (numbers as strings, nulls).
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[0-9]{0,12}".prop_map(Value::String),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("2024-01-17T00:35:22+08:00"),
            Just("2024-13-45T99:00:00Z"),
            Just("1546950546"),
            Just("America/New_York"),
            Just("Mars/Olympus"),
            Just("OPEN"),
            Just("CHECKEDIN"),
            Just("40"),
            Just("https://chup.online/a/b"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object whose keys come from a vendor's vocabulary, so the mappers' field handling is hit.
fn arb_object(keys: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop::collection::vec((prop::sample::select(keys), arb_json()), 0..12).prop_map(|pairs| {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    })
}

const CHUP_DATA_KEYS: &[&str] = &[
    "id",
    "appointment_id",
    "appointment_date",
    "appointment_time",
    "registered_client_id",
    "registered_client_name",
    "registered_client_phone",
    "client_name",
    "state",
    "state_name",
    "service_id",
    "service_name",
    "staff_id",
    "staff_name",
    "notes",
    "created_at",
    "updated_at",
    "deleted_at",
    "start_at",
    "end_at",
    "duration",
    "status",
    "status_name",
    "name",
    "phone",
    "email",
    "staffs",
    "services",
    "client_id",
    "remarks",
    "custom_fields",
];
const CHUP_EVENTS: &[&str] = &[
    "live_queue_created",
    "live_queue_updated",
    "live_queue_deleted",
    "appointment_created",
    "appointment_deleted",
    "client_updated",
    "service_staffs_updated",
    "staff_services_updated",
    "something_else",
];
const VCITA_DATA_KEYS: &[&str] = &[
    "id",
    "client_id",
    "appointment_id",
    "payment_id",
    "first_name",
    "last_name",
    "phone",
    "email",
    "custom_fields",
    "updated_at",
    "start_time",
    "end_time",
    "duration",
    "status",
    "state",
    "amount",
    "currency",
    "staff_id",
    "service_id",
    "notes",
    "title",
];
const VSEE_DATA_KEYS: &[&str] = &[
    "id",
    "member_id",
    "provider_id",
    "start",
    "end",
    "actual_start",
    "actual_end",
    "status",
    "status_updated_by",
    "completed_by",
    "note",
    "invoice",
    "first_name",
    "last_name",
    "type",
    "email",
    "phone",
];
const TIMETAP_KEYS: &[&str] = &[
    "calendarid",
    "calendarId",
    "startDate",
    "endDate",
    "date",
    "startTime",
    "endTime",
    "status",
    "subStatus",
    "note",
    "reason",
    "client",
    "staff",
    "location",
    "fields",
];

fn run_all_ways(vendor: Vendor, body: &[u8]) {
    let config = MapperConfig::default();
    let plain = Webhook::new(vendor, Bytes::copy_from_slice(body), Some(TOKEN.to_owned()));
    let credentials = match vendor {
        Vendor::Chup => Credentials::HmacKey(CHUP_KEY),
        _ => Credentials::UrlToken(TOKEN),
    };
    if let Ok(hook) = plain.verify(credentials) {
        let _outcome = normalize(&hook, &config);
    }
    if vendor == Vendor::Chup {
        for signed in [
            chup::sign_chup(body, CHUP_KEY),
            chup::sign_chup_php(body, CHUP_KEY),
        ] {
            if let Ok(hook) = Webhook::new(vendor, Bytes::from(signed), None).verify(credentials) {
                let _outcome = normalize(&hook, &config);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_any_vendor(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        for vendor in Vendor::ALL {
            run_all_ways(vendor, &bytes);
        }
    }

    #[test]
    fn arbitrary_json_never_panics_any_vendor(value in arb_json()) {
        let body = serde_json::to_vec(&value).unwrap_or_default();
        for vendor in Vendor::ALL {
            run_all_ways(vendor, &body);
        }
    }

    #[test]
    fn chup_shaped_json_never_panics(
        event in prop::sample::select(CHUP_EVENTS),
        timestamp in arb_json(),
        data in arb_object(CHUP_DATA_KEYS),
    ) {
        let body = json!({"payload": {"event": event, "timestamp": timestamp, "data": data}, "signature": ""});
        run_all_ways(Vendor::Chup, &serde_json::to_vec_pretty(&body).unwrap_or_default());
    }

    #[test]
    fn chup_signed_bodies_always_verify_and_never_panic(data in arb_object(CHUP_DATA_KEYS)) {
        let body = json!({"payload": {"event": "live_queue_updated", "data": data}, "signature": ""});
        let body = serde_json::to_vec_pretty(&body).unwrap_or_default();
        let raw = Webhook::new(Vendor::Chup, Bytes::from(chup::sign_chup(&body, CHUP_KEY)), None)
            .verify(Credentials::HmacKey(CHUP_KEY));
        prop_assert_eq!(raw.map(|h| h.verification()).ok(), Some(Verification::HmacRaw));
        let php = Webhook::new(Vendor::Chup, Bytes::from(chup::sign_chup_php(&body, CHUP_KEY)), None)
            .verify(Credentials::HmacKey(CHUP_KEY));
        prop_assert!(php.is_ok());
    }

    #[test]
    fn vcita_shaped_json_never_panics(
        entity in prop::sample::select(&["client", "lead", "appointment", "meeting", "payment", "pivot", "invoice"][..]),
        event in prop::sample::select(&["created", "updated", "deleted", "paid", "scheduled", "rescheduled", "cancelled", "no_show"][..]),
        data in arb_object(VCITA_DATA_KEYS),
    ) {
        run_all_ways(Vendor::Vcita, &serde_json::to_vec(&json!({"entity_name": entity, "event_type": event, "data": data})).unwrap_or_default());
    }

    #[test]
    fn vsee_shaped_json_never_panics(
        kind in prop::sample::select(&["visit.created", "visit.ended", "visit.invoice.processed", "visit.note.signed_and_sent", "user.created", "x"][..]),
        version in arb_json(),
        created in arb_json(),
        data in arb_object(VSEE_DATA_KEYS),
    ) {
        let body = json!({"version": version, "id": "5c34979c", "type": kind, "created": created, "data": data});
        run_all_ways(Vendor::Vsee, &serde_json::to_vec(&body).unwrap_or_default());
    }

    #[test]
    fn timetap_shaped_json_never_panics(mut object in arb_object(TIMETAP_KEYS), id in arb_json(), start in -100i64..3000) {
        if let Value::Object(map) = &mut object {
            map.insert("calendarId".to_owned(), id);
            map.insert("startTime".to_owned(), json!(start));
            map.insert("startDate".to_owned(), json!("2024-03-10"));
            map.insert("staff".to_owned(), json!({"professionalId": 1, "timeZoneCode": {"timeZoneCode": "America/New_York"}}));
        }
        run_all_ways(Vendor::Timetap, &serde_json::to_vec(&object).unwrap_or_default());
    }
}

// --- the dispatch point's guard and labels -------------------------------------------------

#[test]
fn a_panicking_mapper_yields_a_failed_delivery_instead_of_unwinding_into_the_request() {
    let delivery = guarded(|| panic!("a mapper bug")).expect("a delivery, not a rejection");
    assert_eq!(delivery.event_type, None);
    assert_eq!(
        delivery.dedupe_key, None,
        "a redelivery after the fix is applied"
    );
    assert!(matches!(delivery.outcome, Err(e) if e.message() == MAPPER_PANICKED));
    // And a mapper that does not panic is passed through untouched.
    let rejected = guarded(|| Err(Rejection::new("no")));
    assert_eq!(rejected, Err(Rejection::new("no")));
}

#[test]
fn every_fixture_event_has_its_own_metric_label_and_made_up_ones_are_other() {
    for vendor in [Vendor::Chup, Vendor::Vcita, Vendor::Vsee, Vendor::Timetap] {
        let dir = format!("{}/fixtures/{vendor}", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(&dir).expect("fixture dir").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = name.strip_suffix(".json") else {
                continue;
            };
            let Ok(delivery) = deliver(vendor, fixture(vendor.as_str(), name)) else {
                continue;
            };
            let event = delivery.event_type.as_deref();
            assert_eq!(
                event_label(vendor, event),
                event.unwrap_or("-"),
                "{vendor}/{name}"
            );
        }
        assert_eq!(event_label(vendor, Some("made_up")), "other");
        assert_eq!(event_label(vendor, None), "-");
    }
}

#[test]
fn every_chup_and_vsee_label_is_an_event_their_mappers_handle() {
    for event in chup::EVENT_TYPES {
        let body = json!({"payload": {"event": event, "data": {"id": 1}}}).to_string();
        let delivery = deliver(Vendor::Chup, body.into_bytes()).expect("delivery");
        assert!(
            !matches!(delivery.outcome, Ok(MapOutcome::Unsupported { .. })),
            "{event}"
        );
    }
    for event in vsee::EVENT_TYPES {
        let body = json!({"type": event, "id": "e", "created": 1, "data": {"id": "1"}});
        let delivery = deliver(Vendor::Vsee, body.to_string().into_bytes()).expect("delivery");
        assert!(
            !matches!(delivery.outcome, Ok(MapOutcome::Unsupported { .. })),
            "{event}"
        );
    }
}

#[test]
fn a_chup_payload_verified_through_its_php_form_is_deduplicated_by_that_form() {
    let compact = r#"{"event":"client_created","data":{"id":1,"url":"a/b"}}"#;
    let php = php_json::encode(compact).expect("php form");
    let original = chup::sign_chup(format!("{{\"payload\":{php}}}").as_bytes(), CHUP_KEY);
    let pretty =
        "{\n  \"event\": \"client_created\",\n  \"data\": { \"id\": 1, \"url\": \"a/b\" }\n}";
    let respaced = chup::sign_chup_php(format!("{{\"payload\":{pretty}}}").as_bytes(), CHUP_KEY);
    let key = |body: Vec<u8>| {
        let webhook = Webhook::new(Vendor::Chup, Bytes::from(body), None)
            .verify(Credentials::HmacKey(CHUP_KEY))
            .expect("verifies");
        normalize(&webhook, &MapperConfig::default())
            .expect("delivery")
            .dedupe_key
    };
    assert_eq!(key(original), key(respaced));
}
