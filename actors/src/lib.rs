//! boxoffice's engine: the inventory of each event, the actor that owns it, the supervisor
//! that keeps one actor per event alive, and the write-behind that makes every decision
//! durable before anyone hears "yes".
//!
//! - [`inventory`]: the pure, synchronous seat inventory of one event;
//! - [`event`]: the actor that owns one inventory and serializes every change to it;
//! - [`write_behind`]: batches of row changes and the group-commit flush;
//! - [`recovery`]: loading an event back from PostgreSQL;
//! - [`supervisor`]: the registry of live actors: one per event, spawned on demand, rebuilt
//!   after a failure;
//! - [`feed`]: each event's live feed of committed changes, for buyers' seat maps;
//! - [`waiting_room`]: each event's fair line in front of its on-sale, kept by its actor;
//! - [`sweep`]: lapsed holds' rows written down as `EXPIRED` in the background, off the
//!   hot path;
//! - [`cluster`]: this node's lease in PostgreSQL, without which it claims and decides
//!   nothing;
//! - [`engine`]: the handle the server crate holds, with admission control.
//!
//! Dependencies point one way: `engine` → `supervisor` → `recovery`, `event` →
//! `write_behind`, `inventory` → `types`; everything may use `context`, `config`, `cluster`,
//! `limits`, `clock`, `ids` and `error`, which use none of the above.
//!
//! The engine knows nothing of HTTP; the server crate calls it through [`Engine`].

pub mod audit;
pub mod clock;
pub mod cluster;
pub mod config;
pub(crate) mod context;
pub mod engine;
pub mod error;
pub(crate) mod event;
pub mod feed;
pub(crate) mod ids;
pub mod inventory;
pub(crate) mod io_runtime;
pub mod limits;
pub mod recovery;
pub(crate) mod supervisor;
pub mod sweep;
pub mod types;
pub mod waiting_room;

// Fresh databases for tests, and the write path for tests that drive it directly: test
// support only, behind the `test-support` feature.
#[cfg(feature = "test-support")]
pub mod testdb;
#[cfg(feature = "test-support")]
pub mod write_behind;
#[cfg(not(feature = "test-support"))]
pub(crate) mod write_behind;

pub use clock::Clock;
pub use config::EngineConfig;
pub use engine::Engine;
pub use error::{EngineError, Refusal};

/// The schema every part of boxoffice runs against. The server runs it at start-up; tests
/// run it on each fresh database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
