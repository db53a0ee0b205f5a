use crate::helpers::spawn_app;

#[tokio::test]
async fn liveness_and_readiness_answer_on_a_fresh_database() {
    let app = spawn_app().await;
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), 200);
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["data"]["database"], "ok");
    assert_eq!(body["data"]["redis"], "not configured");
    // The schema is in place: the server migrated the database it was given.
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN
         ('users','venues','events','event_sections','seats','reservations','bookings','discounts')",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(tables, 8);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_format() {
    let app = spawn_app().await;
    app.get("/health/live").await;
    let scrape = app.get("/metrics").await;
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.unwrap();
    assert!(text.contains("boxoffice_http_requests_total"), "{text}");
    assert!(text.contains(r#"route="/health/live""#), "{text}");
    assert!(text.contains("boxoffice_db_pool_connections"), "{text}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn readiness_reports_a_degraded_cache_when_redis_is_unreachable() {
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let mut settings = crate::helpers::test_settings(&db);
    // Nothing listens on port 1: Redis is "down", PostgreSQL is fine.
    settings.redis_url = Some(boxoffice::config::Secret::new("redis://127.0.0.1:1"));
    let app = crate::helpers::spawn_app_with(db, settings).await;
    let ready = app.get("/health/ready").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["data"]["redis"], "degraded");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let app = spawn_app().await;
    assert_eq!(app.get("/nope").await.status(), 404);
    app.stop().await.unwrap();
}
