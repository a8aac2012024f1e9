"""Ray casting of the 2.5D scene through a pinhole camera (COLMAP conventions: x right, y down, z forward).

Each pixel's ray is marched between the scene's highest and lowest heights; the first sample under the
surface is refined by bisection. Colour is view-independent (Lambert shading with a baked sun shadow), so
the photos agree with each other the way SfM assumes. Building walls get a facade texture with windows,
indexed along the wall and by height, because the top-down albedo map has no texture for vertical faces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .scene import Scene


@dataclass
class Camera:
    """A pinhole camera: `rotation` is world-from-camera (columns: camera x, y, z axes in ENU)."""

    width: int
    height: int
    focal_px: float
    centre: np.ndarray  # (3,) ENU metres
    rotation: np.ndarray  # (3, 3) world_from_camera

    @property
    def cam_from_world(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.rotation.T
        return r, -r @ self.centre


def _sample_grid(grid: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Values of `grid` (C, H, W) at normalised coordinates `coords` (..., 2) -> (C, N)."""
    out = F.grid_sample(grid[None], coords.reshape(1, 1, -1, 2), mode=mode, padding_mode="border",
                        align_corners=True)
    return out[0, :, 0]


def _sample(grid: torch.Tensor, x: torch.Tensor, y: torch.Tensor, scene: Scene, mode: str = "bilinear") -> torch.Tensor:
    """Values of `grid` (C, H, W) over the scene extent at world points (x, y) -> (C, N)."""
    spec = scene.spec
    return _sample_grid(grid, torch.stack([x / spec.half_x, y / spec.half_y], dim=-1), mode)


def _march(scene: Scene, origin: torch.Tensor, dirs: torch.Tensor, steps: int, refine: int) -> torch.Tensor:
    """Ray parameter t of the first surface hit for each ray (dirs point downwards)."""
    zmin, zmax = scene.z_range
    height = scene.height[None]
    scale = torch.tensor([1 / scene.spec.half_x, 1 / scene.spec.half_y])
    o_n = origin[:2] * scale  # normalised grid coordinates
    d_n = dirs[:, :2] * scale
    t0 = (origin[2] - (zmax + 0.05)) / -dirs[:, 2]
    t1 = (origin[2] - (zmin - 0.05)) / -dirs[:, 2]
    ts = torch.lerp(t0[:, None], t1[:, None], torch.linspace(0, 1, steps)[None])  # (N, S)
    coords = o_n + ts[:, :, None] * d_n[:, None, :]  # (N, S, 2)
    h = _sample_grid(height, coords)[0].view_as(ts)
    below = h > torch.addcmul(origin[2].expand_as(ts), ts, dirs[:, 2:3])
    below[:, -1] = True
    first = below.to(torch.uint8).argmax(dim=1).clamp(min=1)
    hi = ts.gather(1, first[:, None])[:, 0]
    lo = ts.gather(1, (first - 1)[:, None])[:, 0]
    for _ in range(refine):
        mid = 0.5 * (lo + hi)
        under = origin[2] + mid * dirs[:, 2] < _sample_grid(height, o_n + mid[:, None] * d_n)[0]
        hi = torch.where(under, mid, hi)
        lo = torch.where(under, lo, mid)
    return 0.5 * (lo + hi)


def _facade(scene: Scene, ids: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor,
            normal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(is_wall, colour (3, N)) for hits on building walls."""
    colour = torch.zeros((3, x.shape[0]))
    wall = torch.zeros(x.shape[0], dtype=torch.bool)
    steep = normal[2] < 0.5
    for i, b in enumerate(scene.buildings):
        mask = steep & (ids == i + 1)
        if not bool(mask.any()):
            continue
        c, s = math.cos(b.angle), math.sin(b.angle)
        dx, dy = x[mask] - b.cx, y[mask] - b.cy
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        nx = c * normal[0, mask] + s * normal[1, mask]
        u = torch.where(nx.abs() > 0.7, ly, lx)  # along the wall
        v = z[mask] - b.base  # up the wall
        window = ((u / 3.0) % 1.0 > 0.3) & ((u / 3.0) % 1.0 < 0.7) & ((v / 3.0) % 1.0 > 0.35) & \
                 ((v / 3.0) % 1.0 < 0.75) & (v < b.height - 0.6)
        base = torch.tensor(b.wall)[:, None] * (1 + 0.06 * torch.sin(u * 7.1) * torch.sin(v * 5.3))
        glass = torch.tensor([0.10, 0.14, 0.20])[:, None] * (1 + 0.3 * torch.sin(u * 2.3 + v))
        colour[:, mask] = torch.where(window[None], glass, base)
        door = (u.abs() < 0.6) & (v < 2.2) & (nx < -0.7)
        colour[:, mask] = torch.where(door[None], torch.tensor([0.35, 0.2, 0.12])[:, None], colour[:, mask])
        wall[mask] = True
    return wall, colour


def render(scene: Scene, camera: Camera, steps: int = 64, refine: int = 8, chunk: int = 40_000) -> np.ndarray:
    """An 8-bit sRGB image (H, W, 3) of the scene seen by `camera`."""
    w, h, f = camera.width, camera.height, camera.focal_px
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    rays_cam = torch.stack([(u.reshape(-1) + 0.5 - w / 2) / f, (v.reshape(-1) + 0.5 - h / 2) / f,
                            torch.ones(h * w)], dim=1)
    rot = torch.as_tensor(camera.rotation, dtype=torch.float32)
    dirs = rays_cam @ rot.T
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    if float(dirs[:, 2].max()) >= -0.05:
        raise ValueError("camera sees the horizon; the demo renderer only handles downward-looking views")
    origin = torch.as_tensor(camera.centre, dtype=torch.float32)
    sun = scene.sun
    # dilated so that hits on a wall, which lies between a roof cell and a ground cell, find their building
    ids_grid = F.max_pool2d(scene.building_id[None].float(), 5, stride=1, padding=2)
    out = torch.empty((3, h * w))
    for start in range(0, h * w, chunk):
        d = dirs[start:start + chunk]
        t = _march(scene, origin, d, steps, refine)
        p = origin[:, None] + t[None] * d.T
        albedo = _sample(scene.albedo, p[0], p[1], scene)
        normal = _sample(scene.normal, p[0], p[1], scene)
        normal = normal / normal.norm(dim=0, keepdim=True)
        shadow = _sample(scene.shadow[None], p[0], p[1], scene)[0]
        ids = _sample(ids_grid, p[0], p[1], scene, mode="nearest")[0].long()
        wall, facade = _facade(scene, ids, p[0], p[1], p[2], normal)
        albedo = torch.where(wall[None], facade, albedo)
        lambert = (normal * sun[:, None]).sum(0).clamp(min=0)
        light = 0.35 + 0.9 * lambert * (0.25 + 0.75 * shadow)
        out[:, start:start + chunk] = albedo * light
    srgb = out.clamp(0, 1) ** (1 / 2.2)
    return (srgb * 255 + 0.5).to(torch.uint8).T.reshape(h, w, 3).numpy()
