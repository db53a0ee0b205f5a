//! The cluster through what operators do and what happens to them: PostgreSQL out of reach
//! for seconds, and a rolling restart of every node under load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use boxoffice::auth::jwt::Role;

use crate::process::{attempt, Proxy};
use crate::support::{eventually, Cluster, Seen};

/// Buyers holding one ticket at a time through HAProxy, each hold with a key of its own and
/// retried with it while the answer is unknown (503 or a broken connection). Anything else
/// than 201 in the end fails the test. Returns the acknowledged keys with when they came.
struct Load {
    acked: Arc<Mutex<Vec<(String, Instant)>>>,
    unknown: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Buyers of `tokens` holding through `front` (HAProxy's URL).
    fn start(front: String, tokens: Vec<String>, event: i64, section: i64) -> Load {
        let client = reqwest::Client::new();
        let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
        let unknown = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = tokens
            .into_iter()
            .enumerate()
            .map(|(b, token)| {
                let (client, front, acked, unknown, stop) = (
                    client.clone(),
                    front.clone(),
                    acked.clone(),
                    unknown.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let key = format!("k-{b}-{n}");
                        n += 1;
                        let mut tries = 0;
                        loop {
                            let request = client
                                .post(format!("{front}/events/{event}/reservations"))
                                .bearer_auth(&token)
                                .header("idempotency-key", &key)
                                .json(&serde_json::json!({"type": "GENERAL", "sectionId": section, "quantity": 1}));
                            match attempt(request).await {
                                Seen::Ok(_) => {
                                    acked.lock().unwrap().push((key, Instant::now()));
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
            unknown,
            stop,
            tasks,
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn until_more(&self, more: usize, what: &str) {
        let target = self.count() + more;
        eventually(Duration::from_secs(120), what, || async {
            self.count() >= target
        })
        .await;
    }

    /// Stops the buyers; returns the acknowledged keys in the order they came, with when.
    async fn stop(self) -> (Vec<(String, Instant)>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let mut acked = self.acked.lock().unwrap().clone();
        acked.sort_by_key(|(_, at)| *at);
        (acked, self.unknown.load(Ordering::Relaxed))
    }
}

/// Every acknowledged hold is in PostgreSQL, once, and the event's invariants hold.
async fn assert_all_stored(cluster: &Cluster, event: i64, acked: &[(String, Instant)]) {
    let keys: Vec<String> = acked.iter().map(|(k, _)| k.clone()).collect();
    let stored = cluster.stored_keys(event, &keys).await;
    assert_eq!(
        stored.len(),
        keys.len(),
        "every acknowledged hold is stored"
    );
    cluster.assert_invariants(event).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_out_of_reach_stops_every_node_and_all_recover_by_themselves() {
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let proxy = Proxy::start(5432).await;
    let through_proxy =
        db.url()
            .replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(
        through_proxy,
        db.url(),
        "the nodes reach PostgreSQL through the proxy"
    );
    let cluster = Cluster::start_on(db, through_proxy, 3, &[])
        .await
        .with_haproxy()
        .await;
    let organizer = cluster.user(Role::Organizer).await;
    let tokens = cluster.buyers(16).await;
    let (event, section) = cluster
        .event_on_sale(&cluster.front(""), &organizer, 1_000_000)
        .await;
    let load = Load::start(cluster.front(""), tokens.clone(), event, section);
    load.until_more(100, "the burst got going").await;

    // PostgreSQL unreachable: every connection cut, new ones refused.
    proxy.cut();
    let cut_at = Instant::now();
    // Every node stops deciding: no lease, and a request sent to it straight is refused.
    for i in 0..3 {
        eventually(
            Duration::from_secs(30),
            "the node gave its lease up",
            || async {
                cluster
                    .view(i)
                    .await
                    .is_some_and(|v| v["incarnation"].is_null())
            },
        )
        .await;
        let direct = cluster
            .hold(
                &cluster.nodes[i].url(""),
                &tokens[0],
                event,
                section,
                "during-cut",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            direct.status(),
            503,
            "node {i} decides nothing without PostgreSQL"
        );
    }
    // Five seconds of outage, then PostgreSQL is back.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut_at.elapsed())).await;
    proxy.restore();
    for i in 0..3 {
        eventually(Duration::from_secs(60), "the node rejoined", || async {
            cluster
                .view(i)
                .await
                .is_some_and(|v| v["incarnation"].is_i64())
        })
        .await;
    }
    load.until_more(100, "holds were acknowledged again").await;
    let (acked, unknown) = load.stop().await;
    assert!(unknown > 0, "the outage was felt");
    assert!(
        acked
            .iter()
            .any(|(_, at)| *at > cut_at + Duration::from_secs(5)),
        "sales resumed after the outage"
    );
    assert!(cluster
        .stored_keys(event, &["during-cut".into()])
        .await
        .is_empty());
    assert_all_stored(&cluster, event, &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_fails_nothing() {
    let cluster = Cluster::start(3, &[]).await.with_haproxy().await;
    let organizer = cluster.user(Role::Organizer).await;
    let tokens = cluster.buyers(16).await;
    let (event, section) = cluster
        .event_on_sale(&cluster.front(""), &organizer, 1_000_000)
        .await;
    let mut cluster = cluster;
    let load = Load::start(cluster.front(""), tokens, event, section);
    load.until_more(100, "the load got going").await;
    for i in 0..3 {
        let server = cluster.nodes[i].server.as_mut().unwrap();
        let exited = server.terminate(Duration::from_secs(30)).await;
        assert!(
            exited.is_some_and(|s| s.success()),
            "node {i} drained and exited 0: {exited:?}"
        );
        cluster.nodes[i].server = None;
        cluster.start_node(i).await;
        load.until_more(100, "holds kept being acknowledged").await;
    }
    let (acked, unknown) = load.stop().await;
    let longest_gap = acked
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap();
    eprintln!(
        "rolling restart: {} holds acknowledged, {unknown} answers retried (503), longest gap between acknowledgements {longest_gap:?}",
        acked.len()
    );
    assert_all_stored(&cluster, event, &acked).await;
}
