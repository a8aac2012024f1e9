"""EXIF for the demo photos, written with Pillow the way a drone writes it.

IFD0: Make, Model, DateTime, Orientation; Exif IFD: DateTimeOriginal, FocalLength, FocalLengthIn35mmFilm,
pixel dimensions; GPS IFD: latitude/longitude as degrees-minutes-seconds rationals, altitude above sea level;
plus a DJI-style XMP packet with the height above take-off (drone-dji:RelativeAltitude) and above sea level.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from PIL import Image, TiffImagePlugin

EXIF_IFD, GPS_IFD = 0x8769, 0x8825


@dataclass
class PhotoFacts:
    make: str
    model: str
    focal_length_mm: float
    focal_length_35mm: int
    captured_at: datetime
    latitude: float
    longitude: float
    altitude_m: float  # above sea level
    relative_altitude_m: float  # above take-off


def _rational(value: float, denominator: int) -> TiffImagePlugin.IFDRational:
    return TiffImagePlugin.IFDRational(Fraction(round(value * denominator), denominator))


def _dms(value: float) -> tuple[TiffImagePlugin.IFDRational, ...]:
    """Degrees, minutes and seconds (to 1e-6 s, about 0.03 mm) of an absolute angle."""
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return _rational(degrees, 1), _rational(minutes, 1), _rational(seconds, 1_000_000)


def build_exif(facts: PhotoFacts, width: int, height: int) -> Image.Exif:
    exif = Image.Exif()
    stamp = facts.captured_at.strftime("%Y:%m:%d %H:%M:%S")
    exif[0x010F] = facts.make
    exif[0x0110] = facts.model
    exif[0x0112] = 1
    exif[0x0132] = stamp
    sub = exif.get_ifd(EXIF_IFD)
    sub[0x9003] = stamp  # DateTimeOriginal
    sub[0x920A] = _rational(facts.focal_length_mm, 100)  # FocalLength
    sub[0xA405] = int(facts.focal_length_35mm)  # FocalLengthIn35mmFilm
    sub[0xA002] = width  # PixelXDimension
    sub[0xA003] = height
    gps = exif.get_ifd(GPS_IFD)
    gps[0] = b"\x02\x03\x00\x00"  # GPSVersionID 2.3
    gps[1] = "N" if facts.latitude >= 0 else "S"
    gps[2] = _dms(facts.latitude)
    gps[3] = "E" if facts.longitude >= 0 else "W"
    gps[4] = _dms(facts.longitude)
    gps[5] = 0 if facts.altitude_m >= 0 else 1  # above / below sea level
    gps[6] = _rational(abs(facts.altitude_m), 1000)
    return exif


def xmp_packet(facts: PhotoFacts) -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:drone-dji="http://www.dji.com/drone-dji/1.0/" '
        f'drone-dji:RelativeAltitude="{facts.relative_altitude_m:+.3f}" '
        f'drone-dji:AbsoluteAltitude="{facts.altitude_m:+.3f}"/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


def save_jpeg(pixels, path, facts: PhotoFacts, quality: int = 92) -> None:
    """Write `pixels` (H, W, 3 uint8) as a JPEG carrying `facts` in EXIF and XMP."""
    image = Image.fromarray(pixels)
    exif = build_exif(facts, image.width, image.height)
    image.save(path, "JPEG", quality=quality, exif=exif, xmp=xmp_packet(facts))
