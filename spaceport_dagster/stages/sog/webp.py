"""Lossless 8-bit RGBA WebP, with every pixel checked to survive the round trip."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .format import MAX_TEXTURE_SIDE, SogFormatError


@dataclass(frozen=True)
class WebpSettings:
    method: int = 2  # libwebp effort 0 (fast) .. 6; beyond 2 these textures shrink by < 0.1 %
    quality: int = 50  # for lossless: how hard to search, 0..100
    verify: bool = True


def encode(rgba: np.ndarray, settings: WebpSettings | None = None) -> bytes:
    """Lossless WebP of an (H, W, 4) uint8 array; `exact` keeps RGB under alpha 0 (libwebp zeroes it otherwise)."""
    settings = settings or WebpSettings()
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an (H, W, 4) uint8 array, got {rgba.shape} {rgba.dtype}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(
        buf, "WEBP", lossless=True, exact=True, quality=settings.quality, method=settings.method
    )
    data = buf.getvalue()
    if settings.verify and not np.array_equal(decode(data), rgba):
        raise SogFormatError("WebP encoding changed pixel values; the Pillow/libwebp build is not lossless")
    return data


def image_size(data: bytes, name: str = "image") -> tuple[int, int]:
    """(W, H) from the WebP header, without decoding the pixels."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "WEBP":
                raise SogFormatError(f"{name} is {im.format}, not WebP")
            return im.size
    except SogFormatError:
        raise
    except Exception as exc:
        raise SogFormatError(f"{name} is not a readable WebP image ({exc})") from None


def decode(data: bytes, name: str = "image") -> np.ndarray:
    """(H, W, 4) uint8 pixels of a WebP image (RGB images get A = 255)."""
    width, height = image_size(data, name)
    if width > MAX_TEXTURE_SIDE or height > MAX_TEXTURE_SIDE:
        raise SogFormatError(f"{name} is {width}x{height}; SOG textures are at most {MAX_TEXTURE_SIDE} a side")
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGBA"), dtype=np.uint8)
    except Exception as exc:
        raise SogFormatError(f"{name} could not be decoded ({exc})") from None
