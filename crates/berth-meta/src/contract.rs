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
            repo_figures_exact,
            race_repo_figures_exact,
            tag_history_and_restore,
            delete_repository_takes_everything,
            manifest_delete_refused_while_indexed,
            pulls_and_audit,
            quota_charged_refused_and_released,
            race_quota_never_overshoots,
            guard_rewrites_are_seen,
            gc_steps_keep_what_is_reached,
            race_gc_unlink_vs_manifest_push,
            race_gc_untagged_vs_tag_push,
            tag_rules_protect_and_freeze,
            race_immutable_tag_created_once,
            recycle_bin_restore_and_purge,
            check_finds_what_is_off,
            upload_sessions_limited_per_principal,
            upload_sessions_limited_in_total,
            usage_sampled_per_interval,
            gc_one_run_per_scope_leased,
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

/// A principal's open upload sessions are counted exactly against its
/// limit: refused at the limit, room again when one closes (completed or
/// deleted), other principals unaffected; 16 concurrent opens with room
/// for 5 admit exactly 5.
pub fn upload_sessions_limited_per_principal(kv: impl KvStore) {
    let m = Meta::new(kv);
    let up = |by: &str| crate::UploadRecord {
        repo: "u/app".into(),
        offset: 0,
        started_ms: 1,
        updated_ms: 1,
        by: Some(by.into()),
        slot: None,
        counted: false,
    };
    let per = |n| crate::UploadLimits {
        per_principal: Some(n),
        total: None,
    };
    let refused = |r: Result<(), crate::MetaError>| {
        matches!(r, Err(crate::MetaError::TooManyUploads { open: 2, .. }))
    };
    m.open_upload("s1", &up("token:a"), per(2)).unwrap();
    m.open_upload("s2", &up("token:a"), per(2)).unwrap();
    assert!(refused(m.open_upload("s3", &up("token:a"), per(2))));
    assert!(
        m.upload("s3").unwrap().is_none(),
        "a refused session is not recorded"
    );
    m.open_upload("b1", &up("token:b"), per(2)).unwrap();
    m.delete_upload("s1").unwrap();
    m.open_upload("s3", &up("token:a"), per(2)).unwrap();
    assert!(refused(m.open_upload("s4", &up("token:a"), per(2))));
    m.complete_upload("s2", "u/app", &Digest::sha256_of(b"u"), 1)
        .unwrap();
    m.open_upload("s4", &up("token:a"), per(2)).unwrap();
    consistent(&m);
    let admitted = AtomicU32::new(0);
    let start = Barrier::new(16);
    std::thread::scope(|s| {
        for t in 0..16 {
            let (m, admitted, start) = (&m, &admitted, &start);
            s.spawn(move || {
                start.wait();
                match m.open_upload(&format!("race{t}"), &up("user:u+ci"), per(5)) {
                    Ok(()) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(crate::MetaError::TooManyUploads { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 5);
    consistent(&m);
    // opened without a limit: counted all the same, so a limit set later
    // sees it
    m.open_upload("c1", &up("token:c"), crate::UploadLimits::default())
        .unwrap();
    assert!(matches!(
        m.open_upload("c2", &up("token:c"), per(1)),
        Err(crate::MetaError::TooManyUploads { open: 1, .. })
    ));
    // a session an older version opened (not counted) closes without
    // counting down
    m.transact(|tx| {
        tx.put_as(Cf::Uploads, b"old".to_vec(), &up("token:c"));
        tx.put(Cf::UploadOwners, key2("token:c", "old"), Vec::new());
        Ok::<_, crate::MetaError>(())
    })
    .unwrap();
    m.delete_upload("old").unwrap();
    assert_eq!(
        m.counter(&crate::counter::upload_owner("token:c")).unwrap(),
        1
    );
    m.delete_upload("c1").unwrap();
    assert_eq!(
        m.counter(&crate::counter::upload_owner("token:c")).unwrap(),
        0
    );
    consistent(&m);
}

/// The instance's open upload sessions, whoever opened them, are counted
/// exactly against the total limit: every place is usable (the slots'
/// shares add up to the limit, a full slot sends an open to the next),
/// refused at the limit, room again when one closes, an advance keeps the
/// place; 32 concurrent opens with room for 7 admit exactly 7.
pub fn upload_sessions_limited_in_total(kv: impl KvStore) {
    let m = Meta::new(kv);
    let up = |by: Option<&str>| crate::UploadRecord {
        repo: "u/app".into(),
        offset: 0,
        started_ms: 1,
        updated_ms: 1,
        by: by.map(Into::into),
        slot: None,
        counted: false,
    };
    let total = |n| crate::UploadLimits {
        per_principal: Some(1000),
        total: Some(n),
    };
    let refused = |r: Result<(), crate::MetaError>| match r {
        Err(crate::MetaError::TooManyUploadsTotal { open }) => {
            assert_eq!(open, 21);
            true
        }
        Err(e) => panic!("{e}"),
        Ok(()) => false,
    };
    for i in 0..21 {
        let by = [Some("token:a"), Some("user:u+ci"), None][i % 3];
        m.open_upload(&format!("s{i}"), &up(by), total(21)).unwrap();
    }
    assert!(refused(m.open_upload("x", &up(None), total(21))));
    assert!(refused(m.open_upload("y", &up(Some("token:b")), total(21))));
    assert!(
        m.upload("x").unwrap().is_none(),
        "a refused session is not recorded"
    );
    // an advance keeps the session's place: it still frees one when closed
    let mut advanced = m.upload("s4").unwrap().unwrap();
    advanced.offset = 9;
    advanced.slot = None;
    assert!(m.put_upload("s4", &advanced).unwrap());
    assert!(m.upload("s4").unwrap().unwrap().slot.is_some());
    m.delete_upload("s4").unwrap();
    m.open_upload("x", &up(None), total(21)).unwrap();
    assert!(refused(m.open_upload("y", &up(None), total(21))));
    m.complete_upload("s7", "u/app", &Digest::sha256_of(b"u"), 1)
        .unwrap();
    m.open_upload("y", &up(None), total(21)).unwrap();
    consistent(&m);
    // a lower limit: the sessions over it stay, new ones wait for room
    assert!(matches!(
        m.open_upload("z", &up(None), total(5)),
        Err(crate::MetaError::TooManyUploadsTotal { .. })
    ));
    for i in 0..21 {
        let _ = m.delete_upload(&format!("s{i}"));
    }
    m.delete_upload("x").unwrap();
    m.delete_upload("y").unwrap();
    consistent(&m);
    let admitted = AtomicU32::new(0);
    let start = Barrier::new(32);
    std::thread::scope(|s| {
        for t in 0..32 {
            let (m, admitted, start) = (&m, &admitted, &start);
            s.spawn(move || {
                start.wait();
                match m.open_upload(&format!("race{t}"), &up(None), total(7)) {
                    Ok(()) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(crate::MetaError::TooManyUploadsTotal { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 7);
    consistent(&m);
}

/// `Meta::check` finds nothing to recount differently.
fn consistent(m: &Meta) {
    let r = m.check().unwrap();
    assert!(r.ok(), "{:#?}", r.problems);
}

/// The check recounts: a counter, an index row or a link made wrong by
/// hand is each reported.
pub fn check_finds_what_is_off(kv: impl KvStore) {
    let m = Meta::new(kv);
    let d = Digest::sha256_of(b"layer");
    m.link_blob("c/app", &d, 5).unwrap();
    put_m(
        &m,
        "c/app",
        &Digest::sha256_of(b"m"),
        &["v1"],
        vec![Ref::Blob {
            digest: d.clone(),
            size: 5,
        }],
    )
    .unwrap();
    consistent(&m);
    let report = |m: &Meta| m.check().unwrap().problems.join("\n");
    let mut b = Batch::new();
    b.add(
        Cf::Counters,
        crate::counter::registry_blob_bytes("c").into_bytes(),
        1,
    );
    m.kv().write(b).unwrap();
    assert!(
        report(&m).contains("registry/c/blob_bytes"),
        "{}",
        report(&m)
    );
    let mut b = Batch::new();
    b.add(
        Cf::Counters,
        crate::counter::registry_blob_bytes("c").into_bytes(),
        -1,
    );
    b.delete(Cf::BlobRepos, crate::meta::key2(&d.to_string(), "c/app"));
    m.kv().write(b).unwrap();
    assert!(report(&m).contains("blob_repos"), "{}", report(&m));
    let mut b = Batch::new();
    b.put(
        Cf::BlobRepos,
        crate::meta::key2(&d.to_string(), "c/app"),
        Vec::new(),
    );
    b.put(
        Cf::Links,
        crate::meta::key2("c/other", "sha256:0000"),
        crate::meta::enc(&crate::LinkRecord {
            size: 1,
            linked_ms: 0,
        }),
    );
    m.kv().write(b).unwrap();
    let r = report(&m);
    assert!(r.contains("dangling link"), "{r}");
    assert!(r.contains("blob_repos row"), "{r}");
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
        config_media_type: None,
        blobs: vec![],
        children: vec![],
        pushed_ms: 1,
        rev: 0,
    }
}

/// Push a manifest of `refs` with `tags`, `by` a principal.
fn put_as(
    m: &Meta,
    repo: &str,
    d: &Digest,
    tags: &[&str],
    refs: Vec<Ref>,
    by: &str,
) -> Result<Result<(), Refused>, crate::MetaError> {
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
        by,
    })
}

fn put_m(m: &Meta, repo: &str, d: &Digest, tags: &[&str], refs: Vec<Ref>) -> Result<(), Refused> {
    put_as(m, repo, d, tags, refs, "test").unwrap()
}

pub fn uploads_open_advance_close(kv: impl KvStore) {
    let m = Meta::new(kv);
    let up = |offset| crate::UploadRecord {
        repo: "a".into(),
        offset,
        started_ms: 1,
        updated_ms: 2,
        by: None,
        slot: None,
        counted: false,
    };
    m.open_upload("s", &up(0), Default::default()).unwrap();
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
    m.open_upload("t", &up(4), Default::default()).unwrap();
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
        by: "test",
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
        by: "test",
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
    assert!(m.delete_tag("a", "also", "test").unwrap());
    assert!(!m.delete_tag("a", "also", "test").unwrap());
    assert!(m.manifest_exists("a", &d2).unwrap());
    // Delete by digest removes the manifest, its tags and its referrer
    // entry, but not d1 (whose old tag v1 moved away).
    assert!(m.delete_manifest("a", &d2, "test").unwrap());
    assert!(!m.delete_manifest("a", &d2, "test").unwrap());
    assert_eq!(
        m.list_tags("a", None, 10).unwrap().items,
        Vec::<String>::new()
    );
    assert!(m.manifest_exists("a", &d1).unwrap());
    assert_eq!(m.referrers("a", &subj, 10).unwrap().len(), 0);
    // The same digest in another repository is another manifest.
    assert!(!m.manifest_exists("a/b", &d1).unwrap());
    consistent(&m);
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
        by: "test",
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        m.referenced_by("mirror", &ghost, 10).unwrap(),
        vec![idx.to_string()]
    );

    // Deleting a manifest drops its index rows.
    assert!(m.delete_manifest("r", &idx, "test").unwrap());
    assert_eq!(
        m.referenced_by("r", &img, 10).unwrap(),
        Vec::<String>::new()
    );
    assert!(m.delete_manifest("r", &img, "test").unwrap());
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
                        m.delete_manifest("r", d, "test").unwrap();
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
    consistent(&m);
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

/// Store a manifest whose config has media type `config` and whose size
/// is `size`, with `tags`, pushed `by`.
fn put_kind(
    m: &Meta,
    repo: &str,
    d: &Digest,
    tags: &[&str],
    refs: Vec<Ref>,
    (config, size): (Option<&str>, u64),
    by: &str,
) {
    let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    let mut record = rec(berth_core::media_types::OCI_MANIFEST, None);
    record.config_media_type = config.map(str::to_string);
    record.size = size;
    m.put_manifest(PutManifest {
        repo,
        digest: d,
        record,
        body: b"body",
        tags: &tags,
        referrer: None,
        refs,
        allow_missing: false,
        by,
    })
    .unwrap()
    .unwrap();
}

fn blob_ref(d: &Digest, size: u64) -> Ref {
    Ref::Blob {
        digest: d.clone(),
        size,
    }
}

/// Repository and registry figures follow every change exactly: shared
/// blobs count once per registry, manifests by kind, tags by name.
pub fn repo_figures_exact(kv: impl KvStore) {
    use berth_core::media_types::{ArtifactKind, HELM_CONFIG, OCI_IMAGE_CONFIG};
    let m = Meta::new(kv);
    let (base, top, other) = (
        Digest::sha256_of(b"base"),
        Digest::sha256_of(b"top"),
        Digest::sha256_of(b"other"),
    );
    m.link_blob("t/app", &base, 100).unwrap();
    m.link_blob("t/app", &top, 10).unwrap();
    m.link_blob("t/app", &top, 10).unwrap(); // again: no change
    m.link_blob("t/lib", &base, 100).unwrap();
    m.link_blob("u/app", &base, 100).unwrap();
    m.link_blob("t/chart", &other, 7).unwrap();
    let img = Digest::sha256_of(b"img");
    put_kind(
        &m,
        "t/app",
        &img,
        &["v1", "latest"],
        vec![blob_ref(&base, 100), blob_ref(&top, 10)],
        (Some(OCI_IMAGE_CONFIG), 50),
        "admin",
    );
    // The same manifest again, one tag already there: nothing recounted.
    put_kind(
        &m,
        "t/app",
        &img,
        &["v1", "v2"],
        vec![blob_ref(&base, 100)],
        (Some(OCI_IMAGE_CONFIG), 50),
        "admin",
    );
    let chart = Digest::sha256_of(b"chart");
    put_kind(
        &m,
        "t/chart",
        &chart,
        &["0.1.0"],
        vec![],
        (Some(HELM_CONFIG), 20),
        "admin",
    );

    let app = m.repo_stats("t/app").unwrap();
    assert_eq!(
        (
            app.bytes,
            app.manifest_bytes,
            app.artifacts,
            app.tags,
            app.size()
        ),
        (110, 50, 1, 3, 160)
    );
    assert_eq!(app.kind(), ArtifactKind::Image);
    assert_eq!(
        m.repo_stats("t/chart").unwrap().kind(),
        ArtifactKind::HelmChart
    );
    assert_eq!(m.repo_stats("t/lib").unwrap().bytes, 100);
    assert_eq!(m.repo_stats("nope").unwrap(), crate::RepoStats::default());
    // base counts once in t, and once in u.
    assert_eq!(m.registry_usage("t").unwrap(), (117, 70));
    assert_eq!(m.registry_usage("u").unwrap(), (100, 0));

    m.unlink_blob("t/app", &base).unwrap();
    assert_eq!(m.repo_stats("t/app").unwrap().bytes, 10);
    assert_eq!(
        m.registry_usage("t").unwrap().0,
        117,
        "t/lib still links base"
    );
    m.unlink_blob("t/lib", &base).unwrap();
    assert_eq!(m.registry_usage("t").unwrap().0, 17);

    assert!(m.delete_tag("t/app", "v2", "admin").unwrap());
    assert_eq!(m.repo_stats("t/app").unwrap().tags, 2);
    assert!(m.delete_manifest("t/app", &img, "admin").unwrap());
    let app = m.repo_stats("t/app").unwrap();
    assert_eq!((app.artifacts, app.tags, app.manifest_bytes), (0, 0, 0));
    assert_eq!(app.kinds, [0, 0, 0]);
    assert_eq!(m.registry_usage("t").unwrap(), (17, 20));
    consistent(&m);
}

/// Concurrent pushes of the same blobs and manifests into sibling
/// repositories leave the figures exact (each first link and each new
/// manifest or tag counted once).
pub fn race_repo_figures_exact(kv: impl KvStore) {
    let m = Meta::new(kv);
    let shared = Digest::sha256_of(b"shared");
    let man = Digest::sha256_of(b"manifest");
    let start = Barrier::new(4);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (m, start, shared, man) = (&m, &start, &shared, &man);
            s.spawn(move || {
                start.wait();
                let repo = format!("r/{}", t % 2);
                for i in 0..15u64 {
                    m.link_blob(&repo, shared, 1000).unwrap();
                    let own = Digest::sha256_of(format!("{t}/{i}").as_bytes());
                    m.link_blob(&repo, &own, i + 1).unwrap();
                    put_kind(
                        m,
                        &repo,
                        man,
                        &["latest", &format!("t{}", i % 4)],
                        vec![blob_ref(shared, 1000)],
                        (None, 9),
                        "admin",
                    );
                }
            });
        }
    });
    let own: i64 = (1..=15).sum::<i64>() * 2; // two threads per repository
    for r in ["r/0", "r/1"] {
        let st = m.repo_stats(r).unwrap();
        assert_eq!(
            (st.bytes, st.artifacts, st.tags, st.manifest_bytes),
            (1000 + own, 1, 5, 9),
            "{r}"
        );
    }
    assert_eq!(m.registry_usage("r").unwrap(), (1000 + 2 * own, 18));
    consistent(&m);
}

/// Every tag move is recorded, newest first, with who did it; a restore
/// points the tag back at an earlier manifest, which must still exist.
pub fn tag_history_and_restore(kv: impl KvStore) {
    let m = Meta::new(kv);
    let (d1, d2) = (Digest::sha256_of(b"h1"), Digest::sha256_of(b"h2"));
    put_kind(&m, "h/r", &d1, &["v"], vec![], (None, 1), "user:h+alice");
    put_kind(&m, "h/r", &d1, &["v"], vec![], (None, 1), "user:h+alice"); // not a move
    std::thread::sleep(std::time::Duration::from_millis(2));
    put_kind(&m, "h/r", &d2, &["v", "w"], vec![], (None, 1), "token:t1");
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert!(m.delete_tag("h/r", "w", "admin").unwrap());

    let v = m.tag_history("h/r", Some("v"), None, 10).unwrap();
    let moves: Vec<_> = v
        .iter()
        .map(|(_, t, e)| (t.as_str(), e.from.clone(), e.to.clone(), e.by.as_str()))
        .collect();
    assert_eq!(
        moves,
        vec![
            ("v", Some(d1.to_string()), Some(d2.to_string()), "token:t1"),
            ("v", None, Some(d1.to_string()), "user:h+alice"),
        ]
    );
    // The whole repository: by tag, then newest first; pages by cursor.
    let all = m.tag_history("h/r", None, None, 10).unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[2].1, "w");
    assert_eq!(
        (all[2].2.from.clone(), all[2].2.to.clone()),
        (Some(d2.to_string()), None)
    );
    let first = m.tag_history("h/r", None, None, 1).unwrap();
    let rest = m.tag_history("h/r", None, Some(&first[0].0), 10).unwrap();
    assert_eq!(rest, all[1..].to_vec());

    // Restore v to d1.
    assert!(m.set_tag("h/r", "v", &d1.to_string(), "admin").unwrap());
    assert_eq!(m.tag("h/r", "v").unwrap().unwrap().digest, d1.to_string());
    let latest = &m.tag_history("h/r", Some("v"), None, 1).unwrap()[0].2;
    assert_eq!(
        (latest.from.clone(), latest.to.clone(), latest.by.as_str()),
        (Some(d2.to_string()), Some(d1.to_string()), "admin")
    );
    let gone = Digest::sha256_of(b"never");
    assert!(!m.set_tag("h/r", "v", &gone.to_string(), "admin").unwrap());
    assert_eq!(m.repo_stats("h/r").unwrap().tags, 1);
    // Deleting a manifest records its tags' removal.
    assert!(m.delete_manifest("h/r", &d1, "token:t2").unwrap());
    let last = &m.tag_history("h/r", Some("v"), None, 1).unwrap()[0].2;
    assert_eq!((last.to.clone(), last.by.as_str()), (None, "token:t2"));
}

/// Deleting a repository removes all it holds and uncounts it; its blobs
/// stay (garbage collection's), other repositories are untouched.
pub fn delete_repository_takes_everything(kv: impl KvStore) {
    let m = Meta::new(kv);
    let (b, c) = (Digest::sha256_of(b"dr-b"), Digest::sha256_of(b"dr-c"));
    for repo in ["d/app", "d/app2"] {
        m.link_blob(repo, &b, 40).unwrap();
    }
    m.link_blob("d/app", &c, 2).unwrap();
    let man = Digest::sha256_of(b"dr-m");
    put_kind(
        &m,
        "d/app",
        &man,
        &["v1"],
        vec![blob_ref(&b, 40)],
        (None, 5),
        "admin",
    );
    put_kind(
        &m,
        "d/app2",
        &man,
        &["v1"],
        vec![blob_ref(&b, 40)],
        (None, 5),
        "admin",
    );
    m.record_pulls(&[("d/app".into(), man.to_string(), 3, 7)])
        .unwrap();
    assert_eq!(
        m.counter(&crate::counter::registry_repositories("d"))
            .unwrap(),
        2
    );

    assert!(m.delete_repository("d/app", "admin").unwrap());
    assert!(!m.delete_repository("d/app", "admin").unwrap());
    assert!(m.repo("d/app").unwrap().is_none());
    assert!(m.manifest("d/app", &man).unwrap().is_none());
    assert!(m.tag("d/app", "v1").unwrap().is_none());
    assert!(m.link("d/app", &b).unwrap().is_none());
    assert_eq!(m.blob_repos(&b, None, 10).unwrap(), vec!["d/app2"]);
    assert!(m.referenced_by("d/app", &b, 10).unwrap().is_empty());
    assert!(m.tag_history("d/app", None, None, 10).unwrap().is_empty());
    assert_eq!(m.repo_stats("d/app").unwrap(), crate::RepoStats::default());
    assert_eq!(m.artifact_pulls("d/app", &man.to_string()).unwrap(), 0);
    assert_eq!(m.pulled_at("d/app", None).unwrap(), None);
    assert_eq!(
        m.counter(&crate::counter::registry_repositories("d"))
            .unwrap(),
        1
    );
    assert_eq!(m.registry_usage("d").unwrap(), (40, 5));
    assert!(
        m.blob(&c).unwrap().is_some(),
        "blobs stay for the collector"
    );
    // d/app2 untouched.
    assert_eq!(
        m.tag("d/app2", "v1").unwrap().unwrap().digest,
        man.to_string()
    );
    assert_eq!(m.repo_stats("d/app2").unwrap().tags, 1);
    // Nothing of d/app is left in any family.
    for cf in Cf::ALL {
        if matches!(cf, Cf::Blobs | Cf::Counters | Cf::Settings | Cf::Audit) {
            continue;
        }
        for (k, _) in m.kv().scan(cf, b"", None, 1000).unwrap() {
            let k = String::from_utf8_lossy(&k);
            assert!(
                !k.starts_with("d/app\0") && k != "d/app" && !k.ends_with("\0d/app"),
                "{cf:?}: {k:?}"
            );
        }
    }
    consistent(&m);
}

/// A manifest an index lists is not deleted through the management API;
/// the refusal names the index.
pub fn manifest_delete_refused_while_indexed(kv: impl KvStore) {
    use crate::ManifestDelete;
    let m = Meta::new(kv);
    let img = Digest::sha256_of(b"child");
    let idx = Digest::sha256_of(b"index");
    put_kind(&m, "i/r", &img, &[], vec![], (None, 1), "admin");
    put_m(
        &m,
        "i/r",
        &idx,
        &["multi"],
        vec![Ref::Manifest {
            digest: img.clone(),
        }],
    )
    .unwrap();
    assert_eq!(
        m.delete_manifest_unreferenced("i/r", &img.to_string(), "admin")
            .unwrap(),
        ManifestDelete::ReferencedBy(idx.to_string())
    );
    assert!(m.manifest_exists("i/r", &img).unwrap());
    assert_eq!(
        m.delete_manifest_unreferenced("i/r", &idx.to_string(), "admin")
            .unwrap(),
        ManifestDelete::Deleted
    );
    assert_eq!(
        m.delete_manifest_unreferenced("i/r", &img.to_string(), "admin")
            .unwrap(),
        ManifestDelete::Deleted
    );
    assert_eq!(
        m.delete_manifest_unreferenced("i/r", &img.to_string(), "admin")
            .unwrap(),
        ManifestDelete::NotFound
    );
    assert_eq!(m.repo_stats("i/r").unwrap().artifacts, 0);
}

/// Pull statistics add up across batches; the audit log lists newest
/// first, filters, and pages by cursor and time range.
pub fn pulls_and_audit(kv: impl KvStore) {
    use crate::{AuditFilter, AuditRecord};
    let m = Meta::new(kv);
    m.record_pulls(&[
        ("p/r".into(), "sha256:a".into(), 2, 100),
        ("p/r".into(), "sha256:b".into(), 1, 90),
    ])
    .unwrap();
    m.record_pulls(&[("p/r".into(), "sha256:a".into(), 3, 200)])
        .unwrap();
    assert_eq!(m.artifact_pulls("p/r", "sha256:a").unwrap(), 5);
    assert_eq!(m.repo_stats("p/r").unwrap().pulls, 6);
    assert_eq!(m.pulled_at("p/r", Some("sha256:a")).unwrap(), Some(200));
    assert_eq!(m.pulled_at("p/r", None).unwrap(), Some(200));

    for i in 0..10u64 {
        m.append_audit(&AuditRecord {
            at_ms: 1000 + i,
            principal: if i % 2 == 0 {
                "admin".into()
            } else {
                "token:x".into()
            },
            client: "127.0.0.1".into(),
            action: if i < 5 {
                "registry.create".into()
            } else {
                "manifest.push".into()
            },
            target: format!("t{i}"),
            registry: Some(if i % 3 == 0 { "a".into() } else { "b".into() }),
            status: 201,
        })
        .unwrap();
    }
    let all = m
        .list_audit(&AuditFilter::default(), None, 100, 10_000)
        .unwrap();
    let targets: Vec<_> = all.items.iter().map(|(_, r)| r.target.clone()).collect();
    assert_eq!(
        targets,
        (0..10).rev().map(|i| format!("t{i}")).collect::<Vec<_>>()
    );
    assert!(all.next.is_none());
    let f = AuditFilter {
        principal: Some("admin".into()),
        action: Some("registry.create".into()),
        ..Default::default()
    };
    let p = m.list_audit(&f, None, 100, 10_000).unwrap();
    let t: Vec<_> = p.items.iter().map(|(_, r)| r.target.as_str()).collect();
    assert_eq!(t, ["t4", "t2", "t0"]);
    let g = AuditFilter {
        registry: Some("a".into()),
        ..Default::default()
    };
    let p = m.list_audit(&g, None, 100, 10_000).unwrap();
    let t: Vec<_> = p.items.iter().map(|(_, r)| r.target.as_str()).collect();
    assert_eq!(t, ["t9", "t6", "t3", "t0"]);
    // Time range, inclusive at both ends, paged two at a time.
    let r = AuditFilter {
        since_ms: Some(1003),
        until_ms: Some(1006),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let p = m.list_audit(&r, after.as_deref(), 2, 10_000).unwrap();
        seen.extend(p.items.iter().map(|(_, r)| r.target.clone()));
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ["t6", "t5", "t4", "t3"]);
    // A small read budget stops early with a cursor to go on from.
    let p = m.list_audit(&f, None, 100, 6).unwrap();
    assert_eq!(p.items.len(), 1);
    let rest = m.list_audit(&f, p.next.as_deref(), 100, 10_000).unwrap();
    assert_eq!(rest.items.len(), 2);
}

fn limited_registry(m: &Meta, name: &str, limit: u64) {
    let mut r = RegistryRecord::new(format!("id-{name}"), Visibility::Private);
    r.storage_limit = Some(limit);
    assert!(m.create_registry(name, &r).unwrap());
}

fn over_quota<T: std::fmt::Debug>(r: Result<T, crate::MetaError>) -> bool {
    matches!(r, Err(crate::MetaError::OverQuota { .. }))
}

/// A registry's usage is charged when a blob first enters it and when a
/// manifest is stored, refused past the limit with nothing written, free
/// for what the registry already holds, and released when the last link
/// goes.
pub fn quota_charged_refused_and_released(kv: impl KvStore) {
    let m = Meta::new(kv);
    limited_registry(&m, "q", 100);
    let (a, b, c) = (
        Digest::sha256_of(b"qa"),
        Digest::sha256_of(b"qb"),
        Digest::sha256_of(b"qc"),
    );
    m.link_blob("q/one", &a, 60).unwrap();
    assert!(over_quota(m.link_blob("q/one", &b, 41)), "60 + 41 > 100");
    assert!(m.link("q/one", &b).unwrap().is_none(), "nothing written");
    assert!(m.blob(&b).unwrap().is_none());
    assert!(over_quota(m.check_quota("q", &b.to_string(), 41)));
    m.check_quota("q", &a.to_string(), 1000).unwrap(); // already held: free
    m.link_blob("q/one", &b, 30).unwrap();
    assert_eq!(m.registry_usage("q").unwrap(), (90, 0));
    // a blob the registry holds costs nothing in another repository
    m.link_blob("q/two", &a, 60).unwrap();
    assert!(over_quota(m.mount_blob("q/two", &c, None)) || m.blob(&c).unwrap().is_none());
    m.link_blob("other/x", &c, 50).unwrap(); // other registries: unlimited
    assert!(
        over_quota(m.mount_blob("q/two", &c, Some("other/x"))),
        "a mount is charged too"
    );
    // a manifest is charged its size
    let man = Digest::sha256_of(b"qm");
    let mut record = rec(berth_core::media_types::OCI_MANIFEST, None);
    record.size = 11;
    let put = |record: ManifestRecord| {
        m.put_manifest(PutManifest {
            repo: "q/one",
            digest: &man,
            record,
            body: b"m",
            tags: &["v1".to_string()],
            referrer: None,
            refs: vec![],
            allow_missing: false,
            by: "test",
        })
    };
    assert!(over_quota(put(record.clone())), "90 + 11 > 100");
    assert!(m.tag("q/one", "v1").unwrap().is_none());
    record.size = 10;
    put(record).unwrap().unwrap();
    assert_eq!(m.registry_usage("q").unwrap(), (90, 10));
    // released: only when the registry's last link to a blob goes
    m.unlink_blob("q/one", &a).unwrap();
    assert_eq!(m.registry_usage("q").unwrap().0, 90, "q/two still links a");
    m.unlink_blob("q/two", &a).unwrap();
    assert_eq!(m.registry_usage("q").unwrap().0, 30);
    m.delete_manifest("q/one", &man, "test").unwrap();
    assert_eq!(m.registry_usage("q").unwrap(), (30, 0));
    m.link_blob("q/two", &c, 50).unwrap();
    assert_eq!(m.registry_usage("q").unwrap(), (80, 0));
}

/// 32 writers linking distinct blobs into a registry near its limit: the
/// usage never passes the limit, and it equals a recount from the links.
pub fn race_quota_never_overshoots(kv: impl KvStore) {
    let m = Meta::new(kv);
    limited_registry(&m, "r", 1000);
    m.link_blob("r/base", &Digest::sha256_of(b"base"), 800)
        .unwrap();
    let start = Barrier::new(32);
    let admitted = AtomicU32::new(0);
    std::thread::scope(|s| {
        for t in 0..32u32 {
            let (m, start, admitted) = (&m, &start, &admitted);
            s.spawn(move || {
                start.wait();
                let d = Digest::sha256_of(format!("r{t}").as_bytes());
                match m.link_blob(&format!("r/app{}", t % 4), &d, 7 + u64::from(t % 3)) {
                    Ok(()) => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(crate::MetaError::OverQuota { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            });
        }
    });
    let (blobs, manifests) = m.registry_usage("r").unwrap();
    assert!(blobs + manifests <= 1000, "usage {blobs} over the limit");
    // recount from scratch: the distinct blobs linked in the registry
    let mut seen = std::collections::BTreeMap::new();
    for (k, v) in m.kv().scan(Cf::Links, b"r/", None, usize::MAX).unwrap() {
        let rest = String::from_utf8(k).unwrap();
        let (_, digest) = rest.split_once('\0').unwrap();
        let l: crate::LinkRecord = serde_json::from_slice(&v).unwrap();
        seen.insert(digest.to_string(), l.size);
    }
    assert_eq!(blobs, seen.values().sum::<u64>() as i64);
    // 32 blobs of 7 to 9 bytes do not fit in the 200 left: some were
    // refused, each when less room was left than its size, so less than 9
    // is left now
    let n = admitted.load(Ordering::Relaxed);
    assert!(n > 0 && n < 32, "{n} admitted");
    assert!(blobs > 1000 - 9, "left room: usage {blobs}");
    consistent(&m);
}

/// A writer that rewrites a guard key with the value it had (a push of the
/// same manifest with a new tag; a push into a repository in the same
/// millisecond) between another transaction's read of that key and its
/// commit still makes that transaction retry: guard records change on
/// every write. Forced here: the deleting transaction's first attempt
/// waits for the push to commit.
pub fn guard_rewrites_are_seen(kv: impl KvStore) {
    let m = Meta::new(kv);
    let d = Digest::sha256_of(b"guarded");
    put_m(&m, "g/r", &d, &["a"], vec![]).unwrap();
    let mut attempts = 0;
    m.transact(|tx| {
        attempts += 1;
        let found = crate::meta::remove_manifest(tx, "g/r", &d.to_string(), "test", false)?;
        if attempts == 1 {
            std::thread::scope(|s| {
                s.spawn(|| put_m(&m, "g/r", &d, &["b"], vec![]).unwrap())
                    .join()
                    .unwrap()
            });
        }
        Ok::<_, crate::MetaError>(found)
    })
    .unwrap();
    assert!(attempts > 1, "the rewrite went unnoticed");
    assert!(!m.manifest_exists("g/r", &d).unwrap());
    for t in ["a", "b"] {
        assert!(
            m.tag("g/r", t).unwrap().is_none(),
            "tag {t} points at a deleted manifest"
        );
    }
    assert_eq!(m.repo_stats("g/r").unwrap().tags, 0);

    // The repository record: a push into the repository while it is
    // being deleted (in the same millisecond, the record's times alike).
    let (b1, b2) = (Digest::sha256_of(b"g1"), Digest::sha256_of(b"g2"));
    m.link_blob("g/s", &b1, 5).unwrap();
    let mut attempts = 0;
    m.transact(|tx| {
        attempts += 1;
        if tx.get(Cf::Repos, b"g/s")?.is_none() {
            return Ok::<_, crate::MetaError>(());
        }
        for (k, _) in tx.scan(Cf::Links, b"g/s\0", None, usize::MAX)? {
            tx.delete(Cf::Links, k);
        }
        tx.delete(Cf::Repos, b"g/s");
        if attempts == 1 {
            std::thread::scope(|s| {
                s.spawn(|| m.link_blob("g/s", &b2, 6).unwrap())
                    .join()
                    .unwrap()
            });
        }
        Ok(())
    })
    .unwrap();
    assert!(attempts > 1, "the push into the repository went unnoticed");
    assert!(
        m.link("g/s", &b2).unwrap().is_none(),
        "a link left in a deleted repository"
    );
}

/// Collection's steps delete only what nothing reaches and what is older
/// than the grace; a blob being deleted cannot be recorded again until
/// its bytes are gone.
pub fn gc_steps_keep_what_is_reached(kv: impl KvStore) {
    let m = Meta::new(kv);
    let (layer, loose, young) = (
        Digest::sha256_of(b"gc-layer"),
        Digest::sha256_of(b"gc-loose"),
        Digest::sha256_of(b"gc-young"),
    );
    for (d, size) in [(&layer, 10), (&loose, 20)] {
        m.link_blob("gc/r", d, size).unwrap();
    }
    let tagged = Digest::sha256_of(b"gc-tagged");
    let child = Digest::sha256_of(b"gc-child");
    let index = Digest::sha256_of(b"gc-index");
    let orphan = Digest::sha256_of(b"gc-orphan");
    put_m(&m, "gc/r", &tagged, &["v1"], vec![blob_ref(&layer, 10)]).unwrap();
    put_m(&m, "gc/r", &child, &[], vec![blob_ref(&layer, 10)]).unwrap();
    put_m(
        &m,
        "gc/r",
        &index,
        &["multi"],
        vec![Ref::Manifest {
            digest: child.clone(),
        }],
    )
    .unwrap();
    put_m(&m, "gc/r", &orphan, &[], vec![blob_ref(&loose, 20)]).unwrap();
    let later = crate::now_millis() + 1000;
    m.link_blob("gc/r", &young, 5).unwrap();

    // manifests: only the untagged one nothing reaches
    for d in [&tagged, &child, &index] {
        assert_eq!(
            m.gc_delete_untagged("gc/r", &d.to_string(), later, "gc")
                .unwrap(),
            None,
            "{d}"
        );
    }
    assert_eq!(
        m.gc_delete_untagged("gc/r", &orphan.to_string(), 0, "gc")
            .unwrap(),
        None,
        "younger than the grace"
    );
    assert_eq!(
        m.gc_delete_untagged("gc/r", &orphan.to_string(), later, "gc")
            .unwrap(),
        Some(3)
    );
    assert!(!m.manifest_exists("gc/r", &orphan).unwrap());
    // links: loose is no longer referenced; layer is; young is too young
    assert_eq!(
        m.gc_unlink_unreferenced("gc/r", &layer.to_string(), later)
            .unwrap(),
        None
    );
    assert_eq!(
        m.gc_unlink_unreferenced("gc/r", &young.to_string(), 0)
            .unwrap(),
        None
    );
    assert_eq!(
        m.gc_unlink_unreferenced("gc/r", &loose.to_string(), later)
            .unwrap(),
        Some(20)
    );
    assert!(m.link("gc/r", &loose).unwrap().is_none());
    assert_eq!(m.repo_stats("gc/r").unwrap().bytes, 15);
    // blobs: loose is linked nowhere now
    let gen = m.blob(&loose).unwrap().unwrap().generation;
    assert_eq!(
        m.gc_blob_begin(
            &layer.to_string(),
            m.blob(&layer).unwrap().unwrap().generation,
            later
        )
        .unwrap(),
        None,
        "linked"
    );
    assert_eq!(
        m.gc_blob_begin(&loose.to_string(), gen + 1, later).unwrap(),
        None,
        "a newer generation"
    );
    assert_eq!(
        m.gc_blob_begin(&loose.to_string(), gen, later).unwrap(),
        Some(20)
    );
    assert!(m.blob(&loose).unwrap().is_none());
    assert_eq!(m.gc_deleting(None, 10).unwrap(), vec![loose.to_string()]);
    // a new upload of it waits while the bytes are being deleted
    assert!(matches!(
        m.link_blob("gc/other", &loose, 20),
        Err(crate::MetaError::BlobBeingDeleted(_))
    ));
    m.gc_blob_end(&[loose.to_string()]).unwrap();
    m.link_blob("gc/other", &loose, 20).unwrap();
    assert_eq!(m.gc_deleting(None, 10).unwrap(), Vec::<String>::new());
    // the listings collection walks
    assert_eq!(m.list_links(None, 100).unwrap().len(), 3);
    assert_eq!(m.list_blobs(None, 100).unwrap().len(), 3);
    consistent(&m);
}

/// Collection unlinking an unreferenced blob while a manifest referencing
/// it is pushed: a stored manifest always has its blobs linked.
pub fn race_gc_unlink_vs_manifest_push(kv: impl KvStore) {
    let m = Meta::new(kv);
    for round in 0..40 {
        let d = Digest::sha256_of(format!("gcr blob {round}").as_bytes());
        let man = Digest::sha256_of(format!("gcr manifest {round}").as_bytes());
        m.link_blob("gcr/r", &d, 4).unwrap();
        let later = crate::now_millis() + 1000;
        let start = Barrier::new(2);
        let (pushed, unlinked) = std::thread::scope(|s| {
            let a = s.spawn(|| {
                start.wait();
                put_m(&m, "gcr/r", &man, &[], vec![blob_ref(&d, 4)])
            });
            let b = s.spawn(|| {
                start.wait();
                m.gc_unlink_unreferenced("gcr/r", &d.to_string(), later)
                    .unwrap()
            });
            (a.join().unwrap(), b.join().unwrap())
        });
        let stored = m.manifest_exists("gcr/r", &man).unwrap();
        let linked = m.link("gcr/r", &d).unwrap().is_some();
        assert_eq!(stored, pushed.is_ok(), "round {round}");
        assert!(
            !stored || linked,
            "round {round}: a stored manifest lost its blob"
        );
        assert!(
            stored || unlinked.is_some(),
            "round {round}: one of them wins"
        );
    }
    consistent(&m);
}

/// Collection deleting an untagged manifest while a push tags it: a tag
/// always points at a stored manifest.
pub fn race_gc_untagged_vs_tag_push(kv: impl KvStore) {
    let m = Meta::new(kv);
    for round in 0..40 {
        let man = Digest::sha256_of(format!("gct {round}").as_bytes());
        put_m(&m, "gct/r", &man, &[], vec![]).unwrap();
        let later = crate::now_millis() + 1000;
        let tag = format!("t{round}");
        let start = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                start.wait();
                put_m(&m, "gct/r", &man, &[tag.as_str()], vec![]).unwrap();
            });
            s.spawn(|| {
                start.wait();
                m.gc_delete_untagged("gct/r", &man.to_string(), later, "gc")
                    .unwrap();
            });
        });
        if let Some(t) = m.tag("gct/r", &tag).unwrap() {
            assert_eq!(t.digest, man.to_string());
            assert!(
                m.manifest_exists("gct/r", &man).unwrap(),
                "round {round}: a tag on a deleted manifest"
            );
        }
    }
}

fn put_by(
    m: &Meta,
    repo: &str,
    d: &Digest,
    tags: &[&str],
    by: &str,
) -> Result<(), crate::MetaError> {
    put_as(m, repo, d, tags, vec![], by).map(|r| r.expect("no references to refuse"))
}

fn rule(kind: crate::TagRuleKind, tag: &str, repo: Option<&str>) -> crate::TagRule {
    crate::TagRule {
        id: Meta::new_rule_id(),
        kind,
        tag_pattern: tag.into(),
        repository_pattern: repo.map(str::to_string),
        created_ms: 1,
        created_by: "admin".into(),
    }
}

fn refused_by(r: Result<impl std::fmt::Debug, crate::MetaError>, want: &str) -> bool {
    match r {
        Err(crate::MetaError::TagRule(r)) => r.kind == want,
        other => panic!("expected a {want} refusal, got {other:?}"),
    }
}

pub fn tag_rules_protect_and_freeze(kv: impl KvStore) {
    use crate::TagRuleKind::{Immutable, Protected};
    let m = Meta::new(kv);
    assert!(m.create_registry("tr", &registry()).unwrap());
    let (a, b) = (Digest::sha256_of(b"tr a"), Digest::sha256_of(b"tr b"));
    put_by(&m, "tr/app", &a, &["v1", "dev", "latest"], "token:t").unwrap();
    put_by(&m, "tr/app", &b, &[], "token:t").unwrap();
    let frozen = rule(Immutable, "v[0-9]+", None);
    m.add_tag_rule("tr", &frozen).unwrap().unwrap();
    m.add_tag_rule("tr", &rule(Protected, "latest", Some("app")))
        .unwrap()
        .unwrap();
    assert_eq!(m.tag_rules("tr").unwrap().len(), 2);
    // no registry, no rule
    assert_eq!(
        m.add_tag_rule("nope", &frozen).unwrap(),
        Err(crate::RuleRefused::NoRegistry)
    );

    // immutable: not moved, not deleted, by anyone; the same push again
    // is no move; a new matching tag may be created once
    for by in ["token:t", "admin"] {
        assert!(refused_by(
            put_by(&m, "tr/app", &b, &["v1"], by),
            "immutable"
        ));
        assert!(refused_by(m.delete_tag("tr/app", "v1", by), "immutable"));
        assert!(refused_by(
            m.set_tag("tr/app", "v1", &b.to_string(), by),
            "immutable"
        ));
        // (for others than the admin, `latest` of the same manifest is
        // protected too: whichever the transaction meets first refuses)
        let want = if by == "admin" {
            "immutable"
        } else {
            "protected"
        };
        assert!(refused_by(m.delete_manifest("tr/app", &a, by), want));
        assert!(refused_by(m.delete_repository("tr/app", by), want));
    }
    put_by(&m, "tr/app", &a, &["v1"], "token:t").unwrap();
    put_by(&m, "tr/app", &b, &["v2"], "token:t").unwrap();
    assert!(refused_by(
        put_by(&m, "tr/app", &a, &["v2"], "token:t"),
        "immutable"
    ));
    // the pattern matches the whole tag only
    put_by(&m, "tr/app", &b, &["v1-rc"], "token:t").unwrap();
    put_by(&m, "tr/app", &a, &["v1-rc"], "token:t").unwrap();
    // a refused push wrote nothing: the tag and the manifest are as before
    assert_eq!(
        m.tag("tr/app", "v1").unwrap().unwrap().digest,
        a.to_string()
    );
    assert!(m.manifest_exists("tr/app", &a).unwrap());

    // protected: the admin only, and only in matching repositories
    assert!(refused_by(
        put_by(&m, "tr/app", &b, &["latest"], "token:t"),
        "protected"
    ));
    assert!(refused_by(
        m.delete_tag("tr/app", "latest", "user:tr+ci"),
        "protected"
    ));
    put_by(&m, "tr/other", &b, &["latest"], "token:t").unwrap();
    assert!(m.delete_tag("tr/other", "latest", "token:t").unwrap());
    put_by(&m, "tr/app", &b, &["latest"], "admin").unwrap();
    assert_eq!(
        m.tag("tr/app", "latest").unwrap().unwrap().digest,
        b.to_string()
    );
    // an unprotected tag moves freely
    put_by(&m, "tr/app", &b, &["dev"], "token:t").unwrap();
    assert!(m.delete_tag("tr/app", "dev", "token:t").unwrap());

    // the rule goes: the tag may change again
    assert!(m.delete_tag_rule("tr", &frozen.id).unwrap());
    assert!(!m.delete_tag_rule("tr", &frozen.id).unwrap());
    put_by(&m, "tr/app", &b, &["v1"], "token:t").unwrap();
    assert!(m.delete_tag("tr/app", "v1", "token:t").unwrap());
    assert!(refused_by(
        m.delete_repository("tr/app", "token:t"),
        "protected"
    ));
    assert!(m.delete_repository("tr/app", "admin").unwrap());
}

pub fn race_immutable_tag_created_once(kv: impl KvStore) {
    let m = Meta::new(kv);
    assert!(m.create_registry("ti", &registry()).unwrap());
    m.add_tag_rule(
        "ti",
        &rule(crate::TagRuleKind::Immutable, "release-.*", None),
    )
    .unwrap()
    .unwrap();
    for round in 0..20 {
        let tag = format!("release-{round}");
        let start = Barrier::new(8);
        let won = AtomicU32::new(0);
        std::thread::scope(|s| {
            for i in 0..8 {
                let (m, tag, start, won) = (&m, &tag, &start, &won);
                s.spawn(move || {
                    let d = Digest::sha256_of(format!("ti {round} {i}").as_bytes());
                    start.wait();
                    match put_by(m, "ti/app", &d, &[tag.as_str()], "token:t") {
                        Ok(()) => {
                            won.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(crate::MetaError::TagRule(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                });
            }
        });
        assert_eq!(
            won.load(Ordering::SeqCst),
            1,
            "round {round}: one creator wins"
        );
        let history = m.tag_history("ti/app", Some(&tag), None, 100).unwrap();
        assert_eq!(history.len(), 1, "round {round}: the tag never moved");
    }
}

pub fn recycle_bin_restore_and_purge(kv: impl KvStore) {
    use crate::{BinEntry, Restored};
    let m = Meta::new(kv).with_recycle_bin(3600 * 1000);
    assert!(m.create_registry("rb", &registry()).unwrap());
    let usage = |m: &Meta| {
        let (b, man) = m.registry_usage("rb").unwrap();
        b + man + m.registry_bin_bytes("rb").unwrap()
    };
    let layer = Digest::sha256_of(b"rb layer");
    m.link_blob("rb/app", &layer, 10).unwrap();
    let man = Digest::sha256_of(b"rb manifest");
    let refs = vec![blob_ref(&layer, 10)];
    let tags: Vec<String> = vec!["v1".into(), "v2".into()];
    let push = |m: &Meta| {
        m.put_manifest(PutManifest {
            repo: "rb/app",
            digest: &man,
            record: rec("application/x", None),
            body: b"body",
            tags: &tags,
            referrer: None,
            refs: refs.clone(),
            allow_missing: false,
            by: "test",
        })
        .unwrap()
        .unwrap()
    };
    push(&m);
    assert_eq!(usage(&m), 13);
    let later = crate::now_millis() + 3_600_000;

    // deleted: gone from the repository, in the bin with its tags, still
    // counted, and its blob kept from garbage collection
    assert!(m.delete_manifest("rb/app", &man, "token:t").unwrap());
    assert!(!m.manifest_exists("rb/app", &man).unwrap());
    assert!(m.tag("rb/app", "v1").unwrap().is_none());
    let bin = m.list_bin("rb/", None, 10).unwrap();
    assert_eq!(bin.len(), 1);
    let BinEntry::Manifest { entry, .. } = &bin[0] else {
        panic!("{bin:?}")
    };
    assert_eq!(entry.tags, vec!["v1".to_string(), "v2".into()]);
    assert_eq!(entry.by, "token:t");
    assert_eq!(usage(&m), 13, "the bin counts");
    assert_eq!(m.registry_bin_bytes("rb").unwrap(), 3);
    assert_eq!(m.repo_stats("rb/app").unwrap().artifacts, 0);
    assert_eq!(
        m.gc_unlink_unreferenced("rb/app", &layer.to_string(), later)
            .unwrap(),
        None
    );

    // restored: back with its tags; the bin is empty
    match m.restore(&bin[0].key(), "admin").unwrap() {
        Restored::Done { tags, skipped } => {
            assert_eq!(tags.len(), 2);
            assert!(skipped.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert!(m.manifest_exists("rb/app", &man).unwrap());
    assert_eq!(
        m.tag("rb/app", "v2").unwrap().unwrap().digest,
        man.to_string()
    );
    assert!(m.list_bin("rb/", None, 10).unwrap().is_empty());
    assert_eq!(m.registry_bin_bytes("rb").unwrap(), 0);
    assert_eq!(m.repo_stats("rb/app").unwrap().artifacts, 1);
    assert_eq!(
        m.restore(&bin[0].key(), "admin").unwrap(),
        Restored::NotFound
    );

    // deleted tags: the untagged manifest is held for them; a restore puts
    // the tag back
    assert!(m.delete_tag("rb/app", "v1", "token:t").unwrap());
    assert!(m.delete_tag("rb/app", "v2", "token:t").unwrap());
    assert_eq!(m.list_bin("rb/", None, 10).unwrap().len(), 2);
    assert_eq!(
        m.gc_delete_untagged("rb/app", &man.to_string(), later, "gc")
            .unwrap(),
        None,
        "a binned tag holds its manifest"
    );
    let t1 = m
        .list_bin("rb/", None, 10)
        .unwrap()
        .into_iter()
        .find(|e| matches!(e, BinEntry::Tag { tag, .. } if tag == "v1"))
        .unwrap();
    assert!(matches!(
        m.restore(&t1.key(), "admin").unwrap(),
        Restored::Done { .. }
    ));
    assert_eq!(
        m.tag("rb/app", "v1").unwrap().unwrap().digest,
        man.to_string()
    );

    // pushed again while binned: the bin lets go of it
    assert!(m.delete_manifest("rb/app", &man, "token:t").unwrap());
    push(&m);
    assert_eq!(m.registry_bin_bytes("rb").unwrap(), 0);
    assert!(m
        .list_bin("rb/", None, 10)
        .unwrap()
        .iter()
        .all(|e| matches!(e, BinEntry::Tag { .. })));

    // purged: its bytes and the link only it kept leave the usage; its
    // binned tags go with it
    assert!(m.delete_manifest("rb/app", &man, "token:t").unwrap());
    let key = crate::BinEntry::key(
        m.list_bin("rb/", None, 10)
            .unwrap()
            .iter()
            .find(|e| matches!(e, BinEntry::Manifest { .. }))
            .unwrap(),
    );
    assert_eq!(
        m.purge(&key, Some(1), later).unwrap(),
        None,
        "younger than asked"
    );
    let p = m.purge(&key, None, later).unwrap().unwrap();
    assert_eq!(p.manifest_bytes, 3);
    assert_eq!(p.links, vec![(layer.to_string(), 10)]);
    assert_eq!(usage(&m), 0);
    assert!(m.list_bin("rb/", None, 10).unwrap().is_empty());
    assert!(m.link("rb/app", &layer).unwrap().is_none());
    // without a bin, a delete is final
    let m0 = m.clone().with_recycle_bin(0);
    m0.link_blob("rb/app", &layer, 10).unwrap();
    push(&m0);
    assert!(m0.delete_manifest("rb/app", &man, "t").unwrap());
    assert!(m0.list_bin("rb/", None, 10).unwrap().is_empty());
    consistent(&m);
}

/// Storage use is sampled once per interval per registry (a second round
/// in the same interval rewrites the sample), read back from a time on,
/// expired past the retention, never written for a deleted registry, and a
/// registry created again under the name starts a new series.
pub fn usage_sampled_per_interval(kv: impl KvStore) {
    use crate::meta::{counter, MetaError};
    use crate::{Sampled, UsageSample};
    let m = Meta::new(kv);
    const H: u64 = 3_600_000;
    let rec = RegistryRecord::new("id-1".into(), Visibility::Private);
    assert!(m.create_registry("u", &rec).unwrap());
    let grow = |n: i64| {
        m.transact(|tx| {
            tx.add(Cf::Counters, counter::registry_blob_bytes("u"), n);
            Ok::<_, MetaError>(())
        })
        .unwrap()
    };
    grow(100);
    let r = m.sample_usage(10 * H + 5, H, 100 * H).unwrap();
    assert_eq!(
        r,
        Sampled {
            registries: 1,
            expired: 0
        }
    );
    grow(50);
    m.sample_usage(10 * H + 60_000, H, 100 * H).unwrap();
    grow(1);
    m.sample_usage(11 * H + 1, H, 100 * H).unwrap();
    let all = m.usage_history("id-1", 0, 100).unwrap();
    assert_eq!(
        all,
        vec![
            UsageSample {
                at_ms: 10 * H,
                bytes_used: 150,
                repositories: 0
            },
            UsageSample {
                at_ms: 11 * H,
                bytes_used: 151,
                repositories: 0
            },
        ]
    );
    assert_eq!(m.usage_history("id-1", 10 * H + 1, 100).unwrap(), all[1..]);
    assert_eq!(m.usage_history("id-1", 0, 1).unwrap(), all[..1]);
    // past the retention the oldest goes
    let r = m.sample_usage(12 * H, H, H).unwrap();
    assert_eq!(
        r,
        Sampled {
            registries: 1,
            expired: 1
        }
    );
    assert_eq!(m.usage_history("id-1", 0, 100).unwrap().len(), 2);
    // deleted: no new samples; its series swept
    assert_eq!(m.delete_registry("u").unwrap(), RegistryDelete::Deleted);
    assert_eq!(m.sample_usage(13 * H, H, 100 * H).unwrap().registries, 0);
    assert_eq!(m.delete_usage_history("id-1").unwrap(), 2);
    assert!(m.usage_history("id-1", 0, 100).unwrap().is_empty());
    // the name again: a new id, a new series
    let again = RegistryRecord::new("id-2".into(), Visibility::Private);
    assert!(m.create_registry("u", &again).unwrap());
    m.sample_usage(14 * H, H, 100 * H).unwrap();
    assert!(m.usage_history("id-1", 0, 100).unwrap().is_empty());
    assert_eq!(m.usage_history("id-2", 0, 100).unwrap().len(), 1);
}

/// One collection per scope across every process sharing the store: of
/// concurrent starts exactly one wins; the winner's lease is renewed and
/// carries a cancel asked for by anyone; a lease not renewed for
/// `GC_LEASE_MS` (its process died) gives the scope to the next start, and
/// the old run, renewing late, learns it lost it.
pub fn gc_one_run_per_scope_leased(kv: impl KvStore) {
    use crate::{GcRun, Lease, GC_LEASE_MS};
    let m = Meta::new(kv);
    let now = crate::now_millis();
    let run = |id: &str, registry: Option<&str>, renewed: u64| GcRun {
        id: id.into(),
        registry: registry.map(Into::into),
        delete_untagged: false,
        dry_run: false,
        status: "running".into(),
        started_ms: renewed,
        finished_ms: None,
        report: None,
        error: None,
        renewed_ms: Some(renewed),
        cancel_requested: false,
    };
    let won = AtomicU32::new(0);
    let start = Barrier::new(8);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (m, won, start) = (&m, &won, &start);
            s.spawn(move || {
                start.wait();
                if m.gc_start(&run(&format!("r{t}"), None, now))
                    .unwrap()
                    .is_ok()
                {
                    won.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(won.load(Ordering::Relaxed), 1, "one instance run at a time");
    // a registry's run is another scope
    let reg = run("reg", Some("acme"), now);
    assert!(m.gc_start(&reg).unwrap().is_ok());
    assert_eq!(m.gc_renew(&reg).unwrap(), Lease::Held);
    assert_eq!(
        m.gc_request_cancel("reg").unwrap().map(|r| r.id),
        Some("reg".into())
    );
    assert_eq!(m.gc_renew(&reg).unwrap(), Lease::CancelRequested);
    assert!(m.gc_request_cancel("nope").unwrap().is_none());
    m.gc_finish(&reg).unwrap();
    assert!(
        m.gc_request_cancel("reg").unwrap().is_none(),
        "finished: not running"
    );
    // a run whose process died: its lease lapses, the next start wins
    let dead = run("dead", Some("beta"), now - GC_LEASE_MS - 1);
    assert!(m.gc_start(&dead).unwrap().is_ok());
    let next = run("next", Some("beta"), now);
    assert!(
        m.gc_start(&next).unwrap().is_ok(),
        "a lapsed lease is taken"
    );
    assert_eq!(m.gc_renew(&dead).unwrap(), Lease::Lost);
    assert_eq!(m.gc_renew(&next).unwrap(), Lease::Held);
    let late = run("late", Some("beta"), now);
    assert_eq!(
        m.gc_start(&late).unwrap().err().map(|a| a.id),
        Some("next".into())
    );
}
