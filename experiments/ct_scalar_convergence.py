"""The best scalar λ on ct60 at several PDHG steps and T: is the CT scalar problem solved, and does solving it help?

    python experiments/ct_scalar_convergence.py --data ../shared/data/chest_xray/test --limit 3 \
        --out experiments/results/ct60_scalar_convergence.md

For each of the first ``--limit`` test images, simulated as ``tvfast evaluate --task ct60`` simulates
them (128², 60 views, s = 0.02, image i from seed i, FBP start), and for each setting (b, T) of
``--settings``, the oracle best scalar λ (a ``--coarse``-value log grid over [10⁻⁴, 0.3] refined by
``--fine`` values around its best, against the clean image) solved with τ = b·s, σ = s/b,
s = 0.99/√(‖A‖² + 8) (the evaluation's steps, ``solver_steps``; ‖A‖ = 1, the operator is normalised). The last setting is the reference, taken
as the minimiser: its best PSNR and the difference of every other setting's best PSNR to it are
reported. b = 1 is the default step of ``tvfast.pdhg`` and of the ct60 model. The table is written
atomically.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from tvfast.evaluation.metrics import psnr
from tvfast.evaluation.report import machine_name
from tvfast.io.atomic import atomic_write_text
from tvfast.training.evaluate_reconstruction import scalar_search, solver_steps
from tvfast.training.tasks import TASKS, Task, TaskDataset


def _setting(text: str) -> tuple[float, int]:
    try:
        balance, iters = text.split(":")
        b, T = float(balance), int(iters)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected B:T such as 10:512, got {text!r}") from None
    if not (b > 0 and T >= 1):
        raise argparse.ArgumentTypeError(f"expected b > 0 and T >= 1, got {text!r}")
    return b, T


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of clean test images")
    parser.add_argument("--limit", type=int, default=3, help="the first N images (sorted by name)")
    parser.add_argument("--settings", type=_setting, nargs="+",
                        default=[(1, 128), (1, 256), (1, 512), (3, 512), (10, 256), (10, 512), (10, 2048)],
                        help="B:T pairs; the last one is the reference")
    parser.add_argument("--coarse", type=int, default=13)
    parser.add_argument("--fine", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error(f"--limit: expected >= 1, got {args.limit}")
    if not args.data.is_dir():
        parser.error(f"--data: not a folder: {args.data}")

    start = time.perf_counter()
    spec = TASKS["ct60"]
    ds = TaskDataset(args.data, "ct60", size=spec.size, noise_level=spec.eval_noise, train=False, seed=0)
    task = Task("ct60", ds)
    settings = args.settings
    *others, reference = settings
    header = ("| image | FBP | " + " | ".join(f"b = {b:g}, T = {T}" for b, T in settings) + " |\n"
              "|---|---:|" + "---:|" * len(settings) + "\n")
    rows, diffs = [], {s: [] for s in others}
    for i in range(min(args.limit, len(ds))):
        item = ds[i]
        clean, y = item["clean"][None], item["y"][None]
        operator = task.operator({"clean": clean}, torch.device("cpu"))
        with torch.no_grad():
            x0 = operator.fbp(y)
            fbp = psnr(clean, x0)
            best = {}
            for b, T in settings:
                found = scalar_search(y, clean, operator, x0, T, solver_steps(operator, x0, b),
                                      coarse_steps=args.coarse, fine_steps=args.fine)
                best[(b, T)] = (found["psnr_best"], found["lambda_best_psnr"])
        ref = best[reference][0]
        cells = []
        for setting in settings:
            p, lam = best[setting]
            if setting == reference:
                cells.append(f"{p:.2f} (λ {lam:.2g})")
            else:
                diffs[setting].append(p - ref)
                cells.append(f"{p - ref:+.2f} (λ {lam:.2g})")
        rows.append(f"| `{ds.files[i].name}` | {fbp:.2f} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    mean_row = ("| **mean difference** | | " + " | ".join(f"**{np.mean(diffs[s]):+.2f}**" for s in others)
                + " | reference |")
    elapsed = time.perf_counter() - start
    b_ref, t_ref = reference
    text = ("# ct60: the best scalar λ at each PDHG step balance b and T\n\n"
            f"Best PSNR over λ (dB) for each setting minus that of the reference (b = {b_ref:g}, T = {t_ref}, "
            "in its column as PSNR); in brackets the best λ. Steps τ = b·s, σ = s/b, s = 0.99/√9. ct60 "
            "simulation (128², 60 views, s = 0.02, image i from seed i), FBP start; "
            f"λ grid: {args.coarse} log-spaced values in [10⁻⁴, 0.3], then {args.fine} around the best.\n\n"
            + header + "\n".join(rows) + "\n" + mean_row + "\n\n"
            f"Machine: {machine_name()}; {elapsed:.0f} s. Command: `python experiments/ct_scalar_convergence.py "
            f"--data {args.data} --limit {args.limit} --out {args.out}`.\n")
    atomic_write_text(args.out, text)
    print(f"wrote {args.out} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
