//! How events look in the API, and loading them from PostgreSQL.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::error::{ApiError, NotFound};

/// A section as event details show it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct SectionView {
    pub id: i64,
    pub name: String,
    /// GENERAL or RESERVED.
    #[serde(rename = "type")]
    #[sqlx(rename = "kind")]
    pub kind: String,
    pub capacity: i32,
    pub price_cents: i64,
    pub available: i32,
}

/// An event's details.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub id: i64,
    pub event_name: String,
    pub event_date: DateTime<Utc>,
    pub venue_id: Option<i64>,
    pub venue_name: Option<String>,
    /// DRAFT, ON_SALE, SOLD_OUT, CANCELLED or COMPLETED.
    pub status: String,
    pub sale_start_time: DateTime<Utc>,
    pub hold_ttl_seconds: i32,
    /// `null`: no per-buyer limit.
    pub max_tickets_per_user: Option<i32>,
    pub available_seats: i32,
    pub created_by: i64,
    pub sections: Vec<SectionView>,
    pub waiting_room: WaitingRoomView,
}

/// An event's waiting room settings.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitingRoomView {
    /// Whether holds need a pass from `/events/{id}/queue`.
    pub enabled: bool,
    /// Buyers let in per minute.
    pub admit_per_minute: i32,
    /// How long a pass lets its buyer start holding.
    pub pass_ttl_seconds: i32,
}

/// An event as listings show it: only the listing's fields are selected.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    pub id: i64,
    pub event_name: String,
    pub event_date: DateTime<Utc>,
    pub venue_id: Option<i64>,
    pub status: String,
    pub sale_start_time: DateTime<Utc>,
    pub available_seats: i32,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: i64,
    event_name: String,
    event_date: DateTime<Utc>,
    venue_id: Option<i64>,
    venue_name: Option<String>,
    status: String,
    sale_start_time: DateTime<Utc>,
    hold_ttl_seconds: i32,
    max_tickets_per_user: Option<i32>,
    available_seats: i32,
    created_by: i64,
    waiting_room_enabled: bool,
    queue_admit_per_minute: i32,
    queue_pass_ttl_seconds: i32,
}

/// Loads an event with its sections (two queries, no N+1).
pub async fn load(pool: &PgPool, event_id: i64) -> Result<EventView, ApiError> {
    let row: EventRow = sqlx::query_as(
        "SELECT e.id, e.event_name, e.event_date, e.venue_id, v.name AS venue_name, e.status,
                e.sale_start_time, e.hold_ttl_seconds, e.max_tickets_per_user, e.available_seats,
                e.created_by, e.waiting_room_enabled, e.queue_admit_per_minute,
                e.queue_pass_ttl_seconds
         FROM events e LEFT JOIN venues v ON v.id = e.venue_id WHERE e.id = $1",
    )
    .bind(event_id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| ApiError::not_found(NotFound::Event(event_id)))?;
    let sections: Vec<SectionView> = sqlx::query_as(
        "SELECT id, name, kind, capacity, price_cents, available FROM event_sections
         WHERE event_id = $1 ORDER BY id",
    )
    .bind(event_id)
    .fetch_all(pool)
    .await?;
    Ok(EventView {
        id: row.id,
        event_name: row.event_name,
        event_date: row.event_date,
        venue_id: row.venue_id,
        venue_name: row.venue_name,
        status: row.status,
        sale_start_time: row.sale_start_time,
        hold_ttl_seconds: row.hold_ttl_seconds,
        max_tickets_per_user: row.max_tickets_per_user,
        available_seats: row.available_seats,
        created_by: row.created_by,
        sections,
        waiting_room: WaitingRoomView {
            enabled: row.waiting_room_enabled,
            admit_per_minute: row.queue_admit_per_minute,
            pass_ttl_seconds: row.queue_pass_ttl_seconds,
        },
    })
}

/// The cache key of an event's details.
pub fn cache_key(event_id: i64) -> String {
    format!("event:{event_id}")
}
