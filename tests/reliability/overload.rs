//! Offered load far beyond what the engine admits is shed at once with 503 and
//! `Retry-After`; what is admitted is answered, durable, and the invariants hold.
//!
//! The event row is locked while the load arrives, as a slow commit would hold it: the
//! admitted requests stay in flight until it is released, so how many are admitted and how
//! many are shed does not depend on how fast this machine is.

use boxoffice_engine::testdb::TestDb;
use serde_json::json;

use crate::support::{client, scene, InProcess};

/// The value of one series in a Prometheus scrape (0 when absent).
async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Locks an event's row until the returned transaction ends.
async fn lock_event(db: &TestDb, event_id: i64) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut lock = db.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM events WHERE id = $1 FOR UPDATE")
        .bind(event_id)
        .execute(&mut *lock)
        .await
        .unwrap();
    lock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excess_load_is_shed_with_retry_after_and_nothing_is_lost() {
    let db = TestDb::create().await;
    // A deliberately tiny engine: four requests in flight.
    let app = InProcess::start(db.url(), |s| {
        s.engine.max_in_flight_total = 4;
        s.engine.max_in_flight_per_event = 4;
    })
    .await;
    let base = app.base.clone();
    let scene = scene(&db, &base, 400, 100_000, 1000).await;
    let lock = lock_event(&db, scene.event_id).await;

    let client = client();
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for (_, token) in &scene.buyers {
        let request = client
            .post(format!("{base}/events/{}/reservations", scene.event_id))
            .bearer_auth(token)
            .json(&json!({"type": "GENERAL", "sectionId": scene.section_id, "quantity": 1}));
        let answers = answers_tx.clone();
        tokio::spawn(async move {
            let _ = answers.send(request.send().await.unwrap());
        });
    }
    drop(answers_tx);
    // Four requests hold the four slots behind the lock; every other one is answered now.
    let mut shed = 0;
    while shed < scene.buyers.len() - 4 {
        let r = answers.recv().await.unwrap();
        assert_eq!(r.status(), 503, "only the four admitted may wait");
        assert_eq!(r.headers()["retry-after"], "1");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "OVERLOADED");
        shed += 1;
    }
    assert_eq!(
        metric(&base, "boxoffice_engine_shed_total{scope=\"node\"}").await,
        shed as f64
    );
    lock.commit().await.unwrap();
    let mut granted = Vec::new();
    while let Some(r) = answers.recv().await {
        assert_eq!(r.status(), 201);
        let body: serde_json::Value = r.json().await.unwrap();
        granted.push(body["data"]["id"].as_i64().unwrap());
    }
    assert_eq!(granted.len(), 4, "the admitted requests are answered");
    let missing = boxoffice_engine::audit::missing_holds(&db.pool, &granted)
        .await
        .unwrap();
    assert!(missing.is_empty());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 4, "shed requests created nothing");
    assert!(
        boxoffice_engine::audit::violations(&db.pool, scene.event_id)
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_event_sheds_and_the_refusal_is_counted_as_the_events() {
    let db = TestDb::create().await;
    let app = InProcess::start(db.url(), |s| {
        s.engine.max_in_flight_total = 100;
        s.engine.max_in_flight_per_event = 2;
    })
    .await;
    let base = app.base.clone();
    let scene = scene(&db, &base, 3, 100, 10).await;
    let client = client();
    let hold = |token: &str| {
        client
            .post(format!("{base}/events/{}/reservations", scene.event_id))
            .bearer_auth(token)
            .json(&json!({"type": "GENERAL", "sectionId": scene.section_id, "quantity": 1}))
    };
    let lock = lock_event(&db, scene.event_id).await;
    let parked: Vec<_> = scene.buyers[..2]
        .iter()
        .map(|(_, token)| tokio::spawn(hold(token).send()))
        .collect();
    // Both wait behind the lock, in flight.
    while metric(&base, "boxoffice_engine_in_flight").await < 2.0 {
        tokio::task::yield_now().await;
    }
    let third = hold(&scene.buyers[2].1).send().await.unwrap();
    assert_eq!(third.status(), 503);
    assert_eq!(
        metric(&base, "boxoffice_engine_shed_total{scope=\"event\"}").await,
        1.0
    );
    assert_eq!(
        metric(&base, "boxoffice_engine_shed_total{scope=\"node\"}").await,
        0.0
    );
    lock.commit().await.unwrap();
    for p in parked {
        assert_eq!(p.await.unwrap().unwrap().status(), 201);
    }
    app.stop().await;
}
