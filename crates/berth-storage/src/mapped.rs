//! Blob bytes the kernel can send straight from the page cache.
//!
//! A large blob read for a connection that can take it (plain HTTP/1.1,
//! `BlobStore::get_for`) is memory-mapped, and its chunks are slices of the
//! mapping — real bytes, valid whoever reads them. The mappings are listed
//! here by address, so the connection's writer ([`file_range`]) can tell
//! that a buffer it was handed is a run of a file's bytes and send it with
//! `sendfile(2)` instead of copying it through user space: the pages go
//! from the page cache to the socket, the way nginx serves files. Only
//! runs the page cache already holds are handed out this way (`mincore`),
//! so a send does not wait for the disk on the server's threads; the rest
//! is read on the blocking pool, as before.
//!
//! Blob files are written once and renamed into place, never rewritten or
//! truncated, so a mapping's bytes stay what they were (a blob deleted
//! meanwhile stays readable through its open file).

use bytes::Bytes;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Bytes sent with sendfile by the connections (reported by them).
static SENT: AtomicU64 = AtomicU64::new(0);

/// Count `n` bytes of mappings sent with sendfile.
pub fn count_sent(n: usize) {
    SENT.fetch_add(n as u64, Ordering::Relaxed);
}

/// Bytes of mappings sent with sendfile since start.
pub fn sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

/// Live mappings by start address: (length, file descriptor, file offset
/// of the start).
static MAPS: RwLock<BTreeMap<usize, (usize, RawFd, u64)>> = RwLock::new(BTreeMap::new());

/// Where `buf` lies in a mapped blob file, if it lies wholly within one:
/// the file's descriptor and the offset of `buf`'s first byte. The
/// descriptor stays open as long as `buf` is borrowed (the mapping's owner
/// keeps it), so it may be used for the duration of that borrow.
pub fn file_range(buf: &[u8]) -> Option<(RawFd, u64)> {
    if buf.is_empty() {
        return None;
    }
    let at = buf.as_ptr() as usize;
    let maps = MAPS.read().ok()?;
    let (&start, &(len, fd, offset)) = maps.range(..=at).next_back()?;
    (at + buf.len() <= start + len).then(|| (fd, offset + (at - start) as u64))
}

/// A read-only mapping of part of a blob file, listed in [`MAPS`] while
/// it lives.
struct Mapping {
    map: memmap2::Mmap,
    /// Keeps the descriptor listed in [`MAPS`] open.
    _file: Arc<File>,
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // Unlisted before the unmap (when `map` drops, after this), so no
        // later mapping at the same address is mistaken for this one.
        if let Ok(mut maps) = MAPS.write() {
            maps.remove(&(self.map.as_ptr() as usize));
        }
    }
}

/// `range` of `file`, mapped: `None` when it cannot be (the mapping failed,
/// or `mincore` would not tell this process the truth about the file's
/// pages — it reports every page resident for files the process neither
/// owns nor may write).
pub(crate) fn map(file: &Arc<File>, range: &std::ops::Range<u64>) -> Option<Mapped> {
    let meta = file.metadata().ok()?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 && meta.uid() != euid {
        return None;
    }
    let len = usize::try_from(range.end.checked_sub(range.start)?).ok()?;
    if len == 0 || range.end > meta.len() {
        return None;
    }
    // SAFETY: blob files are immutable once renamed into place (never
    // written or truncated), so the mapped bytes do not change under us.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(range.start)
            .len(len)
            .map(file.as_ref())
    }
    .ok()?;
    let start = map.as_ptr() as usize;
    MAPS.write()
        .ok()?
        .insert(start, (len, file.as_raw_fd(), range.start));
    let mapping = Mapping {
        map,
        _file: file.clone(),
    };
    Some(Mapped {
        start,
        bytes: Bytes::from_owner(mapping),
    })
}

/// A mapped range of a blob file.
pub(crate) struct Mapped {
    /// Address of the mapping's first byte.
    start: usize,
    bytes: Bytes,
}

impl Mapped {
    /// How many of the `len` bytes from `from` (an offset in the mapping)
    /// the page cache holds, counted from `from` up to the first page it
    /// does not.
    pub fn resident(&self, from: usize, len: usize) -> usize {
        let len = len.min(self.bytes.len().saturating_sub(from));
        if len == 0 {
            return 0;
        }
        let page = page_size();
        let first = self.start + from;
        // The mapping itself starts on a page boundary at or before
        // `start` (memmap2 aligns the offset down), so this page is mapped.
        let aligned = first & !(page - 1);
        let end = first + len;
        let mut vec = [0u8; RESIDENT_PAGES];
        let pages = (end - aligned).div_ceil(page).min(RESIDENT_PAGES);
        // SAFETY: `aligned..aligned + pages * page` lies within the
        // mapping (which `self.bytes` keeps alive), and `vec` has room for
        // `pages` entries.
        let rc = unsafe {
            libc::mincore(
                aligned as *mut libc::c_void,
                (pages * page).min(end - aligned),
                vec.as_mut_ptr(),
            )
        };
        if rc != 0 {
            return 0;
        }
        let held = vec[..pages].iter().take_while(|v| *v & 1 == 1).count();
        (aligned + held * page).saturating_sub(first).min(len)
    }

    /// The mapped bytes `from..from + len`.
    pub fn slice(&self, from: usize, len: usize) -> Bytes {
        self.bytes.slice(from..from + len)
    }
}

/// Pages one residency check looks at (4 MiB of 4 KiB pages).
pub(crate) const RESIDENT_PAGES: usize = 1024;

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn mapped_bytes_are_the_files_and_are_found_by_address() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blob");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&p).unwrap().write_all(&data).unwrap();
        let file = Arc::new(File::open(&p).unwrap());
        // an unaligned range, as a Range request asks
        let m = map(&file, &(12_345..2_500_000)).expect("mapped");
        let s = m.slice(1000, 65_536);
        assert_eq!(&s[..], &data[12_345 + 1000..12_345 + 1000 + 65_536]);
        let (fd, off) = file_range(&s).expect("listed");
        assert_eq!(fd, file.as_raw_fd());
        assert_eq!(off, 12_345 + 1000);
        // a run inside the slice is found at its own offset
        assert_eq!(file_range(&s[10..20]).unwrap().1, 12_345 + 1010);
        // bytes that are not a mapping's are not
        assert!(file_range(&data[..10]).is_none());
        // just written: the page cache holds all of it
        assert_eq!(m.resident(1000, 1 << 20), 1 << 20);
        assert_eq!(
            m.resident(2_487_000, 1 << 20),
            2_500_000 - 12_345 - 2_487_000
        );
        // dropped: no longer listed
        let at = s.as_ptr() as usize;
        drop(s);
        drop(m);
        let maps = MAPS.read().unwrap();
        assert!(maps
            .range(..=at)
            .next_back()
            .is_none_or(|(&st, &(l, _, _))| st + l <= at));
    }

    #[test]
    fn evicted_pages_are_not_resident() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blob");
        let data = vec![7u8; 4 << 20];
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(&data).unwrap();
        f.sync_all().unwrap();
        let file = Arc::new(File::open(&p).unwrap());
        // SAFETY: an advice call on a descriptor we own.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
        let m = map(&file, &(0..data.len() as u64)).expect("mapped");
        assert!(
            m.resident(0, 1 << 20) < 1 << 20,
            "dropped pages counted resident"
        );
    }
}
