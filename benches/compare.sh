#!/usr/bin/env bash
# Run the same workloads against Berth and the reference registry (Debian's
# docker-registry, CNCF distribution 2.8) on loopback in one run, plus the
# physical ceilings: single-core sha256 and nginx serving the same blobs over
# the same client code; then pushes and pulls with Berth's blobs in S3
# (Garage, scripts/garage.sh). Prints Berth/reference ratios and the targets.
#
# usage: benches/compare.sh [--repeat N] [--quick] [extra berth-bench args]
# Each workload runs N times (default 3) per registry, interleaved (Berth,
# reference; then reference, Berth; ...) so that the machine's phases fall
# on both; the report gives medians with their spread. The listings are
# filled once, in round 1; the S3 and statistics comparisons run once.
# SUITES=push,pull (say) runs only those suites (default: all of them);
# S3=0 leaves out the S3 columns. BASELINE=/path/to/another/berth runs that
# binary too ("baseline": the same suites as Berth, in the same rounds), for
# a change's before/after; BASELINE_ENV="BERTH_X=y ..." sets its environment
# (BASELINE defaults to Berth's own binary when only that is given).
# Results: $OUT (default ./bench-results/<timestamp>/results.jsonl)
# A full-scale run with pushes first checks that the disk has room for what
# the rounds keep (about 4.2 GiB per round per server) and refuses to start
# if not; a workload that fails is reported and the run goes on, the report
# is written, and the script exits 1 naming what failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
scripts/install-build-deps.sh
# Garage for the S3 columns (built once into the tools cache)
scripts/install-test-deps.sh
need=()
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  # Debian starts both as services; the benchmark starts its own.
  ($SUDO service docker-registry stop || true; $SUDO service nginx stop || true; pkill -x docker-registry || true; pkill -x nginx || true) >/dev/null 2>&1
fi
# The resolution scripts/test.sh builds (RocksDB compiled once for both).
cargo build --release --workspace --all-targets
BIN="$CARGO_TARGET_DIR/release"

. benches/lib.sh bench
OUTDIR="${OUTDIR:-$PWD/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$OUTDIR"
OUT="$OUTDIR/results.jsonl"

repeat_args "$@"
set -- "${ARGS[@]+"${ARGS[@]}"}"
SUITES="${SUITES:-push,pull,manifest,list,catalog,mixed}"
# the suites of $SUITES among $1 (comma-separated), or nothing
among() { python3 -c 'import sys; a=sys.argv[1].split(","); print(",".join(s for s in sys.argv[2].split(",") if s in a))' "$1" "$SUITES"; }
# The 4 GiB push and pull (memory ceiling) in full runs only, in round 1.
# HUGE_PUSH=0 leaves them out.
QUICK=""; for a in "$@"; do [ "$a" = --quick ] && QUICK=1; done
HUGE="--huge"; [ -z "$QUICK" ] || HUGE=""
[ "${HUGE_PUSH:-1}" != 0 ] || HUGE=""

# Every server keeps what each round pushes (fresh content per round): at
# full scale about 4.2 GiB per round per server taking the pushes (Berth,
# the reference, the baseline, Berth without sync), 4 GiB more each for
# the huge push, and twice a round's pushes for the S3 columns. Refuse to
# start rather than fill the disk in the last round.
if [ -z "$QUICK" ] && [ -n "$(among push)" ]; then
  servers=3; [ -z "${BASELINE:-}${BASELINE_ENV:-}" ] || servers=4
  need_gib=$(( (42 * REPEAT * servers + (${HUGE:+40} + 0) * servers) / 10 + 1 ))
  [ "${S3:-1}" = 0 ] || need_gib=$((need_gib + 9))
  have=$(df --output=avail -B1G "$WORK" | tail -1 | tr -d ' ')
  if [ "$have" -lt "$need_gib" ]; then
    echo "compare.sh: these workloads need about $need_gib GiB free under $WORK, and $have GiB are; free some, or run fewer rounds (--repeat), HUGE_PUSH=0, S3=0 or fewer SUITES" >&2
    exit 1
  fi
fi

# A workload that fails is reported, and the run goes on; the script exits
# non-zero at the end, after the report.
failed=()
tolerate() { # label command...
  local label=$1; shift
  "$@" || { failed+=("$label"); echo "== $label failed (the run goes on)" >&2; }
}

# Berth
BP=$(free_port)
ADMIN=$(admin_token)
BERTH_AUTH_ADMIN_TOKEN="$ADMIN" BERTH_LOG_LEVEL=warn "$BIN/berth" serve --listen "127.0.0.1:$BP" --data-dir "$WORK/berth" >"$OUTDIR/berth.log" 2>&1 &
pids+=($!); BPID=$!
wait_up "http://127.0.0.1:$BP/healthz"

# Reference registry, comparable settings: filesystem storage, deletes on,
# warn-level logs, no access log.
RP=$(free_port)
cat >"$WORK/registry.yml" <<YML
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/reference
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$RP
YML
docker-registry serve "$WORK/registry.yml" >"$OUTDIR/reference.log" 2>&1 &
pids+=($!); RPID=$!
wait_up "http://127.0.0.1:$RP/v2/"

# Berth with storage.sync off: acknowledging once the kernel has the bytes,
# the reference's guarantee. Pushes and the mixed workload only.
NSP=$(free_port)
BERTH_STORAGE_SYNC=false BERTH_AUTH_ADMIN_TOKEN="$ADMIN" BERTH_LOG_LEVEL=warn "$BIN/berth" serve --listen "127.0.0.1:$NSP" --data-dir "$WORK/berth-nosync" >"$OUTDIR/berth-nosync.log" 2>&1 &
pids+=($!); NSPID=$!
wait_up "http://127.0.0.1:$NSP/healthz"

# nginx serving Berth's own blob files at the same URL paths: the pull
# ceiling. Its first pulls are cold (the files dropped from the page cache
# first): it did not take the push.
NP=$(free_port)
cat >"$WORK/nginx.conf" <<NGX
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path $WORK/nginx-tmp;
  proxy_temp_path $WORK/nginx-tmp;
  fastcgi_temp_path $WORK/nginx-tmp;
  uwsgi_temp_path $WORK/nginx-tmp;
  scgi_temp_path $WORK/nginx-tmp;
  server { listen 127.0.0.1:$NP; root $WORK/www; }
}
NGX
mkdir -p "$WORK/nginx-tmp" "$WORK/www"; chmod 755 "$WORK"
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_up "http://127.0.0.1:$NP/" || true

# The disk's own ceilings in the same run, 1 GiB each: written sequentially
# and flushed, with O_DIRECT (as Berth stages blobs) and through the page
# cache; and a file written with O_DIRECT read once through the page cache
# (the first fill, which a first pull after Berth's push pays: on a VM that
# hands free memory back to its host each new page is a host fault) and
# read with O_DIRECT (no fill).
ceiling() { # round label command...
  local r=$1 label=$2 t0 t1 secs
  shift 2
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  secs=$(python3 -c "print($t1 - $t0)")
  python3 -c "import json,sys; s=float(sys.argv[3]); print(json.dumps({'label':'ceiling','round':int(sys.argv[1]),'workload':sys.argv[2],'clients':1,'ops':1,'bytes':1<<30,'secs':s,'mb_per_s':(1<<30)/s/1e6,'req_per_s':1/s,'p50_ms':s*1e3,'p99_ms':s*1e3,'errors':0}))" "$r" "$label" "$secs" >>"$OUT"
}
dd_write() { # flags...
  dd if=/dev/zero of="$WORK/ddtest" bs=256K count=4096 "$@" conv=fdatasync 2>/dev/null
}
dd_read() { # flags...
  dd if="$WORK/ddtest" of=/dev/null bs=1M "$@" 2>/dev/null
}
disk() { # round
  ceiling "$1" "disk write 1GiB O_DIRECT+fdatasync" dd_write oflag=direct
  ceiling "$1" "disk read 1GiB first fill of the page cache (after an O_DIRECT write)" dd_read
  ceiling "$1" "disk read 1GiB O_DIRECT" dd_read iflag=direct
  rm -f "$WORK/ddtest"
  ceiling "$1" "disk write 1GiB buffered+fdatasync" dd_write
  rm -f "$WORK/ddtest"
}
# Hard links to Berth's blob files of round $1 at nginx's URL paths.
link_for_nginx() {
  python3 - "$WORK" "$1" <<'PY'
import json, os, sys
work, r = sys.argv[1], sys.argv[2]
for b in json.load(open(f"{work}/berth-blobs-{r}.json")):
    hexd = b["digest"].split(":")[1]
    src = f"{work}/berth/store/blobs/sha256/{hexd[:2]}/{hexd}"
    dst = f"{work}/www/v2/{b['repo']}/blobs/{b['digest']}"
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if not os.path.exists(dst):
        os.link(src, dst)
PY
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "== berth (pid $BPID) vs reference (pid $RPID), $REPEAT rounds"
run_berth() { # round extra...
  local r=$1; shift
  "$BIN/berth-bench" --url "http://127.0.0.1:$BP" --label berth --out "$OUT" --server-pid "$BPID" --creds "admin:$ADMIN" \
    --round "$r" --salt "$r" --blob-list-out "$WORK/berth-blobs-$r.json" --suites "sha256,$SUITES" "$@"
}
run_reference() { # round extra...
  local r=$1; shift
  "$BIN/berth-bench" --url "http://127.0.0.1:$RP" --label reference --out "$OUT" --server-pid "$RPID" \
    --round "$r" --salt "$r" --suites "$SUITES" "$@"
}
order=(berth reference)
if [ -n "${BASELINE:-}${BASELINE_ENV:-}" ]; then
  BLP=$(free_port)
  # shellcheck disable=SC2086
  env ${BASELINE_ENV:-} BERTH_AUTH_ADMIN_TOKEN="$ADMIN" BERTH_LOG_LEVEL=warn "${BASELINE:-$BIN/berth}" serve --listen "127.0.0.1:$BLP" --data-dir "$WORK/baseline" >"$OUTDIR/baseline.log" 2>&1 &
  pids+=($!); BLPID=$!
  wait_up "http://127.0.0.1:$BLP/healthz"
  run_baseline() { # round extra...
    local r=$1; shift
    "$BIN/berth-bench" --url "http://127.0.0.1:$BLP" --label baseline --out "$OUT" --server-pid "$BLPID" --creds "admin:$ADMIN" \
      --round "$r" --salt "$r" --suites "sha256,$SUITES" "$@"
  }
  order+=(baseline)
fi
for r in $(seq 1 "$REPEAT"); do
  echo "== round $r of $REPEAT: ${order[*]}"
  extra=()
  if [ "$r" = 1 ]; then extra+=($HUGE); else extra+=(--listings-filled); fi
  for who in "${order[@]}"; do
    tolerate "$who, round $r" "run_$who" "$r" "${extra[@]+"${extra[@]}"}" "$@"
  done
  order=("${order[@]:1}" "${order[0]}")
  [ -z "$(among push,mixed)" ] || tolerate "berth-nosync, round $r" "$BIN/berth-bench" --url "http://127.0.0.1:$NSP" --label berth-nosync --out "$OUT" \
    --server-pid "$NSPID" --creds "admin:$ADMIN" --round "$r" --salt "$r" --suites "$(among push,mixed)" "$@"
  disk "$r"
  [ -n "$(among pull)" ] || continue
  tolerate "nginx links, round $r" link_for_nginx "$r"
  tolerate "nginx, round $r" "$BIN/berth-bench" --url "http://127.0.0.1:$NP" --label nginx --out "$OUT" --suites pull --round "$r" \
    --blob-list-in "$WORK/berth-blobs-$r.json" --evict-under "$WORK/berth/store" "$@"
done
kill "$NSPID"; wait "$NSPID" 2>/dev/null || true; rm -rf "$WORK/berth-nosync"

if [ -n "$(among manifest)" ]; then
  # Berth without pull statistics: what counting manifest GETs costs.
  NST=$(free_port)
  BERTH_STATS_PULLS=false BERTH_AUTH_ADMIN_TOKEN="$ADMIN" BERTH_LOG_LEVEL=warn "$BIN/berth" serve --listen "127.0.0.1:$NST" --data-dir "$WORK/berth-nostats" >"$OUTDIR/berth-nostats.log" 2>&1 &
  pids+=($!); NSTPID=$!
  wait_up "http://127.0.0.1:$NST/healthz"
  "$BIN/berth-bench" --url "http://127.0.0.1:$NST" --label berth-nostats --out "$OUT" --server-pid "$NSTPID" --creds "admin:$ADMIN" \
    --suites manifest "$@"
  kill "$NSTPID"; wait "$NSTPID" 2>/dev/null || true; rm -rf "$WORK/berth-nostats"
fi

S3_SUITES=$(among push,pull)
if [ -n "$S3_SUITES" ] && [ "${S3:-1}" != 0 ]; then
  # Berth with its blobs in S3: Garage on the same machine and disk. Pushes
  # stream into multipart uploads; pulls with redirects on (the default: the
  # client follows a presigned URL to Garage) and off (Berth streams).
  S3ENV=$(scripts/garage.sh "$WORK/garage")
  pids+=("$(sed -n 's/^GARAGE_PID=//p' <<<"$S3ENV")")
  s3_berth() { # label port data-dir extra-env...
    local label=$1 port=$2 dir=$3; shift 3
    # shellcheck disable=SC2046
    env $(grep '^BERTH_' <<<"$S3ENV") BERTH_STORAGE_S3_PREFIX="$label" "$@" BERTH_AUTH_ADMIN_TOKEN="$ADMIN" BERTH_LOG_LEVEL=warn \
      "$BIN/berth" serve --listen "127.0.0.1:$port" --data-dir "$dir" >"$OUTDIR/$label.log" 2>&1 &
    pids+=($!); S3PID=$!
    wait_up "http://127.0.0.1:$port/healthz"
  }
  S3P=$(free_port)
  s3_berth berth-s3 "$S3P" "$WORK/berth-s3"
  "$BIN/berth-bench" --url "http://127.0.0.1:$S3P" --label berth-s3 --out "$OUT" --server-pid "$S3PID" --creds "admin:$ADMIN" \
    --suites "$S3_SUITES" "$@"
  kill "$S3PID"; wait "$S3PID" 2>/dev/null || true
  S3SP=$(free_port)
  s3_berth berth-s3-streamed "$S3SP" "$WORK/berth-s3-streamed" BERTH_STORAGE_S3_REDIRECT=false
  "$BIN/berth-bench" --url "http://127.0.0.1:$S3SP" --label berth-s3-streamed --out "$OUT" --server-pid "$S3PID" --creds "admin:$ADMIN" \
    --suites "$S3_SUITES" "$@"
  kill "$S3PID"; wait "$S3PID" 2>/dev/null || true
fi

python3 benches/report.py "$OUT" | tee "$OUTDIR/report.txt"
if [ ${#failed[@]} -gt 0 ]; then
  echo "== failed: ${failed[*]} (their errors are in $OUTDIR/*.log and the report's errors column)" >&2
  exit 1
fi
