//! Online garbage collection against the real binary: started, followed
//! and listed through the management API; it deletes what nothing reaches
//! (blob files too) and keeps the rest; pushes go on during it and every
//! acknowledged manifest pulls whole afterwards, with no orphan file left.

use berth_conformance::*;
use reqwest::Method as M;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const A: Option<&str> = Some(ADMIN_TOKEN);

/// Blob files in the data directory's object store.
fn blob_files(s: &Server) -> Vec<String> {
    let mut out = Vec::new();
    let root = s.data_dir.join("store/blobs/sha256");
    let Ok(dirs) = std::fs::read_dir(&root) else {
        return out;
    };
    for d in dirs {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            out.push(format!(
                "sha256:{}",
                f.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn collects_what_nothing_reaches_and_keeps_the_rest() {
    // deletes final at once (the recycle bin's own suite: recycle_bin.rs)
    let s = Server::start_with(&[("BERTH_GC_RECYCLE_BIN_SECS", "0")]);
    let c = admin_client();
    let keep = push_image(&c, &s, "acme/app", "v1", "kept");
    let gone = push_image(&c, &s, "acme/app", "v2", "collected");
    let loose = push_blob(&c, &s, "acme/app", b"uploaded, never referenced");
    assert_eq!(
        c.delete(s.url("/v2/acme/app/manifests/v2"))
            .send()
            .unwrap()
            .status(),
        202
    );
    assert_eq!(blob_files(&s).len(), 5);

    // the estimate: a dry run counts, deletes nothing
    let dry = run_gc(
        &s,
        A,
        json!({"deleteUntagged": true, "dryRun": true, "graceSeconds": 0}),
    );
    assert_eq!(dry["status"], "succeeded", "{dry}");
    assert_eq!(dry["report"]["manifestsDeleted"], 1, "{dry}");
    assert_eq!(blob_files(&s).len(), 5);
    // within the grace nothing goes
    let graced = run_gc(&s, A, json!({"deleteUntagged": true}));
    assert_eq!(graced["report"]["manifestsDeleted"], 0, "{graced}");

    let (st, est) = call(api(&s, A, M::GET, "/gc/estimate?graceSeconds=0"));
    assert_eq!(st, 200, "{est}");
    let run = run_gc(&s, A, json!({"deleteUntagged": true, "graceSeconds": 0}));
    let r = &run["report"];
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        (
            r["manifestsDeleted"].as_u64(),
            r["linksRemoved"].as_u64(),
            r["blobsDeleted"].as_u64()
        ),
        (Some(1), Some(3), Some(3)),
        "{run}"
    );
    assert_eq!(r["errors"], json!([]));
    // the estimate was what the run freed
    assert_eq!(est["withUntagged"], *r, "{est}");
    let freed = r["bytesFreed"].as_u64().unwrap() + r["manifestBytes"].as_u64().unwrap();
    assert_eq!(est["sizeSummary"].as_u64(), Some(freed));
    assert_eq!(
        est["sizeNonReferenced"].as_u64(),
        Some(est["nonReferenced"]["bytesFreed"].as_u64().unwrap())
    );
    assert_eq!(
        est["sizeNonReferenced"].as_u64(),
        Some(26),
        "the loose upload alone"
    );
    let files = blob_files(&s);
    assert_eq!(files, {
        let mut k = vec![keep.config.clone(), keep.layer.clone()];
        k.sort();
        k
    });
    for d in [&gone.config, &gone.layer, &loose] {
        let h = c
            .head(s.url(&format!("/v2/acme/app/blobs/{d}")))
            .send()
            .unwrap();
        assert_eq!(h.status(), 404, "{d}");
    }
    let m = c.get(s.url("/v2/acme/app/manifests/v1")).send().unwrap();
    assert_eq!(m.status(), 200);
    for d in [&keep.config, &keep.layer] {
        let b = c
            .get(s.url(&format!("/v2/acme/app/blobs/{d}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(&sha256(&b), d);
    }
    let (_, v) = call(api(&s, A, M::GET, "/registries/acme"));
    let kept_bytes = keep.manifest.len() as u64
        + std::fs::metadata(
            s.data_dir
                .join("store/blobs/sha256")
                .join(&keep.config[7..9])
                .join(&keep.config[7..]),
        )
        .unwrap()
        .len()
        + std::fs::metadata(
            s.data_dir
                .join("store/blobs/sha256")
                .join(&keep.layer[7..9])
                .join(&keep.layer[7..]),
        )
        .unwrap()
        .len();
    assert_eq!(v["bytesUsed"].as_u64(), Some(kept_bytes), "usage released");

    // runs, newest first; a finished run cannot be cancelled
    let (_, runs) = call(api(&s, A, M::GET, "/gc/runs?limit=2"));
    assert_eq!(runs["items"][0]["id"], run["id"]);
    assert_eq!(runs["items"][1]["id"], graced["id"]);
    let (_, rest) = call(api(
        &s,
        A,
        M::GET,
        &runs["next"].as_str().unwrap()["/api/v1".len()..],
    ));
    assert_eq!(rest["items"][0]["id"], dry["id"]);
    let (st, _) = call(api(
        &s,
        A,
        M::POST,
        &format!("/gc/runs/{}/cancel", run["id"].as_str().unwrap()),
    ));
    assert_eq!(st, 409);
    assert_eq!(call(api(&s, A, M::GET, "/gc/runs/nope")).0, 404);
}

#[test]
fn who_may_collect() {
    let s = Server::start();
    let c = admin_client();
    push_image(&c, &s, "acme/app", "v1", "who");
    call(api(&s, A, M::POST, "/registries").json(&json!({"name": "other"})));
    let tok = |body: Value| {
        let (_, t) = call(api(&s, A, M::POST, "/tokens").json(&body));
        t["secret"].as_str().unwrap().to_string()
    };
    let ro = tok(json!({"name": "ro", "registries": ["acme"]}));
    let rw = tok(json!({"name": "rw", "registries": ["acme"], "readWrite": true}));
    assert_eq!(
        call(api(&s, Some(&ro), M::POST, "/gc").json(&json!({"registry": "acme"}))).0,
        403
    );
    assert_eq!(
        call(api(&s, Some(&rw), M::POST, "/gc").json(&json!({}))).0,
        403,
        "the instance is not its"
    );
    assert_eq!(
        call(api(&s, Some(&rw), M::POST, "/gc").json(&json!({"registry": "other"}))).0,
        404
    );
    assert_eq!(call(api(&s, None, M::POST, "/gc")).0, 401);
    let run = run_gc(
        &s,
        Some(&rw),
        json!({"registry": "acme", "graceSeconds": 0}),
    );
    assert_eq!(
        (run["status"].as_str(), run["registry"].as_str()),
        (Some("succeeded"), Some("acme"))
    );
    // its runs list shows its registry's runs only
    run_gc(&s, A, json!({"registry": "other"}));
    let (_, v) = call(api(&s, Some(&ro), M::GET, "/gc/runs"));
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["registry"] == "acme"),
        "{v}"
    );
    assert_eq!(
        c.get(s.url("/v2/acme/app/manifests/v1"))
            .send()
            .unwrap()
            .status(),
        200,
        "a tagged image stays"
    );
    // `berth gc` through the API: follows the run, prints its report
    let out = std::process::Command::new(berth_bin())
        .args([
            "gc",
            "--registry",
            "acme",
            "--delete-untagged",
            "--dry-run",
            "--url",
        ])
        .arg(s.base())
        .args(["--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("succeeded (dry run): 0 manifests"), "{text}");
    let out = std::process::Command::new(berth_bin())
        .args(["gc", "--json", "--url"])
        .arg(s.base())
        .args(["--token", ADMIN_TOKEN])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["registry"].clone()),
        (Some("succeeded"), Value::Null)
    );
}

#[test]
fn pushes_go_on_during_collection_and_nothing_acknowledged_is_lost() {
    let s = Server::start_with(&[("BERTH_STORAGE_SYNC", "false")]);
    let c = admin_client();
    let base = push_blob(&c, &s, "stress/app", &vec![7u8; 4096]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked = std::sync::Mutex::new(Vec::<(String, String, Vec<String>)>::new());
    let runs = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|sc| {
        for t in 0..3 {
            let (c, s, stop, acked, base) = (&c, &s, &stop, &acked, &base);
            sc.spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let repo = format!("stress/app{}", t % 2);
                    // the shared layer by mount (it may have been collected
                    // from this repository: then upload it again)
                    let m = c.post(s.url(&format!("/v2/{repo}/blobs/uploads/?mount={base}&from=stress/app"))).send().unwrap();
                    if m.status() != 201 {
                        let r = c.post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={base}"))).body(vec![7u8; 4096]).send().unwrap();
                        if r.status() != 201 {
                            continue; // 503 while the bytes are being deleted: the client retries
                        }
                    }
                    let own = format!("own layer {t} {i}").repeat(20);
                    let od = sha256(own.as_bytes());
                    let r = c.post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={od}"))).body(own.clone()).send().unwrap();
                    if r.status() != 201 {
                        continue;
                    }
                    let cfg = format!(r#"{{"architecture":"amd64","os":"linux","n":"{t}-{i}"}}"#);
                    let cd = sha256(cfg.as_bytes());
                    let r = c.post(s.url(&format!("/v2/{repo}/blobs/uploads/?digest={cd}"))).body(cfg.clone()).send().unwrap();
                    if r.status() != 201 {
                        continue;
                    }
                    let man = serde_json::to_vec(&json!({
                        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
                        "layers": [
                            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": base, "size": 4096},
                            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": od, "size": own.len()},
                        ],
                    })).unwrap();
                    let tag = format!("t{t}-{i}");
                    let r = c.put(s.url(&format!("/v2/{repo}/manifests/{tag}"))).header("content-type", OCI_MANIFEST).body(man).send().unwrap();
                    match r.status().as_u16() {
                        201 => acked.lock().unwrap().push((repo, tag, vec![base.clone(), od, cd])),
                        // a blob collected between its upload and the push: refused, not lost
                        400 | 404 => {}
                        other => panic!("push: {other} {}", r.text().unwrap_or_default()),
                    }
                }
            });
        }
        let (s, stop, runs) = (&s, &stop, &runs);
        sc.spawn(move || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(6) {
                let r = run_gc(s, A, json!({"deleteUntagged": true, "graceSeconds": 0}));
                assert_eq!(r["status"], "succeeded", "{r}");
                runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    });
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() > 10, "{} pushes acknowledged", acked.len());
    assert!(runs.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    let final_run = run_gc(&s, A, json!({"graceSeconds": 0}));
    assert_eq!(final_run["report"]["errors"], json!([]), "{final_run}");
    // every acknowledged manifest pulls whole
    let mut wanted = std::collections::BTreeSet::new();
    for (repo, tag, blobs) in &acked {
        let m = c
            .get(s.url(&format!("/v2/{repo}/manifests/{tag}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(m.status(), 200, "{repo}:{tag} lost");
        for d in blobs {
            let b = c
                .get(s.url(&format!("/v2/{repo}/blobs/{d}")))
                .send()
                .unwrap();
            assert_eq!(b.status(), 200, "{repo}:{tag} lost {d}");
            assert_eq!(&sha256(&b.bytes().unwrap()), d);
            wanted.insert(d.clone());
        }
    }
    // and no orphan file: every file left is a blob some manifest uses
    for f in blob_files(&s) {
        assert!(wanted.contains(&f), "orphan blob file {f}");
    }
}

/// Blob files no record owns (a crash between storing an upload's bytes and
/// recording it) go with an instance collection once older than the grace;
/// the estimate counts them first.
/// A blob file no record owns, with its modification time `age` ago (as
/// `touch -d` reads it); its digest.
fn plant(s: &Server, data: &[u8], age: &str) -> String {
    let d = sha256(data);
    let hex = &d[7..];
    let dir = s.data_dir.join("store/blobs/sha256").join(&hex[..2]);
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join(hex);
    std::fs::write(&f, data).unwrap();
    run(std::process::Command::new("touch")
        .arg("-d")
        .arg(age)
        .arg(&f));
    d
}

/// `gc.grace_secs` is the grace of runs and estimates that name none.
#[test]
fn the_configured_grace_is_the_default() {
    let s = Server::start_with(&[("BERTH_GC_GRACE_SECS", "60")]);
    let old = plant(&s, b"orphaned two minutes ago", "2 minutes ago");
    let young = plant(&s, b"orphaned ten seconds ago", "10 seconds ago");
    let (st, est) = call(api(&s, A, M::GET, "/gc/estimate"));
    assert_eq!(st, 200, "{est}");
    assert_eq!(est["nonReferenced"]["orphansDeleted"], 1, "{est}");
    let done = run_gc(&s, A, json!({}));
    assert_eq!(done["report"]["orphansDeleted"], 1, "{done}");
    let files = blob_files(&s);
    assert!(!files.contains(&old) && files.contains(&young), "{files:?}");
    // a grace given wins
    let done = run_gc(&s, A, json!({"graceSeconds": 0}));
    assert_eq!(done["report"]["orphansDeleted"], 1, "{done}");
    assert!(!blob_files(&s).contains(&young));
}

#[test]
fn orphan_blob_files_go_after_the_grace() {
    let s = Server::start();
    let c = admin_client();
    let kept = push_image(&c, &s, "orph/app", "v1", "owned");
    let old = plant(&s, b"left by a crash two hours ago", "2 hours ago");
    let young = plant(&s, b"left by a crash just now", "1 second ago");
    let (st, est) = call(api(&s, A, M::GET, "/gc/estimate"));
    assert_eq!(st, 200, "{est}");
    assert_eq!(est["nonReferenced"]["orphansDeleted"], 1, "{est}");
    let done = run_gc(&s, A, json!({}));
    assert_eq!(done["report"]["orphansDeleted"], 1, "{done}");
    assert_eq!(done["report"]["orphanBytes"], 29, "{done}");
    let files = blob_files(&s);
    assert!(!files.contains(&old), "{files:?}");
    assert!(files.contains(&young), "{files:?}");
    for d in [&kept.config, &kept.layer] {
        assert!(files.contains(d), "{files:?}");
    }
    // a registry-scoped run never looks at files
    run(std::process::Command::new("touch")
        .arg("-d")
        .arg("2 hours ago")
        .arg(
            s.data_dir
                .join("store/blobs/sha256")
                .join(&young[7..9])
                .join(&young[7..]),
        ));
    let scoped = run_gc(&s, A, json!({"registry": "orph"}));
    assert_eq!(scoped["report"]["orphansDeleted"], 0, "{scoped}");
    assert!(blob_files(&s).contains(&young));
}
