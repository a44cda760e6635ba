use crate::cf::Cf;
use crate::kv::{KvError, KvStore};
use crate::rules::{check_tag_change, TagChange};
use crate::tx::Tx;
use berth_core::media_types::ArtifactKind;
use berth_core::Digest;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a [`Meta`] operation reports besides its own outcome.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The engine failed (see [`KvError`]: `is_retryable` tells whether a
    /// later attempt may succeed).
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A transaction met a conflicting writer on every one of this many
    /// attempts. Nothing was written; the caller may try later.
    #[error("metadata contended: gave up after {0} conflicting attempts")]
    Contended(u32),
    #[error("corrupt metadata record in {cf}: {reason}")]
    Corrupt { cf: &'static str, reason: String },
    #[error("metadata task failed: {0}")]
    Task(String),
    /// Garbage collection is deleting this blob's bytes: a new record of it
    /// must wait until that is done (and the bytes be checked again).
    #[error("blob {0} is being deleted by garbage collection; try again")]
    BlobBeingDeleted(String),
    /// The change would take a registry over its storage limit. Nothing
    /// was written.
    #[error("registry {registry} is at {usage} of its {limit} bytes; {need} more would exceed its storage limit")]
    OverQuota {
        registry: String,
        limit: u64,
        usage: i64,
        need: u64,
    },
    /// The principal has as many upload sessions open as it may. Nothing
    /// was written.
    #[error("{principal} has {open} upload sessions open, its limit")]
    TooManyUploads { principal: String, open: usize },
    /// The instance has as many upload sessions open as it may
    /// ([`UploadLimits::total`]). Nothing was written.
    #[error("{open} upload sessions are open, the instance's limit")]
    TooManyUploadsTotal { open: usize },
    /// A tag rule of the registry forbids the change ([`crate::TagRule`]).
    /// Nothing was written.
    #[error("{0}")]
    TagRule(Box<crate::rules::TagRefusal>),
}

impl MetaError {
    /// Whether the operation may succeed if tried again later (a client
    /// should be told to retry, not that the server is broken).
    pub fn is_retryable(&self) -> bool {
        match self {
            MetaError::Kv(e) => e.is_retryable(),
            MetaError::Contended(_) | MetaError::BlobBeingDeleted(_) => true,
            _ => false,
        }
    }
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
    /// Random, new on every write: the record guards everything in the
    /// repository, so a rewrite must never look like no write to a
    /// transaction that read it (see [`fresh_rev`]).
    #[serde(default)]
    pub rev: u64,
}

/// A value for a guard record's `rev`: random, so no write of a guard key
/// ever leaves it as another transaction read it (conditions compare
/// values; a write of the same value would go unnoticed).
pub(crate) fn fresh_rev() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlobRecord {
    pub size: u64,
    pub created_ms: u64,
    /// Bumped by every new link to the blob, in the link's transaction:
    /// garbage collection deletes a blob only if its generation is still
    /// the one it saw when it found the blob unlinked.
    #[serde(default)]
    pub generation: u64,
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
    /// The config descriptor's media type (image manifests only): with the
    /// media type and artifact type, what [`ManifestRecord::kind`] reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_media_type: Option<String>,
    /// Blobs (config and layers) the manifest references.
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Child manifests of an index.
    #[serde(default)]
    pub children: Vec<String>,
    pub pushed_ms: u64,
    /// Random, new on every write (set by [`Meta::put_manifest`]): the
    /// record guards the tags pointing at the manifest, and a push of the
    /// same manifest with another tag must change it.
    #[serde(default)]
    pub rev: u64,
}

impl ManifestRecord {
    pub fn kind(&self) -> ArtifactKind {
        ArtifactKind::of(
            &self.media_type,
            self.config_media_type.as_deref(),
            self.artifact_type.as_deref(),
        )
    }
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
    /// Who opened it (a principal's subject), counted against its limit of
    /// open sessions; absent on sessions opened before that limit existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The slot of the instance-wide count it holds ([`UploadLimits::total`]);
    /// absent on sessions opened while no such limit was set. Set by
    /// [`Meta::open_upload`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u8>,
    /// Counted in its owner's `counter::upload_owner` (every owned session
    /// opened since that counter exists); closing it subtracts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub counted: bool,
}

/// Limits on open upload sessions, checked by [`Meta::open_upload`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UploadLimits {
    /// Open sessions per principal (`UploadRecord::by`).
    pub per_principal: Option<usize>,
    /// Open sessions in the whole instance, whoever opened them.
    pub total: Option<usize>,
}

/// The instance-wide count of open sessions is kept in this many counters
/// (`counter::upload_slot`), each holding at most its share of the limit, so
/// that opens conflict only when they land on the same one.
pub const UPLOAD_SLOTS: u8 = 16;

/// Slot `slot`'s share of a total limit: the shares add up to `total`.
fn upload_slot_cap(total: usize, slot: u8) -> i64 {
    let k = UPLOAD_SLOTS as usize;
    (total / k + usize::from((slot as usize) < total % k)) as i64
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

pub(crate) fn key3(a: &str, b: &str, c: &str) -> Vec<u8> {
    let mut k = key2(a, b);
    k.push(SEP);
    k.extend_from_slice(c.as_bytes());
    k
}

/// `a \0 b \0`: every key under `(a, b)`.
pub(crate) fn prefix2(a: &str, b: &str) -> Vec<u8> {
    let mut k = key2(a, b);
    k.push(SEP);
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

pub(crate) fn last_component(cf: Cf, k: &[u8]) -> Result<String> {
    let tail = k.rsplit(|b| *b == SEP).next().unwrap_or(k);
    String::from_utf8(tail.to_vec()).map_err(|e| MetaError::Corrupt {
        cf: cf.name(),
        reason: e.to_string(),
    })
}

/// Manifest values: 4-byte big-endian header length, JSON header, body.
pub(crate) fn enc_manifest(rec: &ManifestRecord, body: &[u8]) -> Vec<u8> {
    enc_framed(rec, body)
}

/// A JSON header and a body in one value (see [`enc_manifest`]).
pub(crate) fn enc_framed<T: Serialize>(rec: &T, body: &[u8]) -> Vec<u8> {
    let h = enc(rec);
    let mut v = Vec::with_capacity(4 + h.len() + body.len());
    v.extend_from_slice(&(h.len() as u32).to_be_bytes());
    v.extend_from_slice(&h);
    v.extend_from_slice(body);
    v
}

pub(crate) fn dec_manifest(v: &[u8]) -> Result<(ManifestRecord, Vec<u8>)> {
    dec_framed(Cf::Manifests, v)
}

pub(crate) fn dec_framed<T: DeserializeOwned>(cf: Cf, v: &[u8]) -> Result<(T, Vec<u8>)> {
    let corrupt = || MetaError::Corrupt {
        cf: cf.name(),
        reason: "short value".into(),
    };
    let len = u32::from_be_bytes(
        v.get(0..4)
            .ok_or_else(corrupt)?
            .try_into()
            .expect("4 bytes"),
    ) as usize;
    let h = v.get(4..4 + len).ok_or_else(corrupt)?;
    Ok((dec(cf, h)?, v[4 + len..].to_vec()))
}

/// Typed metadata over a [`KvStore`]. Cheap to clone.
///
/// Every method that changes state is one transaction ([`Meta::transact`]):
/// what it checks and what it writes commit together, durable on return,
/// and a concurrent writer makes it retry rather than lose an update —
/// across threads and across processes sharing one engine. Nothing here
/// takes a lock. Reads are point lookups or bounded scans.
#[derive(Clone)]
pub struct Meta {
    inner: Arc<dyn KvStore>,
    /// How long deleted manifests and tags stay in the recycle bin
    /// (`bin.rs`); 0: deletes are final at once.
    bin_ms: u64,
}

/// What a manifest references, as checked when it is stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Ref {
    /// A config or layer: a blob linked in the repository (or, rarely, a
    /// manifest of the repository), whose size must match the descriptor.
    Blob { digest: Digest, size: u64 },
    /// A child manifest of an index.
    Manifest { digest: Digest },
}

impl Ref {
    pub fn digest(&self) -> &Digest {
        match self {
            Ref::Blob { digest, .. } | Ref::Manifest { digest } => digest,
        }
    }
}

/// A manifest write: everything that becomes visible together.
pub struct PutManifest<'a> {
    pub repo: &'a str,
    pub digest: &'a Digest,
    /// `blobs` and `children` are filled in from `refs`.
    pub record: ManifestRecord,
    pub body: &'a [u8],
    /// Tags to point at the manifest (moved if they pointed elsewhere).
    pub tags: &'a [String],
    pub referrer: Option<(Digest, ReferrerRecord)>,
    pub refs: Vec<Ref>,
    /// Store it even if some references are not in the repository (a
    /// sparse manifest, for partial mirrors).
    pub allow_missing: bool,
    /// Who pushes it, for the tag history (a principal's subject).
    pub by: &'a str,
}

/// Why a manifest was not stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    /// A reference is not in the repository.
    Missing(Ref),
    /// A blob descriptor's size differs from the stored blob's.
    SizeMismatch {
        digest: Digest,
        declared: u64,
        stored: u64,
    },
}

/// Instance-wide counters in [`Cf::Counters`], kept exact by blind adds in
/// the transactions that create or remove what they count.
pub mod counter {
    pub const BLOBS: &str = "blobs";
    pub const BLOB_BYTES: &str = "blob_bytes";
    pub const REPOSITORIES: &str = "repositories";
    pub const REGISTRIES: &str = "registries";
    pub const ALL: [&str; 4] = [BLOBS, BLOB_BYTES, REPOSITORIES, REGISTRIES];

    /// Repositories of one registry (the first component of their names).
    pub fn registry_repositories(registry: &str) -> String {
        format!("registry/{registry}/repositories")
    }

    /// Bytes of the distinct blobs a registry's repositories link.
    pub fn registry_blob_bytes(registry: &str) -> String {
        format!("registry/{registry}/blob_bytes")
    }

    /// Bytes of the manifests stored in a registry's repositories.
    pub fn registry_manifest_bytes(registry: &str) -> String {
        format!("registry/{registry}/manifest_bytes")
    }

    /// Bytes of the manifests in a registry's recycle bin.
    pub fn registry_bin_bytes(registry: &str) -> String {
        format!("registry/{registry}/bin_bytes")
    }

    /// Upload sessions holding slot `slot` of the instance-wide count
    /// ([`crate::UploadLimits::total`]).
    pub fn upload_slot(slot: u8) -> String {
        format!("uploads/slot/{slot}")
    }

    /// The open upload sessions of a principal
    /// ([`crate::UploadLimits::per_principal`]).
    pub fn upload_owner(principal: &str) -> String {
        format!("{UPLOAD_OWNER_PREFIX}{principal}")
    }

    /// The prefix of every [`upload_owner`] counter.
    pub const UPLOAD_OWNER_PREFIX: &str = "uploads/owner/";

    /// Per-repository figures: `r \0 repo \0 stat`, so one scan of
    /// [`repo_prefix`] reads them all.
    pub fn repo(repo: &str, stat: &str) -> Vec<u8> {
        let mut k = repo_prefix(repo);
        k.extend_from_slice(stat.as_bytes());
        k
    }

    pub fn repo_prefix(repo: &str) -> Vec<u8> {
        let mut k = b"r\0".to_vec();
        k.extend_from_slice(repo.as_bytes());
        k.push(0);
        k
    }

    /// Bytes of the distinct blobs the repository links.
    pub const REPO_BYTES: &str = "bytes";
    /// Manifests in the repository.
    pub const REPO_ARTIFACTS: &str = "artifacts";
    /// Bytes of the repository's manifests.
    pub const REPO_MANIFEST_BYTES: &str = "manifest_bytes";
    pub const REPO_TAGS: &str = "tags";
    /// Bytes of the repository's manifests in the recycle bin.
    pub const REPO_BIN_BYTES: &str = "bin_bytes";
    /// Manifest GETs (batched, not synced: see `record_pulls`).
    pub const REPO_PULLS: &str = "pulls";

    /// Manifests of one kind in the repository.
    pub fn repo_kind(kind: berth_core::media_types::ArtifactKind) -> String {
        format!("kind/{}", kind.as_str())
    }

    /// Pulls of one manifest: `p \0 repo \0 digest`.
    pub fn artifact_pulls(repo: &str, digest: &str) -> Vec<u8> {
        let mut k = b"p\0".to_vec();
        k.extend_from_slice(repo.as_bytes());
        k.push(0);
        k.extend_from_slice(digest.as_bytes());
        k
    }

    pub fn artifact_pulls_prefix(repo: &str) -> Vec<u8> {
        let mut k = b"p\0".to_vec();
        k.extend_from_slice(repo.as_bytes());
        k.push(0);
        k
    }
}

/// The registry (tenant) a repository belongs to: its first component.
pub fn registry_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// One more (`delta` 1) or one fewer (-1) repository of `repo`'s registry
/// links `digest`: the registry's refcount of the blob, read with `get`
/// (two repositories linking the same blob conflict and retry, so the
/// first link and the last unlink are each seen exactly once), and the
/// registry's deduplicated bytes when the count leaves or reaches zero.
pub(crate) fn registry_link(
    tx: &mut Tx<'_>,
    repo: &str,
    digest: &str,
    size: u64,
    delta: i64,
) -> Result<()> {
    let registry = registry_of(repo);
    let k = key2(registry, digest);
    let n = crate::kv::counter_value(tx.get(Cf::RegistryBlobs, &k)?.as_deref());
    let m = (n + delta).max(0);
    if n == 0 && m > 0 {
        charge(tx, registry, size)?;
        tx.add(
            Cf::Counters,
            counter::registry_blob_bytes(registry),
            size as i64,
        );
    } else if n > 0 && m == 0 {
        tx.add(
            Cf::Counters,
            counter::registry_blob_bytes(registry),
            -(size as i64),
        );
    }
    if m == 0 {
        tx.delete(Cf::RegistryBlobs, k);
    } else {
        tx.put(Cf::RegistryBlobs, k, m.to_le_bytes().to_vec());
    }
    Ok(())
}

/// Charge `bytes` more to `registry`'s usage, or refuse with
/// [`MetaError::OverQuota`] when that would exceed its storage limit. The
/// usage counters are read with `get`: any other change to the usage
/// commits before this one or makes it run again, so concurrent pushers
/// can never overshoot the limit together. A registry without a limit
/// reads nothing (its pushes do not conflict over its usage).
pub(crate) fn charge(tx: &mut Tx<'_>, registry: &str, bytes: u64) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    let Some(limit) = tx
        .peek_as::<crate::RegistryRecord>(Cf::Registries, registry.as_bytes())?
        .and_then(|r| r.storage_limit)
    else {
        return Ok(());
    };
    let mut usage = 0;
    for k in [
        counter::registry_blob_bytes(registry),
        counter::registry_manifest_bytes(registry),
        counter::registry_bin_bytes(registry),
    ] {
        usage += crate::kv::counter_value(tx.get(Cf::Counters, k.as_bytes())?.as_deref());
    }
    if usage.saturating_add(bytes as i64) > limit as i64 {
        return Err(MetaError::OverQuota {
            registry: registry.to_string(),
            limit,
            usage,
            need: bytes,
        });
    }
    Ok(())
}

/// Remove `repo`'s link to blob `digest` (of `size` bytes) with its
/// reverse index row, uncounting it from the repository and the registry.
pub(crate) fn drop_link(tx: &mut Tx<'_>, repo: &str, digest: &str, size: u64) -> Result<()> {
    tx.delete(Cf::Links, key2(repo, digest));
    tx.delete(Cf::BlobRepos, key2(digest, repo));
    tx.add(
        Cf::Counters,
        counter::repo(repo, counter::REPO_BYTES),
        -(size as i64),
    );
    registry_link(tx, repo, digest, size, -1)
}

/// Count a manifest into (`delta` 1) or out of (-1) its repository's and
/// registry's figures.
pub(crate) fn count_manifest(tx: &mut Tx<'_>, repo: &str, rec: &ManifestRecord, delta: i64) {
    let bytes = rec.size as i64 * delta;
    tx.add(
        Cf::Counters,
        counter::repo(repo, counter::REPO_ARTIFACTS),
        delta,
    );
    tx.add(
        Cf::Counters,
        counter::repo(repo, counter::REPO_MANIFEST_BYTES),
        bytes,
    );
    tx.add(
        Cf::Counters,
        counter::repo(repo, &counter::repo_kind(rec.kind())),
        delta,
    );
    tx.add(
        Cf::Counters,
        counter::registry_manifest_bytes(registry_of(repo)),
        bytes,
    );
}

/// The value kept in [`Cf::Refs`] for a reference.
pub(crate) const REF_BLOB: &[u8] = b"b";
pub(crate) const REF_MANIFEST: &[u8] = b"m";
/// The same references of a manifest in the recycle bin: they keep what
/// it references from garbage collection until the bin lets it go.
pub(crate) const REF_BLOB_BINNED: &[u8] = b"B";
pub(crate) const REF_MANIFEST_BINNED: &[u8] = b"M";

impl Meta {
    pub fn new(kv: impl KvStore) -> Meta {
        Meta {
            inner: Arc::new(kv),
            bin_ms: 0,
        }
    }

    /// Keep deleted manifests and tags in the recycle bin for `ms` before
    /// garbage collection removes them (0: no bin, a delete is final).
    pub fn with_recycle_bin(mut self, ms: u64) -> Meta {
        self.bin_ms = ms;
        self
    }

    /// How long the recycle bin keeps what is deleted (0: no bin).
    pub fn recycle_bin_ms(&self) -> u64 {
        self.bin_ms
    }

    pub(crate) fn kv(&self) -> &dyn KvStore {
        &*self.inner
    }

    /// Engine figures for `/metrics` (see [`KvStore::stats`]).
    pub fn engine_stats(&self) -> Vec<(String, f64)> {
        self.kv().stats()
    }

    /// One counter's value (0 when never added to).
    pub fn counter(&self, name: &str) -> Result<i64> {
        let v = self.kv().get(Cf::Counters, name.as_bytes())?;
        Ok(crate::kv::counter_value(v.as_deref()))
    }

    /// The instance-wide counters ([`counter`]), by name.
    pub fn counters(&self) -> Result<Vec<(&'static str, i64)>> {
        counter::ALL
            .iter()
            .map(|c| {
                let v = self.kv().get(Cf::Counters, c.as_bytes())?;
                Ok((*c, crate::kv::counter_value(v.as_deref())))
            })
            .collect()
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

    /// Run a read from async code: inline when the engine's reads are
    /// cheap ([`KvStore::inline_reads`], RocksDB), on the blocking pool
    /// otherwise (a networked engine). Writes always go through
    /// [`Meta::run`].
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Meta) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.kv().inline_reads() {
            f(self)
        } else {
            self.run(f).await
        }
    }

    /// Records whose keys start with `prefix`, in key order, after `after`
    /// (a key outside the range: from its start, or nothing when past it),
    /// at most `n`: one seek, however many the family holds.
    pub(crate) fn scan_prefixed<T: DeserializeOwned>(
        &self,
        cf: Cf,
        prefix: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, T)>> {
        let after = match after {
            Some(a) if a.starts_with(prefix) => Some(a),
            Some(a) if a < prefix => None,
            Some(_) => return Ok(Vec::new()),
            None => None,
        };
        self.kv()
            .scan(cf, prefix.as_bytes(), after.map(str::as_bytes), n)?
            .into_iter()
            .map(|(k, v)| Ok((utf8(cf, k)?, dec(cf, &v)?)))
            .collect()
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, cf: Cf, key: &[u8]) -> Result<Option<T>> {
        match self.kv().get(cf, key)? {
            Some(v) => Ok(Some(dec(cf, &v)?)),
            None => Ok(None),
        }
    }
}

/// Write the repository record: its `updated` time, and its creation if it
/// is new. The record is the repository's guard key (see `tx.rs`): every
/// change in a repository writes it, blindly when it exists, so concurrent
/// pushes into one repository do not conflict over it, while a transaction
/// that reads it with `get` (deleting the repository, a sweep of its
/// unreferenced blobs) conflicts with every change made meanwhile.
pub(crate) fn touch_repo(tx: &mut Tx<'_>, repo: &str, now: u64) -> Result<()> {
    let created_ms = match tx.peek_as::<RepoRecord>(Cf::Repos, repo.as_bytes())? {
        Some(r) => r.created_ms,
        // Creating it: the absence is a condition, so two creators agree.
        None => match tx.get_as::<RepoRecord>(Cf::Repos, repo.as_bytes())? {
            Some(r) => r.created_ms,
            None => {
                tx.add(Cf::Counters, counter::REPOSITORIES, 1);
                tx.add(
                    Cf::Counters,
                    counter::registry_repositories(registry_of(repo)),
                    1,
                );
                now
            }
        },
    };
    tx.put_as(
        Cf::Repos,
        repo.as_bytes(),
        &RepoRecord {
            created_ms,
            updated_ms: now,
            rev: fresh_rev(),
        },
    );
    Ok(())
}

/// Link `digest` into `repo` if it is not linked yet. A new link bumps the
/// blob's generation (creating the blob record when `create` gives its size
/// and the instance has none) and indexes the repository under the blob.
/// Returns the blob's size, or `None` when the blob is unknown and not to
/// be created.
fn add_link(
    tx: &mut Tx<'_>,
    repo: &str,
    digest: &Digest,
    create: Option<u64>,
) -> Result<Option<u64>> {
    let d = digest.to_string();
    let lk = key2(repo, &d);
    if let Some(l) = tx.get_as::<LinkRecord>(Cf::Links, &lk)? {
        return Ok(Some(l.size));
    }
    let now = now_millis();
    let blob = match (tx.get_as::<BlobRecord>(Cf::Blobs, d.as_bytes())?, create) {
        (Some(mut b), _) => {
            b.generation += 1;
            b
        }
        (None, Some(size)) => {
            // Bytes garbage collection is deleting cannot become a blob
            // again until it is done (gc.rs).
            if tx.get(Cf::Deleting, d.as_bytes())?.is_some() {
                return Err(MetaError::BlobBeingDeleted(d));
            }
            tx.add(Cf::Counters, counter::BLOBS, 1);
            tx.add(Cf::Counters, counter::BLOB_BYTES, size as i64);
            BlobRecord {
                size,
                created_ms: now,
                generation: 1,
            }
        }
        (None, None) => return Ok(None),
    };
    let size = blob.size;
    tx.put_as(Cf::Blobs, d.as_bytes(), &blob);
    tx.put_as(
        Cf::Links,
        lk,
        &LinkRecord {
            size,
            linked_ms: now,
        },
    );
    tx.put(Cf::BlobRepos, key2(&d, repo), Vec::new());
    tx.add(
        Cf::Counters,
        counter::repo(repo, counter::REPO_BYTES),
        size as i64,
    );
    registry_link(tx, repo, &d, size, 1)?;
    touch_repo(tx, repo, now)?;
    Ok(Some(size))
}

impl Meta {
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
            .map(|(k, _)| utf8(Cf::Repos, k))
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
    /// may serve it, in one transaction. For bytes just committed.
    pub fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        self.transact(|tx| add_link(tx, repo, digest, Some(size)).map(|_| ()))
    }

    /// A cross-repository mount: link `digest` into `repo` if `from` links
    /// it (or, with `from = None`, if the instance stores it), checked and
    /// linked in one transaction. Returns the blob's size, or `None` when
    /// there is nothing to mount (the client uploads instead).
    pub fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> Result<Option<u64>> {
        self.transact(|tx| {
            if let Some(from) = from {
                let k = key2(from, &digest.to_string());
                if tx.get(Cf::Links, &k)?.is_none() {
                    return Ok(None);
                }
            }
            add_link(tx, repo, digest, None)
        })
    }

    /// Remove a repository's link to a blob. The bytes stay until garbage
    /// collection. Returns whether a link existed.
    pub fn unlink_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let d = digest.to_string();
        self.transact(|tx| {
            let k = key2(repo, &d);
            let Some(link) = tx.get_as::<LinkRecord>(Cf::Links, &k)? else {
                return Ok(false);
            };
            drop_link(tx, repo, &d, link.size)?;
            touch_repo(tx, repo, now_millis())?;
            Ok(true)
        })
    }

    /// Repositories that link `digest`, in name order, after `after`, at
    /// most `n` (the blob → repositories index).
    pub fn blob_repos(
        &self,
        digest: &Digest,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<String>> {
        let d = digest.to_string();
        let prefix = prefix1(&d);
        let after = after.map(|a| key2(&d, a));
        self.kv()
            .scan(Cf::BlobRepos, &prefix, after.as_deref(), n)?
            .into_iter()
            .map(|(k, _)| utf8(Cf::BlobRepos, k[prefix.len()..].to_vec()))
            .collect()
    }

    /// Delete the record of a blob no repository links, provided nothing
    /// linked it since its generation was `generation` (garbage
    /// collection's re-check and delete, one transaction). Returns whether
    /// the record was deleted; the bytes are the caller's to remove after.
    pub fn sweep_blob(&self, digest: &Digest, generation: u64) -> Result<bool> {
        let d = digest.to_string();
        self.transact(|tx| {
            let Some(b) = tx.get_as::<BlobRecord>(Cf::Blobs, d.as_bytes())? else {
                return Ok(false);
            };
            // The blob record guards the links to it: a link made after the
            // get above changes it and this commit conflicts.
            if b.generation != generation
                || !tx.scan(Cf::BlobRepos, &prefix1(&d), None, 1)?.is_empty()
            {
                return Ok(false);
            }
            tx.delete(Cf::Blobs, d.as_bytes());
            tx.add(Cf::Counters, counter::BLOBS, -1);
            tx.add(Cf::Counters, counter::BLOB_BYTES, -(b.size as i64));
            Ok(true)
        })
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

    /// Check a manifest's references, store it, point its tags at it
    /// (moving them if they pointed elsewhere), index it as a referrer of
    /// its subject and under everything it references: one transaction.
    /// A reference deleted concurrently makes it retry (and then refuse).
    pub fn put_manifest(&self, p: PutManifest<'_>) -> Result<std::result::Result<(), Refused>> {
        let d = p.digest.to_string();
        let mut record = p.record;
        record.blobs.clear();
        record.children.clear();
        for r in &p.refs {
            match r {
                Ref::Blob { digest, .. } => record.blobs.push(digest.to_string()),
                Ref::Manifest { digest } => record.children.push(digest.to_string()),
            }
        }
        self.transact(|tx| {
            if !p.allow_missing {
                if let Err(why) = check_refs(tx, p.repo, &p.refs)? {
                    return Ok(Err(why));
                }
            }
            let now = now_millis();
            let mk = key2(p.repo, &d);
            // Read as a condition: the repository's artifact count and
            // bytes change exactly once however many push it at once.
            let mut record = record.clone();
            match tx.get(Cf::Manifests, &mk)? {
                Some(v) => {
                    let old = dec_manifest(&v)?.0;
                    // Keep the first push time when the same manifest comes
                    // again.
                    record.pushed_ms = old.pushed_ms;
                    if old.size != record.size || old.kind() != record.kind() {
                        charge(
                            tx,
                            registry_of(p.repo),
                            record.size.saturating_sub(old.size),
                        )?;
                        count_manifest(tx, p.repo, &old, -1);
                        count_manifest(tx, p.repo, &record, 1);
                    }
                }
                None => {
                    charge(tx, registry_of(p.repo), record.size)?;
                    count_manifest(tx, p.repo, &record, 1)
                }
            }
            // Pushed again while in the recycle bin: it is back, and the
            // bin no longer holds it.
            crate::bin::unbin_manifest(tx, p.repo, &d)?;
            record.rev = fresh_rev();
            tx.put(Cf::Manifests, mk, enc_manifest(&record, p.body));
            for tag in p.tags {
                point_tag(tx, p.repo, tag, &d, now, p.by)?;
            }
            if let Some((subject, r)) = &p.referrer {
                tx.put_as(Cf::Referrers, key3(p.repo, &subject.to_string(), &d), r);
            }
            for r in &p.refs {
                let kind = match r {
                    Ref::Blob { .. } => REF_BLOB,
                    Ref::Manifest { .. } => REF_MANIFEST,
                };
                tx.put(Cf::Refs, key3(p.repo, &r.digest().to_string(), &d), kind);
            }
            touch_repo(tx, p.repo, now)?;
            Ok(Ok(()))
        })
    }

    /// Manifests of `repo` that reference `target` (as a blob or a child),
    /// in digest order, at most `n` (the reverse of a manifest's `blobs`
    /// and `children`, without a scan of every manifest).
    pub fn referenced_by(&self, repo: &str, target: &Digest, n: usize) -> Result<Vec<String>> {
        self.kv()
            .scan(Cf::Refs, &prefix2(repo, &target.to_string()), None, n)?
            .iter()
            .map(|(k, _)| last_component(Cf::Refs, k))
            .collect()
    }

    /// Remove a tag only, recording the removal in the tag's history as
    /// done `by` a principal. Returns whether it existed.
    ///
    /// With a recycle bin, the tag goes to it and can be restored.
    pub fn delete_tag(&self, repo: &str, tag: &str, by: &str) -> Result<bool> {
        self.delete_tag_where(repo, tag, None, by)
    }

    /// Delete `tag` (only if it points at `only_if`, when given) as one
    /// transaction, into the recycle bin when there is one.
    pub(crate) fn delete_tag_where(
        &self,
        repo: &str,
        tag: &str,
        only_if: Option<&str>,
        by: &str,
    ) -> Result<bool> {
        self.transact(|tx| {
            let now = now_millis();
            let Some(t) = tx.get_as::<TagRecord>(Cf::Tags, &key2(repo, tag))? else {
                return Ok(false);
            };
            if only_if.is_some_and(|d| d != t.digest)
                || !remove_tag(tx, repo, tag, Some(&t.digest), now, by)?
            {
                return Ok(false);
            }
            if self.bin_ms > 0 {
                crate::bin::bin_tag(tx, repo, &t.digest, tag, now, by);
            }
            touch_repo(tx, repo, now)?;
            Ok(true)
        })
    }

    /// Remove a manifest, every tag pointing at it (each removal recorded
    /// in the tag history as done `by`), its referrer entry and its
    /// reference index rows — into the recycle bin, with its tags, when
    /// there is one. Returns whether it existed.
    pub fn delete_manifest(&self, repo: &str, digest: &Digest, by: &str) -> Result<bool> {
        let d = digest.to_string();
        self.transact(|tx| {
            let found = remove_manifest(tx, repo, &d, by, self.bin_ms > 0)?;
            if found {
                touch_repo(tx, repo, now_millis())?;
            }
            Ok(found)
        })
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
        self.kv()
            .scan(
                Cf::Referrers,
                &prefix2(repo, &subject.to_string()),
                None,
                limit,
            )?
            .iter()
            .map(|(_, v)| dec(Cf::Referrers, v))
            .collect()
    }

    // ---- upload sessions ----------------------------------------------

    pub fn upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        self.get(Cf::Uploads, id.as_bytes())
    }

    /// Record a new, empty session without waiting for the disk: losing it
    /// to a machine crash loses no acknowledged byte (the client's next
    /// request gets BLOB_UPLOAD_UNKNOWN and starts over), and the first
    /// flushed write after it makes it durable.
    ///
    /// A session with an owner (`rec.by`) is counted in the owner's
    /// counter (`counter::upload_owner`) and against `limits.per_principal`:
    /// the counter is read as a condition of the commit (two of the
    /// principal's opens never both see room for one) and the limit refuses
    /// with [`MetaError::TooManyUploads`]. One read, however many sessions
    /// the principal opened and closed before (no scan over their rows'
    /// tombstones). Without a limit the add is blind: no conflicts.
    ///
    /// Every session counts against `limits.total`: it takes a place in one
    /// of [`UPLOAD_SLOTS`] counters, each holding at most its share of the
    /// limit — first the slot its id hashes to, else the next with room. The
    /// taken slot's counter is read as a condition of the commit, so the
    /// shares, and so the total, are never exceeded; the limit refuses with
    /// [`MetaError::TooManyUploadsTotal`] only when every slot is full, that
    /// is with exactly `total` sessions open. Two opens conflict only when
    /// they take the same slot.
    ///
    /// Closing a session removes its row and subtracts from its slot
    /// blindly, so closes never conflict with anything.
    pub fn open_upload(&self, id: &str, rec: &UploadRecord, limits: UploadLimits) -> Result<()> {
        self.transact(|tx| {
            let mut rec = rec.clone();
            rec.slot = None;
            rec.counted = false;
            if let Some(total) = limits.total {
                let slot = take_upload_slot(tx, id, total)?;
                tx.add(Cf::Counters, counter::upload_slot(slot), 1);
                rec.slot = Some(slot);
            }
            if let Some(p) = &rec.by {
                // counted always (a limit set later sees every session);
                // read only under a limit, so without one the principal's
                // opens do not serialize
                let owner = counter::upload_owner(p);
                if let Some(limit) = limits.per_principal {
                    let open = crate::kv::counter_value(
                        tx.get(Cf::Counters, owner.as_bytes())?.as_deref(),
                    )
                    .max(0) as usize;
                    if open >= limit {
                        return Err(MetaError::TooManyUploads {
                            principal: p.clone(),
                            open,
                        });
                    }
                }
                tx.add(Cf::Counters, owner, 1);
                rec.counted = true;
                tx.put(Cf::UploadOwners, key2(p, id), Vec::new());
            }
            tx.put_as(Cf::Uploads, id.as_bytes(), &rec);
            tx.no_sync();
            Ok(())
        })
    }

    /// Advance a session that still exists to `rec` (a session removed
    /// meanwhile, by the reaper or a cancel, is not brought back). Returns
    /// whether it existed.
    pub fn put_upload(&self, id: &str, rec: &UploadRecord) -> Result<bool> {
        self.transact(|tx| {
            let Some(was) = tx.get_as::<UploadRecord>(Cf::Uploads, id.as_bytes())? else {
                return Ok(false);
            };
            // who holds it and where it is counted stay as opened
            let rec = UploadRecord {
                by: was.by,
                slot: was.slot,
                ..rec.clone()
            };
            tx.put_as(Cf::Uploads, id.as_bytes(), &rec);
            Ok(true)
        })
    }

    pub fn delete_upload(&self, id: &str) -> Result<()> {
        self.transact(|tx| close_upload(tx, id))
    }

    /// Close an upload: link the blob into the repository and drop the
    /// session record, atomically.
    pub fn complete_upload(&self, id: &str, repo: &str, digest: &Digest, size: u64) -> Result<()> {
        self.transact(|tx| {
            add_link(tx, repo, digest, Some(size))?;
            close_upload(tx, id)
        })
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
            .map(|(k, v)| Ok((utf8(Cf::Uploads, k)?, dec(Cf::Uploads, &v)?)))
            .collect()
    }
}

/// A slot of the instance-wide upload count with room under `total`: the
/// one `id` hashes to, else the next with room. Every counter looked at is
/// read as a condition of the commit, so the refusal too sees one moment.
fn take_upload_slot(tx: &mut Tx<'_>, id: &str, total: usize) -> Result<u8> {
    // FNV-1a: any spread will do, the ids are random
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let first = (hash % u64::from(UPLOAD_SLOTS)) as u8;
    let mut open = 0;
    for i in 0..UPLOAD_SLOTS {
        let slot = (first + i) % UPLOAD_SLOTS;
        let k = counter::upload_slot(slot);
        let held = crate::kv::counter_value(tx.get(Cf::Counters, k.as_bytes())?.as_deref());
        if held < upload_slot_cap(total, slot) {
            return Ok(slot);
        }
        open += held.max(0) as usize;
    }
    Err(MetaError::TooManyUploadsTotal { open })
}

/// Drop a session's record, its owner's row and its place in the count.
fn close_upload(tx: &mut Tx<'_>, id: &str) -> Result<()> {
    if let Some(rec) = tx.get_as::<UploadRecord>(Cf::Uploads, id.as_bytes())? {
        if let Some(p) = &rec.by {
            tx.delete(Cf::UploadOwners, key2(p, id));
            if rec.counted {
                tx.add(Cf::Counters, counter::upload_owner(p), -1);
            }
        }
        if let Some(slot) = rec.slot {
            tx.add(Cf::Counters, counter::upload_slot(slot), -1);
        }
    }
    tx.delete(Cf::Uploads, id.as_bytes());
    Ok(())
}

/// Every reference of a manifest is in the repository (read with `get`:
/// deleting one concurrently conflicts with the put).
fn check_refs(
    tx: &mut Tx<'_>,
    repo: &str,
    refs: &[Ref],
) -> Result<std::result::Result<(), Refused>> {
    for r in refs {
        let k = key2(repo, &r.digest().to_string());
        match r {
            Ref::Blob { digest, size } => match tx.get_as::<LinkRecord>(Cf::Links, &k)? {
                Some(l) if l.size == *size => {}
                Some(l) => {
                    return Ok(Err(Refused::SizeMismatch {
                        digest: digest.clone(),
                        declared: *size,
                        stored: l.size,
                    }))
                }
                // A config or layer that is itself a manifest of this
                // repository is fine too.
                None if tx.get(Cf::Manifests, &k)?.is_some() => {}
                None => return Ok(Err(Refused::Missing(r.clone()))),
            },
            Ref::Manifest { .. } => {
                if tx.get(Cf::Manifests, &k)?.is_none() {
                    return Ok(Err(Refused::Missing(r.clone())));
                }
            }
        }
    }
    Ok(Ok(()))
}

pub(crate) fn utf8(cf: Cf, k: Vec<u8>) -> Result<String> {
    String::from_utf8(k).map_err(|e| MetaError::Corrupt {
        cf: cf.name(),
        reason: e.to_string(),
    })
}

/// Point `tag` at manifest `d` (creating or moving it), counting a new tag
/// and recording a move in the tag's history. The tag is read with `get`,
/// so concurrent moves of one tag are serialised and each recorded once.
pub(crate) fn point_tag(
    tx: &mut Tx<'_>,
    repo: &str,
    tag: &str,
    d: &str,
    now: u64,
    by: &str,
) -> Result<()> {
    let tk = key2(repo, tag);
    let (created_ms, from) = match tx.get_as::<TagRecord>(Cf::Tags, &tk)? {
        Some(old) if old.digest == d => {
            // Pushed again onto the same manifest: not a move.
            tx.put_as(
                Cf::Tags,
                tk,
                &TagRecord {
                    updated_ms: now,
                    ..old
                },
            );
            return Ok(());
        }
        Some(old) => {
            check_tag_change(tx, repo, tag, TagChange::Move, by)?;
            tx.delete(Cf::TagsByDigest, key3(repo, &old.digest, tag));
            (old.created_ms, Some(old.digest))
        }
        None => {
            check_tag_change(tx, repo, tag, TagChange::Create, by)?;
            tx.add(Cf::Counters, counter::repo(repo, counter::REPO_TAGS), 1);
            (now, None)
        }
    };
    tx.put_as(
        Cf::Tags,
        tk,
        &TagRecord {
            digest: d.to_string(),
            created_ms,
            updated_ms: now,
        },
    );
    tx.put(Cf::TagsByDigest, key3(repo, d, tag), Vec::new());
    crate::repos::record_tag_event(tx, repo, tag, from, Some(d.to_string()), now, by);
    Ok(())
}

/// Remove `tag` if it exists (and, with `only_if`, points at that
/// digest), recording the removal. Returns whether it was removed.
pub(crate) fn remove_tag(
    tx: &mut Tx<'_>,
    repo: &str,
    tag: &str,
    only_if: Option<&str>,
    now: u64,
    by: &str,
) -> Result<bool> {
    let tk = key2(repo, tag);
    let Some(old) = tx.get_as::<TagRecord>(Cf::Tags, &tk)? else {
        return Ok(false);
    };
    if only_if.is_some_and(|d| d != old.digest) {
        return Ok(false);
    }
    check_tag_change(tx, repo, tag, TagChange::Delete, by)?;
    tx.delete(Cf::Tags, tk);
    tx.delete(Cf::TagsByDigest, key3(repo, &old.digest, tag));
    tx.add(Cf::Counters, counter::repo(repo, counter::REPO_TAGS), -1);
    crate::repos::record_tag_event(tx, repo, tag, Some(old.digest), None, now, by);
    Ok(true)
}

/// Remove manifest `d` of `repo` with its tags, referrer entry and
/// reference rows, uncounting it; with `bin`, into the recycle bin (its
/// tags and referrer entry kept in the bin entry, its reference rows kept
/// as binned). Returns whether it existed.
pub(crate) fn remove_manifest(
    tx: &mut Tx<'_>,
    repo: &str,
    d: &str,
    by: &str,
    bin: bool,
) -> Result<bool> {
    let mk = key2(repo, d);
    // The manifest record guards the tags pointing at it: every tag put
    // onto it writes the record too.
    let Some(v) = tx.get(Cf::Manifests, &mk)? else {
        return Ok(false);
    };
    let (rec, body) = dec_manifest(&v)?;
    let mut tags = Vec::new();
    tx.delete(Cf::Manifests, mk);
    count_manifest(tx, repo, &rec, -1);
    let now = now_millis();
    let prefix = prefix2(repo, d);
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = tx.scan(Cf::TagsByDigest, &prefix, after.as_deref(), 1000)?;
        let Some((last, _)) = rows.last() else { break };
        after = Some(last.clone());
        for (k, _) in &rows {
            let tag = last_component(Cf::TagsByDigest, k)?;
            // A tag moved away meanwhile is not ours to delete: the read
            // makes a concurrent move conflict with us.
            if remove_tag(tx, repo, &tag, Some(d), now, by)? {
                tags.push(tag);
            }
            tx.delete(Cf::TagsByDigest, k.clone());
        }
    }
    let mut referrer = None;
    if let Some(subject) = &rec.subject {
        let rk = key3(repo, subject, d);
        if bin {
            referrer = tx
                .peek_as::<ReferrerRecord>(Cf::Referrers, &rk)?
                .map(|r| (subject.clone(), r));
        }
        tx.delete(Cf::Referrers, rk);
    }
    for (targets, binned) in [
        (&rec.blobs, REF_BLOB_BINNED),
        (&rec.children, REF_MANIFEST_BINNED),
    ] {
        for target in targets {
            let k = key3(repo, target, d);
            match bin {
                true => tx.put(Cf::Refs, k, binned),
                false => tx.delete(Cf::Refs, k),
            }
        }
    }
    if bin {
        crate::bin::bin_manifest(
            tx,
            repo,
            d,
            crate::bin::BinnedManifest {
                record: rec,
                tags,
                referrer,
                deleted_ms: now,
                by: by.to_string(),
            },
            &body,
        );
    }
    Ok(true)
}
