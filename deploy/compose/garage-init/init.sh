#!/bin/sh
# Garage's first start for deploy/compose.yaml: a one-node layout, the
# bucket, and Berth's key imported (its id and secret come from the compose
# file); a second run finds them there and changes nothing.
set -eu
# the CLI reads the node id from the metadata dir and reaches rpc_public_addr
g() { garage -c "${GARAGE_CONFIG:-/etc/garage.toml}" "$@"; }
i=0
until g status >/dev/null 2>&1; do
  i=$((i + 1)); [ "$i" -lt 150 ] || { echo "garage does not answer" >&2; exit 1; }
  sleep 0.2
done
if g layout show 2>/dev/null | grep -q "No nodes currently have a role"; then
  node=$(g node id -q | cut -d@ -f1)
  g layout assign -z dc1 -c 10G "$node"
  g layout apply --version 1
fi
g bucket info "$BUCKET" >/dev/null 2>&1 || g bucket create "$BUCKET"
g key info "$KEY_ID" >/dev/null 2>&1 || g key import --yes -n berth "$KEY_ID" "$KEY_SECRET"
g bucket allow --read --write --owner "$BUCKET" --key "$KEY_ID"
echo "garage ready: bucket $BUCKET, key $KEY_ID"
