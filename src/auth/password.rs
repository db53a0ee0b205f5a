//! Password hashing and checking with argon2id, off the async workers and with bounded
//! concurrency: a login storm queues here (and is shed past a wait) instead of taking the
//! CPU away from reservations.
//!
//! A successful check is remembered for a while (`LOGIN_CACHE_SECONDS`), as Elasticsearch's
//! realms cache verified credentials: one argon2id check costs ~20 ms of a core, so a box
//! office account signing in a hundred times a second, or a crowd signing in again when an
//! on-sale opens, would otherwise need cores for hashing alone. The cache holds a keyed
//! SHA-256 of (stored hash, password) under a key made at start and never stored, bounded
//! in size; a changed password has a new stored hash, so its old entries can never match,
//! and a wrong password is never cached — it always costs a full check and counts toward
//! the login throttle.

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

/// Verified credentials remembered at most.
const VERIFIED_MAX_ENTRIES: u64 = 100_000;

/// Runs password work on the blocking pool, a few at a time.
#[derive(Clone)]
pub struct Passwords {
    /// Hashes running at once.
    permits: Arc<Semaphore>,
    /// How long a request waits for a permit before it is shed with 503.
    wait: Duration,
    /// Keyed digests of (stored hash, password) that verified recently; `None` when
    /// `LOGIN_CACHE_SECONDS` is 0.
    verified: Option<moka::sync::Cache<[u8; 32], ()>>,
    /// The digests' key: random, made at start, never stored or logged.
    key: Arc<[u8; 32]>,
}

impl Passwords {
    pub fn new(concurrency: usize, wait: Duration, cache_ttl: Duration) -> Self {
        Passwords {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            wait,
            verified: (!cache_ttl.is_zero()).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(VERIFIED_MAX_ENTRIES)
                    .time_to_live(cache_ttl)
                    .build()
            }),
            key: Arc::new(random_key()),
        }
    }

    /// The cache key of a (stored hash, password) pair.
    fn digest(&self, stored: &str, password: &str) -> [u8; 32] {
        use sha2::Digest;
        let mut d = sha2::Sha256::new();
        d.update(self.key.as_slice());
        d.update((stored.len() as u64).to_be_bytes());
        d.update(stored.as_bytes());
        d.update(password.as_bytes());
        d.finalize().into()
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
        let remembered = match (&self.verified, &stored) {
            (Some(cache), Some(hash)) => {
                let digest = self.digest(hash, &password);
                if cache.contains_key(&digest) {
                    metrics::counter!("boxoffice_login_checks_total", "check" => "remembered")
                        .increment(1);
                    return Ok(true);
                }
                Some((cache.clone(), digest))
            }
            _ => None,
        };
        metrics::counter!("boxoffice_login_checks_total", "check" => "argon2").increment(1);
        let ok = self
            .run(move || {
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
            .await?;
        if let (true, Some((cache, digest))) = (ok, remembered) {
            cache.insert(digest, ());
        }
        Ok(ok)
    }
}

/// 32 bytes from the operating system's generator (`uuid`'s v4 draws on it; 244 of the
/// 256 bits are random).
fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    key
}
