"""The CPU targets as assertions: same-run ratios, tvfast against the reference loop.

Each test measures both implementations in one run on the same inputs — the
time in this process, rounds alternating between the two so that a change in
the machine's load hits both; the memory in a fresh process per
implementation — and asserts the ratio, never an absolute time. Targets
(256², B = 1, T = 256; benchmarks/RESULTS.md):

* forward ≥ 3× faster than the reference loop;
* forward + backward ≥ 5× faster;
* forward + backward peak extra RSS ≥ 10× less.

With a forward operator (undersampled single-coil MRI, ``MaskedFFT`` with a
4× row mask, complex 256² image, per-pixel Λ, T = 256; both sides use the
same operator object):

* forward + backward ≥ 5× faster;
* forward + backward peak extra RSS ≥ 10× less.

    python -m pytest benchmarks/test_targets.py
"""

from __future__ import annotations

import pytest

from harness import (forward, forward_backward, make_mri, make_problem, mri_forward_backward, mri_solvers,
                     paired_medians, probe_memory, ratio, solvers)

SIZE, ITERS = 256, 256


def _assert_speed(benchmark, label: str, run, impls: dict, rounds: int, target: float) -> None:
    """Time ``run(solve)`` for both implementations in alternating rounds; assert reference/tvfast ≥ target."""
    medians = benchmark.pedantic(paired_medians, args=(run, impls, rounds), rounds=1, iterations=1)
    speedup = ratio(medians["reference"], medians["tvfast"])
    benchmark.group = f"target {label} {SIZE}x{SIZE} T={ITERS}"
    benchmark.extra_info.update(reference_s=medians["reference"], tvfast_s=medians["tvfast"], ratio=speedup)
    assert speedup >= target, (f"{label}: tvfast {medians['tvfast'] * 1e3:.1f} ms, reference "
                               f"{medians['reference'] * 1e3:.1f} ms: {speedup:.2f}× < {target}×")


def _assert_memory(benchmark, label: str, case: str, target: float = 10.0) -> None:
    """Peak extra RSS of one forward+backward of each implementation (fresh processes); assert the ratio ≥ target."""
    def both():
        return {impl: probe_memory(impl, SIZE, 1, ITERS, case=case)["extra_bytes"] for impl in ("reference", "tvfast")}

    extra = benchmark.pedantic(both, rounds=1, iterations=1)
    less = ratio(extra["reference"], extra["tvfast"])
    benchmark.group = f"target {label} {SIZE}x{SIZE} T={ITERS}"
    benchmark.extra_info.update(reference_bytes=extra["reference"], tvfast_bytes=extra["tvfast"], ratio=less)
    assert less >= target, (f"{label}: tvfast {extra['tvfast'] / 2**20:.1f} MiB, reference "
                            f"{extra['reference'] / 2**20:.1f} MiB: {less:.1f}× < {target}×")


@pytest.mark.quick
@pytest.mark.parametrize(("kind", "target"), [("forward", 3.0), ("forward+backward", 5.0)])
def test_speed_target(benchmark, kind, target):
    z, lam = make_problem(SIZE)
    fn = {"forward": forward, "forward+backward": forward_backward}[kind]
    _assert_speed(benchmark, kind, lambda solve: fn(solve, z, lam, ITERS), solvers(), 5, target)


@pytest.mark.quick
def test_memory_target(benchmark):
    _assert_memory(benchmark, "memory forward+backward", "solver")


@pytest.mark.quick
def test_operator_speed_target(benchmark):
    y, lam, operator = make_mri(SIZE)
    _assert_speed(benchmark, "mri forward+backward", lambda solve: mri_forward_backward(solve, y, lam, ITERS),
                  mri_solvers(operator), 3, 5.0)


@pytest.mark.quick
def test_operator_memory_target(benchmark):
    _assert_memory(benchmark, "mri memory forward+backward", "mri")
