//! The blob store contract, written once and run against every backend.
//! Each function panics on a violation.

use crate::{BlobStore, StorageError, Then};
use berth_core::{Algorithm, Digest};
use bytes::Bytes;
use futures::{stream, TryStreamExt};

fn chunks(
    data: &[u8],
    size: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    stream::iter(
        data.chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect::<Vec<_>>(),
    )
}

async fn read_all(s: &BlobStore, d: &Digest, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let parts: Vec<Bytes> = s.get(d, range).await.unwrap().try_collect().await.unwrap();
    parts.concat()
}

/// Chunked upload, commit, stat, full and ranged reads, idempotent re-upload.
pub async fn upload_and_read(s: &BlobStore) {
    let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let d = Digest::sha256_of(&data);
    assert_eq!(s.stat(&d).await.unwrap(), None);
    assert!(matches!(
        s.get(&d, None).await.err(),
        Some(StorageError::NotFound)
    ));

    s.create_upload("u1").await.unwrap();
    let mut g = s.lock_session("u1").await;
    let off = s
        .append(
            "u1",
            &mut g,
            0,
            chunks(&data[..300_000], 4096),
            None,
            Then::Stage,
        )
        .await
        .unwrap();
    assert_eq!(off, 300_000);
    let off = s
        .append(
            "u1",
            &mut g,
            off,
            chunks(&data[300_000..], 65536),
            None,
            Then::Stage,
        )
        .await
        .unwrap();
    assert_eq!(off, data.len() as u64);
    s.commit("u1", &mut g, off, &d).await.unwrap();
    drop(g);

    assert_eq!(s.stat(&d).await.unwrap(), Some(data.len() as u64));
    assert_eq!(read_all(s, &d, None).await, data);
    assert_eq!(read_all(s, &d, Some(10..20)).await, &data[10..20]);
    assert_eq!(
        read_all(s, &d, Some(699_999..700_000)).await,
        &data[699_999..]
    );

    // The same content again commits fine and changes nothing.
    s.create_upload("u2").await.unwrap();
    let mut g = s.lock_session("u2").await;
    let off = s
        .append("u2", &mut g, 0, chunks(&data, 100_000), None, Then::Stage)
        .await
        .unwrap();
    s.commit("u2", &mut g, off, &d).await.unwrap();
    assert_eq!(read_all(s, &d, None).await, data);
    assert!(
        s.staged_files().await.unwrap().is_empty(),
        "staging must be empty"
    );

    s.delete(&d).await.unwrap();
    assert_eq!(s.stat(&d).await.unwrap(), None);
    s.delete(&d).await.unwrap();
}

/// A wrong digest leaves nothing: no blob, no staged bytes.
pub async fn digest_mismatch_leaves_nothing(s: &BlobStore) {
    let wrong = Digest::sha256_of(b"something else");
    s.create_upload("m1").await.unwrap();
    let mut g = s.lock_session("m1").await;
    let off = s
        .append("m1", &mut g, 0, chunks(b"hello", 2), None, Then::Stage)
        .await
        .unwrap();
    match s.commit("m1", &mut g, off, &wrong).await {
        Err(StorageError::DigestMismatch { actual, .. }) => {
            assert_eq!(actual, Digest::sha256_of(b"hello"))
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert_eq!(s.stat(&wrong).await.unwrap(), None);
    assert_eq!(s.stat(&Digest::sha256_of(b"hello")).await.unwrap(), None);
    assert!(s.staged_files().await.unwrap().is_empty());
}

/// A failing body or a body over the limit leaves the session as it was.
pub async fn failed_append_rolls_back(s: &BlobStore) {
    s.create_upload("f1").await.unwrap();
    let mut g = s.lock_session("f1").await;
    let off = s
        .append("f1", &mut g, 0, chunks(b"abc", 1), None, Then::Stage)
        .await
        .unwrap();
    let bad = stream::iter(vec![
        Ok(Bytes::from_static(b"def")),
        Err(std::io::Error::other("client went away")),
    ]);
    assert!(matches!(
        s.append("f1", &mut g, off, bad, None, Then::Stage).await,
        Err(StorageError::Body(_))
    ));
    assert!(matches!(
        s.append(
            "f1",
            &mut g,
            off,
            chunks(b"0123456789", 3),
            Some(5),
            Then::Stage
        )
        .await,
        Err(StorageError::LengthMismatch { expected: 5, .. })
    ));
    assert!(matches!(
        s.append("f1", &mut g, off, chunks(b"0123", 3), Some(5), Then::Stage)
            .await,
        Err(StorageError::LengthMismatch {
            expected: 5,
            got: 4
        })
    ));
    let off = s
        .append("f1", &mut g, off, chunks(b"xyz", 2), None, Then::Stage)
        .await
        .unwrap();
    assert_eq!(off, 6);
    let d = Digest::sha256_of(b"abcxyz");
    s.commit("f1", &mut g, off, &d).await.unwrap();
    assert_eq!(read_all(s, &d, None).await, b"abcxyz");
    // A session past 0 whose staged bytes are gone cannot go on.
    let mut st = Default::default();
    assert!(matches!(
        s.append("nope", &mut st, 3, chunks(b"a", 1), None, Then::Stage)
            .await,
        Err(StorageError::SessionNotFound)
    ));
    // At 0 there was nothing to lose: a missing staging file (a crash
    // right after the session was opened) is simply recreated.
    let mut st = Default::default();
    let off = s
        .append("lost", &mut st, 0, chunks(b"again", 2), None, Then::Commit)
        .await
        .unwrap();
    let d = Digest::sha256_of(b"again");
    s.commit("lost", &mut st, off, &d).await.unwrap();
    assert_eq!(read_all(s, &d, None).await, b"again");
}

/// sha512 digests, and a session whose hasher state was lost (a restart):
/// both re-hash the staged file.
pub async fn sha512_and_lost_state(s: &BlobStore) {
    let data = b"sha512 content".repeat(1000);
    let d = Digest::of(Algorithm::Sha512, &data);
    s.create_upload("s1").await.unwrap();
    let mut g = s.lock_session("s1").await;
    let off = s
        .append("s1", &mut g, 0, chunks(&data, 999), None, Then::Stage)
        .await
        .unwrap();
    s.commit("s1", &mut g, off, &d).await.unwrap();
    assert_eq!(read_all(s, &d, None).await, data);

    s.create_upload("s2").await.unwrap();
    let mut g = s.lock_session("s2").await;
    let off = s
        .append(
            "s2",
            &mut g,
            0,
            chunks(&data[..500], 100),
            None,
            Then::Stage,
        )
        .await
        .unwrap();
    drop(g);
    let mut fresh = Default::default(); // as after a restart
    let off = s
        .append(
            "s2",
            &mut fresh,
            off,
            chunks(&data[500..], 100),
            None,
            Then::Stage,
        )
        .await
        .unwrap();
    let d256 = Digest::sha256_of(&data);
    s.commit("s2", &mut fresh, off, &d256).await.unwrap();
    assert_eq!(read_all(s, &d256, None).await.len(), data.len());
}

/// Abort removes staged bytes and is idempotent.
pub async fn abort_is_idempotent(s: &BlobStore) {
    s.create_upload("a1").await.unwrap();
    let mut g = s.lock_session("a1").await;
    s.append("a1", &mut g, 0, chunks(b"data", 4), None, Then::Stage)
        .await
        .unwrap();
    drop(g);
    assert_eq!(s.staged_files().await.unwrap().len(), 1);
    s.abort("a1").await.unwrap();
    s.abort("a1").await.unwrap();
    assert!(s.staged_files().await.unwrap().is_empty());
}

/// Appends of every awkward size, in every chunking, land byte for byte:
/// the staging writer's aligned (direct) and unaligned (buffered) paths
/// meet at arbitrary offsets.
pub async fn odd_sized_appends(s: &BlobStore) {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let cuts = [
        1usize, 4095, 4097, 8192, 262_143, 262_145, 300_001, 1_048_579, 2_000_000,
    ];
    s.create_upload("o1").await.unwrap();
    let mut g = s.lock_session("o1").await;
    let (mut off, mut at) = (0u64, 0usize);
    for (i, &cut) in cuts.iter().enumerate() {
        let end = (at + cut).min(data.len());
        let chunk = [1, 7, 4096, 65_536, 333][i % 5];
        off = s
            .append(
                "o1",
                &mut g,
                off,
                chunks(&data[at..end], chunk),
                None,
                Then::Stage,
            )
            .await
            .unwrap();
        at = end;
        assert_eq!(off, at as u64);
    }
    off = s
        .append(
            "o1",
            &mut g,
            off,
            chunks(&data[at..], 1 << 20),
            None,
            Then::Commit,
        )
        .await
        .unwrap();
    assert_eq!(off, data.len() as u64);
    let d = Digest::sha256_of(&data);
    s.commit("o1", &mut g, off, &d).await.unwrap();
    assert_eq!(read_all(s, &d, None).await, data);
}

/// Every contract function, in order.
pub async fn run_all(s: &BlobStore) {
    upload_and_read(s).await;
    odd_sized_appends(s).await;
    digest_mismatch_leaves_nothing(s).await;
    failed_append_rolls_back(s).await;
    sha512_and_lost_state(s).await;
    abort_is_idempotent(s).await;
}
