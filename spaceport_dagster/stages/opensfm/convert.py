"""OpenSfM dataset (reconstruction.json + tracks.csv + reference_lla.json) -> pycolmap.Reconstruction.

Correct by construction, unlike OpenSfM's `export_colmap` (see ../shared/fixtures/opensfm/README.md):
- the largest reconstruction is kept, the others are reported, never merged;
- one COLMAP camera per OpenSfM camera model (and decoded image size), with the refined intrinsics of the
  kept reconstruction converted exactly (cameras.py);
- keypoints in COLMAP's pixel convention, and each image lists only the observations of reconstructed points,
  so point2D indices and tracks agree;
- tracks.csv holds every observation of a track, including those OpenSfM rejected in bundle adjustment (it does
  not record which), so each observation's residual is recomputed and those above `max_reprojection_error_px`
  are dropped; a point left with fewer than `min_track_length` observations is dropped too (counted apart);
- image sizes come from the decoded image files, never from EXIF (downscaled copies keep the original size there).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from .cameras import ColmapCamera, colmap_camera, normalized_to_pixels
from .dataset import load_reconstructions, load_reference_lla, load_tracks

DEFAULT_MAX_REPROJECTION_ERROR_PX = 4.0  # COLMAP's own mapper default (filter_max_reproj_error)
DEFAULT_MIN_TRACK_LENGTH = 2


class ConversionError(ValueError):
    """The OpenSfM output cannot be turned into a consistent COLMAP model."""


class NoReconstruction(ConversionError):
    """OpenSfM ran but reconstructed nothing: a quality-gate failure, not a crash."""


@dataclass
class DroppedReconstruction:
    index: int  # position in reconstruction.json
    images: int
    points: int


@dataclass
class ConversionResult:
    reconstruction: Any  # pycolmap.Reconstruction of the kept OpenSfM reconstruction
    reference_lla: tuple[float, float, float] | None  # origin of the local east-north-up frame, None without GPS
    kept_index: int
    opensfm_images: int  # shots in the kept OpenSfM reconstruction
    opensfm_points: int  # points in the kept OpenSfM reconstruction
    dropped_reconstructions: list[DroppedReconstruction]
    observations_dropped_residual: int  # residual above max_reprojection_error_px
    points_dropped: int  # fewer than min_track_length observations left
    observations_dropped_with_points: int  # the surviving observations of those points
    max_reprojection_error_px: float
    step_seconds: dict[str, float] = field(default_factory=dict)
    point_track_ids: dict[int, str] = field(default_factory=dict)  # COLMAP point3D id -> OpenSfM track id
    camera_keys: dict[int, str] = field(default_factory=dict)  # COLMAP camera id -> OpenSfM camera key

    @property
    def seconds(self) -> dict[str, float]:
        """Alias of `step_seconds`."""
        return self.step_seconds

    def metadata(self) -> dict[str, Any]:
        """Plain-JSON facts for the stage report (the same keys as the COLMAP engine where they overlap)."""
        rec = self.reconstruction
        rec.update_point_3d_errors()
        return {
            "engine": "opensfm",
            "registered_images": rec.num_reg_images(),
            "points3D": rec.num_points3D(),
            "observations": rec.compute_num_observations(),
            "mean_track_length": round(rec.compute_mean_track_length(), 4) if rec.num_points3D() else 0.0,
            "mean_reprojection_error_px": round(rec.compute_mean_reprojection_error(), 4),
            "cameras": {str(cid): {"model": c.model.name, "opensfm_camera": self.camera_keys.get(cid, "")}
                        for cid, c in rec.cameras.items()},
            "reference_lla": list(self.reference_lla) if self.reference_lla else None,
            "opensfm_reconstructions": 1 + len(self.dropped_reconstructions),
            "opensfm_kept": {"index": self.kept_index, "images": self.opensfm_images, "points": self.opensfm_points},
            "opensfm_dropped_reconstructions": [vars(d) for d in self.dropped_reconstructions],
            "observations_dropped_residual": self.observations_dropped_residual,
            "max_reprojection_error_px": self.max_reprojection_error_px,
            "points_dropped_short_track": self.points_dropped,
            "images_without_points": sorted(img.name for img in rec.images.values() if img.num_points3D == 0),
            "step_seconds": {k: round(v, 3) for k, v in self.step_seconds.items()},
        }


def rotation_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Angle-axis (OpenSfM's `rotation`) -> 3x3 rotation matrix (Rodrigues)."""
    rotvec = np.asarray(rotvec, np.float64)
    theta = float(np.linalg.norm(rotvec))
    if theta < 1e-12:
        return np.eye(3)
    k = rotvec / theta
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * (kx @ kx)


def _pick_largest(reconstructions: list[dict[str, Any]]) -> int:
    if not reconstructions:
        raise NoReconstruction("reconstruction.json holds no reconstruction (OpenSfM registered no image pair)")
    sizes = [(len(r["shots"]), len(r.get("points", {}))) for r in reconstructions]
    return max(range(len(sizes)), key=lambda i: (sizes[i], -i))


def _image_sizes(names: list[str], image_dir: Path) -> dict[str, tuple[int, int]]:
    sizes = {}
    for name in names:
        path = image_dir / name
        if not path.is_file():
            raise ConversionError(f"image {name} of the reconstruction is not in {image_dir} (needed for its size)")
        with PILImage.open(path) as im:
            sizes[name] = im.size
    return sizes


def _indices_by_image(images: np.ndarray) -> dict[str, np.ndarray]:
    """Image name -> ascending indices of its entries in `images`, in one sort instead of a scan per image."""
    if not len(images):
        return {}
    names, inverse = np.unique(images, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(inverse, minlength=len(names)))[:-1])
    return dict(zip(names.tolist(), groups, strict=True))


def _check_aspect(key: str, camera: dict[str, Any], name: str, size: tuple[int, int]) -> None:
    w, h = int(camera.get("width", 0)), int(camera.get("height", 0))
    if w and h and w * size[1] != h * size[0]:
        raise ConversionError(
            f"image {name} decodes to {size[0]}x{size[1]} but OpenSfM camera {key!r} is {w}x{h}: different aspect "
            "ratio, so OpenSfM's normalised coordinates cannot be mapped to its pixels"
        )


def convert(
    dataset_dir: Path,
    image_dir: Path | None = None,
    *,
    max_reprojection_error_px: float = DEFAULT_MAX_REPROJECTION_ERROR_PX,
    min_track_length: int = DEFAULT_MIN_TRACK_LENGTH,
    log: logging.Logger | None = None,
) -> ConversionResult:
    """Convert the OpenSfM dataset in `dataset_dir` (image sizes read from `image_dir`, default `dataset_dir/images`)."""
    import pycolmap

    log = log or logging.getLogger(__name__)
    started = time.perf_counter()
    dataset_dir = Path(dataset_dir)
    image_dir = Path(image_dir) if image_dir is not None else dataset_dir / "images"
    if max_reprojection_error_px <= 0:
        raise ConversionError("max_reprojection_error_px must be positive")
    if min_track_length < 2:
        raise ConversionError("min_track_length must be at least 2 (a 3D point needs two views)")

    reconstructions = load_reconstructions(dataset_dir)
    kept = _pick_largest(reconstructions)
    rec_json = reconstructions[kept]
    dropped_recs = [
        DroppedReconstruction(i, len(r["shots"]), len(r.get("points", {})))
        for i, r in enumerate(reconstructions) if i != kept
    ]
    for d in dropped_recs:
        log.info(f"OpenSfM reconstruction {d.index} ({d.images} images, {d.points} points) dropped: not the largest")

    shots: dict[str, dict[str, Any]] = rec_json["shots"]
    points: dict[str, dict[str, Any]] = rec_json.get("points", {})
    cameras_json: dict[str, dict[str, Any]] = rec_json["cameras"]
    names = sorted(shots)
    sizes = _image_sizes(names, image_dir)

    # One COLMAP camera per (OpenSfM camera, decoded size): normally exactly one per OpenSfM camera model.
    camera_ids: dict[tuple[str, tuple[int, int]], int] = {}
    colmap_cams: dict[int, ColmapCamera] = {}
    camera_keys: dict[int, str] = {}
    image_camera: dict[str, int] = {}
    for name in names:
        key = shots[name]["camera"]
        if key not in cameras_json:
            raise ConversionError(f"shot {name} uses camera {key!r}, which the reconstruction does not define")
        _check_aspect(key, cameras_json[key], name, sizes[name])
        ident = (key, sizes[name])
        if ident not in camera_ids:
            cid = len(camera_ids) + 1
            camera_ids[ident] = cid
            colmap_cams[cid] = colmap_camera(cameras_json[key], *sizes[name])
            camera_keys[cid] = key
        image_camera[name] = camera_ids[ident]
    py_cams = {cid: cam.to_pycolmap(cid) for cid, cam in colmap_cams.items()}

    # Observations of reconstructed points in kept shots, in tracks.csv order.
    tracks = load_tracks(dataset_dir)
    in_rec = np.fromiter(
        (img in shots and tid in points for img, tid in zip(tracks.images, tracks.track_ids, strict=True)),
        dtype=bool, count=len(tracks),
    )
    obs_images = tracks.images[in_rec]
    obs_tracks = tracks.track_ids[in_rec]
    obs_features = tracks.feature_ids[in_rec]
    obs_xy = tracks.xy[in_rec]
    poses = {n: (rotation_matrix(shots[n]["rotation"]), np.asarray(shots[n]["translation"], np.float64)) for n in names}
    xyz = {tid: np.asarray(p["coordinates"], np.float64) for tid, p in points.items()}

    # Pixel positions and residuals, image by image.
    by_image = _indices_by_image(obs_images)
    obs_px = np.empty_like(obs_xy)
    residual = np.empty(len(obs_xy))
    for name in names:
        sel = by_image.get(name, np.empty(0, np.int64))
        if not len(sel):
            continue
        w, h = sizes[name]
        obs_px[sel] = normalized_to_pixels(obs_xy[sel], w, h)
        R, t = poses[name]
        cam_pts = np.stack([xyz[tid] for tid in obs_tracks[sel]]) @ R.T + t
        projected = py_cams[image_camera[name]].img_from_cam(cam_pts)  # NaN behind the camera
        err = np.linalg.norm(projected - obs_px[sel], axis=1)
        residual[sel] = np.where(np.isfinite(err), err, np.inf)
    good = residual <= max_reprojection_error_px
    n_bad = int((~good).sum())

    per_track = defaultdict(int)
    for tid in obs_tracks[good]:
        per_track[tid] += 1
    short = {tid for tid in points if per_track.get(tid, 0) < min_track_length}
    keep = good & np.fromiter((tid not in short for tid in obs_tracks), dtype=bool, count=len(obs_tracks))
    n_with_points = int((good & ~keep).sum())

    # Build the pycolmap model.
    rec = pycolmap.Reconstruction()
    for cam in py_cams.values():
        rec.add_camera_with_trivial_rig(cam)
    image_ids = {name: i for i, name in enumerate(names, start=1)}
    point2d_index: dict[tuple[str, str], int] = {}
    for name in names:
        sel = by_image.get(name, np.empty(0, np.int64))
        sel = sel[keep[sel]]
        sel = sel[np.argsort(obs_features[sel], kind="stable")]
        for idx, j in enumerate(sel):
            point2d_index[(name, obs_tracks[j])] = idx
        image = pycolmap.Image(
            name=name, keypoints=obs_px[sel].reshape(-1, 2), camera_id=image_camera[name], image_id=image_ids[name]
        )
        R, t = poses[name]
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(pycolmap.Rotation3d(R), t))

    observers: dict[str, list[str]] = defaultdict(list)
    for j in np.flatnonzero(keep):
        observers[obs_tracks[j]].append(obs_images[j])
    point_track_ids: dict[int, str] = {}
    for tid, point in points.items():
        if tid in short:
            continue
        elements = [pycolmap.TrackElement(image_ids[n], point2d_index[(n, tid)]) for n in observers[tid]]
        color = np.clip(np.round(np.asarray(point.get("color", (0, 0, 0)), np.float64)), 0, 255).astype(np.uint8)
        pid = rec.add_point3D(xyz[tid], pycolmap.Track(elements), color)
        point_track_ids[pid] = tid

    empty = [img.name for img in rec.images.values() if img.num_points3D == 0]
    if empty:
        log.warning(f"{len(empty)} registered image(s) kept no observation after filtering: {', '.join(empty[:5])}")
    if n_bad or short:
        log.info(
            f"dropped {n_bad} observation(s) with residual > {max_reprojection_error_px} px and {len(short)} point(s) "
            f"left with fewer than {min_track_length} observations"
        )
    return ConversionResult(
        reconstruction=rec,
        reference_lla=load_reference_lla(dataset_dir, rec_json),
        kept_index=kept,
        opensfm_images=len(shots),
        opensfm_points=len(points),
        dropped_reconstructions=dropped_recs,
        observations_dropped_residual=n_bad,
        points_dropped=len(short),
        observations_dropped_with_points=n_with_points,
        max_reprojection_error_px=max_reprojection_error_px,
        step_seconds={"convert": time.perf_counter() - started},
        point_track_ids=point_track_ids,
        camera_keys=camera_keys,
    )
