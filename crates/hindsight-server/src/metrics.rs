//! Prometheus metrics, served as text at `GET /metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Latency buckets, seconds: 100 µs to 10 s.
const LATENCY: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Size buckets (candidates per request, behaviors per append, requests
/// per commit).
const SIZES: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0, 10000.0,
];

/// The server's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests by route, method and status.
    pub requests: IntCounterVec,
    /// Request latency by route and status.
    pub latency: HistogramVec,
    /// Time retrieving per score request.
    pub retrieval: Histogram,
    /// Time in batching + forward pass per score request.
    pub model: Histogram,
    /// Time in recall (user vector, catalog search, seen-item filter) per
    /// recommend request.
    pub recall: Histogram,
    /// Candidates per score request (the forward pass's batch size).
    pub batch_size: Histogram,
    /// Requests refused with 503 because the server was saturated.
    pub shed: IntCounterVec,
    /// Requests being handled.
    pub in_flight: IntGauge,
    /// Behaviors per append request.
    pub append_size: Histogram,
    /// Append requests per group commit.
    pub commit_group: Histogram,
    /// Time of one group commit (add, fsync, refresh).
    pub commit: Histogram,
    /// Behaviors added by appends.
    pub appended: IntCounter,
    /// Behaviors skipped by appends as duplicates.
    pub duplicates: IntCounter,
    /// Reloads by result (ok, refused).
    pub reloads: IntCounterVec,
    /// Behaviors in the index.
    pub index_behaviors: IntGauge,
    /// Segments of the index.
    pub index_segments: IntGauge,
    /// Open HTTP connections.
    pub open_connections: IntGauge,
    /// Connections refused because `max_connections` were open.
    pub connections_refused: IntCounter,
    /// Connections closed on a timeout, by kind (idle, header).
    pub connection_timeouts: IntCounterVec,
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let hist = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("valid histogram");
            registry.register(Box::new(h.clone())).expect("unique");
            h
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid counter");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid gauge");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let requests = IntCounterVec::new(
            Opts::new(
                "hindsight_http_requests_total",
                "HTTP requests by route, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "hindsight_http_request_duration_seconds",
                "HTTP request latency by route and status.",
            )
            .buckets(LATENCY.to_vec()),
            &["route", "status"],
        )
        .expect("valid");
        registry
            .register(Box::new(latency.clone()))
            .expect("unique");
        let shed = IntCounterVec::new(
            Opts::new(
                "hindsight_shed_total",
                "Requests refused with 503 because the server was saturated, by route.",
            ),
            &["route"],
        )
        .expect("valid");
        registry.register(Box::new(shed.clone())).expect("unique");
        let reloads = IntCounterVec::new(
            Opts::new("hindsight_reloads_total", "Model/index reloads by result."),
            &["result"],
        )
        .expect("valid");
        registry
            .register(Box::new(reloads.clone()))
            .expect("unique");
        let connection_timeouts = IntCounterVec::new(
            Opts::new(
                "hindsight_connection_timeouts_total",
                "Connections closed on a timeout, by kind: idle (nothing sent between requests), header (the request head did not arrive in time).",
            ),
            &["kind"],
        )
        .expect("valid");
        registry
            .register(Box::new(connection_timeouts.clone()))
            .expect("unique");
        Metrics {
            requests,
            connection_timeouts,
            open_connections: gauge("hindsight_open_connections", "Open HTTP connections."),
            connections_refused: counter(
                "hindsight_connections_refused_total",
                "Connections answered 503 and closed because max_connections were open.",
            ),
            latency,
            retrieval: hist(
                "hindsight_retrieval_seconds",
                "Retrieval time per score request.",
                LATENCY,
            ),
            model: hist(
                "hindsight_model_seconds",
                "Batch building and forward pass time per score request.",
                LATENCY,
            ),
            recall: hist(
                "hindsight_recall_seconds",
                "Recall time (user vector, catalog search, seen-item filter) per recommend request.",
                LATENCY,
            ),
            batch_size: hist(
                "hindsight_score_batch_size",
                "Candidates per score request (one forward pass each).",
                SIZES,
            ),
            shed,
            in_flight: gauge("hindsight_in_flight_requests", "Requests being handled."),
            append_size: hist(
                "hindsight_append_batch_behaviors",
                "Behaviors per append request.",
                SIZES,
            ),
            commit_group: hist(
                "hindsight_commit_group_requests",
                "Append requests made durable by one commit.",
                SIZES,
            ),
            commit: hist(
                "hindsight_commit_seconds",
                "Time of one group commit: add, fsync, refresh.",
                LATENCY,
            ),
            appended: counter("hindsight_behaviors_appended_total", "Behaviors appended."),
            duplicates: counter(
                "hindsight_behaviors_duplicate_total",
                "Appended behaviors skipped as already indexed.",
            ),
            reloads,
            index_behaviors: gauge("hindsight_index_behaviors", "Behaviors in the index."),
            index_segments: gauge("hindsight_index_segments", "Segments of the index."),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
