//! The OCI distribution-spec walk against the real binary: every endpoint,
//! success and error paths, and the inputs the reference registry answers
//! with a 500.

use berth_conformance::*;
use serde_json::{json, Value};
use std::io::{Read, Write};

fn client() -> Client {
    admin_client()
}

fn hdr(r: &reqwest::blocking::Response, k: &str) -> String {
    r.headers()
        .get(k)
        .unwrap_or_else(|| panic!("missing header {k}"))
        .to_str()
        .unwrap()
        .to_string()
}

/// Assert status and OCI error code of a response.
fn expect_err(r: reqwest::blocking::Response, status: u16, code: &str) {
    let st = r.status().as_u16();
    let body = r.text().unwrap();
    assert_eq!(st, status, "body: {body}");
    assert_eq!(error_code(&body), code, "body: {body}");
}

#[test]
fn base_endpoint() {
    let s = Server::start();
    let c = client();
    let r = c.get(s.url("/v2/")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "docker-distribution-api-version"), "registry/2.0");
    assert_eq!(c.head(s.url("/v2/")).send().unwrap().status(), 200);
    expect_err(
        c.get(s.url("/v2/nope/nope")).send().unwrap(),
        404,
        "NOT_FOUND",
    );
    expect_err(c.delete(s.url("/v2/")).send().unwrap(), 405, "UNSUPPORTED");
    assert_eq!(c.get(s.url("/healthz")).send().unwrap().status(), 200);
    assert_eq!(c.get(s.url("/readyz")).send().unwrap().status(), 200);
}

#[test]
fn blob_pull_and_ranges() {
    let s = Server::start();
    let c = client();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let d = push_blob(&c, &s, "rrr/blobs", &data);

    let r = c
        .get(s.url(&format!("/v2/rrr/blobs/blobs/{d}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "docker-content-digest"), d);
    assert_eq!(hdr(&r, "content-length"), "100000");
    assert_eq!(hdr(&r, "content-type"), "application/octet-stream");
    assert_eq!(r.bytes().unwrap().as_ref(), &data[..]);

    let r = c
        .head(s.url(&format!("/v2/rrr/blobs/blobs/{d}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "content-length"), "100000");
    assert_eq!(hdr(&r, "docker-content-digest"), d);

    let get_range = |range: &str| {
        c.get(s.url(&format!("/v2/rrr/blobs/blobs/{d}")))
            .header("range", range)
            .send()
            .unwrap()
    };
    let r = get_range("bytes=10-19");
    assert_eq!(r.status(), 206);
    assert_eq!(hdr(&r, "content-range"), "bytes 10-19/100000");
    assert_eq!(r.bytes().unwrap().as_ref(), &data[10..20]);
    let r = get_range("bytes=99990-");
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), &data[99990..]);
    let r = get_range("bytes=-5");
    assert_eq!(r.status(), 206);
    assert_eq!(hdr(&r, "content-range"), "bytes 99995-99999/100000");
    assert_eq!(r.bytes().unwrap().as_ref(), &data[99995..]);
    for bad in [
        "bytes=-0",
        "bytes=100000-",
        "bytes=5-2",
        "bytes=abc",
        "pages=1-2",
        "bytes=1-2,4-5",
    ] {
        let r = get_range(bad);
        assert_eq!(r.status(), 416, "{bad}");
        assert_eq!(hdr(&r, "content-range"), "bytes */100000", "{bad}");
    }

    // Unknown blobs, unknown repositories, blobs of other repositories.
    let other = sha256(b"not pushed");
    expect_err(
        c.get(s.url(&format!("/v2/rrr/blobs/blobs/{other}")))
            .send()
            .unwrap(),
        404,
        "BLOB_UNKNOWN",
    );
    expect_err(
        c.get(s.url(&format!("/v2/rrr/elsewhere/blobs/{d}")))
            .send()
            .unwrap(),
        404,
        "BLOB_UNKNOWN",
    );
    let r = c
        .head(s.url(&format!("/v2/rrr/blobs/blobs/{other}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);

    // Delete unlinks from the repository.
    let r = c
        .delete(s.url(&format!("/v2/rrr/blobs/blobs/{d}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    expect_err(
        c.get(s.url(&format!("/v2/rrr/blobs/blobs/{d}")))
            .send()
            .unwrap(),
        404,
        "BLOB_UNKNOWN",
    );
    expect_err(
        c.delete(s.url(&format!("/v2/rrr/blobs/blobs/{d}")))
            .send()
            .unwrap(),
        404,
        "BLOB_UNKNOWN",
    );
}

fn start_session(c: &Client, s: &Server, repo: &str) -> String {
    let r = c
        .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(hdr(&r, "range"), "0-0");
    let loc = hdr(&r, "location");
    let uuid = hdr(&r, "docker-upload-uuid");
    assert!(loc.ends_with(&uuid), "{loc} / {uuid}");
    loc
}

fn patch(
    c: &Client,
    s: &Server,
    loc: &str,
    range: Option<&str>,
    body: &[u8],
) -> reqwest::blocking::Response {
    let mut rq = c
        .patch(s.url(loc))
        .header("content-type", "application/octet-stream")
        .body(body.to_vec());
    if let Some(r) = range {
        rq = rq.header("content-range", r);
    }
    rq.send().unwrap()
}

#[test]
fn chunked_upload_in_order_only() {
    let s = Server::start();
    let c = client();
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 200) as u8).collect();
    let d = sha256(&data);
    let loc = start_session(&c, &s, "upl/chunked");

    let r = patch(&c, &s, &loc, Some("0-999"), &data[..1000]);
    assert_eq!(r.status(), 202);
    assert_eq!(hdr(&r, "range"), "0-999");
    let loc = hdr(&r, "location");
    // out of order (a gap), overlapping, repeated: 416, and nothing changes
    for (range, body) in [
        ("1500-1999", &data[1500..2000]),
        ("500-1499", &data[500..1500]),
        ("0-999", &data[..1000]),
    ] {
        let r = patch(&c, &s, &loc, Some(range), body);
        assert_eq!(r.status(), 416, "{range}");
        assert_eq!(hdr(&r, "range"), "0-999");
    }
    // Content-Length disagreeing with Content-Range
    let r = patch(&c, &s, &loc, Some("1000-1999"), &data[1000..1500]);
    assert_eq!(r.status(), 400);
    let r = c.get(s.url(&loc)).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(hdr(&r, "range"), "0-999");
    assert!(hdr(&r, "location").contains("/blobs/uploads/"));

    // a streamed chunk (no Content-Range) continues where it stands
    let r = patch(&c, &s, &loc, None, &data[1000..2000]);
    assert_eq!(r.status(), 202);
    assert_eq!(hdr(&r, "range"), "0-1999");
    // close with the last chunk in the PUT
    let r = c
        .put(s.url(&format!("{loc}?digest={d}")))
        .header("content-range", "2000-2999")
        .body(data[2000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let r = c
        .get(s.url(&format!("/v2/upl/chunked/blobs/{d}")))
        .send()
        .unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), &data[..]);
    // the session is gone
    expect_err(
        c.get(s.url(&loc)).send().unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    expect_err(patch(&c, &s, &loc, None, b"x"), 404, "BLOB_UPLOAD_UNKNOWN");
}

#[test]
fn upload_errors_leave_nothing() {
    let s = Server::start();
    let c = client();
    // digest mismatch on a monolithic push
    let wrong = sha256(b"other");
    let r = c
        .post(s.url(&format!("/v2/upl/bad/blobs/uploads/?digest={wrong}")))
        .body("content")
        .send()
        .unwrap();
    expect_err(r, 400, "DIGEST_INVALID");
    for d in [&wrong, &sha256(b"content")] {
        expect_err(
            c.get(s.url(&format!("/v2/upl/bad/blobs/{d}")))
                .send()
                .unwrap(),
            404,
            "BLOB_UNKNOWN",
        );
    }
    // digest mismatch on a session close: session gone too
    let loc = start_session(&c, &s, "upl/bad");
    assert_eq!(patch(&c, &s, &loc, None, b"abc").status(), 202);
    expect_err(
        c.put(s.url(&format!("{loc}?digest={wrong}")))
            .send()
            .unwrap(),
        400,
        "DIGEST_INVALID",
    );
    expect_err(
        c.get(s.url(&loc)).send().unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    // PUT without digest, with garbage digests
    let loc = start_session(&c, &s, "upl/bad");
    expect_err(c.put(s.url(&loc)).send().unwrap(), 400, "DIGEST_INVALID");
    expect_err(
        c.put(s.url(&format!("{loc}?digest=sha256:xyz")))
            .send()
            .unwrap(),
        400,
        "DIGEST_INVALID",
    );
    expect_err(
        c.put(s.url(&format!("{loc}?digest=md5:abc")))
            .send()
            .unwrap(),
        400,
        "DIGEST_INVALID",
    );
    // the session is still usable after refused requests
    let r = c
        .put(s.url(&format!("{loc}?digest={}", sha256(b"ok"))))
        .body("ok")
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    // cancel
    let loc = start_session(&c, &s, "upl/bad");
    assert_eq!(c.delete(s.url(&loc)).send().unwrap().status(), 204);
    expect_err(
        c.delete(s.url(&loc)).send().unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    // unknown and malformed session ids, sessions of another repository
    expect_err(
        c.get(s.url("/v2/upl/bad/blobs/uploads/not-a-uuid"))
            .send()
            .unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    expect_err(
        c.get(s.url("/v2/upl/bad/blobs/uploads/..%2F..%2Fetc"))
            .send()
            .unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    let loc = start_session(&c, &s, "upl/bad");
    let other = loc.replace("/upl/bad/", "/upl/other/");
    expect_err(
        c.get(s.url(&other)).send().unwrap(),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    // No staged bytes left behind; the one open session has sent nothing, so
    // it has no staging file yet (the first PATCH makes it).
    assert_eq!(s.staged_sessions(), 0);
}

#[test]
fn sha512_and_empty_blobs() {
    let s = Server::start();
    let c = client();
    use sha2::Digest as _;
    let data = b"sha512 blob";
    let d = format!("sha512:{}", hex::encode(sha2::Sha512::digest(data)));
    let r = c
        .post(s.url(&format!("/v2/alg/x/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(hdr(&r, "docker-content-digest"), d);
    let r = c
        .get(s.url(&format!("/v2/alg/x/blobs/{d}")))
        .send()
        .unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), data);
    // empty blob, through a session closed by an empty PUT
    let e = sha256(b"");
    let loc = start_session(&c, &s, "alg/x");
    assert_eq!(
        c.put(s.url(&format!("{loc}?digest={e}")))
            .send()
            .unwrap()
            .status(),
        201
    );
    let r = c
        .get(s.url(&format!("/v2/alg/x/blobs/{e}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "content-length"), "0");
    assert_eq!(
        c.get(s.url(&format!("/v2/alg/x/blobs/{e}")))
            .header("range", "bytes=0-0")
            .send()
            .unwrap()
            .status(),
        416
    );
}

#[test]
fn cross_repository_mount() {
    let s = Server::start();
    let c = client();
    let d = push_blob(&c, &s, "src/repo", b"mount me");
    let r = c
        .post(s.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={d}&from=src/repo"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(hdr(&r, "location"), format!("/v2/dst/repo/blobs/{d}"));
    assert_eq!(hdr(&r, "docker-content-digest"), d);
    assert_eq!(
        c.get(s.url(&format!("/v2/dst/repo/blobs/{d}")))
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .as_ref(),
        b"mount me"
    );
    // automatic content discovery: no `from`
    let r = c
        .post(s.url(&format!("/v2/third/x/blobs/uploads/?mount={d}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    // not in the source: a session instead
    let unknown = sha256(b"unknown");
    let r = c
        .post(s.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={unknown}&from=src/repo"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(hdr(&r, "location").contains("/v2/dst/repo/blobs/uploads/"));
    let r = c
        .post(s.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={d}&from=nos/such"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = c
        .post(s.url(&format!(
            "/v2/dst/repo/blobs/uploads/?mount={d}&from=BAD NAME"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    expect_err(
        c.post(s.url("/v2/dst/repo/blobs/uploads/?mount=sha256:nothex&from=src/repo"))
            .send()
            .unwrap(),
        400,
        "DIGEST_INVALID",
    );
}

fn image_manifest(config: (&str, usize), layers: &[(&str, usize)], extra: Value) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, n)| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n})).collect::<Vec<_>>(),
    });
    if let Value::Object(e) = extra {
        for (k, v) in e {
            m[k] = v;
        }
    }
    serde_json::to_vec(&m).unwrap()
}

#[test]
fn manifests_by_tag_and_digest() {
    let s = Server::start();
    let c = client();
    let img = push_image(&c, &s, "man/app", "v1", "one");
    let path = |r: &str| s.url(&format!("/v2/man/app/manifests/{r}"));

    for r in ["v1", &img.digest] {
        let resp = c
            .get(path(r))
            .header("accept", OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(hdr(&resp, "content-type"), OCI_MANIFEST);
        assert_eq!(hdr(&resp, "docker-content-digest"), img.digest);
        assert_eq!(resp.bytes().unwrap().as_ref(), &img.manifest[..]);
        let resp = c.head(path(r)).send().unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(hdr(&resp, "content-length"), img.manifest.len().to_string());
    }
    // a manifest is content: the blob endpoint serves it too
    let resp = c
        .get(s.url(&format!("/v2/man/app/blobs/{}", img.digest)))
        .send()
        .unwrap();
    assert_eq!(resp.bytes().unwrap().as_ref(), &img.manifest[..]);

    // push by digest: must match the body
    let d = push_manifest(&c, &s, "man/app", &img.digest, OCI_MANIFEST, &img.manifest);
    assert_eq!(d, img.digest);
    let other = sha256(b"x");
    let r = c
        .put(path(&other))
        .header("content-type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .unwrap();
    expect_err(r, 400, "DIGEST_INVALID");

    // a second tag, then delete by tag removes only that tag
    push_manifest(&c, &s, "man/app", "v2", OCI_MANIFEST, &img.manifest);
    assert_eq!(c.delete(path("v2")).send().unwrap().status(), 202);
    expect_err(c.get(path("v2")).send().unwrap(), 404, "MANIFEST_UNKNOWN");
    assert_eq!(c.get(path("v1")).send().unwrap().status(), 200);
    assert_eq!(c.get(path(&img.digest)).send().unwrap().status(), 200);
    // delete by digest removes the manifest and every tag on it
    push_manifest(&c, &s, "man/app", "v3", OCI_MANIFEST, &img.manifest);
    assert_eq!(c.delete(path(&img.digest)).send().unwrap().status(), 202);
    for r in ["v1", "v3", &img.digest] {
        expect_err(c.get(path(r)).send().unwrap(), 404, "MANIFEST_UNKNOWN");
    }
    expect_err(
        c.delete(path(&img.digest)).send().unwrap(),
        404,
        "MANIFEST_UNKNOWN",
    );
    expect_err(
        c.delete(path("v1")).send().unwrap(),
        404,
        "MANIFEST_UNKNOWN",
    );
    let tags: Value = c
        .get(s.url("/v2/man/app/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], json!([]));
    // the blobs stay
    assert_eq!(
        c.get(s.url(&format!("/v2/man/app/blobs/{}", img.layer)))
            .send()
            .unwrap()
            .status(),
        200
    );
}

/// Tags as parameters of a push by digest (distribution-spec main): every
/// tag answers with the digest the manifest was pushed under, sha512 too.
#[test]
fn tags_as_parameters_keep_the_pushed_digest() {
    let s = Server::start();
    let c = client();
    let img = push_image(&c, &s, "par/app", "base", "params");
    use sha2::Digest as _;
    let d512 = format!(
        "sha512:{}",
        hex::encode(sha2::Sha512::digest(&img.manifest))
    );
    let path = |r: &str| s.url(&format!("/v2/par/app/manifests/{r}"));
    let r = c
        .put(path(&format!("{d512}?tag=t1&tag=t2")))
        .header("content-type", OCI_MANIFEST)
        .body(img.manifest.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(hdr(&r, "docker-content-digest"), d512);
    let applied: Vec<String> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(applied, ["t1", "t2"]);
    for t in ["t1", "t2"] {
        let g = c
            .get(path(t))
            .header("accept", OCI_MANIFEST)
            .send()
            .unwrap();
        assert_eq!(g.status(), 200);
        assert_eq!(hdr(&g, "docker-content-digest"), d512);
        assert_eq!(g.bytes().unwrap().as_ref(), &img.manifest[..]);
        let h = c.head(path(t)).send().unwrap();
        assert_eq!(hdr(&h, "docker-content-digest"), d512);
    }
    // the sha256 tag is untouched
    let g = c.head(path("base")).send().unwrap();
    assert_eq!(hdr(&g, "docker-content-digest"), img.digest);
    // a bad tag parameter refuses the whole push
    let mut other: Value = serde_json::from_slice(&img.manifest).unwrap();
    other["annotations"] = json!({"x": "y"});
    let other = serde_json::to_vec(&other).unwrap();
    let od = sha256(&other);
    let r = c
        .put(path(&format!("{od}?tag=ok&tag=-bad")))
        .header("content-type", OCI_MANIFEST)
        .body(other)
        .send()
        .unwrap();
    expect_err(r, 400, "TAG_INVALID");
    expect_err(c.get(path(&od)).send().unwrap(), 404, "MANIFEST_UNKNOWN");
    expect_err(c.get(path("ok")).send().unwrap(), 404, "MANIFEST_UNKNOWN");
    // a reference that is no valid tag names no manifest: 404 to read it
    let bad = path(".INVALID_MANIFEST_NAME");
    expect_err(c.get(bad.clone()).send().unwrap(), 404, "MANIFEST_UNKNOWN");
    assert_eq!(c.head(bad.clone()).send().unwrap().status(), 404);
    expect_err(c.delete(bad).send().unwrap(), 404, "MANIFEST_UNKNOWN");
}

#[test]
fn manifest_validation() {
    let s = Server::start();
    let c = client();
    let cfg = push_blob(&c, &s, "val/app", b"{}");
    let layer = push_blob(&c, &s, "val/app", b"layer");
    let put = |reference: &str, ct: &str, body: Vec<u8>| {
        c.put(s.url(&format!("/v2/val/app/manifests/{reference}")))
            .header("content-type", ct)
            .body(body)
            .send()
            .unwrap()
    };
    let missing = sha256(b"missing");
    // referenced blobs must exist in the repository
    expect_err(
        put(
            "t",
            OCI_MANIFEST,
            image_manifest((&cfg, 2), &[(&missing, 7)], json!({})),
        ),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    expect_err(
        put(
            "t",
            OCI_MANIFEST,
            image_manifest((&missing, 2), &[(&layer, 5)], json!({})),
        ),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    let elsewhere = push_blob(&c, &s, "other/repo", b"elsewhere");
    expect_err(
        put(
            "t",
            OCI_MANIFEST,
            image_manifest((&cfg, 2), &[(&elsewhere, 9)], json!({})),
        ),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
    // inputs the reference registry answers with a 500 or accepts
    expect_err(
        put(
            "t",
            OCI_MANIFEST,
            br#"{"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#.to_vec(),
        ),
        400,
        "MANIFEST_INVALID",
    );
    expect_err(
        put("t", OCI_MANIFEST, b"{not json".to_vec()),
        400,
        "MANIFEST_INVALID",
    );
    expect_err(
        put("t", OCI_MANIFEST, b"[]".to_vec()),
        400,
        "MANIFEST_INVALID",
    );
    expect_err(
        put(
            "t",
            OCI_MANIFEST,
            image_manifest((&cfg, 2), &[(&layer, usize::MAX)], json!({})).replace_size(),
        ),
        400,
        "MANIFEST_INVALID",
    );
    expect_err(
        put(
            "t",
            OCI_MANIFEST,
            image_manifest((&cfg, 2), &[(&layer, 5)], json!({"subject": "garbage"})),
        ),
        400,
        "MANIFEST_INVALID",
    );
    expect_err(
        put(
            "t",
            OCI_MANIFEST,
            image_manifest(
                (&cfg, 2),
                &[(&layer, 5)],
                json!({"subject": {"mediaType": OCI_MANIFEST, "digest": "sha256:nope", "size": 1}}),
            ),
        ),
        400,
        "MANIFEST_INVALID",
    );
    expect_err(
        put(
            "t",
            OCI_INDEX,
            image_manifest((&cfg, 2), &[(&layer, 5)], json!({})),
        ),
        400,
        "MANIFEST_INVALID",
    );
    expect_err(
        put(
            "t",
            OCI_MANIFEST,
            image_manifest((&cfg, 3), &[(&layer, 5)], json!({})),
        ),
        400,
        "MANIFEST_INVALID",
    );
    expect_err(
        put(
            "t",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            br#"{"schemaVersion":1}"#.to_vec(),
        ),
        400,
        "MANIFEST_INVALID",
    );
    // a digest used as a tag is a digest, and a bad one is refused cleanly
    expect_err(
        put(
            "sha256:abc",
            OCI_MANIFEST,
            image_manifest((&cfg, 2), &[(&layer, 5)], json!({})),
        ),
        400,
        "DIGEST_INVALID",
    );
    expect_err(
        put(
            "-tag",
            OCI_MANIFEST,
            image_manifest((&cfg, 2), &[(&layer, 5)], json!({})),
        ),
        400,
        "TAG_INVALID",
    );
    expect_err(
        put(
            &"t".repeat(129),
            OCI_MANIFEST,
            image_manifest((&cfg, 2), &[(&layer, 5)], json!({})),
        ),
        400,
        "TAG_INVALID",
    );
    // too large: 413, before the body is read (announced length) ...
    let resp = raw(
        &s,
        format!(
            "PUT /v2/val/app/manifests/big HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            4 * 1024 * 1024 + 1
        )
        .as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    // ... and while reading it (chunked, no length announced)
    let mut req = format!(
        "PUT /v2/val/app/manifests/big HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..5 {
        req.extend_from_slice(b"100000\r\n");
        req.extend_from_slice(&vec![b' '; 0x100000]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let resp = raw(&s, &req);
    assert!(
        resp.starts_with("HTTP/1.1 413"),
        "{}",
        &resp[..resp.len().min(200)]
    );
    // nothing of all that is visible
    let tags: Value = c
        .get(s.url("/v2/val/app/tags/list"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(tags["tags"], json!([]));
    // and a valid one goes through
    assert_eq!(
        put(
            "ok",
            OCI_MANIFEST,
            image_manifest((&cfg, 2), &[(&layer, 5)], json!({}))
        )
        .status(),
        201
    );
}

trait ReplaceSize {
    fn replace_size(self) -> Vec<u8>;
}
impl ReplaceSize for Vec<u8> {
    /// Turn the huge layer size into a negative one.
    fn replace_size(self) -> Vec<u8> {
        String::from_utf8(self)
            .unwrap()
            .replace(&usize::MAX.to_string(), "-1")
            .into_bytes()
    }
}

/// Sparse manifests (an index copied without all its platforms, an image
/// without its layers): refused by default; stored and served in a
/// registry that allows them.
#[test]
fn sparse_manifests_only_where_allowed() {
    let mut s = Server::start();
    let c = client();
    let img = push_image(&c, &s, "full/app", "v1", "sparse base");
    push_image(&c, &s, "mirror/app", "v1", "sparse base");
    let ghost = sha256(b"a platform never copied");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": img.digest, "size": img.manifest.len()},
            {"mediaType": OCI_MANIFEST, "digest": ghost, "size": 321,
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let m: Value = serde_json::from_slice(&img.manifest).unwrap();
    let cfg_size = m["config"]["size"].as_u64().unwrap() as usize;
    let layerless = image_manifest(
        (&img.config, cfg_size),
        &[(&sha256(b"never pushed"), 7)],
        json!({}),
    );
    let base = s.base(); // the same after the restart below
    let put = |repo: &str, tag: &str, ct: &str, body: &[u8]| {
        c.put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", ct)
            .body(body.to_vec())
            .send()
            .unwrap()
    };
    expect_err(
        put("full/app", "multi", OCI_INDEX, &index),
        404,
        "MANIFEST_UNKNOWN",
    );
    expect_err(
        put("mirror/app", "multi", OCI_INDEX, &index),
        404,
        "MANIFEST_UNKNOWN",
    );

    s.stop();
    let out = cli(
        &s,
        &["registry", "update", "mirror", "--allow-sparse", "true"],
    );
    assert!(out.contains("sparse manifests allowed"), "{out}");
    s.start_again();

    let r = put("mirror/app", "multi", OCI_INDEX, &index);
    assert_eq!(r.status(), 201);
    let g = c
        .get(s.url("/v2/mirror/app/manifests/multi"))
        .send()
        .unwrap();
    assert_eq!(g.status(), 200);
    assert_eq!(g.bytes().unwrap().as_ref(), &index[..]);
    // the missing child is still missing: nothing is made up
    expect_err(
        c.get(s.url(&format!("/v2/mirror/app/manifests/{ghost}")))
            .send()
            .unwrap(),
        404,
        "MANIFEST_UNKNOWN",
    );
    assert_eq!(
        put("mirror/app", "nolayers", OCI_MANIFEST, &layerless).status(),
        201
    );
    // other registries still refuse
    expect_err(
        put("full/app", "multi", OCI_INDEX, &index),
        404,
        "MANIFEST_UNKNOWN",
    );
    expect_err(
        put("full/app", "nolayers", OCI_MANIFEST, &layerless),
        400,
        "MANIFEST_BLOB_UNKNOWN",
    );
}

#[test]
fn index_docker_types_and_helm_artifacts() {
    let s = Server::start();
    let c = client();
    let repo = "kinds/app";
    let a = push_image(&c, &s, repo, "amd64", "amd64");
    let b = push_image(&c, &s, repo, "arm64", "arm64");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": a.digest, "size": a.manifest.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": b.digest, "size": b.manifest.len(), "platform": {"os": "linux", "architecture": "arm64"}},
        ]
    }))
    .unwrap();
    push_manifest(&c, &s, repo, "multi", OCI_INDEX, &index);
    let r = c
        .get(s.url(&format!("/v2/{repo}/manifests/multi")))
        .send()
        .unwrap();
    assert_eq!(hdr(&r, "content-type"), OCI_INDEX);
    // an index with a child the repository lacks
    let bad = String::from_utf8(index.clone())
        .unwrap()
        .replace(&a.digest, &sha256(b"nope"));
    let r = c
        .put(s.url(&format!("/v2/{repo}/manifests/broken")))
        .header("content-type", OCI_INDEX)
        .body(bad)
        .send()
        .unwrap();
    expect_err(r, 404, "MANIFEST_UNKNOWN");

    // Docker schema2 and manifest list: served back with their own type
    let d2 = "application/vnd.docker.distribution.manifest.v2+json";
    let dl = "application/vnd.docker.distribution.manifest.list.v2+json";
    let cfg = push_blob(&c, &s, repo, b"{\"architecture\":\"amd64\"}");
    let docker = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": d2,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg, "size": 24},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": a.layer, "size": "layer bytes of amd64".len() * 50}],
    }))
    .unwrap();
    let dd = push_manifest(&c, &s, repo, "docker", d2, &docker);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": dl,
        "manifests": [{"mediaType": d2, "digest": dd, "size": docker.len(), "platform": {"os": "linux", "architecture": "amd64"}}],
    }))
    .unwrap();
    push_manifest(&c, &s, repo, "dlist", dl, &list);
    for (t, ct) in [("docker", d2), ("dlist", dl)] {
        let r = c
            .get(s.url(&format!("/v2/{repo}/manifests/{t}")))
            .send()
            .unwrap();
        assert_eq!(hdr(&r, "content-type"), ct);
    }

    // helm: no top-level mediaType
    let chart_cfg = push_blob(&c, &s, repo, b"{\"name\":\"chart\"}");
    let chart = push_blob(&c, &s, repo, b"chart tarball");
    let helm = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": chart_cfg, "size": 16},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": chart, "size": 13}],
    }))
    .unwrap();
    push_manifest(&c, &s, repo, "chart-0.1.0", OCI_MANIFEST, &helm);
    // an OCI 1.1 artifact with the empty config
    let empty = push_blob(&c, &s, repo, b"{}");
    let art = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.thing",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
    }))
    .unwrap();
    push_manifest(&c, &s, repo, "artifact", OCI_MANIFEST, &art);
}

#[test]
fn referrers() {
    let s = Server::start();
    let c = client();
    let repo = "ref/app";
    let img = push_image(&c, &s, repo, "v1", "subject");
    let empty = push_blob(&c, &s, repo, b"{}");
    let mk = |at: &str, note: &str| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": img.digest, "size": img.manifest.len()},
            "annotations": {"note": note},
        }))
        .unwrap()
    };
    let sig = mk("application/vnd.example.sig", "sig");
    let sbom = mk("application/vnd.example.sbom", "sbom");
    for body in [&sig, &sbom] {
        let d = sha256(body);
        let r = c
            .put(s.url(&format!("/v2/{repo}/manifests/{d}")))
            .header("content-type", OCI_MANIFEST)
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(hdr(&r, "oci-subject"), img.digest);
    }
    let r = c
        .get(s.url(&format!("/v2/{repo}/referrers/{}", img.digest)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(hdr(&r, "content-type"), OCI_INDEX);
    let idx: Value = r.json().unwrap();
    assert_eq!(idx["mediaType"], OCI_INDEX);
    let ms = idx["manifests"].as_array().unwrap();
    assert_eq!(ms.len(), 2);
    let sig_entry = ms.iter().find(|m| m["digest"] == sha256(&sig)).unwrap();
    assert_eq!(sig_entry["artifactType"], "application/vnd.example.sig");
    assert_eq!(sig_entry["size"], sig.len());
    assert_eq!(sig_entry["annotations"]["note"], "sig");

    let r = c
        .get(s.url(&format!(
            "/v2/{repo}/referrers/{}?artifactType=application/vnd.example.sbom",
            img.digest
        )))
        .send()
        .unwrap();
    assert_eq!(hdr(&r, "oci-filters-applied"), "artifactType");
    let idx: Value = r.json().unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(idx["manifests"][0]["digest"], sha256(&sbom));

    // unknown subject, unknown repository: an empty index
    for path in [
        format!("/v2/{repo}/referrers/{}", sha256(b"x")),
        format!("/v2/ref/other/referrers/{}", img.digest),
    ] {
        let idx: Value = c.get(s.url(&path)).send().unwrap().json().unwrap();
        assert_eq!(idx["manifests"], json!([]));
    }
    expect_err(
        c.get(s.url(&format!("/v2/{repo}/referrers/sha256:zz")))
            .send()
            .unwrap(),
        400,
        "DIGEST_INVALID",
    );
    // deleting a referrer removes it from the list
    assert_eq!(
        c.delete(s.url(&format!("/v2/{repo}/manifests/{}", sha256(&sig))))
            .send()
            .unwrap()
            .status(),
        202
    );
    let idx: Value = c
        .get(s.url(&format!("/v2/{repo}/referrers/{}", img.digest)))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 1);
    // and the subject's GET carries no OCI-Subject, the referrer's does
    let r = c
        .get(s.url(&format!("/v2/{repo}/manifests/{}", sha256(&sbom))))
        .send()
        .unwrap();
    assert_eq!(hdr(&r, "oci-subject"), img.digest);
}

#[test]
fn tags_and_catalog_pagination() {
    let s = Server::start();
    let c = client();
    let img = push_image(&c, &s, "pag/app", "t00", "p");
    let mut expected = vec!["t00".to_string()];
    for i in 1..25 {
        let t = format!("t{i:02}");
        push_manifest(&c, &s, "pag/app", &t, OCI_MANIFEST, &img.manifest);
        expected.push(t);
    }
    // walk with n=7 following Link
    let mut got = Vec::new();
    let mut next = Some("/v2/pag/app/tags/list?n=7".to_string());
    let mut pages = 0;
    while let Some(p) = next {
        let r = c.get(s.url(&p)).send().unwrap();
        assert_eq!(r.status(), 200);
        next = r.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.ends_with("rel=\"next\""), "{l}");
            l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_string()
        });
        let v: Value = r.json().unwrap();
        assert_eq!(v["name"], "pag/app");
        got.extend(
            v["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string()),
        );
        pages += 1;
    }
    assert_eq!(got, expected);
    assert_eq!(pages, 4);
    let v: Value = c
        .get(s.url("/v2/pag/app/tags/list?n=3&last=t10"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["tags"], json!(["t11", "t12", "t13"]));
    let v: Value = c
        .get(s.url("/v2/pag/app/tags/list?last=t23"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["tags"], json!(["t24"]));
    let r = c.get(s.url("/v2/pag/app/tags/list?n=0")).send().unwrap();
    assert!(r.headers().get("link").is_none());
    assert_eq!(r.json::<Value>().unwrap()["tags"], json!([]));
    for bad in ["n=-1", "n=abc", "n=1e3"] {
        expect_err(
            c.get(s.url(&format!("/v2/pag/app/tags/list?{bad}")))
                .send()
                .unwrap(),
            400,
            "PAGINATION_NUMBER_INVALID",
        );
    }
    expect_err(
        c.get(s.url("/v2/nos/such/tags/list")).send().unwrap(),
        404,
        "NAME_UNKNOWN",
    );

    for r in ["bbb/x", "aaa/z", "aaa/x", "ccc/d/e"] {
        push_blob(&c, &s, r, b"x");
    }
    let v: Value = c.get(s.url("/v2/_catalog")).send().unwrap().json().unwrap();
    assert_eq!(
        v["repositories"],
        json!(["aaa/x", "aaa/z", "bbb/x", "ccc/d/e", "pag/app"])
    );
    let r = c.get(s.url("/v2/_catalog?n=2")).send().unwrap();
    assert_eq!(
        hdr(&r, "link"),
        "</v2/_catalog?n=2&last=aaa%2Fz>; rel=\"next\""
    );
    let v: Value = c
        .get(s.url("/v2/_catalog?n=2&last=aaa%2Fz"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["repositories"], json!(["bbb/x", "ccc/d/e"]));
}

#[test]
fn bad_names_and_paths() {
    let s = Server::start();
    let c = client();
    let long = "a".repeat(256);
    let d = sha256(b"x");
    for path in [
        format!("/v2/{long}/tags/list"),
        format!("/v2/{long}/manifests/latest"),
        format!("/v2/{long}/blobs/{d}"),
        "/v2/UPPER/tags/list".to_string(),
        "/v2/a..b/manifests/x".to_string(),
        "/v2/a%00b/manifests/x".to_string(),
        "/v2/-a/blobs/uploads/".to_string(),
        "/v2/single/tags/list".to_string(),
    ] {
        let r = if path.ends_with("uploads/") {
            c.post(s.url(&path)).send().unwrap()
        } else {
            c.get(s.url(&path)).send().unwrap()
        };
        expect_err(r, 400, "NAME_INVALID");
    }
    expect_err(
        c.get(s.url("/v2/a/blobs/sha256:short")).send().unwrap(),
        400,
        "DIGEST_INVALID",
    );
    expect_err(
        c.get(s.url("/v2/a/blobs/nocolon")).send().unwrap(),
        400,
        "DIGEST_INVALID",
    );
    expect_err(
        c.get(s.url(&format!(
            "/v2/a/manifests/{}",
            "sha256:".to_string() + &"A".repeat(64)
        )))
        .send()
        .unwrap(),
        400,
        "DIGEST_INVALID",
    );
    expect_err(
        c.post(s.url(&format!("/v2/a/blobs/{d}"))).send().unwrap(),
        405,
        "UNSUPPORTED",
    );
    // a name just at the limit is fine (its registry does not exist)
    let ok = format!("aaa/{}", "a".repeat(251));
    expect_err(
        c.get(s.url(&format!("/v2/{ok}/tags/list"))).send().unwrap(),
        404,
        "NAME_UNKNOWN",
    );
}

/// Raw HTTP, for bodies no well-behaved client sends.
fn raw(s: &Server, req: &[u8]) -> String {
    // authenticate as the admin: insert the header after the request line
    let text = String::from_utf8_lossy(req);
    let cut = text.find("\r\n").unwrap() + 2;
    let mut with_auth = req[..cut].to_vec();
    with_auth.extend_from_slice(format!("Authorization: {}\r\n", admin_basic()).as_bytes());
    with_auth.extend_from_slice(&req[cut..]);
    let req = &with_auth[..];
    let mut t = std::net::TcpStream::connect(s.direct()).unwrap();
    t.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    // The server may answer (413) and close before it has read everything.
    let _ = t.write_all(req);
    let mut out = Vec::new();
    let _ = t.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn malformed_chunked_bodies() {
    let s = Server::start();
    let c = client();
    let loc = start_session(&c, &s, "raw/app");
    let req = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n5\r\nhello\r\nzz\r\nbroken\r\n0\r\n\r\n"
    );
    let resp = raw(&s, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("BLOB_UPLOAD_INVALID"), "{resp}");
    // the session is where it was: nothing of the broken body kept
    let r = c.get(s.url(&loc)).send().unwrap();
    assert_eq!(hdr(&r, "range"), "0-0");
    let req = "PUT /v2/raw/app/manifests/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    let resp = raw(&s, req.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    // a body shorter than its Content-Length (client went away)
    let req = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nConnection: close\r\n\r\nshort"
    );
    let mut t = std::net::TcpStream::connect(s.direct()).unwrap();
    t.write_all(req.as_bytes()).unwrap();
    t.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    let _ = t.read_to_string(&mut out);
    let r = c.get(s.url(&loc)).send().unwrap();
    assert_eq!(hdr(&r, "range"), "0-0", "a cut-off body must leave nothing");
    // nothing in the log is a panic or a 500
    let log = s.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains("status=500"), "{log}");
}
