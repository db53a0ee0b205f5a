//! Fixtures: a fresh database with buyers and an event on sale, an engine on it, and the
//! invariants of DESIGN.md checked against PostgreSQL.

use std::collections::HashMap;

use boxoffice_engine::testdb::TestDb;
use boxoffice_engine::types::{EventId, EventStatus, NewSection, SectionSpec, SettingsUpdate};
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

pub async fn fixture(
    buyers: usize,
    max_per_user: i32,
    hold_ttl_seconds: i32,
    config: EngineConfig,
) -> Fixture {
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
        };
        self.engine
            .add_section(self.event_id, section)
            .await
            .unwrap()
            .id
    }

    /// Adds a RESERVED section and returns its id.
    pub async fn reserved(&self, name: &str, rows: u32, seats_per_row: u32) -> i64 {
        let spec = SectionSpec::Reserved {
            rows,
            seats_per_row,
        };
        let section = NewSection {
            name: name.into(),
            spec,
            price_cents: 8000,
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

/// Checks the invariants of DESIGN.md in PostgreSQL, panicking with the first one broken.
pub async fn assert_invariants(pool: &PgPool, event_id: EventId) {
    // 1. available + held + booked = capacity (a CHECK constraint), and held / booked equal
    //    what the ACTIVE / CONFIRMED reservations add up to.
    let mismatched: Vec<(i64, i32, i64, i32, i64)> = sqlx::query_as(
        "SELECT s.id, s.held, COALESCE(sum(r.quantity) FILTER (WHERE r.status = 'ACTIVE'), 0),
                s.booked, COALESCE(sum(r.quantity) FILTER (WHERE r.status = 'CONFIRMED'), 0)
         FROM event_sections s LEFT JOIN reservations r ON r.section_id = s.id
         WHERE s.event_id = $1
         GROUP BY s.id
         HAVING s.held <> COALESCE(sum(r.quantity) FILTER (WHERE r.status = 'ACTIVE'), 0)
             OR s.booked <> COALESCE(sum(r.quantity) FILTER (WHERE r.status = 'CONFIRMED'), 0)
             OR s.available + s.held + s.booked <> s.capacity OR s.available < 0",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        mismatched.is_empty(),
        "section counts disagree with reservations: {mismatched:?}"
    );

    // 2. A seat is in at most one ACTIVE hold or CONFIRMED booking, and the seat rows agree.
    let doubled: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT seat, count(*) FROM reservations, unnest(seat_ids) AS seat
         WHERE event_id = $1 AND status IN ('ACTIVE', 'CONFIRMED')
         GROUP BY seat HAVING count(*) > 1",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        doubled.is_empty(),
        "seats in two holds or bookings: {doubled:?}"
    );
    let disagreeing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM seats s
         LEFT JOIN reservations r ON r.event_id = s.event_id AND s.id = ANY (r.seat_ids)
                                  AND r.status IN ('ACTIVE', 'CONFIRMED')
         WHERE s.event_id = $1 AND NOT (
             (r.id IS NULL AND s.status = 'AVAILABLE')
          OR (r.status = 'ACTIVE' AND s.status = 'RESERVED' AND s.reservation_id = r.id)
          OR (r.status = 'CONFIRMED' AND s.status = 'BOOKED' AND s.booking_id = r.booking_id))",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(disagreeing, 0, "seat rows disagree with reservations");

    // 4. Per buyer: held + booked ≤ max_tickets_per_user.
    let over: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT r.user_id, sum(r.quantity) FROM reservations r JOIN events e ON e.id = r.event_id
         WHERE r.event_id = $1 AND r.status IN ('ACTIVE', 'CONFIRMED')
         GROUP BY r.user_id, e.max_tickets_per_user HAVING sum(r.quantity) > e.max_tickets_per_user",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(over.is_empty(), "buyers over the limit: {over:?}");

    // The event's total agrees with its sections.
    let (stored, summed): (i32, i64) = sqlx::query_as(
        "SELECT e.available_seats, COALESCE(sum(s.available), 0) FROM events e
         LEFT JOIN event_sections s ON s.event_id = e.id WHERE e.id = $1 GROUP BY e.id",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        i64::from(stored),
        summed,
        "events.available_seats disagrees with its sections"
    );
}

/// The ids of the reservations stored with a status.
pub async fn hold_ids_with_status(pool: &PgPool, event_id: EventId, status: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM reservations WHERE event_id = $1 AND status = $2")
        .bind(event_id)
        .bind(status)
        .fetch_all(pool)
        .await
        .unwrap()
}
