//! The vCita hook API (seed 002): `POST {api_base}/v1/subscriptions/standard/subscribe`
//! `{"event", "target_url"}` → `{"response": "Subscribed"}`, and `…/unsubscribe`
//! `{"target_url"}` → `{"response": "Unsubscribed"}`, with the account's authorization header
//! (`Bearer` on the current API, `Token` on the legacy one). A failure is documented as HTTP 500
//! `{"response": "Not Subscribed"}`.

use serde_json::json;

use super::{VendorError, retry_after, status_error, transport_error};
use crate::config::{VcitaAuthScheme, VcitaConfig};

/// The documented `entity/event` names (seed 002): clients, appointments, payments, and the
/// directory-level `pivot/*` events.
pub const EVENTS: [&str; 12] = [
    "client/created",
    "client/updated",
    "client/deleted",
    "appointment/created",
    "appointment/updated",
    "appointment/deleted",
    "payment/created",
    "payment/paid",
    "payment/updated",
    "payment/deleted",
    "pivot/event",
    "pivot/update",
];

pub struct VcitaClient {
    http: reqwest::Client,
    config: VcitaConfig,
}

impl VcitaClient {
    pub fn new(http: reqwest::Client, config: VcitaConfig) -> VcitaClient {
        VcitaClient { http, config }
    }

    pub async fn subscribe(&self, event: &str, target_url: &str) -> Result<(), VendorError> {
        self.call(
            "subscribe",
            json!({ "event": event, "target_url": target_url }),
            "Subscribed",
        )
        .await
    }

    pub async fn unsubscribe(&self, target_url: &str) -> Result<(), VendorError> {
        self.call(
            "unsubscribe",
            json!({ "target_url": target_url }),
            "Unsubscribed",
        )
        .await
    }

    async fn call(
        &self,
        action: &str,
        body: serde_json::Value,
        expected: &str,
    ) -> Result<(), VendorError> {
        let url = format!(
            "{}/v1/subscriptions/standard/{action}",
            self.config.api_base
        );
        let scheme = match self.config.auth_scheme {
            VcitaAuthScheme::Bearer => "Bearer",
            VcitaAuthScheme::Token => "Token",
        };
        let response = self
            .http
            .post(url)
            .header(
                reqwest::header::AUTHORIZATION,
                format!("{scheme} {}", self.config.token.expose()),
            )
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error("vCita", &e))?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let answer: Option<String> =
            response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|value| {
                    value
                        .get("response")
                        .and_then(|r| r.as_str())
                        .map(str::to_owned)
                });
        match answer {
            Some(text) if status.is_success() && text == expected => Ok(()),
            // The documented refusal: HTTP 500 with {"response": "Not Subscribed"}.
            Some(text) => Err(VendorError::Refused(format!(
                "vCita answered {:?} (HTTP {})",
                text,
                status.as_u16()
            ))),
            None if status.is_success() => Err(VendorError::Refused(format!(
                "vCita answered {} without a response",
                status.as_u16()
            ))),
            None => Err(status_error("vCita", status, wait)),
        }
    }
}
