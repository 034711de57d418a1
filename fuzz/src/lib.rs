//! Shared inputs and property checks of the CareBridge fuzz targets (`fuzz_targets/`).
//!
//! Every target drives the vendor layer through the same public functions the ingest path
//! (`src/ingest/mod.rs`) calls: [`Webhook::new`] → [`Webhook::verify`] → [`vendors::normalize`].
//! A panic anywhere is a finding; on top of that the checks here assert what the vendor layer
//! promises in `src/vendors/mod.rs`:
//!
//! - the event type a [`Delivery`] reports is the one its mapping outcome carries;
//! - rejection, mapping and verification messages are never empty.
//!
//! That messages never quote the body (PHI) is not checked here: a first version looked for the
//! body's string values in the message, and libFuzzer at once wrote the message's own fixed text
//! into a value (`"reference_no": "very has no `payl"`). Telling a quote from a coincidence needs
//! more than a substring test; `wire::describe_json_error` and its unit tests own that promise.
#![forbid(unsafe_code)]

use bytes::Bytes;
use carebridge::domain::{MapOutcome, Vendor};
use carebridge::vendors::{
    self, Credentials, Delivery, MapperConfig, Rejection, Verification, VerifyError, Webhook,
};

/// The Chup secret the targets sign with.
pub const KEY: &[u8] = b"carebridge-fuzz-secret";
/// A secret one byte off [`KEY`]: nothing signed with `KEY` may verify with it.
pub const WRONG_KEY: &[u8] = b"carebridge-fuzz-secreT";
/// The URL token of the unsigned vendors' sources.
pub const TOKEN: &str = "carebridge-fuzz-token";

/// Verifies `body` as a Chup delivery with `key`, as the ingest path does.
pub fn verify_chup(body: &[u8], key: &[u8]) -> Result<Verification, VerifyError> {
    Webhook::new(Vendor::Chup, Bytes::copy_from_slice(body), None)
        .verify(Credentials::HmacKey(key))
        .map(|verified| verified.verification())
}

/// The parser target of an unsigned vendor (vCita, VSee, TimeTap): the body arrives with the
/// right URL token, so it always verifies, and is then normalized; the result is checked.
pub fn fuzz_unsigned(vendor: Vendor, body: &[u8], config: &MapperConfig) {
    let webhook = Webhook::new(vendor, Bytes::copy_from_slice(body), Some(TOKEN.to_owned()));
    let verified = match webhook.verify(Credentials::UrlToken(TOKEN)) {
        Ok(verified) => verified,
        Err(error) => panic!("the source's own URL token was refused: {error}"),
    };
    let result = vendors::normalize(&verified, config);
    check_delivery(&result);
}

/// The parser target of Chup: the body is signed the way Chup would sign it
/// ([`vendors::chup::sign_chup`]: the `payload` text kept verbatim), verified and normalized. A
/// body that is not a Chup envelope cannot be signed and must fail verification as malformed.
pub fn fuzz_chup(body: &[u8]) {
    let signed = vendors::chup::sign_chup(body, KEY);
    let webhook = Webhook::new(Vendor::Chup, Bytes::from(signed), None);
    match webhook.verify(Credentials::HmacKey(KEY)) {
        Ok(verified) => {
            let result = vendors::normalize(&verified, &MapperConfig::default());
            check_delivery(&result);
        }
        Err(VerifyError::Malformed(reason)) => check_message(&reason),
        Err(other) => panic!("a body signed by sign_chup failed verification: {other}"),
    }
}

/// Properties of one `normalize` result.
pub fn check_delivery(result: &Result<Delivery, Rejection>) {
    let delivery = match result {
        Ok(delivery) => delivery,
        Err(rejection) => return check_message(rejection.message()),
    };
    let event_type = delivery.event_type.as_deref();
    match &delivery.outcome {
        Ok(MapOutcome::Mapped(normalized)) => assert_eq!(
            event_type,
            Some(normalized.event_type.as_str()),
            "a mapped delivery reports another event type than its mapping"
        ),
        Ok(MapOutcome::Unsupported {
            event_type: unsupported,
            ..
        }) => assert_eq!(
            event_type,
            Some(unsupported.as_str()),
            "an unsupported delivery reports another event type than its outcome"
        ),
        Err(error) => check_message(error.message()),
    }
}

/// A message about a delivery says something.
pub fn check_message(message: &str) {
    assert!(!message.trim().is_empty(), "an empty error message");
}
