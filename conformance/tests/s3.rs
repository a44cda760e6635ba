//! Blobs in a real S3 server (Garage, started by the suite): the blob store
//! contract against it, and Berth over it — presigned redirects (HEAD never
//! redirects), ranged pulls through Berth with redirects off, a chunked
//! upload that goes on across a restart, and nothing of an upload left in
//! the bucket once it is committed or cancelled.

use berth_conformance::*;
use berth_storage::{contract, BlobStore, S3Settings};
use std::time::Duration;

fn settings(prefix: &str) -> S3Settings {
    let g = garage();
    S3Settings {
        endpoint: Some(g.endpoint.clone()),
        bucket: Some(g.bucket.clone()),
        region: Some(g.region.clone()),
        prefix: prefix.into(),
        path_style: true,
        access_key_id: Some(g.key_id.clone()),
        secret_access_key: Some(g.secret.clone()),
        redirect: Some(Duration::from_secs(60)),
    }
}

fn keys(prefix: &str) -> Vec<String> {
    garage().keys(prefix)
}

#[test]
fn the_blob_store_contract_holds_on_s3() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = BlobStore::s3(&settings("contract")).unwrap();
        contract::run_all(&s).await;
        // a presigned URL reads the object itself
        let data = b"presigned bytes".to_vec();
        let d = berth_core::Digest::sha256_of(&data);
        s.create_upload("ps").await.unwrap();
        let mut g = s.lock_session("ps").await;
        let body =
            futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(data.clone()))]);
        let n = s
            .append("ps", &mut g, 0, body, None, berth_storage::Then::Commit)
            .await
            .unwrap();
        s.commit("ps", &mut g, n, &d).await.unwrap();
        let url = s.presigned_get(&d).await.unwrap().expect("a presigned URL");
        let got = reqwest::get(&url).await.unwrap();
        assert_eq!(got.status(), 200, "{url}");
        assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
    });
    assert_eq!(
        keys("contract/uploads"),
        Vec::<String>::new(),
        "no session left"
    );
}

/// The admin, following redirects (reqwest drops the credentials on the
/// way to another origin, as clients do).
fn following() -> Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        admin_basic().parse().unwrap(),
    );
    Client::builder().default_headers(h).build().unwrap()
}

#[test]
fn pulls_redirect_to_s3_and_head_does_not() {
    let g = garage();
    let mut env = g.berth_env("redirects");
    env.push(("BERTH_STORAGE_S3_REDIRECT".into(), "true".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let s = Server::start_with(&env);
    let c = admin_client();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let d = push_blob(&c, &s, "acme/app", &data);
    let path = format!("/v2/acme/app/blobs/{d}");
    let nr = admin_client();
    let r = nr.get(s.url(&path)).send().unwrap();
    assert_eq!(r.status(), 307);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(&g.endpoint), "{loc}");
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let h = nr.head(s.url(&path)).send().unwrap();
    assert_eq!(h.status(), 200, "HEAD never redirects");
    assert_eq!(
        h.headers()["content-length"],
        data.len().to_string().as_str()
    );
    // followed (the credentials stay behind: another origin), whole and ranged
    let f = following();
    let got = f.get(s.url(&path)).send().unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(sha256(&got.bytes().unwrap()), d);
    let part = f
        .get(s.url(&path))
        .header("range", "bytes=1000-1999")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap().as_ref(), &data[1000..2000]);
    assert!(
        metric(
            &s.metrics(),
            "berth_blob_store_operations_total{op=\"redirects\"}"
        )
        .unwrap()
            >= 3.0
    );
}

#[test]
fn without_redirects_berth_streams_ranges_and_uploads_survive_a_restart() {
    let g = garage();
    let mut env = g.berth_env("streamed");
    env.push(("BERTH_STORAGE_S3_REDIRECT".into(), "false".into()));
    // (the settings given last win over berth_env's)
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut s = Server::start_with(&env);
    let c = admin_client();
    // a chunked upload: 6 MiB (a part and a tail), a restart, 3 MiB more
    let data: Vec<u8> = (0..9 * 1024 * 1024u32)
        .map(|i| (i * 7 % 253) as u8)
        .collect();
    let d = sha256(&data);
    let r = c.post(s.url("/v2/acme/big/blobs/uploads/")).send().unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let split = 6 * 1024 * 1024;
    let r = c
        .patch(s.url(&loc))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", split - 1))
        .body(data[..split].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let staged = keys("streamed/uploads");
    assert!(
        staged
            .iter()
            .any(|k| k.ends_with(&format!("/{split}.state"))),
        "the session's state is in the bucket: {staged:?}"
    );
    s.kill9();
    s.start_again();
    let st = c.get(s.url(&loc)).send().unwrap();
    assert_eq!(st.status(), 204);
    assert_eq!(st.headers()["range"], format!("0-{}", split - 1).as_str());
    let r = c
        .put(s.url(&format!(
            "{loc}{}digest={d}",
            if loc.contains('?') { '&' } else { '?' }
        )))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{split}-{}", data.len() - 1))
        .body(data[split..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    assert_eq!(
        keys("streamed/uploads"),
        Vec::<String>::new(),
        "nothing left"
    );
    // the restarted server sent the last part and completed the upload
    let m = s.metrics();
    for op in ["put_part", "complete_multipart", "copy"] {
        let n = metric(
            &m,
            &format!("berth_object_store_requests_total{{op=\"{op}\",outcome=\"ok\"}}"),
        );
        assert!(n.is_some_and(|n| n >= 1.0), "{op}: {n:?}");
    }
    assert!(m.contains("berth_object_store_request_duration_seconds_count{op=\"put_part\"}"));
    let path = format!("/v2/acme/big/blobs/{d}");
    let got = admin_client().get(s.url(&path)).send().unwrap();
    assert_eq!(got.status(), 200, "streamed through Berth");
    assert_eq!(sha256(&got.bytes().unwrap()), d);
    let part = c
        .get(s.url(&path))
        .header("range", "bytes=6291455-6291457")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().unwrap().as_ref(), &data[split - 1..split + 2]);
    // a wrong digest leaves no object; a cancelled upload leaves nothing
    let r = c
        .post(s.url(&format!(
            "/v2/acme/big/blobs/uploads/?digest={}",
            sha256(b"other")
        )))
        .body(data[..split].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c.post(s.url("/v2/acme/big/blobs/uploads/")).send().unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c
        .patch(s.url(&loc))
        .header("content-type", "application/octet-stream")
        .body(data[..split].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(!keys("streamed/uploads").is_empty());
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(c.delete(s.url(&loc)).send().unwrap().status(), 204);
    assert_eq!(keys("streamed/uploads"), Vec::<String>::new());
    let blobs = keys("streamed/blobs");
    assert_eq!(blobs.len(), 1, "only the pushed blob: {blobs:?}");
}
