//! The alert outbox worker: sends PENDING alerts through Chup, retries transient failures
//! (timeouts, 5xx, 429) with exponential backoff and jitter — never sooner than a 429's
//! `Retry-After` — up to `max_attempts`, then marks the alert FAILED with the last error.
//! Refusals (other 4xx) fail at once. It wakes when an alert is recorded and looks every second
//! otherwise, so alerts left PENDING by a restart are picked up on their own.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::Notify;

use super::VendorError;
use super::chup::ChupClient;
use crate::bus::Bus;
use crate::store::outbound as store;

/// How retries are spaced.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: i32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `attempts + 1`: base × 2^(attempts−1), ±20 % jitter so many
    /// alerts that failed together do not retry together, capped.
    pub fn backoff(&self, attempts: i32, retry_after: Option<Duration>) -> Duration {
        let exponent = attempts.saturating_sub(1).clamp(0, 20) as u32;
        let raw = self
            .base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.cap);
        let jitter = 0.8 + 0.4 * rand::random::<f64>();
        raw.mul_f64(jitter).max(retry_after.unwrap_or_default())
    }
}

const BATCH: u64 = 16;

pub struct Outbox {
    pub db: DatabaseConnection,
    pub bus: Bus,
    pub chup: Arc<ChupClient>,
    pub policy: RetryPolicy,
    pub wake: Arc<Notify>,
    /// A claim lasts this long (`[chup] lease_secs`); a worker that dies mid-send frees the
    /// alert after it.
    pub lease: Duration,
}

impl Outbox {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.run_once().await {
                    tracing::warn!(%error, "alert outbox could not read its queue; retrying");
                }
                let pause = self.until_next_due().await;
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(pause) => {}
                }
            }
        })
    }

    /// Until the earliest scheduled retry, at most a second (a replica may add work too).
    async fn until_next_due(&self) -> Duration {
        const IDLE: Duration = Duration::from_secs(1);
        match store::next_due(&self.db).await {
            Ok(Some(at)) => (at - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(IDLE),
            Ok(None) | Err(_) => IDLE,
        }
    }

    /// Sends every alert due now; returns how many were attempted.
    pub async fn run_once(&self) -> Result<usize, sea_orm::DbErr> {
        let mut attempted = 0;
        loop {
            let claimed = store::claim_due(&self.db, BATCH, self.lease).await?;
            if claimed.is_empty() {
                return Ok(attempted);
            }
            attempted += claimed.len();
            for alert in claimed {
                let outcome = self
                    .chup
                    .send_alert(
                        &alert.visit_vendor_id,
                        &alert.message,
                        &alert.idempotency_key,
                    )
                    .await;
                self.settle(&alert, outcome).await?;
            }
        }
    }

    async fn settle(
        &self,
        alert: &entity::alert::Model,
        outcome: Result<(), VendorError>,
    ) -> Result<(), sea_orm::DbErr> {
        match outcome {
            Ok(()) => {
                tracing::info!(
                    alert_id = alert.id.0,
                    attempts = alert.attempts,
                    "alert sent"
                );
                store::mark_sent(&self.db, &self.bus, alert.id).await
            }
            Err(VendorError::Transient {
                reason,
                retry_after,
            }) if alert.attempts < self.policy.max_attempts => {
                let wait = self.policy.backoff(alert.attempts, retry_after);
                tracing::warn!(alert_id = alert.id.0, attempts = alert.attempts, %reason, wait_ms = wait.as_millis() as u64, "alert will be retried");
                let next = chrono::Utc::now()
                    + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(60));
                store::schedule_retry(&self.db, alert.id, &reason, next).await
            }
            Err(error) => {
                let reason = error.to_string();
                tracing::warn!(alert_id = alert.id.0, attempts = alert.attempts, %reason, "alert failed");
                store::mark_failed(&self.db, &self.bus, alert.id, &reason).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_caps_and_respects_retry_after() {
        let policy = RetryPolicy {
            max_attempts: 8,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        for (attempts, nominal) in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0)] {
            let wait = policy.backoff(attempts, None).as_secs_f64();
            assert!(
                wait >= nominal * 0.8 && wait <= nominal * 1.2,
                "{attempts}: {wait}"
            );
        }
        assert!(policy.backoff(30, None) <= Duration::from_secs(72));
        assert!(policy.backoff(1, Some(Duration::from_secs(30))) >= Duration::from_secs(30));
    }
}
