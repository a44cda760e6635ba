//! Bad input never gets a 500: every route × method × a set of malformed
//! parameters, headers and bodies. Each answer must be < 500 and, when it is
//! an error on /v2/, carry the spec's JSON envelope.

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
    let headers: [(&str, &str); 8] = [
        ("range", "bytes=-0"),
        ("range", "bytes=999999999999999999999-"),
        ("content-range", "5-1"),
        (
            "content-range",
            "bytes=99999999999999999999-999999999999999999999",
        ),
        (
            "content-type",
            "application/vnd.oci.image.index.v1+json; charset=\u{7f}",
        ),
        ("content-length", "0"),
        ("accept", "*/*"),
        ("x-nothing", ""),
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
    for (pi, p) in paths.iter().enumerate() {
        for (qi, q) in queries.iter().enumerate() {
            for (mi, m) in methods.iter().enumerate() {
                // a deterministic spread over headers and bodies
                let (hk, hv) = headers[(pi + qi + mi) % headers.len()];
                let body = bodies[(pi * 3 + qi + mi) % bodies.len()];
                let mut rq = c
                    .request(m.clone(), s.url(&format!("{p}{q}")))
                    .header(hk, hv);
                if hk != "content-length" {
                    rq = rq.body(body.to_vec());
                }
                let Ok(r) = rq.send() else { continue };
                let st = r.status();
                let text = r.text().unwrap_or_default();
                assert!(st.as_u16() < 500, "{m} {p}{q} [{hk}: {hv}] → {st}: {text}");
                if st.as_u16() >= 400 && *m != Method::HEAD && p.starts_with("/v2") {
                    let _ = error_code(&text);
                }
                n += 1;
            }
        }
    }
    assert!(n > 1000, "only {n} requests went through");
    // and the registry is still well (the DELETEs above may have removed the image)
    assert_eq!(c.get(s.url("/v2/")).send().unwrap().status(), 200);
    assert_eq!(c.get(s.url("/readyz")).send().unwrap().status(), 200);
    push_image(&c, &s, "gar/app", "v1", "garbage again");
    let log = s.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
