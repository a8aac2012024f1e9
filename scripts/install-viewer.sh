#!/usr/bin/env bash
# Install the pinned PlayCanvas engine (npm package `playcanvas`) into tools/node/node_modules (git-ignored)
# for `spaceport view`. tools/node/package.json is shared with scripts/install-splat-transform.sh, whose
# splat-transform depends on the same engine version. 2.23.3 reads SOG v2 `.sog` bundles (asset type gsplat).
# Chromium for the viewer and UI screenshot tests comes from Debian: apt-get install -y chromium
set -euo pipefail
PINNED=2.23.3
source "$(dirname "${BASH_SOURCE[0]}")/node-tools.sh"
module="$tools/node_modules/playcanvas/package.json"
require_node install-viewer 18
installed_version() { node -p "require('$module').version" 2>/dev/null || true; }
if [ -f "$module" ] && [ "$(installed_version)" = "$PINNED" ]; then
    echo "playcanvas $PINNED already installed in $tools"
    exit 0
fi
npm_ci_tools install-viewer
version="$(installed_version)"
[ "$version" = "$PINNED" ] || { echo "install-viewer: expected playcanvas $PINNED, got '$version'" >&2; exit 1; }
echo "installed playcanvas $version into $tools"
