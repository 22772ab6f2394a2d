"""Evaluate a learned Λ map for reconstruction (simulated 4× MRI, 60-view CT) against the oracle scalar λ.

Protocol, for a folder of clean test images and a ``ReconstructionNet``
(``--weights``) of the task's kind (``"mri"`` for ``mri4x``, ``"ct"`` for
``ct60``):

* **Data.** Image ``i`` of the sorted folder (the first ``--limit``) is
  centre-cropped and resized to ``--size`` (default 256 for ``mri4x``, 128
  for ``ct60``) and simulated by :class:`tvfast.training.tasks.TaskDataset`
  with ``train=False``: a generator seeded ``seed + i`` draws everything
  (MRI: the 4× row mask, the smooth phase, the noise; CT: the noise), at the
  task's evaluation level (the registry's ``eval_noise``: s = 0.05 for ``mri4x``, s = 0.02
  for ``ct60``). Same seed, same data, in every run and for every model.
* **Start x₀** — the model's own start ``model.start(y, A)``: the
  zero-filled image Aᴴy (MRI, scored as |x₀|) or the filtered
  back-projection (CT).
* **Learned Λ** — ``x_T, Λ_Θ, x₀ = model.solve(y, A, n_iter=T)``.
* **Oracle best scalar λ** — per image, TV reconstructions
  ``tvfast.pdhg(y, λ, T_s, operator=A, x0=x₀)`` with T_s = T
  (``--scalar-iters`` sets another, e.g. 512 to compare against the scalar
  problem solved closer to convergence), the model's step sizes (MRI:
  τ = b·s, σ = s/b with s = 0.99/√(‖A‖² + 8), ‖A‖ from the mask and b the
  model's ``step_balance``, :func:`~tvfast.models.reconstruction_net.mri_steps`;
  ``--scalar-step-balance`` sets another b, and b = 30 with T_s = 512 solves
  the scalar problem to within 0.1 dB of its minimiser for λ ≥ 3·10⁻⁴; CT:
  s from the power iteration of :func:`tvfast.pdhg` on the model's start,
  τ = σ = s for the model and ``--scalar-step-balance`` b again for the
  scalar, where b = 10 with T_s = 512 is within 0.01 dB of the minimiser's
  best PSNR, experiments/results/ct60_scalar_convergence.md) and the
  *same* start x₀ as the model; λ is chosen against the clean image, so it
  is an upper bound for any scalar-λ method. The search: a coarse grid of
  ``--lambda-steps`` (25) log-spaced values in [``--lambda-min``,
  ``--lambda-max``] = [1e-4, 0.3], then ``--fine-steps`` (8) log-spaced
  values strictly between the neighbours of the coarse grid's PSNR-best
  value; each grid is solved as *one* batched ``tvfast.pdhg`` call (``K``
  copies of y and x₀, Λ of shape ``(K,)``, the operator broadcasting over
  them; ``--grid-batch`` splits it), the default call. The reported λ
  is the PSNR-best of all values solved; the SSIM at that λ is reported
  with it, and the SSIM-best λ separately. When the PSNR-best λ is the
  smallest or the largest value of the coarse grid, the image is listed as
  a warning in ``results.md`` and ``summary.json`` (widen the grid).
* **Metrics** — PSNR and SSIM (data range 1,
  :mod:`tvfast.evaluation.metrics`) of |x̂| (MRI) or x̂ (CT) against the clean
  image; the gain is learned − best scalar PSNR.

Outputs in ``--out`` (each file written atomically):

* ``per_image.csv`` — one row per image: :data:`CSV_COLUMNS`;
* ``lambda_grid.csv`` — every λ solved per image: ``image, stage, lambda,
  psnr, ssim`` (stage ``coarse`` or ``fine``);
* ``results.md`` — mean ± std (population std) over the images of start,
  best scalar λ and learned Λ, for PSNR and SSIM; the PSNR gain (mean ±
  std, min, max, share of images where the learned Λ beats the best scalar
  λ); the setting (task, T, size, noise level, images, grid, machine, torch,
  wall time);
* ``summary.json`` — the same, machine-readable;
* ``figures/`` — ``example_NN_NAME.png`` for the first ``--examples`` images
  (clean | start | best scalar λ | learned Λ | the Λ map with a colour bar)
  and ``gain_histogram.png`` (per-image PSNR gains); needs matplotlib (the
  ``[figures]`` extra), skipped with ``--no-figures``.

Usage::

    tvfast evaluate --task mri4x --data DATA/test --weights runs/mri/best.safetensors --out runs/eval_mri
    tvfast evaluate --task ct60 --data DATA/test --weights runs/ct/best.safetensors --limit 20 --iters 128
    python -m tvfast.training.evaluate_reconstruction --task mri4x ...   (the same)
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tvfast.cli.parser import CommandParser
from tvfast.device import resolve_device
from tvfast.evaluation.grid_search import image_scores, log_grid, oracle_search, scored_image
from tvfast.evaluation.report import mean_std, processor_name, write_results
from tvfast.models.files import read_model_config, weights_digest
from tvfast.models.reconstruction_net import FORMAT, ReconstructionNet, mri_steps
from tvfast.physics.linear import operator_norm
from tvfast.solver.arguments import operator_step
from tvfast.training.data import list_images
from tvfast.training.tasks import RECONSTRUCTION_TASKS, TASKS, Task, TaskDataset

__all__ = ["CSV_COLUMNS", "GRID_COLUMNS", "build_parser", "evaluate", "main",
           "solver_steps", "scalar_search"]

CSV_COLUMNS = [
    "image", "s",
    "psnr_start", "ssim_start",
    "lambda_best_psnr", "psnr_best_scalar", "ssim_at_best_psnr_lambda",
    "lambda_best_ssim", "ssim_best_scalar",
    "psnr_learned", "ssim_learned",
    "gain_psnr",
    "lambda_learned_mean",
    "lambda_at_edge",
]
GRID_COLUMNS = ["image", "stage", "lambda", "psnr", "ssim"]


# ----------------------------------------------------------------------------- solving and scoring
def solver_steps(operator, x0: torch.Tensor, balance: float = 1.0) -> dict:
    """τ and σ as a model's ``solve`` gets them for one image with start ``x0`` (1, 1, H, W).

    MRI (:class:`~tvfast.physics.MaskedFFT`): τ = b·s, σ = s/b with b = ``balance``
    (:func:`~tvfast.models.reconstruction_net.mri_steps`). Other
    operators: s = 0.99/√(‖A‖² + 8), the default of :func:`tvfast.pdhg` (b = 1), with
    ‖A‖ the power iteration on x0's shape that ``pdhg`` runs (and caches in
    the operator) for the model's one-image call — computed here once, so
    that a batch of K copies gets exactly the same steps rather than a power
    iteration started from a (K, …) random vector — and τ = b·s, σ = s/b.
    """
    steps = mri_steps(operator, balance)
    if steps:
        return steps
    with torch.no_grad():
        norm = operator_norm(operator, x0)
    step = operator_step(norm, x0.dim() - 2)
    return {"tau": step * balance, "sigma": step / balance}


def scalar_search(y: torch.Tensor, clean: torch.Tensor, operator, x0: torch.Tensor, n_iter: int, steps: dict, *,
                  lambda_min: float = 1e-4, lambda_max: float = 0.3, coarse_steps: int = 25, fine_steps: int = 8,
                  batch: int | None = None, compile: bool | None = None, backend: str = "auto") -> dict:
    """The oracle scalar λ of one image (:func:`tvfast.evaluation.grid_search.oracle_search`): a coarse log
    grid, then ``fine_steps`` values log-spaced around its PSNR-best value.

    Returns a dict: ``lambdas``, ``psnr``, ``ssim``, ``stage`` (arrays over every λ solved, sorted by
    λ; stage "coarse" or "fine"), ``lambda_best_psnr``, ``psnr_best``, ``ssim_at_best_psnr``,
    ``lambda_best_ssim``, ``ssim_best``, ``at_edge`` (the PSNR-best λ is the first or last value of the
    coarse grid) and ``image`` (the PSNR-best reconstruction, x's dtype, (1, 1, H, W)).
    """
    coarse = log_grid(lambda_min, lambda_max, coarse_steps)
    found = oracle_search(y, clean, coarse, n_iter, operator=operator, x0=x0, refine=fine_steps, batch=batch,
                          options={**steps, "compile": compile, "backend": backend})
    order = np.argsort(found.candidates, kind="stable")
    lambdas = np.asarray([float(np.float32(v)) for v in found.candidates[order]])
    p_all, s_all = found.psnr[order], found.ssim[order]
    stage = ["coarse" if found.stage[i] == "grid" else "fine" for i in order]
    kp, ks = int(np.argmax(p_all)), int(np.argmax(s_all))
    edge_values = (float(np.float32(coarse[0])), float(np.float32(coarse[-1])))
    return {
        "lambdas": lambdas, "psnr": p_all, "ssim": s_all, "stage": stage,
        "lambda_best_psnr": float(lambdas[kp]), "psnr_best": float(p_all[kp]), "ssim_at_best_psnr": float(s_all[kp]),
        "lambda_best_ssim": float(lambdas[ks]), "ssim_best": float(s_all[ks]),
        "at_edge": float(lambdas[kp]) in edge_values,
        "image": found.image_psnr[None],
    }


# ----------------------------------------------------------------------------- command line
_EXAMPLES = """examples:
  tvfast evaluate --task mri4x --data test/ --weights runs/mri/best.safetensors --out eval_mri/
  tvfast evaluate --task ct60 --data test/ --weights runs/ct/best.safetensors --limit 20 --iters 128

Writes per_image.csv, lambda_grid.csv, results.md, summary.json and figures/
in --out. Image i is simulated with the seed SEED + i at the task's evaluation
noise level (mri4x s = 0.05, ct60 s = 0.02) unless --noise-level is given."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Defaults shown in the help where an option has one worth showing (not None or False)."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = not any(action.default is v for v in (None, False, argparse.SUPPRESS))
        if shown and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the reconstruction evaluation."""
    p = CommandParser(
        prog="tvfast evaluate",
        description="Compare a learned Λ map for reconstruction (simulated 4× MRI or 60-view CT)\n"
                    "with the oracle best scalar λ per image (same start; T and steps the model's unless --scalar-iters, --scalar-step-balance).",
        epilog=_EXAMPLES,
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--task", required=True, choices=RECONSTRUCTION_TASKS,
                   help="; ".join(f"{name}: {TASKS[name].description}" for name in RECONSTRUCTION_TASKS).replace("%", "%%"))
    p.add_argument("--data", required=True, help="folder of clean test images (PNG/JPEG/TIFF)")
    p.add_argument("--weights", default=None,
                   help="ReconstructionNet of the task (.safetensors with its .json, from tvfast train --task); "
                        "default: the task's shipped weights, where there are some")
    p.add_argument("--out", default=None, help="output folder (default runs/evaluate_TASK)")
    p.add_argument("--size", type=int, default=None,
                   help="centre-crop and resize images to SIZE×SIZE (default 256 for mri4x, 128 for ct60)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (sorted by name)")
    p.add_argument("--iters", type=int, default=None,
                   help="PDHG iterations T for the learned model and the scalar baseline (default: the model's)")
    p.add_argument("--scalar-iters", type=int, default=None,
                   help="PDHG iterations of the scalar baseline (default: --iters); more than the model's, such as "
                        "512, measures the gain against the scalar problem solved closer to convergence")
    p.add_argument("--scalar-step-balance", type=float, default=None, metavar="B",
                   help="the scalar baseline's steps tau = B*s, sigma = s/B, s = 0.99/sqrt(|A|^2 + 8) (default: the "
                        "model's, 30 for the shipped mri4x, 1 for ct60); with --scalar-iters 512, B = 30 solves the "
                        "mri4x scalar problem to within 0.1 dB of its minimiser for lambda >= 3e-4 and B = 10 the "
                        "ct60 one, which tau = sigma needs thousands of iterations for")
    p.add_argument("--seed", type=int, default=0, help="the data of image i are simulated with the seed SEED + i")
    p.add_argument("--noise-level", type=float, default=None, metavar="S",
                   help="noise level s of the simulated data, σ = s·std(x) "
                        "(default: the task's evaluation level, 0.05 for mri4x, 0.02 for ct60)")
    p.add_argument("--examples", type=int, default=3, help="example figures for the first N images")
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument("--lambda-min", type=float, default=1e-4, help="smallest λ of the coarse log grid")
    p.add_argument("--lambda-max", type=float, default=0.3, help="largest λ of the coarse log grid")
    p.add_argument("--lambda-steps", type=int, default=25, help="values of the coarse log grid")
    p.add_argument("--fine-steps", type=int, default=8,
                   help="log-spaced values between the neighbours of the best coarse λ (0: no refinement)")
    p.add_argument("--grid-batch", type=int, default=None,
                   help="λ values per pdhg call (default: a whole grid in one call)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    return p


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """Usage errors as one line naming the argument; returns the weights' configuration."""
    try:
        list_images(args.data)
    except (OSError, ValueError) as exc:
        parser.error(f"--data: {exc}")
    spec = TASKS[args.task]
    if args.weights is None:
        if spec.weights is None:
            parser.error(f"--weights: no weights of the {args.task} task are shipped; give the ones of a run "
                         f"(tvfast train --task {args.task})")
        from tvfast.models.pretrained import pretrained_weights_path

        args.weights = str(pretrained_weights_path(spec.weights))
    try:
        _, config = read_model_config(args.weights, (FORMAT,))
    except FileNotFoundError as exc:
        parser.error(f"--weights: {exc}")
    except ValueError as exc:
        parser.error(f"--weights {args.weights}: not a ReconstructionNet model file ({exc})")
    wanted = spec.operator
    if config.get("task") != wanted:
        other = {TASKS[t].operator: t for t in RECONSTRUCTION_TASKS}.get(config.get("task"), "?")
        parser.error(f"--weights {args.weights}: a model for the {config.get('task')!r} task (--task {other}); "
                     f"--task {args.task} needs a {wanted!r} model")
    for flag, value, minimum in (("--size", args.size, 1), ("--limit", args.limit, 1), ("--iters", args.iters, 1),
                                 ("--scalar-iters", args.scalar_iters, 1), ("--seed", args.seed, 0),
                                 ("--examples", args.examples, 0),
                                 ("--lambda-steps", args.lambda_steps, 1), ("--fine-steps", args.fine_steps, 0),
                                 ("--grid-batch", args.grid_batch, 1)):
        if value is not None and value < minimum:
            parser.error(f"{flag} must be >= {minimum}, got {value}")
    if args.scalar_step_balance is not None:
        if not (math.isfinite(args.scalar_step_balance) and args.scalar_step_balance > 0):
            parser.error(f"--scalar-step-balance: expected a finite number > 0, got {args.scalar_step_balance:g}")
    if args.noise_level is not None and not (math.isfinite(args.noise_level) and args.noise_level >= 0):
        parser.error(f"--noise-level: expected a finite number >= 0, got {args.noise_level:g}")
    if not (0 < args.lambda_min <= args.lambda_max and math.isfinite(args.lambda_max)):
        parser.error(f"--lambda-min, --lambda-max: need 0 < min <= max, got {args.lambda_min:g} and "
                     f"{args.lambda_max:g}")
    try:
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.no_figures:
        from tvfast.extras import MissingExtraError, require

        try:
            require("matplotlib.figure", "tvfast evaluate figures")
        except MissingExtraError as exc:
            parser.error(f"{exc} (or pass --no-figures)")
    return config


# ----------------------------------------------------------------------------- outputs
def _summarise(rows: list[dict]) -> dict:
    keys = [c for c in CSV_COLUMNS[2:] if c not in ("gain_psnr", "lambda_at_edge")]
    gains = np.asarray([r["gain_psnr"] for r in rows], dtype=np.float64)
    return {
        **{k: mean_std([r[k] for r in rows]) for k in keys},
        "gain_psnr": {"mean": float(gains.mean()), "std": float(gains.std()), "min": float(gains.min()),
                      "max": float(gains.max()), "learned_better": int((gains > 0).sum()),
                      "share_learned_better": float((gains > 0).mean())},
        "gain_ssim": mean_std([r["ssim_learned"] - r["ssim_best_scalar"] for r in rows]),
    }


def _markdown(summary: dict, meta: dict) -> str:
    m = summary

    def f(key, digits):
        mu, sd = m[key]
        return f"{mu:.{digits}f} ± {sd:.{digits}f}"

    g = m["gain_psnr"]
    n = meta["n_images"]
    grid = meta["grid"]
    timing = meta["timing"]
    lines = [
        f"# Reconstruction ({meta['task']}): oracle best scalar λ vs learned Λ",
        "",
        f"{meta['description']}, from the images in `{meta['data']}`. "
        f"Mean ± std (population) over {n} image{'s' if n != 1 else ''}; PSNR/SSIM of "
        f"{'|x̂|' if meta['task'] == 'mri4x' else 'x̂'} against the clean image (data range 1).",
        "",
        f"| metric | start: {meta['start']} | best scalar λ (oracle) | learned Λ |",
        "|---|---:|---:|---:|",
        f"| PSNR (dB) | {f('psnr_start', 2)} | {f('psnr_best_scalar', 2)} | {f('psnr_learned', 2)} |",
        f"| SSIM | {f('ssim_start', 4)} | {f('ssim_at_best_psnr_lambda', 4)} | {f('ssim_learned', 4)} |",
        "",
        "| PSNR gain, learned − best scalar (dB) | mean ± std | min | max | learned better |",
        "|---|---:|---:|---:|---:|",
        f"| per image | {g['mean']:.2f} ± {g['std']:.2f} | {g['min']:.2f} | {g['max']:.2f} | "
        f"{g['learned_better']}/{n} ({100 * g['share_learned_better']:.0f} %) |",
        "",
        f"Best scalar λ (PSNR): {f('lambda_best_psnr', 5)}; SSIM-best scalar λ: {f('lambda_best_ssim', 5)} "
        f"(SSIM {f('ssim_best_scalar', 4)}); learned Λ, mean over the image: {f('lambda_learned_mean', 5)}. "
        f"The SSIM of the best scalar column is at the PSNR-best λ.",
        "",
    ]
    if meta["lambda_at_edge"]:
        names = ", ".join(f"`{x}`" for x in meta["lambda_at_edge"])
        lines += [f"**Warning:** the PSNR-best λ is at the edge of the grid [{grid['lambda_min']:g}, "
                  f"{grid['lambda_max']:g}] for {len(meta['lambda_at_edge'])} image(s): {names}; the oracle may be "
                  "better outside it (widen --lambda-min / --lambda-max).", ""]
    lines += [
        "| setting | value |",
        "|---|---|",
        f"| task | {meta['task']} ({meta['model_task']} model `{meta['weights']}`) |",
        f"| PDHG iterations T | learned Λ {meta['iters']}, scalar λ {meta.get('scalar_iters', meta['iters'])} |",
        f"| image size | {meta['size']}×{meta['size']} |",
        f"| data | {meta['data_shape']} |",
        f"| noise level s | {meta['noise_level']:g} |",
        f"| images | {n} (seeds {meta['seed']}…{meta['seed'] + n - 1}) |",
        f"| oracle grid | {grid['coarse_steps']} log-spaced λ in [{grid['lambda_min']:g}, {grid['lambda_max']:g}], "
        f"then {grid['fine_steps']} between the neighbours of the best; per image, against the clean image |",
        f"| steps of the scalar baseline | {meta['steps']} ("
        + ("the model's" if meta["scalar_step_balance"] == meta["model_step_balance"]
           else f"b = {meta['scalar_step_balance']:g}; the model's b = {meta['model_step_balance']:g}")
        + ") |",
        f"| machine | {meta['machine']['processor']} ({meta['machine']['node']}), device {meta['device']}, "
        f"torch {meta['machine']['torch']} |",
        f"| wall time | {timing['wall_s']:.1f} s ({timing['per_image_s']:.2f} s per image; first image "
        f"{timing['first_image_s']:.2f} s including any compilation, later images median "
        f"{timing['later_median_s']:.2f} s) |",
        "",
    ]
    return "\n".join(lines)


def _plot_example(path: Path, name: str, clean, start, scalar, learned, lam, row: dict, task: str) -> Path:
    from tvfast.evaluation.figures import save_figure
    from tvfast.extras import require

    Figure = require("matplotlib.figure", "tvfast evaluate figures").Figure
    fig = Figure(figsize=(16, 3.6))
    axes = fig.subplots(1, 5)
    panels = [
        (clean, "clean"),
        (start, "{}  {:.2f} dB / {:.3f}".format("|Aᴴy| zero-filled" if TASKS[task].operator == "mri" else TASKS[task].start,
                                                 row["psnr_start"], row["ssim_start"])),
        (scalar, "best scalar λ={:.2g}  {:.2f} dB / {:.3f}".format(
            row["lambda_best_psnr"], row["psnr_best_scalar"], row["ssim_at_best_psnr_lambda"])),
        (learned, "learned Λ  {:.2f} dB / {:.3f}".format(row["psnr_learned"], row["ssim_learned"])),
    ]
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    im = axes[4].imshow(lam, cmap="viridis", interpolation="nearest")
    two = lam.shape[1] > lam.shape[0] * 1.5  # directional: the ∂_H and ∂_W maps side by side
    axes[4].set_title(f"Λ{' (∂_H | ∂_W)' if two else ''}, mean {row['lambda_learned_mean']:.2g}", fontsize=9)
    axes[4].set_axis_off()
    fig.colorbar(im, ax=axes[4], fraction=0.046, pad=0.04)
    fig.suptitle(f"{name}  ({task}, PSNR / SSIM)", fontsize=10)
    return save_figure(fig, path)


def _plot_gains(path: Path, gains: list[float], title: str) -> Path:
    from tvfast.evaluation.figures import save_figure
    from tvfast.extras import require

    Figure = require("matplotlib.figure", "tvfast evaluate figures").Figure
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    g = np.asarray(gains, dtype=np.float64)
    ax.hist(g, bins=max(5, min(40, g.size)), color="tab:blue")
    ax.axvline(0.0, color="black", lw=1)
    ax.axvline(float(g.mean()), color="tab:red", ls="--", lw=1, label=f"mean {g.mean():.2f} dB")
    ax.set_xlabel("PSNR gain, learned Λ − best scalar λ (dB)")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).stem)


# ----------------------------------------------------------------------------- the evaluation
def evaluate(args: argparse.Namespace) -> dict:
    """Run the evaluation described by ``args`` (see :func:`build_parser` and the module docstring).

    Returns
    -------
    dict
        ``{"summary": means and stds, "rows": per-image rows, "meta": the setting, "files": written paths}``.
    """
    t_begin = time.perf_counter()
    device = resolve_device(args.device)
    model = ReconstructionNet.load_pretrained(args.weights, map_location=device).eval()
    spec = TASKS[args.task]
    if model.task != spec.operator:
        raise ValueError(f"--weights {args.weights}: a {model.task!r} model, --task {args.task} needs "
                         f"{spec.operator!r}")
    T = model.n_iter if args.iters is None else args.iters
    T_scalar = T if args.scalar_iters is None else args.scalar_iters
    scalar_balance = model.step_balance if args.scalar_step_balance is None else args.scalar_step_balance
    size = args.size or spec.size
    out = Path(args.out or f"runs/evaluate_{args.task}")
    fig_dir = out / "figures"
    figures = not args.no_figures
    noise_level = spec.eval_noise if args.noise_level is None else args.noise_level
    ds = TaskDataset(args.data, args.task, size=size, noise_level=noise_level, train=False, seed=args.seed)
    n = len(ds) if args.limit is None else min(args.limit, len(ds))

    files: list[Path] = []
    rows: list[dict] = []
    grid_rows: list[dict] = []
    times: list[float] = []
    steps_used = None
    data_shape = None
    progress = tqdm(range(n), desc=f"{args.task} T={T}" + (f", scalar {T_scalar}" if T_scalar != T else ""), unit="image", dynamic_ncols=True)
    for i in progress:
        t0 = time.perf_counter()
        item = ds[i]
        name = ds.files[i].name
        clean = item["clean"]
        y = item["y"][None].to(device)
        data_shape = ("k-space {}×{}, 4× rows" if spec.operator == "mri" else "sinogram {}×{} (views × bins)").format(
            *item["y"].shape[-2:])
        operator = Task(args.task, ds).operator({"mask": item["mask"][None]} if "mask" in item
                                                else {"clean": clean[None]}, device)
        with torch.no_grad():
            x0 = model.start(y, operator)
            steps = solver_steps(operator, x0, scalar_balance)
            steps_used = f"τ = {steps['tau']:.6g}, σ = {steps['sigma']:.6g}"
            search = scalar_search(y, clean, operator, x0, T_scalar, steps, lambda_min=args.lambda_min,
                                   lambda_max=args.lambda_max, coarse_steps=args.lambda_steps,
                                   fine_steps=args.fine_steps, batch=args.grid_batch,
                                   backend=model.solver_backend)
            x_learned, lam, _ = model.solve(y, operator, n_iter=T)
        p_start, s_start = image_scores(clean, x0)
        p_learned, s_learned = image_scores(clean, x_learned)
        row = {
            "image": name, "s": float(item["s"]),
            "psnr_start": p_start, "ssim_start": s_start,
            "lambda_best_psnr": search["lambda_best_psnr"], "psnr_best_scalar": search["psnr_best"],
            "ssim_at_best_psnr_lambda": search["ssim_at_best_psnr"],
            "lambda_best_ssim": search["lambda_best_ssim"], "ssim_best_scalar": search["ssim_best"],
            "psnr_learned": p_learned, "ssim_learned": s_learned,
            "gain_psnr": p_learned - search["psnr_best"],
            "lambda_learned_mean": float(lam.mean()),
            "lambda_at_edge": bool(search["at_edge"]),
        }
        rows.append(row)
        grid_rows += [{"image": name, "stage": st, "lambda": float(la), "psnr": float(p), "ssim": float(s)}
                      for la, st, p, s in zip(search["lambdas"], search["stage"], search["psnr"], search["ssim"])]
        if figures and i < args.examples:
            files.append(_plot_example(
                fig_dir / f"example_{i:02d}_{_safe_name(name)}.png", name, clean[0].numpy(), scored_image(x0).numpy(),
                scored_image(search["image"]).numpy(), scored_image(x_learned).numpy(),
                torch.cat(list(lam[0].float().cpu()), dim=-1).numpy(), row,
                args.task))
        times.append(time.perf_counter() - t0)
        progress.set_postfix(gain=f"{row['gain_psnr']:+.2f} dB")

    summary = _summarise(rows)
    wall = time.perf_counter() - t_begin
    meta = {
        "task": args.task, "model_task": model.task, "description": spec.description,
        "start": spec.start, "data": str(args.data), "weights": str(args.weights),
        "weights_sha256": weights_digest(args.weights),
        "iters": T, "scalar_iters": T_scalar, "size": size, "data_shape": data_shape, "noise_level": noise_level,
        "seed": args.seed,
        "n_images": n, "steps": steps_used, "scalar_step_balance": scalar_balance,
        "model_step_balance": model.step_balance, "device": str(device),
        "grid": {"lambda_min": args.lambda_min, "lambda_max": args.lambda_max, "coarse_steps": args.lambda_steps,
                 "fine_steps": args.fine_steps, "spacing": "log"},
        "lambda_at_edge": [r["image"] for r in rows if r["lambda_at_edge"]],
        "machine": {"processor": processor_name(), "node": platform.node(),
                    "platform": platform.platform(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "timing": {"wall_s": wall, "per_image_s": wall / n, "first_image_s": times[0],
                   "later_median_s": float(np.median(times[1:])) if len(times) > 1 else times[0],
                   "images_s": times},
    }
    if figures:
        files.append(_plot_gains(fig_dir / "gain_histogram.png", [r["gain_psnr"] for r in rows],
                                 f"{args.task}, T = {T}, {n} images"))
    write_results(out, tables={"per_image.csv": (rows, CSV_COLUMNS), "lambda_grid.csv": (grid_rows, GRID_COLUMNS)},
                  markdown=_markdown(summary, meta), summary={**meta, "metrics": summary})
    files += [out / name for name in ("per_image.csv", "lambda_grid.csv", "results.md", "summary.json")]
    g = summary["gain_psnr"]
    tqdm.write(f"{args.task}, T = {T}, {n} images: PSNR start {summary['psnr_start'][0]:.2f}, best scalar "
               f"{summary['psnr_best_scalar'][0]:.2f}, learned {summary['psnr_learned'][0]:.2f} dB "
               f"(gain {g['mean']:+.2f} ± {g['std']:.2f}, learned better on {g['learned_better']}/{n}); "
               f"{wall:.1f} s; wrote {out}")
    if meta["lambda_at_edge"]:
        tqdm.write(f"warning: the best scalar λ is at the grid's edge for {len(meta['lambda_at_edge'])} image(s) "
                   "(see results.md)")
    return {"summary": summary, "rows": rows, "meta": meta, "files": files}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tvfast evaluate --task mri4x|ct60`` and ``python -m tvfast.training.evaluate_reconstruction``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    evaluate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
