//! The metadata contract, written once and run against every engine
//! (object_store's `integration.rs` and distribution's driver suites): one
//! function per property, each a named test for each engine through
//! [`contract_suite!`](crate::contract_suite), so the first failure does not
//! hide the rest. Each function panics on a violation.

use crate::cf::Cf;
use crate::kv::{Batch, KvError, KvStore, Rows};
use crate::meta::{key2, ManifestRecord, Meta, PutManifest, Ref, ReferrerRecord, Refused};
use crate::principals::{RegistryRecord, RegistryStatus, TokenRecord, TokenStatus, UserRecord};
use crate::{RegistryDelete, UserRefused, Visibility};
use berth_core::Digest;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Barrier;

/// One `#[test]` per contract case for an engine. `$make` is a closure
/// returning `(engine, guard)`; the guard (a temporary directory) lives as
/// long as the test.
#[macro_export]
macro_rules! contract_suite {
    ($make:expr) => {
        $crate::contract_suite!(@cases $make;
            kv_point_reads,
            kv_scan_order_prefix_and_limit,
            kv_scan_start_after,
            kv_column_families_apart,
            kv_batch_later_op_wins,
            kv_conditions_hold_or_nothing_applies,
            tx_retries_after_a_concurrent_write,
            tx_reads_its_own_writes,
            tx_error_aborts_without_writes,
            tx_peek_is_not_a_condition,
            tx_read_only_is_checked,
            race_same_key_increments_are_serial,
            uploads_open_advance_close,
            links_blobs_and_generations,
            mounts_need_a_source,
            manifests_tags_move_and_cascade,
            manifest_references_checked_and_indexed,
            listings_page,
            registries_users_tokens,
            race_create_registry_one_wins,
            race_link_vs_blob_sweep,
            race_tag_moves_and_deletes,
            race_token_update_vs_revoke,
            counters_add_blindly_and_exactly,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let (kv, _keep) = ($make)();
                $crate::contract::$case(kv);
            }
        )*
    };
}

fn keys(rows: Rows) -> Vec<Vec<u8>> {
    rows.into_iter().map(|(k, _)| k).collect()
}

fn put(kv: &dyn KvStore, cf: Cf, k: &[u8], v: &[u8]) {
    let mut b = Batch::new();
    b.put(cf, k.to_vec(), v.to_vec());
    kv.write(b).unwrap();
}

fn fill_tags(kv: &dyn KvStore) {
    let mut b = Batch::new();
    for k in ["a\0z", "a\0b", "a\0c", "a/b\0a", "b\0a"] {
        b.put(Cf::Tags, k.as_bytes(), k.as_bytes());
    }
    kv.write(b).unwrap();
}

pub fn kv_point_reads(kv: impl KvStore) {
    assert_eq!(kv.get(Cf::Tags, b"nope").unwrap(), None);
    put(&kv, Cf::Tags, b"k", b"v");
    assert_eq!(kv.get(Cf::Tags, b"k").unwrap().as_deref(), Some(&b"v"[..]));
    put(&kv, Cf::Tags, b"k", b"");
    assert_eq!(
        kv.get(Cf::Tags, b"k").unwrap().as_deref(),
        Some(&b""[..]),
        "an empty value is a value"
    );
}

pub fn kv_scan_order_prefix_and_limit(kv: impl KvStore) {
    fill_tags(&kv);
    assert_eq!(
        keys(kv.scan(Cf::Tags, b"a\0", None, 10).unwrap()),
        vec![b"a\0b".to_vec(), b"a\0c".to_vec(), b"a\0z".to_vec()]
    );
    assert_eq!(
        keys(kv.scan(Cf::Tags, b"a\0", None, 1).unwrap()),
        vec![b"a\0b".to_vec()]
    );
    assert_eq!(kv.scan(Cf::Tags, b"", None, 100).unwrap().len(), 5);
    assert_eq!(kv.scan(Cf::Tags, b"c", None, 100).unwrap().len(), 0);
    assert_eq!(kv.scan(Cf::Tags, b"a\0", None, 0).unwrap().len(), 0);
}

pub fn kv_scan_start_after(kv: impl KvStore) {
    fill_tags(&kv);
    assert_eq!(
        keys(kv.scan(Cf::Tags, b"a\0", Some(b"a\0b"), 10).unwrap()),
        vec![b"a\0c".to_vec(), b"a\0z".to_vec()]
    );
    assert_eq!(
        kv.scan(Cf::Tags, b"a\0", Some(b"a\0z"), 10).unwrap().len(),
        0
    );
    // between keys
    assert_eq!(
        keys(kv.scan(Cf::Tags, b"a\0", Some(b"a\0ca"), 10).unwrap()),
        vec![b"a\0z".to_vec()]
    );
}

pub fn kv_column_families_apart(kv: impl KvStore) {
    fill_tags(&kv);
    put(&kv, Cf::Links, b"a\0b", b"other cf");
    assert_eq!(
        kv.get(Cf::Tags, b"a\0b").unwrap().as_deref(),
        Some(&b"a\0b"[..])
    );
    assert_eq!(
        kv.get(Cf::Links, b"a\0b").unwrap().as_deref(),
        Some(&b"other cf"[..])
    );
    assert_eq!(kv.scan(Cf::Links, b"", None, 10).unwrap().len(), 1);
}

pub fn kv_batch_later_op_wins(kv: impl KvStore) {
    let mut b = Batch::new();
    b.put(Cf::Uploads, b"u".to_vec(), b"1".to_vec());
    b.delete(Cf::Uploads, b"u".to_vec());
    b.put(Cf::Uploads, b"v".to_vec(), b"1".to_vec());
    b.put(Cf::Uploads, b"v".to_vec(), b"2".to_vec());
    b.delete(Cf::Uploads, b"never-there".to_vec());
    kv.write(b).unwrap();
    assert_eq!(kv.get(Cf::Uploads, b"u").unwrap(), None);
    assert_eq!(
        kv.get(Cf::Uploads, b"v").unwrap().as_deref(),
        Some(&b"2"[..])
    );
}

pub fn kv_conditions_hold_or_nothing_applies(kv: impl KvStore) {
    put(&kv, Cf::Settings, b"a", b"1");
    let attempt = |expect_a: Option<&[u8]>, expect_c: Option<&[u8]>| {
        let mut b = Batch::new();
        b.put(Cf::Settings, b"b".to_vec(), b"written".to_vec());
        b.delete(Cf::Settings, b"a".to_vec());
        b.expect(Cf::Settings, b"a".to_vec(), expect_a.map(<[u8]>::to_vec));
        b.expect(Cf::Settings, b"c".to_vec(), expect_c.map(<[u8]>::to_vec));
        kv.write(b)
    };
    for (a, c) in [
        (Some(&b"2"[..]), None),            // wrong value
        (None, None),                       // a is not absent
        (Some(&b"1"[..]), Some(&b"x"[..])), // c is not present
    ] {
        let r = attempt(a, c);
        assert!(matches!(r, Err(KvError::Conflict)), "{a:?} {c:?}: {r:?}");
        assert!(r.unwrap_err().is_retryable());
        assert_eq!(kv.get(Cf::Settings, b"b").unwrap(), None, "nothing applied");
        assert_eq!(
            kv.get(Cf::Settings, b"a").unwrap().as_deref(),
            Some(&b"1"[..])
        );
    }
    attempt(Some(b"1"), None).unwrap();
    assert_eq!(kv.get(Cf::Settings, b"a").unwrap(), None);
    assert_eq!(
        kv.get(Cf::Settings, b"b").unwrap().as_deref(),
        Some(&b"written"[..])
    );
}

/// A write by someone else between a transaction's read and its commit
/// makes it run again from fresh reads: the result is as if serial.
pub fn tx_retries_after_a_concurrent_write(kv: impl KvStore) {
    let m = Meta::new(kv);
    put(m.kv(), Cf::Settings, b"x", b"1");
    let runs = AtomicU32::new(0);
    let out: Result<Vec<u8>, crate::MetaError> = m.transact(|tx| {
        let x = tx.get(Cf::Settings, b"x")?.unwrap();
        if runs.fetch_add(1, Ordering::SeqCst) == 0 {
            put(m.kv(), Cf::Settings, b"x", b"2"); // the concurrent writer
        }
        let mut y = x.clone();
        y.extend_from_slice(b"+");
        tx.put(Cf::Settings, b"y".to_vec(), y.clone());
        Ok(y)
    });
    assert_eq!(out.unwrap(), b"2+");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(
        m.kv().get(Cf::Settings, b"y").unwrap().as_deref(),
        Some(&b"2+"[..])
    );
}

pub fn tx_reads_its_own_writes(kv: impl KvStore) {
    let m = Meta::new(kv);
    put(m.kv(), Cf::Settings, b"x", b"old");
    m.transact(|tx| {
        assert_eq!(tx.get(Cf::Settings, b"x")?.as_deref(), Some(&b"old"[..]));
        tx.put(Cf::Settings, b"x".to_vec(), b"new".to_vec());
        assert_eq!(tx.get(Cf::Settings, b"x")?.as_deref(), Some(&b"new"[..]));
        tx.delete(Cf::Settings, b"x".to_vec());
        assert_eq!(tx.get(Cf::Settings, b"x")?, None);
        assert_eq!(tx.peek(Cf::Settings, b"x")?, None);
        tx.put(Cf::Settings, b"x".to_vec(), b"last".to_vec());
        Ok::<_, crate::MetaError>(())
    })
    .unwrap();
    assert_eq!(
        m.kv().get(Cf::Settings, b"x").unwrap().as_deref(),
        Some(&b"last"[..])
    );
}

pub fn tx_error_aborts_without_writes(kv: impl KvStore) {
    let m = Meta::new(kv);
    let r: Result<(), crate::MetaError> = m.transact(|tx| {
        tx.put(Cf::Settings, b"x".to_vec(), b"1".to_vec());
        Err(crate::MetaError::Task("refused".into()))
    });
    assert!(matches!(r, Err(crate::MetaError::Task(ref m)) if m == "refused"));
    assert_eq!(m.kv().get(Cf::Settings, b"x").unwrap(), None);
}

/// Peeked keys are no condition: blind writers of one key both commit at
/// the first attempt.
pub fn tx_peek_is_not_a_condition(kv: impl KvStore) {
    let m = Meta::new(kv);
    put(m.kv(), Cf::Settings, b"x", b"1");
    let runs = AtomicU32::new(0);
    m.transact(|tx| {
        runs.fetch_add(1, Ordering::SeqCst);
        assert!(tx.peek(Cf::Settings, b"x")?.is_some());
        put(m.kv(), Cf::Settings, b"x", b"other");
        tx.put(Cf::Settings, b"x".to_vec(), b"mine".to_vec());
        Ok::<_, crate::MetaError>(())
    })
    .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        m.kv().get(Cf::Settings, b"x").unwrap().as_deref(),
        Some(&b"mine"[..])
    );
}

/// A transaction that only reads is still checked: its reads were all
/// current at one moment.
pub fn tx_read_only_is_checked(kv: impl KvStore) {
    let m = Meta::new(kv);
    put(m.kv(), Cf::Settings, b"a", b"1");
    put(m.kv(), Cf::Settings, b"b", b"1");
    let runs = AtomicU32::new(0);
    let (a, b) = m
        .transact(|tx| {
            let a = tx.get(Cf::Settings, b"a")?.unwrap();
            if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                // Someone changes both between our two reads.
                let mut w = Batch::new();
                w.put(Cf::Settings, b"a".to_vec(), b"2".to_vec());
                w.put(Cf::Settings, b"b".to_vec(), b"2".to_vec());
                m.kv().write(w).unwrap();
            }
            let b = tx.get(Cf::Settings, b"b")?.unwrap();
            Ok::<_, crate::MetaError>((a, b))
        })
        .unwrap();
    assert_eq!((a, b), (b"2".to_vec(), b"2".to_vec()), "never a torn read");
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

/// Two transactions on the same key: every increment survives.
pub fn race_same_key_increments_are_serial(kv: impl KvStore) {
    let m = Meta::new(kv);
    let (threads, each) = (4, 50);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..each {
                    m.transact(|tx| {
                        let n: u64 = tx.get_as(Cf::Settings, b"n")?.unwrap_or(0);
                        tx.put_as(Cf::Settings, b"n".to_vec(), &(n + 1));
                        Ok::<_, crate::MetaError>(())
                    })
                    .unwrap();
                }
            });
        }
    });
    let n: u64 = m.get(Cf::Settings, b"n").unwrap().unwrap();
    assert_eq!(n, threads * each);
}

fn rec(media_type: &str, subject: Option<&Digest>) -> ManifestRecord {
    ManifestRecord {
        media_type: media_type.into(),
        size: 3,
        artifact_type: None,
        subject: subject.map(|s| s.to_string()),
        blobs: vec![],
        children: vec![],
        pushed_ms: 1,
    }
}

fn put_m(m: &Meta, repo: &str, d: &Digest, tags: &[&str], refs: Vec<Ref>) -> Result<(), Refused> {
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    m.put_manifest(PutManifest {
        repo,
        digest: d,
        record: rec("application/x", None),
        body: b"body",
        tags: &tags,
        referrer: None,
        refs,
        allow_missing: false,
    })
    .unwrap()
}

pub fn uploads_open_advance_close(kv: impl KvStore) {
    let m = Meta::new(kv);
    let up = |offset| crate::UploadRecord {
        repo: "a".into(),
        offset,
        started_ms: 1,
        updated_ms: 2,
    };
    m.open_upload("s", &up(0)).unwrap();
    assert_eq!(m.upload("s").unwrap().unwrap().offset, 0);
    assert!(m.put_upload("s", &up(7)).unwrap());
    assert_eq!(m.upload("s").unwrap().unwrap().offset, 7);
    m.delete_upload("s").unwrap();
    assert!(m.upload("s").unwrap().is_none());
    // A removed session is not brought back by a late advance.
    assert!(!m.put_upload("s", &up(9)).unwrap());
    assert!(m.upload("s").unwrap().is_none());
    // Completing links the blob and drops the session, together.
    let d = Digest::sha256_of(b"blob");
    m.open_upload("t", &up(4)).unwrap();
    m.complete_upload("t", "a", &d, 4).unwrap();
    assert!(m.upload("t").unwrap().is_none());
    assert_eq!(m.link("a", &d).unwrap().unwrap().size, 4);
    assert_eq!(m.list_uploads(None, 10).unwrap().len(), 0);
}

pub fn links_blobs_and_generations(kv: impl KvStore) {
    let m = Meta::new(kv);
    let d = Digest::sha256_of(b"one");
    m.link_blob("a", &d, 3).unwrap();
    assert_eq!(m.link("a", &d).unwrap().unwrap().size, 3);
    assert!(m.link("a/b", &d).unwrap().is_none());
    let b = m.blob(&d).unwrap().unwrap();
    assert_eq!((b.size, b.generation), (3, 1));
    assert!(m.repo("a").unwrap().is_some());
    // Linking again changes nothing; a new repository bumps the generation.
    m.link_blob("a", &d, 3).unwrap();
    assert_eq!(m.blob(&d).unwrap().unwrap().generation, 1);
    m.link_blob("z", &d, 3).unwrap();
    assert_eq!(m.blob(&d).unwrap().unwrap().generation, 2);
    assert_eq!(m.blob_repos(&d, None, 10).unwrap(), vec!["a", "z"]);
    assert_eq!(m.blob_repos(&d, Some("a"), 10).unwrap(), vec!["z"]);
    // Unlink removes the link and the index row, not the blob.
    assert!(m.unlink_blob("a", &d).unwrap());
    assert!(!m.unlink_blob("a", &d).unwrap());
    assert_eq!(m.blob_repos(&d, None, 10).unwrap(), vec!["z"]);
    assert!(m.blob(&d).unwrap().is_some());
    // A sweep refuses a linked blob, and a stale generation.
    assert!(!m.sweep_blob(&d, 2).unwrap());
    m.unlink_blob("z", &d).unwrap();
    assert!(!m.sweep_blob(&d, 1).unwrap(), "stale generation");
    assert!(m.sweep_blob(&d, 2).unwrap());
    assert!(m.blob(&d).unwrap().is_none());
    assert!(!m.sweep_blob(&d, 2).unwrap(), "already gone");
}

pub fn mounts_need_a_source(kv: impl KvStore) {
    let m = Meta::new(kv);
    let d = Digest::sha256_of(b"layer");
    assert_eq!(m.mount_blob("to/x", &d, None).unwrap(), None);
    assert_eq!(m.mount_blob("to/x", &d, Some("from/x")).unwrap(), None);
    m.link_blob("from/x", &d, 5).unwrap();
    assert_eq!(m.mount_blob("to/x", &d, Some("other/x")).unwrap(), None);
    assert!(m.link("to/x", &d).unwrap().is_none());
    assert_eq!(m.mount_blob("to/x", &d, Some("from/x")).unwrap(), Some(5));
    assert_eq!(m.mount_blob("to/y", &d, None).unwrap(), Some(5));
    assert_eq!(
        m.blob_repos(&d, None, 10).unwrap(),
        vec!["from/x", "to/x", "to/y"]
    );
}

/// Tags move, deletes cascade, names that share a prefix stay apart.
pub fn manifests_tags_move_and_cascade(kv: impl KvStore) {
    let m = Meta::new(kv);
    let d1 = Digest::sha256_of(b"one");
    let d2 = Digest::sha256_of(b"two");
    let subj = Digest::sha256_of(b"subject");
    put_m(&m, "a", &d1, &["v1"], vec![]).unwrap();
    m.put_manifest(PutManifest {
        repo: "a",
        digest: &d2,
        record: rec("application/y", Some(&subj)),
        body: b"two",
        tags: &["v2".to_string()],
        referrer: Some((
            subj.clone(),
            ReferrerRecord {
                media_type: "application/y".into(),
                digest: d2.to_string(),
                size: 3,
                artifact_type: Some("application/sig".into()),
                annotations: None,
            },
        )),
        refs: vec![],
        allow_missing: false,
    })
    .unwrap()
    .unwrap();
    let (r, body) = m.manifest("a", &d2).unwrap().unwrap();
    assert_eq!(
        (r.media_type.as_str(), body.as_slice()),
        ("application/y", &b"two"[..])
    );
    assert_eq!(m.tag("a", "v1").unwrap().unwrap().digest, d1.to_string());
    assert_eq!(m.referrers("a", &subj, 10).unwrap().len(), 1);
    assert_eq!(m.referrers("a/b", &subj, 10).unwrap().len(), 0);

    // Move v1 to d2 and add a second tag, in one put.
    let created = m.tag("a", "v1").unwrap().unwrap().created_ms;
    m.put_manifest(PutManifest {
        repo: "a",
        digest: &d2,
        record: rec("application/y", Some(&subj)),
        body: b"two",
        tags: &["v1".to_string(), "also".to_string()],
        referrer: None,
        refs: vec![],
        allow_missing: false,
    })
    .unwrap()
    .unwrap();
    let v1 = m.tag("a", "v1").unwrap().unwrap();
    assert_eq!(v1.digest, d2.to_string());
    assert_eq!(
        v1.created_ms, created,
        "a moved tag keeps its creation time"
    );
    assert_eq!(
        m.list_tags("a", None, 10).unwrap().items,
        vec!["also", "v1", "v2"]
    );

    // Delete by tag removes only the tag.
    assert!(m.delete_tag("a", "also").unwrap());
    assert!(!m.delete_tag("a", "also").unwrap());
    assert!(m.manifest_exists("a", &d2).unwrap());
    // Delete by digest removes the manifest, its tags and its referrer
    // entry, but not d1 (whose old tag v1 moved away).
    assert!(m.delete_manifest("a", &d2).unwrap());
    assert!(!m.delete_manifest("a", &d2).unwrap());
    assert_eq!(
        m.list_tags("a", None, 10).unwrap().items,
        Vec::<String>::new()
    );
    assert!(m.manifest_exists("a", &d1).unwrap());
    assert_eq!(m.referrers("a", &subj, 10).unwrap().len(), 0);
    // The same digest in another repository is another manifest.
    assert!(!m.manifest_exists("a/b", &d1).unwrap());
}

pub fn manifest_references_checked_and_indexed(kv: impl KvStore) {
    let m = Meta::new(kv);
    let (layer, config) = (Digest::sha256_of(b"layer"), Digest::sha256_of(b"config"));
    let (img, idx) = (Digest::sha256_of(b"img"), Digest::sha256_of(b"idx"));
    let refs = || {
        vec![
            Ref::Blob {
                digest: config.clone(),
                size: 6,
            },
            Ref::Blob {
                digest: layer.clone(),
                size: 5,
            },
        ]
    };
    m.link_blob("r", &config, 6).unwrap();
    assert_eq!(
        put_m(&m, "r", &img, &["t"], refs()),
        Err(Refused::Missing(Ref::Blob {
            digest: layer.clone(),
            size: 5
        }))
    );
    assert!(
        !m.manifest_exists("r", &img).unwrap(),
        "refused: nothing stored"
    );
    assert!(m.tag("r", "t").unwrap().is_none());
    m.link_blob("r", &layer, 4).unwrap();
    assert_eq!(
        put_m(&m, "r", &img, &[], refs()),
        Err(Refused::SizeMismatch {
            digest: layer.clone(),
            declared: 5,
            stored: 4
        })
    );
    // The blob's size is what was stored first: declare that.
    let refs4 = vec![
        Ref::Blob {
            digest: config.clone(),
            size: 6,
        },
        Ref::Blob {
            digest: layer.clone(),
            size: 4,
        },
    ];
    put_m(&m, "r", &img, &["t"], refs4).unwrap();
    let (r, _) = m.manifest("r", &img).unwrap().unwrap();
    assert_eq!(r.blobs, vec![config.to_string(), layer.to_string()]);
    assert_eq!(
        m.referenced_by("r", &layer, 10).unwrap(),
        vec![img.to_string()]
    );
    assert_eq!(
        m.referenced_by("r/2", &layer, 10).unwrap(),
        Vec::<String>::new()
    );

    // An index needs its children in the repository.
    let child = || {
        vec![Ref::Manifest {
            digest: img.clone(),
        }]
    };
    assert!(matches!(
        put_m(&m, "other", &idx, &[], child()),
        Err(Refused::Missing(Ref::Manifest { .. }))
    ));
    put_m(&m, "r", &idx, &["multi"], child()).unwrap();
    assert_eq!(
        m.manifest("r", &idx).unwrap().unwrap().0.children,
        vec![img.to_string()]
    );
    assert_eq!(
        m.referenced_by("r", &img, 10).unwrap(),
        vec![idx.to_string()]
    );

    // Sparse: stored with its missing parts, still indexed.
    let ghost = Digest::sha256_of(b"never pushed");
    let tags: Vec<String> = vec![];
    m.put_manifest(PutManifest {
        repo: "mirror",
        digest: &idx,
        record: rec("application/x", None),
        body: b"idx",
        tags: &tags,
        referrer: None,
        refs: vec![Ref::Manifest {
            digest: ghost.clone(),
        }],
        allow_missing: true,
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        m.referenced_by("mirror", &ghost, 10).unwrap(),
        vec![idx.to_string()]
    );

    // Deleting a manifest drops its index rows.
    assert!(m.delete_manifest("r", &idx).unwrap());
    assert_eq!(
        m.referenced_by("r", &img, 10).unwrap(),
        Vec::<String>::new()
    );
    assert!(m.delete_manifest("r", &img).unwrap());
    assert_eq!(
        m.referenced_by("r", &layer, 10).unwrap(),
        Vec::<String>::new()
    );
}

pub fn listings_page(kv: impl KvStore) {
    let m = Meta::new(kv);
    let d = Digest::sha256_of(b"one");
    put_m(&m, "a", &d, &["v1", "v2", "also"], vec![]).unwrap();
    let p = m.list_tags("a", None, 2).unwrap();
    assert_eq!(
        (p.items, p.more),
        (vec!["also".to_string(), "v1".to_string()], true)
    );
    let p = m.list_tags("a", Some("v1"), 2).unwrap();
    assert_eq!((p.items, p.more), (vec!["v2".to_string()], false));
    for r in ["b", "a/b", "c", "a-b"] {
        m.link_blob(r, &d, 3).unwrap();
    }
    let all = m.list_repos(None, 100).unwrap();
    assert_eq!(all.items, vec!["a", "a-b", "a/b", "b", "c"]);
    let p = m.list_repos(Some("a/b"), 2).unwrap();
    assert_eq!(
        (p.items, p.more),
        (vec!["b".to_string(), "c".to_string()], false)
    );
}

fn registry() -> RegistryRecord {
    RegistryRecord {
        id: "id".into(),
        created_ms: 1,
        visibility: Visibility::Private,
        storage_limit: None,
        status: RegistryStatus::Active,
        allow_sparse: false,
    }
}

fn user() -> UserRecord {
    UserRecord {
        id: "u".into(),
        password_hash: "h".into(),
        can_push: false,
        created_ms: 1,
        expires_ms: None,
    }
}

fn token() -> TokenRecord {
    TokenRecord {
        name: "t".into(),
        secret_hash: "h".into(),
        registries: None,
        read_write: false,
        created_ms: 1,
        expires_ms: None,
        last_used_ms: None,
        status: TokenStatus::Active,
    }
}

pub fn registries_users_tokens(kv: impl KvStore) {
    let m = Meta::new(kv);
    assert_eq!(
        m.create_user("acme", "ci", &user()).unwrap(),
        Err(UserRefused::NoRegistry)
    );
    assert!(m.create_registry("acme", &registry()).unwrap());
    assert!(!m.create_registry("acme", &registry()).unwrap());
    assert_eq!(m.create_user("acme", "ci", &user()).unwrap(), Ok(()));
    assert_eq!(
        m.create_user("acme", "ci", &user()).unwrap(),
        Err(UserRefused::Exists)
    );
    let u = m.update_user("acme", "ci", |u| {
        u.can_push = true;
        true
    });
    assert!(u.unwrap().unwrap().can_push);
    assert!(m.user("acme", "ci").unwrap().unwrap().can_push);
    assert!(m.update_user("acme", "nobody", |_| true).unwrap().is_none());
    assert_eq!(m.delete_registry("acme").unwrap(), RegistryDelete::Deleted);
    assert!(
        m.user("acme", "ci").unwrap().is_none(),
        "users go with their registry"
    );
    assert_eq!(m.delete_registry("acme").unwrap(), RegistryDelete::NotFound);
    // not while it has repositories
    assert!(m.create_registry("full", &registry()).unwrap());
    m.link_blob("full/app", &Digest::sha256_of(b"x"), 1)
        .unwrap();
    assert_eq!(
        m.delete_registry("full").unwrap(),
        RegistryDelete::NotEmpty(1)
    );
    assert!(m.registry("full").unwrap().is_some());

    assert!(m.create_token("t1", &token()).unwrap());
    assert!(!m.create_token("t1", &token()).unwrap());
    let t = m
        .update_token("t1", |t| {
            t.status = TokenStatus::Revoked;
            true
        })
        .unwrap()
        .unwrap();
    assert_eq!(t.status, TokenStatus::Revoked);
    assert_eq!(m.token("t1").unwrap().unwrap().status, TokenStatus::Revoked);
    // an update that declines writes nothing
    m.update_token("t1", |t| {
        t.name = "changed".into();
        false
    })
    .unwrap();
    assert_eq!(m.token("t1").unwrap().unwrap().name, "t");
}

/// Concurrent creators of one registry: exactly one succeeds.
pub fn race_create_registry_one_wins(kv: impl KvStore) {
    let m = Meta::new(kv);
    for round in 0..20 {
        let name = format!("reg-{round}");
        let wins = AtomicU32::new(0);
        let start = Barrier::new(4);
        std::thread::scope(|s| {
            for i in 0..4 {
                let (m, name, wins, start) = (&m, &name, &wins, &start);
                s.spawn(move || {
                    let mut r = registry();
                    r.id = format!("creator-{i}");
                    start.wait();
                    if m.create_registry(name, &r).unwrap() {
                        wins.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(wins.load(Ordering::SeqCst), 1, "round {round}");
    }
}

/// A mount racing a garbage-collection sweep of the same blob: never a link
/// to a blob whose record is gone, never a sweep of a linked blob.
pub fn race_link_vs_blob_sweep(kv: impl KvStore) {
    let m = Meta::new(kv);
    for round in 0..40 {
        let d = Digest::sha256_of(format!("blob {round}").as_bytes());
        m.link_blob("seed/x", &d, 9).unwrap();
        m.unlink_blob("seed/x", &d).unwrap();
        let marked = m.blob(&d).unwrap().unwrap().generation;
        let start = Barrier::new(2);
        let (mounted, swept) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                start.wait();
                m.mount_blob("app/x", &d, None).unwrap()
            });
            let b = s.spawn(|| {
                start.wait();
                m.sweep_blob(&d, marked).unwrap()
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        let linked = m.link("app/x", &d).unwrap().is_some();
        let stored = m.blob(&d).unwrap().is_some();
        assert_eq!(mounted.is_some(), linked, "round {round}");
        assert!(!linked || stored, "round {round}: a link to a swept blob");
        assert!(!(swept && linked), "round {round}: swept a linked blob");
        assert!(
            swept || mounted.is_some(),
            "round {round}: one of them must win"
        );
    }
}

/// Tags moved between manifests while manifests are deleted: the tag
/// tables stay consistent (a tag points at a stored manifest and is indexed
/// under that manifest only).
pub fn race_tag_moves_and_deletes(kv: impl KvStore) {
    let m = Meta::new(kv);
    let ds: Vec<Digest> = (0..3)
        .map(|i| Digest::sha256_of(format!("m{i}").as_bytes()))
        .collect();
    std::thread::scope(|s| {
        for t in 0..3 {
            let (m, ds) = (&m, &ds);
            s.spawn(move || {
                for i in 0..30 {
                    let d = &ds[(t + i) % ds.len()];
                    if t == 2 && i % 3 == 0 {
                        m.delete_manifest("r", d).unwrap();
                    } else {
                        put_m(m, "r", d, &["t", "u"], vec![]).unwrap();
                    }
                }
            });
        }
    });
    for tag in ["t", "u"] {
        let index: Vec<Vec<u8>> = keys(
            m.kv()
                .scan(Cf::TagsByDigest, &key2("r", ""), None, 100)
                .unwrap(),
        )
        .into_iter()
        .filter(|k| k.ends_with(format!("\0{tag}").as_bytes()))
        .collect();
        match m.tag("r", tag).unwrap() {
            Some(t) => {
                let d = Digest::parse(&t.digest).unwrap();
                assert!(
                    m.manifest_exists("r", &d).unwrap(),
                    "{tag} points at a deleted manifest"
                );
                assert_eq!(index, vec![crate::meta::key3("r", &t.digest, tag)]);
            }
            None => assert!(index.is_empty(), "{tag}: index rows without the tag"),
        }
    }
}

/// Recording a token's use while it is revoked never un-revokes it.
pub fn race_token_update_vs_revoke(kv: impl KvStore) {
    let m = Meta::new(kv);
    for round in 0..20 {
        let id = format!("tok{round}");
        m.create_token(&id, &token()).unwrap();
        let start = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                for i in 0..20 {
                    m.update_token(&id, |t| {
                        let active = t.status == TokenStatus::Active;
                        if active {
                            t.last_used_ms = Some(i);
                        }
                        active
                    })
                    .unwrap();
                }
            });
            s.spawn(|| {
                start.wait();
                m.update_token(&id, |t| {
                    t.status = TokenStatus::Revoked;
                    true
                })
                .unwrap();
            });
        });
        assert_eq!(m.token(&id).unwrap().unwrap().status, TokenStatus::Revoked);
    }
}

/// Counters: blind adds from many writers lose nothing, and the instance
/// counters follow what is created and removed.
pub fn counters_add_blindly_and_exactly(kv: impl KvStore) {
    let m = Meta::new(kv);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    let mut b = Batch::new();
                    b.add(Cf::Counters, b"n".to_vec(), 2);
                    b.add(Cf::Counters, b"n".to_vec(), -1);
                    m.kv().write(b).unwrap();
                }
            });
        }
    });
    let n = m.kv().get(Cf::Counters, b"n").unwrap();
    assert_eq!(crate::kv::counter_value(n.as_deref()), 200);

    let count = |name: &str| {
        m.counters()
            .unwrap()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
    };
    let (d1, d2) = (Digest::sha256_of(b"c1"), Digest::sha256_of(b"c2"));
    m.link_blob("x/a", &d1, 10).unwrap();
    m.link_blob("x/b", &d1, 10).unwrap(); // same blob, no new bytes
    m.link_blob("x/a", &d2, 5).unwrap();
    assert_eq!((count("blobs"), count("blob_bytes")), (2, 15));
    assert_eq!(count("repositories"), 2);
    assert_eq!(
        m.counter(&crate::counter::registry_repositories("x"))
            .unwrap(),
        2
    );
    assert_eq!(
        m.counter(&crate::counter::registry_repositories("y"))
            .unwrap(),
        0
    );
    m.unlink_blob("x/a", &d1).unwrap();
    m.unlink_blob("x/b", &d1).unwrap();
    let g = m.blob(&d1).unwrap().unwrap().generation;
    assert!(m.sweep_blob(&d1, g).unwrap());
    assert_eq!((count("blobs"), count("blob_bytes")), (1, 5));
    assert!(m.create_registry("acme", &registry()).unwrap());
    assert!(!m.create_registry("acme", &registry()).unwrap());
    assert_eq!(count("registries"), 1);
    assert_eq!(m.delete_registry("acme").unwrap(), RegistryDelete::Deleted);
    assert_eq!(count("registries"), 0);
}
