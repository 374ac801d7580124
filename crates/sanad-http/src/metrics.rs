//! Prometheus metrics at `/metrics` (OpenMetrics text): requests by route and status, their
//! latency, the ledger's group-commit sizes, and the log's size. Volumes only: no ids, no
//! personal data, so the route is public like `/healthz` (put it behind the proxy if not).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The server's metrics.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    commits: Histogram,
    log_size: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("sanad");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request, by route",
            latency.clone(),
        );
        // 1 to 8,192 commands.
        let commits = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "ledger_commit_commands",
            "Commands per group commit (one fsync, one checkpoint signature each)",
            commits.clone(),
        );
        let log_size = Gauge::default();
        registry.register("log_entries", "Entries in the signed log", log_size.clone());
        Self { registry, requests, latency, commits, log_size }
    }

    /// What the ledger's writer calls after each commit.
    pub(crate) fn commit_observer(self: &Arc<Self>) -> Arc<dyn Fn(usize) + Send + Sync> {
        let metrics = Arc::clone(self);
        Arc::new(move |commands| metrics.commits.observe(commands as f64))
    }

    /// The metrics as OpenMetrics text, with the log's size as of now.
    pub(crate) fn render(&self, log_entries: u64) -> String {
        self.log_size.set(i64::try_from(log_entries).unwrap_or(i64::MAX));
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

/// Counts and times every request, by the route it matched.
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics.requests.get_or_create(&RequestLabels { method, route: route.clone(), status }).inc();
    metrics.latency.get_or_create(&RouteLabels { route }).observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
pub(crate) fn response(metrics: &Metrics, log_entries: u64) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(log_entries),
    )
        .into_response()
}
