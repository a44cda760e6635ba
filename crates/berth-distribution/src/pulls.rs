//! Pull statistics without a write per pull: each manifest GET adds to an
//! in-memory tally (sharded, so concurrent pulls rarely meet on a lock),
//! and a server job hands the tally to the metadata store about once a
//! second, as one unsynced batch of blind adds ([`Meta::record_pulls`]).
//! A crash loses at most the last interval's counts, never a pull.

use berth_meta::{Meta, MetaError};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

const SHARDS: usize = 16;

type Tally = HashMap<(String, String), (i64, u64)>;

pub struct PullStats {
    shards: Vec<Mutex<Tally>>,
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
    /// Count one pull of `digest` from `repo` at `now_ms`.
    pub fn count(&self, repo: &str, digest: &str, now_ms: u64) {
        let shard = self.hasher.hash_one((repo, digest)) as usize % SHARDS;
        let mut t = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        match t.get_mut(&(repo.to_string(), digest.to_string())) {
            Some(e) => {
                e.0 += 1;
                e.1 = e.1.max(now_ms);
            }
            None => {
                t.insert((repo.to_string(), digest.to_string()), (1, now_ms));
            }
        }
    }

    /// Everything counted since the last take.
    pub fn take(&self) -> Vec<(String, String, i64, u64)> {
        let mut out = Vec::new();
        for s in &self.shards {
            let t = std::mem::take(&mut *s.lock().unwrap_or_else(|p| p.into_inner()));
            out.extend(t.into_iter().map(|((r, d), (n, at))| (r, d, n, at)));
        }
        out
    }

    /// Write the tally to `meta` (blocking). On failure the counts are put
    /// back for the next flush.
    pub fn flush(&self, meta: &Meta) -> Result<usize, MetaError> {
        let batch = self.take();
        let n = batch.len();
        if let Err(e) = meta.record_pulls(&batch) {
            for (r, d, c, at) in batch {
                let shard = self.hasher.hash_one((r.as_str(), d.as_str())) as usize % SHARDS;
                let mut t = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
                let e = t.entry((r, d)).or_insert((0, 0));
                e.0 += c;
                e.1 = e.1.max(at);
            }
            return Err(e);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_and_flushes() {
        let meta = Meta::new(berth_meta::MemStore::new());
        let p = PullStats::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..100 {
                        p.count("a/b", "sha256:x", i);
                    }
                });
            }
        });
        p.count("a/c", "sha256:y", 5);
        assert_eq!(p.flush(&meta).unwrap(), 2);
        assert_eq!(meta.artifact_pulls("a/b", "sha256:x").unwrap(), 400);
        assert_eq!(meta.pulled_at("a/b", Some("sha256:x")).unwrap(), Some(99));
        assert_eq!(meta.repo_stats("a/c").unwrap().pulls, 1);
        assert_eq!(p.flush(&meta).unwrap(), 0, "taken once");
    }
}
