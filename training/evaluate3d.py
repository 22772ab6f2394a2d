"""Evaluate a dynamic (x, y, t) Λ-map model against the best *pair* of scalars (λ_xy, λ_t).

For every test sequence ``x`` (D frames) with fixed relative noise
``z = x + s·std(x)·n`` (docs/method.md §7 and §9):

* **best scalar pair** — 3-D TV with Λ = (λ_t, λ_xy, λ_xy) for every pair of a
  G × G grid, all pairs in *one* batched ``tvfast.pdhg`` call (Λ of shape
  (G², 3, 1, 1, 1)); the pair with the highest mean per-frame PSNR is kept
  (an oracle: it is chosen against the clean sequence);
* **learned Λ** — a 3-D ``LambdaNet`` (Λ_t, Λ_xy maps from the noisy sequence).

PSNR and SSIM are computed per frame (data range 1) and averaged over the
frames. Outputs in ``--out``: ``per_sequence.csv``, ``results.md``,
``summary.json`` and figures (frames, the Λ_xy and Λ_t maps, a space–time slice).

Usage::

    python -m tvfast.training.evaluate3d --data DATA/test --weights W.safetensors --out runs/eval3d
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from matplotlib.figure import Figure

from tvfast.cli.parser import CommandParser
from tvfast.device import resolve_device
from tvfast.evaluation.figures import save_figure
from tvfast.evaluation.grid_search import oracle_search
from tvfast.evaluation.report import machine_name, mean_std, write_results
from tvfast.evaluation.metrics import frame_metrics

__all__ = ["best_pair_search", "evaluate3d", "main"]


def best_pair_search(z: torch.Tensor, clean: torch.Tensor, lam_xy: torch.Tensor, lam_t: torch.Tensor,
                     n_iter: int) -> dict:
    """The oracle pair (λ_xy, λ_t): :func:`~tvfast.evaluation.grid_search.oracle_search` over every pair, one
    batched solve, scored by mean per-frame PSNR.

    ``z`` (1, 1, D, H, W) on the solve's device, ``clean`` (D, H, W) on the CPU.
    Returns the best pair, its metrics and solution, and the PSNR grid (len(lam_xy), len(lam_t)).
    """
    pairs = [(float(a), float(b)) for a in lam_xy for b in lam_t]
    found = oracle_search(z, clean, [[b, a, a] for a, b in pairs], n_iter,
                          scores=lambda ref, x: frame_metrics(ref, x[0]))
    k = found.best_psnr
    return {"lambda_xy": pairs[k][0], "lambda_t": pairs[k][1], "psnr": float(found.psnr[k]),
            "ssim": float(found.ssim[k]), "solution": found.image_psnr[0],
            "grid": found.psnr.reshape(len(lam_xy), len(lam_t))}


def _figure(clean, noisy, scalar, learned, lam, path: Path, title: str) -> Path:
    """Three frames of clean / noisy / best pair / learned, the Λ_xy and Λ_t maps, and a y–t slice
    (one image column over time: motion shows as bent lines, temporal smoothing as streaks)."""
    D, H, W = clean.shape
    frames = sorted({0, D // 2, D - 1})
    fig = Figure(figsize=(3.0 * (len(frames) + 1), 11))
    axes = fig.subplots(4, len(frames) + 1)
    rows = (("clean", clean), ("noisy", noisy), ("best scalar pair", scalar), ("learned Λ", learned))
    column = W // 2
    for r, (name, vol) in enumerate(rows):
        for c, f in enumerate(frames):
            axes[r, c].imshow(vol[f], cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_title(f"{name}, frame {f}", fontsize=8)
        axes[r, -1].imshow(vol[:, :, column].T, cmap="gray", vmin=0, vmax=1, aspect="auto")
        axes[r, -1].set_title(f"{name}: y–t slice (column {column})", fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    fig = Figure(figsize=(9, 3.6))
    axes = fig.subplots(1, 2)
    for ax, (name, channel) in zip(axes, (("Λ_xy", 1), ("Λ_t", 0))):
        im = ax.imshow(lam[channel, D // 2], cmap="viridis")
        ax.set_title(f"{name}, frame {D // 2}")
        ax.set_axis_off()
        fig.colorbar(im, ax=ax, fraction=0.046)
    return save_figure(fig, path.with_name(path.stem + "_lambda.png"))


def evaluate3d(args) -> dict:
    """Run the evaluation described by ``args`` (see :func:`build_parser`); return the summary."""
    from tvfast.models.lambda_net import LambdaNet
    from tvfast.models.precision import resolve_precision
    from tvfast.training.sequences import SequenceFolderDataset, VolumeFolderDataset

    device = resolve_device(args.device)
    model = LambdaNet.load_pretrained(args.weights, map_location=device, spatial_dims=3).eval()
    model.set_precision(resolve_precision("auto", device))
    lam_xy = torch.linspace(0.0, args.lambda_xy_max, args.grid)
    lam_t = torch.linspace(0.0, args.lambda_t_max, args.grid)
    out = Path(args.out)
    rows = []
    for s in args.noise_levels:
        kind = VolumeFolderDataset if args.volume else SequenceFolderDataset
        ds = kind(args.data, size=args.size, frames=args.frames, noise_level=s, train=False, seed=args.seed)
        n = len(ds) if args.limit is None else min(args.limit, len(ds))
        for i in range(n):
            item = ds[i]
            clean, z = item["clean"][0], item["noisy"][0]
            zd = z.to(device)[None, None]
            best = best_pair_search(zd, clean, lam_xy, lam_t, args.iters)
            with torch.no_grad():
                learned, lam = model.denoise(zd, args.iters)
            learned, lam = learned[0, 0].cpu(), lam[0].cpu()
            p_l, s_l = frame_metrics(clean, learned)
            p_n, s_n = frame_metrics(clean, z)
            rows.append({"sequence": i, "s": float(s), "psnr_noisy": p_n, "ssim_noisy": s_n,
                         "lambda_xy_best": best["lambda_xy"], "lambda_t_best": best["lambda_t"],
                         "psnr_best_pair": best["psnr"], "ssim_best_pair": best["ssim"],
                         "psnr_learned": p_l, "ssim_learned": s_l,
                         "lambda_xy_mean": float(lam[1].mean()), "lambda_t_mean": float(lam[0].mean())})
            if i == 0:
                _figure(clean.numpy(), z.numpy(), best["solution"].numpy(), learned.numpy(), lam.numpy(),
                        out / f"sequence0_s{s:g}.png", f"sequence 0, s = {s:g}")
            print(f"s = {s:g}, sequence {i}: best pair {best['psnr']:.2f} dB (λ_xy {best['lambda_xy']:.3f}, "
                  f"λ_t {best['lambda_t']:.3f}), learned {p_l:.2f} dB", flush=True)
    summary = {}
    for s in args.noise_levels:
        sel = [r for r in rows if r["s"] == float(s)]
        summary[f"{s:g}"] = {k: mean_std([r[k] for r in sel])
                             for k in ("psnr_noisy", "psnr_best_pair", "psnr_learned", "ssim_noisy",
                                       "ssim_best_pair", "ssim_learned")}
        summary[f"{s:g}"]["count"] = len(sel)
    lines = [f"Sequences from `{args.data}` ({args.frames} frames, {args.size}², relative noise), T = {args.iters}; "
             f"best scalar pair: oracle over a {args.grid}×{args.grid} grid, λ_xy in [0, {args.lambda_xy_max}], "
             f"λ_t in [0, {args.lambda_t_max}]; "
             f"PSNR/SSIM per frame, averaged over frames, then over sequences; machine: {machine_name()}.", "",
             "| s | noisy PSNR / SSIM | best pair PSNR / SSIM | learned Λ PSNR / SSIM | gain (dB / SSIM) |",
             "|---|---|---|---|---|"]
    for s, m in summary.items():
        lines.append(f"| {s} | {m['psnr_noisy'][0]:.2f} / {m['ssim_noisy'][0]:.3f} | {m['psnr_best_pair'][0]:.2f} / "
                     f"{m['ssim_best_pair'][0]:.3f} | {m['psnr_learned'][0]:.2f} / {m['ssim_learned'][0]:.3f} | "
                     f"{m['psnr_learned'][0] - m['psnr_best_pair'][0]:+.2f} / "
                     f"{m['ssim_learned'][0] - m['ssim_best_pair'][0]:+.3f} |")
    write_results(out, tables={"per_sequence.csv": (rows, list(rows[0]))}, markdown="\n".join(lines),
                  summary={"weights": str(args.weights), "machine": machine_name(), "levels": summary})
    print("\n".join(lines))
    return summary


def build_parser() -> CommandParser:
    p = CommandParser(prog="tvfast evaluate --task sequences",
                      description="Compare a 3-D Λ-map model with the best pair of scalars (λ_xy, λ_t).")
    p.add_argument("--task", choices=("sequences",), default="sequences", help="this evaluation's task")
    p.add_argument("--data", required=True, help="folder of images (sequences are generated from them)")
    p.add_argument("--volume", action="store_true",
                   help="every file in --data is one ready-made (D, H, W) sequence (.npy or multi-page TIFF); "
                        "said by this flag, never guessed from the files' shapes")
    p.add_argument("--weights", required=True, help="3-D LambdaNet weights (.safetensors with its .json)")
    p.add_argument("--out", default="runs/evaluate3d", help="output folder")
    p.add_argument("--frames", type=int, default=16,
                   help="frames per generated sequence (with --volume: the first FRAMES frames of each file)")
    p.add_argument("--size", type=int, default=64, help="frame size (square)")
    p.add_argument("--noise-levels", type=float, nargs="+", default=[0.5], metavar="S")
    p.add_argument("--iters", type=int, default=128, help="PDHG iterations T")
    p.add_argument("--grid", type=int, default=9, help="values per axis of the (λ_xy, λ_t) grid")
    p.add_argument("--lambda-xy-max", type=float, default=0.1, help="largest spatial λ_xy of the grid")
    p.add_argument("--lambda-t-max", type=float, default=0.2, help="largest temporal λ_t of the grid")
    p.add_argument("--limit", type=int, default=None, help="only the first N sequences")
    p.add_argument("--seed", type=int, default=0, help="noise of sequence i is seeded with SEED + i")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', ...")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    args.noise_levels = list(dict.fromkeys(args.noise_levels))  # each level once
    for flag, value in (("--frames", args.frames), ("--size", args.size), ("--grid", args.grid),
                        ("--iters", args.iters)):
        if value < 1:
            parser.error(f"{flag} must be positive, got {value}")
    try:
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    evaluate3d(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
