"""A perceptual fingerprint (difference hash) that survives re-encoding and resizing, to spot copies."""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_SIDE = 16  # 16 x 16 = 256 bits


def dhash(image: Image.Image) -> int:
    """Signs of horizontal brightness steps on a 17x16 thumbnail, as a 256-bit integer."""
    from .normalize import to_8bit_rgb

    small = (image if image.mode in ("RGB", "L") else to_8bit_rgb(image)).convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BOX)
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
