"""What the trainer writes besides the PLY: cameras.json, metrics.json, preview PNGs and the training curve."""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from spaceport_dagster.stages.render import View


def write_cameras(path: Path, views: list[View], scene_scale: float) -> None:
    path.write_text(json.dumps({"scene_scale": scene_scale, "cameras": [v.to_dict() for v in views]}, indent=1))


def write_metrics(path: Path, evals: list[dict[str, Any]], config: dict[str, Any], summary: dict[str, Any],
                  test_views: dict[str, Any]) -> None:
    """metrics.json: `summary` (headline: the published PLY on the test views, plainly), `test_views` (the same
    per view), `evals` (the run's curve, at training resolution) and the config."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return None if isinstance(v, float) and not np.isfinite(v) else v

    path.write_text(json.dumps(clean({"summary": summary, "test_views": test_views, "evals": evals,
                                      "config": config}), indent=1, default=str))


def side_by_side(render: Tensor, photo: Tensor) -> Image.Image:
    """Render (left) beside the photo (right), 4 px white gap."""
    a = (render.detach().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    b = photo.detach().cpu().numpy()
    if b.dtype != np.uint8:
        b = (np.clip(b, 0, 1) * 255).round().astype(np.uint8)
    gap = np.full((a.shape[0], 4, 3), 255, np.uint8)
    return Image.fromarray(np.concatenate([a, gap, b], axis=1))


def data_uri(image: Image.Image, max_width: int = 480) -> str:
    """A small JPEG data URI for markdown metadata (the Dagster UI shows it inline; PNG files stay on disk)."""
    if image.width > max_width:
        image = image.resize((max_width, max(1, round(image.height * max_width / image.width))),
                             Image.Resampling.BOX)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def write_curve(path: Path, evals: list[dict[str, Any]], log: logging.Logger, title: str = "") -> bool:
    """Held-out PSNR (and the mean-colour baseline) and train loss against steps; `title` says at what
    resolution they were scored."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no training_curve.png")
        return False
    rows = [e for e in evals if e.get("psnr") is not None and np.isfinite(e["psnr"])]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if rows:
        ax.plot([e["step"] for e in rows], [e["psnr"] for e in rows], "o-", label="test-view PSNR (plain)")
        if any("val_psnr" in e for e in rows):
            val = [e for e in rows if e.get("val_psnr") is not None]
            ax.plot([e["step"] for e in val], [e["val_psnr"] for e in val], "^-", label="validation PSNR")
        ax.plot([e["step"] for e in rows], [e["baseline_psnr"] for e in rows], "--", label="flat mean colour")
    ax.set_xlabel("step")
    ax.set_ylabel("PSNR (dB)")
    loss_rows = [e for e in evals if e.get("train_loss") is not None and np.isfinite(e["train_loss"])]
    if loss_rows:
        ax2 = ax.twinx()
        ax2.plot([e["step"] for e in loss_rows], [e["train_loss"] for e in loss_rows], "s:", color="grey",
                 label="train loss")
        ax2.set_ylabel("train loss")
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
