#!/usr/bin/env bash
# The GPU figures in RESULTS.md, in one go on a CUDA machine with the exports in $EXPORTS:
# trainer `standard` preset on brighton_beach and lund, SOG on the trained brighton splat and on 1M synthetic
# splats, and the GPU-only tests. Results (JSON, logs) go to $RESULTS (default ./gpu-results).
set -uo pipefail
EXPORTS=${EXPORTS:-.devdata/exports}
RESULTS=${RESULTS:-gpu-results}
WORK=${WORK:-/tmp/spaceport-gpu-bench}
mkdir -p "$RESULTS" "$WORK"
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
nvidia-smi -L
t0=$(date +%s)
python3 -c "import gsplat, torch; from gsplat.cuda._backend import _C; print('gsplat', gsplat.__version__, 'ready')"
echo "gsplat build: $(( $(date +%s) - t0 )) s"
python3 benchmarks/train.py --exports "$EXPORTS" --datasets brighton_beach --steps 30000 \
  --workdir "$WORK/brighton" --json "$RESULTS/train_brighton_standard.json"
ply=$(ls "$WORK"/brighton/brighton_beach-*/point_cloud.ply | head -1)
cp "$(dirname "$ply")/metrics.json" "$RESULTS/brighton_metrics.json"
python3 benchmarks/sog.py --device cuda --ply "$ply" --photos "$EXPORTS/brighton_beach/images" \
  --json "$RESULTS/sog_brighton_cuda.json"
RESULTS="$RESULTS" bash benchmarks/run_sog_gpu_benchmarks.sh
python3 -m pytest -q -m gpu tests/test_sog.py tests/test_train_parity.py 2>&1 | tail -5
python3 benchmarks/train.py --exports "$EXPORTS" --datasets lund --steps 30000 \
  --workdir "$WORK/lund" --json "$RESULTS/train_lund_standard.json"
