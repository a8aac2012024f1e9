"""Spatial tiles of one survey: partition the ground plane, restrict a training to a tile, merge the tiles.

A survey too large for one GPU trains as K tiles, each the ordinary train stage with a tile spec in its
config (`restrict.py`), and the merge stage (`stages/merge`) joins them into one standard PLY (`merge.py`).
"""
