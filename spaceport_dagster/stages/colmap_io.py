"""Read COLMAP binary models (cameras.bin, images.bin, points3D.bin) with numpy alone.

The training container has no pycolmap; this reader is all it needs. Formats follow COLMAP's
`src/colmap/scene/reconstruction_io.cc` (little endian): poses are world-to-camera, quaternion w x y z.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# model id -> (name, number of parameters)
CAMERA_MODELS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}


class ColmapFormatError(ValueError):
    """A COLMAP binary file is missing, truncated or not what it claims to be."""


@dataclass
class Camera:
    camera_id: int
    model: str
    width: int
    height: int
    params: np.ndarray  # float64, model-specific

    def intrinsics(self) -> np.ndarray:
        """3x3 K for pinhole-type models (SIMPLE_PINHOLE, PINHOLE); refuses distorted models."""
        p = self.params
        if self.model == "PINHOLE":
            fx, fy, cx, cy = p
        elif self.model == "SIMPLE_PINHOLE":
            fx, cx, cy = p
            fy = fx
        else:
            raise ColmapFormatError(
                f"camera {self.camera_id} is {self.model}; training needs undistorted PINHOLE images "
                "(run the colmap_export stage first)"
            )
        return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)


@dataclass
class Image:
    image_id: int
    name: str
    camera_id: int
    qvec: np.ndarray  # (4,) w x y z, world-to-camera rotation
    tvec: np.ndarray  # (3,) world-to-camera translation
    xys: np.ndarray  # (M, 2) keypoint positions
    point3D_ids: np.ndarray  # (M,) int64, -1 where the keypoint has no 3D point

    def rotation(self) -> np.ndarray:
        return qvec_to_rotmat(self.qvec)

    def world_to_camera(self) -> np.ndarray:
        """4x4 world-to-camera matrix (gsplat's `viewmats`)."""
        m = np.eye(4)
        m[:3, :3] = self.rotation()
        m[:3, 3] = self.tvec
        return m

    def center(self) -> np.ndarray:
        return -self.rotation().T @ self.tvec


@dataclass
class Points3D:
    ids: np.ndarray  # (P,) int64
    xyz: np.ndarray  # (P, 3) float64
    rgb: np.ndarray  # (P, 3) uint8
    errors: np.ndarray  # (P,) float64 reprojection error
    track_lengths: np.ndarray  # (P,) int64


@dataclass
class Model:
    cameras: dict[int, Camera]
    images: dict[int, Image]
    points: Points3D


def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


class _Reader:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = path.read_bytes()
        except FileNotFoundError:
            raise ColmapFormatError(f"{path} does not exist") from None
        self.pos = 0

    def _need(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise ColmapFormatError(f"{self.path} is truncated at byte {self.pos} (wanted {size} more)")

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        self._need(size)
        values = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return values

    def array(self, dtype: np.dtype, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        self._need(size)
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return out

    def cstring(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ColmapFormatError(f"{self.path} is truncated inside an image name")
        text = self.data[self.pos:end].decode("utf-8", "replace")
        self.pos = end + 1
        return text

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise ColmapFormatError(f"{self.path} has {len(self.data) - self.pos} unexpected trailing bytes")


def read_cameras(path: str | Path) -> dict[int, Camera]:
    r = _Reader(Path(path))
    (count,) = r.take("<Q")
    cameras = {}
    for _ in range(count):
        camera_id, model_id, width, height = r.take("<iiQQ")
        if model_id not in CAMERA_MODELS:
            raise ColmapFormatError(f"{path}: unknown camera model id {model_id}")
        name, n_params = CAMERA_MODELS[model_id]
        params = np.array(r.take(f"<{n_params}d"), dtype=np.float64)
        cameras[camera_id] = Camera(camera_id, name, int(width), int(height), params)
    r.finish()
    return cameras


_POINT2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])
_TRACK = np.dtype([("image_id", "<i4"), ("point2d_idx", "<i4")])


def read_images(path: str | Path) -> dict[int, Image]:
    r = _Reader(Path(path))
    (count,) = r.take("<Q")
    images = {}
    for _ in range(count):
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = r.take("<i7di")
        name = r.cstring()
        (n_points,) = r.take("<Q")
        pts = r.array(_POINT2D, n_points)
        images[image_id] = Image(
            image_id=image_id, name=name, camera_id=camera_id,
            qvec=np.array([qw, qx, qy, qz]), tvec=np.array([tx, ty, tz]),
            xys=np.stack([pts["x"], pts["y"]], axis=1), point3D_ids=pts["id"].astype(np.int64),
        )
    r.finish()
    return images


def read_points3d(path: str | Path) -> Points3D:
    r = _Reader(Path(path))
    (count,) = r.take("<Q")
    ids = np.empty(count, np.int64)
    xyz = np.empty((count, 3), np.float64)
    rgb = np.empty((count, 3), np.uint8)
    errors = np.empty(count, np.float64)
    tracks = np.empty(count, np.int64)
    head = struct.Struct("<Q3d3BdQ")
    for i in range(count):
        if r.pos + head.size > len(r.data):
            raise ColmapFormatError(f"{path} is truncated in point {i} of {count}")
        pid, x, y, z, cr, cg, cb, err, n_track = head.unpack_from(r.data, r.pos)
        r.pos += head.size + n_track * _TRACK.itemsize
        ids[i], xyz[i], rgb[i], errors[i], tracks[i] = pid, (x, y, z), (cr, cg, cb), err, n_track
    if r.pos > len(r.data):
        raise ColmapFormatError(f"{path} is truncated inside a point track")
    r.finish()
    return Points3D(ids, xyz, rgb, errors, tracks)


def read_model(folder: str | Path) -> Model:
    """Read cameras.bin, images.bin and points3D.bin from `folder` (e.g. `export/sparse/0`)."""
    folder = Path(folder)
    missing = [n for n in ("cameras.bin", "images.bin", "points3D.bin") if not (folder / n).is_file()]
    if missing:
        raise ColmapFormatError(f"{folder} lacks {', '.join(missing)} (expected a COLMAP binary model)")
    return Model(
        cameras=read_cameras(folder / "cameras.bin"),
        images=read_images(folder / "images.bin"),
        points=read_points3d(folder / "points3D.bin"),
    )


def write_model(folder: str | Path, cameras: dict[int, Camera], images: dict[int, Image], points: Points3D) -> None:
    """Write a COLMAP binary model (tracks are written empty); used to build small test exports."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = {name: mid for mid, (name, _) in CAMERA_MODELS.items()}
    with open(folder / "cameras.bin", "wb") as fh:
        fh.write(struct.pack("<Q", len(cameras)))
        for cam in cameras.values():
            fh.write(struct.pack("<iiQQ", cam.camera_id, ids[cam.model], cam.width, cam.height))
            fh.write(np.asarray(cam.params, "<f8").tobytes())
    with open(folder / "images.bin", "wb") as fh:
        fh.write(struct.pack("<Q", len(images)))
        for im in images.values():
            fh.write(struct.pack("<i7di", im.image_id, *im.qvec, *im.tvec, im.camera_id))
            fh.write(im.name.encode("utf-8") + b"\0")
            pts = np.zeros(len(im.xys), _POINT2D)
            if len(im.xys):
                pts["x"], pts["y"], pts["id"] = im.xys[:, 0], im.xys[:, 1], im.point3D_ids
            fh.write(struct.pack("<Q", len(pts)) + pts.tobytes())
    with open(folder / "points3D.bin", "wb") as fh:
        fh.write(struct.pack("<Q", len(points.ids)))
        for i in range(len(points.ids)):
            fh.write(struct.pack("<Q3d3BdQ", int(points.ids[i]), *points.xyz[i], *points.rgb[i],
                                 float(points.errors[i]), 0))


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """3x3 rotation -> w x y z quaternion (w >= 0)."""
    m = np.asarray(R, dtype=np.float64)
    w = np.sqrt(max(0.0, 1 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = np.sqrt(max(0.0, 1 + m[0, 0] - m[1, 1] - m[2, 2])) / 2
    y = np.sqrt(max(0.0, 1 - m[0, 0] + m[1, 1] - m[2, 2])) / 2
    z = np.sqrt(max(0.0, 1 - m[0, 0] - m[1, 1] + m[2, 2])) / 2
    x = np.copysign(x, m[2, 1] - m[1, 2])
    y = np.copysign(y, m[0, 2] - m[2, 0])
    z = np.copysign(z, m[1, 0] - m[0, 1])
    q = np.array([w, x, y, z])
    return q / np.linalg.norm(q)
