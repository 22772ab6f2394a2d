"""GPU benchmark: the Triton path against the reference loop on one CUDA device.

Skipped without CUDA. Run through ``benchmarks/gpu.sh``, which first runs the
CUDA equivalence tests with compiled kernels. Times are medians of CUDA-
synchronised calls; memory is ``torch.cuda.max_memory_allocated`` growth
during one forward+backward (exact on the GPU, so no fresh process).
Every case records the device name in ``extra_info["device"]``.

Targets: forward ≥ 20× the reference at 256², B = 1, T = 256;
≥ 70 % of the 48 B/pixel/iteration roofline at B = 64 (roofline: a
device-to-device copy's bandwidth, measured in the same run); training step
≥ 5× faster with ≥ 10× less peak GPU memory.
"""

from __future__ import annotations

import pytest
import torch

from harness import forward, forward_backward, make_problem, make_train_step, solvers

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ITERS = 256
IMPLS = list(solvers())


def _cuda_problem(size: int, batch: int):
    """The CPU benchmarks' problem (same values), on the GPU."""
    return tuple(t.cuda() for t in make_problem(size, batch))


def _synced(fn, *args):
    out = fn(*args)
    torch.cuda.synchronize()
    return out


def _peak_extra_bytes(fn, *args) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    _synced(fn, *args)
    return torch.cuda.max_memory_allocated() - before


def _device_info(benchmark):
    benchmark.extra_info["device"] = torch.cuda.get_device_name()


def copy_bandwidth_cuda(n_bytes: int = 1 << 30, rounds: int = 10) -> float:
    """Bytes per second of a device-to-device copy (read + write counted), best of ``rounds``."""
    a = torch.empty(n_bytes // 4, device="cuda").uniform_()
    b = torch.empty_like(a)
    b.copy_(a)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    best = float("inf")
    for _ in range(rounds):
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * n_bytes / best


@pytest.mark.parametrize("impl", IMPLS)
def test_gpu_forward_256(benchmark, impl):
    benchmark.group = f"GPU forward 256x256 B=1 T={ITERS}"
    _device_info(benchmark)
    z, lam = _cuda_problem(256, 1)
    benchmark.pedantic(_synced, args=(forward, solvers()[impl], z, lam, ITERS), rounds=20, warmup_rounds=2)


@pytest.mark.parametrize("impl", IMPLS)
def test_gpu_forward_backward_256(benchmark, impl):
    benchmark.group = f"GPU forward+backward 256x256 B=1 T={ITERS}"
    _device_info(benchmark)
    z, lam = _cuda_problem(256, 1)
    benchmark.pedantic(_synced, args=(forward_backward, solvers()[impl], z, lam, ITERS), rounds=10,
                       warmup_rounds=2)


@pytest.mark.parametrize("impl", IMPLS)
def test_gpu_memory_forward_backward_256_b16(benchmark, impl):
    benchmark.group = f"GPU memory forward+backward 256x256 B=16 T={ITERS}"
    _device_info(benchmark)
    z, lam = _cuda_problem(256, 16)
    _synced(forward_backward, solvers()[impl], z, lam, 2)  # compile / warm up
    extra = benchmark.pedantic(_peak_extra_bytes, args=(forward_backward, solvers()[impl], z, lam, ITERS),
                               rounds=1, iterations=1)
    benchmark.extra_info["peak_extra_bytes"] = extra


def test_gpu_forward_roofline_b64(benchmark):
    """B = 64, 256², T = 256 forward: fraction of the 48 B/pixel/iteration roofline (target ≥ 70 %)."""
    benchmark.group = f"GPU forward B=64 256x256 T={ITERS} vs the bandwidth roofline"
    _device_info(benchmark)
    z, lam = _cuda_problem(256, 64)
    bandwidth = copy_bandwidth_cuda()
    benchmark.pedantic(_synced, args=(forward, solvers()["tvfast"], z, lam, ITERS), rounds=10, warmup_rounds=2)
    seconds = benchmark.stats.stats.median
    achieved = 48 * z.numel() * ITERS / seconds
    benchmark.extra_info.update(copy_bandwidth_bytes_per_s=bandwidth, achieved_bytes_per_s=achieved,
                                roofline_fraction=achieved / bandwidth)


@pytest.mark.parametrize("impl", IMPLS)
def test_gpu_train_step_256(benchmark, impl):
    """U-Net (1.8 M) → Λ → solver (T = 256) → MSE → backward → Adam, 256², B = 1, on the GPU."""
    benchmark.group = f"GPU train step 256x256 T={ITERS}"
    _device_info(benchmark)
    step = make_train_step(solvers()[impl], 256, device="cuda")
    benchmark.pedantic(step, rounds=10, warmup_rounds=2)  # step() ends in loss.item(): synchronised


@pytest.mark.parametrize("impl", IMPLS)
def test_gpu_train_step_memory_256(benchmark, impl):
    benchmark.group = f"GPU memory train step 256x256 T={ITERS}"
    _device_info(benchmark)
    step = make_train_step(solvers()[impl], 256, device="cuda")
    step(2)
    extra = benchmark.pedantic(_peak_extra_bytes, args=(step,), rounds=1, iterations=1)
    benchmark.extra_info["peak_extra_bytes"] = extra


def _cuda_volume(depth: int, size: int, batch: int = 1, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(batch, 1, depth, size, size, generator=gen)
    return z.cuda(), (0.1 * torch.rand(batch, 1, depth, size, size, generator=gen)).cuda()


@pytest.mark.parametrize("impl", IMPLS)
def test_gpu_forward_3d(benchmark, impl):
    """Volumes on the GPU: a 32×128×128 sequence, B = 1, T = 128 (Kofler's setting), forward."""
    benchmark.group = "GPU 3-D forward 32x128x128 B=1 T=128"
    _device_info(benchmark)
    z, lam = _cuda_volume(32, 128)
    benchmark.pedantic(_synced, args=(forward, solvers()[impl], z, lam, 128), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("impl", IMPLS)
def test_gpu_memory_forward_backward_3d(benchmark, impl):
    benchmark.group = "GPU 3-D memory forward+backward 32x128x128 B=1 T=128"
    _device_info(benchmark)
    z, lam = _cuda_volume(32, 128)
    _synced(forward_backward, solvers()[impl], z, lam, 2)
    extra = benchmark.pedantic(_peak_extra_bytes, args=(forward_backward, solvers()[impl], z, lam, 128),
                               rounds=1, iterations=1)
    benchmark.extra_info["peak_extra_bytes"] = extra
