"""A top-down picture of a sparse reconstruction: points in their colours, cameras as arrows, north up.

For the Dagster UI (a PNG data URI inside markdown metadata) and for people reading report folders.
Pillow only, so the SfM container needs nothing more. Works on any model; a georegistered one (ENU metres)
gets a scale bar in metres and north up, otherwise the model's own x/y axes and units are shown.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (250, 250, 248)
CAMERA = (214, 40, 40)


def _nice_length(span: float) -> float:
    """A round scale-bar length around a fifth of `span`."""
    target = span / 5
    if target <= 0 or not math.isfinite(target):
        return 1.0
    power = 10 ** math.floor(math.log10(target))
    return min((m * power for m in (1, 2, 5, 10)), key=lambda v: abs(v - target))


def render_top_down(points: np.ndarray, colours: np.ndarray, centres: np.ndarray, forwards: np.ndarray,
                    size: int = 560, metres: bool = True, clip_percentile: float = 1.0) -> Image.Image:
    """points (N, 3), colours (N, 3) uint8, camera centres and viewing directions (M, 3), in a z-up frame."""
    pts = np.asarray(points, float).reshape(-1, 3)
    cams = np.asarray(centres, float).reshape(-1, 3)
    xy = np.concatenate([pts[:, :2], cams[:, :2]]) if len(pts) or len(cams) else np.zeros((1, 2))
    if len(pts) > 20:  # ignore far outliers when framing
        lo = np.percentile(pts[:, :2], clip_percentile, axis=0)
        hi = np.percentile(pts[:, :2], 100 - clip_percentile, axis=0)
        lo = np.minimum(lo, cams[:, :2].min(axis=0)) if len(cams) else lo
        hi = np.maximum(hi, cams[:, :2].max(axis=0)) if len(cams) else hi
    else:
        lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-6))
    margin = 28
    scale = (size - 2 * margin - 22) / span  # the picture, legend row included, fits in size x size
    width = int((hi[0] - lo[0]) * scale) + 2 * margin
    height = int((hi[1] - lo[1]) * scale) + 2 * margin + 22

    def to_px(p: np.ndarray) -> np.ndarray:
        return np.stack([margin + (p[..., 0] - lo[0]) * scale, height - 22 - margin - (p[..., 1] - lo[1]) * scale], -1)

    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    if len(pts):
        order = np.argsort(pts[:, 2])  # higher points drawn last, as seen from above
        px = np.round(to_px(pts[order, :2])).astype(int)
        rgb = np.asarray(colours, np.uint8).reshape(-1, 3)[order]
        canvas = np.asarray(image).copy()
        inside = (px[:, 0] >= 1) & (px[:, 0] < width - 1) & (px[:, 1] >= 1) & (px[:, 1] < height - 1)
        for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):  # 2x2 dots
            canvas[px[inside, 1] + dy, px[inside, 0] + dx] = rgb[inside]
        image = Image.fromarray(canvas)
        draw = ImageDraw.Draw(image)
    arrow = 0.035 * span
    for centre, forward in zip(cams, np.asarray(forwards, float).reshape(-1, 3), strict=True):
        c = to_px(centre[:2])
        flat = forward[:2]
        reach = float(np.linalg.norm(flat))
        tip = to_px(centre[:2] + (flat / reach * arrow * max(reach, 0.35) if reach > 1e-6 else 0))
        draw.line([tuple(c), tuple(tip)], fill=CAMERA, width=2)
        draw.ellipse([c[0] - 3.5, c[1] - 3.5, c[0] + 3.5, c[1] + 3.5], fill=CAMERA, outline=(255, 255, 255))
    bar = _nice_length(span)
    x0, y0 = margin, height - 16
    draw.line([(x0, y0), (x0 + bar * scale, y0)], fill=(30, 30, 30), width=3)
    unit = "m" if metres else "units"
    draw.text((x0 + bar * scale + 6, y0 - 7), f"{bar:g} {unit}", fill=(30, 30, 30))
    ax, ay = width - margin - 6, height - 8  # north (or +y) arrow, drawn: the default font has no arrows
    draw.polygon([(ax, ay - 16), (ax - 5, ay - 6), (ax + 5, ay - 6)], fill=(30, 30, 30))
    draw.line([(ax, ay - 6), (ax, ay)], fill=(30, 30, 30), width=2)
    draw.text((ax - 16 - (12 if not metres else 0), ay - 14), "N" if metres else "+y", fill=(30, 30, 30))
    return image


def reconstruction_arrays(reconstruction: Any, max_points: int = 60_000) -> tuple[np.ndarray, ...]:
    """(points, colours, camera centres, viewing directions) of a pycolmap.Reconstruction."""
    points3d = reconstruction.points3D
    ids = list(points3d.keys())
    if len(ids) > max_points:
        ids = [ids[i] for i in np.linspace(0, len(ids) - 1, max_points).astype(int)]
    pts = np.array([points3d[i].xyz for i in ids]).reshape(-1, 3)
    rgb = np.array([points3d[i].color for i in ids], np.uint8).reshape(-1, 3)
    centres, forwards = [], []
    for image_id in reconstruction.reg_image_ids():
        image = reconstruction.image(image_id)
        centres.append(np.asarray(image.projection_center()))
        forwards.append(np.asarray(image.viewing_direction()))
    return pts, rgb, np.array(centres).reshape(-1, 3), np.array(forwards).reshape(-1, 3)


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding. Note: in a process that imported pycolmap 4.2 before zlib was first loaded, any zlib
    compression (Pillow's PNG encoder included) corrupts the heap; spaceport_dagster/__init__.py loads zlib
    first, before any module of the package (this one included) can import pycolmap."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def top_down_markdown(reconstruction: Any, georegistered: bool, size: int = 560) -> tuple[str, bytes]:
    """(markdown with the picture inline, the PNG bytes to save beside the artifact)."""
    pts, rgb, centres, forwards = reconstruction_arrays(reconstruction)
    png = png_bytes(render_top_down(pts, rgb, centres, forwards, size=size, metres=georegistered))
    frame = "east-north-up metres, north up" if georegistered else "model frame (not georegistered)"
    text = (f"![top-down view of the sparse reconstruction]({data_uri(png)})\n\n"
            f"{len(pts):,} points in their colours, {len(centres)} registered cameras (red: centre and viewing "
            f"direction); {frame}.")
    return text, png
