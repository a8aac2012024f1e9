"""Spaceport Dagster: drone photos to a web-ready Gaussian splat, as Dagster assets."""

# pycolmap 4.2.1 corrupts the heap of a later zlib compression when it is imported before zlib is loaded
# (seen with a two-line script); loading zlib first avoids it in every process that imports this package.
import zlib  # noqa: F401
