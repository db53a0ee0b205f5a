//! The sweep that writes lapsed holds down as EXPIRED, run by several sweepers at once while
//! buyers keep holding and releasing, with the stored rows checked against the view.

use std::time::Duration;

use boxoffice_engine::sweep::{sweep_round, SweepLimits};
use boxoffice_engine::types::{ConfirmRequest, Requester};
use boxoffice_engine::EngineConfig;
use chrono::{DateTime, Utc};

use crate::support::{assert_invariants, best, fixture, general, join_all};

/// Real time (the shortest TTL, 10 s); every wait is for a state, bounded, and every check
/// an invariant or an exact count, so the machine's speed changes nothing but the duration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sweeps_write_each_lapsed_hold_down_once_while_buyers_keep_buying() {
    const BUYERS: usize = 24;
    let f = fixture(BUYERS, 1000, 10, EngineConfig::default()).await;
    let floor = f.general("Floor", 100_000).await;
    let stalls = f.reserved("Stalls", 10, 30).await;
    f.open_sale().await;
    let (engine, event, pool) = (f.engine.clone(), f.event_id, f.pool().clone());

    // Wave 1, left to lapse: three floor holds and a seat per buyer; a quarter confirm a
    // floor hold, a quarter release their seat.
    let wave_one = f.buyers.iter().enumerate().map(|(i, &buyer)| {
        let engine = engine.clone();
        async move {
            let mut lapse_ms = 0;
            let mut floor_holds = Vec::new();
            for _ in 0..3 {
                let hold = engine.hold(event, general(buyer, floor, 1)).await.unwrap();
                lapse_ms = hold.hold.expires_at_ms.max(lapse_ms);
                floor_holds.push(hold.hold.id);
            }
            let seat = engine.hold(event, best(buyer, stalls)).await.unwrap();
            let requester = Requester::buyer(buyer);
            match i % 4 {
                0 => {
                    let request = ConfirmRequest {
                        requester,
                        hold_ids: vec![floor_holds[0]],
                        discount_code: None,
                        idempotency_key: None,
                    };
                    engine.confirm(event, request).await.unwrap();
                }
                1 => {
                    engine
                        .release(event, requester, seat.hold.id)
                        .await
                        .unwrap();
                }
                _ => {}
            }
            lapse_ms.max(seat.hold.expires_at_ms)
        }
    });
    let lapse_ms = join_all(wave_one).await.into_iter().max().unwrap();
    let lapse = DateTime::<Utc>::from_timestamp_millis(lapse_ms).unwrap();

    // Until the actor has expired wave 1 and its watermark is stored.
    let mut expired = false;
    for _ in 0..600 {
        engine.sync(event).await.unwrap();
        let watermark: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT holds_expired_through FROM events WHERE id = $1")
                .bind(event)
                .fetch_one(&pool)
                .await
                .unwrap();
        if watermark.is_some_and(|w| w >= lapse) {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(expired, "wave 1 was expired within a minute of its lapse");
    let wave_one_read = read_view(&pool, event, lapse).await;
    let lapsed = stored_active_read_expired(&pool, event).await;
    // 3 floor + 1 seat per buyer, less a quarter's confirmed hold and a quarter's release.
    let expected = (BUYERS * 4 - BUYERS / 4 * 2) as i64;
    assert_eq!(lapsed, expected, "lapsed holds stored ACTIVE, read EXPIRED");

    // Wave 2 holds and releases while three sweepers run small rounds side by side.
    let buying = f.buyers.iter().map(|&buyer| {
        let engine = engine.clone();
        async move {
            let mut kept = 0u32;
            for n in 0..12 {
                let hold = engine.hold(event, general(buyer, floor, 1)).await.unwrap();
                if n % 2 == 0 {
                    let requester = Requester::buyer(buyer);
                    engine
                        .release(event, requester, hold.hold.id)
                        .await
                        .unwrap();
                } else {
                    kept += 1;
                }
            }
            kept
        }
    });
    let limits = SweepLimits {
        rows_per_statement: 7,
        statements_per_round: 3,
        ..SweepLimits::default()
    };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweepers: Vec<_> = (0..3)
        .map(|_| {
            let (pool, done) = (pool.clone(), done.clone());
            async move {
                let mut swept = 0u64;
                loop {
                    let round = sweep_round(&pool, &limits).await.unwrap();
                    swept += round.rows_swept;
                    let idle = round.statements == 0;
                    if idle && done.load(std::sync::atomic::Ordering::Relaxed) {
                        return swept;
                    }
                    if idle {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        })
        .collect();
    let sweepers = tokio::spawn(join_all(sweepers));
    let kept: u32 = join_all(buying).await.iter().sum();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let swept: u64 = sweepers.await.unwrap().iter().sum();
    engine.sync(event).await.unwrap();

    // Each lapsed hold was written down exactly once, by one sweeper or another; readers
    // saw no change; the table now says what the view says; wave 2 is untouched.
    assert_eq!(swept, expected as u64, "rows rewritten over all sweepers");
    assert_eq!(stored_active_read_expired(&pool, event).await, 0);
    assert_eq!(read_view(&pool, event, lapse).await, wave_one_read);
    let (disagreeing, active_after_lapse, swept_through): (i64, i64, Option<DateTime<Utc>>) =
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE r.status <> v.status OR r.updated_at <> v.updated_at),
                    count(*) FILTER (WHERE r.status = 'ACTIVE' AND r.expires_at > $2),
                    (SELECT holds_swept_through FROM events WHERE id = $1)
             FROM reservations r JOIN reservations_effective v ON v.id = r.id
             WHERE r.event_id = $1",
        )
        .bind(event)
        .bind(lapse)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(disagreeing, 0, "stored and read status agree on every row");
    assert_eq!(active_after_lapse, i64::from(kept), "wave 2's kept holds");
    assert!(swept_through.is_some_and(|s| s >= lapse));
    assert_invariants(&pool, event).await;
    engine.shutdown().await;
}

/// Wave 1's rows as every reader sees them.
async fn read_view(
    pool: &sqlx::PgPool,
    event: i64,
    lapse: DateTime<Utc>,
) -> Vec<(i64, String, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT id, status, updated_at FROM reservations_effective
         WHERE event_id = $1 AND expires_at <= $2 ORDER BY id",
    )
    .bind(event)
    .bind(lapse)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Rows stored ACTIVE that read EXPIRED: lapsed and not yet swept.
async fn stored_active_read_expired(pool: &sqlx::PgPool, event: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM reservations r JOIN reservations_effective v ON v.id = r.id
         WHERE r.event_id = $1 AND r.status = 'ACTIVE' AND v.status = 'EXPIRED'",
    )
    .bind(event)
    .fetch_one(pool)
    .await
    .unwrap()
}
