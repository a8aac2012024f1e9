"""Pipeline-wide presets: one name picks each stage's own preset."""

from __future__ import annotations

PIPELINE_PRESETS: dict[str, dict[str, str]] = {
    # minutes on a laptop CPU: for the demo, CI and a first look
    "preview": {"sparse_reconstruction": "fast", "splat_model": "preview", "sogs_bundle": "preview"},
    # what a GPU run should use
    "standard": {"sparse_reconstruction": "fast", "splat_model": "standard", "sogs_bundle": "standard"},
    "quality": {"sparse_reconstruction": "quality", "splat_model": "quality", "sogs_bundle": "standard"},
}


def stage_presets(name: str) -> dict[str, str]:
    if name not in PIPELINE_PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PIPELINE_PRESETS)}")
    return PIPELINE_PRESETS[name]
