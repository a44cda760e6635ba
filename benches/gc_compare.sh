#!/usr/bin/env bash
# Garbage collection at scale, beside the reference registry (Debian's
# docker-registry, distribution 2.8) on the same content, and pushes during
# an online collection.
#
# 1. REPEATS times: berth-gc-scale seeds BLOBS blobs and MANIFESTS manifests
#    (real content: blob files and OCI manifests) into a Berth store and, the
#    same content, into a distribution filesystem layout; Berth collects in
#    process (online collection, deleteUntagged, no grace), the reference
#    runs its offline `garbage-collect --delete-untagged`. Both are timed and
#    the blob files left on disk counted.
# 2. A Berth server on a seeded data directory: 1 MiB pushes at 1 and 8
#    clients (storage.sync on) before, then during, an instance collection
#    started through the API; the ratio of the medians is the throughput
#    pushes keep. Only rounds that ended while the run was still going
#    count; each is also filed under the phase(s) of the run it saw
#    (`push_<n>c_kept_by_phase`, from rounds.txt).
#
# usage: benches/gc_compare.sh [BLOBS [MANIFESTS [REPEATS]]]
#        (default 100000, BLOBS/10, 3 (0: part 2 only); SERVER_BLOBS (default BLOBS) sizes part 2;
#         NO_REFERENCE=1 skips the reference, for sizes it cannot finish)
# The server's run keeps what is younger than 30 s (the pushes made during
# it); the seed is older by then.
# Results: $OUTDIR (default ./bench-results/gc-<timestamp>/), summary.json
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
BLOBS="${1:-100000}"; MANIFESTS="${2:-$((BLOBS / 10))}"; REPEATS="${3:-3}"
SERVER_BLOBS="${SERVER_BLOBS:-$BLOBS}"
scripts/install-build-deps.sh
if [ -z "${NO_REFERENCE:-}" ] && ! command -v docker-registry >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-registry >/dev/null
  ($SUDO service docker-registry stop || true; pkill -x docker-registry || true) >/dev/null 2>&1
fi
cargo build --release --workspace --all-targets
BIN="$CARGO_TARGET_DIR/release"

. benches/lib.sh gcbench
OUTDIR="${OUTDIR:-$PWD/bench-results/gc-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUTDIR"
files() { find "$1" -type f | wc -l; }

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $BLOBS blobs, $MANIFESTS manifests, $REPEATS repeats"
for i in $(seq 1 "$REPEATS"); do
  S="$WORK/s$i"; mkdir -p "$S"
  REF=(--reference "$S/ref"); [ -n "${NO_REFERENCE:-}" ] && REF=()
  "$BIN/berth-gc-scale" --blobs "$BLOBS" --manifests "$MANIFESTS" --files "${REF[@]}" --dir "$S/berth" >"$OUTDIR/berth-$i.json"
  echo "berth $i: $(cat "$OUTDIR/berth-$i.json")"
  echo "{\"blob_files_left\": $(files "$S/berth/store/blobs")}" >"$OUTDIR/berth-left-$i.json"
  if [ -z "${NO_REFERENCE:-}" ]; then
    cat >"$S/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $S/ref
  delete:
    enabled: true
YML
    before=$(files "$S/ref/docker/registry/v2/blobs")
    t0=$(date +%s.%N)
    docker-registry garbage-collect --delete-untagged "$S/registry.yml" >"$OUTDIR/reference-$i.log" 2>&1
    t1=$(date +%s.%N)
    after=$(files "$S/ref/docker/registry/v2/blobs")
    python3 -c "import json,sys; print(json.dumps({'gc_seconds': float(sys.argv[2])-float(sys.argv[1]), 'blob_files_before': int(sys.argv[3]), 'blob_files_left': int(sys.argv[4])}))" \
      "$t0" "$t1" "$before" "$after" >"$OUTDIR/reference-$i.json"
    echo "reference $i: $(cat "$OUTDIR/reference-$i.json")"
  fi
  rm -rf "$S"
done

# 2. pushes before and during an online collection
SRV="$WORK/srv"
"$BIN/berth-gc-scale" --blobs "$SERVER_BLOBS" --manifests "$((SERVER_BLOBS / 10))" --files --seed-only --dir "$SRV" >"$OUTDIR/server-seed.json"
SEEDED=$(date +%s)
PORT=$(free_port)
ADMIN=$(admin_token)
BERTH_AUTH_ADMIN_TOKEN="$ADMIN" BERTH_LOG_LEVEL=warn BERTH_GC_INTERVAL_SECS=0 "$BIN/berth" serve --listen "127.0.0.1:$PORT" --data-dir "$SRV" >"$OUTDIR/berth.log" 2>&1 &
pids+=($!)
B="http://127.0.0.1:$PORT"
wait_up "$B/healthz" 300
push() { # label salt
  "$BIN/berth-bench" --url "$B" --label "$1" --salt "$2" --out "$OUTDIR/pushes.jsonl" --creds "admin:$ADMIN" \
    --suites push --only "1MiB x200 mono" >/dev/null
}
salt=1
for _ in 1 2 3; do push baseline $salt; salt=$((salt + 1)); done
# the grace keeps the pushes made during the run (and the seed is older)
GRACE=30
while [ $(($(date +%s) - SEEDED)) -le $GRACE ]; do sleep 1; done
RUN=$(curl -sf -H "Authorization: Bearer $ADMIN" -X POST "$B/api/v1/gc" -d "{\"deleteUntagged\":true,\"graceSeconds\":$GRACE}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
# the run's status and phase ("-" once it ended)
state() { curl -sf -H "Authorization: Bearer $ADMIN" "$B/api/v1/gc/runs/$RUN" |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["status"], r.get("phase") or "-")'; }
# each round during the run is labelled with its salt; rounds.txt says in
# which phase it began and ended: only rounds that ended inside the run count
: >"$OUTDIR/rounds.txt"
read -r st phase < <(state)
while [ "$st" = running ]; do
  push "during-gc/$salt" $salt
  read -r st end < <(state)
  echo "$salt $phase $end $st" >>"$OUTDIR/rounds.txt"
  phase=$end
  salt=$((salt + 1))
done
curl -sf -H "Authorization: Bearer $ADMIN" "$B/api/v1/gc/runs/$RUN" >"$OUTDIR/server-gc-run.json"
python3 - "$OUTDIR" "$BLOBS" "$MANIFESTS" <<'PY'
import json, os, statistics, sys
out, blobs, manifests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
berth = [load(f) for f in sorted(os.listdir(out)) if f.startswith("berth-") and f[6:-5].isdigit()]
ref = [load(f) for f in sorted(os.listdir(out)) if f.startswith("reference-") and f.endswith(".json")]
left = [load(f) for f in sorted(os.listdir(out)) if f.startswith("berth-left-")]
pushes = [json.loads(l) for l in open(os.path.join(out, "pushes.jsonl"))]
run = load("server-gc-run.json")
s = {"blobs": blobs, "manifests": manifests,
     "berth_gc_seconds": [b["gc_seconds"] for b in berth],
     "berth_blob_files_left": [l["blob_files_left"] for l in left],
     "berth_report": berth[-1]["report"] if berth else None}
if berth:
    s["berth_gc_median"] = statistics.median(s["berth_gc_seconds"])
if ref and berth:
    s["reference_gc_seconds"] = [r["gc_seconds"] for r in ref]
    s["reference_blob_files_left"] = [r["blob_files_left"] for r in ref]
    s["reference_gc_median"] = statistics.median(s["reference_gc_seconds"])
    s["berth_over_reference_time"] = s["berth_gc_median"] / s["reference_gc_median"]
from datetime import datetime
t = lambda x: datetime.fromisoformat(x.replace("Z", "+00:00")).timestamp()
s["server_gc_seconds"] = t(run["finishedAt"]) - t(run["startedAt"]) if run.get("finishedAt") else None
s["server_gc_run"] = run
# salt -> (phase at its start, phase at its end), for rounds that ended
# while the run was still going
rounds = {}
for line in open(os.path.join(out, "rounds.txt")):
    salt, began, ended, status = line.split()
    if status == "running":
        rounds[salt] = (began, ended)
s["rounds_inside_run"] = len(rounds)
for clients in (1, 8):
    base = [p["mb_per_s"] for p in pushes if p["label"] == "baseline" and p["clients"] == clients]
    inside = [(rounds[p["label"].split("/")[1]], p["mb_per_s"]) for p in pushes
              if p["label"].startswith("during-gc/") and p["clients"] == clients
              and p["label"].split("/")[1] in rounds]
    dur = [mb for _, mb in inside]
    s[f"push_{clients}c_baseline_mb_s"] = base
    s[f"push_{clients}c_during_gc_mb_s"] = dur
    if base and dur:
        b = statistics.median(base)
        s[f"push_{clients}c_kept"] = statistics.median(dur) / b
        # rounds that began and ended in one phase, by phase
        by = {}
        for (began, ended), mb in inside:
            by.setdefault(began if began == ended else f"{began}->{ended}", []).append(round(mb / b, 2))
        s[f"push_{clients}c_kept_by_phase"] = by
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps(s, indent=1))
PY
echo "results: $OUTDIR"
