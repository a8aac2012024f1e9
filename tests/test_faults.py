"""Faults with real processes: `spaceport run` killed, interrupted or hung stages, a dead run's pool slot.
Processes are killed by PID (never by name); stages are the real ones on real photos."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, materialize

from spaceport_dagster.definitions import PIPELINE_ASSETS
from spaceport_dagster.resources.compute import LocalStageLauncher
from spaceport_dagster.resources.owned_dirs import process_alive
from spaceport_dagster.resources.storage import StorageResource
from spaceport_dagster.runner import reap_abandoned_runs

from .conftest import dagster_home, dataset_images
from .stage_processes import seconds_until_gone, stage_pid

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def six_photos(tmp_path: Path) -> Path:
    folder = tmp_path / "six"
    folder.mkdir()
    for name in ("01.jpg", "02.jpg", "03.jpg", "04.jpg", "05.jpg", "06.jpg"):
        shutil.copy(dataset_images("lund") / name, folder / name)
    return folder


@pytest.fixture
def street_photos(tmp_path: Path) -> Path:
    """All 29 lund photos: an SfM that lasts tens of seconds on 2 cores, so a signal sent while it runs reaches
    it still running (six photos finished in 2 s on a quiet machine, before the interrupt)."""
    folder = tmp_path / "street"
    shutil.copytree(dataset_images("lund"), folder)
    return folder


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private TMPDIR, so the stage scratch folders of this test are the only ones looked at."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile re-reads TMPDIR
    return folder


def _wait_gone(pid: int, timeout: float = 20) -> bool:
    return seconds_until_gone(pid, timeout) is not None


def _spaceport(args: list[str], home: Path, scratch: Path) -> subprocess.Popen:
    env = {**os.environ, "SPACEPORT_HOME": str(home), "DAGSTER_HOME": str(home), "TMPDIR": str(scratch),
           "PYTHONPATH": str(REPO)}
    env.pop("SPACEPORT_ARTIFACT_ROOT", None)
    return subprocess.Popen([sys.executable, "-m", "spaceport_dagster.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _runs(home: Path) -> list:
    with DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_runs())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_stops_its_stage_and_ends(sig: int, street_photos: Path, tmp_path: Path,
                                                      scratch: Path) -> None:
    home = tmp_path / "home"
    proc = _spaceport(["run", str(street_photos), "--until", "sparse_reconstruction"], home, scratch)
    stage = stage_pid(scratch, "sfm")
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err
    assert "error: run interrupted" in err
    assert _wait_gone(stage)
    assert [r.status for r in _runs(home)] == [DagsterRunStatus.FAILURE]
    dataset = home / "artifacts" / "street"
    assert sorted(p.name for p in dataset.iterdir() if not p.name.startswith(".image_set.")) == ["image_set"]
    assert not list(scratch.glob("spaceport-stage-*"))  # TMPDIR of the stage removed


def test_ctrl_c_to_the_whole_process_group_shows_one_line(street_photos: Path, tmp_path: Path, scratch: Path) -> None:
    """Issue 27: a terminal's Ctrl-C reaches every process of the foreground group, Dagster's compute-log helpers
    (`tail -F`, `watch_orphans`) included; each `watch_orphans` printed a KeyboardInterrupt traceback under our
    one line. They now run in a process group of their own: the user sees one line."""
    home = tmp_path / "home"
    env = {**os.environ, "SPACEPORT_HOME": str(home), "DAGSTER_HOME": str(home), "TMPDIR": str(scratch),
           "PYTHONPATH": str(REPO)}
    env.pop("SPACEPORT_ARTIFACT_ROOT", None)
    proc = subprocess.Popen([sys.executable, "-m", "spaceport_dagster.cli", "run", str(street_photos), "--until",
                             "sparse_reconstruction"], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)  # a group of its own, as a shell's job
    stage = stage_pid(scratch, "sfm")
    time.sleep(2.0)  # mid-stage, the step's log capture (and its helpers) running
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    out, err = proc.communicate(timeout=90)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert len(lines) == 1 and lines[0].startswith("error: run interrupted (Ctrl-C)"), lines
    assert _wait_gone(stage)
    assert [r.status for r in _runs(home)] == [DagsterRunStatus.FAILURE]
    assert not [p for p in (home / "artifacts" / "street").iterdir() if p.name.endswith(".tmp")]
    assert not list(scratch.glob("spaceport-stage-*"))
    deadline = time.time() + 10  # the helpers end too (their watcher notices a parent gone within a second)
    while _processes_naming(home) and time.time() < deadline:
        time.sleep(0.2)
    assert not _processes_naming(home)


def _processes_naming(folder: Path) -> list[str]:
    """Command lines of live processes that name `folder` (a `tail -F` of a compute log under it, ...)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and str(folder) in line:
            found.append(line)
    return found


def test_kill_9_of_spaceport_kills_its_stage_and_the_next_run_cleans_up(six_photos: Path, tmp_path: Path,
                                                                        scratch: Path) -> None:
    home = tmp_path / "home"
    proc = _spaceport(["run", str(six_photos), "--until", "sparse_reconstruction"], home, scratch)
    stage = stage_pid(scratch, "sfm")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert _wait_gone(stage), "the stage outlived the run that started it"
    assert [r.status for r in _runs(home)] == [DagsterRunStatus.STARTED]  # nobody was left to say otherwise
    left = [p.name for p in (home / "artifacts" / "six").iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and list(scratch.glob("spaceport-stage-*"))
    nxt = _spaceport(["run", str(six_photos), "--until", "image_set"], home, scratch)
    out, err = nxt.communicate(timeout=120)
    assert nxt.returncode == 0, err
    assert "marked 1 run(s) of a killed spaceport process as failed" in out
    statuses = sorted(r.status.value for r in _runs(home))
    assert statuses == ["FAILURE", "SUCCESS"]
    assert not [p for p in (home / "artifacts" / "six").iterdir() if p.name.endswith(".tmp")]
    assert not list(scratch.glob("spaceport-stage-*"))


def _materialize(home: Path, selection: list[str], config: dict, raise_on_error: bool = True):
    instance = DagsterInstance.local_temp(str(home))
    resources = {"storage": StorageResource(root=str(home / "artifacts")), "compute": LocalStageLauncher()}
    ops = {name: {"config": config.get(name, {})} for name in selection}
    result = materialize(PIPELINE_ASSETS, selection=[AssetKey(n) for n in selection], instance=instance,
                         partition_key="six", run_config={"ops": ops}, resources=resources,
                         raise_on_error=raise_on_error)
    return result, instance


def _home_with_image_set(tmp_path: Path, six_photos: Path) -> Path:
    """A fresh home whose dataset "six" has its image_set published (what the stage-fault tests start from)."""
    home = dagster_home(tmp_path / "home")
    DagsterInstance.local_temp(str(home)).add_dynamic_partitions("datasets", ["six"])
    _materialize(home, ["image_set"], {"image_set": {"source": str(six_photos)}})
    return home


def _failure_text(result) -> str:
    event = next(e for e in result.all_events if e.is_step_failure)
    error = event.step_failure_data.error
    return error.message


def test_a_stage_past_its_timeout_is_killed_and_reported(six_photos: Path, tmp_path: Path, scratch: Path) -> None:
    home = _home_with_image_set(tmp_path, six_photos)
    started = time.time()
    result, _ = _materialize(home, ["sparse_reconstruction"], {"sparse_reconstruction": {"timeout_minutes": 0.05}},
                             raise_on_error=False)
    assert not result.success
    assert "stage sfm timed out after 3 s and was killed" in _failure_text(result)
    assert time.time() - started < 60
    assert not (home / "artifacts" / "six" / "sparse_reconstruction").exists()


def test_a_frozen_stage_is_killed_when_its_heartbeat_stops(six_photos: Path, tmp_path: Path, scratch: Path) -> None:
    import threading

    home = _home_with_image_set(tmp_path, six_photos)

    def freeze() -> None:
        os.kill(stage_pid(scratch, "sfm"), signal.SIGSTOP)

    threading.Thread(target=freeze, daemon=True).start()
    result, _ = _materialize(home, ["sparse_reconstruction"], {"sparse_reconstruction": {"heartbeat_minutes": 0.1}},
                             raise_on_error=False)
    assert not result.success
    assert "stage sfm stopped responding (no heartbeat for" in _failure_text(result)


def test_a_stage_killed_by_a_signal_is_reported_so(six_photos: Path, tmp_path: Path, scratch: Path) -> None:
    """kill -9 of the stage itself (the OOM killer's way): its supervisor exits the same way, and the run says
    "stage killed by signal 9", not Dagster's "did not yield expected outputs"."""
    import threading

    home = _home_with_image_set(tmp_path, six_photos)

    def kill() -> None:
        pid = stage_pid(scratch, "sfm")
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill, daemon=True).start()
    result, _ = _materialize(home, ["sparse_reconstruction"], {}, raise_on_error=False)
    assert not result.success
    assert _failure_text(result).strip().endswith("stage killed by signal 9 (SIGKILL) (the kernel's out-of-memory killer, "
                                                  "or a kill -9)")
    assert not (home / "artifacts" / "six" / "sparse_reconstruction").exists()


HOLDER = """
import os, sys, time
from dagster import AssetExecutionContext, DagsterInstance, asset, materialize
from spaceport_dagster.dagster_private import EngineEventData
from spaceport_dagster.job_runs import report_run_worker
from spaceport_dagster.resources.owned_dirs import owner_tag

@asset(pool="gpu")
def training(context: AssetExecutionContext) -> None:
    if sys.argv[2] == "spaceport":  # this process stands for a `spaceport run` executing the run
        report_run_worker(context.instance, context.run)
        # then, as in a real run, the in-process executor's engine event names the same pid, unmarked
        context.instance.report_engine_event("Executing steps in process", context.run,
                                             EngineEventData.in_process(os.getpid()))
    print("holding", flush=True)
    time.sleep(120)

instance = DagsterInstance.from_config(sys.argv[1])
# a re-execution copies its parent's tags: the owner tag the CLI set until 2026-12 (which named a dead process)
tags = {} if sys.argv[2] == "spaceport" else {"spaceport/owner": owner_tag().lstrip("@")}
materialize([training], instance=instance, tags=tags)
"""


@pytest.mark.parametrize("worker", ["spaceport", "daemon"])
def test_a_dead_runs_gpu_slot_is_freed_by_the_next_start(tmp_path: Path, worker: str) -> None:
    """A run whose `spaceport` worker was killed is failed by the next command, and its GPU slot freed; a run the
    command did not execute (a daemon-launched re-execution, whose worker logs no spaceport mark) is left to the
    run monitor, even when its worker is gone."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "spaceport_dagster" / "dagster.yaml", home / "dagster.yaml")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home), worker], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "DAGSTER_HOME": str(home)}, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with DagsterInstance.from_config(str(home)) as instance:
            assert len(instance.event_log_storage.get_concurrency_info("gpu").claimed_slots) == 1
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait()
            [run] = instance.get_runs()
            assert run.status == DagsterRunStatus.STARTED
            if worker == "daemon":
                assert reap_abandoned_runs(instance) == []
                assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
                return
            assert reap_abandoned_runs(instance) == [run.run_id]
            assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
            assert not instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
    finally:
        if holder.poll() is None:
            holder.kill()


def test_failure_reasons_name_the_signal_or_the_silence(tmp_path: Path) -> None:
    from dagster._core.errors import DagsterPipesExecutionError

    from spaceport_dagster.resources.artifact_store import Staging
    from spaceport_dagster.resources.compute import failure_reason

    staging = Staging("site", "sparse_reconstruction", "v1", tmp_path)

    def reason(code: int, watch: str | None = None) -> str:
        return failure_reason(staging, DagsterPipesExecutionError(f"External execution process failed with code "
                                                                  f"{code}"), watch)

    assert reason(-9) == ("stage killed by signal 9 (SIGKILL) (the kernel's out-of-memory killer, or a kill -9)")
    assert reason(-15) == "stage killed by signal 15 (SIGTERM)"
    assert reason(1).startswith("stage exited with code 1 without reporting why")
    assert reason(-9, "stage sfm timed out after 3 s and was killed") == "stage sfm timed out after 3 s and was killed"
    (tmp_path / "_FAILURE").write_text("ValueError: the stage's own words\n")
    assert reason(1) == "ValueError: the stage's own words"


def test_a_stage_whose_launcher_died_while_it_imported_still_dies(tmp_path: Path) -> None:
    """The launcher is killed before the stage's lifeline starts (slow imports): the stage must not take its
    adoptive parent for the launcher."""
    control = tmp_path / "control"
    control.mkdir()
    stage = ("import time; time.sleep(3)\n"  # still importing when the launcher dies
             "from spaceport_dagster.stages.lifeline import start_lifeline\n"
             "assert start_lifeline()\n"
             "time.sleep(60)\n")
    launcher = ("import subprocess, sys, time\n"
                "subprocess.Popen([sys.executable, '-m', 'spaceport_dagster.stages.lifeline', sys.argv[1], "
                "sys.executable, '-c', sys.argv[2]])\n"
                "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", launcher, str(control), stage],
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 30
    while not (control / "stage.pid").is_file() and time.time() < deadline:
        time.sleep(0.1)
    pid = int((control / "stage.pid").read_text())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_gone(pid, timeout=30), "the stage outlived its launcher"


STAGE_WITH_A_CHILD = """
import subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])  # a grandchild of the supervisor, as OpenSfM's Python is
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(300)
"""

LAUNCHER = """
import subprocess, sys, threading, time
command = [sys.executable, "-m", "spaceport_dagster.stages.lifeline", sys.argv[1], sys.executable, "-c",
           sys.argv[2], sys.argv[3]]
def launch():  # as PipesSubprocessClient does: Popen, then wait in the same thread
    subprocess.Popen(command).wait()
if sys.argv[4] == "thread":
    threading.Thread(target=launch).start()
    time.sleep(300)
else:
    launch()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
@pytest.mark.parametrize("where", ["main", "thread"])
def test_kill_9_of_the_launcher_kills_the_stage_and_its_children_by_signal(where: str, tmp_path: Path) -> None:
    """The stage never starts a lifeline thread here: on Linux nothing polls, the kernel's parent-death signal
    reaches the supervisor, which kills the group (stage and grandchild)."""
    control = tmp_path / "control"
    control.mkdir()
    child_file = tmp_path / "child.pid"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("SPACEPORT_STAGE_PARENT", None)
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(control), STAGE_WITH_A_CHILD, str(child_file),
                                 where], env=env)
    try:
        deadline = time.time() + 30
        while (not child_file.is_file() or not child_file.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        group, stage, child = (int(p.read_text()) for p in (control / "group.pid", control / "stage.pid", child_file))
        assert os.getpgid(stage) == os.getpgid(child) == group
        time.sleep(1.0)
        assert process_alive(group) and process_alive(stage) and process_alive(child)  # the launcher lives: so do they
        os.kill(launcher.pid, signal.SIGKILL)
        launcher.wait()
        killed = time.time()
        for pid in (group, stage, child):
            assert _wait_gone(pid, timeout=3), f"process {pid} outlived the launcher"
        assert time.time() - killed < 3
    finally:
        if launcher.poll() is None:
            launcher.kill()


def test_the_supervisor_exits_as_its_stage_did(tmp_path: Path) -> None:
    """Pipes sees the stage's own exit: its code, or the signal that killed it ("stage killed by signal 9")."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for code, expected in (("import sys; sys.exit(3)", 3), ("import os, signal; os.kill(os.getpid(), 9)", -9),
                           ("pass", 0)):
        control = tmp_path / f"control{expected}"
        control.mkdir()
        done = subprocess.run([sys.executable, "-m", "spaceport_dagster.stages.lifeline", str(control),
                               sys.executable, "-c", code], env=env, timeout=60)
        assert done.returncode == expected
