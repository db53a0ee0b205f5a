//! Checking the invariants of docs/ARCHITECTURE.md against what PostgreSQL holds. Used by tests after
//! every concurrent scenario and by the load generator after every run.

use sqlx::PgPool;

use crate::types::EventId;

/// Every invariant violation found for an event, in words. Empty means all hold:
///
/// 1. per section: available + held + booked = capacity, nothing negative, and held / booked
///    equal what the ACTIVE / CONFIRMED reservations add up to;
/// 2. a seat is in at most one ACTIVE hold or CONFIRMED booking, and the seat rows agree;
/// 4. per buyer: held + booked ≤ max_tickets_per_user;
/// 8. the waiting room is one line: its ranks are 0..n without a gap, the buyers let in
///    are exactly its front, and an early arrival is unplaced only while nobody is placed;
///
/// A hold's status is read through `reservations_effective` (an expiry writes no row), so
/// a wrong `holds_expired_through` shows as held counts that disagree with the holds.
///
/// Plus the event's `available_seats` equals the sum of its sections', and every reservation
/// names an existing buyer and a section of its event (reservations carry no foreign keys:
/// see migrations/20261129000003_hot_path.sql).
pub async fn violations(pool: &PgPool, event_id: EventId) -> Result<Vec<String>, sqlx::Error> {
    let mut found = Vec::new();
    let sections: Vec<(i64, i32, i32, i32, i32, i64, i64)> = sqlx::query_as(
        "SELECT s.id, s.capacity, s.available, s.held, s.booked,
                COALESCE(sum(r.quantity) FILTER (WHERE r.status = 'ACTIVE'), 0),
                COALESCE(sum(r.quantity) FILTER (WHERE r.status = 'CONFIRMED'), 0)
         FROM event_sections s LEFT JOIN reservations_effective r ON r.section_id = s.id
         WHERE s.event_id = $1 GROUP BY s.id ORDER BY s.id",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await?;
    for (id, capacity, available, held, booked, active, confirmed) in sections {
        if available < 0 || held < 0 || booked < 0 || available + held + booked != capacity {
            found.push(format!(
                "section {id}: available {available} + held {held} + booked {booked} != capacity {capacity}"
            ));
        }
        if i64::from(held) != active || i64::from(booked) != confirmed {
            found.push(format!(
                "section {id}: counts held {held} / booked {booked}, reservations {active} / {confirmed}"
            ));
        }
    }
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT seat FROM reservations_effective, unnest(seat_ids) AS seat
                               WHERE event_id = $1 AND status IN ('ACTIVE', 'CONFIRMED')
                               GROUP BY seat HAVING count(*) > 1) d",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await?;
    if doubled > 0 {
        found.push(format!("{doubled} seats are in two holds or bookings"));
    }
    // Owned seats are unnested once and hash-joined, not matched with `= ANY` per row
    // (quadratic on a 20,000-seat section).
    let disagreeing: i64 = sqlx::query_scalar(
        "WITH owned AS (
             SELECT seat, r.id AS reservation_id, r.status, r.booking_id
             FROM reservations_effective r, unnest(r.seat_ids) AS seat
             WHERE r.event_id = $1 AND r.status IN ('ACTIVE', 'CONFIRMED'))
         SELECT count(*) FROM seats s LEFT JOIN owned o ON o.seat = s.id
         WHERE s.event_id = $1 AND NOT (
             (o.reservation_id IS NULL AND s.status = 'AVAILABLE')
          OR (o.status = 'ACTIVE' AND s.status = 'RESERVED' AND s.reservation_id = o.reservation_id)
          OR (o.status = 'CONFIRMED' AND s.status = 'BOOKED' AND s.booking_id = o.booking_id))",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await?;
    if disagreeing > 0 {
        found.push(format!(
            "{disagreeing} seat rows disagree with the reservations"
        ));
    }
    let over: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT r.user_id FROM reservations_effective r JOIN events e ON e.id = r.event_id
                               WHERE r.event_id = $1 AND r.status IN ('ACTIVE', 'CONFIRMED')
                               GROUP BY r.user_id, e.max_tickets_per_user
                               HAVING sum(r.quantity) > e.max_tickets_per_user) o",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await?;
    if over > 0 {
        found.push(format!("{over} buyers hold more than max_tickets_per_user"));
    }
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations r
         WHERE r.event_id = $1
           AND (NOT EXISTS (SELECT 1 FROM users u WHERE u.id = r.user_id)
                OR NOT EXISTS (SELECT 1 FROM event_sections s WHERE s.id = r.section_id AND s.event_id = r.event_id))",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await?;
    if orphans > 0 {
        found.push(format!(
            "{orphans} reservations name a buyer or section that does not exist"
        ));
    }
    let (stored, summed): (i32, i64) = sqlx::query_as(
        "SELECT e.available_seats, COALESCE(sum(s.available), 0) FROM events e
         LEFT JOIN event_sections s ON s.event_id = e.id WHERE e.id = $1 GROUP BY e.id",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await?;
    if i64::from(stored) != summed {
        found.push(format!(
            "events.available_seats {stored} but sections add up to {summed}"
        ));
    }
    found.extend(queue_violations(pool, event_id).await?);
    Ok(found)
}

/// Invariant 8, the waiting room's.
async fn queue_violations(pool: &PgPool, event_id: EventId) -> Result<Vec<String>, sqlx::Error> {
    let mut found = Vec::new();
    let (ranked, max_rank, admitted, max_admitted, min_waiting, unplaced): (
        i64,
        Option<i32>,
        i64,
        Option<i32>,
        Option<i32>,
        i64,
    ) = sqlx::query_as(
        "SELECT count(rank), max(rank),
                count(*) FILTER (WHERE admitted_at IS NOT NULL),
                max(rank) FILTER (WHERE admitted_at IS NOT NULL),
                min(rank) FILTER (WHERE admitted_at IS NULL),
                count(*) FILTER (WHERE rank IS NULL)
         FROM queue_entries WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await?;
    if ranked != max_rank.map_or(0, |m| i64::from(m) + 1) {
        found.push(format!(
            "queue: {ranked} placed buyers but ranks up to {max_rank:?}"
        ));
    }
    if admitted != max_admitted.map_or(0, |m| i64::from(m) + 1)
        || min_waiting.is_some_and(|w| max_admitted.is_some_and(|a| w < a))
    {
        found.push(format!(
            "queue: {admitted} let in, the last at rank {max_admitted:?}, the first waiting at {min_waiting:?}"
        ));
    }
    if unplaced > 0 && ranked > 0 {
        found.push(format!(
            "queue: {unplaced} early arrivals unplaced after the draw"
        ));
    }
    // Queue entries carry no foreign keys (see the migration): their buyers must exist.
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM queue_entries q
         WHERE q.event_id = $1 AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = q.user_id)",
    )
    .bind(event_id)
    .fetch_one(pool)
    .await?;
    if orphans > 0 {
        found.push(format!(
            "queue: {orphans} entries name a buyer that does not exist"
        ));
    }
    Ok(found)
}

/// The hold ids of `acknowledged` that PostgreSQL does not have.
pub async fn missing_holds(pool: &PgPool, acknowledged: &[i64]) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT acked.hold_id FROM unnest($1::bigint[]) AS acked(hold_id)
         WHERE NOT EXISTS (SELECT 1 FROM reservations r WHERE r.id = acked.hold_id)",
    )
    .bind(acknowledged)
    .fetch_all(pool)
    .await
}

/// The booking references of `acknowledged` that PostgreSQL does not have.
pub async fn missing_bookings(
    pool: &PgPool,
    acknowledged: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT acked.reference FROM unnest($1::text[]) AS acked(reference)
         WHERE NOT EXISTS (SELECT 1 FROM bookings b WHERE b.booking_reference = acked.reference)",
    )
    .bind(acknowledged)
    .fetch_all(pool)
    .await
}
