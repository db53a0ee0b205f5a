//! The engine's clock.
//!
//! Hold expiry is decided in wall-clock milliseconds (they are stored as `expires_at`), but
//! the timers that fire expiry are tokio timers. Reading wall-clock time as "the wall clock
//! at start + tokio's elapsed time" keeps the two in step, and lets tests drive expiry with
//! `tokio::time::pause()` and `advance()` instead of sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, advancing with tokio's clock.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock milliseconds at `anchor`.
    anchor_ms: i64,
    /// The tokio instant the wall clock was read at.
    anchor: tokio::time::Instant,
}

impl Clock {
    /// A clock anchored at the current wall-clock time. Must be called inside a tokio runtime.
    pub fn new() -> Self {
        let anchor_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the system clock is after 1970")
            .as_millis() as i64;
        Clock {
            anchor_ms,
            anchor: tokio::time::Instant::now(),
        }
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.anchor_ms + self.anchor.elapsed().as_millis() as i64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Milliseconds since the epoch as a PostgreSQL timestamp.
pub fn to_timestamp(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).expect("timestamp in range")
}

/// A PostgreSQL timestamp as milliseconds since the epoch.
pub fn from_timestamp(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis()
}
