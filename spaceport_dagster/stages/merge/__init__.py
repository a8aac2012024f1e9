"""The merge stage: the tiles of a tiled training in, one splat_model out (see stage.py)."""
