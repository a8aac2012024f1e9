#!/usr/bin/env bash
# Install the pinned PlayCanvas engine (npm package `playcanvas`) into tools/node/node_modules (git-ignored)
# for `spaceport view`. tools/node/package.json is shared with scripts/install-splat-transform.sh, whose
# splat-transform depends on the same engine version. 2.23.3 reads SOG v2 `.sog` bundles (asset type gsplat).
# Chromium for the viewer and UI screenshot tests comes from Debian: apt-get install -y chromium
set -euo pipefail
PINNED=2.23.3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$here/tools/node"
module="$tools/node_modules/playcanvas/package.json"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "install-viewer: node and npm are required (node >= 18)" >&2
    exit 1
fi
installed_version() { node -p "require('$module').version" 2>/dev/null || true; }
if [ -f "$module" ] && [ "$(installed_version)" = "$PINNED" ]; then
    echo "playcanvas $PINNED already installed in $tools"
    exit 0
fi
mkdir -p "$tools"
if grep -q "\"playcanvas\": \"$PINNED\"" "$tools/package.json" 2>/dev/null && [ -f "$tools/package-lock.json" ]; then
    (cd "$tools" && npm ci --no-audit --no-fund --ignore-scripts --engine-strict=false --loglevel=error)
else
    npm install --prefix "$tools" --save-exact --no-audit --no-fund --ignore-scripts --loglevel=error "playcanvas@$PINNED"
fi
version="$(installed_version)"
[ "$version" = "$PINNED" ] || { echo "install-viewer: expected playcanvas $PINNED, got '$version'" >&2; exit 1; }
echo "installed playcanvas $version into $tools"
