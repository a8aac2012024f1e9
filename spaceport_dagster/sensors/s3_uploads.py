"""The S3 upload sensor: watches `s3://<bucket>/<prefix>/uploads/<dataset>/` (SPACEPORT_UPLOADS)."""

from __future__ import annotations

from typing import Any

from spaceport_dagster.stages.s3uri import s3_client, split_s3_uri

from .markers import MAX_OPTIONS_BYTES, OPTIONS_FILE, MarkerObject, is_marker_key
from .upload_sensor import Listing, build_upload_sensor


class S3Uploads:
    """Marker objects under an S3 prefix, listed in key order from `after`, a bounded number of keys per call."""

    scheme = "s3"

    def __init__(self, uri: str, client: Any | None = None, page_size: int = 1000):
        self.bucket, prefix = split_s3_uri(uri.rstrip("/") + "/")
        self.prefix = prefix  # always ends with '/', so `uploads-old/` never matches `uploads/`
        self.root = f"s3://{self.bucket}/{prefix}".rstrip("/")
        self.client = client or s3_client()
        self.page_size = page_size

    def list_markers(self, after: str, budget: int) -> Listing:
        markers: list[MarkerObject] = []
        refused: list[tuple[MarkerObject, str]] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        if after:
            kwargs["StartAfter"] = self.prefix + after
        scanned, last = 0, after
        while True:
            page = self.client.list_objects_v2(MaxKeys=min(self.page_size, budget - scanned), **kwargs)
            for obj in page.get("Contents", []):
                key = obj["Key"]
                scanned += 1
                version = f"{obj['ETag'].strip(chr(34))}-{obj['LastModified'].isoformat()}"
                if not key.startswith(self.prefix):
                    refused.append((MarkerObject(key, version), "key is outside the uploads prefix"))
                    continue
                last = key[len(self.prefix):]
                if is_marker_key(last):
                    markers.append(MarkerObject(last, version))
            if not page.get("IsTruncated"):
                return Listing(markers, "", refused)
            if scanned >= budget:
                return Listing(markers, last, refused)
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
            kwargs.pop("StartAfter", None)

    def read_options(self, dataset: str) -> bytes | None:
        try:
            # one byte more than the limit, so that parse_options can refuse a larger marker
            obj = self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}{dataset}/{OPTIONS_FILE}",
                                         Range=f"bytes=0-{MAX_OPTIONS_BYTES}")
        except self.client.exceptions.NoSuchKey:
            return None
        return obj["Body"].read()

    def source(self, dataset: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{dataset}/"


s3_uploads_sensor = build_upload_sensor(
    "s3_uploads",
    "Starts a run of spaceport_main for each new `_READY` / `dataset.json` marker under "
    "SPACEPORT_UPLOADS (s3://<bucket>/<prefix>/uploads/<dataset>/).",
    watches_s3=True, open_location=S3Uploads, default_preset="standard", other_sensor="inbox",
)
