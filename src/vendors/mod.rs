//! The vendor layer: the one place that knows what Chup Online, vCita, VSee Clinic and TimeTap
//! send, and the trust boundary every webhook crosses before anything reads it.
//!
//! A delivery arrives as a [`Webhook<Unverified>`]: the vendor, the raw body bytes exactly as
//! received, and the `?token=` of the URL. Only [`Webhook::verify`] turns it into a
//! [`Webhook<Verified>`] (HMAC for Chup, the source's URL token for the unsigned vendors), and
//! [`normalize`] accepts nothing else, so no code path can map bytes nobody checked. `normalize`
//! is the single dispatch point (as mini-redis' `cmd/mod.rs` is for commands): it hands the body
//! to the vendor's module, which returns a [`Delivery`] – event type, dedupe key and the mapping
//! outcome – or a [`Rejection`] when the bytes are not that vendor's shape at all.
//!
//! Everything here is pure: no I/O, no clock, no database. The three failure levels are kept
//! apart because the ingest path answers them differently:
//!
//! | what went wrong | type | HTTP / inbox status |
//! |---|---|---|
//! | signature or token wrong or missing | [`VerifyError`] | 401 (400 for a Chup body that has nothing to verify), nothing stored as data |
//! | body is not JSON or not the vendor's envelope | [`Rejection`] | 400, kept as `REJECTED` |
//! | envelope fine, event type nobody maps | `Ok(MapOutcome::Unsupported)` | 200, `UNSUPPORTED` |
//! | envelope fine, a field needed for mapping unusable | [`MapError`] in [`Delivery::outcome`] | 200, `FAILED` (reprocessable) |
//! | a value one database cannot store (NUL, over-long key, year outside 1–9999) | [`MapError`] from `storable::fit` | 200, `FAILED`, same on SQLite and PostgreSQL |
//! | the mapper panicked (a bug) | [`MapError`] from the dispatch guard | 200, `FAILED` (reprocess after the fix) |
//!
//! # Layout
//!
//! - `mod.rs`: the typestate, credentials, error types, [`MapperConfig`] and the dispatch.
//! - `chup.rs`: HMAC-SHA256 over the `payload` text (raw, then PHP re-encoding) and the
//!   live-queue / appointment / client / service / staff mappers; `sign_chup*` for tests and replay.
//! - `php_json.rs`: a token-level re-encoding of JSON text the way PHP's `json_encode` writes it.
//! - `vcita.rs`, `vsee.rs`, `timetap.rs`: one module per unsigned vendor.
//! - `storable.rs`: the values both databases store alike; every delivery is fitted to them at
//!   the dispatch point, before the store sees it.
//! - `wire.rs`: tolerant serde helpers shared by the mappers (ids as number or string, unix
//!   seconds as text, phone numbers, timestamps, error text that never quotes the body).

pub mod chup;
/// Public only so that the fuzz targets in `fuzz/` can check the re-encoding against serde's
/// reading of the same text; the gateway itself uses it only through Chup verification.
pub mod php_json;
mod storable;
mod timetap;
mod vcita;
mod vsee;
mod wire;

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::domain::{MapOutcome, Vendor, VisitStatusKind};

/// Typestate marker: the body has not been authenticated yet.
#[derive(Debug, Clone, Copy)]
pub struct Unverified;

/// Typestate marker: [`Webhook::verify`] accepted the body; only such webhooks can be mapped.
#[derive(Debug, Clone, Copy)]
pub struct Verified;

/// A delivery as received. The body is kept as the exact bytes the vendor sent because the Chup
/// signature covers raw text and the inbox must be able to replay it byte for byte.
pub struct Webhook<State> {
    vendor: Vendor,
    body: Bytes,
    url_token: Option<String>,
    verification: Option<Verification>,
    state: PhantomData<State>,
}

impl Webhook<Unverified> {
    /// Wraps a received body; `url_token` is the `?token=` query value of the request, if any.
    pub fn new(vendor: Vendor, body: Bytes, url_token: Option<String>) -> Self {
        Webhook {
            vendor,
            body,
            url_token,
            verification: None,
            state: PhantomData,
        }
    }

    /// Authenticates the delivery with the source's credentials: a Chup source needs
    /// [`Credentials::HmacKey`], the unsigned vendors [`Credentials::UrlToken`]. This is the only
    /// way to obtain a [`Webhook<Verified>`].
    pub fn verify(self, credentials: Credentials<'_>) -> Result<Webhook<Verified>, VerifyError> {
        let verification = match (self.vendor, credentials) {
            (Vendor::Chup, Credentials::HmacKey(key)) => chup::verify_signature(&self.body, key)?,
            (Vendor::Chup, Credentials::UrlToken(_)) => return Err(VerifyError::WrongCredentials),
            (_, Credentials::UrlToken(expected)) => {
                check_url_token(self.url_token.as_deref(), expected)?;
                Verification::UrlToken
            }
            (_, Credentials::HmacKey(_)) => return Err(VerifyError::WrongCredentials),
        };
        Ok(Webhook {
            vendor: self.vendor,
            body: self.body,
            url_token: self.url_token,
            verification: Some(verification),
            state: PhantomData,
        })
    }
}

impl<S> Webhook<S> {
    pub fn vendor(&self) -> Vendor {
        self.vendor
    }

    /// The body exactly as received.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

impl Webhook<Verified> {
    /// Re-opens a delivery stored in the inbox, which was verified when it was received (only
    /// verified deliveries are stored). Reprocessing runs the current mappers over it without
    /// verifying again: the secret may have been rotated since, and the bytes are ours.
    pub fn from_inbox(vendor: Vendor, body: Bytes, verification: Option<Verification>) -> Self {
        Webhook {
            vendor,
            body,
            url_token: None,
            verification,
            state: PhantomData,
        }
    }

    /// How the delivery was authenticated (recorded on the inbox row).
    pub fn verification(&self) -> Verification {
        // `verify` always sets it; only an inbox row without one (never written by this
        // gateway) reaches the fallback.
        self.verification.unwrap_or(Verification::UrlToken)
    }
}

/// Hand-written so that neither the URL token nor the body (PHI) ends up in a log line.
impl<S> fmt::Debug for Webhook<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("vendor", &self.vendor)
            .field("body_len", &self.body.len())
            .field("url_token", &self.url_token.as_ref().map(|_| "<redacted>"))
            .field("verification", &self.verification)
            .finish()
    }
}

/// The secret configured for a source. Borrowed so that the config keeps the only copy.
#[derive(Clone, Copy)]
pub enum Credentials<'a> {
    /// Chup: the HMAC-SHA256 key from the clinic's settings page.
    HmacKey(&'a [u8]),
    /// vCita, VSee, TimeTap: the token the vendor must send as `?token=` in the URL.
    UrlToken(&'a str),
}

impl fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::HmacKey(_) => f.write_str("HmacKey(<redacted>)"),
            Credentials::UrlToken(_) => f.write_str("UrlToken(<redacted>)"),
        }
    }
}

/// How a delivery was authenticated. Chup's signed bytes are undocumented, so which of the two
/// HMAC forms matched is recorded: it tells the operator what Chup actually signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// HMAC over the raw `payload` text as received.
    HmacRaw,
    /// HMAC over a PHP `json_encode`-compatible re-encoding of the `payload`.
    HmacPhpJson,
    /// The URL `?token=` matched the source's token.
    UrlToken,
}

impl Verification {
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::HmacRaw => "hmac-raw",
            Verification::HmacPhpJson => "hmac-php-json",
            Verification::UrlToken => "url-token",
        }
    }

    /// The inverse of [`Verification::as_str`] (as stored on the inbox row).
    pub fn parse(text: &str) -> Option<Verification> {
        [
            Verification::HmacRaw,
            Verification::HmacPhpJson,
            Verification::UrlToken,
        ]
        .into_iter()
        .find(|v| v.as_str() == text)
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a delivery was not accepted as authentic. Messages are written for the vendor's delivery
/// log and never contain the secret, the expected signature or the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing signature: the body has no non-empty `signature` field")]
    MissingSignature,
    #[error(
        "bad signature: `signature` is not the HMAC-SHA256 of `payload` with this source's secret"
    )]
    BadSignature,
    #[error("missing token: the webhook URL must carry this source's `?token=`")]
    MissingToken,
    #[error("bad token: the URL `?token=` does not match this source")]
    BadToken,
    /// The source is configured with the wrong kind of secret for its vendor: a server
    /// configuration error, not the sender's fault.
    #[error("source misconfigured: credentials of the wrong kind for this vendor")]
    WrongCredentials,
    /// A Chup body with nothing to verify (not JSON, or no `payload`): answered with 400.
    #[error("malformed delivery: {0}")]
    Malformed(String),
}

/// Settings of the mappers that cannot be derived from the vendor documents.
#[derive(Debug, Clone, PartialEq)]
pub struct MapperConfig {
    /// VSee visit status → kind, looked up by the raw value as sent (v1 codes such as `"40"`,
    /// and v2 names if an operator wants to override the built-in name table). VSee publishes
    /// no code table, so this is configuration.
    pub vsee_status_codes: HashMap<String, VisitStatusKind>,
}

impl Default for MapperConfig {
    /// Only the two codes the public record supports: `"40"` became `"completed"` in the VSee
    /// page history of the note sample, and `POST /visits/add_walkin` answers a fresh walk-in
    /// with `"10"`. Nothing else is guessed: other codes map to `Other` with the raw code kept.
    fn default() -> Self {
        let vsee_status_codes = HashMap::from([
            ("40".to_owned(), VisitStatusKind::Completed),
            ("10".to_owned(), VisitStatusKind::Pending),
        ]);
        MapperConfig { vsee_status_codes }
    }
}

/// What the inbox records about one verified delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The vendor's event type as sent (`payload.event`, `entity_name/event_type`, `type`,
    /// `appointment` for TimeTap), known even when mapping fails.
    pub event_type: Option<String>,
    /// Key under which a redelivery of the same event is recognised; `None` for TimeTap, whose
    /// duplicates the store detects with [`crate::domain::AppointmentChange::fingerprint`].
    pub dedupe_key: Option<String>,
    pub outcome: Result<MapOutcome, MapError>,
}

/// The body is not JSON, or not this vendor's envelope: answered with 400 and kept as `REJECTED`.
/// The message names the problem, never the body's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(String);

impl Rejection {
    pub fn new(message: impl Into<String>) -> Self {
        Rejection(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

/// The envelope was understood but a field the mapping needs is unusable (stored `FAILED`, so it
/// can be reprocessed after a fix). The message names the field, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MapError(String);

impl MapError {
    pub fn new(message: impl Into<String>) -> Self {
        MapError(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

/// Maps a verified delivery to the normalized model. The one dispatch point over vendors: the
/// mapper runs under [`guarded`] (a panic is a stored `FAILED`, not a dropped delivery) and its
/// result is fitted to what both databases can store ([`storable::fit`]).
pub fn normalize(
    webhook: &Webhook<Verified>,
    config: &MapperConfig,
) -> Result<Delivery, Rejection> {
    let body = webhook.body.as_ref();
    let vendor = webhook.vendor;
    let verification = webhook.verification();
    storable::fit(guarded(|| match vendor {
        Vendor::Chup => chup::normalize(body, verification),
        Vendor::Vcita => vcita::normalize(body),
        Vendor::Vsee => vsee::normalize(body, config),
        Vendor::Timetap => timetap::normalize(body),
    }))
}

/// What a delivery whose mapper panicked is stored as.
const MAPPER_PANICKED: &str =
    "the gateway's mapper failed on this delivery (a bug); kept raw, reprocess it after the fix";

/// Runs a mapper so that a panic in it (a bug; the fuzz targets in `fuzz/` hunt for them)
/// becomes a delivery stored `FAILED` with its raw bytes instead of a dropped request. The
/// mappers are pure functions of borrowed bytes, so nothing is left half-changed by the unwind.
fn guarded(map: impl FnOnce() -> Result<Delivery, Rejection>) -> Result<Delivery, Rejection> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(map)).unwrap_or_else(|_| {
        Ok(Delivery {
            event_type: None,
            dedupe_key: None,
            outcome: Err(MapError::new(MAPPER_PANICKED)),
        })
    })
}

/// The metric label of an event type: the vendor's own name when it is one CareBridge knows,
/// `other` for anything else a sender makes up, `-` when there is none (a rejected body). A
/// closed set, so that senders cannot grow the metrics (a label per made-up event type grew
/// `/metrics` to 54 MB).
pub fn event_label(vendor: Vendor, event_type: Option<&str>) -> &'static str {
    let Some(event_type) = event_type else {
        return "-";
    };
    let known = match vendor {
        Vendor::Chup => chup::EVENT_TYPES,
        Vendor::Vcita => vcita::EVENT_TYPES,
        Vendor::Vsee => vsee::EVENT_TYPES,
        Vendor::Timetap => timetap::EVENT_TYPES,
    };
    known
        .iter()
        .find(|known| **known == event_type)
        .copied()
        .unwrap_or("other")
}

/// Compares the URL token with the configured one in constant time. Both sides are hashed first
/// so that a length difference cannot end the comparison early.
fn check_url_token(given: Option<&str>, expected: &str) -> Result<(), VerifyError> {
    let given = match given {
        Some(token) if !token.is_empty() => token,
        _ => return Err(VerifyError::MissingToken),
    };
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    if bool::from(given.as_slice().ct_eq(expected.as_slice())) {
        Ok(())
    } else {
        Err(VerifyError::BadToken)
    }
}

#[cfg(test)]
mod tests;
