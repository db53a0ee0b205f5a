//! The real binary as a child process, a TCP proxy that can cut PostgreSQL off, buyers with
//! minted tokens, and outcome bookkeeping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use boxoffice::auth::jwt::{Keys, Role};
use boxoffice_engine::testdb::TestDb;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

pub const JWT_SECRET: &str = "reliability-secret-reliability-secret";

/// A client as a well-behaved buyer's would be: it retires a pooled connection after 1 s
/// idle, well inside the server's `HEADER_TIMEOUT_MS` (5 s). With reqwest's default (90 s)
/// a connection opened during a test's setup can sit idle for the server's five seconds
/// on a slow machine and be handed to the next request at the instant the server closes
/// it; that request then fails with `IncompleteMessage` — the client's fault, not the
/// server's (it is HTTP/1.1's keep-alive race, which only the side that keeps a
/// connection longer can avoid).
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(1))
}

/// [`client_builder`], built.
pub fn client() -> reqwest::Client {
    client_builder().build().expect("client builds")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `boxoffice` binary, serving on a port of its own.
pub struct Server {
    child: Child,
    pub port: u16,
    /// Everything it printed.
    pub output: Arc<Mutex<String>>,
}

impl Server {
    pub async fn start(database_url: &str, port: u16) -> Server {
        Server::start_with(database_url, port, &[]).await
    }

    /// Starts it with some more environment variables.
    pub async fn start_with(database_url: &str, port: u16, env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
            .arg("serve")
            .envs(env.iter().copied())
            .env("DATABASE_URL", database_url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("JWT_SECRET", JWT_SECRET)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("OUTBOX_WORKER", "false")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the boxoffice binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let server = Server {
            child,
            port,
            output,
        };
        let client = client();
        for _ in 0..150 {
            if let Ok(r) = client.get(server.url("/health/ready")).send().await {
                if r.status() == 200 {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the server did not become ready:\n{}",
            server.output.lock().unwrap()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its process id.
    #[allow(dead_code)] // used by the cluster tests, which share this file
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGKILL: a crash, with no chance to flush.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then the exit status (None if it did not exit within `limit`).
    pub async fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().expect("running");
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        tokio::time::timeout(limit, self.child.wait())
            .await
            .ok()
            .map(|s| s.unwrap())
    }
}

/// Accounts and an event on sale, made straight in the database and over the API.
pub struct Scene {
    pub event_id: i64,
    pub section_id: i64,
    pub buyers: Vec<(i64, String)>,
}

/// `buyers` buyers (each with a token) and an event with one GENERAL section of
/// `capacity`, created through `server`.
pub async fn scene(
    db: &TestDb,
    base_url: &str,
    buyers: usize,
    capacity: u32,
    max_per_user: u32,
) -> Scene {
    let keys = Keys::new(JWT_SECRET, 3600).unwrap();
    let organizer: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash, role) VALUES ('org@example.com', 'x', 'ORGANIZER') RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash) SELECT 'b' || g || '@example.com', 'x' FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(buyers as i32)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let org_token = keys.issue(organizer, Role::Organizer).unwrap();
    let client = client();
    let event: serde_json::Value = client
        .post(format!("{base_url}/events"))
        .bearer_auth(&org_token)
        .json(&serde_json::json!({"eventName": "Crash night", "eventDate": "2030-01-01T00:00:00Z",
                                  "saleStartTime": "2020-01-01T00:00:00Z", "maxTicketsPerUser": max_per_user}))
        .send().await.unwrap().json().await.unwrap();
    let event_id = event["data"]["id"].as_i64().unwrap();
    let section: serde_json::Value = client
        .post(format!("{base_url}/events/{event_id}/sections"))
        .bearer_auth(&org_token)
        .json(&serde_json::json!({"name": "Floor", "type": "GENERAL", "capacity": capacity, "priceCents": 1000}))
        .send().await.unwrap().json().await.unwrap();
    let section_id = section["data"]["id"].as_i64().unwrap();
    let opened = client
        .patch(format!("{base_url}/events/{event_id}"))
        .bearer_auth(&org_token)
        .json(&serde_json::json!({"status": "ON_SALE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    Scene {
        event_id,
        section_id,
        buyers: ids
            .into_iter()
            .map(|id| (id, keys.issue(id, Role::Customer).unwrap()))
            .collect(),
    }
}

/// How a request ended, from the client's side.
#[derive(Clone, Debug)]
pub enum Seen {
    /// 2xx, with the hold id or booking reference.
    Ok(String),
    /// A 4xx refusal: nothing happened.
    Refused(u16),
    /// Timed out, connection broken, or 503: it may or may not have happened.
    Unknown,
}

/// Sends a request and classifies its end.
pub async fn attempt(request: reqwest::RequestBuilder) -> Seen {
    match request.timeout(Duration::from_secs(20)).send().await {
        Err(_) => Seen::Unknown,
        Ok(r) => {
            let status = r.status().as_u16();
            match status {
                200..=299 => {
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    let handle = body["data"]["id"]
                        .as_i64()
                        .map(|i| i.to_string())
                        .or_else(|| body["data"]["bookingReference"].as_str().map(String::from))
                        .unwrap_or_default();
                    Seen::Ok(handle)
                }
                503 => Seen::Unknown,
                400..=499 => Seen::Refused(status),
                other => panic!("a server error is never a valid answer here: {other}"),
            }
        }
    }
}

/// A TCP proxy in front of PostgreSQL that can cut every connection and refuse new ones,
/// as a network partition or a database restart would.
pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    connections: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let (d, c) = (down.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(inbound); // refused: the database is "unreachable"
                    continue;
                }
                c.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy {
            port,
            down,
            connections,
        }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.connections.lock().unwrap().abort_all();
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

/// The application in this process (so that its settings can be bent for a test), serving
/// on a free port until stopped.
pub struct InProcess {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcess {
    /// Starts it on `database_url`, with `tweak` applied to the test settings.
    pub async fn start(
        database_url: String,
        tweak: impl FnOnce(&mut boxoffice::config::Settings),
    ) -> InProcess {
        let mut settings = boxoffice::config::Settings::from_env().unwrap();
        settings.database_url = boxoffice::config::Secret::new(database_url);
        settings.bind_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        settings.jwt_secret = boxoffice::config::Secret::new(JWT_SECRET);
        settings.jwt_secret_generated = false;
        settings.redis_url = None;
        settings.outbox_worker = false;
        tweak(&mut settings);
        let app = boxoffice::startup::Application::build(settings)
            .await
            .unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        InProcess {
            base,
            stop: Some(stop),
            server,
        }
    }

    /// Stops it gracefully and checks it shut down cleanly.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.await.unwrap().unwrap();
    }
}
