//! The management API in process (the in-memory metadata engine and blob
//! store, every caller the admin): any operation of the OpenAPI document, with path
//! parameters, a query string and a body from the fuzzer. Nothing panics,
//! no answer is a 5xx, and every error is problem JSON.
#![no_main]
use berth_management::{Admin, ApiDoc, Management};
use berth_meta::{MemStore, Meta};
use http_body_util::BodyExt;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use utoipa::OpenApi;

#[derive(Arbitrary, Debug)]
struct Req<'a> {
    op: u16,
    params: [u8; 4],
    free: &'a str,
    query: &'a str,
    body: &'a [u8],
}

struct World {
    rt: tokio::runtime::Runtime,
    api: Management,
    ops: Vec<(http::Method, String)>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = berth_fuzz::runtime();
        // blobs in memory, so garbage collection, estimates and kept-by run
        let blobs = berth_fuzz::memory_blobs();
        let api = Management::new(
            Admin::new(Meta::new(MemStore::new())),
            None,
            "fuzz:5000".into(),
        )
        .with_blobs(blobs);
        let mut ops = Vec::new();
        for (path, item) in ApiDoc::openapi().paths.paths {
            let methods = [
                (http::Method::GET, item.get.is_some()),
                (http::Method::POST, item.post.is_some()),
                (http::Method::PUT, item.put.is_some()),
                (http::Method::PATCH, item.patch.is_some()),
                (http::Method::DELETE, item.delete.is_some()),
            ];
            for (m, has) in methods {
                if has {
                    ops.push((m, format!("/api/v1{}", path.trim_start_matches("/api/v1"))));
                }
            }
        }
        assert!(ops.len() > 30, "{} operations", ops.len());
        let w = World { rt, api, ops };
        // something to find: a registry with a user and a token
        for (path, body) in [
            ("/api/v1/registries", r#"{"name":"acme"}"#),
            (
                "/api/v1/registries/acme/users",
                r#"{"name":"ci","canPush":true}"#,
            ),
            (
                "/api/v1/tokens",
                r#"{"name":"t","registries":["acme"],"readWrite":false}"#,
            ),
        ] {
            call(&w, http::Method::POST, path, body.as_bytes());
        }
        w
    })
}

fn call(w: &World, m: http::Method, uri: &str, body: &[u8]) -> (http::StatusCode, String, Vec<u8>) {
    let req = http::Request::builder()
        .method(m)
        .uri(uri)
        .header("host", "fuzz:5000")
        .header("content-type", "application/json")
        .body(berth_http::full(body.to_vec()))
        .unwrap();
    w.rt.block_on(async {
        let (_, r) = berth_http::dispatch(&w.api, req).await;
        let st = r.status();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let b = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        (st, ct, b)
    })
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|r: Req| {
    let w = world();
    let (m, template) = &w.ops[usize::from(r.op) % w.ops.len()];
    let choices = ["acme", "nope", "web/app", "1", &enc(r.free)];
    let mut uri = String::new();
    let mut rest = template.as_str();
    let mut i = 0;
    while let Some(open) = rest.find('{') {
        uri.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .map(|c| open + c + 1)
            .unwrap_or(rest.len());
        uri.push_str(choices[usize::from(r.params[i % 4]) % choices.len()]);
        i += 1;
        rest = &rest[close..];
    }
    uri.push_str(rest);
    let q: String = r
        .query
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '#')
        .collect();
    if !q.is_empty() {
        uri.push('?');
        uri.push_str(&q);
    }
    if http::Uri::try_from(uri.as_str()).is_err() {
        return;
    }
    let (st, ct, body) = call(w, m.clone(), &uri, r.body);
    assert!(
        !st.is_server_error(),
        "{m} {uri}: {st} {}",
        String::from_utf8_lossy(&body)
    );
    if st.is_client_error() {
        assert!(
            ct.starts_with("application/problem+json"),
            "{m} {uri}: {st} {ct}"
        );
    }
});
