"""tvfast.pdhg against the reference loop: speed (pytest-benchmark) and memory.

CPU, 256×256, B = 1, T = 256 (issue #2's targets: forward ≥ 3×, forward +
backward ≥ 3×, peak extra memory of forward + backward ≥ 20× smaller).
Run: ``python -m pytest benchmarks --benchmark-json=bench.json`` then
``python benchmarks/report.py bench.json``.
"""

from __future__ import annotations

import pytest

from tvfast.benchmarking import forward, forward_backward, make_problem, probe_memory, solvers

SIZE, BATCH, ITERS = 256, 1, 256
IMPLS = list(solvers())


@pytest.fixture(scope="module")
def problem():
    return make_problem(SIZE, BATCH)


@pytest.mark.parametrize("impl", IMPLS)
def test_forward(benchmark, problem, impl):
    benchmark.group = f"forward {SIZE}x{SIZE} B={BATCH} T={ITERS}"
    benchmark.pedantic(forward, args=(solvers()[impl], *problem, ITERS), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_backward(benchmark, problem, impl):
    benchmark.group = f"forward+backward {SIZE}x{SIZE} B={BATCH} T={ITERS}"
    benchmark.pedantic(forward_backward, args=(solvers()[impl], *problem, ITERS), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("impl", IMPLS)
def test_memory_forward_backward(benchmark, impl):
    """Peak extra RSS (bytes) of a fresh process goes to extra_info; the time is the probe's."""
    benchmark.group = f"memory forward+backward {SIZE}x{SIZE} B={BATCH} T={ITERS}"
    result = benchmark.pedantic(probe_memory, args=(impl, SIZE, BATCH, ITERS), rounds=1, iterations=1)
    benchmark.extra_info["peak_extra_bytes"] = result["extra_bytes"]
