//! Storage use over time: one sample per registry per interval, for the
//! console's chart (`GET /api/v1/registries/{name}/usage`).
//!
//! Keys are `registry id \0 {bucket start ms:016x}`: ascending time, one
//! key per interval. Every replica sampling within the same interval
//! writes the same key (the last one stays), so N replicas keep one series.
//! The id, not the name, keys them: a registry deleted and created again
//! under its name starts a new series.

use crate::cf::Cf;
use crate::meta::{counter, dec, prefix1, Meta, MetaError};
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, MetaError>;

/// One sample: what the registry's view showed at `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSample {
    /// The start of the interval the sample was taken in.
    pub at_ms: u64,
    /// Blobs (each once), manifests and the recycle bin, as `bytesUsed`.
    pub bytes_used: i64,
    pub repositories: i64,
}

/// What one round of sampling did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sampled {
    pub registries: usize,
    /// Samples older than the retention, deleted.
    pub expired: usize,
}

fn sample_key(id: &str, at_ms: u64) -> Vec<u8> {
    let mut k = prefix1(id);
    k.extend_from_slice(format!("{at_ms:016x}").as_bytes());
    k
}

/// At most this many expired samples are deleted per registry and round
/// (a round per interval keeps up with one new sample per interval).
const EXPIRE_PER_ROUND: usize = 256;

impl Meta {
    /// A registry's storage use now: blobs, manifests and its recycle bin.
    pub fn registry_bytes_used(&self, registry: &str) -> Result<i64> {
        let (blobs, manifests) = self.registry_usage(registry)?;
        Ok(blobs + manifests + self.registry_bin_bytes(registry)?)
    }

    /// Sample every registry's storage use into the interval holding
    /// `now_ms` (`every_ms` wide), and delete samples older than
    /// `keep_ms`. Each sample is written in a transaction that reads the
    /// registry's record, so a registry deleted meanwhile gets none (its
    /// deletion sweeps the series first, then removes the record). Not
    /// waited for on disk: statistics.
    pub fn sample_usage(&self, now_ms: u64, every_ms: u64, keep_ms: u64) -> Result<Sampled> {
        let bucket = now_ms - now_ms % every_ms.max(1);
        let cutoff = now_ms.saturating_sub(keep_ms);
        let mut out = Sampled::default();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_registries(after.as_deref(), 256)?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = Some(last.clone());
            for (name, rec) in page {
                let sample = UsageSample {
                    at_ms: bucket,
                    bytes_used: self.registry_bytes_used(&name)?,
                    repositories: self.counter(&counter::registry_repositories(&name))?,
                };
                let written = self.transact(|tx| {
                    let now: Option<crate::RegistryRecord> =
                        tx.get_as(Cf::Registries, name.as_bytes())?;
                    if now.is_none_or(|r| r.id != rec.id) {
                        return Ok::<_, MetaError>(false);
                    }
                    tx.put_as(Cf::UsageHistory, sample_key(&rec.id, bucket), &sample);
                    tx.no_sync();
                    Ok(true)
                })?;
                if written {
                    out.registries += 1;
                }
                out.expired += self.expire_usage(&rec.id, cutoff, EXPIRE_PER_ROUND)?;
            }
        }
    }

    /// Delete up to `n` of a registry's samples taken before `before_ms`.
    fn expire_usage(&self, id: &str, before_ms: u64, n: usize) -> Result<usize> {
        let end = sample_key(id, before_ms);
        let old: Vec<Vec<u8>> = self
            .kv()
            .scan(Cf::UsageHistory, &prefix1(id), None, n)?
            .into_iter()
            .map(|(k, _)| k)
            .take_while(|k| *k < end)
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        self.transact(|tx| {
            for k in &old {
                tx.delete(Cf::UsageHistory, k.clone());
            }
            tx.no_sync();
            Ok::<_, MetaError>(())
        })?;
        Ok(old.len())
    }

    /// Delete a registry's whole series (when the registry goes).
    pub fn delete_usage_history(&self, id: &str) -> Result<usize> {
        let mut n = 0;
        loop {
            let gone = self.expire_usage(id, u64::MAX, 1000)?;
            n += gone;
            if gone == 0 {
                return Ok(n);
            }
        }
    }

    /// A registry's samples from `since_ms` (inclusive), oldest first, at
    /// most `n`.
    pub fn usage_history(&self, id: &str, since_ms: u64, n: usize) -> Result<Vec<UsageSample>> {
        let start = (since_ms > 0).then(|| sample_key(id, since_ms - 1));
        self.kv()
            .scan(Cf::UsageHistory, &prefix1(id), start.as_deref(), n)?
            .into_iter()
            .map(|(_, v)| dec(Cf::UsageHistory, &v))
            .collect()
    }
}
