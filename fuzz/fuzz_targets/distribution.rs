//! The `/v2/` API in process (in-memory metadata and blobs, an open
//! registry): any route with fuzzed names, references, digests, session
//! ids, query strings (`n`, `last`, `digest`, `mount`, `from`,
//! `artifactType`), `Content-Type`, `Range`, `Content-Range` and bodies.
//! Nothing panics, no answer is a 5xx, every error is the OCI envelope,
//! and what a GET serves under a digest hashes to that digest.
#![no_main]
use berth_distribution::{Config, Distribution, Gauges};
use berth_meta::{MemStore, Meta};
use http_body_util::BodyExt;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
struct Req<'a> {
    route: u8,
    name: u8,
    reference: u8,
    free: &'a str,
    query: &'a str,
    content_type: u8,
    range: Option<&'a str>,
    content_range: Option<&'a str>,
    body: &'a [u8],
}

struct World {
    rt: tokio::runtime::Runtime,
    api: Distribution,
    /// A digest stored in `acme/app`, a manifest's, and an open session.
    blob: String,
    manifest: String,
    session: String,
}

const CONTENT_TYPES: [&str; 6] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/octet-stream",
    "application/json",
    "",
];

fn sha256(b: &[u8]) -> String {
    berth_core::Digest::sha256_of(b).to_string()
}

fn call(
    w: &World,
    m: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(http::StatusCode, http::HeaderMap, Vec<u8>)> {
    let mut b = http::Request::builder()
        .method(m)
        .uri(uri)
        .header("host", "fuzz:5000");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    // a header no client could send (no HTTP request carries it)
    let req = b.body(berth_http::full(body.to_vec())).ok()?;
    Some(w.rt.block_on(async {
        let (_, r) = berth_http::dispatch(&w.api, req).await;
        let (parts, body) = r.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        (parts.status, parts.headers, bytes)
    }))
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = berth_fuzz::runtime();
        let blobs = berth_fuzz::memory_blobs();
        let api = Distribution::new(
            Meta::new(MemStore::new()),
            blobs,
            None,
            Config::default(),
            Gauges::default(),
        );
        let mut w = World {
            rt,
            api,
            blob: String::new(),
            manifest: String::new(),
            session: String::new(),
        };
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let layer = b"a layer";
        for b in [&config[..], &layer[..]] {
            let (st, _, body) = call(&w, "POST", &format!("/v2/acme/app/blobs/uploads/?digest={}", sha256(b)), &[], b).unwrap();
            assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
        }
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            CONTENT_TYPES[0],
            sha256(config),
            config.len(),
            sha256(layer),
            layer.len()
        );
        let (st, _, body) = call(&w, "PUT", "/v2/acme/app/manifests/v1", &[("content-type", CONTENT_TYPES[0])], manifest.as_bytes()).unwrap();
        assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
        let (st, h, _) = call(&w, "POST", "/v2/acme/app/blobs/uploads/", &[], b"").unwrap();
        assert_eq!(st, 202);
        let loc = h["location"].to_str().unwrap().to_string();
        w.session = loc.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
        w.blob = sha256(layer);
        w.manifest = sha256(manifest.as_bytes());
        w
    })
}

fuzz_target!(|r: Req| {
    let w = world();
    let free: String = r
        .free
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '?' | '#' | ' '))
        .collect();
    let name = ["acme/app", "acme/other", "nope/x", free.as_str()][usize::from(r.name) % 4];
    let reference =
        ["v1", w.manifest.as_str(), w.blob.as_str(), free.as_str()][usize::from(r.reference) % 4];
    let digest =
        [w.blob.as_str(), w.manifest.as_str(), free.as_str()][usize::from(r.reference) % 3];
    let session = [w.session.as_str(), free.as_str()][usize::from(r.reference) % 2];
    let (method, path) = match r.route % 16 {
        0 => ("GET", "/v2/".to_string()),
        1 => ("GET", "/v2/_catalog".to_string()),
        2 => ("GET", format!("/v2/{name}/tags/list")),
        3 => ("GET", format!("/v2/{name}/manifests/{reference}")),
        4 => ("HEAD", format!("/v2/{name}/manifests/{reference}")),
        5 => ("PUT", format!("/v2/{name}/manifests/{reference}")),
        6 => ("DELETE", format!("/v2/{name}/manifests/{reference}")),
        7 => ("GET", format!("/v2/{name}/blobs/{digest}")),
        8 => ("HEAD", format!("/v2/{name}/blobs/{digest}")),
        9 => ("DELETE", format!("/v2/{name}/blobs/{digest}")),
        10 => ("POST", format!("/v2/{name}/blobs/uploads/")),
        11 => ("GET", format!("/v2/{name}/blobs/uploads/{session}")),
        12 => ("PATCH", format!("/v2/{name}/blobs/uploads/{session}")),
        13 => ("PUT", format!("/v2/{name}/blobs/uploads/{session}")),
        14 => ("DELETE", format!("/v2/{name}/blobs/uploads/{session}")),
        _ => ("GET", format!("/v2/{name}/referrers/{digest}")),
    };
    let q: String = r
        .query
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '#')
        .collect();
    let uri = if q.is_empty() {
        path
    } else {
        format!("{path}?{q}")
    };
    if http::Uri::try_from(uri.as_str()).is_err() {
        return;
    }
    let ct = CONTENT_TYPES[usize::from(r.content_type) % CONTENT_TYPES.len()];
    let mut headers = Vec::new();
    if !ct.is_empty() {
        headers.push(("content-type", ct));
    }
    if let Some(v) = r.range {
        headers.push(("range", v));
    }
    if let Some(v) = r.content_range {
        headers.push(("content-range", v));
    }
    let Some((st, h, body)) = call(w, method, &uri, &headers, r.body) else {
        return;
    };
    assert!(
        !st.is_server_error(),
        "{method} {uri}: {st} {}",
        String::from_utf8_lossy(&body)
    );
    if st.is_client_error() && method != "HEAD" {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("{method} {uri}: {st}: not JSON ({e})"));
        assert!(v["errors"][0]["code"].is_string(), "{method} {uri}: {v}");
    }
    // a full GET by digest serves that digest's bytes
    if method == "GET" && st == 200 {
        if let Some(d) = h.get("docker-content-digest").and_then(|v| v.to_str().ok()) {
            if d.starts_with("sha256:") && path_is_by_digest(&uri, d) {
                assert_eq!(sha256(&body), d, "{uri}");
            }
        }
    }
});

fn path_is_by_digest(uri: &str, d: &str) -> bool {
    uri.split('?').next().unwrap_or("").ends_with(d)
}
