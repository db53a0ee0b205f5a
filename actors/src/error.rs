//! Why the engine says no.
//!
//! A [`Refusal`] is a business answer decided by the inventory (sold out, over the limit…):
//! nothing changed, and retrying the same request will get the same answer until the
//! inventory changes. An [`EngineError`] wraps it together with the operational failures
//! (overload, database trouble) whose outcome the client may retry with its idempotency key.

use crate::types::{BookingStatus, EventId, EventStatus, HoldId, HoldStatus, SeatId};

fn seats_unavailable(seat_ids: &[SeatId]) -> String {
    if seat_ids.is_empty() {
        return "no row has that many adjacent seats free; allowSplit accepts seats apart".into();
    }
    let ids: Vec<String> = seat_ids.iter().map(ToString::to_string).collect();
    format!("seats {} are not available", ids.join(", "))
}

/// A request the inventory turned down. Nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the sale is not open for this event")]
    SaleNotOpen,
    #[error("this event is {0} and no longer sells")]
    EventClosed(EventStatus),
    #[error("not enough tickets are left in this section")]
    SoldOut,
    /// `seat_ids`: the requested seats already taken; empty when best-available found no
    /// block of adjacent seats.
    #[error("{}", seats_unavailable(seat_ids))]
    SeatUnavailable { seat_ids: Vec<SeatId> },
    #[error(
        "a buyer may have {limit} tickets for this event: you have {already}, and {asked} more \
         would be too many"
    )]
    TicketLimit {
        limit: u32,
        already: u32,
        asked: u32,
    },
    #[error("no such section in this event")]
    SectionNotFound,
    #[error("no such seat in this event")]
    SeatNotFound,
    #[error("no active reservation {0} of yours")]
    HoldNotFound(HoldId),
    #[error("the hold is {0}, not ACTIVE")]
    HoldNotActive(HoldStatus),
    #[error("no such booking")]
    BookingNotFound,
    #[error("the booking is already {0}")]
    BookingNotActive(BookingStatus),
    #[error("no such discount code for this event")]
    DiscountNotFound,
    #[error("this discount code is not valid now")]
    DiscountNotValidNow,
    #[error("this discount code has been used up")]
    DiscountExhausted,
    #[error("a discount code with this name already exists for this event")]
    DiscountExists,
    #[error("a section with this name already exists for this event")]
    SectionExists,
    #[error("cannot move an event from {from} to {to}")]
    InvalidTransition { from: EventStatus, to: EventStatus },
    #[error("this idempotency key was used for a different request")]
    IdempotencyKeyReused,
    /// The request is well formed but asks for a section of the other kind (a quantity of
    /// a seated section, seats of a general one): a conflict with what the section is.
    #[error("{0}")]
    WrongSectionType(String),
    /// The request is well formed but the event's current state leaves no room for it
    /// (sections or codes per event, the venue's capacity, buyers already over a new limit).
    #[error("{0}")]
    LimitReached(String),
    /// The request itself breaks a rule (a value out of range, an impossible combination).
    #[error("{0}")]
    Invalid(String),
    /// The event's waiting room is off: there is no line to join; holds need no pass.
    #[error("this event has no waiting room")]
    WaitingRoomOff,
    /// The buyer has no entry in the event's waiting room.
    #[error("you have not joined this event's waiting room")]
    NotInQueue,
    /// The waiting room is on and the buyer has not been let in (yet).
    #[error("this event's waiting room is on: join it and hold once you are let in")]
    QueuePassRequired,
    /// The buyer's pass ran out.
    #[error("your waiting-room pass has run out")]
    QueuePassExpired,
}

impl Refusal {
    /// The stable, machine-readable code the API puts in `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::SaleNotOpen => "SALE_NOT_OPEN",
            Refusal::EventClosed(_) => "EVENT_CLOSED",
            Refusal::SoldOut => "SOLD_OUT",
            Refusal::SeatUnavailable { .. } => "SEAT_UNAVAILABLE",
            Refusal::TicketLimit { .. } => "TICKET_LIMIT",
            Refusal::SectionNotFound => "SECTION_NOT_FOUND",
            Refusal::SeatNotFound => "SEAT_NOT_FOUND",
            Refusal::HoldNotFound(_) => "RESERVATION_NOT_FOUND",
            Refusal::HoldNotActive(_) => "RESERVATION_NOT_ACTIVE",
            Refusal::BookingNotFound => "BOOKING_NOT_FOUND",
            Refusal::BookingNotActive(_) => "BOOKING_NOT_ACTIVE",
            Refusal::DiscountNotFound => "DISCOUNT_NOT_FOUND",
            Refusal::DiscountNotValidNow => "DISCOUNT_NOT_VALID",
            Refusal::DiscountExhausted => "DISCOUNT_EXHAUSTED",
            Refusal::DiscountExists => "DISCOUNT_EXISTS",
            Refusal::SectionExists => "SECTION_EXISTS",
            Refusal::InvalidTransition { .. } => "INVALID_STATUS_TRANSITION",
            Refusal::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Refusal::WrongSectionType(_) => "WRONG_SECTION_TYPE",
            Refusal::LimitReached(_) => "LIMIT_REACHED",
            Refusal::Invalid(_) => "VALIDATION_FAILED",
            Refusal::WaitingRoomOff => "WAITING_ROOM_OFF",
            Refusal::NotInQueue => "QUEUE_ENTRY_NOT_FOUND",
            Refusal::QueuePassRequired => "QUEUE_PASS_REQUIRED",
            Refusal::QueuePassExpired => "QUEUE_PASS_EXPIRED",
        }
    }
}

/// Everything an engine call can fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The inventory said no; nothing changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No such event.
    #[error("no such event")]
    EventNotFound,
    /// Too many requests in flight for this event or for the node: refused at once, nothing
    /// changed. Retry after a short pause.
    #[error("the engine is at capacity; retry shortly")]
    Overloaded,
    /// The engine is shutting down and takes no new work.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The decision could not be made durable (database error, timeout, lost actor). The
    /// change was not acknowledged; it may or may not be in PostgreSQL, so a client retries
    /// with the same idempotency key.
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// Another live node owns the event: the request belongs there (`url`, when known).
    /// Nothing changed here.
    #[error("event {event_id} is owned by node {node_id}")]
    NotOwner {
        event_id: EventId,
        node_id: String,
        url: Option<String>,
    },
    /// This node holds no cluster lease now (lost it, or not yet joined): it decides
    /// nothing until it has one again. Nothing changed.
    #[error("this node is not a live member of the cluster; retry")]
    NotMember,
}

impl EngineError {
    /// Whether the client may retry the same request later and hope for another answer.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            EngineError::Overloaded
                | EngineError::ShuttingDown
                | EngineError::Unavailable(_)
                | EngineError::NotOwner { .. }
                | EngineError::NotMember
        )
    }
}
