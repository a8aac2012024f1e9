#!/usr/bin/env bash
# The SOG GPU figures in RESULTS.md: the nearest-centroid search alone (torch vs the fused Triton kernel), then
# `write_sog` on 1M synthetic splats in fresh processes, first with an empty Triton cache (the kernel compiles
# inside the timed run, as in a fresh container) and then twice with the cache warm, and 150k splats (below the
# size that takes the fused kernel). Results go to $RESULTS.
set -uo pipefail
RESULTS=${RESULTS:-gpu-results}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$(mktemp -d)/triton}
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
python3 benchmarks/kmeans_nearest.py --profile --json "$RESULTS/kmeans_nearest.json"
rm -rf "$TRITON_CACHE_DIR"
python3 benchmarks/sog.py --device cuda --json "$RESULTS/sog_1m_cuda_cold.json"
python3 benchmarks/sog.py --device cuda --json "$RESULTS/sog_1m_cuda_warm.json"
python3 benchmarks/sog.py --device cuda --json "$RESULTS/sog_1m_cuda_warm2.json" | tail -3
python3 benchmarks/sog.py --device cuda --splats 150000 --json "$RESULTS/sog_150k_cuda.json" | tail -3
