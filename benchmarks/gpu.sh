#!/usr/bin/env bash
# GPU checks in one call (issue #4), meant to finish well under 10 minutes:
#   1. the CUDA equivalence tests with *compiled* Triton kernels
#      (TRITON_INTERPRET=0; odd sizes, every Λ layout, float32/float64, gradients);
#   2. the GPU benchmark (benchmarks/test_gpu.py): forward / forward+backward vs
#      the reference loop, peak GPU memory, the B = 64 bandwidth roofline and the
#      training step; prints RESULTS.md rows with the device name.
# Usage (repository root, on a CUDA machine that already has torch and triton):
#   bash benchmarks/gpu.sh [OUTPUT_DIR]      # default: $OUT if set, else gpu_results/
# Status: written without a GPU; it has not yet been run on one.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_results}}"
mkdir -p "$out"
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
# the GPU image has every dependency; do not let pip look for (or replace) torch/triton
python -m pip install -q --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/device.txt"
python -m pytest -q -p no:cacheprovider tests -k cuda 2>&1 | tee "$out/tests.log"
python -m pytest -q -p no:cacheprovider benchmarks/test_gpu.py --benchmark-json="$out/gpu.json" 2>&1 | tee "$out/bench.log"
python benchmarks/report.py "$out/gpu.json" | tee "$out/gpu_results.md"
