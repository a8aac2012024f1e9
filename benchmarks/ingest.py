"""Time the ingest stage and the artifact publish (with its per-file SHA-256) on real photo folders.

    .venv/bin/python benchmarks/ingest.py ../shared/datasets/lund/images [more folders] [--repeat 3] [--json out.json]

Prints one row per folder: photos, MB, ingest seconds (decode, dedup, fingerprint, storing), how many photos
were stored as they came / cleaned / re-encoded, publish seconds (hashing and the atomic swap) and fetch
seconds (verifying sizes and hashes). Best of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spaceport_dagster.resources.artifact_store import LocalArtifactStore
from spaceport_dagster.stages.ingest.stage import IngestConfig, ingest


def measure(folder: Path, repeat: int) -> dict[str, Any]:
    best: dict[str, float] = {}
    facts: dict[str, Any] = {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            store = LocalArtifactStore(Path(tmp) / "artifacts")
            with store.staging("bench", "image_set") as staging:
                start = time.perf_counter()
                report = ingest(str(folder), staging.local_dir, IngestConfig(min_images=1), logging.getLogger("b"))
                ingest_s = time.perf_counter() - start
                manifest = json.loads((staging.local_dir / "manifest.json").read_text())
                start = time.perf_counter()
                store.publish(staging)
                publish_s = time.perf_counter() - start
            start = time.perf_counter()
            store.fetch("bench", "image_set")
            fetch_s = time.perf_counter() - start
        for key, value in (("ingest_s", ingest_s), ("publish_s", publish_s), ("fetch_s", fetch_s)):
            best[key] = min(best.get(key, value), value)
        how = [r["stored_as"].split(" ")[0] for r in manifest["images"]]
        facts = {"photos": report.metadata["usable_images"], "refused": report.metadata["refused_files"],
                 "mb": round(report.metadata["total_bytes"] / 1e6, 1), "original": how.count("original"),
                 "cleaned": how.count("cleaned"), "re-encoded": how.count("re-encoded")}
    return {"folder": str(folder), **facts, **{k: round(v, 3) for k, v in best.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = [measure(folder, args.repeat) for folder in args.folders]
    print(f"{'folder':<40} {'photos':>6} {'MB':>6} {'orig/clean/re-enc':>18} {'ingest s':>9} {'publish s':>10} "
          f"{'fetch s':>8}")
    for r in rows:
        split = f"{r['original']}/{r['cleaned']}/{r['re-encoded']}"
        print(f"{r['folder'][-40:]:<40} {r['photos']:>6} {r['mb']:>6} {split:>18} {r['ingest_s']:>9.2f} "
              f"{r['publish_s']:>10.2f} {r['fetch_s']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"),
                                         "machine": f"{platform.node()} {platform.processor() or platform.machine()}, "
                                                    f"{os.cpu_count()} cores", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
