use crate::cf::Cf;
use crate::kv::{Batch, KvError, KvStore};
use berth_core::Digest;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("corrupt metadata record in {cf}: {reason}")]
    Corrupt { cf: &'static str, reason: String },
    #[error("metadata task failed: {0}")]
    Task(String),
}

type Result<T> = std::result::Result<T, MetaError>;

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RepoRecord {
    pub created_ms: u64,
    pub updated_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlobRecord {
    pub size: u64,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LinkRecord {
    pub size: u64,
    pub linked_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TagRecord {
    pub digest: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// What is kept about a manifest beside its body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestRecord {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Blobs (config and layers) the manifest references.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Child manifests of an index.
    #[serde(default)]
    pub children: Vec<String>,
    pub pushed_ms: u64,
}

/// One referrer of a subject: the descriptor the referrers API returns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReferrerRecord {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

/// An upload session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UploadRecord {
    pub repo: String,
    /// Bytes received and made durable so far.
    pub offset: u64,
    pub started_ms: u64,
    pub updated_ms: u64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// More entries follow the last item.
    pub more: bool,
}

const SEP: u8 = 0;

pub(crate) fn key2(a: &str, b: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(a.len() + 1 + b.len());
    k.extend_from_slice(a.as_bytes());
    k.push(SEP);
    k.extend_from_slice(b.as_bytes());
    k
}

fn key3(a: &str, b: &str, c: &str) -> Vec<u8> {
    let mut k = key2(a, b);
    k.push(SEP);
    k.extend_from_slice(c.as_bytes());
    k
}

pub(crate) fn prefix1(a: &str) -> Vec<u8> {
    let mut k = a.as_bytes().to_vec();
    k.push(SEP);
    k
}

pub(crate) fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialise")
}

pub(crate) fn dec<T: DeserializeOwned>(cf: Cf, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| MetaError::Corrupt {
        cf: cf.name(),
        reason: e.to_string(),
    })
}

fn last_component(cf: Cf, k: &[u8]) -> Result<String> {
    let tail = k.rsplit(|b| *b == SEP).next().unwrap_or(k);
    String::from_utf8(tail.to_vec()).map_err(|e| MetaError::Corrupt {
        cf: cf.name(),
        reason: e.to_string(),
    })
}

/// Manifest values: 4-byte big-endian header length, JSON header, body.
fn enc_manifest(rec: &ManifestRecord, body: &[u8]) -> Vec<u8> {
    let h = enc(rec);
    let mut v = Vec::with_capacity(4 + h.len() + body.len());
    v.extend_from_slice(&(h.len() as u32).to_be_bytes());
    v.extend_from_slice(&h);
    v.extend_from_slice(body);
    v
}

fn dec_manifest(v: &[u8]) -> Result<(ManifestRecord, Vec<u8>)> {
    let corrupt = || MetaError::Corrupt {
        cf: Cf::Manifests.name(),
        reason: "short value".into(),
    };
    let len = u32::from_be_bytes(
        v.get(0..4)
            .ok_or_else(corrupt)?
            .try_into()
            .expect("4 bytes"),
    ) as usize;
    let h = v.get(4..4 + len).ok_or_else(corrupt)?;
    Ok((dec(Cf::Manifests, h)?, v[4 + len..].to_vec()))
}

const LOCK_STRIPES: usize = 64;

struct Inner {
    kv: Box<dyn KvStore>,
    /// Serialise read-modify-write sequences per repository (and per upload
    /// session), striped by hash.
    locks: Vec<Mutex<()>>,
}

/// Typed metadata over a [`KvStore`]. Cheap to clone.
///
/// Every method that changes state is one atomic batch, durable on return.
/// Reads are point lookups or bounded scans.
#[derive(Clone)]
pub struct Meta {
    inner: Arc<Inner>,
}

/// A manifest write: everything that becomes visible together.
pub struct PutManifest<'a> {
    pub repo: &'a str,
    pub digest: &'a Digest,
    pub record: ManifestRecord,
    pub body: &'a [u8],
    pub tag: Option<&'a str>,
    pub referrer: Option<(Digest, ReferrerRecord)>,
}

impl Meta {
    pub fn new(kv: impl KvStore) -> Meta {
        Meta {
            inner: Arc::new(Inner {
                kv: Box::new(kv),
                locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            }),
        }
    }

    pub(crate) fn kv(&self) -> &dyn KvStore {
        &*self.inner.kv
    }

    fn lock(&self, what: &str) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        what.hash(&mut h);
        let i = (h.finish() as usize) % LOCK_STRIPES;
        self.inner.locks[i]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Run a blocking metadata operation off the async executor.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Meta) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| MetaError::Task(e.to_string()))?
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, cf: Cf, key: &[u8]) -> Result<Option<T>> {
        match self.kv().get(cf, key)? {
            Some(v) => Ok(Some(dec(cf, &v)?)),
            None => Ok(None),
        }
    }

    fn touch_repo(&self, b: &mut Batch, repo: &str, now: u64) -> Result<()> {
        let rec = match self.get::<RepoRecord>(Cf::Repos, repo.as_bytes())? {
            Some(mut r) => {
                r.updated_ms = now;
                r
            }
            None => RepoRecord {
                created_ms: now,
                updated_ms: now,
            },
        };
        b.put(Cf::Repos, repo.as_bytes(), enc(&rec));
        Ok(())
    }

    /// Add to `b`: the blob record (if the instance lacks it) and the
    /// repository's link (if missing). The caller holds the repository lock.
    fn add_link(&self, b: &mut Batch, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        let now = now_millis();
        let d = digest.to_string();
        if self.blob(digest)?.is_none() {
            b.put(
                Cf::Blobs,
                d.as_bytes(),
                enc(&BlobRecord {
                    size,
                    created_ms: now,
                }),
            );
        }
        if self.link(repo, digest)?.is_none() {
            b.put(
                Cf::Links,
                key2(repo, &d),
                enc(&LinkRecord {
                    size,
                    linked_ms: now,
                }),
            );
            self.touch_repo(b, repo, now)?;
        }
        Ok(())
    }

    // ---- repositories -------------------------------------------------

    pub fn repo(&self, repo: &str) -> Result<Option<RepoRecord>> {
        self.get(Cf::Repos, repo.as_bytes())
    }

    /// Repositories in lexical order, after `last`, at most `n`.
    pub fn list_repos(&self, last: Option<&str>, n: usize) -> Result<Page<String>> {
        let rows = self
            .kv()
            .scan(Cf::Repos, b"", last.map(str::as_bytes), n.saturating_add(1))?;
        let more = rows.len() > n;
        let items = rows
            .into_iter()
            .take(n)
            .map(|(k, _)| {
                String::from_utf8(k).map_err(|e| MetaError::Corrupt {
                    cf: Cf::Repos.name(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Page { items, more })
    }

    // ---- blobs and links ----------------------------------------------

    pub fn blob(&self, digest: &Digest) -> Result<Option<BlobRecord>> {
        self.get(Cf::Blobs, digest.to_string().as_bytes())
    }

    pub fn link(&self, repo: &str, digest: &Digest) -> Result<Option<LinkRecord>> {
        self.get(Cf::Links, &key2(repo, &digest.to_string()))
    }

    /// Record that the instance stores `digest` (if not yet) and that `repo`
    /// may serve it, in one atomic batch.
    pub fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        let _g = self.lock(repo);
        let mut b = Batch::new();
        self.add_link(&mut b, repo, digest, size)?;
        if b.is_empty() {
            return Ok(());
        }
        Ok(self.kv().write(b)?)
    }

    /// Remove a repository's link to a blob. The bytes stay until garbage
    /// collection. Returns whether a link existed.
    pub fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let _g = self.lock(repo);
        let k = key2(repo, &digest.to_string());
        if self.kv().get(Cf::Links, &k)?.is_none() {
            return Ok(false);
        }
        let mut b = Batch::new();
        b.delete(Cf::Links, k);
        self.kv().write(b)?;
        Ok(true)
    }

    // ---- manifests and tags -------------------------------------------

    pub fn manifest(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<(ManifestRecord, Vec<u8>)>> {
        match self
            .kv()
            .get(Cf::Manifests, &key2(repo, &digest.to_string()))?
        {
            Some(v) => Ok(Some(dec_manifest(&v)?)),
            None => Ok(None),
        }
    }

    pub fn manifest_exists(&self, repo: &str, digest: &Digest) -> Result<bool> {
        Ok(self
            .kv()
            .get(Cf::Manifests, &key2(repo, &digest.to_string()))?
            .is_some())
    }

    pub fn tag(&self, repo: &str, tag: &str) -> Result<Option<TagRecord>> {
        self.get(Cf::Tags, &key2(repo, tag))
    }

    /// Store a manifest, point `tag` at it (moving the tag if it pointed
    /// elsewhere) and index it as a referrer of its subject: one batch.
    pub fn put_manifest(&self, p: PutManifest<'_>) -> Result<()> {
        let _g = self.lock(p.repo);
        let now = now_millis();
        let d = p.digest.to_string();
        let mut b = Batch::new();
        // Keep the first push time when the same manifest is pushed again.
        let mut record = p.record;
        if let Some((old, _)) = self.manifest(p.repo, p.digest)? {
            record.pushed_ms = old.pushed_ms;
        }
        b.put(
            Cf::Manifests,
            key2(p.repo, &d),
            enc_manifest(&record, p.body),
        );
        if let Some(tag) = p.tag {
            let created = match self.tag(p.repo, tag)? {
                Some(old) => {
                    if old.digest != d {
                        b.delete(Cf::TagsByDigest, key3(p.repo, &old.digest, tag));
                    }
                    old.created_ms
                }
                None => now,
            };
            let rec = TagRecord {
                digest: d.clone(),
                created_ms: created,
                updated_ms: now,
            };
            b.put(Cf::Tags, key2(p.repo, tag), enc(&rec));
            b.put(Cf::TagsByDigest, key3(p.repo, &d, tag), Vec::new());
        }
        if let Some((subject, r)) = &p.referrer {
            b.put(
                Cf::Referrers,
                key3(p.repo, &subject.to_string(), &d),
                enc(r),
            );
        }
        self.touch_repo(&mut b, p.repo, now)?;
        Ok(self.kv().write(b)?)
    }

    /// Remove a tag only. Returns whether it existed.
    pub fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        let _g = self.lock(repo);
        let Some(old) = self.tag(repo, tag)? else {
            return Ok(false);
        };
        let mut b = Batch::new();
        b.delete(Cf::Tags, key2(repo, tag));
        b.delete(Cf::TagsByDigest, key3(repo, &old.digest, tag));
        self.kv().write(b)?;
        Ok(true)
    }

    /// Remove a manifest, every tag pointing at it and its referrer entry.
    /// Returns whether it existed.
    pub fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let _g = self.lock(repo);
        let Some((rec, _)) = self.manifest(repo, digest)? else {
            return Ok(false);
        };
        let d = digest.to_string();
        let mut b = Batch::new();
        b.delete(Cf::Manifests, key2(repo, &d));
        let prefix = key2(repo, &d);
        let mut prefix = prefix;
        prefix.push(SEP);
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = self
                .kv()
                .scan(Cf::TagsByDigest, &prefix, after.as_deref(), 1000)?;
            let Some((last, _)) = rows.last() else { break };
            after = Some(last.clone());
            for (k, _) in &rows {
                let tag = last_component(Cf::TagsByDigest, k)?;
                b.delete(Cf::Tags, key2(repo, &tag));
                b.delete(Cf::TagsByDigest, k.clone());
            }
        }
        if let Some(subject) = &rec.subject {
            b.delete(Cf::Referrers, key3(repo, subject, &d));
        }
        self.kv().write(b)?;
        Ok(true)
    }

    /// Tags of a repository in lexical order, after `last`, at most `n`.
    pub fn list_tags(&self, repo: &str, last: Option<&str>, n: usize) -> Result<Page<String>> {
        let prefix = prefix1(repo);
        let after = last.map(|l| key2(repo, l));
        let rows = self
            .kv()
            .scan(Cf::Tags, &prefix, after.as_deref(), n.saturating_add(1))?;
        let more = rows.len() > n;
        let items = rows
            .iter()
            .take(n)
            .map(|(k, _)| last_component(Cf::Tags, k))
            .collect::<Result<_>>()?;
        Ok(Page { items, more })
    }

    /// Referrers of `subject` in `repo`, in digest order, at most `limit`.
    pub fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        limit: usize,
    ) -> Result<Vec<ReferrerRecord>> {
        let mut prefix = key2(repo, &subject.to_string());
        prefix.push(SEP);
        self.kv()
            .scan(Cf::Referrers, &prefix, None, limit)?
            .iter()
            .map(|(_, v)| dec(Cf::Referrers, v))
            .collect()
    }

    // ---- upload sessions ----------------------------------------------

    pub fn upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        self.get(Cf::Uploads, id.as_bytes())
    }

    pub fn put_upload(&self, id: &str, rec: &UploadRecord) -> Result<()> {
        self.write_upload(id, rec, false)
    }

    /// Record a new, empty session without waiting for the disk: losing it
    /// to a machine crash loses no acknowledged byte (the client's next
    /// request gets BLOB_UPLOAD_UNKNOWN and starts over), and the first
    /// flushed write after it makes it durable.
    pub fn open_upload(&self, id: &str, rec: &UploadRecord) -> Result<()> {
        self.write_upload(id, rec, true)
    }

    fn write_upload(&self, id: &str, rec: &UploadRecord, no_sync: bool) -> Result<()> {
        let mut b = Batch::new();
        b.put(Cf::Uploads, id.as_bytes(), enc(rec));
        b.no_sync = no_sync;
        Ok(self.kv().write(b)?)
    }

    pub fn delete_upload(&self, id: &str) -> Result<()> {
        let mut b = Batch::new();
        b.delete(Cf::Uploads, id.as_bytes());
        Ok(self.kv().write(b)?)
    }

    /// Close an upload: link the blob into the repository and drop the
    /// session record, atomically.
    pub fn complete_upload(&self, id: &str, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        let _g = self.lock(repo);
        let mut b = Batch::new();
        self.add_link(&mut b, repo, digest, size)?;
        b.delete(Cf::Uploads, id.as_bytes());
        Ok(self.kv().write(b)?)
    }

    /// Upload sessions, in id order, after `after`, at most `n`.
    pub fn list_uploads(
        &self,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, UploadRecord)>> {
        self.kv()
            .scan(Cf::Uploads, b"", after.map(str::as_bytes), n)?
            .into_iter()
            .map(|(k, v)| {
                let id = String::from_utf8(k).map_err(|e| MetaError::Corrupt {
                    cf: Cf::Uploads.name(),
                    reason: e.to_string(),
                })?;
                Ok((id, dec(Cf::Uploads, &v)?))
            })
            .collect()
    }
}
