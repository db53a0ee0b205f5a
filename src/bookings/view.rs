//! How bookings look in the API, and loading them from PostgreSQL.

use std::collections::HashMap;

use boxoffice_engine::types::BookingView as EngineBooking;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use crate::error::ApiError;

/// One line of a booking.
#[derive(Serialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ItemView {
    pub reservation_id: i64,
    pub section_id: i64,
    pub quantity: i32,
    pub seat_ids: Vec<i64>,
    pub unit_price_cents: i64,
}

/// Who bought a booking: shown to the event's organizer in the event's booking listing.
#[derive(Serialize, ToSchema, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Buyer {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
}

/// A booking.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingView {
    /// The buyer, in the organizer's listing of an event's bookings only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buyer: Option<Buyer>,
    pub booking_reference: String,
    pub event_id: i64,
    /// CONFIRMED or CANCELLED.
    pub status: String,
    pub subtotal_cents: i64,
    pub discount_cents: i64,
    pub total_cents: i64,
    pub items: Vec<ItemView>,
    pub created_at: DateTime<Utc>,
}

impl From<EngineBooking> for BookingView {
    fn from(b: EngineBooking) -> Self {
        BookingView {
            buyer: None,
            booking_reference: b.booking_reference,
            event_id: b.event_id,
            status: b.status.as_str().to_string(),
            subtotal_cents: b.subtotal_cents,
            discount_cents: b.discount_cents,
            total_cents: b.total_cents,
            items: b
                .items
                .into_iter()
                .map(|i| ItemView {
                    reservation_id: i.hold_id,
                    section_id: i.section_id,
                    quantity: i.quantity as i32,
                    seat_ids: i.seat_ids,
                    unit_price_cents: i.unit_price_cents,
                })
                .collect(),
            created_at: DateTime::from_timestamp_millis(b.created_at_ms).unwrap_or_default(),
        }
    }
}

/// A stored booking row, with the ids access decisions need.
#[derive(sqlx::FromRow)]
pub struct BookingRow {
    pub id: i64,
    pub booking_reference: String,
    pub user_id: i64,
    pub event_id: i64,
    pub status: String,
    pub subtotal_cents: i64,
    pub discount_cents: i64,
    pub total_cents: i64,
    pub created_at: DateTime<Utc>,
}

pub const SELECT: &str = "SELECT id, booking_reference, user_id, event_id, status, subtotal_cents,
                                 discount_cents, total_cents, created_at FROM bookings";

/// Whether views name their buyer (the organizer's listing) or not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WithBuyer {
    Yes,
    No,
}

/// Turns booking rows into views, fetching all their items (and buyers) in one query each.
pub async fn with_items(
    pool: &PgPool,
    rows: Vec<BookingRow>,
    with_buyer: WithBuyer,
) -> Result<Vec<BookingView>, ApiError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let items: Vec<(i64, i64, i64, i32, Vec<i64>, i64)> = sqlx::query_as(
        "SELECT r.booking_id, r.id, r.section_id, r.quantity, r.seat_ids, s.price_cents
         FROM reservations r JOIN event_sections s ON s.id = r.section_id
         WHERE r.booking_id = ANY($1) ORDER BY r.id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_booking: HashMap<i64, Vec<ItemView>> = HashMap::new();
    for (booking_id, reservation_id, section_id, quantity, seat_ids, unit_price_cents) in items {
        by_booking.entry(booking_id).or_default().push(ItemView {
            reservation_id,
            section_id,
            quantity,
            seat_ids,
            unit_price_cents,
        });
    }
    let mut buyers: HashMap<i64, Buyer> = HashMap::new();
    if with_buyer == WithBuyer::Yes {
        let user_ids: Vec<i64> = rows.iter().map(|r| r.user_id).collect();
        let found: Vec<(i64, String, String, String)> =
            sqlx::query_as("SELECT id, email, first_name, last_name FROM users WHERE id = ANY($1)")
                .bind(&user_ids)
                .fetch_all(pool)
                .await?;
        for (id, email, first_name, last_name) in found {
            let buyer = Buyer {
                id,
                email,
                first_name,
                last_name,
            };
            buyers.insert(id, buyer);
        }
    }
    Ok(rows
        .into_iter()
        .map(|r| BookingView {
            buyer: buyers.get(&r.user_id).cloned(),
            items: by_booking.remove(&r.id).unwrap_or_default(),
            booking_reference: r.booking_reference,
            event_id: r.event_id,
            status: r.status,
            subtotal_cents: r.subtotal_cents,
            discount_cents: r.discount_cents,
            total_cents: r.total_cents,
            created_at: r.created_at,
        })
        .collect())
}
