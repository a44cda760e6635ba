//! Garbage collection's steps, each one transaction that re-checks its
//! candidate and deletes it, so collection runs online: pushes and pulls go
//! on, and a push racing a step makes one of the two retry.
//!
//! - [`Meta::gc_delete_untagged`]: a manifest no tag, index or live
//!   subject reaches.
//! - [`Meta::gc_unlink_unreferenced`]: a link no manifest of its
//!   repository references.
//! - [`Meta::gc_blob_begin`] / [`Meta::gc_blob_end`]: a blob no repository
//!   links — its record goes, a marker stays while the caller deletes the
//!   bytes (a new upload of the digest waits for it, `meta.rs` `add_link`).
//!
//! The steps' writes are not flushed one by one (a collection makes
//! hundreds of thousands): the caller flushes them all with [`Meta::flush`]
//! before it deletes any bytes they free. A crash before that brings back
//! records of things nothing reaches, for the next run; the log is written
//! in order, so what comes back is always an earlier state, never a blob
//! record whose bytes are gone.
//!
//! Each step reads the repository record with `get`: every change in a
//! repository rewrites it (with a fresh `rev`), so a push into the
//! repository between the step's reads and its commit makes it retry and
//! see the push. Candidates younger than the caller's grace are kept
//! (uploads and pushes in flight).

use crate::cf::Cf;
use crate::meta::{
    counter, dec, dec_manifest, key2, prefix2, remove_manifest, BlobRecord, LinkRecord, Meta,
    MetaError, REF_MANIFEST,
};
use crate::tx::Tx;

type Result<T> = std::result::Result<T, MetaError>;

/// A collection run, as recorded for the API (its report is the
/// collector's, kept as JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct GcRun {
    pub id: String,
    /// `None`: the instance.
    pub registry: Option<String>,
    pub delete_untagged: bool,
    pub dry_run: bool,
    /// `running`, `succeeded`, `failed`, `cancelled`.
    pub status: String,
    pub started_ms: u64,
    #[serde(default)]
    pub finished_ms: Option<u64>,
    #[serde(default)]
    pub report: Option<serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
    /// When the process running it last renewed its lease ([`GC_LEASE_MS`]);
    /// `None` in runs recorded before leases were renewed (they hold for
    /// [`GC_LOCK_TTL_MS`] from their start).
    #[serde(default)]
    pub renewed_ms: Option<u64>,
    /// Someone asked it to stop (through any replica); the process running
    /// it sees this when it next renews its lease.
    #[serde(default)]
    pub cancel_requested: bool,
}

/// What reaches a manifest ([`Meta::gc_reach`]).
#[derive(Debug, Clone, PartialEq)]
pub struct GcReach {
    pub size: u64,
    pub pushed_ms: u64,
    pub tagged: bool,
    /// Indexes of the repository that list it.
    pub parents: Vec<String>,
    /// The stored manifest it refers to (as a signature, an SBOM…).
    pub subject: Option<String>,
    /// The recycle bin needs it (a binned tag of it, a binned index
    /// listing it, its binned subject), counting only entries deleted at or
    /// after the `gc_reach` caller's bin cutoff.
    pub held: bool,
}

/// A page of collection candidates read outside a transaction
/// ([`Meta::gc_link_candidates`] and its kin).
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates<T> {
    /// Where the next page starts (`None`: this page was the last).
    pub next: Option<String>,
    /// Rows read.
    pub read: usize,
    /// Those that look collectable.
    pub items: Vec<T>,
}

impl<T> Candidates<T> {
    fn after<V>(page: &[(String, V)], n: usize) -> Candidates<T> {
        Candidates {
            next: (page.len() == n)
                .then(|| page.last().map(|(k, _)| k.clone()))
                .flatten(),
            read: page.len(),
            items: Vec::new(),
        }
    }
}

/// How long the lock of a run recorded without lease renewals
/// (`renewed_ms: None`, an older version's) holds without being finished.
pub const GC_LOCK_TTL_MS: u64 = 6 * 3600 * 1000;

/// How long a run's lock holds after its last renewal: a run whose process
/// died (a replica killed) gives its scope back this long after.
pub const GC_LEASE_MS: u64 = 60_000;

/// How often a running collection renews its lease ([`Meta::gc_renew`]).
pub const GC_RENEW_MS: u64 = 10_000;

/// Whether `active` still holds its scope at `now`.
fn holds(active: &GcRun, now: u64) -> bool {
    match active.renewed_ms {
        Some(r) => r + GC_LEASE_MS > now,
        None => active.started_ms + GC_LOCK_TTL_MS > now,
    }
}

/// What a lease renewal found ([`Meta::gc_renew`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Renewed; go on.
    Held,
    /// Renewed, and a cancel was asked for: stop.
    CancelRequested,
    /// The run no longer holds its scope (its lease ran out and another
    /// run took it): stop.
    Lost,
}

fn run_key(r: &GcRun) -> Vec<u8> {
    format!("r\0{:016x}{}", u64::MAX - r.started_ms, r.id).into_bytes()
}

fn active_key(registry: Option<&str>) -> Vec<u8> {
    format!("a\0{}", registry.unwrap_or("*")).into_bytes()
}

/// Whether the repository exists, read as the guard of everything in it.
fn guard(tx: &mut Tx<'_>, repo: &str) -> Result<bool> {
    Ok(tx.get(Cf::Repos, repo.as_bytes())?.is_some())
}

impl Meta {
    /// Delete manifest `digest` of `repo` if it was pushed before
    /// `pushed_before_ms` and nothing reaches it: no tag, no index of the
    /// repository listing it, no stored subject it refers to. Returns its
    /// size when deleted.
    pub fn gc_delete_untagged(
        &self,
        repo: &str,
        digest: &str,
        pushed_before_ms: u64,
        by: &str,
    ) -> Result<Option<u64>> {
        self.transact(|tx| {
            tx.no_sync();
            if !guard(tx, repo)? {
                return Ok(None);
            }
            let Some(v) = tx.get(Cf::Manifests, &key2(repo, digest))? else {
                return Ok(None);
            };
            let (rec, _) = dec_manifest(&v)?;
            if rec.pushed_ms >= pushed_before_ms
                || !tx
                    .scan(Cf::TagsByDigest, &prefix2(repo, digest), None, 1)?
                    .is_empty()
                || tx
                    .scan(Cf::Refs, &prefix2(repo, digest), None, usize::MAX)?
                    .iter()
                    .any(|(_, kind)| kind == REF_MANIFEST)
            {
                return Ok(None);
            }
            if let Some(subject) = &rec.subject {
                if tx.get(Cf::Manifests, &key2(repo, subject))?.is_some() {
                    return Ok(None);
                }
            }
            if crate::bin::holds(tx, repo, digest, rec.subject.as_deref(), 0)? {
                return Ok(None);
            }
            remove_manifest(tx, repo, digest, by, false)?;
            Ok(Some(rec.size))
        })
    }

    /// Remove `repo`'s link to `digest` if it was made before
    /// `linked_before_ms` and no manifest of the repository references the
    /// blob. Returns the link's size when removed.
    pub fn gc_unlink_unreferenced(
        &self,
        repo: &str,
        digest: &str,
        linked_before_ms: u64,
    ) -> Result<Option<u64>> {
        self.transact(|tx| {
            tx.no_sync();
            if !guard(tx, repo)? {
                return Ok(None);
            }
            let lk = key2(repo, digest);
            let Some(link) = tx.get_as::<LinkRecord>(Cf::Links, &lk)? else {
                return Ok(None);
            };
            if link.linked_ms >= linked_before_ms
                || !tx
                    .scan(Cf::Refs, &prefix2(repo, digest), None, 1)?
                    .is_empty()
            {
                return Ok(None);
            }
            crate::meta::drop_link(tx, repo, digest, link.size)?;
            Ok(Some(link.size))
        })
    }

    /// Remove the record of a blob no repository links, created before
    /// `created_before_ms`, provided nothing linked it since its generation
    /// was `generation`, and mark it as being deleted. Returns its size
    /// when removed: the caller deletes the bytes, then calls
    /// [`Meta::gc_blob_end`].
    pub fn gc_blob_begin(
        &self,
        digest: &str,
        generation: u64,
        created_before_ms: u64,
    ) -> Result<Option<u64>> {
        self.transact(|tx| {
            tx.no_sync();
            let Some(b) = tx.get_as::<BlobRecord>(Cf::Blobs, digest.as_bytes())? else {
                return Ok(None);
            };
            if b.generation != generation
                || b.created_ms >= created_before_ms
                || !tx
                    .scan(Cf::BlobRepos, &crate::meta::prefix1(digest), None, 1)?
                    .is_empty()
            {
                return Ok(None);
            }
            tx.delete(Cf::Blobs, digest.as_bytes());
            tx.add(Cf::Counters, counter::BLOBS, -1);
            tx.add(Cf::Counters, counter::BLOB_BYTES, -(b.size as i64));
            tx.put(
                Cf::Deleting,
                digest.as_bytes(),
                crate::now_millis().to_le_bytes().to_vec(),
            );
            Ok(Some(b.size))
        })
    }

    /// Mark blob bytes that no blob record owns (a crash between installing
    /// an upload's bytes and recording it, or an upload refused after its
    /// bytes landed) as being deleted, if still so: a record made
    /// meanwhile makes this retry and refuse; one made after waits for
    /// [`Meta::gc_blob_end`]. Returns whether the caller may delete them.
    pub fn gc_orphan_begin(&self, digest: &str) -> Result<bool> {
        self.transact(|tx| {
            tx.no_sync();
            if tx.get(Cf::Blobs, digest.as_bytes())?.is_some()
                || tx.get(Cf::Deleting, digest.as_bytes())?.is_some()
            {
                return Ok(false);
            }
            tx.put(
                Cf::Deleting,
                digest.as_bytes(),
                crate::now_millis().to_le_bytes().to_vec(),
            );
            Ok(true)
        })
    }

    /// Make every write so far durable (garbage collection's steps are
    /// not flushed one by one: see the module docs).
    pub fn flush(&self) -> Result<()> {
        Ok(self.kv().flush()?)
    }

    /// Whether garbage collection is deleting the bytes of `digest`.
    pub fn gc_is_deleting(&self, digest: &str) -> Result<bool> {
        Ok(self.kv().get(Cf::Deleting, digest.as_bytes())?.is_some())
    }

    /// The bytes of these blobs are gone: new uploads of them may be
    /// recorded again. One write for all, flushed (a marker brought back by
    /// a crash would refuse uploads of its digest until the next run).
    pub fn gc_blob_end(&self, digests: &[String]) -> Result<()> {
        self.transact(|tx| {
            for d in digests {
                tx.delete(Cf::Deleting, d.as_bytes());
            }
            Ok(())
        })
    }

    /// Blobs whose bytes a collection was deleting when it stopped (a crash
    /// between `gc_blob_begin` and `gc_blob_end`): the next run finishes
    /// them. In digest order, after `after`, at most `n`.
    pub fn gc_deleting(&self, after: Option<&str>, n: usize) -> Result<Vec<String>> {
        self.kv()
            .scan(Cf::Deleting, b"", after.map(str::as_bytes), n)?
            .into_iter()
            .map(|(k, _)| crate::meta::utf8(Cf::Deleting, k))
            .collect()
    }

    /// A page of `repo`'s manifests (after `after`, at most `n` read) that
    /// look collectable: pushed before `pushed_before_ms` and reached by no
    /// tag, index, stored subject or bin entry. Read outside any
    /// transaction, as a filter: [`Meta::gc_delete_untagged`] re-checks each
    /// in the transaction that deletes it. Returns the cursor of the next
    /// page (`None`: this was the last) and the candidates.
    pub fn gc_manifest_candidates(
        &self,
        repo: &str,
        after: Option<&str>,
        n: usize,
        pushed_before_ms: u64,
    ) -> Result<Candidates<String>> {
        let page = self.list_manifests(repo, "", after, n)?;
        let mut out = Candidates::after(&page, n);
        for (d, rec) in page {
            if rec.pushed_ms >= pushed_before_ms {
                continue;
            }
            let Some(x) = self.gc_reach(repo, &d, 0)? else {
                continue;
            };
            if !x.tagged && !x.held && x.parents.is_empty() && x.subject.is_none() {
                out.items.push(d);
            }
        }
        Ok(out)
    }

    /// A page of `repo`'s links (after `after`, at most `n` read) that look
    /// collectable: made before `linked_before_ms` and referenced by no
    /// manifest of the repository. A filter, re-checked by
    /// [`Meta::gc_unlink_unreferenced`]; returns the next page's cursor and
    /// the candidates.
    pub fn gc_link_candidates(
        &self,
        repo: &str,
        after: Option<&str>,
        n: usize,
        linked_before_ms: u64,
    ) -> Result<Candidates<String>> {
        let page = self.repo_links(repo, after, n)?;
        let mut out = Candidates::after(&page, n);
        for (d, link) in page {
            if link.linked_ms < linked_before_ms
                && self
                    .kv()
                    .scan(Cf::Refs, &prefix2(repo, &d), None, 1)?
                    .is_empty()
            {
                out.items.push(d);
            }
        }
        Ok(out)
    }

    /// A page of blob records (after `after`, at most `n` read) that look
    /// collectable: created before `created_before_ms` and linked by no
    /// repository. A filter, re-checked by [`Meta::gc_blob_begin`] (given
    /// the generation returned with each); returns the next page's cursor
    /// and the candidates.
    pub fn gc_blob_candidates(
        &self,
        after: Option<&str>,
        n: usize,
        created_before_ms: u64,
    ) -> Result<Candidates<(String, u64)>> {
        let page = self.list_blobs(after, n)?;
        let mut out = Candidates::after(&page, n);
        for (d, b) in page {
            if b.created_ms < created_before_ms
                && self
                    .kv()
                    .scan(Cf::BlobRepos, &crate::meta::prefix1(&d), None, 1)?
                    .is_empty()
            {
                out.items.push((d, b.generation));
            }
        }
        Ok(out)
    }

    /// What reaches manifest `digest` of `repo` (for an estimate): its
    /// size and push time, whether a tag points at it, the indexes of the
    /// repository listing it, and the subject it refers to if that is
    /// stored, and whether a bin entry deleted at or after `bin_after_ms`
    /// needs it. `None`: no such manifest.
    pub fn gc_reach(&self, repo: &str, digest: &str, bin_after_ms: u64) -> Result<Option<GcReach>> {
        let Some(v) = self.kv().get(Cf::Manifests, &key2(repo, digest))? else {
            return Ok(None);
        };
        let (rec, _) = dec_manifest(&v)?;
        let tagged = !self
            .kv()
            .scan(Cf::TagsByDigest, &prefix2(repo, digest), None, 1)?
            .is_empty();
        let mut parents = Vec::new();
        for (k, kind) in self
            .kv()
            .scan(Cf::Refs, &prefix2(repo, digest), None, usize::MAX)?
        {
            if kind == REF_MANIFEST {
                parents.push(crate::meta::last_component(Cf::Refs, &k)?);
            }
        }
        let subject = match &rec.subject {
            Some(s) if self.kv().get(Cf::Manifests, &key2(repo, s))?.is_some() => Some(s.clone()),
            _ => None,
        };
        let held = crate::bin::holds(
            &mut self.kv(),
            repo,
            digest,
            rec.subject.as_deref(),
            bin_after_ms,
        )?;
        Ok(Some(GcReach {
            size: rec.size,
            pushed_ms: rec.pushed_ms,
            tagged,
            parents,
            subject,
            held,
        }))
    }

    /// Manifests of `repo` that reference `target` (as a config, a layer or
    /// an index child), in digest order, at most `n`, each with whether it
    /// is in the recycle bin (a binned manifest keeps what it references
    /// until the bin lets it go).
    pub fn references_to(&self, repo: &str, target: &str, n: usize) -> Result<Vec<(String, bool)>> {
        self.kv()
            .scan(Cf::Refs, &prefix2(repo, target), None, n)?
            .iter()
            .map(|(k, kind)| {
                let binned = kind == crate::meta::REF_BLOB_BINNED
                    || kind == crate::meta::REF_MANIFEST_BINNED;
                Ok((crate::meta::last_component(Cf::Refs, k)?, binned))
            })
            .collect()
    }

    /// A blob's record by its digest's text.
    pub fn blob_by_str(&self, digest: &str) -> Result<Option<BlobRecord>> {
        self.get(Cf::Blobs, digest.as_bytes())
    }

    /// A repository's links in digest order, after `after`, at most `n`.
    pub fn repo_links(
        &self,
        repo: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, LinkRecord)>> {
        let p = crate::meta::prefix1(repo);
        let after = after.map(|a| key2(repo, a));
        self.kv()
            .scan(Cf::Links, &p, after.as_deref(), n)?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    crate::meta::utf8(Cf::Links, k[p.len()..].to_vec())?,
                    dec(Cf::Links, &v)?,
                ))
            })
            .collect()
    }

    /// Blob records in digest order, after `after`, at most `n`.
    pub fn list_blobs(&self, after: Option<&str>, n: usize) -> Result<Vec<(String, BlobRecord)>> {
        self.kv()
            .scan(Cf::Blobs, b"", after.map(str::as_bytes), n)?
            .into_iter()
            .map(|(k, v)| Ok((crate::meta::utf8(Cf::Blobs, k)?, dec(Cf::Blobs, &v)?)))
            .collect()
    }

    /// Links of every repository, in (repository, digest) order, after the
    /// key `after` (`repo \0 digest`), at most `n`: (repository, digest,
    /// record).
    pub fn list_links(
        &self,
        after: Option<(&str, &str)>,
        n: usize,
    ) -> Result<Vec<(String, String, LinkRecord)>> {
        let after = after.map(|(r, d)| key2(r, d));
        self.kv()
            .scan(Cf::Links, b"", after.as_deref(), n)?
            .into_iter()
            .map(|(k, v)| {
                let s = crate::meta::utf8(Cf::Links, k)?;
                let (r, d) = s.split_once('\0').ok_or_else(|| MetaError::Corrupt {
                    cf: Cf::Links.name(),
                    reason: "a key without a separator".into(),
                })?;
                Ok((r.to_string(), d.to_string(), dec(Cf::Links, &v)?))
            })
            .collect()
    }
}

impl Meta {
    /// Record a new run as running, unless its scope has one running
    /// (checked and written in one transaction: of two starts, one wins).
    /// An instance run and registry runs do not exclude each other.
    /// Returns the running one when refused.
    pub fn gc_start(&self, run: &GcRun) -> Result<std::result::Result<(), GcRun>> {
        self.transact(|tx| {
            let ak = active_key(run.registry.as_deref());
            if let Some(active) = tx.get_as::<GcRun>(Cf::GcRuns, &ak)? {
                if holds(&active, crate::now_millis()) {
                    return Ok(Err(active));
                }
            }
            tx.put_as(Cf::GcRuns, ak, run);
            tx.put_as(Cf::GcRuns, run_key(run), run);
            Ok(Ok(()))
        })
    }

    /// Renew `run`'s lease on its scope, and learn whether it was asked
    /// to stop. One transaction with the check that it still holds it.
    pub fn gc_renew(&self, run: &GcRun) -> Result<Lease> {
        self.transact(|tx| {
            let ak = active_key(run.registry.as_deref());
            match tx.get_as::<GcRun>(Cf::GcRuns, &ak)? {
                Some(mut a) if a.id == run.id => {
                    a.renewed_ms = Some(crate::now_millis());
                    let out = if a.cancel_requested {
                        Lease::CancelRequested
                    } else {
                        Lease::Held
                    };
                    tx.put_as(Cf::GcRuns, ak, &a);
                    Ok(out)
                }
                _ => Ok(Lease::Lost),
            }
        })
    }

    /// Ask the running run `id` to stop, whichever process runs it (it
    /// sees the request at its next renewal). The run, when it is running.
    pub fn gc_request_cancel(&self, id: &str) -> Result<Option<GcRun>> {
        let active = self.kv().scan(Cf::GcRuns, b"a\0", None, usize::MAX)?;
        for (k, v) in active {
            let r: GcRun = dec(Cf::GcRuns, &v)?;
            if r.id != id {
                continue;
            }
            return self.transact(|tx| match tx.get_as::<GcRun>(Cf::GcRuns, &k)? {
                Some(mut a) if a.id == id => {
                    a.cancel_requested = true;
                    tx.put_as(Cf::GcRuns, k.clone(), &a);
                    Ok(Some(a))
                }
                _ => Ok(None),
            });
        }
        Ok(None)
    }

    /// Record how a run ended and give its scope back.
    pub fn gc_finish(&self, run: &GcRun) -> Result<()> {
        self.transact(|tx| {
            let ak = active_key(run.registry.as_deref());
            if tx
                .get_as::<GcRun>(Cf::GcRuns, &ak)?
                .is_some_and(|a| a.id == run.id)
            {
                tx.delete(Cf::GcRuns, ak);
            }
            tx.put_as(Cf::GcRuns, run_key(run), run);
            Ok(())
        })
    }

    /// Runs, newest first, after the cursor `after` (a run id of the
    /// previous page, with its start: `{started_ms}-{id}`), at most `n`.
    pub fn gc_runs(&self, after: Option<&str>, n: usize) -> Result<Vec<GcRun>> {
        let start = after.and_then(|c| {
            let (ms, id) = c.split_once('-')?;
            let ms: u64 = ms.parse().ok()?;
            Some(format!("r\0{:016x}{id}", u64::MAX - ms).into_bytes())
        });
        self.kv()
            .scan(Cf::GcRuns, b"r\0", start.as_deref(), n)?
            .into_iter()
            .map(|(_, v)| dec(Cf::GcRuns, &v))
            .collect()
    }

    /// One run by id (a scan of the newest runs: ids are random).
    pub fn gc_run(&self, id: &str) -> Result<Option<GcRun>> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = self.kv().scan(Cf::GcRuns, b"r\0", after.as_deref(), 1000)?;
            let Some((last, _)) = rows.last() else {
                return Ok(None);
            };
            after = Some(last.clone());
            for (k, v) in &rows {
                if k.ends_with(id.as_bytes()) {
                    let r: GcRun = dec(Cf::GcRuns, v)?;
                    if r.id == id {
                        return Ok(Some(r));
                    }
                }
            }
        }
    }
}
