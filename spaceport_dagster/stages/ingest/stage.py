"""Ingest: decode every uploaded file, refuse what cannot be used (with a reason), record camera facts.

Output: `images/` (usable photos in one form every later stage reads: see normalize.py) and `manifest.json`
(usable images with their upload path, EXIF facts and decoded size; refused files with reasons).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from spaceport_dagster.stages.config import from_dict
from spaceport_dagster.stages.report import CheckOutcome, StageReport, md

from .exif import CameraExif, read_camera_exif
from .fingerprint import dhash, hamming
from .normalize import store_photo, stored_name
from .sources import iter_source

ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "TIFF"}
Image.MAX_IMAGE_PIXELS = 400_000_000  # 400 MP: far above any drone camera, below a decompression bomb


@dataclass
class IngestConfig:
    min_images: int = 5
    recommended_images: int = 20
    near_duplicate_bits: int = 20  # of 256 hash bits; a re-encoded half-size copy differs in <= 14, distinct survey photos in >= 75


def decode(data: bytes) -> Image.Image:
    """Open and fully decode `data`; raises ValueError with a readable reason."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ValueError(f"image too large to decode safely ({exc})") from None
    except UnidentifiedImageError:
        raise ValueError("not an image (no known image signature)") from None
    except Exception as exc:  # a recognised signature with a broken header
        raise ValueError(f"corrupt image header ({type(exc).__name__}: {exc})") from None
    if image.format not in ACCEPTED_FORMATS:
        raise ValueError(f"unsupported image format {image.format}; accepted: JPEG (incl. MPO), PNG, TIFF")
    try:
        image.load()
    except OSError as exc:
        text = str(exc)
        reason = "truncated file" if "truncated" in text.lower() else f"corrupt image data ({text})"
        raise ValueError(reason) from None
    except Exception as exc:  # decoders raise assorted errors on garbage
        raise ValueError(f"corrupt image data ({type(exc).__name__}: {exc})") from None
    if image.width < 64 or image.height < 64:
        raise ValueError(f"image is too small for reconstruction ({image.width}x{image.height} px)")
    return image


def camera_facts(image: Image.Image, data: bytes, name: str, log: logging.Logger) -> CameraExif:
    """EXIF facts, or none (the photo is still usable) when the EXIF block is too broken to read."""
    try:
        return read_camera_exif(image, data)
    except Exception as exc:
        log.warning(f"{name}: EXIF unreadable ({type(exc).__name__}: {exc}); camera facts unknown")
        return CameraExif(None, None, None, None, 1, None, None)


def ingest(source: str, output: Path, config: IngestConfig, log: logging.Logger) -> StageReport:
    images_dir = output / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    usable: list[dict[str, Any]] = []
    refused: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    fingerprints: list[tuple[int, str]] = []
    taken: set[str] = set()

    def refuse(name: str, reason: str) -> None:
        refused.append({"source": name, "reason": reason})
        log.warning(f"refused {name}: {reason}")

    for item in iter_source(source):
        if item.data is None:
            refuse(item.name, item.refusal or "cannot be read")
            continue
        digest = hashlib.sha256(item.data).hexdigest()
        if digest in seen:
            refuse(item.name, f"exact duplicate of {seen[digest]}")
            continue
        try:
            image = decode(item.data)
            exif = camera_facts(image, item.data, item.name, log)
            stored = store_photo(image, item.data, exif.orientation)
        except ValueError as exc:
            refuse(item.name, str(exc))
            continue
        except Exception as exc:  # whatever a hostile file provokes: refuse that file, never the upload
            refuse(item.name, f"could not be processed ({type(exc).__name__}: {exc})")
            continue
        seen[digest] = item.name
        fingerprint = dhash(image)
        twin = next((name for other, name in fingerprints if hamming(fingerprint, other) <= config.near_duplicate_bits),
                    None)
        if twin is not None:
            refuse(item.name, f"near-duplicate of {twin} (the same photo re-encoded or resized)")
            continue
        fingerprints.append((fingerprint, item.name))
        name = stored_name(item.name, stored.format, taken)
        (images_dir / name).write_bytes(stored.data)
        usable.append({
            "name": name, "source": item.name, "sha256": digest, "format": image.format,
            "stored_format": stored.format, "stored_as": stored.how, "mode": image.mode,
            "width": stored.width, "height": stored.height, "bytes": len(stored.data), **exif.to_dict(),
            "camera": exif.camera_key,
        })
        if stored.how != "original":
            log.info(f"{item.name} -> {name}: {stored.how}")
    usable.sort(key=lambda r: r["name"])
    manifest = {"source": source, "images": usable, "refused": refused}
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log.info(f"ingest: {len(usable)} usable, {len(refused)} refused from {source}")
    return _report(manifest, config)


def _report(manifest: dict[str, Any], config: IngestConfig) -> StageReport:
    usable, refused = manifest["images"], manifest["refused"]
    cameras = Counter(r["camera"] for r in usable)
    sizes = Counter(f"{r['width']}x{r['height']}" for r in usable)
    with_gps = sum(1 for r in usable if r["gps"])
    refused_table = "\n".join(f"| {r['source']} | {r['reason']} |" for r in refused)
    metadata: dict[str, Any] = {
        "usable_images": len(usable),
        "refused_files": len(refused),
        "cameras": dict(cameras),
        "resolutions": dict(sizes),
        "gps_images": with_gps,
        "gps_coverage": round(with_gps / len(usable), 3) if usable else 0.0,
        "total_bytes": sum(r["bytes"] for r in usable),
    }
    if refused:
        metadata["refused"] = md("| file | reason |\n|---|---|\n" + refused_table)
    checks = [
        CheckOutcome("enough_usable_images", len(usable) >= config.min_images,
                     f"{len(usable)} usable images (need at least {config.min_images})",
                     metadata={"value": len(usable), "threshold": config.min_images}),
        CheckOutcome("recommended_image_count", len(usable) >= config.recommended_images,
                     f"{len(usable)} usable images ({config.recommended_images}+ recommended for a good splat)",
                     blocking=False, metadata={"value": len(usable), "threshold": config.recommended_images}),
        CheckOutcome("no_refused_files", not refused,
                     f"{len(refused)} file(s) refused and excluded" + (": " + "; ".join(
                         f"{r['source']}: {r['reason']}" for r in refused[:10]) if refused else ""),
                     blocking=False, metadata={"value": len(refused), "threshold": 0}),
    ]
    return StageReport(metadata, checks)


def run(inputs: dict[str, str], output: Path, config: dict[str, Any], log: logging.Logger) -> StageReport:
    if "source" not in inputs:
        raise ValueError("ingest needs an input named 'source' (a folder or an s3:// prefix of uploads)")
    return ingest(inputs["source"], output, from_dict(IngestConfig, config), log)
