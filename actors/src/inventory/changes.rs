//! Row changes: what an inventory decision means for PostgreSQL.
//!
//! Every inventory operation returns the changes it implies instead of writing them, so the
//! inventory stays free of I/O and the write-behind can batch, coalesce and commit many
//! decisions in one transaction. Counts are carried as absolute values (not deltas): within
//! a batch the last value wins, which makes coalescing trivially correct.

use crate::types::{
    BookingId, BookingStatus, DiscountAmount, DiscountId, EventStatus, HoldId, HoldStatus, SeatId,
    SeatStatus, SectionId, SectionKind, UserId,
};
use crate::waiting_room::{QueueChange, WaitingRoomRules};

/// A new `reservations` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRow {
    pub id: HoldId,
    pub user_id: UserId,
    pub section_id: SectionId,
    pub quantity: u32,
    pub seat_ids: Vec<SeatId>,
    pub status: HoldStatus,
    pub booking_id: Option<BookingId>,
    pub idempotency_key: Option<String>,
    /// What the keyed request asked ([`HoldKind::fingerprint`](crate::types::HoldKind::fingerprint)),
    /// set with `idempotency_key`.
    pub request_fingerprint: Option<String>,
    pub session_id: Option<String>,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A new `bookings` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookingRow {
    pub id: BookingId,
    pub reference: String,
    pub user_id: UserId,
    pub status: BookingStatus,
    pub subtotal_cents: i64,
    pub discount_cents: i64,
    pub total_cents: i64,
    pub discount_id: Option<DiscountId>,
    pub idempotency_key: Option<String>,
    /// What the keyed request asked ([`ConfirmRequest::fingerprint`](crate::types::ConfirmRequest::fingerprint)),
    /// set with `idempotency_key`.
    pub request_fingerprint: Option<String>,
    pub created_at_ms: i64,
    pub cancelled_at_ms: Option<i64>,
}

/// One new seat of a new seated section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeatRow {
    pub id: SeatId,
    pub row_label: String,
    pub row_index: i32,
    pub seat_number: i32,
}

/// A new `event_sections` row, with its seats when RESERVED.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionRow {
    pub id: SectionId,
    pub name: String,
    pub kind: SectionKind,
    pub capacity: u32,
    pub price_cents: i64,
    pub seats: Vec<SeatRow>,
}

/// A new `discounts` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscountRow {
    pub id: DiscountId,
    pub code: String,
    pub amount: DiscountAmount,
    pub max_uses: u32,
    pub valid_from_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
}

/// One row-level consequence of an inventory decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Insert a reservation.
    HoldCreated(HoldRow),
    /// A reservation changed status (and, when confirmed, joined a booking).
    HoldStatus {
        hold_id: HoldId,
        status: HoldStatus,
        booking_id: Option<BookingId>,
        at_ms: i64,
    },
    /// A seat changed owner.
    Seat {
        seat_id: SeatId,
        status: SeatStatus,
        hold_id: Option<HoldId>,
        booking_id: Option<BookingId>,
    },
    /// A section's counts, absolute.
    SectionCounts {
        section_id: SectionId,
        available: u32,
        held: u32,
        booked: u32,
    },
    /// The event's sellable total and status, absolute.
    EventCounts {
        available_seats: u32,
        status: EventStatus,
    },
    /// The event's selling rules changed.
    EventSettings {
        sale_start_ms: i64,
        hold_ttl_seconds: u32,
        max_tickets_per_user: Option<u32>,
        waiting_room: WaitingRoomRules,
    },
    /// Insert a booking.
    BookingCreated(BookingRow),
    /// A booking was cancelled.
    BookingCancelled { booking_id: BookingId, at_ms: i64 },
    /// A discount's use count, absolute.
    DiscountUsed { discount_id: DiscountId, used: u32 },
    /// Insert a section (and its seats).
    SectionCreated(SectionRow),
    /// Insert a discount.
    DiscountCreated(DiscountRow),
    /// A waiting-room row change.
    Queue(QueueChange),
}
