//! Hold expiry on the actor's own timer, driven by tokio's paused clock: no real sleeping.

use std::time::Duration;

use boxoffice_engine::types::{HoldKind, HoldRequest};
use boxoffice_engine::EngineConfig;

use crate::support::{assert_invariants, fixture, hold_ids_with_status, section_counts};

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
    let request = HoldRequest {
        user_id: f.buyers[0],
        kind: HoldKind::General {
            section_id: floor,
            quantity: 1,
        },
        idempotency_key: None,
        session_id: None,
    };
    f.engine.hold(f.event_id, request).await.unwrap();
    assert_eq!(f.engine.live_actors(), 1);
    assert_invariants(f.pool(), f.event_id).await;
}
