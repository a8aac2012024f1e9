"""A local SageMaker for tests: speaks the SageMaker JSON protocol on 127.0.0.1 and really runs the container.

moto's SageMaker jumps straight to Completed without running anything. This emulator implements the calls the
launcher makes (Create/Describe/Stop ProcessingJob and TrainingJob) as an HTTP server, so the launcher talks to
it through an ordinary boto3 client (AWS_ENDPOINT_URL_SAGEMAKER) with no code of its own for tests. On create it
lays out SageMaker's container paths under `<root>/<job>/opt/ml` (SPACEPORT_CONTAINER_ROOT tells the container
entry point and the stage where `/opt/ml` is), downloads the input channels from S3 (moto), runs the image's
entry point (`containers/entrypoint.py`, which runs `python -m spaceport_dagster.stages.<stage>`) in a
subprocess, writes its output lines to CloudWatch Logs (moto) under /aws/sagemaker/ProcessingJobs or
TrainingJobs, uploads the outputs (Processing: the output LocalPath to its S3Uri; Training: `/opt/ml/model` as
model.tar.gz, checkpoints to the checkpoint S3Uri) and reports InProgress -> Completed / Failed / Stopped.

Behaviours for the failure paths, set per stage before the job is created: `fail` (SageMaker-side failure with
a reason, nothing runs), `hang` (the container sleeps until stopped or timed out), `s3_outage_after` (S3 goes
away after that many output files were uploaded), `lose_last_message_chunk` (the Pipes message chunk holding
"closed" is gone when the job completes).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from .image_runner import BuildahImages

REPO = Path(__file__).resolve().parents[1]
ENTRYPOINT = [sys.executable, str(REPO / "containers" / "entrypoint.py")]
JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
ACCOUNT = "123456789012"
LOG_GROUPS = {"processing": "/aws/sagemaker/ProcessingJobs", "training": "/aws/sagemaker/TrainingJobs"}
HANG = [sys.executable, "-c", "import time; print('container hangs', flush=True); time.sleep(3600)"]


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Behaviour:
    fail: str = ""  # FailureReason of a SageMaker-side failure (the container never starts)
    hang: bool = False
    s3_outage_after: int | None = None  # output files uploaded before S3 becomes unreachable
    lose_last_message_chunk: bool = False  # the stage's final Pipes upload never lands (its writer gave up)


@dataclass
class Job:
    kind: str  # "processing" or "training"
    name: str
    request: dict[str, Any]
    behaviour: Behaviour
    status: str = "InProgress"
    secondary: str = "Starting"
    failure_reason: str = ""
    exit_message: str = ""
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    model_uri: str = ""
    stop_requested: threading.Event = field(default_factory=threading.Event)
    container_started: threading.Event = field(default_factory=threading.Event)
    log_lines: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)  # S3 URIs of the outputs it managed to upload
    root: Path | None = None

    @property
    def arn(self) -> str:
        kind = "training-job" if self.kind == "training" else "processing-job"
        return f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:{kind}/{self.name.lower()}"

    def environment(self) -> dict[str, str]:
        return dict(self.request.get("Environment") or {})

    @property
    def stage(self) -> str:
        return self.environment().get("SPACEPORT_STAGE", "")

    def max_runtime(self) -> float:
        return float(self.request["StoppingCondition"]["MaxRuntimeInSeconds"])


class SageMakerEmulator:
    """`with SageMakerEmulator(root, role_env) as sm:` then point AWS_ENDPOINT_URL_SAGEMAKER at `sm.url`.

    `role_env` is what the job's execution role gives the container: AWS credentials, region and the S3 /
    CloudWatch endpoint (the moto server)."""

    def __init__(self, root: Path, role_env: dict[str, str], images: BuildahImages | None = None):
        self.root = Path(root)
        self.role_env = dict(role_env)
        self.images = images  # run these built images instead of the checkout's entry point (tests/images/)
        self.jobs: dict[str, Job] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.behaviours: dict[str, Behaviour] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- lifecycle
    def __enter__(self) -> SageMakerEmulator:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for job in self.jobs.values():
            job.stop_requested.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._server.shutdown()
        self._server.server_close()

    def behave(self, stage: str, **kwargs: Any) -> None:
        """The next jobs of `stage` behave so (fail=..., hang=True, s3_outage_after=N)."""
        self.behaviours[stage] = Behaviour(**kwargs)

    def created(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The create requests received, in order (kind: "processing" / "training" / None for both)."""
        ops = {"processing": ["CreateProcessingJob"], "training": ["CreateTrainingJob"],
               None: ["CreateProcessingJob", "CreateTrainingJob"]}[kind]
        return [params for op, params in self.calls if op in ops]

    def wait_for_container(self, stage: str, timeout: float = 30) -> Job:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for job in list(self.jobs.values()):
                if job.stage == stage and job.container_started.is_set():
                    return job
            time.sleep(0.05)
        raise TimeoutError(f"no container of stage {stage} started within {timeout}s")

    # -- HTTP
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                target = self.headers.get("X-Amz-Target", "")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    operation = target.split(".", 1)[1]
                    result = emulator.dispatch(operation, json.loads(body or b"{}"))
                    self._send(200, result)
                except ApiError as exc:
                    self._send(400, {"__type": exc.code, "message": exc.message})
                except Exception as exc:  # a bug in the emulator must show, not hang the client
                    self._send(500, {"__type": "InternalFailure", "message": f"{type(exc).__name__}: {exc}"})

            def _send(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server signature)
                pass

        return Handler

    def dispatch(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.calls.append((operation, params))
        if operation == "CreateProcessingJob":
            return {"ProcessingJobArn": self._create("processing", params["ProcessingJobName"], params).arn}
        if operation == "CreateTrainingJob":
            return {"TrainingJobArn": self._create("training", params["TrainingJobName"], params).arn}
        if operation == "DescribeProcessingJob":
            return self._describe(self._job("processing", params["ProcessingJobName"]))
        if operation == "DescribeTrainingJob":
            return self._describe(self._job("training", params["TrainingJobName"]))
        if operation in ("StopProcessingJob", "StopTrainingJob"):
            kind = "processing" if operation == "StopProcessingJob" else "training"
            job = self._job(kind, params[f"{kind.capitalize()}JobName"])
            if job.status != "InProgress":
                raise ApiError("ValidationException", f"The job {job.name} is not in progress ({job.status})")
            job.status = "Stopping"
            job.stop_requested.set()
            return {}
        raise ApiError("UnknownOperationException", f"the emulator does not implement {operation}")

    def _job(self, kind: str, name: str) -> Job:
        job = self.jobs.get(name)
        if job is None or job.kind != kind:
            raise ApiError("ValidationException", f"Requested resource not found: {kind} job {name}")
        return job

    def _create(self, kind: str, name: str, params: dict[str, Any]) -> Job:
        if not JOB_NAME.fullmatch(name):
            raise ApiError("ValidationException", f"job name {name!r} does not match [a-zA-Z0-9](-*[a-zA-Z0-9]){{0,62}}")
        limit = 256 if kind == "processing" else 512
        for key, value in (params.get("Environment") or {}).items():
            if len(value) > limit:
                raise ApiError("ValidationException", f"Environment value of {key} is longer than {limit}")
        if not str(params.get("RoleArn", "")).startswith("arn:aws:iam::"):
            raise ApiError("ValidationException", f"RoleArn {params.get('RoleArn')!r} is not an IAM role ARN")
        with self._lock:
            if name in self.jobs:
                raise ApiError("ResourceInUse", f"Job name must be unique within an AWS account and region, "
                                                f"and a job with this name already exists ({self.jobs[name].arn})")
            stage = (params.get("Environment") or {}).get("SPACEPORT_STAGE", "")
            job = Job(kind, name, params, self.behaviours.get(stage, Behaviour()))
            self.jobs[name] = job
        thread = threading.Thread(target=self._execute, args=(job,), daemon=True)
        self._threads.append(thread)
        thread.start()
        return job

    @staticmethod
    def _describe(job: Job) -> dict[str, Any]:
        r = job.request
        out: dict[str, Any] = {"CreationTime": job.created, "LastModifiedTime": time.time(), "RoleArn": r["RoleArn"],
                               "StoppingCondition": r["StoppingCondition"], "Environment": job.environment()}
        if job.failure_reason:
            out["FailureReason"] = job.failure_reason
        if job.kind == "processing":
            out.update(ProcessingJobName=job.name, ProcessingJobArn=job.arn, ProcessingJobStatus=job.status,
                       AppSpecification=r["AppSpecification"], ProcessingResources=r["ProcessingResources"],
                       ProcessingInputs=r.get("ProcessingInputs", []),
                       ProcessingOutputConfig=r.get("ProcessingOutputConfig", {"Outputs": []}))
            if job.exit_message:
                out["ExitMessage"] = job.exit_message
            if job.started:
                out["ProcessingStartTime"] = job.started
            if job.ended:
                out["ProcessingEndTime"] = job.ended
            return out
        seconds = int(round((job.ended or time.time()) - job.started)) if job.started else 0
        out.update(TrainingJobName=job.name, TrainingJobArn=job.arn, TrainingJobStatus=job.status,
                   SecondaryStatus=job.secondary, AlgorithmSpecification=r["AlgorithmSpecification"],
                   ResourceConfig=r["ResourceConfig"], OutputDataConfig=r["OutputDataConfig"],
                   InputDataConfig=r.get("InputDataConfig", []),
                   EnableManagedSpotTraining=bool(r.get("EnableManagedSpotTraining")),
                   TrainingTimeInSeconds=seconds, BillableTimeInSeconds=max(seconds, 1) if job.started else 0)
        if "CheckpointConfig" in r:
            out["CheckpointConfig"] = r["CheckpointConfig"]
        if job.model_uri:
            out["ModelArtifacts"] = {"S3ModelArtifacts": job.model_uri}
        if job.started:
            out["TrainingStartTime"] = job.started
        if job.ended:
            out["TrainingEndTime"] = job.ended
        return out

    # -- running a job
    def _client(self, service: str, endpoint: str | None = None) -> Any:
        env = self.role_env
        return boto3.client(
            service, endpoint_url=endpoint or env["AWS_ENDPOINT_URL"], region_name=env.get("AWS_DEFAULT_REGION", "us-east-1"),
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def _finish(self, job: Job, status: str, reason: str = "", secondary: str = "") -> None:
        job.failure_reason = reason[:1024]
        job.secondary = secondary or status
        job.ended = time.time()
        job.status = status

    def _execute(self, job: Job) -> None:
        try:
            self._execute_job(job)
        except Exception as exc:
            self._finish(job, "Failed", f"InternalServerError: emulator: {type(exc).__name__}: {exc}")

    def _execute_job(self, job: Job) -> None:
        if job.behaviour.fail:
            time.sleep(0.2)
            self._finish(job, "Failed", job.behaviour.fail)
            return
        job.started = time.time()
        job.root = self.root / job.name
        opt_ml = job.root / "opt" / "ml"
        (opt_ml / "output").mkdir(parents=True, exist_ok=True)
        s3 = self._client("s3")
        job.secondary = "Downloading"
        for local, uri in self._input_channels(job):
            if not self._download(s3, uri, self._host_path(job, local)):
                self._finish(job, "Failed", f'ClientError: No S3 objects found under S3 URL "{uri}" given in input '
                                            f"data source. Please ensure that the bucket exists in the selected region "
                                            f'(us-east-1), that objects exist under that S3 prefix, and that the role '
                                            f'"{job.request["RoleArn"]}" has "s3:ListBucket" permissions.')
                return
        self._write_config(job, opt_ml)
        checkpoint = job.request.get("CheckpointConfig")
        if checkpoint:
            self._download(s3, checkpoint["S3Uri"], self._host_path(job, checkpoint.get("LocalPath", "/opt/ml/checkpoints")))
        job.secondary = "Training" if job.kind == "training" else "InProgress"
        code, outcome = self._run_container(job)
        if outcome == "stopped":
            self._finish(job, "Stopped", secondary="Stopped")
            return
        if outcome == "timeout":  # SageMaker ends the job: Stopped, and no FailureReason
            self._finish(job, "Stopped", secondary="MaxRuntimeExceeded")
            return
        if code != 0:
            self._fail_algorithm(job, opt_ml)
            return
        job.secondary = "Uploading"
        try:
            self._upload_outputs(job, opt_ml)
        except Exception as exc:
            self._finish(job, "Failed", f"ClientError: Failed to upload the job output to S3: {type(exc).__name__}: {exc}")
            return
        if job.behaviour.lose_last_message_chunk:
            self._relay_message_chunks_but_the_last(job, s3)
        self._finish(job, "Completed")

    @staticmethod
    def _held_messages(job: Job) -> tuple[dict[str, Any], str]:
        """The Pipes message params the launcher gave, and the prefix the container writes to instead."""
        from dagster_pipes import DAGSTER_PIPES_MESSAGES_ENV_VAR, decode_param

        params = decode_param(job.environment()[DAGSTER_PIPES_MESSAGES_ENV_VAR])
        return params, params["key_prefix"] + "-held"

    def _relay_message_chunks_but_the_last(self, job: Job, s3: Any) -> None:
        """The container wrote its chunks aside; all but the last land where the launcher reads, late."""
        params, held = self._held_messages(job)
        listed = s3.list_objects_v2(Bucket=params["bucket"], Prefix=held + "/").get("Contents", [])
        numbers = sorted(int(o["Key"].rsplit("/", 1)[1].removesuffix(".json")) for o in listed)
        for number in numbers[:-1]:
            s3.copy_object(Bucket=params["bucket"], Key=f"{params['key_prefix']}/{number}.json",
                           CopySource={"Bucket": params["bucket"], "Key": f"{held}/{number}.json"})
        for number in numbers:
            s3.delete_object(Bucket=params["bucket"], Key=f"{held}/{number}.json")

    @staticmethod
    def _host_path(job: Job, container_path: str) -> Path:
        assert job.root is not None and container_path.startswith("/opt/ml/")
        return job.root / container_path.lstrip("/")

    @staticmethod
    def _input_channels(job: Job) -> list[tuple[str, str]]:
        if job.kind == "processing":
            return [(i["S3Input"]["LocalPath"], i["S3Input"]["S3Uri"]) for i in job.request.get("ProcessingInputs", [])]
        return [(f"/opt/ml/input/data/{c['ChannelName']}", c["DataSource"]["S3DataSource"]["S3Uri"])
                for c in job.request.get("InputDataConfig", [])]

    @staticmethod
    def _download(s3: Any, uri: str, target: Path) -> int:
        bucket, _, prefix = uri[5:].partition("/")
        target.mkdir(parents=True, exist_ok=True)
        count = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(prefix):].lstrip("/")
                if not rel or rel.endswith("/"):
                    continue
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(dest))
                count += 1
        return count

    @staticmethod
    def _write_config(job: Job, opt_ml: Path) -> None:
        if job.kind == "processing":
            config = opt_ml / "config"
            config.mkdir(parents=True, exist_ok=True)
            (config / "processingjobconfig.json").write_text(json.dumps(job.request, indent=2))
            (opt_ml / "processing" / "output" / "artifact").mkdir(parents=True, exist_ok=True)
            return
        config = opt_ml / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "hyperparameters.json").write_text(json.dumps(job.request.get("HyperParameters", {})))
        (config / "inputdataconfig.json").write_text(json.dumps(
            {c["ChannelName"]: {"TrainingInputMode": "File"} for c in job.request.get("InputDataConfig", [])}))
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        (opt_ml / "model").mkdir(parents=True, exist_ok=True)

    def _image_uri(self, job: Job) -> str:
        if job.kind == "processing":
            return job.request["AppSpecification"]["ImageUri"]
        return job.request["AlgorithmSpecification"]["TrainingImage"]

    def _image_command(self, job: Job) -> list[str]:
        """The built image itself: its entry point (or the request's ContainerEntrypoint), SageMaker's arguments."""
        assert self.images is not None and job.root is not None
        uri = self._image_uri(job)
        if uri not in self.images:
            raise RuntimeError(f"CannotStartContainerError: no built image for {uri}")
        env = {**self.role_env, **job.environment(), **self._sagemaker_env(job)}
        if job.kind == "processing":
            app = job.request["AppSpecification"]
            command = self.images.command(uri, list(app.get("ContainerArguments", [])), job.root / "opt" / "ml", env)
            if app.get("ContainerEntrypoint"):
                cut = command.index("--") + 1
                command = command[:cut] + list(app["ContainerEntrypoint"]) + list(app.get("ContainerArguments", []))
            return command
        return self.images.command(uri, ["train"], job.root / "opt" / "ml", env)

    @staticmethod
    def _sagemaker_env(job: Job) -> dict[str, str]:
        """What SageMaker itself adds to a Training container's environment."""
        if job.kind != "training":
            return {}
        env = {"TRAINING_JOB_NAME": job.name, "SM_MODEL_DIR": "/opt/ml/model", "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data"}
        for c in job.request.get("InputDataConfig", []):
            env[f"SM_CHANNEL_{c['ChannelName'].upper()}"] = f"/opt/ml/input/data/{c['ChannelName']}"
        return env

    def _command(self, job: Job) -> list[str]:
        if job.behaviour.hang:
            return HANG
        if self.images is not None:
            return self._image_command(job)
        if job.kind == "processing":
            app = job.request["AppSpecification"]
            entry = app.get("ContainerEntrypoint")
            command = [self._image_path(a) for a in entry] if entry else list(ENTRYPOINT)
            return command + list(app.get("ContainerArguments", []))
        return [*ENTRYPOINT, "train"]

    @staticmethod
    def _image_path(arg: str) -> str:
        if arg in ("python", "python3"):
            return sys.executable
        if arg.startswith("/opt/spaceport/"):
            return str(REPO / "containers" / arg[len("/opt/spaceport/"):])
        return arg

    def _container_env(self, job: Job) -> dict[str, str]:
        # PYTHONPATH: the stage runs the checkout the test imports (a shared venv may point at another one)
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH") if k in os.environ}
        env.update(self.role_env)
        env.update(job.environment())
        assert job.root is not None
        env["SPACEPORT_CONTAINER_ROOT"] = str(job.root)
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(REPO)  # the image is built from this checkout, not whatever is installed
        if job.behaviour.lose_last_message_chunk:
            from dagster_pipes import DAGSTER_PIPES_MESSAGES_ENV_VAR, encode_param

            params, held = self._held_messages(job)
            env[DAGSTER_PIPES_MESSAGES_ENV_VAR] = encode_param({**params, "key_prefix": held})
        env.update(self._sagemaker_env(job))
        return env

    def _run_container(self, job: Job) -> tuple[int | None, str]:
        """Run to the end, a stop request, or MaxRuntimeInSeconds; the output goes to CloudWatch Logs."""
        assert job.root is not None
        proc = subprocess.Popen(self._command(job), env=self._container_env(job), cwd=job.root,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        job.container_started.set()
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=self._pump, args=(proc, lines), daemon=True)
        reader.start()
        logs = CloudWatchWriter(self._client("logs"), LOG_GROUPS[job.kind], f"{job.name}/algo-1-{int(time.time())}")
        outcome, deadline = "exited", job.started + job.max_runtime() if job.started else time.time() + 3600
        while proc.poll() is None:
            if job.stop_requested.is_set():
                outcome = "stopped"
            elif time.time() > deadline:
                outcome = "timeout"
            if outcome != "exited":
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                break
            logs.drain(lines, job.log_lines)
            time.sleep(0.05)
        proc.wait()
        reader.join(timeout=5)
        logs.drain(lines, job.log_lines)
        return proc.returncode, outcome

    @staticmethod
    def _pump(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    def _fail_algorithm(self, job: Job, opt_ml: Path) -> None:
        failure = opt_ml / "output" / "failure"
        if job.kind == "training":
            text = failure.read_text().strip() if failure.is_file() else ""
            self._finish(job, "Failed", "AlgorithmError: " + (text or "See job logs for more information"))
            return
        message = opt_ml / "output" / "message"
        job.exit_message = message.read_text()[:1024] if message.is_file() else ""
        self._finish(job, "Failed", "AlgorithmError: See job logs for more information")

    def _upload_outputs(self, job: Job, opt_ml: Path) -> None:
        uploads: list[tuple[Path, str]] = []  # (file, s3 uri)
        if job.kind == "processing":
            for output in job.request.get("ProcessingOutputConfig", {}).get("Outputs", []):
                local = self._host_path(job, output["S3Output"]["LocalPath"])
                base = output["S3Output"]["S3Uri"].rstrip("/") + "/"
                uploads += [(p, base + p.relative_to(local).as_posix()) for p in sorted(local.rglob("*")) if p.is_file()]
        else:
            archive = job.root / "model.tar.gz"  # type: ignore[operator]
            with tarfile.open(archive, "w:gz") as tar:
                for path in sorted((opt_ml / "model").rglob("*")):
                    tar.add(path, arcname=path.relative_to(opt_ml / "model").as_posix(), recursive=False)
            job.model_uri = job.request["OutputDataConfig"]["S3OutputPath"].rstrip("/") + f"/{job.name}/output/model.tar.gz"
            uploads.append((archive, job.model_uri))
            checkpoint = job.request.get("CheckpointConfig")
            if checkpoint:
                local = self._host_path(job, checkpoint.get("LocalPath", "/opt/ml/checkpoints"))
                base = checkpoint["S3Uri"].rstrip("/") + "/"
                uploads += [(p, base + p.relative_to(local).as_posix()) for p in sorted(local.rglob("*")) if p.is_file()]
        s3 = self._client("s3")
        for index, (path, uri) in enumerate(uploads):
            if job.behaviour.s3_outage_after is not None and index >= job.behaviour.s3_outage_after:
                s3 = self._client("s3", endpoint=dead_endpoint())  # S3 went away mid-upload
            bucket, _, key = uri[5:].partition("/")
            s3.upload_file(str(path), bucket, key)
            job.uploaded.append(uri)


class CloudWatchWriter:
    """Writes a container's output lines to one CloudWatch log stream (created on first use)."""

    def __init__(self, client: Any, group: str, stream: str):
        self.client, self.group, self.stream = client, group, stream
        self._ready = False

    def drain(self, lines: queue.Queue[str | None], keep: list[str]) -> None:
        batch = []
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                batch.append(line)
        if not batch:
            return
        keep.extend(batch)
        if not self._ready:
            with contextlib.suppress(self.client.exceptions.ResourceAlreadyExistsException):
                self.client.create_log_group(logGroupName=self.group)
            self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
            self._ready = True
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line or " "} for line in batch]
        for i in range(0, len(events), 500):
            self.client.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events[i : i + 500])


def dead_endpoint() -> str:
    """An http://127.0.0.1 port nobody listens on."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"

