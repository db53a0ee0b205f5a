//! A cluster on loopback: `boxoffice serve` nodes as child processes on one fresh database,
//! HAProxy (Debian's package) in front of them with the repository's own configuration
//! (`deploy/haproxy.cfg`, its addresses rewritten), and what the tests read off the nodes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxoffice::auth::jwt::{Keys, Role};
use boxoffice_engine::testdb::TestDb;
use serde_json::Value;
use tokio::process::{Child, Command};

pub use crate::process::{client, client_builder, free_port, Seen, Server, JWT_SECRET};

/// One node: its id and port, and the process while it runs.
pub struct Node {
    pub id: String,
    pub port: u16,
    pub server: Option<Server>,
    /// Extra environment it is started with.
    env: Vec<(String, String)>,
}

impl Node {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The process id (it must be running).
    pub fn pid(&self) -> u32 {
        self.server.as_ref().expect("running").pid()
    }
}

/// HAProxy in front of the nodes.
pub struct Haproxy {
    child: Child,
    pub port: u16,
    _config: tempfile_path::TempPath,
}

mod tempfile_path {
    /// A file removed when dropped.
    pub struct TempPath(pub std::path::PathBuf);
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

impl Haproxy {
    /// Starts HAProxy with `deploy/haproxy.cfg`, listening on a free port and balancing over
    /// `ports` on loopback; waits until it has found every node up.
    pub async fn start(ports: &[u16]) -> Haproxy {
        let shipped =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg"))
                .unwrap();
        let port = free_port();
        let mut config = String::new();
        for line in shipped.lines() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("bind ") {
                config.push_str(&format!("    bind 127.0.0.1:{port}\n"));
            } else if trimmed.starts_with("server ") {
                continue;
            } else {
                config.push_str(line);
                config.push('\n');
            }
        }
        assert!(
            config.contains("balance uri depth 2"),
            "the shipped balancing"
        );
        for (i, p) in ports.iter().enumerate() {
            config.push_str(&format!("    server node-{i} 127.0.0.1:{p} check\n"));
        }
        let path = std::env::temp_dir().join(format!("boxoffice-haproxy-{port}.cfg"));
        std::fs::write(&path, config).unwrap();
        let child = Command::new(haproxy_binary())
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("haproxy starts (Debian package haproxy; .ci/run installs it)");
        let haproxy = Haproxy {
            child,
            port,
            _config: tempfile_path::TempPath(path),
        };
        // Ready once requests get through to a node.
        let client = client();
        for _ in 0..200 {
            if let Ok(r) = client.get(haproxy.url("/health/ready")).send().await {
                if r.status() == 200 {
                    return haproxy;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("haproxy never passed a request through");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// `haproxy` on the PATH, or Debian's place for it.
fn haproxy_binary() -> String {
    std::env::var("HAPROXY").unwrap_or_else(|_| {
        if std::path::Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy".into()
        } else {
            "haproxy".into()
        }
    })
}

/// Nodes on one database, optionally behind HAProxy.
pub struct Cluster {
    pub db: TestDb,
    /// The URL the nodes reach PostgreSQL at (the test database, or a proxy in front).
    database_url: String,
    pub nodes: Vec<Node>,
    pub haproxy: Option<Haproxy>,
    pub client: reqwest::Client,
    keys: Keys,
}

impl Cluster {
    /// `count` nodes on a fresh database, each started with `env` too.
    pub async fn start(count: usize, env: &[(&str, &str)]) -> Cluster {
        let db = TestDb::create().await;
        let url = db.url();
        Cluster::start_on(db, url, count, env).await
    }

    /// `count` nodes on `db`, reaching it at `database_url`.
    pub async fn start_on(
        db: TestDb,
        database_url: String,
        count: usize,
        env: &[(&str, &str)],
    ) -> Cluster {
        let mut cluster = Cluster {
            db,
            database_url,
            nodes: Vec::new(),
            haproxy: None,
            client: client_builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            keys: Keys::new(JWT_SECRET, 3600).unwrap(),
        };
        for i in 0..count {
            let env = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            cluster.nodes.push(Node {
                id: format!("node-{i}"),
                port: free_port(),
                server: None,
                env,
            });
        }
        // One at a time: the first migrates the database.
        for i in 0..count {
            cluster.start_node(i).await;
        }
        cluster
    }

    /// Starts (or restarts) node `i` and waits until it is ready.
    pub async fn start_node(&mut self, i: usize) {
        let node = &self.nodes[i];
        let mut env: Vec<(String, String)> = vec![
            ("NODE_ID".into(), node.id.clone()),
            ("ADVERTISE_URL".into(), node.url("")),
            // Behind HAProxy, which shares its connections among clients.
            ("PACE_MAX_MS".into(), "0".into()),
        ];
        env.extend(node.env.iter().cloned());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = Server::start_with(&self.database_url, node.port, &env).await;
        self.nodes[i].server = Some(server);
    }

    /// Puts HAProxy in front of every node.
    pub async fn with_haproxy(mut self) -> Cluster {
        let ports: Vec<u16> = self.nodes.iter().map(|n| n.port).collect();
        self.haproxy = Some(Haproxy::start(&ports).await);
        self
    }

    /// The front door: HAProxy.
    pub fn front(&self, path: &str) -> String {
        self.haproxy.as_ref().expect("behind haproxy").url(path)
    }

    /// A token for a new user of `role`.
    pub async fn user(&self, role: Role) -> String {
        let email = format!("u{}@example.com", uuid::Uuid::new_v4().simple());
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (email, password_hash, role) VALUES ($1, 'x', $2) RETURNING id",
        )
        .bind(email)
        .bind(match role {
            Role::Organizer => "ORGANIZER",
            Role::Admin => "ADMIN",
            Role::Customer => "CUSTOMER",
        })
        .fetch_one(&self.db.pool)
        .await
        .unwrap();
        self.keys.issue(id, role).unwrap()
    }

    /// `count` buyers' tokens.
    pub async fn buyers(&self, count: usize) -> Vec<String> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO users (email, password_hash)
             SELECT 'b' || g || '-' || $2 || '@example.com', 'x' FROM generate_series(1, $1) g RETURNING id",
        )
        .bind(count as i32)
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .fetch_all(&self.db.pool)
        .await
        .unwrap();
        ids.into_iter()
            .map(|id| self.keys.issue(id, Role::Customer).unwrap())
            .collect()
    }

    /// An event on sale with one GENERAL section, made through `base` (a node or HAProxy).
    /// Returns (event id, section id).
    pub async fn event_on_sale(&self, base: &str, organizer: &str, capacity: u32) -> (i64, i64) {
        let created: Value = self
            .client
            .post(format!("{base}/events"))
            .bearer_auth(organizer)
            .json(&serde_json::json!({"eventName": "Cluster night", "eventDate": "2030-01-01T00:00:00Z",
                                      "saleStartTime": "2020-01-01T00:00:00Z", "maxTicketsPerUser": null}))
            .send().await.unwrap().json().await.unwrap();
        let event_id = created["data"]["id"].as_i64().unwrap();
        let section: Value = self
            .client
            .post(format!("{base}/events/{event_id}/sections"))
            .bearer_auth(organizer)
            .json(&serde_json::json!({"name": "Floor", "type": "GENERAL", "capacity": capacity, "priceCents": 1000}))
            .send().await.unwrap().json().await.unwrap();
        let section_id = section["data"]["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("a section: {section}"));
        let opened = self
            .client
            .patch(format!("{base}/events/{event_id}"))
            .bearer_auth(organizer)
            .json(&serde_json::json!({"status": "ON_SALE"}))
            .send()
            .await
            .unwrap();
        assert_eq!(opened.status(), 200);
        (event_id, section_id)
    }

    /// A GENERAL hold of one ticket through `base`, with an idempotency key.
    pub fn hold(
        &self,
        base: &str,
        token: &str,
        event_id: i64,
        section_id: i64,
        key: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{base}/events/{event_id}/reservations"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(&serde_json::json!({"type": "GENERAL", "sectionId": section_id, "quantity": 1}))
    }

    /// The node PostgreSQL records as the event's owner (with a live lease), if any.
    pub async fn owner(&self, event_id: i64) -> Option<String> {
        sqlx::query_scalar(
            "SELECT e.owner_node FROM events e
               JOIN cluster_nodes n ON n.node_id = e.owner_node AND n.incarnation = e.owner_incarnation
              WHERE e.id = $1 AND n.lease_until > clock_timestamp()",
        )
        .bind(event_id)
        .fetch_optional(&self.db.pool)
        .await
        .unwrap()
    }

    /// The index of the node with this id.
    pub fn index_of(&self, node_id: &str) -> usize {
        self.nodes.iter().position(|n| n.id == node_id).unwrap()
    }

    /// A node's own view (`/health/cluster`): its incarnation and live events.
    pub async fn view(&self, i: usize) -> Option<Value> {
        let r = self
            .client
            .get(self.nodes[i].url("/health/cluster"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let body: Value = r.json().await.ok()?;
        Some(body["data"].clone())
    }

    /// A node's live events.
    pub async fn live_events(&self, i: usize) -> Vec<i64> {
        self.view(i)
            .await
            .map(|v| {
                v["liveEvents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_i64().unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A counter of node `i` (summed over its label values), 0 when absent.
    pub async fn counter(&self, i: usize, name: &str, labels: &str) -> f64 {
        let text = self
            .client
            .get(self.nodes[i].url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Holds stored for `event_id` with the given idempotency keys.
    pub async fn stored_keys(&self, event_id: i64, keys: &[String]) -> Vec<String> {
        sqlx::query_scalar(
            "SELECT idempotency_key FROM reservations WHERE event_id = $1 AND idempotency_key = ANY($2)",
        )
        .bind(event_id)
        .bind(keys)
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    /// Every acknowledged hold (by its key) is in PostgreSQL, once each, and the event's
    /// invariants hold.
    pub async fn assert_all_stored(&self, event_id: i64, acked: &[(String, Instant)]) {
        let keys: Vec<String> = acked.iter().map(|(k, _)| k.clone()).collect();
        let stored = self.stored_keys(event_id, &keys).await;
        assert_eq!(
            stored.len(),
            keys.len(),
            "every acknowledged hold is stored"
        );
        let distinct: std::collections::BTreeSet<&String> = stored.iter().collect();
        assert_eq!(distinct.len(), stored.len(), "no key made two holds");
        self.assert_invariants(event_id).await;
    }

    /// `kill -9` of node `i`: a crash, with no chance to hand anything over.
    pub async fn kill_node(&mut self, i: usize) {
        self.nodes[i]
            .server
            .as_mut()
            .expect("the node runs")
            .kill()
            .await;
        self.nodes[i].server = None;
    }

    /// Every invariant of the event holds in PostgreSQL.
    pub async fn assert_invariants(&self, event_id: i64) {
        let violations = boxoffice_engine::audit::violations(&self.db.pool, event_id)
            .await
            .unwrap();
        assert!(violations.is_empty(), "{violations:?}");
    }
}

/// Sends a signal to a process (`STOP`, `CONT`, `KILL`, `TERM`).
pub fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Polls `check` every 50 ms until it is true, or panics after `limit` with `what`. A
/// bound, not a timing assertion: what it waits for takes a fraction of it.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} (waited {limit:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Buyers holding one ticket at a time through HAProxy, each hold with a key of its own and
/// retried with it while the answer is unknown (503 or a broken connection). Anything else
/// than 201 in the end fails the test. Returns the acknowledged keys with when they came.
pub struct Load {
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    /// When each acknowledged hold's last attempt was sent.
    sent: Arc<Mutex<Vec<Instant>>>,
    unknown: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Buyers of `tokens` holding one GENERAL ticket at a time through `front` (HAProxy's
    /// URL).
    pub fn start(front: String, tokens: Vec<String>, event: i64, section: i64) -> Load {
        let body = serde_json::json!({"type": "GENERAL", "sectionId": section, "quantity": 1});
        Load::start_with(front, tokens, event, body)
    }

    /// Buyers of `tokens` each sending `body` as a hold, again and again.
    pub fn start_with(
        front: String,
        tokens: Vec<String>,
        event: i64,
        body: serde_json::Value,
    ) -> Load {
        Load::start_tolerating(front, tokens, event, body, false)
    }

    /// Like [`Load::start_with`]; with `gateway_errors`, HAProxy's 502 and 504 count as
    /// unknown outcomes to retry (requests in flight on a node that was killed), otherwise
    /// they fail the test.
    pub fn start_tolerating(
        front: String,
        tokens: Vec<String>,
        event: i64,
        body: serde_json::Value,
        gateway_errors: bool,
    ) -> Load {
        let client = client();
        // Keys unique across loads, so that two loads' keys never meet in one check.
        let load_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let unknown = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = tokens
            .into_iter()
            .enumerate()
            .map(|(b, token)| {
                let (body, load_id) = (body.clone(), load_id.clone());
                let (client, front, acked, sent_of, unknown, stop) = (
                    client.clone(),
                    front.clone(),
                    acked.clone(),
                    sent.clone(),
                    unknown.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let key = format!("{load_id}-{b}-{n}");
                        n += 1;
                        let mut tries = 0;
                        loop {
                            let request = client
                                .post(format!("{front}/events/{event}/reservations"))
                                .bearer_auth(&token)
                                .header("idempotency-key", &key)
                                .json(&body);
                            let sent = Instant::now();
                            match through_gateway(request, gateway_errors).await {
                                Seen::Ok(_) => {
                                    // Both under their locks at once: the two lists stay
                                    // in step.
                                    let mut acked = acked.lock().unwrap();
                                    let mut sent_of = sent_of.lock().unwrap();
                                    acked.push((key, Instant::now()));
                                    sent_of.push(sent);
                                    break;
                                }
                                Seen::Unknown => {
                                    unknown.fetch_add(1, Ordering::Relaxed);
                                    tries += 1;
                                    assert!(tries < 1_000, "hold {key} never answered");
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                                Seen::Refused(status) => {
                                    panic!("hold {key} refused with {status}")
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            acked,
            sent,
            unknown,
            stop,
            tasks,
        }
    }

    pub fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// When the first hold *sent* after `instant` was acknowledged, if one was: decided
    /// after it, not an answer already on its way.
    pub fn first_after(&self, instant: Instant) -> Option<Instant> {
        let acked = self.acked.lock().unwrap();
        let sent = self.sent.lock().unwrap();
        acked
            .iter()
            .zip(sent.iter())
            .filter(|(_, sent)| **sent > instant)
            .map(|((_, at), _)| *at)
            .min()
    }

    pub fn acknowledged_after(&self, instant: Instant) -> bool {
        self.first_after(instant).is_some()
    }

    /// How long after `killed_at` the first hold sent after it was acknowledged, waiting
    /// for one (a bound, not a timing assertion).
    pub async fn recovered_after(&self, killed_at: Instant) -> Duration {
        eventually(
            Duration::from_secs(60),
            "the event answered again after the kill",
            || async { self.acknowledged_after(killed_at) },
        )
        .await;
        self.first_after(killed_at)
            .expect("acknowledged")
            .duration_since(killed_at)
    }

    pub async fn until_more(&self, more: usize, what: &str) {
        let target = self.count() + more;
        eventually(Duration::from_secs(120), what, || async {
            self.count() >= target
        })
        .await;
    }

    /// Stops the buyers; returns the acknowledged keys in the order they came, with when.
    pub async fn stop(self) -> (Vec<(String, Instant)>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let mut acked = self.acked.lock().unwrap().clone();
        acked.sort_by_key(|(_, at)| *at);
        (acked, self.unknown.load(Ordering::Relaxed))
    }
}

/// Sends a hold through HAProxy and classifies its end like `process::attempt`; HAProxy's own
/// 502 and 504 (no answer from the node) are unknown outcomes when `gateway_errors`.
async fn through_gateway(request: reqwest::RequestBuilder, gateway_errors: bool) -> Seen {
    match request.timeout(Duration::from_secs(20)).send().await {
        Err(_) => Seen::Unknown,
        Ok(r) => match r.status().as_u16() {
            200..=299 => {
                let body: Value = r.json().await.unwrap_or_default();
                Seen::Ok(body["data"]["id"].to_string())
            }
            503 => Seen::Unknown,
            502 | 504 if gateway_errors => Seen::Unknown,
            status @ 400..=499 => Seen::Refused(status),
            other => panic!("a server error is never a valid answer here: {other}"),
        },
    }
}
