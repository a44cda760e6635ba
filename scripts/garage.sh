#!/usr/bin/env bash
# Start a single-node Garage (S3) for benchmarks and by hand, as the suites'
# fixture (conformance/src/garage.rs) does: a one-node layout, a bucket
# `berth` and a key allowed on it. Prints GARAGE_PID=… and the
# BERTH_STORAGE_*=… settings of a Berth that keeps its blobs there, a line
# each; Garage runs in the background until killed.
# usage: S3ENV=$(scripts/garage.sh DIR); env $(grep ^BERTH_ <<<"$S3ENV") berth serve …
#        (Garage from scripts/install-test-deps.sh)
set -euo pipefail
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
GARAGE="${BERTH_TOOLS:-$HOME/.cache/berth-tools}/bin/garage"
[ -x "$GARAGE" ] || { echo "garage is not installed: run scripts/install-test-deps.sh" >&2; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPC=$(port); S3=$(port); ADM=$(port)
cat >"$DIR/garage.toml" <<TOML
metadata_dir = "$DIR/meta"
data_dir = "$DIR/data"
db_engine = "lmdb"
replication_factor = 1
metadata_fsync = true
# blobs are compressed layers already: no zstd pass
compression_level = "none"
data_fsync = true
rpc_bind_addr = "127.0.0.1:$RPC"
rpc_public_addr = "127.0.0.1:$RPC"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$S3"

[admin]
api_bind_addr = "127.0.0.1:$ADM"
TOML
g() { "$GARAGE" -c "$DIR/garage.toml" "$@"; }
RUST_LOG=garage=warn setsid "$GARAGE" -c "$DIR/garage.toml" server >"$DIR/garage.log" 2>&1 </dev/null &
PID=$!
for _ in $(seq 1 300); do g status >/dev/null 2>&1 && break; sleep 0.2; done
g status >/dev/null || { cat "$DIR/garage.log" >&2; exit 1; }
NODE=$(g node id -q | cut -d@ -f1)
g layout assign -z dc1 -c 10G "$NODE" >/dev/null
g layout apply --version 1 >/dev/null
g bucket create berth >/dev/null
KEY=$(g key create berth)
g bucket allow --read --write --owner berth --key berth >/dev/null
field() { printf '%s\n' "$KEY" | awk -F': *' -v k="$1" 'tolower($1) == tolower(k) {print $2; exit}'; }
cat <<ENV
GARAGE_PID=$PID
BERTH_STORAGE_BACKEND=s3
BERTH_STORAGE_S3_ENDPOINT=http://127.0.0.1:$S3
BERTH_STORAGE_S3_BUCKET=berth
BERTH_STORAGE_S3_REGION=us-east-1
BERTH_STORAGE_S3_ACCESS_KEY_ID=$(field "Key ID")
BERTH_STORAGE_S3_SECRET_ACCESS_KEY=$(field "Secret key")
ENV
