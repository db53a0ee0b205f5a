//! The hot path's batches in one statement: one round trip to PostgreSQL instead of five.
//!
//! During an on-sale almost every batch holds the same few kinds of change: new holds, the
//! sections' counts and the event's. Written as the general path writes them, that is
//! BEGIN, the epoch fence, the holds, the sections and COMMIT — five round trips, each one a
//! wake-up of the PostgreSQL backend and of the I/O thread, for a transaction whose
//! statements all depend on the first. Here they are one statement of data-modifying CTEs,
//! which PostgreSQL runs as its own implicit transaction: the fence's `UPDATE events … WHERE owner_epoch = $2` locks the
//! event row, and every other part joins the fence's `RETURNING` row, so a superseded
//! actor's statement writes nothing at all — the same guarantee as the general path's
//! check before its first write. The row lock is held until the statement commits, so a
//! reload still waits for an in-flight flush.
//!
//! Why only these kinds: the parts of one statement share one snapshot and cannot see each
//! other's rows, so a part that must read what another writes (a booking and the holds that
//! point at it, a new section and its seats) needs the general path's order of statements.
//! Expiries are here because they write no row, only the event's `holds_expired_through`
//! (migrations/20261204000008_unwritten_expiry.sql). Status changes of earlier holds written
//! as rows (releases, confirmations) could be written here too; expiries were, as row
//! updates, before they stopped being rows: with every hold expiring at a 10 s lifetime such
//! batches carry hundreds of updates, and as one statement their flush took twice as long
//! (p50 8.4 vs. 4.4 ms, p99 50 vs. 10 ms).
//! [`Writes::only_new_holds_and_counts`] says which batches qualify; [`super::flush::write`]
//! sends the rest the general way.

use sqlx::{PgConnection, Row};

use super::batch::Writes;
use crate::clock::to_timestamp;
use crate::types::EventId;

/// The statement. `$1`/`$2` fence (event, epoch); `$3`–`$5` the event's counts; `$6`–`$18`
/// the new holds (as the general path's insert); `$19`–`$22` the sections' counts; `$23`
/// the expiry watermark (NULL: unchanged). Empty arrays make their part write nothing.
/// Answers the number of event rows the fence
/// matched: 1, or 0 when the epoch is stale.
const STATEMENT: &str = "
WITH fence AS (
    UPDATE events SET
        available_seats = COALESCE($3, available_seats),
        status = COALESCE($4, status),
        version = version + $5::int,
        updated_at = CASE WHEN $5::int = 1 THEN now() ELSE updated_at END,
        holds_expired_through = GREATEST(holds_expired_through, $23)
    WHERE id = $1 AND owner_epoch = $2
    RETURNING id
), new_holds AS (
    INSERT INTO reservations (id, user_id, event_id, section_id, quantity, seat_ids,
                              session_id, status, booking_id, idempotency_key,
                              request_fingerprint, expires_at, created_at, updated_at)
    SELECT u.id, u.user_id, fence.id, u.section_id, u.quantity, u.seat_ids::bigint[],
           u.session_id, u.status, u.booking_id, u.key, u.fingerprint, u.expires_at,
           u.created_at, u.updated_at
    FROM fence,
         UNNEST($6::bigint[], $7::bigint[], $8::bigint[], $9::int[], $10::text[],
                $11::text[], $12::text[], $13::bigint[], $14::text[], $15::text[],
                $16::timestamptz[], $17::timestamptz[], $18::timestamptz[])
         AS u(id, user_id, section_id, quantity, seat_ids, session_id, status,
              booking_id, key, fingerprint, expires_at, created_at, updated_at)
), section_counts AS (
    UPDATE event_sections s
    SET available = u.available, held = u.held, booked = u.booked
    FROM fence, UNNEST($19::bigint[], $20::int[], $21::int[], $22::int[])
         AS u(id, available, held, booked)
    WHERE s.id = u.id
)
SELECT count(*) FROM fence";

/// Writes a batch of [`Writes::only_new_holds_and_counts`], committing it on return. Returns how many event
/// rows the fence matched (0: this actor's epoch is stale and nothing was written).
pub async fn write(
    conn: &mut PgConnection,
    event_id: EventId,
    epoch: i64,
    w: &Writes,
) -> Result<i64, sqlx::Error> {
    debug_assert!(
        w.only_new_holds_and_counts(),
        "a batch the one statement cannot write"
    );
    let query = sqlx::query(STATEMENT)
        .bind(event_id)
        .bind(epoch)
        .bind(w.event.map(|e| e.available_seats as i32))
        .bind(w.event.map(|e| e.status.as_str()))
        .bind(i32::from(w.event.is_some()));
    let query = super::flush::bind_holds(query, &w.holds_new);
    let row = super::flush::bind_section_counts(query, w)
        .bind(w.expired_through_ms.map(to_timestamp))
        .fetch_one(conn)
        .await?;
    row.try_get(0)
}
