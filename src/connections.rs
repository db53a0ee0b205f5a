//! Accepting connections, with a bound on everything a client can hold open.
//!
//! `axum::serve` keeps any connection for as long as the client likes: one that sends half
//! a request header and then nothing stays open forever, and enough of them exhaust the
//! process's file descriptors so that real buyers cannot connect. This loop serves the same
//! router with these bounds:
//!
//! - **at most `max_connections` open**: at the bound the loop stops accepting, so further
//!   clients wait in the kernel's listen backlog — costing this process nothing — until a
//!   connection closes (what Tomcat's `maxConnections` and `acceptCount` do). Requests
//!   already admitted keep the CPU they need;
//! - **headers within `header_timeout`**, counted from when the connection is ready to
//!   read a request: an unfinished header *and* an idle keep-alive connection are closed
//!   when it runs out (hyper's `header_read_timeout`, which starts with each new request);
//! - **pacing after a 503**: a connection answered 503 with `Retry-After` (shed, shutting
//!   down, timed out) has its next request handled no sooner than that (at most
//!   `PACE_MAX_MS`, default 1 s, plus a random spread of up to half as long again). The
//!   503 itself goes out at once; a client that ignores Retry-After and asks again at once
//!   simply waits, its request costing nothing meanwhile. Without it,
//!   thousands of clients retrying in a closed loop turn every cycle the server saves by
//!   refusing cheaply into more refusals, and the admitted buyers starve;
//! - **a handle on its own connection for a handler** ([`ConnectionControl`]): a live
//!   stream whose client stopped reading cannot be ended by ending its body, because hyper
//!   only polls a body when the socket can take more; closing the socket is the only end.
//!   And a stream bounds its socket's send buffer: the kernel would otherwise queue up to
//!   `tcp_wmem`'s maximum (4 MiB here) for a client that does not read — 40 GB of kernel
//!   memory for ten thousand stalled seat maps, and seconds before the stream notices;
//! - **a body limit** (`max_body_bytes`): axum's `DefaultBodyLimit`, which the JSON
//!   extractor obeys with 413;
//! - **a graceful drain**: on shutdown the listener closes first, idle connections are
//!   closed, and requests in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::{Layer, ServiceExt};

/// When a connection's next request may be handled.
struct Pacing {
    /// The longest pause before the random spread (zero: never held).
    max: Duration,
    /// Not before this instant.
    until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Pacing {
    fn new(max: Duration) -> Pacing {
        Pacing {
            max,
            until: std::sync::Mutex::new(None),
        }
    }

    /// Waits until the connection may be served again.
    async fn wait_turn(&self) {
        let until = self.until.lock().expect("not poisoned").take();
        if let Some(until) = until {
            if until > tokio::time::Instant::now() {
                metrics::counter!("boxoffice_http_requests_paced_total").increment(1);
                tokio::time::sleep_until(until).await;
            }
        }
    }

    /// After a response: a 503 that says when to retry holds the next request until then.
    fn after(&self, response: &axum::response::Response) {
        if self.max.is_zero() || response.status() != axum::http::StatusCode::SERVICE_UNAVAILABLE {
            return;
        }
        let retry_after = response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(seconds) = retry_after {
            // Plus up to half as long again, at random. Clients shed together — an
            // on-sale's opening burst sheds thousands in one instant — would otherwise all
            // be let back in one instant a pause later, and again after it: a burst a
            // second that stalls the admitted requests' replies behind its parsing. Spread,
            // the overload p99 of granted holds fell from 113–181 to 50–76 ms and goodput
            // rose 0.66× → 0.75× nominal (bench/wrk.sh's overload, three runs each).
            // Clients that honour Retry-After never meet the pause at all.
            let pause = Duration::from_secs(seconds)
                .min(self.max)
                .mul_f64(rand::random_range(1.0..=1.5));
            *self.until.lock().expect("not poisoned") = Some(tokio::time::Instant::now() + pause);
        }
    }
}

/// The connection a request arrived on, as far as a handler may touch it. Every request
/// carries one in its extensions.
#[derive(Clone, Debug)]
pub struct ConnectionControl {
    closed: tokio_util::sync::CancellationToken,
    /// A send-buffer size for the socket to take at its next write (0: none asked).
    send_buffer_bytes: Arc<AtomicUsize>,
}

impl ConnectionControl {
    /// Drops the connection: its socket is closed at once, unsent data discarded.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Bounds what the kernel queues for this connection's client (`SO_SNDBUF`, which
    /// Linux doubles for its own bookkeeping), from the connection's next write on.
    pub fn limit_send_buffer(&self, bytes: usize) {
        self.send_buffer_bytes
            .store(bytes.max(1), Ordering::Relaxed);
    }
}

/// An accepted socket as hyper uses it, applying a send-buffer bound a handler asked for
/// (`ConnectionControl::limit_send_buffer`) before its next write. A wrapper rather than a
/// file descriptor kept aside: the socket stays owned by its connection alone.
struct Socket {
    stream: TcpStream,
    send_buffer_bytes: Arc<AtomicUsize>,
}

impl Socket {
    fn apply_send_buffer(&self) {
        let bytes = self.send_buffer_bytes.swap(0, Ordering::Relaxed);
        if bytes > 0 {
            if let Err(e) = socket2::SockRef::from(&self.stream).set_send_buffer_size(bytes) {
                tracing::debug!(error = %e, "cannot bound a connection's send buffer");
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.apply_send_buffer();
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.apply_send_buffer();
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The bounds on connections.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once; beyond it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Longest wait for a request's header, idle keep-alive time included.
    pub header_timeout: Duration,
    /// The longest pause of a connection's next request after a 503 with `Retry-After`
    /// (spread at random up to half as long again); zero turns pacing off (behind a proxy
    /// that shares its connections among clients).
    pub pace_max: Duration,
    /// The largest request body a handler reads (`MAX_BODY_BYTES`); a larger one is refused
    /// with 413 `PAYLOAD_TOO_LARGE`, whether Content-Length says so up front or a chunked
    /// body grows past it.
    pub max_body_bytes: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    assert!(limits.max_connections > 0, "at least one connection");
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // A slot first: at the bound, accepting waits, and the backlog holds the rest.
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => permit.expect("never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // accepted: wait a moment instead of spinning on the error.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        metrics::gauge!("boxoffice_http_connections").increment(1.0);
        // The body limit as axum's own layer, around the whole router once per connection
        // rather than around each route: on the routes, a layer is a boxed clone of the
        // route and a boxed future on every request.
        let router = DefaultBodyLimit::max(limits.max_body_bytes).layer(router.clone());
        let pacing = Arc::new(Pacing::new(limits.pace_max));
        let control = ConnectionControl {
            closed: tokio_util::sync::CancellationToken::new(),
            send_buffer_bytes: Arc::new(AtomicUsize::new(0)),
        };
        let closed = control.closed.clone();
        let socket = Socket {
            stream,
            send_buffer_bytes: control.send_buffer_bytes.clone(),
        };
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(control.clone());
            let (router, pacing) = (router.clone(), pacing.clone());
            // A request another node forwarded comes over that node's pooled connection,
            // which carries other buyers' requests too: never held.
            let paced = !request
                .headers()
                .contains_key(crate::cluster::headers::FORWARDED_BY);
            async move {
                if paced {
                    pacing.wait_turn().await;
                }
                let response = router.oneshot(request).await.unwrap_or_else(|e| match e {});
                if paced {
                    pacing.after(&response);
                }
                Ok::<_, Infallible>(response)
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(socket), service));
        tokio::spawn(async move {
            let ended = tokio::select! {
                ended = connection => ended,
                // Dropping the connection closes its socket.
                () = closed.cancelled() => Ok(()),
            };
            if let Err(e) = ended {
                if e.is_timeout() {
                    metrics::counter!("boxoffice_http_connections_timed_out_total").increment(1);
                }
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            metrics::gauge!("boxoffice_http_connections").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, StatusCode};
    use axum::response::{IntoResponse, Response};

    fn answer(status: StatusCode, retry_after: Option<&str>) -> Response {
        let mut response = status.into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.parse().unwrap());
        }
        response
    }

    async fn waited(pacing: &Pacing) -> Duration {
        let started = tokio::time::Instant::now();
        pacing.wait_turn().await;
        started.elapsed()
    }

    /// Held for the pause and up to half as long again (the paused clock moves exactly).
    fn spread(held: Duration, pause: Duration) -> bool {
        held >= pause && held <= pause.mul_f64(1.5) + Duration::from_millis(1)
    }

    #[tokio::test(start_paused = true)]
    async fn a_503_with_retry_after_holds_the_connections_next_request_until_then() {
        let second = Duration::from_secs(1);
        let pacing = Pacing::new(second);
        assert_eq!(waited(&pacing).await, Duration::ZERO);
        pacing.after(&answer(StatusCode::SERVICE_UNAVAILABLE, Some("1")));
        let held = waited(&pacing).await;
        assert!(spread(held, second), "{held:?}");
        // Once served, the next request is not held again.
        assert_eq!(waited(&pacing).await, Duration::ZERO);
        // Held at most its maximum (and its spread), whatever Retry-After says; never with
        // a maximum of 0.
        pacing.after(&answer(StatusCode::SERVICE_UNAVAILABLE, Some("120")));
        let held = waited(&pacing).await;
        assert!(spread(held, second), "{held:?}");
        let off = Pacing::new(Duration::ZERO);
        off.after(&answer(StatusCode::SERVICE_UNAVAILABLE, Some("1")));
        assert_eq!(waited(&off).await, Duration::ZERO);
        // Only a 503 that says when to retry holds anything: not a 429 (its Retry-After
        // is the login lock-out), not a 503 without one, not a success.
        for response in [
            answer(StatusCode::TOO_MANY_REQUESTS, Some("1")),
            answer(StatusCode::SERVICE_UNAVAILABLE, None),
            answer(StatusCode::CREATED, None),
        ] {
            pacing.after(&response);
            assert_eq!(waited(&pacing).await, Duration::ZERO);
        }
    }

    /// Connections shed in the same instant are let back at different instants: a burst of
    /// sheds does not come back as one burst a second later.
    #[tokio::test(start_paused = true)]
    async fn connections_shed_together_are_let_back_spread_out() {
        let second = Duration::from_secs(1);
        let mut held = Vec::new();
        for _ in 0..100 {
            let pacing = Pacing::new(second);
            pacing.after(&answer(StatusCode::SERVICE_UNAVAILABLE, Some("1")));
            held.push(waited(&pacing).await);
        }
        assert!(held.iter().all(|&h| spread(h, second)), "{held:?}");
        let early = held.iter().filter(|&&h| h < second.mul_f64(1.25)).count();
        // Uniform over half a second: each half holds 50 ± 30 of the 100 (6 sd: a false
        // alarm once in a billion runs).
        assert!(
            (20..=80).contains(&early),
            "{early} of 100 in the first half: {held:?}"
        );
    }
}
