"""A stage's console output (pycolmap's glog lines) goes to its log file and the run's log, not the terminal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from .conftest import dagster_home, resources_for_test_stages
from .test_pipes_messages import _asset


def test_glog_lines_stay_off_the_console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capfd: pytest.CaptureFixture) -> None:
    home = dagster_home(tmp_path / "home")
    monkeypatch.setenv("SPACEPORT_HOME", str(home))
    talk = _asset("noisy", {"lines": 40})
    with DagsterInstance.local_temp(str(home)) as instance:
        result = materialize([talk], instance=instance, partition_key="talkative",
                             run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},  # as the CLI
                             resources=resources_for_test_stages(home))
        assert result.success
        console = capfd.readouterr()
        assert "noisy glog line" not in console.out + console.err
        assert "noisy print on stdout" not in console.out + console.err
        log_file = home / "logs" / "talkative" / "talk" / f"{result.run_id}.log"
        text = log_file.read_text()
        assert [f"noisy glog line {i}" in text for i in range(40)] == [True] * 40
        assert "noisy print on stdout" in text
        debug = [r.message for r in instance.all_logs(result.run_id) if r.level == logging.DEBUG
                 and "noisy console output" in r.message]
        assert len(debug) == 1 and "noisy glog line 39" in debug[0] and str(log_file) in debug[0]
