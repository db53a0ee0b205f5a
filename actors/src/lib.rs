//! boxoffice's engine: the inventory of each event, the actor that owns it, the supervisor
//! that keeps one actor per event alive, and the write-behind that makes every decision
//! durable before anyone hears "yes".
//!
//! - [`inventory`]: the pure, synchronous seat inventory of one event;
//! - [`event`]: the actor that owns one inventory and serializes every change to it;
//! - [`write_behind`]: batches of row changes and the group-commit flush;
//! - [`recovery`]: loading an event back from PostgreSQL;
//! - [`supervisor`]: one actor per event, spawned on demand, rebuilt after a failure;
//! - [`engine`]: the handle the server crate holds, with admission control.
//!
//! The engine knows nothing of HTTP; the server crate calls it through [`Engine`].

pub mod audit;
pub mod clock;
pub mod engine;
pub mod error;
pub mod event;
pub mod ids;
pub mod inventory;
pub mod io_runtime;
pub mod limits;
pub mod recovery;
pub mod supervisor;
pub mod testdb;
pub mod types;
pub mod write_behind;

pub use clock::Clock;
pub use engine::{Engine, EngineConfig};
pub use error::{EngineError, Refusal};

/// The schema every part of boxoffice runs against. The server runs it at start-up; tests
/// run it on each fresh database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
