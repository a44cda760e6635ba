# Sourced by the benchmark scripts: a work directory removed on exit with
# the servers started (append their pids to `pids`), a free loopback port,
# waiting for a server, an admin token.
# usage: . benches/lib.sh NAME   (WORK=/tmp/berth-NAME.XXXXXX)
WORK=$(mktemp -d "/tmp/berth-$1.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK" || true
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_up URL [TENTHS]: until URL answers 2xx (default 10 s)
wait_up() { for _ in $(seq 1 "${2:-100}"); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "not up: $1" >&2; return 1; }
admin_token() { echo "berth_admin_$(python3 -c 'import secrets,string; print("".join(secrets.choice(string.ascii_letters+string.digits) for _ in range(40)))')"; }
# repeat_args ARGS...: REPEAT from --repeat N (default 3), the other
# arguments in ARGS (for berth-bench)
repeat_args() {
  REPEAT=3; ARGS=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --repeat) REPEAT="$2"; shift 2 ;;
      --repeat=*) REPEAT="${1#--repeat=}"; shift ;;
      *) ARGS+=("$1"); shift ;;
    esac
  done
}
