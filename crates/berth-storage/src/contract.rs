//! The blob store contract, written once and run against every backend.
//! Each function panics on a violation.

use crate::{BlobStore, SessionState, StorageError, Then};
use berth_core::{Algorithm, Digest};
use bytes::Bytes;
use futures::{stream, StreamExt, TryStreamExt};

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

/// Sessions around the multipart part size (`remote::PART`, 5 MiB): blobs
/// of one byte less, exactly, one byte more and two parts plus one, sent in
/// appends that end on and beside part boundaries, each append through a
/// fresh session state (as after a restart: the next request may reach
/// another process).
pub async fn part_boundaries(s: &BlobStore) {
    const P: usize = crate::remote::PART;
    for (i, size) in [P - 1, P, P + 1, 2 * P + 1].into_iter().enumerate() {
        let data: Vec<u8> = (0..size as u32).map(|x| (x * 13 % 241) as u8).collect();
        let id = format!("p{i}");
        s.create_upload(&id).await.unwrap();
        let cuts = [P - 1, P, P + 1, 2 * P, size];
        let (mut off, mut at) = (0u64, 0usize);
        for cut in cuts.into_iter().map(|c| c.min(size)) {
            if cut <= at {
                continue;
            }
            let mut fresh = SessionState::default();
            off = s
                .append(
                    &id,
                    &mut fresh,
                    off,
                    chunks(&data[at..cut], 1 << 16),
                    None,
                    Then::Stage,
                )
                .await
                .unwrap();
            at = cut;
            assert_eq!(off, at as u64);
        }
        assert_eq!(at, size);
        let d = Digest::sha256_of(&data);
        let mut fresh = SessionState::default();
        s.commit(&id, &mut fresh, off, &d).await.unwrap();
        assert_eq!(s.stat(&d).await.unwrap(), Some(size as u64), "{size} bytes");
        assert_eq!(
            read_all(s, &d, Some(P as u64 - 2..P as u64 - 1)).await,
            &data[P - 2..P - 1]
        );
        assert_eq!(read_all(s, &d, None).await, data, "{size} bytes");
        s.delete(&d).await.unwrap();
    }
    assert!(s.staged_files().await.unwrap().is_empty());
}

/// A chunk resent after a failure (a crash before the offset was recorded)
/// replaces what the failed attempt sent, even past a part boundary.
pub async fn resent_chunks_replace_failed_ones(s: &BlobStore) {
    const P: usize = crate::remote::PART;
    let data: Vec<u8> = (0..(P + P / 2) as u32)
        .map(|x| (x * 7 % 253) as u8)
        .collect();
    s.create_upload("r1").await.unwrap();
    let mut g = s.lock_session("r1").await;
    let off = s
        .append(
            "r1",
            &mut g,
            0,
            chunks(&data[..1000], 100),
            None,
            Then::Stage,
        )
        .await
        .unwrap();
    // past a part boundary with other bytes, then the body fails
    let junk = vec![0xeeu8; P + 10];
    let failing = chunks(&junk, 1 << 16).chain(stream::iter(vec![Err(std::io::Error::other(
        "client went away",
    ))]));
    assert!(s
        .append("r1", &mut g, off, failing, None, Then::Stage)
        .await
        .is_err());
    let off = s
        .append(
            "r1",
            &mut g,
            off,
            chunks(&data[1000..], 1 << 16),
            None,
            Then::Stage,
        )
        .await
        .unwrap();
    let d = Digest::sha256_of(&data);
    s.commit("r1", &mut g, off, &d).await.unwrap();
    assert_eq!(read_all(s, &d, None).await, data);
    s.delete(&d).await.unwrap();
}

/// Aborting a session that has sent parts removes all of it; two sessions
/// with the same content commit side by side.
pub async fn abort_and_concurrent_sessions(s: &BlobStore) {
    const P: usize = crate::remote::PART;
    let data: Vec<u8> = (0..(2 * P + 5) as u32).map(|x| (x % 249) as u8).collect();
    s.create_upload("x1").await.unwrap();
    let mut g = s.lock_session("x1").await;
    s.append("x1", &mut g, 0, chunks(&data, 1 << 20), None, Then::Stage)
        .await
        .unwrap();
    drop(g);
    assert_eq!(s.staged_files().await.unwrap().len(), 1);
    s.abort("x1").await.unwrap();
    assert!(s.staged_files().await.unwrap().is_empty());

    let d = Digest::sha256_of(&data);
    let one = |id: &'static str| {
        let data = &data;
        let d = &d;
        async move {
            s.create_upload(id).await.unwrap();
            let mut g = s.lock_session(id).await;
            let off = s
                .append(
                    id,
                    &mut g,
                    0,
                    chunks(&data[..P + 3], 1 << 16),
                    None,
                    Then::Stage,
                )
                .await
                .unwrap();
            let off = s
                .append(
                    id,
                    &mut g,
                    off,
                    chunks(&data[P + 3..], 1 << 16),
                    None,
                    Then::Commit,
                )
                .await
                .unwrap();
            s.commit(id, &mut g, off, d).await.unwrap();
        }
    };
    futures::join!(one("c1"), one("c2"));
    assert_eq!(read_all(s, &d, None).await, data);
    assert!(s.staged_files().await.unwrap().is_empty());
    s.delete(&d).await.unwrap();
}

/// Every contract function, in order.
pub async fn run_all(s: &BlobStore) {
    upload_and_read(s).await;
    odd_sized_appends(s).await;
    digest_mismatch_leaves_nothing(s).await;
    failed_append_rolls_back(s).await;
    sha512_and_lost_state(s).await;
    abort_is_idempotent(s).await;
    part_boundaries(s).await;
    resent_chunks_replace_failed_ones(s).await;
    abort_and_concurrent_sessions(s).await;
}
