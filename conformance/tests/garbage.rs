//! Bad input never gets a 500: every route × method × a set of malformed
//! parameters, headers and bodies, on `/v2/`, `/token` and `/api/v1/`. Each
//! answer must be < 500 and, when it is an error on /v2/, carry the spec's
//! JSON envelope (on /api/v1/, problem JSON).

use berth_conformance::*;
use reqwest::Method;

#[test]
fn no_request_gets_a_500() {
    let s = Server::start();
    let c = admin_client();
    let img = push_image(&c, &s, "gar/app", "v1", "garbage");
    let r = c.post(s.url("/v2/gar/app/blobs/uploads/")).send().unwrap();
    let session = r.headers()["location"].to_str().unwrap().to_string();

    let d = img.layer.clone();
    let paths = [
        "/v2/".to_string(),
        "/v2/_catalog".into(),
        "/v2/gar/app/tags/list".into(),
        "/v2/gar/app/manifests/v1".into(),
        format!("/v2/gar/app/manifests/{}", img.digest),
        format!("/v2/gar/app/blobs/{d}"),
        "/v2/gar/app/blobs/uploads/".into(),
        session.clone(),
        format!("/v2/gar/app/referrers/{}", img.digest),
        "/v2/gar/app/manifests/sha256:".into(),
        "/v2/gar/app/manifests/%ff%fe".into(),
        "/v2/gar/app/blobs/sha256%3A".into(),
        "/v2/%2e%2e/%2e%2e/blobs/uploads/".into(),
        "/v2/gar/app/blobs/uploads/%2e%2e%2fmeta".into(),
        format!("/v2/{}/manifests/x", "a/".repeat(200) + "a"),
        "/v2/gar/app/tags/list/extra".into(),
        "/v2//".into(),
        "/v2/_catalog/x".into(),
        "/token".into(),
        "/api/v1/".into(),
        "/api/v1/registries".into(),
        "/api/v1/registries/gar".into(),
        "/api/v1/registries/%ff%00".into(),
        "/api/v1/registry-names/..".into(),
        "/api/v1/openapi.json".into(),
    ];
    let queries = [
        "",
        "?n=-5",
        "?n=99999999999999999999999",
        "?last=%00",
        "?n=&last=",
        "?digest=",
        "?digest=sha256:zz",
        "?digest=sha999:abc",
        "?mount=&from=",
        "?mount=sha256:xx&from=%00",
        "?artifactType=%00%ff",
        "?%zz=%zz",
    ];
    let headers: [(&str, &[u8]); 8] = [
        ("range", b"bytes=-0"),
        ("range", b"bytes=999999999999999999999-"),
        ("content-range", b"5-1"),
        (
            "content-range",
            b"bytes=99999999999999999999-999999999999999999999",
        ),
        // obs-text: a legal header byte that is no UTF-8
        (
            "content-type",
            b"application/vnd.oci.image.index.v1+json; charset=\xff\xfe",
        ),
        ("content-length", b"0"),
        ("accept", b"*/*"),
        ("x-nothing", b""),
    ];
    let bodies: [&[u8]; 4] = [
        b"",
        b"{",
        b"\xff\xfe\x00",
        br#"{"schemaVersion":2,"manifests":"x"}"#,
    ];
    let methods = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ];

    let mut n = 0;
    let mut unsent = Vec::new();
    for (pi, p) in paths.iter().enumerate() {
        for (qi, q) in queries.iter().enumerate() {
            for (mi, m) in methods.iter().enumerate() {
                // a deterministic spread over headers and bodies
                let (hk, hv) = headers[(pi + qi + mi) % headers.len()];
                let body = bodies[(pi * 3 + qi + mi) % bodies.len()];
                let value = reqwest::header::HeaderValue::from_bytes(hv).expect("legal header");
                let mut rq = c
                    .request(m.clone(), s.url(&format!("{p}{q}")))
                    .header(hk, value);
                if hk != "content-length" {
                    rq = rq.body(body.to_vec());
                }
                // Every request must be answered: one that fails to send is
                // a failure of the case, not a case to skip.
                let r = match rq.send() {
                    Ok(r) => r,
                    Err(e) => {
                        unsent.push(format!("{m} {p}{q} [{hk}]: {e}"));
                        continue;
                    }
                };
                let st = r.status();
                let text = r.text().unwrap_or_default();
                assert!(
                    st.as_u16() < 500,
                    "{m} {p}{q} [{hk}: {}] → {st}: {text}",
                    String::from_utf8_lossy(hv)
                );
                if st.as_u16() >= 400 && *m != Method::HEAD && p.starts_with("/v2") {
                    let _ = error_code(&text);
                }
                if st.as_u16() >= 400 && *m != Method::HEAD && p.starts_with("/api/v1") {
                    let v: serde_json::Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{m} {p}{q}: not problem JSON ({e}): {text}"));
                    assert!(v["code"].is_string(), "{m} {p}{q}: {text}");
                }
                n += 1;
            }
        }
    }
    assert!(
        unsent.is_empty(),
        "requests not answered:\n{}",
        unsent.join("\n")
    );
    let total = paths.len() * queries.len() * methods.len();
    assert_eq!(n, total, "every request of the grid was answered");
    // and the registry is still well (the DELETEs above may have removed the image)
    assert_eq!(c.get(s.url("/v2/")).send().unwrap().status(), 200);
    assert_eq!(c.get(s.url("/readyz")).send().unwrap().status(), 200);
    push_image(&c, &s, "gar/app", "v1", "garbage again");
    let log = s.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
