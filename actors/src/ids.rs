//! Ids without a round trip.
//!
//! The actor answers with a hold's id before its row exists, so ids are fetched from the
//! PostgreSQL sequences in blocks, ahead of need, and handed out from memory. A block is
//! refilled in the background when it runs low, so the actor only waits for the database
//! when a burst outruns the prefetch. Ids from a block that is never used are simply skipped
//! (sequences have gaps anyway).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sqlx::PgPool;

/// Block fetches one `next` call makes at most before it reports an error.
const FETCHES_PER_ID_MAX: usize = 4;

/// Hands out ids of one sequence from prefetched blocks.
pub struct IdAllocator {
    /// The pool blocks are fetched through.
    pool: PgPool,
    /// The engine's I/O runtime, where fetches run.
    io: tokio::runtime::Handle,
    /// The sequence, e.g. `reservations_id_seq`.
    sequence: &'static str,
    /// Ids per fetch.
    block_size: usize,
    /// Ids fetched and not yet handed out.
    ready: Mutex<VecDeque<i64>>,
    /// Whether a background refill is running, so at most one is.
    refilling: AtomicBool,
}

impl IdAllocator {
    pub fn new(
        pool: PgPool,
        io: tokio::runtime::Handle,
        sequence: &'static str,
        block_size: usize,
    ) -> Arc<Self> {
        assert!(block_size > 0);
        Arc::new(IdAllocator {
            pool,
            io,
            sequence,
            block_size,
            ready: Mutex::new(VecDeque::with_capacity(block_size * 2)),
            refilling: AtomicBool::new(false),
        })
    }

    /// The next id if one is ready; starts a refill when fewer than half a block remain.
    pub fn try_next(self: &Arc<Self>) -> Option<i64> {
        let (id, low) = {
            let mut ready = self.ready.lock().expect("not poisoned");
            let id = ready.pop_front();
            (id, ready.len() < self.block_size / 2)
        };
        if low && !self.refilling.swap(true, Ordering::AcqRel) {
            let this = Arc::clone(self);
            self.io.spawn(async move {
                if let Err(e) = this.refill().await {
                    tracing::warn!(sequence = this.sequence, error = %e, "id prefetch failed");
                }
                this.refilling.store(false, Ordering::Release);
            });
        }
        id
    }

    /// The next id, fetching a block first if none is ready. Other callers may empty a
    /// fresh block before this one takes from it, so it fetches up to
    /// `FETCHES_PER_ID_MAX` times before giving up.
    pub async fn next(self: &Arc<Self>) -> Result<i64, sqlx::Error> {
        for _ in 0..FETCHES_PER_ID_MAX {
            if let Some(id) = self.try_next() {
                return Ok(id);
            }
            let this = Arc::clone(self);
            self.io
                .spawn(async move { this.refill().await })
                .await
                .map_err(|e| sqlx::Error::Protocol(format!("id fetch task failed: {e}")))??;
        }
        self.try_next().ok_or_else(|| {
            sqlx::Error::Protocol(format!(
                "{}: no id left after {FETCHES_PER_ID_MAX} block fetches",
                self.sequence
            ))
        })
    }

    async fn refill(&self) -> Result<(), sqlx::Error> {
        let ids = fetch(&self.pool, self.sequence, self.block_size).await?;
        self.ready.lock().expect("not poisoned").extend(ids);
        Ok(())
    }
}

/// Fetches `count` fresh ids of a sequence in one statement.
pub async fn fetch(pool: &PgPool, sequence: &str, count: usize) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT nextval($1::regclass) FROM generate_series(1, $2)")
        .bind(sequence)
        .bind(count as i32)
        .fetch_all(pool)
        .await
}

/// A fresh booking reference: "BX-" and 16 Crockford base-32 characters taken from a v4 UUID
/// (the operating system's generator; 74 of the 80 bits are random), unguessable and easy to
/// read out over the phone.
pub fn booking_reference() -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bits = uuid::Uuid::new_v4().as_u128();
    let mut out = String::with_capacity(19);
    out.push_str("BX-");
    for i in 0..16 {
        out.push(ALPHABET[((bits >> (i * 5)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn references_are_distinct_and_well_formed() {
        let a = super::booking_reference();
        let b = super::booking_reference();
        assert_ne!(a, b);
        assert_eq!(a.len(), 19);
        assert!(a[3..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() && !"ILOU".contains(c)));
    }
}
