//! The seam between the binary and the app: `Application::build` turns a validated config into
//! a bound listener, a migrated database and a router. Tests call it with port 0 and run the
//! real app in-process; `main.rs` calls it with the configured address.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use sea_orm::DatabaseConnection;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::store::{self, StoreError};

/// Why the gateway could not start; each message names the problem, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open database {url}: {source}")]
    Database { url: String, source: StoreError },
    #[error("cannot migrate database {url}: {source}")]
    Migrate { url: String, source: StoreError },
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Everything a request handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub config: Arc<Config>,
    pub schema: crate::graphql::CareBridgeSchema,
    pub mapper_config: Arc<crate::vendors::MapperConfig>,
    pub ingestor: Arc<crate::store::ingest::Ingestor>,
    pub bus: crate::bus::Bus,
    /// The event tailer's own connection (`store::connect_event_tailer`).
    pub tailer_db: DatabaseConnection,
    /// Statements run by the pool since start.
    pub statements: store::StatementCounter,
    pub webhook_rate: Arc<crate::ingest::rate_limit::SourceRateLimit>,
    /// One permit per open websocket connection.
    pub websocket_slots: Arc<tokio::sync::Semaphore>,
    pub metrics: crate::metrics::Metrics,
    /// Shared executions of identical live subscriptions, across all websocket connections.
    pub live: crate::graphql::LiveHub,
    /// Parsed query texts shared by HTTP requests.
    pub documents: Arc<crate::graphql::DocumentCache>,
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Background tasks (event tailer, PostgreSQL listener), stopped with the app.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The alert outbox and its stop signal: stopped gracefully, after the server.
    outbox: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Application {
    /// Connects and migrates the database, then binds the listener: a config that cannot
    /// reach its database never opens a port.
    pub async fn build(config: Config) -> Result<Application, StartupError> {
        let statements = store::StatementCounter::default();
        let db = open_database_counted(&config, &statements).await?;
        store::sync_sources(&db, &config)
            .await
            .map_err(|source| StartupError::Migrate {
                url: redact_url(config.database_url.expose()),
                source,
            })?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    address: config.listen,
                    source,
                })?;
        let config = Arc::new(config);
        let bus = crate::bus::Bus::new(config.limits.event_buffer);
        let database_error = |source: StoreError| StartupError::Database {
            url: redact_url(config.database_url.expose()),
            source,
        };
        let latest = crate::bus::latest_cursor(&db)
            .await
            .map_err(|source| database_error(source.into()))?;
        let metrics = crate::metrics::Metrics::new()?;
        let tailer_db = store::connect_event_tailer(config.database_url.expose(), &statements)
            .await
            .map_err(database_error)?;
        let mut tasks =
            vec![bus.spawn_tailer(tailer_db.clone(), latest, metrics.events_published.clone())];
        tasks.extend(bus.spawn_listener(&db));
        tasks.push(crate::store::retention::spawn(db.clone(), config.clone()));
        let outbound = crate::outbound::Outbound::from_config(&config);
        let mut outbox_task = None;
        if let (Some(chup), Some(chup_config)) = (&outbound.chup, &config.chup) {
            let stop_outbox = tokio::sync::watch::channel(false);
            let outbox = crate::outbound::outbox::Outbox {
                db: db.clone(),
                bus: bus.clone(),
                chup: chup.clone(),
                policy: crate::outbound::outbox::RetryPolicy {
                    max_attempts: chup_config.max_attempts,
                    base: std::time::Duration::from_millis(chup_config.retry_base_ms),
                    cap: std::time::Duration::from_secs(300),
                },
                wake: outbound.outbox_wake.clone(),
                lease: std::time::Duration::from_secs(chup_config.lease_secs),
                stop: stop_outbox.1,
                outcomes: metrics.alerts.clone(),
            };
            outbox_task = Some((stop_outbox.0, outbox.spawn()));
        }
        let schema = crate::graphql::build(db.clone(), config.clone(), bus.clone(), outbound);
        let writer_db = store::connect_ingest_writer(config.database_url.expose(), &statements)
            .await
            .map_err(database_error)?;
        let ingestor = Arc::new(crate::store::ingest::Ingestor::new(
            writer_db,
            bus.clone(),
            metrics.commit_batch_size.clone(),
        ));
        let mapper_config = Arc::new(config.mappers());
        let limits = &config.limits;
        let webhook_rate = Arc::new(crate::ingest::rate_limit::SourceRateLimit::new(
            limits.webhook_rate_per_second,
            limits.webhook_burst,
        ));
        let websocket_slots = Arc::new(tokio::sync::Semaphore::new(
            limits.max_websocket_connections,
        ));
        let live =
            crate::graphql::LiveHub::new(schema.clone(), metrics.shared_subscriptions.clone());
        let state = AppState {
            live,
            db,
            config,
            schema,
            mapper_config,
            ingestor,
            bus,
            tailer_db,
            statements,
            webhook_rate,
            websocket_slots,
            metrics,
            documents: Arc::default(),
        };
        Ok(Application {
            listener,
            state,
            tasks,
            outbox: outbox_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.listen)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, closes idle connections and lets
    /// in-flight requests finish before returning (see `server`).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = crate::http::router(self.state.clone());
        let limits = crate::server::ConnectionLimits::from(&self.state.config.limits);
        let served = crate::server::serve(self.listener, router, limits, shutdown).await;
        if let Some((stop, worker)) = self.outbox {
            let _worker_may_have_ended = stop.send(true);
            // The alert in hand finishes (bounded by the HTTP client's timeouts).
            if tokio::time::timeout(std::time::Duration::from_secs(30), worker)
                .await
                .is_err()
            {
                tracing::warn!(
                    "alert outbox did not stop in time; its alert is freed by its lease"
                );
            }
        }
        for task in &self.tasks {
            task.abort();
        }
        if let Err(error) = self.state.db.close_by_ref().await {
            tracing::warn!(%error, "closing the database pool at shutdown failed");
        }
        served
    }
}

/// Connects and runs migrations (shared by `serve` and `migrate`).
pub async fn open_database(config: &Config) -> Result<DatabaseConnection, StartupError> {
    open_database_counted(config, &store::StatementCounter::default()).await
}

async fn open_database_counted(
    config: &Config,
    statements: &store::StatementCounter,
) -> Result<DatabaseConnection, StartupError> {
    let url = redact_url(config.database_url.expose());
    let db = store::connect_counted(config.database_url.expose(), statements)
        .await
        .map_err(|source| StartupError::Database {
            url: url.clone(),
            source,
        })?;
    store::migrate(&db)
        .await
        .map_err(|source| StartupError::Migrate { url, source })?;
    Ok(db)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}

/// A database URL fit for messages: the password, if any, replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            redact_url("postgres://u:pw@db:5432/x"),
            "postgres://u:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(
            redact_url("sqlite://carebridge.db?mode=rwc"),
            "sqlite://carebridge.db?mode=rwc"
        );
    }
}
