//! Configuration: one TOML file (`--config` / `CAREBRIDGE_CONFIG`), single keys overridden by
//! the environment (`CAREBRIDGE_LISTEN`, `DATABASE_URL`), parsed into typed values and validated
//! once at load so the rest of the program never sees a half-valid setting.
//!
//! With no file at all the gateway runs in *development mode*: loopback only, one source per
//! vendor with fixed, well-known credentials and a development API key, all printed at start.
//! Those credentials are public by design, which is why development mode refuses any
//! non-loopback address.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::domain::{Vendor, VisitStatusKind};

/// Where a configuration problem was found; every message names the key and the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; call sites are the few places that must use it (verify, sign, send).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A source id as it appears in `POST /webhooks/{id}`: 1–64 of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(String);

impl SourceId {
    pub fn parse(text: &str) -> Result<SourceId, String> {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(SourceId(text.to_owned()))
        } else {
            Err(format!(
                "source id {text:?} must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a source's deliveries prove they come from the vendor.
#[derive(Debug, Clone)]
pub enum SourceCredential {
    /// Chup: HMAC-SHA256 key from the clinic's settings page.
    HmacSecret(Secret),
    /// vCita, VSee, TimeTap: the `?token=` the vendor was given in the URL.
    UrlToken(Secret),
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub id: SourceId,
    pub vendor: Vendor,
    pub credential: SourceCredential,
    /// Days raw bodies and headers are kept (the inbox row and its hash stay).
    pub retention_days: u32,
}

/// Retention of stored data (`[retention]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Default days raw bodies and headers are kept; a source may set its own.
    pub raw_body_days: u32,
    /// Days domain events are kept (subscribers resuming from older cursors must resync).
    pub event_days: u32,
    /// How often the background prune runs.
    pub interval_secs: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            raw_body_days: 30,
            event_days: 90,
            interval_secs: 3600,
        }
    }
}

/// API key scopes; `admin` does not imply the others, a key lists every scope it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn parse(text: &str) -> Option<Scope> {
        match text.trim() {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

/// A GraphQL caller from the config file; only the SHA-256 of the key is kept in memory.
#[derive(Debug, Clone)]
pub struct ApiKeyConfig {
    pub name: String,
    pub key_sha256: [u8; 32],
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone)]
pub struct ChupConfig {
    pub api_base: String,
    /// Not in Chup's public documents; configurable with this default.
    pub auth_path: String,
    /// Not in Chup's public documents; configurable with this default.
    pub alert_path: String,
    pub api_key: Secret,
    pub business_id: String,
    pub email: String,
    /// Attempts per alert before it is marked FAILED.
    pub max_attempts: i32,
    /// First retry delay; doubles per attempt (with jitter) up to five minutes.
    pub retry_base_ms: u64,
    /// How long a worker's claim on an alert lasts (a crashed worker's alert is retried after
    /// it). In production keep it above one send's connect + request timeouts (5 s + 15 s), or
    /// a slow send could outlive its claim and another replica send the alert again.
    pub lease_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcitaAuthScheme {
    Bearer,
    /// The legacy `hook.vcita.com` API.
    Token,
}

#[derive(Debug, Clone)]
pub struct VcitaConfig {
    pub api_base: String,
    pub token: Secret,
    pub auth_scheme: VcitaAuthScheme,
}

/// Limits on what callers may make the gateway do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body, webhooks and GraphQL alike (413 above it).
    pub max_body_bytes: usize,
    /// A request that takes longer is answered 408 and dropped.
    pub request_timeout_secs: u64,
    /// Websocket keep-alive: the server pings this often and closes a connection that sent
    /// nothing for two intervals.
    pub ws_ping_interval_secs: u64,
    /// Events held for live subscribers; one that falls further behind catches up from the log.
    pub event_buffer: usize,
    /// Verified webhooks per second per source, sustained (429 with Retry-After above it).
    /// A busy clinic sends a few per second; the default leaves room for bursts and replays.
    pub webhook_rate_per_second: u32,
    /// Verified webhooks per source that may arrive at once before the rate applies.
    pub webhook_burst: u32,
    /// Concurrent websocket connections (503 above it).
    pub max_websocket_connections: usize,
    /// Active subscriptions on one websocket connection.
    pub max_subscriptions_per_connection: usize,
    /// Open HTTP connections (websockets count against `max_websocket_connections` instead).
    /// At the cap, the connection that has waited longest for its next request is closed to
    /// make room; one mid-request never is.
    pub max_connections: usize,
    /// A request's head (request line and headers) must arrive within this long of its first
    /// byte, or of the connection opening; slower connections are closed (slowloris).
    pub header_read_timeout_secs: u64,
    /// A keep-alive connection with no request in flight is closed after this long, as is one
    /// whose client stops reading its response.
    pub idle_timeout_secs: u64,
    /// Answers waiting for one websocket client to read them (bytes); a client that lets more
    /// pile up sends, or is sent, faster than it reads, and is closed with 4429.
    pub ws_max_queued_bytes: usize,
    /// GraphQL cost of one operation: every field counts 1, every list its page size (or
    /// maximum) times its fields (400 `QUERY_TOO_COMPLEX` above it). See `graphql::limits`.
    pub max_query_complexity: usize,
    /// GraphQL nesting depth of one operation (400 `QUERY_TOO_COMPLEX` above it).
    pub max_query_depth: usize,
    /// Root fields of one operation, aliases and fragments included: each may be its own
    /// database query, run in parallel (400 `QUERY_TOO_COMPLEX` above it).
    pub max_root_fields: usize,
    /// Fields in any one selection set, aliases and fragments included (400
    /// `QUERY_TOO_COMPLEX` above it).
    pub max_selection_fields: usize,
    /// GraphQL operations one API key may run at once, HTTP and websockets together (429
    /// `RATE_LIMITED` with Retry-After over HTTP, an `error` for that operation over websockets).
    pub max_concurrent_requests_per_key: usize,
    /// Database connections one API key's resolvers may hold at once (of a pool of 8 on
    /// SQLite, 16 on PostgreSQL), so one key's parallel root fields never take the whole pool.
    pub max_db_connections_per_key: usize,
    /// A GraphQL query running longer is stopped, its database work cancelled (503
    /// `QUERY_TIMEOUT`).
    pub graphql_timeout_secs: u64,
}

/// Above any file-descriptor limit a host grants; keeps the slot count a `u32`.
pub const MAX_CONNECTIONS_CAP: usize = 1_000_000;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            ws_ping_interval_secs: 15,
            event_buffer: 4096,
            webhook_rate_per_second: 200,
            webhook_burst: 1000,
            max_websocket_connections: 20_000,
            max_subscriptions_per_connection: 50,
            max_connections: 1024,
            header_read_timeout_secs: 20,
            idle_timeout_secs: 60,
            ws_max_queued_bytes: 256 * 1024,
            max_query_complexity: 5_000,
            max_query_depth: 15,
            max_root_fields: 20,
            max_selection_fields: 100,
            max_concurrent_requests_per_key: 8,
            max_db_connections_per_key: 2,
            graphql_timeout_secs: 10,
        }
    }
}

/// Whether the configuration came from a file or is the built-in development set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    File(PathBuf),
    Development,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub listen: SocketAddr,
    /// How vendors reach this gateway (e.g. `https://carebridge.clinic.example`); used to build
    /// the webhook URL of a source when subscribing it at vCita.
    pub public_url: Option<String>,
    /// May carry a password, hence `Secret`.
    pub database_url: Secret,
    pub sources: Vec<SourceConfig>,
    pub api_keys: Vec<ApiKeyConfig>,
    pub chup: Option<ChupConfig>,
    pub vcita: Option<VcitaConfig>,
    pub limits: Limits,
    pub retention: Retention,
    /// VSee v1 status code → normalized status (documented default: 40 = completed).
    pub vsee_status_codes: HashMap<String, VisitStatusKind>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://carebridge.db?mode=rwc";
pub const DEFAULT_CHUP_AUTH_PATH: &str = "/api/v1/auth/token";
pub const DEFAULT_CHUP_ALERT_PATH: &str = "/api/v1/alerts";

/// The development API key; usable only because development mode binds loopback only.
pub const DEVELOPMENT_API_KEY: &str = "carebridge-dev-key";

/// Environment overrides, passed in rather than read here so tests stay hermetic.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    pub listen: Option<String>,
    pub database_url: Option<String>,
}

impl EnvOverrides {
    pub fn from_process() -> EnvOverrides {
        let read = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        EnvOverrides {
            listen: read("CAREBRIDGE_LISTEN"),
            database_url: read("DATABASE_URL"),
        }
    }
}

impl Config {
    /// The mappers' settings (ingest and reprocess use the same).
    pub fn mappers(&self) -> crate::vendors::MapperConfig {
        crate::vendors::MapperConfig {
            vsee_status_codes: self.vsee_status_codes.clone(),
        }
    }

    /// Loads the file if given (else development mode), applies the overrides, validates.
    pub fn load(path: Option<&Path>, env: &EnvOverrides) -> Result<Config, ConfigError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Config::from_toml(&text, Mode::File(path.to_owned()), env)
            }
            None => Config::development(env),
        }
    }

    /// Parses and validates TOML text; `mode` names the origin in error messages.
    pub fn from_toml(text: &str, mode: Mode, env: &EnvOverrides) -> Result<Config, ConfigError> {
        let origin_path = match &mode {
            Mode::File(path) => path.clone(),
            Mode::Development => PathBuf::from("<development>"),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: origin_path.clone(),
            message: error.to_string().trim_end().to_owned(),
        })?;
        raw.validate(mode, env)
    }

    /// The built-in development configuration (no file given).
    pub fn development(env: &EnvOverrides) -> Result<Config, ConfigError> {
        let text = format!(
            r#"
            [[sources]]
            id = "chup-dev"
            vendor = "chup"
            secret = "dev-chup-secret"
            [[sources]]
            id = "vcita-dev"
            vendor = "vcita"
            token = "dev-vcita-token"
            [[sources]]
            id = "vsee-dev"
            vendor = "vsee"
            token = "dev-vsee-token"
            [[sources]]
            id = "timetap-dev"
            vendor = "timetap"
            token = "dev-timetap-token"
            [[api_keys]]
            name = "development"
            key = "{DEVELOPMENT_API_KEY}"
            scopes = ["read", "write", "admin"]
            "#
        );
        let config = Config::from_toml(&text, Mode::Development, env)?;
        if !config.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid {
                origin: "CAREBRIDGE_LISTEN".into(),
                message: format!(
                    "development mode (no config file) serves loopback only, but {} is not a \
                     loopback address; give a config file with your own secrets to listen there",
                    config.listen
                ),
            });
        }
        Ok(config)
    }

    pub fn source(&self, id: &str) -> Option<&SourceConfig> {
        self.sources.iter().find(|source| source.id.as_str() == id)
    }

    /// What development mode prints at start: where to point each vendor and which key to use.
    pub fn development_banner(&self) -> String {
        let mut text = String::from(
            "development mode (no config file): loopback only, well-known credentials\n",
        );
        for source in &self.sources {
            let url = format!("http://{}/webhooks/{}", self.listen, source.id);
            let line = match &source.credential {
                SourceCredential::HmacSecret(secret) => {
                    format!(
                        "  {} {url}  (HMAC secret {:?})\n",
                        source.vendor,
                        secret.expose()
                    )
                }
                SourceCredential::UrlToken(token) => {
                    format!("  {} {url}?token={}\n", source.vendor, token.expose())
                }
            };
            text.push_str(&line);
        }
        text.push_str(&format!(
            "  GraphQL http://{}/graphql  Authorization: Bearer {DEVELOPMENT_API_KEY}\n",
            self.listen
        ));
        text
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    public_url: Option<String>,
    database_url: Option<String>,
    #[serde(default)]
    sources: Vec<RawSource>,
    #[serde(default)]
    api_keys: Vec<RawApiKey>,
    chup: Option<RawChup>,
    vcita: Option<RawVcita>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    retention: Retention,
    vsee: Option<RawVsee>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    id: String,
    vendor: String,
    secret: Option<String>,
    token: Option<String>,
    retention_days: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    name: String,
    key: Option<String>,
    key_sha256: Option<String>,
    scopes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChup {
    api_base: String,
    auth_path: Option<String>,
    alert_path: Option<String>,
    api_key: String,
    business_id: String,
    email: String,
    max_attempts: Option<i32>,
    retry_base_ms: Option<u64>,
    lease_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVcita {
    api_base: String,
    token: String,
    auth_scheme: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVsee {
    /// v1 status code → one of pending, confirmed, in_progress, completed, cancelled.
    #[serde(default)]
    status_codes: HashMap<String, String>,
}

impl RawConfig {
    fn validate(self, mode: Mode, env: &EnvOverrides) -> Result<Config, ConfigError> {
        let origin = match &mode {
            Mode::File(path) => format!("config file {}", path.display()),
            Mode::Development => "development config".to_owned(),
        };
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin.clone(),
            message: format!("`{key}`: {message}"),
        };

        let listen_text = match &env.listen {
            Some(listen) => listen.clone(),
            None => self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
        };
        let listen = listen_text.parse::<SocketAddr>().map_err(|_| {
            let key = if env.listen.is_some() {
                "CAREBRIDGE_LISTEN"
            } else {
                "listen"
            };
            invalid(
                key,
                format!("{listen_text:?} is not an address like 127.0.0.1:8080"),
            )
        })?;

        let database_url = env
            .database_url
            .clone()
            .or(self.database_url)
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
            let key = if env.database_url.is_some() {
                "DATABASE_URL"
            } else {
                "database_url"
            };
            return Err(invalid(
                key,
                "must start with sqlite: or postgres://".to_owned(),
            ));
        }

        let mut seen = HashSet::new();
        let mut sources = Vec::with_capacity(self.sources.len());
        for (index, raw) in self.sources.into_iter().enumerate() {
            let key = format!("sources[{index}]");
            let id = SourceId::parse(&raw.id).map_err(|m| invalid(&format!("{key}.id"), m))?;
            if !seen.insert(id.clone()) {
                return Err(invalid(
                    &format!("{key}.id"),
                    format!("duplicate source id {id:?}"),
                ));
            }
            let vendor = Vendor::parse(&raw.vendor).ok_or_else(|| {
                invalid(
                    &format!("{key}.vendor"),
                    format!(
                        "unknown vendor {:?} (expected chup, vcita, vsee or timetap)",
                        raw.vendor
                    ),
                )
            })?;
            let credential = match (vendor, raw.secret, raw.token) {
                (Vendor::Chup, Some(secret), None) if !secret.is_empty() => {
                    SourceCredential::HmacSecret(Secret(secret))
                }
                (Vendor::Chup, _, _) => {
                    return Err(invalid(
                        &format!("{key}.secret"),
                        format!("chup source {id} needs a non-empty `secret` (and no `token`)"),
                    ));
                }
                (_, None, Some(token)) if token.len() >= 8 => {
                    SourceCredential::UrlToken(Secret(token))
                }
                (_, _, _) => {
                    return Err(invalid(
                        &format!("{key}.token"),
                        format!(
                            "{vendor} source {id} needs a `token` of at least 8 characters \
                             (and no `secret`): {vendor} does not sign its webhooks"
                        ),
                    ));
                }
            };
            let retention_days = raw.retention_days.unwrap_or(self.retention.raw_body_days);
            if retention_days == 0 {
                return Err(invalid(
                    &format!("{key}.retention_days"),
                    "must be at least 1".into(),
                ));
            }
            sources.push(SourceConfig {
                id,
                vendor,
                credential,
                retention_days,
            });
        }

        let mut key_names = HashSet::new();
        let mut api_keys = Vec::with_capacity(self.api_keys.len());
        for (index, raw) in self.api_keys.into_iter().enumerate() {
            let key = format!("api_keys[{index}]");
            if raw.name.trim().is_empty() || !key_names.insert(raw.name.clone()) {
                return Err(invalid(
                    &format!("{key}.name"),
                    "must be non-empty and unique".into(),
                ));
            }
            let key_sha256 = match (raw.key, raw.key_sha256) {
                (Some(plain), None) if plain.len() >= 16 => crate::auth::sha256(plain.as_bytes()),
                (None, Some(hex_digest)) => parse_sha256_hex(&hex_digest).ok_or_else(|| {
                    invalid(&format!("{key}.key_sha256"), "must be 64 hex digits".into())
                })?,
                _ => {
                    return Err(invalid(
                        &format!("{key}.key"),
                        "give exactly one of `key` (16+ characters) or `key_sha256`".into(),
                    ));
                }
            };
            let mut scopes = Vec::new();
            for scope in &raw.scopes {
                scopes.push(Scope::parse(scope).ok_or_else(|| {
                    invalid(
                        &format!("{key}.scopes"),
                        format!("unknown scope {scope:?} (expected read, write or admin)"),
                    )
                })?);
            }
            if scopes.is_empty() {
                return Err(invalid(
                    &format!("{key}.scopes"),
                    "must list at least one scope".into(),
                ));
            }
            scopes.sort();
            scopes.dedup();
            api_keys.push(ApiKeyConfig {
                name: raw.name,
                key_sha256,
                scopes,
            });
        }

        let chup = self.chup.map(|raw| ChupConfig {
            api_base: raw.api_base.trim_end_matches('/').to_owned(),
            auth_path: raw
                .auth_path
                .unwrap_or_else(|| DEFAULT_CHUP_AUTH_PATH.into()),
            alert_path: raw
                .alert_path
                .unwrap_or_else(|| DEFAULT_CHUP_ALERT_PATH.into()),
            api_key: Secret(raw.api_key),
            business_id: raw.business_id,
            email: raw.email,
            max_attempts: raw.max_attempts.unwrap_or(8).max(1),
            retry_base_ms: raw.retry_base_ms.unwrap_or(1000).max(1),
            lease_secs: raw.lease_secs.unwrap_or(60).max(1),
        });

        let vcita = match self.vcita {
            None => None,
            Some(raw) => {
                let auth_scheme = match raw.auth_scheme.as_deref().unwrap_or("Bearer") {
                    "Bearer" => VcitaAuthScheme::Bearer,
                    "Token" => VcitaAuthScheme::Token,
                    other => {
                        return Err(invalid(
                            "vcita.auth_scheme",
                            format!("{other:?} is neither \"Bearer\" nor \"Token\""),
                        ));
                    }
                };
                Some(VcitaConfig {
                    api_base: raw.api_base.trim_end_matches('/').to_owned(),
                    token: Secret(raw.token),
                    auth_scheme,
                })
            }
        };

        let mut vsee_status_codes = default_vsee_status_codes();
        for (code, name) in self.vsee.map(|v| v.status_codes).unwrap_or_default() {
            let kind = parse_visit_status_kind(&name).ok_or_else(|| {
                invalid(
                    &format!("vsee.status_codes.{code}"),
                    format!(
                        "{name:?} is not one of pending, confirmed, in_progress, completed, cancelled"
                    ),
                )
            })?;
            vsee_status_codes.insert(code, kind);
        }

        if self.limits.max_body_bytes == 0
            || self.limits.request_timeout_secs == 0
            || self.limits.ws_ping_interval_secs == 0
            || self.limits.event_buffer == 0
            || self.limits.webhook_rate_per_second == 0
            || self.limits.webhook_burst == 0
            || self.limits.max_websocket_connections == 0
            || self.limits.max_subscriptions_per_connection == 0
            || self.limits.max_connections == 0
            || self.limits.header_read_timeout_secs == 0
            || self.limits.idle_timeout_secs == 0
            || self.limits.ws_max_queued_bytes == 0
            || self.limits.max_query_complexity == 0
            || self.limits.max_query_depth == 0
            || self.limits.max_root_fields == 0
            || self.limits.max_selection_fields == 0
            || self.limits.max_concurrent_requests_per_key == 0
            || self.limits.max_db_connections_per_key == 0
            || self.limits.graphql_timeout_secs == 0
        {
            return Err(invalid("limits", "limits must be greater than zero".into()));
        }
        if self.limits.max_connections > MAX_CONNECTIONS_CAP {
            return Err(invalid(
                "limits.max_connections",
                format!("must be at most {MAX_CONNECTIONS_CAP}"),
            ));
        }

        let public_url = self
            .public_url
            .map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(invalid(
                "public_url",
                format!("{url:?} must start with https:// or http://"),
            ));
        }
        Ok(Config {
            mode,
            listen,
            public_url,
            database_url: Secret(database_url),
            sources,
            api_keys,
            chup,
            vcita,
            limits: self.limits,
            retention: self.retention,
            vsee_status_codes,
        })
    }
}

/// VSee documents no v1 code table: 40 = completed is from its page history, 10 = the state a
/// fresh walk-in gets from its API. Every other code maps to `OTHER` with the raw code kept.
pub fn default_vsee_status_codes() -> HashMap<String, VisitStatusKind> {
    HashMap::from([
        ("10".to_owned(), VisitStatusKind::Pending),
        ("40".to_owned(), VisitStatusKind::Completed),
    ])
}

fn parse_visit_status_kind(name: &str) -> Option<VisitStatusKind> {
    Some(match name {
        "pending" => VisitStatusKind::Pending,
        "confirmed" => VisitStatusKind::Confirmed,
        "in_progress" => VisitStatusKind::InProgress,
        "completed" => VisitStatusKind::Completed,
        "cancelled" => VisitStatusKind::Cancelled,
        _ => return None,
    })
}

fn parse_sha256_hex(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(
            text,
            Mode::File("clinic.toml".into()),
            &EnvOverrides::default(),
        )
    }

    #[test]
    fn a_full_file_parses_into_typed_values() {
        let config = parse(
            r#"
            listen = "0.0.0.0:9000"
            database_url = "postgres://carebridge@db/carebridge"
            [[sources]]
            id = "chup-kl-central"
            vendor = "chup"
            secret = "s3cret"
            [[sources]]
            id = "timetap-main"
            vendor = "timetap"
            token = "0123456789abcdef"
            [[api_keys]]
            name = "waiting-room-tv"
            key = "0123456789abcdef0123"
            scopes = ["read"]
            [chup]
            api_base = "https://api.chup.example/"
            api_key = "k"
            business_id = "42"
            email = "it@clinic.example"
            [vcita]
            api_base = "https://api.vcita.biz"
            token = "t"
            auth_scheme = "Token"
            [vsee.status_codes]
            "30" = "in_progress"
            "#,
        )
        .expect("valid config");
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.sources.len(), 2);
        assert_eq!(config.sources[0].vendor, Vendor::Chup);
        assert_eq!(config.api_keys[0].scopes, vec![Scope::Read]);
        let chup = config.chup.expect("chup section");
        assert_eq!(chup.api_base, "https://api.chup.example");
        assert_eq!(chup.auth_path, DEFAULT_CHUP_AUTH_PATH);
        assert_eq!(
            config.vcita.expect("vcita").auth_scheme,
            VcitaAuthScheme::Token
        );
        assert_eq!(config.vsee_status_codes["30"], VisitStatusKind::InProgress);
        assert_eq!(config.vsee_status_codes["40"], VisitStatusKind::Completed);
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let config = Config::development(&EnvOverrides::default()).expect("dev config");
        let printed = format!("{config:?}");
        assert!(!printed.contains("dev-chup-secret"));
        assert!(!printed.contains("dev-vcita-token"));
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn environment_overrides_listen_and_database_url() {
        let env = EnvOverrides {
            listen: Some("127.0.0.1:0".into()),
            database_url: Some("sqlite://other.db".into()),
        };
        let config =
            Config::from_toml("listen = \"127.0.0.1:1\"", Mode::Development, &env).expect("valid");
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.database_url.expose(), "sqlite://other.db");
    }

    #[test]
    fn an_unknown_key_is_named_in_the_error() {
        let error = parse("lisen = \"127.0.0.1:8080\"").unwrap_err().to_string();
        assert!(error.contains("clinic.toml"), "{error}");
        assert!(error.contains("lisen"), "{error}");
    }

    #[test]
    fn an_unknown_vendor_is_refused_with_its_key() {
        let error = parse("[[sources]]\nid = \"x\"\nvendor = \"acme\"\ntoken = \"12345678\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("sources[0].vendor"), "{error}");
        assert!(error.contains("acme"), "{error}");
    }

    #[test]
    fn a_duplicate_source_id_is_refused() {
        let text = "[[sources]]\nid = \"a\"\nvendor = \"vsee\"\ntoken = \"12345678\"\n\
                    [[sources]]\nid = \"a\"\nvendor = \"vsee\"\ntoken = \"12345678\"";
        let error = parse(text).unwrap_err().to_string();
        assert!(error.contains("duplicate source id"), "{error}");
    }

    #[test]
    fn a_chup_source_without_secret_is_refused() {
        let error = parse("[[sources]]\nid = \"c\"\nvendor = \"chup\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("sources[0].secret"), "{error}");
    }

    #[test]
    fn an_unsigned_vendor_without_token_is_refused() {
        let error = parse("[[sources]]\nid = \"t\"\nvendor = \"timetap\"")
            .unwrap_err()
            .to_string();
        assert!(error.contains("sources[0].token"), "{error}");
    }

    #[test]
    fn an_api_key_with_unknown_scope_is_refused() {
        let text = "[[api_keys]]\nname = \"n\"\nkey = \"0123456789abcdef\"\nscopes = [\"root\"]";
        let error = parse(text).unwrap_err().to_string();
        assert!(error.contains("api_keys[0].scopes"), "{error}");
    }

    #[test]
    fn an_api_key_may_be_given_hashed() {
        let digest = hex::encode(crate::auth::sha256(b"0123456789abcdef"));
        let text =
            format!("[[api_keys]]\nname = \"n\"\nkey_sha256 = \"{digest}\"\nscopes = [\"read\"]");
        let config = parse(&text).expect("valid");
        assert_eq!(
            config.api_keys[0].key_sha256,
            crate::auth::sha256(b"0123456789abcdef")
        );
    }

    #[test]
    fn development_mode_refuses_a_public_address() {
        let env = EnvOverrides {
            listen: Some("0.0.0.0:8080".into()),
            database_url: None,
        };
        let error = Config::development(&env).unwrap_err().to_string();
        assert!(error.contains("loopback"), "{error}");
    }

    #[test]
    fn broken_toml_names_the_file() {
        let error = parse("[[sources]\nid=").unwrap_err().to_string();
        assert!(error.starts_with("config file clinic.toml"), "{error}");
    }
}
