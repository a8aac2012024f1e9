"""Generate the demo survey: `<out>/images/*.jpg` with EXIF and GPS, and `<out>/truth.json` with the true cameras.

truth.json (kept outside images/ so the pipeline never ingests it):
- `origin`: latitude, longitude, height (m above sea level) of the east-north-up frame the scene is built in;
- `camera`: width, height, focal length in pixels (principal point at the image centre, no distortion);
- `images`: per photo its name, kind (nadir/oblique), true centre in ENU metres and true latitude/longitude/
  altitude, `gps`: the fix as written to EXIF (the truth plus the survey's GPS errors, see `GpsErrors`), and
  the pose as COLMAP's cam_from_world (rotation matrix and translation);
- `fingerprint`: every parameter of the generator; the same fingerprint always produces the same files.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp

from .exif_writer import PhotoFacts, save_jpeg
from .flight import FlightPlan, plan_cameras
from .geodesy import enu_to_geodetic
from .raycast import Camera, render
from .scene import Scene, SceneSpec, build_scene

GENERATOR_VERSION = 2


@dataclass
class GpsErrors:
    """How the camera's GPS is wrong: an altitude that drifts linearly over the flight (camera GPS often climbs
    by 100 m over a flight held at constant height) and independent horizontal noise per fix."""

    altitude_drift_m: float = 0.0  # added to the last fix's altitude, proportionally to the ones before
    horizontal_noise_m: float = 0.0  # standard deviation, east and north each
    seed: int = 11

    def offsets(self, count: int) -> np.ndarray:
        """(count, 3) ENU errors in capture order."""
        rng = np.random.default_rng(self.seed)
        horizontal = rng.normal(0.0, self.horizontal_noise_m, (count, 2)) if self.horizontal_noise_m else np.zeros(
            (count, 2))
        drift = np.linspace(0.0, self.altitude_drift_m, count) if count > 1 else np.zeros(count)
        return np.column_stack([horizontal, drift])


@dataclass
class SurveySpec:
    scene: SceneSpec = field(default_factory=SceneSpec)
    flight: FlightPlan = field(default_factory=FlightPlan)
    origin: tuple[float, float, float] = (46.5191, 6.5668, 372.0)  # lat, lon, m above sea level
    make: str = "Spaceport"
    model: str = "Demo Survey Camera"
    focal_length_mm: float = 8.8  # a 1-inch sensor (13.2 mm wide): 24 mm equivalent
    start: str = "2024-06-01T10:00:00"
    seconds_between_shots: float = 4.0
    jpeg_quality: int = 92
    gps: GpsErrors = field(default_factory=GpsErrors)
    # render at 1/render_scale of the photo size, then resize: cheap photos of 12-20 MP for the native-resolution
    # tests (the detail is that of the smaller render)
    render_scale: int = 1

    def fingerprint(self) -> dict[str, Any]:
        return {"version": GENERATOR_VERSION, **asdict(self)}


def _truth_record(name: str, kind: str, camera, origin: tuple[float, float, float], captured: datetime,
                  gps_error: np.ndarray) -> dict[str, Any]:
    lat, lon, alt = enu_to_geodetic(camera.centre, origin)
    gps_lat, gps_lon, gps_alt = enu_to_geodetic(camera.centre + gps_error, origin)
    rotation, translation = camera.cam_from_world
    return {
        "name": name, "kind": kind, "captured_at": captured.isoformat(),
        "centre_enu": [float(v) for v in camera.centre],
        "latitude": lat, "longitude": lon, "altitude": alt,
        "gps": {"latitude": gps_lat, "longitude": gps_lon, "altitude": gps_alt,
                "error_enu": [float(v) for v in gps_error]},
        "cam_from_world_rotation": rotation.tolist(), "cam_from_world_translation": translation.tolist(),
    }


_worker_scene: Scene | None = None


def _init_worker(scene: Scene) -> None:
    global _worker_scene
    torch.set_num_threads(1)
    _worker_scene = scene


def _render_one(camera: Camera) -> np.ndarray:
    assert _worker_scene is not None
    with torch.inference_mode():
        return render(_worker_scene, camera)


def render_all(scene: Scene, cameras: list[Camera], workers: int):
    """Rendered images in camera order; one single-threaded process per core (no thread oversubscription)."""
    if workers <= 1:
        threads = torch.get_num_threads()
        _init_worker(scene)
        try:
            yield from map(_render_one, cameras)
        finally:
            torch.set_num_threads(threads)
        return
    for tensor in (scene.height, scene.normal, scene.shadow, scene.albedo, scene.building_id):
        tensor.share_memory_()
    # ProcessPoolExecutor, not multiprocessing.Pool: Pool replaces a worker that dies (killed, out of memory) and
    # waits forever for the photo it held; the executor watches its processes and raises BrokenProcessPool
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=(scene,)) as pool:
        yield from pool.map(_render_one, cameras)


def render_camera(camera: Camera, render_scale: int) -> Camera:
    """The camera the renderer draws through: the photo's camera at 1/render_scale of its size."""
    if render_scale <= 1:
        return camera
    if camera.width % render_scale or camera.height % render_scale:
        raise ValueError(f"render_scale {render_scale} must divide the photo size {camera.width}x{camera.height}")
    return Camera(camera.width // render_scale, camera.height // render_scale, camera.focal_px / render_scale,
                  camera.centre, camera.rotation)


def to_photo_size(pixels: np.ndarray, camera: Camera) -> np.ndarray:
    """A render made at a fraction of the photo size, resized (bicubic) to the photo's size."""
    if pixels.shape[1] == camera.width and pixels.shape[0] == camera.height:
        return pixels
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((camera.width, camera.height), Image.Resampling.BICUBIC))


def is_current(out: Path, spec: SurveySpec) -> bool:
    """Whether `out` already holds exactly this survey (same fingerprint, every image present)."""
    truth_path = out / "truth.json"
    if not truth_path.is_file():
        return False
    try:
        truth = json.loads(truth_path.read_text())
    except json.JSONDecodeError:
        return False
    expected = json.loads(json.dumps(spec.fingerprint()))
    return truth.get("fingerprint") == expected and all((out / "images" / r["name"]).is_file() for r in truth["images"])


def generate_survey(out: Path, spec: SurveySpec | None = None,
                    progress: Callable[[int, int, str], None] | None = None, workers: int | None = None) -> dict[str, Any]:
    """Render every photo of the flight into `out/images/` and write `out/truth.json`; returns the truth.

    `workers`: rendering processes (default: one per CPU core, at most 4); the output does not depend on it.
    """
    spec = spec or SurveySpec()
    workers = workers if workers is not None else min(4, len(os.sched_getaffinity(0)))
    scene = build_scene(spec.scene)
    cameras = plan_cameras(spec.flight)
    images = out / "images"
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir(parents=True)
    (out / "truth.json").unlink(missing_ok=True)
    start = datetime.fromisoformat(spec.start)
    records = []
    gps_errors = spec.gps.offsets(len(cameras))
    rendered = render_all(scene, [render_camera(camera, spec.render_scale) for _, camera in cameras], workers)
    for i, ((kind, camera), pixels) in enumerate(zip(cameras, rendered, strict=True)):
        name = f"demo_{i + 1:04d}.jpg"
        captured = start + timedelta(seconds=i * spec.seconds_between_shots)
        record = _truth_record(name, kind, camera, spec.origin, captured, gps_errors[i])
        gps = record["gps"]
        facts = PhotoFacts(spec.make, spec.model, spec.focal_length_mm, int(spec.flight.focal_length_35mm), captured,
                           gps["latitude"], gps["longitude"], gps["altitude"],
                           float(camera.centre[2] + gps_errors[i][2]))
        save_jpeg(to_photo_size(pixels, camera), images / name, facts, spec.jpeg_quality)
        records.append(record)
        if progress:
            progress(i + 1, len(cameras), name)
    truth = {
        "fingerprint": spec.fingerprint(),
        "origin": {"latitude": spec.origin[0], "longitude": spec.origin[1], "height": spec.origin[2]},
        "altitude_m": spec.flight.altitude_m,
        "camera": {"width": spec.flight.width, "height": spec.flight.height, "focal_px": spec.flight.focal_px,
                   "cx": spec.flight.width / 2, "cy": spec.flight.height / 2, "model": "PINHOLE"},
        "images": records,
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=2))
    return truth
