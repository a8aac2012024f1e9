#!/usr/bin/env bash
# The large-survey figures of benchmarks/RESULTS.md on a lent GPU machine (no network), in one go:
#  1. photos to .sog on a 300-photo 12 MP synthetic survey with the `standard` preset;
#  2. the resolution policy: a 40-photo survey rendered at 2400x1800 (real detail at that size), exported at full
#     size, trained at 1600 px and at full size on 1400 px patches (same steps, about the same pixels a step),
#     both scored at full size on the same test views.
# Needs the wheels of .whl/ (pycolmap, dagster-pipes, plyfile, gsplat and its needs) and writes JSON to $RESULTS.
set -uo pipefail
RESULTS=${RESULTS:-gpu-results}
WORK=${WORK:-.devdata/survey-gpu}
mkdir -p "$RESULTS" "$WORK"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 \
  TORCH_EXTENSIONS_DIR=$PWD/.devdata/torch-ext GLOG_minloglevel=1 OMP_WAIT_POLICY=PASSIVE
nvidia-smi -L; nproc; free -g | head -2
t0=$(date +%s)
python3 -c "import gsplat; from gsplat.cuda._backend import _C; print('gsplat', gsplat.__version__, 'ready')" || exit 1
echo "gsplat build: $(( $(date +%s) - t0 )) s"

step=${STEP:-all}
if [ "$step" = all ] || [ "$step" = survey ]; then
  python3 benchmarks/survey_pipeline.py --photos 300 --size 4000x3000 --render-scale 4 --preset standard \
    --work "$WORK" --json "$RESULTS/gpu_survey_300_12mp_standard.json"
fi
if [ "$step" = all ] || [ "$step" = resolution ]; then
  common=(--photos 40 --size 2400x1800 --render-scale 1 --preset standard --work "$WORK" --until splat_model
          --set colmap_export.max_image_size=-1)
  python3 benchmarks/survey_pipeline.py "${common[@]}" --json "$RESULTS/gpu_resolution_1600.json"
  python3 benchmarks/survey_pipeline.py "${common[@]}" --reuse image_set sparse_reconstruction colmap_export \
    --set splat_model.max_long_side=0 --set splat_model.patch_size=1400 --json "$RESULTS/gpu_resolution_full_patches.json"
fi
