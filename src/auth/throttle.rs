//! Throttling of failed logins, per account and per client address, so that password
//! guessing is slowed to a crawl. Counters live in PostgreSQL (`login_failures`), one row per
//! key and fixed window, so that every node of a cluster counts the same failures: a guesser
//! cannot multiply the allowance by spreading attempts over the nodes. Only logins touch the
//! table (they hash a password anyway, so a round trip is nothing next to argon2), and
//! expired windows are swept now and then.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;

/// Failed logins between two sweeps of expired windows.
const SWEEP_EVERY_FAILURES: u64 = 256;

/// Failed-login counters, shared through PostgreSQL.
pub struct LoginThrottle {
    pool: PgPool,
    /// Length of a window.
    window: Duration,
    /// Failures allowed per account per window.
    per_account: u32,
    /// Failures allowed per address per window.
    per_address: u32,
    /// Failures counted by this node, to sweep every so often.
    counted: AtomicU64,
}

impl LoginThrottle {
    pub fn new(pool: PgPool, window: Duration, per_account: u32, per_address: u32) -> Self {
        LoginThrottle {
            pool,
            window,
            per_account,
            per_address,
            counted: AtomicU64::new(0),
        }
    }

    /// An account's key: a digest of the address as typed (trimmed, lower case), so that
    /// the table holds no email addresses, and any text — a NUL included — makes a key.
    fn account_key(email: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(email.trim().to_lowercase().as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("account:{hex}")
    }

    /// The keys of an attempt, with the failures each allows per window.
    fn keys(&self, email: &str, address: Option<IpAddr>) -> Vec<(String, u32)> {
        let mut keys = vec![(Self::account_key(email), self.per_account)];
        if let Some(address) = address {
            keys.push((format!("address:{address}"), self.per_address));
        }
        keys
    }

    fn window_seconds(&self) -> f64 {
        self.window.as_secs_f64()
    }

    /// Seconds to wait if this account or address is locked out now.
    pub async fn locked_for(
        &self,
        email: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<u64>, sqlx::Error> {
        let keys = self.keys(email, address);
        let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let rows: Vec<(String, i32, f64)> = sqlx::query_as(
            "SELECT key, failures,
                    EXTRACT(EPOCH FROM (window_start + make_interval(secs => $2) - clock_timestamp()))::float8
               FROM login_failures WHERE key = ANY($1)",
        )
        .bind(&names)
        .bind(self.window_seconds())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(key, failures, left)| {
                let limit = keys.iter().find(|(k, _)| *k == key)?.1;
                (left > 0.0 && failures as u32 >= limit).then(|| (left.ceil() as u64).max(1))
            })
            .max())
    }

    /// Counts a failed login against the account and the address, starting a new window
    /// for a key whose window has ended.
    pub async fn failed(&self, email: &str, address: Option<IpAddr>) -> Result<(), sqlx::Error> {
        let keys = self.keys(email, address);
        let names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        sqlx::query(
            "INSERT INTO login_failures (key, window_start, failures)
             SELECT k, clock_timestamp(), 1 FROM UNNEST($1::text[]) AS k
             ON CONFLICT (key) DO UPDATE SET
                 failures = CASE
                     WHEN login_failures.window_start + make_interval(secs => $2) <= clock_timestamp()
                     THEN 1 ELSE login_failures.failures + 1 END,
                 window_start = CASE
                     WHEN login_failures.window_start + make_interval(secs => $2) <= clock_timestamp()
                     THEN clock_timestamp() ELSE login_failures.window_start END",
        )
        .bind(&names)
        .bind(self.window_seconds())
        .execute(&self.pool)
        .await?;
        if self
            .counted
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY_FAILURES)
        {
            sqlx::query(
                "DELETE FROM login_failures
                  WHERE window_start + make_interval(secs => $1) < clock_timestamp()",
            )
            .bind(self.window_seconds())
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Clears an account's failures after a successful login.
    pub async fn succeeded(&self, email: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(Self::account_key(email))
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxoffice_engine::testdb::TestDb;

    #[tokio::test]
    async fn an_account_locks_after_its_allowance_and_unlocks_on_success() {
        let db = TestDb::create().await;
        let t = LoginThrottle::new(db.pool.clone(), Duration::from_secs(60), 3, 100);
        for _ in 0..3 {
            assert!(t.locked_for("A@x.io", None).await.unwrap().is_none());
            t.failed("a@x.io", None).await.unwrap();
        }
        let wait = t.locked_for("a@X.io", None).await.unwrap();
        assert!(wait.is_some_and(|w| (1..=60).contains(&w)), "{wait:?}");
        t.succeeded("a@x.io").await.unwrap();
        assert!(t.locked_for("a@x.io", None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_address_locks_across_accounts_and_nodes() {
        let db = TestDb::create().await;
        // Two nodes: two throttles on one database.
        let one = LoginThrottle::new(db.pool.clone(), Duration::from_secs(60), 100, 2);
        let other = LoginThrottle::new(db.pool.clone(), Duration::from_secs(60), 100, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        one.failed("a@x.io", Some(ip)).await.unwrap();
        other.failed("b@x.io", Some(ip)).await.unwrap();
        assert!(one.locked_for("c@x.io", Some(ip)).await.unwrap().is_some());
        assert!(other
            .locked_for("c@x.io", Some(ip))
            .await
            .unwrap()
            .is_some());
        assert!(one.locked_for("c@x.io", None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_window_that_ended_starts_over() {
        let db = TestDb::create().await;
        let t = LoginThrottle::new(db.pool.clone(), Duration::from_secs(60), 1, 100);
        t.failed("a@x.io", None).await.unwrap();
        assert!(t.locked_for("a@x.io", None).await.unwrap().is_some());
        // The window began long ago: it is over, and the next failure starts a new one.
        sqlx::query("UPDATE login_failures SET window_start = now() - interval '1 hour'")
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(t.locked_for("a@x.io", None).await.unwrap().is_none());
        t.failed("a@x.io", None).await.unwrap();
        let failures: i32 = sqlx::query_scalar("SELECT failures FROM login_failures")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(failures, 1);
    }
}
