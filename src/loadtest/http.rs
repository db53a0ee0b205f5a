//! The load generator's HTTP client: plain HTTP/1.1 connections driven by hyper directly,
//! kept in a small pool. The generator shares the machine with the server it measures, so
//! every microsecond it spends is taken from the server; this costs far less per request than
//! a general-purpose client (no URL parsing, redirect policy or header maps to rebuild).

use std::net::SocketAddr;
use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long an idle connection is reused: well inside the server's keep-alive limit
/// (`HEADER_TIMEOUT_MS`, 5 s by default), so that the generator never sends on a
/// connection the server is closing at that instant — a failure that would be the
/// generator's, not the server's. Scenarios that keep every connection busy never reach it.
const IDLE_REUSE_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Connections to one server.
pub struct Http {
    addr: SocketAddr,
    host: HeaderValue,
    /// Idle connections, ready for reuse, and since when they are idle.
    idle: Mutex<Vec<(SendRequest<Full<Bytes>>, std::time::Instant)>>,
}

impl Http {
    /// A client for `http://host:port` (loopback addresses in this project).
    pub fn new(target: &str) -> anyhow::Result<Http> {
        let authority = target
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("the target must be http://host:port"))?
            .trim_end_matches('/');
        let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(authority)?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {authority}"))?;
        Ok(Http {
            addr,
            host: HeaderValue::from_str(authority)?,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Option<SendRequest<Full<Bytes>>> {
        let stream = TcpStream::connect(self.addr).await.ok()?;
        stream.set_nodelay(true).ok()?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Some(sender)
    }

    /// Sends a request; returns the status and body, or `None` when the connection failed.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<Bytes>,
    ) -> Option<(u16, Bytes)> {
        let pooled = {
            let mut idle = self.idle.lock().expect("not poisoned");
            // The most recently used first. If it has idled too long, so have all the
            // others (they were pushed before it): drop them all.
            match idle.pop() {
                Some((_, since)) if since.elapsed() >= IDLE_REUSE_MAX => {
                    idle.clear();
                    None
                }
                Some((s, _)) if s.is_closed() => None,
                other => other,
            }
        };
        let mut sender = match pooled {
            Some((s, _)) => s,
            None => self.connect().await?,
        };
        sender.ready().await.ok()?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.clone());
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let request = match body {
            Some(b) => request
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(b)),
            None => request.body(Full::new(Bytes::new())),
        }
        .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        // A connection told to retry later is one whose next request the server holds
        // until then (connections.rs). The generator's requests are independent buyers, not
        // that one retrying, so it is closed rather than reused.
        if status != 503 {
            let now = std::time::Instant::now();
            self.idle.lock().expect("not poisoned").push((sender, now));
        }
        Some((status, bytes))
    }
}
