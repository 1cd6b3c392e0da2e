#!/usr/bin/env bash
# The DP engine's GPU numbers in one run: the DP step against a plain step and Opacus (with
# launch gaps from torch's profiler), and a grid of fits one by one against one stacked
# model. Needs a CUDA build of torch and, besides it, numpy, scipy, opt-einsum, pyyaml, tqdm
# and opacus (a machine without the project's environment can take opacus as a wheel).
# Writes the tables, the JSON results and the card's name to $OUT (default bench/results/gpu).
#
#   bash bench/gpu.sh                     # each step stops after 4 minutes (not yet run on a GPU)
#   OUT=/tmp/gpu PY=.venv/bin/python bash bench/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=.
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
} > "$OUT/card.txt" 2>&1
timeout 240 "$PY" bench/dp_step.py --cnn-batches 256 1024 > "$OUT/dp_step.txt" 2>&1
echo "dp_step: exit $?" >> "$OUT/card.txt"
timeout 240 "$PY" bench/many_models.py --models 8 16 > "$OUT/many_models.txt" 2>&1
echo "many_models: exit $?" >> "$OUT/card.txt"
cp bench/results/dp_step-gpu.json bench/results/many_models-gpu.json "$OUT/" 2>/dev/null
cat "$OUT"/*.txt
