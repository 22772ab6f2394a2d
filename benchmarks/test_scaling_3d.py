"""tvfast.pdhg on volumes / (x, y, t) sequences against the 3-D reference loop (docs/method.md §9), CPU.

The headline case is a 32×128×128 volume (D × H × W), B = 1, T = 128, with a
per-voxel Λ map:

* forward time (no grad), tvfast and the reference loop in this process on
  the same inputs, one pytest-benchmark group;
* peak extra RSS of one forward+backward, each implementation in a fresh
  process (``python benchmarks/harness.py --depth …``), one group.

tvfast keeps 1 byte per voxel per iteration of clip masks (64 MiB here);
autograd of the reference keeps several float volumes per iteration. A small
case (8×32×32, T = 32) is marked ``quick``.

    python -m pytest benchmarks/test_scaling_3d.py --benchmark-json=scaling3d.json
    python benchmarks/report.py scaling3d.json
"""

from __future__ import annotations

import pytest

from harness import forward, make_volume, probe_memory, solvers

# (depth, size, batch, iterations): volumes (B, 1, depth, size, size)
CASES = [(32, 128, 1, 128), (8, 32, 1, 32)]
QUICK = {(8, 32, 1, 32)}


def _case_id(case):
    depth, size, batch, n_iter = case
    return f"{depth}x{size}x{size}-B{batch}-T{n_iter}"


def _params(cases):
    return [pytest.param(c, id=_case_id(c), marks=[pytest.mark.quick] if c in QUICK else []) for c in cases]


def _record(benchmark, kind, case):
    depth, size, batch, n_iter = case
    benchmark.group = f"3-D {kind} {depth}x{size}x{size} B={batch} T={n_iter}"
    benchmark.extra_info.update(kind=kind, depth=depth, size=size, batch=batch, iters=n_iter)


@pytest.mark.parametrize("impl", list(solvers()))
@pytest.mark.parametrize("case", _params(CASES))
def test_forward_time_3d(benchmark, case, impl):
    depth, size, batch, n_iter = case
    _record(benchmark, "forward", case)
    z, lam = make_volume(depth, size, batch)
    rounds = 3 if depth * size * size * batch * n_iter <= (1 << 24) else 1
    benchmark.pedantic(forward, args=(solvers()[impl], z, lam, n_iter), rounds=rounds, warmup_rounds=1)


@pytest.mark.parametrize("impl", list(solvers()))
@pytest.mark.parametrize("case", _params(CASES))
def test_memory_forward_backward_3d(benchmark, case, impl):
    """Peak extra RSS of one forward+backward in a fresh process (extra_info)."""
    depth, size, batch, n_iter = case
    _record(benchmark, "memory forward+backward", case)
    result = benchmark.pedantic(probe_memory, args=(impl, size, batch, n_iter), kwargs={"depth": depth},
                                rounds=1, iterations=1)
    benchmark.extra_info.update(peak_extra_bytes=result["extra_bytes"], seconds=result["seconds"],
                                mask_bytes=depth * size * size * batch * n_iter if impl == "tvfast" else None)
