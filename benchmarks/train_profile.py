"""Profile training steps on CUDA: top kernels and where the wall time of a step goes.

    python benchmarks/train_profile.py EXPORT [--steps-before 1000] [--config JSON]
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import torch
from torch.profiler import ProfilerActivity, profile

from spaceport_dagster.stages.train.config import load_config
from spaceport_dagster.stages.train.data import load_scene
from spaceport_dagster.stages.train.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("--steps-before", type=int, default=1000)
    ap.add_argument("--config", default='{"preset": "standard"}')
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    cfg = load_config({**json.loads(args.config), "eval_every": 0, "checkpoint_every": 0})
    device = torch.device("cuda")
    scene = load_scene(args.export, cfg.max_long_side, cfg.test_every, device)
    trainer = Trainer(scene, cfg, device, logging.getLogger("profile"))
    cfg.steps = args.steps_before
    t = time.perf_counter()
    trainer.train(None)
    print(f"{args.steps_before} steps: {time.perf_counter() - t:.1f} s, {trainer.params['means'].shape[0]} Gaussians")
    trainer.start_step, cfg.steps = args.steps_before, args.steps_before + 50
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t = time.perf_counter()
        trainer.train(None)
        torch.cuda.synchronize()
        print(f"50 profiled steps: {(time.perf_counter() - t) * 20:.1f} ms/step")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))


if __name__ == "__main__":
    main()
