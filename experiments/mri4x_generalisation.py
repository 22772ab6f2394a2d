"""Two mri4x models against the scalar λ solved closer to convergence, on the X-ray test split and out-of-domain images.

    python experiments/mri4x_generalisation.py --new runs/mri4x_general/best.safetensors \
        --out experiments/results/mri4x_generalisation [--iters 256] [--scalar-iters 512]

For each model (``--old``: the shipped ``mri4x`` by default; ``--new``) and
each set, ``tvfast evaluate --task mri4x`` with the model at T = ``--iters``
and the oracle best scalar λ at T = ``--scalar-iters`` (same simulated data
for both models: the seed of image i is i):

* ``xray``: the X-ray MRI test split (``--test``, 100 images);
* ``ood``: scikit-image's 12 grey sample images, the Shepp–Logan phantom
  (scikit-image, BSD-3) and DIPY's T1 coronal brain slice (the DIPY wheel's
  ``dipy/data/files/t1_coronal_slice.npy``, BSD-3; DIPY must be installed),
  written as 256² PNGs by ``ood_images.py``.

Writes each evaluation's folder (per-image CSV, results.md) under ``OUT`` and
``OUT/README.md``: per set and model the mean gain over the scalar, the worst
image, the share of images better than the scalar, and every out-of-domain
image. ``--limit`` evaluates only the first N images of each set (a smoke run).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _per_image(folder: Path) -> dict[str, float]:
    with open(folder / "per_image.csv", newline="") as f:
        return {row["image"]: float(row["gain_psnr"]) for row in csv.DictReader(f)}


def _summary_line(name: str, model: str, gains: dict[str, float], summary: dict) -> str:
    values = list(gains.values())
    worst = min(gains, key=gains.get)
    better = sum(g > 0 for g in values)
    return (f"| {name} | {model} | {summary['metrics']['psnr_best_scalar'][0]:.2f} | "
            f"{summary['metrics']['psnr_learned'][0]:.2f} | {sum(values) / len(values):+.2f} | "
            f"{gains[worst]:+.2f} (`{worst}`) | {better}/{len(values)} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new", required=True, help="the new model's weights (.safetensors with its .json)")
    parser.add_argument("--old", default=None, help="the model to compare with (default: the shipped mri4x)")
    parser.add_argument("--test", type=Path, default=HERE.parent.parent / "shared" / "data" / "chest_xray" / "test")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iters", type=int, default=256, help="T of the models")
    parser.add_argument("--scalar-iters", type=int, default=512, help="T of the scalar baseline")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    args = parser.parse_args(argv)
    if not Path(args.new).is_file():
        parser.error(f"--new: {args.new} is not a file")
    if not args.test.is_dir():
        parser.error(f"--test: {args.test} is not a folder")

    sys.path.insert(0, str(HERE))
    from ood_images import write_ood_images  # noqa: E402  (the same image list and loading)

    from tvfast.training.evaluate_reconstruction import main as evaluate

    ood = args.out / "ood_images"
    write_ood_images(ood, 256, phantom=True, dipy_t1=True)
    models = {"shipped mri4x" if args.old is None else "old": args.old, "new": args.new}
    sets = {"xray": args.test, "ood": ood}
    results: dict[tuple[str, str], tuple[dict, dict]] = {}
    for set_name, data in sets.items():
        for model_name, weights in models.items():
            folder = args.out / f"{set_name}_{model_name.split()[-1]}"
            argv_eval = ["--task", "mri4x", "--data", str(data), "--iters", str(args.iters),
                         "--scalar-iters", str(args.scalar_iters), "--examples", "2", "--out", str(folder)]
            if weights is not None:
                argv_eval += ["--weights", str(weights)]
            if args.limit is not None:
                argv_eval += ["--limit", str(args.limit)]
            code = evaluate(argv_eval)
            if code:
                return code
            results[set_name, model_name] = (_per_image(folder), json.loads((folder / "summary.json").read_text()))

    lines = ["# mri4x beyond X-rays: gains over the scalar λ solved at T = "
             f"{args.scalar_iters}, models at T = {args.iters}", "",
             "Simulated single-coil MRI, 4× rows, s = 0.05 (the task's evaluation level), seed of image i = i; "
             "PSNR of |x̂| in dB; the scalar λ is the per-image oracle (chosen against the clean image).", "",
             "| set | model | best scalar | learned | mean gain | worst image | better than scalar |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for (set_name, model_name), (gains, summary) in results.items():
        lines.append(_summary_line(set_name, model_name, gains, summary))
    names = list(models)
    ood_gains = [results["ood", m][0] for m in names]
    lines += ["", "Every out-of-domain image (gain over the scalar, dB):", "",
              "| image | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for image in ood_gains[0]:
        lines.append(f"| {image} | " + " | ".join(f"{g[image]:+.2f}" for g in ood_gains) + " |")
    lines += ["", f"Per-image CSVs and the settings: the `xray_*` and `ood_*` folders here "
              f"(`python experiments/mri4x_generalisation.py --new {args.new} --out {args.out}`).", ""]
    (args.out / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
