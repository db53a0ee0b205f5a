//! Logs (tracing) and metrics (Prometheus).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::future::Future;
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The log filter when `RUST_LOG` is unset: INFO, without sqlx's line per statement and
/// without PostgreSQL's notices (a migration run says "relation … already exists,
/// skipping" at every start).
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx::query=warn,sqlx::postgres::notice=warn";

/// Installs the global log subscriber. `json` gives one JSON object per line.
/// `RUST_LOG` filters (default: info, with sqlx's per-statement logs off).
pub fn init_logging(format: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    // Logs go to stderr, so that a command's own output (the load generator's --json) stays
    // clean on stdout.
    // Colours only for a person at a terminal: piped to a file or a log collector, plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
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
/// Waiting-room waits in seconds: an on-sale's line lasts seconds to hours.
const QUEUE_WAIT_BUCKETS_SECONDS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0, 7200.0,
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
            // A full name is matched before any suffix. No idle timeout: handles are made
            // once and kept (`REQUEST_SERIES`, the engine's `CallMetrics`), and a series the
            // exporter dropped for idleness would leave them recording into nothing.
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("boxoffice_queue_wait_seconds".into()),
                    QUEUE_WAIT_BUCKETS_SECONDS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_seconds".into()),
                        LATENCY_BUCKETS_SECONDS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_changes".into()), SIZE_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_requests".into()), SIZE_BUCKETS)
                })
                .expect("bucket lists are non-empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            describe_metrics();
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

/// HELP text for every metric, and a zero for every counter and gauge with a known label
/// set, so that dashboards show 0 rather than "no data" before the first event.
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "boxoffice_http_requests_total",
        "HTTP requests by method, matched route and status"
    );
    describe_histogram!(
        "boxoffice_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by method, matched route and status"
    );
    describe_counter!("boxoffice_reservations_total", "Hold requests by outcome");
    describe_counter!(
        "boxoffice_bookings_total",
        "Booking confirmations by outcome"
    );
    describe_gauge!("boxoffice_event_actors", "Event actors alive");
    describe_counter!(
        "boxoffice_event_actor_starts_total",
        "Event actors started (first use or rebuild)"
    );
    describe_counter!(
        "boxoffice_event_actor_restarts_total",
        "Event actors that failed and were rebuilt"
    );
    describe_counter!(
        "boxoffice_event_actor_stops_total",
        "Event actors stopped (idle or shutdown)"
    );
    describe_gauge!(
        "boxoffice_engine_in_flight",
        "Requests admitted to the engine and not yet answered"
    );
    describe_counter!(
        "boxoffice_engine_shed_total",
        "Requests refused by admission control (503), by the limit that refused them: node or event"
    );
    describe_histogram!(
        "boxoffice_engine_call_duration_seconds",
        Unit::Seconds,
        "Time from admission to the engine's durable answer, by operation"
    );
    describe_histogram!(
        "boxoffice_engine_answer_duration_seconds",
        Unit::Seconds,
        "Time from a request reaching an event's actor to the actor's answer being sent; \
         the rest of boxoffice_engine_call_duration_seconds is the caller's wait for a CPU"
    );
    describe_histogram!(
        "boxoffice_flush_duration_seconds",
        Unit::Seconds,
        "Write-behind flush (one transaction) latency"
    );
    describe_histogram!(
        "boxoffice_flush_batch_changes",
        "Row changes per write-behind batch, before coalescing"
    );
    describe_histogram!(
        "boxoffice_flush_batch_requests",
        "Requests answered per write-behind batch"
    );
    describe_counter!(
        "boxoffice_flush_rows_total",
        "Rows written by committed flushes, after coalescing"
    );
    describe_counter!(
        "boxoffice_flush_failures_total",
        "Flushes that did not commit"
    );
    describe_counter!("boxoffice_holds_expired_total", "Holds expired");
    describe_gauge!(
        "boxoffice_inventory_seats",
        "Seats and tickets of events with a live actor, by state"
    );
    describe_histogram!(
        "boxoffice_event_load_duration_seconds",
        Unit::Seconds,
        "Loading an event from PostgreSQL (start or recovery)"
    );
    describe_gauge!(
        "boxoffice_db_pool_connections",
        "Database pool connections by state (in_use, idle)"
    );
    describe_histogram!(
        "boxoffice_db_acquire_duration_seconds",
        Unit::Seconds,
        "Wait for a pooled connection"
    );
    describe_counter!(
        "boxoffice_cache_requests_total",
        "Cache look-ups by cache and result (hit, miss)"
    );
    describe_counter!("boxoffice_cache_errors_total", "Cache backend errors");
    describe_counter!(
        "boxoffice_jobs_queued_total",
        "Background jobs queued in the outbox"
    );
    describe_counter!(
        "boxoffice_jobs_total",
        "Background job attempts by result (delivered, retried, failed)"
    );
    describe_gauge!(
        "boxoffice_jobs_pending",
        "Background jobs waiting for delivery"
    );
    describe_counter!(
        "boxoffice_expiry_swept_rows_total",
        "Lapsed holds' rows written down as EXPIRED by the background sweep"
    );
    describe_gauge!("boxoffice_http_connections", "HTTP connections open");
    describe_counter!(
        "boxoffice_http_requests_paced_total",
        "Requests held until the Retry-After their connection was given with a 503"
    );
    describe_counter!(
        "boxoffice_login_checks_total",
        "Password checks by how they were decided (argon2, remembered)"
    );
    describe_counter!(
        "boxoffice_http_connections_timed_out_total",
        "Connections closed for sending no complete request header in HEADER_TIMEOUT_MS (idle keep-alive included)"
    );
    describe_gauge!(
        "boxoffice_stream_subscribers",
        "Live inventory stream subscribers connected to this node"
    );
    describe_counter!(
        "boxoffice_stream_subscriptions_total",
        "Stream subscriptions by how they started (state: the whole state; resumed: after Last-Event-ID)"
    );
    describe_counter!(
        "boxoffice_stream_subscribers_dropped_total",
        "Stream subscribers disconnected, by reason (slow: fell STREAM_BUFFER_MESSAGES behind)"
    );
    describe_counter!(
        "boxoffice_stream_subscribers_refused_total",
        "Stream subscriptions refused at STREAM_MAX_SUBSCRIBERS"
    );
    describe_counter!(
        "boxoffice_stream_messages_sent_total",
        "Stream messages written to subscribers (one per subscriber and message)"
    );
    describe_counter!(
        "boxoffice_stream_changes_total",
        "Committed batches handed to the live feeds (several may share one message)"
    );

    describe_counter!(
        "boxoffice_cluster_claims_total",
        "Events this node claimed from nobody or from a node whose lease ran out"
    );
    describe_counter!(
        "boxoffice_cluster_forwards_total",
        "Requests forwarded to the event's owner, by result (answered, refused, unreachable)"
    );
    describe_counter!(
        "boxoffice_cluster_forwards_received_total",
        "Forwarded requests for events this node does not own (answered 503, never forwarded again)"
    );
    describe_counter!(
        "boxoffice_cluster_fenced_flushes_total",
        "Flushes refused by the fencing epoch: the event was claimed since this actor loaded it"
    );
    describe_counter!(
        "boxoffice_cluster_lease_failures_total",
        "Lease renewals that failed, by reason (error, timeout, superseded)"
    );
    describe_counter!(
        "boxoffice_cluster_leases_lost_total",
        "Leases that ran out before a renewal: the node stopped deciding and joined again"
    );
    describe_counter!(
        "boxoffice_cluster_joins_total",
        "Joins of the cluster (a new incarnation each)"
    );
    describe_histogram!(
        "boxoffice_cluster_lease_renewal_duration_seconds",
        Unit::Seconds,
        "One lease renewal (or join), round trip to PostgreSQL"
    );
    describe_gauge!(
        "boxoffice_cluster_lease_held",
        "1 while this node holds a good lease, 0 otherwise"
    );
    describe_gauge!(
        "boxoffice_cluster_node_info",
        "Always 1, labelled with this node's id (NODE_ID): joins a scrape target to its node"
    );

    describe_gauge!(
        "boxoffice_queue_waiting",
        "Buyers in waiting-room lines on this node, not yet let in (early arrivals included)"
    );
    describe_counter!(
        "boxoffice_queue_joins_total",
        "Buyers who joined a waiting room"
    );
    describe_counter!(
        "boxoffice_queue_admitted_total",
        "Buyers let in by a waiting room (given a pass)"
    );
    describe_counter!(
        "boxoffice_queue_passes_expired_total",
        "Passes that ran out unused (each gives its place to the next buyer)"
    );
    describe_histogram!(
        "boxoffice_queue_wait_seconds",
        Unit::Seconds,
        "How long a buyer waited in line, from joining (or the opening, for early arrivals) to being let in"
    );
    describe_gauge!(
        "boxoffice_queue_stream_subscribers",
        "Buyers following their place in line over Server-Sent Events on this node"
    );

    for result in ["answered", "refused", "unreachable"] {
        metrics::counter!("boxoffice_cluster_forwards_total", "result" => result).absolute(0);
    }
    for reason in ["error", "timeout", "superseded"] {
        metrics::counter!("boxoffice_cluster_lease_failures_total", "reason" => reason).absolute(0);
    }
    metrics::counter!("boxoffice_cluster_forwards_received_total", "result" => "not_owner")
        .absolute(0);
    for name in [
        "boxoffice_cluster_claims_total",
        "boxoffice_cluster_fenced_flushes_total",
        "boxoffice_cluster_leases_lost_total",
        "boxoffice_cluster_joins_total",
        "boxoffice_stream_messages_sent_total",
        "boxoffice_stream_changes_total",
        "boxoffice_stream_subscribers_refused_total",
        "boxoffice_event_actor_starts_total",
        "boxoffice_event_actor_restarts_total",
        "boxoffice_event_actor_stops_total",
        "boxoffice_flush_rows_total",
        "boxoffice_flush_failures_total",
        "boxoffice_holds_expired_total",
        "boxoffice_jobs_queued_total",
        "boxoffice_http_connections_timed_out_total",
        "boxoffice_http_requests_paced_total",
        "boxoffice_queue_joins_total",
        "boxoffice_queue_admitted_total",
        "boxoffice_queue_passes_expired_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    metrics::gauge!("boxoffice_http_connections").set(0.0);
    metrics::gauge!("boxoffice_stream_subscribers").set(0.0);
    // Moved by each event's actor by its own change: never set, or one would wipe the others.
    metrics::gauge!("boxoffice_queue_waiting").increment(0.0);
    metrics::gauge!("boxoffice_queue_stream_subscribers").increment(0.0);
    metrics::counter!("boxoffice_stream_subscribers_dropped_total", "reason" => "slow").absolute(0);
    for start in ["state", "resumed"] {
        metrics::counter!("boxoffice_stream_subscriptions_total", "start" => start).absolute(0);
    }
    for scope in ["node", "event"] {
        metrics::counter!("boxoffice_engine_shed_total", "scope" => scope).absolute(0);
    }
    for result in ["delivered", "retried", "failed"] {
        metrics::counter!("boxoffice_jobs_total", "result" => result).absolute(0);
    }
    metrics::counter!("boxoffice_cache_errors_total", "backend" => "redis").absolute(0);
    metrics::counter!("boxoffice_expiry_swept_rows_total").absolute(0);
    for name in [
        "boxoffice_event_actors",
        "boxoffice_engine_in_flight",
        "boxoffice_jobs_pending",
    ] {
        metrics::gauge!(name).set(0.0);
    }
    for state in ["available", "held", "booked"] {
        metrics::gauge!("boxoffice_inventory_seats", "state" => state).increment(0.0);
    }
}

/// Records every request's latency by method, matched route and status, and logs slow
/// ones, around `answer` (what the route answers). The route is the pattern
/// (`/events/{id}`), never the raw path, so label values stay bounded however many ids are
/// requested.
pub async fn track_requests<F, A>(request: Request, answer: F) -> Response
where
    F: FnOnce(Request) -> A,
    A: Future<Output = Response>,
{
    let started = Instant::now();
    let method = method_label(request.method());
    // The matched route lives as long as the router; kept as an Arc, not copied.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = answer(request).await;
    let elapsed = started.elapsed();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    record_request(method, route, response.status().as_u16(), elapsed);
    if elapsed > slow_request_threshold() {
        tracing::warn!(%method, %route, elapsed_ms = elapsed.as_millis() as u64, "slow request");
    }
    response
}

/// One series of the request metrics: a method, route and status's two handles.
struct RequestSeries {
    method: &'static str,
    status: u16,
    duration: metrics::Histogram,
    count: metrics::Counter,
}

/// The request metrics' handles by route, then method and status. With `metrics::counter!`
/// and labels made on every request, each request built six label strings and looked its
/// series up in the recorder twice (~1.5 % of the server's CPU at 30,000 holds/s,
/// bench/profile.sh); a series found here costs two atomic updates. Bounded as the labels
/// are: routes × methods × statuses answered.
static REQUEST_SERIES: std::sync::LazyLock<dashmap::DashMap<Box<str>, Vec<RequestSeries>>> =
    std::sync::LazyLock::new(|| {
        // Handles made before the recorder is installed would record nowhere, forever.
        metrics_handle();
        dashmap::DashMap::new()
    });

/// Records one request in `boxoffice_http_request_duration_seconds` and
/// `boxoffice_http_requests_total`.
fn record_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64();
    if let Some(series) = REQUEST_SERIES.get(route) {
        if let Some(s) = series
            .iter()
            .find(|s| s.method == method && s.status == status)
        {
            s.duration.record(seconds);
            s.count.increment(1);
            return;
        }
    }
    // The first request of its series: register it (rarely, so allocating is fine).
    let status_label = status.to_string();
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status_label),
    ];
    let series = RequestSeries {
        method,
        status,
        duration: metrics::histogram!("boxoffice_http_request_duration_seconds", &labels),
        count: metrics::counter!("boxoffice_http_requests_total", &labels),
    };
    series.duration.record(seconds);
    series.count.increment(1);
    let mut known = REQUEST_SERIES.entry(route.into()).or_default();
    // Two first requests of one series may race here; one entry is enough.
    if !known
        .iter()
        .any(|s| s.method == method && s.status == status)
    {
        known.push(series);
    }
}

/// The method as a label value: the standard ones by name, anything else as OTHER, so a
/// client inventing methods cannot create series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
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
