"""Parity of the pure-PyTorch rasteriser with gsplat (CUDA): image PSNR between the two and gradient cosine
similarity per parameter, on synthetic Gaussians and (optionally) a real export's SfM-initialised cloud.

    python benchmarks/parity.py --json benchmarks/parity_h100.json [--export .devdata/exports/brighton_beach]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from spaceport_dagster.stages.train.parity import COSINE_MIN, PSNR_MIN, compare, synthetic_case


def export_case(export: Path, long_side: int, device: str) -> dict:
    """The SfM-initialised cloud of a real export (init as the trainer does, SH 3 perturbed) from its first view."""
    from spaceport_dagster.stages.train.config import TrainConfig
    from spaceport_dagster.stages.train.data import load_scene
    from spaceport_dagster.stages.train.model import init_params

    scene = load_scene(export, long_side, 8, torch.device(device))
    g = torch.Generator().manual_seed(0)
    params = {k: v.detach() for k, v in init_params(scene.points, scene.colors, TrainConfig(), torch.device(device),
                                                    g).items()}
    params["shN"] = (torch.randn(params["shN"].shape, generator=g) * 0.1).to(device)
    # SfM init is isotropic, where rotation gradients are exactly zero (cosine of round-off): stretch it
    params["scales"] = params["scales"] + torch.log(0.3 + 1.4 * torch.rand(params["scales"].shape, generator=g)).to(device)
    params["opacities"] = torch.logit(0.05 + 0.9 * torch.rand(params["opacities"].shape, generator=g)).to(device)
    v = scene.views[0]
    return {"params": params, "viewmat": torch.tensor(v.viewmat, dtype=torch.float32, device=device),
            "K": torch.tensor(v.K, dtype=torch.float32, device=device), "width": v.width, "height": v.height,
            "sh_degree": 3, "name": f"{export.name}:{v.name}"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--export", type=Path, default=None)
    args = ap.parse_args()
    import gsplat

    cases = {"synthetic_2k_320x240": synthetic_case(2000, 320, 240),
             "synthetic_20k_640x480": synthetic_case(20000, 640, 480, seed=3)}
    if args.export is not None:
        cases["export_sfm_init"] = export_case(args.export, 480, "cuda")
    results = {}
    for name, case in cases.items():
        results[name] = compare(case)
        print(name, json.dumps(results[name]), flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__, "gsplat": gsplat.__version__, "thresholds": {"psnr_db": PSNR_MIN,
                                                                                  "grad_cosine": COSINE_MIN},
        "cases": results, "passed": all(r["passed"] for r in results.values()),
    }
    args.json.write_text(json.dumps(report, indent=1, default=lambda x: None if isinstance(x, float)
                                    and math.isnan(x) else x))
    print("PASSED" if report["passed"] else "FAILED")


if __name__ == "__main__":
    main()
