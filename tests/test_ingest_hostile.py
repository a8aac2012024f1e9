"""Ingest on hostile and unusual uploads: every file is stored in a form later stages read, or refused with a
reason; nothing outside the upload is read; the upload is never changed. Inputs are small generated images."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image

from spaceport_dagster.stages.ingest.normalize import clean_jpeg
from spaceport_dagster.stages.ingest.sources import iter_source
from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest

LOG = logging.getLogger("test")
RNG = np.random.default_rng(7)


def _noise(size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A distinct photo-sized-enough image (random blocks, so no two are near-duplicates)."""
    blocks = RNG.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST)


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", **{"quality": 90, **kwargs})
    return out.getvalue()


def _run(src: Path, out: Path) -> dict:
    ingest(str(src), out, IngestConfig(min_images=1), LOG)
    return json.loads((out / "manifest.json").read_text())


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def _readable_by_colmap(path: Path) -> None:
    bitmap = pycolmap.Bitmap.read(str(path), True)
    assert bitmap is not None and bitmap.width > 0, f"COLMAP cannot read {path.name}"


def test_uncommon_pixel_modes_are_stored_as_8bit_rgb(tmp_path: Path) -> None:
    src = tmp_path / "up"
    src.mkdir()
    base = np.asarray(_noise().convert("L"), dtype=np.uint16)
    Image.fromarray(base * 257).save(src / "sixteen.png")
    _noise().convert("P", palette=Image.Palette.ADAPTIVE).save(src / "palette.png")
    _noise().convert("LA").save(src / "two_channel.png")
    _noise().convert("RGBA").save(src / "alpha.png")
    Image.fromarray(np.asarray(_noise().convert("L"), dtype=np.float32) / 255.0, "F").save(src / "float.tif")
    _noise().convert("CMYK").save(src / "cmyk.jpg", "JPEG")
    _noise().convert("1").save(src / "bilevel.tif")
    before = _snapshot(src)
    manifest = _run(src, tmp_path / "out")
    assert manifest["refused"] == []
    stored = {r["source"]: r for r in manifest["images"]}
    assert set(stored) == set(before)
    for record in stored.values():
        path = tmp_path / "out" / "images" / record["name"]
        with Image.open(path) as image:
            assert image.mode in ("RGB", "L") and image.format == record["stored_format"]
            assert path.suffix == {"JPEG": ".jpg", "PNG": ".png"}[image.format]
            assert image.size == (record["width"], record["height"]) == (96, 80)
        _readable_by_colmap(path)
    assert stored["cmyk.jpg"]["stored_format"] == "JPEG"  # lossy stays lossy, lossless stays lossless
    assert stored["float.tif"]["stored_format"] == "PNG" and "F pixels" in stored["float.tif"]["stored_as"]
    with Image.open(tmp_path / "out" / "images" / stored["sixteen.png"]["name"]) as sixteen:
        assert np.array_equal(np.asarray(sixteen.convert("L")), base.astype(np.uint8))  # scaled, not clipped
    assert _snapshot(src) == before


def test_names_get_the_real_extension_and_stay_short_and_unique(tmp_path: Path) -> None:
    src = tmp_path / "up"
    deep = src / "/".join(["a-very-long-folder-name-" + "x" * 40] * 5)
    deep.mkdir(parents=True)
    (deep / ("photo-" + "y" * 120 + ".JPG")).write_bytes(_jpeg(_noise()))
    (src / "noextension").write_bytes(_jpeg(_noise()))
    buf = io.BytesIO()
    _noise().save(buf, "PNG")
    (src / "lies.jpg").write_bytes(buf.getvalue())  # a PNG named .jpg
    (src / "jpg").write_bytes(_jpeg(_noise()))
    (src / "Same.jpg").write_bytes(_jpeg(_noise()))
    (src / "same.JPG").write_bytes(_jpeg(_noise()))
    (src / "dir").mkdir()
    (src / "dir" / "x.jpg").write_bytes(_jpeg(_noise()))
    (src / "dir__x.jpg").write_bytes(_jpeg(_noise()))
    (src / "ünïcode café.jpeg").write_bytes(_jpeg(_noise()))
    manifest = _run(src, tmp_path / "out")
    assert manifest["refused"] == []
    names = [r["name"] for r in manifest["images"]]
    assert len(manifest["images"]) == 9
    assert len({n.lower() for n in names}) == len(names)  # unique even case-folded
    for record in manifest["images"]:
        name = record["name"]
        assert len(name.encode()) <= 120 and name.isascii() and not name.startswith(".")
        with Image.open(tmp_path / "out" / "images" / name) as image:
            assert name.lower().endswith({"JPEG": (".jpg", ".jpeg"), "PNG": (".png",)}[image.format])
    by_source = {r["source"]: r["name"] for r in manifest["images"]}
    assert by_source["lies.jpg"] == "lies.png"
    assert by_source["jpg"] == "jpg.jpg" and by_source["noextension"] == "noextension.jpg"
    assert {by_source["Same.jpg"], by_source["same.JPG"]} == {"Same.jpg", "same-1.JPG"}  # own extension kept
    assert by_source["ünïcode café.jpeg"] == "n_code_caf.jpeg"
    long_source = next(s for s in by_source if s.startswith("a-very-long"))
    assert long_source.count("/") == 5  # the original path is kept in the manifest


def test_jpeg_payloads_are_dropped_and_the_photo_kept_bit_for_bit(tmp_path: Path) -> None:
    src = tmp_path / "up"
    src.mkdir()
    photo = _noise((128, 96))
    plain = _jpeg(photo)
    (src / "comment.jpg").write_bytes(_jpeg(photo.transpose(Image.Transpose.ROTATE_90), comment=b"c" * 65000))
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("secret.txt", "not a photo")
    (src / "zip_appended.jpg").write_bytes(plain + payload.getvalue())
    manifest = _run(src, tmp_path / "out")
    stored = {r["source"]: r for r in manifest["images"]}
    zipped = (tmp_path / "out" / "images" / stored["zip_appended.jpg"]["name"]).read_bytes()
    assert zipped == plain  # the trailing zip is gone, the compressed photo untouched
    assert "bytes after the end of the image" in stored["zip_appended.jpg"]["stored_as"]
    commented = tmp_path / "out" / "images" / stored["comment.jpg"]["name"]
    assert b"\xff\xfe" not in commented.read_bytes()[:200] and b"c" * 1000 not in commented.read_bytes()
    with Image.open(commented) as image, Image.open(io.BytesIO(plain)) as original:
        assert "comment" not in image.info
        assert image.size == (96, 128)  # it was a different (rotated) photo: not a near-duplicate
        del original
    # COLMAP's writer (what the export's undistorter uses) read and writes the stored photo
    bitmap = pycolmap.Bitmap.read(str(commented), True)
    assert bitmap.write(str(tmp_path / "rewritten.jpg"))


def test_clean_jpeg_refuses_a_broken_marker_structure() -> None:
    data = _jpeg(_noise())
    with pytest.raises(ValueError, match="no end-of-image"):
        clean_jpeg(data[:-2])
    with pytest.raises(ValueError, match="start-of-image"):
        clean_jpeg(b"GIF89a" + data)


def test_nothing_outside_the_upload_is_read_and_hidden_files_are_skipped(tmp_path: Path) -> None:
    src = tmp_path / "up"
    (src / ".git" / "objects").mkdir(parents=True)
    (src / ".git" / "objects" / "ab").write_bytes(_jpeg(_noise()))
    (src / ".hidden.jpg").write_bytes(_jpeg(_noise()))
    (src / "._resource_fork.jpg").write_bytes(b"\x00\x05\x16\x07")
    (src / "good.jpg").write_bytes(_jpeg(_noise()))
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(_jpeg(_noise()))
    (src / "escape.jpg").symlink_to(outside)
    (src / "passwd").symlink_to("/etc/passwd")
    (src / "dangling.jpg").symlink_to(src / "gone.jpg")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "far.jpg").write_bytes(_jpeg(_noise()))
    (src / "linked_folder").symlink_to(tmp_path / "outdir")
    (src / "inside.jpg").symlink_to(src / "good.jpg")
    os.mkfifo(src / "pipe.jpg")  # reading it would block forever
    manifest = _run(src, tmp_path / "out")
    assert [r["source"] for r in manifest["images"]] == ["good.jpg"]
    refused = {r["source"]: r["reason"] for r in manifest["refused"]}
    assert refused == {
        "escape.jpg": "symbolic link to a file outside the upload (not read)",
        "passwd": "symbolic link to a file outside the upload (not read)",
        "dangling.jpg": "broken symbolic link",
        "linked_folder": "symbolic link to a folder (not followed)",
        "inside.jpg": "exact duplicate of good.jpg",
        "pipe.jpg": "not a regular file",
    }


def test_a_file_that_cannot_be_read_is_refused_not_fatal(tmp_path: Path) -> None:
    src = tmp_path / "up"
    src.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (src / name).write_bytes(_jpeg(_noise()))
    items = iter_source(str(src))
    first = next(items)
    (src / "b.jpg").unlink()  # gone between listing and reading: a real read error
    rest = list(items)
    assert first.data is not None and [i.name for i in rest] == ["b.jpg", "c.jpg"]
    assert rest[0].data is None and rest[0].refusal.startswith("cannot be read (No such file")


def test_duplicates_are_refused_naming_the_original(tmp_path: Path) -> None:
    src = tmp_path / "up"
    src.mkdir()
    photo = _noise((320, 240))
    (src / "a.jpg").write_bytes(_jpeg(photo))
    (src / "b_copy.jpg").write_bytes(_jpeg(photo))
    (src / "c_smaller.jpg").write_bytes(_jpeg(photo.resize((160, 120)), quality=60))
    (src / "d_other.jpg").write_bytes(_jpeg(_noise((320, 240))))
    report = ingest(str(src), tmp_path / "out", IngestConfig(min_images=1), LOG)
    refused = {r["source"]: r["reason"] for r in json.loads((tmp_path / "out" / "manifest.json").read_text())["refused"]}
    assert refused == {"b_copy.jpg": "exact duplicate of a.jpg",
                       "c_smaller.jpg": "near-duplicate of a.jpg (the same photo re-encoded or resized)"}
    warning = next(c for c in report.checks if c.name == "no_refused_files")
    assert not warning.passed and "c_smaller.jpg" in warning.description


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)  # claims 1.6 gigapixels
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")
    src = tmp_path / "up"
    src.mkdir()
    (src / "bomb.png").write_bytes(bomb)
    (src / "fine.jpg").write_bytes(_jpeg(_noise()))
    manifest = _run(src, tmp_path / "out")
    assert [r["source"] for r in manifest["images"]] == ["fine.jpg"]
    [refused] = manifest["refused"]
    assert refused["source"] == "bomb.png" and refused["reason"].startswith("image too large to decode safely")
