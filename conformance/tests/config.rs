//! Configuration from outside, through the binary: `berth config check` on
//! the shipped sample and on typos, `config show` with sources and no
//! secrets, `serve` refusing a misspelt file, unknown `BERTH_*` variables
//! warned about.

use berth_conformance::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn berth(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(berth_bin());
    c.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("BERTH_")) {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run berth")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

#[test]
fn config_check_accepts_the_samples_and_refuses_typos() {
    let sample = repo_file("docs/berth.example.toml");
    let o = berth(
        &["config", "check", "--config", sample.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[storge]\nsync = false\n[auth]\nadmin_tokn = \"berth_admin_0123456789abcdefghij\"\n[uploads]\nmax_age_secs = \"a day\"\n",
    )
    .unwrap();
    let o = berth(&["config", "check", "--config", bad.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    for want in [
        "unknown section `storge`; did you mean `storage`?",
        "unknown key `auth.admin_tokn`; did you mean `auth.admin_token`?",
        "uploads.max_age_secs",
        "bad.toml",
    ] {
        assert!(t.contains(want), "{want} in:\n{t}");
    }
    assert!(!t.contains("berth_admin_0123"), "no secret in errors:\n{t}");

    // the environment is checked too
    let o = berth(&["config", "check"], &[("BERTH_LOG_FORMAT", "xml")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("BERTH_LOG_FORMAT"), "{}", text(&o));
    let o = berth(&["config", "check"], &[("BERTH_STORAGE_BACKNED", "s3")]);
    assert!(
        o.status.success(),
        "an unknown variable is a warning: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("BERTH_STORAGE_BACKNED names no setting"),
        "{}",
        text(&o)
    );
}

#[test]
fn config_show_has_sources_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("berth.toml");
    std::fs::write(&f, "[uploads]\nmax_age_secs = 120\n").unwrap();
    let secret = "berth_admin_ShowMustNotPrintThis0123456789";
    let o = berth(
        &[
            "config",
            "show",
            "--config",
            f.to_str().unwrap(),
            "--listen",
            "127.0.0.1:7777",
        ],
        &[
            ("BERTH_AUTH_ADMIN_TOKEN", secret),
            ("BERTH_STORAGE_SYNC", "false"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!t.contains(secret), "{t}");
    for want in [
        "admin_token = \"<redacted>\"",
        "# environment BERTH_AUTH_ADMIN_TOKEN",
        "listen = \"127.0.0.1:7777\"",
        "# flag --listen",
        "max_age_secs = 120",
        "# file ",
        "sync = false",
        "# environment BERTH_STORAGE_SYNC",
        "format = \"text\"",
        "# default",
    ] {
        assert!(t.contains(want), "{want} in:\n{t}");
    }
}

#[test]
fn serve_refuses_a_misspelt_file_and_warns_of_unknown_variables() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("berth.toml");
    std::fs::write(&f, "[storage]\nsinc = false\n").unwrap();
    let o = berth(
        &[
            "serve",
            "--config",
            f.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("unknown key `storage.sinc`; did you mean `storage.sync`?"),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join("data").exists(), "nothing started");

    let s = Server::start_with(&[("BERTH_STORAGE_BACKNED", "s3")]);
    let log = s.log_text();
    assert!(
        log.contains("BERTH_STORAGE_BACKNED") && log.contains("names no setting"),
        "{log}"
    );
}
