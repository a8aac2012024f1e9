"""splat_model as spatial tiles: plan the tiles, train each as its own run of the train stage, merge them.

A survey too large for one GPU (or worth spreading over several) trains as K tiles (stages/tiles). Each tile
is the ordinary train stage with a tile spec in its config, launched through the compute resource like any
stage: locally one per free GPU (CUDA_VISIBLE_DEVICES) or one after the other on one GPU or the CPU, on
SageMaker K Training jobs at once, each with its own job name and checkpoint prefix. A finished tile is
published as its own artifact, `<dataset>/splat_model.tile<i>of<K>/`, keyed by the export version, the train
config and its tile spec: when a tile fails, the run fails naming it, and a rerun (or Dagster's retry of the
step) reuses the published tiles and trains only the missing ones. The merge stage then writes splat_model
from the tiles and scores it with the gates of a single training.

Each tile's figures are an AssetObservation of splat_model (the asset's page lists them as they finish) and a
table and timeline in the materialisation's metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetObservation,
    Failure,
    MaterializeResult,
    MetadataValue,
)

from spaceport_dagster.resources.artifact_store import ArtifactMissing, ArtifactStore, LocalArtifactStore
from spaceport_dagster.resources.compute import LocalStageLauncher, StageLauncher, StageRequest
from spaceport_dagster.resources.selection import EnvironmentStageLauncher
from spaceport_dagster.resources.storage import StorageResource
from spaceport_dagster.stages.colmap_io import Model, read_model
from spaceport_dagster.stages.s3uri import split_s3_uri
from spaceport_dagster.stages.tiles.spec import TileSpec

from .stage_asset import pin_input_versions, run_stage_asset, stage_limits

EXPORT = {"export": "colmap_export"}
TILE_GATES = ("finite_parameters", "ply_readable")  # a tile that fails these is not merged


@dataclass
class TilingOptions:
    """How splat_model decides between one training and tiles (the asset's run config)."""

    tiles: int = 0  # 0: automatic; 1: one training; K >= 2: K tiles
    budget_megapixels: float = 600.0  # automatic: the most training pixels one tile (one GPU) takes
    min_photos_per_tile: int = 150  # automatic: spread over parallel GPUs only when each tile gets this many
    parallel: int = 0  # tiles at once; 0: one per GPU locally (one at a time without), all at once on SageMaker
    margin: float = 0.5  # photo footprints (stages/tiles/partition.py)
    seam: str = "trim"


@dataclass
class TileRun:
    spec: TileSpec
    artifact: str
    reused: bool = False
    started: float = 0.0
    ended: float = 0.0
    ran_on: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 0.0)


def base_launcher(compute: StageLauncher) -> StageLauncher:
    return compute.launcher() if isinstance(compute, EnvironmentStageLauncher) else compute


def visible_gpus() -> list[str]:
    """The GPUs a local stage may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def slots_for(launcher: StageLauncher, options: TilingOptions, k: int) -> list[str | None]:
    """What runs tiles at once: local GPU ids (None: whatever the stage picks, one at a time), or K SageMaker
    jobs (capped by `parallel`)."""
    if isinstance(launcher, LocalStageLauncher):
        gpus = visible_gpus()
        slots: list[str | None] = list(gpus) if gpus else [None]
    else:
        slots = [None] * k
    return slots[: options.parallel] if options.parallel > 0 else slots


def read_export_model(store: ArtifactStore, dataset: str) -> Model:
    """The export's sparse model only (on S3, three small files rather than every photo)."""
    if isinstance(store, LocalArtifactStore):
        return read_model(store.fetch(dataset, "colmap_export") / "sparse" / "0")
    bucket, key = split_s3_uri(store.version_uri(dataset, "colmap_export"))
    with tempfile.TemporaryDirectory(prefix="spaceport-tiles-") as tmp:
        for name in ("cameras.bin", "images.bin", "points3D.bin"):
            store.client.download_file(bucket, f"{key}sparse/0/{name}", str(Path(tmp) / name))  # type: ignore[attr-defined]
        return read_model(tmp)


def plan_tiles(context: AssetExecutionContext, store: ArtifactStore, dataset: str, train_config: dict[str, Any],
               options: TilingOptions, launcher: StageLauncher) -> list[TileSpec] | None:
    """The tiles to train, or None for one ordinary training."""
    if options.tiles == 1:
        return None
    # stage code that imports torch: only when a run plans, never when the definitions load
    from spaceport_dagster.stages.tiles.partition import TileOptions, choose_tile_count, partition
    from spaceport_dagster.stages.train.config import load_config

    try:
        cfg = load_config(dict(train_config))
        tile_options = TileOptions(margin=options.margin, test_every=cfg.test_every, max_long_side=cfg.max_long_side)
        model = read_export_model(store, dataset)
    except Exception as exc:  # the train stage reads its config and the export itself and says what is wrong
        if options.tiles == 0:
            context.log.warning(f"tiling not considered: {type(exc).__name__}: {exc}")
            return None
        raise Failure(f"cannot plan {options.tiles} tiles for {dataset!r}: {type(exc).__name__}: {exc}") from exc
    k = options.tiles
    if k == 0:
        slots = len(slots_for(launcher, options, 64))
        try:
            choice = choose_tile_count(model, tile_options, options.budget_megapixels, slots,
                                       options.min_photos_per_tile)
        except ValueError as exc:
            raise Failure(f"splat_model: {exc}") from None
        context.log.info(f"splat_model: {'one training' if choice.count == 1 else f'{choice.count} tiles'}: "
                         f"{choice.reason}")
        if choice.count == 1:
            return None
        k = choice.count
    try:
        return partition(model, k, tile_options)
    except ValueError as exc:
        raise Failure(f"splat_model cannot be split into {k} tiles: {exc}") from None


def tile_key(export_version: str, config: dict[str, Any]) -> str:
    """What a published tile must have been trained from to be reused."""
    text = json.dumps({"export": export_version, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reusable(store: ArtifactStore, dataset: str, artifact: str, key: str) -> dict[str, Any] | None:
    try:
        manifest = store.current_manifest(dataset, artifact)
    except ArtifactMissing:
        return None
    return manifest if manifest.get("tile_key") == key else None


def _figures(results: list[Any]) -> dict[str, Any]:
    reported = [r for r in results if isinstance(r, MaterializeResult)]
    metadata = dict(reported[0].metadata or {}) if reported else {}
    keep = ("steps", "gaussians", "train_seconds", "wall_seconds", "train_views", "device", "psnr",
            "sagemaker_job_name", "sagemaker_instance_type", "sagemaker_billable_seconds")
    return {k: getattr(metadata[k], "value", metadata[k]) for k in keep if k in metadata}


def train_tile(context: AssetExecutionContext, store: ArtifactStore, launcher: StageLauncher, dataset: str,
               run: TileRun, config: dict[str, Any], key: str, limits: tuple[float, float]) -> None:
    request = StageRequest("train", dataset, run.artifact, dict(EXPORT), {}, config, True, limits[0], limits[1],
                           part=run.spec.key)
    with store.staging(dataset, run.artifact) as staging:
        results = launcher.launch(context, store, request, staging)
        bad = [r.check_name for r in results if isinstance(r, AssetCheckResult) and r.check_name in TILE_GATES
               and not r.passed]
        run.figures = _figures(results)
        if bad:
            where = store.reject(staging, run_id=context.run_id)
            raise Failure(f"{run.spec.label} failed {', '.join(bad)}; its output is kept at {where}")
        store.publish(staging, info={"run_id": context.run_id, "tile_key": key})


def run_tiles(context: AssetExecutionContext, store: ArtifactStore, launcher: StageLauncher, dataset: str,
              tiles: list[TileSpec], train_config: dict[str, Any], export_version: str,
              options: TilingOptions) -> list[TileRun]:
    asset = context.asset_key.to_user_string()
    limits = stage_limits(context, asset)
    slots: Queue[str | None] = Queue()
    for slot in slots_for(launcher, options, len(tiles)):
        slots.put(slot)
    runs = [TileRun(spec, f"{asset}.{spec.key}") for spec in tiles]
    lock = threading.Lock()

    def one(run: TileRun) -> None:
        config = {**train_config, "tile": run.spec.as_dict()}
        key = tile_key(export_version, config)
        if (manifest := reusable(store, dataset, run.artifact, key)) is not None:
            run.reused, run.ran_on = True, f"reused (published by run {manifest.get('run_id', '?')})"
            context.log.info(f"{run.spec.label}: reusing the published tile {store.uri(dataset, run.artifact)}")
            return
        slot = slots.get()
        try:
            tile_launcher = launcher
            if slot is not None and isinstance(launcher, LocalStageLauncher):
                tile_launcher = launcher.model_copy(update={"env": {**launcher.env, "CUDA_VISIBLE_DEVICES": slot}})
            run.ran_on = f"GPU {slot}" if slot is not None else type(launcher).__name__
            context.log.info(f"{run.spec.label}: training on {len(run.spec.photos)} photos"
                             + (f" (GPU {slot})" if slot is not None else ""))
            run.started = time.time()
            try:
                train_tile(context, store, tile_launcher, dataset, run, config, key, limits)
            except Exception as exc:  # the other tiles go on; the run fails after them, naming this one
                run.error = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
            finally:
                run.ended = time.time()
        finally:
            slots.put(slot)
        with lock:
            context.log_event(AssetObservation(asset_key=context.asset_key, partition=dataset,
                                               metadata=tile_observation(run)))

    with ThreadPoolExecutor(max_workers=len(tiles), thread_name_prefix="spaceport-tile") as pool:
        list(pool.map(one, runs))
    return runs


def tile_observation(run: TileRun) -> dict[str, Any]:
    out: dict[str, Any] = {"tile": run.spec.label, "status": "failed" if run.error else "trained",
                           "seconds": MetadataValue.float(round(run.seconds, 2)), "ran on": run.ran_on,
                           "photos": len(run.spec.photos)}
    if run.error:
        out["error"] = run.error
    out.update({k: v for k, v in run.figures.items() if isinstance(v, int | float | str)})
    return out


def timeline_markdown(runs: list[TileRun]) -> str:
    """The tiles' wall-clock spans as a table and an inline SVG: parallel tiles overlap."""
    trained = [r for r in runs if not r.reused and r.ended]
    lines = ["| tile | photos | status | started (s) | ended (s) | seconds | ran on | Gaussians |",
             "|---|---|---|---|---|---|---|---|"]
    t0 = min((r.started for r in trained), default=0.0)
    for r in runs:
        status = "reused" if r.reused else ("failed" if r.error else "trained")
        span = ("", "", "") if r.reused else (f"{r.started - t0:.1f}", f"{r.ended - t0:.1f}", f"{r.seconds:.1f}")
        lines.append(f"| {r.spec.index} | {len(r.spec.photos)} | {status} | {span[0]} | {span[1]} | {span[2]} | "
                     f"{r.ran_on} | {r.figures.get('gaussians', '')} |")
    if trained:
        end = max(r.ended for r in trained) - t0 or 1.0
        bars = "".join(
            f'<rect x="{40 + 400 * (r.started - t0) / end:.1f}" y="{6 + 18 * i}" '
            f'width="{max(400 * r.seconds / end, 1):.1f}" height="12" fill="{"#c0392b" if r.error else "#2e86c1"}"/>'
            f'<text x="2" y="{16 + 18 * i}" font-size="11">{r.spec.index}</text>'
            for i, r in enumerate(trained))
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="450" height="{12 + 18 * len(trained)}">{bars}'
               f'</svg>')
        import base64

        lines.append(f"\n![tile timeline, {end:.0f} s](data:image/svg+xml;base64,"
                     f"{base64.b64encode(svg.encode()).decode()})")
    return "\n".join(lines)


def run_tiled_asset(context: AssetExecutionContext, storage: StorageResource, compute: StageLauncher,
                    train_config: dict[str, Any], options: TilingOptions) -> MaterializeResult | None:
    """splat_model from tiles; None when the plan is one ordinary training (the caller runs it)."""
    dataset = context.partition_key
    store = storage.store()
    launcher = base_launcher(compute)
    pinned = pin_input_versions(context, store, dataset, EXPORT, announce=False)  # the training's own step says it
    tiles = plan_tiles(context, store, dataset, train_config, options, launcher)
    if tiles is None:
        return None
    context.log.info(f"splat_model: {len(tiles)} tiles, " + "; ".join(
        f"{t.label}: {len(t.photos)} photos" for t in tiles))
    started = time.time()
    runs = run_tiles(context, store, launcher, dataset, tiles, train_config, pinned["colmap_export"].version,
                     options)
    failed = [r for r in runs if r.error]
    if failed:
        kept = [r.spec.label for r in runs if not r.error]
        raise Failure(f"{len(failed)} of {len(runs)} tiles failed: " + "; ".join(
            f"{r.spec.label}: {r.error}" for r in failed) + (f". Kept: {', '.join(kept)}, published; a rerun "
                                                             "trains only the failed tiles" if kept else ""),
            metadata={"tiles": MetadataValue.md(timeline_markdown(runs))})
    tiles_wall = time.time() - started
    artifacts = {"export": "colmap_export", **{r.spec.key: r.artifact for r in runs}}
    merged = run_stage_asset(context, storage, compute, stage="merge", artifacts=artifacts,
                             config={**train_config, "seam": options.seam})
    metadata = dict(merged.metadata or {})
    metadata["tiles"] = MetadataValue.md(timeline_markdown(runs))
    metadata["tiles_trained"] = sum(1 for r in runs if not r.reused)
    metadata["tiles_reused"] = sum(1 for r in runs if r.reused)
    metadata["tiles_wall_seconds"] = MetadataValue.float(round(tiles_wall, 2))
    return MaterializeResult(metadata=metadata, check_results=merged.check_results, tags=merged.tags)
