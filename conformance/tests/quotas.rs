//! Storage quotas against the real binary: a registry's usage (its
//! distinct blobs once, plus its manifests) is charged in the transaction
//! that links a blob or stores a manifest, so concurrent pushers near the
//! limit never overshoot it; refusals are 403 DENIED naming limit and
//! usage, before the bytes are read where the request declares them.

use berth_conformance::*;
use reqwest::Method as M;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

const A: Option<&str> = Some(ADMIN_TOKEN);
const LIMIT: u64 = 20_000;

fn used(s: &Server, registry: &str) -> u64 {
    let (st, v) = call(api(s, A, M::GET, &format!("/registries/{registry}")));
    assert_eq!(st, 200, "{v}");
    v["bytesUsed"].as_u64().unwrap()
}

fn denied(r: reqwest::blocking::Response) -> Value {
    assert_eq!(r.status(), 403);
    let v: Value = r.json().unwrap();
    assert_eq!(v["errors"][0]["code"], "DENIED", "{v}");
    v
}

/// A blob of `n` bytes unique to `seed`.
fn blob(seed: &str, n: usize) -> Vec<u8> {
    seed.bytes().cycle().take(n).collect()
}

/// A chunked upload: POST, PATCH, PUT; the final status.
fn chunked(c: &Client, s: &Server, repo: &str, data: &[u8]) -> reqwest::blocking::Response {
    let r = c
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .patch(s.url(&loc))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let sep = if loc.contains('?') { '&' } else { '?' };
    c.put(s.url(&format!("{loc}{sep}digest={}", sha256(data))))
        .send()
        .unwrap()
}

#[test]
fn concurrent_pushers_never_overshoot_and_usage_is_exact() {
    let s = Server::start();
    let c = admin_client();
    let (st, _) = call(
        api(&s, A, M::POST, "/registries")
            .json(&json!({"name": "qta", "storageLimitBytes": LIMIT})),
    );
    assert_eq!(st, 201);
    // 10,000 bytes left after this
    let base = blob("base", (LIMIT - 10_000) as usize);
    push_blob(&c, &s, "qta/base", &base);
    assert_eq!(used(&s, "qta"), LIMIT - 10_000);

    // 32 pushers of distinct 1000-byte blobs, half monolithic, half chunked
    let admitted = AtomicU64::new(0);
    std::thread::scope(|sc| {
        for t in 0..32 {
            let (c, s, admitted) = (&c, &s, &admitted);
            sc.spawn(move || {
                let data = blob(&format!("pusher {t:02} "), 1000);
                let repo = format!("qta/app{}", t % 4);
                let r = if t % 2 == 0 {
                    c.post(s.url(&format!(
                        "/v2/{repo}/blobs/uploads/?digest={}",
                        sha256(&data)
                    )))
                    .body(data.clone())
                    .send()
                    .unwrap()
                } else {
                    chunked(c, s, &repo, &data)
                };
                match r.status().as_u16() {
                    201 => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    403 => {
                        let v = denied(r);
                        let d = &v["errors"][0]["detail"];
                        assert_eq!(d["storageLimitBytes"], LIMIT, "{v}");
                        assert!(d["usedBytes"].as_u64().unwrap() <= LIMIT, "{v}");
                    }
                    other => panic!("pusher {t}: {other} {}", r.text().unwrap_or_default()),
                }
            });
        }
    });
    assert_eq!(admitted.load(Ordering::Relaxed), 10, "exactly what fits");
    assert_eq!(used(&s, "qta"), LIMIT, "to the byte");
    let m = s.metrics();
    assert_eq!(
        metric(&m, "berth_registry_used_bytes{registry=\"qta\"}"),
        Some(LIMIT as f64)
    );
    assert_eq!(
        metric(&m, "berth_registry_limit_bytes{registry=\"qta\"}"),
        Some(LIMIT as f64)
    );

    // full: a new blob is refused before its bytes are read (declared
    // length), and nothing is stored; a mount is refused; so is a manifest
    let new = blob("one more", 10);
    denied(
        c.post(s.url(&format!(
            "/v2/qta/app0/blobs/uploads/?digest={}",
            sha256(&new)
        )))
        .body(new.clone())
        .send()
        .unwrap(),
    );
    let head = c
        .head(s.url(&format!("/v2/qta/app0/blobs/{}", sha256(&new))))
        .send()
        .unwrap();
    assert_eq!(head.status(), 404);
    let elsewhere = push_blob(&c, &s, "free/x", &blob("elsewhere", 50));
    denied(
        c.post(s.url(&format!(
            "/v2/qta/app0/blobs/uploads/?mount={elsewhere}&from=free/x"
        )))
        .send()
        .unwrap(),
    );
    // a blob the registry holds costs nothing: mounted at the limit
    let r = c
        .post(s.url(&format!(
            "/v2/qta/other/blobs/uploads/?mount={}&from=qta/base",
            sha256(&base)
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "already held: free");
    let man = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(&base), "size": base.len()},
        "layers": [],
    }))
    .unwrap();
    denied(
        c.put(s.url("/v2/qta/base/manifests/v1"))
            .header("content-type", OCI_MANIFEST)
            .body(man.clone())
            .send()
            .unwrap(),
    );
    assert_eq!(
        c.get(s.url("/v2/qta/base/manifests/v1"))
            .send()
            .unwrap()
            .status(),
        404
    );
    assert_eq!(used(&s, "qta"), LIMIT, "refusals charge nothing");

    // a delete releases: the registry's last link to the blob goes
    let r = c
        .delete(s.url(&format!("/v2/qta/base/blobs/{}", sha256(&base))))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(used(&s, "qta"), LIMIT, "qta/other still links it");
    let r = c
        .delete(s.url(&format!("/v2/qta/other/blobs/{}", sha256(&base))))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(used(&s, "qta"), 10_000);
    push_blob(&c, &s, "qta/app0", &new);
    // a resize (the seeds' word) applies to the next push
    call(api(&s, A, M::PATCH, "/registries/qta").json(&json!({"storageLimitBytes": 10_005})));
    denied(
        c.post(s.url(&format!(
            "/v2/qta/app0/blobs/uploads/?digest={}",
            sha256(b"0123456789")
        )))
        .body(b"0123456789".to_vec())
        .send()
        .unwrap(),
    );
    let (_, v) = call(api(&s, A, M::GET, "/registries/qta"));
    assert_eq!(
        (v["bytesUsed"].as_u64(), v["usedPercent"].as_f64()),
        (Some(10_010), Some(100.05))
    );
}
