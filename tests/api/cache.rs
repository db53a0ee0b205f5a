//! The cache against real Redis (a key prefix of its own per test) and without it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use boxoffice::cache::Cache;
use serde_json::json;

use crate::helpers::{spawn_app_with, test_settings};

const REDIS: &str = "redis://127.0.0.1:6379";

fn prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

async fn redis_get(key: &str) -> Option<Vec<u8>> {
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is running");
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn concurrent_misses_share_one_load(cache: Arc<Cache>) {
    let loads = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            let loads = loads.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load("test", "hot-key", Duration::from_secs(30), || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(json!({"answer": 42}))
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap()["answer"], 42);
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "fifty concurrent misses, one load"
    );
}

#[tokio::test]
async fn concurrent_misses_share_one_load_with_and_without_redis() {
    concurrent_misses_share_one_load(Arc::new(Cache::new(None, prefix()))).await;
    let client = redis::Client::open(REDIS).unwrap();
    concurrent_misses_share_one_load(Arc::new(Cache::new(Some(client), prefix()))).await;
}

#[tokio::test]
async fn values_live_in_redis_and_invalidation_removes_them() {
    let prefix = prefix();
    let cache = Cache::new(Some(redis::Client::open(REDIS).unwrap()), prefix.clone());
    let loaded: serde_json::Value = cache
        .get_or_load("test", "k", Duration::from_secs(30), || async {
            Ok(json!([1, 2, 3]))
        })
        .await
        .unwrap();
    assert_eq!(loaded, json!([1, 2, 3]));
    assert_eq!(cache.backend_status(), "redis");
    let stored = redis_get(&format!("{prefix}k"))
        .await
        .expect("written to Redis");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&stored).unwrap(),
        json!([1, 2, 3])
    );
    cache.invalidate("k").await;
    assert!(redis_get(&format!("{prefix}k")).await.is_none());
    let generation = cache.generation("family").await;
    cache.bump("family").await;
    assert_eq!(cache.generation("family").await, generation + 1);
}

#[tokio::test]
async fn with_redis_down_values_still_load_and_the_cache_reports_degraded() {
    let cache = Cache::new(
        Some(redis::Client::open("redis://127.0.0.1:1").unwrap()),
        prefix(),
    );
    let v: u32 = cache
        .get_or_load("test", "k", Duration::from_secs(30), || async { Ok(7) })
        .await
        .unwrap();
    assert_eq!(v, 7);
    assert_eq!(cache.backend_status(), "degraded");
}

#[tokio::test]
async fn the_api_caches_event_details_in_redis_and_invalidates_them_on_update() {
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let mut settings = test_settings(&db);
    let prefix = prefix();
    settings.redis_url = Some(boxoffice::config::Secret::new(REDIS));
    settings.cache_prefix = prefix.clone();
    let app = spawn_app_with(db, settings).await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, _, _) = app.event_on_sale(&organizer, 10, 1, 1, 4).await;
    assert_eq!(app.get(&format!("/events/{event_id}")).await.status(), 200);
    let cached = redis_get(&format!("{prefix}event:{event_id}"))
        .await
        .expect("details cached in Redis");
    let cached: serde_json::Value = serde_json::from_slice(&cached).unwrap();
    assert_eq!(cached["eventName"], "Test night");

    let renamed = app
        .patch(
            &format!("/events/{event_id}"),
            &organizer,
            json!({"eventName": "Fresh"}),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    assert!(
        redis_get(&format!("{prefix}event:{event_id}"))
            .await
            .is_none(),
        "invalidated"
    );
    let fresh: serde_json::Value = app
        .get(&format!("/events/{event_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fresh["data"]["eventName"], "Fresh");
    let ready: serde_json::Value = app.get("/health/ready").await.json().await.unwrap();
    assert_eq!(ready["data"]["redis"], "ok");
    app.stop().await.unwrap();
}
