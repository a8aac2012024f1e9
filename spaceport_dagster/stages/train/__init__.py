"""Splat training stage: gsplat on CUDA, a pure-PyTorch rasteriser elsewhere."""

from .config import PRESETS, TrainConfig, load_config
from .stage import run

__all__ = ["PRESETS", "TrainConfig", "load_config", "run"]
