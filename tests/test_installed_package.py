"""The orchestrator from an installed wheel, outside the checkout: the code location loads from the installed
module (SPACEPORT_HOME/workspace.yaml), not from a path into a source tree. A wheel is built, installed into a
fresh venv (its dependencies come from this environment's site-packages, without the editable install), and
`spaceport demo --until colmap_export`, `spaceport ui` and `spaceport backfill` run from another folder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(root / "dist"), str(REPO)], check=True, timeout=600)
    wheel = next((root / "dist").glob("spaceport_dagster-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # this environment's packages, as plain folders: its .pth files (the editable install of the checkout) are
    # not processed from there, so `spaceport_dagster` can only come from the wheel
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, timeout=600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPACEPORT_", "DAGSTER_", "PYTHON"))}
    env["SPACEPORT_HOME"] = str(root / "home")
    return root, env | {"VENV_PYTHON": str(venv / "bin" / "python")}


def spaceport(installed: tuple[Path, dict[str, str]], *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    root, env = installed
    return subprocess.run([env["VENV_PYTHON"], "-m", "spaceport_dagster.cli", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_package_comes_from_the_wheel(installed) -> None:
    root, env = installed
    where = subprocess.run([env["VENV_PYTHON"], "-c", "import spaceport_dagster; print(spaceport_dagster.__file__)"],
                           cwd=root, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(root / "venv")) and not where.startswith(str(REPO)), where


def test_demo_runs_from_the_installed_package(installed) -> None:
    root, _ = installed
    done = spaceport(installed, "demo", "--photos", "12", "--size", "400x300", "--until", "colmap_export")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    home = root / "home"
    assert (home / "artifacts" / "demo" / "colmap_export" / "_SUCCESS").is_file()
    workspace = (home / "workspace.yaml").read_text()
    assert "module_name: spaceport_dagster.definitions" in workspace and "working_directory" not in workspace


def test_backfill_from_the_installed_package(installed) -> None:
    done = spaceport(installed, "backfill", "--assets", "image_set", "--datasets", "demo", "--title", "from a wheel")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert '"from a wheel": image_set over 1 dataset(s) (demo)' in done.stdout


def test_ui_loads_the_code_location_from_the_installed_package(installed) -> None:
    root, env = installed
    port = free_port()
    proc = subprocess.Popen([env["VENV_PYTHON"], "-m", "spaceport_dagster.cli", "ui", "--port", str(port)], cwd=root,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    query = json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries { name "
                                 "locationOrLoadError { __typename } } } } }"}).encode()
    entries = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                                 headers={"Content-Type": "application/json"})
                body = json.loads(urllib.request.urlopen(request, timeout=10).read())
                entries = body["data"]["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["locationOrLoadError"]:
                    break
            except (OSError, ValueError, KeyError, TypeError):
                pass
            time.sleep(2)
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:  # dagster dev's daemon and webserver can be slow to stop: not the point
            os.killpg(proc.pid, 9)
            proc.wait(30)
    assert entries == [{"name": "spaceport", "locationOrLoadError": {"__typename": "RepositoryLocation"}}], entries
