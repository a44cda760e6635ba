//! Writing one request's body into a staging file.
//!
//! The request task reads the body and copies it into a few fixed,
//! page-aligned buffers; a hashing thread (large bodies; small ones are
//! hashed by the request task) and then a writer thread take each buffer in
//! turn, and the writer hands it back. Receiving, hashing and the disk
//! overlap, memory per upload is fixed (`BUFS` × `BUF`) whatever chunk sizes
//! the client sends, and body chunks are freed on the thread that allocated
//! them.
//!
//! Aligned parts are written with `O_DIRECT` where the filesystem allows it:
//! the bytes go from our buffer to the device without passing through the
//! page cache. On the machine the benchmarks run on, buffered writes fall to
//! about 400 MB/s once the page cache has to take fresh memory, while direct
//! writes, flushed, run at 1.3–1.6 GB/s (see docs/performance.md). The
//! unaligned head and tail of a request are written through the page cache;
//! the final `fdatasync` covers both.

use crate::blobs::{io, StorageError};
use crate::pool::Pool;
use berth_core::Hasher;
use bytes::Bytes;
use futures::StreamExt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// `O_DIRECT` alignment of file offsets, lengths and memory.
const ALIGN: usize = 4096;
/// Buffers per upload, and their size (reused across uploads).
const BUFS: usize = 3;
const BUF: usize = 256 * 1024;
/// Bodies at least this long (or of unknown length) get a hashing thread.
const HASH_THREAD_FROM: u64 = 4 << 20;

/// A page-aligned buffer, in safe code: a little more memory than needed,
/// used from its first aligned byte.
struct AlignedBuf {
    v: Vec<u8>,
    start: usize,
    len: usize,
}

/// Buffers of finished uploads, kept for the next ones.
static FREE: Pool = Pool::new(BUF + ALIGN, 32);

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        FREE.put(std::mem::take(&mut self.v));
    }
}

impl AlignedBuf {
    fn new() -> AlignedBuf {
        let v = FREE.get();
        // Should the address not be alignable, direct writes fail with
        // EINVAL and the writer falls back to the page cache.
        let start = match v.as_ptr().align_offset(ALIGN) {
            s if s < ALIGN => s,
            _ => 0,
        };
        AlignedBuf { v, start, len: 0 }
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

/// What the request task hands its writer thread.
enum Piece {
    Data(AlignedBuf),
    /// The body ended well: flush and report.
    End,
}

/// How many bytes a buffer starting at file offset `at` may take: up to the
/// next aligned offset when `at` is unaligned (so every later buffer starts
/// aligned in the file and in memory), else a whole buffer.
fn limit(at: u64) -> usize {
    match (at % ALIGN as u64) as usize {
        0 => BUF,
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
    /// Also make the staging file's name durable (the first flushed `PATCH`).
    pub sync_dir: Option<PathBuf>,
}

impl Append {
    /// Stream `body` into the file, updating `hasher` with every byte. When
    /// `exact_len` is given the body must be exactly that long. Returns the
    /// number of bytes written, flushed if `sync`. On error the file may hold
    /// part of the body past `offset`: the caller cuts it back.
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
        let path = self.path.clone();
        let mut at = self.offset;
        let (tx, rx) = mpsc::channel(BUFS);
        let (back_tx, mut back) = mpsc::channel::<AlignedBuf>(BUFS);
        // Large bodies are hashed on a thread of their own, between the
        // request task and the writer, so that receiving and hashing run on
        // different cores; small ones are hashed as they arrive (one thread
        // hop less).
        let big = exact_len.is_none_or(|l| l >= HASH_THREAD_FROM);
        let (hashing, to_writer) = if big {
            let (htx, hrx) = mpsc::channel(BUFS);
            let h = hasher.take();
            (
                Some(tokio::task::spawn_blocking(move || hash_stage(rx, htx, h))),
                hrx,
            )
        } else {
            (None, rx)
        };
        let writer = tokio::task::spawn_blocking(move || self.write(to_writer, back_tx));

        let mut written = 0u64;
        let fed: Result<(), StorageError> = async {
            futures::pin_mut!(body);
            let mut made = 0;
            let mut buf: Option<AlignedBuf> = None;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
                written += chunk.len() as u64;
                if let Some(l) = exact_len {
                    if written > l {
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
                while !rest.is_empty() {
                    let b = match buf.as_mut() {
                        Some(b) => b,
                        None => buf.insert(if made < BUFS {
                            made += 1;
                            AlignedBuf::new()
                        } else {
                            match back.recv().await {
                                Some(b) => b,
                                // The writer stopped on an error: it
                                // reports it below.
                                None => return Ok(()),
                            }
                        }),
                    };
                    let lim = limit(at);
                    rest = &rest[b.fill(rest, lim)..];
                    if b.len == lim {
                        at += lim as u64;
                        let full = buf.take().expect("just filled");
                        if tx.send(Piece::Data(full)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            if let Some(l) = exact_len {
                if written != l {
                    return Err(StorageError::LengthMismatch {
                        expected: l,
                        got: written,
                    });
                }
            }
            if let Some(b) = buf {
                if tx.send(Piece::Data(b)).await.is_err() {
                    return Ok(());
                }
            }
            let _ = tx.send(Piece::End).await;
            Ok(())
        }
        .await;
        drop(tx);
        if let Some(job) = hashing {
            *hasher = job.await.unwrap_or_default();
        }
        let wrote = writer.await.map_err(|e| StorageError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        });
        match (fed, wrote) {
            (Err(e), _) | (Ok(()), Err(e)) | (Ok(()), Ok(Err(e))) => Err(e),
            (Ok(()), Ok(Ok(true))) => Ok(written),
            (Ok(()), Ok(Ok(false))) => Err(StorageError::Io {
                path: path.display().to_string(),
                source: std::io::Error::other("the writer stopped without finishing"),
            }),
        }
    }

    /// The writer thread: write what arrives until [`Piece::End`] (flush,
    /// `true`) or until the channel closes without it (the body failed:
    /// `false`, nothing flushed).
    fn write(
        self,
        mut rx: mpsc::Receiver<Piece>,
        back: mpsc::Sender<AlignedBuf>,
    ) -> Result<bool, StorageError> {
        let p = &self.path;
        // A staging file a crash took away held nothing acknowledged while
        // the session is at 0; later, its loss ends the session.
        let f = match std::fs::OpenOptions::new()
            .write(true)
            .create(self.offset == 0)
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
        if len < self.offset {
            // Acknowledged bytes are missing (only possible after a machine
            // crash with syncing off): the session cannot go on.
            return Err(StorageError::SessionNotFound);
        }
        if len > self.offset {
            f.set_len(self.offset).map_err(io(p))?;
        }
        let mut sink = Sink {
            direct: open_direct(p),
            f,
            pos: self.offset,
        };
        while let Some(piece) = rx.blocking_recv() {
            match piece {
                Piece::Data(mut b) => {
                    sink.put(b.bytes()).map_err(io(p))?;
                    b.len = 0;
                    // The request task may be done already: fine.
                    let _ = back.try_send(b);
                }
                Piece::End => {
                    if self.sync {
                        sink.f.sync_data().map_err(io(p))?;
                        if let Some(d) = &self.sync_dir {
                            sync_dir(d)?;
                        }
                    }
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// The hashing stage of a large append: hash each buffer, pass it on, and
/// give the hasher back at the end.
fn hash_stage(
    mut rx: mpsc::Receiver<Piece>,
    tx: mpsc::Sender<Piece>,
    mut hasher: Option<Hasher>,
) -> Option<Hasher> {
    while let Some(piece) = rx.blocking_recv() {
        if let (Piece::Data(b), Some(h)) = (&piece, hasher.as_mut()) {
            h.update(b.bytes());
        }
        if tx.blocking_send(piece).is_err() {
            break;
        }
    }
    hasher
}

/// A staging file open twice: through the page cache, and (when the
/// filesystem allows it) with `O_DIRECT`.
struct Sink {
    f: File,
    direct: Option<File>,
    pos: u64,
}

impl Sink {
    fn put(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        if let Some(d) = &self.direct {
            let n = data.len() / ALIGN * ALIGN;
            if self.pos.is_multiple_of(ALIGN as u64) && n > 0 {
                match d.write_all_at(&data[..n], self.pos) {
                    Ok(()) => {
                        self.pos += n as u64;
                        data = &data[n..];
                    }
                    // Alignment this filesystem does not take: go on
                    // through the page cache.
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.direct = None,
                    Err(e) => return Err(e),
                }
            }
        }
        self.f.write_all_at(data, self.pos)?;
        self.pos += data.len() as u64;
        Ok(())
    }
}

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
/// path): rename, then make the new name durable. A prefix directory made
/// here is made durable in its parent too. The staging directory is not
/// synced: should the old name come back after a crash, it is an orphan the
/// reaper removes.
pub(crate) fn install(src: &Path, dest: &Path, sync: bool) -> Result<(), StorageError> {
    let parent = dest.parent().expect("blob paths have parents");
    let fresh = !parent.exists();
    if fresh {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::rename(src, dest).map_err(io(dest))?;
    if sync {
        sync_dir(parent)?;
        if fresh {
            if let Some(gp) = parent.parent() {
                sync_dir(gp)?;
            }
        }
    }
    Ok(())
}

fn sync_dir(d: &Path) -> Result<(), StorageError> {
    File::open(d).and_then(|f| f.sync_all()).map_err(io(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_after_the_first_start_aligned() {
        assert_eq!(limit(0), BUF);
        assert_eq!(limit(4096 * 7), BUF);
        assert_eq!(limit(1), ALIGN - 1);
        assert_eq!(limit(4097), ALIGN - 1);
        assert_eq!(limit(8191), 1);
        let b = AlignedBuf::new();
        assert_eq!(b.v[b.start..].as_ptr() as usize % ALIGN, 0);
    }
}
