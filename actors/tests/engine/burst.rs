//! Thousands of buyers at once on one event with fewer seats than asked for.

use std::collections::HashSet;

use boxoffice_engine::types::{ConfirmRequest, HoldKind, HoldRequest, Requester};
use boxoffice_engine::{EngineConfig, EngineError, Refusal};

use crate::support::{assert_invariants, fixture, hold_ids_with_status, section_counts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_6000_holds_grants_exactly_capacity_and_postgres_agrees() {
    let f = fixture(6000, 4, 600, EngineConfig::default()).await;
    let floor = f.general("Floor", 1000).await;
    let stalls = f.reserved("Stalls", 20, 50).await; // 1,000 seats
    f.open_sale().await;

    // 3,000 buyers want 1 floor ticket, 3,000 want 2 adjacent seats: 3,000 + 6,000 asked
    // for 2,000 places.
    let mut tasks = Vec::new();
    for (i, &user_id) in f.buyers.iter().enumerate() {
        let engine = f.engine.clone();
        let kind = if i % 2 == 0 {
            HoldKind::General {
                section_id: floor,
                quantity: 1,
            }
        } else {
            HoldKind::BestAvailable {
                section_id: stalls,
                quantity: 2,
                allow_split: false,
            }
        };
        let request = HoldRequest {
            user_id,
            kind,
            idempotency_key: None,
            session_id: None,
        };
        let event = f.event_id;
        tasks.push(tokio::spawn(
            async move { engine.hold(event, request).await },
        ));
    }
    let mut granted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcome) => granted.push(outcome.hold),
            Err(EngineError::Refused(Refusal::SoldOut | Refusal::SeatUnavailable { .. })) => {
                refused += 1
            }
            Err(other) => panic!("unexpected answer: {other:?}"),
        }
    }
    let floor_granted: u32 = granted
        .iter()
        .filter(|h| h.section_id == floor)
        .map(|h| h.quantity)
        .sum();
    let stalls_granted: u32 = granted
        .iter()
        .filter(|h| h.section_id == stalls)
        .map(|h| h.quantity)
        .sum();
    assert_eq!(
        floor_granted, 1000,
        "exactly the floor's capacity was granted"
    );
    assert_eq!(
        stalls_granted, 1000,
        "exactly the stalls' capacity was granted"
    );
    assert_eq!(granted.len() + refused, 6000);

    // Every acknowledged hold is in PostgreSQL, and nothing else is.
    let stored: HashSet<i64> = hold_ids_with_status(f.pool(), f.event_id, "ACTIVE")
        .await
        .into_iter()
        .collect();
    let acked: HashSet<i64> = granted.iter().map(|h| h.id).collect();
    assert_eq!(
        stored, acked,
        "PostgreSQL holds exactly the acknowledged holds"
    );
    let counts = section_counts(f.pool(), f.event_id).await;
    assert_eq!(counts[&floor], (1000, 0, 1000, 0));
    assert_eq!(counts[&stalls], (1000, 0, 1000, 0));
    // Best-available gave adjacent pairs: every pair is one row, consecutive seat numbers.
    let split: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations r
         WHERE r.section_id = $1 AND (SELECT count(DISTINCT s.row_index) FROM seats s WHERE s.id = ANY (r.seat_ids)) <> 1
            OR r.section_id = $1 AND (SELECT max(s.seat_number) - min(s.seat_number) FROM seats s WHERE s.id = ANY (r.seat_ids)) <> 1",
    )
    .bind(stalls)
    .fetch_one(f.pool())
    .await
    .unwrap();
    assert_eq!(split, 0, "every best-available pair is side by side");
    let status: String = sqlx::query_scalar("SELECT status FROM events WHERE id = $1")
        .bind(f.event_id)
        .fetch_one(f.pool())
        .await
        .unwrap();
    assert_eq!(status, "SOLD_OUT");
    assert_invariants(f.pool(), f.event_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_confirms_and_the_ticket_limit_hold_for_one_buyer() {
    let f = fixture(1, 4, 600, EngineConfig::default()).await;
    let floor = f.general("Floor", 100).await;
    f.open_sale().await;
    let buyer = f.buyers[0];
    // One buyer fires 40 holds of one ticket at once: only 4 may succeed.
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let engine = f.engine.clone();
            let event = f.event_id;
            tokio::spawn(async move {
                let kind = HoldKind::General {
                    section_id: floor,
                    quantity: 1,
                };
                engine
                    .hold(
                        event,
                        HoldRequest {
                            user_id: buyer,
                            kind,
                            idempotency_key: None,
                            session_id: None,
                        },
                    )
                    .await
            })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(o) => held.push(o.hold.id),
            Err(EngineError::Refused(Refusal::TicketLimit { limit: 4, .. })) => {}
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(held.len(), 4);
    // Two confirms race for the same holds: one booking wins, the other finds them gone.
    let confirm = |ids: Vec<i64>| ConfirmRequest {
        requester: Requester::buyer(buyer),
        hold_ids: ids,
        discount_code: None,
        idempotency_key: None,
    };
    let (a, b) = tokio::join!(
        f.engine.confirm(f.event_id, confirm(held.clone())),
        f.engine.confirm(f.event_id, confirm(held.clone()))
    );
    assert!(
        a.is_ok() != b.is_ok(),
        "exactly one confirm wins: {a:?} / {b:?}"
    );
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings WHERE event_id = $1")
        .bind(f.event_id)
        .fetch_one(f.pool())
        .await
        .unwrap();
    assert_eq!(bookings, 1);
    assert_invariants(f.pool(), f.event_id).await;
}
