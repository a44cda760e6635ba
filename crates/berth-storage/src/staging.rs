//! Writing one request's body into a staging file.
//!
//! The request task reads the body and copies it into page-aligned buffers
//! (256 KiB, or 1 MiB for bodies hashed apart); each full buffer is written
//! at its offset by a short task on the blocking pool (four in flight) and,
//! for bodies of 4 MiB or more, hashed by another (in order; smaller bodies
//! are hashed by the request task as they arrive). Receiving, hashing and
//! the disk overlap on different cores, memory per upload is a few buffers
//! whatever chunk sizes the client sends, body chunks are freed on the
//! thread that allocated them, and no thread is held while a slow client's
//! bytes are on their way.
//!
//! Aligned parts are written with `O_DIRECT` where the filesystem allows it
//! (`storage.direct_io`, the default): the bytes go from our buffer to the
//! device without passing through the page cache. The unaligned head and
//! tail of a request are written through the page cache; the final flush
//! covers both. Without it every byte goes through the page cache, where the
//! blob stays for its first pull, and when the bytes are to be flushed the
//! writeback of each completed 8 MiB window is started as the body arrives,
//! so the final flush has less left. On the benchmark VM that made durable
//! pushes 0.4–0.6 × as fast as direct writes (docs/performance.md): growing
//! the page cache into memory the guest has not touched before is slow there.

use crate::blobs::{io, joined, StorageError};
use crate::pool::Pool;
use berth_core::Hasher;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// `O_DIRECT` alignment of file offsets, lengths and memory.
const ALIGN: usize = 4096;
/// The size of staging buffers (reused across uploads).
const BUF: usize = 256 * 1024;
/// The size of the buffers of bodies hashed apart (`HASH_APART_FROM`):
/// fewer, larger writes and hand-offs (a 1 GiB push ran 1.47 × as fast
/// with these as with 256 KiB ones; docs/performance.md).
const BIG_BUF: usize = 1024 * 1024;
/// Bodies at least this long (or of unknown length) are hashed off the
/// request task.
const HASH_APART_FROM: u64 = 4 << 20;

/// A page-aligned buffer, in safe code: a little more memory than needed,
/// used from its first aligned byte.
struct AlignedBuf {
    v: Vec<u8>,
    start: usize,
    len: usize,
}

/// Buffers of finished uploads, kept for the next ones.
static FREE: Pool = Pool::new(BUF + ALIGN, 32);
static FREE_BIG: Pool = Pool::new(BIG_BUF + ALIGN, MAX_BIG);

/// Big buffers in use at most, across uploads (past it, uploads take small
/// ones): what the big buffers of the whole process can hold, kept or in
/// use, since one is allocated only when none is kept. Unbounded, eight
/// concurrent 64 MiB pushes peaked at 74 MiB RSS instead of ~51.
const MAX_BIG: usize = 8;
static BIG_IN_USE: AtomicUsize = AtomicUsize::new(0);

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // each pool takes only buffers of its own size
        let v = std::mem::take(&mut self.v);
        if v.len() == BIG_BUF + ALIGN {
            FREE_BIG.put(v);
            BIG_IN_USE.fetch_sub(1, Ordering::AcqRel);
        } else {
            FREE.put(v);
        }
    }
}

impl AlignedBuf {
    /// A buffer of `BIG_BUF` bytes if `big` and fewer than `MAX_BIG` are in
    /// use, else of `BUF`.
    fn new(big: bool) -> AlignedBuf {
        let big = big
            && BIG_IN_USE
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < MAX_BIG).then_some(n + 1)
                })
                .is_ok();
        let v = if big { FREE_BIG.get() } else { FREE.get() };
        // Should the address not be alignable, direct writes fail with
        // EINVAL and the writer falls back to the page cache.
        let start = match v.as_ptr().align_offset(ALIGN) {
            s if s < ALIGN => s,
            _ => 0,
        };
        AlignedBuf { v, start, len: 0 }
    }

    /// How many bytes the buffer holds when full.
    fn size(&self) -> usize {
        self.v.len() - ALIGN
    }

    fn bytes(&self) -> &[u8] {
        &self.v[self.start..self.start + self.len]
    }

    /// Copy as much of `data` as fits below `limit` bytes; how much did.
    fn fill(&mut self, data: &[u8], limit: usize) -> usize {
        let n = data.len().min(limit - self.len);
        let at = self.start + self.len;
        self.v[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }
}

/// How many bytes a buffer of `size` starting at file offset `at` may
/// take: up to the next aligned offset when `at` is unaligned (so every
/// later buffer starts aligned in the file and in memory), else all of it.
fn limit(at: u64, size: usize) -> usize {
    match (at % ALIGN as u64) as usize {
        0 => size,
        r => ALIGN - r,
    }
}

/// One append to a staging file.
pub(crate) struct Append {
    pub path: PathBuf,
    /// The acknowledged length: writing starts here, and whatever lies past
    /// it (a crash mid-request) is cut off first.
    pub offset: u64,
    /// Flush before returning.
    pub sync: bool,
    /// Start the writeback of buffered bytes as each 8 MiB window fills (the
    /// bytes are to be flushed, by this append or by the commit after it).
    pub write_back: bool,
    /// Write aligned parts with `O_DIRECT`.
    pub direct: bool,
    /// Also make the staging file's name durable (the first flushed `PATCH`).
    pub sync_dir: Option<PathBuf>,
}

/// Buffer writes in flight per append (four rather than two: 1.04–1.11 ×
/// on 1 GiB pushes, 2 MiB more peak RSS; docs/performance.md).
const WRITES: usize = 4;

impl Append {
    /// Stream `body` into the file, updating `hasher` with every byte. When
    /// `exact_len` is given the body must be exactly that long. Returns the
    /// number of bytes written, flushed if `sync`. On error the file may hold
    /// part of the body past `offset` (no write is still running): the
    /// caller cuts it back.
    ///
    /// Each full buffer is written by a short task on the blocking pool at
    /// its offset (four at a time) and, for large bodies, hashed by another
    /// (in order); no thread is held while the body is slow to arrive.
    pub async fn run<S, E>(
        self,
        body: S,
        exact_len: Option<u64>,
        hasher: &mut Option<Hasher>,
    ) -> Result<u64, StorageError>
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let Append {
            path,
            offset,
            sync,
            write_back,
            direct,
            sync_dir,
        } = self;
        let joined = joined(&path);
        let sink = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || Sink::open(&p, offset, direct, write_back))
                .await
                .map_err(joined)??
        };
        let sink = Arc::new(sink);
        // Large bodies are hashed off the request task, so that receiving
        // and hashing run on different cores; small ones as they arrive.
        let big = exact_len.is_none_or(|l| l >= HASH_APART_FROM);
        let mut chain = HashChain::new(if big { hasher.take() } else { None });
        let mut writes: VecDeque<tokio::task::JoinHandle<std::io::Result<()>>> = VecDeque::new();
        let mut written = 0u64;
        let fed: Result<(), StorageError> = async {
            futures::pin_mut!(body);
            let mut at = offset;
            let mut buf: Option<AlignedBuf> = None;
            let mut last = false;
            loop {
                let chunk = match body.next().await {
                    Some(c) => c.map_err(|e| StorageError::Body(e.to_string()))?,
                    None => {
                        last = true;
                        Bytes::new()
                    }
                };
                written += chunk.len() as u64;
                if let Some(l) = exact_len {
                    if written > l || (last && written != l) {
                        return Err(StorageError::LengthMismatch {
                            expected: l,
                            got: written,
                        });
                    }
                }
                if let (false, Some(h)) = (big, hasher.as_mut()) {
                    h.update(&chunk);
                }
                let mut rest: &[u8] = &chunk;
                while !rest.is_empty() || (last && buf.is_some()) {
                    let b = buf.get_or_insert_with(|| AlignedBuf::new(big));
                    let lim = limit(at, b.size());
                    rest = &rest[b.fill(rest, lim)..];
                    if b.len < lim && !last {
                        break;
                    }
                    let full = Arc::new(buf.take().expect("filled above"));
                    let pos = at;
                    at += full.len as u64;
                    if big {
                        chain.push(full.clone()).await.map_err(joined)?;
                    }
                    while writes.len() >= WRITES {
                        let w = writes.pop_front().expect("non-empty");
                        w.await.map_err(joined)?.map_err(io(&path))?;
                    }
                    let s = sink.clone();
                    writes.push_back(tokio::task::spawn_blocking(move || {
                        s.put_at(full.bytes(), pos)
                    }));
                }
                if last {
                    return Ok(());
                }
            }
        }
        .await;
        // Every write has finished before anyone may cut the file back.
        let mut wrote: Result<(), StorageError> = Ok(());
        for w in writes {
            let r = w.await.map_err(joined).and_then(|r| r.map_err(io(&path)));
            if wrote.is_ok() {
                wrote = r;
            }
        }
        let hashed = chain.take().await.map_err(joined);
        fed?;
        wrote?;
        if big {
            *hasher = hashed?;
        }
        if sync {
            let p = path.clone();
            tokio::task::spawn_blocking(move || {
                sink.f.sync_data().map_err(io(&p))?;
                match &sync_dir {
                    Some(d) => sync_dir_of(d),
                    None => Ok(()),
                }
            })
            .await
            .map_err(joined)??;
        }
        Ok(written)
    }
}

/// Buffers of a large append queued for hashing, at most: the body is
/// received this far ahead of the hash.
const HASH_QUEUE: usize = 4;

/// The running hash of a large append. Buffers queue (up to `HASH_QUEUE`)
/// for one task on the blocking pool that hashes them in order for as long
/// as any are queued, then ends; the next buffer starts another. The core
/// that hashes does not wait for the request task between buffers, and no
/// thread is held while the body is slow to arrive.
struct HashChain {
    q: Arc<HashQueue>,
    /// The task that hashes now, or last did.
    worker: Option<tokio::task::JoinHandle<()>>,
}

struct HashQueue {
    s: std::sync::Mutex<Queued>,
    /// Told whenever the worker takes a buffer or ends.
    progress: tokio::sync::Notify,
}

struct Queued {
    /// The hasher, while no worker holds it.
    hasher: Option<Hasher>,
    queue: VecDeque<Arc<AlignedBuf>>,
    /// A worker holds the hasher (it has not ended).
    running: bool,
}

impl HashQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.s.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The worker: hash queued buffers in order until none are left.
    fn drain(&self) {
        /// Tells the waiters when the worker ends, however it ends.
        struct Ended<'a>(&'a tokio::sync::Notify);
        impl Drop for Ended<'_> {
            fn drop(&mut self) {
                self.0.notify_waiters();
            }
        }
        let _ended = Ended(&self.progress);
        let mut h = self.lock().hasher.take();
        loop {
            let next = {
                let mut s = self.lock();
                match s.queue.pop_front() {
                    Some(b) => b,
                    None => {
                        s.hasher = h;
                        s.running = false;
                        return;
                    }
                }
            };
            self.progress.notify_waiters();
            if let Some(h) = h.as_mut() {
                h.update(next.bytes());
            }
        }
    }
}

impl HashChain {
    fn new(hasher: Option<Hasher>) -> HashChain {
        HashChain {
            q: Arc::new(HashQueue {
                s: std::sync::Mutex::new(Queued {
                    hasher,
                    queue: VecDeque::new(),
                    running: false,
                }),
                progress: tokio::sync::Notify::new(),
            }),
            worker: None,
        }
    }

    /// Wait for the worker to make progress; a worker that ended (panicked,
    /// if the queue still holds buffers) is reaped, its failure returned.
    async fn progressed(
        &mut self,
        told: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    ) -> Result<(), tokio::task::JoinError> {
        match self.worker.as_mut() {
            Some(w) if w.is_finished() => self.worker.take().expect("checked").await,
            _ => {
                told.await;
                Ok(())
            }
        }
    }

    /// Hash `b` after everything before it.
    async fn push(&mut self, b: Arc<AlignedBuf>) -> Result<(), tokio::task::JoinError> {
        let q = self.q.clone();
        let mut b = Some(b);
        loop {
            let told = q.progress.notified();
            tokio::pin!(told);
            // registered before the queue is looked at: no wake-up is missed
            told.as_mut().enable();
            // queued: whether a worker must be started for it
            let start = {
                let mut s = q.lock();
                if s.queue.len() < HASH_QUEUE {
                    s.queue.extend(b.take());
                    Some(!std::mem::replace(&mut s.running, true))
                } else {
                    None
                }
            };
            match start {
                Some(false) => return Ok(()),
                Some(true) => {
                    // the last worker has let go of the hasher: reap it
                    if let Some(w) = self.worker.take() {
                        w.await?;
                    }
                    let q = self.q.clone();
                    self.worker = Some(tokio::task::spawn_blocking(move || q.drain()));
                    return Ok(());
                }
                None => self.progressed(told).await?,
            }
        }
    }

    /// The hasher, once every buffer pushed is hashed.
    async fn take(&mut self) -> Result<Option<Hasher>, tokio::task::JoinError> {
        let q = self.q.clone();
        loop {
            let told = q.progress.notified();
            tokio::pin!(told);
            told.as_mut().enable();
            let done = {
                let mut s = q.lock();
                (!s.running).then(|| s.hasher.take())
            };
            match done {
                Some(h) => return Ok(h),
                None => self.progressed(told).await?,
            }
        }
    }
}

/// A staging file open through the page cache, and also with `O_DIRECT`
/// (when asked for and the filesystem allows it); shared by an append's
/// writes.
struct Sink {
    f: File,
    direct: Option<File>,
    /// Cleared when the filesystem refuses a direct write.
    direct_ok: AtomicBool,
    /// Start the writeback of each completed window of buffered bytes.
    write_back: bool,
}

impl Sink {
    /// Open the staging file at its acknowledged length `offset`.
    fn open(p: &Path, offset: u64, direct: bool, write_back: bool) -> Result<Sink, StorageError> {
        // A staging file a crash took away held nothing acknowledged while
        // the session is at 0; later, its loss ends the session.
        let f = match std::fs::OpenOptions::new()
            .write(true)
            .create(offset == 0)
            .truncate(false)
            .open(p)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::SessionNotFound)
            }
            Err(e) => return Err(io(p)(e)),
        };
        let len = f.metadata().map_err(io(p))?.len();
        if len < offset {
            // Bytes the session counted are missing (after a machine crash
            // with syncing off, or one that followed a failed commit, whose
            // bytes the commit was to flush): the session cannot go on.
            return Err(StorageError::SessionNotFound);
        }
        if len > offset {
            f.set_len(offset).map_err(io(p))?;
        }
        Ok(Sink {
            direct: if direct { open_direct(p) } else { None },
            f,
            direct_ok: AtomicBool::new(true),
            write_back,
        })
    }

    /// Write `data` at `pos`: its aligned part directly when possible, the
    /// rest through the page cache (whose writeback starts window by window
    /// when `write_back`).
    fn put_at(&self, mut data: &[u8], mut pos: u64) -> std::io::Result<()> {
        if let (Some(d), true) = (&self.direct, self.direct_ok.load(Ordering::Relaxed)) {
            let n = data.len() / ALIGN * ALIGN;
            if pos.is_multiple_of(ALIGN as u64) && n > 0 {
                match d.write_all_at(&data[..n], pos) {
                    Ok(()) => {
                        pos += n as u64;
                        data = &data[n..];
                    }
                    // Alignment this filesystem does not take: go on
                    // through the page cache.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        self.direct_ok.store(false, Ordering::Relaxed)
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.f.write_all_at(data, pos)?;
        let end = pos + data.len() as u64;
        if self.write_back && end / WRITE_BACK > pos / WRITE_BACK {
            // a window is complete: start its writeback
            let w = (end / WRITE_BACK - 1) * WRITE_BACK;
            start_writeback(&self.f, w, WRITE_BACK);
        }
        Ok(())
    }
}

/// Buffered bytes are sent to disk in windows of this many bytes as the
/// body arrives: one hint per window rather than per buffer (the two
/// measured the same on the benchmark VM, docs/performance.md).
const WRITE_BACK: u64 = 8 << 20;

/// Ask the kernel to start writing `len` bytes at `pos` of `f` to disk now,
/// without waiting for it: the final `fdatasync` then has little left to do.
/// A hint only: failure changes nothing but when the bytes go.
#[cfg(target_os = "linux")]
fn start_writeback(f: &File, pos: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a range hint on a descriptor we hold open; no memory passed.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            pos as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_f: &File, _pos: u64, _len: u64) {}

#[cfg(target_os = "linux")]
fn open_direct(p: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(p)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_p: &Path) -> Option<File> {
    None
}

/// Cut a staging file back to its acknowledged length after a failed append.
pub(crate) fn cut_back(p: &Path, offset: u64, sync: bool) {
    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(p) {
        let _ = f.set_len(offset);
        if sync {
            let _ = f.sync_data();
        }
    }
}

/// Move verified staged bytes to their blob path (the filesystem fast
/// path) and, with `sync`, make bytes and name durable. A prefix directory
/// made here is made durable in its parent too. The staging directory is not
/// synced: should the old name come back after a crash, it is an orphan the
/// reaper removes.
///
/// When no file has the name yet (the usual case: a new blob), the rename
/// comes first and the bytes, then the new name, are flushed (on a
/// journalling filesystem the file's flush commits the transaction that
/// holds the rename too, and the directory's finds it committed; a thread
/// per commit to flush both at once measured no faster, docs/performance.md):
/// no one reads a blob's file before the metadata store records the blob,
/// which happens after this returns, so a crash in between leaves an
/// unrecorded file (an orphan for garbage collection; a later upload of the
/// same blob replaces it). A blob file that exists already may be recorded
/// and read: it is only replaced by bytes already on disk.
pub(crate) fn install(src: &Path, dest: &Path, sync: bool) -> Result<(), StorageError> {
    let parent = dest.parent().expect("blob paths have parents");
    let fresh = !parent.exists();
    if fresh {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let sync_dirs = || -> Result<(), StorageError> {
        sync_dir_of(parent)?;
        match (fresh, parent.parent()) {
            (true, Some(gp)) => sync_dir_of(gp),
            _ => Ok(()),
        }
    };
    let flush = |p: &Path| File::open(p).and_then(|f| f.sync_data()).map_err(io(p));
    if !sync {
        return std::fs::rename(src, dest).map_err(io(dest));
    }
    if rename_new(src, dest).map_err(io(dest))? {
        flush(dest)?;
        return sync_dirs();
    }
    flush(src)?;
    std::fs::rename(src, dest).map_err(io(dest))?;
    sync_dirs()
}

/// Rename `src` to `dest` if nothing has that name: whether it did. False
/// also where the kernel or filesystem cannot say (`RENAME_NOREPLACE`
/// unsupported): the caller then takes the path for an existing name.
#[cfg(target_os = "linux")]
fn rename_new(src: &Path, dest: &Path) -> std::io::Result<bool> {
    let (s, d) = (crate::blobs::c_path(src)?, crate::blobs::c_path(dest)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            s.as_ptr(),
            libc::AT_FDCWD,
            d.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EEXIST) | Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => {
            Ok(false)
        }
        _ => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_new(_src: &Path, _dest: &Path) -> std::io::Result<bool> {
    Ok(false)
}

fn sync_dir_of(d: &Path) -> Result<(), StorageError> {
    File::open(d).and_then(|f| f.sync_all()).map_err(io(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_after_the_first_start_aligned() {
        assert_eq!(limit(0, BUF), BUF);
        assert_eq!(limit(4096 * 7, BIG_BUF), BIG_BUF);
        assert_eq!(limit(1, BUF), ALIGN - 1);
        assert_eq!(limit(4097, BIG_BUF), ALIGN - 1);
        assert_eq!(limit(8191, BUF), 1);
        for big in [false, true] {
            let b = AlignedBuf::new(big);
            assert_eq!(b.v[b.start..].as_ptr() as usize % ALIGN, 0);
            assert!(b.v.len() - b.start >= b.size());
            if !big {
                assert_eq!(b.size(), BUF);
            }
        }
    }

    #[test]
    fn big_buffers_are_bounded_across_uploads() {
        // more than may be big at once: the rest come small (other tests
        // running meanwhile can only make fewer of these big)
        let bufs: Vec<AlignedBuf> = (0..MAX_BIG + 2).map(|_| AlignedBuf::new(true)).collect();
        let big = bufs.iter().filter(|b| b.size() == BIG_BUF).count();
        assert!(big <= MAX_BIG, "{big} big buffers");
        assert!(bufs.iter().all(|b| b.size() == BIG_BUF || b.size() == BUF));
        assert!(bufs.iter().any(|b| b.size() == BUF));
        drop(bufs);
        // given back: big ones are to be had again
        assert_eq!(AlignedBuf::new(true).size(), BIG_BUF);
    }
}
