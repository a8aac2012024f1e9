# Sourced by scripts/install-*.sh: the pinned node tools live in tools/node (package.json + package-lock.json,
# one `npm ci` installs them all into the git-ignored tools/node/node_modules).
# Sets $tools; require_node NAME MIN_NODE exits when node or npm is missing; npm_ci_tools NAME installs.
tools="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tools/node"

require_node() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "$1: node and npm are required (node >= $2)" >&2
        exit 1
    fi
}

npm_ci_tools() {
    # npm has been seen to stall after its downloads: bound each attempt and retry once
    local attempt
    for attempt in 1 2; do
        if (cd "$tools" && timeout 300 npm ci --no-audit --no-fund --ignore-scripts --engine-strict=false \
                --loglevel=error); then
            return 0
        fi
        [ "$attempt" = 2 ] && { echo "$1: npm ci failed twice" >&2; exit 1; }
        echo "$1: npm ci attempt $attempt failed; retrying" >&2
    done
}
