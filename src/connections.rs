//! Accepting connections, with a bound on everything a client can hold open.
//!
//! `axum::serve` keeps any connection for as long as the client likes: one that sends half
//! a request header and then nothing stays open forever, and enough of them exhaust the
//! process's file descriptors so that real buyers cannot connect. This loop serves the same
//! router with three bounds:
//!
//! - **at most `max_connections` open**: at the bound the loop stops accepting, so further
//!   clients wait in the kernel's listen backlog — costing this process nothing — until a
//!   connection closes (what Tomcat's `maxConnections` and `acceptCount` do). Requests
//!   already admitted keep the CPU they need;
//! - **headers within `header_timeout`**, counted from when the connection is ready to
//!   read a request: an unfinished header *and* an idle keep-alive connection are closed
//!   when it runs out (hyper's `header_read_timeout`, which starts with each new request);
//! - **a graceful drain**: on shutdown the listener closes first, idle connections are
//!   closed, and requests in flight finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The bounds on connections.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once; beyond it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Longest wait for a request's header, idle keep-alive time included.
    pub header_timeout: Duration,
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
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                Ok::<_, Infallible>(router.oneshot(request).await.unwrap_or_else(|e| match e {}))
            }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
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
