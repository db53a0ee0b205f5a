//! Crashes and database failures: whatever happens, no acknowledged hold is lost and no
//! false "yes" is given.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use boxoffice_engine::types::{HoldKind, HoldRequest};
use boxoffice_engine::{EngineConfig, EngineError, Refusal};

use crate::support::{assert_invariants, fixture, hold_ids_with_status, section_counts};

/// Holds of one ticket each from every buyer, all at once; returns the acknowledged hold ids
/// and how many requests failed with a retryable error. `on_ack` and `on_fail` count them
/// as they happen, for a test that waits on the burst's progress.
async fn burst(
    f: &crate::support::Fixture,
    section_id: i64,
    on_ack: Arc<AtomicUsize>,
    on_fail: Arc<AtomicUsize>,
) -> (Vec<i64>, usize) {
    let tasks: Vec<_> = f
        .buyers
        .iter()
        .map(|&user_id| {
            let engine = f.engine.clone();
            let event = f.event_id;
            let acks = on_ack.clone();
            let fails = on_fail.clone();
            tokio::spawn(async move {
                let kind = HoldKind::General {
                    section_id,
                    quantity: 1,
                };
                let answer = engine
                    .hold(
                        event,
                        HoldRequest {
                            user_id,
                            kind,
                            idempotency_key: None,
                            session_id: None,
                        },
                    )
                    .await;
                match &answer {
                    Ok(_) => acks.fetch_add(1, Ordering::SeqCst),
                    Err(e) if e.is_retryable() => fails.fetch_add(1, Ordering::SeqCst),
                    Err(_) => 0,
                };
                answer
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut failed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(o) => acked.push(o.hold.id),
            Err(e) if e.is_retryable() => failed += 1,
            Err(EngineError::Refused(Refusal::SoldOut)) => {}
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    (acked, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_killed_mid_burst_is_rebuilt_with_every_acknowledged_hold() {
    let f = fixture(3000, 4, 600, EngineConfig::default()).await;
    let floor = f.general("Floor", 2000).await;
    f.open_sale().await;

    let acks = Arc::new(AtomicUsize::new(0));
    let killer = {
        let engine = f.engine.clone();
        let acks = acks.clone();
        let event = f.event_id;
        tokio::spawn(async move {
            // Kill once a few hundred holds are acknowledged: mid-burst, with batches in flight.
            while acks.load(Ordering::SeqCst) < 300 {
                tokio::task::yield_now().await;
            }
            assert!(engine.kill_actor(event), "the actor was alive");
        })
    };
    let (acked, _failed) = burst(&f, floor, acks, Arc::default()).await;
    killer.await.unwrap();

    // The rebuilt actor (started by the supervisor or by the next request) agrees with
    // PostgreSQL, and PostgreSQL has every acknowledged hold.
    f.engine.sync(f.event_id).await.unwrap();
    let stored: HashSet<i64> = hold_ids_with_status(f.pool(), f.event_id, "ACTIVE")
        .await
        .into_iter()
        .collect();
    for id in &acked {
        assert!(
            stored.contains(id),
            "acknowledged hold {id} is missing from PostgreSQL"
        );
    }
    let snapshot = f.engine.snapshot(f.event_id).await.unwrap();
    let counts = section_counts(f.pool(), f.event_id).await;
    let section = snapshot.section(floor).unwrap();
    assert_eq!(
        (
            section.capacity as i32,
            section.available as i32,
            section.held as i32,
            section.booked as i32
        ),
        counts[&floor],
        "the rebuilt inventory equals what PostgreSQL holds"
    );
    assert_eq!(section.held as usize, stored.len());
    assert_invariants(f.pool(), f.event_id).await;

    // And it keeps selling where the old one stopped.
    let remaining = section.available;
    let (more, _) = burst(&f, floor, Arc::default(), Arc::default()).await;
    assert_eq!(
        more.len() as u32,
        remaining,
        "the rest sells, and not one ticket more"
    );
    assert_invariants(f.pool(), f.event_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_that_cannot_commit_fails_its_requests_and_loses_no_acknowledged_hold() {
    let config = EngineConfig {
        flush_timeout_ms: 300,
        ..EngineConfig::default()
    };
    let f = fixture(1500, 4, 600, config).await;
    let floor = f.general("Floor", 5000).await;
    f.open_sale().await;

    // Warm up: the actor is live and some holds are durable.
    let (first, failed) = burst(&f, floor, Arc::default(), Arc::default()).await;
    assert_eq!((first.len(), failed), (1500, 0));

    // Another session locks the event row for longer than the flush timeout: every flush
    // in that window times out and must answer its requests with an error.
    let mut blocker = f.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM events WHERE id = $1 FOR UPDATE")
        .bind(f.event_id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    // The lock is let go once a request has failed — not after a fixed time, which a slow
    // machine could spend before the burst even reached the actor.
    let fails = Arc::new(AtomicUsize::new(0));
    let release = {
        let fails = fails.clone();
        tokio::spawn(async move {
            let seen = tokio::time::timeout(std::time::Duration::from_secs(60), async {
                while fails.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
            .await;
            blocker.rollback().await.unwrap();
            assert!(seen.is_ok(), "no flush failed while the row was locked");
        })
    };
    let (second, failed) = burst(&f, floor, Arc::default(), fails).await;
    release.await.unwrap();
    assert!(
        failed > 0,
        "requests caught by the failed flush got errors, not a yes"
    );

    // Also cut every connection of the pool mid-burst: whatever fails, fails loudly.
    let terminator = {
        let pool = f.pool().clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                let _ = sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                .execute(&pool)
                .await;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
    };
    let (third, _) = burst(&f, floor, Arc::default(), Arc::default()).await;
    terminator.await.unwrap();

    f.engine.sync(f.event_id).await.unwrap();
    let stored: HashSet<i64> = hold_ids_with_status(f.pool(), f.event_id, "ACTIVE")
        .await
        .into_iter()
        .collect();
    for id in first.iter().chain(&second).chain(&third) {
        assert!(stored.contains(id), "acknowledged hold {id} is missing");
    }
    let snapshot = f.engine.snapshot(f.event_id).await.unwrap();
    assert_eq!(snapshot.section(floor).unwrap().held as usize, stored.len());
    assert_invariants(f.pool(), f.event_id).await;
}

#[tokio::test]
async fn the_audit_notices_broken_invariants_and_missing_acknowledgements() {
    let f = fixture(2, 4, 600, EngineConfig::default()).await;
    let floor = f.general("Floor", 10).await;
    f.open_sale().await;
    let (acked, _) = burst(&f, floor, Arc::default(), Arc::default()).await;
    f.engine.sync(f.event_id).await.unwrap();
    assert!(boxoffice_engine::audit::violations(f.pool(), f.event_id)
        .await
        .unwrap()
        .is_empty());
    assert!(boxoffice_engine::audit::missing_holds(f.pool(), &acked)
        .await
        .unwrap()
        .is_empty());
    let phantom = boxoffice_engine::audit::missing_holds(f.pool(), &[acked[0], 987_654_321])
        .await
        .unwrap();
    assert_eq!(phantom, vec![987_654_321]);
    let phantom = boxoffice_engine::audit::missing_bookings(f.pool(), &["BX-NOPE".to_string()])
        .await
        .unwrap();
    assert_eq!(phantom, vec!["BX-NOPE".to_string()]);

    // A hold that vanished from under the counts: the audit must say so.
    sqlx::query("UPDATE reservations SET status = 'CANCELLED' WHERE id = $1")
        .bind(acked[0])
        .execute(f.pool())
        .await
        .unwrap();
    let broken = boxoffice_engine::audit::violations(f.pool(), f.event_id)
        .await
        .unwrap();
    assert!(!broken.is_empty(), "a corrupted count went unnoticed");
}

#[tokio::test]
async fn a_superseded_owner_can_never_write_again() {
    let f = fixture(1, 4, 600, EngineConfig::default()).await;
    let section = f.general("Floor", 10).await;
    // Two loads: the second takes ownership from the first (as a restarted or moved actor
    // would). The first's epoch is now stale, and its flushes are refused by the database.
    let claimant = boxoffice_engine::recovery::Claimant {
        node_id: f.engine.node_id().into(),
        incarnation: f.engine.incarnation().expect("the engine holds a lease"),
    };
    let (_, first) = boxoffice_engine::recovery::load(f.pool(), f.event_id, &claimant)
        .await
        .unwrap();
    let (_, second) = boxoffice_engine::recovery::load(f.pool(), f.event_id, &claimant)
        .await
        .unwrap();
    assert!(second > first);
    // A batch as the hot path writes it (one statement): a new hold and the section's counts.
    let mut writes = boxoffice_engine::write_behind::Writes::default();
    let hold_id = 9_000_000_001;
    let now_ms = chrono::Utc::now().timestamp_millis();
    writes.holds_new.push(boxoffice_engine::inventory::HoldRow {
        id: hold_id,
        user_id: f.buyers[0],
        section_id: section,
        quantity: 1,
        seat_ids: Vec::new(),
        status: boxoffice_engine::types::HoldStatus::Active,
        booking_id: None,
        idempotency_key: None,
        request_fingerprint: None,
        session_id: None,
        expires_at_ms: now_ms + 600_000,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    });
    writes.sections.insert(
        section,
        boxoffice_engine::write_behind::SectionCounts {
            available: 9,
            held: 1,
            booked: 0,
        },
    );
    let before = section_counts(f.pool(), f.event_id).await;
    let stale =
        boxoffice_engine::write_behind::flush::write(f.pool(), f.event_id, first, &writes).await;
    assert!(
        matches!(
            stale,
            Err(boxoffice_engine::write_behind::flush::FlushError::Fenced { .. })
        ),
        "a stale epoch must be fenced: {stale:?}"
    );
    let pool = f.pool().clone();
    let stored = |id: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM reservations WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(stored(hold_id).await, 0, "the fenced batch wrote its hold");
    assert_eq!(
        section_counts(f.pool(), f.event_id).await,
        before,
        "the fenced batch wrote its counts"
    );
    boxoffice_engine::write_behind::flush::write(f.pool(), f.event_id, second, &writes)
        .await
        .expect("the current owner writes");
    assert_eq!(stored(hold_id).await, 1, "the owner's batch is stored");
    assert_eq!(
        section_counts(f.pool(), f.event_id).await[&section],
        (10, 9, 1, 0),
        "the owner's batch wrote the section's counts"
    );
}
