//! Caching of hot reads: Redis when `REDIS_URL` is set, an in-process cache otherwise.
//!
//! - Concurrent misses for one key share one load (moka's `try_get_with`), so a cold key
//!   under a burst costs one database query, not one per request.
//! - With Redis, the in-process layer keeps entries for at most a second: it serves as the
//!   single-flight point and a near cache, while Redis is what several nodes share.
//! - Redis trouble never fails a request: a Redis error is logged, counted, and the value
//!   is loaded from PostgreSQL; after an error Redis is skipped for a few seconds.
//! - Listings are invalidated by bumping a generation number that is part of their keys.
//! - In a cluster every node has its own in-process cache, so an invalidation is also
//!   announced to the other nodes through PostgreSQL (`NOTIFY boxoffice_cache`), and each
//!   node's listener forgets the key or moves the family's generation. A node whose listener
//!   lost its connection clears its whole in-process cache when it is back: whatever it
//!   missed meanwhile cannot outlive that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use moka::Expiry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// How long Redis is left alone after an error.
const REDIS_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait for one Redis command.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// Most entries in the in-process cache.
const LOCAL_MAX_ENTRIES: u64 = 50_000;
/// Longest an in-process entry lives when Redis is the shared cache.
const NEAR_CACHE_TTL: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Entry {
    /// The value, serialized as JSON.
    bytes: Arc<[u8]>,
    /// How long it may live in the in-process cache.
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Entry,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Redis, connected lazily and skipped for a while after an error.
struct RedisLayer {
    client: redis::Client,
    /// The connection, once made; it reconnects by itself afterwards.
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// Redis is not tried again before this instant.
    down_until: std::sync::Mutex<Option<Instant>>,
}

impl RedisLayer {
    async fn conn(&self) -> Option<ConnectionManager> {
        if let Some(until) = *self.down_until.lock().expect("not poisoned") {
            if Instant::now() < until {
                return None;
            }
        }
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Some(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        match tokio::time::timeout(
            Duration::from_secs(1),
            self.client.get_connection_manager_with_config(config),
        )
        .await
        {
            Ok(Ok(conn)) => {
                *slot = Some(conn.clone());
                Some(conn)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed("connection timed out");
                None
            }
        }
    }

    fn failed(&self, error: &str) {
        metrics::counter!("boxoffice_cache_errors_total", "backend" => "redis").increment(1);
        let mut down = self.down_until.lock().expect("not poisoned");
        if down.is_none_or(|until| Instant::now() >= until) {
            tracing::warn!(%error, "Redis unavailable; serving from PostgreSQL and the in-process cache");
        }
        *down = Some(Instant::now() + REDIS_BACKOFF);
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Option<T> {
        let mut conn = self.conn().await?;
        match tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.failed(&e.to_string());
                None
            }
            Err(_) => {
                self.failed("command timed out");
                None
            }
        }
    }

    fn is_up(&self) -> bool {
        self.down_until
            .lock()
            .expect("not poisoned")
            .is_none_or(|until| Instant::now() >= until)
    }
}

/// The channel nodes announce invalidations on.
const CHANNEL: &str = "boxoffice_cache";

/// Where invalidations are announced to the other nodes.
struct Peers {
    pool: sqlx::PgPool,
    /// This node's id: its own announcements come back to it and are skipped.
    origin: String,
}

/// The cache.
pub struct Cache {
    /// Prepended to every Redis key (tests use one of their own).
    prefix: String,
    redis: Option<RedisLayer>,
    local: moka::future::Cache<String, Entry>,
    /// Listing generations when there is no Redis.
    generations: DashMap<String, u64>,
    /// The other nodes, once [`Cache::share_with`] was called.
    peers: std::sync::OnceLock<Peers>,
}

impl Cache {
    pub fn new(redis: Option<redis::Client>, prefix: String) -> Cache {
        Cache {
            prefix,
            redis: redis.map(|client| RedisLayer {
                client,
                conn: tokio::sync::Mutex::new(None),
                down_until: std::sync::Mutex::new(None),
            }),
            local: moka::future::Cache::builder()
                .max_capacity(LOCAL_MAX_ENTRIES)
                .expire_after(PerEntryTtl)
                .build(),
            generations: DashMap::new(),
            peers: std::sync::OnceLock::new(),
        }
    }

    /// Announces this node's invalidations to the other nodes of the cluster, and applies
    /// theirs: a listener on PostgreSQL's `boxoffice_cache` channel, until `stopping`.
    pub fn share_with(
        self: &Arc<Self>,
        pool: sqlx::PgPool,
        origin: String,
        stopping: tokio_util::sync::CancellationToken,
    ) {
        let peers = Peers {
            pool: pool.clone(),
            origin: origin.clone(),
        };
        if self.peers.set(peers).is_err() {
            return;
        }
        tokio::spawn(listen(Arc::downgrade(self), pool, origin, stopping));
    }

    /// Tells the other nodes (best effort: a node that misses it clears its cache when its
    /// listener reconnects, and entries live seconds anyway).
    async fn announce(&self, what: String) {
        let Some(peers) = self.peers.get() else {
            return;
        };
        let payload = format!("{}\n{what}", peers.origin);
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&peers.pool)
            .await
        {
            tracing::warn!(error = %e, "could not announce a cache invalidation to the other nodes");
        }
    }

    /// Applies another node's announcement here only.
    async fn apply(&self, what: &str) {
        if let Some(key) = what.strip_prefix("k:") {
            self.local
                .invalidate(&format!("{}{key}", self.prefix))
                .await;
        } else if let Some(family) = what.strip_prefix("g:") {
            *self.generations.entry(family.to_string()).or_insert(0) += 1;
        }
    }

    /// Forgets everything held in this process (listings move to new generations).
    fn forget_local(&self) {
        self.local.invalidate_all();
        for mut generation in self.generations.iter_mut() {
            *generation += 1;
        }
    }

    /// "redis" when Redis is configured and answering, "degraded" when configured but
    /// failing, "local" without Redis.
    pub fn backend_status(&self) -> &'static str {
        match &self.redis {
            None => "local",
            Some(r) if r.is_up() => "redis",
            Some(_) => "degraded",
        }
    }

    /// Readiness of the shared cache: "not configured", "ok" when Redis answers a PING on
    /// the cache's own connection, "degraded" otherwise (reads then fall back to PostgreSQL).
    pub async fn redis_status(&self) -> &'static str {
        match &self.redis {
            None => "not configured",
            Some(redis) => match redis.run::<String>(redis::cmd("PING")).await {
                Some(_) => "ok",
                None => "degraded",
            },
        }
    }

    /// The cached value of `key`, or `load`'s, cached for `ttl`. `cache` names the cache in
    /// metrics (a fixed word, never an id).
    pub async fn get_or_load<T, F, Fut>(
        &self,
        cache: &'static str,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let full_key = format!("{}{key}", self.prefix);
        let local_ttl = if self.redis.is_some() {
            ttl.min(NEAR_CACHE_TTL)
        } else {
            ttl
        };
        let loaded = std::sync::atomic::AtomicBool::new(false);
        let entry = self
            .local
            .try_get_with(full_key.clone(), async {
                loaded.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(redis) = &self.redis {
                    let mut get = redis::cmd("GET");
                    get.arg(&full_key);
                    if let Some(Some(bytes)) = redis.run::<Option<Vec<u8>>>(get).await {
                        metrics::counter!("boxoffice_cache_requests_total", "cache" => cache, "result" => "hit").increment(1);
                        return Ok(Entry { bytes: bytes.into(), ttl: local_ttl });
                    }
                }
                metrics::counter!("boxoffice_cache_requests_total", "cache" => cache, "result" => "miss").increment(1);
                let value = load().await?;
                let bytes: Arc<[u8]> = serde_json::to_vec(&value).map_err(|e| ApiError::Internal(e.into()))?.into();
                if let Some(redis) = &self.redis {
                    let mut set = redis::cmd("SET");
                    set.arg(&full_key).arg(&*bytes).arg("PX").arg(ttl.as_millis() as u64);
                    let _ = redis.run::<()>(set).await;
                }
                Ok::<_, ApiError>(Entry { bytes, ttl: local_ttl })
            })
            .await
            .map_err(|e: Arc<ApiError>| e.shared_copy())?;
        if !loaded.load(std::sync::atomic::Ordering::Relaxed) {
            metrics::counter!("boxoffice_cache_requests_total", "cache" => cache, "result" => "hit").increment(1);
        }
        serde_json::from_slice(&entry.bytes).map_err(|e| ApiError::Internal(e.into()))
    }

    /// Forgets a key everywhere: here, in Redis, and on the other nodes.
    pub async fn invalidate(&self, key: &str) {
        let full_key = format!("{}{key}", self.prefix);
        self.local.invalidate(&full_key).await;
        if let Some(redis) = &self.redis {
            let mut del = redis::cmd("DEL");
            del.arg(&full_key);
            let _ = redis.run::<i64>(del).await;
        }
        self.announce(format!("k:{key}")).await;
    }

    /// The current generation of a family of keys (listings), part of their keys.
    pub async fn generation(&self, family: &'static str) -> u64 {
        if let Some(redis) = &self.redis {
            let mut get = redis::cmd("GET");
            get.arg(format!("{}gen:{family}", self.prefix));
            if let Some(generation) = redis.run::<Option<u64>>(get).await {
                return generation.unwrap_or(0);
            }
        }
        self.generations.get(family).map_or(0, |g| *g)
    }

    /// Invalidates every key of a family at once by moving to a new generation, on every
    /// node.
    pub async fn bump(&self, family: &'static str) {
        *self.generations.entry(family.to_string()).or_insert(0) += 1;
        if let Some(redis) = &self.redis {
            let mut incr = redis::cmd("INCR");
            incr.arg(format!("{}gen:{family}", self.prefix));
            let _ = redis.run::<u64>(incr).await;
        }
        self.announce(format!("g:{family}")).await;
    }
}

/// Applies the other nodes' invalidations until `stopping`. When the connection is lost
/// the listener reconnects by itself; what was announced meanwhile is unknown, so this
/// node's in-process cache is cleared once it is back.
async fn listen(
    cache: std::sync::Weak<Cache>,
    pool: sqlx::PgPool,
    origin: String,
    stopping: tokio_util::sync::CancellationToken,
) {
    let mut listener = loop {
        let connected = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        tokio::select! {
            () = stopping.cancelled() => return,
            connected = connected => match connected {
                Ok(listener) => break listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cache invalidation listener cannot connect; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    };
    loop {
        let received = tokio::select! {
            () = stopping.cancelled() => return,
            received = listener.try_recv() => received,
        };
        let Some(cache) = cache.upgrade() else {
            return;
        };
        match received {
            Ok(Some(notification)) => {
                if let Some((from, what)) = notification.payload().split_once('\n') {
                    if from != origin {
                        cache.apply(what).await;
                    }
                }
            }
            // The connection was lost and is being re-established: anything announced in
            // between was missed.
            Ok(None) => cache.forget_local(),
            Err(e) => {
                tracing::warn!(error = %e, "cache invalidation listener failed; retrying");
                cache.forget_local();
                drop(cache);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
