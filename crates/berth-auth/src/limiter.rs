//! The failed-login limit: after `max` failures of one user name from one
//! client address within `window`, logins are refused until the window has
//! passed. In memory, per process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept before expired ones are dropped.
const PRUNE_AT: usize = 100_000;

pub(crate) struct LoginLimiter {
    max: u32,
    window: Duration,
    /// (client, user) → failures and when the window started.
    failures: Mutex<HashMap<(String, String), (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(max: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            max,
            window,
            failures: Mutex::default(),
        }
    }

    /// Whether `user` from `client` is refused now.
    pub fn limited(&self, client: &str, user: &str) -> bool {
        let f = self.failures.lock().expect("lock");
        match f.get(&(client.to_string(), user.to_string())) {
            Some((n, since)) => *n >= self.max && since.elapsed() < self.window,
            None => false,
        }
    }

    pub fn failed(&self, client: &str, user: &str) {
        let mut f = self.failures.lock().expect("lock");
        if f.len() > PRUNE_AT {
            f.retain(|_, (_, t)| t.elapsed() < self.window);
        }
        let e = f
            .entry((client.to_string(), user.to_string()))
            .or_insert((0, Instant::now()));
        if e.1.elapsed() >= self.window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    pub fn succeeded(&self, client: &str, user: &str) {
        self.failures
            .lock()
            .expect("lock")
            .remove(&(client.to_string(), user.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_client_and_user_and_resets() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        l.failed("a", "u");
        assert!(!l.limited("a", "u"));
        l.failed("a", "u");
        assert!(l.limited("a", "u"));
        assert!(!l.limited("b", "u"), "another client");
        assert!(!l.limited("a", "v"), "another user");
        l.succeeded("a", "u");
        assert!(!l.limited("a", "u"));
        let short = LoginLimiter::new(1, Duration::from_millis(1));
        short.failed("a", "u");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!short.limited("a", "u"), "the window passed");
    }
}
