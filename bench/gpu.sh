#!/usr/bin/env bash
# A GPU session's one script (docs/benchmarks.md, "GPU"): the device's own torch (2.11+ with
# CUDA), correctness first, then whole epochs on the device. Frappe must be in .data/frappe
# (copied there, git-ignored, named in the device tool's carry). Results go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" AFM_DATA_DIR="$PWD/.data" OUT="${OUT:-/tmp/afm-gpu}"
mkdir -p "$OUT"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_models.py tests/test_numerics.py 2>&1 | tail -3 | tee "$OUT/tests.txt"
python3 bench/epochs.py --device cuda --settings 64:4096,256:1024,256:128 --epochs 4 \
  --impls ours-eager,ours-compiled,torchfm,deepctr | tee "$OUT/epochs.txt"
