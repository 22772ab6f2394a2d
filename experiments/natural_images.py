"""How a Λ-map model does outside its training domain: scikit-image's grey test images.

The shipped model was trained on chest X-rays. This runs the evaluation
protocol of :mod:`tvfast.training.evaluate` (relative noise with a fixed seed
per image, the oracle best scalar λ of an 81-value grid, PSNR/SSIM with data
range 1) on the grayscale images that ship with scikit-image, each
centre-cropped to a square and resized to 256², and writes a table.

Usage::

    python experiments/natural_images.py --out experiments/results/natural_images.md [--weights W]
"""

from __future__ import annotations

import sys

import numpy as np
import skimage.data
import torch

from tvfast.io.atomic import atomic_write_text
from tvfast.cli.parser import CommandParser
from tvfast.evaluation.grid_search import lambda_grid_search
from tvfast.models.lambda_net import LambdaNet
from tvfast.evaluation.metrics import psnr, ssim
from tvfast.evaluation.noise import add_noise
from tvfast.models.precision import resolve_precision
from tvfast.models.pretrained import pretrained_weights_path
from tvfast.training.data import centre_square_resize

__all__ = ["GREY_IMAGES", "evaluate_natural", "main"]

# Every 2-D (grayscale) image in skimage.data that needs no download.
GREY_IMAGES = ("camera", "coins", "moon", "text", "page", "clock", "brick", "grass", "gravel", "cell",
               "checkerboard", "horse")


def _image(name: str, size: int) -> np.ndarray:
    arr = np.asarray(getattr(skimage.data, name)())
    img = arr.astype(np.float32) if arr.dtype == bool else arr.astype(np.float32) / np.iinfo(arr.dtype).max
    return centre_square_resize(img, size)


def evaluate_natural(weights: str, noise_level: float = 0.5, size: int = 256, n_iter: int = 256,
                     seed: int = 0) -> list[dict]:
    """One row per image: noisy, best scalar λ and learned Λ PSNR / SSIM."""
    model = LambdaNet.load_pretrained(weights).eval()
    model.set_precision(resolve_precision("auto", "cpu"))
    lambdas = torch.linspace(0.0, 0.8, 81)
    rows = []
    for i, name in enumerate(GREY_IMAGES):
        clean = torch.from_numpy(_image(name, size))[None, None]
        noisy = add_noise(clean, noise_level, generator=torch.Generator().manual_seed(seed + i))
        psnrs, ssims, _, _ = lambda_grid_search(noisy, clean, lambdas, n_iter)
        with torch.no_grad():
            learned, _ = model.denoise(noisy, n_iter)
        rows.append({"image": name, "psnr_noisy": psnr(clean, noisy),
                     "lambda_best": float(lambdas[int(np.argmax(psnrs))]),
                     "psnr_scalar": float(psnrs.max()), "ssim_scalar": float(ssims.max()),
                     "psnr_learned": psnr(clean, learned), "ssim_learned": ssim(clean, learned)})
        print(f"{name}: scalar {rows[-1]['psnr_scalar']:.2f} dB, learned {rows[-1]['psnr_learned']:.2f} dB",
              flush=True)
    return rows


def _markdown(rows: list[dict], noise_level: float, weights: str) -> str:
    gains = [r["psnr_learned"] - r["psnr_scalar"] for r in rows]
    sgains = [r["ssim_learned"] - r["ssim_scalar"] for r in rows]
    lines = [f"scikit-image grey test images, 256², relative noise s = {noise_level} (seed i for image i), "
             f"T = 256; weights `{weights}`. Best scalar λ: oracle over 81 values in [0, 0.8] "
             "(PSNR and SSIM each at their own best λ).", "",
             "| image | noisy PSNR | best λ | best scalar PSNR / SSIM | learned Λ PSNR / SSIM | gain (dB / SSIM) |",
             "|---|---:|---:|---|---|---|"]
    for r, g, sg in zip(rows, gains, sgains):
        lines.append(f"| {r['image']} | {r['psnr_noisy']:.2f} | {r['lambda_best']:.2f} | "
                     f"{r['psnr_scalar']:.2f} / {r['ssim_scalar']:.3f} | {r['psnr_learned']:.2f} / "
                     f"{r['ssim_learned']:.3f} | {g:+.2f} / {sg:+.3f} |")
    lines += ["", f"Mean gain {np.mean(gains):+.2f} dB PSNR (worst {min(gains):+.2f} dB, best {max(gains):+.2f} dB), "
              f"{np.mean(sgains):+.3f} SSIM over {len(rows)} images."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = CommandParser(prog="python experiments/natural_images.py",
                      description="Evaluate a Λ-map model on scikit-image's grey test images.")
    p.add_argument("--weights", default=None, help="LambdaNet weights (default: the shipped model)")
    p.add_argument("--noise-level", type=float, default=0.5, help="relative noise level s")
    p.add_argument("--out", default=None, help="write the Markdown table here")
    args = p.parse_args(argv)
    weights = args.weights or str(pretrained_weights_path())
    rows = evaluate_natural(weights, args.noise_level)
    text = _markdown(rows, args.noise_level, args.weights or "shipped")
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
