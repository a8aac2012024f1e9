"""`spaceport run`/`rerun` with bad arguments or unusable locations: one line saying what is wrong and what to
do, exit 2 for usage errors (1 when a valid location cannot be reached), nothing registered, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance

from spaceport_dagster.cli import main
from spaceport_dagster.resources.artifact_store import LocalArtifactStore

from .conftest import _free_port, dataset_images

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("01.jpg", "02.jpg", "03.jpg", "04.jpg", "05.jpg"):
        shutil.copy(dataset_images("lund") / name, folder / name)
    return folder


def _registered(home: Path) -> list[str]:
    if not (home / "dagster.yaml").exists():
        return []
    with DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_dynamic_partitions("datasets"))


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "error: unknown preset 'nope'; choose one of preview, standard, quality"),
    (["--until", "everything"], "error: unknown asset 'everything'; choose one of image_set,"),
    (["--dataset", ""], "error: invalid dataset id '': it must match"),
    (["--dataset", "Bad_Name"], "error: invalid dataset id 'Bad_Name'"),
])
def test_run_usage_errors_exit_2_and_register_nothing(args: list[str], message: str, photos: Path,
                                                      spaceport_home: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["run", str(photos), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert _registered(spaceport_home) == []


@pytest.mark.parametrize("source, message", [
    ("s3:/", "error: source: 's3:/' is not an S3 URI: write it as s3://bucket/prefix/"),
    ("S3://bucket/x", "error: source: 'S3://bucket/x' is not an S3 URI"),
    ("s3://a..b/x", "error: source: S3 URI 's3://a..b/x': 'a..b' is not a valid bucket name"),
    ("s3:///x", "error: source: S3 URI 's3:///x' has no bucket"),
    ("/no/such/folder", "error: /no/such/folder is not a folder of photos"),
])
def test_malformed_sources_are_refused(source: str, message: str, spaceport_home: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    assert main(["run", source]) == 2
    assert capsys.readouterr().err.startswith(message)
    assert _registered(spaceport_home) == []


def test_a_bucket_that_does_not_exist_and_an_empty_prefix(bucket: str, spaceport_home: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    assert main(["run", "s3://no-such-bucket-here/uploads/x/"]) == 2
    assert "bucket 'no-such-bucket-here' does not exist" in capsys.readouterr().err
    assert main(["run", f"s3://{bucket}/uploads/empty/"]) == 2
    assert f"source s3://{bucket}/uploads/empty/ holds no files" in capsys.readouterr().err
    assert _registered(spaceport_home) == []


def test_an_unreachable_endpoint_is_one_line_exit_1(photos: Path, spaceport_home: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert main(["run", "s3://bucket/uploads/x/"]) == 1
    assert capsys.readouterr().err == (f"error: cannot reach the S3 endpoint {endpoint} for source "
                                       "s3://bucket/uploads/x/; check AWS_ENDPOINT_URL and the network, then run "
                                       "the command again\n")
    monkeypatch.setenv("SPACEPORT_ARTIFACT_ROOT", "s3://bucket/artifacts")
    assert main(["run", str(photos)]) == 1
    assert "cannot reach the S3 endpoint" in capsys.readouterr().err
    assert _registered(spaceport_home) == []


def test_rerun_errors(bucket: str, spaceport_home: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture) -> None:
    from spaceport_dagster.partitions import register_dataset

    assert main(["rerun", "never-run", "--from", "splat_model"]) == 2
    assert capsys.readouterr().err == "error: unknown dataset 'never-run'; known: none yet\n"
    assert main(["rerun", "never-run", "--from", "image_set"]) == 2
    assert capsys.readouterr().err.startswith("error: dataset 'never-run' cannot be ingested again: no uploads at ")
    with DagsterInstance.get() as instance:
        register_dataset(instance, "site-1")
    assert main(["rerun", "nosuchdataset", "--from", "splat_model"]) == 2
    assert capsys.readouterr().err == "error: unknown dataset 'nosuchdataset'; known: site-1\n"
    assert main(["rerun", "site-1", "--from", "splat_model"]) == 2
    assert "has no published colmap_export" in capsys.readouterr().err
    assert main(["rerun", "site-1", "--from", "nowhere"]) == 2
    assert "unknown asset 'nowhere'" in capsys.readouterr().err
    monkeypatch.setenv("SPACEPORT_ARTIFACT_ROOT", "s3://gone-bucket-xyz/artifacts")
    assert main(["rerun", "site-1", "--from", "splat_model"]) == 2
    assert "artifact root (SPACEPORT_ARTIFACT_ROOT) s3://gone-bucket-xyz/artifacts: bucket 'gone-bucket-xyz' " \
           "does not exist" in capsys.readouterr().err
    assert _registered(spaceport_home) == ["site-1"]


def test_a_gpu_preset_without_a_gpu_stops_before_anything_runs(photos: Path, spaceport_home: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    import torch

    from spaceport_dagster.partitions import register_dataset
    from spaceport_dagster.runner import run_config_for

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    hint = ("error: preset 'standard' trains for a GPU and this machine has none (hours on the CPU): use --preset "
            "preview, or SPACEPORT_COMPUTE=sagemaker for a GPU instance, or --cpu to train it here anyway\n")
    assert main(["run", str(photos), "--preset", "standard"]) == 2
    assert capsys.readouterr().err == hint
    assert _registered(spaceport_home) == []
    with DagsterInstance.get() as instance:
        register_dataset(instance, "site-1")
    assert main(["rerun", "site-1", "--from", "splat_model", "--preset", "standard"]) == 2
    assert capsys.readouterr().err == hint
    assert main(["rerun", "site-1", "--from", "splat_model", "--preset", "quality"]) == 2
    assert "preset 'quality' trains for a GPU" in capsys.readouterr().err
    # stopping before training is not a reason to refuse the stages that need no GPU
    assert main(["rerun", "site-1", "--from", "colmap_export", "--until", "colmap_export", "--preset", "standard"]) == 2
    assert "has no published image_set, sparse_reconstruction, which colmap_export reads" in capsys.readouterr().err
    # `--cpu` asks for the CPU explicitly: the training stage gets device cpu
    config = run_config_for(["splat_model"], None, "standard", {"splat_model": {"device": "cpu"}})
    assert config["ops"]["splat_model"]["config"] == {"preset": "standard", "options": {"device": "cpu"}}


def test_the_train_stage_refuses_a_gpu_preset_without_a_gpu(tmp_path: Path) -> None:
    """A run from the UI's launchpad with the standard preset: the stage stops before loading anything."""
    import torch

    from spaceport_dagster.stages.train.stage import refuse_gpu_preset_without_gpu

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="^preset 'standard' trains for a GPU and this machine has none"):
        refuse_gpu_preset_without_gpu({"preset": "standard"})
    with pytest.raises(ValueError, match="preset 'quality'"):
        refuse_gpu_preset_without_gpu({"preset": "quality", "device": "auto"})
    refuse_gpu_preset_without_gpu({"preset": "standard", "device": "cpu"})  # asked for explicitly
    refuse_gpu_preset_without_gpu({"preset": "preview"})


def test_ui_refuses_a_busy_port_in_one_line(spaceport_home: Path, capsys: pytest.CaptureFixture) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 1  # returned: dagster dev never started (no daemon)
    assert capsys.readouterr().err == (f"error: port {port} on 127.0.0.1 is in use (another `spaceport ui` or "
                                       "dagster dev?); choose another with --port\n")


def test_the_ui_command_printed_after_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from spaceport_dagster.console import ui_command

    monkeypatch.setattr(sys, "argv", [".venv/bin/spaceport", "run", "x"])
    monkeypatch.delenv("SPACEPORT_HOME", raising=False)
    assert ui_command() == ".venv/bin/spaceport ui"
    monkeypatch.setenv("SPACEPORT_HOME", "/data/home")
    monkeypatch.setattr(sys, "argv", ["/usr/lib/python3/spaceport_dagster/cli.py", "run", "x"])
    assert ui_command() == "SPACEPORT_HOME=/data/home spaceport ui"


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPACEPORT_HOME": str(home), "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO)}
    env.pop("SPACEPORT_ARTIFACT_ROOT", None)
    return subprocess.run([sys.executable, "-m", "spaceport_dagster.cli", *args], env=env, text=True,
                          capture_output=True, timeout=300)


def test_stage_failures_show_the_cause_not_a_traceback(photos: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = _cli(["run", str(photos), "--dataset", "site", "--until", "image_set"], home)
    assert done.returncode == 0, done.stderr
    store = LocalArtifactStore(home / "artifacts")
    image = next((store.fetch("site", "image_set") / "images").iterdir())
    size = image.stat().st_size
    image.write_bytes(image.read_bytes()[:1000])  # a published photo cut short
    damaged = _cli(["rerun", "site", "--from", "sparse_reconstruction", "--until", "sparse_reconstruction"], home)
    assert damaged.returncode == 1
    assert "Traceback" not in damaged.stdout + damaged.stderr
    assert damaged.stderr.strip().splitlines()[-1] == (
        f"error: sparse_reconstruction: artifact image_set of dataset 'site' is damaged ({image.relative_to(image.parents[1])} "
        f"has 1,000 bytes, the manifest says {size:,}); rerun "
        "from image_set: spaceport rerun site --from image_set")
    # a stage that raises (here: an image_set whose manifest.json is not JSON) says why, in one line
    with store.staging("broken", "image_set") as staging:
        (staging.local_dir / "images").mkdir()
        (staging.local_dir / "manifest.json").write_text("{not json")
        store.publish(staging)
    broken = _cli(["rerun", "broken", "--from", "sparse_reconstruction", "--until", "sparse_reconstruction"], home)
    assert broken.returncode == 1
    assert "Traceback" not in broken.stdout + broken.stderr
    assert broken.stderr.strip().splitlines()[-1].startswith(
        "error: sparse_reconstruction: stage sfm failed for dataset 'broken': JSONDecodeError: ")


def test_the_console_shows_our_own_error_not_the_low_level_cause_it_wraps() -> None:
    from dagster._utils.error import SerializableErrorInfo

    from spaceport_dagster.run_events import step_error

    def info(cls: str, message: str, cause: SerializableErrorInfo | None = None) -> SerializableErrorInfo:
        return SerializableErrorInfo(f"{cls}: {message}\n", [], cls, cause)

    boto = info("EndpointConnectionError", 'Could not connect to the endpoint URL: "http://s3/b/k"')
    ours = info("StorageUnavailable", "S3 failed while publishing image_set of 'x' ...", boto)
    step = info("DagsterExecutionStepExecutionError", "Error occurred while executing op", ours)
    assert step_error(step) == "S3 failed while publishing image_set of 'x' ..."
    assert step_error(info("DagsterExecutionStepExecutionError", "op failed", boto)) == boto.message.split(
        ": ", 1)[1].strip()  # a foreign error: its innermost cause, as before


def test_ui_starts_with_one_line_and_no_warnings(tmp_path: Path) -> None:
    """`spaceport ui` says where the UI is, then nothing a user cannot act on (Dagster's preview and
    supersession warnings, its INFO chatter), while the UI answers; Ctrl-C stops it."""
    import signal
    import time
    import urllib.request

    home = tmp_path / "home"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPACEPORT_", "DAGSTER_"))}
    env.update(SPACEPORT_HOME=str(home), PYTHONPATH=str(REPO))
    ui = subprocess.Popen([sys.executable, "-m", "spaceport_dagster.cli", "ui", "--port", str(port)], env=env,
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True,
                          preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)])
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5)
                break
            except OSError:
                assert ui.poll() is None and time.monotonic() < deadline, "the UI did not come up"
                time.sleep(1)
        time.sleep(10)  # the daemon's first sensor ticks
    finally:
        os.killpg(ui.pid, signal.SIGINT)
        try:
            out, _ = ui.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            out, _ = ui.communicate()
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[0] == (f"spaceport ui: http://127.0.0.1:{port}/ for home {home} (ready in a few seconds; Ctrl-C "
                        "stops it)")
    assert not [line for line in lines if "warning" in line.lower()], lines
