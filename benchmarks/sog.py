"""Benchmark the SOG writer: compression time, bundle size, ratio and round-trip error.

By default a synthetic 1M-splat, SH degree 3 splat (`synthetic.realistic_cloud`); `--ply PATH` takes a
trained PLY instead, and with `--photos DIR` (a colmap_export's images/) next to a splat folder holding
cameras.json, the held-out PSNR drop is rendered too. Needs only torch, numpy and pillow.

    python benchmarks/sog.py                                # 1M synthetic splats on this machine's CPU
    python benchmarks/sog.py --device cuda --json sog-h100.json
    python benchmarks/sog.py --ply splat_model/point_cloud.ply --photos colmap_export/images --device cuda
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from spaceport_dagster.stages.ply import read_ply, write_ply  # noqa: E402
from spaceport_dagster.stages.render import pick_device  # noqa: E402
from spaceport_dagster.stages.sog.encode import EncodeOptions  # noqa: E402
from spaceport_dagster.stages.sog.format import SH_COEFFS  # noqa: E402
from spaceport_dagster.stages.sog.kmeans import uses_fused_kernel  # noqa: E402
from spaceport_dagster.stages.sog.reader import read_sog  # noqa: E402
from spaceport_dagster.stages.sog.roundtrip import reorder, roundtrip_errors  # noqa: E402
from spaceport_dagster.stages.sog.synthetic import realistic_cloud  # noqa: E402
from spaceport_dagster.stages.sog.webp import WebpSettings  # noqa: E402
from spaceport_dagster.stages.sog.writer import WriteResult, write_sog  # noqa: E402


def machine(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads"


def took_fused_kernel(written: WriteResult, device: torch.device) -> bool:
    """Whether the SH k-means searched with the fused Triton kernel."""
    shn = written.encoded.meta.get("shN")
    return (shn is not None and written.encoded.kmeans_method == "flat"
            and uses_fused_kernel(device, written.encoded.meta["count"], shn["count"]))


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sog-bench-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.ply:
            ply_path = Path(args.ply)
            source_name = str(ply_path)
        else:
            ply_path = work / "synthetic.ply"
            write_ply(ply_path, realistic_cloud(args.splats, args.sh_degree, args.seed))
            source_name = f"synthetic realistic_cloud({args.splats}, sh={args.sh_degree}, seed={args.seed})"
        t0 = time.perf_counter()
        cloud = read_ply(ply_path)
        read_s = time.perf_counter() - t0
        options = EncodeOptions(sh_bands=args.sh_bands, kmeans_iterations=args.iterations,
                                kmeans_method=args.kmeans_method, seed=args.seed, device=args.device,
                                splats_per_palette_entry=args.splats_per_palette_entry)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        load_before = os.getloadavg()[0]
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        written = write_sog(cloud, work / "bench.sog", None, options,
                            WebpSettings(method=args.webp_method, quality=args.webp_quality, verify=True))
        compress_s = time.perf_counter() - t0
        compress_cpu_s = time.process_time() - cpu0
        load_after = os.getloadavg()[0]
        t0 = time.perf_counter()
        decoded = read_sog(work / "bench.sog")
        decode_s = time.perf_counter() - t0
        source = reorder(cloud, written.order, SH_COEFFS[written.encoded.sh_bands])
        errors = roundtrip_errors(source, decoded, written.encoded.meta)
        ply_bytes = ply_path.stat().st_size
        result: dict[str, Any] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(args.device), "device": args.device, "source": source_name,
            "splats": len(cloud), "sh_bands": written.encoded.sh_bands,
            "palette": written.encoded.meta.get("shN", {}).get("count", 0),
            "kmeans_method": written.encoded.kmeans_method, "kmeans_iterations": args.iterations,
            "fused_nearest": took_fused_kernel(written, pick_device(args.device)),
            "ply_bytes": ply_bytes, "sog_bytes": written.sog_bytes, "ratio": ply_bytes / written.sog_bytes,
            "compress_s": compress_s, "compress_cpu_s": compress_cpu_s,
            "load_average_1min": [round(load_before, 2), round(load_after, 2)], "read_ply_s": read_s, "decode_s": decode_s,
            "timings": {k: round(v, 3) for k, v in written.timings.items()},
            "file_bytes": {k: len(v) for k, v in written.files.items()},
            "errors": {e.name: e.as_dict() for e in errors},
            "within_bounds": all(e.passed for e in errors),
        }
        if args.photos:
            from spaceport_dagster.stages.sog.config import SogConfig
            from spaceport_dagster.stages.sog.heldout import heldout_psnr

            cfg = SogConfig(render_device=args.device)
            psnr = heldout_psnr(cloud, decoded, ply_path.parent, Path(args.photos), cfg, logging.getLogger("sog"))
            result["heldout"] = psnr.as_metadata() | {"reason": psnr.reason, "views": psnr.views,
                                                      "measured": psnr.measured}
        return result


def table(r: dict[str, Any]) -> str:
    lines = [f"SOG benchmark: {r['source']}", f"machine: {r['machine']}  ({r['date']})", "",
             f"{'splats':>10} {'bands':>5} {'palette':>7} {'k-means':>9} {'compress s':>10} {'k-means s':>9} "
             f"{'PLY MB':>8} {'SOG MB':>7} {'ratio':>6}",
             f"{r['splats']:>10} {r['sh_bands']:>5} {r['palette']:>7} {r['kmeans_method']:>9} {r['compress_s']:>10.2f} "
             f"{r['timings'].get('kmeans', 0):>9.2f} {r['ply_bytes'] / 1e6:>8.1f} {r['sog_bytes'] / 1e6:>7.2f} "
             f"{r['ratio']:>6.1f}", "", f"{'attribute':<22} {'max error':>11} {'bound':>11} {'RMS':>11}"]
    for name, e in r["errors"].items():
        bound = "-" if e["bound"] is None else f"{e['bound']:.4g}"
        lines.append(f"{name:<22} {e['max']:>11.4g} {bound:>11} {e['rms']:>11.4g}")
    lines.append(f"compress CPU time {r['compress_cpu_s']:.1f} s (all threads); 1-min load average before/after "
                 f"{r['load_average_1min']}")
    lines.append(f"stages (s): {r['timings']}")
    if "heldout" in r:
        h = r["heldout"]
        lines.append(f"test-view PSNR (plain): uncompressed {h['psnr_uncompressed_db']}, decoded {h['psnr_decoded_db']}, "
                     f"drop {h['psnr_drop_db']} dB over {len(h['views'])} views"
                     + ("" if h["measured"] else f" (not measured: {h['reason']})"))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--splats", type=int, default=1_000_000)
    p.add_argument("--sh-degree", type=int, default=3, help="SH degree of the synthetic splat")
    p.add_argument("--sh-bands", type=int, default=3, help="highest SH band written")
    p.add_argument("--ply", help="a trained PLY instead of the synthetic splat")
    p.add_argument("--photos", help="held-out photos folder (colmap_export/images); needs cameras.json by the PLY")
    p.add_argument("--device", default="cpu", help="k-means device: cpu, cuda, auto")
    p.add_argument("--kmeans-method", default="auto", choices=["auto", "flat", "two_level"])
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--webp-method", type=int, default=2)
    p.add_argument("--webp-quality", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--splats-per-palette-entry", type=int, default=16,
                   help="SH palette ~ N / this (0 = the reference writer's 64k palette from 64k splats)")
    p.add_argument("--keep", help="write the PLY and bundle here instead of a temporary folder")
    p.add_argument("--json", default="sog-benchmark.json", help="where to write the results")
    args = p.parse_args()
    result = run(args)
    print(table(result))
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
