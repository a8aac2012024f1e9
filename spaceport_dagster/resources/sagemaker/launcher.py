"""SageMakerStageLauncher: runs a stage as a SageMaker Processing job (CPU) or Training job (GPU) under Pipes.

dagster-aws has no Pipes client for SageMaker, so this is one: context injected and messages read through S3
(under `<storage root>/_sagemaker/<job>/`, deleted afterwards), CloudWatch logs forwarded to the run
log, polling with backoff, the job stopped when the run is cancelled, SageMaker's FailureReason / ExitMessage
and the stage's own failure message in the Dagster error. Outputs go to the artifact's staging version prefix
(Processing) or come back as model.tar.gz and are unpacked into the staging folder (Training); on any failure
the staging prefix is discarded, so the published artifact stays as it was.
"""

from __future__ import annotations

import contextlib
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    DagsterExecutionInterruptedError,
    Failure,
    MetadataValue,
    PipesClientCompletedInvocation,
    get_dagster_logger,
    open_pipes_session,
)

from spaceport_dagster.resources.artifact_store import ArtifactStore, S3ArtifactStore, Staging
from spaceport_dagster.resources.compute import PipesResult, StageLauncher, StageRequest
from spaceport_dagster.resources.pipes_messages import describe
from spaceport_dagster.stages.config import ConfigError
from spaceport_dagster.stages.options import validate_options
from spaceport_dagster.stages.s3uri import is_s3_uri, list_keys, split_s3_uri
from spaceport_dagster.stages.upload_files import open_regular, upload_files

from .costs import estimate_cost
from .logs import CloudWatchForwarder
from .naming import job_name
from .pipes_io import pipes_io
from .requests import CHECKPOINT_DIR, FAILURE_PATH, JobPlan
from .settings import STAGE_IMAGES, StageSettings, stage_settings

TERMINAL = ("Completed", "Failed", "Stopped")


class JobApi:
    """The three calls that differ between Processing and Training jobs."""

    def __init__(self, client: Any, training: bool):
        self.client = client
        self.training = training
        self.kind = "training" if training else "processing"
        self.status_key = "TrainingJobStatus" if training else "ProcessingJobStatus"

    def create(self, request: dict[str, Any]) -> str:
        if self.training:
            return self.client.create_training_job(**request)["TrainingJobArn"]
        return self.client.create_processing_job(**request)["ProcessingJobArn"]

    def describe(self, name: str) -> dict[str, Any]:
        if self.training:
            return self.client.describe_training_job(TrainingJobName=name)
        return self.client.describe_processing_job(ProcessingJobName=name)

    def stop(self, name: str) -> None:
        if self.training:
            self.client.stop_training_job(TrainingJobName=name)
        else:
            self.client.stop_processing_job(ProcessingJobName=name)


class SageMakerStageLauncher(StageLauncher):
    """Runs each stage on SageMaker; needs an S3 artifact root. Settings per stage override the defaults
    (`stages={"train": {"instance_type": "ml.g5.2xlarge", "spot": False}}`)."""

    role_arn: str
    region: str = ""
    image_repo: str = ""  # `<registry>/spaceport`: stage images are `<image_repo>-<image>:<image_tag>`
    image_tag: str = "latest"
    stages: dict[str, dict[str, Any]] = {}
    prices: dict[str, float] = {}  # USD per instance-hour, overriding costs.DEFAULT_PRICES_USD_PER_HOUR
    tags: dict[str, str] = {}
    poll_interval_s: float = 5.0
    max_poll_interval_s: float = 60.0
    pipes_interval_s: float = 10.0
    stop_timeout_s: float = 600.0
    keep_job_files: bool = False  # keep `_sagemaker/<job>/` (Pipes context, messages, checkpoints) for debugging

    # -- clients (boto3 honours AWS_ENDPOINT_URL_SAGEMAKER / AWS_ENDPOINT_URL_LOGS, e.g. the test emulator)
    def _client(self, service: str) -> Any:
        config = BotoConfig(retries={"mode": "standard", "max_attempts": 8})
        return boto3.client(service, region_name=self.region or None, config=config)

    def settings_for(self, stage: str) -> StageSettings:
        return stage_settings(stage, self.stages)

    def image_for(self, stage: str, settings: StageSettings, config: dict[str, Any] | None = None) -> str:
        """The stage's image; an SfM run with `engine: opensfm` gets the OpenSfM image (containers/opensfm)."""
        if settings.image_uri:
            return settings.image_uri
        if not self.image_repo:
            raise Failure(f"no container image for stage {stage!r}: set SPACEPORT_SAGEMAKER_IMAGE_REPO "
                          f"(images `<repo>-<image>:<tag>`) or a per-stage image_uri")
        image = STAGE_IMAGES[stage]
        if stage == "sfm" and (config or {}).get("engine") == "opensfm":
            image = "opensfm"
        return f"{self.image_repo}-{image}:{self.image_tag}"

    def launch(
        self, context: AssetExecutionContext, store: ArtifactStore, request: StageRequest, staging: Staging
    ) -> list[PipesResult]:
        if not isinstance(store, S3ArtifactStore):
            raise Failure("SageMaker compute needs artifacts on S3: set SPACEPORT_ARTIFACT_ROOT=s3://bucket/prefix "
                          f"(storage is the local folder {store.uri(request.dataset, request.asset)})")
        name = job_name(request.dataset, request.label, context.run_id, context.retry_number)
        scratch_key = self.scratch_key(store, name)
        try:
            self.check_options(request)
            plan = self.plan(store, request, staging, name, context.run_id)
            # Processing jobs write the output straight to staging.remote_prefix; staging.local_dir stays empty.
            staging.extra["remote_output"] = not plan.is_training
            return self._run(context, store, request, staging, plan, scratch_key)
        except BaseException:
            store.discard(staging)
            raise
        finally:
            if not self.keep_job_files:
                with contextlib.suppress(Exception):  # cleanup must not mask the job's own outcome
                    store.delete_prefix(scratch_key)

    @staticmethod
    def check_options(request: StageRequest) -> None:
        """Refuse options the stage would refuse, before an instance is paid for."""
        try:
            validate_options(request.stage, request.config)
        except ConfigError as exc:
            raise Failure(f"no SageMaker job started for {request.asset} of {request.dataset!r}: {exc}") from exc

    @staticmethod
    def scratch_key(store: S3ArtifactStore, name: str) -> str:
        """Per-job S3 prefix: uploaded local sources, Pipes context and messages, checkpoints, model.tar.gz."""
        return f"{store.prefix}_sagemaker/{name}/"  # short: Pipes pointers must fit 256-character env values

    def plan(self, store: S3ArtifactStore, request: StageRequest, staging: Staging, name: str, run_id: str) -> JobPlan:
        """The job for `request` (uploads local sources to the job's scratch prefix)."""
        settings = self.settings_for(request.stage)
        scratch_key = self.scratch_key(store, name)
        scratch_uri = f"s3://{store.bucket}/{scratch_key}"
        training = settings.job_kind == "training"
        # One manifest read per upstream artifact: the channel reads its version, the stage checks its files.
        manifests = {name: store.manifest(request.dataset, asset) for name, asset in request.artifacts.items()}
        return JobPlan(
            name=name, settings=settings, image_uri=self.image_for(request.stage, settings, request.config),
            role_arn=self.role_arn, channels=self._channels(store, request, manifests, scratch_key),
            input_artifacts={name: {"dataset": request.dataset, "asset": request.artifacts[name], "manifest": manifest}
                             for name, manifest in manifests.items()},
            output_uri=scratch_uri + "output/" if training else str(staging.remote_prefix),
            checkpoint_uri=self.checkpoint_uri(store, request) if training and request.resumable else "",
            tags={"spaceport:dataset": request.dataset, "spaceport:stage": request.stage,
                  "spaceport:asset": request.asset, "dagster:run-id": run_id, **self.tags},
        )

    @staticmethod
    def checkpoint_uri(store: S3ArtifactStore, request: StageRequest) -> str:
        """Checkpoints live beside the artifact, at `<dataset>/<asset>.checkpoints/`, never inside it: SageMaker syncs
        them while the job runs, a spot restart or a retried step (a new job) resumes from them, and they are
        deleted once the stage has finished, as the local launcher does."""
        return f"s3://{store.bucket}/{store.prefix}{request.dataset}/{request.asset}.checkpoints/"

    # -- inputs
    def _channels(self, store: S3ArtifactStore, request: StageRequest, manifests: dict[str, dict[str, Any]],
                  scratch_key: str) -> dict[str, str]:
        channels = {name: store.version_uri(request.dataset, asset, manifests[name])
                    for name, asset in request.artifacts.items()}
        for name, source in request.sources.items():
            if is_s3_uri(source):
                channels[name] = source.rstrip("/") + "/"
            else:
                channels[name] = self._upload_source(store, Path(source).expanduser(), f"{scratch_key}sources/{name}/")
        return channels

    @staticmethod
    def _upload_source(store: S3ArtifactStore, folder: Path, key_prefix: str) -> str:
        """A local upload folder is copied to the job's scratch prefix (read-only use of the source): the files of
        the upload as ingest reads them (stages/upload_files.py), never what a link out of it points to."""
        if not folder.is_dir():
            raise Failure(f"source {folder} is not a folder; a SageMaker job reads its inputs from S3")
        listing = upload_files(folder)
        if not listing.files:
            raise Failure(f"source {folder} holds no files")
        if listing.refused:
            get_dagster_logger().warning(
                f"source {folder}: left behind (not copied to S3) " + "; ".join(f"{n}: {why}" for n, why in
                                                                                listing.refused[:20]))
        for item in listing.files:
            with open_regular(item.path) as handle:
                store.client.upload_fileobj(handle, store.bucket, key_prefix + item.name)
        return f"s3://{store.bucket}/{key_prefix}"

    # -- the job
    def _run(self, context: AssetExecutionContext, store: S3ArtifactStore, request: StageRequest, staging: Staging,
             plan: JobPlan, scratch_key: str) -> list[PipesResult]:
        api = JobApi(self._client("sagemaker"), plan.is_training)
        injector, reader = pipes_io(store.bucket, store.client, scratch_key, self.pipes_interval_s)
        inputs = plan.container_inputs()
        if plan.checkpoint_uri:
            inputs["checkpoints"] = CHECKPOINT_DIR
        extras = {"inputs": inputs, "output": plan.container_output, "config": request.config,
                  "dataset": request.dataset, "failure_file": FAILURE_PATH, "job_name": plan.name,
                  # SageMaker copies the version prefix without a look at the manifest: the stage checks it (entry.py)
                  "input_artifacts": plan.input_artifacts}
        with open_pipes_session(context=context, context_injector=injector, message_reader=reader,
                                extras=extras) as session:
            # Idle OpenMP workers spin by default, as under the local launcher: the sog stage's held-out renders
            # took 3.8x longer in its image on a busy 2-core machine (benchmarks/RESULTS.md, issue 15).
            env = {"OMP_WAIT_POLICY": "PASSIVE", **session.get_bootstrap_env_vars(), "SPACEPORT_STAGE": request.stage,
                   "SPACEPORT_PIPES_INTERVAL": f"{self.pipes_interval_s:g}"}
            try:
                job_request = plan.request(env)
            except ValueError as exc:
                raise Failure(f"cannot start a SageMaker job for {request.asset}: {exc}; a shorter artifact bucket "
                              f"or prefix keeps the Pipes pointers within SageMaker's limit") from exc
            forwarder = CloudWatchForwarder(self._client("logs"), api.kind, plan.name, context.log.info,
                                            context.log.warning)
            try:
                arn = api.create(job_request)
            except ClientError as exc:
                raise Failure(f"SageMaker refused {api.kind} job {plan.name} for stage {request.stage}: "
                              f"{exc.response['Error'].get('Code')}: {exc.response['Error'].get('Message')}") from exc
            try:  # from here on, a cancelled run must stop the job
                context.log.info(f"started SageMaker {api.kind} job {plan.name} ({plan.settings.instance_type}) "
                                 f"for {request.asset} of {request.dataset!r}: {arn}")
                described = self._wait(context, api, plan, forwarder)
            except BaseException as exc:  # cancelled, or lost track of it: a job left running bills on
                self._abandon(context, api, plan, forwarder, exc)
                raise
            metadata = self._job_metadata(api, plan, arn, described)
            status = described[api.status_key]
            if status != "Completed":
                raise Failure(self._failure_text(api, plan, request, described), metadata=metadata)
            if plan.is_training:
                self._unpack_model(store, described, staging.local_dir)
        if reader.problems:  # never publish on a partial report: the checks that were lost would pass silently
            raise Failure(f"stage {request.stage} finished in SageMaker job {plan.name} for dataset "
                          f"{request.dataset!r}, but its Pipes messages could not all be read, so its report and "
                          f"checks are incomplete and nothing was published (a retry runs the stage again): "
                          f"{describe(reader.problems)}", metadata=metadata)
        if plan.checkpoint_uri:  # finished: the next run starts afresh, a failed one would have resumed
            with contextlib.suppress(Exception):  # a leftover must not fail a finished stage
                store.delete_prefix(split_s3_uri(plan.checkpoint_uri)[1])
        results = list(PipesClientCompletedInvocation(session, metadata=metadata).get_results())
        if not plan.is_training and self._gate_failed(results):
            self._bring_home(store, staging)
        return results

    @staticmethod
    def _gate_failed(results: list[PipesResult]) -> bool:
        return any(isinstance(r, AssetCheckResult) and not r.passed and r.severity == AssetCheckSeverity.ERROR
                   for r in results)

    @staticmethod
    def _bring_home(store: S3ArtifactStore, staging: Staging) -> None:
        """A blocking gate failed, so the asset keeps the output as `<asset>.rejected/` (from the staging folder)
        instead of publishing it: move the Processing job's output from the staging version prefix into the
        staging folder, leaving no unreferenced version behind on S3."""
        bucket, prefix = split_s3_uri(str(staging.remote_prefix))
        for obj in list_keys(store.client, bucket, prefix):
            dest = staging.local_dir / obj["Key"][len(prefix):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            store.client.download_file(bucket, obj["Key"], str(dest))
        store.discard(staging)
        staging.extra["remote_output"] = False

    def _wait(self, context: AssetExecutionContext, api: JobApi, plan: JobPlan,
              forwarder: CloudWatchForwarder) -> dict[str, Any]:
        delay, last = self.poll_interval_s, ""
        while True:
            described = api.describe(plan.name)
            forwarder.poll()
            status = described[api.status_key]
            label = status + (f" ({described['SecondaryStatus']})" if described.get("SecondaryStatus") else "")
            if label != last:
                context.log.info(f"SageMaker job {plan.name}: {label}")
                last = label
            if status in TERMINAL:
                forwarder.poll()
                return described
            time.sleep(delay)
            delay = min(delay * 1.5, self.max_poll_interval_s)

    def _abandon(self, context: AssetExecutionContext, api: JobApi, plan: JobPlan, forwarder: CloudWatchForwarder,
                 exc: BaseException) -> None:
        interrupted = isinstance(exc, DagsterExecutionInterruptedError | KeyboardInterrupt)
        why = "run interrupted" if interrupted else f"lost track of the job ({type(exc).__name__}: {exc})"
        context.log.warning(f"{why}: stopping SageMaker {api.kind} job {plan.name}")
        try:
            final = self._stop(api, plan, forwarder)
        except Exception as stop_exc:
            context.log.error(f"could not stop SageMaker job {plan.name} ({type(stop_exc).__name__}: {stop_exc}); "
                              f"stop it by hand: aws sagemaker stop-{api.kind}-job --{api.kind}-job-name {plan.name}")
            return
        context.log.warning(f"SageMaker job {plan.name} is {final}; its output is discarded")

    def _stop(self, api: JobApi, plan: JobPlan, forwarder: CloudWatchForwarder) -> str:
        try:
            api.stop(plan.name)
        except ClientError as exc:  # already finished: nothing to stop
            if exc.response["Error"].get("Code") != "ValidationException":
                raise
        deadline = time.monotonic() + self.stop_timeout_s
        status = "Stopping"
        while time.monotonic() < deadline:
            status = api.describe(plan.name)[api.status_key]
            forwarder.poll()
            if status in TERMINAL:
                break
            time.sleep(min(self.poll_interval_s, 5.0))
        return status

    def _failure_text(self, api: JobApi, plan: JobPlan, request: StageRequest, described: dict[str, Any]) -> str:
        status = described[api.status_key]
        parts = [described.get("FailureReason", ""), described.get("ExitMessage", "")]
        reasons = [p.strip() for p in parts if p and p.strip()]
        if status == "Stopped" and not reasons:
            reasons.append(self._stop_reason(api, plan, described))
        reason = " | ".join(dict.fromkeys(reasons)) or "no reason reported"
        return (f"stage {request.stage} failed for dataset {request.dataset!r}: SageMaker {api.kind} job "
                f"{plan.name} {status}: {reason}")

    @staticmethod
    def _stop_reason(api: JobApi, plan: JobPlan, described: dict[str, Any]) -> str:
        """We did not stop it: SageMaker did, normally at MaxRuntimeInSeconds (it then gives no FailureReason)."""
        limit = plan.settings.max_runtime_s
        prefix = "Training" if api.training else "Processing"
        start, end = described.get(f"{prefix}StartTime"), described.get(f"{prefix}EndTime")
        elapsed = (end - start).total_seconds() if start and end else None
        secondary = described.get("SecondaryStatus", "")
        if secondary == "MaxRuntimeExceeded" or (elapsed is not None and elapsed >= limit - 1):
            ran = f" after {elapsed:.0f} s" if elapsed is not None else ""
            return f"time-out: stopped by SageMaker{ran}, MaxRuntimeInSeconds={limit} reached"
        return f"stopped outside this run ({secondary or 'no reason given'}; MaxRuntimeInSeconds={limit})"

    def _job_metadata(self, api: JobApi, plan: JobPlan, arn: str, described: dict[str, Any]) -> dict[str, Any]:
        s = plan.settings
        if api.training:
            billable = float(described.get("BillableTimeInSeconds") or 0)
        else:
            start, end = described.get("ProcessingStartTime"), described.get("ProcessingEndTime")
            billable = (end - start).total_seconds() if start and end else 0.0
        cost = estimate_cost(s.instance_type, billable, s.instance_count, self.prices)
        metadata: dict[str, Any] = {
            "sagemaker_job_name": plan.name,
            "sagemaker_job_arn": arn,
            "sagemaker_job_kind": api.kind,
            "sagemaker_instance_type": s.instance_type,
            "sagemaker_instance_count": s.instance_count,
            "sagemaker_billable_seconds": MetadataValue.float(billable),
            "sagemaker_status": described[api.status_key],
        }
        if cost is not None:
            metadata["sagemaker_estimated_cost_usd"] = MetadataValue.float(cost)
        if api.training:
            metadata["sagemaker_spot"] = s.spot
        return metadata

    @staticmethod
    def _unpack_model(store: S3ArtifactStore, described: dict[str, Any], target: Path) -> None:
        uri = described.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
        if not uri:
            raise Failure(f"training job {described.get('TrainingJobName')} completed without model artifacts")
        bucket, key = split_s3_uri(uri)
        with tempfile.TemporaryDirectory(prefix="spaceport-model-") as tmp:
            archive = Path(tmp) / "model.tar.gz"
            store.client.download_file(bucket, key, str(archive))
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
