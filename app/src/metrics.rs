//! `GET /metrics`: a service's numbers in the Prometheus text format, recorded through the
//! `metrics` facade by every crate and rendered by `metrics-exporter-prometheus`. Served on an
//! address of its own (`metrics.listen`, default `127.0.0.1:9464`), never on the public port:
//! project labels name every slug. A bearer token (`metrics.token`) may protect it further.
//! docs/operations.md lists every metric and the alerts over them.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::config::Config;

/// `[metrics]` of the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Where `/metrics` is served; empty turns it off. Keep it off the public network.
    pub listen: String,
    /// When set, a scrape must send `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection { listen: "127.0.0.1:9464".into(), token: None }
    }
}

/// Durations, in seconds: 0.5 ms to a minute.
const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Records per processor batch.
const RECORDS: &[f64] = &[1.0, 10.0, 100.0, 1_000.0, 10_000.0, 50_000.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed at the first call; `None` if another recorder was
/// installed first.
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("ksa_processor_batch_records".into()), RECORDS))
                .ok()?;
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

/// The help text of every metric the crates record (names are written where they are recorded).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "ksa_webhooks_total",
        "Webhooks by project, outcome (received, accepted, duplicate, ignored, rejected) and refusal reason."
    );
    describe_histogram!("ksa_webhook_duration_seconds", Unit::Seconds, "Ingest's answer time for webhooks that reached the bus.");
    describe_gauge!(
        "ksa_webhook_last_accepted_timestamp_seconds",
        Unit::Seconds,
        "When the project's last webhook was accepted (Unix time)."
    );
    describe_gauge!("ksa_bus_end_offset", "The next offset of a bus partition.");
    describe_gauge!("ksa_consumer_lag_records", "Records of a partition not yet committed by its processor.");
    describe_histogram!("ksa_processor_batch_records", "Records per processor batch.");
    describe_histogram!("ksa_processor_batch_seconds", Unit::Seconds, "Facts write and state commit of one batch.");
    describe_histogram!("ksa_processor_delay_seconds", Unit::Seconds, "From a batch's oldest record reaching the bus to its commit.");
    describe_counter!("ksa_processor_events_total", "New events committed by the processors.");
    describe_counter!("ksa_processor_orders_total", "Order rows written by the processors.");
    describe_histogram!("ksa_state_write_seconds", Unit::Seconds, "State database commits of processor batches.");
    describe_counter!("ksa_state_write_failures_total", "State database commits that failed.");
    describe_histogram!("ksa_facts_write_seconds", Unit::Seconds, "Facts writes (Parquet or ClickHouse) of processor batches.");
    describe_counter!("ksa_facts_write_failures_total", "Facts writes that failed.");
    describe_gauge!("ksa_recompute_orders_done", "Orders a project's settings recompute has rewritten.");
    describe_gauge!("ksa_recompute_orders_total", "Orders a project's settings recompute rewrites.");
    describe_counter!("ksa_keycrm_calls_total", "KeyCRM API calls by project and outcome (2xx, 4xx, 429, 5xx, timeout, connect).");
    describe_gauge!("ksa_keycrm_circuit_open", "1 while calls to a project's KeyCRM are paused after repeated failures.");
    describe_gauge!("ksa_sse_clients", "Open live-feed streams.");
    describe_gauge!("ksa_open_orders", "Open orders of a project by SLA state now (ok, near, over, none).");
}

/// Serves `/metrics` on `metrics.listen` (with the connection limits of `server.*`) until
/// `shutdown`; logs the address. Nothing when the address is empty; an address that cannot be
/// bound is logged and the service goes on without it.
pub async fn serve(config: &Config, service: &'static str, shutdown: watch::Receiver<bool>) -> Option<SocketAddr> {
    let section = &config.metrics;
    if section.listen.trim().is_empty() {
        return None;
    }
    let handle = handle()?;
    let limits = config.server.limits().ok()?;
    let listener = match tokio::net::TcpListener::bind(section.listen.trim()).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(listen = %section.listen, %error, "metrics not served: cannot listen there (set metrics.listen)");
            return None;
        }
    };
    let address = listener.local_addr().ok()?;
    let expected = section.token.as_ref().map(|t| ksa_ingest::secret::secret_digest(&format!("Bearer {t}")));
    let render = handle.clone();
    let route = warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .map(move |offered: Option<String>| -> Response {
            if let Some(expected) = &expected
                && !offered.is_some_and(|o| ksa_ingest::secret::secret_matches(&o, expected))
            {
                let refusal = "a bearer token is required: Authorization: Bearer <metrics.token>\n";
                return warp::reply::with_status(refusal, StatusCode::UNAUTHORIZED).into_response();
            }
            warp::reply::with_header(render.render(), "content-type", "text/plain; version=0.0.4; charset=utf-8").into_response()
        })
        .recover(ksa_query_api::recover)
        .unify();
    let upkeep = handle.clone();
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => upkeep.run_upkeep(),
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    });
    let mut stop = shutdown;
    tokio::spawn(ksa_edge::serve(listener, route, limits, async move {
        let _ = stop.wait_for(|stop| *stop).await;
    }));
    tracing::info!(service, "metrics on http://{address}/metrics");
    Some(address)
}
