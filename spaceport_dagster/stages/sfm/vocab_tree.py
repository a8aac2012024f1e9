"""COLMAP vocabulary trees: checking a configured tree file, and building one from a database's features.

The vocabulary-tree matcher pairs each image with the ones most alike by their visual words, so matching grows
linearly with the survey when neither GPS nor capture order says which photos overlap. pycolmap 4.x reads
faiss-based trees only (COLMAP switched from flann in May 2025); a missing or legacy file makes COLMAP abort
the whole process (SIGABRT, no Python exception) when matching starts, after the features were extracted,
so the stage checks the file first.

A general tree (COLMAP publishes ones trained on Flickr100K) suits any survey; `build_vocab_tree` makes a
small one from the SIFT descriptors of a COLMAP database, e.g. the survey's own or earlier surveys'.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pycolmap

# The first int32 of a faiss tree is its format version (COLMAP retrieval/visual_index.cc); a legacy flann
# tree starts with its number of visual words instead.
VOCAB_TREE_VERSIONS = (1, 2)
SIFT_DIM = 128
EMBEDDING_DIM = 64  # COLMAP's default Hamming embedding


def check_vocab_tree(path: str) -> Path:
    """The vocabulary tree file at `path`, or a ValueError saying why COLMAP could not read it."""
    tree = Path(path).expanduser()
    if not tree.is_file():
        what = "is a folder" if tree.is_dir() else "does not exist"
        raise ValueError(f"vocab_tree_path {path!r} {what}: give a COLMAP vocabulary tree file (faiss format, "
                         "e.g. vocab_tree_faiss_flickr100K_words256K.bin from COLMAP's releases), or leave "
                         "vocab_tree_path empty")
    with tree.open("rb") as handle:
        head = handle.read(4)
    version = struct.unpack("<i", head)[0] if len(head) == 4 else None
    if version not in VOCAB_TREE_VERSIONS:
        raise ValueError(f"vocab_tree_path {path!r} is not a faiss vocabulary tree that pycolmap "
                         f"{pycolmap.__version__} reads (first int32 {version}, expected one of "
                         f"{VOCAB_TREE_VERSIONS}); a legacy flann tree (COLMAP before May 2025) must be "
                         "converted with COLMAP's vocab_tree_upgrader or replaced by a faiss tree")
    return tree


def database_descriptors(database: Path, max_per_image: int = 0) -> tuple[pycolmap.FeatureExtractorType, np.ndarray]:
    """Every image's SIFT descriptors as float32 rows (the first `max_per_image` of each when > 0)."""
    db = pycolmap.Database.open(database)
    try:
        kind, rows = None, []
        for image in db.read_all_images():
            descriptors = db.read_descriptors(image.image_id)
            kind = descriptors.type
            data = np.asarray(descriptors.to_float().data, np.float32)
            rows.append(data[:max_per_image] if max_per_image > 0 else data)
    finally:
        db.close()
    if kind is None or not sum(len(r) for r in rows):
        raise ValueError(f"{database} holds no feature descriptors to build a vocabulary tree from")
    return kind, np.concatenate(rows)


def build_vocab_tree(database: Path, out: Path, num_visual_words: int = 4096, max_per_image: int = 0,
                     num_threads: int = -1) -> Path:
    """Train a faiss vocabulary tree on the descriptors in `database` and write it to `out` (atomically)."""
    kind, descriptors = database_descriptors(database, max_per_image)
    if len(descriptors) < num_visual_words:
        raise ValueError(f"{len(descriptors)} descriptors cannot train {num_visual_words} visual words")
    index = pycolmap.VisualIndex.create(SIFT_DIM, EMBEDDING_DIM)
    options = pycolmap.VisualIndex.BuildOptions()
    options.num_visual_words = num_visual_words
    options.num_threads = num_threads
    index.build(options, pycolmap.FeatureDescriptorsFloat(kind, descriptors))
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    index.write(partial)
    os.replace(partial, out)
    return out
