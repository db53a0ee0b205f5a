//! The engine's limits and timings, set by the server from its environment.

use std::time::Duration;

use crate::cluster::ClusterConfig;

/// Engine limits and timings. Each bounds one queue, batch or wait of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Requests in flight across all events; beyond it calls fail with `Overloaded` at once.
    pub max_in_flight_total: usize,
    /// Requests in flight for one event (its mailbox plus its parked replies).
    pub max_in_flight_per_event: usize,
    /// Changes per write-behind batch before it is sealed and the next one opened.
    pub max_batch_changes: usize,
    /// How long one flush transaction may take before it counts as failed.
    pub flush_timeout_ms: u64,
    /// How long a caller waits for an actor's answer.
    pub call_timeout_ms: u64,
    /// An actor with no requests and no holds for this long stops.
    pub idle_timeout_seconds: u64,
    /// Ids fetched per round trip for holds and bookings.
    pub id_block_size: usize,
    /// Attempts to rebuild a failed actor before leaving it to the next request.
    pub restart_attempts: u32,
    /// Connections of the engine's own pool (flushes, loads, id blocks). One flush runs per
    /// busy event, so this bounds how many events commit at once.
    pub db_connections: u32,
    /// How long shutdown as a whole may take: waiting for requests in flight and draining
    /// every actor share this one deadline.
    pub shutdown_timeout_ms: u64,
    /// Run the event actors on a thread of their own (`boxoffice-actors`) rather than among
    /// the HTTP tasks. Off by default. The thread was added when, under a flood of
    /// requests, an actor among thousands of connection tasks decided a fraction of what it
    /// could; with early shedding, pacing and the per-event bound in place it now costs
    /// more than it saves: every message to it is a wake through the kernel (an `eventfd`
    /// write, 6 % of the HTTP workers' CPU in a profile), while among the HTTP tasks a
    /// message wakes the actor in the sender's own worker. Measured alternately (README,
    /// "The actor thread, measured again"): without it 32,500–34,400 holds/s and, under
    /// 4,096 connections, goodput 0.86–0.87× with the admitted holds' p99 at 1.30–1.37×
    /// nominal; with it 32,000–32,300 holds/s, 0.82–0.84× and 1.69–3.18×. The price is in
    /// an open loop with pacing off (`PACE_MAX_MS=0`): at twice the capacity the actor
    /// among the HTTP tasks decided 0.30–0.42× of nominal against 0.55× on its thread.
    /// Tests that pause tokio's clock keep it off, so that the actors share their clock.
    pub actor_thread: bool,
    /// The least time between two live-feed messages of one event. Commits that come faster
    /// are shown together; a commit after a quiet spell is shown at once. Zero: a message
    /// per commit.
    pub stream_interval_ms: u64,
    /// Live-feed messages this node writes to subscribers per second, at most: a feed rests
    /// long enough between messages that subscribers × messages stays under it. Each
    /// message costs every subscriber a wake-up and a write, so this, not the commit rate,
    /// bounds what a large audience costs (10,000 subscribers: a message a second).
    pub stream_deliveries_per_second: u64,
    /// A feed with nothing to send sends a heartbeat this often, so that proxies keep its
    /// streams open.
    pub stream_heartbeat_seconds: u64,
    /// This node's identity and lease in the cluster (a single node is a cluster of one).
    pub cluster: ClusterConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            // Sized for latency, not for memory (Little's law): one hot event decides
            // ~25,000–30,000 holds/s here, so 256 in flight is ~10 ms of queue; 1,024 was
            // ~40 ms, and ~500 ms once 4,096 clients competed for the CPU. Past the bound,
            // answering 503 at once (and pacing the connection, `connections.rs`) beats
            // answering late.
            max_in_flight_total: 4_096,
            max_in_flight_per_event: 256,
            max_batch_changes: 16_384,
            flush_timeout_ms: 5_000,
            call_timeout_ms: 10_000,
            idle_timeout_seconds: 300,
            id_block_size: 2_000,
            restart_attempts: 8,
            db_connections: 8,
            shutdown_timeout_ms: 10_000,
            actor_thread: false,
            // Four updates a second is live to a buyer's eye, and bounds what each of
            // thousands of subscribers costs whatever the commit rate.
            stream_interval_ms: 250,
            stream_deliveries_per_second: 10_000,
            stream_heartbeat_seconds: 15,
            cluster: ClusterConfig::default(),
        }
    }
}

impl EngineConfig {
    pub fn flush_timeout(&self) -> Duration {
        Duration::from_millis(self.flush_timeout_ms)
    }

    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_seconds)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// How often an actor checks whether it has been idle long enough to stop.
    pub fn idle_check_period(&self) -> Duration {
        (self.idle_timeout() / 4).max(Duration::from_secs(1))
    }
}
