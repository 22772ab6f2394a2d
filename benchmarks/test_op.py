"""tvfast.pdhg against the reference loop: speed (pytest-benchmark) and memory.

CPU, 256×256, B = 1, T = 256 (issue #2's targets: forward ≥ 3×, forward +
backward ≥ 3×, peak extra memory of forward + backward ≥ 20× smaller).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tvfast
from tvfast.reference import pdhg_reference

SIZE, BATCH, ITERS = 256, 1, 256
IMPLS = {"tvfast": tvfast.pdhg, "reference": pdhg_reference}


@pytest.fixture(scope="module")
def problem():
    gen = torch.Generator().manual_seed(0)
    z = torch.rand(BATCH, 1, SIZE, SIZE, generator=gen)
    lam = 0.1 * torch.rand(BATCH, 1, SIZE, SIZE, generator=gen)
    return z, lam


def _forward(solve, z, lam):
    with torch.no_grad():
        return solve(z, lam, ITERS)


def _forward_backward(solve, z, lam):
    z = z.clone().requires_grad_()
    lam = lam.clone().requires_grad_()
    solve(z, lam, ITERS).square().sum().backward()
    return z.grad


@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward(benchmark, problem, impl):
    benchmark.group = f"forward {SIZE}x{SIZE} B={BATCH} T={ITERS}"
    benchmark.extra_info.update(pixels=SIZE * SIZE * BATCH, iters=ITERS)
    benchmark.pedantic(_forward, args=(IMPLS[impl], *problem), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_forward_backward(benchmark, problem, impl):
    benchmark.group = f"forward+backward {SIZE}x{SIZE} B={BATCH} T={ITERS}"
    benchmark.extra_info.update(pixels=SIZE * SIZE * BATCH, iters=ITERS)
    benchmark.pedantic(_forward_backward, args=(IMPLS[impl], *problem), rounds=5, warmup_rounds=1)


def probe_memory(impl: str, size: int = SIZE, batch: int = BATCH, iters: int = ITERS) -> dict:
    """Peak extra RSS of forward+backward in a fresh process (benchmarks/memory_probe.py)."""
    script = Path(__file__).with_name("memory_probe.py")
    out = subprocess.run(
        [sys.executable, str(script), "--impl", impl, "--size", str(size), "--batch", str(batch), "--iters", str(iters)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("impl", list(IMPLS))
def test_memory_forward_backward(benchmark, impl):
    """Records peak extra RSS (bytes) as extra_info; the 'time' is the probe's wall time."""
    benchmark.group = f"memory forward+backward {SIZE}x{SIZE} B={BATCH} T={ITERS}"
    result = benchmark.pedantic(probe_memory, args=(impl,), rounds=1, iterations=1)
    benchmark.extra_info.update(peak_extra_bytes=result["extra_bytes"])
