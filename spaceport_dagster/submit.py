"""`spaceport submit`: put a survey where the upload sensors look, then write the marker last.

What is uploaded is exactly what ingest would read (stages/upload_files.py): links out of the folder, to
folders, broken or looping links and FIFOs stay behind and are named (`SubmitReport.left_behind`); nothing a
link points to outside the folder is ever copied. Addresses (`--email`) are checked by emails.py.

Local inbox: each file is copied to a hidden temporary name, its SHA-256 checked, then renamed into place.
S3: small files in one PUT, big ones in multipart uploads; every request carries Content-MD5 and a SHA-256
checksum (S3 verifies both) and the returned ETags are checked here too. Re-running the command resumes:
files already uploaded with the same content (same size and ETag / SHA-256) and the parts of an interrupted
multipart upload that match are skipped. The marker (`dataset.json`) is written only when every file is in
place, so the sensor never starts a run on half an upload; each submit writes a new marker version, so it
starts exactly one new run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from spaceport_dagster.emails import InvalidEmail, validate_addresses
from spaceport_dagster.sensors.markers import OPTIONS_FILE
from spaceport_dagster.stages.dataset_id import validate_dataset_id
from spaceport_dagster.stages.s3uri import is_s3_uri, s3_client, split_s3_uri
from spaceport_dagster.stages.upload_files import UploadFile, UploadFiles, open_regular, upload_files

MIB = 1024 * 1024
PART_SIZE = 8 * MIB  # S3 needs at least 5 MiB for every part but the last
MULTIPART_THRESHOLD = 16 * MIB
JOBS = 4  # files uploaded at once to S3
TEMP_PREFIX = "._spaceport-"  # ingest ignores '._*' names


class ChecksumMismatch(RuntimeError):
    pass


@dataclass
class SubmitReport:
    dataset: str
    target: str
    files: int = 0
    uploaded: int = 0
    skipped: int = 0
    bytes_total: int = 0
    bytes_sent: int = 0
    parts_sent: int = 0
    parts_skipped: int = 0
    marker: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    left_behind: list[tuple[str, str]] = field(default_factory=list)  # (name, why): not files of the upload


Progress = Callable[[str, SubmitReport], None]


def survey_files(folder: Path) -> UploadFiles:
    """The files to upload: exactly the files of the upload as ingest reads them (stages/upload_files.py); links
    out of the folder, to folders, broken or looping links and non-regular files stay behind, named."""
    return upload_files(folder)


def _chunks(handle: BinaryIO, size: int) -> Iterator[bytes]:
    while chunk := handle.read(size):
        yield chunk


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for chunk in _chunks(handle, 4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def expected_etag(path: Path, part_size: int = PART_SIZE, threshold: int = MULTIPART_THRESHOLD) -> str:
    """The ETag S3 gives this file when uploaded our way: MD5, or MD5 of the part MD5s plus '-<parts>'."""
    with open_regular(path) as handle:
        if path.stat().st_size <= threshold:
            return hashlib.md5(handle.read()).hexdigest()
        digests = [hashlib.md5(chunk).digest() for chunk in _chunks(handle, part_size)]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def marker_document(dataset: str, report: SubmitReport, email: list[str], preset: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"dataset": dataset, "files": report.files, "bytes": report.bytes_total,
                           "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "client": "spaceport submit"}
    if email:
        doc["email"] = email
    if preset:
        doc["preset"] = preset
    return doc


# ---------------------------------------------------------------------------------------------- local inbox
def _submit_local(files: list[UploadFile], dest: Path, report: SubmitReport, progress: Progress | None) -> None:
    for item in files:
        rel, path, size = item.name, item.path, item.size
        target = dest / rel
        digest = sha256_file(path)
        if target.is_file() and target.stat().st_size == size and sha256_file(target) == digest:
            report.skipped += 1
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(TEMP_PREFIX + target.name)
            with open_regular(path) as src, temp.open("wb") as out:
                for chunk in _chunks(src, 4 * MIB):
                    out.write(chunk)
            if sha256_file(temp) != digest:
                temp.unlink()
                raise ChecksumMismatch(f"copy of {path} does not match its SHA-256; nothing was replaced")
            os.replace(temp, target)
            report.uploaded += 1
            report.bytes_sent += size
        if progress:
            progress(rel, report)


def _write_local_marker(dest: Path, doc: dict[str, Any]) -> Path:
    path = dest / OPTIONS_FILE
    temp = path.with_name(TEMP_PREFIX + OPTIONS_FILE)
    temp.write_text(json.dumps(doc, indent=2))
    os.replace(temp, path)
    return path


# ------------------------------------------------------------------------------------------------------- S3
@dataclass
class S3Target:
    client: Any
    bucket: str
    prefix: str  # '<uploads prefix>/<dataset>/'
    part_size: int = PART_SIZE
    threshold: int = MULTIPART_THRESHOLD

    def already_there(self, key: str, path: Path) -> bool:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return (head["ContentLength"] == path.stat().st_size
                and head["ETag"].strip('"') == expected_etag(path, self.part_size, self.threshold))

    def put_small(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        md5 = hashlib.md5(data)
        response = self.client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentMD5=_b64(md5.digest()),
            ChecksumSHA256=_b64(hashlib.sha256(data).digest()), Metadata=metadata or {})
        if response["ETag"].strip('"') != md5.hexdigest():
            raise ChecksumMismatch(f"s3://{self.bucket}/{key}: stored ETag {response['ETag']} != MD5 {md5.hexdigest()}")

    def _open_upload(self, key: str, parts: list[tuple[bytes, bytes]], sha: str) -> tuple[str, dict[int, str]]:
        """An interrupted upload of the same content to resume (its matching parts), or a new one."""
        listed = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key).get("Uploads", [])
        chosen: tuple[str, dict[int, str]] | None = None
        for upload in sorted((u for u in listed if u["Key"] == key), key=lambda u: u["Initiated"], reverse=True):
            done: dict[int, str] = {}
            if chosen is None:
                pages = self.client.get_paginator("list_parts").paginate(Bucket=self.bucket, Key=key,
                                                                         UploadId=upload["UploadId"])
                for page in pages:
                    for part in page.get("Parts", []):
                        done[part["PartNumber"]] = part["ETag"].strip('"')
                if all(0 < n <= len(parts) and etag == parts[n - 1][0].hex() for n, etag in done.items()):
                    chosen = (upload["UploadId"], done)
                    continue
            # other content, or a duplicate: abort so its parts stop costing storage
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])
        if chosen:
            return chosen
        created = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256",
                                                      Metadata={"sha256": sha})
        return created["UploadId"], {}

    def put_multipart(self, key: str, path: Path, report: SubmitReport, progress: Progress | None,
                      lock: threading.Lock) -> None:
        whole = hashlib.sha256()  # the file's SHA-256, from the same read as the part digests
        digests = []
        with open_regular(path) as handle:
            for chunk in _chunks(handle, self.part_size):
                whole.update(chunk)
                digests.append((hashlib.md5(chunk).digest(), hashlib.sha256(chunk).digest()))
        upload_id, done = self._open_upload(key, digests, whole.hexdigest())
        completed = []
        with open_regular(path) as handle:
            for number, (md5, sha) in enumerate(digests, start=1):
                chunk = handle.read(self.part_size)
                if done.get(number) == md5.hex():
                    with lock:
                        report.parts_skipped += 1
                else:
                    response = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                       PartNumber=number, Body=chunk, ContentMD5=_b64(md5),
                                                       ChecksumSHA256=_b64(sha))
                    if response["ETag"].strip('"') != md5.hex():
                        raise ChecksumMismatch(f"s3://{self.bucket}/{key} part {number}: ETag {response['ETag']} "
                                               f"!= MD5 {md5.hex()}")
                    with lock:
                        report.parts_sent += 1
                        report.bytes_sent += len(chunk)
                        if progress:
                            progress(f"{path.name} part {number}/{len(digests)}", report)
                completed.append({"PartNumber": number, "ETag": f'"{md5.hex()}"', "ChecksumSHA256": _b64(sha)})
        response = self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                         MultipartUpload={"Parts": completed})
        want = f"{hashlib.md5(b''.join(m for m, _ in digests)).hexdigest()}-{len(digests)}"
        if response["ETag"].strip('"') != want:
            raise ChecksumMismatch(f"s3://{self.bucket}/{key}: ETag {response['ETag']} != expected {want}")


def _submit_s3(files: list[UploadFile], target: S3Target, report: SubmitReport,
               progress: Progress | None, jobs: int) -> None:
    lock = threading.Lock()

    def one(item: UploadFile) -> None:
        rel, path, size = item.name, item.path, item.size
        key = target.prefix + rel
        sent = 0
        if target.already_there(key, path):
            outcome = "skipped"
        elif size <= target.threshold:
            with open_regular(path) as handle:
                data = handle.read()
            target.put_small(key, data, {"sha256": hashlib.sha256(data).hexdigest()})
            outcome, sent = "uploaded", size
        else:
            target.put_multipart(key, path, report, progress, lock)
            outcome = "uploaded"
        with lock:
            setattr(report, outcome, getattr(report, outcome) + 1)
            report.bytes_sent += sent
            if progress:
                progress(rel, report)

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    try:
        for future in as_completed([pool.submit(one, item) for item in files]):
            future.result()  # the first failure stops the submit; files not started are left for the re-run
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------------------------- entry point
def _behind(refused: list[tuple[str, str]], limit: int = 5) -> str:
    shown = "; ".join(f"{name}: {why}" for name, why in refused[:limit])
    return shown + (f"; and {len(refused) - limit} more" if len(refused) > limit else "")


def submit(folder: str | Path, dataset: str, *, email: list[str] | None = None, preset: str | None = None,
           target: str | None = None, part_size: int = PART_SIZE, multipart_threshold: int = MULTIPART_THRESHOLD,
           progress: Progress | None = None, client: Any | None = None, jobs: int = JOBS) -> SubmitReport:
    """Upload `folder` as `dataset` to `target` (default: SPACEPORT_UPLOADS / the inbox), marker last."""
    from spaceport_dagster.presets import PIPELINE_PRESETS
    from spaceport_dagster.resources.uploads import uploads_root

    validate_dataset_id(dataset)
    if preset is not None and preset not in PIPELINE_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PIPELINE_PRESETS)}")
    try:
        emails = validate_addresses(email or [], "--email")
    except InvalidEmail as exc:
        raise ValueError(str(exc)) from None
    source = Path(folder).expanduser()
    if not source.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    listing = survey_files(source)
    files = listing.files
    if not files:
        behind = f" (left behind: {_behind(listing.refused)})" if listing.refused else ""
        raise FileNotFoundError(f"{folder} holds no files to submit{behind}")
    if part_size < 5 * MIB:
        raise ValueError("S3 multipart parts must be at least 5 MiB")
    root = (target or uploads_root()).rstrip("/")
    started = time.monotonic()
    report = SubmitReport(dataset, f"{root}/{dataset}/", files=len(files), bytes_total=listing.bytes,
                          left_behind=list(listing.refused))
    if is_s3_uri(root):
        bucket, prefix = split_s3_uri(root + "/")
        s3 = S3Target(client or s3_client(), bucket, f"{prefix}{dataset}/", part_size, multipart_threshold)
        _submit_s3(files, s3, report, progress, jobs)
        doc = marker_document(dataset, report, emails, preset)
        s3.put_small(s3.prefix + OPTIONS_FILE, json.dumps(doc, indent=2).encode())
        report.marker = f"s3://{bucket}/{s3.prefix}{OPTIONS_FILE}"
    else:
        dest = Path(root).expanduser().resolve() / dataset
        dest.mkdir(parents=True, exist_ok=True)
        _submit_local(files, dest, report, progress)
        report.marker = str(_write_local_marker(dest, marker_document(dataset, report, emails, preset)))
    report.seconds = time.monotonic() - started
    return report
