"""``tvfast bench``: the headline speed rows, tvfast.pdhg against the reference loop.

For one (B, 1, N, N) problem, T iterations, both implementations run in this
process on the same inputs, alternating round by round so that a change in
the machine's load hits both; each row reports the two medians and

    ratio = median(reference) / median(tvfast)

for the forward (no gradient) and the forward + backward (gradients of
Σ x² with respect to z and Λ). tvfast runs as users call it: ``tvfast.pdhg``
with no flag (the fused CPU path on CPU tensors, the Triton kernels on
CUDA); the warm-up round holds the first call. Every row names the machine
it was measured on. The first call of a fresh process is timed by
``benchmarks/default_call.py``.

Peak memory, the training step, and the size × batch grid are measured by
the pytest-benchmark suite in ``benchmarks/`` (``benchmarks/harness.py``).
"""

from __future__ import annotations

import statistics
import time

import torch

from tvfast.evaluation.report import machine_name

__all__ = ["solvers", "make_problem", "forward", "forward_backward", "median_time", "paired_medians", "machine_name",
           "speed_rows", "print_table"]


def solvers() -> dict:
    """``{"tvfast": tvfast.pdhg (the default call), "reference": pdhg_reference}``, both called as ``solve(z, Λ, T)``."""
    import tvfast
    from tvfast.solver.reference import pdhg_reference

    return {"tvfast": tvfast.pdhg, "reference": pdhg_reference}


def make_problem(size: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (B, 1, N, N) image batch in [0, 1] and a per-pixel Λ map in [0, 0.1], seeded."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(batch, 1, size, size, generator=gen)
    lam = 0.1 * torch.rand(batch, 1, size, size, generator=gen)
    return z, lam


def forward(solve, z, lam, n_iter):
    """The solution x, without autograd."""
    with torch.no_grad():
        return solve(z, lam, n_iter)


def forward_backward(solve, z, lam, n_iter):
    """Gradients (∂L/∂z, ∂L/∂Λ) of L = Σ x² through ``solve``."""
    z = z.clone().requires_grad_()
    lam = lam.clone().requires_grad_()
    solve(z, lam, n_iter).square().sum().backward()
    return z.grad, lam.grad


def median_time(fn, *args, rounds: int = 5, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn(*args)`` over ``rounds`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_medians(run, impls: dict, rounds: int) -> dict:
    """Median seconds of ``run(solve)`` per implementation, rounds alternating between them, one warm-up each."""
    for solve in impls.values():
        run(solve)
    times = {name: [] for name in impls}
    for _ in range(rounds):
        for name, solve in impls.items():
            start = time.perf_counter()
            run(solve)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def speed_rows(size: int, batch: int, n_iter: int, rounds: int) -> list[str]:
    """Markdown rows ``| case | machine | reference | tvfast | ratio |`` for forward and forward + backward."""
    if size < 1 or batch < 1 or n_iter < 1 or rounds < 1:
        raise ValueError(f"size, batch, n_iter, rounds: expected positive integers, got {size}, {batch}, "
                         f"{n_iter}, {rounds}")
    z, lam = make_problem(size, batch)
    impls = solvers()
    machine = machine_name()
    rows = []
    for name, fn in (("forward", forward), ("forward+backward", forward_backward)):
        t = paired_medians(lambda solve: fn(solve, z, lam, n_iter), impls, rounds)
        rows.append(f"| {name} {size}² B={batch} T={n_iter} | {machine} | {t['reference'] * 1e3:.1f} ms "
                    f"| {t['tvfast'] * 1e3:.1f} ms | {t['reference'] / t['tvfast']:.1f}× faster |")
    return rows


def print_table(quick: bool = False, size: int | None = None, n_iter: int | None = None,
                rounds: int | None = None) -> None:
    """Print the headline rows: default 256², T = 256, 5 rounds; ``quick``: 128², T = 64, 3 rounds."""
    default_size, default_iters, default_rounds = (128, 64, 3) if quick else (256, 256, 5)
    size, n_iter, rounds = size or default_size, n_iter or default_iters, rounds or default_rounds
    print(f"# tvfast bench — torch {torch.__version__}, medians of {rounds} rounds, same process")
    print()
    print("| case | machine | reference loop | tvfast | ratio |")
    print("|---|---|---|---|---|")
    for row in speed_rows(size, 1, n_iter, rounds):
        print(row, flush=True)
