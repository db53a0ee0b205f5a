//! What every part of the engine shares: the database pool and the thread its I/O runs on,
//! the limits, the clock and the id allocators. Event actors receive it when they start;
//! it knows nothing of actors, so every module can depend on it and it on none of them.

use std::sync::Arc;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::clock::Clock;
use crate::cluster::Membership;
use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::feed::{Feeds, Pace};
use crate::ids::IdAllocator;
use crate::io_runtime::IoRuntime;

/// Engine-wide resources, shared by the engine handle, the supervisor and every actor.
pub(crate) struct EngineContext {
    /// The engine's own connection pool, its connections living on `io`.
    pub pool: PgPool,
    /// The thread the engine's database work runs on.
    pub io: IoRuntime,
    /// The thread the event actors run on, when `config.actor_thread`.
    pub actors: Option<IoRuntime>,
    /// Limits and timings.
    pub config: EngineConfig,
    /// Wall-clock milliseconds that advance with tokio's clock.
    pub clock: Clock,
    /// Prefetched hold ids.
    pub hold_ids: Arc<IdAllocator>,
    /// Prefetched booking ids.
    pub booking_ids: Arc<IdAllocator>,
    /// Every loaded event's live feed.
    pub feeds: Arc<Feeds>,
    /// This node's lease: no event is claimed or decided without it.
    pub membership: Arc<Membership>,
    /// The lease's own connection (on the I/O thread), for giving the lease up at shutdown.
    pub lease_pool: PgPool,
    /// The runtime that started the engine (the server's, where callers wait): a flushed
    /// batch's answers are sent from a task there (`EventState::start_flush`).
    pub callers: tokio::runtime::Handle,
}

impl EngineContext {
    /// Starts the I/O thread and opens the engine's pool on it. `pool` only lends its
    /// connection options.
    pub async fn start(pool: &PgPool, config: EngineConfig) -> Result<Self, EngineError> {
        let io = IoRuntime::start();
        let base = (*pool.connect_options()).clone();
        let lease = config.cluster.lease();
        // A session left in the middle of a transaction (its node paused or cut off) is
        // ended by PostgreSQL after one lease, releasing the event row it locked, so that
        // another node's claim does not wait on a node that may never come back.
        //
        // Generic plans: the flush's statement (`write_behind::one_statement`) is the same
        // text at every batch, and with PostgreSQL's default each execution would be planned
        // again for its arrays' lengths (the planner sees them through `UNNEST`, so the
        // custom plan always looks cheaper) — 9 % of PostgreSQL's CPU per hold, measured. A
        // load, whose best plan does depend on the event, asks for custom plans itself
        // (`recovery::load_within`).
        let options = base
            .clone()
            .application_name(&format!("boxoffice {}", config.cluster.node_id))
            .options([
                (
                    "idle_in_transaction_session_timeout",
                    lease.as_millis().to_string(),
                ),
                ("plan_cache_mode", "force_generic_plan".to_string()),
            ]);
        let size = config.db_connections;
        let flush_timeout = config.flush_timeout();
        let pool = io
            .run(async move {
                PgPoolOptions::new()
                    .max_connections(size)
                    .min_connections(1)
                    // A flush's connection counts against the flush's own time limit.
                    .acquire_timeout(flush_timeout)
                    .connect_with(options)
                    .await
            })
            .await
            .map_err(|e| EngineError::Unavailable(format!("engine pool: {e}")))?;
        // Join the cluster before anything is decided; keep the lease on the I/O thread.
        let membership = Membership::new(config.cluster.clone());
        let cluster = config.cluster.clone();
        let joining = membership.clone();
        let lease_pool = io
            .run(async move {
                let pool = Membership::pool(&base, &cluster);
                joining.join(&pool).await.map(|_| pool)
            })
            .await
            .map_err(|e| EngineError::Unavailable(format!("joining the cluster: {e}")))?;
        io.spawn(membership.clone().keep(lease_pool.clone()));
        let ids = |sequence| {
            IdAllocator::new(
                pool.clone(),
                io.handle().clone(),
                sequence,
                config.id_block_size,
            )
        };
        Ok(EngineContext {
            hold_ids: ids("reservations_id_seq"),
            booking_ids: ids("bookings_id_seq"),
            clock: Clock::new(),
            // Fan-out runs on the runtime that starts the engine: the server's.
            feeds: Arc::new(Feeds::new(
                tokio::runtime::Handle::current(),
                Pace::of(&config),
            )),
            actors: config
                .actor_thread
                .then(|| IoRuntime::start_named("boxoffice-actors")),
            membership,
            lease_pool,
            callers: tokio::runtime::Handle::current(),
            io,
            pool,
            config,
        })
    }
}
