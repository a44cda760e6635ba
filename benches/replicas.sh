#!/usr/bin/env bash
# Throughput of one Berth replica against three behind a load balancer, on
# this machine in one run, reported as 3-replica/1-replica ratios. Both
# deployments are built the way scale-out runs (docs/scale-out.md):
# metadata in one PostgreSQL (scripts/postgres.sh), blobs in one Garage
# (scripts/garage.sh), every replica its own process and data directory,
# HAProxy in front balancing each request round-robin; each deployment its
# own schema and bucket prefix. The same client code (berth-bench) drives
# both through their balancers.
#
# usage: benches/replicas.sh [--repeat N] [extra berth-bench args]
# Each workload runs N times (default 3) per deployment, interleaved (1, 3;
# then 3, 1; ...); the report gives medians with their spread.
# SUITES=push,pull (say) picks the suites (default push,pull,manifest).
# Results: $OUTDIR/results.jsonl (default ./bench-results/replicas-<timestamp>/)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
scripts/install-build-deps.sh
# PostgreSQL, Garage and HAProxy
scripts/install-test-deps.sh
cargo build --release --workspace --all-targets
BIN="$CARGO_TARGET_DIR/release"

. benches/lib.sh replicas
# PostgreSQL runs as its own user when this runs as root
chmod 755 "$WORK"
OUTDIR="${OUTDIR:-$PWD/bench-results/replicas-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUTDIR"
OUT="$OUTDIR/results.jsonl"
repeat_args "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
SUITES="${SUITES:-push,pull,manifest}"
ADMIN=$(admin_token)

S3ENV=$(scripts/garage.sh "$WORK/garage")
pids+=("$(sed -n 's/^GARAGE_PID=//p' <<<"$S3ENV")")
PGENV=$(scripts/postgres.sh "$WORK/pg")
pids+=("$(sed -n 's/^POSTGRES_PID=//p' <<<"$PGENV")")
mapfile -t SHARED < <(grep -h '^BERTH_' <<<"$S3ENV"$'\n'"$PGENV")

# deploy N: N replicas and a balancer in front; sets FRONT[N]
declare -A FRONT
deploy() {
  local n=$1 i port servers="" lb
  for i in $(seq 1 "$n"); do
    port=$(free_port)
    env "${SHARED[@]}" BERTH_STORAGE_S3_PREFIX="r$n" BERTH_METADATA_POSTGRES_SCHEMA="replicas_$n" \
      BERTH_METADATA_POSTGRES_POOL_SIZE=8 BERTH_AUTH_ADMIN_TOKEN="$ADMIN" BERTH_LOG_LEVEL=warn \
      "$BIN/berth" serve --listen "127.0.0.1:$port" --data-dir "$WORK/r$n-$i" >"$OUTDIR/r$n-$i.log" 2>&1 &
    pids+=($!)
    wait_up "http://127.0.0.1:$port/healthz" 300
    servers+="  server r$i 127.0.0.1:$port check inter 1s"$'\n'
  done
  lb=$(free_port)
  cat >"$WORK/haproxy-$n.cfg" <<CFG
global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 10m
  timeout server 10m
  retries 3
  option redispatch 1
frontend registry
  bind 127.0.0.1:$lb
  default_backend replicas
backend replicas
  balance roundrobin
  option httpchk GET /healthz
$servers
CFG
  haproxy -db -f "$WORK/haproxy-$n.cfg" >"$OUTDIR/haproxy-$n.log" 2>&1 &
  pids+=($!)
  wait_up "http://127.0.0.1:$lb/healthz"
  FRONT[$n]=$lb
}
deploy 1
deploy 3

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; PostgreSQL metadata, Garage blobs"
order=(1 3)
for r in $(seq 1 "$REPEAT"); do
  echo "== round $r of $REPEAT: ${order[*]} replica(s)"
  for n in "${order[@]}"; do
    "$BIN/berth-bench" --url "http://127.0.0.1:${FRONT[$n]}" --label "replicas-$n" --out "$OUT" \
      --creds "admin:$ADMIN" --round "$r" --salt "$r" --suites "$SUITES" "$@" >/dev/null
  done
  order=("${order[1]}" "${order[0]}")
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
from collections import defaultdict
runs = defaultdict(list)
for l in open(sys.argv[1]):
    if l.strip():
        r = json.loads(l)
        runs[(r["label"], r["workload"], r["clients"])].append(r)
def value(r):
    w = r["workload"]
    return r["mb_per_s"] if r["bytes"] and ("push" in w or "pull" in w) else r["req_per_s"]
keys = sorted({(w, c) for (_, w, c) in runs}, key=lambda k: (k[0], k[1]))
print(f"{'workload':<28}{'clients':>8}{'1 replica':>26}{'3 replicas':>26}{'3/1':>7}")
for w, c in keys:
    a = [value(r) for r in runs.get(("replicas-1", w, c), [])]
    b = [value(r) for r in runs.get(("replicas-3", w, c), [])]
    if not a or not b:
        continue
    cell = lambda v: f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})"
    unit = "MB/s" if runs[("replicas-1", w, c)][0]["bytes"] and ("push" in w or "pull" in w) else "req/s"
    ratio = statistics.median(b) / statistics.median(a) if statistics.median(a) else float("nan")
    print(f"{w[:27]:<28}{c:>8}{cell(a) + ' ' + unit:>26}{cell(b) + ' ' + unit:>26}{ratio:>7.2f}")
PY
echo "results: $OUT"
