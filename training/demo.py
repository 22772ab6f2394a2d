"""``tvfast demo``: the bundled chest X-rays, noisy, denoised two ways; or (``--task mri4x``) reconstructed.

Denoising (the default): each bundled image (``tvfast/data``, CC BY 4.0,
see NOTICE.md there) gets relative Gaussian noise (docs/method.md §7, s = 0.5
by default, seeded per image) and is denoised with (a) the best scalar λ of
an 81-value grid in [0, 0.8], chosen for PSNR against the clean image — an
oracle no user has — and (b) the shipped learned Λ map.

MRI (``--task mri4x``): each image becomes simulated single-coil Cartesian
k-space (docs/method.md §11: a 4× row mask, smooth phase, complex noise
s = 0.05 by default, seeded per image) and is reconstructed (a) zero-filled,
(b) with the oracle best scalar λ (a 25-value log grid over [10⁻⁴, 0.3]
refined by 8 values around its best, the model's T, steps — the shipped
model's step balance b = 30 solves the scalar near its minimiser — and start) and (c)
with the shipped ``mri4x`` model's learned maps; scored on |x̂|.

Both print a PSNR/SSIM table and write ``results.md`` and one comparison
figure and one Λ figure per image.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import torch

import argparse
import sys

from tvfast.cli.parser import CommandParser
from tvfast.extras import MissingExtraError, require
from tvfast.io.atomic import atomic_write_text
from tvfast.io.images import read_grayscale
from tvfast.evaluation.noise import add_noise
from tvfast.models.precision import PRECISIONS, resolve_precision
from tvfast.training.tasks import TASKS, load_task_model

__all__ = ["bundled_images", "run_demo", "run_mri_demo", "format_table", "build_parser", "main"]


def bundled_images() -> list[Path]:
    folder = resources.files("tvfast") / "data"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".png"))


def run_demo(out: Path, model, noise_level: float = 0.5, seed: int = 0, n_iter: int = 256, log=print) -> list[dict]:
    """Run the demo with a LambdaNet ``model``; write figures and ``results.md`` into ``out``; return the rows."""
    from tvfast.evaluation.figures import plot_denoising_examples, plot_lambda_map
    from tvfast.evaluation.grid_search import lambda_grid_search
    from tvfast.evaluation.metrics import psnr, ssim

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
    table = format_table(rows, noise_level, task="denoise")
    atomic_write_text(out / "results.md", table + "\n")
    return rows


def run_mri_demo(out: Path, model, noise_level: float = 0.05, seed: int = 0, n_iter: int | None = None,
                 log=print) -> list[dict]:
    """The MRI demo with a ``ReconstructionNet`` ``model`` of the 'mri' task; writes figures and ``results.md``."""
    from tvfast.evaluation.figures import plot_denoising_examples, plot_lambda_map
    from tvfast.evaluation.grid_search import image_scores, log_grid, oracle_search
    from tvfast.models.reconstruction_net import mri_steps
    from tvfast.physics import MaskedFFT
    from tvfast.physics.mri import simulate_mri

    out.mkdir(parents=True, exist_ok=True)
    T = model.n_iter if n_iter is None else n_iter
    rows = []
    for index, path in enumerate(bundled_images()):
        clean_np = read_grayscale(path)
        clean = torch.from_numpy(clean_np)
        data = simulate_mri(clean[None, None], noise_level, generator=torch.Generator().manual_seed(seed + index))
        operator = MaskedFFT(data.mask)
        with torch.no_grad():
            learned, lam, start = model.solve(data.y, operator, n_iter=T)
        found = oracle_search(data.y, clean, log_grid(1e-4, 0.3, 25), T, operator=operator, x0=start,
                              options=mri_steps(operator, getattr(model, "step_balance", 1.0)), refine=8)
        zero_filled, scalar = start.abs()[0, 0], found.image_psnr.abs()[0]
        learned = learned.abs()[0, 0]
        k = found.best_psnr
        row = {
            "image": path.name,
            "lambda": float(found.candidates[k]),
            "noisy": image_scores(clean, zero_filled),
            "scalar": (float(found.psnr[k]), float(found.ssim[k])),
            "learned": image_scores(clean, learned),
        }
        rows.append(row)
        stem = path.stem
        plot_denoising_examples(
            clean_np, zero_filled.numpy(), scalar.numpy(), learned.numpy(),
            {k: row[k] for k in ("noisy", "scalar", "learned")}, out / f"{stem}_mri_compare.png",
            lam_scalar=row["lambda"], name=path.name, start_label="zero-filled |Aᴴy|",
        )  # fmt: skip
        plot_lambda_map(lam[0].numpy(), out / f"{stem}_mri_lambda.png", name=path.name)
        log(f"  {path.name}: wrote {stem}_mri_compare.png, {stem}_mri_lambda.png")
    table = format_table(rows, noise_level, task="mri4x")
    atomic_write_text(out / "results.md", table + "\n")
    return rows


def format_table(rows: list[dict], noise_level: float, task: str = "denoise") -> str:
    """The demo's table: per image, the start (noisy or zero-filled), the oracle scalar and the learned map."""
    spec = TASKS[task]
    start = spec.start.replace("Aᴴy", "").strip() or spec.start
    lines = [
        f"{spec.description}; noise s = {noise_level}. PSNR (dB) / SSIM against the clean image"
        + (" (of |x̂|)." if spec.operator == "mri" else "."),
        "",
        f"| image | {start} | best scalar λ (oracle) | learned Λ map | gain |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        gain = r["learned"][0] - r["scalar"][0]
        lines.append(
            f"| {r['image']} | {r['noisy'][0]:.2f} / {r['noisy'][1]:.3f} "
            f"| {r['scalar'][0]:.2f} / {r['scalar'][1]:.3f} (λ={r['lambda']:.3g}) "
            f"| {r['learned'][0]:.2f} / {r['learned'][1]:.3f} | {gain:+.2f} dB |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
_EXAMPLES = """examples:
  tvfast demo                     the bundled X-rays, noisy: best scalar λ vs the shipped learned Λ map
  tvfast demo -o tvfast_demo      writes tvfast_demo/results.md and *_compare.png
  tvfast demo --task mri4x        zero-filled, best scalar λ and learned Λ on simulated 4x MRI"""


def build_parser() -> CommandParser:
    tasks = tuple(name for name, spec in TASKS.items() if spec.demo is not None)
    p = CommandParser(prog="tvfast demo", epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
                      description="The bundled chest X-rays for a task of the registry: the oracle best scalar λ "
                                  "beside the shipped model's learned Λ map.")
    p.add_argument("--task", choices=tasks, default="denoise",
                   help="; ".join(f"{name}: {TASKS[name].description}" for name in tasks).replace("%", "%%"))
    p.add_argument("-o", "--output", default=None, help="output folder (default tvfast_demo, or tvfast_demo_TASK)")
    p.add_argument("--noise", type=float, default=None, help="noise level s (default: the task's evaluation level)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--iters", type=int, default=None, help="PDHG iterations (default: the model's T)")
    p.add_argument("--weights", default=None, help="a model from 'tvfast train --task TASK' instead of the shipped one")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="U-Net arithmetic (bf16 autocast where faster); the solver is always float32")
    return p


def main(argv: list[str] | None = None) -> int:
    """``tvfast demo``: the task's demo (:attr:`TaskSpec.demo`) with its shipped model or ``--weights``."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    spec = TASKS[args.task]
    try:
        require("matplotlib", "tvfast demo")  # the comparison figures
        require("skimage", "tvfast demo")  # PSNR and SSIM
        noise = spec.eval_noise if args.noise is None else args.noise
        if args.iters is not None and args.iters < 1:
            raise ValueError(f"--iters: expected a positive integer, got {args.iters}")
        if not noise >= 0:
            raise ValueError(f"--noise: expected a non-negative level, got {noise}")
        default_task = build_parser().get_default("task")
        out = Path(args.output or ("tvfast_demo" if args.task == default_task else f"tvfast_demo_{args.task}"))
        model = load_task_model(spec, args.weights)
        model.set_precision(resolve_precision(args.precision, torch.device("cpu")))
        iters = args.iters or getattr(model, "n_iter", spec.n_iter)  # a shipped model's own T by default
        print(f"tvfast demo: {spec.description}; 3 bundled chest X-rays, s = {noise}, T = {iters}")
        rows = spec.demo(out, model, noise_level=noise, seed=args.seed, n_iter=iters)
    except (MissingExtraError, ValueError, FileNotFoundError) as exc:
        print("tvfast: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    print()
    print(format_table(rows, noise, task=args.task))
    print(f"\nwrote {out / 'results.md'} and the figures in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
