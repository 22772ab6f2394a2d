"""Recipe ablation: several training runs with the same wall-clock budget, judged on validation.

Every recipe is a list of ``tvfast train`` options added to common ones. All
runs start together, each as its own process (on one GPU they share it; give
them equal shares by running them concurrently), each with
``--time-budget-min BUDGET``, so that each fixes its number of epochs — and
its cosine horizon — from its own measured speed after two epochs. The
recipe with the highest best validation PSNR wins.

Outputs in ``--out``:

* ``RECIPE/`` — each run's folder (``best.safetensors``, ``last.pt``, log);
* ``ablation.md`` and ``ablation.json`` — the table: recipe, options,
  epochs, steps, best validation PSNR / SSIM and the epoch it was reached;
* ``curves.png`` — validation PSNR against epoch and against time per recipe.

Usage::

    python experiments/ablation.py --data DATA/train --val DATA/val --out runs/ablation --budget-min 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from tvfast.io.atomic import atomic_write_text
from tvfast.cli.parser import CommandParser

__all__ = ["RECIPES", "run_ablation", "summarise_run", "main"]

# One change at a time along a path ("full" = all of them: cosine schedule, input normalisation,
# flips/rotations, reflect padding before the solve), then crop/batch size and peak learning rate around it.
_COSINE = ["--lr-schedule", "cosine", "--lr", "1e-3", "--warmup-epochs", "5"]
_FULL = _COSINE + ["--normalize-input", "--augment", "--solve-pad", "16"]
RECIPES: dict[str, list[str]] = {
    "constant": ["--recipe", "seed", "--lr", "3e-4"],
    "cosine": _COSINE,
    "cosine-norm": _COSINE + ["--normalize-input"],
    "cosine-norm-aug": _COSINE + ["--normalize-input", "--augment"],
    "full": _FULL,
    "full-crop128-b32": _FULL + ["--patch-size", "128", "--batch-size", "32"],
    "full-b16": _FULL + ["--batch-size", "16"],
    "full-lr3e-3": [a if a != "1e-3" else "3e-3" for a in _FULL],
}


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="python experiments/ablation.py",
        description="Train several recipes with the same time budget and compare them on validation.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True, help="training image folder")
    p.add_argument("--val", required=True, help="validation image folder (selects the winner)")
    p.add_argument("--out", default="runs/ablation", help="output folder")
    p.add_argument("--budget-min", type=float, required=True, help="wall-clock minutes per run")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES), metavar="NAME",
                   help=f"recipes to run, from: {', '.join(RECIPES)}")
    p.add_argument("--batch-size", type=int, default=8, help="batch size unless a recipe sets one")
    p.add_argument("--epochs", type=int, default=2000, help="upper bound on epochs per run")
    p.add_argument("--checkpoint-every", type=int, default=10, help="last.pt interval (epochs)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores / runs)")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                   help="further 'tvfast train' options for every run (put last)")
    return p


def _command(args: argparse.Namespace, name: str) -> list[str]:
    options = RECIPES[name]
    cmd = [sys.executable, "-m", "tvfast.training.train", "--data", args.data, "--val", args.val,
           "--out", str(Path(args.out) / name), "--epochs", str(args.epochs),
           "--time-budget-min", str(args.budget_min), "--checkpoint-every", str(args.checkpoint_every)]
    if "--batch-size" not in options:
        cmd += ["--batch-size", str(args.batch_size)]
    return cmd + options + list(args.extra)


def summarise_run(folder: Path) -> dict:
    """Best validation PSNR / SSIM, epochs and steps of one finished run (from its ``last.pt``)."""
    ckpt = torch.load(folder / "last.pt", map_location="cpu", weights_only=True)
    history = ckpt["history"]
    scored = [h for h in history if h.get("val_psnr") is not None]
    best = max(scored, key=lambda h: h["val_psnr"]) if scored else {}
    return {
        "epochs": len(history),
        "epochs_planned": ckpt.get("epochs_total"),
        "steps": ckpt["global_step"],
        "best_val_psnr": best.get("val_psnr"),
        "best_val_ssim": best.get("val_ssim"),
        "best_epoch": best.get("epoch"),
        "final_val_psnr": scored[-1]["val_psnr"] if scored else None,
        "minutes": history[-1]["elapsed_s"] / 60 if history else 0.0,
        "curve": [(h["epoch"], h["elapsed_s"], h["val_psnr"]) for h in scored],
    }


def _markdown(rows: list[dict], budget: float) -> str:
    lines = [f"Each run: {budget:g} min of wall time, all runs concurrently on one device; "
             "selection on the 8 validation X-rays (relative noise, s ~ U[0.1, 0.5] fixed per image).", "",
             "| recipe | options | epochs | steps | best val PSNR (dB) | SSIM there | at epoch |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: -(r.get("best_val_psnr") or -1e9)):
        if r.get("error"):
            lines.append(f"| {r['recipe']} | `{' '.join(r['options'])}` | – | – | failed: {r['error']} | | |")
            continue
        lines.append(f"| {r['recipe']} | `{' '.join(r['options'])}` | {r['epochs']} | {r['steps']} | "
                     f"{r['best_val_psnr']:.3f} | {r['best_val_ssim']:.4f} | {r['best_epoch']} |")
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for r in rows:
        if r.get("error") or not r["curve"]:
            continue
        epochs, seconds, psnrs = zip(*r["curve"])
        axes[0].plot(epochs, psnrs, label=r["recipe"])
        axes[1].plot([s / 60 for s in seconds], psnrs, label=r["recipe"])
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("minutes")
    for ax in axes:
        ax.set_ylabel("validation PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def run_ablation(args: argparse.Namespace) -> list[dict]:
    """Start every recipe, wait for all, write the table and curves; return the rows (best first)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // len(args.recipes))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    procs = {}
    for name in args.recipes:
        (out / name).mkdir(parents=True, exist_ok=True)
        log = open(out / name / "train.log", "w")  # noqa: SIM115 (closed below)
        procs[name] = (subprocess.Popen(_command(args, name), stdout=log, stderr=subprocess.STDOUT, env=env), log)
        print(f"started {name}: {' '.join(RECIPES[name])}", flush=True)
    t0 = time.monotonic()
    rows = []
    for name, (proc, log) in procs.items():
        rc = proc.wait()
        log.close()
        row = {"recipe": name, "options": RECIPES[name], "returncode": rc}
        try:
            row.update(summarise_run(out / name))
        except (OSError, KeyError, RuntimeError) as exc:
            row["error"] = f"exit {rc}, no checkpoint ({type(exc).__name__})"
        if rc != 0 and "error" not in row:
            row["error"] = f"exit {rc}"
        rows.append(row)
        print(f"{name}: exit {rc} after {(time.monotonic() - t0) / 60:.1f} min, "
              f"best val PSNR {row.get('best_val_psnr')}", flush=True)
    rows.sort(key=lambda r: -(r.get("best_val_psnr") or -1e9))
    atomic_write_text(out / "ablation.md", _markdown(rows, args.budget_min))
    atomic_write_text(out / "ablation.json", json.dumps(
        {"budget_min": args.budget_min, "device": _device_name(), "rows": rows}, indent=1) + "\n")
    _plot(rows, out / "curves.png")
    winner = next((r for r in rows if not r.get("error")), None)
    if winner is not None:
        atomic_write_text(out / "winner.txt", winner["recipe"] + "\n")
    return rows


def _device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    import platform

    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.budget_min > 0:
        parser.error(f"--budget-min must be positive, got {args.budget_min}")
    rows = run_ablation(args)
    print(_markdown(rows, args.budget_min))
    return 0 if any(not r.get("error") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
