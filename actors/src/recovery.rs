//! Loading an event's inventory from PostgreSQL, and rebuilding it for a new actor.
//!
//! Loading also *claims* the event for this node: under the event row's lock it checks that
//! no other live node owns it, records this node (and incarnation) as the owner and bumps the
//! fencing epoch, all in the transaction that reads the event. Any older actor's flush that
//! commits afterwards — on this node or a former owner — is refused by the epoch, and the
//! row lock makes the claim wait for a flush still in flight, so the load never misses a
//! committed decision.

use std::collections::BTreeMap;

use sqlx::{PgPool, Row};

use crate::clock::from_timestamp;
use crate::context::EngineContext;
use crate::error::EngineError;
use crate::inventory::{
    Change, EventRules, Inventory, Restored, RestoredBooking, RestoredHold, RestoredSection,
    RowSpec,
};
use crate::types::{
    BookingStatus, BookingView, DiscountAmount, DiscountView, EventId, EventStatus, HoldStatus,
    HoldView, SectionKind,
};
use crate::waiting_room::{RestoredEntry, WaitingRoomRules};

/// The node (and incarnation) an event is claimed for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant {
    pub node_id: String,
    pub incarnation: i64,
}

/// Why an event could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no such event")]
    NotFound,
    /// A live node owns the event: requests go there.
    #[error("event owned by node {node_id}")]
    OwnedElsewhere {
        node_id: String,
        url: Option<String>,
    },
    /// This node's lease is not good in PostgreSQL's eyes: it may claim nothing.
    #[error("this node holds no cluster lease")]
    NotMember,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

fn parse<T>(text: &str, parse: fn(&str) -> Option<T>) -> Result<T, LoadError> {
    parse(text).ok_or_else(|| LoadError::Corrupt(format!("unknown status {text}")))
}

/// An event loaded and rebuilt, ready for its actor.
pub(crate) struct LoadedEvent {
    /// The rebuilt inventory.
    pub inventory: Inventory,
    /// Changes found while rebuilding (holds past their expiry, corrected counts), written by
    /// the actor's first batch.
    pub pending: Vec<Change>,
    /// The fencing epoch this load took; every flush of the new actor checks it.
    pub epoch: i64,
}

/// Loads an event and rebuilds its inventory, on the engine's I/O thread. Errors come back
/// as the engine reports them; causes are logged, never sent.
pub(crate) async fn load_inventory(
    ctx: &EngineContext,
    event_id: EventId,
) -> Result<LoadedEvent, EngineError> {
    let started = std::time::Instant::now();
    let Some(incarnation) = ctx.membership.incarnation() else {
        return Err(EngineError::NotMember);
    };
    let claimant = Claimant {
        node_id: ctx.membership.node_id().to_string(),
        incarnation: incarnation.0,
    };
    let pool = ctx.pool.clone();
    let wait = ctx.membership.config().lease() * 2;
    let (stored, epoch) = ctx
        .io
        .run(async move { load_within(&pool, event_id, &claimant, wait).await })
        .await
        .map_err(|e| match e {
            LoadError::NotFound => EngineError::EventNotFound,
            LoadError::OwnedElsewhere { node_id, url } => EngineError::NotOwner {
                event_id,
                node_id,
                url,
            },
            LoadError::NotMember => EngineError::NotMember,
            other => {
                tracing::error!(event_id, error = %other, "could not load an event");
                EngineError::Unavailable("the event could not be loaded".into())
            }
        })?;
    let (inventory, pending) = Inventory::restore(stored, ctx.clock.now_ms()).map_err(|e| {
        tracing::error!(event_id, error = %e, "stored inventory breaks an invariant");
        EngineError::Unavailable("the event could not be loaded".into())
    })?;
    metrics::histogram!("boxoffice_event_load_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    Ok(LoadedEvent {
        inventory,
        pending,
        epoch,
    })
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// Loads everything stored about an event and claims it for `claimant`, in one transaction.
/// Returns the stored state and the new fencing epoch.
pub async fn load(
    pool: &PgPool,
    event_id: EventId,
    claimant: &Claimant,
) -> Result<(Restored, i64), LoadError> {
    load_within(pool, event_id, claimant, std::time::Duration::from_secs(10)).await
}

/// [`load`], waiting at most `lock_wait` for the event row. A former owner paused in the
/// middle of a flush holds it until PostgreSQL ends its session
/// (`idle_in_transaction_session_timeout`, set to the lease on engine connections); a claim
/// that waits longer than that gives up and is retried.
pub async fn load_within(
    pool: &PgPool,
    event_id: EventId,
    claimant: &Claimant,
    lock_wait: std::time::Duration,
) -> Result<(Restored, i64), LoadError> {
    let mut tx = pool.begin().await?;
    // Both for this transaction only: the lock wait, and plans made for this event's own
    // values. Engine connections use generic plans (`EngineContext::start`: the flush's
    // statement would otherwise be planned anew at every batch); a load is rare, and an
    // event's share of the tables varies too much for one plan to fit a small event and a
    // large one alike.
    sqlx::query(
        "SELECT set_config('lock_timeout', $1, true), set_config('plan_cache_mode', 'auto', true)",
    )
    .bind(format!("{}ms", lock_wait.as_millis().max(1)))
    .execute(&mut *tx)
    .await?;
    let (rules, epoch, stored_available, holds_expired_through_ms) =
        claim(&mut tx, event_id, claimant).await?;
    let sections = load_sections(&mut tx, event_id).await?;
    let holds = load_holds(&mut tx, event_id).await?;
    let bookings = load_bookings(&mut tx, event_id).await?;
    let discounts = load_discounts(&mut tx, event_id).await?;
    let queue = load_queue(&mut tx, event_id).await?;
    tx.commit().await?;
    let restored = Restored {
        event_id,
        rules,
        stored_available,
        sections,
        holds,
        bookings,
        discounts,
        queue,
        holds_expired_through_ms,
    };
    Ok((restored, epoch))
}

/// Claims the event for `claimant` (locking its row until COMMIT) and reads its rules.
/// Returns the rules, the new epoch, the stored `available_seats` and
/// `holds_expired_through`.
///
/// The event is free to claim when nobody owns it, when `claimant` does already (its actor
/// stopped, or is being rebuilt), or when its owner's lease has run out by PostgreSQL's clock
/// (`clock_timestamp()`, not the transaction's start) or its owner left the cluster. The claimant
/// must hold a good lease itself, checked in the same statement that takes the event.
async fn claim(
    tx: &mut Tx<'_>,
    event_id: EventId,
    claimant: &Claimant,
) -> Result<(EventRules, i64, u32, Option<i64>), LoadError> {
    let owner = sqlx::query(
        "SELECT e.owner_node, e.owner_incarnation, n.url AS owner_url,
                COALESCE(n.lease_until > clock_timestamp(), false) AS owner_live
           FROM events e
           LEFT JOIN cluster_nodes n
                  ON n.node_id = e.owner_node AND n.incarnation = e.owner_incarnation
          WHERE e.id = $1
            FOR UPDATE OF e",
    )
    .bind(event_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(LoadError::NotFound)?;
    let owner_node: Option<String> = owner.get("owner_node");
    let owner_incarnation: Option<i64> = owner.get("owner_incarnation");
    let mine = owner_node.as_deref() == Some(claimant.node_id.as_str())
        && owner_incarnation == Some(claimant.incarnation);
    if let Some(node_id) = owner_node {
        if !mine && owner.get::<bool, _>("owner_live") {
            return Err(LoadError::OwnedElsewhere {
                node_id,
                url: owner.get("owner_url"),
            });
        }
    }
    let event = sqlx::query(
        "UPDATE events
            SET owner_epoch = owner_epoch + 1, owner_node = $2, owner_incarnation = $3
          WHERE id = $1
            AND EXISTS (SELECT 1 FROM cluster_nodes
                         WHERE node_id = $2 AND incarnation = $3
                           AND lease_until > clock_timestamp())
         RETURNING status, sale_start_time, hold_ttl_seconds, max_tickets_per_user,
                   available_seats, owner_epoch, waiting_room_enabled,
                   queue_admit_per_minute, queue_pass_ttl_seconds, holds_expired_through",
    )
    .bind(event_id)
    .bind(&claimant.node_id)
    .bind(claimant.incarnation)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(LoadError::NotMember)?;
    if !mine {
        metrics::counter!("boxoffice_cluster_claims_total").increment(1);
    }
    let rules = EventRules {
        status: parse(event.get("status"), EventStatus::parse)?,
        sale_start_ms: from_timestamp(event.get("sale_start_time")),
        hold_ttl_seconds: event.get::<i32, _>("hold_ttl_seconds") as u32,
        max_tickets_per_user: event
            .get::<Option<i32>, _>("max_tickets_per_user")
            .map(|max| max as u32),
        waiting_room: WaitingRoomRules {
            enabled: event.get("waiting_room_enabled"),
            admit_per_minute: event.get::<i32, _>("queue_admit_per_minute") as u32,
            pass_ttl_seconds: event.get::<i32, _>("queue_pass_ttl_seconds") as u32,
        },
    };
    let stored_available = event.get::<i32, _>("available_seats") as u32;
    let holds_expired_through_ms = event
        .get::<Option<chrono::DateTime<chrono::Utc>>, _>("holds_expired_through")
        .map(from_timestamp);
    Ok((
        rules,
        event.get("owner_epoch"),
        stored_available,
        holds_expired_through_ms,
    ))
}

/// The waiting room's entries, in arrival order.
async fn load_queue(tx: &mut Tx<'_>, event_id: EventId) -> Result<Vec<RestoredEntry>, LoadError> {
    let rows = sqlx::query(
        "SELECT user_id, arrival_seq, early, rank, joined_at, admitted_at, pass_expires_at,
                pass_used_at IS NOT NULL AS pass_used
         FROM queue_entries WHERE event_id = $1 ORDER BY arrival_seq",
    )
    .bind(event_id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| RestoredEntry {
            user_id: row.get("user_id"),
            arrival_seq: row.get("arrival_seq"),
            early: row.get("early"),
            rank: row.get::<Option<i32>, _>("rank").map(|r| r as u32),
            joined_at_ms: from_timestamp(row.get("joined_at")),
            admitted_at_ms: row
                .get::<Option<chrono::DateTime<chrono::Utc>>, _>("admitted_at")
                .map(from_timestamp),
            pass_expires_at_ms: row
                .get::<Option<chrono::DateTime<chrono::Utc>>, _>("pass_expires_at")
                .map(from_timestamp),
            pass_used: row.get("pass_used"),
        })
        .collect())
}

/// The event's sections with their seats.
async fn load_sections(
    tx: &mut Tx<'_>,
    event_id: EventId,
) -> Result<Vec<RestoredSection>, LoadError> {
    // Seats come grouped by row with their ids and numbers as arrays: one row per seat row
    // instead of one per seat keeps a 100,000-seat event to a few hundred result rows.
    let mut rows_by_section: BTreeMap<i64, Vec<RowSpec>> = BTreeMap::new();
    let seat_rows = sqlx::query(
        "SELECT section_id, row_index, min(row_label) AS row_label,
                array_agg(id ORDER BY seat_number) AS ids,
                array_agg(seat_number ORDER BY seat_number) AS numbers
         FROM seats WHERE event_id = $1
         GROUP BY section_id, row_index ORDER BY section_id, row_index",
    )
    .bind(event_id)
    .fetch_all(&mut **tx)
    .await?;
    for row in seat_rows {
        let ids: Vec<i64> = row.get("ids");
        let numbers: Vec<i32> = row.get("numbers");
        rows_by_section
            .entry(row.get("section_id"))
            .or_default()
            .push(RowSpec {
                label: row.get("row_label"),
                index: row.get("row_index"),
                seats: ids.into_iter().zip(numbers).collect(),
            });
    }
    let mut sections = Vec::new();
    for row in sqlx::query(
        "SELECT id, name, kind, capacity, price_cents, available, held, booked
         FROM event_sections WHERE event_id = $1 ORDER BY id",
    )
    .bind(event_id)
    .fetch_all(&mut **tx)
    .await?
    {
        let id: i64 = row.get("id");
        sections.push(RestoredSection {
            id,
            name: row.get("name"),
            kind: parse(row.get("kind"), SectionKind::parse)?,
            capacity: row.get::<i32, _>("capacity") as u32,
            price_cents: row.get("price_cents"),
            rows: rows_by_section.remove(&id).unwrap_or_default(),
            stored_counts: (
                row.get::<i32, _>("available") as u32,
                row.get::<i32, _>("held") as u32,
                row.get::<i32, _>("booked") as u32,
            ),
        });
    }
    Ok(sections)
}

/// The holds that still matter: ACTIVE ones, those of bookings, and keyed ones (a retry must
/// get their first answer). Read through `reservations_effective`: a hold stored ACTIVE but
/// due by the event's `holds_expired_through` expired, though no row says so.
async fn load_holds(tx: &mut Tx<'_>, event_id: EventId) -> Result<Vec<RestoredHold>, LoadError> {
    let mut holds = Vec::new();
    for row in sqlx::query(
        "SELECT id, user_id, section_id, quantity, seat_ids, status, booking_id,
                idempotency_key, request_fingerprint, expires_at, created_at
         FROM reservations_effective
         WHERE event_id = $1
           AND (status IN ('ACTIVE', 'CONFIRMED') OR booking_id IS NOT NULL
                OR idempotency_key IS NOT NULL)",
    )
    .bind(event_id)
    .fetch_all(&mut **tx)
    .await?
    {
        holds.push(RestoredHold {
            view: HoldView {
                id: row.get("id"),
                event_id,
                user_id: row.get("user_id"),
                section_id: row.get("section_id"),
                quantity: row.get::<i32, _>("quantity") as u32,
                seat_ids: row.get("seat_ids"),
                status: parse(row.get("status"), HoldStatus::parse)?,
                expires_at_ms: from_timestamp(row.get("expires_at")),
                created_at_ms: from_timestamp(row.get("created_at")),
            },
            booking_id: row.get("booking_id"),
            idempotency_key: row.get("idempotency_key"),
            request_fingerprint: row.get("request_fingerprint"),
        });
    }
    Ok(holds)
}

/// Every booking of the event, without items (they come from the holds).
async fn load_bookings(
    tx: &mut Tx<'_>,
    event_id: EventId,
) -> Result<Vec<RestoredBooking>, LoadError> {
    let mut bookings = Vec::new();
    for row in sqlx::query(
        "SELECT id, booking_reference, user_id, status, subtotal_cents, discount_cents,
                total_cents, discount_id, idempotency_key, request_fingerprint, created_at
         FROM bookings WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_all(&mut **tx)
    .await?
    {
        let view = BookingView {
            id: row.get("id"),
            booking_reference: row.get("booking_reference"),
            event_id,
            user_id: row.get("user_id"),
            status: parse(row.get("status"), BookingStatus::parse)?,
            subtotal_cents: row.get("subtotal_cents"),
            discount_cents: row.get("discount_cents"),
            total_cents: row.get("total_cents"),
            discount_id: row.get("discount_id"),
            items: Vec::new(),
            created_at_ms: from_timestamp(row.get("created_at")),
        };
        bookings.push(RestoredBooking {
            view,
            idempotency_key: row.get("idempotency_key"),
            request_fingerprint: row.get("request_fingerprint"),
        });
    }
    Ok(bookings)
}

/// Every discount code of the event.
async fn load_discounts(
    tx: &mut Tx<'_>,
    event_id: EventId,
) -> Result<Vec<DiscountView>, LoadError> {
    let mut discounts = Vec::new();
    for row in sqlx::query(
        "SELECT id, code, percent_off, amount_off_cents, max_uses, used, valid_from, valid_until
         FROM discounts WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_all(&mut **tx)
    .await?
    {
        let percent: Option<i32> = row.get("percent_off");
        let amount: Option<i64> = row.get("amount_off_cents");
        let amount = match (percent, amount) {
            (Some(p), None) => DiscountAmount::PercentOff(p as u8),
            (None, Some(c)) => DiscountAmount::AmountOffCents(c),
            _ => {
                return Err(LoadError::Corrupt(
                    "a discount must be a percent or an amount".into(),
                ))
            }
        };
        discounts.push(DiscountView {
            id: row.get("id"),
            event_id,
            code: row.get("code"),
            amount,
            max_uses: row.get::<i32, _>("max_uses") as u32,
            used: row.get::<i32, _>("used") as u32,
            valid_from_ms: row.get::<Option<_>, _>("valid_from").map(from_timestamp),
            valid_until_ms: row.get::<Option<_>, _>("valid_until").map(from_timestamp),
        });
    }
    Ok(discounts)
}
