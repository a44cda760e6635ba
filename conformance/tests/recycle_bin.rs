//! The recycle bin against the real binary: a manifest deleted on `/v2/`
//! is gone at once but kept (with its blobs, counted in the usage) through
//! garbage collection; restored with its tags it pulls by the same digest;
//! emptying the bin releases its bytes; past its retention a collection
//! lets it go, blob files too.

use berth_conformance::*;
use reqwest::Method as M;
use serde_json::{json, Value};
use std::time::Duration;

const A: Option<&str> = Some(ADMIN_TOKEN);

fn registry(s: &Server, name: &str) -> Value {
    let (st, v) = call(api(s, A, M::GET, &format!("/registries/{name}")));
    assert_eq!(st, 200, "{v}");
    v
}

fn bin(s: &Server, name: &str) -> Value {
    let (st, v) = call(api(
        s,
        A,
        M::GET,
        &format!("/registries/{name}/recycle-bin"),
    ));
    assert_eq!(st, 200, "{v}");
    v
}

fn status(c: &Client, s: &Server, path: &str) -> u16 {
    c.get(s.url(path)).send().unwrap().status().as_u16()
}

#[test]
fn delete_restore_pull_and_empty() {
    let s = Server::start();
    let c = admin_client();
    let (st, _) = call(api(&s, A, M::POST, "/registries").json(&json!({"name": "rbin"})));
    assert_eq!(st, 201);
    let img = push_image(&c, &s, "rbin/app", "v1", "binned");
    push_manifest(&c, &s, "rbin/app", "also", OCI_MANIFEST, &img.manifest);
    let used = registry(&s, "rbin")["bytesUsed"].as_i64().unwrap();
    let size = img.manifest.len() as i64;

    // deleted on /v2/: gone there at once, in the bin with its tags, still
    // counted
    let r = c
        .delete(s.url(&format!("/v2/rbin/app/manifests/{}", img.digest)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        status(&c, &s, &format!("/v2/rbin/app/manifests/{}", img.digest)),
        404
    );
    assert_eq!(status(&c, &s, "/v2/rbin/app/manifests/v1"), 404);
    let tags: Value = c
        .get(s.url("/v2/rbin/app/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        tags["tags"].as_array().is_none_or(|t| t.is_empty()),
        "{tags}"
    );
    let b = bin(&s, "rbin");
    assert_eq!(b["items"].as_array().unwrap().len(), 1, "{b}");
    let e = &b["items"][0];
    assert_eq!(e["kind"], "manifest");
    assert_eq!(e["digest"], img.digest.as_str());
    assert_eq!(e["tags"], json!(["also", "v1"]));
    assert_eq!(e["deletedBy"], "admin");
    assert_eq!(b["bytes"], size);
    let reg = registry(&s, "rbin");
    assert_eq!(reg["bytesUsed"], used, "the bin counts in the usage");
    assert_eq!(reg["recycleBinBytes"], size);

    // a collection with no grace keeps it and its blobs
    let run = run_gc(&s, A, json!({"deleteUntagged": true, "graceSeconds": 0}));
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["report"]["blobsDeleted"], 0, "{run}");
    assert_eq!(run["report"]["binExpired"], 0, "{run}");
    let (st, kept) = call(api(
        &s,
        A,
        M::GET,
        &format!("/registries/rbin/blobs/{}/kept-by", img.layer),
    ));
    assert_eq!(st, 200, "{kept}");
    assert_eq!(
        kept["repositories"][0]["manifests"][0]["inRecycleBin"], true,
        "{kept}"
    );

    // restored: the same digest pulls, with its tags, blobs verified
    let id = e["id"].as_str().unwrap();
    let (st, v) = call(api(
        &s,
        A,
        M::POST,
        &format!("/registries/rbin/recycle-bin/{id}/restore"),
    ));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["restoredTags"], json!(["also", "v1"]));
    let r = c.get(s.url("/v2/rbin/app/manifests/v1")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        img.digest
    );
    assert_eq!(r.bytes().unwrap().to_vec(), img.manifest);
    for d in [&img.config, &img.layer] {
        let body = c
            .get(s.url(&format!("/v2/rbin/app/blobs/{d}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(&sha256(&body), d);
    }
    assert_eq!(bin(&s, "rbin")["items"].as_array().unwrap().len(), 0);
    assert_eq!(registry(&s, "rbin")["recycleBinBytes"], 0);
    let (st, _) = call(api(
        &s,
        A,
        M::POST,
        &format!("/registries/rbin/recycle-bin/{id}/restore"),
    ));
    assert_eq!(st, 404, "restored once");

    // a deleted tag alone: restorable too
    let (st, _) = call(api(
        &s,
        A,
        M::DELETE,
        "/registries/rbin/repositories/app/tags/also",
    ));
    assert_eq!(st, 204);
    let b = bin(&s, "rbin");
    assert_eq!(
        (
            b["items"][0]["kind"].as_str(),
            b["items"][0]["tag"].as_str()
        ),
        (Some("tag"), Some("also")),
        "{b}"
    );

    // emptied: the manifest's bytes and the links only it kept leave the
    // usage at once (links younger than an hour stay: pushes in flight)
    let r = c
        .delete(s.url(&format!("/v2/rbin/app/manifests/{}", img.digest)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let (st, v) = call(api(&s, A, M::DELETE, "/registries/rbin/recycle-bin"));
    assert_eq!(st, 200, "{v}");
    // (the binned tag of the manifest goes with it)
    assert_eq!(v["purged"], 1, "{v}");
    assert_eq!(v["manifestBytes"], size, "{v}");
    assert_eq!(bin(&s, "rbin")["items"].as_array().unwrap().len(), 0);
    let reg = registry(&s, "rbin");
    assert_eq!(reg["recycleBinBytes"], 0);
    assert_eq!(reg["bytesUsed"], used - size, "{reg}");
    let (st, _) = call(api(
        &s,
        A,
        M::POST,
        &format!("/registries/rbin/recycle-bin/{id}/restore"),
    ));
    assert_eq!(st, 404);
}

#[test]
fn past_its_retention_a_collection_lets_it_go() {
    let s = Server::start_with(&[("BERTH_GC_RECYCLE_BIN_SECS", "1")]);
    let c = admin_client();
    let img = push_image(&c, &s, "exp/app", "v1", "expiring");
    let r = c
        .delete(s.url(&format!("/v2/exp/app/manifests/{}", img.digest)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    // until a second has passed, collections keep it; then one lets it go,
    // its blobs with it
    let run = poll(
        "a collection past the retention",
        200,
        Duration::from_millis(50),
        || {
            let run = run_gc(&s, A, json!({"graceSeconds": 0}));
            assert_eq!(run["status"], "succeeded", "{run}");
            (run["report"]["binExpired"] == 1).then_some(run)
        },
    );
    assert_eq!(run["report"]["binBytes"], img.manifest.len(), "{run}");
    assert_eq!(run["report"]["blobsDeleted"], 2, "{run}");
    assert_eq!(bin(&s, "exp")["items"].as_array().unwrap().len(), 0);
    assert_eq!(registry(&s, "exp")["bytesUsed"], 0);
    assert_eq!(
        status(&c, &s, &format!("/v2/exp/app/blobs/{}", img.layer)),
        404
    );
}
