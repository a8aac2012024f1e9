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


# The Dagster UI shows a markdown entry inline on the asset's event page only while it is shorter than this;
# longer ones hide behind "[Show Markdown]" (dagster-ui, ui-core/src/metadata/MetadataEntry.tsx, 1.13).
INLINE_MARKDOWN_LIMIT = 1000
THUMBNAIL_SIDES = (256, 224, 192, 160, 144, 128, 112, 96, 80, 64)


def inline_picture_markdown(image: Image.Image, alt: str, caption: str = "") -> str:
    """The largest WebP thumbnail of `image` whose markdown the Dagster UI still shows inline.

    A photo fits at about 100 px, a plot on a plain background larger; the full picture stays in its own entry.
    """
    rgb = image.convert("RGB")
    for side in THUMBNAIL_SIDES:
        for quality in (50, 25):
            thumb = rgb.copy()
            thumb.thumbnail((side, side))
            buffer = io.BytesIO()
            thumb.save(buffer, "WEBP", quality=quality, method=6)
            text = f"![{alt}](data:image/webp;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')})" + (
                f"\n\n{caption}" if caption else "")
            if len(text) < INLINE_MARKDOWN_LIMIT:
                return text
    raise ValueError(f"no thumbnail of {alt!r} fits in {INLINE_MARKDOWN_LIMIT} characters of markdown")


CURVE_MARGINS = (52, 6, 6, 16)  # left (y labels), right, top, bottom (x labels), pixels


def curve_svg_markdown(steps: list[float], series: dict[str, list[float]], alt: str = "training curve",
                       caption: str = "", width: int = 360, height: int = 120, unit: str = "dB") -> str:
    """Lines of `series` against `steps` as a small SVG (one colour each, shared y range), inline in the UI,
    with axes: the y range's ends in `unit` on the left, the first and last step below.

    Every series has one value per step; points are thinned until the markdown is under the inline limit.
    """
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#7f7f7f")
    values = [v for ys in series.values() for v in ys]
    if not steps or not values:
        raise ValueError("a curve needs at least one step and one value")
    lo, hi = min(values), max(values)
    x0, x1 = min(steps), max(steps)
    span_x, span_y = (x1 - x0) or 1.0, (hi - lo) or 1.0
    left, right, top, bottom = CURVE_MARGINS
    plot_w, plot_h = width - left - right, height - top - bottom
    end = "text-anchor='end'"
    axes = (f"<style>text{{font:10px sans-serif;fill:#555}}</style>"
            f"<path d='M{left} {top}V{top + plot_h}H{left + plot_w}' fill='none' stroke='#999'/>"
            f"<text x='{left - 3}' y='{top + 8}' {end}>{hi:.1f} {unit}</text>"
            f"<text x='{left - 3}' y='{top + plot_h}' {end}>{lo:.1f} {unit}</text>"
            f"<text x='{left}' y='{height - 3}'>step {x0:g}</text>"
            f"<text x='{left + plot_w}' y='{height - 3}' {end}>{x1:g}</text>")
    for stride in range(1, len(steps) + 1):
        keep = sorted(set(range(0, len(steps), stride)) | {len(steps) - 1})
        lines = []
        for colour, ys in zip(colours, series.values(), strict=False):
            pts = " ".join(f"{round(left + (steps[i] - x0) / span_x * plot_w)},"
                           f"{round(top + plot_h - (ys[i] - lo) / span_y * plot_h)}" for i in keep)
            lines.append(f"<polyline points='{pts}' fill='none' stroke='{colour}'/>")
        svg = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>"
               f"<rect width='100%' height='100%' fill='#fff'/>{axes}{''.join(lines)}</svg>")
        text_md = f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode('ascii')})" + (
            f"\n\n{caption}" if caption else "")
        if len(text_md) < INLINE_MARKDOWN_LIMIT:
            return text_md
    raise ValueError(f"the curve does not fit in {INLINE_MARKDOWN_LIMIT} characters of markdown")
