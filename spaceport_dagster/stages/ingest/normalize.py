"""One stored form every later stage reads: 8-bit JPEG or PNG, upright, no payload beyond the photo.

- A plain JPEG (8-bit RGB or greyscale, upright) keeps its compressed data bit for bit (no second lossy
  generation); only the segments a reader needs are kept (JFIF, EXIF, ICC profile, Adobe colour transform).
  Comments, XMP, maker segments and anything after the end-of-image marker (an appended zip, an MPO's
  second frame) are dropped: COLMAP's image writer fails on a large comment.
- Anything else (16-bit, float, palette, alpha, CMYK, rotated by EXIF) is decoded, converted to 8-bit RGB
  and encoded again: JPEG at quality 95 when the upload was lossy, else lossless PNG.
- The stored name is ASCII, short, unique case-insensitively, and ends in the real format's extension (the
  upload's own when it names that format, e.g. `.JPG`).
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png"}
TRUE_SUFFIXES = {"JPEG": {".jpg", ".jpeg", ".jpe"}, "PNG": {".png"}}  # kept as uploaded (DJI_0018.JPG stays)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".png", ".tif", ".tiff"}
MAX_STEM_BYTES = 100  # file names stay far below the 255-byte limit of common file systems

_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST markers carry no length


@dataclass
class StoredPhoto:
    data: bytes
    format: str  # "JPEG" or "PNG"
    width: int
    height: int
    how: str  # "original", "cleaned (...)" or "re-encoded (...)"


def _keep_segment(marker: int, payload: bytes) -> bool:
    if marker == 0xE0:
        return payload.startswith(b"JFIF\x00")
    if marker == 0xE1:
        return payload.startswith(b"Exif\x00\x00")
    if marker == 0xE2:
        return payload.startswith(b"ICC_PROFILE\x00")
    if marker == 0xEE:
        return payload.startswith(b"Adobe")
    return not (0xE0 <= marker <= 0xEF or marker == 0xFE)  # other APPn and COM go; tables and frames stay


def clean_jpeg(data: bytes) -> tuple[bytes, list[str]]:
    """The JPEG's first image with only the segments a reader needs; (bytes, what was dropped).
    Raises ValueError when the marker structure cannot be followed."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("no JPEG start-of-image marker")
    out = bytearray(b"\xff\xd8")
    dropped: list[str] = []
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise ValueError(f"expected a marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            out += b"\xff\xd9"
            if pos < n:
                dropped.append(f"{n - pos} bytes after the end of the image")
            return bytes(out), dropped
        if marker in _STANDALONE:
            out += bytes((0xFF, marker))
            continue
        if pos + 2 > n:
            raise ValueError("segment length runs past the end of the file")
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if length < 2 or pos + length > n:
            raise ValueError(f"bad segment length {length} at byte {pos}")
        payload = data[pos + 2:pos + length]
        segment = data[pos - 2:pos + length]
        pos += length
        if not _keep_segment(marker, payload):
            dropped.append("comment" if marker == 0xFE else f"APP{marker - 0xE0} segment")
            continue
        out += segment
        if marker == _SOS:  # entropy-coded data up to the next marker that is not a stuffed byte or RST
            start = pos
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    raise ValueError("image data has no end-of-image marker")
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    pos += 2
                    continue
                break
            out += data[start:pos]
    raise ValueError("image data has no end-of-image marker")


def to_8bit_rgb(image: Image.Image) -> Image.Image:
    """Any decoded mode as 8-bit RGB; high bit depths are scaled, not clipped, and transparency is dropped."""
    mode = image.mode
    if mode in ("RGB",):
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        if mode.startswith("I;16"):
            scaled = values / 257.0
        elif mode == "F" and values.size and values.min() >= 0.0 and values.max() <= 1.0:
            scaled = values * 255.0  # float photos are usually 0..1
        else:
            low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
            scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        grey = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
        return grey.convert("RGB")
    if mode == "P" or mode == "PA":
        image = image.convert("RGBA")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ValueError(f"unsupported pixel mode {mode} ({exc})") from None


def store_photo(image: Image.Image, data: bytes, orientation: int) -> StoredPhoto:
    """The bytes to store for a decoded upload (`image`, from `data`) in the one form later stages read."""
    lossy = image.format in ("JPEG", "MPO")
    if lossy and image.mode in ("RGB", "L") and orientation == 1:
        try:
            cleaned, dropped = clean_jpeg(data)
            with Image.open(io.BytesIO(cleaned)) as check:
                check.load()
            how = "original" if cleaned == data else "cleaned (dropped " + ", ".join(dict.fromkeys(dropped)) + ")"
            return StoredPhoto(cleaned, "JPEG", image.width, image.height, how)
        except (ValueError, OSError, SyntaxError):
            pass  # an unusual marker layout Pillow still decodes: store a fresh encoding instead
    reasons = []
    if orientation != 1:
        reasons.append(f"EXIF orientation {orientation} applied")
        image = ImageOps.exif_transpose(image)
    if image.mode != "RGB" and not (lossy and image.mode == "L"):
        reasons.append(f"{image.mode} pixels as 8-bit RGB")
    pixels = image if lossy and image.mode == "L" else to_8bit_rgb(image)
    out = io.BytesIO()
    if lossy:
        pixels.save(out, format="JPEG", quality=95, exif=_upright_exif(image))
    else:
        pixels.save(out, format="PNG", compress_level=3)
        reasons.append(f"{image.format} stored as PNG" if image.format != "PNG" else "")
    how = "re-encoded (" + ", ".join(r for r in reasons if r) + ")" if any(reasons) else "re-encoded"
    return StoredPhoto(out.getvalue(), "JPEG" if lossy else "PNG", pixels.width, pixels.height, how)


def _upright_exif(image: Image.Image) -> bytes:
    """The EXIF block to keep, without the orientation tag (the pixels are upright); none when unreadable."""
    try:
        exif = image.getexif()
        exif.pop(0x0112, None)
        return exif.tobytes() if len(exif) else b""
    except Exception:  # a broken EXIF block is dropped rather than refusing the photo
        return b""


def stored_name(source: str, fmt: str, taken: set[str]) -> str:
    """A safe, unique (case-insensitively, within `taken`) file name with the real format's extension."""
    flat = source.replace("/", "__")
    base, dot, suffix = flat.rpartition(".")
    ext = EXTENSIONS[fmt]
    if dot and base and "." + suffix.lower() in IMAGE_SUFFIXES:
        flat = base  # the upload's own extension goes unless it names the real format
        if "." + suffix.lower() in TRUE_SUFFIXES[fmt] and suffix.isascii() and suffix.isalpha():
            ext = "." + suffix
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", flat).strip("._-") or "image"
    if len(stem) > MAX_STEM_BYTES:
        stem = stem[:MAX_STEM_BYTES - 9] + "-" + hashlib.sha1(source.encode()).hexdigest()[:8]
    candidate, i = stem + ext, 1
    while candidate.lower() in taken:
        candidate = f"{stem}-{i}{ext}"
        i += 1
    taken.add(candidate.lower())
    return candidate
