"""tvfast beside MRpro, DeepInverse and scikit-image: forward and forward+backward time and peak RSS, fresh processes.

    /path/to/venv/bin/python benchmarks/peers.py [--size 256] [--iters 256] [--rounds 3]

MRpro and DeepInverse import torchvision, whose wheels want the CUDA build
of torch, so they live in their own virtual environment with numpy,
safetensors, pillow, tifffile and tqdm; tvfast is imported from this
checkout (the folder above this file goes on ``sys.path`` when ``tvfast``
is not installed there). A peer that is not importable is skipped with a note.

Cases (loss L = Σ |x|², gradients with respect to the data and to Λ):

* **MRI** — single-coil Cartesian MRI, ``MaskedFFT`` with a 4× row mask
  (``harness.make_mri``), complex 256² image, per-pixel Λ map:
  ½‖Ax − y‖² + ‖Λ∘∇Re x‖₁ + ‖Λ∘∇Im x‖₁ with periodic forward differences,
  T PDHG iterations from x₀ = Aᴴy with τ = σ = 0.99/√(‖A‖² + 8) = 0.33.
  ``tvfast.pdhg(y, Λ, operator=A)`` (the default call) against MRpro's
  ``pdhg`` with K = [A; ∇] (``LinearOperatorMatrix``, ∇ =
  ``FiniteDifferenceOp(mode="forward", pad_mode="circular")``) and
  f = ½‖· − y‖² ⊕ ``L1NormViewAsReal(weight=Λ)`` — the same iteration
  term by term, run through autograd. The same operator object is used by
  both (MRpro sees it through a thin ``LinearOperator`` wrapper).
* **Denoising** — DeepInverse's PDHG lives in ``TVDenoiser`` (A = I; its
  ``optim`` framework has no per-pixel-weighted TV with an operator), whose
  threshold is one number per image: a real 256² image, scalar λ = 0.05,
  ``TVDenoiser(n_it_max=T, crit=−1)`` (no early stop, its default
  over-relaxation) against ``tvfast.pdhg(z, λ, T)`` (the default call);
  scikit-image's ``denoise_tv_chambolle(weight=λ, max_num_iter=T, eps=0)``
  (forward only: it is not differentiable).

Every case runs in a fresh process (``--case NAME``): a 2-iteration warm-up
(loading the kernels for tvfast), then ``rounds`` forwards (no gradient) and
one forward+backward under a peak-RSS sampler, then ``rounds − 1`` more; the
row gives the median times and the peak extra RSS.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if importlib.util.find_spec("tvfast") is None:
    sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

CASES = {  # name: (problem, implementation, the modules it needs)
    "tvfast-mri": ("mri", "tvfast", ()),
    "mrpro-mri": ("mri", "MRpro", ("mrpro",)),
    "tvfast-denoise": ("denoise", "tvfast", ()),
    "deepinv-denoise": ("denoise", "DeepInverse", ("deepinv",)),
    "skimage-denoise": ("denoise", "scikit-image", ("skimage",)),
}
DENOISE_LAMBDA = 0.05


def missing_modules(modules) -> list[str]:
    """The names in ``modules`` that cannot be imported here."""
    missing = []
    for name in modules:
        try:
            __import__(name)
        except Exception as exc:  # ImportError, or a broken install raising anything else
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    return missing


def _mri_steps():
    from tvfast.solver.arguments import operator_step

    return operator_step(1.0, 2)  # ‖A‖ = 1 for a 0/1 mask


def mrpro_mri_solver(operator):
    """``solve(y, Λ, T)`` with MRpro's pdhg on K = [A; ∇], f = ½‖· − y‖² ⊕ Σ Λ(|∇Re x| + |∇Im x|)."""
    import mrpro
    from mrpro.operators import FiniteDifferenceOp, LinearOperatorMatrix
    from mrpro.operators.functionals import L1NormViewAsReal, L2NormSquared

    class Wrapped(mrpro.operators.LinearOperator):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return (self.inner(x),)

        def adjoint(self, y):
            return (self.inner.adjoint(y),)

    a_op = Wrapped(operator)
    nabla = FiniteDifferenceOp(dim=(-2, -1), mode="forward", pad_mode="circular")
    k = LinearOperatorMatrix(((a_op,), (nabla,)))
    step = _mri_steps()

    def solve(y, lam, n_iter):
        f = 0.5 * L2NormSquared(target=y) | L1NormViewAsReal(weight=lam)
        (x,) = mrpro.algorithms.optimizers.pdhg(f, None, k, (operator.adjoint(y),), max_iterations=n_iter,
                                                 primal_stepsize=step, dual_stepsize=step)
        return x

    return solve


def tvfast_mri_solver(operator):
    import tvfast

    return lambda y, lam, n_iter: tvfast.pdhg(y, lam, n_iter, operator=operator)


def _run_case(name: str, size: int, n_iter: int, rounds: int) -> dict:
    problem, impl, modules = CASES[name]
    missing = missing_modules(modules)
    if missing:
        return {"case": name, "impl": impl, "skipped": "not importable: " + ", ".join(missing)}
    from harness import PeakRSS, make_mri, make_problem, mri_forward_backward

    if problem == "mri":
        data, lam, operator = make_mri(size)
        solve = (tvfast_mri_solver if impl == "tvfast" else mrpro_mri_solver)(operator)

        def forward(iters):
            with torch.no_grad():
                solve(data, lam, iters)

        def run(iters):
            mri_forward_backward(solve, data, lam, iters)
    else:
        data, _ = make_problem(size)
        data = data + 0.1 * torch.randn(data.shape, generator=torch.Generator().manual_seed(1))
        if impl == "tvfast":
            import tvfast

            def solve(z, lam, iters):
                return tvfast.pdhg(z, lam, iters)
        elif impl == "DeepInverse":
            import deepinv

            def solve(z, lam, iters):
                return deepinv.models.TVDenoiser(n_it_max=iters, crit=-1.0)(z, ths=lam)
        else:
            from skimage.restoration import denoise_tv_chambolle

            image = data[0, 0].numpy()  # float32, as tvfast solves it

            def solve(z, lam, iters):
                return denoise_tv_chambolle(image, weight=float(lam), max_num_iter=iters, eps=0.0)

        def forward(iters):
            with torch.no_grad():
                solve(data, torch.tensor(DENOISE_LAMBDA), iters)

        def run(iters):
            z = data.clone().requires_grad_()
            lam = torch.tensor(DENOISE_LAMBDA, requires_grad=True)
            solve(z, lam, iters).square().sum().backward()

    differentiable = impl != "scikit-image"
    (run if differentiable else forward)(2)
    forwards = []
    for _ in range(rounds):
        start = time.perf_counter()
        forward(n_iter)
        forwards.append(time.perf_counter() - start)
    row = {"case": name, "impl": impl, "problem": problem, "size": size, "iters": n_iter, "rounds": rounds,
           "forward_s": statistics.median(forwards), "torch": torch.__version__}
    if not differentiable:
        return row
    times = []
    with PeakRSS() as probe:
        start = time.perf_counter()
        run(n_iter)
        times.append(time.perf_counter() - start)
    for _ in range(rounds - 1):
        start = time.perf_counter()
        run(n_iter)
        times.append(time.perf_counter() - start)
    return {**row, "median_s": statistics.median(times), "extra_bytes": probe.extra}


def measure(name: str, size: int, n_iter: int, rounds: int) -> dict:
    """One case in a fresh process (this file with ``--case``); its JSON line, or a note when it failed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", name, "--size", str(size),
           "--iters", str(n_iter), "--rounds", str(rounds)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"case": name, "impl": CASES[name][1], "skipped": f"failed (exit {out.returncode}): {tail}"}
    return json.loads(lines[-1])


def table(results: list[dict], machine: str) -> str:
    """Markdown rows: problem, implementation, times, peak extra RSS, and the ratios to tvfast on the same problem."""
    fast = {r["problem"]: r for r in results if r.get("impl") == "tvfast" and "skipped" not in r}
    lines = ["| machine | problem | implementation | forward | forward+backward | peak extra RSS | vs tvfast |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        problem = CASES[r["case"]][0]
        if "skipped" in r:
            lines.append(f"| {machine} | {problem} | {r['impl']} | skipped: {r['skipped']} | | | |")
            continue
        ref = fast.get(problem)
        versus = []
        if ref is not None and r is not ref:
            versus.append(f"forward {r['forward_s'] / ref['forward_s']:.1f}× slower")
            if "median_s" in r:
                versus.append(f"forward+backward {r['median_s'] / ref['median_s']:.1f}× slower, "
                              f"{r['extra_bytes'] / max(ref['extra_bytes'], 1):.0f}× more memory")
        both = (f"{r['median_s'] * 1e3:.0f} ms | {r['extra_bytes'] / 2**20:.1f} MiB" if "median_s" in r
                else "not differentiable | ")
        lines.append(f"| {machine} | {problem} {r['size']}² T={r['iters']} | {r['impl']} | "
                     f"{r['forward_s'] * 1e3:.1f} ms | {both} | {'; '.join(versus)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=list(CASES), default=None, help="run one case here (the fresh process)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--iters", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES), help="cases to run")
    args = parser.parse_args(argv)
    if args.size < 8 or args.iters < 1 or args.rounds < 1:
        parser.error("--size >= 8, --iters >= 1 and --rounds >= 1 expected")
    if args.case is not None:
        print(json.dumps(_run_case(args.case, args.size, args.iters, args.rounds)), flush=True)
        return 0
    from tvfast.evaluation.report import machine_name

    machine = machine_name()
    results = []
    for name in args.cases:
        results.append(measure(name, args.size, args.iters, args.rounds))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(f"# tvfast and its peers, torch {torch.__version__}; medians of {args.rounds} rounds, fresh process per row")
    print()
    print(table(results, machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
