//! Writing one batch: one transaction, one bulk `UNNEST` statement per table touched —
//! or, for the hot path's batches, one statement in all ([`super::one_statement`]).
//!
//! The transaction starts by locking the event row and checking the fencing epoch: an actor
//! that has been superseded (its event reloaded by another incarnation) finds a newer epoch
//! and writes nothing. Holding that row lock until COMMIT also means a reload waits for an
//! in-flight flush to finish, so it always loads everything the old actor committed.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::batch::Writes;
use crate::clock::to_timestamp;
use crate::inventory::HoldRow;
use crate::types::{DiscountAmount, EventId};

/// Why a flush did not commit.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("this actor no longer owns the event (epoch {mine}, stored {stored:?})")]
    Fenced { mine: i64, stored: Option<i64> },
}

/// Writes a batch in one transaction. Returns only after COMMIT succeeded.
pub async fn write(
    pool: &PgPool,
    event_id: EventId,
    epoch: i64,
    w: &Writes,
) -> Result<(), FlushError> {
    let acquiring = std::time::Instant::now();
    let mut conn = pool.acquire().await?;
    metrics::histogram!("boxoffice_db_acquire_duration_seconds", "user" => "write_behind")
        .record(acquiring.elapsed().as_secs_f64());
    if w.only_new_holds_and_counts() {
        if super::one_statement::write(&mut conn, event_id, epoch, w).await? != 1 {
            return Err(fenced(&mut conn, event_id, epoch).await);
        }
        return Ok(());
    }
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    // First statement: lock the event row and check the epoch, writing the event's counts in
    // the same round trip.
    if update_event(&mut tx, event_id, epoch, w).await? != 1 {
        return Err(fenced(&mut tx, event_id, epoch).await);
    }
    // Parents before children: sections before seats, bookings before the holds and seats
    // that point at them, inserts before the updates that may touch the same rows.
    insert_sections(&mut tx, event_id, w).await?;
    insert_discounts(&mut tx, event_id, w).await?;
    insert_bookings(&mut tx, event_id, w).await?;
    insert_holds(&mut tx, event_id, w).await?;
    update_holds(&mut tx, w).await?;
    update_seats(&mut tx, w).await?;
    update_sections(&mut tx, w).await?;
    cancel_bookings(&mut tx, w).await?;
    update_discounts(&mut tx, w).await?;
    write_queue(&mut tx, event_id, w).await?;
    enqueue_jobs(&mut tx, event_id, w).await?;
    tx.commit().await?;
    Ok(())
}

type Tx<'a> = Transaction<'a, Postgres>;

/// The refusal of a flush whose fence matched no row: another node (or a newer actor here)
/// claimed the event since this actor loaded it, and the storage refuses the former owner's
/// write, whatever it believed. Reads the stored epoch for the error.
async fn fenced(conn: &mut PgConnection, event_id: EventId, epoch: i64) -> FlushError {
    metrics::counter!("boxoffice_cluster_fenced_flushes_total").increment(1);
    let stored = sqlx::query_scalar("SELECT owner_epoch FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_optional(&mut *conn)
        .await;
    match stored {
        Ok(stored) => FlushError::Fenced {
            mine: epoch,
            stored,
        },
        Err(e) => FlushError::Database(e),
    }
}

async fn insert_sections(
    tx: &mut Tx<'_>,
    event_id: EventId,
    w: &Writes,
) -> Result<(), sqlx::Error> {
    if w.sections_new.is_empty() {
        return Ok(());
    }
    let s = &w.sections_new;
    sqlx::query(
        "INSERT INTO event_sections (id, event_id, name, kind, capacity, price_cents, available)
         SELECT u.id, $1, u.name, u.kind, u.capacity, u.price, u.capacity
         FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::int[], $6::bigint[])
              AS u(id, name, kind, capacity, price)",
    )
    .bind(event_id)
    .bind(s.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(s.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
    .bind(s.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>())
    .bind(s.iter().map(|r| r.capacity as i32).collect::<Vec<_>>())
    .bind(s.iter().map(|r| r.price_cents).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    let seats: Vec<_> = s
        .iter()
        .flat_map(|r| r.seats.iter().map(move |seat| (r.id, seat)))
        .collect();
    // Large seated sections are written in chunks to keep each statement's parameters bounded.
    for chunk in seats.chunks(50_000) {
        sqlx::query(
            "INSERT INTO seats (id, event_id, section_id, row_label, row_index, seat_number)
             SELECT u.id, $1, u.section_id, u.row_label, u.row_index, u.seat_number
             FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::int[], $6::int[])
                  AS u(id, section_id, row_label, row_index, seat_number)",
        )
        .bind(event_id)
        .bind(chunk.iter().map(|(_, s)| s.id).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|(section, _)| *section)
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|(_, s)| s.row_label.clone())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|(_, s)| s.row_index).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, s)| s.seat_number).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn insert_discounts(
    tx: &mut Tx<'_>,
    event_id: EventId,
    w: &Writes,
) -> Result<(), sqlx::Error> {
    if w.discounts_new.is_empty() {
        return Ok(());
    }
    let d = &w.discounts_new;
    let percent = |a: DiscountAmount| match a {
        DiscountAmount::PercentOff(p) => Some(i32::from(p)),
        DiscountAmount::AmountOffCents(_) => None,
    };
    let amount = |a: DiscountAmount| match a {
        DiscountAmount::AmountOffCents(c) => Some(c),
        DiscountAmount::PercentOff(_) => None,
    };
    sqlx::query(
        "INSERT INTO discounts (id, event_id, code, percent_off, amount_off_cents, max_uses,
                                valid_from, valid_until)
         SELECT u.id, $1, u.code, u.percent_off, u.amount_off, u.max_uses, u.valid_from, u.valid_until
         FROM UNNEST($2::bigint[], $3::text[], $4::int[], $5::bigint[], $6::int[],
                     $7::timestamptz[], $8::timestamptz[])
              AS u(id, code, percent_off, amount_off, max_uses, valid_from, valid_until)",
    )
    .bind(event_id)
    .bind(d.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(d.iter().map(|r| r.code.clone()).collect::<Vec<_>>())
    .bind(d.iter().map(|r| percent(r.amount)).collect::<Vec<_>>())
    .bind(d.iter().map(|r| amount(r.amount)).collect::<Vec<_>>())
    .bind(d.iter().map(|r| r.max_uses as i32).collect::<Vec<_>>())
    .bind(d.iter().map(|r| r.valid_from_ms.map(to_timestamp)).collect::<Vec<_>>())
    .bind(d.iter().map(|r| r.valid_until_ms.map(to_timestamp)).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_bookings(
    tx: &mut Tx<'_>,
    event_id: EventId,
    w: &Writes,
) -> Result<(), sqlx::Error> {
    if w.bookings_new.is_empty() {
        return Ok(());
    }
    let b = &w.bookings_new;
    sqlx::query(
        "INSERT INTO bookings (id, booking_reference, user_id, event_id, status, subtotal_cents,
                               discount_cents, total_cents, discount_id, idempotency_key,
                               request_fingerprint, created_at, cancelled_at)
         SELECT u.id, u.reference, u.user_id, $1, u.status, u.subtotal, u.discount, u.total,
                u.discount_id, u.key, u.fingerprint, u.created_at, u.cancelled_at
         FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                     $7::bigint[], $8::bigint[], $9::bigint[], $10::text[], $11::text[],
                     $12::timestamptz[], $13::timestamptz[])
              AS u(id, reference, user_id, status, subtotal, discount, total, discount_id, key,
                   fingerprint, created_at, cancelled_at)",
    )
    .bind(event_id)
    .bind(b.iter().map(|r| r.id).collect::<Vec<_>>())
    .bind(b.iter().map(|r| r.reference.clone()).collect::<Vec<_>>())
    .bind(b.iter().map(|r| r.user_id).collect::<Vec<_>>())
    .bind(b.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
    .bind(b.iter().map(|r| r.subtotal_cents).collect::<Vec<_>>())
    .bind(b.iter().map(|r| r.discount_cents).collect::<Vec<_>>())
    .bind(b.iter().map(|r| r.total_cents).collect::<Vec<_>>())
    .bind(b.iter().map(|r| r.discount_id).collect::<Vec<_>>())
    .bind(
        b.iter()
            .map(|r| r.idempotency_key.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        b.iter()
            .map(|r| r.request_fingerprint.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        b.iter()
            .map(|r| to_timestamp(r.created_at_ms))
            .collect::<Vec<_>>(),
    )
    .bind(
        b.iter()
            .map(|r| r.cancelled_at_ms.map(to_timestamp))
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// PostgreSQL array literal for a list of ids. Holds name different numbers of seats, and
/// `UNNEST` cannot take a ragged two-dimensional array, so each hold's seats travel as one
/// text element cast back to `bigint[]` on the server.
pub(super) fn array_literal(ids: &[i64]) -> String {
    let mut out = String::with_capacity(2 + ids.len() * 8);
    out.push('{');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out.push('}');
    out
}

async fn insert_holds(tx: &mut Tx<'_>, event_id: EventId, w: &Writes) -> Result<(), sqlx::Error> {
    if w.holds_new.is_empty() {
        return Ok(());
    }
    let query = sqlx::query(
        "INSERT INTO reservations (id, user_id, event_id, section_id, quantity, seat_ids,
                                   session_id, status, booking_id, idempotency_key,
                                   request_fingerprint, expires_at, created_at, updated_at)
         SELECT u.id, u.user_id, $1, u.section_id, u.quantity, u.seat_ids::bigint[],
                u.session_id, u.status, u.booking_id, u.key, u.fingerprint, u.expires_at,
                u.created_at, u.updated_at
         FROM UNNEST($2::bigint[], $3::bigint[], $4::bigint[], $5::int[], $6::text[],
                     $7::text[], $8::text[], $9::bigint[], $10::text[], $11::text[],
                     $12::timestamptz[], $13::timestamptz[], $14::timestamptz[])
              AS u(id, user_id, section_id, quantity, seat_ids, session_id, status,
                   booking_id, key, fingerprint, expires_at, created_at, updated_at)",
    )
    .bind(event_id);
    bind_holds(query, &w.holds_new).execute(&mut **tx).await?;
    Ok(())
}

/// Binds new holds as the thirteen arrays both hold inserts take, in their order: id, user,
/// section, quantity, seats, session, status, booking, key, fingerprint, expiry, creation,
/// last update.
pub(super) fn bind_holds<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    h: &'q [HoldRow],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(h.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.user_id).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.section_id).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.quantity as i32).collect::<Vec<_>>())
        .bind(
            h.iter()
                .map(|r| array_literal(&r.seat_ids))
                .collect::<Vec<_>>(),
        )
        .bind(
            h.iter()
                .map(|r| r.session_id.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(h.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(h.iter().map(|r| r.booking_id).collect::<Vec<_>>())
        .bind(
            h.iter()
                .map(|r| r.idempotency_key.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            h.iter()
                .map(|r| r.request_fingerprint.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            h.iter()
                .map(|r| to_timestamp(r.expires_at_ms))
                .collect::<Vec<_>>(),
        )
        .bind(
            h.iter()
                .map(|r| to_timestamp(r.created_at_ms))
                .collect::<Vec<_>>(),
        )
        .bind(
            h.iter()
                .map(|r| to_timestamp(r.updated_at_ms))
                .collect::<Vec<_>>(),
        )
}

async fn update_holds(tx: &mut Tx<'_>, w: &Writes) -> Result<(), sqlx::Error> {
    if w.hold_updates.is_empty() {
        return Ok(());
    }
    let (ids, updates): (Vec<_>, Vec<_>) = w.hold_updates.iter().map(|(k, v)| (*k, *v)).unzip();
    sqlx::query(
        "UPDATE reservations r
         SET status = u.status, booking_id = u.booking_id, updated_at = u.at
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::timestamptz[])
              AS u(id, status, booking_id, at)
         WHERE r.id = u.id",
    )
    .bind(ids)
    .bind(
        updates
            .iter()
            .map(|u| u.status.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(updates.iter().map(|u| u.booking_id).collect::<Vec<_>>())
    .bind(
        updates
            .iter()
            .map(|u| to_timestamp(u.at_ms))
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn update_seats(tx: &mut Tx<'_>, w: &Writes) -> Result<(), sqlx::Error> {
    if w.seats.is_empty() {
        return Ok(());
    }
    let (ids, seats): (Vec<_>, Vec<_>) = w.seats.iter().map(|(k, v)| (*k, *v)).unzip();
    sqlx::query(
        "UPDATE seats s
         SET status = u.status, reservation_id = u.hold_id, booking_id = u.booking_id
         FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[])
              AS u(id, status, hold_id, booking_id)
         WHERE s.id = u.id",
    )
    .bind(ids)
    .bind(seats.iter().map(|s| s.status.as_str()).collect::<Vec<_>>())
    .bind(seats.iter().map(|s| s.hold_id).collect::<Vec<_>>())
    .bind(seats.iter().map(|s| s.booking_id).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn update_sections(tx: &mut Tx<'_>, w: &Writes) -> Result<(), sqlx::Error> {
    if w.sections.is_empty() {
        return Ok(());
    }
    let query = sqlx::query(
        "UPDATE event_sections s
         SET available = u.available, held = u.held, booked = u.booked
         FROM UNNEST($1::bigint[], $2::int[], $3::int[], $4::int[])
              AS u(id, available, held, booked)
         WHERE s.id = u.id",
    );
    bind_section_counts(query, w).execute(&mut **tx).await?;
    Ok(())
}

/// Binds the sections' counts as the four arrays both section updates take: id,
/// available, held, booked.
pub(super) fn bind_section_counts<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    w: &Writes,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    let (ids, counts): (Vec<_>, Vec<_>) = w.sections.iter().map(|(k, v)| (*k, *v)).unzip();
    query
        .bind(ids)
        .bind(
            counts
                .iter()
                .map(|c| c.available as i32)
                .collect::<Vec<_>>(),
        )
        .bind(counts.iter().map(|c| c.held as i32).collect::<Vec<_>>())
        .bind(counts.iter().map(|c| c.booked as i32).collect::<Vec<_>>())
}

async fn cancel_bookings(tx: &mut Tx<'_>, w: &Writes) -> Result<(), sqlx::Error> {
    if w.booking_cancels.is_empty() {
        return Ok(());
    }
    let (ids, ats): (Vec<_>, Vec<_>) = w
        .booking_cancels
        .iter()
        .map(|(k, v)| (*k, to_timestamp(*v)))
        .unzip();
    sqlx::query(
        "UPDATE bookings b SET status = 'CANCELLED', cancelled_at = u.at
         FROM UNNEST($1::bigint[], $2::timestamptz[]) AS u(id, at)
         WHERE b.id = u.id",
    )
    .bind(ids)
    .bind(ats)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn update_discounts(tx: &mut Tx<'_>, w: &Writes) -> Result<(), sqlx::Error> {
    if w.discounts_used.is_empty() {
        return Ok(());
    }
    let (ids, used): (Vec<_>, Vec<_>) = w
        .discounts_used
        .iter()
        .map(|(k, v)| (*k, *v as i32))
        .unzip();
    sqlx::query(
        "UPDATE discounts d SET used = u.used
         FROM UNNEST($1::bigint[], $2::int[]) AS u(id, used)
         WHERE d.id = u.id",
    )
    .bind(ids)
    .bind(used)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Locks the event row if this actor still owns it (its epoch), and writes the event's
/// counts, rules and expiry watermark (GREATEST: it never moves back). Returns the rows
/// updated: 1, or 0 when fenced.
async fn update_event(
    tx: &mut Tx<'_>,
    event_id: EventId,
    epoch: i64,
    w: &Writes,
) -> Result<u64, sqlx::Error> {
    let available = w.event.map(|e| e.available_seats as i32);
    let status = w.event.map(|e| e.status.as_str());
    let start = w.settings.map(|s| to_timestamp(s.sale_start_ms));
    let ttl = w.settings.map(|s| s.hold_ttl_seconds as i32);
    // With the rules written, the limit is written as it is — NULL included (no limit).
    let max = w
        .settings
        .and_then(|s| s.max_tickets_per_user.map(|m| m as i32));
    let room = w.settings.map(|s| s.waiting_room);
    let settings_changed = w.settings.is_some();
    let changed = w.event.is_some() || w.settings.is_some();
    let updated = sqlx::query(
        "UPDATE events SET
             available_seats = COALESCE($3, available_seats),
             status = COALESCE($4, status),
             sale_start_time = COALESCE($5, sale_start_time),
             hold_ttl_seconds = COALESCE($6, hold_ttl_seconds),
             max_tickets_per_user = CASE WHEN $9::boolean THEN $7::int ELSE max_tickets_per_user END,
             waiting_room_enabled = COALESCE($10, waiting_room_enabled),
             queue_admit_per_minute = COALESCE($11, queue_admit_per_minute),
             queue_pass_ttl_seconds = COALESCE($12, queue_pass_ttl_seconds),
             holds_expired_through = GREATEST(holds_expired_through, $13),
             version = version + $8::int,
             updated_at = CASE WHEN $8::int = 1 THEN now() ELSE updated_at END
         WHERE id = $1 AND owner_epoch = $2",
    )
    .bind(event_id)
    .bind(epoch)
    .bind(available)
    .bind(status)
    .bind(start)
    .bind(ttl)
    .bind(max)
    .bind(i32::from(changed))
    .bind(settings_changed)
    .bind(room.map(|r| r.enabled))
    .bind(room.map(|r| r.admit_per_minute as i32))
    .bind(room.map(|r| r.pass_ttl_seconds as i32))
    .bind(w.expired_through_ms.map(to_timestamp))
    .execute(&mut **tx)
    .await?;
    Ok(updated.rows_affected())
}

/// The waiting room's rows: new entries, the draw's ranks, admissions (one rank range per
/// tick, however many buyers it lets in) and passes used. In that order: a buyer may join,
/// be placed and be let in within one batch.
async fn write_queue(tx: &mut Tx<'_>, event_id: EventId, w: &Writes) -> Result<(), sqlx::Error> {
    if !w.queue_new.is_empty() {
        let rows = &w.queue_new;
        sqlx::query(
            "INSERT INTO queue_entries (event_id, user_id, arrival_seq, early, rank, joined_at)
             SELECT $1, * FROM UNNEST($2::bigint[], $3::bigint[], $4::boolean[], $5::int[],
                                      $6::timestamptz[])",
        )
        .bind(event_id)
        .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.arrival_seq).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.early).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.rank.map(|k| k as i32))
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| to_timestamp(r.joined_at_ms))
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    }
    if !w.queue_ranked.is_empty() {
        let (users, ranks): (Vec<i64>, Vec<i32>) =
            w.queue_ranked.iter().map(|&(u, r)| (u, r as i32)).unzip();
        sqlx::query(
            "UPDATE queue_entries q SET rank = d.rank
             FROM UNNEST($2::bigint[], $3::int[]) AS d(user_id, rank)
             WHERE q.event_id = $1 AND q.user_id = d.user_id",
        )
        .bind(event_id)
        .bind(users)
        .bind(ranks)
        .execute(&mut **tx)
        .await?;
    }
    if !w.queue_admitted.is_empty() {
        let a = &w.queue_admitted;
        sqlx::query(
            "UPDATE queue_entries q SET admitted_at = t.at, pass_expires_at = t.expires
             FROM UNNEST($2::int[], $3::int[], $4::timestamptz[], $5::timestamptz[])
                  AS t(lo, hi, at, expires)
             WHERE q.event_id = $1 AND q.rank >= t.lo AND q.rank < t.hi",
        )
        .bind(event_id)
        .bind(a.iter().map(|t| t.from_rank as i32).collect::<Vec<_>>())
        .bind(a.iter().map(|t| t.to_rank as i32).collect::<Vec<_>>())
        .bind(a.iter().map(|t| to_timestamp(t.at_ms)).collect::<Vec<_>>())
        .bind(
            a.iter()
                .map(|t| to_timestamp(t.pass_expires_at_ms))
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    }
    if !w.queue_used.is_empty() {
        let (users, at): (Vec<i64>, Vec<_>) = w
            .queue_used
            .iter()
            .map(|(&u, &at)| (u, to_timestamp(at)))
            .unzip();
        sqlx::query(
            "UPDATE queue_entries q SET pass_used_at = u.at
             FROM UNNEST($2::bigint[], $3::timestamptz[]) AS u(user_id, at)
             WHERE q.event_id = $1 AND q.user_id = u.user_id",
        )
        .bind(event_id)
        .bind(users)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Background jobs for bookings made or cancelled in this batch, in the same transaction
/// (the outbox): a confirmation message and an analytics event per new booking, a
/// cancellation message per cancelled one.
async fn enqueue_jobs(tx: &mut Tx<'_>, event_id: EventId, w: &Writes) -> Result<(), sqlx::Error> {
    let confirmed: Vec<i64> = w
        .bookings_new
        .iter()
        .filter(|b| b.status == crate::types::BookingStatus::Confirmed)
        .map(|b| b.id)
        .collect();
    let mut cancelled: Vec<i64> = w.booking_cancels.keys().copied().collect();
    cancelled.extend(
        w.bookings_new
            .iter()
            .filter(|b| b.status == crate::types::BookingStatus::Cancelled)
            .map(|b| b.id),
    );
    if confirmed.is_empty() && cancelled.is_empty() {
        return Ok(());
    }
    let queued = sqlx::query(
        "INSERT INTO outbox (kind, payload)
         SELECT k.kind, jsonb_build_object(
                    'bookingId', b.id, 'bookingReference', b.booking_reference,
                    'eventId', b.event_id, 'userId', b.user_id, 'totalCents', b.total_cents,
                    'status', b.status)
         FROM bookings b
         JOIN (SELECT id, kind FROM UNNEST($2::bigint[]) AS id,
                    UNNEST(ARRAY['booking.confirmed', 'analytics.booking_confirmed']) AS kind
               UNION ALL
               SELECT id, 'booking.cancelled' FROM UNNEST($3::bigint[]) AS id) k ON k.id = b.id
         WHERE b.event_id = $1
         ORDER BY b.id, k.kind",
    )
    .bind(event_id)
    .bind(confirmed)
    .bind(cancelled)
    .execute(&mut **tx)
    .await?;
    // Counted before COMMIT: a failed flush over-counts by its jobs, which the failure
    // counter makes visible.
    metrics::counter!("boxoffice_jobs_queued_total").increment(queued.rows_affected());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn seat_lists_become_array_literals() {
        assert_eq!(super::array_literal(&[]), "{}");
        assert_eq!(super::array_literal(&[3, 14, 15]), "{3,14,15}");
    }
}
