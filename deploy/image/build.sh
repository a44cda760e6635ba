#!/usr/bin/env bash
# Build Berth's container image with no base image to pull (these machines
# pull none): assemble a root filesystem from the release binary and the
# shared libraries it loads — the files of this machine's Debian packages
# (libc6, libstdc++6, libgcc-s1) — plus the ca-certificates bundle, then
# `docker build` deploy/image/Dockerfile (FROM scratch) around it.
#
#   deploy/image/build.sh [TAG]        # default tag: berth:local
#
# BERTH_BIN names a built binary to use; otherwise it is built first.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag="${1:-berth:local}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth-target}"
bin="${BERTH_BIN:-}"
if [ -z "$bin" ]; then
  scripts/install-build-deps.sh
  cargo build --release --bin berth
  bin="$CARGO_TARGET_DIR/release/berth"
fi
if [ ! -f /etc/ssl/certs/ca-certificates.crt ]; then
  echo "installing ca-certificates (the image's CA bundle)"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get install -y -q ca-certificates >/dev/null
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
root="$ctx/rootfs"
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/etc/berth" "$root/tmp" "$ctx/data"
chmod 1777 "$root/tmp"
install -m 0755 "$bin" "$root/usr/local/bin/berth"
strip --strip-debug "$root/usr/local/bin/berth" 2>/dev/null || true
# every shared library the binary loads, and the dynamic loader
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' |
  while read -r lib; do
    cp -L --parents "$lib" "$root"
  done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/root:/sbin/nologin\nberth:x:10001:10001:berth:/var/lib/berth:/sbin/nologin\n' >"$root/etc/passwd"
printf 'root:x:0:\nberth:x:10001:\n' >"$root/etc/group"
printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
cp deploy/image/Dockerfile "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx" >/dev/null
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
