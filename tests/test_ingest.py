"""Ingest on the real shared photos (their EXIF quirks) and on deliberately bad uploads."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path

import pytest
from PIL import Image

from spaceport_dagster.stages.ingest.sources import iter_source
from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest

from .conftest import dataset_images

LOG = logging.getLogger("test")


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _by_name(manifest: dict) -> dict[str, dict]:
    return {r["source"]: r for r in manifest["images"]}


def test_dji_exif_nul_padding_gps_and_decoded_size(tmp_path: Path) -> None:
    report = ingest(str(dataset_images("brighton_beach")), tmp_path, IngestConfig(), LOG)
    images = _by_name(_manifest(tmp_path))
    first = images["DJI_0018.JPG"]
    assert first["make"] == "DJI" and first["model"] == "FC300S"  # NUL padding stripped
    assert (first["width"], first["height"]) == (1600, 900)  # decoded, not EXIF's 4000x2250
    assert first["focal_length_mm"] == pytest.approx(3.61)
    assert first["focal_length_35mm"] == 20
    gps = first["gps"]
    assert gps["latitude"] == pytest.approx(46 + 50 / 60 + 33.3855 / 3600)
    assert gps["longitude"] == pytest.approx(-(91 + 59 / 60 + 40.4156 / 3600))  # W is negative
    assert gps["altitude"] == pytest.approx(198.309)
    assert gps["relative_altitude"] == pytest.approx(39.8)
    assert first["captured_at"] == "2016-06-23T16:31:59"
    assert report.metadata["usable_images"] == 18 and report.metadata["gps_images"] == 18
    assert report.metadata["cameras"] == {"DJI FC300S": 18}
    assert all(c.passed for c in report.checks if c.blocking)
    assert len(list((tmp_path / "images").iterdir())) == 18


def test_gps_without_make_model(tmp_path: Path) -> None:
    ingest(str(dataset_images("lund")), tmp_path, IngestConfig(), LOG)
    images = _by_name(_manifest(tmp_path))
    assert len(images) == 29
    one = images["01.jpg"]
    assert one["make"] is None and one["model"] is None and one["camera"] == "unknown camera"
    assert one["gps"]["latitude"] == pytest.approx(55 + 41 / 60 + 53.4 / 3600)
    assert one["gps"]["altitude"] == pytest.approx(37.0)
    assert one["focal_length_35mm"] == 35


def test_gps_block_without_coordinates_means_no_gps(tmp_path: Path) -> None:
    report = ingest(str(dataset_images("banana")), tmp_path, IngestConfig(), LOG)
    images = _by_name(_manifest(tmp_path))
    nikon = images["DSC_0423.JPG"]
    assert nikon["gps"] is None
    assert nikon["make"] == "NIKON CORPORATION" and nikon["model"] == "NIKON D3200"
    assert (nikon["width"], nikon["height"]) == (1600, 1064)  # EXIF says 3008x2000
    assert report.metadata["gps_images"] == 0


def _bad_upload(tmp_path: Path) -> Path:
    """Six good photos plus one of each kind of bad file."""
    src = tmp_path / "upload"
    src.mkdir()
    lund = dataset_images("lund")
    for name in ["01.jpg", "02.jpg", "03.jpg", "04.jpg", "05.jpg"]:
        shutil.copy(lund / name, src / name)
    data = (lund / "06.jpg").read_bytes()
    (src / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (src / "notes.jpg").write_text("this is not a photo")
    (src / "copy_of_01.jpg").write_bytes((lund / "01.jpg").read_bytes())
    corrupt = bytearray(data)
    corrupt[600:4000] = b"\xff" * 3400
    (src / "corrupt.jpg").write_bytes(bytes(corrupt))
    photo = Image.open(lund / "07.jpg")
    photo.save(src / "as_png.png")
    Image.open(lund / "08.jpg").save(src / "as_tiff.tif")
    mpo = Image.open(lund / "09.jpg")
    mpo.save(src / "as_mpo.jpg", format="MPO", save_all=True, append_images=[mpo.resize((160, 120))])
    buf = io.BytesIO()
    photo.save(buf, format="GIF")
    (src / "animated.gif").write_bytes(buf.getvalue())
    return src


def _tree_digest(folder: Path) -> dict[str, tuple[str, float]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime) for p in folder.iterdir()}


def test_exif_rotation_is_applied_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    image = Image.new("RGB", (200, 120), (200, 30, 30))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(src / "turned.jpg", "JPEG", exif=exif)
    ingest(str(src), tmp_path / "out", IngestConfig(min_images=1), LOG)
    record = _manifest(tmp_path / "out")["images"][0]
    assert (record["width"], record["height"]) == (120, 200)
    with Image.open(tmp_path / "out" / "images" / record["name"]) as written:
        assert written.size == (120, 200)
        assert written.getexif().get(0x0112, 1) == 1  # no tag left that would rotate it a second time


def test_rotated_png_stays_a_png(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    image = Image.new("RGB", (200, 120), (10, 200, 30))
    exif = image.getexif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to display
    image.save(src / "turned.png", "PNG", exif=exif)
    ingest(str(src), tmp_path / "out", IngestConfig(min_images=1), LOG)
    record = _manifest(tmp_path / "out")["images"][0]
    stored = tmp_path / "out" / "images" / record["name"]
    with Image.open(stored) as written:
        assert written.format == "PNG" and written.size == (120, 200)
        assert written.getpixel((5, 5)) == (10, 200, 30)  # lossless
    assert record["bytes"] == stored.stat().st_size


def test_bad_files_are_refused_with_reasons_and_source_untouched(tmp_path: Path) -> None:
    src = _bad_upload(tmp_path)
    before = _tree_digest(src)
    out = tmp_path / "out"
    report = ingest(str(src), out, IngestConfig(), LOG)
    manifest = _manifest(out)
    refused = {r["source"]: r["reason"] for r in manifest["refused"]}
    assert "truncated" in refused["truncated.jpg"]
    assert "not an image" in refused["notes.jpg"]
    assert refused["copy_of_01.jpg"] == "exact duplicate of 01.jpg"
    assert "unsupported image format GIF" in refused["animated.gif"]
    usable = _by_name(manifest)
    assert {"as_png.png", "as_tiff.tif", "as_mpo.jpg"} <= set(usable)
    assert usable["as_mpo.jpg"]["format"] == "MPO"
    assert usable["as_tiff.tif"]["format"] == "TIFF"
    # the corrupt JPEG either decodes to garbage pixels (JPEG is forgiving) or is refused: never a crash
    assert "corrupt.jpg" in refused or "corrupt.jpg" in usable
    assert report.metadata["refused_files"] == len(refused) >= 4
    gate = next(c for c in report.checks if c.name == "enough_usable_images")
    assert gate.passed  # bad files alone never sink the set
    warning = next(c for c in report.checks if c.name == "no_refused_files")
    assert not warning.passed and not warning.blocking and "truncated.jpg" in warning.description
    assert _tree_digest(src) == before  # uploads are never modified


def test_too_few_images_fails_the_gate(tmp_path: Path) -> None:
    src = tmp_path / "few"
    src.mkdir()
    for name in ["01.jpg", "02.jpg"]:
        shutil.copy(dataset_images("lund") / name, src / name)
    report = ingest(str(src), tmp_path / "out", IngestConfig(), LOG)
    gate = next(c for c in report.checks if c.name == "enough_usable_images")
    assert not gate.passed and gate.description == "2 usable images (need at least 5)"


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        list(iter_source(str(tmp_path / "nowhere")))


def test_s3_source_is_read_without_modification(tmp_path: Path, bucket: str) -> None:
    import boto3

    s3 = boto3.client("s3")
    lund = dataset_images("lund")
    for name in ["01.jpg", "02.jpg", "03.jpg", "04.jpg", "05.jpg"]:
        s3.upload_file(str(lund / name), bucket, f"uploads/lund-s3/{name}")
    s3.put_object(Bucket=bucket, Key="uploads/lund-s3/_READY", Body=b"")
    s3.put_object(Bucket=bucket, Key="uploads/other/01.jpg", Body=b"x")
    report = ingest(f"s3://{bucket}/uploads/lund-s3/", tmp_path, IngestConfig(), LOG)
    assert report.metadata["usable_images"] == 5 and report.metadata["refused_files"] == 0
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="uploads/lund-s3/")["Contents"])
    assert keys == sorted([f"uploads/lund-s3/{n}" for n in ["01.jpg", "02.jpg", "03.jpg", "04.jpg", "05.jpg"]]
                          + ["uploads/lund-s3/_READY"])
