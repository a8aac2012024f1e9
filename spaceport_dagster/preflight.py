"""Checks `spaceport run`/`rerun` make before anything is registered: every argument valid, every S3 location
reachable. Each failure is one line saying what is wrong and what to do (UsageError: exit 2; Unreachable: 1)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spaceport_dagster.stages.s3uri import is_s3_uri, looks_like_s3, split_s3_uri


class UsageError(ValueError):
    """A bad argument: the command line must change."""


class Unreachable(RuntimeError):
    """A valid location that cannot be used right now (endpoint down, access denied)."""


def _quick_client(endpoint_url: str | None) -> Any:
    import os

    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
                        config=config)


def check_s3_location(uri: str, what: str, *, must_hold_objects: bool = False,
                      endpoint_url: str | None = None) -> None:
    """The bucket exists and answers; with `must_hold_objects`, something is stored under the prefix."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    try:
        split_s3_uri(uri)  # the user's own spelling in the message
        bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None
    client = _quick_client(endpoint_url)
    endpoint = client.meta.endpoint_url
    try:
        client.head_bucket(Bucket=bucket)
        if must_hold_objects and not client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"):
            raise UsageError(f"{what} {uri} holds no files; upload the photos there first (spaceport submit)")
    except EndpointConnectionError:
        raise Unreachable(f"cannot reach the S3 endpoint {endpoint} for {what} {uri}; check AWS_ENDPOINT_URL and "
                          "the network, then run the command again") from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise UsageError(f"{what} {uri}: bucket {bucket!r} does not exist at {endpoint}") from None
        if code in ("403", "AccessDenied"):
            raise Unreachable(f"{what} {uri}: access to bucket {bucket!r} denied; check the AWS credentials") from None
        raise Unreachable(f"{what} {uri}: S3 answered {code or exc}") from None
    except BotoCoreError as exc:
        raise Unreachable(f"{what} {uri}: S3 request failed ({exc}); check AWS_ENDPOINT_URL and credentials") from None


def check_source(source: str) -> str:
    """The uploads to read: an existing folder (returned absolute) or a reachable, non-empty S3 prefix."""
    if looks_like_s3(source):
        check_s3_location(source, "source", must_hold_objects=True)
        return source
    path = Path(source).expanduser()
    if not path.is_dir():
        raise UsageError(f"{source} is not a folder of photos (nor an s3://bucket/prefix/ of uploads)")
    return str(path.resolve())


def check_artifact_root(root: str, endpoint_url: str | None = None) -> None:
    """SPACEPORT_ARTIFACT_ROOT: a folder (created when missing) or an S3 prefix whose bucket exists."""
    if looks_like_s3(root):
        check_s3_location(root, "artifact root (SPACEPORT_ARTIFACT_ROOT)", endpoint_url=endpoint_url)
    elif Path(root).exists() and not Path(root).is_dir():
        raise UsageError(f"artifact root (SPACEPORT_ARTIFACT_ROOT) {root} is a file, not a folder")


def check_stored_uploads(source: str) -> None:
    """The uploads `rerun --from image_set` reads (the dataset's inbox, or the S3 uploads prefix) exist."""
    if is_s3_uri(source) or looks_like_s3(source):
        check_s3_location(source, "uploads", must_hold_objects=True)
    elif not Path(source).is_dir():
        raise UsageError(f"no uploads at {source}; run `spaceport run FOLDER --dataset NAME` (or `spaceport submit`) "
                         "first")


def local_training_without_gpu(preset: str) -> bool:
    """Whether pipeline preset `preset` would train with a GPU preset (`standard`, `quality`) on this machine
    (SPACEPORT_COMPUTE local) and this machine has no CUDA GPU."""
    from spaceport_dagster.presets import GPU_TRAIN_PRESETS, stage_presets

    if stage_presets(preset).get("splat_model") not in GPU_TRAIN_PRESETS:
        return False
    if os.environ.get("SPACEPORT_COMPUTE", "local") != "local":
        return False
    import torch

    return not torch.cuda.is_available()
