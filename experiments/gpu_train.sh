#!/usr/bin/env bash
# One GPU session, about 9 minutes on an H100/H200, that does everything a GPU is needed for:
#   1. checks the compiled Triton kernels against the reference loop (forward and both
#      gradients; falls back to the PyTorch backend if they fail);
#   2. runs the recipe ablation (experiments/ablation.py): 8 recipes trained concurrently on
#      the one GPU, BUDGET minutes each, while the CUDA test suite runs beside them;
#   3. evaluates the winner (best validation PSNR) on the test split at s = 0.5, 0.3, 0.1;
#   4. runs the GPU benchmark (benchmarks/test_gpu.py) alone on the GPU;
#   5. packs the tables, curves, logs, the winner's weights and the evaluation into
#      OUT/results.tar.gz.
# Usage (repository root, CUDA machine with torch, triton, scikit-image, safetensors):
#   DATA=path/to/chest_xray BUDGET=4.5 bash experiments/gpu_train.sh [OUT]
# DATA holds train/, val/ and test/ (default .data/chest_xray, a copy of the data set).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu_out}}"
data="${DATA:-.data/chest_xray}"
budget="${BUDGET:-4.5}"
runs="${RUNS:-runs/gpu}"
logs="$runs/logs"
mkdir -p "$out" "$logs"
export TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
stamp() { echo "[$(date +%T)] $*"; }
pack() {  # (re)write what comes back: every run's table, curves, logs and evaluation; the winner's weights
    (cd "$runs" && tar czf - --exclude='*.pt' --exclude='tensorboard' --exclude='*.safetensors' . ) >"$out/runs.tar.gz"
    if [ -n "${winner:-}" ]; then
        cp "$runs/ablation/$winner/best.safetensors" "$out/winner.safetensors"
        cp "$runs/ablation/$winner/best.json" "$out/winner.json"
    fi
}

stamp "install"
python -c "import tvfast.training" 2>/dev/null ||
    python -m pip install -q --no-deps --no-build-isolation -e . >"$logs/install.log" 2>&1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; } |
    tee "$logs/device.txt"

# Concurrent runs share the GPU better through MPS; without it they time-slice.
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
if timeout 10 nvidia-cuda-mps-control -d 2>/dev/null &&
   timeout 30 python -c "import torch; assert torch.ones(4, device='cuda').sum().item() == 4" 2>/dev/null; then
    stamp "MPS on"
else
    echo quit | timeout 5 nvidia-cuda-mps-control >/dev/null 2>&1
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    stamp "MPS off"
fi

stamp "kernel check"
backend=triton
if ! timeout 120 python benchmarks/cuda_check.py triton 2>&1 | tee "$logs/check.log"; then
    backend=torch
    timeout 120 python benchmarks/cuda_check.py torch 2>&1 | tee -a "$logs/check.log"
fi
stamp "solver backend for training: $backend"

( timeout 300 python -m pytest -q -p no:cacheprovider tests/test_pdhg_forward.py tests/test_pdhg_backward.py \
      tests/test_pdhg_arguments.py tests/test_pdhg_memory.py tests/test_pdhg_3d.py -k cuda >"$logs/tests.log" 2>&1
  echo "pytest exit $?" >>"$logs/tests.log" ) &
tests_pid=$!

stamp "ablation, $budget min per recipe"
python experiments/ablation.py --data "$data/train" --val "$data/val" --out "$runs/ablation" \
    --budget-min "$budget" --extra --solver-backend "$backend" 2>&1 | tee "$logs/ablation.log"
wait "$tests_pid"
tail -3 "$logs/tests.log"

winner="$(cat "$runs/ablation/winner.txt" 2>/dev/null)"
if [ -n "$winner" ]; then
    stamp "evaluating the winner: $winner"
    for s in 0.5 0.3 0.1; do
        timeout 150 python -m tvfast.training.evaluate --data "$data/test" --weights "$runs/ablation/$winner/best.safetensors" \
            --out "$runs/eval_s$s" --noise-levels "$s" >"$logs/eval_s$s.log" 2>&1 &
    done
    wait
    grep -h "^s = " "$logs"/eval_s*.log
fi
if [ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ]; then echo quit | timeout 5 nvidia-cuda-mps-control; fi
pack

# The benchmark gets what is left of a 10-minute call (SECONDS: time since the script started).
left=$(( ${DEADLINE_S:-580} - SECONDS ))
stamp "benchmark (${left} s left)"
[ "$left" -gt 30 ] && timeout "$left" python -m pytest -q -p no:cacheprovider benchmarks/test_gpu.py --benchmark-json="$logs/gpu.json" \
    >"$logs/bench.log" 2>&1
echo "benchmark exit $?" >>"$logs/bench.log"
[ -f "$logs/gpu.json" ] && python benchmarks/report.py "$logs/gpu.json" >"$logs/gpu_results.md" 2>&1
tail -5 "$logs/bench.log"

pack
ls -la "$out"
stamp "done"
