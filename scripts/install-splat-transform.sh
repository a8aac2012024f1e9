#!/usr/bin/env bash
# Install the pinned @playcanvas/splat-transform (tools/node/package.json + package-lock.json) into
# tools/node/node_modules (git-ignored). The SOG tests use it as an independent reader and writer.
# 3.7.0 declares node >= 22 but its PLY/SOG conversions (CPU k-means with -g cpu) run on node 20;
# install scripts are skipped (only the optional native WebGPU binding has one).
set -euo pipefail
PINNED=3.7.0
source "$(dirname "${BASH_SOURCE[0]}")/node-tools.sh"
bin="$tools/node_modules/.bin/splat-transform"
require_node install-splat-transform 20
installed_version() { "$bin" --version 2>&1 || true; }
if [ -x "$bin" ] && [[ "$(installed_version)" == *"v$PINNED "* ]]; then
    echo "splat-transform $PINNED already installed in $tools"
    exit 0
fi
npm_ci_tools install-splat-transform
version="$(installed_version)"
[[ "$version" == *"v$PINNED "* ]] || { echo "install-splat-transform: expected v$PINNED, got '$version'" >&2; exit 1; }
echo "installed $version into $tools"
