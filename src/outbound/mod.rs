//! Calls CareBridge makes to vendors: Chup patient alerts (through the alert outbox) and vCita
//! webhook subscriptions. One error type for this layer; its text is for logs and the alert's
//! `lastError`, written by us, never a raw HTTP-client message.

pub mod chup;
pub mod outbox;
pub mod vcita;

use std::time::Duration;

/// Why a vendor call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VendorError {
    /// Worth retrying: timeout, connection failure, 5xx, 429.
    #[error("{reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help: the vendor refused the request.
    #[error("{0}")]
    Refused(String),
    /// CareBridge is not configured for this vendor.
    #[error("{0}")]
    NotConfigured(String),
}

/// Classifies a transport failure without quoting the client library's text.
pub(crate) fn transport_error(vendor: &str, error: &reqwest::Error) -> VendorError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not be reached"
    } else {
        "failed in transit"
    };
    VendorError::Transient {
        reason: format!("{vendor} {what}"),
        retry_after: None,
    }
}

/// Classifies an HTTP status that is not a success.
pub(crate) fn status_error(
    vendor: &str,
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
) -> VendorError {
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        VendorError::Transient {
            reason: format!("{vendor} answered {}", status.as_u16()),
            retry_after,
        }
    } else {
        VendorError::Refused(format!("{vendor} answered {}", status.as_u16()))
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs and is ignored).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_secs(seconds.min(3600)))
}

/// One HTTP client for every vendor call: rustls, short timeouts (a slow vendor must not hold
/// a worker), no redirects to other hosts.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The vendor clients a running gateway has (none when their config section is absent), and
/// the outbox's wake-up. Cheap to clone; shared by GraphQL mutations and the outbox worker.
#[derive(Clone, Default)]
pub struct Outbound {
    pub chup: Option<std::sync::Arc<chup::ChupClient>>,
    pub vcita: Option<std::sync::Arc<vcita::VcitaClient>>,
    /// Wakes the alert worker when a new alert is recorded.
    pub outbox_wake: std::sync::Arc<tokio::sync::Notify>,
}

impl Outbound {
    pub fn from_config(config: &crate::config::Config) -> Outbound {
        let http = http_client();
        Outbound {
            chup: config
                .chup
                .clone()
                .map(|c| std::sync::Arc::new(chup::ChupClient::new(http.clone(), c))),
            vcita: config
                .vcita
                .clone()
                .map(|c| std::sync::Arc::new(vcita::VcitaClient::new(http, c))),
            outbox_wake: std::sync::Arc::default(),
        }
    }
}
