//! The supervisor: the registry of live event actors, and the parent that starts them and
//! rebuilds them after a failure.
//!
//! [`Registry::handle_for`] finds an event's live actor or, when there is none, loads the
//! event ([`recovery::load_inventory`]) and asks the supervisor actor to spawn one. When an
//! actor fails, the supervisor actor takes it out of the registry and rebuilds it from
//! PostgreSQL. ractor has no restart strategy of its own: this is it.
//!
//! At most one actor per event: an entry leaves the registry only when ractor reports the
//! actor terminated (after its last message), and a new actor is only spawned for an event
//! with no entry, under that event's spawn lock. Even so, the database has the last word:
//! each load bumps the event's fencing epoch, and a flush under an older epoch is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use ractor::concurrency::JoinHandle;
use ractor::rpc::CallResult;
use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent,
};

use crate::context::EngineContext;
use crate::error::EngineError;
use crate::event::{EventActor, EventArgs, EventMessage};
use crate::inventory::InventorySnapshot;
use crate::recovery::{self, LoadedEvent};
use crate::types::EventId;
use crate::waiting_room::QueueBoard;
use tokio::sync::Semaphore;

/// Events whose loads are serialized by one lock. Loads of different events mostly proceed
/// in parallel; two loads of one event never do.
const SPAWN_LOCK_STRIPES: usize = 64;
/// How often, and how many times, `handle_for` looks again at an actor that is stopping
/// before giving up with a retryable error (at most one second in all).
const STOPPING_POLL: Duration = Duration::from_millis(5);
const STOPPING_POLLS_MAX: u32 = 200;
/// Backoff between attempts to rebuild a failed actor: doubling from the first, capped.
const REBUILD_BACKOFF_FIRST_MS: u64 = 100;
const REBUILD_BACKOFF_MAX_MS: u64 = 5_000;

/// A live event actor as the registry knows it.
#[derive(Clone)]
pub(crate) struct EventHandle {
    /// The event it decides for.
    pub event_id: EventId,
    /// The actor.
    pub actor: ActorRef<EventMessage>,
    /// Its latest published snapshot, read without a mailbox round trip.
    pub snapshot: Arc<ArcSwap<InventorySnapshot>>,
    /// Admission for this event: requests in its mailbox plus replies parked in its batches.
    pub in_flight: Arc<Semaphore>,
    /// Its waiting room as readers see it.
    pub queue: Arc<QueueBoard>,
}

impl EventHandle {
    pub fn is_running(&self) -> bool {
        matches!(
            self.actor.get_status(),
            ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading
        )
    }
}

/// The live event actors, and the way to start one.
pub(crate) struct Registry {
    /// Engine-wide resources, handed to every actor.
    ctx: Arc<EngineContext>,
    /// Live actors by event.
    live: DashMap<EventId, EventHandle>,
    /// Serializes loading per event (striped).
    spawn_locks: Vec<tokio::sync::Mutex<()>>,
    /// Set once shutdown begins: no actor is started after it.
    shutting_down: AtomicBool,
    /// The supervisor actor, set right after it is spawned.
    supervisor: OnceLock<ActorRef<SupervisorMessage>>,
}

impl Registry {
    /// Starts the supervisor actor. Actors start on first use.
    pub async fn start(
        ctx: Arc<EngineContext>,
    ) -> Result<(Arc<Registry>, JoinHandle<()>), EngineError> {
        let registry = Arc::new(Registry {
            ctx,
            live: DashMap::new(),
            spawn_locks: (0..SPAWN_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            shutting_down: AtomicBool::new(false),
            supervisor: OnceLock::new(),
        });
        // The supervisor spawns every event actor from its own task, so the actors live on
        // the runtime it lives on: the actor thread, when there is one.
        let spawned = match &registry.ctx.actors {
            Some(actors) => {
                let registry = registry.clone();
                actors
                    .run(async move { Actor::spawn(None, EventSupervisor, registry).await })
                    .await
            }
            None => Actor::spawn(None, EventSupervisor, registry.clone()).await,
        };
        let (supervisor, join) = spawned
            .map_err(|e| EngineError::Unavailable(format!("supervisor failed to start: {e}")))?;
        registry
            .supervisor
            .set(supervisor)
            .unwrap_or_else(|_| unreachable!("set once"));
        Ok((registry, join))
    }

    /// Marks the start of shutdown. Returns whether it had begun already.
    pub fn begin_shutdown(&self) -> bool {
        self.shutting_down.swap(true, Ordering::AcqRel)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Number of live actors.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// The live actor of an event, if any.
    pub fn get(&self, event_id: EventId) -> Option<EventHandle> {
        self.live.get(&event_id).map(|h| h.clone())
    }

    /// Whether the event's actor is running here (no handle cloned).
    pub fn runs(&self, event_id: EventId) -> bool {
        self.live.get(&event_id).is_some_and(|h| h.is_running())
    }

    /// Every live actor.
    pub fn all(&self) -> Vec<EventHandle> {
        self.live.iter().map(|e| e.value().clone()).collect()
    }

    /// Stops every live actor at once, without flushing what is still open (a flush already
    /// under way finishes, and its replies go out). For a node that lost its lease: what it
    /// decided and did not write is lost with the actor, its callers are told to retry, and
    /// the events go to whichever node claims them next.
    pub fn stop_all(&self, reason: &str) {
        for handle in self.all() {
            handle.actor.stop(Some(reason.into()));
        }
    }

    /// Stops the supervisor actor (and with it any actor still alive).
    pub fn stop_supervisor(&self) {
        if let Some(supervisor) = self.supervisor.get() {
            supervisor.stop(Some("shutdown".into()));
        }
    }

    /// The live actor of an event, loading the event and spawning its actor if there is none.
    /// Waits for a load of the same event already under way rather than starting a second.
    pub async fn handle_for(&self, event_id: EventId) -> Result<EventHandle, EngineError> {
        if let Some(h) = self.get(event_id).filter(EventHandle::is_running) {
            return Ok(h);
        }
        let stripe = (event_id.unsigned_abs() as usize) % SPAWN_LOCK_STRIPES;
        let _guard = self.spawn_locks[stripe].lock().await;
        // An actor that is stopping stays registered until it has terminated; wait for it
        // rather than start a second one.
        for _ in 0..STOPPING_POLLS_MAX {
            match self.get(event_id) {
                Some(h) if h.is_running() => return Ok(h),
                Some(_) => tokio::time::sleep(STOPPING_POLL).await,
                None => break,
            }
        }
        if self.live.contains_key(&event_id) {
            return Err(EngineError::Unavailable("the event is restarting".into()));
        }
        if self.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        let loaded = recovery::load_inventory(&self.ctx, event_id).await?;
        self.spawn(loaded).await
    }

    /// Asks the supervisor actor to spawn the actor of a freshly loaded event.
    async fn spawn(&self, mut loaded: LoadedEvent) -> Result<EventHandle, EngineError> {
        // The first snapshot is built here, from the inventory itself, so that readers have
        // one the moment the actor is registered.
        let first = loaded.inventory.snapshot(true);
        let feed = self.ctx.feeds.loaded(loaded.epoch, &first);
        let snapshot = Arc::new(ArcSwap::from_pointee(first));
        let args = EventArgs {
            feed,
            ctx: self.ctx.clone(),
            inventory: loaded.inventory,
            epoch: loaded.epoch,
            pending: loaded.pending,
            snapshot,
        };
        let supervisor = self.supervisor.get().expect("started").clone();
        match supervisor
            .call(
                |reply| SupervisorMessage::Spawn(Box::new(args), reply),
                Some(self.ctx.config.call_timeout()),
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

/// The supervisor actor.
pub(crate) struct EventSupervisor;

/// What the supervisor is asked to do.
pub(crate) enum SupervisorMessage {
    /// Spawn the actor of a freshly loaded event and register it.
    Spawn(
        Box<EventArgs>,
        RpcReplyPort<Result<EventHandle, EngineError>>,
    ),
}

/// The supervisor's state.
pub(crate) struct SupervisorState {
    /// The registry it spawns into and removes from.
    registry: Arc<Registry>,
    /// Which event each child actor serves.
    children: HashMap<ActorId, EventId>,
}

impl Actor for EventSupervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = Arc<Registry>;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMessage>,
        registry: Arc<Registry>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            registry,
            children: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMessage>,
        message: SupervisorMessage,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisorMessage::Spawn(args, reply) = message;
        let registry = &state.registry;
        let event_id = args.inventory.event_id();
        if let Some(live) = registry.get(event_id) {
            // The spawn lock makes this unreachable. Should it happen, the live actor stays
            // the only one: the caller gets it, and the freshly loaded inventory is dropped
            // (its load bumped the epoch, so the live actor's next flush fails and it is
            // rebuilt from PostgreSQL — safe, if not free).
            tracing::error!(event_id, "asked to spawn a second actor for an event");
            let _ = reply.send(Ok(live));
            return Ok(());
        }
        let snapshot = args.snapshot.clone();
        let queue = args.inventory.queue_board();
        let in_flight = registry.ctx.config.max_in_flight_per_event;
        match Actor::spawn_linked(None, EventActor, *args, myself.get_cell()).await {
            Ok((actor, _)) => {
                let handle = EventHandle {
                    event_id,
                    actor: actor.clone(),
                    snapshot,
                    in_flight: Arc::new(Semaphore::new(in_flight)),
                    queue,
                };
                state.children.insert(actor.get_id(), event_id);
                registry.live.insert(event_id, handle.clone());
                metrics::gauge!("boxoffice_event_actors").set(state.children.len() as f64);
                metrics::counter!("boxoffice_event_actor_starts_total").increment(1);
                let _ = reply.send(Ok(handle));
            }
            Err(e) => {
                tracing::error!(event_id, error = %e, "could not spawn an event actor");
                let _ = reply.send(Err(EngineError::Unavailable(
                    "the event could not be started".into(),
                )));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SupervisorMessage>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let reason = reason.unwrap_or_default();
                (cell, (reason == "killed").then_some(reason))
            }
            SupervisionEvent::ActorFailed(cell, error) => (cell, Some(error.to_string())),
            _ => return Ok(()),
        };
        let Some(event_id) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        state
            .registry
            .live
            .remove_if(&event_id, |_, h| h.actor.get_id() == cell.get_id());
        metrics::gauge!("boxoffice_event_actors").set(state.children.len() as f64);
        let live = state.registry.live.contains_key(&event_id);
        state.registry.ctx.feeds.retire_if_unused(event_id, live);
        match failure {
            None => {
                metrics::counter!("boxoffice_event_actor_stops_total").increment(1);
                tracing::debug!(event_id, "event actor stopped");
            }
            Some(error) => {
                metrics::counter!("boxoffice_event_actor_restarts_total").increment(1);
                tracing::warn!(event_id, %error, "event actor failed; rebuilding it from PostgreSQL");
                if !state.registry.is_shutting_down() {
                    tokio::spawn(rebuild(state.registry.clone(), event_id));
                }
            }
        }
        Ok(())
    }
}

/// Rebuilds a failed event's actor, backing off while the database is unreachable. Gives up
/// after the configured attempts; the next request for the event tries again.
async fn rebuild(registry: Arc<Registry>, event_id: EventId) {
    let attempts = registry.ctx.config.restart_attempts;
    for attempt in 0..attempts {
        let backoff_ms = (REBUILD_BACKOFF_FIRST_MS << attempt.min(6)).min(REBUILD_BACKOFF_MAX_MS);
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        if registry.is_shutting_down() {
            return;
        }
        match registry.handle_for(event_id).await {
            Ok(_) => return,
            // Gone, owned by another node now, or this node no longer a member: nothing to
            // rebuild here.
            Err(
                EngineError::EventNotFound | EngineError::NotOwner { .. } | EngineError::NotMember,
            ) => return,
            Err(e) => tracing::warn!(event_id, attempt, error = %e, "rebuild failed; retrying"),
        }
    }
    tracing::error!(event_id, attempts, "gave up rebuilding the event actor");
}
