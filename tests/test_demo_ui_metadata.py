"""UI metadata builders: the top-down picture of a sparse model, timing tables, side-by-side thumbnails."""

from __future__ import annotations

import base64
import io
import re
import zlib  # noqa: F401  - before pycolmap (see stages/sfm_preview.png_bytes)
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaceport_dagster.stages.sfm_preview import render_top_down, top_down_markdown
from spaceport_dagster.stages.ui_metadata import links_markdown, side_by_side_markdown, timings_markdown

BACKGROUND = (250, 250, 248)


def decode_data_uri(markdown: str) -> Image.Image:
    match = re.search(r"\(data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert match, "no inline image"
    return Image.open(io.BytesIO(base64.b64decode(match.group(1))))


def test_top_down_draws_points_in_colour_and_cameras_north_up() -> None:
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(-20, 20, (2000, 2)), rng.uniform(0, 3, 2000)]
    colours = np.tile([20, 160, 40], (2000, 1)).astype(np.uint8)
    centres = np.array([[-10.0, 15.0, 40.0], [10.0, -15.0, 40.0]])
    forwards = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    image = np.asarray(render_top_down(points, colours, centres, forwards, size=400))
    green = (image[..., 0] == 20) & (image[..., 1] == 160) & (image[..., 2] == 40)
    red = (image[..., 0] > 180) & (image[..., 1] < 80) & (image[..., 2] < 80)
    assert green.mean() > 0.03  # 2000 dots of 2x2 px on a ~400x400 picture
    ys, xs = np.nonzero(red)
    assert len(xs) > 20
    # two camera markers: the north-west one top-left, the south-east one bottom-right
    left, right = xs < image.shape[1] / 2, xs >= image.shape[1] / 2
    assert ys[left].mean() < image.shape[0] / 2 < ys[right].mean()


def test_top_down_markdown_from_a_real_reconstruction(tmp_path: Path) -> None:
    import pycolmap

    rec = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", 500.0, 800, 600)
    rec.add_camera(camera)
    rng = np.random.default_rng(1)
    for _ in range(300):
        rec.add_point3D(rng.uniform(-5, 5, 3), pycolmap.Track(), np.array([200, 30, 30], np.uint8))
    markdown, png = top_down_markdown(rec, georegistered=False, size=300)
    assert "300 points" in markdown and "0 registered cameras" in markdown and "not georegistered" in markdown
    shown = decode_data_uri(markdown)
    assert shown.format == "PNG" and max(shown.size) <= 300
    assert Image.open(io.BytesIO(png)).size == shown.size


def test_timings_and_links_tables(tmp_path: Path) -> None:
    table = timings_markdown({"features": 12.0, "matching": 6.0, "mapping": 2.0})
    assert "| features | 12.0 | 60 % | `████████████████████` |" in table
    assert "| mapping | 2.0 | 10 % | `███` |" in table
    assert "**20.0**" in table
    assert timings_markdown({}) == "_no timings recorded_"
    assert links_markdown({"image_set": "/a/demo/image_set/"}) == "- **image_set**: `/a/demo/image_set/`"
    photo, render = tmp_path / "p.png", tmp_path / "r.png"
    Image.new("RGB", (640, 480), (10, 20, 30)).save(photo)
    Image.new("RGB", (640, 480), (200, 20, 30)).save(render)
    grid = side_by_side_markdown([("view 8", photo, render)], max_side=160)
    assert grid.count("data:image/jpeg;base64,") == 2 and "| view 8 |" in grid
    assert decode_data_uri(grid).size == (160, 120)


def test_inline_thumbnail_fits_the_ui_inline_limit_and_keeps_the_picture() -> None:
    from spaceport_dagster.stages.ui_metadata import INLINE_MARKDOWN_LIMIT, inline_picture_markdown

    photos = sorted((Path(__file__).parents[2] / "shared/datasets/lund/images").glob("*.jpg"))
    photo = Image.open(photos[0]) if photos else None
    rng = np.random.default_rng(2)
    noisy = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))  # the hardest case to compress
    half = np.full((200, 400, 3), 250, np.uint8)
    half[:, 200:] = (20, 160, 40)  # a plot-like picture: plain background, a green half
    for image in [noisy, Image.fromarray(half)] + ([photo] if photo else []):
        text = inline_picture_markdown(image, "view", "a caption")
        assert len(text) < INLINE_MARKDOWN_LIMIT and text.endswith("\n\na caption")
        match = re.search(r"\(data:image/webp;base64,([A-Za-z0-9+/=]+)\)", text)
        assert match, text[:80]
        shown = Image.open(io.BytesIO(base64.b64decode(match.group(1))))
        assert shown.format == "WEBP" and max(shown.size) >= 64
        assert abs(shown.width / shown.height - image.width / image.height) < 0.05
    plot = Image.open(io.BytesIO(base64.b64decode(re.search(
        r"base64,([A-Za-z0-9+/=]+)", inline_picture_markdown(Image.fromarray(half), "plot")).group(1)))).convert("RGB")
    pixels = np.asarray(plot, dtype=np.int16)
    w = pixels.shape[1]
    assert pixels[:, : w // 3].mean() > 230  # the plain half stays plain
    assert abs(pixels[:, -w // 3 :, 1].mean() - 160) < 20 and pixels[:, -w // 3 :, 0].mean() < 60  # green stays green


def test_curve_svg_is_inline_and_follows_the_values() -> None:
    from spaceport_dagster.stages.ui_metadata import INLINE_MARKDOWN_LIMIT, curve_svg_markdown

    steps = list(range(0, 3001, 50))  # 61 evaluations: the points must be thinned to fit
    rising = [12 + 10 * s / 3000 for s in steps]
    flat = [15.0 for _ in steps]
    text = curve_svg_markdown(steps, {"psnr": rising, "baseline": flat}, caption="legend")
    assert len(text) < INLINE_MARKDOWN_LIMIT and text.endswith("\n\nlegend")
    svg = base64.b64decode(re.search(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", text).group(1)).decode()
    assert "d='M52 6V104H354'" in svg  # the y axis on the left, the x axis below
    assert ">22.0 dB</text>" in svg and ">12.0 dB</text>" in svg  # the y range's ends, with the unit
    assert ">step 0</text>" in svg and ">3000</text>" in svg
    lines = re.findall(r"points='([^']+)'", svg)
    assert len(lines) == 2
    first = [tuple(map(int, p.split(","))) for p in lines[0].split()]
    second = [tuple(map(int, p.split(","))) for p in lines[1].split()]
    assert first[0][0] == 52 and first[-1][0] == 354  # from the first step to the last
    assert first[0][1] == 104 and first[-1][1] == 6  # rises from the bottom (12 dB) to the top (22 dB)
    assert len({y for _, y in second}) == 1 and second[0][1] == round(104 - 3 / 10 * 98)  # flat at 15 dB
    with pytest.raises(ValueError, match="at least one step"):
        curve_svg_markdown([], {"psnr": []})
