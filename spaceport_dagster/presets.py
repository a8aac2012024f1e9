"""Pipeline-wide presets: one name picks each stage's own preset (and the stages' time limits)."""

from __future__ import annotations

PRESET_TAG = "spaceport/preset"  # the run tag naming the pipeline preset a run uses

PIPELINE_PRESETS: dict[str, dict[str, str]] = {
    # minutes on a laptop CPU: for the demo, CI and a first look
    "preview": {"sparse_reconstruction": "fast", "splat_model": "preview", "sogs_bundle": "preview"},
    # what a GPU run should use
    "standard": {"sparse_reconstruction": "fast", "splat_model": "standard", "sogs_bundle": "standard"},
    "quality": {"sparse_reconstruction": "quality", "splat_model": "quality", "sogs_bundle": "standard"},
}


# splat_model presets sized for a GPU (thousands of full-resolution steps): refused on a machine without one
# unless the CPU is asked for (`spaceport run --cpu`, or the stage option `device: cpu`).
GPU_TRAIN_PRESETS = ("standard", "quality")


def stage_presets(name: str) -> dict[str, str]:
    if name not in PIPELINE_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PIPELINE_PRESETS)}")
    return PIPELINE_PRESETS[name]


# Wall-clock limits per stage (minutes): generous, so only a stage that hangs reaches them. A run config's
# `timeout_minutes` on an asset overrides them; 0 there means the preset's value.
STAGE_TIMEOUT_MINUTES: dict[str, dict[str, float]] = {
    "preview": {"image_set": 60, "sparse_reconstruction": 240, "colmap_export": 60, "splat_model": 360,
                "sogs_bundle": 120},
    "standard": {"image_set": 120, "sparse_reconstruction": 720, "colmap_export": 120, "splat_model": 1440,
                 "sogs_bundle": 240},
    "quality": {"image_set": 120, "sparse_reconstruction": 1440, "colmap_export": 120, "splat_model": 2880,
                "sogs_bundle": 240},
}
# A stage whose heartbeat (a thread touching a file every 2 s) is older than this is frozen (stopped, or stuck
# holding Python's lock in native code): it is killed. Long native calls normally release that lock.
HEARTBEAT_TIMEOUT_MINUTES = 30.0


def stage_timeout_minutes(asset: str, preset: str | None) -> float:
    """The default wall-clock limit of `asset` under pipeline preset `preset` (the most generous when unknown)."""
    table = STAGE_TIMEOUT_MINUTES.get(preset or "", STAGE_TIMEOUT_MINUTES["quality"])
    return table.get(asset, max(table.values()))
