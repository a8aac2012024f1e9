#!/usr/bin/env bash
# Set up a fresh clone: a virtual environment with the package and its test tools, and the node tools the
# SOG cross-check and the viewer use. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build on this machine's disk; a bare `torch` would pull a multi-GB CUDA build.
# On a GPU machine, install the CUDA torch of your choice first and this line keeps it.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev]"

# Headless Chromium (Debian's package) for the viewer and UI screenshot tests; they skip where it is missing.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: could not install chromium; browser tests will be skipped"
fi

for script in scripts/install-splat-transform.sh scripts/install-viewer.sh; do
  if [ -f "$script" ]; then
    if command -v npm >/dev/null 2>&1; then bash "$script"; else echo "setup: npm not found, skipping $script"; fi
  fi
done
echo "setup: done (.venv ready)"
