"""A pure-PyTorch differentiable Gaussian rasteriser with gsplat 1.5's conventions.

Used when CUDA (and so gsplat) is absent: CI, laptops, tiny scenes. It follows `gsplat.rasterization`
in "classic" mode with `packed=False`: world-to-camera `viewmats`, pinhole `Ks`, EWA projection with the
0.3-frustum clamp of the Jacobian, a 0.3 px isotropic blur (`eps2d`), near/far culling, front-to-back alpha
compositing sorted by camera depth with alpha = min(0.999, o * exp(-sigma)), contributions below 1/255
skipped, and a pixel's compositing stopped before transmittance falls to 1e-4. Colours come from gsplat's
real SH basis (`spherical_harmonics`) with `clamp_min(c + 0.5, 0)`.

It is tile-free: every pixel sees every visible Gaussian, processed in pixel chunks under activation
checkpointing so memory stays bounded. Fine for images of a few hundred pixels a side.
"""

from __future__ import annotations

import math

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
    tzs = torch.where(tz.abs() < 1e-12, torch.full_like(tz, 1e-12), tz)  # culled below; avoid inf grads
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


def _composite_chunk(pix: Tensor, means2d: Tensor, conics: Tensor, opac: Tensor, colors: Tensor) -> Tensor:
    """Front-to-back compositing of depth-sorted Gaussians at pixel centres `pix` (P, 2) -> (P, 4) rgb+alpha."""
    d = pix[:, None, :] - means2d[None, :, :]
    sigma = 0.5 * (conics[None, :, 0] * d[..., 0] ** 2 + conics[None, :, 2] * d[..., 1] ** 2)
    sigma = sigma + conics[None, :, 1] * d[..., 0] * d[..., 1]
    alpha = (opac[None, :] * torch.exp(-sigma)).clamp(max=ALPHA_MAX)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
    trans_after = torch.cumprod(1.0 - alpha, dim=1)
    trans_before = torch.cat([torch.ones_like(trans_after[:, :1]), trans_after[:, :-1]], dim=1)
    # gsplat stops a pixel before the Gaussian that would take transmittance to <= 1e-4
    keep = (trans_after > T_MIN).to(alpha.dtype).detach()
    weights = alpha * trans_before * keep
    rgb = weights @ colors
    return torch.cat([rgb, weights.sum(dim=1, keepdim=True)], dim=1)


def rasterize(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
    viewmat: Tensor, K: Tensor, width: int, height: int, sh_degree: int | None = None,
    near_plane: float = 0.01, far_plane: float = 1e10, eps2d: float = 0.3,
    background: Tensor | None = None, pixel_chunk: int = 4096,
) -> tuple[Tensor, Tensor, dict]:
    """One camera. Activated inputs like gsplat.rasterization (scales, opacities in [0,1]);
    `colors` (N, K, 3) SH coefficients when `sh_degree` is given, else (N, 3) RGB.
    Returns image (H, W, 3), alpha (H, W, 1) and info with means2d (N, 2) and radii (N, 2)."""
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
    m2, cn, op, col = means2d[idx], conics[idx], opacities[idx], rgb[idx]
    ys, xs = torch.meshgrid(torch.arange(height, device=means.device), torch.arange(width, device=means.device),
                            indexing="ij")
    pix = torch.stack([xs, ys], dim=-1).reshape(-1, 2).to(means.dtype) + 0.5
    chunks = []
    for start in range(0, pix.shape[0], pixel_chunk):
        p = pix[start:start + pixel_chunk]
        if torch.is_grad_enabled() and idx.numel():
            chunks.append(checkpoint(_composite_chunk, p, m2, cn, op, col, use_reentrant=False))
        else:
            chunks.append(_composite_chunk(p, m2, cn, op, col))
    out = torch.cat(chunks, dim=0).reshape(height, width, 4)
    image, alpha = out[..., :3], out[..., 3:]
    if background is not None:
        image = image + (1.0 - alpha) * background
    info = {"means2d": means2d, "radii": radii, "depths": depths, "width": width, "height": height, "n_cameras": 1}
    return image, alpha, info


def pixel_chunk_for(n_gaussians: int, budget: int = 2**24) -> int:
    """Pixels per chunk so one chunk's (pixels x Gaussians) matrices stay near `budget` elements."""
    return max(64, min(65536, budget // max(1, n_gaussians)))


__all__ = ["rasterize", "project", "sh_basis", "sh_to_rgb", "quat_to_rotmat", "pixel_chunk_for", "math"]
