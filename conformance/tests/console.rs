//! The web console in a real browser: headless Chromium (Debian's), driven
//! by Playwright from PyPI (`conformance/console/console_test.py`), against
//! the real binary, with images pushed by skopeo and a chart by helm.
//! Screenshots of each page land in `$CARGO_TARGET_DIR/console-screenshots`
//! (`target/console-screenshots` without it).

use berth_conformance::*;
use std::path::PathBuf;
use std::process::Command;

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("console-screenshots")
}

#[test]
fn console_in_a_real_browser() {
    let chromium = PathBuf::from("/usr/bin/chromium");
    assert!(
        chromium.exists(),
        "chromium missing: run scripts/install-test-deps.sh"
    );
    require("skopeo");
    let python = installed("venv/bin/python");
    // collections take everything unreferenced now (no grace), the recycle
    // bin keeps entries 2 s, and storage use is sampled every second for the chart
    let s = Server::start_with(&[
        ("BERTH_GC_GRACE_SECS", "0"),
        ("BERTH_GC_RECYCLE_BIN_SECS", "2"),
        ("BERTH_STATS_USAGE_INTERVAL_SECS", "1"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let layout_dir = tmp.path().join("layout");
    layout::single_and_multi(&layout_dir);
    let chart = write_chart(tmp.path(), "consolechart");
    let pkg = tmp.path().join("pkg");
    run(helm(tmp.path())
        .arg("package")
        .arg(&chart)
        .arg("-d")
        .arg(&pkg));
    let shots = screenshots();
    let _ = std::fs::remove_dir_all(&shots);
    let helm_cmd = helm(tmp.path());
    let mut cmd = Command::new(python);
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/console/console_test.py"
    ))
    .env("BASE", s.base())
    .env("TOKEN", ADMIN_TOKEN)
    .env("LAYOUT", &layout_dir)
    .env("CHART", pkg.join("consolechart-0.1.0.tgz"))
    .env("HELM", helm_cmd.get_program())
    .env("SHOTS", &shots);
    for (k, v) in helm_cmd.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let out = cmd.output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "console test failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        s.log_text()
    );
    assert!(stdout.contains("console: every step passed"), "{stdout}");
    let taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(taken >= 19, "{taken} screenshots in {}", shots.display());
}
