//! The event actor: one per event, owning that event's [`Inventory`](crate::inventory::Inventory)
//! and serializing every change to it. See [`actor`] for how a message becomes a durable
//! decision.

mod actor;
mod messages;

pub use actor::{EventActor, EventArgs};
pub use messages::{EventMessage, Reply};
