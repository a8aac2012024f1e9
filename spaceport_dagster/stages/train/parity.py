"""Compare the pure-PyTorch rasteriser with gsplat on the same Gaussians and camera (needs CUDA + gsplat).

Pass: image PSNR between the two renders >= 40 dB and, for every parameter, cosine similarity of the
gradients of a fixed random image-space loss >= 0.99.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from spaceport_dagster.stages import raster_torch
from spaceport_dagster.stages.image_metrics import psnr

PSNR_MIN = 40.0
COSINE_MIN = 0.99


def synthetic_case(n: int, width: int, height: int, seed: int = 0, device: str = "cuda") -> dict[str, Any]:
    """Random Gaussians in front of a pinhole camera looking down +z, with SH degree 3 colours."""
    g = torch.Generator().manual_seed(seed)
    depth = 2.0 + 6.0 * torch.rand(n, generator=g)
    xy = (torch.rand(n, 2, generator=g) - 0.5) * depth[:, None] * 1.2
    means = torch.cat([xy, depth[:, None]], dim=1)
    params = {
        "means": means,
        "quats": torch.randn(n, 4, generator=g),
        "scales": torch.log(0.01 + 0.05 * torch.rand(n, 3, generator=g)),
        "opacities": torch.logit(0.05 + 0.9 * torch.rand(n, generator=g)),
        "sh0": torch.randn(n, 3, generator=g) * 0.5,
        "shN": torch.randn(n, 15, 3, generator=g) * 0.1,
    }
    f = 0.9 * width
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)
    angle = 0.1
    viewmat = torch.eye(4)
    viewmat[:3, :3] = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0],
                                    [-math.sin(angle), 0, math.cos(angle)]])
    viewmat[:3, 3] = torch.tensor([0.1, -0.05, 0.3])
    return {"params": {k: v.to(device) for k, v in params.items()}, "viewmat": viewmat.to(device),
            "K": K.to(device), "width": width, "height": height, "sh_degree": 3}


def _render(backend: str, params: dict[str, Tensor], case: dict[str, Any]) -> Tensor:
    colors = torch.cat([params["sh0"][:, None], params["shN"]], dim=1)
    args = (params["means"], params["quats"], torch.exp(params["scales"]), torch.sigmoid(params["opacities"]), colors)
    if backend == "gsplat":
        from gsplat import rasterization

        image, _, _ = rasterization(*args, case["viewmat"][None], case["K"][None], case["width"], case["height"],
                                    sh_degree=case["sh_degree"], packed=False)
        return image[0]
    image, _, _ = raster_torch.rasterize(*args, case["viewmat"], case["K"], case["width"], case["height"],
                                         sh_degree=case["sh_degree"])
    return image


def compare(case: dict[str, Any], seed: int = 1) -> dict[str, Any]:
    """Render with both backends; gradients of sum(w * image) for a fixed random w."""
    out: dict[str, Any] = {"width": case["width"], "height": case["height"],
                           "gaussians": int(case["params"]["means"].shape[0])}
    w = None
    renders, grads = {}, {}
    for backend in ("gsplat", "torch"):
        params = {k: v.detach().clone().requires_grad_(True) for k, v in case["params"].items()}
        image = _render(backend, params, case)
        if w is None:
            w = torch.rand(image.shape, generator=torch.Generator().manual_seed(seed)).to(image.device)
        (image * w).sum().backward()
        renders[backend] = image.detach()
        grads[backend] = {k: v.grad.detach().flatten() for k, v in params.items()}
    out["image_psnr_db"] = psnr(renders["gsplat"].clamp(0, 1), renders["torch"].clamp(0, 1))
    out["max_abs_pixel_diff"] = float((renders["gsplat"] - renders["torch"]).abs().max())
    out["grad_cosine"] = {
        k: float(torch.nn.functional.cosine_similarity(grads["gsplat"][k], grads["torch"][k], dim=0))
        for k in grads["gsplat"]
    }
    out["passed"] = out["image_psnr_db"] >= PSNR_MIN and min(out["grad_cosine"].values()) >= COSINE_MIN
    return out
