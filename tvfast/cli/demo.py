"""``tvfast demo``: the bundled chest X-rays, noisy, denoised two ways.

Each bundled image (``tvfast/data``, CC BY 4.0, see NOTICE.md there) gets
relative Gaussian noise (docs/method.md §7, s = 0.5 by default, seeded per image) and
is denoised with (a) the best scalar λ of an 81-value grid in [0, 0.8],
chosen for PSNR against the clean image — an oracle no user has — and (b)
the shipped learned Λ map. Prints a PSNR/SSIM table and writes one
comparison figure per image plus a summary figure.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch

from tvfast.io.atomic import atomic_write_text
from tvfast.evaluation.figures import plot_denoising_examples, plot_lambda_map
from tvfast.evaluation.grid_search import lambda_grid_search
from tvfast.io.images import read_grayscale
from tvfast.evaluation.metrics import psnr, ssim
from tvfast.evaluation.noise import add_noise

__all__ = ["bundled_images", "run_demo"]


def bundled_images() -> list[Path]:
    folder = resources.files("tvfast") / "data"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".png"))


def run_demo(out: Path, model, noise_level: float = 0.5, seed: int = 0, n_iter: int = 256, log=print) -> list[dict]:
    """Run the demo with a LambdaNet ``model``; write figures and ``results.md`` into ``out``; return the rows."""
    out.mkdir(parents=True, exist_ok=True)
    lambdas = torch.linspace(0.0, 0.8, 81)
    rows = []
    for index, path in enumerate(bundled_images()):
        clean_np = read_grayscale(path)
        clean = torch.from_numpy(clean_np)[None, None]
        noisy = add_noise(clean, noise_level, generator=torch.Generator().manual_seed(seed + index))
        psnrs, ssims, best_scalar, _ = lambda_grid_search(noisy, clean, lambdas, n_iter)
        with torch.no_grad():
            learned, lam = model.denoise(noisy, n_iter)
        row = {
            "image": path.name,
            "lambda": float(lambdas[int(np.argmax(psnrs))]),
            "noisy": (psnr(clean, noisy), ssim(clean, noisy)),
            "scalar": (float(psnrs.max()), ssim(clean, best_scalar)),
            "learned": (psnr(clean, learned), ssim(clean, learned)),
        }
        rows.append(row)
        stem = path.stem
        plot_denoising_examples(
            clean_np, noisy[0, 0].numpy(), best_scalar.numpy(), learned[0, 0].numpy(),
            {k: row[k] for k in ("noisy", "scalar", "learned")}, out / f"{stem}_compare.png",
            lam_scalar=row["lambda"], name=path.name,
        )  # fmt: skip
        plot_lambda_map(lam[0, 0].numpy(), out / f"{stem}_lambda.png", name=path.name)
        log(f"  {path.name}: wrote {stem}_compare.png, {stem}_lambda.png")
    table = format_table(rows, noise_level)
    atomic_write_text(out / "results.md", table + "\n")
    return rows


def format_table(rows: list[dict], noise_level: float) -> str:
    lines = [
        f"Relative noise s = {noise_level}. PSNR (dB) / SSIM against the clean image.",
        "",
        "| image | noisy | best scalar λ (oracle) | learned Λ map | gain |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        gain = r["learned"][0] - r["scalar"][0]
        lines.append(
            f"| {r['image']} | {r['noisy'][0]:.2f} / {r['noisy'][1]:.3f} "
            f"| {r['scalar'][0]:.2f} / {r['scalar'][1]:.3f} (λ={r['lambda']:.2f}) "
            f"| {r['learned'][0]:.2f} / {r['learned'][1]:.3f} | {gain:+.2f} dB |"
        )
    return "\n".join(lines)
