//! The database's constraints are a backstop, never the check: every decision that would
//! break one is refused by the inventory first, alone, while the decisions batched with it
//! commit. And idempotency keys keep meaning one request across a reload.
//!
//! To put many decisions into one batch deterministically, the tests hold the event row's
//! lock (as a slow flush would): the first flush waits on it, and everything decided
//! meanwhile fills the next batch.

use std::sync::Arc;

use boxoffice_engine::types::{
    ConfirmRequest, DiscountAmount, HoldKind, HoldRequest, NewDiscount, NewSection, Requester,
    SectionSpec, SettingsUpdate,
};
use boxoffice_engine::{Engine, EngineConfig, EngineError, Refusal};
use sqlx::PgPool;

use crate::support::{assert_invariants, fixture, Fixture};

fn general(user_id: i64, section_id: i64, quantity: u32, key: Option<&str>) -> HoldRequest {
    HoldRequest {
        user_id,
        kind: HoldKind::General {
            section_id,
            quantity,
        },
        idempotency_key: key.map(String::from),
        session_id: None,
    }
}

fn seats(user_id: i64, seat_ids: Vec<i64>) -> HoldRequest {
    HoldRequest {
        user_id,
        kind: HoldKind::Seats { seat_ids },
        idempotency_key: None,
        session_id: None,
    }
}

fn confirm(
    requester: Requester,
    hold_ids: Vec<i64>,
    code: Option<&str>,
    key: Option<&str>,
) -> ConfirmRequest {
    ConfirmRequest {
        requester,
        hold_ids,
        discount_code: code.map(String::from),
        idempotency_key: key.map(String::from),
    }
}

fn refusal<T: std::fmt::Debug>(answer: Result<T, EngineError>) -> Refusal {
    match answer {
        Err(EngineError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Waits until some session of this database waits for a lock: the flush is stalled.
async fn until_a_flush_waits_for_the_lock(pool: &PgPool) {
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Waits until the actor has decided one more change than `before` (its snapshot version).
async fn until_decided(engine: &Engine, event_id: i64, before: u64) -> u64 {
    loop {
        let version = engine.snapshot(event_id).await.unwrap().version;
        if version > before {
            return version;
        }
        tokio::task::yield_now().await;
    }
}

type Pending<T> = tokio::task::JoinHandle<Result<T, EngineError>>;

/// Sends a decision that will be accepted, and returns once the actor has made it (its reply
/// is parked behind the stalled flush).
async fn accepted<T, F>(f: &Fixture, version: &mut u64, send: F) -> Pending<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
{
    let task = tokio::spawn(send);
    *version = until_decided(&f.engine, f.event_id, *version).await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_the_database_would_refuse_is_refused_alone_and_its_batch_mates_commit() {
    let config = EngineConfig {
        // The stall below is as long as the test needs; no flush may time out meanwhile.
        flush_timeout_ms: 120_000,
        ..EngineConfig::default()
    };
    let f = fixture(6, 8, 600, config).await;
    let (buyer, other, third, bystander) = (f.buyers[0], f.buyers[1], f.buyers[2], f.buyers[3]);
    let floor = f.general("Floor", 6).await;
    let stalls = f.reserved("Stalls", 1, 4).await;
    f.open_sale().await;
    let once = NewDiscount {
        code: "once".into(),
        amount: DiscountAmount::PercentOff(10),
        max_uses: 1,
        valid_from_ms: None,
        valid_until_ms: None,
    };
    f.engine
        .add_discount(f.event_id, once.clone())
        .await
        .unwrap();
    let e = f.engine.clone();
    let event = f.event_id;
    let mut held = Vec::new();
    for user in [buyer, buyer, other, third] {
        held.push(
            e.hold(event, general(user, floor, 1, None))
                .await
                .unwrap()
                .hold
                .id,
        );
    }
    let seat_ids: Vec<i64> = e
        .snapshot(event)
        .await
        .unwrap()
        .section(stalls)
        .unwrap()
        .seats
        .clone()
        .unwrap()
        .rows[0]
        .seats
        .iter()
        .map(|s| s.id)
        .collect();
    // The buyer books their first hold with key K (committed before the stall).
    let first = e
        .confirm(
            event,
            confirm(Requester::buyer(buyer), vec![held[0]], None, Some("K")),
        )
        .await
        .unwrap();

    // Stall: lock the event row, then let one flush start and wait on it.
    let mut lock = f.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM events WHERE id = $1 FOR UPDATE")
        .bind(event)
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut version = e.snapshot(event).await.unwrap().version;
    let trigger = {
        let e = e.clone();
        accepted(&f, &mut version, async move {
            e.hold(event, general(bystander, floor, 1, None)).await
        })
        .await
    };
    until_a_flush_waits_for_the_lock(f.pool()).await;

    // The batch that fills now: each accepted decision next to the one that would break a
    // constraint of the same table.
    let ok_hold = {
        let e = e.clone();
        accepted(&f, &mut version, async move {
            e.hold(event, general(bystander, floor, 1, Some("H"))).await
        })
        .await
    };
    // reservations_idempotency_key: the same buyer's key for another request.
    assert_eq!(
        refusal(e.hold(event, general(bystander, floor, 2, Some("H"))).await),
        Refusal::IdempotencyKeyReused
    );
    // bookings_idempotency_key: an organizer books the buyer's second hold with the
    // buyer's key K.
    let staff = Requester {
        user_id: 1,
        privileged: true,
    };
    assert_eq!(
        refusal(
            e.confirm(event, confirm(staff, vec![held[1]], None, Some("K")))
                .await
        ),
        Refusal::IdempotencyKeyReused
    );
    // discounts_used_check: two bookings race for the last use of a code.
    let ok_booking = {
        let e = e.clone();
        let held = held[2];
        accepted(&f, &mut version, async move {
            e.confirm(
                event,
                confirm(Requester::buyer(other), vec![held], Some("ONCE"), None),
            )
            .await
        })
        .await
    };
    assert_eq!(
        refusal(
            e.confirm(
                event,
                confirm(Requester::buyer(third), vec![held[3]], Some("once"), None)
            )
            .await
        ),
        Refusal::DiscountExhausted
    );
    // event_sections_counts_check: more tickets than are left (6 − 6 taken).
    assert_eq!(
        refusal(e.hold(event, general(other, floor, 1, None)).await),
        Refusal::SoldOut
    );
    // seats_owner_check: one seat for two holds.
    let ok_seat = {
        let e = e.clone();
        let seat = seat_ids[0];
        accepted(&f, &mut version, async move {
            e.hold(event, seats(other, vec![seat])).await
        })
        .await
    };
    assert_eq!(
        refusal(
            e.hold(event, seats(third, vec![seat_ids[1], seat_ids[0]]))
                .await
        ),
        Refusal::SeatUnavailable {
            seat_ids: vec![seat_ids[0]]
        }
    );
    // discounts_event_code_key: the same code in other letters.
    assert_eq!(
        refusal(
            e.add_discount(
                event,
                NewDiscount {
                    code: "oNCE".into(),
                    ..once.clone()
                }
            )
            .await
        ),
        Refusal::DiscountExists
    );
    // event_sections_name_key: a section name taken.
    let dup = NewSection {
        name: "Floor".into(),
        spec: SectionSpec::General { capacity: 1 },
        price_cents: 1,
        capacity_limit: None,
    };
    assert_eq!(
        refusal(e.add_section(event, dup).await),
        Refusal::SectionExists
    );
    // events_hold_ttl_check / events_max_tickets_check: rules out of range.
    let bad_ttl = SettingsUpdate {
        hold_ttl_seconds: Some(5),
        ..Default::default()
    };
    assert!(matches!(
        refusal(e.update_settings(event, bad_ttl).await),
        Refusal::Invalid(_)
    ));
    let bad_max = SettingsUpdate {
        max_tickets_per_user: Some(Some(1_001)),
        ..Default::default()
    };
    assert!(matches!(
        refusal(e.update_settings(event, bad_max).await),
        Refusal::Invalid(_)
    ));

    // Nothing of the stalled batches is stored yet; release the lock and every accepted
    // decision commits.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations WHERE event_id = $1")
        .bind(event)
        .fetch_one(f.pool())
        .await
        .unwrap();
    assert_eq!(stored, 4, "only the holds made before the stall");
    lock.commit().await.unwrap();
    let trigger = trigger.await.unwrap().unwrap();
    let ok_hold = ok_hold.await.unwrap().unwrap();
    let ok_booking = ok_booking.await.unwrap().unwrap();
    let ok_seat = ok_seat.await.unwrap().unwrap();

    let pool = f.pool();
    for id in [trigger.hold.id, ok_hold.hold.id, ok_seat.hold.id] {
        let status: String = sqlx::query_scalar("SELECT status FROM reservations WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(status, "ACTIVE");
    }
    let keyed: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM bookings WHERE event_id = $1 AND idempotency_key = 'K'")
            .bind(event)
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(keyed, vec![first.booking.id]);
    let used: i32 = sqlx::query_scalar("SELECT used FROM discounts WHERE event_id = $1")
        .bind(event)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(used, 1);
    let booked: String = sqlx::query_scalar("SELECT status FROM bookings WHERE id = $1")
        .bind(ok_booking.booking.id)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(booked, "CONFIRMED");
    // No flush failed, so the actor was never rebuilt.
    assert_eq!(f.engine.live_actors(), 1);
    assert_invariants(pool, event).await;
}

/// Starts a second engine on the same database, as a restarted node would: the event is
/// loaded from PostgreSQL and its epoch bumped, so the first engine is fenced off.
async fn reload(f: &Fixture) -> Engine {
    f.engine.shutdown().await;
    Engine::start(f.pool().clone(), EngineConfig::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_key_is_recognised_after_a_reload() {
    let f = fixture(2, 8, 600, EngineConfig::default()).await;
    let buyer = f.buyers[0];
    let floor = f.general("Floor", 10).await;
    f.open_sale().await;
    let event = f.event_id;
    let first_hold = f
        .engine
        .hold(event, general(buyer, floor, 2, Some("H")))
        .await
        .unwrap();
    let other_hold = f
        .engine
        .hold(event, general(buyer, floor, 1, None))
        .await
        .unwrap();
    let booking = f
        .engine
        .confirm(
            event,
            confirm(
                Requester::buyer(buyer),
                vec![first_hold.hold.id],
                None,
                Some("B"),
            ),
        )
        .await
        .unwrap();

    let engine = Arc::new(reload(&f).await);
    // A different request with a used key: refused, after the reload as before it.
    assert_eq!(
        refusal(
            engine
                .hold(event, general(buyer, floor, 1, Some("H")))
                .await
        ),
        Refusal::IdempotencyKeyReused
    );
    assert_eq!(
        refusal(
            engine
                .confirm(
                    event,
                    confirm(
                        Requester::buyer(buyer),
                        vec![other_hold.hold.id],
                        None,
                        Some("B")
                    ),
                )
                .await
        ),
        Refusal::IdempotencyKeyReused
    );
    // The same requests: the first answers again, nothing new is made.
    let again = engine
        .hold(event, general(buyer, floor, 2, Some("H")))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.hold.id, first_hold.hold.id);
    let again = engine
        .confirm(
            event,
            confirm(
                Requester::buyer(buyer),
                vec![first_hold.hold.id],
                None,
                Some("B"),
            ),
        )
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(
        again.booking.booking_reference,
        booking.booking.booking_reference
    );
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings WHERE event_id = $1")
        .bind(event)
        .fetch_one(f.pool())
        .await
        .unwrap();
    assert_eq!(bookings, 1);
    engine.shutdown().await;
    assert_invariants(f.pool(), event).await;
}
