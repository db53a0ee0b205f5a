//! Shutdown keeps one deadline, however many actors are still busy.

use std::time::Duration;

use boxoffice_engine::types::{HoldKind, HoldRequest, SettingsUpdate};
use boxoffice_engine::EngineConfig;
use sqlx::Row;

use crate::support::fixture;

// A current-thread runtime: only there can tokio's clock be paused.
#[tokio::test]
async fn shutdown_with_stuck_actors_ends_at_its_one_deadline() {
    let shutdown_timeout = Duration::from_secs(2);
    let config = EngineConfig {
        shutdown_timeout_ms: shutdown_timeout.as_millis() as u64,
        // The flushes below stay stuck for the whole test.
        flush_timeout_ms: 600_000,
        call_timeout_ms: 600_000,
        // The actors share this test's paused clock.
        actor_thread: false,
        idle_timeout_seconds: 86_400,
        ..EngineConfig::default()
    };
    let f = fixture(4, 8, 600, config).await;
    let floor = f.general("Floor", 10).await;
    f.open_sale().await;
    // Three more events of the same organizer, each with a live actor.
    let mut events = vec![(f.event_id, floor)];
    for _ in 0..3 {
        let row = sqlx::query(
            "INSERT INTO events (event_name, event_date, created_by, sale_start_time)
             SELECT event_name, event_date, created_by, sale_start_time FROM events WHERE id = $1
             RETURNING id",
        )
        .bind(f.event_id)
        .fetch_one(f.pool())
        .await
        .unwrap();
        let event: i64 = row.get("id");
        let section = f
            .engine
            .add_section(
                event,
                boxoffice_engine::types::NewSection {
                    name: "Floor".into(),
                    spec: boxoffice_engine::types::SectionSpec::General { capacity: 10 },
                    price_cents: 100,
                    capacity_limit: None,
                },
            )
            .await
            .unwrap()
            .id;
        let open = SettingsUpdate {
            status: Some(boxoffice_engine::types::EventStatus::OnSale),
            ..Default::default()
        };
        f.engine.update_settings(event, open).await.unwrap();
        events.push((event, section));
    }

    // Every event's row locked: each actor's next flush waits on it, with a hold parked.
    let mut lock = f.pool().begin().await.unwrap();
    for (event, _) in &events {
        sqlx::query("SELECT 1 FROM events WHERE id = $1 FOR UPDATE")
            .bind(event)
            .execute(&mut *lock)
            .await
            .unwrap();
    }
    let mut parked = Vec::new();
    for (i, &(event, section)) in events.iter().enumerate() {
        let engine = f.engine.clone();
        let user_id = f.buyers[i];
        parked.push(tokio::spawn(async move {
            let kind = HoldKind::General {
                section_id: section,
                quantity: 1,
            };
            let request = HoldRequest {
                user_id,
                kind,
                idempotency_key: None,
                session_id: None,
            };
            engine.hold(event, request).await
        }));
    }
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(f.pool())
        .await
        .unwrap();
        if waiting as usize == events.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Nothing can finish before the deadline: with the clock paused, tokio jumps straight to
    // each timer, so the elapsed (virtual) time is exactly what shutdown waited for — one
    // deadline, not one per actor.
    tokio::time::pause();
    let started = tokio::time::Instant::now();
    f.engine.shutdown().await;
    let waited = started.elapsed();
    tokio::time::resume();
    assert!(
        waited >= shutdown_timeout && waited < shutdown_timeout + Duration::from_millis(500),
        "shutdown took {waited:?} of virtual time for a {shutdown_timeout:?} deadline"
    );
    // The locks go; a flush abandoned by shutdown may still commit, and then its hold is a
    // true "yes": whatever was acknowledged is stored.
    lock.rollback().await.unwrap();
    let mut acknowledged = Vec::new();
    for p in parked {
        if let Ok(Ok(Ok(outcome))) = tokio::time::timeout(Duration::from_secs(30), p).await {
            acknowledged.push(outcome.hold.id);
        }
    }
    let missing = boxoffice_engine::audit::missing_holds(f.pool(), &acknowledged)
        .await
        .unwrap();
    assert!(
        missing.is_empty(),
        "acknowledged but not stored: {missing:?}"
    );
}
