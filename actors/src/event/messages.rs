//! The messages an event actor handles. Requests carry a reply port; the actor answers
//! refusals at once and everything else only after the decision is durable.

use ractor::RpcReplyPort;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::EngineError;
use crate::inventory::{EventRules, SectionSnapshot};
use crate::types::{
    BookingId, BookingOutcome, BookingView, ConfirmRequest, DiscountView, HoldId, HoldOutcome,
    HoldRequest, HoldView, NewDiscount, NewSection, Requester, SettingsUpdate, UserId,
};
use crate::waiting_room::QueueView;

/// `boxoffice_engine_answer_duration_seconds`, made once (see `engine::CallMetrics`: the
/// first answer comes after the server installed its recorder).
static ANSWER_DURATION: std::sync::LazyLock<metrics::Histogram> =
    std::sync::LazyLock::new(|| metrics::histogram!("boxoffice_engine_answer_duration_seconds"));

/// Where an answer goes, and the request's slot in its event's in-flight bound.
///
/// The slot is given back the moment the answer is sent (or the message is dropped
/// unanswered) — for a decision parked in a batch, the moment the batch is decided
/// ([`Reply::take_slot`]) — not when the caller's task next runs. Under overload that task can wait
/// tens of milliseconds in its worker's run queue behind connections being refused; a slot
/// held through that wait was one the engine could not use, so every admitted hold's wait
/// for a CPU shrank the event's throughput (256 slots / 30 ms is 8,500 holds a second).
/// The bound is on work the engine has not answered, and that is what it counts. (The
/// node-wide bound, `Engine::admit`, still covers the whole call: shutdown waits on it.)
pub struct Reply<T> {
    /// Where the caller waits for the answer.
    port: RpcReplyPort<Result<T, EngineError>>,
    /// Dropped right after the answer is sent (or taken by a batch, which gives it back
    /// as soon as it is decided).
    slot: Option<OwnedSemaphorePermit>,
    /// When the request was sent to the actor: the engine's own part of its wait is
    /// measured from here to the answer.
    sent_at: std::time::Instant,
}

impl<T> Reply<T> {
    /// A reply port, with the event slot the request took, if it took one.
    pub fn new(
        port: RpcReplyPort<Result<T, EngineError>>,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Reply {
            port,
            slot,
            sent_at: std::time::Instant::now(),
        }
    }

    /// Takes the slot out, for whoever gives it back sooner than the answer is delivered
    /// (a batch, as soon as it is decided).
    pub fn take_slot(&mut self) -> Option<OwnedSemaphorePermit> {
        self.slot.take()
    }

    /// Sends the answer, then gives the slot back. Fails if the caller stopped waiting.
    pub fn send(
        self,
        answer: Result<T, EngineError>,
    ) -> Result<(), ractor::MessagingErr<Result<T, EngineError>>> {
        let Reply {
            port,
            slot,
            sent_at,
        } = self;
        ANSWER_DURATION.record(sent_at.elapsed().as_secs_f64());
        let sent = port.send(answer);
        drop(slot);
        sent
    }
}

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::{oneshot, Semaphore};

    use super::*;

    #[tokio::test]
    async fn the_event_slot_is_given_back_when_the_answer_is_sent_or_dropped() {
        let slots = Arc::new(Semaphore::new(1));
        let (port, answer) = oneshot::channel();
        let slot = slots.clone().try_acquire_owned().unwrap();
        let reply: Reply<u32> = Reply::new(port.into(), Some(slot));
        assert_eq!(slots.available_permits(), 0);
        reply.send(Ok(7)).unwrap();
        assert_eq!(
            slots.available_permits(),
            1,
            "given back before the caller has read the answer"
        );
        assert!(matches!(answer.await, Ok(Ok(7))));

        // A slot taken out (by a batch) is the taker's to give back, whenever the answer goes.
        let (port, _answer) = oneshot::channel();
        let slot = slots.clone().try_acquire_owned().unwrap();
        let mut reply: Reply<u32> = Reply::new(port.into(), Some(slot));
        let taken = reply.take_slot();
        reply.send(Ok(8)).unwrap();
        assert_eq!(slots.available_permits(), 0);
        drop(taken);
        assert_eq!(slots.available_permits(), 1);

        // A message dropped unanswered (the actor stopped) gives its slot back too.
        let (port, answer) = oneshot::channel::<Result<u32, EngineError>>();
        let slot = slots.clone().try_acquire_owned().unwrap();
        drop(Reply::new(port.into(), Some(slot)));
        assert_eq!(slots.available_permits(), 1);
        assert!(answer.await.is_err());
    }
}
