#!/usr/bin/env bash
# The GPU check of issue 13 (docs/speed.md, "The step on a GPU"), as one prepared command for a GPU machine
# that has PyTorch but cannot reach a package registry:
#   bash scripts/gpu_wheels.sh                 # here, once: the few wheels the bench needs beyond torch
#   bash scripts/gpu_check.sh [bench options]  # there, with .gpu-wheels carried along; OUT=<dir> for results
# It measures the paper profile's pretraining step (ResNet-50, 224 px, bf16 autocast, channels_last) and
# the embedded default's on synthetic in-memory batches (python -m pipeline.bench gpu). Results:
# $OUT/gpu.log (everything printed) and $OUT/gpu.json (the bench's JSON line).
# GPU_CHECK_PYTHON picks the interpreter (default: .venv/bin/python if present, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-data/reports/gpu}
mkdir -p "$out"
py=${GPU_CHECK_PYTHON:-}
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
if [ -d .gpu-wheels ] && ! "$py" -c "import pydantic, pycocotools" 2>/dev/null; then
  # Installed into a folder of the checkout, not into the machine's interpreter.
  "$py" -m pip install --quiet --no-index --find-links .gpu-wheels --target .gpu-site -r scripts/gpu-requirements.txt
  export PYTHONPATH=$PWD/.gpu-site${PYTHONPATH:+:$PYTHONPATH}
fi
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee "$out/gpu.log"
PYTHONUNBUFFERED=1 "$py" -m pipeline.bench gpu "$@" 2>&1 | tee -a "$out/gpu.log"
tail -n 1 "$out/gpu.log" > "$out/gpu.json"
"$py" -c "import json, sys; json.load(open(sys.argv[1]))" "$out/gpu.json"  # fails unless the bench finished
echo "written: $out/gpu.json"
