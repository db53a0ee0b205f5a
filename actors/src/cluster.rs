//! This node's membership of the cluster: a lease in PostgreSQL, renewed about every
//! second, that says the node is alive and may decide for the events it owns.
//!
//! - **Join**: a node writes its row in `cluster_nodes` (id, the URL other nodes forward to,
//!   a new *incarnation*, `lease_until`). Joining again — after a restart, or after the lease
//!   was lost — takes a new incarnation, so everything owned under the old one is free.
//! - **Renew**: every third of the lease, `lease_until = clock_timestamp() + lease`. Expiry is
//!   judged by PostgreSQL's clock alone: the nodes' clocks may disagree freely.
//! - **Stop deciding in time**: the node measures its own deadline on its monotonic clock,
//!   from the moment it *sent* the last successful renewal: PostgreSQL set `lease_until` at
//!   or after that moment, so `sent + lease` is never later than the lease's real end. With
//!   a tenth of the lease as margin for clock-rate drift, the node stops deciding before
//!   any other node can consider its lease expired (Martin Kleppmann's "How to do
//!   distributed locking": a lease alone is not safety, the fencing epoch checked by every
//!   flush is — this only keeps the node from acknowledging decisions it would lose).
//! - **Lost**: past the deadline the engine drops its actors ([`Membership::lost`] tells it),
//!   refuses requests with a retryable error, and the renewal loop joins again as a new
//!   incarnation once PostgreSQL answers.
//!
//! The renewals run on the engine's I/O thread with a connection of their own, so that
//! neither the HTTP queues nor a pool busy with flushes can delay them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::watch;

/// Who this node is, where it is reached, how long its lease runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Unique within the cluster (default: host name and port).
    pub node_id: String,
    /// Where other nodes reach this one, e.g. `http://10.0.0.5:3000`.
    pub url: String,
    /// How far ahead each renewal pushes the lease.
    pub lease_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: "local".into(),
            url: "http://127.0.0.1:3000".into(),
            lease_ms: 3_000,
        }
    }
}

impl ClusterConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.max(300))
    }

    /// How often the lease is renewed: three chances before it runs out.
    pub fn renew_every(&self) -> Duration {
        self.lease() / 3
    }

    /// The part of the lease not relied on, for the clocks' rates drifting apart.
    fn margin(&self) -> Duration {
        self.lease() / 10
    }
}

/// One life of this node in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incarnation(pub i64);

/// A lease held now.
#[derive(Debug)]
struct Lease {
    incarnation: Incarnation,
    /// On this node's monotonic clock: decide no later than this.
    valid_until: Instant,
}

/// This node's membership: its identity and, while it holds one, its lease.
pub struct Membership {
    config: ClusterConfig,
    /// The lease, when the node holds one.
    lease: ArcSwapOption<Lease>,
    /// The incarnation the engine works under (`None`: none; deciding stopped). Changes
    /// when the lease is lost or a new incarnation joins.
    current: watch::Sender<Option<Incarnation>>,
    /// Set by shutdown: renewals stop and the node's row is given up.
    leaving: AtomicBool,
}

impl Membership {
    pub fn new(config: ClusterConfig) -> Arc<Membership> {
        Arc::new(Membership {
            config,
            lease: ArcSwapOption::empty(),
            current: watch::channel(None).0,
            leaving: AtomicBool::new(false),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The incarnation this node may decide under now, or `None` when its lease is not
    /// known to be good (never joined, lost, leaving).
    pub fn incarnation(&self) -> Option<Incarnation> {
        let lease = self.lease.load();
        let lease = lease.as_ref()?;
        (Instant::now() < lease.valid_until).then_some(lease.incarnation)
    }

    /// Changes of the incarnation the engine works under: `None` when deciding must stop.
    pub fn watch(&self) -> watch::Receiver<Option<Incarnation>> {
        self.current.subscribe()
    }

    fn set(&self, lease: Option<Lease>) {
        let incarnation = lease.as_ref().map(|l| l.incarnation);
        self.lease.store(lease.map(Arc::new));
        self.current.send_if_modified(|now| {
            let changed = *now != incarnation;
            *now = incarnation;
            changed
        });
    }

    /// Stops renewing: the node is leaving the cluster.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::Release);
    }

    fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Acquire)
    }

    /// The pool the lease is kept with: one connection of its own, on the engine's I/O
    /// thread (call from there), never shared with flushes.
    pub fn pool(options: &PgConnectOptions, config: &ClusterConfig) -> PgPool {
        PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(config.renew_every())
            .connect_lazy_with(
                options
                    .clone()
                    .application_name(&format!("boxoffice lease {}", config.node_id)),
            )
    }

    /// Joins the cluster under a new incarnation. Returns it.
    pub async fn join(&self, pool: &PgPool) -> Result<Incarnation, sqlx::Error> {
        let sent = Instant::now();
        let incarnation: i64 = sqlx::query_scalar(
            "INSERT INTO cluster_nodes (node_id, url, incarnation, lease_until)
             VALUES ($1, $2, nextval('cluster_incarnation_seq'),
                     clock_timestamp() + make_interval(secs => $3::float8 / 1000))
             ON CONFLICT (node_id) DO UPDATE
                SET url = EXCLUDED.url, incarnation = EXCLUDED.incarnation,
                    lease_until = EXCLUDED.lease_until, joined_at = clock_timestamp(),
                    renewed_at = clock_timestamp()
             RETURNING incarnation",
        )
        .bind(&self.config.node_id)
        .bind(&self.config.url)
        .bind(self.config.lease().as_millis() as f64)
        .fetch_one(pool)
        .await?;
        let incarnation = Incarnation(incarnation);
        self.granted(incarnation, sent);
        tracing::info!(node_id = %self.config.node_id, incarnation = incarnation.0, "joined the cluster");
        metrics::counter!("boxoffice_cluster_joins_total").increment(1);
        Ok(incarnation)
    }

    fn granted(&self, incarnation: Incarnation, sent: Instant) {
        let valid_until = sent + self.config.lease() - self.config.margin();
        self.set(Some(Lease {
            incarnation,
            valid_until,
        }));
    }

    /// Renews the lease of `incarnation`. `Ok(false)`: the lease is gone — it ran out by
    /// PostgreSQL's clock (a lease is never revived: whatever it covered may be claimed
    /// already), or the row has another incarnation (this node id joined elsewhere).
    async fn renew(&self, pool: &PgPool, incarnation: Incarnation) -> Result<bool, sqlx::Error> {
        let sent = Instant::now();
        let renewed = sqlx::query(
            "UPDATE cluster_nodes
                SET lease_until = clock_timestamp() + make_interval(secs => $3::float8 / 1000),
                    renewed_at = clock_timestamp()
              WHERE node_id = $1 AND incarnation = $2 AND lease_until > clock_timestamp()",
        )
        .bind(&self.config.node_id)
        .bind(incarnation.0)
        .bind(self.config.lease().as_millis() as f64)
        .execute(pool)
        .await?
        .rows_affected()
            == 1;
        if renewed && !self.is_leaving() {
            self.granted(incarnation, sent);
        }
        Ok(renewed)
    }

    /// Keeps the lease: renews it every third of its length, declares it lost when its
    /// deadline passes without a renewal, and joins again as a new incarnation once
    /// PostgreSQL answers. Runs until the node leaves.
    pub async fn keep(self: Arc<Self>, pool: PgPool) {
        let every = self.config.renew_every();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.is_leaving() {
                return;
            }
            let held = self.lease.load().as_ref().map(|l| l.incarnation);
            if held.is_some() && self.incarnation().is_none() {
                // The deadline passed without a renewal (the database was unreachable, or
                // this process was paused): stop deciding, then join again below.
                tracing::error!(
                    node_id = %self.config.node_id,
                    "the cluster lease ran out before it could be renewed: this node stops deciding and joins again"
                );
                metrics::counter!("boxoffice_cluster_leases_lost_total").increment(1);
                self.set(None);
            }
            let held = self.incarnation();
            let started = Instant::now();
            let attempt = match held {
                Some(incarnation) => tokio::time::timeout(every, self.renew(&pool, incarnation))
                    .await
                    .map(|r| r.map(|renewed| renewed.then_some(incarnation))),
                None => tokio::time::timeout(every, self.join(&pool))
                    .await
                    .map(|r| r.map(Some)),
            };
            metrics::histogram!("boxoffice_cluster_lease_renewal_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            match attempt {
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => {
                    metrics::counter!("boxoffice_cluster_lease_failures_total", "reason" => "superseded")
                        .increment(1);
                    tracing::error!(
                        node_id = %self.config.node_id,
                        "this node's lease is gone (it ran out, or another process joined with the same NODE_ID); joining again"
                    );
                    self.set(None);
                }
                Ok(Err(e)) => {
                    metrics::counter!("boxoffice_cluster_lease_failures_total", "reason" => "error")
                        .increment(1);
                    tracing::warn!(error = %e, "could not renew the cluster lease");
                }
                Err(_) => {
                    metrics::counter!("boxoffice_cluster_lease_failures_total", "reason" => "timeout")
                        .increment(1);
                    tracing::warn!("renewing the cluster lease timed out");
                }
            }
        }
    }

    /// Gives the node's place up (shutdown, after its events were handed over): its row is
    /// removed, so no node forwards to it or waits for it, and a node id that never comes
    /// back (a one-off tool's) leaves nothing behind.
    pub async fn give_up(&self, pool: &PgPool) {
        self.leave();
        let Some(incarnation) = self.lease.load().as_ref().map(|l| l.incarnation) else {
            return;
        };
        self.set(None);
        let ended =
            sqlx::query("DELETE FROM cluster_nodes WHERE node_id = $1 AND incarnation = $2")
                .bind(&self.config.node_id)
                .bind(incarnation.0)
                .execute(pool)
                .await;
        if let Err(e) = ended {
            tracing::warn!(error = %e, "could not end this node's lease; it runs out by itself");
        }
    }
}
