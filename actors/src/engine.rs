//! The [`Engine`]: the handle the server crate holds. It finds (or starts) an event's actor,
//! applies admission control, sends the request with a timeout and returns the durable answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use ractor::concurrency::JoinHandle;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorId, ActorRef, ActorStatus};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::clock::Clock;
use crate::error::EngineError;
use crate::event::{EventArgs, EventMessage, Reply};
use crate::ids::IdAllocator;
use crate::inventory::{EventRules, Inventory, InventorySnapshot, SectionSnapshot};
use crate::io_runtime::IoRuntime;
use crate::recovery::{self, LoadError};
use crate::supervisor::{EventSupervisor, SupervisorMessage};
use crate::types::{
    BookingId, BookingOutcome, BookingView, ConfirmRequest, DiscountView, EventId, HoldId,
    HoldOutcome, HoldRequest, HoldView, NewDiscount, NewSection, Requester, SettingsUpdate,
};

/// Engine limits and timings. Every queue, batch and wait is bounded by one of these.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Requests in flight across all events; beyond it calls fail with `Overloaded` at once.
    pub max_in_flight_total: usize,
    /// Requests in flight for one event (its mailbox plus its parked replies).
    pub max_in_flight_per_event: usize,
    /// Changes per write-behind batch before it is sealed and the next one opened.
    pub max_batch_changes: usize,
    /// How long one flush transaction may take before it counts as failed.
    pub flush_timeout_ms: u64,
    /// How long a caller waits for an actor's answer.
    pub call_timeout_ms: u64,
    /// An actor with no requests and no holds for this long stops.
    pub idle_timeout_seconds: u64,
    /// Ids fetched per round trip for holds and bookings.
    pub id_block_size: usize,
    /// Attempts to rebuild a failed actor before leaving it to the next request.
    pub restart_attempts: u32,
    /// Connections of the engine's own pool (flushes, loads, id blocks). One flush runs per
    /// busy event, so this bounds how many events commit at once.
    pub db_connections: u32,
    /// How long shutdown waits for in-flight requests and flushes.
    pub shutdown_timeout_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            // Sized for latency, not for memory: at ~10,000 holds/s a queue of 1,024 is
            // ~100 ms. Past it, answering 503 at once beats answering late.
            max_in_flight_total: 4_096,
            max_in_flight_per_event: 1_024,
            max_batch_changes: 16_384,
            flush_timeout_ms: 5_000,
            call_timeout_ms: 10_000,
            idle_timeout_seconds: 300,
            id_block_size: 2_000,
            restart_attempts: 8,
            db_connections: 8,
            shutdown_timeout_ms: 10_000,
        }
    }
}

impl EngineConfig {
    pub fn flush_timeout(&self) -> Duration {
        Duration::from_millis(self.flush_timeout_ms)
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    /// How often an actor checks whether it has been idle long enough to stop.
    pub fn idle_check_period(&self) -> Duration {
        (self.idle_timeout() / 4).max(Duration::from_secs(1))
    }
}

/// A live event actor as the registry knows it.
#[derive(Clone)]
pub struct EventHandle {
    /// The actor.
    actor: ActorRef<EventMessage>,
    /// Its latest published snapshot.
    snapshot: Arc<ArcSwap<InventorySnapshot>>,
    /// Admission for this event.
    in_flight: Arc<Semaphore>,
}

impl EventHandle {
    pub(crate) fn new(
        actor: ActorRef<EventMessage>,
        snapshot: Arc<ArcSwap<InventorySnapshot>>,
        config: &EngineConfig,
    ) -> Self {
        EventHandle {
            actor,
            snapshot,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight_per_event)),
        }
    }

    pub(crate) fn actor_id(&self) -> ActorId {
        self.actor.get_id()
    }

    fn is_running(&self) -> bool {
        matches!(
            self.actor.get_status(),
            ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading
        )
    }
}

/// Events whose loads are serialized by one lock. Loads of different events mostly proceed
/// in parallel; two loads of one event never do.
const SPAWN_LOCK_STRIPES: usize = 64;

/// Engine-wide resources shared by the engine handle, the supervisor and every actor.
pub struct Shared {
    /// The engine's own connection pool, its connections living on `io`.
    pub(crate) pool: PgPool,
    /// The thread the engine's database work runs on.
    pub(crate) io: IoRuntime,
    /// Limits and timings.
    pub(crate) config: EngineConfig,
    /// Wall-clock milliseconds that advance with tokio's clock.
    pub(crate) clock: Clock,
    /// Live actors by event.
    pub(crate) registry: DashMap<EventId, EventHandle>,
    /// Serializes loading per event (striped).
    spawn_locks: Vec<tokio::sync::Mutex<()>>,
    /// Prefetched hold ids.
    pub(crate) hold_ids: Arc<IdAllocator>,
    /// Prefetched booking ids.
    pub(crate) booking_ids: Arc<IdAllocator>,
    /// Admission across all events.
    in_flight: Arc<Semaphore>,
    /// Set once shutdown begins; new requests are refused.
    shutting_down: AtomicBool,
    /// The supervisor, set right after it is spawned.
    supervisor: OnceLock<ActorRef<SupervisorMessage>>,
}

impl Shared {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// The live actor of an event, loading the event and spawning its actor if there is none.
    pub(crate) async fn handle_for(
        self: &Arc<Self>,
        event_id: EventId,
    ) -> Result<EventHandle, EngineError> {
        if let Some(h) = self.registry.get(&event_id) {
            if h.is_running() {
                return Ok(h.clone());
            }
        }
        let stripe = (event_id.unsigned_abs() as usize) % SPAWN_LOCK_STRIPES;
        let _guard = self.spawn_locks[stripe].lock().await;
        // An actor that is stopping stays registered until it has terminated; wait for it
        // rather than start a second one.
        for _ in 0..200 {
            match self
                .registry
                .get(&event_id)
                .map(|h| (h.is_running(), h.clone()))
            {
                Some((true, h)) => return Ok(h),
                Some((false, _)) => tokio::time::sleep(Duration::from_millis(5)).await,
                None => break,
            }
        }
        if self.registry.contains_key(&event_id) {
            return Err(EngineError::Unavailable("the event is restarting".into()));
        }
        if self.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }

        let started = std::time::Instant::now();
        let pool = self.pool.clone();
        let (stored, epoch) = self
            .io
            .run(async move { recovery::load(&pool, event_id).await })
            .await
            .map_err(|e| match e {
                LoadError::NotFound => EngineError::EventNotFound,
                other => {
                    tracing::error!(event_id, error = %other, "could not load an event");
                    EngineError::Unavailable("the event could not be loaded".into())
                }
            })?;
        let (inventory, pending) =
            Inventory::restore(stored, self.clock.now_ms()).map_err(|e| {
                tracing::error!(event_id, error = %e, "stored inventory breaks an invariant");
                EngineError::Unavailable("the event could not be loaded".into())
            })?;
        metrics::histogram!("boxoffice_event_load_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let mut initial = inventory.clone();
        let args = EventArgs {
            shared: Arc::clone(self),
            snapshot: Arc::new(ArcSwap::from_pointee(initial.snapshot(false))),
            inventory,
            epoch,
            pending,
        };
        let supervisor = self.supervisor.get().expect("started").clone();
        match supervisor
            .call(
                |reply| SupervisorMessage::Spawn(Box::new(args), reply),
                Some(self.config.call_timeout()),
            )
            .await
        {
            Ok(CallResult::Success(result)) => result,
            _ => Err(EngineError::Unavailable(
                "the event could not be started".into(),
            )),
        }
    }
}

/// The engine. Cheap to clone; every clone drives the same actors.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
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

impl Engine {
    /// Starts the engine: id prefetching and the supervisor. Actors start on first use.
    /// `pool` only lends its connection options: the engine opens a pool of its own
    /// (`db_connections` connections) on its I/O thread.
    pub async fn start(pool: PgPool, config: EngineConfig) -> Result<Engine, EngineError> {
        let io = IoRuntime::start();
        let options = (*pool.connect_options()).clone();
        let size = config.db_connections;
        let pool = io
            .run(async move {
                PgPoolOptions::new()
                    .max_connections(size)
                    .min_connections(1)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
            })
            .await
            .map_err(|e| EngineError::Unavailable(format!("engine pool: {e}")))?;
        let shared = Arc::new(Shared {
            hold_ids: IdAllocator::new(
                pool.clone(),
                io.handle().clone(),
                "reservations_id_seq",
                config.id_block_size,
            ),
            booking_ids: IdAllocator::new(
                pool.clone(),
                io.handle().clone(),
                "bookings_id_seq",
                config.id_block_size,
            ),
            io,
            in_flight: Arc::new(Semaphore::new(config.max_in_flight_total)),
            registry: DashMap::new(),
            spawn_locks: (0..SPAWN_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            shutting_down: AtomicBool::new(false),
            supervisor: OnceLock::new(),
            clock: Clock::new(),
            pool,
            config,
        });
        let (supervisor, join) = Actor::spawn(None, EventSupervisor, shared.clone())
            .await
            .map_err(|e| EngineError::Unavailable(format!("supervisor failed to start: {e}")))?;
        shared
            .supervisor
            .set(supervisor)
            .unwrap_or_else(|_| unreachable!("set once"));
        Ok(Engine {
            shared,
            supervisor: Arc::new(tokio::sync::Mutex::new(Some(join))),
        })
    }

    /// Number of live event actors.
    pub fn live_actors(&self) -> usize {
        self.shared.registry.len()
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

    /// The event's latest snapshot, starting its actor if needed. Never waits in a mailbox.
    pub async fn snapshot(&self, event_id: EventId) -> Result<Arc<InventorySnapshot>, EngineError> {
        if self.shared.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        Ok(self.shared.handle_for(event_id).await?.snapshot.load_full())
    }

    /// Kills an event's actor without letting it flush, as a crash would. For fault tests.
    pub fn kill_actor(&self, event_id: EventId) -> bool {
        match self.shared.registry.get(&event_id) {
            Some(h) => {
                h.actor.kill();
                true
            }
            None => false,
        }
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
            let handle = self.shared.handle_for(event_id).await?;
            let _event_slot = handle
                .in_flight
                .clone()
                .try_acquire_owned()
                .map_err(|_| EngineError::Overloaded)?;
            match handle
                .actor
                .call(&make, Some(self.shared.config.call_timeout()))
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

    fn admit(&self) -> Result<Admitted, EngineError> {
        if self.shared.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        let permit = self
            .shared
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                metrics::counter!("boxoffice_engine_shed_total").increment(1);
                EngineError::Overloaded
            })?;
        metrics::gauge!("boxoffice_engine_in_flight").increment(1.0);
        Ok(Admitted(permit))
    }

    /// Stops the engine: refuses new requests, waits for the ones in flight, flushes every
    /// actor's batches and stops the actors and the supervisor.
    pub async fn shutdown(&self) {
        if self.shared.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let deadline = self.shared.config.shutdown_timeout_ms;
        let total = self.shared.config.max_in_flight_total as u32;
        let waited = tokio::time::timeout(
            Duration::from_millis(deadline),
            self.shared.in_flight.acquire_many(total),
        )
        .await;
        if waited.is_err() {
            tracing::warn!("shutdown: requests still in flight after {deadline} ms");
        }
        let handles: Vec<EventHandle> = self
            .shared
            .registry
            .iter()
            .map(|e| e.value().clone())
            .collect();
        for handle in handles {
            let drained = handle
                .actor
                .call(EventMessage::Drain, Some(Duration::from_millis(deadline)))
                .await;
            if !matches!(drained, Ok(CallResult::Success(()))) {
                tracing::warn!("shutdown: an event actor did not drain in time");
            }
        }
        if let Some(supervisor) = self.shared.supervisor.get() {
            supervisor.stop(Some("shutdown".into()));
        }
        if let Some(join) = self.supervisor.lock().await.take() {
            let _ = join.await;
        }
        let pool = self.shared.pool.clone();
        self.shared.io.run(async move { pool.close().await }).await;
    }
}
