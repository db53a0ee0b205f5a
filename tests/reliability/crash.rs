//! SIGKILL in the middle of a burst of holds and bookings, then restart and retry what the
//! clients could not know: every acknowledged change is there, every retried one exists at
//! most once, and the invariants hold.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use boxoffice_engine::testdb::TestDb;
use serde_json::json;

use crate::support::{attempt, client, free_port, scene, Seen, Server, JWT_SECRET};

/// One hold a buyer asked for in a round, and the booking that followed it, by
/// idempotency key.
#[derive(Debug)]
struct Purchase {
    token: String,
    hold_key: String,
    hold: Seen,
    booking_key: String,
    booking: Option<Seen>,
}

/// Requests a buyer makes at most in one round (the kill always comes long before).
const MAX_PURCHASES_PER_BUYER: usize = 10_000;

/// A buyer holding and (two times in three) booking, again and again, until a request gets
/// no answer — the server was killed. So the burst is still running when the kill lands,
/// however fast or slow this machine is.
async fn buy(
    server_url: String,
    event_id: i64,
    section_id: i64,
    token: String,
    round: usize,
    i: usize,
    acks: Arc<AtomicUsize>,
) -> Vec<Purchase> {
    let client = client();
    let mut purchases = Vec::new();
    for n in 0..MAX_PURCHASES_PER_BUYER {
        let hold_key = format!("hold-{round}-{i}-{n}");
        let booking_key = format!("book-{round}-{i}-{n}");
        let hold = attempt(
            client
                .post(format!("{server_url}/events/{event_id}/reservations"))
                .bearer_auth(&token)
                .header("idempotency-key", &hold_key)
                .json(&json!({"type": "GENERAL", "sectionId": section_id, "quantity": 1})),
        )
        .await;
        let mut booking = None;
        if let Seen::Ok(id) = &hold {
            acks.fetch_add(1, Ordering::SeqCst);
            if !(i + n).is_multiple_of(3) {
                let seen = attempt(
                    client
                        .post(format!("{server_url}/bookings"))
                        .bearer_auth(&token)
                        .header("idempotency-key", &booking_key)
                        .json(&json!({"reservationIds": [id.parse::<i64>().unwrap()]})),
                )
                .await;
                if matches!(seen, Seen::Ok(_)) {
                    acks.fetch_add(1, Ordering::SeqCst);
                }
                booking = Some(seen);
            }
        }
        let unanswered = matches!(hold, Seen::Unknown) || matches!(booking, Some(Seen::Unknown));
        purchases.push(Purchase {
            token: token.clone(),
            hold_key,
            hold,
            booking_key,
            booking,
        });
        if unanswered {
            break;
        }
    }
    purchases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_burst_loses_no_acknowledged_change_at_several_kill_points() {
    let db = TestDb::create().await;
    let port = free_port();
    let mut server = Server::start(&db.url(), port).await;
    // No per-buyer limit gets in the way of buyers who keep buying until the kill.
    let scene = scene(&db, &server.url(""), 600, 100_000, 1000).await;
    let mut acked_holds = Vec::new();
    let mut acked_bookings = Vec::new();
    let mut unanswered_after_retry = 0;

    // Three rounds, each killed at a different point of its burst.
    for (round, kill_after) in [(0usize, 20usize), (1, 120), (2, 260)] {
        let acks = Arc::new(AtomicUsize::new(0));
        let buyers: Vec<_> = scene.buyers[round * 200..(round + 1) * 200]
            .iter()
            .enumerate()
            .map(|(i, (_, token))| {
                tokio::spawn(buy(
                    server.url(""),
                    scene.event_id,
                    scene.section_id,
                    token.clone(),
                    round,
                    i,
                    acks.clone(),
                ))
            })
            .collect();
        let reached = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while acks.load(Ordering::SeqCst) < kill_after {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(reached.is_ok(), "round {round}: the burst stalled");
        server.kill().await;
        let mut results = Vec::new();
        for b in buyers {
            let purchases = b.await.unwrap();
            let last = purchases.last().expect("every buyer asked at least once");
            assert!(
                matches!(last.hold, Seen::Unknown) || matches!(last.booking, Some(Seen::Unknown)),
                "round {round}: a buyer stopped before the kill: {last:?}"
            );
            results.extend(purchases);
        }

        // Restart on the same database and retry everything the clients could not know,
        // with the same keys: the first answer if it happened, a new one if it did not.
        server = Server::start(&db.url(), port).await;
        let client = client();
        for b in &mut results {
            if matches!(b.hold, Seen::Unknown) {
                b.hold = attempt(
                    client
                        .post(server.url(&format!("/events/{}/reservations", scene.event_id)))
                        .bearer_auth(&b.token)
                        .header("idempotency-key", &b.hold_key)
                        .json(&json!({"type": "GENERAL", "sectionId": scene.section_id, "quantity": 1})),
                )
                .await;
            }
            if let (Seen::Ok(id), Some(Seen::Unknown)) = (&b.hold, &b.booking) {
                b.booking = Some(
                    attempt(
                        client
                            .post(server.url("/bookings"))
                            .bearer_auth(&b.token)
                            .header("idempotency-key", &b.booking_key)
                            .json(&json!({"reservationIds": [id.parse::<i64>().unwrap()]})),
                    )
                    .await,
                );
            }
        }
        for b in &results {
            if matches!(b.hold, Seen::Unknown) || matches!(b.booking, Some(Seen::Unknown)) {
                unanswered_after_retry += 1;
            }
            if let Seen::Ok(id) = &b.hold {
                acked_holds.push(id.parse::<i64>().unwrap());
            }
            if let Some(Seen::Ok(reference)) = &b.booking {
                acked_bookings.push(reference.clone());
            }
        }
    }

    // Every acknowledged hold and booking is stored; no key made two rows; invariants hold.
    let missing = boxoffice_engine::audit::missing_holds(&db.pool, &acked_holds)
        .await
        .unwrap();
    assert!(missing.is_empty(), "acknowledged holds lost: {missing:?}");
    let missing = boxoffice_engine::audit::missing_bookings(&db.pool, &acked_bookings)
        .await
        .unwrap();
    assert!(
        missing.is_empty(),
        "acknowledged bookings lost: {missing:?}"
    );
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT idempotency_key FROM reservations WHERE idempotency_key IS NOT NULL
                              GROUP BY user_id, event_id, idempotency_key HAVING count(*) > 1) d",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(doubled, 0);
    // Let the restarted actor write what recovery found, then audit.
    let violations = boxoffice_engine::audit::violations(&db.pool, scene.event_id)
        .await
        .unwrap();
    assert!(violations.is_empty(), "{violations:#?}");
    // Every retry after the restart got an answer: each buyer's purchases all ended.
    assert_eq!(unanswered_after_retry, 0);
    assert!(acked_holds.len() >= 600, "each buyer holds at least once");

    // Secrets never reach the logs.
    let logs = server.output.lock().unwrap().clone();
    assert!(!logs.contains(JWT_SECRET), "the JWT secret was logged");
    server.terminate(std::time::Duration::from_secs(10)).await;
}
