//! The management API's content resources over HTTP against the real
//! binary: repositories, artifacts (platforms, children, layers,
//! referrers), tags, tag history and restore, bulk cleanup, pull
//! statistics, the audit log, registry users, API tokens and docker
//! credentials — each change checked on `/v2/` too.

use berth_conformance::*;
use reqwest::Method as M;
use serde_json::{json, Value};
use std::time::Duration;

const A: Option<&str> = Some(ADMIN_TOKEN);

struct Pushed {
    digest: String,
    /// Manifest, config and layer bytes.
    total: u64,
    manifest_len: u64,
    blobs: u64,
}

/// An image for `arch` pushed to `repo` (config names the platform).
fn push_arch(c: &Client, s: &Server, repo: &str, tag: &str, arch: &str) -> Pushed {
    let config = format!(r#"{{"architecture":"{arch}","os":"linux","variant":"v8"}}"#);
    let layer = format!("{arch} layer of {repo}").repeat(40);
    let cd = push_blob(c, s, repo, config.as_bytes());
    let ld = push_blob(c, s, repo, layer.as_bytes());
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    let digest = push_manifest(c, s, repo, tag, OCI_MANIFEST, &m);
    let blobs = (config.len() + layer.len()) as u64;
    Pushed {
        digest,
        total: m.len() as u64 + blobs,
        manifest_len: m.len() as u64,
        blobs,
    }
}

/// An OCI artifact (empty config) with one blob, optionally referring to
/// `subject`.
fn push_artifact(
    c: &Client,
    s: &Server,
    repo: &str,
    reference: &str,
    artifact_type: &str,
    config_type: &str,
    subject: Option<(&str, u64)>,
) -> Pushed {
    let config = b"{}";
    let data = format!("payload for {repo} {reference}");
    let cd = push_blob(c, s, repo, config);
    let ld = push_blob(c, s, repo, data.as_bytes());
    let mut m = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": config_type, "digest": cd, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": ld, "size": data.len()}],
    });
    if let Some((d, size)) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size});
    }
    let m = serde_json::to_vec(&m).unwrap();
    let digest = push_manifest(c, s, repo, reference, OCI_MANIFEST, &m);
    let blobs = (2 + data.len()) as u64;
    Pushed {
        digest,
        total: m.len() as u64 + blobs,
        manifest_len: m.len() as u64,
        blobs,
    }
}

/// The `key` field of each element of an array.
fn strs(v: &Value, key: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| e[key].as_str().unwrap().to_string())
        .collect()
}

fn get(s: &Server, path: &str) -> Value {
    let (st, v) = call(api(s, A, M::GET, path));
    assert_eq!(st, 200, "GET {path}: {v}");
    v
}

fn v2_status(c: &Client, s: &Server, m: M, path: &str) -> u16 {
    c.request(m, s.url(path)).send().unwrap().status().as_u16()
}

#[test]
fn repositories_artifacts_tags_history_cleanup() {
    let s = Server::start();
    let c = admin_client();
    assert_eq!(
        call(api(&s, A, M::POST, "/registries").json(&json!({"name": "acme"}))).0,
        201
    );
    // empty
    let v = get(&s, "/registries/acme/repositories");
    assert_eq!(
        (v["items"].as_array().unwrap().len(), v["total"].as_i64()),
        (0, Some(0))
    );
    assert_eq!(v["next"], Value::Null);

    let amd = push_arch(&c, &s, "acme/app", "amd", "amd64");
    let arm = push_arch(&c, &s, "acme/app", "arm", "arm64");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd.digest, "size": amd.manifest_len,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": arm.manifest_len,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]
    }))
    .unwrap();
    let idx = push_manifest(&c, &s, "acme/app", "multi", OCI_INDEX, &index);
    let sig = push_artifact(
        &c,
        &s,
        "acme/app",
        "sig",
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        "application/vnd.oci.empty.v1+json",
        Some((&amd.digest, amd.manifest_len)),
    );
    let chart = push_artifact(
        &c,
        &s,
        "acme/charts/web",
        "0.1.0",
        "application/vnd.cncf.helm.config.v1+json",
        "application/vnd.cncf.helm.config.v1+json",
        None,
    );
    push_artifact(
        &c,
        &s,
        "acme/files",
        "v1",
        "application/x.report",
        "application/vnd.oci.empty.v1+json",
        None,
    );

    // repositories: kinds, exact sizes and counts
    let v = get(&s, "/registries/acme/repositories");
    let names = strs(&v["items"], "name");
    assert_eq!(names, ["app", "charts/web", "files"]);
    assert_eq!(
        (v["total"].as_i64(), v["filtered"].as_i64()),
        (Some(3), Some(3))
    );
    let app = &v["items"][0];
    // the signature's `{}` config is a blob of its own
    let app_blobs = amd.blobs + arm.blobs + sig.blobs;
    let app_manifests = amd.manifest_len + arm.manifest_len + index.len() as u64 + sig.manifest_len;
    assert_eq!(app["kind"], "image");
    assert_eq!(app["blobBytes"].as_u64(), Some(app_blobs));
    assert_eq!(app["manifestBytes"].as_u64(), Some(app_manifests));
    assert_eq!(app["sizeBytes"].as_u64(), Some(app_blobs + app_manifests));
    assert_eq!(
        (app["artifactCount"].as_i64(), app["tagCount"].as_i64()),
        (Some(4), Some(4))
    );
    assert_eq!(app["fullName"], "acme/app");
    assert!(app["pullPrefix"].as_str().unwrap().ends_with("/acme/app"));
    assert_eq!(v["items"][1]["kind"], "helm_chart");
    assert_eq!(v["items"][1]["sizeBytes"].as_u64(), Some(chart.total));
    assert_eq!(v["items"][2]["kind"], "artifact");
    // sorts, search, pages
    let v = get(&s, "/registries/acme/repositories?sort=-size");
    assert_eq!(v["items"][0]["name"], "app");
    let v = get(&s, "/registries/acme/repositories?sort=-name&limit=2");
    let names = strs(&v["items"], "name");
    assert_eq!(names, ["files", "charts/web"]);
    let next = v["next"]
        .as_str()
        .unwrap()
        .strip_prefix("/api/v1")
        .unwrap()
        .to_string();
    let v = get(&s, &next);
    assert_eq!(v["items"][0]["name"], "app");
    assert_eq!(v["next"], Value::Null);
    let v = get(&s, "/registries/acme/repositories?search=art");
    assert_eq!(
        (v["items"][0]["name"].as_str(), v["filtered"].as_i64()),
        (Some("charts/web"), Some(1))
    );
    let v = get(&s, "/registries/acme/repositories?limit=1");
    assert_eq!(v["items"][0]["name"], "app");
    let v = get(&s, &v["next"].as_str().unwrap()["/api/v1".len()..]);
    assert_eq!(v["items"][0]["name"], "charts/web");
    let v = get(&s, "/registries/acme/repository-names?prefix=ch");
    assert_eq!(v["items"], json!(["charts/web"]));
    assert_eq!(
        call(api(
            &s,
            A,
            M::GET,
            "/registries/acme/repositories?sort=colour"
        ))
        .0,
        400
    );
    assert_eq!(
        call(api(&s, A, M::GET, "/registries/acme/repositories?limit=0")).0,
        400
    );
    // one repository, a name with a slash URL-encoded
    let v = get(&s, "/registries/acme/repositories/charts%2Fweb");
    assert_eq!(
        (v["fullName"].as_str(), v["tagCount"].as_i64()),
        (Some("acme/charts/web"), Some(1))
    );
    assert_eq!(
        call(api(&s, A, M::GET, "/registries/acme/repositories/nope")).0,
        404
    );
    assert_eq!(
        call(api(
            &s,
            A,
            M::GET,
            "/registries/acme/repositories/Bad%20Name"
        ))
        .0,
        400
    );

    // artifacts: the index by tag, with its children and platforms
    let v = get(&s, "/registries/acme/repositories/app/artifacts/multi");
    assert_eq!(v["digest"], idx);
    assert_eq!(v["kind"], "image");
    assert_eq!(v["tags"], json!(["multi"]));
    assert_eq!(
        v["children"][1]["platform"],
        json!({"os": "linux", "architecture": "arm64", "variant": "v8"})
    );
    assert_eq!(v["children"][0]["sizeBytes"].as_u64(), Some(amd.total));
    assert_eq!(
        v["sizeBytes"].as_u64(),
        Some(index.len() as u64 + amd.total + arm.total)
    );
    // an image by digest: its platform (from the config), layers, referrers
    let v = get(
        &s,
        &format!("/registries/acme/repositories/app/artifacts/{}", amd.digest),
    );
    assert_eq!(
        v["platform"],
        json!({"os": "linux", "architecture": "amd64", "variant": "v8"})
    );
    assert_eq!(v["sizeBytes"].as_u64(), Some(amd.total));
    assert_eq!(v["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        v["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let sigs = &v["referrers"]["application/vnd.dev.cosign.artifact.sig.v1+json"];
    assert_eq!(sigs[0]["digest"], sig.digest);
    let v = get(
        &s,
        &format!("/registries/acme/repositories/app/artifacts/{}", sig.digest),
    );
    assert_eq!(
        (v["kind"].as_str(), v["subject"].as_str()),
        (Some("artifact"), Some(amd.digest.as_str()))
    );
    // lists: by digest (keyset), by push time, by tag prefix
    let v = get(&s, "/registries/acme/repositories/app/artifacts");
    assert_eq!(v["total"], 4);
    let ds = strs(&v["items"], "digest");
    let mut sorted = ds.clone();
    sorted.sort();
    assert_eq!(ds, sorted);
    let v = get(
        &s,
        "/registries/acme/repositories/app/artifacts?sort=-size&limit=1",
    );
    assert_eq!(v["items"][0]["digest"], idx);
    assert!(v["next"].as_str().unwrap().contains("offset=1"));
    let v = get(&s, "/registries/acme/repositories/app/artifacts?tag=mu");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["digest"], idx);
    let pre = &amd.digest[..12];
    let v = get(
        &s,
        &format!("/registries/acme/repositories/app/artifacts?prefix={pre}"),
    );
    assert_eq!(v["items"][0]["digest"], amd.digest);

    // delete: refused while the index lists it, naming the index
    let (st, v) = call(api(
        &s,
        A,
        M::DELETE,
        &format!("/registries/acme/repositories/app/artifacts/{}", amd.digest),
    ));
    assert_eq!((st, v["code"].as_str()), (409, Some("referenced")));
    assert!(v["detail"].as_str().unwrap().contains(&idx), "{v}");
    // deleting the index by its tag takes the tag; /v2/ sees it at once
    assert_eq!(
        call(api(
            &s,
            A,
            M::DELETE,
            "/registries/acme/repositories/app/artifacts/multi"
        ))
        .0,
        204
    );
    assert_eq!(
        v2_status(&c, &s, M::GET, "/v2/acme/app/manifests/multi"),
        404
    );
    let tags: Value = c
        .get(s.url("/v2/acme/app/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], json!(["amd", "arm", "sig"]));

    // tags: list, delete one, history, restore
    let v = get(&s, "/registries/acme/repositories/app/tags");
    assert_eq!(v["total"], 3);
    assert_eq!(
        v["items"][0],
        json!({"name": "amd", "digest": amd.digest, "createdAt": v["items"][0]["createdAt"], "updatedAt": v["items"][0]["updatedAt"]})
    );
    // move `amd` to the arm image through /v2/ (a push), then restore it
    push_manifest(
        &c,
        &s,
        "acme/app",
        "amd",
        OCI_MANIFEST,
        &c.get(s.url(&format!("/v2/acme/app/manifests/{}", arm.digest)))
            .header("accept", OCI_MANIFEST)
            .send()
            .unwrap()
            .bytes()
            .unwrap(),
    );
    let h = get(&s, "/registries/acme/repositories/app/tags/amd/history");
    let moves: Vec<(Value, Value, Value)> = h["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["from"].clone(), e["to"].clone(), e["by"].clone()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (json!(amd.digest), json!(arm.digest), json!("admin")),
            (Value::Null, json!(amd.digest), json!("admin")),
        ]
    );
    let (st, v) = call(
        api(&s, A, M::PUT, "/registries/acme/repositories/app/tags/amd")
            .json(&json!({"digest": amd.digest})),
    );
    assert_eq!((st, v["digest"].as_str()), (200, Some(amd.digest.as_str())));
    let got = c.head(s.url("/v2/acme/app/manifests/amd")).send().unwrap();
    assert_eq!(
        got.headers()["docker-content-digest"].to_str().unwrap(),
        amd.digest,
        "restored on /v2/"
    );
    let gone = format!("sha256:{}", "0".repeat(64));
    assert_eq!(
        call(
            api(&s, A, M::PUT, "/registries/acme/repositories/app/tags/amd")
                .json(&json!({"digest": gone}))
        )
        .0,
        404
    );
    assert_eq!(
        call(
            api(&s, A, M::PUT, "/registries/acme/repositories/app/tags/amd")
                .json(&json!({"digest": "nope"}))
        )
        .0,
        400
    );
    assert_eq!(
        call(
            api(&s, A, M::PUT, "/registries/acme/repositories/app/tags/-bad")
                .json(&json!({"digest": amd.digest}))
        )
        .0,
        400
    );
    assert_eq!(
        call(api(
            &s,
            A,
            M::DELETE,
            "/registries/acme/repositories/app/tags/arm"
        ))
        .0,
        204
    );
    assert_eq!(
        call(api(
            &s,
            A,
            M::DELETE,
            "/registries/acme/repositories/app/tags/arm"
        ))
        .0,
        404
    );
    assert_eq!(v2_status(&c, &s, M::GET, "/v2/acme/app/manifests/arm"), 404);
    assert_eq!(
        v2_status(
            &c,
            &s,
            M::GET,
            &format!("/v2/acme/app/manifests/{}", arm.digest)
        ),
        200,
        "the manifest stays"
    );
    // the repository's history: every tag, newest first within each, paged
    let h = get(&s, "/registries/acme/repositories/app/history?limit=2");
    assert_eq!(h["items"].as_array().unwrap().len(), 2);
    let mut all = h["items"].as_array().unwrap().clone();
    let mut next = h["next"].as_str().map(str::to_string);
    while let Some(n) = next {
        let p = get(&s, &n["/api/v1".len()..]);
        all.extend(p["items"].as_array().unwrap().iter().cloned());
        next = p["next"].as_str().map(str::to_string);
    }
    let per_tag = |t: &str| all.iter().filter(|e| e["tag"] == t).count();
    assert_eq!(
        (
            per_tag("amd"),
            per_tag("arm"),
            per_tag("multi"),
            per_tag("sig")
        ),
        (3, 2, 2, 1)
    );

    // bulk cleanup: each item on its own, failures with reasons
    let (st, v) = call(
        api(&s, A, M::POST, "/registries/acme/repositories/app/cleanup").json(&json!({
            "tags": ["sig", "nope", "-bad"],
            "digests": [arm.digest, gone, "garbage"],
        })),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["deletedTags"], json!(["sig"]));
    assert_eq!(v["deletedDigests"], json!([arm.digest]));
    let failed: Vec<(&str, &str)> = v["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["reference"].as_str().unwrap(),
                f["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        vec![
            ("nope", "not_found"),
            ("-bad", "invalid"),
            (gone.as_str(), "not_found"),
            ("garbage", "invalid")
        ]
    );
    assert_eq!(
        call(
            api(&s, A, M::POST, "/registries/acme/repositories/app/cleanup")
                .json(&json!({"tags": "x"}))
        )
        .0,
        422
    );
    let v = get(&s, "/registries/acme/repositories/app");
    assert_eq!(
        (v["artifactCount"].as_i64(), v["tagCount"].as_i64()),
        (Some(2), Some(1))
    );

    // delete the repository: gone on /v2/, uncounted
    assert_eq!(
        call(api(&s, A, M::DELETE, "/registries/acme/repositories/app")).0,
        204
    );
    assert_eq!(
        v2_status(
            &c,
            &s,
            M::GET,
            &format!("/v2/acme/app/manifests/{}", amd.digest)
        ),
        404
    );
    assert_eq!(
        call(api(&s, A, M::GET, "/registries/acme/repositories/app")).0,
        404
    );
    assert_eq!(
        call(api(&s, A, M::DELETE, "/registries/acme/repositories/app")).0,
        404
    );
    let v = get(&s, "/registries/acme");
    assert_eq!(v["repositoryCount"], 2);
}

/// Wait until `f` holds (the pull statistics flush about once a second).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    poll(what, 300, Duration::from_millis(200), || f().then_some(()))
}

#[test]
fn pulls_are_counted_for_get_not_head() {
    let s = Server::start();
    let c = admin_client();
    call(api(&s, A, M::POST, "/registries").json(&json!({"name": "acme"})));
    let img = push_arch(&c, &s, "acme/app", "v1", "amd64");
    let other = push_arch(&c, &s, "acme/app", "v2", "arm64");
    for _ in 0..3 {
        assert_eq!(v2_status(&c, &s, M::GET, "/v2/acme/app/manifests/v1"), 200);
    }
    assert_eq!(
        v2_status(
            &c,
            &s,
            M::GET,
            &format!("/v2/acme/app/manifests/{}", img.digest)
        ),
        200
    );
    for _ in 0..5 {
        assert_eq!(v2_status(&c, &s, M::HEAD, "/v2/acme/app/manifests/v2"), 200);
    }
    let path = format!("/registries/acme/repositories/app/artifacts/{}", img.digest);
    eventually("4 pulls counted", || get(&s, &path)["pullCount"] == 4);
    let a = get(&s, &path);
    assert!(a["lastPulledAt"].is_string());
    let o = get(
        &s,
        &format!(
            "/registries/acme/repositories/app/artifacts/{}",
            other.digest
        ),
    );
    assert_eq!(
        (o["pullCount"].as_i64(), &o["lastPulledAt"]),
        (Some(0), &Value::Null),
        "HEAD is no pull"
    );
    let r = get(&s, "/registries/acme/repositories/app");
    assert_eq!(r["pullCount"], 4);
    assert!(r["lastPulledAt"].is_string());
    // sorted by pull time: the pulled one last, ascending
    let v = get(
        &s,
        "/registries/acme/repositories/app/artifacts?sort=pulled",
    );
    assert_eq!(v["items"][1]["digest"], img.digest);
}

#[test]
fn audit_log_of_a_scripted_sequence() {
    let s = Server::start();
    let c = admin_client();
    let t0 = rfc3339_a_second_ago();
    call(api(&s, A, M::POST, "/registries").json(&json!({"name": "acme"})));
    call(api(&s, A, M::POST, "/registries").json(&json!({"name": "other"})));
    let (_, tok) =
        call(api(&s, A, M::POST, "/tokens").json(&json!({"name": "ro", "registries": ["acme"]})));
    let ro = tok["secret"].as_str().unwrap().to_string();
    let ro_id = tok["id"].as_str().unwrap().to_string();
    push_arch(&c, &s, "acme/app", "v1", "amd64");
    push_arch(&c, &s, "other/app", "v1", "amd64");
    assert_eq!(
        call(api(
            &s,
            Some(&ro),
            M::DELETE,
            "/registries/acme/repositories/app/tags/v1"
        ))
        .0,
        403
    );
    assert_eq!(
        call(api(
            &s,
            A,
            M::DELETE,
            "/registries/acme/repositories/app/tags/v1"
        ))
        .0,
        204
    );
    assert_eq!(
        v2_status(&c, &s, M::DELETE, "/v2/other/app/manifests/v1"),
        202
    );

    let v = get(&s, "/audit?registry=acme");
    let entries: Vec<(String, String, u64)> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["principal"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            ("api.tags.delete".into(), "admin".into(), 204),
            ("api.tags.delete".into(), format!("token:{ro_id}"), 403),
            ("v2.manifest.put".into(), "admin".into(), 201),
            ("api.registries.create".into(), "admin".into(), 201),
        ]
    );
    let e = &v["items"][0];
    assert_eq!(e["target"], "/registries/acme/repositories/app/tags/v1");
    assert_eq!(e["client"], "127.0.0.1");
    let v = get(&s, "/audit?action=v2.manifest.delete");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["target"], "other/app:v1");
    let v = get(&s, "/audit?action=api.registries.create&limit=1");
    assert_eq!(v["items"][0]["target"], "/registries");
    let v = get(&s, &v["next"].as_str().unwrap()["/api/v1".len()..]);
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let v = get(&s, &format!("/audit?principal=token:{ro_id}"));
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    // a time range: everything since the start, nothing before it
    let v = get(&s, &format!("/audit?since={t0}"));
    assert_eq!(v["items"].as_array().unwrap().len(), 8);
    let v = get(&s, "/audit?until=2000-01-01T00:00:00Z");
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    assert_eq!(call(api(&s, A, M::GET, "/audit?since=yesterday")).0, 400);
    // GETs are not audited; a scoped token sees only its registries
    get(&s, "/registries/acme/repositories");
    let v = get(&s, "/audit?action=api.repositories.list");
    assert_eq!(v["items"].as_array().unwrap().len(), 0);
    let (_, v) = call(api(&s, Some(&ro), M::GET, "/audit"));
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["registry"] == "acme"),
        "{v}"
    );
}

/// Now, a second earlier, as RFC 3339 (second precision).
fn rfc3339_a_second_ago() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn users_through_the_api_and_on_v2() {
    let s = Server::start();
    let c = admin_client();
    call(api(&s, A, M::POST, "/registries").json(&json!({"name": "acme"})));
    push_arch(&c, &s, "acme/app", "v1", "amd64");
    let (st, u) = call(api(&s, A, M::POST, "/registries/acme/users").json(&json!({"name": "ci"})));
    assert_eq!(st, 201, "{u}");
    assert_eq!(
        (u["username"].as_str(), u["canPush"].as_bool()),
        (Some("acme+ci"), Some(false))
    );
    let pw = u["password"].as_str().unwrap().to_string();
    assert_eq!(
        call(api(&s, A, M::POST, "/registries/acme/users").json(&json!({"name": "ci"}))).0,
        409
    );
    assert_eq!(
        call(api(&s, A, M::POST, "/registries/acme/users").json(&json!({"name": "Bad Name"}))).0,
        400
    );
    assert_eq!(
        call(
            api(&s, A, M::POST, "/registries/acme/users")
                .json(&json!({"name": "x", "expiresAt": "2001-01-01T00:00:00Z"}))
        )
        .0,
        400
    );
    call(
        api(&s, A, M::POST, "/registries/acme/users")
            .json(&json!({"name": "deploy", "canPush": true, "expiresAt": "2099-01-01T00:00:00Z"})),
    );
    let as_user = |pw: &str, m: M, path: &str| {
        Client::new()
            .request(m, s.url(path))
            .header("authorization", basic("acme+ci", pw))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(as_user(&pw, M::GET, "/v2/acme/app/manifests/v1"), 200);
    assert_eq!(
        as_user(&pw, M::POST, "/v2/acme/app/blobs/uploads/"),
        403,
        "pull only"
    );
    // list: search, filter, sort
    let v = get(&s, "/registries/acme/users?sort=-name");
    let names = strs(&v["items"], "name");
    assert_eq!(names, ["deploy", "ci"]);
    assert_eq!(
        get(&s, "/registries/acme/users?canPush=true")["items"][0]["name"],
        "deploy"
    );
    assert_eq!(get(&s, "/registries/acme/users?search=c")["total"], 1);
    assert_eq!(
        get(&s, "/registries/acme/users/deploy")["expiresAt"],
        "2099-01-01T00:00:00Z"
    );
    // update: push at once
    let (st, v) =
        call(api(&s, A, M::PATCH, "/registries/acme/users/ci").json(&json!({"canPush": true})));
    assert_eq!((st, v["canPush"].as_bool()), (200, Some(true)));
    assert_eq!(as_user(&pw, M::POST, "/v2/acme/app/blobs/uploads/"), 202);
    // reset: the old password stops working
    let (_, v) = call(api(
        &s,
        A,
        M::POST,
        "/registries/acme/users/ci/reset-password",
    ));
    let pw2 = v["password"].as_str().unwrap().to_string();
    assert_eq!(as_user(&pw, M::GET, "/v2/acme/app/manifests/v1"), 401);
    assert_eq!(as_user(&pw2, M::GET, "/v2/acme/app/manifests/v1"), 200);
    // delete: the next request fails, with a JWT issued before too
    let jwt = jwt(
        &s,
        Some(&basic("acme+ci", &pw2)),
        &["repository:acme/app:pull"],
    )
    .unwrap();
    let with_jwt = || {
        Client::new()
            .get(s.url("/v2/acme/app/manifests/v1"))
            .bearer_auth(&jwt)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(with_jwt(), 200);
    assert_eq!(
        call(api(&s, A, M::DELETE, "/registries/acme/users/ci")).0,
        204
    );
    assert_eq!(as_user(&pw2, M::GET, "/v2/acme/app/manifests/v1"), 401);
    assert_eq!(with_jwt(), 401);
    assert_eq!(call(api(&s, A, M::GET, "/registries/acme/users/ci")).0, 404);
    assert_eq!(
        call(api(&s, A, M::DELETE, "/registries/acme/users/ci")).0,
        404
    );
}

#[test]
fn tokens_and_docker_credentials() {
    let s = Server::start();
    let c = admin_client();
    call(api(&s, A, M::POST, "/registries").json(&json!({"name": "acme"})));
    push_arch(&c, &s, "acme/app", "v1", "amd64");
    let (st, t) =
        call(api(&s, A, M::POST, "/tokens").json(&json!({"name": "ci", "registries": ["acme"]})));
    assert_eq!(st, 201, "{t}");
    let (id, secret) = (
        t["id"].as_str().unwrap().to_string(),
        t["secret"].as_str().unwrap().to_string(),
    );
    assert_eq!(
        (t["readWrite"].as_bool(), t["lastUsedAt"].is_null()),
        (Some(false), true)
    );
    let auth = t["dockerConfig"]["auths"][s.host()]["auth"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, rw) = call(
        api(&s, A, M::POST, "/tokens")
            .json(&json!({"name": "all", "readWrite": true, "expiresAt": "2099-01-01T00:00:00Z"})),
    );
    let rw_id = rw["id"].as_str().unwrap().to_string();
    assert_eq!(
        call(api(&s, A, M::POST, "/tokens").json(&json!({"name": ""}))).0,
        400
    );
    assert_eq!(
        call(api(&s, A, M::POST, "/tokens").json(&json!({"name": "x", "registries": ["Nope!"]}))).0,
        400
    );
    assert_eq!(
        call(api(&s, A, M::POST, "/tokens").json(&json!({"name": "x", "readWrite": "yes"}))).0,
        422
    );
    // the docker config's auth pulls, and may not push (read-only)
    let with = |a: &str, m: M, path: &str| {
        Client::new()
            .request(m, s.url(path))
            .header("authorization", format!("Basic {a}"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(with(&auth, M::GET, "/v2/acme/app/manifests/v1"), 200);
    assert_eq!(with(&auth, M::POST, "/v2/acme/app/blobs/uploads/"), 403);
    // list: filters and sorts; lastUsedAt is set by the use above
    let v = get(&s, "/tokens?scope=scoped");
    assert_eq!(
        (v["total"].as_u64(), v["items"][0]["id"].as_str()),
        (Some(1), Some(id.as_str()))
    );
    assert!(v["items"][0]["lastUsedAt"].is_string(), "{v}");
    assert_eq!(get(&s, "/tokens?mode=read-write")["items"][0]["id"], rw_id);
    assert_eq!(
        get(&s, "/tokens?sort=-expires")["items"][0]["id"],
        id,
        "never expiring sorts last, so first descending"
    );
    assert_eq!(get(&s, "/tokens?search=al")["total"], 1);
    assert_eq!(call(api(&s, A, M::GET, "/tokens?mode=sometimes")).0, 400);
    // a scoped token cannot manage tokens
    assert_eq!(call(api(&s, Some(&secret), M::GET, "/tokens")).0, 403);
    // update: read-write at once on /v2/
    let (st, v) = call(
        api(&s, A, M::PATCH, &format!("/tokens/{id}"))
            .json(&json!({"readWrite": true, "name": "ci-rw"})),
    );
    assert_eq!((st, v["name"].as_str()), (200, Some("ci-rw")));
    assert_eq!(with(&auth, M::POST, "/v2/acme/app/blobs/uploads/"), 202);
    // refresh, regenerate, revoke, delete
    let (_, v) = call(
        api(&s, A, M::POST, &format!("/tokens/{id}/refresh"))
            .json(&json!({"expiresAt": "2098-01-01T00:00:00Z"})),
    );
    assert_eq!(v["expiresAt"], "2098-01-01T00:00:00Z");
    let (_, v) = call(api(&s, A, M::POST, &format!("/tokens/{id}/regenerate")));
    let auth2 = v["dockerConfig"]["auths"][s.host()]["auth"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        with(&auth, M::GET, "/v2/acme/app/manifests/v1"),
        401,
        "the old secret"
    );
    assert_eq!(with(&auth2, M::GET, "/v2/acme/app/manifests/v1"), 200);
    let (_, v) = call(api(&s, A, M::POST, &format!("/tokens/{id}/revoke")));
    assert_eq!(v["status"], "revoked");
    assert_eq!(with(&auth2, M::GET, "/v2/acme/app/manifests/v1"), 401);
    assert_eq!(get(&s, "/tokens?status=revoked")["total"], 1);
    assert_eq!(call(api(&s, A, M::DELETE, &format!("/tokens/{id}"))).0, 204);
    assert_eq!(call(api(&s, A, M::GET, &format!("/tokens/{id}"))).0, 404);

    // docker credentials for one registry: read-only by default
    let (st, v) = call(api(&s, A, M::POST, "/registries/acme/docker-credentials"));
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (v["registries"].clone(), v["readWrite"].as_bool()),
        (json!(["acme"]), Some(false))
    );
    let cfg = &v["dockerConfig"];
    let a = cfg["auths"][s.host()]["auth"].as_str().unwrap();
    assert_eq!(with(a, M::GET, "/v2/acme/app/manifests/v1"), 200);
    assert_eq!(with(a, M::POST, "/v2/acme/app/blobs/uploads/"), 403);
    let (_, v) = call(
        api(&s, A, M::POST, "/registries/acme/docker-credentials")
            .json(&json!({"readWrite": true, "name": "k8s"})),
    );
    let a = v["dockerConfig"]["auths"][s.host()]["auth"]
        .as_str()
        .unwrap();
    assert_eq!(with(a, M::POST, "/v2/acme/app/blobs/uploads/"), 202);
    assert_eq!(
        call(api(&s, A, M::POST, "/registries/nope/docker-credentials")).0,
        404
    );
}

/// Follow `next` links from `first`; every page's items.
fn pages(s: &Server, first: &str) -> Vec<Vec<Value>> {
    let mut out = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(p) = next {
        let v = get(s, &p);
        out.push(v["items"].as_array().unwrap().clone());
        next = v["next"].as_str().map(|n| n["/api/v1".len()..].to_string());
        assert!(out.len() < 100, "paging does not end");
    }
    out
}

#[test]
fn pagination_edges_up_to_10000() {
    let s = Server::start_with(&[("BERTH_STORAGE_SYNC", "false")]);
    let c = admin_client();
    call(api(&s, A, M::POST, "/registries").json(&json!({"name": "big"})));
    let img = push_arch(&c, &s, "big/r00000", "v1", "amd64");
    // 10,000 tags on one manifest, 80 per push (the answer has an OCI-Tag
    // header per tag; the client takes at most 100 headers)
    let body = c
        .get(s.url(&format!("/v2/big/r00000/manifests/{}", img.digest)))
        .header("accept", OCI_MANIFEST)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    for chunk in 0..125 {
        let q: Vec<String> = (0..80)
            .map(|i| format!("tag=t{:05}", chunk * 80 + i))
            .collect();
        let r = c
            .put(s.url(&format!(
                "/v2/big/r00000/manifests/{}?{}",
                img.digest,
                q.join("&")
            )))
            .header("content-type", OCI_MANIFEST)
            .body(body.to_vec())
            .send()
            .unwrap_or_else(|e| panic!("push {chunk}: {}", e.without_url()));
        assert_eq!(r.status(), 201);
    }
    let base = "/registries/big/repositories/r00000";
    let v = get(&s, &format!("{base}/tags?limit=1"));
    assert_eq!(v["total"], 10_001);
    let p = pages(&s, &format!("{base}/tags?limit=1000"));
    assert_eq!(p.len(), 11);
    assert_eq!(p.iter().map(Vec::len).sum::<usize>(), 10_001);
    assert_eq!(p[10].len(), 1, "the last page holds what is left");
    let names: Vec<&str> = p
        .iter()
        .flatten()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "in order, no repeats");
    // exactly a page: no next
    let v = get(&s, &format!("{base}/tags?prefix=t0&limit=1000"));
    assert!(v["next"].is_string());
    let v = get(&s, &format!("{base}/tags?prefix=t09&limit=1000"));
    assert_eq!(
        (v["items"].as_array().unwrap().len(), &v["next"]),
        (1000, &Value::Null)
    );
    let v = get(&s, &format!("{base}/tags?cursor=v1"));
    assert_eq!(v["items"].as_array().unwrap().len(), 0, "after the last");
    // offset paging to its bound, and past it
    let v = get(&s, &format!("{base}/tags?offset=10000&limit=5"));
    assert_eq!(v["items"][0]["name"], "v1");
    assert_eq!(
        call(api(&s, A, M::GET, &format!("{base}/tags?offset=10001"))).0,
        400
    );
    // the history of 10,001 tag creations, paged
    let h = pages(&s, &format!("{base}/history?limit=1000"));
    assert_eq!(h.iter().map(Vec::len).sum::<usize>(), 10_001);

    // 10,001 repositories, mounted from the first, four at a time
    std::thread::scope(|sc| {
        for t in 0..4 {
            let (c, s, d) = (&c, &s, img.digest.clone());
            let layer = get(s, &format!("{base}/artifacts/{d}"))["layers"][0]["digest"]
                .as_str()
                .unwrap()
                .to_string();
            sc.spawn(move || {
                for i in (1..=10_000).filter(|i| i % 4 == t) {
                    let r = c
                        .post(s.url(&format!(
                            "/v2/big/r{i:05}/blobs/uploads/?mount={layer}&from=big/r00000"
                        )))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 201, "mount into r{i:05}");
                }
            });
        }
    });
    let p = pages(&s, "/registries/big/repositories?limit=1000");
    assert_eq!(p.iter().map(Vec::len).sum::<usize>(), 10_001);
    assert_eq!(p.len(), 11);
    let v = get(
        &s,
        "/registries/big/repository-names?limit=1000&offset=9000",
    );
    assert_eq!(
        (v["items"][0].as_str(), v["total"].as_i64()),
        (Some("r09000"), Some(10_001))
    );
    // sorting reads at most 10,000: with a prefix that leaves 10,000 it
    // sorts, with all 10,001 it says so
    let v = get(
        &s,
        "/registries/big/repositories?prefix=r0&sort=-size&limit=2",
    );
    assert_eq!(
        (v["items"][0]["name"].as_str(), v["filtered"].as_i64()),
        (Some("r00000"), Some(10_000))
    );
    let (st, v) = call(api(
        &s,
        A,
        M::GET,
        "/registries/big/repositories?sort=-size",
    ));
    assert_eq!((st, v["code"].as_str()), (400, Some("too_many_to_sort")));
    let v = get(&s, "/registries/big");
    assert_eq!(v["repositoryCount"], 10_001);
}
