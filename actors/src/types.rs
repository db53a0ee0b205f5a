//! The vocabulary shared by the inventory, the actors and the server crate: ids, statuses,
//! requests and the views the engine answers with.
//!
//! Times inside the engine are integer milliseconds since the Unix epoch (`*_ms`), read from
//! the engine's [`Clock`](crate::Clock); they become `timestamptz` only at the database edge.

use serde::Serialize;

pub type EventId = i64;
pub type UserId = i64;
pub type SectionId = i64;
pub type SeatId = i64;
pub type HoldId = i64;
pub type BookingId = i64;
pub type DiscountId = i64;

/// Declares a string-backed status enum with its PostgreSQL spelling, so that the database
/// `CHECK` constraints, the JSON API and the engine all use one spelling.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            /// Every spelling, in declaration order.
            pub const SPELLINGS: &'static [&'static str] = &[$($text),+];

            /// The spelling used in PostgreSQL and in the JSON API.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Parses the PostgreSQL / JSON spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Lifecycle of an event. Only `OnSale` sells; `SoldOut` is entered and left by the engine.
    EventStatus {
        Draft => "DRAFT",
        OnSale => "ON_SALE",
        SoldOut => "SOLD_OUT",
        Cancelled => "CANCELLED",
        Completed => "COMPLETED",
    }
);

string_enum!(
    /// How a section is sold: by quantity (GENERAL) or by seat (a seated section, spelled
    /// RESERVED in the API and the database, as the brief names it).
    SectionKind {
        General => "GENERAL",
        Seated => "RESERVED",
    }
);

string_enum!(
    /// Lifecycle of a hold (a row of `reservations`).
    HoldStatus {
        Active => "ACTIVE",
        Confirmed => "CONFIRMED",
        Expired => "EXPIRED",
        Cancelled => "CANCELLED",
    }
);

string_enum!(
    /// Status of one seat of a seated section. A held seat is spelled RESERVED in the API
    /// and the database, as the brief names it.
    SeatStatus {
        Available => "AVAILABLE",
        Held => "RESERVED",
        Booked => "BOOKED",
    }
);

string_enum!(
    /// Lifecycle of a booking.
    BookingStatus {
        Confirmed => "CONFIRMED",
        Cancelled => "CANCELLED",
    }
);

impl EventStatus {
    /// Whether an organizer may move an event from `self` to `to`. `SOLD_OUT` is never set by
    /// hand: the engine enters and leaves it as seats run out and come back.
    pub fn can_become(self, to: EventStatus) -> bool {
        use EventStatus::*;
        matches!(
            (self, to),
            (Draft, OnSale)
                | (Draft, Cancelled)
                | (OnSale, Cancelled)
                | (OnSale, Completed)
                | (SoldOut, Cancelled)
                | (SoldOut, Completed)
        )
    }
}

/// Who asks. The server crate decides `privileged` (the event's organizer or an admin may act
/// on any buyer's holds and bookings); the engine only compares ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requester {
    /// The authenticated user.
    pub user_id: UserId,
    /// True when the user may act on other users' holds and bookings of this event.
    pub privileged: bool,
}

impl Requester {
    /// A buyer acting on their own behalf.
    pub fn buyer(user_id: UserId) -> Self {
        Self {
            user_id,
            privileged: false,
        }
    }

    /// Whether this requester may touch something owned by `owner`.
    pub fn may_act_for(&self, owner: UserId) -> bool {
        self.privileged || self.user_id == owner
    }
}

/// What a buyer asks to hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldKind {
    /// `quantity` tickets of a GENERAL section.
    General {
        section_id: SectionId,
        quantity: u32,
    },
    /// These exact seats, all of one seated section.
    Seats { seat_ids: Vec<SeatId> },
    /// The best `quantity` seats of a seated section: adjacent in one row, front rows and
    /// the centre first; when `allow_split` is set and no row has them together, the best
    /// single seats instead.
    BestAvailable {
        section_id: SectionId,
        quantity: u32,
        allow_split: bool,
    },
}

impl HoldKind {
    /// How many tickets the request asks for.
    pub fn quantity(&self) -> u32 {
        match self {
            HoldKind::General { quantity, .. } | HoldKind::BestAvailable { quantity, .. } => {
                *quantity
            }
            HoldKind::Seats { seat_ids } => seat_ids.len() as u32,
        }
    }

    /// A stable text naming what was asked. It is stored next to an idempotency key so that
    /// a different request reusing the key is recognised, even after the event is reloaded.
    /// Seats are listed sorted: the same seats in another order are the same request.
    pub fn fingerprint(&self) -> String {
        match self {
            HoldKind::General {
                section_id,
                quantity,
            } => format!("GENERAL section={section_id} quantity={quantity}"),
            HoldKind::Seats { seat_ids } => {
                let mut sorted = seat_ids.clone();
                sorted.sort_unstable();
                let ids: Vec<String> = sorted.iter().map(ToString::to_string).collect();
                format!("SEATS seats={}", ids.join(","))
            }
            HoldKind::BestAvailable {
                section_id,
                quantity,
                allow_split,
            } => format!(
                "BEST_AVAILABLE section={section_id} quantity={quantity} split={allow_split}"
            ),
        }
    }
}

/// A request for a hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldRequest {
    /// The buyer.
    pub user_id: UserId,
    /// What to hold.
    pub kind: HoldKind,
    /// The client's `Idempotency-Key`: a retry with the same key gets the first answer.
    pub idempotency_key: Option<String>,
    /// Optional client session, stored on the row for the brief's session index.
    pub session_id: Option<String>,
}

/// A hold as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldView {
    pub id: HoldId,
    pub event_id: EventId,
    pub user_id: UserId,
    pub section_id: SectionId,
    pub quantity: u32,
    pub seat_ids: Vec<SeatId>,
    pub status: HoldStatus,
    pub expires_at_ms: i64,
    pub created_at_ms: i64,
}

/// The answer to a hold request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldOutcome {
    /// The hold.
    pub hold: HoldView,
    /// True when this answers a retry of an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// A request to turn holds into a booking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfirmRequest {
    /// Who confirms; must own the holds unless privileged.
    pub requester: Requester,
    /// The holds to confirm, all of this event, all ACTIVE.
    pub hold_ids: Vec<HoldId>,
    /// Optional discount code of this event (case-insensitive).
    pub discount_code: Option<String>,
    /// The client's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
}

impl ConfirmRequest {
    /// The discount code as the inventory files it: trimmed and upper-cased.
    pub fn normalized_code(&self) -> Option<String> {
        self.discount_code.as_ref().map(|c| c.trim().to_uppercase())
    }

    /// A stable text naming what was asked (holds in id order, normalized code), stored next
    /// to an idempotency key; see [`HoldKind::fingerprint`].
    pub fn fingerprint(&self) -> String {
        let mut ids = self.hold_ids.clone();
        ids.sort_unstable();
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        format!(
            "holds={} code={}",
            ids.join(","),
            self.normalized_code().unwrap_or_default()
        )
    }
}

/// One line of a booking: the seats or tickets of one confirmed hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingItem {
    pub hold_id: HoldId,
    pub section_id: SectionId,
    pub quantity: u32,
    pub seat_ids: Vec<SeatId>,
    pub unit_price_cents: i64,
}

/// A booking as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BookingView {
    pub id: BookingId,
    pub booking_reference: String,
    pub event_id: EventId,
    pub user_id: UserId,
    pub status: BookingStatus,
    pub subtotal_cents: i64,
    pub discount_cents: i64,
    pub total_cents: i64,
    pub discount_id: Option<DiscountId>,
    pub items: Vec<BookingItem>,
    pub created_at_ms: i64,
}

/// The answer to a confirm request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookingOutcome {
    /// The booking.
    pub booking: BookingView,
    /// True when this answers a retry with the same idempotency key.
    pub replayed: bool,
}

/// How much a discount takes off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DiscountAmount {
    /// A percentage of the subtotal, 1..=100.
    PercentOff(u8),
    /// A fixed amount, capped at the subtotal.
    AmountOffCents(i64),
}

impl DiscountAmount {
    /// The discount on `subtotal_cents`, never more than the subtotal. Percentages round down,
    /// in the buyer's disfavour by at most one cent.
    pub fn on(self, subtotal_cents: i64) -> i64 {
        match self {
            DiscountAmount::PercentOff(p) => subtotal_cents * i64::from(p) / 100,
            DiscountAmount::AmountOffCents(c) => c.min(subtotal_cents),
        }
    }
}

/// A discount code of an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscountView {
    pub id: DiscountId,
    pub event_id: EventId,
    /// Upper-cased; codes compare case-insensitively.
    pub code: String,
    pub amount: DiscountAmount,
    pub max_uses: u32,
    pub used: u32,
    pub valid_from_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
}

/// A new section, as the organizer describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SectionSpec {
    /// Sold by quantity.
    General { capacity: u32 },
    /// Sold by seat: `rows` rows labelled A, B, … of `seats_per_row` seats numbered from 1.
    Seated { rows: u32, seats_per_row: u32 },
}

/// A request to add a section to an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSection {
    pub name: String,
    pub spec: SectionSpec,
    pub price_cents: i64,
    /// The most seats the event's sections may add up to with this one (its venue's
    /// capacity), checked by the event's actor so that two sections added at once cannot
    /// both slip under it. `None`: no venue, no limit.
    pub capacity_limit: Option<u32>,
}

/// A request to add a discount code to an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDiscount {
    pub code: String,
    pub amount: DiscountAmount,
    pub max_uses: u32,
    pub valid_from_ms: Option<i64>,
    pub valid_until_ms: Option<i64>,
}

/// Changes to an event's selling rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettingsUpdate {
    pub status: Option<EventStatus>,
    pub sale_start_ms: Option<i64>,
    pub hold_ttl_seconds: Option<u32>,
    /// `Some(None)` removes the per-buyer limit; `Some(Some(n))` sets it; `None` keeps it.
    pub max_tickets_per_user: Option<Option<u32>>,
    /// Changes to the waiting room's rules.
    pub waiting_room: WaitingRoomUpdate,
}

/// How an event's waiting room runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitingRoomRules {
    /// Whether holds need a pass.
    pub enabled: bool,
    /// Buyers let in per minute.
    pub admit_per_minute: u32,
    /// How long a pass lets its buyer hold.
    pub pass_ttl_seconds: u32,
}

impl Default for WaitingRoomRules {
    fn default() -> Self {
        WaitingRoomRules {
            enabled: false,
            admit_per_minute: crate::limits::DEFAULT_ADMIT_PER_MINUTE,
            pass_ttl_seconds: crate::limits::DEFAULT_PASS_TTL_SECONDS,
        }
    }
}

/// A change to the waiting room's rules; `None` keeps a value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaitingRoomUpdate {
    pub enabled: Option<bool>,
    pub admit_per_minute: Option<u32>,
    pub pass_ttl_seconds: Option<u32>,
}

/// The row label of a 0-based row index: A..Z, then AA, AB, … as on a theatre plan.
pub fn row_label(index: u32) -> String {
    let mut n = index as u64 + 1;
    let mut label = Vec::new();
    while n > 0 {
        n -= 1;
        label.push(b'A' + (n % 26) as u8);
        n /= 26;
    }
    label.reverse();
    String::from_utf8(label).expect("ASCII letters")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_labels_follow_the_theatre_plan() {
        assert_eq!(row_label(0), "A");
        assert_eq!(row_label(25), "Z");
        assert_eq!(row_label(26), "AA");
        assert_eq!(row_label(27), "AB");
        assert_eq!(row_label(26 + 26 * 26), "AAA");
    }

    #[test]
    fn statuses_round_trip_through_their_spelling() {
        for s in [
            EventStatus::Draft,
            EventStatus::OnSale,
            EventStatus::SoldOut,
            EventStatus::Cancelled,
            EventStatus::Completed,
        ] {
            assert_eq!(EventStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(EventStatus::parse("on_sale"), None);
    }

    #[test]
    fn discounts_never_exceed_the_subtotal() {
        assert_eq!(DiscountAmount::PercentOff(15).on(1999), 299);
        assert_eq!(DiscountAmount::PercentOff(100).on(1999), 1999);
        assert_eq!(DiscountAmount::AmountOffCents(5000).on(1999), 1999);
    }
}
