//! Offered load far beyond what the engine admits is shed at once with 503 and
//! `Retry-After`; what is admitted is answered, durable, and the invariants hold.

use boxoffice_engine::testdb::TestDb;
use serde_json::json;

use crate::support::{scene, InProcess};

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

    let client = reqwest::Client::new();
    let tasks: Vec<_> = scene
        .buyers
        .iter()
        .map(|(_, token)| {
            let request = client
                .post(format!("{base}/events/{}/reservations", scene.event_id))
                .bearer_auth(token)
                .json(&json!({"type": "GENERAL", "sectionId": scene.section_id, "quantity": 1}));
            tokio::spawn(async move { request.send().await.unwrap() })
        })
        .collect();
    let (mut granted, mut shed) = (Vec::new(), 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status().as_u16() {
            201 => granted.push(
                r.json::<serde_json::Value>().await.unwrap()["data"]["id"]
                    .as_i64()
                    .unwrap(),
            ),
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["error"]["code"], "OVERLOADED");
                shed += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        shed > 0,
        "four slots for 400 simultaneous buyers: some were shed"
    );
    assert!(!granted.is_empty(), "and some were admitted");
    let missing = boxoffice_engine::audit::missing_holds(&db.pool, &granted)
        .await
        .unwrap();
    assert!(missing.is_empty());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        stored as usize,
        granted.len(),
        "shed requests created nothing"
    );
    assert!(
        boxoffice_engine::audit::violations(&db.pool, scene.event_id)
            .await
            .unwrap()
            .is_empty()
    );
    app.stop().await;
}
