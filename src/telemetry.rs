//! Logs (tracing) and metrics (Prometheus).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber. `json` gives one JSON object per line.
/// `RUST_LOG` filters (default: info, with sqlx's per-statement logs off).
pub fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx::query=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    // `try_init` so that a second call (tests start many apps in one process) is harmless.
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Latency buckets in seconds: fine-grained below 25 ms, where an on-sale lives.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Size buckets for batches.
const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0,
];

/// The process-wide Prometheus recorder. Installed once: the metrics facade has one global
/// recorder, and tests start many applications in one process.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_changes".into()), SIZE_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_requests".into()), SIZE_BUCKETS)
                })
                .expect("bucket lists are non-empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            // Histograms are kept in rolling windows that need draining now and then.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                })
                .expect("spawn metrics upkeep thread");
            handle
        })
        .clone()
}

/// Records every request's latency by method, matched route and status, and logs slow
/// ones. The route is the pattern (`/events/{id}`), never the raw path, so label values stay
/// bounded however many ids are requested.
pub async fn track_requests(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        "boxoffice_http_request_duration_seconds",
        "method" => method.clone(), "route" => route.clone(), "status" => status.clone()
    )
    .record(elapsed.as_secs_f64());
    metrics::counter!(
        "boxoffice_http_requests_total",
        "method" => method.clone(), "route" => route.clone(), "status" => status
    )
    .increment(1);
    if elapsed > slow_request_threshold() {
        tracing::warn!(%method, %route, elapsed_ms = elapsed.as_millis() as u64, "slow request");
    }
    response
}

static SLOW_REQUEST: OnceLock<Duration> = OnceLock::new();

/// Sets the slow-request threshold (first call wins).
pub fn set_slow_request_threshold(threshold: Duration) {
    let _ = SLOW_REQUEST.set(threshold);
}

fn slow_request_threshold() -> Duration {
    SLOW_REQUEST
        .get()
        .copied()
        .unwrap_or(Duration::from_secs(1))
}
