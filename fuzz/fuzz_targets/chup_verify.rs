//! Chup HMAC verification over arbitrary body bytes (Chup carries its signature in the body, not
//! in a header), including the PHP `json_encode` re-encoding path:
//!
//! - whatever the body, verification never succeeds with a key one byte off the right one, and
//!   never answers with a URL-token error;
//! - a body signed by `sign_chup` verifies as `hmac-raw`, one signed by `sign_chup_php` verifies,
//!   and neither verifies with the wrong key;
//! - `php_json::encode` succeeds on every `payload` text serde accepted, writes ASCII only,
//!   escapes every `/`, is idempotent and means the same JSON as its input.
//!
//! Seeds: `fixtures/chup/` (unsigned, `"signature": ""`).
#![no_main]

use carebridge::vendors::php_json;
use carebridge::vendors::{Verification, VerifyError};
use carebridge_fuzz::{KEY, WRONG_KEY, check_message, verify_chup};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

fuzz_target!(|data: &[u8]| {
    match verify_chup(data, KEY) {
        Ok(_) => assert_eq!(
            verify_chup(data, WRONG_KEY),
            Err(VerifyError::BadSignature),
            "a body that verifies with the right key also verified with the wrong one"
        ),
        Err(VerifyError::Malformed(reason)) => return check_message(&reason),
        Err(VerifyError::MissingSignature | VerifyError::BadSignature) => {
            if let Ok(verification) = verify_chup(data, WRONG_KEY) {
                panic!(
                    "an unsigned or badly signed body verified with a wrong key ({verification})"
                );
            }
        }
        Err(other) => panic!("Chup verification answered with a URL-token error: {other}"),
    }

    // The body has a `payload` object (it was not malformed): both signing forms round-trip.
    let signed = carebridge::vendors::chup::sign_chup(data, KEY);
    assert_eq!(verify_chup(&signed, KEY), Ok(Verification::HmacRaw));
    assert_eq!(
        verify_chup(&signed, WRONG_KEY),
        Err(VerifyError::BadSignature)
    );
    let php_signed = carebridge::vendors::chup::sign_chup_php(data, KEY);
    assert!(
        matches!(
            verify_chup(&php_signed, KEY),
            Ok(Verification::HmacRaw | Verification::HmacPhpJson)
        ),
        "a body signed over its PHP re-encoding did not verify"
    );
    assert_eq!(
        verify_chup(&php_signed, WRONG_KEY),
        Err(VerifyError::BadSignature)
    );

    let Some(raw) = serde_json::from_slice::<Envelope<'_>>(data)
        .ok()
        .and_then(|envelope| envelope.payload)
    else {
        panic!("verification found a payload where serde finds none");
    };
    check_php_encoding(raw.get());
});

fn check_php_encoding(raw: &str) {
    let php = match php_json::encode(raw) {
        Ok(php) => php,
        Err(error) => panic!("JSON text serde accepted did not re-encode: {error}"),
    };
    assert!(php.is_ascii(), "the PHP form is not ASCII");
    let bytes = php.as_bytes();
    for (at, _) in php.match_indices('/') {
        assert!(
            at > 0 && bytes[at - 1] == b'\\',
            "an unescaped `/` in the PHP form"
        );
    }
    assert_eq!(
        php_json::encode(&php).as_deref(),
        Ok(php.as_str()),
        "re-encoding the PHP form changed it"
    );
    assert!(
        serde_json::from_str::<&RawValue>(&php).is_ok(),
        "the PHP form is not JSON"
    );
    if let Ok(meaning) = serde_json::from_str::<Value>(raw) {
        assert_eq!(
            serde_json::from_str::<Value>(&php).ok(),
            Some(meaning),
            "the PHP form means other JSON than the payload"
        );
    }
}
