//! The curl examples of `docs/management.md`, run in order against the
//! real binary: the documentation shows what works.

use berth_conformance::*;
use std::process::Command;

/// The ```sh blocks of a markdown file, in order.
fn sh_blocks(md: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```sh") => cur = Some(String::new()),
            (Some(b), "```") => {
                out.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

#[test]
fn every_example_in_management_md_runs() {
    require("curl");
    let md = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/management.md"
    ))
    .unwrap();
    let blocks = sh_blocks(&md);
    assert!(blocks.len() >= 6, "found {} example blocks", blocks.len());
    let s = Server::start();
    let (st, v) = call(
        api(&s, Some(ADMIN_TOKEN), reqwest::Method::POST, "/registries")
            .json(&serde_json::json!({"name": "demo"})),
    );
    assert_eq!(st, 201, "{v}");
    push_image(&admin_client(), &s, "demo/app", "v1", "docs");
    let dir = tempfile::tempdir().unwrap();
    for (i, b) in blocks.iter().enumerate() {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", b])
            .current_dir(dir.path())
            .env("B", s.base())
            .env("T", ADMIN_TOKEN)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "example block {i} failed:\n{b}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // the last block deleted acme; the credentials block wrote config.json
    assert_eq!(
        call(api(
            &s,
            Some(ADMIN_TOKEN),
            reqwest::Method::GET,
            "/registries/acme"
        ))
        .0,
        404
    );
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert!(cfg["auths"][s.host()]["auth"].is_string(), "{cfg}");
}
