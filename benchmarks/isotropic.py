"""Isotropic TV and learnable steps against anisotropic TV and autograd: time and memory, fresh processes.

    python benchmarks/isotropic.py [--rounds 5] [--out benchmarks/isotropic_cpu.json]

Targets of docs/method.md §12 (same-run ratios):

* time: ``tvfast.pdhg(z, Λ, tv="isotropic")`` forward+backward within 2.5× of
  the anisotropic default call (its clip-state backward), measured
  alternately in one process per thread count, after one warm-up each; the
  first isotropic call of the process is reported too;
* memory: the peak growth of the resident set during one forward+backward,
  each implementation in its own fresh process (``benchmarks/harness.py``'s
  :class:`PeakRSS`): tvfast's isotropic call ≥ 20× below autograd of the
  plain reference loop with ``tv="isotropic"``.

Extra rows: learnable steps (τ, σ, θ 0-d tensors with ``requires_grad``), and
a 3-D volume. Problems: one 256² image, T = 256, a per-pixel Λ map in
[0, 0.1]; the volume 32 × 128², T = 128. Loss Σ x², gradients with respect to
z and Λ (and the steps). Every row names the machine and its threads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _problem(case: str):
    import torch

    gen = torch.Generator().manual_seed(0)
    shape = (1, 1, 256, 256) if case == "2d" else (1, 1, 32, 128, 128)
    return torch.rand(shape, generator=gen), 0.1 * torch.rand(shape, generator=gen), 256 if case == "2d" else 128


def _steps(spatial_dims: int) -> dict:
    import torch

    step = 1 / 3 if spatial_dims == 2 else 13 ** -0.5
    return {name: torch.tensor(value, requires_grad=True) for name, value in
            (("tau", step), ("sigma", step), ("theta", 1.0))}


def _solvers(case: str) -> dict:
    import tvfast
    from tvfast.solver.reference import pdhg_reference

    dims = 2 if case == "2d" else 3
    return {
        "anisotropic (default)": lambda z, lam, t: tvfast.pdhg(z, lam, t),
        "isotropic": lambda z, lam, t: tvfast.pdhg(z, lam, t, tv="isotropic"),
        "isotropic, learnable steps": lambda z, lam, t: tvfast.pdhg(z, lam, t, tv="isotropic", **_steps(dims)),
        "reference loop, isotropic (autograd)": lambda z, lam, t: pdhg_reference(z, lam, t, tv="isotropic"),
    }


def _forward_backward(solve, z, lam, n_iter) -> None:
    z = z.clone().requires_grad_()
    lam = lam.clone().requires_grad_()
    solve(z, lam, n_iter).square().sum().backward()


def time_case(case: str, threads: int, rounds: int) -> list[dict]:
    """Alternating medians of the forward+backward of the solvers (the reference loop only once: it is slow)."""
    import torch

    torch.set_num_threads(threads)
    from tvfast.cli.bench import paired_medians
    from tvfast.evaluation.report import machine_name

    z, lam, n_iter = _problem(case)
    solvers = _solvers(case)
    reference = solvers.pop("reference loop, isotropic (autograd)")
    start = time.perf_counter()
    _forward_backward(solvers["isotropic"], z, lam, n_iter)
    first = time.perf_counter() - start
    med = paired_medians(lambda solve: _forward_backward(solve, z, lam, n_iter), solvers, rounds)
    start = time.perf_counter()
    _forward_backward(reference, z, lam, n_iter)
    med["reference loop, isotropic (autograd)"] = time.perf_counter() - start
    base = med["anisotropic (default)"]
    machine = machine_name()
    rows = [{"case": case, "pass": "forward+backward", "impl": name, "threads": threads, "n_iter": n_iter,
             "median_s": seconds, "vs_anisotropic": seconds / base, "machine": machine,
             "torch": torch.__version__} for name, seconds in med.items()]
    rows.append({"case": case, "pass": "first isotropic call of the process (forward+backward)", "impl": "isotropic",
                 "threads": threads, "n_iter": n_iter, "median_s": first, "vs_anisotropic": first / base,
                 "machine": machine, "torch": torch.__version__})
    return rows


def memory_case(case: str, impl: str) -> dict:
    """Peak extra RSS of one forward+backward, after a 2-iteration warm-up, in this process."""
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    from harness import PeakRSS

    from tvfast.evaluation.report import machine_name

    z, lam, n_iter = _problem(case)
    solve = _solvers(case)[impl]
    _forward_backward(solve, z, lam, 2)
    with PeakRSS() as probe:
        _forward_backward(solve, z, lam, n_iter)
    return {"case": case, "pass": "forward+backward, peak extra RSS", "impl": impl, "threads": 1, "n_iter": n_iter,
            "extra_bytes": probe.extra, "machine": machine_name(), "torch": torch.__version__}


def _fresh(*args: str) -> list[dict]:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = ["| case | pass | tvfast | threads | time or memory | vs anisotropic / vs tvfast isotropic | machine |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if "extra_bytes" in r:
            value = f"{r['extra_bytes'] / 2**20:.1f} MiB"
            ratio = f"{r['vs_isotropic']:.1f}×" if "vs_isotropic" in r else ""
        else:
            value = f"{r['median_s'] * 1e3:.1f} ms"
            ratio = f"{r['vs_anisotropic']:.2f}×"
        lines.append(f"| {r['case']} | {r['pass']} | {r['impl']} | {r['threads']} | {value} | {ratio} | "
                     f"{r['machine']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the JSON rows here")
    parser.add_argument("--time", nargs=2, metavar=("CASE", "THREADS"), help=argparse.SUPPRESS)
    parser.add_argument("--memory", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: expected a positive integer")
    if args.time:
        print(json.dumps(time_case(args.time[0], int(args.time[1]), args.rounds)))
        return 0
    if args.memory:
        print(json.dumps([memory_case(*args.memory)]))
        return 0
    rows = []
    for case, threads in (("2d", 1), ("2d", 2), ("3d", 2)):
        rows += _fresh("--time", case, str(threads), "--rounds", str(args.rounds))
    memory = {impl: _fresh("--memory", "2d", impl)[0] for impl in
              ("isotropic", "isotropic, learnable steps", "anisotropic (default)",
               "reference loop, isotropic (autograd)")}
    for row in memory.values():
        row["vs_isotropic"] = row["extra_bytes"] / max(memory["isotropic"]["extra_bytes"], 1)
    rows += list(memory.values())
    print(table(rows))
    if args.out is not None:
        from tvfast.io.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
