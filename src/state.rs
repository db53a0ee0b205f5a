//! The state every handler can reach: the pool, the engine, the cache, the keys and the
//! settings. Resource modules depend on it; it depends on none of them.

use std::sync::Arc;

use boxoffice_engine::Engine;
use sqlx::PgPool;

use crate::auth::jwt::{HasKeys, Keys};
use crate::auth::password::Passwords;
use crate::auth::throttle::LoginThrottle;
use crate::cache::Cache;
use crate::config::Settings;

/// What every handler can reach. Handlers receive a clone per request, so it is one `Arc`:
/// cloning the fields themselves (keys, clients) would allocate on every request.
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

impl std::ops::Deref for AppState {
    type Target = AppContext;

    fn deref(&self) -> &AppContext {
        &self.0
    }
}

/// The shared resources behind [`AppState`].
pub struct AppContext {
    /// The database pool (reads and the engine's writes).
    pub pool: PgPool,
    /// The reservation engine.
    pub engine: Engine,
    /// Hot reads: Redis or in-process.
    pub cache: Arc<Cache>,
    /// Access-token keys.
    pub keys: Keys,
    /// Password hashing with bounded concurrency.
    pub passwords: Passwords,
    /// Failed-login counters.
    pub login_throttle: Arc<LoginThrottle>,
    /// The settings the server runs with.
    pub settings: Arc<Settings>,
    /// The live-inventory stream subscribers: their bound and the watch for slow ones.
    pub streams: Arc<crate::stream::subscribers::Subscribers>,
    /// Forwards requests to the node that owns their event.
    pub peers: reqwest::Client,
    /// Cancelled when shutdown begins: streams end so that the drain can finish.
    pub stopping: tokio_util::sync::CancellationToken,
}

impl AppState {
    pub fn new(context: AppContext) -> Self {
        AppState(Arc::new(context))
    }
}

impl HasKeys for AppState {
    fn keys(&self) -> &Keys {
        &self.keys
    }
}
