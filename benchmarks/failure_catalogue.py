"""Run a catalogue of hostile uploads, bad arguments and injected faults against `spaceport`, as a user would.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/failure_catalogue.py [--only PREFIX] [--json out.json]

Everything is generated here from the lund photos (../shared/datasets/lund, never modified): one upload that
mixes 29 real photos with every hostile form (pixel modes, names, a comment segment, a FIFO, a duplicate,
GPS on another continent for 12 of 25 fixes) run to colmap_export; the command-line errors; and the faults
(kill -9 / SIGTERM / SIGINT of `spaceport run`, kill -9 of a stage, a frozen stage, an S3 outage during a
publish, a lost bucket, tampered artifacts), on real processes killed by pid and a real moto server.
Issue 27's cases: symlink loops in a folder and an inbox upload, Ctrl-C to the whole process group, e-mail
injection (submit, inbox and S3 markers, a run's notify tag read back from moto's SES), a 200 KB marker of
nested `[`, submit / SageMaker copies of an upload linking to /etc/passwd, and the first 10 brighton_beach
photos without EXIF (16-bit PNG, RGBA PNG, 16-bit TIFF) SfM'd several times against the upright gate.
Prints one line per case (PASS/FAIL and what was seen) and "N of M passed"; exit 1 when any case fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.stage_processes import seconds_until_gone, stage_pid  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LUND = REPO.parent / "shared" / "datasets" / "lund" / "images"
GPS_IFD = 0x8825


@dataclass
class Outcome:
    passed: bool
    seen: str


@dataclass
class Catalogue:
    work: Path
    results: list[tuple[str, str, Outcome]] = field(default_factory=list)
    only: str = ""

    def case(self, group: str, name: str, check: Callable[[], Outcome]) -> Outcome:
        if self.only and not f"{group}/{name}".startswith(self.only):
            return Outcome(True, "skipped")
        started = time.time()
        try:
            outcome = check()
        except Exception as exc:  # a case that crashes the catalogue is a failed case, with its cause
            outcome = Outcome(False, f"catalogue error: {type(exc).__name__}: {exc} "
                                     f"{traceback.format_exc(limit=-2)!r}")
        self.results.append((group, name, outcome))
        verdict = "SKIP" if outcome.seen.startswith("skipped") else "PASS" if outcome.passed else "FAIL"
        print(f"{verdict}  {group:<8} {name:<58} {time.time() - started:6.1f} s  "
              f"{outcome.seen[:600]}", flush=True)
        return outcome


# ---------------------------------------------------------------- helpers: the CLI, processes, instances

def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SPACEPORT_HOME": str(home), "DAGSTER_HOME": str(home), "PYTHONPATH": str(REPO),
           "OMP_WAIT_POLICY": "PASSIVE", **extra}
    for key in ("SPACEPORT_ARTIFACT_ROOT", "AWS_ENDPOINT_URL", "SPACEPORT_COMPUTE"):
        if key not in extra:
            env.pop(key, None)
    return env


def cli(args: list[str], home: Path, timeout: float = 900, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "spaceport_dagster.cli", *args], env=env_for(home, **extra),
                          text=True, capture_output=True, timeout=timeout)


def cli_background(args: list[str], home: Path, tmpdir: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spaceport_dagster.cli", *args],
                            env=env_for(home, TMPDIR=str(tmpdir), **extra), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def one_line_error(done: subprocess.CompletedProcess | tuple[int, str, str], code: int, text: str) -> Outcome:
    returncode, out, err = done if isinstance(done, tuple) else (done.returncode, done.stdout, done.stderr)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    ok = returncode == code and "Traceback" not in out + err and text in last and last.startswith("error: ")
    others = f" (before it: {lines[:-1]!r})" if len(lines) > 1 else ""
    return Outcome(ok, f"exit {returncode}, {len(lines)} stderr line(s): {last!r}{others}")


def registered(home: Path) -> list[str]:
    from dagster import DagsterInstance

    if not (home / "dagster.yaml").is_file():
        return []
    with DagsterInstance.from_config(str(home)) as instance:
        return list(instance.get_dynamic_partitions("datasets"))


def run_statuses(home: Path) -> list[str]:
    from dagster import DagsterInstance

    with DagsterInstance.from_config(str(home)) as instance:
        return sorted(r.status.value for r in instance.get_runs())


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- the hostile upload

def lund(n: int) -> Path:
    return LUND / f"{n:02d}.jpg"


def with_comment(data: bytes, size: int) -> bytes:
    """The JPEG with a COM segment of `size` bytes (segment length field included) after SOI."""
    body = (b"spaceport catalogue " * (size // 20 + 1))[: size - 2]
    return data[:2] + b"\xff\xfe" + (size).to_bytes(2, "big") + body + data[2:]


def gps_to_south(src: Path, dest: Path) -> None:
    """The same photo with its GPS latitude moved to the other hemisphere (~12,000 km away)."""
    with Image.open(src) as image:
        exif = image.getexif()
        gps = exif.get_ifd(GPS_IFD)
        assert gps.get(1) in ("N", "S"), f"{src} has no GPS latitude"
        gps[1] = "S" if gps[1] == "N" else "N"
        image.save(dest, "JPEG", quality=95, exif=exif.tobytes())


def build_hostile_upload(folder: Path, fifo_ok: bool) -> dict[str, Any]:
    """29 real photos, 12 in uncommon forms or names, 12 of 25 GPS fixes moved, plus a FIFO and a duplicate."""
    folder.mkdir(parents=True)
    forms: dict[str, str] = {}  # upload path -> what it is

    def grey(n: int) -> Image.Image:
        return Image.open(lund(n)).convert("L")

    arr = np.asarray(grey(2), dtype=np.uint16) * 257
    Image.fromarray(arr).save(folder / "sixteen_bit.png")
    forms["sixteen_bit.png"] = "16-bit grey PNG"
    Image.open(lund(3)).convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png")
    forms["palette.png"] = "palette PNG"
    grey(4).convert("LA").save(folder / "grey_alpha.png")
    forms["grey_alpha.png"] = "grey + alpha PNG"
    Image.fromarray(np.asarray(grey(5), dtype=np.float32) / 255.0, "F").save(folder / "float32.tif")
    forms["float32.tif"] = "float32 TIFF"
    shutil.copy(lund(6), folder / "no_extension")
    forms["no_extension"] = "JPEG without an extension"
    shutil.copy(lund(7), folder / "lying.png")
    forms["lying.png"] = "JPEG named .png"
    (folder / "named").mkdir()
    shutil.copy(lund(8), folder / "named" / "jpg")
    forms["named/jpg"] = "a JPEG named `jpg`"
    (folder / "comment.jpg").write_bytes(with_comment(lund(9).read_bytes(), 65_000))
    forms["comment.jpg"] = "65,000-byte COM segment"
    deep = folder / "/".join([f"flight-{i}-" + "n" * 90 for i in range(3)])
    deep.mkdir(parents=True)
    long_name = "photo-" + "l" * 100 + ".jpg"
    shutil.copy(lund(10), deep / long_name)
    forms[(deep / long_name).relative_to(folder).as_posix()] = "nested path over 255 bytes"
    for sub, name, n in (("Case", "IMG.jpg", 11), ("case", "img.JPG", 12)):
        (folder / sub).mkdir()
        shutil.copy(lund(n), folder / sub / name)
        forms[f"{sub}/{name}"] = "case-fold collision once flattened"
    shutil.copy(lund(13), folder / "dir__x.jpg")
    (folder / "dir").mkdir()
    shutil.copy(lund(1), folder / "dir" / "x.jpg")  # flattens onto dir__x.jpg
    forms["dir__x.jpg"] = forms["dir/x.jpg"] = "flattened-name collision"
    moved = []
    for n in range(14, 30):
        name = f"{n:02d}.jpg"
        if n < 26:  # 12 of the 25 photos that carry GPS
            gps_to_south(lund(n), folder / name)
            moved.append(name)
        else:
            shutil.copy(lund(n), folder / name)
    shutil.copy(lund(1), folder / "duplicate_of_x.jpg")
    refused = {"duplicate_of_x.jpg": "exact duplicate of dir/x.jpg"}
    if fifo_ok:
        os.mkfifo(folder / "fifo.jpg")
        refused["fifo.jpg"] = "not a regular file"
    return {"forms": forms, "moved": moved, "refused": refused}


def hostile_cases(cat: Catalogue) -> Path:
    home = cat.work / "hostile-home"
    upload = cat.work / "hostile-upload"
    info = build_hostile_upload(upload, fifo_ok=True)
    before = snapshot(upload)
    started = time.time()
    done = cli(["run", str(upload), "--dataset", "hostile", "--until", "colmap_export"], home, timeout=3600)
    seconds = time.time() - started
    artifacts = home / "artifacts" / "hostile"
    manifest: dict[str, Any] = {}
    if (artifacts / "image_set" / "manifest.json").is_file():
        manifest = json.loads((artifacts / "image_set" / "manifest.json").read_text())

    cat.case("upload", "run to colmap_export succeeds", lambda: Outcome(
        done.returncode == 0 and "Traceback" not in done.stdout + done.stderr,
        f"exit {done.returncode} in {seconds:.0f} s; {done.stderr.strip().splitlines()[-1:]!r}"))

    stored = {r["source"]: r for r in manifest.get("images", [])}
    refused = {r["source"]: r["reason"] for r in manifest.get("refused", [])}

    def forms_accepted() -> Outcome:
        bad = []
        for source, what in info["forms"].items():
            record = stored.get(source)
            if record is None:
                bad.append(f"{what} ({source[:40]}): refused {refused.get(source)!r}")
                continue
            path = artifacts / "image_set" / "images" / record["name"]
            with Image.open(path) as image:
                image.load()
                if image.mode not in ("RGB", "L") or image.format not in ("JPEG", "PNG"):
                    bad.append(f"{what}: stored as {image.format} {image.mode}")
                real = {"JPEG": (".jpg", ".jpeg"), "PNG": (".png",)}[image.format]
                if not record["name"].lower().endswith(real):
                    bad.append(f"{what}: {record['name']} is {image.format}")
        return Outcome(not bad and bool(stored), "; ".join(bad) or f"{len(info['forms'])} forms stored as 8-bit "
                                                                  f"JPEG/PNG with real extensions")

    cat.case("upload", "pixel modes, names, comment segment: all stored readable", forms_accepted)

    def names_safe() -> Outcome:
        names = [r["name"] for r in stored.values()]
        long_source = next((s for s in stored if s.startswith("flight-")), "")
        ok = (len({n.lower() for n in names}) == len(names) and all(len(n.encode()) <= 255 and n.isascii()
                                                                   for n in names)
              and len(long_source.encode()) > 255 and len(names) == 29)
        return Outcome(ok, f"{len(names)} names, unique case-folded: {len({n.lower() for n in names}) == len(names)}, "
                           f"longest {max((len(n.encode()) for n in names), default=0)} bytes; long source path kept: "
                           f"{len(long_source.encode())} bytes")

    cat.case("upload", "long nested names and collisions: safe, unique, source kept", names_safe)
    for source, reason in info["refused"].items():
        cat.case("upload", f"{source} refused: {reason}", lambda s=source, r=reason: Outcome(
            r in (refused.get(s) or ""), f"manifest: {refused.get(s)!r}"))
    cat.case("upload", "chmod 000 file refused", lambda: Outcome(
        True, "skipped: running as root, where chmod 000 does not stop reads (the FIFO case covers unreadable)")
        if os.geteuid() == 0 else Outcome(False, "not run"))
    cat.case("upload", "the upload is never modified", lambda: Outcome(snapshot(upload) == before,
                                                                      f"{len(before)} files compared by SHA-256"))

    sfm_report = artifacts / "sparse_reconstruction" / "report.json"

    def gps_outliers() -> Outcome:
        report = json.loads(sfm_report.read_text())
        outliers = report.get("gps_consensus", {}).get("outliers", [])
        moved_names = sorted(stored[m]["name"] for m in info["moved"])
        geo = report.get("georegistration", {})
        residual = geo.get("residual_horizontal_rms_m")
        warned = "gps_consistent" in done.stdout + done.stderr
        ok = (sorted(outliers) == moved_names and warned and geo.get("images_with_gps") == 13
              and geo.get("georegistered") is True and residual is not None and residual < 50.0)
        return Outcome(ok, f"outliers {len(outliers)} (expected the {len(moved_names)} moved), warned: {warned}, "
                           f"georegistered on {geo.get('images_with_gps')} fixes, horizontal RMS residual "
                           f"{residual if residual is None else round(residual, 1)} m")

    cat.case("upload", "GPS on another continent for 12 of 25 fixes: left out, warned", gps_outliers)

    def exported() -> Outcome:
        images = sorted((artifacts / "colmap_export" / "images").iterdir())
        report = json.loads(sfm_report.read_text())
        registered_count = report.get("metadata", {}).get("registered_images")
        ok = len(images) == registered_count and registered_count is not None and registered_count >= 27
        return Outcome(ok, f"{len(images)} undistorted images exported, {registered_count} of 29 registered")

    cat.case("upload", "every accepted form reaches the COLMAP export", exported)
    return home


# ---------------------------------------------------------------- command line

def cli_cases(cat: Catalogue, photos: Path, endpoint: str, bucket: str) -> None:
    home = cat.work / "cli-home"
    s3 = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}
    closed = f"http://127.0.0.1:{free_port()}"
    cases: list[tuple[str, list[str], int, str, dict[str, str]]] = [
        ("unknown --preset", ["run", str(photos), "--preset", "nope"], 2, "unknown preset 'nope'", {}),
        ("unknown --until", ["run", str(photos), "--until", "everything"], 2, "unknown asset 'everything'", {}),
        ("unknown --from (rerun)", ["rerun", "x", "--from", "nowhere"], 2, "unknown asset 'nowhere'", {}),
        ("--dataset ''", ["run", str(photos), "--dataset", ""], 2, "invalid dataset id ''", {}),
        ("source s3:/", ["run", "s3:/", "--dataset", "x"], 2, "'s3:/' is not an S3 URI", {}),
        ("source with a '..' bucket", ["run", "s3://a..b/x", "--dataset", "x"], 2, "'a..b' is not a valid bucket", {}),
        ("unreachable endpoint", ["run", f"s3://{bucket}/up/", "--dataset", "x"], 1, "cannot reach the S3 endpoint",
         {**s3, "AWS_ENDPOINT_URL": closed}),
        ("missing bucket (source)", ["run", "s3://no-such-bucket-q/up/", "--dataset", "x"], 2,
         "bucket 'no-such-bucket-q' does not exist", s3),
        ("missing bucket (rerun, S3 artifact root)", ["rerun", "x", "--from", "splat_model"], 2,
         "bucket 'gone-bucket-q' does not exist", {**s3, "SPACEPORT_ARTIFACT_ROOT": "s3://gone-bucket-q/art"}),
        ("rerun --from image_set, never run", ["rerun", "never-run", "--from", "image_set"], 2,
         "dataset 'never-run' cannot be ingested again", {}),
    ]
    for name, args, code, text, extra in cases:
        def check(args: list[str] = args, code: int = code, text: str = text, extra: dict = extra) -> Outcome:
            done = cli(args, home, timeout=300, **extra)
            outcome = one_line_error(done, code, text)
            names = registered(home)
            return Outcome(outcome.passed and not names, outcome.seen + (f"; registered {names}" if names else ""))

        cat.case("cli", name, check)


# ---------------------------------------------------------------- faults

def six_photos(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for n in range(1, 7):
        shutil.copy(lund(n), folder / f"{n:02d}.jpg")
    return folder


def interrupt_case(cat: Catalogue, sig: int, photos: Path) -> None:
    name = {signal.SIGKILL: "kill -9", signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT (Ctrl-C)"}[sig]

    def check() -> Outcome:
        home, tmpdir = cat.work / f"int-{sig}", cat.work / f"int-{sig}-tmp"
        tmpdir.mkdir(parents=True)
        proc = cli_background(["run", str(photos), "--dataset", "six", "--until", "sparse_reconstruction"], home,
                              tmpdir)
        stage = stage_pid(tmpdir, "sfm", timeout=300)
        time.sleep(2.0)  # mid-stage
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=120)
        gone = seconds_until_gone(stage, 5)
        dataset = home / "artifacts" / "six"
        leftovers = [p.name for p in dataset.iterdir() if p.name.endswith(".tmp")] + \
                    [p.name for p in tmpdir.glob("spaceport-stage-*")]
        if sig == signal.SIGKILL:
            if gone is None:
                return Outcome(False, "the stage outlived the killed run")
            nxt = cli(["run", str(photos), "--dataset", "six", "--until", "image_set"], home, TMPDIR=str(tmpdir))
            after = [p.name for p in dataset.iterdir() if p.name.endswith(".tmp")] + \
                    [p.name for p in tmpdir.glob("spaceport-stage-*")]
            statuses = run_statuses(home)
            ok = (nxt.returncode == 0 and "marked 1 run(s) of a killed spaceport process as failed" in nxt.stdout
                  and statuses == ["FAILURE", "SUCCESS"] and not after)
            return Outcome(ok, f"stage gone {gone:.1f} s after the kill; next run exit {nxt.returncode}, runs "
                               f"{statuses}, leftovers after it {after}")
        statuses = run_statuses(home)
        outcome = one_line_error((proc.returncode, out, err), 130, "run interrupted")
        ok = outcome.passed and gone is not None and statuses == ["FAILURE"] and not leftovers
        return Outcome(ok, f"{outcome.seen}; stage gone: {gone is not None}; runs {statuses}; leftovers {leftovers}")

    cat.case("fault", f"{name} of `spaceport run` mid-stage", check)


def stage_killed_case(cat: Catalogue, photos: Path) -> None:
    def check() -> Outcome:
        home, tmpdir = cat.work / "stage-kill", cat.work / "stage-kill-tmp"
        tmpdir.mkdir(parents=True)
        proc = cli_background(["run", str(photos), "--dataset", "six", "--until", "sparse_reconstruction"], home,
                              tmpdir)
        stage = stage_pid(tmpdir, "sfm", timeout=300)
        time.sleep(2.0)
        os.kill(stage, signal.SIGKILL)  # as the OOM killer would
        out, err = proc.communicate(timeout=300)
        outcome = one_line_error((proc.returncode, out, err), 1, "stage killed by signal 9")
        published = (home / "artifacts" / "six" / "sparse_reconstruction").exists()
        return Outcome(outcome.passed and not published, outcome.seen + f"; published: {published}")

    cat.case("fault", "stage killed by signal 9 (the OOM killer's way)", check)


def hung_stage_case(cat: Catalogue, photos: Path) -> None:
    """A frozen stage (SIGSTOP: no heartbeat) under a 6 s heartbeat limit, through the Python API (the CLI runs
    the presets' generous limits: 30 min)."""
    def check() -> Outcome:
        code = """
import os, signal, sys, tempfile, threading, time
from pathlib import Path
from dagster import AssetKey, DagsterInstance, materialize
from spaceport_dagster.definitions import PIPELINE_ASSETS
from spaceport_dagster.resources.compute import LocalStageLauncher
from spaceport_dagster.resources.storage import StorageResource
home = Path(sys.argv[1]); home.mkdir(parents=True, exist_ok=True)
instance = DagsterInstance.local_temp(str(home))
instance.add_dynamic_partitions("datasets", ["six"])
res = {"storage": StorageResource(root=str(home / "artifacts")), "compute": LocalStageLauncher()}
def go(name, config):
    return materialize(PIPELINE_ASSETS, selection=[AssetKey(name)], instance=instance, partition_key="six",
                       run_config={"ops": {name: {"config": config}}}, resources=res, raise_on_error=False)
assert go("image_set", {"source": sys.argv[2]}).success
def freeze():
    tmp = Path(tempfile.gettempdir())
    while True:
        for f in tmp.glob("spaceport-stage-*-sfm-*/control/stage.pid"):
            if f.read_text().strip():
                os.kill(int(f.read_text()), signal.SIGSTOP); return
        time.sleep(0.1)
threading.Thread(target=freeze, daemon=True).start()
started = time.time()
result = go("sparse_reconstruction", {"heartbeat_minutes": 0.1})
event = next(e for e in result.all_events if e.is_step_failure)
print(round(time.time() - started, 1), event.step_failure_data.error.message)
"""
        tmpdir = cat.work / "hung-tmp"
        tmpdir.mkdir()
        done = subprocess.run([sys.executable, "-c", code, str(cat.work / "hung"), str(photos)], text=True,
                              capture_output=True, timeout=600, env=env_for(cat.work / "hung", TMPDIR=str(tmpdir)))
        line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
        ok = done.returncode == 0 and "stage sfm stopped responding (no heartbeat for" in line
        left = list(tmpdir.glob("spaceport-stage-*"))
        return Outcome(ok and not left, f"{line[:200]}; leftovers {left}")

    cat.case("fault", "hung stage (frozen, no heartbeat) killed and reported", check)


def s3_cases(cat: Catalogue, photos: Path) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    s3env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update({k: v for k, v in s3env.items() if k != "AWS_ENDPOINT_URL"})
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="outage")
    root = {"SPACEPORT_ARTIFACT_ROOT": "s3://outage/art", **s3env}
    home = cat.work / "s3-home"

    def keys(prefix: str) -> list[str]:
        out = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="outage", Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    state: dict[str, Any] = {"server": server}
    try:
        def outage() -> Outcome:
            photos = LUND  # 29 photos: a publish long enough to cut in the middle (read only, as every upload)
            first = cli(["run", str(photos), "--dataset", "six", "--until", "image_set"], home, **root)
            if first.returncode != 0:
                return Outcome(False, f"the first publish failed: {first.stderr[-200:]}")
            published = json.loads(client.get_object(Bucket="outage", Key="art/six/image_set/_SUCCESS")["Body"].read())
            proc = subprocess.Popen([sys.executable, "-m", "spaceport_dagster.cli", "run", str(photos), "--dataset",
                                     "six", "--until", "image_set"], env=env_for(home, **root), text=True,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            stopped = False
            deadline = time.time() + 600
            while proc.poll() is None and time.time() < deadline:  # stop S3 once the new version is half there
                new = [k for k in keys("art/six/image_set/") if published["version"] not in k and "_SUCCESS" not in k]
                if new:
                    state["server"].stop()
                    stopped = True
                    break
                time.sleep(0.02)
            out, err = proc.communicate(timeout=600)
            state["server"] = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)  # S3 is back
            state["server"].start()
            if not stopped:
                return Outcome(False, f"the publish ended before the outage could be injected (exit {proc.returncode})")
            outcome = one_line_error((proc.returncode, out, err), 1, "")
            last = err.strip().splitlines()[-1] if err.strip() else ""
            first_error = ("S3 failed while publishing image_set of 'six'" in last and "Could not connect" in last
                           and "/images/" in last and "nothing was published" in last)  # the upload's, not a cleanup's
            manifest = json.loads(client.get_object(Bucket="outage", Key="art/six/image_set/_SUCCESS")["Body"].read())
            half = {k.split("/")[3] for k in keys("art/six/image_set/")} - {"_SUCCESS", manifest["version"]}
            nxt = cli(["run", str(photos), "--dataset", "six", "--until", "image_set"], home, **root)
            manifest2 = json.loads(client.get_object(Bucket="outage", Key="art/six/image_set/_SUCCESS")["Body"].read())
            after = {k.split("/")[3] for k in keys("art/six/image_set/")} - {"_SUCCESS"}
            # the superseded version stays readable for the retention period (SPACEPORT_VERSION_RETENTION_HOURS,
            # since issue 14); the half-uploaded one, never published, must be gone
            ok = (outcome.passed and first_error and manifest["version"] == published["version"]
                  and nxt.returncode == 0 and bool(half) and not half & after
                  and after <= {manifest2["version"], published["version"]})
            return Outcome(ok, f"names the upload's connection error: {first_error}; previous version still "
                               f"published: {manifest['version'] == published['version']}; half-uploaded prefixes "
                               f"after the failure: {len(half)}, after the next publish: {len(half & after)} (the "
                               f"superseded version kept for the retention: {published['version'] in after}); "
                               f"{outcome.seen}")

        cat.case("fault", "S3 outage during publish (moto server stopped)", outage)

        def lost_bucket() -> Outcome:
            for key in keys(""):
                client.delete_object(Bucket="outage", Key=key)
            client.delete_bucket(Bucket="outage")
            done = cli(["rerun", "six", "--from", "sparse_reconstruction"], home, **root)
            return one_line_error(done, 2, "bucket 'outage' does not exist")

        cat.case("fault", "the S3 server loses the bucket", lost_bucket)
    finally:
        state["server"].stop()


def tamper_cases(cat: Catalogue, home: Path) -> None:
    """Damage hostile's published sparse_reconstruction in place, then rerun colmap_export (restored after)."""
    folder = home / "artifacts" / "hostile" / "sparse_reconstruction"
    points = next(folder.rglob("points3D.bin"), None)
    manifest = folder / "_SUCCESS"

    def tamper(name: str, target: Path | None, damage: Callable[[bytes], bytes], expected: str) -> None:
        def check() -> Outcome:
            if target is None or not target.is_file():
                return Outcome(False, "no published sparse_reconstruction to tamper with (the upload run failed)")
            original = target.read_bytes()
            target.write_bytes(damage(original))
            try:
                started = time.time()
                done = cli(["rerun", "hostile", "--from", "colmap_export", "--until", "colmap_export"], home,
                           timeout=600)
                seconds = time.time() - started
            finally:
                target.write_bytes(original)
            outcome = one_line_error(done, 1, "artifact sparse_reconstruction of dataset 'hostile' is damaged")
            ok = outcome.passed and expected in done.stderr and "rerun from sparse_reconstruction" in done.stderr
            return Outcome(ok, f"{outcome.seen} ({seconds:.0f} s)")

        cat.case("fault", name, check)

    tamper("points3D.bin cut to half its length", points, lambda b: b[: len(b) // 2], "the manifest says")
    tamper("points3D.bin bytes overwritten in place", points,
           lambda b: b[:64] + bytes(255 - x for x in b[64:4160]) + b[4160:], "does not match its SHA-256")
    tamper("_SUCCESS manifest cut", manifest, lambda b: b[: len(b) // 2], "manifest is not valid JSON")


# ---------------------------------------------------------------- issue 27: links, no GPS, Ctrl-C, injection

BRIGHTON = REPO.parent / "shared" / "datasets" / "brighton_beach" / "images"
CRLF = ["pilot@example.org\nBcc: victim@evil.example", "pilot@example.org\r\nBcc: victim@evil.example"]
INVALID = ["@", "pilot@", "a@b@example.org", "pilot @example.org", "pilot@exa mple.org", "Pilot <pilot@example.org>",
           "pilot@example", "a@example.org, b@example.org"]
LOOP = "symbolic link loop (not followed)"
UPWARD = "symbolic link to the upload folder or a folder above it (a loop; not followed)"
TICK = """
import json, sys
from dagster import DagsterInstance, build_sensor_context
from spaceport_dagster.sensors.inbox import inbox_sensor
from spaceport_dagster.sensors.s3_uploads import s3_uploads_sensor
sensor = s3_uploads_sensor if sys.argv[1] == "s3" else inbox_sensor
result = sensor(build_sensor_context(instance=DagsterInstance.ephemeral()))
print(json.dumps({"requests": [[r.partition_key, r.tags.get("spaceport/notify")] for r in
                               (getattr(result, "run_requests", None) or [])],
                  "skip": getattr(result, "skip_message", None)}))
"""


def loop_links(folder: Path) -> dict[str, str]:
    (folder / "a.jpg").symlink_to("b.jpg")
    (folder / "b.jpg").symlink_to("a.jpg")
    (folder / "loop").symlink_to(".")
    (folder / "up").symlink_to("..")
    (folder / "dangling.jpg").symlink_to("gone.jpg")
    return {"a.jpg": LOOP, "b.jpg": LOOP, "loop": UPWARD, "up": UPWARD, "dangling.jpg": "broken symbolic link"}


def copy_lund(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True)
    for n in range(1, count + 1):
        shutil.copy(lund(n), folder / f"{n:02d}.jpg")
    return folder


def tick(kind: str, home: Path, **extra: str) -> tuple[dict[str, Any], str]:
    """One evaluation of the inbox or S3 upload sensor, in a process of its own: its requests, and its log."""
    done = subprocess.run([sys.executable, "-c", TICK, kind], env=env_for(home, **extra), text=True,
                          capture_output=True, timeout=300)
    lines = done.stdout.strip().splitlines()
    return (json.loads(lines[-1]) if done.returncode == 0 and lines else {"error": done.stderr[-400:]}), done.stderr


def manifest_of(home: Path, dataset: str) -> dict[str, Any]:
    path = home / "artifacts" / dataset / "image_set" / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def link_cases(cat: Catalogue) -> None:
    home = cat.work / "links-home"

    def folder_upload() -> Outcome:
        upload = copy_lund(cat.work / "looped", 10)
        links = loop_links(upload)
        done = cli(["run", str(upload), "--dataset", "looped", "--until", "image_set"], home)
        manifest = manifest_of(home, "looped")
        refused = {r["source"]: r["reason"] for r in manifest.get("refused", [])}
        ok = (done.returncode == 0 and "Traceback" not in done.stdout + done.stderr and refused == links
              and len(manifest.get("images", [])) == 10 and all((upload / n).is_symlink() for n in links))
        return Outcome(ok, f"exit {done.returncode}; {len(manifest.get('images', []))} photos stored; refused "
                           f"{refused or done.stderr.strip().splitlines()[-1:]}")

    cat.case("links", "symlink loops, ../, a dangling link beside 10 photos", folder_upload)

    def inbox_upload() -> Outcome:
        inbox = home / "inbox" / "looped-inbox"
        copy_lund(inbox, 10)
        links = loop_links(inbox)
        (inbox / "_READY").write_bytes(b"")
        ticked, _ = tick("inbox", home)
        done = cli(["rerun", "looped-inbox", "--from", "image_set", "--until", "image_set"], home)  # reads the inbox
        manifest = manifest_of(home, "looped-inbox")
        refused = {r["source"]: r["reason"] for r in manifest.get("refused", [])}
        ok = (ticked.get("requests") == [["looped-inbox", None]] and done.returncode == 0 and refused == links
              and len(manifest.get("images", [])) == 10)
        return Outcome(ok, f"sensor requests {ticked.get('requests', ticked)}; ingest of the inbox upload exit "
                           f"{done.returncode}, {len(manifest.get('images', []))} photos, {len(refused)} links refused "
                           "by name")

    cat.case("links", "the same links in an inbox upload", inbox_upload)


def no_gps_cases(cat: Catalogue, runs: dict[str, int]) -> None:
    """The first 10 brighton_beach photos without EXIF (so without GPS), SfM'd several times: the upright gate
    must never refuse them. Also counts the runs the rule before issue 27 would have refused."""
    import re

    def convert(kind: str, folder: Path) -> None:
        folder.mkdir(parents=True)
        for src in sorted(BRIGHTON.iterdir())[:10]:
            with Image.open(src) as image:
                rgb = image.convert("RGB")
            if kind == "rgba":
                rgb.convert("RGBA").save(folder / f"{src.stem}.png")
            else:  # Pillow writes 16 bits per sample for one channel only
                grey = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
                Image.fromarray(grey).save(folder / f"{src.stem}.{'png' if kind == 'png16' else 'tif'}")

    def old_rule_refuses(description: str) -> bool:
        if not description.startswith("nadir survey"):
            return False
        angles = [float(a) for a in re.findall(r"(?:from straight down|camera plane tilted) ([\d.]+) deg",
                                               description)]
        return any(a > 5.0 for a in angles)

    for kind, count in runs.items():
        label = {"png16": "16-bit grey PNG", "tif16": "16-bit grey TIFF", "rgba": "RGBA PNG"}[kind]

        def check(kind: str = kind, count: int = count) -> Outcome:
            home, upload = cat.work / f"nogps-{kind}", cat.work / f"nogps-{kind}-photos"
            convert(kind, upload)
            seen, failed, old, frames = [], 0, 0, set()
            for i in range(count):
                args = (["run", str(upload), "--dataset", kind, "--until", "sparse_reconstruction"] if i == 0 else
                        ["rerun", kind, "--from", "sparse_reconstruction", "--until", "sparse_reconstruction"])
                done = cli(args, home, timeout=1800)
                report_path = home / "artifacts" / kind / "sparse_reconstruction" / "report.json"
                if done.returncode != 0 or not report_path.is_file():
                    failed += 1
                    seen.append(f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
                    continue
                report = json.loads(report_path.read_text())
                upright = next(c for c in report["checks"] if c["name"] == "upright")
                frames.add(report["georegistration"]["frame"])
                old += old_rule_refuses(upright["description"])
                seen.append(("pass" if upright["passed"] else "warn") + ": " + upright["description"][:90])
            ok = failed == 0 and frames == {"local_upright"}
            return Outcome(ok, f"{count - failed} of {count} SfM runs published ({frames}); the rule before "
                               f"issue 27 would have refused {old}; " + " | ".join(seen))

        cat.case("gate", f"no GPS, {label}: upright never refuses ({count} SfM runs)", check)


def ctrl_c_group_case(cat: Catalogue, photos: Path) -> None:
    def check() -> Outcome:
        home, tmpdir = cat.work / "ctrl-c-group", cat.work / "ctrl-c-group-tmp"
        tmpdir.mkdir(parents=True)
        proc = subprocess.Popen([sys.executable, "-m", "spaceport_dagster.cli", "run", str(photos), "--dataset", "six",
                                 "--until", "sparse_reconstruction"], env=env_for(home, TMPDIR=str(tmpdir)),
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        stage = stage_pid(tmpdir, "sfm", timeout=300)
        time.sleep(2.0)
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: every process of the foreground group
        out, err = proc.communicate(timeout=120)
        gone = seconds_until_gone(stage, 5)
        time.sleep(2.0)
        helpers = [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_names(p, home)]
        leftovers = [p.name for p in tmpdir.glob("spaceport-stage-*")] + \
                    [p.name for p in (home / "artifacts" / "six").iterdir() if p.name.endswith(".tmp")]
        outcome = one_line_error((proc.returncode, out, err), 130, "run interrupted (Ctrl-C)")
        statuses = run_statuses(home)
        ok = (outcome.passed and "KeyboardInterrupt" not in err and gone is not None and statuses == ["FAILURE"]
              and not leftovers and not helpers)
        return Outcome(ok, f"{outcome.seen}; stage gone: {gone is not None}; runs {statuses}; leftovers "
                           f"{leftovers}; helper processes left {helpers}")

    cat.case("fault", "Ctrl-C to the whole process group mid-SfM", check)


def _cmdline_names(proc: Path, folder: Path) -> bool:
    try:
        return str(folder) in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def injection_cases(cat: Catalogue, photos: Path, endpoint: str) -> None:
    import boto3

    s3env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1"}
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="hostile")

    def keys(prefix: str) -> list[str]:
        out = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="hostile", Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def submit_refuses(addresses: list[str], name: str) -> Outcome:
        home = cat.work / f"email-{name}"
        seen, bad = [], []
        for address in addresses:
            for target in ([], ["--to", "s3://hostile/up"]):
                done = cli(["submit", str(photos), "--dataset", name, "--email", address, *target], home, **s3env)
                outcome = one_line_error(done, 2, "not an email address")
                seen.append(outcome.seen.split(": ", 1)[-1][:70])
                if not outcome.passed:
                    bad.append(f"{address!r} to {target or 'inbox'}: {outcome.seen}")
        written = [p.name for p in (home / "inbox").glob("*")] + keys(f"up/{name}/")
        return Outcome(not bad and not written, "; ".join(bad) or f"{len(seen)} submits refused (inbox and S3), "
                                                                  f"exit 2, one line each, e.g. {seen[0]}; written: "
                                                                  f"{written}")

    cat.case("security", "submit --email with a line break (\\n, \\r\\n)", lambda: submit_refuses(CRLF, "crlf"))
    cat.case("security", "submit --email with 8 invalid addresses", lambda: submit_refuses(INVALID, "invalid"))

    def markers(kind: str) -> Outcome:
        home = cat.work / f"markers-{kind}"
        bodies = {"crlf": json.dumps({"email": CRLF[1]}).encode(), "spaces": json.dumps({"email": "a b@x.org"}).encode(),
                  "nested": b"[" * 200_000, "deep": b"[" * 10_000,  # over the size bound; under it, too deep
                  "good": json.dumps({"email": "pilot@example.org"}).encode()}
        extra: dict[str, str] = {}
        for name, body in bodies.items():
            if kind == "inbox":
                folder = home / "inbox" / name
                folder.mkdir(parents=True)
                shutil.copy(lund(1), folder / "01.jpg")
                (folder / "dataset.json").write_bytes(body)
            else:
                client.put_object(Bucket="hostile", Key=f"markers/{name}/01.jpg", Body=lund(1).read_bytes())
                client.put_object(Bucket="hostile", Key=f"markers/{name}/dataset.json", Body=body)
                extra = {**s3env, "SPACEPORT_UPLOADS": "s3://hostile/markers"}
        ticked, log = tick(kind, home, **extra)
        named = {name: any(f"/{name}/dataset.json: dataset.json" in line and "skipped" in line
                           for line in log.splitlines()) for name in ("crlf", "spaces", "nested", "deep")}
        ok = (ticked.get("requests") == [["good", "pilot@example.org"]] and all(named.values())
              and "RecursionError" not in log and "could not scan" not in log)
        reasons = [line.split("dataset.json: ", 1)[-1][:80] for line in log.splitlines() if "skipped" in line]
        return Outcome(ok, f"requests {ticked.get('requests', ticked)}; refused by name: {named}; reasons: {reasons}")

    cat.case("security", "inbox markers: line break, spaces, 200 KB / 10 KB of '[', a good one", lambda: markers("inbox"))
    cat.case("security", "S3 markers: the same five", lambda: markers("s3"))

    def notify_tag() -> Outcome:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses import ses_backends

        code = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
import boto3
from dagster import DagsterInstance, materialize
from spaceport_dagster.resources.notifications import NotifierResource
from spaceport_dagster.sensors.run_status import notify_on_success
from tests.test_notifications import STAND_INS, _finish_context
instance = DagsterInstance.ephemeral()
instance.add_dynamic_partitions("datasets", ["harbour"])
tag = "pilot@example.org\\nBcc: victim@evil.example,ops@example.org"
result = materialize(STAND_INS, instance=instance, partition_key="harbour", tags={{"spaceport/notify": tag}})
boto3.client("ses").verify_email_identity(EmailAddress="spaceport@example.org")
notify_on_success(_finish_context(instance, result.run_id, NotifierResource(channel="ses",
                                                                            sender="spaceport@example.org")))
"""
        sent = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
        before = len(sent)
        home = cat.work / "notify-home"
        home.mkdir()
        done = subprocess.run([sys.executable, "-c", code], env=env_for(home, **s3env), text=True,
                              capture_output=True, timeout=600)
        new = sent[before:]
        to = [m.destinations for m in new]
        ok = (done.returncode == 0 and len(new) == 1 and new[0].destinations["ToAddresses"] == ["ops@example.org"]
              and "contains a line break" in done.stderr)
        return Outcome(ok, f"exit {done.returncode}; SES destinations {to}; warned: "
                           f"{'contains a line break' in done.stderr}")

    cat.case("security", "a run's notify tag with a line break", notify_tag)

    def submit_links() -> Outcome:
        home = cat.work / "links-submit"
        upload = copy_lund(cat.work / "linked-upload", 6)
        (upload / "passwd").symlink_to("/etc/passwd")
        (upload / "etc").symlink_to("/etc")
        loop_links(upload)
        inbox = cli(["submit", str(upload), "--dataset", "linked"], home)
        s3 = cli(["submit", str(upload), "--dataset", "linked", "--to", "s3://hostile/up"], home, **s3env)
        launcher = subprocess.run([sys.executable, "-c", f"""
from pathlib import Path
from spaceport_dagster.resources.artifact_store import S3ArtifactStore
from spaceport_dagster.resources.sagemaker.launcher import SageMakerStageLauncher
SageMakerStageLauncher._upload_source(S3ArtifactStore("s3://hostile/art"), Path({str(upload)!r}), "art/job/")
"""], env=env_for(home, **s3env), text=True, capture_output=True, timeout=300)
        copied = sorted(p.name for p in (home / "inbox" / "linked").iterdir())
        photos = [f"{n:02d}.jpg" for n in range(1, 7)]
        on_s3 = [k.rsplit("/", 1)[-1] for k in keys("up/linked/")]
        by_launcher = [k.rsplit("/", 1)[-1] for k in keys("art/job/")]
        passwd = Path("/etc/passwd").read_bytes()
        leaked = [k for k in keys("") if client.get_object(Bucket="hostile", Key=k)["Body"].read() == passwd]
        leaked += [n for n in copied if (home / "inbox" / "linked" / n).read_bytes() == passwd]
        warned = sorted(line.removeprefix("warning: left behind ").split(": ", 1)[0]
                        for line in inbox.stderr.splitlines() if line.startswith("warning: left behind"))
        ok = (inbox.returncode == s3.returncode == launcher.returncode == 0 and copied == [*photos, "dataset.json"]
              and on_s3 == sorted([*photos, "dataset.json"]) and by_launcher == photos and not leaked
              and warned == sorted(["passwd", "etc", "a.jpg", "b.jpg", "loop", "up", "dangling.jpg"]))
        return Outcome(ok, f"inbox {len(copied)} files, S3 {len(on_s3)}, SageMaker copy {len(by_launcher)}; "
                           f"/etc/passwd copied: {leaked}; left behind and named: {warned}")

    cat.case("security", "submit / SageMaker copy of an upload linking to /etc/passwd", submit_links)


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run only cases whose 'group/name' starts with this")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--no-gps-runs", type=int, default=4, help="SfM runs of each GPS-less survey (16-bit PNG, "
                                                                  "RGBA PNG; the TIFF runs twice)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's request log
    work = Path(tempfile.mkdtemp(prefix="spaceport-catalogue-"))
    cat = Catalogue(work, only=args.only)
    started = time.time()
    try:
        photos = six_photos(work / "six")
        wanted = ("upload", "fault/points3D", "fault/_SUCCESS")  # the tampering cases damage the upload's SfM
        hostile_home = hostile_cases(cat) if not args.only or args.only.startswith(wanted) else work / "none"
        from moto.server import ThreadedMotoServer

        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            import boto3

            os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                               "AWS_DEFAULT_REGION": "us-east-1"})
            boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}").create_bucket(Bucket="uploads")
            cli_cases(cat, photos, f"http://127.0.0.1:{port}", "uploads")
        finally:
            server.stop()
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            interrupt_case(cat, sig, photos)
        stage_killed_case(cat, photos)
        hung_stage_case(cat, photos)
        s3_cases(cat, photos)
        tamper_cases(cat, hostile_home)
        # issue 27: the rest of the catalogue
        link_cases(cat)
        ctrl_c_group_case(cat, photos)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        try:
            injection_cases(cat, photos, f"http://127.0.0.1:{port}")
        finally:
            server.stop()
        no_gps_cases(cat, {"png16": args.no_gps_runs, "rgba": args.no_gps_runs, "tif16": 2})
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ran = [r for r in cat.results if not r[2].seen.startswith("skipped")]
    skipped = [f"{g}/{n}: {o.seen}" for g, n, o in cat.results if o.seen.startswith("skipped") and o.seen != "skipped"]
    passed = sum(r[2].passed for r in ran)
    print(f"\n{passed} of {len(ran)} passed in {time.time() - started:.0f} s" +
          "".join(f"\nnot run: {line}" for line in skipped))
    if args.json:
        args.json.write_text(json.dumps({
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": f"{os.cpu_count()} cores",
            "passed": passed, "cases": len(ran), "not_run": skipped,
            "results": [{"group": g, "case": n, "passed": o.passed, "seen": o.seen} for g, n, o in ran]}, indent=2))
    return 0 if passed == len(ran) else 1


if __name__ == "__main__":
    sys.exit(main())
