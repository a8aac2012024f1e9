#!/usr/bin/env bash
# Install the pinned @playcanvas/splat-transform (tools/node/package.json + package-lock.json) into
# tools/node/node_modules (git-ignored). The SOG tests use it as an independent reader and writer.
# 3.7.0 declares node >= 22 but its PLY/SOG conversions (CPU k-means with -g cpu) run on node 20;
# install scripts are skipped (only the optional native WebGPU binding has one).
set -euo pipefail
PINNED=3.7.0
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$here/tools/node"
bin="$tools/node_modules/.bin/splat-transform"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install-splat-transform: node and npm are required (node >= 20)" >&2
    exit 1
fi
installed_version() { "$bin" --version 2>&1 || true; }
if [ -x "$bin" ] && [[ "$(installed_version)" == *"v$PINNED "* ]]; then
    echo "splat-transform $PINNED already installed in $tools"
    exit 0
fi
cd "$tools"
# npm has been seen to stall after its downloads: bound each attempt and retry once
for attempt in 1 2; do
    if timeout 300 npm ci --no-audit --no-fund --ignore-scripts --engine-strict=false --loglevel=error; then
        break
    fi
    [ "$attempt" = 2 ] && { echo "install-splat-transform: npm ci failed twice" >&2; exit 1; }
    echo "install-splat-transform: npm ci attempt $attempt failed; retrying" >&2
done
version="$(installed_version)"
[[ "$version" == *"v$PINNED "* ]] || { echo "install-splat-transform: expected v$PINNED, got '$version'" >&2; exit 1; }
echo "installed $version into $tools"
