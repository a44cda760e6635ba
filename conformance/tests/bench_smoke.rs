//! The load tool in `benches/` keeps working against Berth: a small run of
//! every workload must finish with no error (it checks statuses and digests
//! itself). No timing is asserted.

use berth_conformance::*;
use std::process::Command;

#[test]
fn bench_tool_runs_clean_against_berth() {
    let bin = std::env::var_os("BERTH_BENCH_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| berth_bin().with_file_name("berth-bench"));
    assert!(
        bin.exists(),
        "berth-bench not found at {} (cargo build --release --bin berth-bench; scripts/test.sh does)",
        bin.display()
    );
    let s = Server::start();
    let out = tempfile::tempdir().unwrap();
    let results = out.path().join("r.jsonl");
    run(Command::new(bin)
        .args(["--url", &s.base(), "--label", "smoke", "--quick"])
        .args(["--creds", &format!("admin:{ADMIN_TOKEN}")])
        .args(["--suites", "push,pull,manifest,list,catalog,mixed"])
        .args(["--tags", "300", "--repos", "30", "--mixed-secs", "1"])
        .arg("--server-pid")
        .arg(s.pid().to_string())
        .arg("--out")
        .arg(&results));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 15, "{} result lines", lines.len());
    for l in &lines {
        assert_eq!(l["errors"], 0, "{l}");
        assert!(l["ops"].as_u64().unwrap() > 0, "{l}");
    }
}
