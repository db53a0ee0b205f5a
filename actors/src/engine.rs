//! The [`Engine`]: the handle the server crate holds. It applies admission control, finds
//! (or starts) an event's actor through the [`Registry`], sends the request with a timeout
//! and returns the durable answer.

use std::sync::Arc;

use ractor::concurrency::JoinHandle;
use ractor::rpc::CallResult;
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::EngineConfig;
use crate::context::EngineContext;
use crate::error::EngineError;
use crate::event::{EventMessage, Reply};
use crate::feed::{Position, Subscription};
use crate::inventory::{EventRules, InventorySnapshot, SectionSnapshot};
use crate::supervisor::Registry;
use crate::types::{
    BookingId, BookingOutcome, BookingView, ConfirmRequest, DiscountView, EventId, HoldId,
    HoldOutcome, HoldRequest, HoldView, NewDiscount, NewSection, Requester, SettingsUpdate,
};

/// The engine. Cheap to clone; every clone drives the same actors.
#[derive(Clone)]
pub struct Engine {
    /// Pool, I/O thread, limits, clock, ids.
    ctx: Arc<EngineContext>,
    /// The live actors and the supervisor that starts them.
    registry: Arc<Registry>,
    /// Admission across all events.
    in_flight: Arc<Semaphore>,
    /// The supervisor actor's task, awaited at shutdown.
    supervisor: Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
}

/// How many times a request is re-sent when its actor stopped before handling it.
const MAX_SEND_ATTEMPTS: usize = 3;

/// Holds one admission slot and keeps the in-flight gauge honest.
struct Admitted(#[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for Admitted {
    fn drop(&mut self) {
        metrics::gauge!("boxoffice_engine_in_flight").decrement(1.0);
    }
}

/// Counts a request refused for want of an admission slot: `scope` is `node` (all events)
/// or `event` (the event's own limit).
fn shed(scope: &'static str) -> EngineError {
    metrics::counter!("boxoffice_engine_shed_total", "scope" => scope).increment(1);
    EngineError::Overloaded
}

impl Engine {
    /// Starts the engine: its I/O thread and pool, id prefetching and the supervisor.
    /// Actors start on first use. `pool` only lends its connection options: the engine opens
    /// a pool of its own (`db_connections` connections) on its I/O thread.
    pub async fn start(pool: PgPool, config: EngineConfig) -> Result<Engine, EngineError> {
        let in_flight = Arc::new(Semaphore::new(config.max_in_flight_total));
        let ctx = Arc::new(EngineContext::start(&pool, config).await?);
        let (registry, join) = Registry::start(ctx.clone()).await?;
        Ok(Engine {
            ctx,
            registry,
            in_flight,
            supervisor: Arc::new(tokio::sync::Mutex::new(Some(join))),
        })
    }

    /// Number of live event actors.
    pub fn live_actors(&self) -> usize {
        self.registry.len()
    }

    /// Places a hold.
    pub async fn hold(
        &self,
        event_id: EventId,
        request: HoldRequest,
    ) -> Result<HoldOutcome, EngineError> {
        self.call(event_id, "hold", |r| EventMessage::Hold(request.clone(), r))
            .await
    }

    /// Releases an ACTIVE hold.
    pub async fn release(
        &self,
        event_id: EventId,
        requester: Requester,
        hold_id: HoldId,
    ) -> Result<HoldView, EngineError> {
        self.call(event_id, "release", |r| {
            EventMessage::Release(requester, hold_id, r)
        })
        .await
    }

    /// Confirms holds into a booking.
    pub async fn confirm(
        &self,
        event_id: EventId,
        request: ConfirmRequest,
    ) -> Result<BookingOutcome, EngineError> {
        self.call(event_id, "confirm", |r| {
            EventMessage::Confirm(request.clone(), r)
        })
        .await
    }

    /// Cancels a booking.
    pub async fn cancel_booking(
        &self,
        event_id: EventId,
        requester: Requester,
        booking_id: BookingId,
    ) -> Result<BookingView, EngineError> {
        self.call(event_id, "cancel_booking", |r| {
            EventMessage::CancelBooking(requester, booking_id, r)
        })
        .await
    }

    /// Adds a section (and its seats) to an event.
    pub async fn add_section(
        &self,
        event_id: EventId,
        section: NewSection,
    ) -> Result<SectionSnapshot, EngineError> {
        self.call(event_id, "add_section", |r| {
            EventMessage::AddSection(section.clone(), r)
        })
        .await
    }

    /// Adds a discount code to an event.
    pub async fn add_discount(
        &self,
        event_id: EventId,
        discount: NewDiscount,
    ) -> Result<DiscountView, EngineError> {
        self.call(event_id, "add_discount", |r| {
            EventMessage::AddDiscount(discount.clone(), r)
        })
        .await
    }

    /// Changes an event's status or selling rules.
    pub async fn update_settings(
        &self,
        event_id: EventId,
        update: SettingsUpdate,
    ) -> Result<EventRules, EngineError> {
        self.call(event_id, "update_settings", |r| {
            EventMessage::UpdateSettings(update.clone(), r)
        })
        .await
    }

    /// Waits until every decision already made for the event is durable.
    pub async fn sync(&self, event_id: EventId) -> Result<(), EngineError> {
        self.call(event_id, "sync", EventMessage::Sync).await
    }

    /// The event's latest snapshot, starting its actor if needed. Never waits in the event's
    /// mailbox; only a cold event waits, for its load and for the supervisor to spawn it.
    pub async fn snapshot(&self, event_id: EventId) -> Result<Arc<InventorySnapshot>, EngineError> {
        if self.registry.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        Ok(self
            .registry
            .handle_for(event_id)
            .await?
            .snapshot
            .load_full())
    }

    /// Subscribes to an event's live feed (starting its actor if needed): what it missed
    /// since `last`, or its whole durable state, then every commit. Call
    /// [`Engine::unsubscribed`] when the subscriber leaves.
    pub async fn subscribe(
        &self,
        event_id: EventId,
        last: Option<Position>,
    ) -> Result<Subscription, EngineError> {
        for _ in 0..MAX_SEND_ATTEMPTS {
            if self.registry.is_shutting_down() {
                return Err(EngineError::ShuttingDown);
            }
            self.registry.handle_for(event_id).await?;
            // The actor may have stopped (idle) between the two lines, and its unwatched
            // feed gone with it: load again.
            if let Some(feed) = self.ctx.feeds.get(event_id) {
                return Ok(feed.subscribe(last));
            }
        }
        Err(EngineError::Unavailable("the event is restarting".into()))
    }

    /// A subscriber of `event_id` left: its feed is forgotten if nobody else listens and
    /// the event has no actor.
    pub fn unsubscribed(&self, event_id: EventId) {
        let live = self.registry.get(event_id).is_some();
        self.ctx.feeds.retire_if_unused(event_id, live);
    }

    /// Feeds kept now (events loaded or listened to).
    pub fn feeds(&self) -> usize {
        self.ctx.feeds.len()
    }

    /// Kills an event's actor without letting it flush, as a crash would. For fault tests.
    #[cfg(feature = "test-support")]
    pub fn kill_actor(&self, event_id: EventId) -> bool {
        match self.registry.get(event_id) {
            Some(h) => {
                h.actor.kill();
                true
            }
            None => false,
        }
    }

    /// Whether a request for this event would be shed right now (no slot on the node or
    /// for the event), counted as shed if so. Lets the server refuse before it parses a
    /// body or checks a token: under a flood, a refusal must cost far less than the work it
    /// protects. Only a hint — the slot itself is still taken in `call`.
    pub fn sheds_now(&self, event_id: EventId) -> bool {
        if self.in_flight.available_permits() == 0 {
            let _ = shed("node");
            return true;
        }
        let event_full = self
            .registry
            .get(event_id)
            .is_some_and(|h| h.in_flight.available_permits() == 0);
        if event_full {
            let _ = shed("event");
        }
        event_full
    }

    /// Sends a request to an event's actor and waits for its durable answer.
    async fn call<T, F>(
        &self,
        event_id: EventId,
        op: &'static str,
        make: F,
    ) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: Fn(Reply<T>) -> EventMessage,
    {
        let _admitted = self.admit()?;
        let started = std::time::Instant::now();
        let answer = self.send(event_id, make).await;
        metrics::histogram!("boxoffice_engine_call_duration_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
        answer
    }

    /// Finds the actor and sends, re-sending when the actor stopped before handling it.
    async fn send<T, F>(&self, event_id: EventId, make: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: Fn(Reply<T>) -> EventMessage,
    {
        for _ in 0..MAX_SEND_ATTEMPTS {
            let handle = self.registry.handle_for(event_id).await?;
            let _event_slot = handle
                .in_flight
                .clone()
                .try_acquire_owned()
                .map_err(|_| shed("event"))?;
            match handle
                .actor
                .call(&make, Some(self.ctx.config.call_timeout()))
                .await
            {
                Ok(CallResult::Success(answer)) => return answer,
                Ok(CallResult::Timeout) => {
                    return Err(EngineError::Unavailable(
                        "timed out waiting for the event; retry with the same Idempotency-Key"
                            .into(),
                    ))
                }
                // The actor stopped before it handled the message, or died before the decision
                // reached a batch: nothing was recorded, so sending again is safe.
                Ok(CallResult::SenderError) | Err(_) => continue,
            }
        }
        Err(EngineError::Unavailable("the event is restarting".into()))
    }

    /// Takes a node-wide admission slot, or refuses at once.
    fn admit(&self) -> Result<Admitted, EngineError> {
        if self.registry.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        let permit = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| shed("node"))?;
        metrics::gauge!("boxoffice_engine_in_flight").increment(1.0);
        Ok(Admitted(permit))
    }

    /// Stops the engine within one deadline (`shutdown_timeout_ms`, from the moment it is
    /// called): refuses new requests, waits for the ones in flight, has every actor flush its
    /// batches and stop (all at once, not one after another), stops the supervisor and
    /// closes the pool. Whatever is not done by the deadline is abandoned and logged: no
    /// reply waiting for it was ever a "yes".
    pub async fn shutdown(&self) {
        if self.registry.begin_shutdown() {
            return;
        }
        let deadline = Instant::now() + self.ctx.config.shutdown_timeout();
        let total = self.ctx.config.max_in_flight_total as u32;
        if tokio::time::timeout_at(deadline, self.in_flight.acquire_many(total))
            .await
            .is_err()
        {
            tracing::warn!("shutdown: requests still in flight at the deadline");
        }
        let mut drains = tokio::task::JoinSet::new();
        for handle in self.registry.all() {
            let wait = deadline.saturating_duration_since(Instant::now());
            drains.spawn(async move {
                let drained = handle.actor.call(EventMessage::Drain, Some(wait)).await;
                matches!(drained, Ok(CallResult::Success(())))
            });
        }
        let undrained = tokio::time::timeout_at(deadline, async {
            let mut undrained = 0usize;
            while let Some(drained) = drains.join_next().await {
                undrained += usize::from(!matches!(drained, Ok(true)));
            }
            undrained
        })
        .await
        .unwrap_or_else(|_| drains.len());
        if undrained > 0 {
            tracing::warn!(
                undrained,
                "shutdown: event actors did not drain by the deadline"
            );
        }
        self.registry.stop_supervisor();
        if let Some(join) = self.supervisor.lock().await.take() {
            if tokio::time::timeout_at(deadline, join).await.is_err() {
                tracing::warn!("shutdown: the supervisor did not stop by the deadline");
            }
        }
        let pool = self.ctx.pool.clone();
        let closing = self.ctx.io.run(async move { pool.close().await });
        if tokio::time::timeout_at(deadline, closing).await.is_err() {
            tracing::warn!("shutdown: the engine's pool did not close by the deadline");
        }
    }
}
