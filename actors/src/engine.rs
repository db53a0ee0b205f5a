//! The [`Engine`]: the handle the server crate holds. It applies admission control, finds
//! (or starts) an event's actor through the [`Registry`], sends the request with a timeout
//! and returns the durable answer.

use std::sync::{Arc, Weak};

use dashmap::DashMap;
use ractor::concurrency::JoinHandle;
use ractor::rpc::CallResult;
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::cluster::Incarnation;
use crate::config::EngineConfig;
use crate::context::EngineContext;
use crate::error::EngineError;
use crate::event::{EventMessage, Reply};
use crate::feed::{Position, Subscription};
use crate::inventory::{EventRules, InventorySnapshot, SectionSnapshot};
use crate::supervisor::{EventHandle, Registry};
use crate::types::{
    BookingId, BookingOutcome, BookingView, ConfirmRequest, DiscountView, EventId, HoldId,
    HoldOutcome, HoldRequest, HoldView, NewDiscount, NewSection, Requester, SettingsUpdate, UserId,
};
use crate::waiting_room::{QueueBoard, QueueView};

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
    /// Events recently found owned by another node, and where: a request for one is sent
    /// on without asking PostgreSQL again, until the entry ages out or a forward to that
    /// owner is refused ([`Engine::forget_owner`]).
    owners: Arc<DashMap<EventId, (Owner, std::time::Instant)>>,
}

/// Another node that owns an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub node_id: String,
    /// Where it is reached, when its row says.
    pub url: Option<String>,
}

/// How long a known owner is trusted without asking PostgreSQL again. Short: an owner that
/// died is found out at the latest this long after its lease ran out.
const OWNER_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// Owners remembered at most; past it the cache is cleared (it refills from PostgreSQL).
const OWNER_CACHE_MAX: usize = 100_000;

/// How many times a request is re-sent when its actor stopped before handling it.
const MAX_SEND_ATTEMPTS: usize = 3;

/// The handles of the metrics every call records, made once rather than looked up in the
/// recorder on each call (a hash, a lock and, with a label, an allocation each). Made at
/// the first call, which comes after the server has installed its recorder (it does so
/// before starting the engine): a handle made earlier would record nowhere.
struct CallMetrics {
    /// `boxoffice_engine_in_flight`.
    in_flight: metrics::Gauge,
    /// `boxoffice_engine_call_duration_seconds` by operation (a handful of names).
    duration_by_op: dashmap::DashMap<&'static str, metrics::Histogram>,
}

static CALL_METRICS: std::sync::LazyLock<CallMetrics> = std::sync::LazyLock::new(|| CallMetrics {
    in_flight: metrics::gauge!("boxoffice_engine_in_flight"),
    duration_by_op: dashmap::DashMap::new(),
});

/// Holds one admission slot and keeps the in-flight gauge honest.
struct Admitted(#[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for Admitted {
    fn drop(&mut self) {
        CALL_METRICS.in_flight.decrement(1.0);
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
        tokio::spawn(stop_deciding_when_the_lease_is_lost(
            ctx.membership.watch(),
            Arc::downgrade(&registry),
        ));
        Ok(Engine {
            ctx,
            registry,
            in_flight,
            supervisor: Arc::new(tokio::sync::Mutex::new(Some(join))),
            owners: Arc::new(DashMap::new()),
        })
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        self.ctx.membership.node_id()
    }

    /// The incarnation this node decides under now; `None` while it holds no good lease.
    pub fn incarnation(&self) -> Option<i64> {
        self.ctx.membership.incarnation().map(|i| i.0)
    }

    /// The events whose actors live on this node now.
    pub fn live_events(&self) -> Vec<EventId> {
        let mut events: Vec<EventId> = self.registry.all().iter().map(|h| h.event_id).collect();
        events.sort_unstable();
        events
    }

    /// Whether the event's actor is running on this node now, so that its requests are
    /// decided here (unless it stops before they reach it).
    pub fn runs_here(&self, event_id: EventId) -> bool {
        self.registry.runs(event_id)
    }

    /// Forgets where an event was last seen owned: a forward there was refused, so the next
    /// request asks PostgreSQL (and claims the event if its owner is gone).
    pub fn forget_owner(&self, event_id: EventId) {
        self.owners.remove(&event_id);
    }

    fn known_owner(&self, event_id: EventId) -> Option<Owner> {
        let entry = self.owners.get(&event_id)?;
        let (owner, seen) = entry.value();
        (seen.elapsed() < OWNER_CACHE_TTL).then(|| owner.clone())
    }

    fn remember_owner(&self, event_id: EventId, error: &EngineError) {
        if let EngineError::NotOwner { node_id, url, .. } = error {
            if self.owners.len() >= OWNER_CACHE_MAX {
                self.owners.clear();
            }
            let owner = Owner {
                node_id: node_id.clone(),
                url: url.clone(),
            };
            self.owners
                .insert(event_id, (owner, std::time::Instant::now()));
        }
    }

    /// The event's live actor on this node, or the answer that sends the request elsewhere:
    /// [`EngineError::NotOwner`] when another node owns it (known, or found while trying to
    /// claim it), [`EngineError::NotMember`] without a lease.
    async fn handle_for(&self, event_id: EventId) -> Result<EventHandle, EngineError> {
        if self.ctx.membership.incarnation().is_none() {
            return Err(EngineError::NotMember);
        }
        if let Some(h) = self.registry.get(event_id).filter(EventHandle::is_running) {
            return Ok(h);
        }
        if let Some(owner) = self.known_owner(event_id) {
            return Err(EngineError::NotOwner {
                event_id,
                node_id: owner.node_id,
                url: owner.url,
            });
        }
        let found = self.registry.handle_for(event_id).await;
        if let Err(e) = &found {
            self.remember_owner(event_id, e);
        }
        found
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

    /// Joins a buyer to the event's waiting room, or answers where they already stand.
    pub async fn join_queue(
        &self,
        event_id: EventId,
        user_id: UserId,
    ) -> Result<QueueView, EngineError> {
        self.call(event_id, "join_queue", |r| {
            EventMessage::JoinQueue(user_id, r)
        })
        .await
    }

    /// Where a buyer stands in the event's waiting room, read from its board: no mailbox,
    /// no database (only a cold event is loaded first).
    pub async fn queue_position(
        &self,
        event_id: EventId,
        user_id: UserId,
    ) -> Result<QueueView, EngineError> {
        let board = self.queue_board(event_id).await?;
        Ok(board.place(user_id, self.ctx.clock.now_ms())?)
    }

    /// The board of the event's waiting room, starting its actor if needed. A board
    /// [retired](QueueBoard::is_retired) later belongs to a stopped actor: ask again.
    pub async fn queue_board(&self, event_id: EventId) -> Result<Arc<QueueBoard>, EngineError> {
        if self.registry.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        Ok(self.handle_for(event_id).await?.queue)
    }

    /// Now, by the engine's clock (milliseconds since the epoch).
    pub fn now_ms(&self) -> i64 {
        self.ctx.clock.now_ms()
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
        Ok(self.handle_for(event_id).await?.snapshot.load_full())
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
            self.handle_for(event_id).await?;
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
        let seconds = started.elapsed().as_secs_f64();
        match CALL_METRICS.duration_by_op.get(op) {
            Some(histogram) => histogram.record(seconds),
            None => CALL_METRICS
                .duration_by_op
                .entry(op)
                .or_insert_with(
                    || metrics::histogram!("boxoffice_engine_call_duration_seconds", "op" => op),
                )
                .record(seconds),
        }
        answer
    }

    /// Finds the actor and sends, re-sending when the actor stopped before handling it.
    async fn send<T, F>(&self, event_id: EventId, make: F) -> Result<T, EngineError>
    where
        T: Send + 'static,
        F: Fn(Reply<T>) -> EventMessage,
    {
        for _ in 0..MAX_SEND_ATTEMPTS {
            let handle = self.handle_for(event_id).await?;
            let event_slot = handle
                .in_flight
                .clone()
                .try_acquire_owned()
                .map_err(|_| shed("event"))?;
            // The slot travels with the message and is given back when the actor answers
            // (`Reply`), or when the message is dropped unanswered.
            let message = |port| make(Reply::new(port, Some(event_slot)));
            match handle
                .actor
                .call(message, Some(self.ctx.config.call_timeout()))
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

    /// Hands this node's events over (shutdown, after every actor flushed): they are
    /// marked unowned, so the next request on any node claims them at once instead of
    /// waiting for this node's lease to run out; then the lease itself is given up.
    async fn hand_over(&self, deadline: Instant) {
        let membership = self.ctx.membership.clone();
        let Some(incarnation) = membership.incarnation() else {
            return;
        };
        let pool = self.ctx.pool.clone();
        let lease_pool = self.ctx.lease_pool.clone();
        let handing = self.ctx.io.run(async move {
            let released = sqlx::query(
                "UPDATE events SET owner_node = NULL, owner_incarnation = NULL
                  WHERE owner_node = $1 AND owner_incarnation = $2",
            )
            .bind(membership.node_id())
            .bind(incarnation.0)
            .execute(&pool)
            .await;
            match released {
                Ok(done) => tracing::info!(
                    events = done.rows_affected(),
                    "handed this node's events over"
                ),
                Err(e) => tracing::warn!(error = %e, "could not hand events over; they are claimed once the lease runs out"),
            }
            membership.give_up(&lease_pool).await;
        });
        if tokio::time::timeout_at(deadline, handing).await.is_err() {
            tracing::warn!("shutdown: handing the events over did not finish by the deadline");
        }
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
        CALL_METRICS.in_flight.increment(1.0);
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
        self.hand_over(deadline).await;
        let pool = self.ctx.pool.clone();
        let closing = self.ctx.io.run(async move { pool.close().await });
        if tokio::time::timeout_at(deadline, closing).await.is_err() {
            tracing::warn!("shutdown: the engine's pool did not close by the deadline");
        }
    }
}

/// Drops every actor when the lease is lost: past its deadline the node must not decide,
/// and whatever it holds in memory may already be another node's to decide. Any change
/// away from the incarnation the actors were loaded under counts — the watch may show the
/// new incarnation without ever showing the loss in between.
async fn stop_deciding_when_the_lease_is_lost(
    mut incarnation: tokio::sync::watch::Receiver<Option<Incarnation>>,
    registry: Weak<Registry>,
) {
    let mut decided_under = *incarnation.borrow_and_update();
    while incarnation.changed().await.is_ok() {
        let now = *incarnation.borrow_and_update();
        let Some(registry) = registry.upgrade() else {
            return;
        };
        if decided_under.is_some() && now != decided_under && !registry.is_shutting_down() {
            let dropped = registry.len();
            registry.stop_all("lease lost");
            tracing::warn!(dropped, "cluster lease lost: event actors dropped");
        }
        decided_under = now;
    }
}
