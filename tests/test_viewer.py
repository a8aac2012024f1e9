"""`spaceport view`: the server resolves the bundle and the page renders it in headless Chromium (software WebGL).

Needs Chromium (Debian: apt-get install -y chromium) and the PlayCanvas engine (scripts/install-viewer.sh);
skipped with a message where either is missing.
"""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaceport_dagster.stages.ply import GaussianCloud
from spaceport_dagster.viewer.headless import Browser, BrowserUnavailable, find_chromium
from spaceport_dagster.viewer.server import (
    ViewerSetupError,
    bundle_quality,
    playcanvas_module,
    resolve_bundle,
    start_server,
)

SH_C0 = 0.28209479177387814
BACKGROUND = (0.0, 0.0, 0.0)  # the page's clear colour: black, as the quality gates render


def engine_or_skip() -> None:
    try:
        playcanvas_module()
    except ViewerSetupError as exc:
        pytest.skip(str(exc))


def terrain_cloud(n: int, seed: int = 0) -> GaussianCloud:
    """A bumpy coloured patch in east-north-up metres, like a small survey's splat."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-10, 10, (n, 2))
    z = 0.6 * np.sin(xy[:, 0] / 2) * np.cos(xy[:, 1] / 3)
    colour = np.c_[(xy[:, 0] + 10) / 20, (xy[:, 1] + 10) / 20, np.full(n, 0.4)]
    return GaussianCloud(
        means=np.c_[xy, z].astype(np.float32),
        sh0=((colour - 0.5) / SH_C0).astype(np.float32),
        shN=np.zeros((n, 0, 3), np.float32),
        opacities=np.full(n, 3.0, np.float32),
        scales=np.full((n, 3), np.log(0.12), np.float32),
        quats=np.tile([1.0, 0.0, 0.0, 0.0], (n, 1)).astype(np.float32),
    )


@pytest.fixture(scope="module")
def sog_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spaceport_dagster.stages.sog.writer import write_sog

    path = tmp_path_factory.mktemp("sog") / "patch.sog"
    write_sog(terrain_cloud(12_345), path)
    # what the SOG stage writes beside the bundle: its plain test-view figures
    (path.parent / "report.json").write_text(json.dumps({"metadata": {
        "psnr_measured": True, "psnr_decoded_db": 23.456, "psnr_views": 3, "psnr_resolution": "1589x893",
        "alpha_decoded": 0.99}}))
    return path


def test_bundle_quality_is_read_from_the_stage_report(sog_file: Path, tmp_path: Path) -> None:
    assert bundle_quality(sog_file) == {"psnr_db": 23.46, "views": 3, "resolution": "1589x893", "alpha": 0.99}
    lone = tmp_path / "lone.sog"
    lone.write_bytes(sog_file.read_bytes())
    assert bundle_quality(lone) is None  # no report beside it
    (tmp_path / "report.json").write_text(json.dumps({"metadata": {"psnr_measured": False, "psnr_decoded_db": None}}))
    assert bundle_quality(lone) is None  # a drop that was not measured shows no figure


def test_resolves_a_published_bundle_through_the_artifact_store(sog_file: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from spaceport_dagster.resources.artifact_store import LocalArtifactStore

    monkeypatch.setenv("SPACEPORT_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    store = LocalArtifactStore(tmp_path / "artifacts")
    with pytest.raises(ViewerSetupError, match="no published sogs_bundle"):
        resolve_bundle("site-7")
    with store.staging("site-7", "sogs_bundle") as staging:
        (staging.local_dir / "site-7.sog").write_bytes(sog_file.read_bytes())
        store.publish(staging)
    bundle = resolve_bundle("site-7")
    assert bundle.dataset == "site-7" and bundle.splats == 12_345
    # the initial view frames the bulk of the patch: centred near the origin, 5-95 % spread of 18 m
    assert bundle.frame is not None
    np.testing.assert_allclose(bundle.frame["center"], [0.0, 0.0, 0.0], atol=0.6)
    assert bundle.frame["half_extent"] == pytest.approx(9.0, rel=0.05)
    assert bundle.bytes == sog_file.stat().st_size
    assert bundle.source == store.uri("site-7", "sogs_bundle")
    with pytest.raises(ViewerSetupError, match="dataset id"):
        resolve_bundle("Not A Dataset!")


def test_server_routes(sog_file: Path) -> None:
    engine_or_skip()
    server, bundle = start_server(str(sog_file), port=0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        info = json.loads(urllib.request.urlopen(f"{base}/api/info").read())
        assert info["splats"] == 12_345 and info["bytes"] == sog_file.stat().st_size
        assert info["quality"]["psnr_db"] == 23.46
        assert urllib.request.urlopen(f"{base}/bundle.sog").read() == sog_file.read_bytes()
        assert b"SogBundleParser" in urllib.request.urlopen(f"{base}/vendor/playcanvas.mjs").read()
        assert b'id="canvas"' in urllib.request.urlopen(f"{base}/").read()
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{base}/../../etc/passwd")
    finally:
        server.shutdown()


def non_background_fraction(png: bytes) -> float:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    background = np.round(np.array(BACKGROUND) * 255).astype(np.int16)
    return float((np.abs(pixels - background).max(axis=2) > 12).mean())


def view_in_chromium(target: str, shot: Path) -> tuple[dict, float, list[str]]:
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium)")
    server, _ = start_server(target, port=0)
    try:
        with Browser(1024, 700, timeout=60) as browser:
            browser.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            browser.wait_for("['ready', 'error'].includes(document.body.dataset.state)", timeout=180)
            page = browser.evaluate("({state: document.body.dataset.state, splats: document.body.dataset.splats,"
                                    " shown: document.getElementById('splats').textContent,"
                                    " size: document.getElementById('bundle-size').textContent,"
                                    " psnr: document.getElementById('psnr').textContent,"
                                    " status: document.getElementById('status').textContent})")
            # hide the overlays so that only the canvas counts
            browser.evaluate("document.getElementById('panel').style.display = 'none';"
                             "document.getElementById('help').style.display = 'none'")
            png = browser.screenshot(shot)
            return page, non_background_fraction(png), browser.log.errors
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))
    finally:
        server.shutdown()


def test_page_renders_the_splat_without_errors(sog_file: Path, tmp_path: Path) -> None:
    engine_or_skip()
    page, drawn, errors = view_in_chromium(str(sog_file), tmp_path / "viewer.png")
    assert page["state"] == "ready", page["status"]
    assert errors == []
    assert page["splats"] == "12345" and page["shown"] == "12,345"
    assert page["size"] == f"{sog_file.stat().st_size / 1e3:.1f} kB"
    assert page["psnr"] == "23.46 dB"
    assert drawn > 0.2, f"only {drawn:.1%} of the canvas differs from the background"


def test_page_reports_a_broken_bundle(tmp_path: Path, sog_file: Path) -> None:
    engine_or_skip()
    broken = tmp_path / "broken.sog"
    data = bytearray(sog_file.read_bytes())
    broken.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ViewerSetupError, match="not a SOG bundle"):
        resolve_bundle(str(broken))
