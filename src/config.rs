//! Typed configuration, read from environment variables with defaults that work on a
//! developer machine. Every variable is documented in README.md.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use boxoffice_engine::cluster::ClusterConfig;
use boxoffice_engine::EngineConfig;

/// A secret string: usable by the code that needs it, never printed by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Everything the server needs to run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// PostgreSQL URL. The database is created if it does not exist.
    pub database_url: Secret,
    /// Redis URL; when unset an in-process cache is used.
    pub redis_url: Option<Secret>,
    /// Where the HTTP server listens. Port 0 picks a free port (tests do this).
    pub bind_addr: SocketAddr,
    /// Key for signing access tokens (HS256).
    pub jwt_secret: Secret,
    /// True when `jwt_secret` was generated because `JWT_SECRET` was unset.
    pub jwt_secret_generated: bool,
    /// Access token lifetime.
    pub jwt_ttl_seconds: u64,
    /// Connection pool bounds.
    pub db_max_connections: u32,
    pub db_min_connections: u32,
    /// How long a request may wait for a pooled connection.
    pub db_acquire_timeout_ms: u64,
    /// Statements slower than this are logged.
    pub slow_statement_ms: u64,
    /// Requests slower than this are logged.
    pub slow_request_ms: u64,
    /// Hold lifetime for events that do not set their own.
    pub default_hold_ttl_seconds: u32,
    /// Longest a request may run before it is answered 503.
    pub request_timeout_ms: u64,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How long a verified password is remembered (0: every login runs argon2id).
    pub login_cache_seconds: u64,
    /// Connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Longest wait for a request's header (idle keep-alive included) before the
    /// connection is closed.
    pub header_timeout_ms: u64,
    /// The longest pause of a connection's next request after a 503 with `Retry-After`,
    /// before a random spread of up to half as long again (0: off).
    pub pace_max_ms: u64,
    /// Live-inventory stream subscribers this node serves at once; more get 503.
    pub stream_max_subscribers: usize,
    /// Messages a stream subscriber may fall behind its event's feed; one that falls further
    /// behind is dropped (and reconnects, resuming from its last id).
    pub stream_buffer_messages: usize,
    /// The socket send buffer of a stream connection (`SO_SNDBUF`): what the kernel may
    /// queue for a subscriber that does not read.
    pub stream_send_buffer_bytes: usize,
    /// `json` for machine-readable logs, anything else for human-readable ones.
    pub log_format: String,
    /// Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    pub cache_prefix: String,
    /// Where background jobs are POSTed (`http://` or `https://`); unset logs them instead.
    pub outbox_webhook_url: Option<String>,
    /// A PEM file of CA certificates trusted for the webhook besides the system's, for
    /// receivers behind a private CA.
    pub outbox_webhook_ca_file: Option<std::path::PathBuf>,
    /// Whether this node runs the background-job worker.
    pub outbox_worker: bool,
    /// Seconds between rounds of the sweep that writes lapsed holds' rows down as EXPIRED
    /// (0: this node does not sweep).
    pub expiry_sweep_interval_seconds: u64,
    /// Rows one statement of the sweep rewrites at most (20 statements a round).
    pub expiry_sweep_rows: u32,
    /// Password hashes computed at once; more logins wait (then get 503).
    pub password_hash_concurrency: usize,
    /// Failed logins allowed per account / per client address in `login_window_seconds`.
    pub login_max_failures_per_account: u32,
    pub login_max_failures_per_address: u32,
    pub login_window_seconds: u64,
    /// The engine's limits and timings.
    pub engine: EngineConfig,
}

/// A variable that was set but could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value:?} is not valid: {reason}")]
pub struct ConfigError {
    name: &'static str,
    value: String,
    reason: String,
}

/// Three quarters of the process's file-descriptor limit (the rest is for the database
/// pools, Redis, webhooks and files), at most 50,000: a node never accepts a connection
/// it cannot serve. The `MAX_CONNECTIONS` default.
pub fn default_max_connections() -> usize {
    (open_files_limit() / 4 * 3).clamp(64, 50_000)
}

/// This process's soft limit on open files (1,024 where it cannot be read).
pub fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))?
                .split_whitespace()
                .nth(3)?
                .parse::<usize>()
                .ok()
        })
        .unwrap_or(1024)
}

/// This machine's host name (Linux), or `localhost`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// `NODE_ID` when unset: host name and port, unique per process on one machine.
pub fn default_node_id(bind_addr: SocketAddr) -> String {
    format!("{}:{}", host_name(), bind_addr.port())
}

/// `ADVERTISE_URL` when unset: the bound address, or the host name when bound to every
/// interface (other nodes cannot reach `0.0.0.0`).
pub fn default_advertise_url(bind_addr: SocketAddr) -> String {
    if bind_addr.ip().is_unspecified() {
        format!("http://{}:{}", host_name(), bind_addr.port())
    } else {
        format!("http://{bind_addr}")
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|e: T::Err| ConfigError {
            name,
            reason: e.to_string(),
            value,
        }),
    }
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/boxoffice";

impl Settings {
    /// Reads the environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        let defaults = EngineConfig::default();
        let bind_addr = parsed("BIND_ADDR", SocketAddr::from(([0, 0, 0, 0], 3000)))?;
        let (jwt_secret, jwt_secret_generated) = match var("JWT_SECRET") {
            Some(s) => (Secret::new(s), false),
            None => (Secret::new(random_secret()), true),
        };
        Ok(Settings {
            database_url: Secret::new(
                var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            ),
            redis_url: var("REDIS_URL").map(Secret::new),
            bind_addr,
            jwt_secret,
            jwt_secret_generated,
            jwt_ttl_seconds: parsed("JWT_TTL_SECONDS", 3600)?,
            db_max_connections: parsed("DB_MAX_CONNECTIONS", 20)?,
            db_min_connections: parsed("DB_MIN_CONNECTIONS", 2)?,
            db_acquire_timeout_ms: parsed("DB_ACQUIRE_TIMEOUT_MS", 5000)?,
            slow_statement_ms: parsed("SLOW_STATEMENT_MS", 100)?,
            slow_request_ms: parsed("SLOW_REQUEST_MS", 1000)?,
            default_hold_ttl_seconds: parsed("HOLD_TTL_SECONDS", 600)?,
            request_timeout_ms: parsed("REQUEST_TIMEOUT_MS", 15_000)?,
            max_body_bytes: parsed("MAX_BODY_BYTES", 64 * 1024)?,
            max_connections: parsed("MAX_CONNECTIONS", default_max_connections())?,
            login_cache_seconds: parsed("LOGIN_CACHE_SECONDS", 300)?,
            header_timeout_ms: parsed("HEADER_TIMEOUT_MS", 5_000)?,
            pace_max_ms: parsed("PACE_MAX_MS", 1_000)?,
            stream_max_subscribers: parsed("STREAM_MAX_SUBSCRIBERS", 20_000)?,
            stream_buffer_messages: parsed("STREAM_BUFFER_MESSAGES", 64)?,
            stream_send_buffer_bytes: parsed("STREAM_SEND_BUFFER_BYTES", 32 * 1024)?,
            log_format: var("LOG_FORMAT").unwrap_or_else(|| "pretty".into()),
            cache_prefix: var("CACHE_PREFIX").unwrap_or_else(|| "boxoffice:".into()),
            outbox_webhook_url: var("OUTBOX_WEBHOOK_URL"),
            outbox_webhook_ca_file: var("OUTBOX_WEBHOOK_CA_FILE").map(Into::into),
            outbox_worker: parsed("OUTBOX_WORKER", true)?,
            expiry_sweep_interval_seconds: parsed("EXPIRY_SWEEP_INTERVAL_SECONDS", 30)?,
            expiry_sweep_rows: parsed("EXPIRY_SWEEP_ROWS", 1_000)?,
            password_hash_concurrency: parsed(
                "PASSWORD_HASH_CONCURRENCY",
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )?,
            login_max_failures_per_account: parsed("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5)?,
            login_max_failures_per_address: parsed("LOGIN_MAX_FAILURES_PER_ADDRESS", 50)?,
            login_window_seconds: parsed("LOGIN_WINDOW_SECONDS", 300)?,
            engine: EngineConfig {
                max_in_flight_total: parsed("ENGINE_MAX_IN_FLIGHT", defaults.max_in_flight_total)?,
                max_in_flight_per_event: parsed(
                    "ENGINE_MAX_IN_FLIGHT_PER_EVENT",
                    defaults.max_in_flight_per_event,
                )?,
                max_batch_changes: parsed("ENGINE_MAX_BATCH_CHANGES", defaults.max_batch_changes)?,
                db_connections: parsed("ENGINE_DB_CONNECTIONS", defaults.db_connections)?,
                flush_timeout_ms: parsed("ENGINE_FLUSH_TIMEOUT_MS", defaults.flush_timeout_ms)?,
                call_timeout_ms: parsed("ENGINE_CALL_TIMEOUT_MS", defaults.call_timeout_ms)?,
                idle_timeout_seconds: parsed(
                    "ENGINE_IDLE_TIMEOUT_SECONDS",
                    defaults.idle_timeout_seconds,
                )?,
                actor_thread: parsed("ENGINE_ACTOR_THREAD", defaults.actor_thread)?,
                stream_interval_ms: parsed("STREAM_INTERVAL_MS", defaults.stream_interval_ms)?,
                stream_deliveries_per_second: parsed(
                    "STREAM_DELIVERIES_PER_SECOND",
                    defaults.stream_deliveries_per_second,
                )?,
                stream_heartbeat_seconds: parsed(
                    "STREAM_HEARTBEAT_SECONDS",
                    defaults.stream_heartbeat_seconds,
                )?,
                cluster: ClusterConfig {
                    node_id: match var("NODE_ID") {
                        Some(id) => id,
                        None => default_node_id(bind_addr),
                    },
                    url: match var("ADVERTISE_URL") {
                        Some(url) => url.trim_end_matches('/').to_string(),
                        None => default_advertise_url(bind_addr),
                    },
                    lease_ms: parsed("CLUSTER_LEASE_MS", defaults.cluster.lease_ms)?,
                },
                ..defaults
            },
        })
    }

    /// The database URL with any password replaced, safe to print.
    pub fn database_url_redacted(&self) -> String {
        redact_url(self.database_url.expose())
    }
}

/// `scheme://user:password@host/db` → `scheme://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// 256 random bits, hex-encoded.
fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/boxoffice"),
            "postgres://app:***@db:5432/boxoffice"
        );
        assert_eq!(redact_url(DEFAULT_DATABASE_URL), DEFAULT_DATABASE_URL);
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }
}
