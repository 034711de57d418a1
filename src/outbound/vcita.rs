//! The vCita hook API (seed 002): `POST {api_base}/v1/subscriptions/standard/subscribe`
//! `{"event", "target_url"}` → `{"response": "Subscribed"}`, and `…/unsubscribe`
//! `{"target_url"}` → `{"response": "Unsubscribed"}`, with the account's authorization header
//! (`Bearer` on the current API, `Token` on the legacy one). A failure is documented as HTTP 500
//! `{"response": "Not Subscribed"}`.
//!
//! A subscription of one of the gateway's own vCita sources points vCita at that source's
//! webhook URL, whose `?token=` is what authenticates the clinic's deliveries. That token goes
//! to vCita and nowhere else: [`Target`] keeps it apart from the URL that is stored and shown,
//! and every text that may reach a response or a log is passed through [`redact`] first.

use serde_json::json;

use super::{VendorError, retry_after, status_error, transport_error};
use crate::config::{Config, Secret, SourceCredential, VcitaAuthScheme, VcitaConfig};
use crate::domain::Vendor;

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

/// Characters of vCita's own answer quoted in an error.
const MAX_QUOTED: usize = 200;

pub struct VcitaClient {
    http: reqwest::Client,
    config: VcitaConfig,
}

impl VcitaClient {
    pub fn new(http: reqwest::Client, config: VcitaConfig) -> VcitaClient {
        VcitaClient { http, config }
    }

    pub async fn subscribe(&self, event: &str, target: &Target) -> Result<(), VendorError> {
        self.call(
            "subscribe",
            json!({ "event": event, "target_url": target.call_url() }),
            "Subscribed",
        )
        .await
    }

    pub async fn unsubscribe(&self, target: &Target) -> Result<(), VendorError> {
        self.call(
            "unsubscribe",
            json!({ "target_url": target.call_url() }),
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
            // Quoted short: it is vCita's text, shown to the caller and stored.
            Some(text) => Err(VendorError::Refused(format!(
                "vCita answered {:?} (HTTP {})",
                text.chars().take(MAX_QUOTED).collect::<String>(),
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

/// Where a subscription points.
#[derive(Debug, Clone)]
pub enum Target {
    /// One of this gateway's vCita sources: `url` is its webhook URL without the token.
    Source {
        id: String,
        url: String,
        token: Secret,
    },
    /// A URL the caller gave, which carries no secret of this gateway.
    Url(String),
}

impl Target {
    /// The gateway's source, if the target is one.
    pub fn source_id(&self) -> Option<&str> {
        match self {
            Target::Source { id, .. } => Some(id),
            Target::Url(_) => None,
        }
    }

    /// What is stored and shown: never a source's token.
    pub fn stored_url(&self) -> &str {
        match self {
            Target::Source { url, .. } | Target::Url(url) => url,
        }
    }

    /// What vCita is given: a source's URL with its token.
    fn call_url(&self) -> String {
        match self {
            Target::Source { url, token, .. } => {
                let query =
                    serde_urlencoded::to_string([("token", token.expose())]).unwrap_or_default();
                format!("{url}?{query}")
            }
            Target::Url(url) => url.clone(),
        }
    }
}

/// Why a subscription's target was refused; the text is for the caller and quotes no secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("give exactly one of `targetUrl` or `sourceId`")]
    NotExactlyOne,
    #[error("`targetUrl` must be an http(s) URL")]
    NotHttp,
    #[error("{0:?} is not a vCita source of this gateway")]
    NotAVcitaSource(String),
    #[error("set `public_url` in the config to subscribe a source by id")]
    NoPublicUrl,
    #[error(
        "`targetUrl` carries a secret of this gateway; subscribe its source by `sourceId` instead"
    )]
    CarriesSecret,
    #[error("source {0:?} has no URL token")]
    NoToken(String),
}

/// Resolves a mutation's `targetUrl` / `sourceId` into a [`Target`]. A URL of one of our vCita
/// sources' webhook route (with or without its token) is that source; any other URL that
/// carries one of the gateway's secrets is refused, so no secret is ever stored or shown.
pub fn resolve(
    config: &Config,
    target_url: Option<&str>,
    source_id: Option<&str>,
) -> Result<Target, TargetError> {
    match (target_url, source_id) {
        (Some(url), None) => {
            let url = url.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(TargetError::NotHttp);
            }
            if let Some(id) = own_source_of(config, url) {
                return source_target(config, &id);
            }
            if carries_secret(config, url) {
                return Err(TargetError::CarriesSecret);
            }
            Ok(Target::Url(url.to_owned()))
        }
        (None, Some(id)) => source_target(config, id.trim()),
        _ => Err(TargetError::NotExactlyOne),
    }
}

fn source_target(config: &Config, id: &str) -> Result<Target, TargetError> {
    let source = config
        .source(id)
        .filter(|s| s.vendor == Vendor::Vcita)
        .ok_or_else(|| TargetError::NotAVcitaSource(id.to_owned()))?;
    let base = config
        .public_url
        .as_deref()
        .ok_or(TargetError::NoPublicUrl)?;
    match &source.credential {
        SourceCredential::UrlToken(token) => Ok(Target::Source {
            id: source.id.to_string(),
            url: format!("{base}/webhooks/{}", source.id),
            token: token.clone(),
        }),
        SourceCredential::HmacSecret(_) => Err(TargetError::NoToken(id.to_owned())),
    }
}

/// The vCita source whose webhook route `url` is (its query and fragment aside).
fn own_source_of(config: &Config, url: &str) -> Option<String> {
    let base = config.public_url.as_deref()?;
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let id = path.strip_prefix(base)?.strip_prefix("/webhooks/")?;
    config
        .source(id)
        .filter(|s| s.vendor == Vendor::Vcita)
        .map(|s| s.id.to_string())
}

/// Every secret of the gateway's configuration that a text could carry.
fn secrets(config: &Config) -> impl Iterator<Item = &str> {
    let sources = config.sources.iter().map(|s| match &s.credential {
        SourceCredential::HmacSecret(secret) | SourceCredential::UrlToken(secret) => {
            secret.expose()
        }
    });
    let vendors = [
        config.vcita.as_ref().map(|v| v.token.expose()),
        config.chup.as_ref().map(|c| c.api_key.expose()),
    ];
    sources
        .chain(vendors.into_iter().flatten())
        .filter(|s| !s.is_empty())
}

/// Whether `url` carries a secret, as written or percent-decoded in its query.
fn carries_secret(config: &Config, url: &str) -> bool {
    let decoded: Vec<(String, String)> = url
        .split_once('?')
        .map(|(_, query)| query.split('#').next().unwrap_or(query))
        .and_then(|query| serde_urlencoded::from_str(query).ok())
        .unwrap_or_default();
    secrets(config).any(|secret| {
        url.contains(secret)
            || decoded
                .iter()
                .any(|(name, value)| name.contains(secret) || value.contains(secret))
    })
}

/// `text` with every secret of the configuration replaced, for anything that may reach a
/// response, a stored error or a log (a vendor's answer could echo what it was sent).
pub fn redact(config: &Config, text: &str) -> String {
    secrets(config).fold(text.to_owned(), |text, secret| {
        text.replace(secret, "[redacted]")
    })
}

/// A stored target URL as the API shows it: the values of its query and any user info hidden,
/// since a caller's own URL may carry its own credentials (ours never get stored at all).
pub fn shown_url(stored: &str) -> String {
    let (without_fragment, fragment) = match stored.split_once('#') {
        Some((url, _)) => (url, Some("[redacted]")),
        None => (stored, None),
    };
    let (base, query) = match without_fragment.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (without_fragment, None),
    };
    let mut shown = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let names: Vec<String> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}=[redacted]"),
                None => pair.to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&names.join("&"));
    }
    if let Some(fragment) = fragment {
        shown.push('#');
        shown.push_str(fragment);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EnvOverrides, Mode};

    fn config() -> Config {
        Config::from_toml(
            r#"
            public_url = "https://cb.example"
            [[sources]]
            id = "vcita-a"
            vendor = "vcita"
            token = "tok-vcita-a"
            [[sources]]
            id = "vsee-a"
            vendor = "vsee"
            token = "tok-vsee-a"
            [vcita]
            api_base = "https://api.vcita.example"
            token = "vcita-api-secret"
            "#,
            Mode::Development,
            &EnvOverrides::default(),
        )
        .expect("config")
    }

    #[test]
    fn a_source_is_stored_without_its_token_and_called_with_it() {
        let config = config();
        let target = resolve(&config, None, Some("vcita-a")).expect("target");
        assert_eq!(target.stored_url(), "https://cb.example/webhooks/vcita-a");
        assert_eq!(target.source_id(), Some("vcita-a"));
        assert_eq!(
            target.call_url(),
            "https://cb.example/webhooks/vcita-a?token=tok-vcita-a"
        );
        assert!(!format!("{target:?}").contains("tok-vcita-a"));
    }

    #[test]
    fn a_pasted_source_url_is_that_source_with_or_without_its_token() {
        let config = config();
        for url in [
            "https://cb.example/webhooks/vcita-a?token=tok-vcita-a",
            "https://cb.example/webhooks/vcita-a",
            " https://cb.example/webhooks/vcita-a?token=old ",
        ] {
            let target = resolve(&config, Some(url), None).expect("target");
            assert_eq!(target.source_id(), Some("vcita-a"), "{url}");
        }
    }

    #[test]
    fn a_url_with_any_secret_of_ours_is_refused() {
        let config = config();
        for url in [
            "https://proxy.example/?t=tok-vsee-a",
            "https://proxy.example/tok-vcita-a/hook",
            "https://proxy.example/?t=vcita%2Dapi%2Dsecret",
        ] {
            assert_eq!(
                resolve(&config, Some(url), None).map(|t| t.source_id().map(str::to_owned)),
                Err(TargetError::CarriesSecret),
                "{url}"
            );
        }
        assert_eq!(
            resolve(&config, None, Some("vsee-a")).map(|_| ()),
            Err(TargetError::NotAVcitaSource("vsee-a".into()))
        );
        assert_eq!(
            resolve(&config, Some("ftp://x"), None).map(|_| ()),
            Err(TargetError::NotHttp)
        );
    }

    #[test]
    fn shown_urls_hide_query_values_and_user_info() {
        assert_eq!(
            shown_url("https://u:p@his.example/h?key=abc&x=1#frag"),
            "https://his.example/h?key=[redacted]&x=[redacted]#[redacted]"
        );
        assert_eq!(
            shown_url("https://his.example/hooks/vcita"),
            "https://his.example/hooks/vcita"
        );
    }

    #[test]
    fn redact_replaces_every_secret() {
        let config = config();
        assert_eq!(
            redact(
                &config,
                "vCita answered \"bad tok-vcita-a vcita-api-secret\""
            ),
            "vCita answered \"bad [redacted] [redacted]\""
        );
    }
}
