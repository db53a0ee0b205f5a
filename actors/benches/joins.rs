//! Waiting-room joins against holds, side by side: the same engine, the same database, the
//! same number of requests in flight — the line must take buyers in at least as fast as the
//! engine sells to them. Alternating rounds (holds, joins, joins, holds, …) so that a warming
//! cache or a growing table favours neither.
//!
//! Needs PostgreSQL (TEST_DATABASE_URL, default the local server); creates and drops a
//! database of its own. Run: `cargo bench -p boxoffice-engine --bench joins`

use std::time::Instant;

use boxoffice_engine::testdb::TestDb;
use boxoffice_engine::types::{
    EventStatus, HoldKind, HoldRequest, NewSection, SectionSpec, SettingsUpdate,
};
use boxoffice_engine::waiting_room::WaitingRoomUpdate;
use boxoffice_engine::{Engine, EngineConfig};

/// Requests per round.
const PER_ROUND: usize = 40_000;
/// Rounds of each kind.
const ROUNDS: usize = 5;
/// Requests in flight, as a server under an on-sale would have.
const IN_FLIGHT: usize = 256;

async fn event(db: &TestDb, engine: &Engine, organizer: i64, room: bool) -> (i64, i64) {
    let event_id: i64 = sqlx::query_scalar(
        "INSERT INTO events (event_name, event_date, created_by, sale_start_time, max_tickets_per_user)
         VALUES ('Bench', now() + interval '30 days', $1, now() - interval '1 hour', NULL) RETURNING id",
    )
    .bind(organizer)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let section = NewSection {
        name: "Floor".into(),
        spec: SectionSpec::General {
            capacity: 1_000_000,
        },
        price_cents: 5000,
        capacity_limit: None,
    };
    let section_id = engine.add_section(event_id, section).await.unwrap().id;
    let update = SettingsUpdate {
        status: Some(EventStatus::OnSale),
        waiting_room: WaitingRoomUpdate {
            enabled: Some(room),
            // One a minute: the line barely moves, so every join is a join.
            admit_per_minute: Some(1),
            pass_ttl_seconds: None,
        },
        ..Default::default()
    };
    engine.update_settings(event_id, update).await.unwrap();
    (event_id, section_id)
}

/// Sends `users.len()` requests, `IN_FLIGHT` at a time; returns requests per second.
async fn round<F, Fut>(users: &[i64], send: F) -> f64
where
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let started = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    let mut ok = 0usize;
    for &user in users {
        if running.len() >= IN_FLIGHT {
            ok += usize::from(running.join_next().await.unwrap().unwrap());
        }
        running.spawn(send(user));
    }
    while let Some(done) = running.join_next().await {
        ok += usize::from(done.unwrap());
    }
    assert_eq!(ok, users.len(), "every request acknowledged");
    users.len() as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = TestDb::create().await;
        let organizer: i64 = sqlx::query_scalar(
            "INSERT INTO users (email, password_hash, role) VALUES ('o@x', 'x', 'ORGANIZER') RETURNING id",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let buyers: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO users (email, password_hash) SELECT 'b' || g || '@x', 'x'
             FROM generate_series(1, $1) g RETURNING id",
        )
        .bind((PER_ROUND * ROUNDS) as i32)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        let config = EngineConfig {
            max_in_flight_total: 10_000,
            max_in_flight_per_event: 10_000,
            ..EngineConfig::default()
        };
        let engine = Engine::start(db.pool.clone(), config).await.unwrap();
        let (sale, floor) = event(&db, &engine, organizer, false).await;
        let (line, _) = event(&db, &engine, organizer, true).await;

        println!("{PER_ROUND} requests a round, {IN_FLIGHT} in flight");
        let (mut holds, mut joins) = (Vec::new(), Vec::new());
        for r in 0..ROUNDS {
            // Each join is a new buyer's; holds reuse the same buyers (no per-buyer limit).
            let users = &buyers[r * PER_ROUND..(r + 1) * PER_ROUND];
            let hold = |user: i64| {
                let engine = engine.clone();
                async move {
                    let request = HoldRequest {
                        user_id: user,
                        kind: HoldKind::General { section_id: floor, quantity: 1 },
                        idempotency_key: None,
                        session_id: None,
                    };
                    engine.hold(sale, request).await.is_ok()
                }
            };
            let join = |user: i64| {
                let engine = engine.clone();
                async move { engine.join_queue(line, user).await.is_ok() }
            };
            let (h, j) = if r % 2 == 0 {
                let h = round(users, hold).await;
                (h, round(users, join).await)
            } else {
                let j = round(users, join).await;
                (round(users, hold).await, j)
            };
            println!("round {r}: holds {h:>8.0}/s   joins {j:>8.0}/s   joins/holds {:.2}", j / h);
            holds.push(h);
            joins.push(j);
        }
        holds.sort_by(f64::total_cmp);
        joins.sort_by(f64::total_cmp);
        let (h, j) = (holds[ROUNDS / 2], joins[ROUNDS / 2]);
        println!("median: holds {h:.0}/s, joins {j:.0}/s, joins/holds {:.2}", j / h);
        engine.shutdown().await;
    });
}
