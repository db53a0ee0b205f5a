//! Throttling of failed logins, per account and per client address, so that password
//! guessing is slowed to a crawl. Counters live in a fixed window per key; the table is
//! bounded and forgets old windows.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Failed-login counters.
pub struct LoginThrottle {
    /// (key) → (window start, failures in it).
    failures: DashMap<String, (Instant, u32)>,
    /// Length of a window.
    window: Duration,
    /// Failures allowed per account per window.
    per_account: u32,
    /// Failures allowed per address per window.
    per_address: u32,
    /// Most keys kept; past it, expired windows are swept.
    max_keys: usize,
}

impl LoginThrottle {
    pub fn new(window: Duration, per_account: u32, per_address: u32) -> Self {
        LoginThrottle {
            failures: DashMap::new(),
            window,
            per_account,
            per_address,
            max_keys: 100_000,
        }
    }

    fn keys(email: &str, address: Option<IpAddr>) -> [Option<String>; 2] {
        [
            Some(format!("account:{}", email.trim().to_lowercase())),
            address.map(|a| format!("address:{a}")),
        ]
    }

    /// Seconds to wait if this account or address is locked out now.
    pub fn locked_for(&self, email: &str, address: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let [account, addr] = Self::keys(email, address);
        let check = |key: Option<String>, limit: u32| {
            let key = key?;
            let entry = self.failures.get(&key)?;
            let (start, count) = *entry;
            let left = self.window.checked_sub(now.duration_since(start))?;
            (count >= limit).then(|| left.as_secs().max(1))
        };
        check(account, self.per_account).or_else(|| check(addr, self.per_address))
    }

    /// Counts a failed login.
    pub fn failed(&self, email: &str, address: Option<IpAddr>) {
        let now = Instant::now();
        if self.failures.len() >= self.max_keys {
            self.failures
                .retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        for key in Self::keys(email, address).into_iter().flatten() {
            let mut entry = self.failures.entry(key).or_insert((now, 0));
            if now.duration_since(entry.0) >= self.window {
                *entry = (now, 0);
            }
            entry.1 += 1;
        }
    }

    /// Clears an account's failures after a successful login.
    pub fn succeeded(&self, email: &str) {
        self.failures
            .remove(&format!("account:{}", email.trim().to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_locks_after_its_allowance_and_unlocks_on_success() {
        let t = LoginThrottle::new(Duration::from_secs(60), 3, 100);
        for _ in 0..3 {
            assert!(t.locked_for("A@x.io", None).is_none());
            t.failed("a@x.io", None);
        }
        assert!(t.locked_for("a@X.io", None).is_some());
        t.succeeded("a@x.io");
        assert!(t.locked_for("a@x.io", None).is_none());
    }

    #[test]
    fn an_address_locks_across_accounts() {
        let t = LoginThrottle::new(Duration::from_secs(60), 100, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        t.failed("a@x.io", Some(ip));
        t.failed("b@x.io", Some(ip));
        assert!(t.locked_for("c@x.io", Some(ip)).is_some());
        assert!(t.locked_for("c@x.io", None).is_none());
    }
}
