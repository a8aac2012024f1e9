"""Render Gaussian splats: gsplat on CUDA, the pure-PyTorch rasteriser otherwise.

Shared by the trainer (training and held-out metrics) and by the SOG stage (PSNR drop of a compressed
bundle). Parameters are pre-activation (as in the PLY): exp(scales), sigmoid(opacities), SH coefficients.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import raster_torch
from .ply import GaussianCloud


@dataclass
class View:
    """A pinhole camera: world-to-camera `viewmat` (4x4) and intrinsics `K` (3x3) at `width` x `height`."""

    name: str
    viewmat: np.ndarray
    K: np.ndarray
    width: int
    height: int
    heldout: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "width": self.width, "height": self.height, "heldout": self.heldout,
                "K": self.K.tolist(), "world_to_camera": self.viewmat.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> View:
        return cls(d["name"], np.asarray(d["world_to_camera"], np.float64), np.asarray(d["K"], np.float64),
                   int(d["width"]), int(d["height"]), bool(d.get("heldout", False)))


def load_views(cameras_json: str | Path) -> list[View]:
    """Views from a splat_model's cameras.json (`heldout` marks the evaluation views)."""
    data = json.loads(Path(cameras_json).read_text())
    return [View.from_dict(d) for d in data["cameras"]]


def _load_cached_gsplat_build() -> None:
    """Use gsplat's JIT-built CUDA extension from torch's extension cache without the JIT's up-to-date check.

    A gsplat wheel without prebuilt kernels compiles them on first use (about a minute) and, in every later
    process, still spends seconds re-validating the build before loading it. When the cached build was made
    from this very gsplat install (its build.ninja names these sources), load the library directly as
    `gsplat.csrc`, the module name gsplat tries first. Anything unexpected leaves gsplat to its own loader.
    """
    import importlib.machinery
    import importlib.util
    import sys

    import gsplat

    if "gsplat.csrc" in sys.modules or importlib.util.find_spec("gsplat.csrc") is not None:
        return
    try:
        from torch.utils.cpp_extension import _get_build_directory

        build = Path(_get_build_directory("gsplat_cuda", verbose=False))
        library, ninja = build / "gsplat_cuda.so", build / "build.ninja"
        if not (library.is_file() and ninja.is_file()):
            return
        if str(Path(gsplat.__file__).parent / "cuda" / "csrc") not in ninja.read_text():
            return
        loader = importlib.machinery.ExtensionFileLoader("gsplat_cuda", str(library))
        spec = importlib.util.spec_from_loader("gsplat_cuda", loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        sys.modules["gsplat.csrc"] = module
        gsplat.csrc = module
    except Exception:  # a stale or foreign build: gsplat's own loader decides
        return


_GSPLAT: bool | None = None


def gsplat_available(device: torch.device | str) -> bool:
    global _GSPLAT
    if torch.device(device).type != "cuda":
        return False
    if _GSPLAT is None:
        try:
            import gsplat  # noqa: F401
        except ImportError:
            _GSPLAT = False
        else:
            _GSPLAT = True
            _load_cached_gsplat_build()
    return _GSPLAT


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def rasterize_params(
    params: dict[str, Tensor], viewmat: Tensor, K: Tensor, width: int, height: int, sh_degree: int,
    background: Tensor | None = None, near_plane: float = 0.01, far_plane: float = 1e10,
    use_gsplat: bool | None = None, absgrad: bool = False, expected_depth: bool = False,
) -> tuple[Tensor, Tensor, dict]:
    """Render one view from pre-activation `params` (means, quats, scales, opacities, sh0, shN).
    Returns (H, W, 3) colours, (H, W, 1) alpha and the backend's info dict (for densification); with
    `expected_depth`, info["expected_depth"] is the (H, W, 1) alpha-normalised camera depth."""
    means, quats = params["means"], params["quats"]
    scales, opacities = torch.exp(params["scales"]), torch.sigmoid(params["opacities"])
    colors = torch.cat([params["sh0"][:, None, :], params["shN"]], dim=1)
    if use_gsplat is None:
        use_gsplat = gsplat_available(means.device)
    if use_gsplat:
        from gsplat import rasterization

        image, alpha, info = rasterization(
            means, quats, scales, opacities, colors, viewmat[None], K[None], width, height,
            near_plane=near_plane, far_plane=far_plane, sh_degree=sh_degree, packed=False, absgrad=absgrad,
            backgrounds=None if background is None else background[None], rasterize_mode="classic",
            render_mode="RGB+ED" if expected_depth else "RGB",
        )
        if expected_depth:
            info["expected_depth"] = image[0, ..., 3:4]
        return image[0, ..., :3], alpha[0], info
    return raster_torch.rasterize(
        means, quats, scales, opacities, colors, viewmat, K, width, height, sh_degree=sh_degree,
        near_plane=near_plane, far_plane=far_plane, background=background, expected_depth=expected_depth,
    )


def cloud_to_params(cloud: GaussianCloud, device: torch.device | str) -> dict[str, Tensor]:
    def t(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

    return {"means": t(cloud.means), "quats": t(cloud.quats), "scales": t(cloud.scales),
            "opacities": t(cloud.opacities), "sh0": t(cloud.sh0), "shN": t(cloud.shN)}


def _view_tensors(view: View, device: torch.device | str) -> tuple[Tensor, Tensor]:
    return (torch.as_tensor(view.viewmat, dtype=torch.float32, device=device),
            torch.as_tensor(view.K, dtype=torch.float32, device=device))


@torch.no_grad()
def render_view(params: dict[str, Tensor], sh_degree: int, view: View) -> tuple[Tensor, Tensor]:
    """(image (H, W, 3) in [0, 1], alpha (H, W, 1)) of pre-activation `params` at `view`, black background."""
    viewmat, K = _view_tensors(view, params["means"].device)
    image, alpha, _ = rasterize_params(params, viewmat, K, view.width, view.height, sh_degree)
    return image.clamp(0.0, 1.0), alpha


@torch.no_grad()
def render(cloud: GaussianCloud | dict[str, Tensor], camera: View, width: int | None = None,
           height: int | None = None, device: torch.device | str = "auto", sh_degree: int | None = None) -> Tensor:
    """Render `cloud` from `camera` -> (H, W, 3) float tensor in [0, 1] (black background).
    A width/height other than the camera's rescales its intrinsics to match. To render one splat from many
    views, pass it once converted by `cloud_to_params` (and its `sh_degree`): it then stays on the device."""
    if isinstance(cloud, GaussianCloud):
        device = pick_device(device) if isinstance(device, str) else device
        params, degree = cloud_to_params(cloud, device), cloud.sh_degree
    else:
        if sh_degree is None:
            raise ValueError("rendering parameters needs their sh_degree")
        params, degree, device = cloud, sh_degree, cloud["means"].device
    width, height = width or camera.width, height or camera.height
    K = camera.K.copy()
    K[0] *= width / camera.width
    K[1] *= height / camera.height
    return render_view(params, degree, View(camera.name, camera.viewmat, K, width, height))[0]


def load_photo(path: str | Path, width: int, height: int) -> Tensor:
    """A photo as (H, W, 3) float in [0, 1], resized to width x height (area filter) when needed."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (width, height):
            im = im.resize((width, height), Image.Resampling.BOX)
        return torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)


__all__ = ["View", "load_views", "render", "render_view", "load_photo", "rasterize_params", "cloud_to_params", "gsplat_available",
           "pick_device"]
