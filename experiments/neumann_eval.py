"""The shipped model's Λ with periodic and with Neumann differences (experiments/results/neumann.md).

For each test image x (centre-cropped and resized to 256², as in
``tvfast.training.evaluate``) and relative noise z = x + s·std(x)·n with the
evaluation's seeds (image i: seed + i), the shipped ``LambdaNet`` gives
Λ = Λ_Θ(z) once, and the same Λ is used in

    x_per = tvfast.pdhg(z, Λ, T, boundary="periodic")   (the boundary it was trained with)
    x_neu = tvfast.pdhg(z, Λ, T, boundary="neumann")

PSNR and SSIM (data range 1) are taken on the whole image and on its outer
frame of ``--frame`` pixels, where the two boundaries differ most. The mean
of Λ is reported on the first and last row and column and on the interior
(the image less its one-pixel border): the model was trained with periodic
differences, whose last row and column couple the image's opposite edges.

    python experiments/neumann_eval.py --data ../shared/data/chest_xray/test --limit 20
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

import tvfast
from tvfast.evaluation.metrics import psnr, ssim
from tvfast.training.data import ImageFolderDataset

__all__ = ["build_parser", "border_means", "frame_mask", "evaluate_boundaries", "main"]

BOUNDARIES = ("periodic", "neumann")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python experiments/neumann_eval.py",
                                description="PSNR/SSIM of the shipped model's Λ with periodic vs Neumann differences.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", required=True, help="folder of test images")
    p.add_argument("--limit", type=int, default=20, help="the first N images")
    p.add_argument("--s", type=float, default=0.5, help="relative noise level s")
    p.add_argument("--seed", type=int, default=0, help="noise of image i is seeded with SEED + i")
    p.add_argument("--iters", type=int, default=256, help="PDHG iterations T")
    p.add_argument("--size", type=int, default=256, help="centre-crop and resize to SIZE×SIZE")
    p.add_argument("--frame", type=int, default=8, help="width in pixels of the outer frame measured separately")
    p.add_argument("--json", default=None, help="also write the per-image rows and the means to this file")
    return p


def border_means(lam: torch.Tensor) -> dict:
    """Mean of an (H, W) map on its first/last row, first/last column and the interior [1:−1, 1:−1]."""
    if lam.dim() != 2 or min(lam.shape) < 3:
        raise ValueError(f"lam: expected an (H, W) map with H, W >= 3, got shape {tuple(lam.shape)}")
    return {"first_row": float(lam[0].mean()), "last_row": float(lam[-1].mean()),
            "first_col": float(lam[:, 0].mean()), "last_col": float(lam[:, -1].mean()),
            "interior": float(lam[1:-1, 1:-1].mean())}


def frame_mask(height: int, width: int, frame: int) -> torch.Tensor:
    """Boolean (H, W) mask of the pixels within ``frame`` pixels of an edge."""
    if frame < 1 or 2 * frame >= min(height, width):
        raise ValueError(f"frame: expected 1 <= frame < min(H, W)/2 = {min(height, width) / 2:g}, got {frame}")
    mask = torch.ones(height, width, dtype=torch.bool)
    mask[frame:-frame, frame:-frame] = False
    return mask


def _frame_psnr(clean: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> float:
    mse = float((x - clean)[mask].double().square().mean())
    return 10.0 * np.log10(1.0 / mse)


def evaluate_boundaries(data: str, limit: int, s: float, seed: int, n_iter: int, size: int, frame: int) -> dict:
    """Per-image rows and means; see the module docstring."""
    model = tvfast.pretrained()
    if getattr(model, "solve_pad", 0):
        raise ValueError("the shipped model pads before solving; this comparison assumes solve_pad = 0")
    ds = ImageFolderDataset(data, size=size, noise="relative", noise_level=s, train=False, seed=seed)
    n = min(limit, len(ds))
    rows = []
    for i in range(n):
        item = ds[i]
        clean, z = item["clean"][0], item["noisy"]
        mask = frame_mask(*clean.shape, frame)
        with torch.no_grad():
            lam = model.lambda_map(z[None])
            row = {"image": ds.files[i].name, **{f"lam_{k}": v for k, v in border_means(lam[0, 0]).items()}}
            for boundary in BOUNDARIES:
                x = tvfast.pdhg(z[None], lam, n_iter, boundary=boundary)[0, 0]
                row[f"psnr_{boundary}"] = psnr(clean, x)
                row[f"ssim_{boundary}"] = ssim(clean, x)
                row[f"frame_psnr_{boundary}"] = _frame_psnr(clean, x, mask)
        rows.append(row)
        print(f"{i + 1}/{n} {row['image']}: PSNR {row['psnr_periodic']:.3f} / {row['psnr_neumann']:.3f} dB, "
              f"frame {row['frame_psnr_periodic']:.3f} / {row['frame_psnr_neumann']:.3f} dB", flush=True)
    keys = [k for k in rows[0] if k != "image"]
    means = {k: (float(np.mean([r[k] for r in rows])), float(np.std([r[k] for r in rows]))) for k in keys}
    for metric in ("psnr", "ssim", "frame_psnr"):
        diffs = [r[f"{metric}_neumann"] - r[f"{metric}_periodic"] for r in rows]
        means[f"delta_{metric}"] = (float(np.mean(diffs)), float(np.std(diffs)))
    return {"n_images": n, "s": s, "seed": seed, "iters": n_iter, "size": size, "frame": frame,
            "rows": rows, "means": means}


def _table(result: dict) -> str:
    m = result["means"]

    def f(key, digits):
        return f"{m[key][0]:.{digits}f} ± {m[key][1]:.{digits}f}"

    lines = ["| metric | periodic | neumann | neumann − periodic |", "|---|---:|---:|---:|"]
    for metric, label, digits in (("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4),
                                  ("frame_psnr", f"PSNR of the outer {result['frame']}-pixel frame (dB)", 2)):
        lines.append(f"| {label} | {f(f'{metric}_periodic', digits)} | {f(f'{metric}_neumann', digits)} "
                     f"| {f(f'delta_{metric}', digits + 2)} |")
    lines += ["", "| Λ mean | first row | last row | first column | last column | interior |",
              "|---|---:|---:|---:|---:|---:|",
              "| " + " | ".join([f"{result['n_images']} images"] + [
                  f(f"lam_{k}", 4) for k in ("first_row", "last_row", "first_col", "last_col", "interior")]) + " |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit < 1:
        raise SystemExit("--limit: expected a positive number of images")
    result = evaluate_boundaries(args.data, args.limit, args.s, args.seed, args.iters, args.size, args.frame)
    print(_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
