"""`spaceport view <dataset>`: a local HTTP server with a PlayCanvas page that shows the dataset's `.sog`.

Routes: `/` the page, `/viewer.js` its script, `/vendor/playcanvas.mjs` the pinned engine from
`tools/node/node_modules` (installed by scripts/install-viewer.sh, never committed), `/api/info` facts
about the bundle (name, version, bytes, splat count from its meta.json, the plain test-view PSNR the SOG stage
measured for it, the camera positions, whether its survey was georegistered), `/bundle.sog` the bundle itself. The
page renders on black, the background the quality gates use. The server follows what is published
(viewer/follow.py): a new version of the dataset's sogs_bundle (or a changed .sog file) is served from the next
request on, and the page offers to load it.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import threading
import webbrowser
from dataclasses import asdict, dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from .follow import FollowedBundle

STATIC = Path(__file__).with_name("static")
REPO = Path(__file__).resolve().parents[2]
PLAYCANVAS_VERSION = "2.23.3"  # first checked against SOG v2 bundles; keep in step with scripts/install-viewer.sh


class ViewerSetupError(RuntimeError):
    pass


@dataclass
class Bundle:
    dataset: str
    path: str
    bytes: int
    splats: int
    source: str  # the artifact URI, or the file given on the command line
    frame: dict | None = None  # robust centre and half extent of the splat (see robust_frame)
    quality: dict | None = None  # the bundle's plain test-view figures (see bundle_quality)
    cameras: list[dict] | None = None  # where the photos were taken, in the splat's frame (see camera_positions)
    georegistered: bool | None = None  # the survey's SfM put it in metres (None: not known; see sfm_georegistered)
    version: str = ""  # the published version (a .sog file: its size and modification time); see follow.py


def bundle_quality(sog: Path) -> dict | None:
    """The figures the SOG stage measured for exactly this bundle (report.json beside it): the decoded splat
    rendered plainly (black background, no colour model) on the test views. None when there is no report."""
    try:
        meta = json.loads((sog.parent / "report.json").read_text())["metadata"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if not meta.get("psnr_measured") or meta.get("psnr_decoded_db") is None:
        return None
    return {"psnr_db": round(float(meta["psnr_decoded_db"]), 2), "views": meta.get("psnr_views"),
            "resolution": meta.get("psnr_resolution"), "alpha": meta.get("alpha_decoded")}


def camera_positions(sog: Path) -> list[dict] | None:
    """Camera centres from the cameras.json beside the bundle (the SOG stage copies splat_model's), in the
    splat's frame: {name, position [x, y, z], heldout}. None when there is none or it cannot be read."""
    try:
        cameras = json.loads((sog.parent / "cameras.json").read_text())["cameras"]
        out = []
        for camera in cameras:
            world_to_camera = np.asarray(camera["world_to_camera"], np.float64)
            rotation, translation = world_to_camera[:3, :3], world_to_camera[:3, 3]
            centre = -rotation.T @ translation
            out.append({"name": str(camera["name"]), "position": [round(float(v), 4) for v in centre],
                        "heldout": bool(camera.get("heldout", False))})
        return out
    except (OSError, KeyError, TypeError, ValueError, IndexError):
        return None


def sfm_georegistered(report: Path) -> bool | None:
    """Whether the sparse_reconstruction whose report.json this is was georegistered (its frame in metres);
    None when there is no readable report. The page's scale bar says metres only when this is True."""
    try:
        return bool(json.loads(report.read_text())["georegistration"]["georegistered"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def robust_frame(path: Path) -> dict | None:
    """Where the initial camera should look: the median and the 5-95 % spread of the opaque splats.

    Trained splats carry a few huge, far background Gaussians; framing the bounding box would leave the
    survey a speck in the middle of the screen. None when the bundle cannot be decoded here.
    """
    try:
        from spaceport_dagster.stages.sog.reader import read_sog

        cloud = read_sog(path)
    except Exception:  # noqa: BLE001 - the page falls back to the engine's bounding box
        return None
    means = cloud.means[1.0 / (1.0 + np.exp(-cloud.opacities)) > 0.3]
    if len(means) < 10:
        means = cloud.means
    lo, hi = np.percentile(means, 5, axis=0), np.percentile(means, 95, axis=0)
    return {"center": [float(v) for v in np.median(means, axis=0)], "half_extent": float(max(hi - lo) / 2)}


def playcanvas_module() -> Path:
    """The engine's ES module: SPACEPORT_PLAYCANVAS, else tools/node/node_modules/playcanvas in the repo."""
    override = os.environ.get("SPACEPORT_PLAYCANVAS")
    path = Path(override) if override else REPO / "tools/node/node_modules/playcanvas/build/playcanvas.mjs"
    if not path.is_file():
        raise ViewerSetupError(f"the PlayCanvas engine is not installed at {path}; run scripts/install-viewer.sh "
                               f"(npm installs playcanvas@{PLAYCANVAS_VERSION} into tools/node)")
    return path


def sog_splat_count(path: Path) -> int:
    """`count` from the bundle's meta.json (the SOG v2 header), read without decoding the images."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read("meta.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ViewerSetupError(f"{path} is not a SOG bundle ({exc})") from None
    if meta.get("version") != 2 or not isinstance(meta.get("count"), int):
        raise ViewerSetupError(f"{path}: meta.json is not SOG version 2 with a splat count")
    return int(meta["count"])


def missing_file(target: str) -> bool:
    """Whether `target` names a file (a path to a .sog, or anything with a slash) rather than a dataset id."""
    return target.endswith(".sog") or os.sep in target


def file_version(path: Path) -> str:
    """A .sog file's version: its size and modification time, which a rewrite changes."""
    stat = path.stat()
    return f"{stat.st_size}-{stat.st_mtime_ns}"


def published_version(target: str) -> str:
    """The version `resolve_bundle(target)` would give now, without reading the bundle."""
    given = Path(target)
    if given.is_file():
        return file_version(given)
    from spaceport_dagster.resources.artifact_store import open_store
    from spaceport_dagster.resources.storage import default_artifact_root

    store = open_store(default_artifact_root(), os.environ.get("AWS_ENDPOINT_URL"))
    return str(store.manifest(target, "sogs_bundle")["version"])


def resolve_bundle(target: str) -> Bundle:
    """A `.sog` file path as given, or the published sogs_bundle of dataset `target` in the artifact store."""
    given = Path(target)
    if given.is_file():
        path = given.resolve()
        # a bundle in an artifact folder (<root>/<dataset>/sogs_bundle/): its survey's sparse_reconstruction beside it
        return Bundle(path.stem, str(path), path.stat().st_size, sog_splat_count(path), str(path), robust_frame(path),
                      bundle_quality(path), camera_positions(path),
                      sfm_georegistered(path.parent.parent / "sparse_reconstruction" / "report.json"), file_version(path))
    if missing_file(target):
        raise ViewerSetupError(f"{target}: no such file")
    from spaceport_dagster.resources.artifact_store import ArtifactMissing, open_store
    from spaceport_dagster.resources.storage import default_artifact_root
    from spaceport_dagster.stages.dataset_id import InvalidDatasetId, validate_dataset_id

    try:
        dataset = validate_dataset_id(target)
    except InvalidDatasetId as exc:
        raise ViewerSetupError(f"{target!r} is neither a .sog file nor a dataset id: {exc}") from None
    store = open_store(default_artifact_root(), os.environ.get("AWS_ENDPOINT_URL"))
    try:
        version = store.manifest(dataset, "sogs_bundle")["version"]
        folder = store.fetch(dataset, "sogs_bundle")
    except ArtifactMissing as exc:
        raise ViewerSetupError(f"{exc}; materialise it first (spaceport run / spaceport demo)") from None
    path = folder / f"{dataset}.sog"
    if not path.is_file():
        raise ViewerSetupError(f"the published sogs_bundle of {dataset!r} has no {path.name}")
    try:
        georegistered = sfm_georegistered(store.fetch(dataset, "sparse_reconstruction") / "report.json")
    except ArtifactMissing:
        georegistered = None
    return Bundle(dataset, str(path), path.stat().st_size, sog_splat_count(path), store.uri(dataset, "sogs_bundle"),
                  robust_frame(path), bundle_quality(path), camera_positions(path), georegistered, version)


def make_handler(followed: FollowedBundle, engine: Path) -> type[BaseHTTPRequestHandler]:
    files = {
        "/": (STATIC / "index.html", "text/html; charset=utf-8"),
        "/index.html": (STATIC / "index.html", "text/html; charset=utf-8"),
        "/viewer.js": (STATIC / "viewer.js", "text/javascript; charset=utf-8"),
        "/vendor/playcanvas.mjs": (engine, "text/javascript; charset=utf-8"),
    }

    class Handler(BaseHTTPRequestHandler):
        server_version = "spaceport-viewer"

        def log_message(self, format: str, *args: object) -> None:  # quiet unless asked
            if os.environ.get("SPACEPORT_VIEWER_LOG"):
                super().log_message(format, *args)

        def _send(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0]
            if route == "/api/info":
                bundle = followed.current()
                info = {**asdict(bundle), "path": Path(bundle.path).name, "engine": f"playcanvas {PLAYCANVAS_VERSION}"}
                self._send(json.dumps(info).encode(), "application/json")
            elif route == "/bundle.sog":
                self._send(followed.read(), "application/octet-stream")
            elif route in files:
                path, content_type = files[route]
                self._send(path.read_bytes(), content_type)
            elif route == "/favicon.ico":
                self._send(b"", "image/x-icon", HTTPStatus.NO_CONTENT)
            else:
                self._send(b"not found", "text/plain", HTTPStatus.NOT_FOUND)

    return Handler


def start_server(target: str, host: str = "127.0.0.1", port: int = 8080) -> tuple[ThreadingHTTPServer, Bundle]:
    """Serve in a background thread; port 0 picks a free one (see `server.server_address`)."""
    engine = playcanvas_module()
    followed = FollowedBundle(target, resolve_bundle, published_version)
    try:
        server = ThreadingHTTPServer((host, port), make_handler(followed, engine))
    except OSError as exc:
        raise ViewerSetupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}"
                               + ("; choose another with --port" if exc.errno == errno.EADDRINUSE else "")) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, followed.current()


def cmd_view(args: argparse.Namespace) -> int:
    from spaceport_dagster.home import prepare_home

    prepare_home()
    try:
        server, bundle = start_server(args.dataset, args.host, args.port)
    except (ViewerSetupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    url = f"http://{host}:{port}/"
    print(f"spaceport view: {bundle.dataset}: {bundle.splats:,} splats, {bundle.bytes / 1e6:.2f} MB from {bundle.source}"
          f" (version {bundle.version}; a newer published one is served when it appears)")
    print(f"open {url}  (Ctrl-C to stop)", flush=True)
    if args.open:
        webbrowser.open(url)
    stop = threading.Event()
    # Ctrl-C or SIGTERM stops the server, also where the process was started with them ignored or blocked (a
    # child inherits both from its parent)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    view = sub.add_parser("view", help="open a dataset's web splat (.sog) in a local PlayCanvas viewer")
    view.add_argument("dataset", help="dataset id with a published sogs_bundle, or a path to a .sog file")
    view.add_argument("--port", type=int, default=8080, help="port on localhost (0: any free port)")
    view.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    view.add_argument("--open", action="store_true", help="open the page in the default browser")
    view.set_defaults(func=cmd_view)
