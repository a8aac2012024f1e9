"""Camera facts from EXIF, coping with the quirks of real uploads.

- Make/Model in DJI files are NUL-padded; strings are stripped of NULs and whitespace.
- Downscaled copies keep the original EXIF, so EXIF pixel dimensions are ignored: size comes from decoding.
- A GPS IFD can exist with no coordinates (Nikon): GPS is reported only when latitude and longitude exist.
- EXIF GPS altitude is above sea level; DJI's XMP RelativeAltitude (height above take-off) is read too.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from PIL import Image

EXIF_IFD = 0x8769
GPS_IFD = 0x8825
TAG_MAKE, TAG_MODEL, TAG_ORIENTATION, TAG_DATETIME = 0x010F, 0x0110, 0x0112, 0x0132
TAG_FOCAL, TAG_FOCAL_35, TAG_DATETIME_ORIGINAL = 0x920A, 0xA405, 0x9003
TAG_SUBSEC_ORIGINAL = 0x9291
_RELATIVE_ALTITUDE = re.compile(rb'RelativeAltitude(?:="|>)\s*([+-]?[0-9.]+)')


@dataclass
class GpsFix:
    latitude: float
    longitude: float
    altitude: float | None  # metres above sea level, when EXIF has it
    relative_altitude: float | None  # metres above take-off (DJI XMP), when present


@dataclass
class CameraExif:
    make: str | None
    model: str | None
    focal_length_mm: float | None
    focal_length_35mm: float | None
    orientation: int
    captured_at: str | None  # ISO 8601, camera local time (EXIF has no zone)
    gps: GpsFix | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def camera_key(self) -> str:
        return " ".join(p for p in (self.make, self.model) if p) or "unknown camera"


def clean_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if math.isfinite(number) else None


def _dms(value: Any) -> float | None:
    try:
        d, m, s = (float(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    result = d + m / 60.0 + s / 3600.0
    return result if math.isfinite(result) else None


def parse_gps(gps: dict[int, Any], raw: bytes = b"") -> GpsFix | None:
    lat, lon = _dms(gps.get(2)), _dms(gps.get(4))
    if lat is None or lon is None:
        return None
    if clean_text(gps.get(1)) == "S":
        lat = -lat
    if clean_text(gps.get(3)) == "W":
        lon = -lon
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    altitude = _number(gps.get(6))
    ref = gps.get(5)
    if altitude is not None and ref in (1, b"\x01"):
        altitude = -altitude
    match = _RELATIVE_ALTITUDE.search(raw)
    relative = _number(match.group(1).decode()) if match else None
    return GpsFix(lat, lon, altitude, relative)


def _timestamp(value: Any, subsec: Any = None) -> str | None:
    text = clean_text(value)
    if not text:
        return None
    try:
        moment = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    iso = moment.isoformat()
    sub = clean_text(subsec)
    return f"{iso}.{sub}" if sub and sub.isdigit() else iso


def read_camera_exif(image: Image.Image, raw: bytes = b"") -> CameraExif:
    """EXIF facts of an opened image; `raw` (the file bytes) lets XMP fields be read too."""
    exif = image.getexif()
    sub = exif.get_ifd(EXIF_IFD) if EXIF_IFD in exif else {}
    gps = exif.get_ifd(GPS_IFD) if GPS_IFD in exif else {}
    focal = _number(sub.get(TAG_FOCAL))
    focal35 = _number(sub.get(TAG_FOCAL_35))
    orientation = exif.get(TAG_ORIENTATION, 1)
    return CameraExif(
        make=clean_text(exif.get(TAG_MAKE)),
        model=clean_text(exif.get(TAG_MODEL)),
        focal_length_mm=focal if focal and focal > 0 else None,
        focal_length_35mm=focal35 if focal35 and focal35 > 0 else None,
        orientation=int(orientation) if orientation in range(1, 9) else 1,
        captured_at=_timestamp(sub.get(TAG_DATETIME_ORIGINAL) or exif.get(TAG_DATETIME), sub.get(TAG_SUBSEC_ORIGINAL)),
        gps=parse_gps(dict(gps), raw),
    )
