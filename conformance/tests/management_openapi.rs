//! The generated OpenAPI document of `/api/v1/`: valid OpenAPI 3.1
//! (openapi-spec-validator), and schemathesis, driving every operation
//! with generated requests as the admin, finds no 5xx and no answer that
//! breaks the document (status, content type, schema).

use berth_conformance::*;
use std::path::PathBuf;
use std::process::Command;

fn venv_bin(tool: &str) -> PathBuf {
    let tools = std::env::var_os("BERTH_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/berth-tools")
        });
    let p = tools.join("venv/bin").join(tool);
    assert!(
        p.exists(),
        "{tool} missing: run scripts/install-test-deps.sh"
    );
    p
}

#[test]
fn the_document_validates_and_schemathesis_finds_nothing() {
    let s = Server::start();
    // something to find: a registry, an image, a user, a token
    push_image(&admin_client(), &s, "acme/app", "v1", "schemathesis");
    let a = Some(ADMIN_TOKEN);
    call(
        api(&s, a, reqwest::Method::POST, "/registries/acme/users")
            .json(&serde_json::json!({"name": "ci"})),
    );
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("openapi.json");
    let body = reqwest::blocking::get(s.url("/api/v1/openapi.json"))
        .unwrap()
        .bytes()
        .unwrap();
    std::fs::write(&doc, &body).unwrap();
    run(Command::new(venv_bin("openapi-spec-validator")).arg(&doc));

    // Two passes: everything but DELETE first (the documented examples
    // name the live registry, repository, tag and user, and a DELETE of
    // the registry would leave the rest answering 404), then the DELETEs.
    for pass in [
        ["--exclude-method", "DELETE"],
        ["--include-method", "DELETE"],
    ] {
        let out = Command::new("timeout")
            .arg("900")
            .arg(venv_bin("schemathesis"))
            .args([
                "run",
                "--experimental=openapi-3.1",
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                "--hypothesis-max-examples",
                "30",
                "--hypothesis-derandomize",
                "--hypothesis-deadline",
                "None",
                "--request-timeout",
                "10000",
                "--no-color",
            ])
            .args(pass)
            .arg("-H")
            .arg(format!("Authorization: Bearer {ADMIN_TOKEN}"))
            .arg("--base-url")
            .arg(s.url("/api/v1"))
            .arg(&doc)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "schemathesis ({pass:?}) found problems:\n{text}"
        );
        assert!(text.contains("passed"), "{text}");
        eprintln!("{text}");
    }
    // it reached the server: nearly every operation answered (the rest
    // need a live resource a generated name rarely hits)
    let m = s.metrics();
    let routes: std::collections::BTreeSet<&str> = m
        .lines()
        .filter(|l| l.starts_with("berth_http_requests_total{"))
        .filter_map(|l| l.split("route=\"").nth(1)?.split('"').next())
        .filter(|r| r.starts_with("api.") && *r != "api.unrouted")
        .collect();
    assert!(
        routes.len() >= 35,
        "{} operations called: {routes:?}",
        routes.len()
    );
    assert!(!s.log_text().contains("panicked"), "{}", s.log_text());
}
