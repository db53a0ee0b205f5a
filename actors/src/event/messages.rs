//! The messages an event actor handles. Requests carry a reply port; the actor answers
//! refusals at once and everything else only after the decision is durable.

use ractor::RpcReplyPort;

use crate::error::EngineError;
use crate::inventory::{EventRules, SectionSnapshot};
use crate::types::{
    BookingId, BookingOutcome, BookingView, ConfirmRequest, DiscountView, HoldId, HoldOutcome,
    HoldRequest, HoldView, NewDiscount, NewSection, Requester, SettingsUpdate, UserId,
};
use crate::waiting_room::QueueView;

/// Where an answer goes.
pub type Reply<T> = RpcReplyPort<Result<T, EngineError>>;

/// Everything that can happen to an event's inventory.
pub enum EventMessage {
    /// Place a hold.
    Hold(HoldRequest, Reply<HoldOutcome>),
    /// Release an ACTIVE hold.
    Release(Requester, HoldId, Reply<HoldView>),
    /// Confirm holds into a booking.
    Confirm(ConfirmRequest, Reply<BookingOutcome>),
    /// Cancel a booking.
    CancelBooking(Requester, BookingId, Reply<BookingView>),
    /// Add a section.
    AddSection(NewSection, Reply<SectionSnapshot>),
    /// Add a discount code.
    AddDiscount(NewDiscount, Reply<DiscountView>),
    /// Change status or selling rules.
    UpdateSettings(SettingsUpdate, Reply<EventRules>),
    /// Join the waiting room (or hear where one stands in it).
    JoinQueue(UserId, Reply<QueueView>),
    /// Answers once every decision made before it is durable: a write barrier.
    Sync(Reply<()>),
    /// The expiry timer fired.
    Expire,
    /// The idle timer fired: stop if nothing has happened for a while.
    IdleCheck,
    /// The flush task finished, with the error that kept it from committing if any.
    FlushDone(Result<(), String>),
    /// Flush everything, then stop. Sent at shutdown.
    Drain(RpcReplyPort<()>),
}

impl EventMessage {
    /// Whether this is a client's request (as opposed to the actor's own timers and flushes,
    /// and shutdown): requests keep an actor from stopping for idleness.
    pub fn is_request(&self) -> bool {
        !matches!(
            self,
            EventMessage::Sync(_)
                | EventMessage::Expire
                | EventMessage::IdleCheck
                | EventMessage::FlushDone(_)
                | EventMessage::Drain(_)
        )
    }
}
