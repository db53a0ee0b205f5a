//! The outbox worker: retries with backoff until the webhook takes the job.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::post;
use boxoffice::outbox::{run_once, Delivery};
use serde_json::json;

use crate::helpers::{data, spawn_app, spawn_app_with, test_settings};

#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_until_it_succeeds() {
    // The app's own worker is off: this test runs the rounds itself.
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let mut settings = test_settings(&db);
    settings.outbox_worker = false;
    let app = spawn_app_with(db, settings).await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 4).await;

    // A webhook that fails twice, then accepts.
    let calls = Arc::new(AtomicUsize::new(0));
    let hook_calls = calls.clone();
    let hook = axum::Router::new().route(
        "/hook",
        post(move |body: axum::Json<serde_json::Value>| {
            let calls = hook_calls.clone();
            async move {
                assert!(body["payload"]["bookingReference"].is_string());
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    StatusCode::BAD_GATEWAY
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await.unwrap() });

    let hold = app.hold(&buyer, event_id, general, 1).await;
    // Park the analytics job; deliver only the confirmation job, round by round.
    let booked = app
        .post("/bookings", Some(&buyer), json!({"reservationIds": [hold]}))
        .await;
    assert_eq!(booked.status(), 201);
    sqlx::query("UPDATE outbox SET next_attempt_at = now() + interval '1 hour' WHERE kind <> 'booking.confirmed'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let delivery = Delivery::new(Some(hook_url));
    let job = |pool: sqlx::PgPool| async move {
        sqlx::query_as::<_, (String, i32, Option<String>, bool)>(
            "SELECT status, attempts, last_error, next_attempt_at > now() + interval '1 second'
             FROM outbox WHERE kind = 'booking.confirmed'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    for attempt in 1..=2 {
        // Make the job due now (instead of waiting out its backoff), then run a round.
        sqlx::query("UPDATE outbox SET next_attempt_at = now() WHERE kind = 'booking.confirmed'")
            .execute(&app.db.pool)
            .await
            .unwrap();
        run_once(&app.db.pool, &delivery).await.unwrap();
        let (status, attempts, error, backed_off) = job(app.db.pool.clone()).await;
        assert_eq!((status.as_str(), attempts), ("PENDING", attempt));
        assert!(error.unwrap().contains("502"));
        assert!(backed_off, "the next attempt waits");
    }
    sqlx::query("UPDATE outbox SET next_attempt_at = now() WHERE kind = 'booking.confirmed'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    run_once(&app.db.pool, &delivery).await.unwrap();
    let (status, attempts, _, _) = job(app.db.pool.clone()).await;
    assert_eq!((status.as_str(), attempts), ("DELIVERED", 3));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn seed_demo_makes_the_briefs_buyer_and_an_event_on_sale_and_can_run_twice() {
    let app = spawn_app().await;
    let first = boxoffice::demo::seed(&app.db.pool, &app.engine)
        .await
        .unwrap();
    let second = boxoffice::demo::seed(&app.db.pool, &app.engine)
        .await
        .unwrap();
    assert_eq!(first, second);
    let login = app
        .post(
            "/auth/login",
            None,
            json!({"email": "test@example.com", "password": "password"}),
        )
        .await;
    assert_eq!(login.status(), 200);
    let inventory = data(app.get(&format!("/events/{first}/inventory")).await).await;
    assert_eq!(inventory["status"], "ON_SALE");
    assert_eq!(inventory["sections"].as_array().unwrap().len(), 2);
    app.stop().await.unwrap();
}
