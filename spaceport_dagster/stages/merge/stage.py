"""The merge stage: the tiles of a tiled training (each a train stage output with tile.json) in, one
splat_model out, exactly as a single training writes it: point_cloud.ply (standard INRIA layout),
cameras.json, metrics.json, previews/, and the same quality gates on the same plain evaluation of the test
views. tiles.json adds what each tile gave.

Inputs: `export` (the colmap_export the tiles trained on) and one input per tile, named `tile<i>of<K>`.
Config: the train config the tiles used (preset and options: its gates, resolution and test rule apply here)
and `seam` ("trim" or "keep", stages/tiles/merge.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import torch

from spaceport_dagster.stages.ply import read_ply
from spaceport_dagster.stages.render import cloud_to_params, gsplat_available, pick_device, render_view
from spaceport_dagster.stages.report import StageReport, md
from spaceport_dagster.stages.tiles.merge import MergeStats, merge_files
from spaceport_dagster.stages.tiles.options import split_seam
from spaceport_dagster.stages.tiles.spec import TileSpec
from spaceport_dagster.stages.train.checks import quality_checks
from spaceport_dagster.stages.train.config import TrainConfig, load_config
from spaceport_dagster.stages.train.coverage import sfm_coverage
from spaceport_dagster.stages.train.data import Scene, load_scene
from spaceport_dagster.stages.train.outputs import data_uri, side_by_side, write_cameras, write_metrics
from spaceport_dagster.stages.train.stage import score_published

TILE_INPUT = re.compile(r"tile(\d+)of(\d+)")


def tile_inputs(inputs: dict[str, str]) -> list[tuple[TileSpec, Path]]:
    """The tile folders of `inputs`, in tile order, with their specs; ValueError when one is missing."""
    found = []
    for name, folder in inputs.items():
        match = TILE_INPUT.fullmatch(name)
        if not match:
            continue
        path = Path(folder)
        spec_file = path / "tile.json"
        if not spec_file.is_file() or not (path / "point_cloud.ply").is_file():
            raise ValueError(f"input {name} ({path}) is not a tile's training output (needs tile.json and "
                             "point_cloud.ply)")
        spec = TileSpec.from_dict(json.loads(spec_file.read_text()))
        if spec.key != name:
            raise ValueError(f"input {name} holds {spec.label}")
        found.append((spec, path))
    if not found:
        raise ValueError("merge needs the tiles as inputs named tile<i>of<K> (train stage outputs with a tile spec)")
    found.sort(key=lambda item: item[0].index)
    count = found[0][0].count
    missing = sorted(set(range(1, count + 1)) - {spec.index for spec, _ in found})
    if missing or any(spec.count != count for spec, _ in found):
        raise ValueError(f"merge needs all {count} tiles; missing tile(s) {missing}")
    return found


def check_no_test_view(tiles: list[TileSpec], scene: Scene) -> None:
    """The tiles' training photos against the survey's own test views (every 8th by name)."""
    test = {scene.views[i].name for i in scene.test}
    for tile in tiles:
        used = sorted(test & set(tile.photos))
        if used:
            raise ValueError(f"{tile.label} trained on test view(s) {used[:5]}; its output cannot be scored fairly")


def tile_rows(tiles: list[tuple[TileSpec, Path]], stats: MergeStats) -> list[dict[str, Any]]:
    rows = []
    for (spec, folder), merged in zip(tiles, stats.tiles, strict=True):
        summary = json.loads((folder / "metrics.json").read_text()).get("summary", {}) \
            if (folder / "metrics.json").is_file() else {}
        rows.append({"tile": spec.index, "photos": len(spec.photos), "steps": summary.get("steps"),
                     "train_seconds": summary.get("train_seconds"), "wall_seconds": summary.get("wall_seconds"),
                     "device": summary.get("device"), **dataclasses.asdict(merged)})
    return rows


def rows_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| tile | photos | steps | train s | Gaussians trained | kept (core) | trimmed at seams |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['tile']} | {r['photos']} | {r['steps']} | {r['train_seconds']} | {r['trained']:,} | "
                     f"{r['kept']:,} | {r['seam_trimmed']:,} |")
    return "\n".join(lines)


@torch.no_grad()
def write_previews(folder: Path, params: dict[str, torch.Tensor], sh_degree: int, scene: Scene, count: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in (scene.test or scene.train)[:count]:
        image, _ = render_view(params, sh_degree, scene.views[i])
        pair = side_by_side(image, scene.photos[i])
        name = Path(scene.views[i].name).stem + ".png"
        pair.save(folder / name)
        lines.append(f"**{scene.views[i].name}** (render | photo)\n\n![{name}]({data_uri(pair)})\n")
    return "\n".join(lines)


def merge(export: str, tiles: list[tuple[TileSpec, Path]], output: Path, cfg: TrainConfig, seam: str,
          log: logging.Logger) -> StageReport:
    t_start = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    specs = [spec for spec, _ in tiles]
    ply_path = output / "point_cloud.ply"
    stats, ply_bytes = merge_files([(spec, folder / "point_cloud.ply") for spec, folder in tiles], ply_path,
                                   seam)  # type: ignore[arg-type]
    t_merged = time.perf_counter()
    merged = published = read_ply(ply_path)  # read back once: scored here, checked by check_ply
    device = pick_device(cfg.device)
    scene = load_scene(export, cfg.max_long_side, cfg.test_every, device, log, cfg.validation_every)
    check_no_test_view(specs, scene)
    baseline = scene.mean_colour()
    plain = score_published(published, scene, baseline, device)
    coverage = sfm_coverage([scene.views[i] for i in scene.train], scene.points)
    t_scored = time.perf_counter()
    write_cameras(output / "cameras.json", scene.export_views, scene.scene_scale)
    previews_md = write_previews(output / "previews", cloud_to_params(published, device), published.sh_degree,
                                 scene, cfg.previews)
    rows = tile_rows(tiles, stats)
    (output / "tiles.json").write_text(json.dumps({"seam": seam, "tiles": rows,
                                                   "specs": [s.as_dict() for s in specs]}, indent=1))
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    wall = time.perf_counter() - t_start
    summary = {
        "steps": max((r["steps"] or 0) for r in rows), "tile_count": len(rows), "wall_seconds": round(wall, 2),
        "merge_seconds": round(t_merged - t_start, 2), "gaussians": len(merged), **plain.summary(),
        "scored_on": "test views" if scene.test else "training views", "ply_bytes": ply_bytes,
        "device": device_name, "backend": "gsplat" if gsplat_available(device) else "torch",
        "train_views": len(scene.train), "test_views": len(scene.test),
        "training_resolution": f"{scene.views[0].width}x{scene.views[0].height}",
        "scene_fills_photos": coverage.fills, "seam": seam,
        "seconds": {"merge_and_write": round(t_merged - t_start, 2), "plain_scoring": round(t_scored - t_merged, 2)},
    }
    write_metrics(output / "metrics.json", [], dataclasses.asdict(cfg), summary, plain.as_dict())
    checks = quality_checks(merged, ply_path, plain, coverage, cfg, from_disk=published)
    metadata: dict[str, Any] = {k: v for k, v in summary.items() if k != "seconds"}
    metadata["tile_figures"] = md(rows_markdown(rows))
    if previews_md:
        metadata["previews"] = md(previews_md)
    log.info(f"merged {len(rows)} tiles into {len(merged)} Gaussians in {t_merged - t_start:.1f} s; published PLY "
             f"on the test views, plainly: PSNR {plain.psnr:.2f} dB (flat mean colour {plain.baseline_psnr:.2f} dB), "
             f"SSIM {plain.ssim:.3f}, alpha {plain.alpha:.3f}")
    return StageReport(metadata, checks)


def load_stage_config(config: dict[str, Any]) -> TrainConfig:
    """The gates and evaluation settings of the merged splat: the train config the tiles used."""
    return load_config(split_seam(config)[0])


def run(inputs: dict[str, str], output: Path, config: dict[str, Any], log: logging.Logger) -> StageReport:
    if "export" not in inputs:
        raise ValueError("merge needs an input named 'export' (the colmap_export the tiles trained on)")
    options, seam = split_seam(config)
    return merge(inputs["export"], tile_inputs(inputs), output, load_config(options), seam, log)
