//! Online garbage collection: walk the metadata store and apply its
//! transactional steps (`berth-meta/src/gc.rs`), then delete the bytes of
//! the blobs they removed. Nothing is paused: each step re-checks its
//! candidate in the transaction that deletes it, and candidates younger
//! than the grace are kept, so pushes and pulls go on during a run.
//!
//! Phases: (0) recycle-bin entries older than the bin's retention go for
//! good (their manifests' bytes, and links only they kept); (1) with
//! `delete_untagged`, manifests nothing reaches (repeated
//! while a pass deletes some: an index's children become unreachable with
//! it); (2) links no manifest references; (3) for the instance, blobs no
//! repository links — their records, then their bytes (a marker keeps a
//! new upload of the digest waiting meanwhile; markers a crash left are
//! finished first). A registry-scoped run deletes the bytes only of blobs
//! its own unlinking left unlinked everywhere.
//!
//! Cleanup policies (`cleanup.rs`) and the upload reaper (`uploads.rs`)
//! live here too. No HTTP here: the server schedules runs and the
//! management API starts and reports them.

pub mod cleanup;
pub mod uploads;
mod worker;

pub use cleanup::{Cleaner, CleanupReport, Doomed};
pub use uploads::{reap_uploads, ReapError, Reaped};

use berth_core::Digest;
use berth_meta::{Meta, MetaError};
use berth_storage::BlobStore;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// What a run does.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this registry's repositories (`None`: the instance).
    pub registry: Option<String>,
    /// Delete manifests no tag, index or stored subject reaches.
    pub delete_untagged: bool,
    /// Count what would go; delete nothing.
    pub dry_run: bool,
    /// Keep what was pushed, linked or created less than this long ago.
    pub grace_ms: u64,
}

/// What a run did (or, dry, would do). Shown as is by the management API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GcReport)]
pub struct Report {
    pub manifests_deleted: u64,
    pub manifest_bytes: u64,
    /// Recycle-bin entries whose retention ended (manifests and tags).
    #[serde(default)]
    pub bin_expired: u64,
    /// Bytes of the manifests among them.
    #[serde(default)]
    pub bin_bytes: u64,
    pub links_removed: u64,
    pub blobs_deleted: u64,
    /// Bytes of the deleted blobs: what the object store got back.
    pub bytes_freed: u64,
    /// Blob files no record owned (left by a crash between storing an
    /// upload's bytes and recording it), deleted in instance runs.
    #[serde(default)]
    pub orphans_deleted: u64,
    #[serde(default)]
    pub orphan_bytes: u64,
    /// Items a step could not settle (left for the next run).
    pub errors: Vec<String>,
}

/// Where a run is, for the API to show while it runs; and its cancel flag.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    seen: AtomicU64,
    cancelled: AtomicBool,
}

/// The phase names, in order.
pub const PHASES: [&str; 6] = ["starting", "bin", "manifests", "links", "blobs", "orphans"];

impl Progress {
    pub fn phase(&self) -> &'static str {
        PHASES[(self.phase.load(Ordering::Relaxed) as usize).min(PHASES.len() - 1)]
    }

    /// Candidates looked at so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Ask the run to stop at its next page of candidates.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn enter(&self, phase: usize) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn saw(&self) {
        self.saw_n(1);
    }

    fn saw_n(&self, n: usize) {
        self.seen.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// How a run ended.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cancelled")]
    Cancelled(Report),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// Rows read per page of every walk.
const PAGE: usize = 1000;
/// Most passes over the manifests (each deletes what the last one freed).
const MAX_PASSES: usize = 8;

/// The collector over one metadata store and blob store. Cheap to clone.
#[derive(Clone)]
pub struct Collector {
    meta: Meta,
    blobs: Arc<BlobStore>,
}

impl Collector {
    pub fn new(meta: Meta, blobs: Arc<BlobStore>) -> Collector {
        Collector { meta, blobs }
    }

    /// Start a run with `o` in the background, recorded in the metadata
    /// store: refused (with the running one) while its scope has a run;
    /// otherwise the new run's record and its progress. `started` is called
    /// with both before the run begins, `ended` with the final record once
    /// it is written (a replica's view of its live runs, kept there).
    pub async fn launch(
        &self,
        o: Options,
        started: impl FnOnce(&berth_meta::GcRun, &Arc<Progress>),
        ended: impl FnOnce(&berth_meta::GcRun) + Send + 'static,
    ) -> Result<Result<(berth_meta::GcRun, Arc<Progress>), berth_meta::GcRun>, MetaError> {
        let run = berth_meta::GcRun {
            id: uuid::Uuid::new_v4().simple().to_string(),
            registry: o.registry.clone(),
            delete_untagged: o.delete_untagged,
            dry_run: o.dry_run,
            status: "running".into(),
            started_ms: berth_meta::now_millis(),
            finished_ms: None,
            report: None,
            error: None,
            renewed_ms: None,
            cancel_requested: false,
        };
        let run = berth_meta::GcRun {
            renewed_ms: Some(run.started_ms),
            ..run
        };
        let r = run.clone();
        if let Err(active) = worker::run(&self.meta, move |m| m.gc_start(&r)).await? {
            return Ok(Err(active));
        }
        let progress = Arc::new(Progress::default());
        started(&run, &progress);
        let (me, p, mut done) = (self.clone(), progress.clone(), run.clone());
        // the lease: renewed while the run goes on, so that a replica that
        // dies mid-run gives the scope back (berth_meta::GC_LEASE_MS); a
        // cancel asked through another replica arrives with a renewal
        let renewing = {
            let (me, p, run) = (self.clone(), progress.clone(), run.clone());
            tokio::spawn(async move {
                let every = std::time::Duration::from_millis(berth_meta::GC_RENEW_MS);
                loop {
                    tokio::time::sleep(every).await;
                    let r = run.clone();
                    match worker::run(&me.meta, move |m| m.gc_renew(&r)).await {
                        Ok(berth_meta::Lease::Held) => {}
                        Ok(lease) => {
                            tracing::info!(run = %run.id, ?lease, "garbage collection stops");
                            p.cancel();
                        }
                        // a renewal that failed is tried again; the
                        // lease outlives a few
                        Err(e) => tracing::warn!(run = %run.id, error = %e, "GC lease not renewed"),
                    }
                }
            })
        };
        tokio::spawn(async move {
            let out = me.run(&o, &p).await;
            renewing.abort();
            done.finished_ms = Some(berth_meta::now_millis());
            match out {
                Ok(r) => {
                    done.status = "succeeded".into();
                    done.report = serde_json::to_value(&r).ok();
                }
                Err(GcError::Cancelled(r)) => {
                    done.status = "cancelled".into();
                    done.report = serde_json::to_value(&r).ok();
                }
                Err(GcError::Meta(e)) => {
                    done.status = "failed".into();
                    done.error = Some(e.to_string());
                }
            }
            tracing::info!(run = %done.id, status = %done.status, "garbage collection ended");
            let d = done.clone();
            if let Err(e) = worker::run(&me.meta, move |m| m.gc_finish(&d)).await {
                tracing::error!(run = %done.id, error = %e, "garbage collection record not written");
            }
            ended(&done);
        });
        Ok(Ok((run, progress)))
    }

    /// One run with `o`, reporting into `p` (a dry run is [`Collector::estimate`]).
    pub async fn run(&self, o: &Options, p: &Progress) -> Result<Report, GcError> {
        if o.dry_run {
            return self.estimate(o, p).await;
        }
        let cutoff = berth_meta::now_millis().saturating_sub(o.grace_ms);
        let mut r = Report::default();
        let prefix = o
            .registry
            .as_ref()
            .map(|g| format!("{g}/"))
            .unwrap_or_default();
        let repos = self.repos(&prefix).await?;
        p.enter(1);
        // a registry's run deletes the blobs its own unlinking freed (an
        // instance run looks at every blob instead)
        let mut unlinked: Option<Vec<String>> = o.registry.is_some().then(Vec::new);
        let bin_cutoff = self.bin_cutoff();
        for repo in &repos {
            self.expire_bin(repo, bin_cutoff, cutoff, p, &mut r, &mut unlinked)
                .await?;
        }
        if o.delete_untagged {
            p.enter(2);
            for _ in 0..MAX_PASSES {
                let before = r.manifests_deleted;
                for repo in &repos {
                    self.manifests(repo, cutoff, p, &mut r).await?;
                }
                if r.manifests_deleted == before {
                    break;
                }
            }
        }
        p.enter(3);
        for repo in &repos {
            self.links(repo, cutoff, p, &mut r, &mut unlinked).await?;
        }
        p.enter(4);
        if o.registry.is_none() {
            self.finish_deleting(&mut r).await?;
        }
        self.blobs_phase(o, unlinked, cutoff, p, &mut r).await?;
        if o.registry.is_none() {
            p.enter(5);
            self.orphans(cutoff, false, p, &mut r).await?;
        }
        Ok(r)
    }

    /// The blob phase: for the instance every blob record, for a registry
    /// the blobs its unlinking left (`unlinked`); each page's unlinked ones
    /// removed (re-checked in their transactions), then their bytes. One
    /// page at a time: deleting the bytes beside the next page's records
    /// was barely faster and cost concurrent pushes a third of their
    /// throughput (docs/performance.md).
    async fn blobs_phase(
        &self,
        o: &Options,
        unlinked: Option<Vec<String>>,
        cutoff: u64,
        p: &Progress,
        r: &mut Report,
    ) -> Result<(), GcError> {
        let mut scoped = unlinked.unwrap_or_default();
        scoped.sort();
        scoped.dedup();
        let mut chunks = scoped.chunks(PAGE);
        let mut after: Option<String> = None;
        loop {
            check(p, r)?;
            let (page, last) = if o.registry.is_none() {
                let a = after.take();
                let c = worker::run(&self.meta, move |m| {
                    m.gc_blob_candidates(a.as_deref(), PAGE, cutoff)
                })
                .await?;
                p.saw_n(c.read);
                after = c.next.clone();
                (c.items, c.next.is_none())
            } else {
                let Some(chunk) = chunks.next() else { break };
                p.saw_n(chunk.len());
                let ds = chunk.to_vec();
                let found = worker::run(&self.meta, move |m| {
                    let mut out = Vec::new();
                    for d in ds {
                        if let Some(b) = m.blob_by_str(&d)? {
                            out.push((d, b.generation));
                        }
                    }
                    Ok(out)
                })
                .await?;
                (found, false)
            };
            let begun = self.begin_blobs(page, cutoff, r).await?;
            for (_, size) in self.delete_all(begun, r).await {
                r.blobs_deleted += 1;
                r.bytes_freed += size;
            }
            if last {
                break;
            }
        }
        Ok(())
    }

    /// What a run with `o` would delete, computed without deleting: the
    /// manifests no tag or young manifest reaches (through index children
    /// and referrers' subjects), the links only those reference, the blobs
    /// only such links hold. Equal to what the run frees if nothing is
    /// pushed or deleted between the two.
    pub async fn estimate(&self, o: &Options, p: &Progress) -> Result<Report, GcError> {
        use std::collections::{HashMap, HashSet};
        let cutoff = berth_meta::now_millis().saturating_sub(o.grace_ms);
        let mut r = Report::default();
        let prefix = o
            .registry
            .as_ref()
            .map(|g| format!("{g}/"))
            .unwrap_or_default();
        let repos = self.repos(&prefix).await?;
        let mut doomed: HashSet<(String, String)> = HashSet::new();
        p.enter(1);
        let bin_cutoff = self.bin_cutoff();
        for repo in &repos {
            for e in self.bin_entries(repo).await? {
                if e.deleted_ms() >= bin_cutoff {
                    continue;
                }
                p.saw();
                r.bin_expired += 1;
                if let berth_meta::BinEntry::Manifest { digest, entry, .. } = e {
                    r.bin_bytes += entry.record.size;
                    doomed.insert((repo.clone(), digest));
                }
            }
        }
        if o.delete_untagged {
            p.enter(2);
            for repo in &repos {
                let rp = repo.clone();
                let reach = worker::run(&self.meta, move |m| {
                    let mut out = HashMap::new();
                    let mut after: Option<String> = None;
                    loop {
                        let page = m.list_manifests(&rp, "", after.as_deref(), PAGE)?;
                        let Some((last, _)) = page.last() else { break };
                        after = Some(last.clone());
                        for (d, _) in page {
                            if let Some(x) = m.gc_reach(&rp, &d, bin_cutoff)? {
                                out.insert(d, x);
                            }
                        }
                    }
                    Ok(out)
                })
                .await?;
                // kept: tagged or young, and what kept manifests reach
                // (their children; the referrers of a kept subject)
                let mut kept: HashSet<&str> = reach
                    .iter()
                    .filter(|(_, x)| x.tagged || x.held || x.pushed_ms >= cutoff)
                    .map(|(d, _)| d.as_str())
                    .collect();
                loop {
                    let more: Vec<&str> = reach
                        .iter()
                        .filter(|(d, _)| !kept.contains(d.as_str()))
                        .filter(|(_, x)| {
                            x.parents.iter().any(|q| kept.contains(q.as_str()))
                                || x.subject.as_deref().is_some_and(|s| kept.contains(s))
                        })
                        .map(|(d, _)| d.as_str())
                        .collect();
                    if more.is_empty() {
                        break;
                    }
                    kept.extend(more);
                }
                for (d, x) in &reach {
                    p.saw();
                    if !kept.contains(d.as_str()) {
                        r.manifests_deleted += 1;
                        r.manifest_bytes += x.size;
                        doomed.insert((repo.clone(), d.clone()));
                    }
                }
            }
        }
        p.enter(3);
        let doomed = Arc::new(doomed);
        let mut gone_links: HashSet<(String, String)> = HashSet::new();
        for repo in &repos {
            let (rp, dm) = (repo.clone(), doomed.clone());
            let gone = worker::run(&self.meta, move |m| {
                let mut out = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = m.repo_links(&rp, after.as_deref(), PAGE)?;
                    let Some((last, _)) = page.last() else { break };
                    after = Some(last.clone());
                    for (d, l) in page {
                        if l.linked_ms >= cutoff {
                            continue;
                        }
                        let dg = Digest::parse(&d).map_err(|e| MetaError::Corrupt {
                            cf: "links",
                            reason: e.to_string(),
                        })?;
                        let users = m.referenced_by(&rp, &dg, usize::MAX)?;
                        if users.iter().all(|u| dm.contains(&(rp.clone(), u.clone()))) {
                            out.push(d);
                        }
                    }
                }
                Ok(out)
            })
            .await?;
            for d in gone {
                p.saw();
                r.links_removed += 1;
                gone_links.insert((repo.clone(), d));
            }
        }
        p.enter(4);
        let gone_links = Arc::new(gone_links);
        let count = |r: &mut Report, (read, freed): (usize, Vec<u64>)| {
            p.saw_n(read);
            r.blobs_deleted += freed.len() as u64;
            r.bytes_freed += freed.iter().sum::<u64>();
        };
        if o.registry.is_none() {
            // every blob record
            let mut after: Option<String> = None;
            loop {
                check(p, &r)?;
                let (a, gl) = (after.take(), gone_links.clone());
                let (page, last) = worker::run(&self.meta, move |m| {
                    let page = m.list_blobs(a.as_deref(), PAGE)?;
                    let last = page.last().map(|(d, _)| d.clone());
                    Ok((freed_with(m, page, &gl, cutoff)?, last))
                })
                .await?;
                let full = page.0 == PAGE;
                count(&mut r, page);
                match last {
                    Some(l) if full => after = Some(l),
                    _ => break,
                }
            }
        } else {
            // the blobs its unlinking would leave
            let mut ds: Vec<String> = gone_links.iter().map(|(_, d)| d.clone()).collect();
            ds.sort();
            ds.dedup();
            for chunk in ds.chunks(PAGE) {
                check(p, &r)?;
                let (chunk, gl) = (chunk.to_vec(), gone_links.clone());
                let page = worker::run(&self.meta, move |m| {
                    let mut page = Vec::new();
                    for d in chunk {
                        if let Some(b) = m.blob_by_str(&d)? {
                            page.push((d, b));
                        }
                    }
                    freed_with(m, page, &gl, cutoff)
                })
                .await?;
                count(&mut r, page);
            }
        }
        if o.registry.is_none() {
            p.enter(5);
            self.orphans(cutoff, true, p, &mut r).await?;
        }
        Ok(r)
    }

    /// Blob files older than `cutoff` that no blob record (and no deletion
    /// in progress) owns: deleted, or with `dry` only counted. The listing
    /// is streamed and checked a page at a time.
    async fn orphans(
        &self,
        cutoff: u64,
        dry: bool,
        p: &Progress,
        r: &mut Report,
    ) -> Result<(), GcError> {
        use futures::StreamExt;
        let mut objects = self.blobs.list_blob_objects();
        let mut page = Vec::new();
        // listing a page stats its files: paced like deletes
        let mut mark = worker::Mark::now(&self.blobs);
        loop {
            let next = objects.next().await;
            match &next {
                Some(Ok((d, modified, size))) if *modified < cutoff => {
                    page.push((d.to_string(), *size))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    r.errors.push(format!("listing blob files: {e}"));
                    return Ok(());
                }
                None => {}
            }
            if page.len() < PAGE && next.is_some() {
                continue;
            }
            check(p, r)?;
            std::mem::replace(&mut mark, worker::Mark::now(&self.blobs))
                .give_way(&self.blobs)
                .await;
            let candidates = std::mem::take(&mut page);
            let unowned = worker::run(&self.meta, move |m| {
                let mut out = Vec::new();
                for (d, size) in candidates {
                    if m.blob_by_str(&d)?.is_some() || m.gc_is_deleting(&d)? {
                        continue;
                    }
                    // marked for deletion, re-checked in its transaction
                    if dry || m.gc_orphan_begin(&d)? {
                        out.push((d, size));
                    }
                }
                Ok(out)
            })
            .await?;
            p.saw_n(unowned.len());
            let gone = if dry {
                unowned
            } else {
                self.delete_all(unowned, r).await
            };
            for (_, size) in gone {
                r.orphans_deleted += 1;
                r.orphan_bytes += size;
            }
            if next.is_none() {
                return Ok(());
            }
            mark = worker::Mark::now(&self.blobs);
        }
    }

    /// Bin entries deleted before this have had their retention.
    fn bin_cutoff(&self) -> u64 {
        berth_meta::now_millis().saturating_sub(self.meta.recycle_bin_ms())
    }

    /// Every bin entry of a repository.
    async fn bin_entries(&self, repo: &str) -> Result<Vec<berth_meta::BinEntry>, GcError> {
        let prefix = berth_meta::repo_bin_prefix(repo);
        let mut out = Vec::new();
        loop {
            let (pre, after) = (prefix.clone(), out.last().map(berth_meta::BinEntry::key));
            let page = worker::run(&self.meta, move |m| {
                m.list_bin(&pre, after.as_deref(), PAGE)
            })
            .await?;
            if page.is_empty() {
                break;
            }
            out.extend(page);
        }
        Ok(out)
    }

    /// Purge a repository's bin entries deleted before `bin_cutoff`.
    async fn expire_bin(
        &self,
        repo: &str,
        bin_cutoff: u64,
        cutoff: u64,
        p: &Progress,
        r: &mut Report,
        unlinked: &mut Option<Vec<String>>,
    ) -> Result<(), GcError> {
        for e in self.bin_entries(repo).await? {
            if e.deleted_ms() >= bin_cutoff {
                continue;
            }
            check(p, r)?;
            p.saw();
            let key = e.key();
            match worker::run(&self.meta, move |m| m.purge(&key, Some(bin_cutoff), cutoff)).await {
                Ok(Some(purged)) => {
                    r.bin_expired += 1;
                    r.bin_bytes += purged.manifest_bytes;
                    r.links_removed += purged.links.len() as u64;
                    if let Some(u) = unlinked.as_mut() {
                        u.extend(purged.links.into_iter().map(|(d, _)| d));
                    }
                }
                Ok(None) => {}
                Err(e) => r.errors.push(format!("bin {repo}: {e}")),
            }
        }
        Ok(())
    }

    async fn repos(&self, prefix: &str) -> Result<Vec<String>, GcError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let (pre, a) = (prefix.to_string(), after.clone());
            let page = worker::run(&self.meta, move |m| {
                m.list_repos_with_prefix(&pre, a.as_deref(), PAGE)
            })
            .await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            out.extend(page.into_iter().map(|(n, _)| n));
        }
        Ok(out)
    }

    /// Walk pages of candidates: `list` reads a page after the cursor
    /// (outside a transaction: a filter) and `settle` re-checks and
    /// deletes each candidate in its own transaction, both in one blocking
    /// call per page; `done` gets each candidate with its outcome.
    async fn walk<C, T>(
        &self,
        p: &Progress,
        r: &mut Report,
        list: impl Fn(&Meta, Option<&str>) -> Result<berth_meta::Candidates<C>, MetaError>
            + Send
            + Sync
            + 'static,
        settle: impl Fn(&Meta, &C) -> Result<Option<T>, MetaError> + Send + Sync + 'static,
        mut done: impl FnMut(&mut Report, C, Result<Option<T>, String>),
    ) -> Result<(), GcError>
    where
        C: Send + 'static,
        T: Send + 'static,
    {
        let (list, settle) = (Arc::new(list), Arc::new(settle));
        let mut after: Option<String> = None;
        loop {
            check(p, r)?;
            let (l, st, a) = (list.clone(), settle.clone(), after.take());
            let (next, read, out) = worker::run(&self.meta, move |m| {
                let c = l(m, a.as_deref())?;
                let out: Vec<_> = c
                    .items
                    .into_iter()
                    .map(|x| {
                        let o = st(m, &x).map_err(|e| e.to_string());
                        (x, o)
                    })
                    .collect();
                Ok((c.next, c.read, out))
            })
            .await?;
            p.saw_n(read);
            for (x, o) in out {
                done(r, x, o);
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(()),
            }
        }
    }

    async fn manifests(
        &self,
        repo: &str,
        cutoff: u64,
        p: &Progress,
        r: &mut Report,
    ) -> Result<(), GcError> {
        let (rp, rs) = (repo.to_string(), repo.to_string());
        self.walk(
            p,
            r,
            move |m, a| m.gc_manifest_candidates(&rp, a, PAGE, cutoff),
            move |m, d| m.gc_delete_untagged(&rs, d, cutoff, "gc"),
            |r, _, o| match o {
                Ok(Some(size)) => {
                    r.manifests_deleted += 1;
                    r.manifest_bytes += size;
                }
                Ok(None) => {}
                Err(e) => r.errors.push(format!("manifest {repo}: {e}")),
            },
        )
        .await
    }

    async fn links(
        &self,
        repo: &str,
        cutoff: u64,
        p: &Progress,
        r: &mut Report,
        unlinked: &mut Option<Vec<String>>,
    ) -> Result<(), GcError> {
        let (rp, rs) = (repo.to_string(), repo.to_string());
        self.walk(
            p,
            r,
            move |m, a| m.gc_link_candidates(&rp, a, PAGE, cutoff),
            move |m, d| m.gc_unlink_unreferenced(&rs, d, cutoff),
            |r, d, o| match o {
                Ok(Some(_)) => {
                    r.links_removed += 1;
                    if let Some(u) = unlinked.as_mut() {
                        u.push(d);
                    }
                }
                Ok(None) => {}
                Err(e) => r.errors.push(format!("link {repo}@{d}: {e}")),
            },
        )
        .await
    }

    /// Remove the records of blobs no repository links, given with their
    /// generations (each re-checked in its transaction), leaving each
    /// marked as being deleted; those removed, with their sizes, for
    /// [`Collector::delete_all`].
    async fn begin_blobs(
        &self,
        candidates: Vec<(String, u64)>,
        cutoff: u64,
        r: &mut Report,
    ) -> Result<Vec<(String, u64)>, GcError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let begun = worker::run(&self.meta, move |m| {
            Ok(candidates
                .into_iter()
                .map(|(d, g)| {
                    let o = m.gc_blob_begin(&d, g, cutoff).map_err(|e| e.to_string());
                    (d, o)
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let mut doomed = Vec::new();
        for (d, o) in begun {
            match o {
                Ok(Some(size)) => doomed.push((d, size)),
                Ok(None) => {}
                Err(e) => r.errors.push(format!("blob {d}: {e}")),
            }
        }
        Ok(doomed)
    }

    /// Delete the bytes of blobs marked as being deleted (a page at a time,
    /// in paced steps: [`worker::paced`]), then lift the markers of those whose bytes went, in one write.
    /// Returns those; a failure is reported and its marker stays (the next
    /// run finishes it).
    async fn delete_all(&self, doomed: Vec<(String, u64)>, r: &mut Report) -> Vec<(String, u64)> {
        if doomed.is_empty() {
            return Vec::new();
        }
        // the steps that freed them were not flushed one by one
        if let Err(e) = worker::run(&self.meta, |m| m.flush()).await {
            r.errors.push(format!(
                "{} blobs kept: metadata not flushed: {e}",
                doomed.len()
            ));
            return Vec::new();
        }
        let mut digests = Vec::with_capacity(doomed.len());
        let mut named = Vec::with_capacity(doomed.len());
        for (d, size) in doomed {
            match Digest::parse(&d) {
                Ok(dg) => {
                    digests.push(dg);
                    named.push((d, size));
                }
                Err(e) => r.errors.push(format!("blob {d}: {e}")),
            }
        }
        // in steps, each followed by a pause if pushes went on meanwhile
        let mut outcomes = Vec::with_capacity(digests.len());
        let mut digests = digests.into_iter().peekable();
        while digests.peek().is_some() {
            let step: Vec<Digest> = digests.by_ref().take(worker::PACED_DELETES).collect();
            outcomes.extend(worker::paced(&self.blobs, self.blobs.delete_many(step)).await);
        }
        let outcomes: Vec<Result<(String, u64), String>> = named
            .into_iter()
            .zip(outcomes)
            .map(|((d, size), o)| match o {
                Ok(()) => Ok((d, size)),
                Err(e) => Err(format!("blob {d}: bytes not deleted: {e}")),
            })
            .collect();
        let mut gone = Vec::new();
        for o in outcomes {
            match o {
                Ok(x) => gone.push(x),
                Err(e) => r.errors.push(e),
            }
        }
        if gone.is_empty() {
            return gone;
        }
        let ds: Vec<String> = gone.iter().map(|(d, _)| d.clone()).collect();
        match worker::run(&self.meta, move |m| m.gc_blob_end(&ds)).await {
            Ok(()) => gone,
            Err(e) => {
                r.errors
                    .push(format!("{} blobs deleted, markers kept: {e}", gone.len()));
                Vec::new()
            }
        }
    }

    /// Blobs a stopped run was deleting: delete their bytes, lift markers.
    async fn finish_deleting(&self, r: &mut Report) -> Result<(), GcError> {
        loop {
            let page = worker::run(&self.meta, |m| m.gc_deleting(None, PAGE)).await?;
            if page.is_empty() {
                return Ok(());
            }
            let page = page.into_iter().map(|d| (d, 0)).collect();
            if self.delete_all(page, r).await.is_empty() {
                return Ok(()); // nothing moves: leave them for the next run
            }
        }
    }
}

/// Of a page of blob records, the sizes of those older than `cutoff`
/// whose every link is among `gone` (so an estimate frees them), with the
/// rows read.
fn freed_with(
    m: &Meta,
    page: Vec<(String, berth_meta::BlobRecord)>,
    gone: &std::collections::HashSet<(String, String)>,
    cutoff: u64,
) -> Result<(usize, Vec<u64>), MetaError> {
    let read = page.len();
    let mut freed = Vec::new();
    for (d, b) in page {
        let dg = Digest::parse(&d).map_err(|e| MetaError::Corrupt {
            cf: "blobs",
            reason: e.to_string(),
        })?;
        if b.created_ms < cutoff
            && m.blob_repos(&dg, None, usize::MAX)?
                .into_iter()
                .all(|rp| gone.contains(&(rp, d.clone())))
        {
            freed.push(b.size);
        }
    }
    Ok((read, freed))
}

fn check(p: &Progress, r: &Report) -> Result<(), GcError> {
    if p.is_cancelled() {
        Err(GcError::Cancelled(r.clone()))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_meta::{ManifestRecord, MemStore, PutManifest, Ref};
    use berth_storage::{SessionState, Then};

    async fn store_blob(blobs: &BlobStore, meta: &Meta, repo: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let id = format!("u-{}", &d.to_string()[7..19]);
        blobs.create_upload(&id).await.unwrap();
        let mut st = SessionState::default();
        let body = futures::stream::iter(vec![Ok::<_, String>(bytes::Bytes::from(data.to_vec()))]);
        let n = blobs
            .append(&id, &mut st, 0, body, Some(data.len() as u64), Then::Commit)
            .await
            .unwrap();
        blobs.commit(&id, &mut st, n, &d).await.unwrap();
        meta.link_blob(repo, &d, n).unwrap();
        d
    }

    fn put(
        meta: &Meta,
        repo: &str,
        name: &[u8],
        tags: &[&str],
        blobs: &[(&Digest, u64)],
    ) -> Digest {
        let d = Digest::sha256_of(name);
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        meta.put_manifest(PutManifest {
            repo,
            digest: &d,
            record: ManifestRecord {
                media_type: berth_core::media_types::OCI_MANIFEST.into(),
                size: name.len() as u64,
                artifact_type: None,
                subject: None,
                config_media_type: None,
                blobs: vec![],
                children: vec![],
                pushed_ms: 0,
                rev: 0,
            },
            body: name,
            tags: &tags,
            referrer: None,
            refs: blobs
                .iter()
                .map(|(d, size)| Ref::Blob {
                    digest: (*d).clone(),
                    size: *size,
                })
                .collect(),
            allow_missing: false,
            by: "test",
        })
        .unwrap()
        .unwrap();
        d
    }

    #[tokio::test]
    async fn collects_what_nothing_reaches_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(BlobStore::local(dir.path()).unwrap());
        let meta = Meta::new(MemStore::new());
        let kept = store_blob(&blobs, &meta, "g/app", b"kept layer").await;
        let loose = store_blob(&blobs, &meta, "g/app", b"loose layer").await;
        let shared = store_blob(&blobs, &meta, "g/app", b"shared layer").await;
        meta.link_blob("h/app", &shared, 12).unwrap();
        put(&meta, "h/app", b"in h", &["v1"], &[(&shared, 12)]);
        put(&meta, "g/app", b"tagged", &["v1"], &[(&kept, 10)]);
        let untagged = put(
            &meta,
            "g/app",
            b"untagged",
            &[],
            &[(&loose, 11), (&shared, 12)],
        );
        let gc = Collector::new(meta.clone(), blobs.clone());
        let p = Progress::default();
        // past the (zero) grace: older than the run's start
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;

        // dry: what would go; nothing goes
        let o = Options {
            delete_untagged: true,
            dry_run: true,
            ..Default::default()
        };
        let dry = gc.run(&o, &p).await.unwrap();
        assert_eq!((dry.manifests_deleted, dry.links_removed), (1, 2));
        assert!(meta.manifest_exists("g/app", &untagged).unwrap());

        let o = Options {
            delete_untagged: true,
            ..Default::default()
        };
        let r = gc.run(&o, &Progress::default()).await.unwrap();
        assert_eq!(r.errors, Vec::<String>::new());
        assert_eq!((r.manifests_deleted, r.manifest_bytes), (1, 8));
        // loose and shared unlinked from g/app; loose linked nowhere: gone
        assert_eq!(
            (r.links_removed, r.blobs_deleted, r.bytes_freed),
            (2, 1, 11)
        );
        assert_eq!(dry, r, "the estimate is what the run frees");
        assert!(!meta.manifest_exists("g/app", &untagged).unwrap());
        assert_eq!(blobs.stat(&loose).await.unwrap(), None, "bytes deleted");
        assert!(meta.blob(&loose).unwrap().is_none());
        assert_eq!(blobs.stat(&kept).await.unwrap(), Some(10));
        assert_eq!(
            blobs.stat(&shared).await.unwrap(),
            Some(12),
            "h/app links it"
        );
        assert!(meta.link("h/app", &shared).unwrap().is_some());
        assert!(meta.gc_deleting(None, 10).unwrap().is_empty());
        // a second run finds nothing
        let again = gc.run(&o, &Progress::default()).await.unwrap();
        assert_eq!(again, Report::default());
    }

    #[tokio::test]
    async fn grace_scope_and_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(BlobStore::local(dir.path()).unwrap());
        let meta = Meta::new(MemStore::new());
        let a = store_blob(&blobs, &meta, "ra/x", b"unreferenced in ra").await;
        let b = store_blob(&blobs, &meta, "rb/x", b"unreferenced in rb").await;
        let gc = Collector::new(meta.clone(), blobs.clone());
        // within the grace: kept
        let graced = Options {
            grace_ms: 3_600_000,
            ..Default::default()
        };
        assert_eq!(
            gc.run(&graced, &Progress::default()).await.unwrap(),
            Report::default()
        );
        // one registry's run leaves the other's alone (past the zero
        // grace first: older than the run's start, as the test above waits)
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let scoped = Options {
            registry: Some("ra".into()),
            ..Default::default()
        };
        let r = gc.run(&scoped, &Progress::default()).await.unwrap();
        assert_eq!((r.links_removed, r.blobs_deleted), (1, 1));
        assert_eq!(blobs.stat(&a).await.unwrap(), None);
        assert!(meta.link("rb/x", &b).unwrap().is_some());
        // a cancelled run stops
        let p = Progress::default();
        p.cancel();
        assert!(matches!(
            gc.run(&Options::default(), &p).await,
            Err(GcError::Cancelled(_))
        ));
        assert!(meta.link("rb/x", &b).unwrap().is_some());
    }
}
