use crate::metered::{Observer, ObserverSlot};
use crate::pool::Pool;
use crate::remote::{Pending, Remote};
use berth_core::{Algorithm, Digest, Hasher};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path as ObjPath;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::io::AsyncReadExt;

/// A stream of blob bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob not found")]
    NotFound,
    #[error("upload session not found")]
    SessionNotFound,
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// The request body failed (client went away, malformed chunked body).
    #[error("request body: {0}")]
    Body(String),
    /// The body was longer or shorter than the length the client declared.
    #[error("body length {got} does not match the declared length {expected}")]
    LengthMismatch { expected: u64, got: u64 },
    #[error("storage I/O on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// An upload session's state in the object store could not be read.
    #[error("{0}")]
    Corrupt(String),
    /// The filesystem is full, or would be left with less than the free
    /// space the metadata store is guaranteed (`storage.min_free_bytes`).
    #[error("{0}")]
    Full(String),
}

/// Whether an I/O error says the filesystem (or the user's quota) is full.
fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| {
        if is_full(&source) {
            return StorageError::Full(format!("no space left writing {}", path.display()));
        }
        StorageError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Bytes free for an unprivileged writer on the filesystem holding `path`.
#[cfg(target_os = "linux")]
fn free_bytes(path: &Path) -> Option<u64> {
    let c = c_path(path).ok()?;
    // SAFETY: statvfs with a NUL-terminated path and a zeroed struct to fill.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0)
            .then(|| (st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
}

#[cfg(not(target_os = "linux"))]
fn free_bytes(_: &Path) -> Option<u64> {
    None
}

/// `path` as a C string, for the system calls std does not wrap.
#[cfg(target_os = "linux")]
pub(crate) fn c_path(path: &Path) -> std::io::Result<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

/// A blocking task on `path` that panicked or was cancelled.
pub(crate) fn joined(path: &Path) -> impl Fn(tokio::task::JoinError) -> StorageError + Copy + '_ {
    move |e| StorageError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    }
}

/// Deletes sent to a remote object store at once ([`BlobStore::delete_many`]).
const DELETES_IN_FLIGHT: usize = 16;

/// Where a blob lives in the object store.
pub fn blob_path(d: &Digest) -> ObjPath {
    let hex = d.hex();
    ObjPath::from(format!(
        "blobs/{}/{}/{}",
        d.algorithm().as_str(),
        &hex[..2],
        hex
    ))
}

/// In-memory state of an open session: the running sha256 over the staged
/// bytes, if it is known to cover exactly `offset` bytes. After a restart it
/// is gone and the staged file is re-hashed at the end.
#[derive(Default)]
pub struct SessionState {
    hasher: Option<(u64, Hasher)>,
    /// A remote session an append left for the commit in the same request.
    pending: Option<Pending>,
    /// The staging file's directory entry is known to be durable.
    entry_synced: bool,
}

/// What becomes of appended bytes: they stay staged across requests (a
/// `PATCH`: the staging file's name must be durable too), or the same request
/// commits them at once (a monolithic push: the commit's rename and directory
/// sync make them durable under their final name, so syncing the staging
/// directory would be wasted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    Stage,
    Commit,
}

/// Exclusive access to one upload session; held across a PATCH or PUT.
pub type SessionGuard = tokio::sync::OwnedMutexGuard<SessionState>;

/// Content-addressed blobs plus upload staging.
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    /// Set when `store` is a `LocalFileSystem` rooted here: sessions are
    /// staged in files and commits rename them into place.
    local_root: Option<PathBuf>,
    staging: PathBuf,
    /// Set for other stores: sessions live in the store itself.
    remote: Option<Remote>,
    /// Presigns blob GETs for redirects, valid this long.
    signer: Option<(Arc<dyn Signer>, std::time::Duration)>,
    /// Where a metered store (`metered.rs`) reports its requests.
    observer: Option<ObserverSlot>,
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<SessionState>>>>,
    ops: OpCounts,
    writes: Arc<Writes>,
    read_chunk: usize,
    /// Flush staged bytes and directory entries before acknowledging
    /// (default). Off: acknowledged data survives a crash of Berth but not
    /// of the machine, as with distribution.
    sync: bool,
    /// Local staging refuses bytes that would leave the filesystem with
    /// less free space than this (room for the metadata store's writes).
    min_free: u64,
    /// Stage with `O_DIRECT`, past the page cache (`staging.rs`).
    direct: bool,
}

const READ_CHUNK: usize = 256 * 1024;

/// Local reads of at least this many bytes, for a connection that sends
/// files (`BlobStore::get_for`), map the file.
const MIN_MAPPED: u64 = 1 << 20;
/// The longest run of a mapping one chunk of the stream hands out (its
/// residency is checked with one `mincore` call).
#[cfg(target_os = "linux")]
const MAPPED_RUN: usize = crate::mapped::RESIDENT_PAGES * 4096;
/// A shorter cached run than this (the rest of the chunk is not cached)
/// is read from the disk with the rest instead.
#[cfg(target_os = "linux")]
const MIN_MAPPED_RUN: usize = 64 * 1024;

/// What the blob store has done since start (for `/metrics`).
#[derive(Default)]
struct OpCounts {
    commits: AtomicU64,
    committed_bytes: AtomicU64,
    reads: AtomicU64,
    deletes: AtomicU64,
    digest_mismatches: AtomicU64,
    redirects: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Blob writes (appends and commits) begun since start and in flight now:
/// what background work (garbage collection's deletes) yields to.
#[derive(Default)]
struct Writes {
    begun: AtomicU64,
    in_flight: AtomicU64,
}

/// One write in flight, counted as such until dropped.
struct Writing(Arc<Writes>);

impl Writing {
    fn new(w: &Arc<Writes>) -> Writing {
        w.begun.fetch_add(1, Ordering::Relaxed);
        w.in_flight.fetch_add(1, Ordering::Relaxed);
        Writing(w.clone())
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A reading of the blob store's write activity ([`BlobStore::writes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteActivity {
    /// Writes begun since start.
    pub begun: u64,
    /// Writes going on at the reading.
    pub in_flight: u64,
}

impl WriteActivity {
    /// Whether writes went on between `earlier` and this reading: one was
    /// in flight at either, or one began in between.
    pub fn since(&self, earlier: &WriteActivity) -> bool {
        self.in_flight > 0 || earlier.in_flight > 0 || self.begun != earlier.begun
    }
}

impl BlobStore {
    /// The embedded default: blobs and staging under one local directory.
    pub fn local(root: &Path) -> Result<BlobStore, StorageError> {
        std::fs::create_dir_all(root.join("blobs")).map_err(io(root))?;
        std::fs::create_dir_all(root.join("uploads")).map_err(io(root))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(root)?;
        Ok(BlobStore {
            store: Arc::new(fs),
            local_root: Some(root.to_path_buf()),
            staging: root.join("uploads"),
            remote: None,
            signer: None,
            observer: None,
            sessions: Mutex::default(),
            ops: OpCounts::default(),
            writes: Arc::default(),
            read_chunk: READ_CHUNK,
            sync: true,
            min_free: 0,
            direct: true,
        })
    }

    /// Keep at least `bytes` free on the local filesystem: an upload that
    /// would go below is refused with [`StorageError::Full`] (before its
    /// bytes are read when its length is declared).
    pub fn reserve_free(mut self, bytes: u64) -> BlobStore {
        self.min_free = bytes;
        self
    }

    /// Refuse `incoming` more bytes (0: unknown yet) when the local
    /// filesystem has or would have less than the reserve free.
    fn check_free(&self, incoming: u64) -> Result<(), StorageError> {
        if self.min_free == 0 {
            return Ok(());
        }
        match free_bytes(&self.staging) {
            Some(free) if free < self.min_free.saturating_add(incoming) => Err(StorageError::Full(format!(
                "the registry's storage is full: {free} bytes free, {incoming} more asked, {} kept free (storage.min_free_bytes)",
                self.min_free
            ))),
            _ => Ok(()),
        }
    }

    /// Write staged bytes with `O_DIRECT` where the filesystem allows it,
    /// instead of through the page cache (see `staging.rs`).
    pub fn direct_io(mut self, direct: bool) -> BlobStore {
        self.direct = direct;
        self
    }

    /// Whether to flush before acknowledging (see [`BlobStore`]'s `sync`).
    pub fn synced(mut self, sync: bool) -> BlobStore {
        self.sync = sync;
        self
    }

    /// Any object store that has multipart uploads (S3, in memory): blobs
    /// and upload sessions in it, everything under `prefix` (`""`: at the
    /// bucket's root). See `remote.rs`.
    pub fn remote<S: ObjectStore + MultipartStore>(store: Arc<S>, prefix: &str) -> BlobStore {
        let root = ObjPath::from(prefix.trim_matches('/'));
        BlobStore {
            store: store.clone(),
            local_root: None,
            staging: PathBuf::new(),
            remote: Some(Remote::new(store.clone(), store, root)),
            signer: None,
            observer: None,
            sessions: Mutex::default(),
            ops: OpCounts::default(),
            writes: Arc::default(),
            read_chunk: READ_CHUNK,
            sync: true,
            min_free: 0,
            direct: false,
        }
    }

    /// The store's requests are reported through `slot` ([`BlobStore::observe`]).
    pub fn observed_by(mut self, slot: ObserverSlot) -> BlobStore {
        self.observer = Some(slot);
        self
    }

    /// Report every object store request to `f` (operation, duration,
    /// success), if the store is metered; once. Returns whether it is.
    pub fn observe(&self, f: Observer) -> bool {
        match &self.observer {
            Some(slot) => {
                let _ = slot.set(f);
                true
            }
            None => false,
        }
    }

    /// Blob reads may be redirected to URLs `signer` presigns, valid `ttl`.
    pub fn with_signer(mut self, signer: Arc<dyn Signer>, ttl: std::time::Duration) -> BlobStore {
        self.signer = Some((signer, ttl));
        self
    }

    /// A presigned URL that GETs blob `d` from the object store itself, if
    /// this store redirects reads.
    pub async fn presigned_get(&self, d: &Digest) -> Result<Option<String>, StorageError> {
        let Some((signer, ttl)) = &self.signer else {
            return Ok(None);
        };
        bump(&self.ops.redirects, 1);
        let url = signer
            .signed_url(http::Method::GET, &self.loc(d), *ttl)
            .await?;
        Ok(Some(url.to_string()))
    }

    /// Where a blob is in the store.
    fn loc(&self, d: &Digest) -> ObjPath {
        match &self.remote {
            Some(r) => r.at(&blob_path(d)),
            None => blob_path(d),
        }
    }

    fn staged(&self, id: &str) -> PathBuf {
        self.staging.join(id)
    }

    // ---- blobs --------------------------------------------------------

    /// Size of a stored blob, or `None`.
    pub async fn stat(&self, d: &Digest) -> Result<Option<u64>, StorageError> {
        match self.store.head(&self.loc(d)).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stream a blob, or the byte range `range` (already checked against the
    /// blob's size by the caller).
    pub async fn get(
        &self,
        d: &Digest,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<ByteStream, StorageError> {
        self.get_for(d, range, false).await
    }

    /// [`BlobStore::get`], for a connection whose writer sends runs of
    /// mapped files with `sendfile` (`mapped::file_range`): `sends_files`
    /// lets a large local blob's cached bytes go out as slices of a
    /// mapping of the file instead of copies.
    pub async fn get_for(
        &self,
        d: &Digest,
        range: Option<std::ops::Range<u64>>,
        sends_files: bool,
    ) -> Result<ByteStream, StorageError> {
        bump(&self.ops.reads, 1);
        let opts = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..Default::default()
        };
        let res = match self.store.get_opts(&self.loc(d), opts).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Err(StorageError::NotFound),
            Err(e) => return Err(e.into()),
        };
        match res.payload {
            // object_store reads local files 8 KiB at a time, one blocking
            // task per chunk; read bigger chunks, one ahead.
            GetResultPayload::File(file, path) => Ok(file_stream(
                file,
                path,
                res.range,
                self.read_chunk,
                sends_files,
            )),
            GetResultPayload::Stream(s) => Ok(s.map(|c| c.map_err(StorageError::from)).boxed()),
        }
    }

    /// Delete a blob's bytes (garbage collection's job, and tests').
    pub async fn delete(&self, d: &Digest) -> Result<(), StorageError> {
        bump(&self.ops.deletes, 1);
        match self.store.delete(&self.loc(d)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Delete the bytes of many blobs (a page of garbage collection's),
    /// `DELETES_IN_FLIGHT` at a time (on a local disk an unlink waits on
    /// the journal: several in flight overlap); one outcome per digest, in
    /// order.
    pub async fn delete_many(&self, ds: Vec<Digest>) -> Vec<Result<(), StorageError>> {
        futures::stream::iter(ds)
            .map(|d| async move { self.delete(&d).await })
            .buffered(DELETES_IN_FLIGHT)
            .collect()
            .await
    }

    /// Every stored blob object, as (digest, last modified in ms since the
    /// epoch, size), streamed (garbage collection's look for files no record
    /// owns). Objects whose names are not blob paths are skipped.
    pub fn list_blob_objects(&self) -> BoxStream<'_, Result<(Digest, u64, u64), StorageError>> {
        let rel = ObjPath::from("blobs");
        let prefix = match &self.remote {
            Some(r) => r.at(&rel),
            None => rel,
        };
        self.store
            .list(Some(&prefix))
            .filter_map(move |r| async move {
                match r {
                    Err(e) => Some(Err(e.into())),
                    Ok(meta) => {
                        let parts: Vec<String> = meta
                            .location
                            .parts()
                            .map(|p| p.as_ref().to_string())
                            .collect();
                        let [.., alg, _, hex] = parts.as_slice() else {
                            return None;
                        };
                        let d = Digest::parse(&format!("{alg}:{hex}")).ok()?;
                        (self.loc(&d) == meta.location).then(|| {
                            let ms = meta.last_modified.timestamp_millis().max(0) as u64;
                            Ok((d, ms, meta.size))
                        })
                    }
                }
            })
            .boxed()
    }

    // ---- upload sessions ----------------------------------------------

    /// Open a new session. Its staging file is made by the first append
    /// (or by a commit of nothing): an empty session has nothing to lose.
    pub async fn create_upload(&self, id: &str) -> Result<(), StorageError> {
        self.sessions
            .lock()
            .expect("lock")
            .insert(id.to_string(), Arc::default());
        Ok(())
    }

    /// Exclusive access to a session if nobody holds it now (for the reaper).
    pub fn try_lock_session(&self, id: &str) -> Option<SessionGuard> {
        self.session_mutex(id).try_lock_owned().ok()
    }

    fn session_mutex(&self, id: &str) -> Arc<tokio::sync::Mutex<SessionState>> {
        self.sessions
            .lock()
            .expect("lock")
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// Take exclusive access to a session (serialises PATCH/PUT on it).
    pub async fn lock_session(&self, id: &str) -> SessionGuard {
        self.session_mutex(id).lock_owned().await
    }

    /// Append `body` to a session whose durable length is `offset`. When
    /// `exact_len` is given the body must be exactly that long. Returns the new
    /// length once the bytes are on disk. On error the staged file is cut back
    /// to `offset`.
    ///
    /// How the bytes travel (buffers, write and hash tasks, `O_DIRECT`):
    /// `staging.rs`.
    pub async fn append<S, E>(
        &self,
        id: &str,
        state: &mut SessionState,
        offset: u64,
        body: S,
        exact_len: Option<u64>,
        then: Then,
    ) -> Result<u64, StorageError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let _writing = Writing::new(&self.writes);
        if let Some(r) = &self.remote {
            let held = state.pending.take();
            let stage = then == Then::Stage;
            let p = r.append(id, held, offset, body, exact_len, stage).await?;
            let n = p.offset();
            if !stage {
                state.pending = Some(p);
            }
            return Ok(n);
        }
        self.check_free(exact_len.unwrap_or(0))?;
        let p = self.staged(id);
        let mut hasher = match state.hasher.take() {
            Some((at, h)) if at == offset => Some(h),
            None if offset == 0 => Some(Hasher::new(Algorithm::Sha256)),
            _ => None,
        };
        let res = crate::staging::Append {
            path: p.clone(),
            offset,
            // bytes a commit follows are flushed by the commit
            sync: self.sync && then == Then::Stage,
            write_back: self.sync && !self.direct,
            direct: self.direct,
            sync_dir: (self.sync && then == Then::Stage && !state.entry_synced)
                .then(|| self.staging.clone()),
        }
        .run(body, exact_len, &mut hasher)
        .await;
        match res {
            Ok(n) => {
                state.hasher = hasher.map(|h| (offset + n, h));
                state.entry_synced |= self.sync && then == Then::Stage;
                Ok(offset + n)
            }
            Err(e) => {
                // Leave the session exactly as it was.
                state.hasher = None;
                if !matches!(e, StorageError::SessionNotFound) {
                    let sync = self.sync;
                    let _ = tokio::task::spawn_blocking(move || {
                        crate::staging::cut_back(&p, offset, sync)
                    })
                    .await;
                }
                Err(e)
            }
        }
    }

    /// Verify the `size` staged bytes of a session against `expected` and
    /// make them the blob `expected`. On a mismatch the staged bytes are
    /// removed. The session's staging file is gone afterwards either way
    /// (except on I/O errors, so the client may retry).
    pub async fn commit(
        &self,
        id: &str,
        state: &mut SessionState,
        size: u64,
        expected: &Digest,
    ) -> Result<(), StorageError> {
        let _writing = Writing::new(&self.writes);
        if let Some(r) = &self.remote {
            let held = state.pending.take();
            let actual = r
                .commit(id, held, size, expected, &self.loc(expected))
                .await?;
            if &actual != expected {
                bump(&self.ops.digest_mismatches, 1);
                return Err(StorageError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            self.forget(id);
            bump(&self.ops.commits, 1);
            bump(&self.ops.committed_bytes, size);
            return Ok(());
        }
        let p = self.staged(id);
        if size == 0 {
            // An empty blob: no append made the staging file.
            tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .await
                .map_err(io(&p))?;
        }
        let actual = match state.hasher.take() {
            Some((at, h)) if at == size && expected.algorithm() == Algorithm::Sha256 => h.finish(),
            _ => hash_file(&p, expected.algorithm()).await?,
        };
        if &actual != expected {
            bump(&self.ops.digest_mismatches, 1);
            self.abort(id).await?;
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        // Always replace: a rename over an existing (possibly damaged) file
        // leaves verified bytes either way.
        let root = self.local_root.as_ref().expect("a local store");
        let dest = root.join(blob_path(expected).as_ref());
        let (src, sync) = (p.clone(), self.sync);
        tokio::task::spawn_blocking(move || crate::staging::install(&src, &dest, sync))
            .await
            .map_err(joined(&p))??;
        self.forget(id);
        bump(&self.ops.commits, 1);
        bump(&self.ops.committed_bytes, size);
        Ok(())
    }

    /// Operations since start, as (name, count): `commits`,
    /// `committed_bytes`, `reads`, `deletes`, `digest_mismatches`,
    /// `redirects` (reads sent to a presigned URL), `sendfile_bytes` (blob
    /// bytes the connections sent from the page cache with sendfile; the
    /// process's, whichever store mapped them).
    pub fn op_counts(&self) -> [(&'static str, u64); 7] {
        let o = &self.ops;
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("commits", g(&o.commits)),
            ("committed_bytes", g(&o.committed_bytes)),
            ("reads", g(&o.reads)),
            ("deletes", g(&o.deletes)),
            ("digest_mismatches", g(&o.digest_mismatches)),
            ("redirects", g(&o.redirects)),
            #[cfg(target_os = "linux")]
            ("sendfile_bytes", crate::mapped::sent()),
            #[cfg(not(target_os = "linux"))]
            ("sendfile_bytes", 0),
        ]
    }

    /// Blob writes begun so far and in flight now (appends and commits of
    /// upload sessions).
    pub fn writes(&self) -> WriteActivity {
        WriteActivity {
            begun: self.writes.begun.load(Ordering::Relaxed),
            in_flight: self.writes.in_flight.load(Ordering::Relaxed),
        }
    }

    /// Remove a session's staged bytes (idempotent).
    pub async fn abort(&self, id: &str) -> Result<(), StorageError> {
        if let Some(r) = &self.remote {
            r.abort(id, true).await?;
            self.forget(id);
            return Ok(());
        }
        let p = self.staged(id);
        match tokio::fs::remove_file(&p).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
        self.forget(id);
        Ok(())
    }

    /// Drop a session's entry from the lock table (done by commit and
    /// abort; callers that find a session gone after locking it call it).
    pub fn forget(&self, id: &str) {
        self.sessions.lock().expect("lock").remove(id);
    }

    /// Entries in the session lock table (for `/metrics`: it must track the
    /// open sessions, not the ids clients send).
    pub fn session_entries(&self) -> usize {
        self.sessions.lock().expect("lock").len()
    }

    /// Staging files and their last modification time (for the reaper to
    /// find files no session record owns).
    pub async fn staged_files(&self) -> Result<Vec<(String, SystemTime)>, StorageError> {
        if let Some(r) = &self.remote {
            return r.sessions().await;
        }
        let mut out = Vec::new();
        let mut rd = tokio::fs::read_dir(&self.staging)
            .await
            .map_err(io(&self.staging))?;
        while let Some(e) = rd.next_entry().await.map_err(io(&self.staging))? {
            let m = e.metadata().await.map_err(io(&e.path()))?;
            if let (Some(name), Ok(t)) = (e.file_name().to_str(), m.modified()) {
                out.push((name.to_string(), t));
            }
        }
        Ok(out)
    }
}

/// Buffers of blob reads, kept for the next ones.
static READS: Pool = Pool::new(READ_CHUNK, 32);

/// A pooled read buffer handed out as `Bytes`: back to the pool when the
/// response is done with it.
struct Chunk {
    v: Vec<u8>,
    n: usize,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.v[..self.n]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        READS.put(std::mem::take(&mut self.v));
    }
}

/// A pooled read buffer of at least `len` bytes.
fn read_buffer(len: usize) -> Vec<u8> {
    let mut v = READS.get();
    if v.len() < len {
        v.resize(len, 0);
    }
    v
}

/// Read `len` bytes at `at` of `file` into a pooled buffer, blocking.
fn read_chunk(
    file: &std::fs::File,
    path: &Path,
    at: u64,
    len: usize,
) -> Result<Bytes, StorageError> {
    use std::os::unix::fs::FileExt;
    let mut v = read_buffer(len);
    let mut got = 0;
    while got < len {
        match file.read_at(&mut v[got..len], at + got as u64) {
            Ok(0) => {
                return Err(io(path)(std::io::Error::from(
                    std::io::ErrorKind::UnexpectedEof,
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(path)(e)),
        }
    }
    Ok(Bytes::from_owner(Chunk { v, n: len }))
}

/// What a read that must not wait for the disk found.
enum Cached {
    /// These bytes (from `at`; possibly fewer than asked) were in memory.
    Bytes(Bytes),
    /// None of them were: read from the disk.
    No,
    /// The kernel cannot read without waiting (`RWF_NOWAIT` unknown).
    Unsupported,
}

/// Read up to `len` bytes at `at` of `file` only if the page cache has
/// them (`preadv2` with `RWF_NOWAIT`): a copy from memory, done on the
/// request's own task, with no thread handed the work.
#[cfg(target_os = "linux")]
fn read_cached(file: &std::fs::File, at: u64, len: usize) -> Cached {
    use std::os::fd::AsRawFd;
    let mut v = read_buffer(len);
    let iov = libc::iovec {
        iov_base: v.as_mut_ptr().cast(),
        iov_len: len,
    };
    // SAFETY: one iovec over `len` bytes of `v`, which outlives the call.
    let n = unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            at as libc::off_t,
            libc::RWF_NOWAIT,
        )
    };
    if n > 0 {
        return Cached::Bytes(Bytes::from_owner(Chunk { v, n: n as usize }));
    }
    let err = std::io::Error::last_os_error().raw_os_error();
    READS.put(v);
    match err {
        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ENOSYS) if n < 0 => {
            Cached::Unsupported
        }
        // end of file, EAGAIN (not cached), EINTR, other errors: the
        // blocking read reports or retries them
        _ => Cached::No,
    }
}

#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &std::fs::File, _at: u64, _len: usize) -> Cached {
    Cached::Unsupported
}

/// Stream `range` of a local file in reads of up to `chunk` bytes. Bytes
/// the page cache holds are copied on the request's task (`read_cached`);
/// the others are read on the blocking pool, the next such read running
/// while the current chunk is sent. No thread is held between chunks, so a
/// slow client costs none.
fn file_stream(
    file: std::fs::File,
    path: PathBuf,
    range: std::ops::Range<u64>,
    chunk: usize,
    sends_files: bool,
) -> ByteStream {
    type Pending = tokio::task::JoinHandle<Result<Bytes, StorageError>>;
    struct State {
        file: Arc<std::fs::File>,
        path: Arc<PathBuf>,
        at: u64,
        end: u64,
        chunk: usize,
        /// A read from the disk already under way, of the bytes at `at`.
        ahead: Option<Pending>,
        /// `RWF_NOWAIT` reads work here.
        nowait: bool,
        failed: bool,
        /// The range mapped, for sends straight from the page cache.
        #[cfg(target_os = "linux")]
        mapped: Option<crate::mapped::Mapped>,
        /// Where `range` starts (offsets into `mapped`).
        from: u64,
    }
    impl State {
        /// The length of the next read, at `at`.
        fn len(&self) -> usize {
            (self.end - self.at).min(self.chunk as u64) as usize
        }
        /// The bytes at `at` as a slice of the mapping, if the page cache
        /// holds enough of them to be worth a send of their own.
        fn cached_run(&self) -> Option<Bytes> {
            #[cfg(target_os = "linux")]
            if let Some(m) = &self.mapped {
                let from = (self.at - self.from) as usize;
                let want = (self.end - self.at) as usize;
                let n = m.resident(from, want.min(MAPPED_RUN));
                if n == want.min(MAPPED_RUN) || n >= MIN_MAPPED_RUN {
                    return Some(m.slice(from, n));
                }
            }
            None
        }
        /// Read the bytes at `at` on the blocking pool, unless none remain.
        fn spawn(&self) -> Option<Pending> {
            if self.at >= self.end {
                return None;
            }
            let (file, path, at, len) = (self.file.clone(), self.path.clone(), self.at, self.len());
            Some(tokio::task::spawn_blocking(move || {
                read_chunk(&file, &path, at, len)
            }))
        }
    }
    #[cfg(target_os = "linux")]
    if range.end - range.start > 4 * chunk as u64 {
        use std::os::fd::AsRawFd;
        // SAFETY: an access-pattern hint on a descriptor we own.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        }
    }
    let file = Arc::new(file);
    #[cfg(target_os = "linux")]
    let mapped = (sends_files && range.end - range.start >= MIN_MAPPED)
        .then(|| crate::mapped::map(&file, &range))
        .flatten();
    #[cfg(not(target_os = "linux"))]
    let _ = sends_files;
    let state = State {
        file,
        path: Arc::new(path),
        at: range.start,
        end: range.end,
        chunk,
        ahead: None,
        nowait: true,
        failed: false,
        #[cfg(target_os = "linux")]
        mapped,
        from: range.start,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.failed || st.at >= st.end {
            return None;
        }
        if st.ahead.is_none() {
            if let Some(b) = st.cached_run() {
                st.at += b.len() as u64;
                return Some((Ok(b), st));
            }
        }
        let from_disk = |st: &State| st.spawn().expect("bytes remain");
        let pending = match st.ahead.take() {
            Some(p) => p,
            None if st.nowait => match read_cached(&st.file, st.at, st.len()) {
                Cached::Bytes(b) => {
                    st.at += b.len() as u64;
                    return Some((Ok(b), st));
                }
                Cached::No => from_disk(&st),
                Cached::Unsupported => {
                    st.nowait = false;
                    from_disk(&st)
                }
            },
            None => from_disk(&st),
        };
        match pending.await.unwrap_or_else(|e| Err(joined(&st.path)(e))) {
            Ok(b) => {
                st.at += b.len() as u64;
                // The disk is being read: keep one read ahead of the client
                // (unless the page cache now holds what comes next).
                st.ahead = match st.cached_run() {
                    Some(_) => None,
                    None => st.spawn(),
                };
                Some((Ok(b), st))
            }
            Err(e) => {
                st.failed = true;
                Some((Err(e), st))
            }
        }
    })
    .boxed()
}

async fn hash_file(p: &Path, alg: Algorithm) -> Result<Digest, StorageError> {
    let mut f = tokio::fs::File::open(p).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            StorageError::SessionNotFound
        } else {
            io(p)(e)
        }
    })?;
    let mut h = Hasher::new(alg);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await.map_err(io(p))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}
