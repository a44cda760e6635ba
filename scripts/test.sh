#!/usr/bin/env bash
# Every suite: unit, contract, end-to-end and real-client tests. Installs what
# the build and the tests need first. One build profile (release), in a
# target directory outside the clone so later runs reuse it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
scripts/install-build-deps.sh
scripts/install-test-deps.sh
export BERTH_TOOLS="${BERTH_TOOLS:-$HOME/.cache/berth-tools}"
# One build of every target: the same feature resolution as the `cargo test`
# below, so RocksDB (the long part of a fresh build) is compiled once.
cargo build --release --workspace --all-targets
export BERTH_BIN="$CARGO_TARGET_DIR/release/berth"
cargo test --release --workspace "$@"
# The end-to-end suites once more with every test server's blobs in S3
# (Garage, started by the suites: conformance/src/garage.rs): Berth
# streaming blob reads, then the real clients following presigned redirects.
BERTH_TEST_BACKEND=s3 cargo test --release --workspace \
  --test spec --test durability --test streaming "$@"
BERTH_TEST_BACKEND=s3-redirect cargo test --release --workspace --test clients "$@"
# The deployment of several replicas, one process at a time: metadata in
# PostgreSQL (crates/berth-pgtest starts a server), blobs in S3 — the OCI
# walk, durability and the kill -9 cycles, the management API and quotas;
# then online GC and the recycle bin on PostgreSQL with blobs on the
# filesystem (their suites look at the blob files). (tests/replicas.rs, in
# the first pass, runs several processes on one schema.)
BERTH_TEST_METADATA=postgres BERTH_TEST_BACKEND=s3 cargo test --release --workspace \
  --test spec --test durability --test crash_cycles --test management --test quotas "$@"
BERTH_TEST_METADATA=postgres cargo test --release --workspace \
  --test gc_online --test recycle_bin "$@"
# The end-to-end suites once more with every server a deployment: three
# replicas, each on a host of its own (a network namespace), behind HAProxy,
# over one PostgreSQL and a three-node Garage cluster
# (conformance/src/cluster.rs): the OCI walk, the real clients, durability,
# the kill -9 cycles (one replica killed under load each cycle), the
# management API and quotas, with their requests spread over the replicas.
BERTH_TEST_DEPLOYMENT=cluster cargo test --release --workspace \
  --test spec --test clients --test durability --test crash_cycles --test management --test quotas "$@"
# Every fuzz target for a bounded time (fuzz/, docs/reliability.md).
scripts/fuzz.sh "${BERTH_FUZZ_SECONDS:-15}"
