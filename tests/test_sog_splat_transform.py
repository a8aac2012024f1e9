"""Proof against an independent implementation: PlayCanvas's own splat-transform (pinned, tools/node).

(a) splat-transform decodes our .sog (and our unbundled meta.json) to a PLY that matches our source within
    the format's bounds; (b) our reader decodes a .sog that splat-transform writes, and the texels it wrote for
    positions, rotations and scales are the ones our writer produces for the same PLY.
CI installs the tool with scripts/install-splat-transform.sh; these tests install it too when it is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spaceport_dagster.stages.ply import read_ply, write_ply
from spaceport_dagster.stages.sog.encode import EncodeOptions, encode_cloud
from spaceport_dagster.stages.sog.morton import morton_order
from spaceport_dagster.stages.sog.reader import load_bundle, read_sog, texel_arrays
from spaceport_dagster.stages.sog.roundtrip import reorder, roundtrip_errors
from spaceport_dagster.stages.sog.synthetic import realistic_cloud
from spaceport_dagster.stages.sog.writer import write_sog

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "node" / "node_modules" / ".bin" / "splat-transform"
PINNED = "3.7.0"


@pytest.fixture(scope="module")
def splat_transform() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the splat-transform cross-check needs them (CI has both)")
    if not TOOL.exists():
        subprocess.run([str(ROOT / "scripts" / "install-splat-transform.sh")], check=True, timeout=900)
    version = subprocess.run([str(TOOL), "--version"], capture_output=True, text=True, timeout=60)
    assert f"v{PINNED}" in version.stdout + version.stderr
    return TOOL


def _run(tool: Path, *args: str | Path) -> None:
    proc = subprocess.run([str(tool), "-q", *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("bands", [3, 0])
def test_splat_transform_decodes_our_bundle(splat_transform: Path, tmp_path: Path, bands: int):
    cloud = realistic_cloud(2500, 3, seed=21, blobs=50)
    written = write_sog(cloud, tmp_path / "ours.sog", tmp_path / "bundle", EncodeOptions(sh_bands=bands, seed=1))
    _run(splat_transform, "-w", tmp_path / "ours.sog", tmp_path / "back.ply")
    back = read_ply(tmp_path / "back.ply")
    assert len(back) == 2500 and back.sh_degree == bands
    # splat-transform keeps the bundle's order: its decode equals ours value for value
    ours = read_sog(tmp_path / "ours.sog")
    for name in ("means", "quats", "scales", "sh0", "opacities", "shN"):
        np.testing.assert_allclose(getattr(back, name), getattr(ours, name), rtol=0, atol=1e-6, err_msg=name)
    k = back.shN.shape[1]
    errors = roundtrip_errors(reorder(cloud, written.order, k), back, written.encoded.meta)
    assert all(e.passed for e in errors), [(e.name, e.max_error, e.bound) for e in errors if not e.passed]
    # the unbundled form reads the same
    _run(splat_transform, "-w", tmp_path / "bundle" / "meta.json", tmp_path / "back2.ply")
    assert np.array_equal(read_ply(tmp_path / "back2.ply").means, back.means)


def test_we_decode_a_bundle_splat_transform_writes(splat_transform: Path, tmp_path: Path):
    cloud = realistic_cloud(2000, 3, seed=22, blobs=40)
    write_ply(tmp_path / "source.ply", cloud)
    _run(splat_transform, "-w", "-g", "cpu", tmp_path / "source.ply", tmp_path / "theirs.sog")
    theirs = load_bundle(tmp_path / "theirs.sog")
    assert theirs.meta["asset"]["generator"].startswith(f"splat-transform v{PINNED}")
    assert theirs.meta["shN"]["count"] == 1024 and theirs.meta["shN"]["bands"] == 3
    decoded = read_sog(tmp_path / "theirs.sog")
    assert len(decoded) == 2000 and decoded.sh_degree == 3
    # their writer uses the same Morton order, so the source lines up with the bundle by Morton rank.
    # Their WebP encoder zeroes RGB under alpha 0, so fully transparent splats lose their colour index:
    # compare the splats a viewer can see (opacity byte > 0).
    order = morton_order(cloud.means)
    visible = texel_arrays(theirs)["sh0.webp"].reshape(-1, 4)[:2000, 3] > 0
    assert 0.5 < visible.mean() < 1.0
    errors = roundtrip_errors(reorder(cloud, order[visible], 15), reorder(decoded, np.flatnonzero(visible), 15),
                              theirs.meta)
    assert all(e.passed for e in errors), [(e.name, e.max_error, e.bound) for e in errors if not e.passed]
    # and for the same PLY our writer produces their texels for positions, rotations and scale indices
    ours = encode_cloud(read_ply(tmp_path / "source.ply"), EncodeOptions(sh_bands=0))
    assert np.array_equal(ours.order, order)
    texels = texel_arrays(theirs)
    for name in ("means_l.webp", "means_u.webp", "quats.webp", "scales.webp"):
        mine = ours.images[name].reshape(-1, 4)[:2000]
        assert np.array_equal(texels[name].reshape(-1, 4)[:2000], mine), name
    # colour indices and opacity bytes agree wherever the splat is not fully transparent (their WebP
    # encoder zeroes RGB under alpha 0; ours keeps it)
    sh0_theirs = texels["sh0.webp"].reshape(-1, 4)[:2000]
    sh0_ours = ours.images["sh0.webp"].reshape(-1, 4)[:2000]
    assert np.array_equal(sh0_theirs[:, 3], sh0_ours[:, 3])
    visible = sh0_ours[:, 3] > 0
    assert np.array_equal(sh0_theirs[visible, :3], sh0_ours[visible, :3])
    assert json.loads(json.dumps(theirs.meta["sh0"]["codebook"])) == pytest.approx(ours.meta["sh0"]["codebook"])
