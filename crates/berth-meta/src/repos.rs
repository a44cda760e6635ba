//! What the management API reads and changes about repositories and their
//! manifests beyond the distribution protocol: per-repository figures
//! (kept exact by the transactions that change what they count), tag
//! history, pull statistics, whole-repository deletion and the audit log.

use crate::cf::Cf;
use crate::kv::counter_value;
use crate::meta::{
    counter, dec, dec_manifest, enc_manifest, key2, last_component, point_tag, prefix1, prefix2,
    remove_manifest, touch_repo, utf8, LinkRecord, ManifestRecord, Meta, MetaError, RepoRecord,
    TagRecord, REF_MANIFEST,
};
use crate::tx::Tx;
use berth_core::media_types::ArtifactKind;
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, MetaError>;

/// One move of a tag: the digest it pointed at before (`None`: created)
/// and after (`None`: deleted), when and by whom.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagEvent {
    pub from: Option<String>,
    pub to: Option<String>,
    pub at_ms: u64,
    /// The principal's subject (`admin`, `token:<id>`, `user:<registry>/<name>`,
    /// `anonymous`).
    pub by: String,
}

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditRecord {
    pub at_ms: u64,
    pub principal: String,
    pub client: String,
    /// What was done: `registry.create`, `manifest.push`, `tag.delete`, …
    pub action: String,
    /// What it was done to (a registry, `repo:tag`, `repo@digest`, a
    /// token id, …).
    pub target: String,
    /// The registry the target is in, when there is one.
    #[serde(default)]
    pub registry: Option<String>,
    /// The HTTP status the request was answered with.
    pub status: u16,
}

/// Filters of an audit listing; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub registry: Option<String>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    /// Only entries in one of these registries (a scoped caller's view).
    pub within: Option<Vec<String>>,
}

impl AuditFilter {
    fn matches(&self, r: &AuditRecord) -> bool {
        self.registry
            .as_ref()
            .is_none_or(|g| r.registry.as_ref() == Some(g))
            && self.principal.as_ref().is_none_or(|p| *p == r.principal)
            && self.action.as_ref().is_none_or(|a| *a == r.action)
            && self.within.as_ref().is_none_or(|w| {
                r.registry
                    .as_ref()
                    .is_some_and(|g| w.iter().any(|x| x == g))
            })
    }
}

/// A page of the audit log: entries newest first, and the cursor to go on
/// from when the scan stopped before the end (a page may hold fewer than
/// asked when filters skip many entries: the scan is bounded).
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub items: Vec<(String, AuditRecord)>,
    pub next: Option<String>,
}

/// A repository's figures, read in one scan of its counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoStats {
    /// Deduplicated bytes of the blobs it links.
    pub bytes: i64,
    pub manifest_bytes: i64,
    pub artifacts: i64,
    pub tags: i64,
    pub pulls: i64,
    /// Manifests of each [`ArtifactKind`], in [`ArtifactKind::ALL`] order.
    pub kinds: [i64; 3],
}

impl RepoStats {
    /// What the repository mostly holds: images if any, else Helm charts if
    /// any, else artifacts (signatures and SBOMs beside images do not make
    /// an image repository an artifact one).
    pub fn kind(&self) -> ArtifactKind {
        ArtifactKind::ALL
            .into_iter()
            .zip(self.kinds)
            .find(|(_, n)| *n > 0)
            .map(|(k, _)| k)
            .unwrap_or(ArtifactKind::Artifact)
    }

    /// Blob and manifest bytes together.
    pub fn size(&self) -> i64 {
        self.bytes + self.manifest_bytes
    }
}

/// What deleting a manifest through the management API did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestDelete {
    Deleted,
    NotFound,
    /// An index of the repository still lists it as a child.
    ReferencedBy(String),
}

/// Keys that sort newest first: the inverted time, then an inverted
/// sequence number of this process (so two entries of one millisecond
/// keep their order), then a random 64-bit id of the process, so that
/// replicas writing in the same millisecond at the same sequence number
/// still write different keys (with 16 bits, two of a few replicas shared
/// an id once in tens of thousands of deployments, and then an audit entry
/// could overwrite another's).
fn newest_first(ms: u64) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static SEQ: AtomicU32 = AtomicU32::new(0);
    static PROCESS: OnceLock<u64> = OnceLock::new();
    let process = *PROCESS.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}{:08x}{process:016x}", u64::MAX - ms, u32::MAX - seq)
}

/// The time a [`newest_first`] key was made at.
fn time_of(suffix: &[u8]) -> Option<u64> {
    let hex = std::str::from_utf8(suffix.get(..16)?).ok()?;
    u64::from_str_radix(hex, 16).ok().map(|inv| u64::MAX - inv)
}

pub(crate) fn record_tag_event(
    tx: &mut Tx<'_>,
    repo: &str,
    tag: &str,
    from: Option<String>,
    to: Option<String>,
    now: u64,
    by: &str,
) {
    let mut k = prefix2(repo, tag);
    k.extend_from_slice(newest_first(now).as_bytes());
    tx.put_as(
        Cf::TagHistory,
        k,
        &TagEvent {
            from,
            to,
            at_ms: now,
            by: by.to_string(),
        },
    );
}

fn scan_all(tx: &mut Tx<'_>, cf: Cf, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    tx.scan(cf, prefix, None, usize::MAX)
}

impl Meta {
    /// Repositories whose names start with `prefix` (a registry's are under
    /// `registry/`), in name order, after `after`, at most `n`.
    pub fn list_repos_with_prefix(
        &self,
        prefix: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, RepoRecord)>> {
        self.scan_prefixed(Cf::Repos, prefix, after, n)
    }

    /// A repository's figures (zeros for one that does not exist).
    pub fn repo_stats(&self, repo: &str) -> Result<RepoStats> {
        let prefix = counter::repo_prefix(repo);
        let mut s = RepoStats::default();
        for (k, v) in self.kv().scan(Cf::Counters, &prefix, None, 64)? {
            let n = counter_value(Some(&v));
            match std::str::from_utf8(&k[prefix.len()..]).unwrap_or("") {
                counter::REPO_BYTES => s.bytes = n,
                counter::REPO_MANIFEST_BYTES => s.manifest_bytes = n,
                counter::REPO_ARTIFACTS => s.artifacts = n,
                counter::REPO_TAGS => s.tags = n,
                counter::REPO_PULLS => s.pulls = n,
                other => {
                    for (i, kind) in ArtifactKind::ALL.into_iter().enumerate() {
                        if other == counter::repo_kind(kind) {
                            s.kinds[i] = n;
                        }
                    }
                }
            }
        }
        Ok(s)
    }

    /// When a repository (`digest` `None`) or one of its manifests was last
    /// pulled.
    pub fn pulled_at(&self, repo: &str, digest: Option<&str>) -> Result<Option<u64>> {
        let k = match digest {
            Some(d) => key2(repo, d),
            None => repo.as_bytes().to_vec(),
        };
        Ok(self
            .kv()
            .get(Cf::PulledAt, &k)?
            .and_then(|v| v.as_slice().try_into().ok().map(u64::from_le_bytes)))
    }

    /// How many times a manifest was pulled.
    pub fn artifact_pulls(&self, repo: &str, digest: &str) -> Result<i64> {
        self.counter_key(&counter::artifact_pulls(repo, digest))
    }

    fn counter_key(&self, k: &[u8]) -> Result<i64> {
        Ok(counter_value(self.kv().get(Cf::Counters, k)?.as_deref()))
    }

    /// Refuse ([`MetaError::OverQuota`]) a blob of `bytes` that the
    /// registry does not hold yet and that would take it over its limit: a
    /// read, to refuse an upload before its bytes are sent. The charge
    /// itself is checked again in the transaction that links the blob.
    pub fn check_quota(&self, registry: &str, digest: &str, bytes: u64) -> Result<()> {
        if self
            .kv()
            .get(Cf::RegistryBlobs, &key2(registry, digest))?
            .is_some()
        {
            return Ok(());
        }
        self.transact(|tx| crate::meta::charge(tx, registry, bytes))
    }

    /// A registry's usage: deduplicated blob bytes and manifest bytes.
    pub fn registry_usage(&self, registry: &str) -> Result<(i64, i64)> {
        Ok((
            self.counter(&counter::registry_blob_bytes(registry))?,
            self.counter(&counter::registry_manifest_bytes(registry))?,
        ))
    }

    /// Count pulls: for each `(repo, digest, count, last_ms)` add to the
    /// manifest's and repository's pull counters and set their
    /// `pulled_at`. One batch, not waited for on disk: statistics may lose
    /// the last second to a machine crash, a pull never waits for them.
    pub fn record_pulls(&self, pulls: &[(String, String, i64, u64)]) -> Result<()> {
        if pulls.is_empty() {
            return Ok(());
        }
        self.transact(|tx| {
            for (repo, digest, n, last) in pulls {
                tx.add(Cf::Counters, counter::artifact_pulls(repo, digest), *n);
                tx.add(Cf::Counters, counter::repo(repo, counter::REPO_PULLS), *n);
                let ms = last.to_le_bytes().to_vec();
                tx.put(Cf::PulledAt, key2(repo, digest), ms.clone());
                tx.put(Cf::PulledAt, repo.as_bytes(), ms);
            }
            tx.no_sync();
            Ok(())
        })
    }

    /// Delete a repository and everything in it — manifests, tags, links,
    /// reference and referrer rows, tag history, pull statistics — and
    /// uncount it, in one transaction. The repository record is read as
    /// the guard: a push into the repository meanwhile makes it retry.
    /// Blobs stay for garbage collection. Its tags are deleted `by` a
    /// principal, as tag rules allow (an immutable tag, or a protected one
    /// for all but the admin, refuses the whole deletion). Returns whether
    /// it existed.
    pub fn delete_repository(&self, repo: &str, by: &str) -> Result<bool> {
        self.transact(|tx| {
            if tx.get(Cf::Repos, repo.as_bytes())?.is_none() {
                return Ok(false);
            }
            let p = prefix1(repo);
            for (k, _) in scan_all(tx, Cf::Tags, &p)? {
                let tag = last_component(Cf::Tags, &k)?;
                crate::rules::check_tag_change(tx, repo, &tag, crate::TagChange::Delete, by)?;
            }
            for (k, v) in scan_all(tx, Cf::Links, &p)? {
                let d = utf8(Cf::Links, k[p.len()..].to_vec())?;
                let link: LinkRecord = dec(Cf::Links, &v)?;
                crate::meta::drop_link(tx, repo, &d, link.size)?;
            }
            for cf in [
                Cf::Manifests,
                Cf::Tags,
                Cf::TagsByDigest,
                Cf::Refs,
                Cf::Referrers,
                Cf::TagHistory,
                Cf::PulledAt,
                Cf::Bin,
            ] {
                for (k, _) in scan_all(tx, cf, &p)? {
                    tx.delete(cf, k);
                }
            }
            tx.delete(Cf::PulledAt, repo.as_bytes());
            let registry = crate::meta::registry_of(repo);
            // Every add to this counter is in a transaction that writes the
            // repository record, which this one read: the value holds.
            let k = counter::repo(repo, counter::REPO_MANIFEST_BYTES);
            let manifest_bytes = counter_value(tx.peek(Cf::Counters, &k)?.as_deref());
            tx.add(
                Cf::Counters,
                counter::registry_manifest_bytes(registry),
                -manifest_bytes,
            );
            let k = counter::repo(repo, counter::REPO_BIN_BYTES);
            let bin_bytes = counter_value(tx.peek(Cf::Counters, &k)?.as_deref());
            tx.add(
                Cf::Counters,
                counter::registry_bin_bytes(registry),
                -bin_bytes,
            );
            for prefix in [
                counter::repo_prefix(repo),
                counter::artifact_pulls_prefix(repo),
            ] {
                for (k, _) in scan_all(tx, Cf::Counters, &prefix)? {
                    tx.delete(Cf::Counters, k);
                }
            }
            tx.delete(Cf::Repos, repo.as_bytes());
            tx.add(Cf::Counters, counter::REPOSITORIES, -1);
            tx.add(Cf::Counters, counter::registry_repositories(registry), -1);
            Ok(true)
        })
    }

    /// Manifests of a repository in digest order, whose digests start with
    /// `digest_prefix`, after `after`, at most `n`.
    pub fn list_manifests(
        &self,
        repo: &str,
        digest_prefix: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, ManifestRecord)>> {
        let mut prefix = prefix1(repo);
        let base = prefix.len();
        prefix.extend_from_slice(digest_prefix.as_bytes());
        let after = after.map(|a| key2(repo, a));
        self.kv()
            .scan(Cf::Manifests, &prefix, after.as_deref(), n)?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    utf8(Cf::Manifests, k[base..].to_vec())?,
                    dec_manifest(&v)?.0,
                ))
            })
            .collect()
    }

    /// Tags of a repository starting with `prefix`, with their records, in
    /// name order, after `after`, at most `n`.
    pub fn list_tag_records(
        &self,
        repo: &str,
        prefix: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, TagRecord)>> {
        let mut p = prefix1(repo);
        let base = p.len();
        p.extend_from_slice(prefix.as_bytes());
        let after = after.map(|a| key2(repo, a));
        self.kv()
            .scan(Cf::Tags, &p, after.as_deref(), n)?
            .into_iter()
            .map(|(k, v)| Ok((utf8(Cf::Tags, k[base..].to_vec())?, dec(Cf::Tags, &v)?)))
            .collect()
    }

    /// Tags pointing at a manifest, in name order, at most `n`.
    pub fn manifest_tags(&self, repo: &str, digest: &str, n: usize) -> Result<Vec<String>> {
        self.kv()
            .scan(Cf::TagsByDigest, &prefix2(repo, digest), None, n)?
            .iter()
            .map(|(k, _)| last_component(Cf::TagsByDigest, k))
            .collect()
    }

    /// Delete a manifest with its tags unless an index of the repository
    /// still lists it (checked in the same transaction: an index pushed
    /// meanwhile reads this manifest as a condition, so one of the two
    /// retries and sees the other).
    pub fn delete_manifest_unreferenced(
        &self,
        repo: &str,
        digest: &str,
        by: &str,
    ) -> Result<ManifestDelete> {
        self.transact(|tx| {
            if tx.get(Cf::Manifests, &key2(repo, digest))?.is_none() {
                return Ok(ManifestDelete::NotFound);
            }
            for (k, v) in tx.scan(Cf::Refs, &prefix2(repo, digest), None, 64)? {
                if v == REF_MANIFEST {
                    return Ok(ManifestDelete::ReferencedBy(last_component(Cf::Refs, &k)?));
                }
            }
            remove_manifest(tx, repo, digest, by, self.recycle_bin_ms() > 0)?;
            touch_repo(tx, repo, crate::now_millis())?;
            Ok(ManifestDelete::Deleted)
        })
    }

    /// Point `tag` at an existing manifest (a restore from the tag's
    /// history), recorded as done `by`. Returns false when the manifest is
    /// not in the repository.
    pub fn set_tag(&self, repo: &str, tag: &str, digest: &str, by: &str) -> Result<bool> {
        self.transact(|tx| {
            let mk = key2(repo, digest);
            // Rewriting the manifest record is what guards its tags (see
            // `remove_manifest`): a concurrent delete conflicts with us.
            let Some(v) = tx.get(Cf::Manifests, &mk)? else {
                return Ok(false);
            };
            let (mut rec, body) = dec_manifest(&v)?;
            rec.rev = crate::meta::fresh_rev();
            tx.put(Cf::Manifests, mk, enc_manifest(&rec, &body));
            let now = crate::now_millis();
            point_tag(tx, repo, tag, digest, now, by)?;
            touch_repo(tx, repo, now)?;
            Ok(true)
        })
    }

    /// Tag history of a repository (every tag, by tag name then newest
    /// first) or of one tag (newest first), after the cursor `after` (as
    /// returned here), at most `n`. Each entry: cursor, tag, event.
    pub fn tag_history(
        &self,
        repo: &str,
        tag: Option<&str>,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, String, TagEvent)>> {
        let prefix = match tag {
            Some(t) => prefix2(repo, t),
            None => prefix1(repo),
        };
        let start = after.and_then(|c| c.split_once('@')).map(|(t, s)| {
            let mut k = prefix2(repo, t);
            k.extend_from_slice(s.as_bytes());
            k
        });
        let base = prefix1(repo).len();
        self.kv()
            .scan(Cf::TagHistory, &prefix, start.as_deref(), n)?
            .into_iter()
            .map(|(k, v)| {
                let rest = &k[base..];
                let cut = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
                let tag = utf8(Cf::TagHistory, rest[..cut].to_vec())?;
                let suffix = utf8(Cf::TagHistory, rest[(cut + 1).min(rest.len())..].to_vec())?;
                Ok((format!("{tag}@{suffix}"), tag, dec(Cf::TagHistory, &v)?))
            })
            .collect()
    }

    /// Append to the audit log (not waited for on disk: the change it
    /// records is already durable; a crash may lose the newest entries).
    pub fn append_audit(&self, rec: &AuditRecord) -> Result<()> {
        let k = newest_first(rec.at_ms);
        self.transact(|tx| {
            tx.put_as(Cf::Audit, k.as_bytes(), rec);
            tx.no_sync();
            Ok(())
        })
    }

    /// Append to the audit log from async code, off the executor; an entry
    /// that cannot be written is logged (the request it records has been
    /// answered either way). What both APIs' dispatchers call.
    pub async fn audit(&self, rec: AuditRecord) {
        if let Err(e) = self.run(move |m| m.append_audit(&rec)).await {
            tracing::warn!(error = %e, "audit entry not written");
        }
    }

    /// The audit log, newest first, filtered, after the cursor `after`, at
    /// most `n` entries, reading at most `budget` entries.
    pub fn list_audit(
        &self,
        f: &AuditFilter,
        after: Option<&str>,
        n: usize,
        budget: usize,
    ) -> Result<AuditPage> {
        // Keys sort by inverted time: `until` is where to start, `since`
        // where to stop. A key of `{inv:016x}` then `g` sorts after every
        // key of that millisecond (the rest is hex) and before the next.
        let mut start = match f.until_ms {
            Some(u) if u < u64::MAX => Some(format!("{:016x}g", u64::MAX - u - 1)),
            _ => None,
        };
        if let Some(a) = after {
            if start.as_deref().is_none_or(|s| a > s) {
                start = Some(a.to_string());
            }
        }
        let mut items = Vec::new();
        let mut read = 0;
        loop {
            let chunk = 256.min(budget - read).max(1);
            let rows =
                self.kv()
                    .scan(Cf::Audit, b"", start.as_deref().map(str::as_bytes), chunk)?;
            let end = rows.len() < chunk;
            for (k, v) in rows {
                read += 1;
                let key = utf8(Cf::Audit, k)?;
                if f.since_ms
                    .is_some_and(|s| time_of(key.as_bytes()).is_some_and(|t| t < s))
                {
                    return Ok(AuditPage { items, next: None });
                }
                let rec: AuditRecord = dec(Cf::Audit, &v)?;
                if f.matches(&rec) {
                    items.push((key.clone(), rec));
                }
                start = Some(key);
                if items.len() == n {
                    return Ok(AuditPage { items, next: start });
                }
            }
            if end {
                return Ok(AuditPage { items, next: None });
            }
            if read >= budget {
                return Ok(AuditPage { items, next: start });
            }
        }
    }
}
