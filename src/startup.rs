//! Building and running the application: the piece `main` and the tests share.
//!
//! `Application::build` binds the listener (port 0 picks a free one, which tests use) and
//! returns before serving, so the caller learns the port first. `run_until_stopped` serves
//! until the shutdown future completes, then drains: stop accepting, finish in-flight
//! requests, flush every event's write-behind, close the pool.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use boxoffice_engine::Engine;
use futures::FutureExt;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::auth::jwt::Keys;
use crate::auth::password::Passwords;
use crate::auth::throttle::LoginThrottle;
use crate::cache::Cache;
use crate::config::Settings;
use crate::error::{ApiError, NotFound};
use crate::state::{AppContext, AppState};
use crate::{
    auth, bookings, connections, db, discounts, events, health, openapi, outbox, queue,
    reservations, sections, stream, telemetry, venues, web,
};

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    /// Where the background-job worker delivers.
    delivery: outbox::Delivery,
}

impl Application {
    /// Prepares the database (create, migrate), starts the engine and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        // Install the recorder before anything records: metrics recorded earlier are lost.
        telemetry::metrics_handle();
        metrics::gauge!("boxoffice_cluster_node_info", "node" => settings.engine.cluster.node_id.clone())
            .set(1.0);
        let pool = db::prepare(&settings).await?;
        let engine = Engine::start(pool.clone(), settings.engine.clone()).await?;
        let redis = match &settings.redis_url {
            Some(url) => Some(
                redis::Client::open(url.expose())
                    .map_err(|e| anyhow::anyhow!("REDIS_URL is not a valid Redis URL: {e}"))?,
            ),
            None => None,
        };
        let delivery = outbox::Delivery::from_settings(&settings)?;
        telemetry::set_slow_request_threshold(Duration::from_millis(settings.slow_request_ms));
        let listener = listen(settings.bind_addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind_addr))?;
        let stopping = tokio_util::sync::CancellationToken::new();
        let state = AppState::new(AppContext {
            cache: Arc::new(Cache::new(redis, settings.cache_prefix.clone())),
            keys: Keys::new(settings.jwt_secret.expose(), settings.jwt_ttl_seconds)?,
            passwords: Passwords::new(
                settings.password_hash_concurrency,
                Duration::from_secs(5),
                Duration::from_secs(settings.login_cache_seconds),
            ),
            login_throttle: Arc::new(LoginThrottle::new(
                pool.clone(),
                Duration::from_secs(settings.login_window_seconds),
                settings.login_max_failures_per_account,
                settings.login_max_failures_per_address,
            )),
            pool,
            engine,
            streams: crate::stream::subscribers::Subscribers::start(
                settings.stream_max_subscribers,
                settings.stream_buffer_messages,
                stopping.clone(),
            ),
            stopping,
            peers: crate::cluster::peer_client(Duration::from_millis(settings.header_timeout_ms))?,
            settings: Arc::new(settings),
        });
        // Invalidations reach the other nodes' in-process caches through PostgreSQL.
        state.cache.share_with(
            state.pool.clone(),
            state.engine.node_id().to_string(),
            state.stopping.clone(),
        );
        Ok(Application {
            router: router(state.clone()),
            listener,
            state,
            delivery,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The engine, for tests that drive it directly.
    pub fn engine(&self) -> Engine {
        self.state.engine.clone()
    }

    /// Serves until `shutdown` completes, then drains and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            listener,
            router,
            state,
            delivery,
        } = self;
        tracing::info!(addr = %listener.local_addr()?, "boxoffice is serving");
        let (stop_jobs, jobs_stopped) = tokio::sync::watch::channel(false);
        let jobs = state
            .settings
            .outbox_worker
            .then(|| tokio::spawn(outbox::run(state.pool.clone(), delivery, jobs_stopped)));
        // Lapsed holds' rows, written down as EXPIRED a bounded number at a time.
        let sweep = (state.settings.expiry_sweep_interval_seconds > 0).then(|| {
            let limits = boxoffice_engine::sweep::SweepLimits {
                rows_per_statement: i64::from(state.settings.expiry_sweep_rows.max(1)),
                round_interval: Duration::from_secs(state.settings.expiry_sweep_interval_seconds),
                ..Default::default()
            };
            tokio::spawn(boxoffice_engine::sweep::run(
                state.pool.clone(),
                limits,
                stop_jobs.subscribe(),
            ))
        });
        let limits = connections::ConnectionLimits {
            max_connections: state.settings.max_connections,
            header_timeout: Duration::from_millis(state.settings.header_timeout_ms),
            pace_max: Duration::from_millis(state.settings.pace_max_ms),
            max_body_bytes: state.settings.max_body_bytes,
        };
        // Streams never end by themselves: shutdown ends them, so the drain can finish.
        let stopping = state.stopping.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.cancel();
        };
        connections::serve(listener, router, limits, shutdown).await;
        tracing::info!("stopped accepting; flushing the engine");
        state.engine.shutdown().await;
        let _ = stop_jobs.send(true);
        for job in [jobs, sweep].into_iter().flatten() {
            let _ = job.await;
        }
        state.pool.close().await;
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Connections the kernel may hold completed but not yet accepted. tokio's `bind` asks for
/// 1,024: when an on-sale opens, thousands of browsers connect within the same second, and
/// the ones past the backlog have their SYN dropped and retry after 1, 3, 7 … seconds —
/// seconds of latency the server never sees. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 16_384;

/// Binds the listener with [`LISTEN_BACKLOG`].
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted server may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Every route, with the layers every route shares.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/health/cluster", get(health::cluster))
        .route("/metrics", get(health::metrics))
        .merge(auth::routes())
        .merge(venues::routes())
        .merge(events::routes())
        .merge(sections::routes())
        .merge(stream::routes())
        .merge(queue::routes())
        .merge(web::routes())
        .merge(reservations::routes())
        .merge(bookings::routes())
        .merge(discounts::routes())
        .merge(openapi::routes())
        .fallback(|method: axum::http::Method| async move {
            // Unmatched paths are counted under one route value, never their raw path.
            metrics::counter!("boxoffice_http_requests_total",
                "method" => telemetry::method_label(&method), "route" => "unmatched", "status" => "404")
            .increment(1);
            ApiError::not_found(NotFound::Route)
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "method not allowed on this route",
            )
        })
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            around_route,
        ))
        .with_state(state)
}

/// Around every matched route, outermost first: the request's span, the request metrics
/// (`telemetry::track_requests`), the time limit, a panic turned into a 500, and
/// forwarding a request for an event another node owns to that node, once
/// (`cluster::forward_to_owner`) — so every answer below, whichever step gives it (a body
/// too large, a request too slow, a panic, the owner's answer), is bounded, counted by its
/// route and speaks the API's error body.
///
/// One layer rather than five: each layer on the routes costs every request a boxed clone
/// of the route and another boxed future, and tower-http's trace layer also wraps the
/// response body and reads the clock for each of its frames. Done here as plain code, the
/// same steps cost a hold about 2 µs less of the server's CPU (README, "Where a hold's time
/// goes"). The body limit is set once per connection (`connections::serve`).
async fn around_route(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // At DEBUG, as tower-http's `TraceLayer` made it; when DEBUG is off (the default),
    // `debug_span!` is one cached check and the span is a no-op.
    let span = tracing::debug_span!("request", method = %request.method(), uri = %request.uri());
    telemetry::track_requests(request, |request| async move {
        let limit = Duration::from_millis(state.settings.request_timeout_ms);
        let answer = crate::cluster::forward_to_owner(axum::extract::State(state), request, next);
        within_time_limit(limit, panics_answered(answer)).await
    })
    .instrument(span)
    .await
}

/// Answers 500 `INTERNAL` when `answer` panics, like any other failure, instead of
/// dropping the connection; the panic's message goes to the log through the panic hook.
async fn panics_answered(
    answer: impl Future<Output = axum::response::Response>,
) -> axum::response::Response {
    std::panic::AssertUnwindSafe(answer)
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            ApiError::Internal(anyhow::anyhow!("a handler panicked")).into_response()
        })
}

/// Answers 503 `TIMEOUT` (with `Retry-After`) when a request runs longer than
/// `REQUEST_TIMEOUT_MS`. The handler is dropped: whatever it had asked the engine stays
/// decided or not as the engine decides, so the client retries with its Idempotency-Key.
async fn within_time_limit(
    limit: Duration,
    answer: impl Future<Output = axum::response::Response>,
) -> axum::response::Response {
    match tokio::time::timeout(limit, answer).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable {
            code: "TIMEOUT",
            message: format!(
                "the request took longer than {} ms; retry with the same Idempotency-Key",
                limit.as_millis()
            ),
        }
        .into_response(),
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_the_error_body() {
        let response = panics_answered(async {
            if std::hint::black_box(true) {
                panic!("the handler failed");
            }
            StatusCode::OK.into_response()
        })
        .await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "INTERNAL", "{body}");
    }

    #[tokio::test]
    async fn an_answer_that_does_not_panic_passes_through() {
        let response = panics_answered(async { StatusCode::CREATED.into_response() }).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}
