//! Pull statistics without a write per pull: each manifest GET adds to an
//! in-memory tally (sharded, so concurrent pulls rarely meet on a lock),
//! and a server job hands the tally to the metadata store about once a
//! second, as one unsynced batch of blind adds ([`Meta::record_pulls`]).
//! A crash loses at most the last interval's counts, never a pull.

use berth_core::Digest;
use berth_meta::{Meta, MetaError};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

const SHARDS: usize = 16;

/// Pulls of one manifest since the last flush.
struct Tally {
    repo: String,
    digest: Digest,
    count: i64,
    last_ms: u64,
}

/// By the hash of (repository, digest): a repeated pull finds its tally
/// without allocating; the rare hash collision shares a bucket.
type Shard = HashMap<u64, Vec<Tally>>;

pub struct PullStats {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
}

impl Default for PullStats {
    fn default() -> Self {
        PullStats {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl PullStats {
    /// Count `count` pulls of `digest` from `repo`, the last at `now_ms`.
    fn add(&self, repo: &str, digest: &Digest, count: i64, now_ms: u64) {
        let h = self.hasher.hash_one((repo, digest));
        let mut shard = self.shards[h as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let bucket = shard.entry(h).or_default();
        match bucket
            .iter_mut()
            .find(|t| t.repo == repo && t.digest == *digest)
        {
            Some(t) => {
                t.count += count;
                t.last_ms = t.last_ms.max(now_ms);
            }
            None => bucket.push(Tally {
                repo: repo.to_string(),
                digest: digest.clone(),
                count,
                last_ms: now_ms,
            }),
        }
    }

    /// Count one pull of `digest` from `repo` at `now_ms`.
    pub fn count(&self, repo: &str, digest: &Digest, now_ms: u64) {
        self.add(repo, digest, 1, now_ms)
    }

    /// Everything counted since the last take.
    fn take(&self) -> Vec<Tally> {
        let mut out = Vec::new();
        for s in &self.shards {
            let shard = std::mem::take(&mut *s.lock().unwrap_or_else(|p| p.into_inner()));
            out.extend(shard.into_values().flatten());
        }
        out
    }

    /// Write the tally to `meta` (blocking). On failure the counts are put
    /// back for the next flush.
    pub fn flush(&self, meta: &Meta) -> Result<usize, MetaError> {
        let taken = self.take();
        let batch: Vec<(String, String, i64, u64)> = taken
            .iter()
            .map(|t| (t.repo.clone(), t.digest.to_string(), t.count, t.last_ms))
            .collect();
        if let Err(e) = meta.record_pulls(&batch) {
            for t in taken {
                self.add(&t.repo, &t.digest, t.count, t.last_ms);
            }
            return Err(e);
        }
        Ok(batch.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_and_flushes() {
        let meta = Meta::new(berth_meta::MemStore::new());
        let p = PullStats::default();
        let (x, y) = (Digest::sha256_of(b"x"), Digest::sha256_of(b"y"));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..100 {
                        p.count("a/b", &x, i);
                    }
                });
            }
        });
        p.count("a/c", &y, 5);
        p.count("a/b", &y, 7);
        assert_eq!(p.flush(&meta).unwrap(), 3);
        let xs = x.to_string();
        assert_eq!(meta.artifact_pulls("a/b", &xs).unwrap(), 400);
        assert_eq!(meta.pulled_at("a/b", Some(&xs)).unwrap(), Some(99));
        assert_eq!(meta.repo_stats("a/c").unwrap().pulls, 1);
        assert_eq!(meta.repo_stats("a/b").unwrap().pulls, 401);
        assert_eq!(p.flush(&meta).unwrap(), 0, "taken once");
    }
}
