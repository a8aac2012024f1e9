"""Decode a SOG bundle back to a standard 3DGS PLY.

    python -m spaceport_dagster.stages.sog.to_ply BUNDLE(.sog | folder | meta.json) OUT.ply
"""

from __future__ import annotations

import sys

from .reader import sog_to_ply


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    print(f"wrote {argv[1]} ({sog_to_ply(argv[0], argv[1])} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
