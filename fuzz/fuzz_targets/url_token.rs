//! URL-token verification of the unsigned vendors (vCita, VSee, TimeTap), and the credential
//! kind check of every vendor, over arbitrary vendor, body, `?token=` and configured token:
//!
//! - a delivery verifies exactly when its token is non-empty and equal to the source's;
//! - a missing or empty token is `MissingToken`, any other mismatch `BadToken`;
//! - credentials of the wrong kind for the vendor are `WrongCredentials`, never a success;
//! - the `Debug` forms of a webhook and of credentials never show a token or secret.
#![no_main]

use bytes::Bytes;
use carebridge::domain::Vendor;
use carebridge::vendors::{Credentials, VerifyError, Webhook};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, Vec<u8>, Option<String>, String)| {
    let (vendor, body, given, expected) = input;
    let vendor = Vendor::ALL[usize::from(vendor) % Vendor::ALL.len()];
    let new = |token: Option<String>| Webhook::new(vendor, Bytes::from(body.clone()), token);

    // `Debug` must not depend on the secrets at all: the same with a placeholder token.
    let webhook = new(given.clone());
    assert_eq!(
        format!("{webhook:?}"),
        format!("{:?}", new(given.as_ref().map(|_| "-".to_owned()))),
        "the Debug form of a webhook shows its URL token"
    );
    assert_eq!(
        format!("{:?}", Credentials::UrlToken(&expected)),
        format!("{:?}", Credentials::UrlToken("-")),
        "the Debug form of credentials shows the token"
    );
    assert_eq!(
        format!("{:?}", Credentials::HmacKey(expected.as_bytes())),
        format!("{:?}", Credentials::HmacKey(b"-")),
        "the Debug form of credentials shows the key"
    );

    let result = webhook.verify(Credentials::UrlToken(&expected));
    let expected_result = match (vendor, given.as_deref()) {
        (Vendor::Chup, _) => Err(VerifyError::WrongCredentials),
        (_, None | Some("")) => Err(VerifyError::MissingToken),
        (_, Some(token)) if token == expected => Ok(()),
        (_, Some(_)) => Err(VerifyError::BadToken),
    };
    assert_eq!(result.map(|_| ()), expected_result);

    if vendor != Vendor::Chup {
        assert_eq!(
            new(given.clone())
                .verify(Credentials::HmacKey(expected.as_bytes()))
                .map(|_| ()),
            Err(VerifyError::WrongCredentials),
            "an unsigned vendor's delivery verified with an HMAC key"
        );
    }
});
