"""Isotropic TV at convergence: tvfast against scikit-image's Chambolle and DeepInverse's TVDenoiser.

    python benchmarks/isotropic_peers.py [--out benchmarks/isotropic_peers_cpu.json]

Run it in an environment with scikit-image and DeepInverse (DeepInverse
imports torchvision, whose wheels need their own torch build: a separate
virtual environment with ``pip install -e . --no-deps``).

All three solve the same problem, written in their own terms:

* tvfast: ``pdhg(z, λ, T, tv="isotropic", boundary="neumann")`` minimises
  ½‖x − z‖² + λ Σ |∇x| (docs/method.md §12), with forward differences that
  are 0 across the last row and column;
* scikit-image: ``denoise_tv_chambolle(z, weight=w)`` runs Chambolle's
  projection algorithm, whose fixed point p = −w ∇u/|∇u| makes u the
  minimiser of ½‖u − z‖² + w Σ |∇u| with the same differences
  (``np.diff``, nothing across the edge): **w = λ**;
* DeepInverse: ``TVDenoiser(ths=γ)`` minimises ½‖x − y‖² + γ‖Dx‖_{1,2}, D
  forward differences with the last one 0: **γ = λ**.

Each runs long enough to converge (float64, a 128² noisy photograph,
λ = 0.1); the rows give the largest pixel difference between the solutions
and the objective of each (the same function evaluated for all three).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _objective(x, z, lam: float) -> float:
    import numpy as np

    dh = np.zeros_like(x)
    dw = np.zeros_like(x)
    dh[:-1] = np.diff(x, axis=0)
    dw[:, :-1] = np.diff(x, axis=1)
    return float(0.5 * ((x - z) ** 2).sum() + lam * np.sqrt(dh**2 + dw**2).sum())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=20000, help="iterations of every solver")
    parser.add_argument("--out", type=Path, help="write the JSON rows here")
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from deepinv.models import TVDenoiser
    from skimage import data, transform
    from skimage.restoration import denoise_tv_chambolle

    import tvfast
    from tvfast.evaluation.report import machine_name

    clean = transform.resize(data.camera().astype(np.float64) / 255.0, (args.size, args.size), anti_aliasing=True)
    z = clean + 0.1 * np.random.default_rng(0).standard_normal(clean.shape)
    z_t = torch.from_numpy(z)[None, None]

    solutions, seconds = {}, {}
    start = time.perf_counter()
    solutions["tvfast"] = tvfast.pdhg(z_t, args.lam, args.iters, tv="isotropic", boundary="neumann")[0, 0].numpy()
    seconds["tvfast"] = time.perf_counter() - start
    start = time.perf_counter()
    solutions["scikit-image"] = denoise_tv_chambolle(z, weight=args.lam, eps=0.0, max_num_iter=args.iters)
    seconds["scikit-image"] = time.perf_counter() - start
    start = time.perf_counter()
    denoiser = TVDenoiser(ths=args.lam, n_it_max=args.iters, crit=0.0)
    solutions["deepinv"] = denoiser(z_t)[0, 0].numpy()
    seconds["deepinv"] = time.perf_counter() - start

    import deepinv
    import skimage

    versions = {"tvfast": tvfast.__version__, "scikit-image": skimage.__version__, "deepinv": deepinv.__version__}
    mapping = {"tvfast": "λ", "scikit-image": "weight = λ", "deepinv": "ths = λ"}
    rows = []
    for name, x in solutions.items():
        rows.append({"solver": name, "version": versions[name], "parameter": mapping[name], "lam": args.lam,
                     "iters": args.iters, "size": args.size, "seconds": seconds[name],
                     "objective": _objective(x, z, args.lam),
                     "max_abs_diff_vs_tvfast": float(np.abs(x - solutions["tvfast"]).max()),
                     "machine": machine_name(), "torch": torch.__version__})
    best = min(r["objective"] for r in rows)
    lines = ["| solver | parameter | iterations | objective − best | max |x − x_tvfast| | time | machine |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        r["objective_gap"] = r["objective"] - best
        lines.append(f"| {r['solver']} {r['version']} | {r['parameter']} | {r['iters']} | {r['objective_gap']:.2e} "
                     f"| {r['max_abs_diff_vs_tvfast']:.2e} | {r['seconds']:.2f} s | {r['machine']} |")
    print("\n".join(lines))
    if args.out is not None:
        from tvfast.io.atomic import atomic_write_text

        atomic_write_text(args.out, json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
