//! PostgreSQL unreachable in the middle of a burst, and graceful shutdown under load: the
//! answers are durable "yes", honest refusals or 503 — never a false "yes", never a hang
//! past the request timeout — and service comes back by itself.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use boxoffice_engine::testdb::TestDb;
use serde_json::json;

use crate::support::{attempt, client, free_port, scene, InProcess, Proxy, Seen, Server};

/// Requests one buyer sends at most in the outage test.
const MAX_REQUESTS_PER_BUYER: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_gives_503s_not_false_yeses_and_service_recovers() {
    let db = TestDb::create().await;
    let proxy = Proxy::start(5432).await;
    let via_proxy = db.url().replace(":5432/", &format!(":{}/", proxy.port));
    let app = InProcess::start(via_proxy, |s| {
        s.request_timeout_ms = 3_000;
        s.db_acquire_timeout_ms = 1_000;
        s.engine.flush_timeout_ms = 1_000;
        s.engine.call_timeout_ms = 2_500;
    })
    .await;
    let base = app.base.clone();
    let scene = scene(&db, &base, 100, 100_000, 1000).await;

    // Buyers hold in a loop until told to stop. The database is cut off once holds are
    // being granted, and restored once the outage has been felt: each phase waits for what
    // it needs to see, not for a fixed time, so a slow machine changes nothing.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let oks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let unknown = Arc::new(AtomicUsize::new(0));
    let slowest = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let tasks: Vec<_> = scene
        .buyers
        .iter()
        .map(|(_, token)| {
            let (token, base, stop) = (token.clone(), base.clone(), stop.clone());
            let (oks, unknown, slowest) = (oks.clone(), unknown.clone(), slowest.clone());
            let (event, section) = (scene.event_id, scene.section_id);
            tokio::spawn(async move {
                let client = client();
                // Bounded: the phases below end long before.
                for _ in 0..MAX_REQUESTS_PER_BUYER {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let sent = Instant::now();
                    let seen = attempt(
                        client
                            .post(format!("{base}/events/{event}/reservations"))
                            .bearer_auth(&token)
                            .json(&json!({"type": "GENERAL", "sectionId": section, "quantity": 1})),
                    )
                    .await;
                    let took = sent.elapsed();
                    let mut s = slowest.lock().unwrap();
                    *s = (*s).max(took);
                    drop(s);
                    match seen {
                        Seen::Ok(id) => oks.lock().unwrap().push(id.parse::<i64>().unwrap()),
                        Seen::Unknown => {
                            unknown.fetch_add(1, Ordering::SeqCst);
                        }
                        Seen::Refused(status) => panic!("unexpected refusal {status}"),
                    }
                }
            })
        })
        .collect();
    let phase = |what: &'static str, done: Box<dyn Fn() -> bool + Send>| async move {
        let reached = tokio::time::timeout(Duration::from_secs(60), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(reached.is_ok(), "never saw {what}");
    };
    let granted = oks.clone();
    phase(
        "a hold granted",
        Box::new(move || granted.lock().unwrap().len() >= 50),
    )
    .await;
    proxy.cut();
    let felt = unknown.clone();
    phase(
        "the outage felt",
        Box::new(move || felt.load(Ordering::SeqCst) >= 20),
    )
    .await;
    proxy.restore();
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let slowest = *slowest.lock().unwrap();
    assert!(
        slowest < Duration::from_secs(10),
        "a request hung for {slowest:?}"
    );

    // Service comes back on its own: a new hold succeeds within a few attempts.
    let client = client();
    let mut recovered = false;
    for _ in 0..50 {
        let seen = attempt(
            client
                .post(format!("{base}/events/{}/reservations", scene.event_id))
                .bearer_auth(&scene.buyers[0].1)
                .json(&json!({"type": "GENERAL", "sectionId": scene.section_id, "quantity": 1})),
        )
        .await;
        if let Seen::Ok(id) = seen {
            oks.lock().unwrap().push(id.parse().unwrap());
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the engine recovered once the database was back");
    let oks = oks.lock().unwrap().clone();
    let missing = boxoffice_engine::audit::missing_holds(&db.pool, &oks)
        .await
        .unwrap();
    assert!(missing.is_empty(), "acknowledged holds lost: {missing:?}");
    let violations = boxoffice_engine::audit::violations(&db.pool, scene.event_id)
        .await
        .unwrap();
    assert!(violations.is_empty(), "{violations:#?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_loses_no_acknowledged_hold() {
    let db = TestDb::create().await;
    let mut server = Server::start(&db.url(), free_port()).await;
    let scene = scene(&db, &server.url(""), 300, 100_000, 1000).await;
    let acks = Arc::new(AtomicUsize::new(0));
    let base = server.url("");
    let tasks: Vec<_> = scene
        .buyers
        .iter()
        .map(|(_, token)| {
            let (token, base, acks) = (token.clone(), base.clone(), acks.clone());
            let (event, section) = (scene.event_id, scene.section_id);
            tokio::spawn(async move {
                let client = client();
                let mut mine = Vec::new();
                // Until the server stops answering: the load is still on when SIGTERM lands.
                for _ in 0..MAX_REQUESTS_PER_BUYER {
                    let seen = attempt(
                        client
                            .post(format!("{base}/events/{event}/reservations"))
                            .bearer_auth(&token)
                            .json(&json!({"type": "GENERAL", "sectionId": section, "quantity": 1})),
                    )
                    .await;
                    match seen {
                        Seen::Ok(id) => {
                            acks.fetch_add(1, Ordering::SeqCst);
                            mine.push(id.parse::<i64>().unwrap());
                        }
                        Seen::Unknown => break, // shutting down
                        Seen::Refused(status) => panic!("unexpected refusal {status}"),
                    }
                }
                mine
            })
        })
        .collect();
    let reached = tokio::time::timeout(Duration::from_secs(60), async {
        while acks.load(Ordering::SeqCst) < 500 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "the burst stalled");
    let status = server.terminate(Duration::from_secs(10)).await;
    assert_eq!(
        status.map(|s| s.code()),
        Some(Some(0)),
        "exited 0 within 10 s"
    );
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let missing = boxoffice_engine::audit::missing_holds(&db.pool, &acked)
        .await
        .unwrap();
    assert!(
        missing.is_empty(),
        "acknowledged holds lost at shutdown: {missing:?}"
    );
    let active: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reservations_effective WHERE status = 'ACTIVE'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(active as usize >= acked.len());
    let violations = boxoffice_engine::audit::violations(&db.pool, scene.event_id)
        .await
        .unwrap();
    assert!(violations.is_empty(), "{violations:#?}");
    let logs = server.output.lock().unwrap().clone();
    assert!(
        logs.contains("shutdown complete"),
        "drained in order:\n{logs}"
    );
}
