"""tvfast.pdhg against the reference loop over image size × batch (issue #4).

Sizes 64² … 2048², batch 1 … 64, T = 256, as long as B·N² ≤ 2²² pixels (the
2048² image; larger batches of large images take minutes per case on this
2-vCPU machine). For every case: forward (no grad) and forward+backward time,
both implementations in this process on the same inputs, and the peak extra
RSS of one forward+backward in a fresh process.

The reference's forward+backward runs only up to B·N² ≤ 2¹⁹ pixels: its
autograd graph keeps ≈ 64 bytes per pixel per iteration (1019 MiB for 256²,
T = 256, see RESULTS.md), i.e. 8.6 GB at 2¹⁹ pixels and 69 GB at 2²², beyond
this machine's 24 GiB — the skip message says how much it would need.

    python -m pytest benchmarks/test_scaling.py --benchmark-json=scaling.json
    python benchmarks/report.py scaling.json
"""

from __future__ import annotations

import pytest
import torch

from harness import forward, forward_backward, make_problem, median_time, probe_memory, solvers


def copy_bandwidth(n_bytes: int = 1 << 28, rounds: int = 5) -> float:
    """Bytes per second of a large tensor copy (read + write counted)."""
    a = torch.empty(n_bytes // 4).uniform_()
    b = torch.empty_like(a)
    seconds = median_time(b.copy_, a, rounds=rounds)
    return 2 * n_bytes / seconds


ITERS = 256
MAX_PIXELS = 1 << 22
MAX_REFERENCE_BACKWARD_PIXELS = 1 << 19
REFERENCE_BYTES_PER_PIXEL_ITER = 64  # measured at 256², only used to word the skip reason

CASES = [(n, b) for n in (64, 128, 256, 512, 1024, 2048) for b in (1, 4, 16, 64) if b * n * n <= MAX_PIXELS]
QUICK = {(64, 1), (128, 4), (256, 1)}


def _case_id(case):
    return f"{case[0]}x{case[0]}-B{case[1]}"


def _params(cases):
    return [pytest.param(c, id=_case_id(c), marks=[pytest.mark.quick] if c in QUICK else []) for c in cases]


def _rounds(pixels: int) -> int:
    """5 rounds for small problems, down to 1 (after the warm-up) for 4 Mpx."""
    return max(1, min(5, (1 << 20) // pixels))


def _skip_reference_backward(impl: str, pixels: int) -> None:
    if impl == "reference" and pixels > MAX_REFERENCE_BACKWARD_PIXELS:
        need = REFERENCE_BYTES_PER_PIXEL_ITER * pixels * ITERS / 1e9
        pytest.skip(f"reference forward+backward would keep ≈ {need:.0f} GB of autograd tensors")


def _record(benchmark, kind, case):
    size, batch = case
    benchmark.group = f"grid {kind} {size}x{size} B={batch} T={ITERS}"
    benchmark.extra_info.update(grid=kind, size=size, batch=batch, iters=ITERS)


RUNS = {"forward": forward, "forward+backward": forward_backward}


@pytest.mark.parametrize("impl", list(solvers()))
@pytest.mark.parametrize("kind", list(RUNS))
@pytest.mark.parametrize("case", _params(CASES))
def test_time(benchmark, case, kind, impl):
    size, batch = case
    if kind == "forward+backward":
        _skip_reference_backward(impl, batch * size * size)
    _record(benchmark, kind, case)
    z, lam = make_problem(size, batch)
    benchmark.pedantic(RUNS[kind], args=(solvers()[impl], z, lam, ITERS), rounds=_rounds(batch * size * size),
                       warmup_rounds=1)


@pytest.mark.parametrize("impl", list(solvers()))
@pytest.mark.parametrize("case", _params(CASES))
def test_memory_forward_backward(benchmark, case, impl):
    """Peak extra RSS of one forward+backward in a fresh process (extra_info)."""
    size, batch = case
    _skip_reference_backward(impl, batch * size * size)
    _record(benchmark, "memory", case)
    result = benchmark.pedantic(probe_memory, args=(impl, size, batch, ITERS), rounds=1, iterations=1)
    benchmark.extra_info["peak_extra_bytes"] = result["extra_bytes"]


@pytest.mark.quick
def test_forward_against_bandwidth_bound(benchmark):
    """B = 16, 256², T = 256 forward: time against the bound set by this
    machine's copy bandwidth for 48 bytes per pixel per iteration (target: within 2×)."""
    benchmark.group = "forward B=16 256x256 T=256 vs the memory-bandwidth bound"
    z, lam = make_problem(256, 16)
    bandwidth = copy_bandwidth()
    bound = 48 * z.numel() * ITERS / bandwidth
    benchmark.pedantic(forward, args=(solvers()["tvfast"], z, lam, ITERS), rounds=3, warmup_rounds=1)
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update(copy_bandwidth_bytes_per_s=bandwidth, bound_s=bound, bound_ratio=seconds / bound)
