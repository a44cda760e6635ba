#!/usr/bin/env bash
# Start a PostgreSQL for benchmarks and by hand, as the suites' fixture
# (crates/berth-pgtest) does: Debian's server programs, a cluster in DIR,
# trust authentication on loopback, a free port, fsync on. As the
# `postgres` user when run as root (PostgreSQL refuses root). Prints
# POSTGRES_PID=… and the BERTH_METADATA_*=… settings of a Berth that keeps
# its metadata there, a line each; the server runs in the background until
# killed.
# usage: PGENV=$(scripts/postgres.sh DIR); env $(grep ^BERTH_ <<<"$PGENV") berth serve …
#        (PostgreSQL from scripts/install-test-deps.sh)
set -euo pipefail
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$BIN/postgres" ] || { echo "PostgreSQL is not installed: run scripts/install-test-deps.sh" >&2; exit 1; }
as=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$DIR"; as=(runuser -u postgres --)
  runuser -u postgres -- test -x "$DIR" || { echo "the postgres user cannot reach $DIR (a parent directory's mode)" >&2; exit 1; }
fi
"${as[@]}" "$BIN/initdb" -D "$DIR/data" -U berth --auth=trust -E UTF8 --no-instructions >"$DIR/initdb.log" 2>&1 ||
  { cat "$DIR/initdb.log" >&2; exit 1; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
setsid "${as[@]}" "$BIN/postgres" -D "$DIR/data" -k "$DIR" -p "$PORT" \
  -c listen_addresses=127.0.0.1 -c max_connections=400 -c max_locks_per_transaction=256 \
  -c shared_buffers=256MB >"$DIR/postgres.log" 2>&1 </dev/null &
PID=$!
for _ in $(seq 1 300); do "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U berth && break; sleep 0.1; done
"$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U berth || { cat "$DIR/postgres.log" >&2; exit 1; }
cat <<ENV
POSTGRES_PID=$PID
BERTH_METADATA_BACKEND=postgres
BERTH_METADATA_POSTGRES_URL=postgres://berth@127.0.0.1:$PORT/postgres
ENV
