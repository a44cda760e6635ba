//! The recycle bin: a deleted manifest (with the tags it had) or a deleted
//! tag leaves `/v2/` at once but stays restorable until garbage collection
//! lets it go, [`Meta::recycle_bin_ms`] after the deletion.
//!
//! Entries in [`Cf::Bin`]:
//! - `repo \0 m \0 digest` → [`BinnedManifest`] header + the body;
//! - `repo \0 t \0 digest \0 tag` → [`BinnedTag`] (a tag deleted while its
//!   manifest stayed).
//!
//! A binned manifest keeps its reference rows in [`Cf::Refs`], marked as
//! binned, so garbage collection keeps its blobs linked and its index
//! children stored; its bytes count in the registry's usage (`bin_bytes`)
//! until the entry goes. Every change here reads the repository record as
//! its guard, as garbage collection's steps do.

use crate::cf::Cf;
use crate::meta::{
    count_manifest, counter, dec, dec_framed, enc_framed, enc_manifest, fresh_rev, key2, key3,
    last_component, now_millis, point_tag, prefix1, prefix2, registry_of, touch_repo, utf8,
    LinkRecord, ManifestRecord, Meta, MetaError, ReferrerRecord, TagRecord, REF_BLOB, REF_MANIFEST,
    REF_MANIFEST_BINNED,
};
use crate::tx::{Reads, Tx};
use serde::{Deserialize, Serialize};

type Result<T> = std::result::Result<T, MetaError>;

/// A manifest in the bin, with what it had when deleted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BinnedManifest {
    pub record: ManifestRecord,
    /// The tags that pointed at it.
    pub tags: Vec<String>,
    /// Its entry in its subject's referrers.
    #[serde(default)]
    pub referrer: Option<(String, ReferrerRecord)>,
    pub deleted_ms: u64,
    pub by: String,
}

/// A tag in the bin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BinnedTag {
    pub deleted_ms: u64,
    pub by: String,
}

/// One entry of the bin.
#[derive(Debug, Clone, PartialEq)]
pub enum BinEntry {
    Manifest {
        repo: String,
        digest: String,
        entry: Box<BinnedManifest>,
    },
    Tag {
        repo: String,
        digest: String,
        tag: String,
        entry: BinnedTag,
    },
}

impl BinEntry {
    pub fn repo(&self) -> &str {
        match self {
            BinEntry::Manifest { repo, .. } | BinEntry::Tag { repo, .. } => repo,
        }
    }

    pub fn deleted_ms(&self) -> u64 {
        match self {
            BinEntry::Manifest { entry, .. } => entry.deleted_ms,
            BinEntry::Tag { entry, .. } => entry.deleted_ms,
        }
    }

    /// The entry's key, as an opaque reference for [`Meta::restore`] and
    /// [`Meta::purge`].
    pub fn key(&self) -> Vec<u8> {
        match self {
            BinEntry::Manifest { repo, digest, .. } => manifest_key(repo, digest),
            BinEntry::Tag {
                repo, digest, tag, ..
            } => tag_key(repo, digest, tag),
        }
    }
}

fn manifest_key(repo: &str, d: &str) -> Vec<u8> {
    key3(repo, "m", d)
}

fn tag_key(repo: &str, d: &str, tag: &str) -> Vec<u8> {
    let mut k = tag_prefix(repo, d);
    k.extend_from_slice(tag.as_bytes());
    k
}

/// Every binned tag of manifest `d`.
fn tag_prefix(repo: &str, d: &str) -> Vec<u8> {
    let mut k = key3(repo, "t", d);
    k.push(0);
    k
}

fn decode(k: &[u8], v: &[u8]) -> Result<BinEntry> {
    let s = utf8(Cf::Bin, k.to_vec())?;
    let parts: Vec<&str> = s.split('\0').collect();
    let corrupt = || MetaError::Corrupt {
        cf: Cf::Bin.name(),
        reason: format!("unexpected key {s:?}"),
    };
    match parts.as_slice() {
        [repo, "m", digest] => Ok(BinEntry::Manifest {
            repo: repo.to_string(),
            digest: digest.to_string(),
            entry: Box::new(dec_framed(Cf::Bin, v)?.0),
        }),
        [repo, "t", digest, tag] => Ok(BinEntry::Tag {
            repo: repo.to_string(),
            digest: digest.to_string(),
            tag: tag.to_string(),
            entry: dec(Cf::Bin, v)?,
        }),
        _ => Err(corrupt()),
    }
}

fn count_bin(tx: &mut Tx<'_>, repo: &str, bytes: i64) {
    tx.add(
        Cf::Counters,
        counter::repo(repo, counter::REPO_BIN_BYTES),
        bytes,
    );
    tx.add(
        Cf::Counters,
        counter::registry_bin_bytes(registry_of(repo)),
        bytes,
    );
}

/// Put a manifest just removed (`remove_manifest`) into the bin.
pub(crate) fn bin_manifest(
    tx: &mut Tx<'_>,
    repo: &str,
    d: &str,
    entry: BinnedManifest,
    body: &[u8],
) {
    count_bin(tx, repo, entry.record.size as i64);
    tx.put(Cf::Bin, manifest_key(repo, d), enc_framed(&entry, body));
}

/// Put a tag just removed into the bin.
pub(crate) fn bin_tag(tx: &mut Tx<'_>, repo: &str, d: &str, tag: &str, now: u64, by: &str) {
    tx.put_as(
        Cf::Bin,
        tag_key(repo, d, tag),
        &BinnedTag {
            deleted_ms: now,
            by: by.to_string(),
        },
    );
}

/// Manifest `d` is stored again (pushed anew): drop its bin entry, if any.
pub(crate) fn unbin_manifest(tx: &mut Tx<'_>, repo: &str, d: &str) -> Result<()> {
    let k = manifest_key(repo, d);
    if let Some(v) = tx.get(Cf::Bin, &k)? {
        let (e, _): (BinnedManifest, Vec<u8>) = dec_framed(Cf::Bin, &v)?;
        count_bin(tx, repo, -(e.record.size as i64));
        tx.delete(Cf::Bin, k);
    }
    Ok(())
}

/// Whether the bin holds something deleted at or after `after_ms` that
/// needs manifest `d` of `repo` kept: a binned tag of it, a binned index
/// listing it, or (when `d` refers to `subject`) its binned subject. For
/// garbage collection's step (in its transaction, `after_ms` 0: every
/// entry holds) and its candidates and estimate (outside one).
pub(crate) fn holds(
    r: &mut impl Reads,
    repo: &str,
    d: &str,
    subject: Option<&str>,
    after_ms: u64,
) -> Result<bool> {
    for (k, v) in r.range(Cf::Bin, &tag_prefix(repo, d), usize::MAX)? {
        if decode(&k, &v)?.deleted_ms() >= after_ms {
            return Ok(true);
        }
    }
    let mut binned = Vec::new();
    for (k, kind) in r.range(Cf::Refs, &prefix2(repo, d), usize::MAX)? {
        if kind == REF_MANIFEST_BINNED {
            binned.push(last_component(Cf::Refs, &k)?);
        }
    }
    binned.extend(subject.map(str::to_string));
    for m in binned {
        let k = manifest_key(repo, &m);
        if let Some(v) = r.read(Cf::Bin, &k)? {
            if decode(&k, &v)?.deleted_ms() >= after_ms {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// How a restore went.
#[derive(Debug, Clone, PartialEq)]
pub enum Restored {
    /// Back on `/v2/`, with these tags; `skipped`: tags it had that point
    /// at another manifest now (left there).
    Done {
        tags: Vec<String>,
        skipped: Vec<String>,
    },
    NotFound,
    /// Something it needs is gone (a blob unlinked, a child deleted, or
    /// for a tag its manifest): it cannot come back.
    Missing(String),
}

/// What purging an entry released.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Purged {
    /// Bytes of the manifest the entry held (0 for a tag).
    pub manifest_bytes: u64,
    /// Links the purge removed (blobs only that manifest referenced, linked
    /// before the caller's cutoff), with their sizes.
    pub links: Vec<(String, u64)>,
}

/// Bring manifest `d` back from the bin (entry already read): stored,
/// counted, indexed, referrer entry and free tags restored.
fn restore_manifest_tx(
    tx: &mut Tx<'_>,
    repo: &str,
    d: &str,
    e: BinnedManifest,
    body: &[u8],
    by: &str,
) -> Result<Restored> {
    let mut rec = e.record;
    for b in &rec.blobs {
        let k = key2(repo, b);
        if tx.get_as::<LinkRecord>(Cf::Links, &k)?.is_none() && tx.get(Cf::Manifests, &k)?.is_none()
        {
            return Ok(Restored::Missing(format!("blob {b}")));
        }
    }
    for c in &rec.children {
        if tx.get(Cf::Manifests, &key2(repo, c))?.is_none() {
            return Ok(Restored::Missing(format!("manifest {c}")));
        }
    }
    let now = now_millis();
    rec.rev = fresh_rev();
    tx.put(Cf::Manifests, key2(repo, d), enc_manifest(&rec, body));
    count_manifest(tx, repo, &rec, 1);
    count_bin(tx, repo, -(rec.size as i64));
    tx.delete(Cf::Bin, manifest_key(repo, d));
    for b in &rec.blobs {
        tx.put(Cf::Refs, key3(repo, b, d), REF_BLOB);
    }
    for c in &rec.children {
        tx.put(Cf::Refs, key3(repo, c, d), REF_MANIFEST);
    }
    if let Some((subject, r)) = &e.referrer {
        tx.put_as(Cf::Referrers, key3(repo, subject, d), r);
    }
    let (mut tags, mut skipped) = (Vec::new(), Vec::new());
    for t in e.tags {
        if tx.get_as::<TagRecord>(Cf::Tags, &key2(repo, &t))?.is_some() {
            skipped.push(t);
        } else {
            point_tag(tx, repo, &t, d, now, by)?;
            tags.push(t);
        }
    }
    touch_repo(tx, repo, now)?;
    Ok(Restored::Done { tags, skipped })
}

impl Meta {
    /// Entries of the bin whose repositories start with `repo_prefix`
    /// (`acme/`: a registry's; `acme/app\0`: one repository's), in key
    /// order, after the key `after`, at most `n`.
    pub fn list_bin(
        &self,
        repo_prefix: &str,
        after: Option<&[u8]>,
        n: usize,
    ) -> Result<Vec<BinEntry>> {
        self.kv()
            .scan(Cf::Bin, repo_prefix.as_bytes(), after, n)?
            .into_iter()
            .map(|(k, v)| decode(&k, &v))
            .collect()
    }

    /// Tags of manifest `d` in the bin, in name order, at most `n`.
    pub fn binned_tags(&self, repo: &str, d: &str, n: usize) -> Result<Vec<String>> {
        self.kv()
            .scan(Cf::Bin, &tag_prefix(repo, d), None, n)?
            .iter()
            .map(|(k, _)| crate::meta::last_component(Cf::Bin, k))
            .collect()
    }

    /// One entry by its key ([`BinEntry::key`]).
    pub fn bin_entry(&self, key: &[u8]) -> Result<Option<BinEntry>> {
        match self.kv().get(Cf::Bin, key)? {
            Some(v) => Ok(Some(decode(key, &v)?)),
            None => Ok(None),
        }
    }

    /// Restore an entry `by` a principal (tag rules apply to the tags put
    /// back): a manifest with the tags it had that are free, or a tag (its
    /// manifest restored first if it is in the bin too).
    pub fn restore(&self, key: &[u8], by: &str) -> Result<Restored> {
        self.transact(|tx| {
            let Some(v) = tx.get(Cf::Bin, key)? else {
                return Ok(Restored::NotFound);
            };
            match decode(key, &v)? {
                BinEntry::Manifest { repo, digest, .. } => {
                    let (e, body) = dec_framed(Cf::Bin, &v)?;
                    restore_manifest_tx(tx, &repo, &digest, e, &body, by)
                }
                BinEntry::Tag {
                    repo, digest, tag, ..
                } => {
                    let mk = key2(&repo, &digest);
                    let mut out = Restored::Done {
                        tags: vec![],
                        skipped: vec![],
                    };
                    if tx.get(Cf::Manifests, &mk)?.is_none() {
                        let Some(mv) = tx.get(Cf::Bin, &manifest_key(&repo, &digest))? else {
                            return Ok(Restored::Missing(format!("manifest {digest}")));
                        };
                        let (e, body) = dec_framed(Cf::Bin, &mv)?;
                        out = restore_manifest_tx(tx, &repo, &digest, e, &body, by)?;
                        if matches!(out, Restored::Missing(_)) {
                            return Ok(out);
                        }
                    }
                    // the manifest record guards its tags (`set_tag`)
                    let mv = tx.get(Cf::Manifests, &mk)?.expect("stored or restored");
                    let (mut rec, body) = crate::meta::dec_manifest(&mv)?;
                    rec.rev = fresh_rev();
                    tx.put(Cf::Manifests, mk, enc_manifest(&rec, &body));
                    let now = now_millis();
                    point_tag(tx, &repo, &tag, &digest, now, by)?;
                    tx.delete(Cf::Bin, key.to_vec());
                    touch_repo(tx, &repo, now)?;
                    if let Restored::Done { tags, skipped } = &mut out {
                        skipped.retain(|t| t != &tag);
                        if !tags.contains(&tag) {
                            tags.push(tag);
                        }
                    }
                    Ok(out)
                }
            }
        })
    }

    /// Let an entry go for good. A manifest's bytes leave the registry's
    /// usage, its binned reference rows go, and the links of blobs no other
    /// manifest of the repository references — linked before
    /// `linked_before_ms` — are removed (their bytes leave the usage; the
    /// next collection deletes them). Binned tags of a manifest that goes
    /// go with it. With `deleted_before_ms`, only an entry deleted before
    /// then. `None`: no such entry (or a younger one).
    pub fn purge(
        &self,
        key: &[u8],
        deleted_before_ms: Option<u64>,
        linked_before_ms: u64,
    ) -> Result<Option<Purged>> {
        self.transact(|tx| {
            let Some(v) = tx.get(Cf::Bin, key)? else {
                return Ok(None);
            };
            let entry = decode(key, &v)?;
            if deleted_before_ms.is_some_and(|t| entry.deleted_ms() >= t) {
                return Ok(None);
            }
            // the repository's guard: a push meanwhile makes this retry
            if tx.get(Cf::Repos, entry.repo().as_bytes())?.is_none() {
                tx.delete(Cf::Bin, key.to_vec());
                return Ok(Some(Purged::default()));
            }
            tx.delete(Cf::Bin, key.to_vec());
            let BinEntry::Manifest {
                repo,
                digest,
                entry,
            } = entry
            else {
                return Ok(Some(Purged::default()));
            };
            let rec = entry.record;
            count_bin(tx, &repo, -(rec.size as i64));
            for (k, _) in tx.scan(Cf::Bin, &tag_prefix(&repo, &digest), None, usize::MAX)? {
                tx.delete(Cf::Bin, k);
            }
            let mut out = Purged {
                manifest_bytes: rec.size,
                links: Vec::new(),
            };
            for c in &rec.children {
                tx.delete(Cf::Refs, key3(&repo, c, &digest));
            }
            for b in &rec.blobs {
                tx.delete(Cf::Refs, key3(&repo, b, &digest));
                let others = tx
                    .scan(Cf::Refs, &prefix2(&repo, b), None, 2)?
                    .iter()
                    .any(|(k, _)| !k.ends_with(digest.as_bytes()));
                let lk = key2(&repo, b);
                match tx.get_as::<LinkRecord>(Cf::Links, &lk)? {
                    Some(l) if !others && l.linked_ms < linked_before_ms => {
                        crate::meta::drop_link(tx, &repo, b, l.size)?;
                        out.links.push((b.clone(), l.size));
                    }
                    _ => {}
                }
            }
            Ok(Some(out))
        })
    }

    /// Bytes of the manifests in a registry's recycle bin.
    pub fn registry_bin_bytes(&self, registry: &str) -> Result<i64> {
        self.counter(&counter::registry_bin_bytes(registry))
    }
}

/// Every bin entry of one repository: the prefix for [`Meta::list_bin`].
pub fn repo_bin_prefix(repo: &str) -> String {
    String::from_utf8(prefix1(repo)).expect("a name")
}
