"""PlayCanvas SOG v2 bundles: writer, reader and the compression stage (no dagster here)."""

from .encode import EncodeOptions
from .format import SogFormatError
from .reader import read_sog, sog_to_ply
from .writer import write_sog

__all__ = ["EncodeOptions", "SogFormatError", "read_sog", "sog_to_ply", "write_sog"]
