//! The sweep: lapsed holds written down as `EXPIRED`, off the hot path.
//!
//! An expiry writes no row when it happens (migration `..._unwritten_expiry`): the event's
//! actor advances `events.holds_expired_through` with its counts, and a reservation stored
//! `ACTIVE` whose `expires_at` is at or before it *reads* `EXPIRED` through the view
//! `reservations_effective`. That keeps an on-sale's abandoned holds from costing a row
//! write each, but it leaves the table saying `ACTIVE` for every hold ever abandoned: the
//! `(event_id, status)` and `(user_id, status)` indexes keep them under `'ACTIVE'`, a
//! buyer's list and an event's recovery scan them, and anyone reading the table without
//! the view is misled.
//!
//! The sweep rewrites those rows as `EXPIRED` (with `updated_at` = `expires_at`, exactly
//! what the view already shows), a bounded number per statement and per round, so that the
//! stored status catches up with the read one without ever competing with an on-sale for
//! more than a few statements a round.
//!
//! It needs no coordination with the event's actor, nor with other nodes sweeping at the
//! same time:
//! - a row it rewrites is one the actor has already expired (the watermark only advances
//!   to a moment at which the actor expired every hold due by then), so no write-behind
//!   flush will touch that row again;
//! - the view reads the row the same before and after, so no reader sees a change;
//! - two sweepers meeting on a row serialize on its lock, and the second finds it no longer
//!   `ACTIVE` and leaves it.
//!
//! `events.holds_swept_through` records how far an event has been swept, so a round visits
//! only events whose watermark moved since.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

/// How much one node's sweep may do, and how often.
#[derive(Clone, Copy, Debug)]
pub struct SweepLimits {
    /// Rows one statement rewrites at most (each one is a short transaction).
    pub rows_per_statement: i64,
    /// Statements one round runs at most, over all events.
    pub statements_per_round: u32,
    /// The pause between rounds.
    pub round_interval: Duration,
}

impl Default for SweepLimits {
    fn default() -> SweepLimits {
        SweepLimits {
            rows_per_statement: 1_000,
            statements_per_round: 20,
            round_interval: Duration::from_secs(30),
        }
    }
}

/// What one round did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepRound {
    /// Rows this round rewrote as `EXPIRED`.
    pub rows_swept: u64,
    /// Statements it ran.
    pub statements: u32,
    /// Events swept up to their watermark in this round.
    pub events_done: u32,
    /// Whether an event was left with lapsed rows because the round's budget ran out.
    pub more: bool,
}

/// One round: the events whose watermark moved past what was swept, oldest sweep first,
/// each swept in statements of at most `rows_per_statement` until none is left or the
/// round has run `statements_per_round`.
pub async fn sweep_round(pool: &PgPool, limits: &SweepLimits) -> Result<SweepRound, sqlx::Error> {
    assert!(limits.rows_per_statement > 0 && limits.statements_per_round > 0);
    let mut round = SweepRound::default();
    // The events to visit, read once: at most one per statement of the budget.
    let events: Vec<(i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT id, holds_expired_through FROM events
         WHERE holds_expired_through > COALESCE(holds_swept_through, '-infinity')
         ORDER BY holds_swept_through NULLS FIRST, id
         LIMIT $1",
    )
    .bind(i64::from(limits.statements_per_round))
    .fetch_all(pool)
    .await?;
    'events: for (event_id, watermark) in events {
        loop {
            if round.statements == limits.statements_per_round {
                round.more = true;
                break 'events;
            }
            // `due` is decided on the statement's snapshot; a row another sweeper rewrites
            // meanwhile is waited for and then left (no longer ACTIVE). So fewer rows due
            // than the limit means every row due at this watermark is now written EXPIRED,
            // by this statement or another — whatever `swept` counted.
            let (due, swept): (i64, i64) = sqlx::query_as(
                "WITH due AS (
                     SELECT id FROM reservations
                     WHERE event_id = $1 AND status = 'ACTIVE' AND expires_at <= $2
                     LIMIT $3
                 ), swept AS (
                     UPDATE reservations r SET status = 'EXPIRED', updated_at = r.expires_at
                     FROM due WHERE r.id = due.id AND r.status = 'ACTIVE'
                     RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM due), (SELECT count(*) FROM swept)",
            )
            .bind(event_id)
            .bind(watermark)
            .bind(limits.rows_per_statement)
            .fetch_one(pool)
            .await?;
            round.statements += 1;
            round.rows_swept += swept as u64;
            if due < limits.rows_per_statement {
                sqlx::query(
                    "UPDATE events
                     SET holds_swept_through = GREATEST(holds_swept_through, $2)
                     WHERE id = $1",
                )
                .bind(event_id)
                .bind(watermark)
                .execute(pool)
                .await?;
                round.events_done += 1;
                continue 'events;
            }
        }
    }
    Ok(round)
}

/// Runs rounds every `round_interval` until `stop` turns true (a round in progress is
/// finished first). A failed round is logged and tried again at the next interval.
pub async fn run(pool: PgPool, limits: SweepLimits, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        match sweep_round(&pool, &limits).await {
            Ok(round) => {
                metrics::counter!("boxoffice_expiry_swept_rows_total").increment(round.rows_swept);
                if round.rows_swept > 0 {
                    tracing::debug!(?round, "swept lapsed holds");
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeping lapsed holds failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(limits.round_interval) => {}
            _ = stop.changed() => {}
        }
    }
}
