"""S3 URIs and clients shared by stages and resources (boto3 honours AWS_ENDPOINT_URL, e.g. a moto server)."""

from __future__ import annotations

import os
import re
from typing import Any

# S3 bucket naming rules (plus the upper case and underscores of legacy us-east-1 buckets).
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]")
_IP_ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+")


def is_s3_uri(value: str) -> bool:
    return value.startswith("s3://")


def looks_like_s3(value: str) -> bool:
    """Meant as an S3 location, well formed or not (`s3:/x`, `S3://x`): never to be read as a local path."""
    return value[:3].lower() == "s3:"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/a/b/` -> ("bucket", "a/b/"); a malformed URI or bucket name raises ValueError saying why."""
    if not is_s3_uri(uri):
        raise ValueError(f"{uri!r} is not an S3 URI: write it as s3://bucket/prefix/")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"S3 URI {uri!r} has no bucket: write it as s3://bucket/prefix/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket or _IP_ADDRESS.fullmatch(bucket):
        raise ValueError(f"S3 URI {uri!r}: {bucket!r} is not a valid bucket name (3-63 letters, digits, dots and "
                         "hyphens, starting and ending with a letter or digit, no '..')")
    if "//" in key or any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"S3 URI {uri!r} has an empty, '.' or '..' part in its key")
    return bucket, key


def s3_client(endpoint_url: str | None = None) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None)


def list_keys(client: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    """Every object under `prefix` (all pages), as boto3's Contents entries."""
    out: list[dict[str, Any]] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(page.get("Contents", []))
    return out
