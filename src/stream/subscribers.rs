//! The node's stream subscribers: how many it serves, and the sweep that drops those that
//! fell too far behind. A subscriber whose client stopped reading is never polled again
//! (hyper polls a body only when the socket takes more), so it cannot notice by itself;
//! this looks from outside.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use boxoffice_engine::feed::Lag;
use dashmap::DashMap;
use tokio_util::sync::CancellationToken;

use crate::connections::ConnectionControl;

/// How often the node looks for subscribers that fell behind.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// The node's stream subscribers: a bound on how many, and a watch on how far behind each is.
pub struct Subscribers {
    /// One permit per subscriber (`STREAM_MAX_SUBSCRIBERS`).
    slots: Arc<tokio::sync::Semaphore>,
    /// Messages a subscriber may fall behind its feed before it is dropped.
    behind_max: u64,
    next_id: AtomicU64,
    /// Every subscriber connected now.
    live: DashMap<u64, Watched>,
}

/// What the sweep needs of one subscriber.
struct Watched {
    lag: Arc<Lag>,
    connection: Option<ConnectionControl>,
}

impl Subscribers {
    /// Starts the sweep, which ends with `stopping` or when the node's subscribers are gone.
    pub fn start(max: usize, behind_max: usize, stopping: CancellationToken) -> Arc<Subscribers> {
        let subscribers = Arc::new(Subscribers {
            slots: Arc::new(tokio::sync::Semaphore::new(max)),
            behind_max: behind_max.max(1) as u64,
            next_id: AtomicU64::new(0),
            live: DashMap::new(),
        });
        tokio::spawn(sweep(Arc::downgrade(&subscribers), stopping));
        subscribers
    }

    /// A slot for one more subscriber, unless the node has as many as it allows.
    pub fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// Watches a new subscriber; returns its number, for [`Subscribers::forget`].
    pub fn watch(&self, lag: Arc<Lag>, connection: Option<ConnectionControl>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.live.insert(id, Watched { lag, connection });
        id
    }

    /// A subscriber left.
    pub fn forget(&self, id: u64) {
        self.live.remove(&id);
    }

    /// Drops every subscriber more than `behind_max` messages behind; returns how many.
    fn drop_laggards(&self) -> usize {
        let mut dropped = Vec::new();
        for entry in self.live.iter() {
            if entry.lag.behind() > self.behind_max {
                dropped.push(*entry.key());
            }
        }
        for id in &dropped {
            if let Some((_, watched)) = self.live.remove(id) {
                metrics::counter!("boxoffice_stream_subscribers_dropped_total", "reason" => "slow")
                    .increment(1);
                tracing::debug!("stream subscriber too slow; dropping its connection");
                // Ending the body is not enough: a client that does not read is never polled.
                if let Some(connection) = watched.connection {
                    connection.close();
                }
            }
        }
        dropped.len()
    }
}

async fn sweep(subscribers: Weak<Subscribers>, stopping: CancellationToken) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stopping.cancelled() => return,
            _ = every.tick() => {}
        }
        let Some(subscribers) = subscribers.upgrade() else {
            return;
        };
        subscribers.drop_laggards();
    }
}
