//! The load tool in `benches/` keeps working against Berth: a small run of
//! every workload must finish with no error (it checks statuses and digests
//! itself), a second round as `benches/compare.sh --repeat` runs it too, and
//! the report reads both. No timing is asserted.

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
    run(Command::new(&bin)
        .args(["--url", &s.base(), "--label", "smoke", "--quick"])
        .args(["--creds", &format!("admin:{ADMIN_TOKEN}")])
        .args(["--suites", "push,pull,manifest,list,catalog,mixed"])
        .args(["--tags", "300", "--repos", "30", "--mixed-secs", "1"])
        .arg("--server-pid")
        .arg(s.pid().to_string())
        .arg("--out")
        .arg(&results));
    // round 2 as compare.sh runs it: new content, the listings reused, the
    // first pulls cold
    let first_round_lines = std::fs::read_to_string(&results).unwrap().lines().count();
    run(Command::new(&bin)
        .args(["--url", &s.base(), "--label", "smoke", "--quick"])
        .args(["--creds", &format!("admin:{ADMIN_TOKEN}")])
        .args(["--suites", "push,pull,list,catalog"])
        .args(["--tags", "300", "--repos", "30"])
        .args(["--round", "2", "--salt", "2", "--listings-filled"])
        .arg("--server-pid")
        .arg(s.pid().to_string())
        .arg("--evict-under")
        .arg(s.data_dir.join("store"))
        .arg("--out")
        .arg(&results));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&results)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(first_round_lines >= 15, "{first_round_lines} result lines");
    for l in &lines {
        assert_eq!(l["errors"], 0, "{l}");
        assert!(l["ops"].as_u64().unwrap() > 0, "{l}");
    }
    let round2: Vec<_> = lines.iter().filter(|l| l["round"] == 2).collect();
    assert_eq!(round2.len(), lines.len() - first_round_lines);
    for w in [
        "pull 64MiB first",
        "pull 64MiB again",
        "tags/list page n=100 of 300",
    ] {
        assert!(round2.iter().any(|l| l["workload"] == w), "round 2 has {w}");
    }
    // every result notes the server's peak RSS; listing pages their size
    assert!(lines
        .iter()
        .all(|l| l["note"].as_str().unwrap_or("").contains("server VmHWM")));
    let page = round2
        .iter()
        .find(|l| l["workload"] == "tags/list page n=100 of 300")
        .unwrap();
    assert!(
        page["note"]
            .as_str()
            .unwrap()
            .starts_with("100 entries per page"),
        "{page}"
    );

    let report = run(Command::new("python3")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/report.py"))
        .arg(&results));
    assert!(report.contains("rounds: 2"), "{report}");
    assert!(report.contains("targets (issue 16)"), "{report}");
    assert!(report.contains("server peak RSS"), "{report}");
}
