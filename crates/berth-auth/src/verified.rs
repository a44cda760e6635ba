//! Secrets that verified, remembered: argon2 runs once per credential, not
//! once per request. Keyed by the stored hash, so a changed hash (reset,
//! regenerate) misses and is checked again.

use crate::secret;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept before the cache starts over.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub(crate) struct Verified {
    /// PHC hash → sha256 of the secret that verified against it.
    ok: Mutex<HashMap<String, [u8; 32]>>,
}

impl Verified {
    /// Whether `secret` matches the PHC hash `phc`.
    pub fn check(&self, secret: &str, phc: &str) -> bool {
        let fp: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if self.ok.lock().expect("lock").get(phc) == Some(&fp) {
            return true;
        }
        if !secret::verify(secret, phc) {
            return false;
        }
        let mut v = self.ok.lock().expect("lock");
        if v.len() > MAX_ENTRIES {
            v.clear();
        }
        v.insert(phc.to_string(), fp);
        true
    }
}
