//! Property test: any sequence of links, manifest pushes (by tag), tag and
//! manifest deletes into the recycle bin, restores from it and garbage
//! collection's unlink step leaves the store agreeing with a simple model
//! (which manifests and tags each repository has, which links stay), and
//! every figure recounting (`Meta::check`) after every step.

use crate::{BinEntry, MemStore, Meta, PutManifest, Ref, Restored};
use berth_core::Digest;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const REPOS: [&str; 2] = ["p/a", "p/b"];
const LAYERS: u8 = 4;
const MANIFESTS: u8 = 6;
const TAGS: [&str; 3] = ["t0", "t1", "latest"];

#[derive(Debug, Clone)]
enum Op {
    Link(usize, u8),
    Push(usize, u8, Option<usize>),
    DeleteManifest(usize, u8),
    DeleteTag(usize, usize),
    Restore(usize, u8),
    Unlink(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let r = 0..REPOS.len();
    prop_oneof![
        (r.clone(), 0..LAYERS).prop_map(|(r, l)| Op::Link(r, l)),
        (r.clone(), 0..MANIFESTS, proptest::option::of(0..TAGS.len()))
            .prop_map(|(r, m, t)| Op::Push(r, m, t)),
        (r.clone(), 0..MANIFESTS).prop_map(|(r, m)| Op::DeleteManifest(r, m)),
        (r.clone(), 0..TAGS.len()).prop_map(|(r, t)| Op::DeleteTag(r, t)),
        (r.clone(), 0..MANIFESTS).prop_map(|(r, m)| Op::Restore(r, m)),
        (r, 0..LAYERS).prop_map(|(r, l)| Op::Unlink(r, l)),
    ]
}

fn layer(l: u8) -> Digest {
    Digest::sha256_of(format!("layer {l}").as_bytes())
}

fn layer_size(l: u8) -> u64 {
    10 + u64::from(l)
}

/// Manifest `m` references two layers.
fn refs_of(m: u8) -> [u8; 2] {
    [m % LAYERS, (m + 1) % LAYERS]
}

fn body(m: u8) -> Vec<u8> {
    format!("{{\"manifest\":{m}}}").into_bytes()
}

fn manifest(m: u8) -> Digest {
    Digest::sha256_of(&body(m))
}

#[derive(Default, Debug)]
struct Repo {
    links: BTreeSet<u8>,
    manifests: BTreeSet<u8>,
    tags: BTreeMap<String, u8>,
    /// Deleted manifests with the tags they had.
    bin: BTreeMap<u8, Vec<String>>,
}

fn push(meta: &Meta, repo: &str, m: u8, tag: Option<&str>) -> bool {
    let d = manifest(m);
    let b = body(m);
    let tags: Vec<String> = tag.into_iter().map(str::to_string).collect();
    let refs: Vec<Ref> = refs_of(m)
        .iter()
        .map(|l| Ref::Blob {
            digest: layer(*l),
            size: layer_size(*l),
        })
        .collect();
    let record = crate::ManifestRecord {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: b.len() as u64,
        artifact_type: None,
        subject: None,
        config_media_type: None,
        blobs: vec![],
        children: vec![],
        pushed_ms: 1,
        rev: 0,
    };
    meta.put_manifest(PutManifest {
        repo,
        digest: &d,
        record,
        body: &b,
        tags: &tags,
        referrer: None,
        refs,
        allow_missing: false,
        by: "model",
    })
    .expect("no store error")
    .is_ok()
}

fn bin_key(meta: &Meta, repo: &str, m: u8) -> Option<Vec<u8>> {
    let d = manifest(m).to_string();
    meta.list_bin(&format!("{repo}\0"), None, 1000)
        .unwrap()
        .into_iter()
        .find(|e| matches!(e, BinEntry::Manifest { digest, .. } if *digest == d))
        .map(|e| e.key())
}

fn apply(meta: &Meta, model: &mut [Repo], op: &Op) {
    match *op {
        Op::Link(r, l) => {
            meta.link_blob(REPOS[r], &layer(l), layer_size(l)).unwrap();
            model[r].links.insert(l);
        }
        Op::Push(r, m, t) => {
            let tag = t.map(|t| TAGS[t]);
            let want = refs_of(m).iter().all(|l| model[r].links.contains(l));
            assert_eq!(push(meta, REPOS[r], m, tag), want, "{op:?}");
            if want {
                let repo = &mut model[r];
                repo.manifests.insert(m);
                repo.bin.remove(&m);
                if let Some(t) = tag {
                    repo.tags.insert(t.to_string(), m);
                }
            }
        }
        Op::DeleteManifest(r, m) => {
            let repo = &mut model[r];
            let had = repo.manifests.remove(&m);
            let deleted = meta
                .delete_manifest(REPOS[r], &manifest(m), "model")
                .unwrap();
            assert_eq!(deleted, had, "{op:?}");
            if had {
                let tags: Vec<String> = repo
                    .tags
                    .iter()
                    .filter(|(_, v)| **v == m)
                    .map(|(k, _)| k.clone())
                    .collect();
                for t in &tags {
                    repo.tags.remove(t);
                }
                repo.bin.insert(m, tags);
            }
        }
        Op::DeleteTag(r, t) => {
            let had = model[r].tags.remove(TAGS[t]).is_some();
            assert_eq!(
                meta.delete_tag(REPOS[r], TAGS[t], "model").unwrap(),
                had,
                "{op:?}"
            );
        }
        Op::Restore(r, m) => {
            let repo = &mut model[r];
            let key = bin_key(meta, REPOS[r], m);
            assert_eq!(
                key.is_some(),
                repo.bin.contains_key(&m),
                "{op:?}: bin entry"
            );
            let Some(key) = key else { return };
            let had = repo.bin.remove(&m).unwrap();
            match meta.restore(&key, "model").unwrap() {
                Restored::Done { tags, skipped } => {
                    let (free, taken): (Vec<String>, Vec<String>) =
                        had.into_iter().partition(|t| !repo.tags.contains_key(t));
                    assert_eq!(
                        (
                            tags.iter().collect::<BTreeSet<_>>(),
                            skipped.iter().collect::<BTreeSet<_>>()
                        ),
                        (free.iter().collect(), taken.iter().collect()),
                        "{op:?}"
                    );
                    for t in free {
                        repo.tags.insert(t, m);
                    }
                    repo.manifests.insert(m);
                }
                other => panic!("{op:?}: {other:?}"),
            }
        }
        Op::Unlink(r, l) => {
            let repo = &mut model[r];
            let referenced = repo
                .manifests
                .iter()
                .chain(repo.bin.keys())
                .any(|m| refs_of(*m).contains(&l));
            let want = repo.links.contains(&l) && !referenced;
            let got = meta
                .gc_unlink_unreferenced(REPOS[r], &layer(l).to_string(), u64::MAX)
                .unwrap();
            assert_eq!(got.is_some(), want, "{op:?}");
            if want {
                repo.links.remove(&l);
            }
        }
    }
}

fn agrees(meta: &Meta, model: &[Repo], after: &Op) {
    let report = meta.check().unwrap();
    assert!(report.ok(), "after {after:?}: {:#?}", report.problems);
    for (r, repo) in model.iter().enumerate() {
        let tags = meta.list_tags(REPOS[r], None, 100).unwrap().items;
        let want: Vec<&String> = repo.tags.keys().collect();
        assert_eq!(
            tags.iter().collect::<Vec<_>>(),
            want,
            "after {after:?}: tags of {}",
            REPOS[r]
        );
        for (t, m) in &repo.tags {
            let rec = meta.tag(REPOS[r], t).unwrap().unwrap();
            assert_eq!(rec.digest, manifest(*m).to_string(), "after {after:?}: {t}");
        }
        for m in 0..MANIFESTS {
            assert_eq!(
                meta.manifest_exists(REPOS[r], &manifest(m)).unwrap(),
                repo.manifests.contains(&m),
                "after {after:?}: manifest {m} of {}",
                REPOS[r]
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let meta = Meta::new(MemStore::new()).with_recycle_bin(3_600_000);
        let mut model: Vec<Repo> = REPOS.iter().map(|_| Repo::default()).collect();
        for op in &ops {
            apply(&meta, &mut model, op);
            agrees(&meta, &model, op);
        }
    }
}
