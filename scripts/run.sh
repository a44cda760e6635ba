#!/usr/bin/env bash
# Build and run Berth on its embedded default: blobs on the local filesystem
# and metadata in RocksDB, both under ./berth-data, listening on 127.0.0.1:5000.
# Extra arguments go to `berth serve` (see `berth serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
scripts/install-build-deps.sh
cargo build --release --bin berth
exec "$CARGO_TARGET_DIR/release/berth" serve "$@"
