"""How much a per-pixel Λ can gain at all: the oracle map against the oracle scalar (ct60 or mri4x).

    python experiments/oracle_map.py --task ct60 --data ../shared/data/chest_xray/test --limit 5 --out ct60.md
    python experiments/oracle_map.py --task mri4x --data ../shared/data/chest_xray/test --limit 5 --out mri4x.md

For each test image (the task's simulation as ``tvfast evaluate`` makes it,
image i seeded by i: ``ct60`` 128², 60 parallel-beam views, s = 0.02, FBP
start; ``mri4x`` 256², 4× rows, s = 0.05, zero-filled start):

* the best scalar λ by PSNR against the clean image (a log grid, refined),
  at the task's T (``--iters``) and solved further, T = ``--converged-iters``
  ("converged"); MRI with the steps τ = b·s, σ = s/b of ``--step-balance``
  (b = 30 solves near the minimiser, docs/method.md §11);
* the oracle map: Λ = softplus(w) per pixel, w started at the best scalar,
  optimised by Adam on the MSE to the clean image (of |x| for MRI, as scored)
  through the solver at T = ``--iters`` (the exact backward of
  ``tvfast.pdhg``). No model could do better on that image with that
  solver, so its gain is the ceiling of a learned Λ.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import tvfast
from tvfast.evaluation.report import machine_name
from tvfast.io.atomic import atomic_write_text
from tvfast.training.evaluate_reconstruction import scalar_search, solver_steps
from tvfast.training.tasks import Task, TaskDataset, task_spec


def _psnr(x: torch.Tensor, clean: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / F.mse_loss(x.float(), clean.float())))


def oracle_map(y, clean, operator, x0, steps: dict, lam0: float, n_iter: int, iters: int, lr: float):
    """Adam on w, Λ = softplus(w), from Λ = lam0; returns (best PSNR, its Λ, PSNR after each step)."""
    w = torch.full_like(x0.real, math.log(math.expm1(lam0))).requires_grad_()
    optimiser = torch.optim.Adam([w], lr=lr)
    best, best_lam, curve = -math.inf, None, []
    for _ in range(iters):
        lam = F.softplus(w)
        x = tvfast.pdhg(y, lam, n_iter, operator=operator, x0=x0, **steps)
        loss = F.mse_loss(x.abs() if x.is_complex() else x, clean)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        psnr = float(10 * torch.log10(1.0 / loss.detach()))
        curve.append(psnr)
        if psnr > best:
            best, best_lam = psnr, lam.detach()
    return best, best_lam, curve


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("ct60", "mri4x"), default="ct60")
    parser.add_argument("--data", required=True)
    parser.add_argument("--limit", type=int, default=6)
    parser.add_argument("--iters", type=int, default=None, help="T of the map and the scalar (default: the task's)")
    parser.add_argument("--converged-iters", type=int, default=512)
    parser.add_argument("--step-balance", type=float, default=30.0,
                        help="mri4x: b of the steps tau = b*s, sigma = s/b (ct60: the default steps)")
    parser.add_argument("--steps", type=int, default=150, help="Adam steps of the oracle map")
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--out", type=Path, required=True, help="Markdown table to write")
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error(f"--limit: expected a positive number of images, got {args.limit}")
    if not args.step_balance > 0:
        parser.error(f"--step-balance: expected a number > 0, got {args.step_balance}")
    spec = task_spec(args.task)  # the evaluation's image size, noise level and T
    if args.iters is None:
        args.iters = spec.n_iter

    ds = TaskDataset(args.data, args.task, size=spec.size, noise_level=spec.eval_noise, train=False, seed=0)
    rows = []
    start_time = time.perf_counter()
    for i in range(min(args.limit, len(ds))):
        item = ds[i]
        clean = item["clean"][None]
        y = item["y"][None]
        batch = {"clean": clean, **({"mask": item["mask"][None]} if "mask" in item else {})}
        operator = Task(args.task, ds).operator(batch, torch.device("cpu"))
        with torch.no_grad():
            x0 = operator.fbp(y) if args.task == "ct60" else operator.adjoint(y)
            steps = solver_steps(operator, x0, args.step_balance)
            scalar = scalar_search(y, clean[0], operator, x0, args.iters, steps)
            converged = scalar_search(y, clean[0], operator, x0, args.converged_iters, steps)
        best, lam, curve = oracle_map(y, clean, operator, x0, steps, scalar["lambda_best_psnr"], args.iters,
                                      args.steps, args.lr)
        start = x0.abs() if x0.is_complex() else x0
        rows.append({"image": ds.files[i].name, "start": _psnr(start, clean), "scalar": scalar["psnr_best"],
                     "lambda": scalar["lambda_best_psnr"], "scalar_converged": converged["psnr_best"],
                     "oracle_map": best, "map_mean": float(lam.mean()), "map_std": float(lam.std()),
                     "last_10_steps_gain": curve[-1] - curve[-11] if len(curve) > 10 else float("nan")})
        print(rows[-1], flush=True)
    minutes = (time.perf_counter() - start_time) / 60
    balance = f", step balance b = {args.step_balance:g}" if args.task == "mri4x" else ""
    lines = [f"# {args.task}: oracle Λ map against the oracle scalar ({len(rows)} test images, {machine_name()}, "
             f"{minutes:.0f} min)", "",
             f"T = {args.iters} for the map and the scalar; the converged scalar uses T = {args.converged_iters}{balance}. "
             f"Map: Adam, {args.steps} steps, lr {args.lr}, on w with Λ = softplus(w), from the best scalar.", "",
             "| image | start | best scalar (T) | λ | best scalar (converged) | oracle map | map − scalar (T) | "
             "map − converged scalar | Λ mean ± std | gain in the last 10 steps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['start']:.2f} | {r['scalar']:.2f} | {r['lambda']:.4g} | "
                     f"{r['scalar_converged']:.2f} | {r['oracle_map']:.2f} | {r['oracle_map'] - r['scalar']:+.2f} | "
                     f"{r['oracle_map'] - r['scalar_converged']:+.2f} | {r['map_mean']:.4g} ± {r['map_std']:.2g} | "
                     f"{r['last_10_steps_gain']:+.3f} |")
    gains = [r["oracle_map"] - r["scalar"] for r in rows]
    gains_c = [r["oracle_map"] - r["scalar_converged"] for r in rows]
    lines += ["", f"Mean: oracle map − scalar (T) {statistics.mean(gains):+.2f} dB (min {min(gains):+.2f}); "
                  f"− converged scalar {statistics.mean(gains_c):+.2f} dB (min {min(gains_c):+.2f})."]
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
