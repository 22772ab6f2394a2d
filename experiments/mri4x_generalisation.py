"""mri4x models against the scalar λ solved to convergence, on the X-ray test split and out-of-domain images.

    python experiments/mri4x_generalisation.py --new experiments/runs_mri4x_general/best.safetensors \
        runs/mri4x_balanced/best.safetensors --out experiments/results/mri4x_generalisation --reuse

For each model (every ``--new``, named by its folder) and each set, ``tvfast evaluate --task mri4x`` with the
model at its own steps and T = ``--iters``, and the oracle best scalar λ at
T = ``--scalar-iters`` with steps of balance ``--scalar-step-balance``
(τ = b·s, σ = s/b): b = 30 and T = 512 solve the scalar problem to within
0.05 dB of its minimiser for every λ in [3·10⁻⁴, 3·10⁻³]
(``experiments/results/step_balance.md``; b = 10 is as close only for
λ ≳ 10⁻³ and τ = σ needs thousands of iterations). Same simulated data for every model (the seed of image i is i):

* ``xray``: the X-ray MRI test split (``--test``, 100 images);
* ``ood``: scikit-image's 12 grey sample images, the Shepp–Logan phantom
  (scikit-image, BSD-3) and DIPY's T1 coronal brain slice (the DIPY wheel's
  ``dipy/data/files/t1_coronal_slice.npy``, BSD-3; DIPY must be installed),
  written as 256² PNGs by ``ood_images.py``.

Writes each evaluation's folder (per-image CSV, results.md) under ``OUT`` and
``OUT/README.md``: per set and model the mean gain over the scalar, the worst
image, the share of images better than the scalar, and every out-of-domain
image. ``--reuse`` keeps an evaluation whose folder already holds a
``summary.json`` of the same setting and of the same weights (their SHA-256,
so that a file replaced at the same path is evaluated again); ``--limit`` evaluates only the first N
images of each set (a smoke run); ``--ood-only`` names models of ``--new``
that are evaluated on the out-of-domain set only (the X-ray split takes about
12 minutes per model on two CPU cores).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from tvfast.models.files import weights_digest

HERE = Path(__file__).resolve().parent


def _rows(folder: Path) -> dict[str, dict[str, str]]:
    """The rows of an evaluation's per-image CSV, by image."""
    with open(folder / "per_image.csv", newline="") as f:
        return {row["image"]: row for row in csv.DictReader(f)}


def _per_image(folder: Path) -> dict[str, float]:
    return {image: float(row["gain_psnr"]) for image, row in _rows(folder).items()}


def _summary_line(name: str, model: str, gains: dict[str, float], summary: dict) -> str:
    values = list(gains.values())
    worst = min(gains, key=gains.get)
    better = sum(g > 0 for g in values)
    return (f"| {name} | {model} | {summary['metrics']['psnr_best_scalar'][0]:.2f} | "
            f"{summary['metrics']['psnr_learned'][0]:.2f} | {sum(values) / len(values):+.2f} | "
            f"{gains[worst]:+.2f} (`{worst}`) | {better}/{len(values)} |")


def _same_setting(folder: Path, args: argparse.Namespace, weights: str) -> bool:
    """Whether ``folder`` holds an evaluation of ``weights`` with this run's T, scalar T and steps, and images."""
    try:
        meta = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    same_weights = meta.get("weights_sha256") == weights_digest(weights)  # the file's content, not its path
    return (same_weights and meta.get("iters") == args.iters and meta.get("scalar_iters") == args.scalar_iters
            and meta.get("scalar_step_balance") == args.scalar_step_balance
            and meta.get("grid", {}).get("coarse_steps") == args.lambda_steps
            and meta.get("grid", {}).get("fine_steps") == args.fine_steps
            and (args.limit is None or meta.get("n_images") == args.limit))


def _noise_units(ood: Path, names: list[str], summaries: dict[str, dict], out: Path) -> list[str]:
    """Per out-of-domain image: the oracle's λ in units of the noise, and each model's mean Λ over that λ.

    σ = s·std(x) is the simulation's noise level (``simulate_mri``), from the
    same evaluation items as the models saw; λ*/σ says how strongly TV should
    smooth that image, Λ̄/λ* how far each model's map is from it on average.
    """
    import torch

    from tvfast.training.tasks import TaskDataset

    first = summaries[names[0]]
    ds = TaskDataset(ood, "mri4x", size=first.get("size", 256), noise_level=first.get("noise_level", 0.05),
                     train=False, seed=first.get("seed", 0))
    sigma = {}
    for i in range(len(ds)):
        item = ds[i]
        sigma[ds.files[i].name] = float(item["s"]) * float(torch.std(item["clean"]))
    rows = {m: _rows(out / f"ood_{m}") for m in names}
    lines = ["", ("The oracle's λ in noise units (σ = s·std(x), the simulation's noise level) and each model's mean Λ "
                  "over that λ. A good map's mean lies above λ* (it smooths flat regions harder than one scalar can "
                  "and spares the edges); the losses are where it stays far above a small λ*."), "",
             "| image | λ*/σ | " + " | ".join(f"Λ̄/λ*, {m}" for m in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for image, row in rows[names[0]].items():
        best = float(row["lambda_best_psnr"])
        ratios = " | ".join(f"{float(rows[m][image]['lambda_learned_mean']) / best:.1f}" for m in names)
        lines.append(f"| {image} | {best / sigma[image]:.3f} | {ratios} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", required=True, nargs="+",
                        help="the models' weights (.safetensors with its .json), each named by its folder")
    parser.add_argument("--test", type=Path, default=HERE.parent.parent / "shared" / "data" / "chest_xray" / "test")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iters", type=int, default=256, help="T of the models")
    parser.add_argument("--scalar-iters", type=int, default=512, help="T of the scalar baseline")
    parser.add_argument("--scalar-step-balance", type=float, default=30.0,
                        help="b of the scalar baseline's steps tau = b*s, sigma = s/b")
    parser.add_argument("--lambda-steps", type=int, default=13,
                        help="the scalar oracle's coarse log grid over [1e-4, 0.3] (tvfast evaluate's --lambda-steps)")
    parser.add_argument("--fine-steps", type=int, default=6,
                        help="values between the neighbours of the best coarse λ (tvfast evaluate's --fine-steps)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep evaluations whose folder has a summary.json of the same setting")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    parser.add_argument("--ood-only", nargs="+", default=[], metavar="WEIGHTS",
                        help="models of --new evaluated on the out-of-domain set only")
    args = parser.parse_args(argv)
    for new in args.new:
        if not Path(new).is_file():
            parser.error(f"--new: {new} is not a file")
    for weights in args.ood_only:
        if weights not in args.new:
            parser.error(f"--ood-only: {weights} is not one of --new")
    names = [Path(n).parent.name for n in args.new]
    if len(set(names)) != len(names):
        parser.error(f"--new: the models need distinct folder names, got {names}")
    if not args.test.is_dir():
        parser.error(f"--test: {args.test} is not a folder")

    sys.path.insert(0, str(HERE))
    from ood_images import write_ood_images  # noqa: E402  (the same image list and loading)

    from tvfast.io.atomic import atomic_write_text
    from tvfast.training.evaluate_reconstruction import main as evaluate

    ood = args.out / "ood_images"
    write_ood_images(ood, 256, phantom=True, dipy_t1=True)
    models = dict(zip(names, args.new))
    sets = {"ood": ood, "xray": args.test}
    results: dict[tuple[str, str], tuple[dict, dict]] = {}
    for set_name, data in sets.items():
        for model_name, weights in models.items():
            if set_name == "xray" and weights in args.ood_only:
                continue
            folder = args.out / f"{set_name}_{model_name}"
            argv_eval = ["--task", "mri4x", "--data", str(data), "--iters", str(args.iters),
                         "--scalar-iters", str(args.scalar_iters), "--scalar-step-balance",
                         str(args.scalar_step_balance), "--lambda-steps", str(args.lambda_steps),
                         "--fine-steps", str(args.fine_steps), "--examples", "2", "--out", str(folder),
                         "--weights", str(weights)]
            if args.limit is not None:
                argv_eval += ["--limit", str(args.limit)]
            if not (args.reuse and _same_setting(folder, args, weights)):
                code = evaluate(argv_eval)
                if code:
                    return code
            results[set_name, model_name] = (_per_image(folder), json.loads((folder / "summary.json").read_text()))

    lines = ["# mri4x beyond X-rays: gains over the scalar λ solved to convergence (T = "
             f"{args.scalar_iters}, step balance {args.scalar_step_balance:g}), models at T = {args.iters}", "",
             "Simulated single-coil MRI, 4× rows, s = 0.05 (the task's evaluation level), seed of image i = i; "
             "PSNR of |x̂| in dB; the scalar λ is the per-image oracle (chosen against the clean image).", "",
             "| set | model | best scalar | learned | mean gain | worst image | better than scalar |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for (set_name, model_name), (gains, summary) in results.items():
        lines.append(_summary_line(set_name, model_name, gains, summary))
    ood_gains = [results["ood", m][0] for m in names]
    lines += ["", "Every out-of-domain image (gain over the scalar, dB):", "",
              "| image | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for image in ood_gains[0]:
        lines.append(f"| {image} | " + " | ".join(f"{g[image]:+.2f}" for g in ood_gains) + " |")
    lines += _noise_units(ood, names, {m: results["ood", m][1] for m in names}, args.out)
    lines += ["", f"Per-image CSVs and the settings: the `xray_*` and `ood_*` folders here "
              f"(`python experiments/mri4x_generalisation.py --new {' '.join(args.new)}"
              + (f" --ood-only {' '.join(args.ood_only)}" if args.ood_only else "") + f" --out {args.out}`).", ""]
    atomic_write_text(args.out / "README.md", "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
