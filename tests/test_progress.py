"""While a long stage runs, `spaceport run` prints its progress and an estimate of the time left."""

import pytest
from dagster import AssetExecutionContext, DagsterInstance, asset, materialize

from spaceport_dagster import progress
from spaceport_dagster.progress import StageProgress
from spaceport_dagster.runner import StageOutcome, _ProgressWatch


def test_time_left_from_the_steps_the_training_stage_reports() -> None:
    stage = StageProgress("splat_model", started=1000.0)
    assert stage.time_left() is None
    stage.hear("training 300 steps on CPU (2 threads) with the torch rasteriser", 1005.0)
    stage.hear("export: 28 images (21 train / 3 validation / 4 test) at 160x120", 1010.0)
    assert stage.total == 300 and stage.time_left() is None  # no step reported yet
    stage.hear("step 100: 12,000 Gaussians, loss 0.0512, test PSNR 19.80 dB (mean colour 17.47)", 1100.0)
    assert stage.time_left() == pytest.approx(200 * 1.0)  # 100 steps in 100 s since the stage started
    stage.hear("step 200: 20,000 Gaussians, loss 0.0401, test PSNR 21.10 dB (mean colour 17.47)", 1160.0)
    assert stage.time_left() == pytest.approx(100 * 0.6)  # 100 steps in 60 s between the two reports
    line = stage.line(1170.0)
    assert line.startswith("  [  running  ] splat_model               170s  step 200: 20,000 Gaussians")
    assert line.endswith("(200/300 steps, about 60 s left)")
    assert not stage.due(1059.0) and stage.due(1060.0)


@asset
def splat_model(context: AssetExecutionContext) -> None:
    context.log.info("training 50 steps on CPU (2 threads) with the torch rasteriser")
    context.log.info("step 10: 1,000 Gaussians, test PSNR 15.00 dB")


def test_the_run_log_feeds_a_progress_line_per_running_stage(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lines come from the run's event log, as a stage's Pipes log lines reach it."""
    with DagsterInstance.ephemeral() as instance:
        result = materialize([splat_model], instance=instance)
        lines: list[str] = []
        watch = _ProgressWatch(instance, result.run_id, lines.append)
        monkeypatch.setattr(progress, "EVERY_SECONDS", 0.0)
        watch.poll({"splat_model": StageOutcome("splat_model", status="running")})
        assert len(lines) == 1
        assert "step 10: 1,000 Gaussians, test PSNR 15.00 dB (10/50 steps, about" in lines[0]
        watch.poll({"splat_model": StageOutcome("splat_model", status="ok")})  # ended: nothing more
        assert len(lines) == 1
