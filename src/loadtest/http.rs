//! The load generator's HTTP client: plain HTTP/1.1 over kept-alive TCP connections, with
//! the request written as one buffer and the answer parsed in place (`httparse`), the way wrk
//! does it. The generator shares the machine with the server it measures, so every
//! microsecond it spends is taken from the server. A general-purpose client costs far more
//! per request: reqwest rebuilds URLs, header maps and redirect state (about 35 % of
//! throughput when it drove these runs), and hyper's client runs each connection as its own
//! task behind a channel — two tasks and a hand-off between them for every request.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long an idle connection is reused: well inside the server's keep-alive limit
/// (`HEADER_TIMEOUT_MS`, 5 s by default), so that the generator never sends on a
/// connection the server is closing at that instant — a failure that would be the
/// generator's, not the server's. Scenarios that keep every connection busy never reach it.
const IDLE_REUSE_MAX: Duration = Duration::from_secs(2);

/// The largest answer head (status line and headers) read; the server's are a few hundred
/// bytes.
const HEAD_MAX_BYTES: usize = 16 * 1024;

/// The largest answer body read: the generator's pages and holds are a few KiB.
const BODY_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Headers parsed per answer; the server sends about ten.
const HEADERS_MAX: usize = 32;

/// How long one exchange may take before it counts as failed (and its connection is
/// dropped): a server that stops answering ends the run with errors instead of hanging it.
/// Far above any answer a loaded server gives (its own limit, `REQUEST_TIMEOUT_MS`, is
/// lower), so it never cuts a slow answer short.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections to one server.
pub struct Http {
    addr: SocketAddr,
    /// `host:port`, sent as the `Host` header.
    authority: String,
    /// Idle connections, ready for reuse, and since when they are idle.
    idle: Mutex<Vec<(Conn, Instant)>>,
    /// A connection answered 503 is used again (see [`Http::reusing_after_shed`]).
    reuse_after_shed: bool,
}

/// One kept-alive connection and what is left over of its reads.
struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed (an answer's head and body arrive in any split).
    read: BytesMut,
    /// The request being written, reused from one request to the next.
    write: Vec<u8>,
}

/// What the generator reads of an answer.
struct Answer {
    status: u16,
    body: Bytes,
    /// The server said `Connection: close`.
    closing: bool,
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
            authority: authority.to_string(),
            idle: Mutex::new(Vec::new()),
            reuse_after_shed: false,
        })
    }

    /// Connections that carry independent buyers' requests one after another, as a
    /// proxy's backend connections do: one answered 503 goes on to the next buyer instead of
    /// being closed. The server must then run with `PACE_MAX_MS=0`, as behind a proxy;
    /// otherwise it holds each such connection's next request until its `Retry-After`.
    ///
    /// The open loop needs this to offer more than the server takes: closing a connection
    /// per refusal costs both sides a TCP handshake and an accept for every shed request,
    /// which on shared cores took more CPU than the requests themselves.
    pub fn reusing_after_shed(mut self) -> Http {
        self.reuse_after_shed = true;
        self
    }

    /// Opens `count` connections ahead of the run, so that the first requests are not
    /// timed through a burst of handshakes; returns how many opened.
    pub async fn open(&self, count: usize) -> usize {
        use futures::StreamExt;
        // A few hundred handshakes at a time: within any listen backlog.
        let opened: Vec<Conn> = futures::stream::iter((0..count).map(|_| self.connect()))
            .buffer_unordered(256)
            .filter_map(std::future::ready)
            .collect()
            .await;
        let n = opened.len();
        let now = Instant::now();
        self.idle
            .lock()
            .expect("not poisoned")
            .extend(opened.into_iter().map(|conn| (conn, now)));
        n
    }

    async fn connect(&self) -> Option<Conn> {
        let stream = TcpStream::connect(self.addr).await.ok()?;
        stream.set_nodelay(true).ok()?;
        Some(Conn {
            stream,
            read: BytesMut::with_capacity(4096),
            write: Vec::with_capacity(1024),
        })
    }

    /// An idle connection to reuse, if there is one fresh enough.
    fn pooled(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().expect("not poisoned");
        // The most recently used first. If it has idled too long, so have all the others
        // (they were pushed before it): drop them all.
        match idle.pop() {
            Some((_, since)) if since.elapsed() >= IDLE_REUSE_MAX => {
                idle.clear();
                None
            }
            other => other.map(|(conn, _)| conn),
        }
    }

    /// Sends a request; returns the status and body, or `None` when the connection failed.
    ///
    /// A pooled connection the server closed while it idled ends (or is reset) before any
    /// byte of the answer; that request is sent once more on a new connection. The server
    /// closes an idle connection without reading what arrives on it, so nothing is decided
    /// twice.
    pub async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: Option<Bytes>,
    ) -> Option<(u16, Bytes)> {
        let body = body.unwrap_or_default();
        let (mut conn, reused) = match self.pooled() {
            Some(conn) => (conn, true),
            None => (self.connect().await?, false),
        };
        let mut answer = conn
            .exchange(&self.authority, &method, path, token, key, &body)
            .await;
        let closed_unanswered = matches!(&answer, Err(e) if closed(e)) && conn.read.is_empty();
        if reused && closed_unanswered {
            conn = self.connect().await?;
            answer = conn
                .exchange(&self.authority, &method, path, token, key, &body)
                .await;
        }
        let answer = answer.ok()?;
        // A connection told to retry later is one whose next request the server holds
        // until then (connections.rs). The generator's requests are independent buyers, not
        // that one retrying, so it is closed rather than reused — unless its connections
        // are shared the way a proxy's are (`reusing_after_shed`).
        if (answer.status != 503 || self.reuse_after_shed) && !answer.closing {
            let now = Instant::now();
            self.idle.lock().expect("not poisoned").push((conn, now));
        }
        Some((answer.status, answer.body))
    }
}

impl Conn {
    /// Writes one request and reads its answer, failing after [`EXCHANGE_TIMEOUT`].
    async fn exchange(
        &mut self,
        authority: &str,
        method: &hyper::Method,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &[u8],
    ) -> io::Result<Answer> {
        let w = &mut self.write;
        w.clear();
        for part in [method.as_str(), " ", path, " HTTP/1.1\r\nhost: ", authority] {
            w.extend_from_slice(part.as_bytes());
        }
        if let Some(token) = token {
            w.extend_from_slice(b"\r\nauthorization: Bearer ");
            w.extend_from_slice(token.as_bytes());
        }
        if let Some(key) = key {
            w.extend_from_slice(b"\r\nidempotency-key: ");
            w.extend_from_slice(key.as_bytes());
        }
        if !body.is_empty() {
            w.extend_from_slice(b"\r\ncontent-type: application/json");
        }
        if !body.is_empty() || method == hyper::Method::POST {
            w.extend_from_slice(b"\r\ncontent-length: ");
            w.extend_from_slice(body.len().to_string().as_bytes());
        }
        w.extend_from_slice(b"\r\n\r\n");
        w.extend_from_slice(body);
        let round_trip = async {
            self.stream.write_all(&self.write).await?;
            self.read_answer().await
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT, round_trip)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    /// Reads one answer: its head, then a `Content-Length` or chunked body.
    async fn read_answer(&mut self) -> io::Result<Answer> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.read).map_err(invalid)? {
                httparse::Status::Complete(head_len) => {
                    let status = parsed.code.unwrap_or(0);
                    let (mut length, mut chunked, mut closing) = (None, false, false);
                    for h in parsed.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<usize>().ok());
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            closing = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    self.read.advance(head_len);
                    let body = if chunked {
                        self.read_chunked().await?
                    } else {
                        let length = length.unwrap_or(0);
                        if length > BODY_MAX_BYTES {
                            return Err(invalid("answer body too large"));
                        }
                        self.fill(length).await?;
                        self.read.split_to(length).freeze()
                    };
                    return Ok(Answer {
                        status,
                        body,
                        closing,
                    });
                }
                httparse::Status::Partial if self.read.len() >= HEAD_MAX_BYTES => {
                    return Err(invalid("answer head too large"));
                }
                httparse::Status::Partial => self.read_more().await?,
            }
        }
    }

    /// A chunked body, its chunks joined.
    async fn read_chunked(&mut self) -> io::Result<Bytes> {
        let mut body = BytesMut::new();
        loop {
            let (line_len, size) = loop {
                match httparse::parse_chunk_size(&self.read).map_err(invalid)? {
                    httparse::Status::Complete((line, size)) => break (line, size as usize),
                    httparse::Status::Partial => self.read_more().await?,
                }
            };
            if body.len() + size > BODY_MAX_BYTES {
                return Err(invalid("answer body too large"));
            }
            self.read.advance(line_len);
            // The chunk and its closing CRLF (the last, empty chunk has no trailers here).
            self.fill(size + 2).await?;
            body.extend_from_slice(&self.read[..size]);
            self.read.advance(size + 2);
            if size == 0 {
                return Ok(body.freeze());
            }
        }
    }

    /// Reads until at least `len` bytes are buffered.
    async fn fill(&mut self, len: usize) -> io::Result<()> {
        while self.read.len() < len {
            self.read_more().await?;
        }
        Ok(())
    }

    async fn read_more(&mut self) -> io::Result<()> {
        self.read.reserve(4096);
        if self.stream.read_buf(&mut self.read).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// The peer had closed the connection (ended or reset it, or it was gone when written to).
fn closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    //! The client's framing against a scripted peer on a real socket: answers split across
    //! reads, chunked bodies, and what happens to a connection after a 503. (The real server
    //! is driven by the load generator's integration tests.)

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A peer that answers the requests on each connection it accepts with the next of
    /// `answers` (each sent in pieces of `piece` bytes); counts the connections.
    async fn peer(answers: Vec<&'static str>, piece: usize) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let (count, answers) = (accepted.clone(), Arc::new(std::sync::Mutex::new(answers)));
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let answers = answers.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut seen = Vec::new();
                    loop {
                        // One request is whole once its head has ended and its declared
                        // body arrived; the tests send bodies of at most a few bytes.
                        let n = socket.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&seen).into_owned();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let length = text[..end]
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |v| v.parse::<usize>().unwrap());
                        if seen.len() < end + 4 + length {
                            continue;
                        }
                        seen.clear();
                        let answer = answers.lock().unwrap().remove(0);
                        for part in answer.as_bytes().chunks(piece) {
                            socket.write_all(part).await.unwrap();
                            socket.flush().await.unwrap();
                            tokio::task::yield_now().await;
                        }
                    }
                });
            }
        });
        (target, accepted)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"data\":{}}";
    const SHED: &str =
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 2\r\n\r\n{}";

    #[tokio::test]
    async fn answers_split_in_any_pieces_and_chunked_bodies_are_read_whole() {
        let chunked = "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n\
                       4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let (target, accepted) = peer(vec![OK, chunked, OK], 3).await;
        let http = Http::new(&target).unwrap();
        let body = Some(Bytes::from_static(b"{}"));
        let first = http
            .send(hyper::Method::POST, "/x", Some("t"), Some("k"), body)
            .await;
        assert_eq!(first, Some((200, Bytes::from_static(b"{\"data\":{}}"))));
        let second = http.send(hyper::Method::GET, "/y", None, None, None).await;
        assert_eq!(second, Some((201, Bytes::from_static(b"{\"a\":1}"))));
        let third = http.send(hyper::Method::GET, "/z", None, None, None).await;
        assert_eq!(third.map(|(status, _)| status), Some(200));
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one kept-alive connection"
        );
    }

    /// A 503, then a 200, through `http`; returns how many connections the peer accepted.
    async fn connections_for_a_shed_then_an_answer(http: Http, accepted: &AtomicUsize) -> usize {
        let shed = http.send(hyper::Method::GET, "/", None, None, None).await;
        assert_eq!(shed.map(|(status, _)| status), Some(503));
        let next = http.send(hyper::Method::GET, "/", None, None, None).await;
        assert_eq!(next.map(|(status, _)| status), Some(200));
        accepted.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_shed_connection_is_closed_unless_connections_are_shared() {
        let (target, accepted) = peer(vec![SHED, OK], 64).await;
        let http = Http::new(&target).unwrap();
        let connections = connections_for_a_shed_then_an_answer(http, &accepted).await;
        assert_eq!(connections, 2, "a new connection after the 503");

        let (target, accepted) = peer(vec![SHED, OK], 64).await;
        let http = Http::new(&target).unwrap().reusing_after_shed();
        assert_eq!(http.open(1).await, 1);
        let connections = connections_for_a_shed_then_an_answer(http, &accepted).await;
        assert_eq!(connections, 1, "the same connection, shared");
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_never_answers_fails_the_request_instead_of_hanging_the_run() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("http://{}", listener.local_addr().unwrap());
        // Reads everything, answers nothing, keeps the connection open.
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            while socket.read(&mut buf).await.unwrap_or(0) > 0 {}
        });
        let http = Http::new(&target).unwrap();
        let started = tokio::time::Instant::now();
        let answer = http.send(hyper::Method::GET, "/", None, None, None).await;
        assert_eq!(answer, None);
        assert!(started.elapsed() >= EXCHANGE_TIMEOUT);
    }

    #[tokio::test]
    async fn a_pooled_connection_the_server_closed_is_replaced_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("http://{}", listener.local_addr().unwrap());
        let http = Http::new(&target).unwrap();
        assert_eq!(http.open(1).await, 1);
        // The server closes the pooled connection while it idles, then answers the next one.
        let (first, _) = listener.accept().await.unwrap();
        drop(first);
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /again HTTP/1.1\r\n"));
            socket.write_all(OK.as_bytes()).await.unwrap();
        });
        let answer = http
            .send(hyper::Method::GET, "/again", None, None, None)
            .await;
        assert_eq!(answer.map(|(status, _)| status), Some(200));
        server.await.unwrap();
    }
}
