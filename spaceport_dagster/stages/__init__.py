"""Stage code: no dagster imports here (only dagster_pipes, in entry.py)."""

import zlib  # noqa: F401  (must load before pycolmap; see spaceport_dagster/__init__.py)
