"""Markdown builders for metadata that reads well in the Dagster UI: stage timings as a bar table, links
between artifacts, and image grids (held-out renders beside the photos) as inline PNG/JPEG data URIs.

Stages return these through `report.md(...)`; each builder returns plain markdown text.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image


def timings_markdown(seconds: dict[str, float], title: str = "step") -> str:
    """A table of step timings with a proportional bar per step and the total."""
    rows = [(name, float(value)) for name, value in seconds.items() if value is not None]
    if not rows:
        return "_no timings recorded_"
    total = sum(v for _, v in rows)
    longest = max(v for _, v in rows) or 1.0
    lines = [f"| {title} | seconds | share | |", "|---|---:|---:|---|"]
    for name, value in rows:
        bar = "█" * max(1, round(20 * value / longest)) if value > 0 else ""
        share = f"{100 * value / total:.0f} %" if total > 0 else "-"
        lines.append(f"| {name} | {value:.1f} | {share} | {f'`{bar}`' if bar else ''} |")  # no empty code span
    lines.append(f"| **total** | **{total:.1f}** | | |")
    return "\n".join(lines)


def links_markdown(links: dict[str, str]) -> str:
    """Bullet list of named artifact locations (URIs or paths), e.g. upstream inputs and this output."""
    return "\n".join(f"- **{name}**: `{uri}`" for name, uri in links.items()) or "_no links_"


def image_data_uri(image: Image.Image, max_side: int = 320, quality: int = 80) -> str:
    """A downscaled JPEG data URI (small enough to keep the event log light)."""
    thumb = image.convert("RGB")
    thumb.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    thumb.save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def side_by_side_markdown(pairs: list[tuple[str, Path, Path]], max_side: int = 320) -> str:
    """A table with, per row, a caption, the photo and the render (e.g. held-out views)."""
    lines = ["| view | photo | render |", "|---|---|---|"]
    for caption, photo, render in pairs:
        with Image.open(photo) as a, Image.open(render) as b:
            lines.append(f"| {caption} | ![photo]({image_data_uri(a, max_side)}) | "
                         f"![render]({image_data_uri(b, max_side)}) |")
    return "\n".join(lines)
