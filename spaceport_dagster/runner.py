"""Materialise the pipeline for one dataset through a real Dagster instance, reporting as it goes.

Used by `spaceport run`, `rerun` and `demo`: each is a run of the code location's job `spaceport_main` on the
instance under DAGSTER_HOME (spaceport_dagster.job_runs), so the UI lists it, can re-execute it, and the
sensors, pools and run retries treat it like any other run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRun

from spaceport_dagster.definitions import PIPELINE_ASSETS
from spaceport_dagster.job_runs import create_pipeline_run, execute_pipeline_run, wait_for_dataset
from spaceport_dagster.partitions import register_dataset
from spaceport_dagster.presets import stage_presets
from spaceport_dagster.resources.artifact_store import ArtifactMissing, ArtifactStore
from spaceport_dagster.resources.selection import resources_from_env

ASSET_ORDER = [a.key.to_user_string() for a in PIPELINE_ASSETS]
# The figures the summary table shows per stage.
KEY_FIGURES = {
    "image_set": ["usable_images", "refused_files", "gps_images"],
    "sparse_reconstruction": ["registered", "points", "mean_reprojection_error_px", "matcher", "georegistration_residual_m"],
    "colmap_export": ["images", "points", "image_size", "min_correspondences_per_image"],
    "splat_model": ["steps", "gaussians", "psnr", "baseline_psnr", "alpha_mean", "device"],
    "sogs_bundle": ["splats", "bundle_bytes", "ratio", "psnr_decoded_db", "psnr_drop_db"],
}


# The events _collect reads; filtering them in the event log's query skips the stages' log lines on each poll.
WATCHED_EVENTS = {DagsterEventType.STEP_START, DagsterEventType.ASSET_MATERIALIZATION,
                  DagsterEventType.ASSET_CHECK_EVALUATION, DagsterEventType.STEP_SUCCESS,
                  DagsterEventType.STEP_FAILURE}


@dataclass
class StageOutcome:
    asset: str
    status: str = "not run"
    seconds: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class PipelineOutcome:
    dataset: str
    run_id: str | None
    stages: list[StageOutcome]

    @property
    def success(self) -> bool:
        return all(s.status == "ok" for s in self.stages)

    def failure_message(self) -> str | None:
        for stage in self.stages:
            if stage.failed_checks:
                return f"{stage.asset}: quality gate failed: " + "; ".join(stage.failed_checks)
            if stage.error:
                return f"{stage.asset}: {stage.error}"
        return None


def select_stages(start: str | None = None, until: str | None = None) -> list[str]:
    """The stages from `start` to `until` (both included), in pipeline order; None means the first / the last."""
    for name in (start, until):
        if name is not None and name not in ASSET_ORDER:
            raise ValueError(f"unknown asset {name!r}; choose one of {', '.join(ASSET_ORDER)}")
    first = ASSET_ORDER.index(start) if start else 0
    last = ASSET_ORDER.index(until) + 1 if until else len(ASSET_ORDER)
    if first >= last:
        raise ValueError(f"{start} comes after {until} in the pipeline ({' -> '.join(ASSET_ORDER)})")
    return ASSET_ORDER[first:last]


def missing_inputs(dataset: str, selected: list[str], store: ArtifactStore) -> list[str]:
    """Upstream artifacts the selected stages read but do not make, and that are not published for `dataset`."""
    made = {AssetKey(name) for name in selected}
    needed = {key for a in PIPELINE_ASSETS if a.key in made for key in a.dependency_keys} - made
    return sorted(k.to_user_string() for k in needed if not store.exists(dataset, k.to_user_string()))


def run_config_for(assets: list[str], source: str | None, preset: str) -> dict[str, Any]:
    presets = stage_presets(preset)
    ops: dict[str, Any] = {}
    for name in assets:
        cfg: dict[str, Any] = {}
        if name in presets:
            cfg["preset"] = presets[name]
        if name == "image_set" and source:
            cfg["source"] = source
        ops[name] = {"config": cfg}
    return {"ops": ops, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _plain(value: Any) -> Any:
    return getattr(value, "value", getattr(value, "text", value))


def _step_error(error: Any) -> str:
    """The stage's own words rather than Dagster's wrappers: the launcher's Failure, else the innermost cause."""
    if error is None:
        return "step failed"
    chain = [error]
    while getattr(chain[-1], "cause", None) is not None:
        chain.append(chain[-1].cause)
    error = next((e for e in chain if e.cls_name == "Failure"), chain[-1])
    lines = [line for line in error.message.strip().splitlines() if line.strip()]
    text = lines[-1] if lines else "step failed"
    prefix = f"{error.cls_name}: "
    return text.split(prefix, 1)[1] if prefix in text else text


def _collect(instance: DagsterInstance, run_id: str, outcomes: dict[str, StageOutcome],
             on_event: Callable[[StageOutcome], None] | None, seen: set[tuple[str, str]]) -> None:
    starts: dict[str, float] = {}
    for record in instance.all_logs(run_id, of_type=WATCHED_EVENTS):
        event = record.dagster_event
        if event is None:
            continue
        name = event.step_key if event.step_key in outcomes else None
        if event.event_type == DagsterEventType.STEP_START and name:
            starts[name] = record.timestamp
            outcomes[name].status = "running"
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            mat = event.event_specific_data.materialization
            key = mat.asset_key.to_user_string()
            if key in outcomes:
                outcomes[key].metadata = {k: _plain(v) for k, v in mat.metadata.items()}
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            key = evaluation.asset_key.to_user_string()
            if key in outcomes and not evaluation.passed and evaluation.severity.value == "ERROR":
                text = _plain(evaluation.metadata.get("description", evaluation.check_name))
                message = f"{evaluation.check_name}: {text}"
                if message not in outcomes[key].failed_checks:
                    outcomes[key].failed_checks.append(message)
        elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE) and name:
            outcome = outcomes[name]
            if name in starts:
                outcome.seconds = record.timestamp - starts[name]
            if outcome.failed_checks:
                outcome.status = "gate failed"
            elif event.event_type == DagsterEventType.STEP_FAILURE:
                outcome.status = "failed"
                outcome.error = _step_error(event.event_specific_data.error)
            else:
                outcome.status = "ok"
            if on_event and (name, outcome.status) not in seen:
                seen.add((name, outcome.status))
                on_event(outcome)


def _tell_waiting(dataset: str) -> Callable[[list[DagsterRun]], None]:
    def tell(busy: list[DagsterRun]) -> None:
        runs = ", ".join(r.run_id for r in busy) or "another spaceport process"
        print(f"  waiting: dataset {dataset!r} is in progress in run {runs}; this run starts when it ends",
              flush=True)
    return tell


def run_pipeline(dataset: str, source: str | None, *, until: str | None = None, preset: str = "preview",
                 instance: DagsterInstance | None = None,
                 on_stage: Callable[[StageOutcome], None] | None = None, poll_seconds: float = 0.5,
                 start: str | None = None, tags: dict[str, str] | None = None) -> PipelineOutcome:
    """Materialise the stages from `start` (default: the first) to `until` (default: the last) for `dataset`.
    Stages before `start` are not run: their published artifacts are read, and must exist (ArtifactMissing).
    Waits while another run of `dataset` is in progress."""
    selected = select_stages(start, until)
    missing = missing_inputs(dataset, selected, resources_from_env()["storage"].store())
    if missing:
        raise ArtifactMissing(f"dataset {dataset!r} has no published {', '.join(missing)}, which {selected[0]} "
                              "reads; run the stages before it first")
    instance = instance or DagsterInstance.get()
    register_dataset(instance, dataset)
    outcomes = {name: StageOutcome(name) for name in selected}
    with wait_for_dataset(instance, dataset, on_wait=_tell_waiting(dataset)):
        run = create_pipeline_run(instance, dataset, selected, run_config_for(selected, source, preset),
                                  {"spaceport/preset": preset, **(tags or {})})
        done = threading.Event()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                execute_pipeline_run(instance, run)
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        seen: set[tuple[str, str]] = set()
        while True:
            finished = done.wait(poll_seconds)
            _collect(instance, run.run_id, outcomes, on_stage, seen)
            if finished:
                break
        thread.join()
    if errors:
        raise errors[0]
    for outcome in outcomes.values():
        if outcome.status == "not run":  # the run ended before this stage started
            outcome.status = "skipped"
    return PipelineOutcome(dataset, run.run_id, [outcomes[n] for n in selected])
