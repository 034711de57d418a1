//! The Chup Online API client: a bearer token from `api_key` + `business_id` + `email`, cached
//! until it expires and refreshed once when Chup answers 401, then alerts by `visit_id` with a
//! message (seed 000). Chup does not publish the auth and alert paths or their JSON shapes, so
//! the paths are configuration (`[chup] auth_path`, `alert_path`) and the token is read from
//! the common shapes: `{"token"}`, `{"access_token", "expires_in"}`, or either under `"data"`.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::Mutex;

use super::{VendorError, retry_after, status_error, transport_error};
use crate::config::ChupConfig;

/// Token lifetime assumed when Chup does not state one.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

struct CachedToken {
    value: String,
    expires: Instant,
}

pub struct ChupClient {
    http: reqwest::Client,
    config: ChupConfig,
    /// One token for all workers; the async mutex makes concurrent callers wait for a single
    /// token request instead of each fetching one.
    token: Mutex<Option<CachedToken>>,
}

impl ChupClient {
    pub fn new(http: reqwest::Client, config: ChupConfig) -> ChupClient {
        ChupClient {
            http,
            config,
            token: Mutex::new(None),
        }
    }

    /// Sends one alert. `idempotency_key` travels as the `Idempotency-Key` header, so a Chup
    /// that honours it drops a resend after a crash between its answer and our commit.
    pub async fn send_alert(
        &self,
        visit_id: &str,
        message: &str,
        idempotency_key: &str,
    ) -> Result<(), VendorError> {
        let token = self.token(false).await?;
        match self
            .post_alert(&token, visit_id, message, idempotency_key)
            .await
        {
            Err(AlertAttempt::Unauthorized) => {
                let token = self.token(true).await?;
                match self
                    .post_alert(&token, visit_id, message, idempotency_key)
                    .await
                {
                    Err(AlertAttempt::Unauthorized) => Err(VendorError::Refused(
                        "Chup refused a fresh token (401)".into(),
                    )),
                    Err(AlertAttempt::Failed(error)) => Err(error),
                    Ok(()) => Ok(()),
                }
            }
            Err(AlertAttempt::Failed(error)) => Err(error),
            Ok(()) => Ok(()),
        }
    }

    async fn post_alert(
        &self,
        token: &str,
        visit_id: &str,
        message: &str,
        idempotency_key: &str,
    ) -> Result<(), AlertAttempt> {
        let url = format!("{}{}", self.config.api_base, self.config.alert_path);
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .header("Idempotency-Key", idempotency_key)
            .json(&json!({ "visit_id": visit_id, "message": message }))
            .send()
            .await
            .map_err(|e| AlertAttempt::Failed(transport_error("Chup", &e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(AlertAttempt::Unauthorized);
        }
        if !status.is_success() {
            return Err(AlertAttempt::Failed(status_error(
                "Chup",
                status,
                retry_after(response.headers()),
            )));
        }
        Ok(())
    }

    /// The cached token, or a new one when there is none, it expired, or `refresh` is set.
    async fn token(&self, refresh: bool) -> Result<String, VendorError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && !refresh
            && token.expires > Instant::now()
        {
            return Ok(token.value.clone());
        }
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<CachedToken, VendorError> {
        let url = format!("{}{}", self.config.api_base, self.config.auth_path);
        let body = json!({
            "api_key": self.config.api_key.expose(),
            "business_id": self.config.business_id,
            "email": self.config.email,
        });
        let response = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error("Chup auth", &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(status_error(
                "Chup auth",
                status,
                retry_after(response.headers()),
            ));
        }
        let value: serde_json::Value =
            response.json().await.map_err(|_| VendorError::Transient {
                reason: "Chup auth answered no JSON".into(),
                retry_after: None,
            })?;
        parse_token(&value)
            .ok_or_else(|| VendorError::Refused("Chup auth answered without a token".into()))
    }
}

enum AlertAttempt {
    Unauthorized,
    Failed(VendorError),
}

fn parse_token(value: &serde_json::Value) -> Option<CachedToken> {
    let body = value
        .get("data")
        .filter(|data| data.is_object())
        .unwrap_or(value);
    let token = body
        .get("token")
        .or_else(|| body.get("access_token"))?
        .as_str()?
        .to_owned();
    let lifetime = body
        .get("expires_in")
        .and_then(serde_json::Value::as_u64)
        .map(|s| Duration::from_secs(s.saturating_sub(30).max(1)))
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Some(CachedToken {
        value: token,
        expires: Instant::now() + lifetime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_the_common_shapes() {
        for body in [
            json!({"token": "t1"}),
            json!({"access_token": "t1", "expires_in": 600}),
            json!({"data": {"token": "t1"}}),
        ] {
            assert_eq!(parse_token(&body).expect("token").value, "t1", "{body}");
        }
        assert!(parse_token(&json!({"ok": true})).is_none());
    }
}
