//! Hold expiry on the actor's own timer, driven by tokio's paused clock: no real sleeping.

use std::time::Duration;

use boxoffice_engine::sweep::{sweep_round, SweepLimits, SweepRound};
use boxoffice_engine::types::{ConfirmRequest, HoldKind, HoldRequest, Requester};
use boxoffice_engine::{Engine, EngineConfig, EngineError, Refusal};

use crate::support::{
    assert_invariants, best, fixture, general, hold_ids_with_status, join_all, section_counts,
};

#[tokio::test]
async fn holds_expire_on_the_actors_timer_and_expiry_is_persisted() {
    // Long timeouts so that no engine timer other than the hold's fires while time is paused.
    let config = EngineConfig {
        idle_timeout_seconds: 86_400,
        // The actors share this test's paused clock.
        actor_thread: false,
        ..EngineConfig::default()
    };
    let f = fixture(3, 4, 60, config).await;
    let floor = f.general("Floor", 10).await;
    let stalls = f.reserved("Stalls", 2, 5).await;
    f.open_sale().await;
    for (i, &user_id) in f.buyers.iter().enumerate() {
        let kind = if i == 0 {
            HoldKind::BestAvailable {
                section_id: stalls,
                quantity: 3,
                allow_split: false,
            }
        } else {
            HoldKind::General {
                section_id: floor,
                quantity: 2,
            }
        };
        let request = HoldRequest {
            user_id,
            kind,
            idempotency_key: None,
            session_id: None,
        };
        f.engine.hold(f.event_id, request).await.unwrap();
    }
    assert_eq!(
        hold_ids_with_status(f.pool(), f.event_id, "ACTIVE")
            .await
            .len(),
        3
    );

    // Thirty seconds on: nothing has expired. Time is resumed before anything waits on
    // PostgreSQL, because a paused clock jumps ahead whenever the runtime waits on I/O.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(30)).await;
    tokio::time::resume();
    f.engine.sync(f.event_id).await.unwrap();
    assert_eq!(
        hold_ids_with_status(f.pool(), f.event_id, "ACTIVE")
            .await
            .len(),
        3
    );
    assert_eq!(f.engine.snapshot(f.event_id).await.unwrap().held, 7);

    // Past sixty seconds the actor's timer fires on its own: its snapshot shows the seats
    // back on sale without any request being sent.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(31)).await;
    let snapshot = f.engine.snapshot(f.event_id).await.unwrap();
    let mut released = snapshot.held == 0;
    for _ in 0..10_000 {
        if released {
            break;
        }
        tokio::task::yield_now().await;
        released = f.engine.snapshot(f.event_id).await.unwrap().held == 0;
    }
    tokio::time::resume();
    assert!(released, "the expiry timer released the holds");

    // And the expiry reached PostgreSQL through the same write-behind.
    f.engine.sync(f.event_id).await.unwrap();
    assert!(hold_ids_with_status(f.pool(), f.event_id, "ACTIVE")
        .await
        .is_empty());
    assert_eq!(
        hold_ids_with_status(f.pool(), f.event_id, "EXPIRED")
            .await
            .len(),
        3
    );
    let counts = section_counts(f.pool(), f.event_id).await;
    assert_eq!(counts[&floor], (10, 10, 0, 0));
    assert_eq!(counts[&stalls], (10, 10, 0, 0));
    assert_invariants(f.pool(), f.event_id).await;

    // Without a row write per hold: the rows still say ACTIVE, and the event's watermark,
    // written with the counts, says they lapsed.
    let (stored_active, watermark_set): (i64, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM reservations WHERE event_id = $1 AND status = 'ACTIVE'),
                (SELECT holds_expired_through IS NOT NULL FROM events WHERE id = $1)",
    )
    .bind(f.event_id)
    .fetch_one(f.pool())
    .await
    .unwrap();
    assert_eq!(stored_active, 3);
    assert!(watermark_set);

    // A restarted node reads them as expired too: nothing held, every ticket on sale.
    f.engine.shutdown().await;
    let engine = Engine::start(f.pool().clone(), EngineConfig::default())
        .await
        .unwrap();
    let snapshot = engine.snapshot(f.event_id).await.unwrap();
    assert_eq!((snapshot.held, snapshot.available), (0, 20));
    let request = general(f.buyers[1], floor, 4);
    engine.hold(f.event_id, request).await.unwrap();
    engine.sync(f.event_id).await.unwrap();
    assert_eq!(
        section_counts(f.pool(), f.event_id).await[&floor],
        (10, 6, 4, 0)
    );
    assert_invariants(f.pool(), f.event_id).await;

    // The sweep writes the three lapsed rows down as EXPIRED, within its budget: a round of
    // one statement of two rows leaves one for the next round. Nobody reading through the
    // view sees a change, and the new hold is left ACTIVE.
    let read = || async {
        sqlx::query_as::<_, (i64, String, chrono::DateTime<chrono::Utc>)>(
            "SELECT id, status, updated_at FROM reservations_effective
             WHERE event_id = $1 ORDER BY id",
        )
        .bind(f.event_id)
        .fetch_all(f.pool())
        .await
        .unwrap()
    };
    let before = read().await;
    let limits = SweepLimits {
        rows_per_statement: 2,
        statements_per_round: 1,
        ..SweepLimits::default()
    };
    let rounds = [
        sweep_round(f.pool(), &limits).await.unwrap(),
        sweep_round(f.pool(), &limits).await.unwrap(),
        sweep_round(f.pool(), &limits).await.unwrap(),
    ];
    let round = |rows_swept, statements, events_done, more| SweepRound {
        rows_swept,
        statements,
        events_done,
        more,
    };
    assert_eq!(
        rounds,
        [
            round(2, 1, 0, true),
            round(1, 1, 1, false),
            round(0, 0, 0, false)
        ]
    );
    assert_eq!(read().await, before, "the view reads every row as before");
    let (disagreeing, stored): (i64, Vec<String>) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE r.status <> v.status OR r.updated_at <> v.updated_at),
                array_agg(r.status ORDER BY r.id)
         FROM reservations r JOIN reservations_effective v ON v.id = r.id
         WHERE r.event_id = $1",
    )
    .bind(f.event_id)
    .fetch_one(f.pool())
    .await
    .unwrap();
    assert_eq!(disagreeing, 0, "the table now says what the view says");
    assert_eq!(stored, ["EXPIRED", "EXPIRED", "EXPIRED", "ACTIVE"]);
    assert_invariants(f.pool(), f.event_id).await;
    engine.shutdown().await;
}

#[tokio::test]
async fn an_idle_actor_without_holds_stops_and_the_next_request_brings_it_back() {
    let config = EngineConfig {
        idle_timeout_seconds: 60,
        actor_thread: false,
        ..EngineConfig::default()
    };
    let f = fixture(1, 4, 60, config).await;
    let floor = f.general("Floor", 10).await;
    f.open_sale().await;
    assert_eq!(f.engine.live_actors(), 1);

    // Past the idle timeout the actor stops by itself (no request, no hold to expire). Its
    // idle check runs every 15 s; one may find the last flush still being acknowledged, so
    // time moves on check by check until the actor is gone.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(61)).await;
    let mut stopped = false;
    'checks: for _ in 0..20 {
        for _ in 0..1_000 {
            if f.engine.live_actors() == 0 {
                stopped = true;
                break 'checks;
            }
            tokio::task::yield_now().await;
        }
        tokio::time::advance(Duration::from_secs(16)).await;
    }
    tokio::time::resume();
    assert!(stopped, "the idle actor stopped");

    // The next request loads the event again and sells as before.
    let request = general(f.buyers[0], floor, 1);
    f.engine.hold(f.event_id, request).await.unwrap();
    assert_eq!(f.engine.live_actors(), 1);
    assert_invariants(f.pool(), f.event_id).await;
}

/// Expiries that write no row, in the middle of a burst: the first wave's holds lapse while
/// a second wave keeps buying, so batches carry expiries and new holds together; the actor
/// is killed once the first wave has lapsed and rebuilt from PostgreSQL, reading its
/// lapsed holds through `events.holds_expired_through`. Real time (the shortest TTL, 10 s):
/// nothing here waits for a fixed time to pass a check — every check is an invariant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_lapse_in_the_middle_of_a_burst_and_a_rebuilt_actor_reads_them_as_expired() {
    const BUYERS: usize = 32;
    let f = fixture(BUYERS, 1000, 10, EngineConfig::default()).await;
    let floor = f.general("Floor", 100_000).await;
    let stalls = f.reserved("Stalls", 20, 50).await;
    f.open_sale().await;
    let engine = f.engine.clone();
    let event = f.event_id;

    // Wave 1: two holds per buyer; a quarter confirm one, a quarter release one.
    let wave_one = f.buyers.iter().enumerate().map(|(i, &buyer)| {
        let engine = engine.clone();
        async move {
            let general = engine.hold(event, general(buyer, floor, 2)).await.unwrap();
            let seat = engine.hold(event, best(buyer, stalls)).await.unwrap();
            let requester = Requester::buyer(buyer);
            let mut booked = 0;
            match i % 4 {
                0 => {
                    let request = ConfirmRequest {
                        requester,
                        hold_ids: vec![general.hold.id],
                        discount_code: None,
                        idempotency_key: None,
                    };
                    engine.confirm(event, request).await.unwrap();
                    booked = 2;
                }
                1 => {
                    engine
                        .release(event, requester, seat.hold.id)
                        .await
                        .unwrap();
                }
                _ => {}
            }
            (
                general.hold.expires_at_ms.max(seat.hold.expires_at_ms),
                booked,
            )
        }
    });
    let wave_one: Vec<(i64, u32)> = join_all(wave_one).await;
    let lapse_ms = wave_one.iter().map(|w| w.0).max().unwrap();
    let booked: u32 = wave_one.iter().map(|w| w.1).sum();
    let clock = boxoffice_engine::clock::Clock::new();

    // Wave 2: every buyer keeps placing holds until a second after wave 1 lapsed; half a
    // second after it lapsed, the actor is killed (its requests in flight fail, retryably).
    let wave_two = f.buyers.iter().enumerate().map(|(i, &buyer)| {
        let engine = engine.clone();
        async move {
            let mut placed = 0u32;
            while clock.now_ms() < lapse_ms + 1_000 {
                let request = if i % 5 == 0 {
                    best(buyer, stalls)
                } else {
                    general(buyer, floor, 1)
                };
                match engine.hold(event, request).await {
                    Ok(_) => placed += 1,
                    // In flight when the actor was killed, or sent while it was rebuilt.
                    Err(e) if e.is_retryable() => {}
                    // A fast machine reaches the buyer's limit or sells the stalls out.
                    Err(EngineError::Refused(Refusal::TicketLimit { .. } | Refusal::SoldOut)) => {
                        break
                    }
                    Err(e) => panic!("hold refused: {e:?}"),
                }
            }
            placed
        }
    });
    let killer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            while clock.now_ms() < lapse_ms + 500 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            engine.kill_actor(event)
        })
    };
    let placed = join_all(wave_two).await;
    assert!(killer.await.unwrap(), "the actor was alive when killed");
    let placed: u32 = placed.iter().sum();
    assert!(placed > 0, "wave 2 placed holds");
    engine.sync(event).await.unwrap();

    // Every wave-1 hold is over; the ones neither confirmed nor released expired without a
    // row write: stored ACTIVE, read EXPIRED.
    let (lapsed, written_expired): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE r.status = 'ACTIVE' AND v.status = 'EXPIRED'),
                count(*) FILTER (WHERE r.status = 'EXPIRED')
         FROM reservations r JOIN reservations_effective v ON v.id = r.id
         WHERE r.event_id = $1 AND r.expires_at <= to_timestamp($2 / 1000.0)",
    )
    .bind(event)
    .bind(lapse_ms as f64)
    .fetch_one(f.pool())
    .await
    .unwrap();
    let wave_one_left = BUYERS as i64 * 2 - BUYERS as i64 / 4 * 2;
    assert!(
        lapsed >= wave_one_left,
        "{lapsed} lapsed, at least {wave_one_left} expected"
    );
    assert_eq!(written_expired, 0, "no expiry was written as a row");
    let still_active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations_effective
         WHERE event_id = $1 AND status = 'ACTIVE' AND expires_at <= to_timestamp($2 / 1000.0)",
    )
    .bind(event)
    .bind(lapse_ms as f64)
    .fetch_one(f.pool())
    .await
    .unwrap();
    assert_eq!(still_active, 0, "a wave-1 hold is still read as ACTIVE");
    assert_invariants(f.pool(), event).await;

    // What the rebuilt actor holds is what PostgreSQL reads as held, and every booking
    // stayed: the counts (checked against the view by the audit) agree with the snapshot.
    let snapshot = engine.snapshot(event).await.unwrap();
    assert_eq!(snapshot.booked, booked);
    engine.sync(event).await.unwrap();
    let (held, booked_stored): (i64, i64) =
        sqlx::query_as("SELECT sum(held), sum(booked) FROM event_sections WHERE event_id = $1")
            .bind(event)
            .fetch_one(f.pool())
            .await
            .unwrap();
    assert_eq!(booked_stored, i64::from(booked));
    let after = engine.snapshot(event).await.unwrap();
    assert!(
        i64::from(after.held) <= held && held <= i64::from(snapshot.held),
        "stored held {held} between the snapshots' {} and {}",
        after.held,
        snapshot.held
    );
    assert_invariants(f.pool(), event).await;
    engine.shutdown().await;
}
