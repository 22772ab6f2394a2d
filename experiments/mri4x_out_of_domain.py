"""The shipped mri4x model on images it has never seen: scikit-image's grey test images, at T = 128 and T = 256.

    python experiments/mri4x_out_of_domain.py --out experiments/results/mri4x_out_of_domain

Writes scikit-image's grey sample images (those that need no download, as
in ``natural_images.py``) as PNGs to ``OUT/images`` and runs
``tvfast evaluate --task mri4x`` on them twice: at the model's T = 128 and at
T = 256, where the scalar λ is solved closer to convergence (the model runs
at the same T, so the second row also shows how its Λ holds at a T it was
not trained for). Each image is centre-cropped and resized to 256² by the
evaluation; the simulation (4× rows, s = 0.05, smooth random phase) is the
task's, seeded per image. Results: ``OUT/T128/`` and ``OUT/T256/``
(per-image CSV, results.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--iters", type=int, nargs="+", default=[128, 256])
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from ood_images import write_ood_images  # noqa: E402  (the images of natural_images.py as PNGs)

    from tvfast.training.evaluate_reconstruction import main as evaluate

    images = args.out / "images"
    write_ood_images(images, 256)
    for n_iter in args.iters:
        code = evaluate(["--task", "mri4x", "--data", str(images), "--iters", str(n_iter), "--examples", "2",
                         "--out", str(args.out / f"T{n_iter}")])
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
