"""Checking a published artifact against its manifest: every file there, with its size and SHA-256.

Dagster-free, so both ends use it: the artifact stores (resources/artifact_store.py) when they hand a local
stage its inputs, and the stage entry (entry.py) inside a SageMaker job, whose inputs SageMaker downloaded
from the version prefix without looking at the manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST = "_SUCCESS"


class ArtifactDamaged(RuntimeError):
    """A published artifact whose files do not match its manifest (cut, overwritten, missing)."""

    def __init__(self, dataset: str, asset: str, what: str):
        super().__init__(f"artifact {asset} of dataset {dataset!r} is damaged ({what}); rerun from {asset}: "
                         f"spaceport rerun {dataset} --from {asset}")
        self.dataset, self.asset = dataset, asset


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_manifest(text: str | bytes, dataset: str, asset: str) -> dict[str, Any]:
    try:
        manifest = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactDamaged(dataset, asset, f"its {MANIFEST} manifest is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list) or "version" not in manifest:
        raise ArtifactDamaged(dataset, asset, f"its {MANIFEST} manifest lacks a version or file list")
    return manifest


def verify_files(folder: Path, manifest: dict[str, Any], dataset: str, asset: str, *, hashes: bool = True) -> None:
    """Every file the manifest lists is in `folder` with its size (and SHA-256, when listed and `hashes`)."""
    for entry in manifest["files"]:
        path = folder / entry["path"]
        if not path.is_file():
            raise ArtifactDamaged(dataset, asset, f"{entry['path']} is missing")
        size = path.stat().st_size
        if size != entry.get("bytes", size):
            raise ArtifactDamaged(dataset, asset, f"{entry['path']} has {size:,} bytes, the manifest says "
                                                  f"{entry['bytes']:,}")
        if hashes and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
            raise ArtifactDamaged(dataset, asset, f"{entry['path']} does not match its SHA-256 checksum")


def verify_inputs(artifacts: dict[str, dict[str, Any]], inputs: dict[str, str]) -> None:
    """Check each input folder against the manifest of the artifact it was copied from (`input_artifacts` in
    the Pipes extras: name -> {"dataset", "asset", "manifest"}); ArtifactDamaged names the first bad file."""
    for name, artifact in artifacts.items():
        dataset, asset = artifact["dataset"], artifact["asset"]
        manifest = parse_manifest(json.dumps(artifact.get("manifest")), dataset, asset)
        verify_files(Path(inputs[name]), manifest, dataset, asset)
