//! Prometheus metrics, one registry per application (kept in `AppState`, never a process
//! global), rendered at `/metrics` in the text format. Every label value comes from a closed
//! set the gateway defines — configured source ids (else `unknown`), the event types CareBridge
//! maps (else `other`, see `vendors::event_label`), outcomes, pool states — never text a sender
//! chose, so no delivery can grow the exposition or put a patient's data in it.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Deliveries by source, event (a known event type, `other` or `-`) and outcome (processed,
    /// duplicate, stale, failed, unsupported, rejected, unknown_source, unsupported_media_type,
    /// unauthorized, malformed, method_not_allowed, rate_limited, unavailable, misconfigured).
    pub webhooks: IntCounterVec,
    /// Signature or token checks that failed, by source.
    pub verification_failures: IntCounterVec,
    /// Seconds from request to answer for webhooks, by outcome.
    pub ingest_seconds: HistogramVec,
    /// Deliveries committed together (1 until group commit batches them).
    pub commit_batch_size: Histogram,
    /// Unix time of the last delivery per source (alert when a clinic goes quiet).
    pub last_delivery: IntGaugeVec,
    pub websocket_connections: IntGauge,
    pub subscriptions: IntGauge,
    /// Executions shared by identical live subscriptions (one per group, however many members).
    pub shared_subscriptions: IntGauge,
    /// Events handed to this process's live subscribers (per event, not per subscriber).
    pub events_published: IntCounter,
    /// Alerts waiting to be sent (refreshed at scrape).
    pub outbox_depth: IntGauge,
    /// Alert outcomes: sent, retried, failed.
    pub alerts: IntCounterVec,
    /// Database pool connections, open and idle (refreshed at scrape).
    pub db_pool: IntGaugeVec,
}

impl Metrics {
    /// Defines and registers every metric; fails only on an invalid definition (a bug the
    /// tests catch), which stops the start.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let metrics = Metrics {
            registry: Registry::new_custom(Some("carebridge".into()), None)?,
            webhooks: IntCounterVec::new(
                Opts::new(
                    "webhooks_received_total",
                    "Webhook deliveries by source, event and outcome",
                ),
                &["source", "event", "outcome"],
            )?,
            verification_failures: IntCounterVec::new(
                Opts::new(
                    "webhook_verification_failures_total",
                    "Failed signature or token checks",
                ),
                &["source"],
            )?,
            ingest_seconds: HistogramVec::new(
                HistogramOpts::new("webhook_ingest_seconds", "Webhook request to answer").buckets(
                    vec![
                        0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
                    ],
                ),
                &["outcome"],
            )?,
            commit_batch_size: Histogram::with_opts(
                HistogramOpts::new("ingest_commit_batch_size", "Deliveries per ingest commit")
                    .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
            )?,
            last_delivery: IntGaugeVec::new(
                Opts::new(
                    "source_last_delivery_timestamp_seconds",
                    "Unix time of the last delivery per source",
                ),
                &["source"],
            )?,
            websocket_connections: IntGauge::new(
                "websocket_connections",
                "Open websocket connections",
            )?,
            subscriptions: IntGauge::new("subscriptions", "Active GraphQL subscriptions")?,
            shared_subscriptions: IntGauge::new(
                "shared_subscription_executions",
                "Running executions shared by identical live subscriptions",
            )?,
            events_published: IntCounter::new(
                "events_published_total",
                "Domain events handed to live subscribers",
            )?,
            outbox_depth: IntGauge::new("alert_outbox_depth", "Alerts waiting to be sent")?,
            alerts: IntCounterVec::new(
                Opts::new("alerts_total", "Alert send outcomes"),
                &["outcome"],
            )?,
            db_pool: IntGaugeVec::new(
                Opts::new("db_pool_connections", "Database pool connections"),
                &["state"],
            )?,
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(self.webhooks.clone()),
            Box::new(self.verification_failures.clone()),
            Box::new(self.ingest_seconds.clone()),
            Box::new(self.commit_batch_size.clone()),
            Box::new(self.last_delivery.clone()),
            Box::new(self.websocket_connections.clone()),
            Box::new(self.subscriptions.clone()),
            Box::new(self.shared_subscriptions.clone()),
            Box::new(self.events_published.clone()),
            Box::new(self.outbox_depth.clone()),
            Box::new(self.alerts.clone()),
            Box::new(self.db_pool.clone()),
        ];
        for collector in collectors {
            self.registry.register(collector)?;
        }
        Ok(())
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "metrics could not be encoded");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
