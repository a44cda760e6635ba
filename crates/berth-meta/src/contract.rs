//! The metadata contract, written once and run against every engine
//! (object_store's `integration.rs` idea). Each function panics on a
//! violation.

use crate::cf::Cf;
use crate::kv::{Batch, KvStore};
use crate::meta::{ManifestRecord, Meta, PutManifest, ReferrerRecord};
use berth_core::Digest;

/// Point reads, ordered prefix scans, `start_after`, limits and atomic
/// batches.
pub fn kv_basics(kv: &dyn KvStore) {
    assert_eq!(kv.get(Cf::Tags, b"nope").unwrap(), None);
    let mut b = Batch::new();
    for k in ["a\0z", "a\0b", "a\0c", "a/b\0a", "b\0a"] {
        b.put(Cf::Tags, k.as_bytes(), k.as_bytes());
    }
    b.put(Cf::Links, b"a\0b".to_vec(), b"other cf".to_vec());
    kv.write(b).unwrap();
    assert_eq!(
        kv.get(Cf::Tags, b"a\0b").unwrap().as_deref(),
        Some(&b"a\0b"[..])
    );
    assert_eq!(
        kv.get(Cf::Links, b"a\0b").unwrap().as_deref(),
        Some(&b"other cf"[..])
    );

    let keys = |rows: crate::kv::Rows| rows.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(kv.scan(Cf::Tags, b"a\0", None, 10).unwrap()),
        vec![b"a\0b".to_vec(), b"a\0c".to_vec(), b"a\0z".to_vec()]
    );
    assert_eq!(
        keys(kv.scan(Cf::Tags, b"a\0", Some(b"a\0b"), 10).unwrap()),
        vec![b"a\0c".to_vec(), b"a\0z".to_vec()]
    );
    assert_eq!(
        keys(kv.scan(Cf::Tags, b"a\0", None, 1).unwrap()),
        vec![b"a\0b".to_vec()]
    );
    assert_eq!(
        kv.scan(Cf::Tags, b"a\0", Some(b"a\0z"), 10).unwrap().len(),
        0
    );
    // start_after between keys
    assert_eq!(
        keys(kv.scan(Cf::Tags, b"a\0", Some(b"a\0ca"), 10).unwrap()),
        vec![b"a\0z".to_vec()]
    );
    assert_eq!(kv.scan(Cf::Tags, b"", None, 100).unwrap().len(), 5);
    assert_eq!(kv.scan(Cf::Tags, b"c", None, 100).unwrap().len(), 0);

    let mut b = Batch::new();
    b.delete(Cf::Tags, b"a\0b".to_vec());
    b.put(Cf::Tags, b"a\0d".to_vec(), b"d".to_vec());
    b.delete(Cf::Tags, b"never-there".to_vec());
    kv.write(b).unwrap();
    assert_eq!(kv.get(Cf::Tags, b"a\0b").unwrap(), None);
    assert_eq!(
        keys(kv.scan(Cf::Tags, b"a\0", None, 10).unwrap()),
        vec![b"a\0c".to_vec(), b"a\0d".to_vec(), b"a\0z".to_vec()]
    );
    // Later ops in a batch win over earlier ones.
    let mut b = Batch::new();
    b.put(Cf::Uploads, b"u".to_vec(), b"1".to_vec());
    b.delete(Cf::Uploads, b"u".to_vec());
    b.put(Cf::Uploads, b"v".to_vec(), b"1".to_vec());
    b.put(Cf::Uploads, b"v".to_vec(), b"2".to_vec());
    kv.write(b).unwrap();
    assert_eq!(kv.get(Cf::Uploads, b"u").unwrap(), None);
    assert_eq!(
        kv.get(Cf::Uploads, b"v").unwrap().as_deref(),
        Some(&b"2"[..])
    );
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

/// Typed behaviour: tags move, deletes cascade, pages page, names that
/// share a prefix stay apart.
pub fn meta_behaviour(kv: impl KvStore) {
    let m = Meta::new(kv);
    let d1 = Digest::sha256_of(b"one");
    let d2 = Digest::sha256_of(b"two");
    let subj = Digest::sha256_of(b"subject");

    // Upload sessions: opened (unflushed), advanced, closed.
    let up = |offset| crate::UploadRecord {
        repo: "a".into(),
        offset,
        started_ms: 1,
        updated_ms: 2,
    };
    m.open_upload("s", &up(0)).unwrap();
    assert_eq!(m.upload("s").unwrap().unwrap().offset, 0);
    m.put_upload("s", &up(7)).unwrap();
    assert_eq!(m.upload("s").unwrap().unwrap().offset, 7);
    m.delete_upload("s").unwrap();
    assert!(m.upload("s").unwrap().is_none());

    m.link_blob("a", &d1, 3).unwrap();
    assert_eq!(m.link("a", &d1).unwrap().unwrap().size, 3);
    assert!(m.link("a/b", &d1).unwrap().is_none());
    assert_eq!(m.blob(&d1).unwrap().unwrap().size, 3);
    assert!(m.repo("a").unwrap().is_some());

    m.put_manifest(PutManifest {
        repo: "a",
        digest: &d1,
        record: rec("application/x", None),
        body: b"one",
        tag: Some("v1"),
        referrer: None,
    })
    .unwrap();
    m.put_manifest(PutManifest {
        repo: "a",
        digest: &d2,
        record: rec("application/y", Some(&subj)),
        body: b"two",
        tag: Some("v2"),
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
    })
    .unwrap();
    let (r, body) = m.manifest("a", &d1).unwrap().unwrap();
    assert_eq!(
        (r.media_type.as_str(), body.as_slice()),
        ("application/x", &b"one"[..])
    );
    assert_eq!(m.tag("a", "v1").unwrap().unwrap().digest, d1.to_string());
    assert_eq!(m.referrers("a", &subj, 10).unwrap().len(), 1);
    assert_eq!(m.referrers("a/b", &subj, 10).unwrap().len(), 0);

    // Move v1 to d2, add a second tag on d2.
    for tag in ["v1", "also"] {
        m.put_manifest(PutManifest {
            repo: "a",
            digest: &d2,
            record: rec("application/y", Some(&subj)),
            body: b"two",
            tag: Some(tag),
            referrer: None,
        })
        .unwrap();
    }
    assert_eq!(m.tag("a", "v1").unwrap().unwrap().digest, d2.to_string());
    let tags = m.list_tags("a", None, 10).unwrap();
    assert_eq!(tags.items, vec!["also", "v1", "v2"]);
    assert!(!tags.more);
    let p = m.list_tags("a", None, 2).unwrap();
    assert_eq!(
        (p.items.clone(), p.more),
        (vec!["also".to_string(), "v1".to_string()], true)
    );
    let p = m.list_tags("a", Some("v1"), 2).unwrap();
    assert_eq!((p.items, p.more), (vec!["v2".to_string()], false));

    // Delete by tag removes only the tag.
    assert!(m.delete_tag("a", "also").unwrap());
    assert!(!m.delete_tag("a", "also").unwrap());
    assert!(m.manifest_exists("a", &d2).unwrap());
    // Delete by digest removes the manifest, its tags and its referrer entry,
    // but not d1.
    assert!(m.delete_manifest("a", &d2).unwrap());
    assert!(!m.delete_manifest("a", &d2).unwrap());
    assert_eq!(
        m.list_tags("a", None, 10).unwrap().items,
        Vec::<String>::new()
    );
    assert!(m.manifest_exists("a", &d1).unwrap());
    assert_eq!(m.referrers("a", &subj, 10).unwrap().len(), 0);

    // Catalog pages.
    for r in ["b", "a/b", "c", "a-b"] {
        m.link_blob(r, &d1, 3).unwrap();
    }
    let all = m.list_repos(None, 100).unwrap();
    assert_eq!(all.items, vec!["a", "a-b", "a/b", "b", "c"]);
    let p = m.list_repos(Some("a/b"), 2).unwrap();
    assert_eq!(
        (p.items, p.more),
        (vec!["b".to_string(), "c".to_string()], false)
    );

    // Unlink.
    assert!(m.unlink_blob("b", &d1).unwrap());
    assert!(!m.unlink_blob("b", &d1).unwrap());
    assert!(m.link("b", &d1).unwrap().is_none());
}
