"""Evaluate the learned map against the best scalar λ (docs/method.md §6 and §8).

For every test image ``x`` and noise level ``s`` (fixed noise: image ``i``
uses the generator seed ``seed + i``), with ``z = x + s·std(x)·n``:

* **best scalar λ** — solve TV for every λ of a grid (default 81 values in
  [0, 0.8]) as *one* batched ``tvfast.pdhg`` call (``K`` copies of ``z`` with
  a per-batch ``Λ`` of shape ``(K,)``), then take, per image, the λ with the
  highest PSNR and, separately, the λ with the highest SSIM;
* **learned Λ** — ``x_T = tvfast.pdhg(z, Λ_Θ(z))`` with ``LambdaNet`` weights
  from ``--weights``;
* PSNR and SSIM against ``x`` with data range 1 (``skimage.metrics``).

Outputs in ``--out`` (each written atomically):

* ``per_image.csv`` — one row per (image, noise level);
* ``results.md`` — mean ± std (population std) per noise level: noisy, best
  scalar λ, learned Λ, for PSNR and for SSIM;
* ``summary.json`` — the same numbers, machine-readable;
* ``figures/`` — examples, Λ map, PSNR/SSIM-vs-λ curves (for the
  ``--example`` image) and histograms of per-image differences.

Usage::

    python -m tvfast.training.evaluate --data DATA/test --weights W.safetensors --out runs/eval

``--task denoise`` is this evaluation; every other task of the registry
(:data:`tvfast.training.tasks.TASKS`) has its own, which parses the whole
command line: ``sequences`` (:mod:`tvfast.training.evaluate3d`), ``mri4x``
and ``ct60`` (:mod:`tvfast.training.evaluate_reconstruction`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tvfast.cli.parser import CommandParser
from tvfast.device import resolve_device
from tvfast.evaluation.figures import plot_denoising_examples, plot_lambda_map
from tvfast.evaluation.grid_search import lambda_grid_search
from tvfast.models.lambda_net import LambdaNet
from tvfast.evaluation.metrics import psnr, ssim
from tvfast.evaluation.report import machine_name, mean_std, write_results
from tvfast.models.files import pretrained_paths
from tvfast.models.precision import PRECISIONS, resolve_precision
from tvfast.training.data import ImageFolderDataset, list_images
from tvfast.training.figures import plot_lambda_curves, plot_metric_differences
from tvfast.training.tasks import TASKS

__all__ = ["build_parser", "evaluate", "main"]



CSV_COLUMNS = [
    "image", "s",
    "psnr_noisy", "ssim_noisy",
    "lambda_best_psnr", "psnr_best_scalar", "ssim_at_best_psnr_lambda",
    "lambda_best_ssim", "ssim_best_scalar",
    "psnr_learned", "ssim_learned",
    "lambda_learned_mean", "lambda_learned_min", "lambda_learned_max",
]


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the evaluation."""
    p = CommandParser(
        prog="tvfast evaluate",
        description="Compare the learned regularisation map with the best scalar λ per image.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--task", choices=tuple(TASKS), default="denoise",
                   help="denoise: this evaluation; every other task has its own evaluation and options "
                        "(tvfast evaluate --task mri4x --help)")
    p.add_argument("--data", required=True, help="folder of test images (PNG/JPEG/TIFF)")
    p.add_argument("--weights", default=None,
                   help="LambdaNet weights (.safetensors with its .json, or a folder); "
                        "default: the shipped weights")
    p.add_argument("--out", default="runs/evaluate", help="output folder")
    p.add_argument("--noise-levels", type=float, nargs="+", default=[0.5], metavar="S",
                   help="noise levels s to evaluate (relative: z = x + s·std(x)·n)")
    p.add_argument("--noise", choices=("relative", "absolute"), default="relative", help="noise model")
    p.add_argument("--lambda-max", type=float, default=0.8, help="largest scalar λ of the grid")
    p.add_argument("--lambda-steps", type=int, default=81, help="grid size (linspace(0, max, steps))")
    p.add_argument("--grid-batch", type=int, default=None,
                   help="λ values per pdhg call (default: the whole grid in one call)")
    p.add_argument("--iters", type=int, default=256, help="PDHG iterations T (scalar and learned)")
    p.add_argument("--size", type=int, default=256,
                   help="centre-crop and resize images to SIZE×SIZE (0: keep as read)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--seed", type=int, default=0, help="noise of image i is seeded with SEED + i")
    p.add_argument("--example", type=int, default=0, help="index of the image shown in the figures")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="U-Net arithmetic (bf16 autocast where faster, see tvfast.models.precision); the solver is float32")
    return p


def _requested_task(argv: list[str] | None) -> str | None:
    """The value of ``--task`` in ``argv`` (``--task X``, ``--task=X`` or an abbreviation), None without one."""
    pre = CommandParser(prog="tvfast evaluate", add_help=False)
    pre.add_argument("--task", default=None)
    known, _ = pre.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    return known.task


def _summarise(rows: list[dict]) -> dict:
    """Mean and std of each metric, per noise level."""
    out = {}
    for s in sorted({r["s"] for r in rows}):
        rs = [r for r in rows if r["s"] == s]
        out[f"{s:g}"] = {
            "n_images": len(rs),
            **{k: mean_std([r[k] for r in rs]) for k in CSV_COLUMNS[2:]},
            "delta_psnr": mean_std([r["psnr_learned"] - r["psnr_best_scalar"] for r in rs]),
            "delta_ssim": mean_std([r["ssim_learned"] - r["ssim_best_scalar"] for r in rs]),
        }
    return out


def _markdown(summary: dict, args: argparse.Namespace, weights: str, machine: str) -> str:
    lines = [
        "# TV denoising: best scalar λ vs learned Λ",
        "",
        f"Images: `{args.data}`; noise: {args.noise}; grid: {args.lambda_steps} values of λ in "
        f"[0, {args.lambda_max:g}] (best per image, separately for PSNR and SSIM); "
        f"PDHG T = {args.iters}; weights: `{weights}`; machine: {machine}. Mean ± std over images.",
        "",
    ]
    for s, m in summary.items():
        def f(key, digits):
            mu, sd = m[key]
            return f"{mu:.{digits}f} ± {sd:.{digits}f}"

        lines += [
            f"## s = {s} ({m['n_images']} images)",
            "",
            "| metric | noisy | best scalar λ | learned Λ | learned − scalar |",
            "|---|---:|---:|---:|---:|",
            f"| PSNR (dB) | {f('psnr_noisy', 2)} | {f('psnr_best_scalar', 2)} | {f('psnr_learned', 2)} "
            f"| {f('delta_psnr', 2)} |",
            f"| SSIM | {f('ssim_noisy', 4)} | {f('ssim_best_scalar', 4)} | {f('ssim_learned', 4)} "
            f"| {f('delta_ssim', 4)} |",
            "",
            f"Best scalar λ: {f('lambda_best_psnr', 3)} (PSNR), {f('lambda_best_ssim', 3)} (SSIM); "
            f"learned Λ mean {f('lambda_learned_mean', 3)}.",
            "",
        ]
    return "\n".join(lines)


def evaluate(args: argparse.Namespace, default_weights: str | None = None) -> dict:
    """Run the evaluation described by ``args`` (see :func:`build_parser`).

    Returns
    -------
    dict
        ``{"summary": per-noise-level means and stds, "rows": per-image rows,
        "files": written paths}``.
    """
    weights = args.weights or default_weights
    if weights is None:
        raise ValueError("no weights given: pass --weights PATH")
    device = resolve_device(args.device)
    model = LambdaNet.load_pretrained(weights, map_location=device).eval()
    model.set_precision(resolve_precision(args.precision, device))
    lambdas = torch.linspace(0.0, args.lambda_max, args.lambda_steps, dtype=torch.float32)
    out = Path(args.out)
    fig_dir = out / "figures"
    files: list[Path] = []
    rows: list[dict] = []

    for s in args.noise_levels:
        ds = ImageFolderDataset(args.data, size=args.size or None, noise=args.noise,
                                noise_level=s, train=False, seed=args.seed)
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        example = min(max(args.example, 0), n - 1)
        level_rows = []
        for i in tqdm(range(n), desc=f"s = {s:g}", dynamic_ncols=True):
            item = ds[i]
            clean, z = item["clean"], item["noisy"]
            zd = z.to(device)
            p_grid, s_grid, x_psnr, _ = lambda_grid_search(zd, clean, lambdas, args.iters, args.grid_batch,
                                                           tv=model.tv)
            kp, ks = int(np.argmax(p_grid)), int(np.argmax(s_grid))
            with torch.no_grad():
                x_learned, lam = model.denoise(zd[None], args.iters)
                x_learned = x_learned[0, 0].cpu()
            lam = lam[0].cpu()
            row = {
                "image": ds.files[i].name, "s": float(s),
                "psnr_noisy": psnr(clean, z), "ssim_noisy": ssim(clean, z),
                "lambda_best_psnr": float(lambdas[kp]), "psnr_best_scalar": float(p_grid[kp]),
                "ssim_at_best_psnr_lambda": float(s_grid[kp]),
                "lambda_best_ssim": float(lambdas[ks]), "ssim_best_scalar": float(s_grid[ks]),
                "psnr_learned": psnr(clean, x_learned), "ssim_learned": ssim(clean, x_learned),
                "lambda_learned_mean": float(lam.mean()), "lambda_learned_min": float(lam.min()),
                "lambda_learned_max": float(lam.max()),
            }
            level_rows.append(row)
            if i == example and not args.no_figures:
                tag, name = f"s{s:g}", ds.files[i].name
                files.append(plot_denoising_examples(
                    clean[0].numpy(), z[0].numpy(), x_psnr.numpy(), x_learned.numpy(),
                    {"noisy": (row["psnr_noisy"], row["ssim_noisy"]),
                     "scalar": (row["psnr_best_scalar"], row["ssim_at_best_psnr_lambda"]),
                     "learned": (row["psnr_learned"], row["ssim_learned"])},
                    fig_dir / f"examples_{tag}.png", lam_scalar=row["lambda_best_psnr"], name=name))
                files.append(plot_lambda_map(lam[0].numpy() if lam.shape[0] == 1 else lam.numpy(),
                                             fig_dir / f"lambda_map_{tag}.png", name=name))
                files.append(plot_lambda_curves(
                    lambdas.numpy(), p_grid, s_grid, fig_dir / f"lambda_curves_{tag}.png",
                    learned=(row["psnr_learned"], row["ssim_learned"]), name=name))
        if not args.no_figures:
            files.append(plot_metric_differences(
                [r["psnr_learned"] - r["psnr_best_scalar"] for r in level_rows],
                [r["ssim_learned"] - r["ssim_best_scalar"] for r in level_rows],
                fig_dir / f"differences_s{s:g}.png", title=f"s = {s:g}, {n} images"))
        rows += level_rows

    summary = _summarise(rows)
    machine = machine_name()
    write_results(out, tables={"per_image.csv": (rows, CSV_COLUMNS)},
                  markdown=_markdown(summary, args, str(weights), machine),
                  summary={"weights": str(weights), "iters": args.iters,
                           "lambda_grid": [0.0, args.lambda_max, args.lambda_steps], "noise": args.noise,
                           "seed": args.seed, "machine": machine, "device": str(device), "levels": summary})
    files += [out / "per_image.csv", out / "results.md", out / "summary.json"]
    for s, m in summary.items():
        tqdm.write(f"s = {s}: PSNR noisy {m['psnr_noisy'][0]:.2f}, best scalar {m['psnr_best_scalar'][0]:.2f}, "
                   f"learned {m['psnr_learned'][0]:.2f} dB; SSIM {m['ssim_noisy'][0]:.4f}, "
                   f"{m['ssim_best_scalar'][0]:.4f}, {m['ssim_learned'][0]:.4f}")
    return {"summary": summary, "rows": rows, "files": files}


def main(argv: list[str] | None = None, *, default_weights: str | None = None) -> int:
    """Entry point of ``python -m tvfast.training.evaluate`` and ``tvfast evaluate``.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).
    default_weights : str, optional
        Weights used when ``--weights`` is not given (the CLI passes the
        shipped weights).
    """
    task = _requested_task(argv)
    if task is not None and task != "denoise" and task in TASKS:  # the task's own evaluation and options
        return TASKS[task].evaluate(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    weights = args.weights or default_weights
    if weights is None:
        parser.error("--weights is required (no default weights available)")
    wfile, cfile = pretrained_paths(weights)
    for f in (wfile, cfile):
        if not f.is_file():
            parser.error(f"weights file not found: {str(f)!r}")
    try:
        list_images(args.data)
    except (OSError, ValueError) as exc:
        parser.error(f"--data: {exc}")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if args.lambda_steps < 1 or args.lambda_max < 0:
        parser.error("need --lambda-steps >= 1 and --lambda-max >= 0")
    if args.iters < 0:
        parser.error("--iters must be >= 0")
    try:
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    evaluate(args, default_weights=default_weights)
    return 0


def command_main(argv: list[str] | None = None) -> int:
    """``tvfast evaluate``: :func:`main` with the shipped weights as the default ``--weights``."""
    from tvfast.models.pretrained import pretrained_weights_path

    return main(argv, default_weights=str(pretrained_weights_path()))


if __name__ == "__main__":
    sys.exit(main())
