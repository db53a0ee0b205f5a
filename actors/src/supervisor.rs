//! The supervisor: parent of every event actor.
//!
//! It spawns an event's actor (from an inventory the caller loaded), keeps the registry
//! (event id → actor), and when an actor fails it removes it and rebuilds it from
//! PostgreSQL. ractor has no restart strategy of its own: this is it.
//!
//! At most one actor per event: an entry leaves the registry only when ractor reports the
//! actor terminated (after its last message), and a new actor is only spawned for an event
//! with no entry. Even so, the database has the last word: each load bumps the event's
//! fencing epoch, and a flush under an older epoch is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::engine::{EventHandle, Shared};
use crate::error::EngineError;
use crate::event::{EventActor, EventArgs};
use crate::types::EventId;

/// The supervisor actor.
pub struct EventSupervisor;

/// What the supervisor is asked to do.
pub enum SupervisorMessage {
    /// Spawn the actor of a freshly loaded event and register it.
    Spawn(
        Box<EventArgs>,
        RpcReplyPort<Result<EventHandle, EngineError>>,
    ),
}

/// The supervisor's state.
pub struct SupervisorState {
    /// Engine-wide resources, including the registry.
    shared: Arc<Shared>,
    /// Which event each child actor serves.
    children: HashMap<ActorId, EventId>,
}

impl Actor for EventSupervisor {
    type Msg = SupervisorMessage;
    type State = SupervisorState;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMessage>,
        shared: Arc<Shared>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            shared,
            children: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMessage>,
        message: SupervisorMessage,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMessage::Spawn(args, reply) => {
                let event_id = args.inventory.event_id();
                if let Some(live) = state.shared.registry.get(&event_id) {
                    // The spawn lock makes this unreachable; refusing keeps it harmless.
                    tracing::error!(event_id, "asked to spawn a second actor for an event");
                    let _ = reply.send(Ok(live.clone()));
                    return Ok(());
                }
                let snapshot = args.snapshot.clone();
                match Actor::spawn_linked(None, EventActor, *args, myself.get_cell()).await {
                    Ok((actor, _)) => {
                        let handle =
                            EventHandle::new(actor.clone(), snapshot, &state.shared.config);
                        state.children.insert(actor.get_id(), event_id);
                        state.shared.registry.insert(event_id, handle.clone());
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
            .shared
            .registry
            .remove_if(&event_id, |_, h| h.actor_id() == cell.get_id());
        metrics::gauge!("boxoffice_event_actors").set(state.children.len() as f64);
        match failure {
            None => {
                metrics::counter!("boxoffice_event_actor_stops_total").increment(1);
                tracing::debug!(event_id, "event actor stopped");
            }
            Some(error) => {
                metrics::counter!("boxoffice_event_actor_restarts_total").increment(1);
                tracing::warn!(event_id, %error, "event actor failed; rebuilding it from PostgreSQL");
                if !state.shared.is_shutting_down() {
                    tokio::spawn(rebuild(state.shared.clone(), event_id));
                }
            }
        }
        Ok(())
    }
}

/// Rebuilds a failed event's actor, backing off while the database is unreachable. Gives up
/// after the configured attempts; the next request for the event tries again.
async fn rebuild(shared: Arc<Shared>, event_id: EventId) {
    let attempts = shared.config.restart_attempts;
    for attempt in 0..attempts {
        let backoff_ms = (100u64 << attempt.min(6)).min(5_000);
        tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        if shared.is_shutting_down() {
            return;
        }
        match shared.handle_for(event_id).await {
            Ok(_) => return,
            Err(EngineError::EventNotFound) => return,
            Err(e) => tracing::warn!(event_id, attempt, error = %e, "rebuild failed; retrying"),
        }
    }
    tracing::error!(event_id, attempts, "gave up rebuilding the event actor");
}
