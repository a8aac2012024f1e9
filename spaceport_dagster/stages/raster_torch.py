"""A pure-PyTorch differentiable Gaussian rasteriser with gsplat 1.5's conventions.

Used when CUDA (and so gsplat) is absent: CI, laptops, tiny scenes. It follows `gsplat.rasterization`
in "classic" mode with `packed=False`: world-to-camera `viewmats`, pinhole `Ks`, EWA projection with the
0.3-frustum clamp of the Jacobian, a 0.3 px isotropic blur (`eps2d`), near/far culling, front-to-back alpha
compositing sorted by camera depth with alpha = min(0.999, o * exp(-sigma)), contributions below 1/255
skipped, and a pixel's compositing stopped before transmittance falls to 1e-4. Colours come from gsplat's
real SH basis (`spherical_harmonics`) with `clamp_min(c + 0.5, 0)`.

Like gsplat it composites tile by tile (8x8 pixels): each tile sees the depth-sorted Gaussians whose 3.33-sigma
box touches it; tiles with similar Gaussian counts are batched, and big batches are recomputed in the backward
pass (activation checkpointing) so memory stays bounded. Fine for images of a few hundred pixels a side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
T_MIN = 1e-4

SH_C0 = 0.28209479177387814


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """(N, 4) w x y z (any norm) -> (N, 3, 3)."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def sh_basis(degree: int, dirs: Tensor) -> Tensor:
    """Real SH basis up to `degree` at unit `dirs` (..., 3) -> (..., (degree+1)^2), gsplat's sign convention."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-0.48860251190292 * y, 0.48860251190292 * z, -0.48860251190292 * x]
    if degree >= 2:
        z2 = z * z
        t0b = -1.092548430592079 * z
        c1 = x * x - y * y
        s1 = 2 * x * y
        out += [0.5462742152960395 * s1, t0b * y, 0.9461746957575601 * z2 - 0.3153915652525201, t0b * x,
                0.5462742152960395 * c1]
    if degree >= 3:
        t0c = -2.285228997322329 * z2 + 0.4570457994644658
        t1b = 1.445305721320277 * z
        c2 = x * c1 - y * s1
        s2 = x * s1 + y * c1
        out += [-0.5900435899266435 * s2, t1b * s1, t0c * y, z * (1.865881662950577 * z2 - 1.119528997770346),
                t0c * x, t1b * c1, -0.5900435899266435 * c2]
    return torch.stack(out, dim=-1)


def sh_to_rgb(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH `coeffs` (N, K, 3) in directions `dirs` (N, 3) -> (N, 3), before the +0.5 offset."""
    k = (degree + 1) ** 2
    basis = sh_basis(degree, F.normalize(dirs, dim=-1))
    return (basis[..., :k, None] * coeffs[:, :k, :]).sum(dim=-2)


def project(
    means: Tensor, quats: Tensor, scales: Tensor, viewmat: Tensor, K: Tensor, width: int, height: int,
    eps2d: float = 0.3, near_plane: float = 0.01, far_plane: float = 1e10,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EWA projection of one camera: returns means2d (N, 2), conics (N, 3), depths (N,), radii (N, 2) int."""
    R, t = viewmat[:3, :3], viewmat[:3, 3]
    rot = quat_to_rotmat(quats)
    m = rot * scales[:, None, :]
    covars = m @ m.transpose(-1, -2)
    means_c = means @ R.T + t
    covars_c = R @ covars @ R.T
    tx, ty, tz = means_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    # A Gaussian at or behind the near plane is culled below, but its projection is still computed; at a depth
    # near 0 (a Gaussian beside a camera, in its image plane: street scenes such as lund) the Jacobian overflows,
    # and the culled Gaussian's zero gradients times inf made its means, scales and rotation NaN. Culled
    # Gaussians are projected at depth 1 instead: nothing reads them, and their gradients stay zero.
    tzs = torch.where(tz > near_plane, tz, torch.ones_like(tz))
    txc = tzs * torch.minimum(torch.maximum(tx / tzs, -lim_x_neg), lim_x_pos)
    tyc = tzs * torch.minimum(torch.maximum(ty / tzs, -lim_y_neg), lim_y_pos)
    zero = torch.zeros_like(tzs)
    J = torch.stack([fx / tzs, zero, -fx * txc / tzs**2, zero, fy / tzs, -fy * tyc / tzs**2], -1).reshape(-1, 2, 3)
    cov2d = J @ covars_c @ J.transpose(-1, -2)
    means2d = torch.stack([fx * tx / tzs + cx, fy * ty / tzs + cy], dim=-1)
    a = cov2d[:, 0, 0] + eps2d
    b = 0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0])
    c = cov2d[:, 1, 1] + eps2d
    det = a * c - b * b
    det_safe = det.clamp_min(1e-10)
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    with torch.no_grad():
        radii = torch.stack([torch.ceil(3.33 * a.clamp_min(0).sqrt()), torch.ceil(3.33 * c.clamp_min(0).sqrt())], -1)
        valid = (det > 0) & (tz > near_plane) & (tz < far_plane)
        inside = (
            (means2d[:, 0] + radii[:, 0] > 0) & (means2d[:, 0] - radii[:, 0] < width)
            & (means2d[:, 1] + radii[:, 1] > 0) & (means2d[:, 1] - radii[:, 1] < height)
        )
        radii = torch.where((valid & inside)[:, None], radii, torch.zeros_like(radii)).int()
    return means2d, conics, tz, radii


def _composite_tiles(pix: Tensor, gidx: Tensor, means2d: Tensor, conics: Tensor, opac: Tensor,
                     colors: Tensor) -> Tensor:
    """Front-to-back compositing for a batch of tiles: pixel centres `pix` (B, P, 2), depth-ordered Gaussian
    indices `gidx` (B, M) into the padded per-Gaussian tensors -> (B, P, 4) rgb + alpha."""
    m2, cn, op = means2d[gidx], conics[gidx], opac[gidx]  # (B, M, 2), (B, M, 3), (B, M)
    d = pix[:, :, None, :] - m2[:, None, :, :]  # (B, P, M, 2)
    dx, dy = d[..., 0], d[..., 1]
    sigma = 0.5 * (cn[:, None, :, 0] * dx * dx + cn[:, None, :, 2] * dy * dy) + cn[:, None, :, 1] * dx * dy
    # sigma < 0 (an indefinite conic from rounding, far along a needle-thin Gaussian) is masked out below, but
    # exp(-sigma) there can overflow to inf, and the mask's zero gradient times inf is NaN. The clamp keeps the
    # masked branch finite; the pixels kept have sigma >= 0 anyway.
    alpha = (op[:, None, :] * torch.exp(-sigma.clamp_min(0.0))).clamp(max=ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    trans_after = torch.cumprod(1.0 - alpha, dim=-1)
    trans_before = torch.cat([torch.ones_like(trans_after[..., :1]), trans_after[..., :-1]], dim=-1)
    # gsplat stops a pixel before the Gaussian that would take transmittance to <= 1e-4
    keep = (trans_after > T_MIN).to(alpha.dtype).detach()
    weights = alpha * trans_before * keep  # (B, P, M)
    rgb = weights @ colors[gidx]  # (B, P, 3)
    return torch.cat([rgb, weights.sum(dim=-1, keepdim=True)], dim=-1)


def _tile_pairs(means2d: Tensor, radii: Tensor, tiles_x: int, tiles_y: int, tile: int) -> tuple[Tensor, Tensor]:
    """(tile id, Gaussian rank) for every tile a Gaussian's radius box touches, sorted by tile then rank."""
    n = means2d.shape[0]
    r = radii.to(means2d.dtype)
    x0 = torch.floor((means2d[:, 0] - r[:, 0]) / tile).clamp(0, tiles_x).long()
    x1 = torch.ceil((means2d[:, 0] + r[:, 0]) / tile).clamp(0, tiles_x).long()
    y0 = torch.floor((means2d[:, 1] - r[:, 1]) / tile).clamp(0, tiles_y).long()
    y1 = torch.ceil((means2d[:, 1] + r[:, 1]) / tile).clamp(0, tiles_y).long()
    nx, ny = (x1 - x0).clamp_min(0), (y1 - y0).clamp_min(0)
    cnt = nx * ny
    g = torch.repeat_interleave(torch.arange(n, device=means2d.device), cnt)
    offs = torch.arange(g.numel(), device=means2d.device) - torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt)
    tile_id = (y0[g] + offs // nx[g]) * tiles_x + x0[g] + offs % nx[g]
    order = torch.argsort(tile_id * n + g)
    return tile_id[order], g[order]


def _composite(
    means2d: Tensor, conics: Tensor, opac: Tensor, colors: Tensor, radii: Tensor, width: int, height: int,
    tile: int = 8, budget: int = 2**22,
) -> Tensor:
    """Composite depth-sorted Gaussians into an (H, W, C + 1) image (colour channels, then alpha), tile by tile
    like gsplat."""
    device, dtype = means2d.device, means2d.dtype
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    n_tiles, n = tiles_x * tiles_y, means2d.shape[0]
    with torch.no_grad():
        tile_id, g = _tile_pairs(means2d.detach(), radii, tiles_x, tiles_y, tile)
        counts = torch.bincount(tile_id, minlength=n_tiles)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(tile_id.numel(), device=device) - starts[tile_id]
        by_count = torch.argsort(counts, descending=True)
        counts_sorted = counts[by_count].tolist()

    def pad(t: Tensor) -> Tensor:  # index n is a transparent dummy Gaussian
        return torch.cat([t, torch.zeros_like(t[:1])], dim=0)

    m2p, cnp, opp, colp = pad(means2d), pad(conics), pad(opac), pad(colors)
    ty, tx = torch.meshgrid(torch.arange(tile, device=device), torch.arange(tile, device=device), indexing="ij")
    local = torch.stack([tx, ty], -1).reshape(-1, 2).to(dtype) + 0.5  # (P, 2)
    out = torch.zeros(n_tiles, tile * tile, colors.shape[-1] + 1, device=device, dtype=dtype)
    i = 0
    while i < n_tiles and counts_sorted[i] > 0:
        m = counts_sorted[i]
        b = max(1, budget // (m * tile * tile))
        ids = by_count[i:i + b]
        i += b
        with torch.no_grad():
            ids = ids[counts[ids] > 0].sort().values
            sel = torch.isin(tile_id, ids)
            row = torch.searchsorted(ids, tile_id[sel])
            gidx = torch.full((ids.numel(), m), n, device=device, dtype=torch.long)
            gidx[row, rank[sel]] = g[sel]
            origin = torch.stack([ids % tiles_x, ids // tiles_x], -1).to(dtype) * tile
            pix = origin[:, None, :] + local[None]
        if torch.is_grad_enabled() and gidx.numel() * tile * tile > budget // 4:  # recompute only big batches
            vals = checkpoint(_composite_tiles, pix, gidx, m2p, cnp, opp, colp, use_reentrant=False)
        else:
            vals = _composite_tiles(pix, gidx, m2p, cnp, opp, colp)
        out = out.index_copy(0, ids, vals)
    image = out.reshape(tiles_y, tiles_x, tile, tile, -1).permute(0, 2, 1, 3, 4)
    return image.reshape(tiles_y * tile, tiles_x * tile, -1)[:height, :width]


def rasterize(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmat: Tensor, K: Tensor, width: int, height: int, sh_degree: int | None = None,
    near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
    background: Tensor | None = None, expected_depth: bool = False,
) -> tuple[Tensor, Tensor, dict]:
    """One camera. Activated inputs like gsplat.rasterization (scales, opacities in [0,1]);
    `colors` (N, K, 3) SH coefficients when `sh_degree` is given, else (N, 3) RGB.
    Returns image (H, W, 3), alpha (H, W, 1) and info with means2d (N, 2) and radii (N, 2); with
    `expected_depth`, also info["expected_depth"] (H, W, 1): the alpha-normalised camera depth (gsplat's "ED")."""
    means2d, conics, depths, radii = project(means, quats, scales, viewmat, K, width, height, eps2d, near_plane,
                                             far_plane)
    if sh_degree is not None:
        campos = -viewmat[:3, :3].T @ viewmat[:3, 3]
        rgb = torch.clamp_min(sh_to_rgb(sh_degree, means - campos, colors) + 0.5, 0.0)
    else:
        rgb = colors
    visible = (radii > 0).all(dim=-1)
    idx = torch.nonzero(visible).squeeze(1)
    idx = idx[torch.argsort(depths[idx].detach(), stable=True)]
    channels = torch.cat([rgb, depths[:, None]], dim=-1) if expected_depth else rgb
    out = _composite(means2d[idx], conics[idx], opacities[idx], channels[idx], radii[idx], width, height)
    image, alpha = out[..., :3], out[..., -1:]
    if background is not None:
        image = image + (1.0 - alpha) * background
    info = {"means2d": means2d, "radii": radii, "depths": depths, "width": width, "height": height, "n_cameras": 1}
    if expected_depth:
        info["expected_depth"] = out[..., 3:4] / alpha.clamp_min(1e-10)
    return image, alpha, info


__all__ = ["rasterize", "project", "sh_basis", "sh_to_rgb", "quat_to_rotmat"]
