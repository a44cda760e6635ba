//! The blob store contract against each backend.

use berth_storage::{contract, BlobStore};
use std::sync::Arc;

#[tokio::test]
async fn local_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let s = BlobStore::local(dir.path()).unwrap();
    contract::run_all(&s).await;
}

/// Object store sessions (`remote.rs`) over object_store's in-memory
/// store, under a prefix.
#[tokio::test]
async fn in_memory() {
    let s = BlobStore::remote(
        Arc::new(object_store::memory::InMemory::new()),
        "some/prefix",
    );
    contract::run_all(&s).await;
}

/// The same with staged bytes written through the page cache.
#[tokio::test]
async fn local_filesystem_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let s = BlobStore::local(dir.path()).unwrap().direct_io(false);
    contract::run_all(&s).await;
}

/// Reads of a local blob give its bytes whether the page cache holds all,
/// none or some of them (reads from memory on the request's task, reads
/// from the disk on the blocking pool, and the switch between the two), in
/// full and in ranges across read-chunk boundaries.
#[tokio::test]
async fn local_reads_cold_cached_and_mixed() {
    use berth_core::Digest;
    use berth_storage::{blob_path, Then};
    use bytes::Bytes;
    use futures::TryStreamExt;
    use std::os::fd::AsRawFd;

    let dir = tempfile::tempdir().unwrap();
    let s = BlobStore::local(dir.path()).unwrap();
    let data: Vec<u8> = (0..3_300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let d = Digest::sha256_of(&data);
    s.create_upload("r").await.unwrap();
    let mut g = s.lock_session("r").await;
    let body = futures::stream::iter(
        data.chunks(100_000)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    );
    // no declared length: hashed apart from the request, in batches
    let n = s
        .append("r", &mut g, 0, body, None, Then::Commit)
        .await
        .unwrap();
    s.commit("r", &mut g, n, &d).await.unwrap();

    let file = dir.path().join(blob_path(&d).as_ref());
    let evict = || {
        let f = std::fs::File::open(&file).unwrap();
        f.sync_all().unwrap();
        // SAFETY: a cache hint on a descriptor we own.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0);
    };
    let read = |range: Option<std::ops::Range<u64>>| {
        let s = &s;
        let d = d.clone();
        async move {
            let parts: Vec<Bytes> = s.get(&d, range).await.unwrap().try_collect().await.unwrap();
            parts.concat()
        }
    };
    let len = data.len() as u64;
    let ranges = [
        0..len,
        1..len - 1,
        262_143..262_145,
        100_000..1_400_000,
        len - 5..len,
    ];
    for r in ranges.clone() {
        evict();
        assert_eq!(
            read(Some(r.clone())).await,
            data[r.start as usize..r.end as usize],
            "cold {r:?}"
        );
        assert_eq!(
            read(Some(r.clone())).await,
            data[r.start as usize..r.end as usize],
            "cached {r:?}"
        );
    }
    // some pages cached, the rest not: a middle stretch read, then all
    evict();
    assert_eq!(
        read(Some(1_000_000..1_700_000)).await,
        data[1_000_000..1_700_000]
    );
    assert_eq!(read(None).await, data);
    evict();
    assert_eq!(read(None).await, data);
    assert_eq!(read(None).await, data);
}
