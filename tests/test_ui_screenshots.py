"""Screenshots of the Dagster UI after materialising the demo partition (up to colmap_export).

Starts `dagster dev` on a temporary instance, opens the asset pages in headless Chromium and checks that
each page shows what it should (lineage, metadata, checks). Screenshots land in the test's tmp folder, or
in SPACEPORT_SCREENSHOT_DIR when set. Skipped with a message where Chromium is not installed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from spaceport_dagster.stage_order import ASSET_ORDER

from .headless_chromium import Browser, BrowserUnavailable, find_chromium

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
DISMISS_MODAL = ("(() => { const b = [...document.querySelectorAll('button')].find(x => x.innerText.trim() === 'Skip');"
                 " if (b) { b.click(); return true; } return false; })()")

# (screenshot name, path, texts the page must show)
PAGES = [
    ("catalog", "/assets", [*ASSET_ORDER, "reconstruction", "splat"]),
    ("lineage", "/assets/colmap_export?view=lineage&lineageScope=neighbors&lineageDepth=4",
     ["image_set", "sparse_r", "colmap_export", "splat_model", "sogs_bundle"]),
    ("image_set", "/assets/image_set?view=events&partition=demo",
     ["materialized in run", "28 usable", "28/28 photos geotagged", "usable_images"]),
    ("sparse_reconstruction", "/assets/sparse_reconstruction?view=events&partition=demo",
     ["materialized in run", "registered photos", "28/28", "3D points", "reprojection error", "georegistration",
      "top-down view; full size below"]),
    ("sparse_reconstruction_checks", "/assets/sparse_reconstruction?view=checks",
     ["min_points", "registered_fraction", "reprojection_error", "Succeeded"]),
    ("colmap_export", "/assets/colmap_export?view=events&partition=demo",
     ["materialized in run", "exported images", "2D-3D per image", "PINHOLE"]),
    ("colmap_export_checks", "/assets/colmap_export?view=checks",
     ["every_image_has_correspondences", "export_reads_back", "Succeeded"]),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_signals() -> None:
    """Job runners often start tests with SIGINT/SIGTERM ignored, which children inherit; restore them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPACEPORT_", "DAGSTER_"))}
    env.update(SPACEPORT_HOME=str(home), DAGSTER_HOME=str(home))
    return env


@pytest.fixture(scope="module")
def materialised_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium); no UI screenshots")
    home = tmp_path_factory.mktemp("ui-home")
    done = subprocess.run([sys.executable, "-m", "spaceport_dagster.cli", "demo", "--until", "colmap_export"],
                          cwd=REPO, env=clean_env(home), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return home


@pytest.fixture(scope="module")
def dagster_ui(materialised_home: Path) -> Iterator[str]:
    port = free_port()
    log = open(materialised_home / "dagster-dev.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", str(REPO / "workspace.yaml"),
                             "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, env=clean_env(materialised_home),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=default_signals)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("dagster dev did not come up:\n"
                                       + (materialised_home / "dagster-dev.log").read_text()[-3000:]) from None
                time.sleep(1)
        # the UI greets localhost visitors with a community pop-up over the page; mark it seen
        request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": "mutation { setNuxSeen }"}).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=30)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # dagster dev shuts down its webserver, daemon and code server on ^C
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


# Text the page cuts off: an element that hides or scrolls its overflow and holds more than it shows, or that
# reaches past the window's right edge. (text, scrollWidth, clientWidth) of each.
CLIPPED = """(() => {
  const out = [];
  for (const el of document.querySelectorAll('table *')) {
    const style = getComputedStyle(el);
    const hides = ['hidden', 'clip', 'auto', 'scroll'].includes(style.overflowX) || style.textOverflow === 'ellipsis';
    const text = (el.innerText || '').trim();
    if (!text) continue;
    if ((hides && el.scrollWidth > el.clientWidth + 1) || el.getBoundingClientRect().right > window.innerWidth + 1)
      out.push([text.slice(0, 80), el.scrollWidth, el.clientWidth]);
  }
  return out;
})()"""
UI_WIDTH = 1600  # the width at which nothing may be cut off (issue 26)


def busy_fraction(png: bytes) -> float:
    """Share of pixels that are not the page's plain white background."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
    return float((pixels < 235).mean())


def test_asset_pages(dagster_ui: str, tmp_path: Path) -> None:
    out = Path(os.environ.get("SPACEPORT_SCREENSHOT_DIR", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    try:
        with Browser(UI_WIDTH, 1000, timeout=60) as browser:
            for name, path, texts in PAGES:
                browser.goto(dagster_ui + path)
                condition = " && ".join(f"document.body.innerText.includes({t!r})" for t in texts)
                try:
                    browser.wait_for(f"(() => {{ {DISMISS_MODAL}; return {condition}; }})()", timeout=120)
                except TimeoutError:
                    shown = browser.evaluate("document.body.innerText")
                    browser.screenshot(out / f"{name}.png")
                    missing = [t for t in texts if t not in shown]
                    pytest.fail(f"{name}: {path} never showed {missing}; screenshot {out / f'{name}.png'}")
                time.sleep(1.5)  # let graphs lay out and images decode
                png = browser.screenshot(out / f"{name}.png")
                size = Image.open(io.BytesIO(png)).size
                assert size == (UI_WIDTH, 1000)
                assert busy_fraction(png) > 0.02, f"{name}: the page looks empty"
                clipped = browser.evaluate(CLIPPED)
                assert clipped == [], f"{name}: cut off at {UI_WIDTH} px: {clipped}"
                if name == "sparse_reconstruction":
                    # the top-down view is on the page without a click ("[Show Markdown]"), decoded, and readable
                    shown = browser.evaluate("[...document.images].filter(i => i.src.startsWith('data:image/webp')"
                                             " && i.complete).map(i => [i.naturalWidth, i.alt])")
                    assert shown and all(width >= 64 for width, _ in shown), shown
                    assert "top-down view" in [alt for _, alt in shown]
                    broken = browser.evaluate("[...document.images].filter(i => i.src.startsWith('data:image')"
                                              " && !(i.complete && i.naturalWidth > 0)).length")
                    assert broken == 0
    except BrowserUnavailable as exc:
        pytest.skip(str(exc))


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}})
                                     .encode(), headers={"Content-Type": "application/json"})
    answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


DEMO_RUNS = """query { runsOrError(filter: {tags: [{key: "dagster/partition", value: "demo"}]}) {
  ... on Runs { results { runId status tags { key value } } } } }"""
REEXECUTE = """mutation Reexecute($parent: String!) {
  launchPipelineReexecution(reexecutionParams: {parentRunId: $parent, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  } }"""
RUN = """query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value } } } }"""


def test_reexecuting_a_demo_run_from_the_ui_succeeds(dagster_ui: str, materialised_home: Path) -> None:
    """The UI's "Re-execute" of the run `spaceport demo` made (its process long gone): the daemon launches it and
    it succeeds, and a `spaceport` command starting meanwhile (which fails the runs of killed spaceport
    processes) leaves it alone."""
    from dagster import DagsterInstance, DagsterRunStatus

    from spaceport_dagster.runner import reap_abandoned_runs

    [parent] = graphql(dagster_ui, DEMO_RUNS)["runsOrError"]["results"]
    assert parent["status"] == "SUCCESS"
    launched = graphql(dagster_ui, REEXECUTE, {"parent": parent["runId"]})["launchPipelineReexecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 1200
    reaped_while_running = None
    while True:
        run = graphql(dagster_ui, RUN, {"id": run_id})["runOrError"]
        if run["status"] == "STARTED" and reaped_while_running is None:
            with DagsterInstance.from_config(str(materialised_home)) as instance:
                reaped_while_running = reap_abandoned_runs(instance)
                assert instance.get_run_by_id(run_id).status == DagsterRunStatus.STARTED
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED") or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert run["status"] == "SUCCESS", (run, (materialised_home / "dagster-dev.log").read_text()[-3000:])
    assert reaped_while_running == []
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/parent_run_id"] == parent["runId"] and tags["dagster/partition"] == "demo"
    assert "spaceport/owner" not in tags
