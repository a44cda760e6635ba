//! A consistency check of a store no one is writing to (`berth check`, the
//! crash-cycle harness): every figure the transactions keep incrementally
//! is recounted from the records it summarises, and every index is checked
//! against the records it indexes. Each disagreement is one line.

use crate::cf::Cf;
use crate::meta::{counter, dec, dec_framed, registry_of, BlobRecord, LinkRecord, ManifestRecord};
use crate::{BinnedManifest, Meta, MetaError, TagRecord};

type Result<T> = std::result::Result<T, MetaError>;
use std::collections::{BTreeMap, BTreeSet};

/// Rows per scan while walking a column family.
const PAGE: usize = 10_000;

/// What the check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Rows read, by column family.
    pub rows: BTreeMap<&'static str, u64>,
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn text(k: &[u8]) -> String {
    String::from_utf8_lossy(k).into_owned()
}

/// `a \0 b` → (a, b).
fn split2(k: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(k).ok()?;
    let (a, b) = s.split_once('\0')?;
    Some((a.to_string(), b.to_string()))
}

impl Meta {
    /// Every row of `cf`, a page at a time; how many is recorded in `rows`.
    fn each_row(
        &self,
        cf: Cf,
        rows: &mut BTreeMap<&'static str, u64>,
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Result<()> {
        let mut after: Option<Vec<u8>> = None;
        let mut n = 0;
        loop {
            let page = self.kv().scan(cf, b"", after.as_deref(), PAGE)?;
            for (k, v) in &page {
                f(k, v);
            }
            n += page.len() as u64;
            match page.last() {
                Some((k, _)) if page.len() == PAGE => after = Some(k.clone()),
                _ => {
                    rows.insert(cf.name(), n);
                    return Ok(());
                }
            }
        }
    }

    /// Recount and cross-check the store. Run it when nothing writes (a
    /// stopped server's data directory): a write in between would show as
    /// a disagreement.
    pub fn check(&self) -> Result<CheckReport> {
        let mut r = CheckReport::default();
        let mut problems = Vec::new();
        let mut bad = |p: String| problems.push(p);

        // blobs stored: the instance counters
        let mut blobs: BTreeMap<String, u64> = BTreeMap::new();
        self.each_row(Cf::Blobs, &mut r.rows, |k, v| {
            match dec::<BlobRecord>(Cf::Blobs, v) {
                Ok(b) => {
                    blobs.insert(text(k), b.size);
                }
                Err(e) => bad(format!("blobs {}: {e}", text(k))),
            }
        })?;
        let (count, bytes) = (
            self.counter(counter::BLOBS)?,
            self.counter(counter::BLOB_BYTES)?,
        );
        if count != blobs.len() as i64 {
            bad(format!(
                "counter {}: {count}, but {} blob records",
                counter::BLOBS,
                blobs.len()
            ));
        }
        let sum: u64 = blobs.values().sum();
        if bytes != sum as i64 {
            bad(format!(
                "counter {}: {bytes}, but the blob records hold {sum}",
                counter::BLOB_BYTES
            ));
        }

        // links: each with its reverse row and its blob; the figures they make
        let mut links: BTreeSet<(String, String)> = BTreeSet::new();
        let mut repo_bytes: BTreeMap<String, i64> = BTreeMap::new();
        // (registry, digest) → (repositories linking it, size)
        let mut reg_links: BTreeMap<(String, String), (i64, u64)> = BTreeMap::new();
        self.each_row(Cf::Links, &mut r.rows, |k, v| {
            let Some((repo, digest)) = split2(k) else {
                return bad(format!("links: malformed key {:?}", text(k)));
            };
            let link = match dec::<LinkRecord>(Cf::Links, v) {
                Ok(l) => l,
                Err(e) => return bad(format!("links {repo} {digest}: {e}")),
            };
            match blobs.get(&digest) {
                None => bad(format!(
                    "link {repo} → {digest}: no blob record (dangling link)"
                )),
                Some(size) if *size != link.size => bad(format!(
                    "link {repo} → {digest}: size {} but the blob has {size}",
                    link.size
                )),
                Some(_) => {}
            }
            *repo_bytes.entry(repo.clone()).or_default() += link.size as i64;
            let e = reg_links
                .entry((registry_of(&repo).to_string(), digest.clone()))
                .or_insert((0, link.size));
            e.0 += 1;
            links.insert((repo, digest));
        })?;
        let mut reverse = 0u64;
        self.each_row(Cf::BlobRepos, &mut r.rows, |k, _| {
            let Some((digest, repo)) = split2(k) else {
                return bad(format!("blob_repos: malformed key {:?}", text(k)));
            };
            if links.contains(&(repo.clone(), digest.clone())) {
                reverse += 1;
            } else {
                bad(format!("blob_repos {digest} → {repo}: no such link"));
            }
        })?;
        if reverse != links.len() as u64 {
            bad(format!(
                "{} links but {reverse} of them have their blob_repos row",
                links.len()
            ));
        }
        let mut reg_rows: BTreeMap<(String, String), i64> = BTreeMap::new();
        self.each_row(Cf::RegistryBlobs, &mut r.rows, |k, v| match split2(k) {
            Some(key) => {
                reg_rows.insert(key, crate::kv::counter_value(Some(v)));
            }
            None => bad(format!("registry_blobs: malformed key {:?}", text(k))),
        })?;
        let mut reg_blob_bytes: BTreeMap<String, i64> = BTreeMap::new();
        for ((reg, digest), (count, size)) in &reg_links {
            let row = reg_rows.remove(&(reg.clone(), digest.clone())).unwrap_or(0);
            if row != *count {
                bad(format!(
                    "registry_blobs {reg} {digest}: {row}, but {count} repositories link it"
                ));
            }
            *reg_blob_bytes.entry(reg.clone()).or_default() += *size as i64;
        }
        for ((reg, digest), row) in reg_rows {
            bad(format!(
                "registry_blobs {reg} {digest}: {row}, but nothing links it"
            ));
        }

        // manifests, tags and the bin: what their counters say
        let mut manifests: BTreeSet<(String, String)> = BTreeSet::new();
        let mut reg_manifest_bytes: BTreeMap<String, i64> = BTreeMap::new();
        let mut repo_manifest_bytes: BTreeMap<String, i64> = BTreeMap::new();
        self.each_row(Cf::Manifests, &mut r.rows, |k, v| {
            let Some((repo, digest)) = split2(k) else {
                return bad(format!("manifests: malformed key {:?}", text(k)));
            };
            match dec_framed::<ManifestRecord>(Cf::Manifests, v) {
                Ok((rec, _)) => {
                    *reg_manifest_bytes
                        .entry(registry_of(&repo).to_string())
                        .or_default() += rec.size as i64;
                    *repo_manifest_bytes.entry(repo.clone()).or_default() += rec.size as i64;
                }
                Err(e) => bad(format!("manifest {repo} {digest}: {e}")),
            }
            manifests.insert((repo, digest));
        })?;
        let mut tags: BTreeSet<(String, String, String)> = BTreeSet::new();
        self.each_row(Cf::Tags, &mut r.rows, |k, v| {
            let Some((repo, tag)) = split2(k) else {
                return bad(format!("tags: malformed key {:?}", text(k)));
            };
            match dec::<TagRecord>(Cf::Tags, v) {
                Ok(t) => {
                    if !manifests.contains(&(repo.clone(), t.digest.clone())) {
                        bad(format!("tag {repo}:{tag} → {}: no such manifest", t.digest));
                    }
                    tags.insert((repo, t.digest, tag));
                }
                Err(e) => bad(format!("tag {repo}:{tag}: {e}")),
            }
        })?;
        let mut by_digest = 0u64;
        self.each_row(Cf::TagsByDigest, &mut r.rows, |k, _| {
            let s = text(k);
            let parts: Vec<&str> = s.splitn(3, '\0').collect();
            match parts.as_slice() {
                [repo, digest, tag]
                    if tags.contains(&(repo.to_string(), digest.to_string(), tag.to_string())) =>
                {
                    by_digest += 1
                }
                _ => bad(format!("tags_by_digest {s:?}: no such tag")),
            }
        })?;
        if by_digest != tags.len() as u64 {
            bad(format!(
                "{} tags but {by_digest} tags_by_digest rows for them",
                tags.len()
            ));
        }
        let mut reg_bin_bytes: BTreeMap<String, i64> = BTreeMap::new();
        let mut repo_bin_bytes: BTreeMap<String, i64> = BTreeMap::new();
        self.each_row(Cf::Bin, &mut r.rows, |k, v| {
            let s = text(k);
            let parts: Vec<&str> = s.split('\0').collect();
            if let [repo, "m", _] = parts.as_slice() {
                match dec_framed::<BinnedManifest>(Cf::Bin, v) {
                    Ok((m, _)) => {
                        let size = m.record.size as i64;
                        *reg_bin_bytes
                            .entry(registry_of(repo).to_string())
                            .or_default() += size;
                        *repo_bin_bytes.entry(repo.to_string()).or_default() += size;
                    }
                    Err(e) => bad(format!("bin {s:?}: {e}")),
                }
            }
        })?;

        // upload sessions and their owners' rows
        let mut owned: BTreeSet<(String, String)> = BTreeSet::new();
        let mut slots = [0i64; crate::UPLOAD_SLOTS as usize];
        let mut owners: std::collections::BTreeMap<String, i64> = Default::default();
        self.each_row(Cf::Uploads, &mut r.rows, |k, v| {
            match dec::<crate::UploadRecord>(Cf::Uploads, v) {
                Ok(u) => {
                    if let Some(p) = u.by {
                        if u.counted {
                            *owners.entry(p.clone()).or_default() += 1;
                        }
                        owned.insert((p, text(k)));
                    }
                    match u.slot {
                        Some(s) if s < crate::UPLOAD_SLOTS => slots[s as usize] += 1,
                        Some(s) => bad(format!("upload {}: no slot {s}", text(k))),
                        None => {}
                    }
                }
                Err(e) => bad(format!("upload {}: {e}", text(k))),
            }
        })?;
        self.each_row(Cf::UploadOwners, &mut r.rows, |k, _| {
            // `principal` alone is the guard row
            if let Some(key) = split2(k) {
                if !owned.remove(&key) {
                    bad(format!(
                        "upload_owners {} {}: no such session of theirs",
                        key.0, key.1
                    ));
                }
            }
        })?;
        for (p, id) in owned {
            bad(format!(
                "upload {id} of {p}: not among its owner's sessions"
            ));
        }
        // each principal's count of open sessions, also those counted
        // down to zero (a counter no session explains must be 0)
        let prefix = counter::UPLOAD_OWNER_PREFIX;
        for (k, _) in self
            .kv()
            .scan(Cf::Counters, prefix.as_bytes(), None, usize::MAX)?
        {
            owners
                .entry(text(&k)[prefix.len()..].to_string())
                .or_insert(0);
        }
        for (p, want) in owners {
            let name = counter::upload_owner(&p);
            let have = self.counter(&name)?;
            if have != want {
                bad(format!("counter {name}: {have}, recounted {want}"));
            }
        }
        for (slot, want) in (0..crate::UPLOAD_SLOTS).zip(slots) {
            let name = counter::upload_slot(slot);
            let have = self.counter(&name)?;
            if have != want {
                bad(format!("counter {name}: {have}, recounted {want}"));
            }
        }

        // every registry's and repository's counters against the recounts
        let mut registries: BTreeSet<String> = BTreeSet::new();
        self.each_row(Cf::Registries, &mut r.rows, |k, _| {
            registries.insert(text(k));
        })?;
        registries.extend(reg_blob_bytes.keys().cloned());
        registries.extend(reg_manifest_bytes.keys().cloned());
        registries.extend(reg_bin_bytes.keys().cloned());
        for reg in &registries {
            for (name, want) in [
                (counter::registry_blob_bytes(reg), reg_blob_bytes.get(reg)),
                (
                    counter::registry_manifest_bytes(reg),
                    reg_manifest_bytes.get(reg),
                ),
                (counter::registry_bin_bytes(reg), reg_bin_bytes.get(reg)),
            ] {
                let (have, want) = (self.counter(&name)?, want.copied().unwrap_or(0));
                if have != want {
                    bad(format!("counter {name}: {have}, recounted {want}"));
                }
            }
        }
        let mut repos: BTreeSet<String> = BTreeSet::new();
        repos.extend(repo_bytes.keys().cloned());
        repos.extend(repo_manifest_bytes.keys().cloned());
        repos.extend(repo_bin_bytes.keys().cloned());
        for repo in &repos {
            for (stat, want) in [
                (counter::REPO_BYTES, repo_bytes.get(repo)),
                (counter::REPO_MANIFEST_BYTES, repo_manifest_bytes.get(repo)),
                (counter::REPO_BIN_BYTES, repo_bin_bytes.get(repo)),
            ] {
                let key = counter::repo(repo, stat);
                let have = crate::kv::counter_value(self.kv().get(Cf::Counters, &key)?.as_deref());
                let want = want.copied().unwrap_or(0);
                if have != want {
                    bad(format!("counter {repo} {stat}: {have}, recounted {want}"));
                }
            }
        }
        r.problems = problems;
        Ok(r)
    }
}
