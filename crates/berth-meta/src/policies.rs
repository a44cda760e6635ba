//! Cleanup policies (GitLab's container expiration policies, per registry
//! or per repository) and the record of their runs. What a policy deletes
//! is decided by `berth-gc`'s cleaner; here: storage, the claim of a
//! scheduled run (one replica runs it), and tag deletion that only takes a
//! tag still pointing where the plan saw it.

use crate::cf::Cf;
use crate::meta::{key2, prefix1, Meta, MetaError};
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, MetaError>;

/// A cleanup policy of a registry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CleanupPolicy {
    pub id: String,
    /// Only repositories (names within the registry) matching this whole
    /// regular expression; `None`: every repository of the registry.
    #[serde(default)]
    pub repository_pattern: Option<String>,
    /// Tags matching this (whole) may go.
    pub name_regex_delete: String,
    /// Tags matching this (whole) stay, whatever else says.
    #[serde(default)]
    pub name_regex_keep: Option<String>,
    /// Per repository, the newest this many tags (by push time) of those
    /// that may go stay.
    #[serde(default)]
    pub keep_n: Option<u32>,
    /// Only tags pushed longer ago than this many milliseconds go.
    #[serde(default)]
    pub older_than_ms: Option<u64>,
    /// As written (`7d`, `1month`), for display.
    #[serde(default)]
    pub older_than: Option<String>,
    /// Run every this many seconds (`None`: on demand only).
    #[serde(default)]
    pub interval_secs: Option<u64>,
    #[serde(default)]
    pub last_run_ms: Option<u64>,
    pub created_ms: u64,
    pub created_by: String,
}

/// One run of a policy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CleanupRun {
    pub id: String,
    pub registry: String,
    pub policy: String,
    pub dry_run: bool,
    /// `running`, `succeeded`, `failed`.
    pub status: String,
    pub started_ms: u64,
    #[serde(default)]
    pub finished_ms: Option<u64>,
    /// The cleaner's report, as JSON.
    #[serde(default)]
    pub report: Option<serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
}

fn run_key(registry: &str, id: &str) -> Vec<u8> {
    key2(registry, id)
}

impl Meta {
    /// A registry's policies, by id.
    pub fn cleanup_policies(&self, registry: &str) -> Result<Vec<CleanupPolicy>> {
        self.scan_prefixed::<CleanupPolicy>(
            Cf::CleanupPolicies,
            &String::from_utf8(prefix1(registry)).expect("a name"),
            None,
            usize::MAX,
        )
        .map(|v| v.into_iter().map(|(_, p)| p).collect())
    }

    pub fn cleanup_policy(&self, registry: &str, id: &str) -> Result<Option<CleanupPolicy>> {
        self.get(Cf::CleanupPolicies, &key2(registry, id))
    }

    /// Store a policy (new or changed) of an existing registry. Returns
    /// false when the registry does not exist.
    pub fn put_cleanup_policy(&self, registry: &str, p: &CleanupPolicy) -> Result<bool> {
        self.transact(|tx| {
            if tx.get(Cf::Registries, registry.as_bytes())?.is_none() {
                return Ok(false);
            }
            tx.put_as(Cf::CleanupPolicies, key2(registry, &p.id), p);
            Ok(true)
        })
    }

    /// Change a stored policy with `f` in one transaction. Returns the
    /// policy as changed, or `None` if there is none.
    pub fn update_cleanup_policy(
        &self,
        registry: &str,
        id: &str,
        mut f: impl FnMut(&mut CleanupPolicy),
    ) -> Result<Option<CleanupPolicy>> {
        self.update(Cf::CleanupPolicies, &key2(registry, id), |p| {
            f(p);
            true
        })
    }

    pub fn delete_cleanup_policy(&self, registry: &str, id: &str) -> Result<bool> {
        self.transact(|tx| {
            let k = key2(registry, id);
            if tx.get(Cf::CleanupPolicies, &k)?.is_none() {
                return Ok(false);
            }
            tx.delete(Cf::CleanupPolicies, k);
            Ok(true)
        })
    }

    /// Claim a scheduled run of a policy that is due at `now` (its
    /// interval has passed since its last run): the last run time is set
    /// in the transaction that checks it, so of several replicas asking at
    /// once exactly one gets it. Returns the policy when claimed.
    pub fn claim_due_policy(
        &self,
        registry: &str,
        id: &str,
        now: u64,
    ) -> Result<Option<CleanupPolicy>> {
        self.transact(|tx| {
            let k = key2(registry, id);
            let Some(mut p) = tx.get_as::<CleanupPolicy>(Cf::CleanupPolicies, &k)? else {
                return Ok(None);
            };
            let Some(every) = p.interval_secs else {
                return Ok(None);
            };
            let since = p.last_run_ms.unwrap_or(p.created_ms);
            if since.saturating_add(every.saturating_mul(1000)) > now {
                return Ok(None);
            }
            p.last_run_ms = Some(now);
            tx.put_as(Cf::CleanupPolicies, k, &p);
            Ok(Some(p))
        })
    }

    /// Every policy of every registry (for the scheduler).
    pub fn all_cleanup_policies(&self) -> Result<Vec<(String, CleanupPolicy)>> {
        let mut out = Vec::new();
        for (k, v) in self.kv().scan(Cf::CleanupPolicies, b"", None, usize::MAX)? {
            let registry =
                String::from_utf8_lossy(k.split(|b| *b == 0).next().unwrap_or(&[])).into_owned();
            out.push((registry, crate::meta::dec(Cf::CleanupPolicies, &v)?));
        }
        Ok(out)
    }

    pub fn put_cleanup_run(&self, r: &CleanupRun) -> Result<()> {
        self.transact(|tx| {
            tx.put_as(Cf::CleanupRuns, run_key(&r.registry, &r.id), r);
            Ok(())
        })
    }

    pub fn cleanup_run(&self, registry: &str, id: &str) -> Result<Option<CleanupRun>> {
        self.get(Cf::CleanupRuns, &run_key(registry, id))
    }

    /// A registry's runs, newest first, at most `n`.
    pub fn cleanup_runs(&self, registry: &str, n: usize) -> Result<Vec<CleanupRun>> {
        let mut all: Vec<CleanupRun> = self
            .scan_prefixed::<CleanupRun>(
                Cf::CleanupRuns,
                &String::from_utf8(prefix1(registry)).expect("a name"),
                None,
                usize::MAX,
            )?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        all.sort_by(|a, b| b.started_ms.cmp(&a.started_ms).then(b.id.cmp(&a.id)));
        all.truncate(n);
        Ok(all)
    }

    /// Delete `tag` only if it still points at `digest` (what a cleanup
    /// plan saw), `by` a principal, into the recycle bin when there is one.
    /// Tag rules apply. Returns whether it was deleted.
    pub fn delete_tag_if(&self, repo: &str, tag: &str, digest: &str, by: &str) -> Result<bool> {
        self.delete_tag_where(repo, tag, Some(digest), by)
    }
}
