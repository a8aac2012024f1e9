"""SOG v2 writer and reader: encodings, Morton order, codebooks, k-means, WebP, ZIP, malformed bundles."""

from __future__ import annotations

import io
import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from spaceport_dagster.stages.ply import GaussianCloud, read_ply
from spaceport_dagster.stages.sog import bundle, codebook, fused_nearest, webp
from spaceport_dagster.stages.sog import kmeans as kmeans_module
from spaceport_dagster.stages.sog.encode import EncodeOptions, encode_cloud, encode_means, encode_quats
from spaceport_dagster.stages.sog.format import (
    SogFormatError,
    compact_palette_size,
    inv_log_transform,
    log_transform,
    palette_size,
    texture_size,
)
from spaceport_dagster.stages.sog.fused_nearest import FusedNearest
from spaceport_dagster.stages.sog.kmeans import assign, kmeans
from spaceport_dagster.stages.sog.morton import morton_order
from spaceport_dagster.stages.sog.reader import read_sog, sog_to_ply
from spaceport_dagster.stages.sog.roundtrip import reorder, rotation_bound_deg, rotation_error_deg, roundtrip_errors
from spaceport_dagster.stages.sog.synthetic import random_cloud, realistic_cloud
from spaceport_dagster.stages.sog.writer import write_sog

# ---------------------------------------------------------------- format formulas


def test_texture_and_palette_sizes_follow_the_format():
    # W = ceil(sqrt(N)/4)*4, H = ceil(N/W/4)*4
    assert texture_size(1) == (4, 4)
    assert texture_size(5000) == (72, 72)
    assert texture_size(1_000_000) == (1000, 1000)
    assert texture_size(17) == (8, 4)
    # P = min(64, 2^floor(log2(N/1024))) * 1024
    assert palette_size(5000) == 4096
    assert palette_size(2000) == 1024
    assert palette_size(1000) == 512
    assert palette_size(65_536) == 65_536
    assert palette_size(1_000_000) == 65_536


def test_compact_palette_scales_with_the_splat_count():
    assert compact_palette_size(153_000, 16) == 8192
    assert compact_palette_size(1_000_000, 16) == 65_536
    assert compact_palette_size(11_000, 16) == 512
    assert compact_palette_size(3000, 16) == 256
    assert compact_palette_size(100, 16) == 64  # never more entries than splats
    assert compact_palette_size(10_000_000, 16) == 65_536  # the format's label image holds 16 bits
    with pytest.raises(SogFormatError, match="at most 16383"):
        texture_size(16384 * 16384)


def test_log_transform_inverts():
    x = np.array([-1e4, -3.5, -1e-6, 0.0, 1e-6, 2.0, 5e3])
    np.testing.assert_allclose(inv_log_transform(log_transform(x)), x, rtol=1e-12, atol=1e-15)
    assert log_transform(np.array([math.e - 1]))[0] == pytest.approx(1.0)


# ---------------------------------------------------------------- Morton order


def _reference_part1by2(v: int) -> int:
    out = 0
    for bit in range(10):
        out |= ((v >> bit) & 1) << (3 * bit)
    return out


def _reference_morton(points: list[tuple[float, float, float]], index: list[int]) -> list[int]:
    """The format doc's definition, one point at a time."""
    sub = [points[i] for i in index]
    lo = [min(p[a] for p in sub) for a in range(3)]
    hi = [max(p[a] for p in sub) for a in range(3)]
    span = [hi[a] - lo[a] for a in range(3)]
    if all(s == 0 for s in span):
        return index

    def cell(v: float, a: int) -> int:
        return 0 if span[a] == 0 else int(min(1023.0, (v - lo[a]) * (1024.0 / span[a])))

    codes = {i: (_reference_part1by2(cell(points[i][2], 2)) << 2) | (_reference_part1by2(cell(points[i][1], 1)) << 1)
             | _reference_part1by2(cell(points[i][0], 0)) for i in index}
    ordered = sorted(index, key=lambda i: codes[i])  # Python's sort is stable
    out: list[int] = []
    start = 0
    while start < len(ordered):
        end = start
        while end < len(ordered) and codes[ordered[end]] == codes[ordered[start]]:
            end += 1
        run = ordered[start:end]
        out += _reference_morton(points, run) if len(run) > 256 else run
        start = end
    return out


def test_morton_order_matches_the_reference_definition():
    rng = np.random.default_rng(3)
    wide = rng.normal(0, 10, (1500, 3))
    dense = rng.normal(0, 1e-5, (700, 3)) + 4.0  # one cell at the top level: refined recursively
    flat = np.c_[rng.uniform(-1, 1, (300, 2)), np.zeros(300)]  # a zero-length axis
    dup = np.repeat(rng.normal(0, 1, (1, 3)), 300, axis=0)  # identical points keep their order
    points = np.concatenate([wide, dense, flat, dup]).astype(np.float32)
    points = points[rng.permutation(len(points))]
    expected = _reference_morton([tuple(map(float, p)) for p in points], list(range(len(points))))
    assert morton_order(points).tolist() == expected


def test_morton_order_is_a_permutation_that_localises():
    pts = np.random.default_rng(0).uniform(0, 1, (20000, 3)).astype(np.float32)
    order = morton_order(pts)
    assert sorted(order.tolist()) == list(range(len(pts)))
    step = np.linalg.norm(np.diff(pts[order], axis=0), axis=1).mean()
    assert step < 0.25 * np.linalg.norm(np.diff(pts, axis=0), axis=1).mean()


# ---------------------------------------------------------------- attribute encodings


def test_means_round_trip_within_one_16bit_step():
    rng = np.random.default_rng(1)
    means = np.concatenate([rng.normal(0, 50, (5000, 3)), [[0, 0, 0], [-300, 2, 1e-3]]]).astype(np.float32)
    lo, hi, mins, maxs = encode_means(means)
    code = lo.astype(np.int64) + 256 * hi.astype(np.int64)
    assert code.min() == 0 and code.max() == 65535
    lmin, lmax = np.array(mins), np.array(maxs)
    np.testing.assert_allclose(lmin, log_transform(means.min(0)))
    decoded = inv_log_transform(lmin + (lmax - lmin) * code / 65535)
    step = (lmax - lmin) / 65535
    logs = log_transform(means)
    recovered = lmin + (lmax - lmin) * code / 65535
    assert ((logs - recovered) >= -1e-9).all() and ((logs - recovered) < step + 1e-9).all()  # floor
    assert (np.abs(decoded - means) <= step * np.exp(np.maximum(abs(lmin), abs(lmax))) + 1e-4).all()


def test_means_with_a_zero_length_axis():
    means = np.c_[np.linspace(-1, 1, 50), np.full(50, 2.5), np.zeros(50)].astype(np.float32)
    lo, hi, mins, maxs = encode_means(means)
    assert (lo[:, 1:] == 0).all() and (hi[:, 1:] == 0).all()
    assert mins[1] == maxs[1] == pytest.approx(math.log(3.5))


def test_quaternions_smallest_three():
    q = np.array([[1, 0, 0, 0], [-1, 0, 0, 0], [0.1, -0.9, 0.3, 0.2], [0.5, 0.5, 0.5, 0.5]], np.float32)
    out = encode_quats(q)
    assert out[:, 3].tolist() == [252, 252, 253, 252]  # the first largest component wins ties
    # identity: the other three are 0 -> floor(255 * 0.5) = 127; sign flips do not matter
    assert out[0, :3].tolist() == [127, 127, 127] and out[1, :3].tolist() == [127, 127, 127]
    # (0.1, -0.9, 0.3, 0.2): largest is x (negative) -> multiply by -sqrt(2), keep w, y, z
    n = q[2] / np.linalg.norm(q[2]) * -math.sqrt(2)
    expected = [math.floor(255 * (v * 0.5 + 0.5)) for v in (n[0], n[2], n[3])]
    assert out[2, :3].tolist() == expected


def test_quaternion_rotation_error_stays_under_the_bound():
    q = np.random.default_rng(2).normal(0, 1, (100_000, 4)).astype(np.float32)
    cloud = random_cloud(len(q), 0)
    cloud.quats = q
    enc = encode_cloud(cloud, EncodeOptions(sh_bands=0))
    from spaceport_dagster.stages.sog.decode import decode_arrays

    dec = decode_arrays(enc.meta, enc.images)
    err = rotation_error_deg(q[enc.order], dec.quats)
    assert err.max() <= rotation_bound_deg()
    assert 0.5 < err.max() < 2.3 and rotation_bound_deg() == pytest.approx(2.24, abs=0.01)


# ---------------------------------------------------------------- codebooks


def test_codebook_labels_are_nearest_and_errors_within_spacing():
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(-4, 1, 60_000), rng.normal(3, 0.01, 1000), [-15.0, 9.0]])
    book, labels = codebook.quantise(values)
    assert book.shape == (256,) and book.dtype == np.float32 and (np.diff(book) >= 0).all()
    err = np.abs(book[labels].astype(np.float64) - values)
    sample = rng.choice(len(values), 4000)
    nearest = np.abs(values[sample, None] - book[None, :].astype(np.float64)).min(axis=1)
    np.testing.assert_allclose(err[sample], nearest, atol=1e-6)
    assert err.max() <= codebook.spacing_bound(values, book) + 1e-6
    assert np.sqrt(np.mean(err**2)) < 0.01
    # the outliers get their own entries (tails weighted by count**0.5)
    assert book[0] == pytest.approx(-15.0, abs=0.1) and book[-1] == pytest.approx(9.0, abs=0.1)


def test_codebook_dynamic_programme_in_torch_matches_numpy():
    values = np.random.default_rng(6).standard_t(3, 30_000)
    assert np.array_equal(codebook.build_codebook(values, device="cpu"), codebook.build_codebook(values))


def test_codebook_edge_cases():
    book, labels = codebook.quantise(np.full(10, 0.25))
    assert (book == 0.25).all() and (labels == 0).all()
    book, labels = codebook.quantise(np.array([1.0, 2.0, 3.0]))
    assert set(book.tolist()) == {1.0, 2.0, 3.0} and (book[labels] == [1.0, 2.0, 3.0]).all()
    with pytest.raises(SogFormatError, match="non-finite"):
        codebook.quantise(np.array([0.0, np.nan]))


# ---------------------------------------------------------------- k-means


def test_kmeans_lloyd_improves_is_deterministic_and_reseeds_empty_clusters():
    g = torch.Generator().manual_seed(0)
    points = torch.cat([torch.randn(1500, 9, generator=g), torch.zeros(1500, 9)])  # half are one point
    a = kmeans(points, 64, 10, seed=7, device="cpu", method="flat")
    b = kmeans(points, 64, 10, seed=7, device="cpu", method="flat")
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centroids, b.centroids)
    assert torch.equal(a.labels, torch.cdist(points, a.centroids).argmin(1))  # labels are the nearest centroids
    start = kmeans(points, 64, 0, seed=7, device="cpu", method="flat")  # the seeded random start
    assert ((a.centroids[a.labels] - points) ** 2).sum(1).mean() < 0.8 * ((start.centroids[start.labels] - points) ** 2).sum(1).mean()
    # the random start puts ~32 centroids on the repeated point; re-seeding moves them to badly fitted points
    assert len(torch.unique(start.labels)) < 40 and len(torch.unique(a.labels)) >= 60


def test_two_level_kmeans_is_valid_and_deterministic():
    g = torch.Generator().manual_seed(1)
    points = torch.randn(6000, 9, generator=g)
    a = kmeans(points, 1024, 5, seed=3, device="cpu", method="two_level")
    b = kmeans(points, 1024, 5, seed=3, device="cpu", method="two_level")
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centroids, b.centroids)
    assert a.centroids.shape == (1024, 9) and int(a.labels.max()) < 1024
    mse = ((a.centroids[a.labels] - points) ** 2).sum(1).mean()
    flat = kmeans(points, 1024, 5, seed=3, device="cpu", method="flat")
    flat_mse = ((flat.centroids[flat.labels] - points) ** 2).sum(1).mean()
    assert mse < 1.25 * flat_mse  # the two-level split costs little quality


def test_kmeans_with_more_centroids_than_points():
    pts = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    r = kmeans(pts, 8, 10, device="cpu")
    assert torch.equal(r.centroids[r.labels], pts)


def test_palette_renumbered_by_first_use():
    from spaceport_dagster.stages.sog.encode import first_use_order

    centroids = np.arange(5 * 3 * 2, dtype=np.float32).reshape(5, 3, 2)
    labels = np.array([3, 3, 1, 4, 1, 3])
    c, lab = first_use_order(centroids, labels)
    assert lab.tolist() == [0, 0, 1, 2, 1, 0]
    assert np.array_equal(c[lab], centroids[labels])  # same values per splat
    assert np.array_equal(c[3:], centroids[[0, 2]])  # unused entries keep their order at the end


def test_palette_order_with_the_smaller_label_image():
    from spaceport_dagster.stages.sog.encode import _smaller_labels, first_use_order
    from spaceport_dagster.stages.sog.webp import WebpSettings

    rng = np.random.default_rng(9)
    centroids = rng.normal(0, 1, (2048, 3, 3)).astype(np.float32)
    scattered = rng.permutation(2048)[np.arange(4096) // 2]  # k-means order: labels jump around
    new_to_old, lab, tex = _smaller_labels(scattered, 2048, 64, 64, WebpSettings())
    assert lab[:6].tolist() == [0, 0, 1, 1, 2, 2]  # first use won
    assert np.array_equal(centroids[new_to_old][lab], centroids[scattered]) and tex.shape == (64, 64, 4)
    assert sorted(new_to_old.tolist()) == list(range(2048))
    ordered = first_use_order(centroids, scattered)[1]  # already in first-use order: either choice is the same
    assert np.array_equal(_smaller_labels(ordered, 2048, 64, 64, WebpSettings())[1], ordered)


# ---------------------------------------------------------------- WebP


def test_webp_is_lossless_including_rgb_under_zero_alpha():
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (36, 20, 4), dtype=np.uint8)
    rgba[::3, :, 3] = 0
    data = webp.encode(rgba)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert np.array_equal(webp.decode(data), rgba)
    assert webp.image_size(data) == (20, 36)


# ---------------------------------------------------------------- whole bundles


@pytest.fixture(scope="module")
def cloud3() -> GaussianCloud:
    return realistic_cloud(3000, 3, seed=11, blobs=60)


@pytest.fixture(scope="module")
def written(cloud3: GaussianCloud, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("sog")
    result = write_sog(cloud3, out / "scene.sog", out / "bundle", EncodeOptions(seed=5))
    return out, result


def test_round_trip_within_bounds(cloud3: GaussianCloud, written):
    out, result = written
    decoded = read_sog(out / "scene.sog")
    assert len(decoded) == 3000 and decoded.sh_degree == 3
    errors = {e.name: e for e in roundtrip_errors(reorder(cloud3, result.order, 15), decoded, result.encoded.meta)}
    assert all(e.passed for e in errors.values()), {k: e.as_dict() for k, e in errors.items()}
    assert errors["position_rel_extent"].max_error < 1e-3
    assert errors["opacity"].max_error <= 1 / 255
    assert errors["shN_rms_vs_signal"].max_error < 0.5 * errors["shN_rms_vs_signal"].bound
    folder = read_sog(out / "bundle")
    assert np.array_equal(folder.means, decoded.means) and np.array_equal(folder.shN, decoded.shN)


def test_bundle_layout(written):
    out, result = written
    data = (out / "scene.sog").read_bytes()
    assert data[-22:-18] == b"PK\x05\x06" and data[-2:] == b"\0\0"  # end record at len - 22, no comment
    with zipfile.ZipFile(out / "scene.sog") as zf:
        names = zf.namelist()
        assert names[0] == "meta.json" and all("/" not in n for n in names)
        assert {i.compress_type for i in zf.infolist() if i.filename.endswith(".webp")} == {zipfile.ZIP_STORED}
        meta = json.loads(zf.read("meta.json"))
    assert sorted(names) == sorted(p.name for p in (out / "bundle").iterdir())
    assert meta["version"] == 2 and meta["count"] == 3000
    assert meta["shN"]["count"] == 256 and meta["shN"]["bands"] == 3  # compact palette: 3000 / 16 -> 256
    assert len(meta["shN"]["codebook"]) == 256
    images = {n: webp.decode((out / "bundle" / n).read_bytes()) for n in names if n.endswith(".webp")}
    assert images["means_l.webp"].shape == (56, 56, 4)
    assert images["shN_centroids.webp"].shape == (4, 960, 4)
    assert (images["quats.webp"].reshape(-1, 4)[3000:] == 0).all()  # padding texels all zero
    assert set(np.unique(images["quats.webp"].reshape(-1, 4)[:3000, 3])) <= {252, 253, 254, 255}


def _engine_zip_view(data: bytes) -> dict[str, bytes]:
    """The PlayCanvas engine's parseZipArchive (sog-bundle.js): end record at exactly len - 22, central
    directory walk, data at the local header offset + 30 + name + extra, stored or raw deflate."""
    import zlib

    assert struct.unpack_from("<I", data, len(data) - 22)[0] == 0x06054B50
    count = struct.unpack_from("<H", data, len(data) - 22 + 8)[0]
    cd_size, cd_offset = struct.unpack_from("<II", data, len(data) - 22 + 12)
    assert cd_offset != 0xFFFFFFFF and cd_size != 0xFFFFFFFF
    files, offset = {}, cd_offset
    for _ in range(count):
        assert struct.unpack_from("<I", data, offset)[0] == 0x02014B50
        method = struct.unpack_from("<H", data, offset + 10)[0]
        compressed = struct.unpack_from("<I", data, offset + 20)[0]
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, offset + 28)
        lfh = struct.unpack_from("<I", data, offset + 42)[0]
        name = data[offset + 46 : offset + 46 + name_len].decode()
        assert struct.unpack_from("<I", data, lfh)[0] == 0x04034B50
        start = lfh + 30 + sum(struct.unpack_from("<HH", data, lfh + 26))
        raw = data[start : start + compressed]
        files[name] = raw if method == 0 else zlib.decompress(raw, -15)
        assert method in (0, 8)
        offset += 46 + name_len + extra_len + comment_len
    return files


def test_the_engine_zip_parser_reads_our_bundle(written):
    out, result = written
    assert _engine_zip_view((out / "scene.sog").read_bytes()) == result.files


def test_deterministic_for_a_seed(cloud3: GaussianCloud, written, tmp_path: Path):
    out, _ = written
    write_sog(cloud3, tmp_path / "again.sog", None, EncodeOptions(seed=5))
    assert (tmp_path / "again.sog").read_bytes() == (out / "scene.sog").read_bytes()
    other = write_sog(cloud3, tmp_path / "other.sog", None, EncodeOptions(seed=6))
    assert other.files["means_l.webp"] == (out / "bundle" / "means_l.webp").read_bytes()
    assert other.files["shN_labels.webp"] != (out / "bundle" / "shN_labels.webp").read_bytes()


@pytest.mark.parametrize("bands", [0, 1, 2])
def test_fewer_sh_bands(bands: int, tmp_path: Path):
    cloud = random_cloud(1200, 3, seed=bands)
    result = write_sog(cloud, tmp_path / "b.sog", None, EncodeOptions(sh_bands=bands, kmeans_iterations=3))
    decoded = read_sog(tmp_path / "b.sog")
    k = [0, 3, 8, 15][bands]
    assert decoded.shN.shape == (1200, k, 3)
    meta = json.loads(result.files["meta.json"])
    assert ("shN" in meta) == (bands > 0)
    if bands:
        assert webp.image_size(result.files["shN_centroids.webp"]) == (64 * k, 4)  # P = 256 (1200 / 16 -> 64, floor 256)
    errors = roundtrip_errors(reorder(cloud, result.order, k), decoded, meta)
    assert all(e.passed for e in errors)


def test_sog_to_ply(written, tmp_path: Path):
    out, _ = written
    size = sog_to_ply(out / "scene.sog", tmp_path / "back.ply")
    back = read_ply(tmp_path / "back.ply")
    assert size == (tmp_path / "back.ply").stat().st_size and len(back) == 3000 and back.sh_degree == 3
    assert np.array_equal(back.means, read_sog(out / "scene.sog").means)


def test_refuses_nan():
    cloud = random_cloud(100, 0)
    cloud.scales[3, 1] = np.nan
    with pytest.raises(SogFormatError, match="NaN"):
        encode_cloud(cloud)


# ---------------------------------------------------------------- malformed bundles


def _files(written) -> dict[str, bytes]:
    out, _ = written
    return {p.name: p.read_bytes() for p in sorted((out / "bundle").iterdir())}


def _zip(files: dict[str, bytes]) -> bytes:
    return bundle.zip_bytes(files)


def _read(data: bytes, tmp_path: Path):
    path = tmp_path / "bad.sog"
    path.write_bytes(data)
    return read_sog(path)


def _with_meta(files: dict[str, bytes], **changes) -> dict[str, bytes]:
    meta = json.loads(files["meta.json"])
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    return {**files, "meta.json": json.dumps(meta).encode()}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: {k: v for k, v in f.items() if k != "scales.webp"}, "lacks file"),
        (lambda f: {k: v for k, v in f.items() if k != "meta.json"}, "no meta.json"),
        (lambda f: _with_meta(f, version=None), "no 'version'"),
        (lambda f: _with_meta(f, version=3), "version is 3"),
        (lambda f: _with_meta(f, version="2"), "version is '2'"),
        (lambda f: _with_meta(f, count=3137), "larger than the 56x56 images hold"),
        (lambda f: _with_meta(f, count=0), "positive integer"),
        (lambda f: _with_meta(f, means=None), "no 'means'"),
        (lambda f: {**f, "meta.json": b"{not json"}, "not valid JSON"),
        (lambda f: {**f, "sh0.webp": webp.encode(np.zeros((56, 60, 4), np.uint8))}, "differ in size"),
        (lambda f: {**f, "shN_centroids.webp": webp.encode(np.zeros((32, 192, 4), np.uint8))}, "960"),
        (lambda f: {**f, "quats.webp": webp.encode(np.full((56, 56, 4), 7, np.uint8))}, "alpha 7"),
        (lambda f: {**f, "shN_labels.webp": webp.encode(np.full((56, 56, 4), 255, np.uint8))}, "outside the palette"),
        (lambda f: {**f, "means_l.webp": b"RIFF\0\0\0\0WEBPjunk"}, "not a readable WebP"),
    ],
)
def test_malformed_bundles_are_rejected(written, tmp_path: Path, mutate, message: str):
    with pytest.raises(SogFormatError, match=message):
        _read(_zip(mutate(_files(written))), tmp_path)


def test_malformed_meta_sections(written, tmp_path: Path):
    files = _files(written)
    meta = json.loads(files["meta.json"])
    for section, key, value, message in [
        ("scales", "codebook", [0.0] * 255, "scales.codebook must be a list of 256"),
        ("means", "mins", [0, 0, "x"], "only numbers"),
        ("shN", "bands", 4, "shN.bands"),
        ("shN", "count", 70000, "shN.count"),
        ("sh0", "files", [], "sh0.files"),
        ("means", "files", ["means_l.webp", "../etc/passwd"], "plain file name"),
    ]:
        bad = json.loads(json.dumps(meta))
        bad[section][key] = value
        with pytest.raises(SogFormatError, match=message.replace("(", r"\(")):
            _read(_zip({**files, "meta.json": json.dumps(bad).encode()}), tmp_path)


def _raw_zip(entries: list[tuple[str, bytes]], comment: bytes = b"", zip64: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries:
            with zf.open(zipfile.ZipInfo(name), "w", force_zip64=zip64) as fh:
                fh.write(data)
        zf.comment = comment
    return buf.getvalue()


def test_zip_tricks_are_rejected(written, tmp_path: Path):
    files = _files(written)
    entries = list(files.items())
    with pytest.raises(SogFormatError, match="archive comment"):
        _read(_raw_zip(entries, comment=b"hello"), tmp_path)
    with pytest.raises(SogFormatError, match="trailing bytes|archive comment"):
        _read(_zip(files) + b"\0" * 10, tmp_path)
    with pytest.raises(SogFormatError, match="zip64"):  # zip64 extra fields in the local headers
        _read(_raw_zip(entries, zip64=True), tmp_path)
    marked = bytearray(_zip(files))
    struct.pack_into("<HH", marked, len(marked) - 22 + 8, 0xFFFF, 0xFFFF)  # entry counts deferred to zip64
    with pytest.raises(SogFormatError, match="zip64"):
        _read(bytes(marked), tmp_path)
    for name in ("/abs.webp", "../up.webp", "sub/dir.webp", "c:evil.webp", "back\\slash.webp"):
        with pytest.raises(SogFormatError, match="not a plain file name"):
            _read(_raw_zip(entries + [(name, b"x")]), tmp_path)
    with pytest.warns(UserWarning, match="Duplicate name"):
        dup = _raw_zip(entries + [("sh0.webp", files["sh0.webp"])])
    with pytest.raises(SogFormatError, match="more than once"):
        _read(dup, tmp_path)
    with pytest.raises(SogFormatError, match="not a ZIP"):
        _read(b"PK\x03\x04 this is not an archive", tmp_path)


def test_huge_uncompressed_sizes_are_rejected(written, tmp_path: Path):
    files = _files(written)
    bomb = {**files, "padding.bin": b"\0" * 5_000_000}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in bomb.items():
            zf.writestr(name, data)
    assert len(buf.getvalue()) < 500_000
    with pytest.raises(SogFormatError, match="more than 2000000 uncompressed bytes"):
        bundle.read_zip(buf.getvalue(), max_bytes=2_000_000)
    # a central directory that lies about an entry's size
    data = bytearray(_zip(files))
    eocd = len(data) - 22
    cd_offset = struct.unpack("<I", data[eocd + 16 : eocd + 20])[0]
    struct.pack_into("<I", data, cd_offset + 24, 0x7FFFFFF0)  # uncompressed size of the first entry
    with pytest.raises(SogFormatError, match="uncompressed bytes|corrupt|declares"):
        _read(bytes(data), tmp_path)


def test_folder_bundle_errors(written, tmp_path: Path):
    files = _files(written)
    folder = tmp_path / "b"
    bundle.write_folder(folder, {k: v for k, v in files.items() if k != "quats.webp"})
    with pytest.raises(SogFormatError, match="lacks quats.webp"):
        read_sog(folder)
    with pytest.raises(SogFormatError, match="no SOG bundle"):
        read_sog(tmp_path / "missing")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    values = np.random.default_rng(8).normal(0, 1, 50_000)
    assert np.array_equal(codebook.build_codebook(values, device="cuda"), codebook.build_codebook(values))
    points = torch.randn(20_000, 45, generator=torch.Generator().manual_seed(2))
    a = kmeans(points, 4096, 10, seed=1, device="cuda")
    b = kmeans(points, 4096, 10, seed=1, device="cuda")
    assert a.method == "flat" and torch.equal(a.labels, b.labels) and torch.equal(a.centroids, b.centroids)
    if fused_nearest.available(torch.device("cuda")):  # the fused kernel, which large problems get
        monkeypatch.setattr(kmeans_module, "FUSED_MIN_PAIRS", 0)
        c = kmeans(points, 4096, 10, seed=1, device="cuda")
        assert torch.equal(c.labels, kmeans(points, 4096, 10, seed=1, device="cuda").labels)
        fused_mse = float(((c.centroids[c.labels] - points) ** 2).sum(1).mean())
        torch_mse = float(((a.centroids[a.labels] - points) ** 2).sum(1).mean())
        assert abs(fused_mse - torch_mse) < 0.01 * torch_mse
    cloud = realistic_cloud(30_000, 3, seed=4)
    result = write_sog(cloud, tmp_path / "gpu.sog", None, EncodeOptions(device="cuda"))
    assert result.encoded.kmeans_method == "flat"
    errors = roundtrip_errors(reorder(cloud, result.order, 15), read_sog(tmp_path / "gpu.sog"), result.encoded.meta)
    assert all(e.passed for e in errors)


@pytest.mark.gpu
@pytest.mark.skipif(not fused_nearest.available(torch.device("cuda")), reason="needs CUDA and Triton")
def test_fused_nearest_centroid_matches_the_exact_search():
    g = torch.Generator().manual_seed(5)
    points = (torch.randn(50_000, 45, generator=g) * 0.3).cuda()  # 50,000 and 3,000: partial blocks on both axes
    centroids = (torch.randn(3_000, 45, generator=g) * 0.3).cuda()
    exact = torch.cdist(points.double(), centroids.double()).argmin(1)
    best = ((points.double() - centroids.double()[exact]) ** 2).sum(1)
    fused, dists = assign(points, centroids, FusedNearest(points))
    assert torch.equal(fused, FusedNearest(points).labels(centroids))  # deterministic
    assert torch.allclose(dists.double(), ((points.double() - centroids.double()[fused]) ** 2).sum(1), rtol=1e-5)
    big = FusedNearest(points * 1e5).labels(centroids * 1e5)  # float16 would overflow without the scaling
    for labels in (fused, assign(points, centroids, points.half())[0], big):
        got = ((points.double() - centroids.double()[labels]) ** 2).sum(1)
        assert (labels == exact).float().mean() > 0.99
        assert float((got - best).max()) <= 1e-2 * float(best.mean())  # any miss is a near-tie


def test_prefix_sums_in_blocks_match_a_plain_running_sum():
    from spaceport_dagster.stages.sog.kmeans import _prefix_sums

    values = torch.randn(2500, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = torch.cat([torch.zeros(1, 7, dtype=torch.float64), torch.cumsum(values, 0)])
    for block in (1, 64, 1000, 4096):  # one row per block, a partial last block, a single block
        assert torch.allclose(_prefix_sums(values, block), expected, rtol=0, atol=1e-12)
