"""The launchpad's preset choices are exactly the stages' presets, and a run config names them as before."""

from __future__ import annotations

from spaceport_dagster.assets.stage_config import SfmConfig, SfmPreset, SogPreset, TrainConfig, TrainPreset
from spaceport_dagster.definitions import defs
from spaceport_dagster.stages.sfm.config import PRESETS as SFM_PRESETS
from spaceport_dagster.stages.sog.config import PRESETS as SOG_PRESETS
from spaceport_dagster.stages.train.config import PRESETS as TRAIN_PRESETS


def test_preset_choices_are_the_stages_presets() -> None:
    assert {p.value for p in SfmPreset} == set(SFM_PRESETS)
    assert {p.value for p in TrainPreset} == set(TRAIN_PRESETS)
    assert {p.value for p in SogPreset} == set(SOG_PRESETS)


def test_preset_is_a_choice_in_the_job_config_schema() -> None:
    job = defs.resolve_job_def("spaceport_main")
    fields = job.run_config_schema.config_type.fields["ops"].config_type.fields
    preset = fields["splat_model"].config_type.fields["config"].config_type.fields["preset"].config_type
    enum = preset.inner_type if hasattr(preset, "inner_type") else preset
    assert sorted(v.config_value for v in enum.enum_values) == sorted(TRAIN_PRESETS)
    assert TrainConfig(preset="standard").stage_config() == {"preset": "standard"}
    assert SfmConfig().stage_config() == {}
    assert SfmConfig(preset="quality", options={"max_image_size": 800}).stage_config() == {
        "preset": "quality", "max_image_size": 800}
