//! Operations from outside: what `/metrics` tells an operator (checked by
//! `promtool check metrics`), the upload lock table staying flat under
//! requests for sessions that do not exist, the generated admin token kept
//! out of the log stream, and the management API's root.

use berth_conformance::*;
use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn metrics_cover_the_process_store_and_auth_and_pass_promtool() {
    let s = Server::start();
    let c = admin_client();
    push_image(&c, &s, "ops/app", "v1", "metrics one");
    push_image(&c, &s, "ops/other", "v1", "metrics two");
    // a refused login, by reason
    let r = anonymous_client()
        .get(s.url("/v2/"))
        .basic_auth("ops+nobody", Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = s.metrics();

    for family in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "berth_http_requests_total",
        "berth_metadata_keys_estimate",
        "berth_metadata_engine",
        "berth_blob_store_operations_total",
        "berth_auth_refusals_total",
        "berth_upload_session_locks",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no {family} in:\n{text}"
        );
    }
    // exact counts of what is stored: 2 images = 4 blobs (configs and
    // layers differ), 2 repositories, 1 registry (auto-created)
    assert_eq!(metric(&text, r#"berth_stored{kind="blobs"}"#), Some(4.0));
    assert_eq!(
        metric(&text, r#"berth_stored{kind="repositories"}"#),
        Some(2.0)
    );
    assert_eq!(
        metric(&text, r#"berth_stored{kind="registries"}"#),
        Some(1.0)
    );
    let bytes = metric(&text, r#"berth_stored{kind="blob_bytes"}"#).unwrap();
    assert!(bytes > 2000.0, "blob bytes {bytes}");
    assert_eq!(
        metric(&text, r#"berth_blob_store_operations_total{op="commits"}"#),
        Some(4.0)
    );
    assert_eq!(
        metric(&text, r#"berth_auth_refusals_total{reason="unknown_user"}"#),
        Some(1.0)
    );
    // the pushes' synced writes synced the metadata log (on RocksDB, the
    // default; PostgreSQL reports no such figure)
    if std::env::var("BERTH_TEST_METADATA").as_deref() != Ok("postgres") {
        let syncs = metric(&text, r#"berth_metadata_engine{figure="log_syncs"}"#).unwrap();
        assert!(syncs >= 4.0, "log syncs {syncs}");
    }
    assert!(metric(&text, "process_resident_memory_bytes").unwrap() > 1e6);

    let mut promtool = Command::new(require("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PATCH, PUT, GET and DELETE of upload ids that do not exist leave
/// nothing in the server's memory (they used to add an entry each).
#[test]
fn requests_for_unknown_upload_ids_leave_the_lock_table_flat() {
    let s = Server::start();
    let c = admin_client();
    let locks = |s: &Server| metric(&s.metrics(), "berth_upload_session_locks").unwrap();
    push_image(&c, &s, "locks/app", "v1", "lock table");
    assert_eq!(locks(&s), 0.0);
    for i in 0..500 {
        let id = format!("00000000-0000-4000-8000-{i:012}");
        let url = s.url(&format!("/v2/locks/app/blobs/uploads/{id}"));
        let r = match i % 4 {
            0 => c.patch(&url).body("x").send().unwrap(),
            1 => c
                .put(format!("{url}?digest={}", sha256(b"x")))
                .body("x")
                .send()
                .unwrap(),
            2 => c.get(&url).send().unwrap(),
            _ => c.delete(&url).send().unwrap(),
        };
        assert_eq!(r.status(), 404, "{i}");
    }
    assert_eq!(locks(&s), 0.0, "unknown ids must not grow the table");
    // a real session appears while open and goes when it is closed
    let r = c
        .post(s.url("/v2/locks/app/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let r = c.patch(s.url(&loc)).body("abc").send().unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(locks(&s), 1.0);
    let r = c
        .put(s.url(&format!("{loc}?digest={}", sha256(b"abc"))))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(locks(&s), 0.0);
}

/// The admin token made at first start is shown once and never written to
/// the log stream: with stderr not a terminal it goes to a 0600 file whose
/// path is logged.
#[test]
fn a_generated_admin_token_stays_out_of_the_log() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start_generating_admin_token();
    let file = s.data_dir.join("admin-token");
    let token = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(token.starts_with("berth_admin_"), "{token}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let log = s.log_text();
    assert!(!log.contains(&token), "the secret is in the log:\n{log}");
    assert!(
        log.contains("admin-token"),
        "the file's path is logged:\n{log}"
    );
    let r = anonymous_client()
        .get(s.url("/v2/_catalog"))
        .basic_auth("admin", Some(&token))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "the token works");
}

#[test]
fn management_api_root_and_errors_through_the_server_layer() {
    let s = Server::start();
    let c = anonymous_client();
    let r = c.get(s.url("/api/v1/")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["api"], "v1");
    let r = c.get(s.url("/api/v1/nothing-here")).send().unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/problem+json; charset=utf-8"
    );
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["code"].as_str()),
        (Some(404), Some("not_found"))
    );
    // requests are counted by API route
    let text = s.metrics();
    assert!(
        text.contains(
            r#"berth_http_requests_total{method="GET",route="api.unrouted",status="404"} 1"#
        ),
        "{text}"
    );
}
