#!/usr/bin/env bash
# GPU checks in one call, meant to finish well under 10 minutes:
#   1. the CUDA equivalence tests with *compiled* Triton kernels (denoising and the operator op)
#      (TRITON_INTERPRET=0; odd sizes, every Λ layout, float32/float64, gradients);
#   2. the GPU benchmark (benchmarks/test_gpu.py): forward / forward+backward vs
#      the reference loop, peak GPU memory, the B = 64 bandwidth roofline and the
#      training step; prints RESULTS.md rows with the device name;
#   3. benchmarks/gpu_launches.py: CUDA graph replay at B = 1 and several iterations per launch at B = 64,
#      against the one-step kernels and a torch.compile'd loop.
# Both steps always run (a failing test does not hide the benchmark); the script
# exits non-zero if either failed.
# Usage (repository root, on a CUDA machine that already has torch and triton):
#   bash benchmarks/gpu.sh [OUTPUT_DIR]      # default: $OUT if set, else gpu_results/
# Both steps last ran on an NVIDIA H200 on 2026-11-26 (inside experiments/gpu_train.sh), before the kernels were
# split into kernels/pdhg2d.py, pdhg3d.py and launch.py and tests/test_kernels.py was added: 30 CUDA tests passed;
# the benchmark's figures are in benchmarks/RESULTS.md (gpu_h200.json).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_results}}"
mkdir -p "$out"
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
# The GPU machine is offline: install only if tvfast is not importable yet, and
# never let pip look for (or replace) torch/triton.
if ! python -c "import tvfast.kernels, tvfast.training" 2>/dev/null; then
    python -m pip install -q --no-deps --no-build-isolation -e . || echo "gpu.sh: editable install failed" >&2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/device.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/device.txt"
python -m pytest -q -p no:cacheprovider tests/test_pdhg_forward.py tests/test_pdhg_arguments.py tests/test_pdhg_3d.py tests/test_kernels.py tests/test_operator_op.py tests/test_isotropic.py tests/test_cuda_graphs.py tests/test_blocked.py -k cuda 2>&1 | tee "$out/tests.log"
tests_rc=$?
python -m pytest -q -p no:cacheprovider benchmarks/test_gpu.py --benchmark-json="$out/gpu.json" 2>&1 | tee "$out/bench.log"
bench_rc=$?
python benchmarks/gpu_launches.py --out "$out" 2>&1 | tee "$out/launches.log"
launch_rc=$?
if [ -f "$out/gpu.json" ]; then
    python benchmarks/report.py "$out/gpu.json" | tee "$out/gpu_results.md"
fi
echo "gpu.sh: tests exit $tests_rc, benchmark exit $bench_rc, launches exit $launch_rc"
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$launch_rc" -eq 0 ]
