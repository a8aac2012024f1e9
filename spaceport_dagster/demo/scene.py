"""A procedural survey site: gently rolling ground, roads, buildings and trees, as 2.5D maps.

The scene is a heightfield (metres, z up, east-north-up frame) with an albedo map, a normal map and a baked
sun-shadow map, all on regular grids over the same extent. Texture is multi-scale on purpose: SIFT needs
blobs at many scales, from pebbles (a few cm) to fields (tens of metres), so every view registers.
Everything is drawn from one seeded generator, so a seed always gives the same site.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class Building:
    cx: float
    cy: float
    length: float  # along the building's own x axis
    width: float
    angle: float  # radians, counter-clockwise from east
    base: float  # ground height under the building
    height: float  # eaves above base
    ridge: float  # extra height of a gable ridge (0: flat roof)
    wall: tuple[float, float, float]
    roof: tuple[float, float, float]


@dataclass
class SceneSpec:
    half_x: float = 80.0  # extent: [-half_x, half_x] east
    half_y: float = 70.0  # extent: [-half_y, half_y] north
    height_res: float = 0.1  # metres per heightfield cell
    tex_res: float = 0.05  # metres per albedo texel
    buildings: int = 12
    trees: int = 70
    seed: int = 7
    sun_azimuth_deg: float = 135.0  # clockwise from north
    sun_elevation_deg: float = 50.0


@dataclass
class Scene:
    spec: SceneSpec
    height: torch.Tensor  # (Hh, Wh) metres; row index grows north
    normal: torch.Tensor  # (3, Hh, Wh)
    shadow: torch.Tensor  # (Hh, Wh) 1 lit, ~0.35 in shadow
    albedo: torch.Tensor  # (3, Ht, Wt) linear RGB in [0, 1]
    building_id: torch.Tensor  # (Hh, Wh) int, 0 outside buildings, i+1 for buildings[i]
    buildings: list[Building] = field(default_factory=list)

    @property
    def sun(self) -> torch.Tensor:
        return sun_direction(self.spec)

    @property
    def z_range(self) -> tuple[float, float]:
        return float(self.height.min()), float(self.height.max())


def sun_direction(spec: SceneSpec) -> torch.Tensor:
    az, el = math.radians(spec.sun_azimuth_deg), math.radians(spec.sun_elevation_deg)
    return torch.tensor([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])


def grid_coords(spec: SceneSpec, res: float) -> tuple[torch.Tensor, torch.Tensor]:
    """East and north coordinates of the cell centres of a grid of resolution `res` over the extent."""
    nx = int(round(2 * spec.half_x / res)) + 1
    ny = int(round(2 * spec.half_y / res)) + 1
    xs = torch.linspace(-spec.half_x, spec.half_x, nx)
    ys = torch.linspace(-spec.half_y, spec.half_y, ny)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return gx, gy


def value_noise(shape: tuple[int, int], cell: float, res: float, gen: torch.Generator, channels: int = 1) -> torch.Tensor:
    """Smooth noise in [-1, 1]-ish with features of about `cell` metres on a grid of `res` metres."""
    h, w = shape
    ch, cw = max(2, int(h * res / cell) + 2), max(2, int(w * res / cell) + 2)
    coarse = torch.rand((1, channels, ch, cw), generator=gen) * 2 - 1
    fine = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)
    return fine[0] if channels > 1 else fine[0, 0]


def fractal(shape: tuple[int, int], cells: list[float], res: float, gen: torch.Generator) -> torch.Tensor:
    total = torch.zeros(shape)
    for i, cell in enumerate(cells):
        total += value_noise(shape, cell, res, gen) * (0.6 ** i)
    return total


def window(spec: SceneSpec, res: float, cx: float, cy: float, radius: float) -> tuple[slice, slice]:
    """Rows and columns of a grid of resolution `res` within `radius` of (cx, cy), for local edits."""
    ix0 = max(int((cx - radius + spec.half_x) / res), 0)
    iy0 = max(int((cy - radius + spec.half_y) / res), 0)
    size = int(2 * radius / res) + 3
    return slice(iy0, iy0 + size), slice(ix0, ix0 + size)


def _rotated_local(gx: torch.Tensor, gy: torch.Tensor, b: Building) -> tuple[torch.Tensor, torch.Tensor]:
    dx, dy = gx - b.cx, gy - b.cy
    c, s = math.cos(b.angle), math.sin(b.angle)
    return c * dx + s * dy, -s * dx + c * dy


def _place_buildings(spec: SceneSpec, gen: torch.Generator) -> list[Building]:
    rand = lambda lo, hi: lo + (hi - lo) * float(torch.rand((), generator=gen))  # noqa: E731
    placed: list[Building] = []
    walls = [(0.82, 0.78, 0.70), (0.75, 0.62, 0.52), (0.86, 0.85, 0.80), (0.62, 0.58, 0.55), (0.80, 0.70, 0.55)]
    roofs = [(0.55, 0.22, 0.16), (0.35, 0.35, 0.38), (0.62, 0.60, 0.58), (0.45, 0.30, 0.22), (0.25, 0.30, 0.35)]
    attempts = 0
    while len(placed) < spec.buildings and attempts < 2000:
        attempts += 1
        length, width = rand(9, 20), rand(7, 12)
        cx, cy = rand(-spec.half_x * 0.7, spec.half_x * 0.7), rand(-spec.half_y * 0.7, spec.half_y * 0.7)
        radius = math.hypot(length, width) / 2
        if any(math.hypot(cx - b.cx, cy - b.cy) < radius + math.hypot(b.length, b.width) / 2 + 4 for b in placed):
            continue
        if abs(cy - 8.0) < radius + 4 or abs(cx + 22.0) < radius + 4:  # keep the roads clear
            continue
        gable = float(torch.rand((), generator=gen)) < 0.5
        k = int(torch.randint(0, len(walls), (), generator=gen))
        placed.append(Building(cx, cy, length, width, rand(0, math.pi), 0.0, rand(4, 11), rand(1.5, 3.5) if gable else 0.0,
                               walls[k], roofs[(k + len(placed)) % len(roofs)]))
    return placed


def _ground(spec: SceneSpec, gen: torch.Generator) -> torch.Tensor:
    gx, gy = grid_coords(spec, spec.height_res)
    relief = fractal(tuple(gx.shape), [60.0, 25.0], spec.height_res, gen) * 1.2
    return relief + 0.01 * gx


def _ground_albedo(spec: SceneSpec, gen: torch.Generator) -> torch.Tensor:
    gx, gy = grid_coords(spec, spec.tex_res)
    shape = tuple(gx.shape)
    res = spec.tex_res
    grass = torch.tensor([0.30, 0.45, 0.16]).view(3, 1, 1)
    dry = torch.tensor([0.55, 0.52, 0.30]).view(3, 1, 1)
    dirt = torch.tensor([0.48, 0.38, 0.26]).view(3, 1, 1)
    mix = (fractal(shape, [30.0, 9.0], res, gen) * 0.8 + 0.5).clamp(0, 1)
    albedo = grass * (1 - mix) + dry * mix
    patches = (fractal(shape, [18.0, 5.0], res, gen) > 0.55).float()
    albedo = albedo * (1 - patches) + dirt * patches
    detail = fractal(shape, [3.0, 1.0, 0.35, 0.12], res, gen)
    albedo = albedo * (1 + 0.35 * detail)
    # roads: an east-west one and a north-south one, asphalt with dashed centre lines
    asphalt = (0.30 + 0.05 * value_noise(shape, 0.3, res, gen)).expand(3, -1, -1)
    for centre, along, across in ((8.0, gx, gy), (-22.0, gy, gx)):
        road = ((across - centre).abs() < 3.5).float()
        albedo = albedo * (1 - road) + asphalt * road
        dash = (((along / 6.0) % 1.0) < 0.5) & ((across - centre).abs() < 0.08)
        albedo = torch.where(dash, torch.tensor(0.92), albedo)
    # scattered stones and shrubs: strong small blobs, the best SIFT features on grass
    n = 4000
    xs = (torch.rand(n, generator=gen) * 2 - 1) * spec.half_x
    ys = (torch.rand(n, generator=gen) * 2 - 1) * spec.half_y
    radii = 0.15 + 0.6 * torch.rand(n, generator=gen) ** 2
    grey = torch.rand((n, 1), generator=gen) * 0.75 + 0.12
    colours = (grey * (1 + 0.5 * (torch.rand((n, 3), generator=gen) - 0.5))).clamp(0, 1)
    for i in range(n):
        win = window(spec, res, float(xs[i]), float(ys[i]), float(radii[i]))
        blob = (((gx[win] - xs[i]) ** 2 + (gy[win] - ys[i]) ** 2) < radii[i] ** 2).float()
        region = albedo[:, win[0], win[1]]
        albedo[:, win[0], win[1]] = region * (1 - blob) + colours[i].view(3, 1, 1) * blob
    return albedo


def _add_buildings(spec: SceneSpec, height: torch.Tensor, albedo: torch.Tensor, ids: torch.Tensor,
                   buildings: list[Building], gen: torch.Generator) -> None:
    hx, hy = grid_coords(spec, spec.height_res)
    tx, ty = grid_coords(spec, spec.tex_res)
    for i, b in enumerate(buildings):
        radius = math.hypot(b.length, b.width) / 2 + 0.5
        win = window(spec, spec.height_res, b.cx, b.cy, radius)
        lx, ly = _rotated_local(hx[win], hy[win], b)
        inside = (lx.abs() <= b.length / 2) & (ly.abs() <= b.width / 2)
        patch = height[win]
        b.base = float(patch[inside].min())
        roof = b.base + b.height + b.ridge * (1 - ly.abs() / (b.width / 2))
        patch[inside] = roof[inside]
        ids[win][inside] = i + 1
        win = window(spec, spec.tex_res, b.cx, b.cy, radius)
        lx, ly = _rotated_local(tx[win], ty[win], b)
        inside = (lx.abs() <= b.length / 2) & (ly.abs() <= b.width / 2)
        shape = tuple(lx.shape)
        colour = torch.tensor(b.roof).view(3, 1, 1)
        if b.ridge > 0:  # tiles: rows along the ridge, with per-tile shade
            rows = ((ly.abs() / 0.4) % 1.0 < 0.2).float()
            tiles = value_noise(shape, 0.4, spec.tex_res, gen)
            pattern = colour * (1 - 0.35 * rows) * (1 + 0.12 * tiles)
        else:  # flat roof: gravel, a parapet line and a few plant boxes
            gravel = fractal(shape, [1.5, 0.3, 0.1], spec.tex_res, gen)
            edge = ((b.length / 2 - lx.abs()) < 0.35) | ((b.width / 2 - ly.abs()) < 0.35)
            pattern = colour * (1 + 0.25 * gravel)
            pattern = torch.where(edge, torch.tensor(0.85), pattern)
            for k in range(3):
                ox = (k - 1) * b.length / 4
                box = ((lx - ox).abs() < 0.9) & ((ly - b.width / 5).abs() < 0.6)
                pattern = torch.where(box, torch.tensor([0.2, 0.22, 0.25]).view(3, 1, 1), pattern)
        region = albedo[:, win[0], win[1]]
        region[:, inside] = pattern[:, inside]


def _add_trees(spec: SceneSpec, height: torch.Tensor, albedo: torch.Tensor, ids: torch.Tensor,
               gen: torch.Generator) -> None:
    hx, hy = grid_coords(spec, spec.height_res)
    tx, ty = grid_coords(spec, spec.tex_res)
    bump_h = value_noise(tuple(hx.shape), 0.8, spec.height_res, gen)
    leaf = fractal(tuple(tx.shape), [1.2, 0.4, 0.15], spec.tex_res, gen)
    planted = 0
    while planted < spec.trees:
        cx = float((torch.rand((), generator=gen) * 2 - 1) * spec.half_x * 0.85)
        cy = float((torch.rand((), generator=gen) * 2 - 1) * spec.half_y * 0.85)
        radius = float(1.5 + 2.5 * torch.rand((), generator=gen))
        top = float(4 + 5 * torch.rand((), generator=gen))
        tone_jitter = float(torch.randn((), generator=gen))
        win = window(spec, spec.height_res, cx, cy, radius + 1.0)
        if bool((ids[win] > 0).any()) or abs(cy - 8.0) < radius + 3.5 or abs(cx + 22.0) < radius + 3.5:
            continue
        planted += 1
        d2 = ((hx[win] - cx) ** 2 + (hy[win] - cy) ** 2) / radius**2
        crown = d2 < 1
        base = float(height[win][crown].min())
        canopy = base + top * torch.sqrt((1 - d2).clamp(min=0)) + 0.35 * bump_h[win]
        patch = height[win]
        patch[crown] = torch.maximum(patch, canopy)[crown]
        ids[win][crown] = -1
        win = window(spec, spec.tex_res, cx, cy, radius + 1.0)
        d2t = ((tx[win] - cx) ** 2 + (ty[win] - cy) ** 2) / radius**2
        tone = torch.tensor([0.12, 0.30, 0.10]).view(3, 1, 1) * (1 + 0.15 * tone_jitter)
        leaves = tone * (1 + 0.5 * leaf[win])
        region = albedo[:, win[0], win[1]]
        region[:, d2t < 1] = leaves[:, d2t < 1]


def _normals(height: torch.Tensor, res: float) -> torch.Tensor:
    dzdx = torch.zeros_like(height)
    dzdy = torch.zeros_like(height)
    dzdx[:, 1:-1] = (height[:, 2:] - height[:, :-2]) / (2 * res)
    dzdy[1:-1, :] = (height[2:, :] - height[:-2, :]) / (2 * res)
    n = torch.stack([-dzdx, -dzdy, torch.ones_like(height)])
    return n / n.norm(dim=0, keepdim=True)


def _shadows(height: torch.Tensor, spec: SceneSpec, max_distance: float = 30.0) -> torch.Tensor:
    """1 where the sun is visible, 0 where terrain, a building or a tree blocks it (marched on a 0.2 m grid)."""
    step = 0.2
    factor = max(1, int(round(step / spec.height_res)))
    coarse = F.avg_pool2d(height[None, None], factor, ceil_mode=True)[0, 0] if factor > 1 else height
    sun = sun_direction(spec)
    horizontal = math.hypot(float(sun[0]), float(sun[1]))
    rise = float(sun[2]) / horizontal
    lit = torch.ones_like(coarse, dtype=torch.bool)
    h, w = coarse.shape
    for k in range(1, int(max_distance / step)):
        dx = int(round(k * float(sun[0]) / horizontal))
        dy = int(round(k * float(sun[1]) / horizontal))
        if abs(dx) >= w or abs(dy) >= h:
            break
        shifted = torch.full_like(coarse, -1e9)
        src_y = slice(max(dy, 0), h + min(dy, 0))
        dst_y = slice(max(-dy, 0), h + min(-dy, 0))
        src_x = slice(max(dx, 0), w + min(dx, 0))
        dst_x = slice(max(-dx, 0), w + min(-dx, 0))
        shifted[dst_y, dst_x] = coarse[src_y, src_x]
        lit &= shifted <= coarse + k * step * rise + 0.05
    soft = F.avg_pool2d(lit.float()[None, None], 3, stride=1, padding=1, count_include_pad=False)
    up = F.interpolate(soft, size=tuple(height.shape), mode="bilinear", align_corners=True)[0, 0]
    return up


def build_scene(spec: SceneSpec | None = None) -> Scene:
    spec = spec or SceneSpec()
    gen = torch.Generator().manual_seed(spec.seed)
    height = _ground(spec, gen)
    albedo = _ground_albedo(spec, gen)
    ids = torch.zeros(height.shape, dtype=torch.int64)
    buildings = _place_buildings(spec, gen)
    _add_buildings(spec, height, albedo, ids, buildings, gen)
    _add_trees(spec, height, albedo, ids, gen)
    normal = _normals(height, spec.height_res)
    shadow = _shadows(height, spec)
    return Scene(spec, height, normal, shadow, albedo.clamp(0, 1), ids.clamp(min=0), buildings)
