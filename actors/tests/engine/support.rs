//! Fixtures: a fresh database with buyers and an event on sale, an engine on it, and the
//! invariants of docs/ARCHITECTURE.md checked against PostgreSQL.

use std::collections::HashMap;

use boxoffice_engine::testdb::TestDb;
use boxoffice_engine::types::{
    EventId, EventStatus, HoldKind, HoldRequest, NewSection, SectionSpec, SettingsUpdate,
};
use boxoffice_engine::{Engine, EngineConfig};
use sqlx::{PgPool, Row};

/// A database with `buyers` buyers (ids 1..=buyers after the organizer) and one DRAFT event.
pub struct Fixture {
    pub db: TestDb,
    pub engine: Engine,
    pub event_id: EventId,
    /// Buyer user ids.
    pub buyers: Vec<i64>,
}

/// Admission bounds are raised to 10,000 so that bursts test the inventory, not shedding
/// (tests/reliability covers shedding).
pub async fn fixture(
    buyers: usize,
    max_per_user: i32,
    hold_ttl_seconds: i32,
    config: EngineConfig,
) -> Fixture {
    let config = EngineConfig {
        max_in_flight_total: config.max_in_flight_total.max(10_000),
        max_in_flight_per_event: config.max_in_flight_per_event.max(10_000),
        ..config
    };
    let db = TestDb::create().await;
    let organizer: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash, role) VALUES ('org@example.com', 'x', 'ORGANIZER') RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let buyer_ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash)
         SELECT 'buyer' || g || '@example.com', 'x' FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(buyers as i32)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let event_id: i64 = sqlx::query_scalar(
        "INSERT INTO events (event_name, event_date, created_by, sale_start_time, hold_ttl_seconds, max_tickets_per_user)
         VALUES ('Test night', now() + interval '30 days', $1, now() - interval '1 hour', $2, $3) RETURNING id",
    )
    .bind(organizer)
    .bind(hold_ttl_seconds)
    .bind(max_per_user)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let engine = Engine::start(db.pool.clone(), config).await.unwrap();
    Fixture {
        db,
        engine,
        event_id,
        buyers: buyer_ids,
    }
}

impl Fixture {
    /// Adds a GENERAL section and returns its id.
    pub async fn general(&self, name: &str, capacity: u32) -> i64 {
        let section = NewSection {
            name: name.into(),
            spec: SectionSpec::General { capacity },
            price_cents: 5000,
            capacity_limit: None,
        };
        self.engine
            .add_section(self.event_id, section)
            .await
            .unwrap()
            .id
    }

    /// Adds a seated section and returns its id.
    pub async fn reserved(&self, name: &str, rows: u32, seats_per_row: u32) -> i64 {
        let spec = SectionSpec::Seated {
            rows,
            seats_per_row,
        };
        let section = NewSection {
            name: name.into(),
            spec,
            price_cents: 8000,
            capacity_limit: None,
        };
        self.engine
            .add_section(self.event_id, section)
            .await
            .unwrap()
            .id
    }

    /// Puts the event on sale.
    pub async fn open_sale(&self) {
        let update = SettingsUpdate {
            status: Some(EventStatus::OnSale),
            ..Default::default()
        };
        self.engine
            .update_settings(self.event_id, update)
            .await
            .unwrap();
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }
}

/// Section counts as stored: id → (capacity, available, held, booked).
pub async fn section_counts(
    pool: &PgPool,
    event_id: EventId,
) -> HashMap<i64, (i32, i32, i32, i32)> {
    sqlx::query(
        "SELECT id, capacity, available, held, booked FROM event_sections WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.get("id"),
            (
                r.get("capacity"),
                r.get("available"),
                r.get("held"),
                r.get("booked"),
            ),
        )
    })
    .collect()
}

/// Checks the invariants of docs/ARCHITECTURE.md in PostgreSQL, panicking with those broken.
pub async fn assert_invariants(pool: &PgPool, event_id: EventId) {
    let broken = boxoffice_engine::audit::violations(pool, event_id)
        .await
        .unwrap();
    assert!(broken.is_empty(), "invariants broken: {broken:#?}");
}

/// The ids of the reservations with a status, read as every reader does: through
/// `reservations_effective` (an expiry writes no row).
pub async fn hold_ids_with_status(pool: &PgPool, event_id: EventId, status: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM reservations_effective WHERE event_id = $1 AND status = $2")
        .bind(event_id)
        .bind(status)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// A GENERAL hold of `quantity` tickets, without key or session.
pub fn general(user_id: i64, section_id: i64, quantity: u32) -> HoldRequest {
    HoldRequest {
        user_id,
        kind: HoldKind::General {
            section_id,
            quantity,
        },
        idempotency_key: None,
        session_id: None,
    }
}

/// A best-available hold of one seat, without key or session.
pub fn best(user_id: i64, section_id: i64) -> HoldRequest {
    HoldRequest {
        user_id,
        kind: HoldKind::BestAvailable {
            section_id,
            quantity: 1,
            allow_split: false,
        },
        idempotency_key: None,
        session_id: None,
    }
}

/// Runs each future as its own task and collects their outputs in order.
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}
