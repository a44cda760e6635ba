#!/usr/bin/env bash
# What building Berth needs beyond the Rust toolchain: clang and libclang
# (RocksDB's bindings are generated with bindgen). Idempotent.
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
have_libclang() { ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; }
if ! command -v clang >/dev/null 2>&1 || ! have_libclang; then
  echo "installing clang and libclang-dev (RocksDB bindings)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq clang libclang-dev >/dev/null
fi
