//! Password hashing and checking with argon2id, off the async workers and with bounded
//! concurrency: a login storm queues here (and is shed past a wait) instead of taking the
//! CPU away from reservations.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use tokio::sync::Semaphore;

use crate::error::ApiError;

/// A hash of a password nobody has, checked when the email is unknown so that a login for
/// an unknown account takes as long as one for a known account.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            crate::users::hash_password(&uuid::Uuid::new_v4().to_string()).expect("hashing works")
        })
        .clone()
}

/// Runs password work on the blocking pool, a few at a time.
#[derive(Clone)]
pub struct Passwords {
    /// Hashes running at once.
    permits: Arc<Semaphore>,
    /// How long a request waits for a permit before it is shed with 503.
    wait: Duration,
}

impl Passwords {
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            wait,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::Unavailable {
                code: "OVERLOADED",
                message: "too many logins at once; retry shortly".into(),
            })?
            .expect("semaphore never closed");
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| ApiError::Internal(e.into()))
    }

    /// An argon2id hash of a new password.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move || crate::users::hash_password(&password))
            .await?
            .map_err(ApiError::Internal)
    }

    /// Whether the password matches the stored hash (or, with no hash, a constant-time
    /// "no" that costs as much as a real check).
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, ApiError> {
        self.run(move || {
            let known = stored.is_some();
            let hash = stored.unwrap_or_else(dummy_hash);
            let ok = PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false);
            known && ok
        })
        .await
    }
}
