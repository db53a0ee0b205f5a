//! The outbox worker: retries with backoff until the webhook takes the job.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::post;
use boxoffice::outbox::{run_once, Delivery};
use serde_json::json;

use crate::helpers::{data, spawn_app, spawn_app_with, test_settings};

/// An app whose own job worker is off (the test runs the rounds itself), with one booking
/// made and only its confirmation job due (the analytics job parked an hour ahead).
/// Returns the app and the booking's reference.
async fn app_with_one_due_job() -> (crate::helpers::TestApp, String) {
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let mut settings = test_settings(&db);
    settings.outbox_worker = false;
    let app = spawn_app_with(db, settings).await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 4).await;
    let hold = app.hold(&buyer, event_id, general, 1).await;
    let booked = app
        .post("/bookings", Some(&buyer), json!({"reservationIds": [hold]}))
        .await;
    assert_eq!(booked.status(), 201);
    let reference = data(booked).await["bookingReference"]
        .as_str()
        .unwrap()
        .to_string();
    sqlx::query("UPDATE outbox SET next_attempt_at = now() + interval '1 hour' WHERE kind <> 'booking.confirmed'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    (app, reference)
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_backoff_until_it_succeeds() {
    let (app, _) = app_with_one_due_job().await;

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

    // Deliver the confirmation job round by round.
    let delivery = Delivery::new(Some(hook_url), None).unwrap();
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

/// An HTTPS webhook receiver on a free port with a certificate for `localhost` made on the
/// spot: answers 200 to every request and hands each request's body to the returned channel.
async fn https_receiver() -> (u16, String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (bodies, received) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let bodies = bodies.clone();
            tokio::spawn(async move {
                // A client that does not trust the certificate ends the handshake here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                let body_start = loop {
                    let n = tls.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the request ended early");
                    request.extend_from_slice(&chunk[..n]);
                    if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&request[..body_start]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                while request.len() < body_start + length {
                    let n = tls.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "the body ended early");
                    request.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&request[body_start..]).to_string();
                let _ = bodies.send(body);
                tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, certified.cert.pem(), received)
}

#[tokio::test]
async fn jobs_reach_an_https_webhook_whose_certificate_is_verified() {
    let (app, reference) = app_with_one_due_job().await;
    let (port, ca_pem, mut received) = https_receiver().await;
    let url = format!("https://localhost:{port}/hook");
    let status = |pool: sqlx::PgPool| async move {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT status, last_error FROM outbox WHERE kind = 'booking.confirmed'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };

    // Without the receiver's CA the certificate is not trusted: no delivery.
    let untrusting = Delivery::new(Some(url.clone()), None).unwrap();
    run_once(&app.db.pool, &untrusting).await.unwrap();
    let (state, error) = status(app.db.pool.clone()).await;
    assert_eq!(state, "PENDING");
    assert!(error.unwrap().contains("unreachable"));
    assert!(received.try_recv().is_err(), "nothing reached the receiver");

    // With it (OUTBOX_WEBHOOK_CA_FILE), the job is delivered over TLS.
    sqlx::query("UPDATE outbox SET next_attempt_at = now() WHERE kind = 'booking.confirmed'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let trusting = Delivery::new(Some(url), Some(ca_pem.as_bytes())).unwrap();
    run_once(&app.db.pool, &trusting).await.unwrap();
    assert_eq!(status(app.db.pool.clone()).await.0, "DELIVERED");
    let body: serde_json::Value = serde_json::from_str(&received.recv().await.unwrap()).unwrap();
    assert_eq!(body["kind"], "booking.confirmed");
    assert_eq!(body["payload"]["bookingReference"], reference.as_str());
    app.stop().await.unwrap();
}

#[test]
fn a_ca_file_without_certificates_is_refused_at_start() {
    assert!(Delivery::new(Some("https://example.test/".into()), Some(b"not a pem")).is_err());
}

/// Several nodes run the job worker on one database: three workers, each with a pool of its
/// own, share 300 due jobs, and the webhook receives each job exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_on_one_database_deliver_each_job_exactly_once() {
    let db = boxoffice_engine::testdb::TestDb::create().await;
    sqlx::query(
        "INSERT INTO outbox (kind, payload) SELECT 'booking.confirmed', jsonb_build_object('n', g)
         FROM generate_series(1, 300) g",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // The receiver counts every delivery by its job's idempotency key.
    let received: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let seen = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let key = headers["idempotency-key"].to_str().unwrap().to_string();
                seen.lock().unwrap().push(key);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (options, url) = (db.options.clone(), url.clone());
            tokio::spawn(async move {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .unwrap();
                let delivery = Delivery::new(Some(url), None).unwrap();
                let mut claimed = 0;
                loop {
                    let round = run_once(&pool, &delivery).await.unwrap();
                    if round == 0 {
                        return claimed;
                    }
                    claimed += round;
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for w in workers {
        claimed.push(w.await.unwrap());
    }
    assert_eq!(claimed.iter().sum::<usize>(), 300, "{claimed:?}");
    let mut keys = received.lock().unwrap().clone();
    assert_eq!(keys.len(), 300, "every job delivered");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 300, "no job delivered twice");
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE status <> 'DELIVERED'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(pending, 0);
}
