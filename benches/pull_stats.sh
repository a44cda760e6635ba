#!/usr/bin/env bash
# What counting pulls costs: manifest GETs against Berth with pull
# statistics on and off, in one run, alternating rounds (so drift of the
# machine falls on both), medians of the rounds and their ratio.
#
# usage: benches/pull_stats.sh [rounds, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
ROUNDS="${1:-5}"
scripts/install-build-deps.sh
cargo build --release --workspace --all-targets
BIN="$CARGO_TARGET_DIR/release"
. benches/lib.sh pullstats
OUT="$WORK/results.jsonl"
ADMIN=$(admin_token)
start() { # label stats
  local port
  port=$(free_port)
  BERTH_STATS_PULLS="$2" BERTH_AUTH_ADMIN_TOKEN="$ADMIN" BERTH_LOG_LEVEL=warn "$BIN/berth" serve --listen "127.0.0.1:$port" --data-dir "$WORK/$1" >"$WORK/$1.log" 2>&1 &
  pids+=($!)
  eval "PORT_$1=$port PID_$1=$!"
  wait_up "http://127.0.0.1:$port/healthz"
}
start on true
start off false
for r in $(seq 1 "$ROUNDS"); do
  for l in on off; do
    port_var="PORT_$l"; pid_var="PID_$l"
    "$BIN/berth-bench" --url "http://127.0.0.1:${!port_var}" --label "$l" --out "$OUT" --server-pid "${!pid_var}" \
      --creds "admin:$ADMIN" --suites manifest >/dev/null
  done
done
python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for w in ("manifest GET by tag", "manifest GET by digest", "manifest HEAD by tag"):
    for c in (8, 32):
        on = [r["req_per_s"] for r in rows if r["label"] == "on" and r["workload"] == w and r["clients"] == c]
        off = [r["req_per_s"] for r in rows if r["label"] == "off" and r["workload"] == w and r["clients"] == c]
        if on and off:
            m_on, m_off = statistics.median(on), statistics.median(off)
            print(f"{w:<24} {c:>2} clients: stats on {m_on:8.0f} req/s, off {m_off:8.0f} req/s, on/off {m_on / m_off:.3f} "
                  f"(medians of {len(on)} rounds; on {min(on):.0f}-{max(on):.0f}, off {min(off):.0f}-{max(off):.0f})")
PY
