"""`spaceport view`: the server resolves the bundle and the page renders it in headless Chromium (software WebGL).

Needs Chromium (Debian: apt-get install -y chromium) and the PlayCanvas engine (scripts/install-viewer.sh);
skipped with a message where either is missing.
"""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaceport_dagster.stages.ply import GaussianCloud
from spaceport_dagster.viewer.server import (
    Bundle,
    ViewerSetupError,
    bundle_quality,
    playcanvas_module,
    resolve_bundle,
    start_server,
)

from .headless_chromium import Browser, BrowserUnavailable, find_chromium

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

    # laid out as in the artifact store, <dataset>/sogs_bundle/ beside <dataset>/sparse_reconstruction/
    path = tmp_path_factory.mktemp("sog") / "sogs_bundle" / "patch.sog"
    path.parent.mkdir()
    write_sog(terrain_cloud(12_345), path)
    (path.parent.parent / "sparse_reconstruction").mkdir()
    (path.parent.parent / "sparse_reconstruction" / "report.json").write_text(json.dumps(
        {"georegistration": {"georegistered": True, "frame": "enu_horizontal"}}))
    # what the SOG stage writes beside the bundle: its plain test-view figures
    (path.parent / "report.json").write_text(json.dumps({"metadata": {
        "psnr_measured": True, "psnr_decoded_db": 23.456, "psnr_views": 3, "psnr_resolution": "1589x893",
        "alpha_decoded": 0.99}}))
    # and splat_model's cameras.json: three photos taken 5 m above the patch, the last one a test view
    cameras = []
    for i, centre in enumerate([(-6.0, -6.0, 5.0), (0.0, 6.0, 5.0), (6.0, 0.0, 5.0)]):
        world_to_camera = np.eye(4)
        world_to_camera[:3, 3] = -np.asarray(centre)  # looking along +z of the world, for simplicity
        cameras.append({"name": f"view_{i}.jpg", "width": 800, "height": 600, "heldout": i == 2,
                        "K": np.eye(3).tolist(), "world_to_camera": world_to_camera.tolist()})
    (path.parent / "cameras.json").write_text(json.dumps({"scene_scale": 10.0, "cameras": cameras}))
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
        assert [c["position"] for c in info["cameras"]] == [[-6.0, -6.0, 5.0], [0.0, 6.0, 5.0], [6.0, 0.0, 5.0]]
        assert [c["heldout"] for c in info["cameras"]] == [False, False, True]
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


@contextmanager
def viewer_page(target: str, height: int = 700) -> Iterator[tuple[Browser, Bundle]]:
    """`spaceport view target` loaded in headless Chromium until the page is ready or reports an error; skips
    where no browser can run."""
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium)")
    server, bundle = start_server(target, port=0)
    try:
        with Browser(1024, height, timeout=60) as browser:
            browser.goto(f"http://127.0.0.1:{server.server_address[1]}/")
            browser.wait_for("['ready', 'error'].includes(document.body.dataset.state)", timeout=180)
            yield browser, bundle
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))
    finally:
        server.shutdown()


def view_in_chromium(target: str, shot: Path) -> tuple[dict, float, list[str]]:
    with viewer_page(target) as (browser, _):
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


def test_page_renders_the_splat_without_errors(sog_file: Path, tmp_path: Path) -> None:
    engine_or_skip()
    page, drawn, errors = view_in_chromium(str(sog_file), tmp_path / "viewer.png")
    assert page["state"] == "ready", page["status"]
    assert errors == []
    assert page["splats"] == "12345" and page["shown"] == "12,345"
    assert page["size"] == f"{sog_file.stat().st_size / 1e3:.1f} kB"
    assert page["psnr"] == "23.46 dB"
    assert drawn > 0.2, f"only {drawn:.1%} of the canvas differs from the background"


def test_page_controls_top_down_north_arrow_scale_bar_and_cameras(sog_file: Path, tmp_path: Path) -> None:
    engine_or_skip()
    height = 700
    with viewer_page(str(sog_file), height) as (browser, bundle):
        assert browser.evaluate("document.body.dataset.state") == "ready"
        assert browser.evaluate("document.body.dataset.progress") == "100"  # the download reported its progress
        assert browser.evaluate("document.getElementById('camera-count').textContent") == "3"
        assert browser.evaluate("document.body.dataset.cameras") == "3"
        # top-down: straight down on the framed centre, north up, and a scale bar in round metres
        browser.evaluate("document.getElementById('top-down').click()")
        time.sleep(0.5)
        assert abs(float(browser.evaluate("document.body.dataset.north"))) < 1.0
        distance = bundle.frame["half_extent"] * 2.6  # the first framing's orbit distance
        metres_per_pixel = 2 * distance * np.tan(np.radians(25)) / height
        assert float(browser.evaluate("document.body.dataset.metresPerPixel")) == pytest.approx(
            metres_per_pixel, rel=0.01)
        label = browser.evaluate("document.getElementById('scale-label').textContent")
        bar = float(browser.evaluate("document.getElementById('scale-bar').getBoundingClientRect().width"))
        assert label == "2 m", label  # 140 px is 4.3 m here: the longest 1-2-5 length below is 2 m
        assert browser.evaluate("document.body.dataset.units") == "m"  # the survey's SfM was georegistered
        assert bar == pytest.approx(2 / metres_per_pixel + 2 * 2, abs=1.5)  # plus the 2 px borders
        hide = "document.getElementById('panel').style.display = 'none'"
        browser.evaluate(hide)
        with_cameras = np.asarray(Image.open(io.BytesIO(browser.screenshot(tmp_path / "cameras.png"))))
        browser.evaluate("document.getElementById('panel').style.display = '';"
                         "document.getElementById('show-cameras').click()")
        assert browser.evaluate("document.body.dataset.cameras") == "0"
        browser.evaluate(hide)
        time.sleep(0.5)
        without = np.asarray(Image.open(io.BytesIO(browser.screenshot(tmp_path / "no-cameras.png"))))
        changed = (np.abs(with_cameras.astype(np.int16) - without).max(axis=2) > 40).mean()
        assert changed > 2e-4, "hiding the cameras changed nothing on the screen"
        # north up, east right: the south-west camera (-6, -6) is the left-most marker, in the lower half
        ys, xs = np.nonzero(np.abs(with_cameras.astype(np.int16) - without).max(axis=2) > 40)
        left = xs < xs.min() + 20
        assert ys[left].mean() > height / 2 and xs.max() > 1024 / 2
        # reset goes back to the oblique first view: north still up the screen, the scale unchanged
        browser.evaluate("document.getElementById('reset').click()")
        time.sleep(0.5)
        assert abs(float(browser.evaluate("document.body.dataset.north"))) < 1.0
        assert browser.evaluate("document.body.dataset.state") == "ready" and browser.log.errors == []


def test_page_reports_a_broken_bundle(tmp_path: Path, sog_file: Path) -> None:
    engine_or_skip()
    broken = tmp_path / "broken.sog"
    data = bytearray(sog_file.read_bytes())
    broken.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ViewerSetupError, match="not a SOG bundle"):
        resolve_bundle(str(broken))


def test_units_come_from_the_surveys_sparse_reconstruction(sog_file: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from spaceport_dagster.resources.artifact_store import LocalArtifactStore

    assert resolve_bundle(str(sog_file)).georegistered is True  # its sparse_reconstruction beside it says so
    lone = tmp_path / "lone.sog"
    lone.write_bytes(sog_file.read_bytes())
    assert resolve_bundle(str(lone)).georegistered is None  # nothing says it is in metres
    monkeypatch.setenv("SPACEPORT_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    store = LocalArtifactStore(tmp_path / "artifacts")
    with store.staging("site-8", "sogs_bundle") as staging:
        (staging.local_dir / "site-8.sog").write_bytes(sog_file.read_bytes())
        store.publish(staging)
    assert resolve_bundle("site-8").georegistered is None  # no sparse_reconstruction published
    with store.staging("site-8", "sparse_reconstruction") as staging:
        (staging.local_dir / "report.json").write_text(json.dumps(
            {"georegistration": {"georegistered": False, "frame": "local_upright"}}))
        store.publish(staging)
    assert resolve_bundle("site-8").georegistered is False


def test_scale_bar_says_model_units_for_a_survey_that_is_not_georegistered(sog_file: Path, tmp_path: Path) -> None:
    engine_or_skip()
    dataset = tmp_path / "site"
    (dataset / "sogs_bundle").mkdir(parents=True)
    (dataset / "sparse_reconstruction").mkdir()
    bundle_path = dataset / "sogs_bundle" / "site.sog"
    bundle_path.write_bytes(sog_file.read_bytes())
    (dataset / "sparse_reconstruction" / "report.json").write_text(json.dumps(
        {"georegistration": {"georegistered": False, "frame": "local_upright"}}))
    with viewer_page(str(bundle_path)) as (browser, bundle):
        assert bundle.georegistered is False
        assert browser.evaluate("document.body.dataset.state") == "ready"
        browser.evaluate("document.getElementById('top-down').click()")
        time.sleep(0.5)
        assert browser.evaluate("document.getElementById('scale-label').textContent") == "2 model units"
        assert browser.evaluate("document.body.dataset.units") == "model units"
        assert "not georegistered" in browser.evaluate("document.getElementById('scale').title")


def test_serves_a_newly_published_bundle_without_a_restart(sog_file: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A run publishes a new sogs_bundle while `spaceport view` runs: the next requests get it (its bytes, its
    version), and the open page names the newer version and offers to load it."""
    from spaceport_dagster.resources.artifact_store import LocalArtifactStore
    from spaceport_dagster.stages.sog.writer import write_sog

    engine_or_skip()
    monkeypatch.setenv("SPACEPORT_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    store = LocalArtifactStore(tmp_path / "artifacts", retention_s=0)  # the old version is deleted on publish

    def publish(data: bytes) -> str:
        with store.staging("site-7", "sogs_bundle") as staging:
            (staging.local_dir / "site-7.sog").write_bytes(data)
            store.publish(staging)
        return store.manifest("site-7", "sogs_bundle")["version"]

    first = publish(sog_file.read_bytes())
    newer_file = tmp_path / "newer.sog"
    write_sog(terrain_cloud(2_000, seed=1), newer_file)
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium)")
    server, bundle = start_server("site-7", port=0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert bundle.version == first
        with Browser(800, 600, timeout=60) as browser:
            browser.goto(f"{base}/")
            browser.wait_for("['ready', 'error'].includes(document.body.dataset.state)", timeout=180)
            assert browser.evaluate("document.getElementById('version').textContent") == first
            assert browser.evaluate("document.getElementById('newer').hidden") is True
            second = publish(newer_file.read_bytes())
            assert second != first and not (tmp_path / "artifacts" / "site-7" / f".sogs_bundle.{first}").exists()
            time.sleep(2.1)  # the server looks at most every 2 s
            info = json.loads(urllib.request.urlopen(f"{base}/api/info").read())
            assert info["version"] == second and info["splats"] == 2_000
            assert urllib.request.urlopen(f"{base}/bundle.sog").read() == newer_file.read_bytes()
            browser.wait_for(f"document.body.dataset.newerVersion === {second!r}", timeout=30)
            assert browser.evaluate("document.getElementById('newer').hidden") is False
            browser.evaluate("document.getElementById('load-newer').click()")
            time.sleep(1)
            browser.wait_for("['ready', 'error'].includes(document.body.dataset.state)", timeout=180)
            assert browser.evaluate("document.body.dataset.state") == "ready"
            assert browser.evaluate("document.getElementById('version').textContent") == second
            assert browser.evaluate("document.body.dataset.splats") == "2000"
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))
    finally:
        server.shutdown()


def test_view_names_a_missing_file_and_a_busy_port(sog_file: Path, tmp_path: Path) -> None:
    engine_or_skip()
    with pytest.raises(ViewerSetupError, match=r"^missing\.sog: no such file$"):
        resolve_bundle("missing.sog")
    with pytest.raises(ViewerSetupError, match="neither a .sog file nor a dataset id"):
        resolve_bundle("Not_A_Dataset")
    server, _ = start_server(str(sog_file), port=0)
    try:
        port = server.server_address[1]
        with pytest.raises(ViewerSetupError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: .*; choose another "
                                                   r"with --port$"):
            start_server(str(sog_file), port=port)
    finally:
        server.shutdown()
