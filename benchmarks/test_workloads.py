"""Workloads around the op (issue #4): a training step, the scalar-λ grid
search, the scikit-image peer, cost against T, a 2048² image and a training
step on the largest full-resolution chest X-ray.

Every comparison runs both sides in this process (same inputs) as one
pytest-benchmark group; memory comes from a fresh process per case.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tvfast
from tvfast.benchmarking import (
    forward, forward_backward, grid_search_batched, grid_search_sequential_reference, make_problem,
    make_train_step, probe_memory, skimage_tv, solvers,
)  # fmt: skip

IMPLS = list(solvers())


@pytest.mark.quick
@pytest.mark.parametrize("impl", IMPLS)
def test_train_step_256(benchmark, impl):
    """One step: U-Net (1.8 M) → Λ → solver (T = 256) → MSE → backward → Adam, 256², B = 1."""
    benchmark.group = "train step 256x256 T=256"
    step = make_train_step(solvers()[impl], 256)
    benchmark.pedantic(step, rounds=3, warmup_rounds=1)


@pytest.mark.quick
@pytest.mark.parametrize("impl", IMPLS)
def test_train_step_memory_256(benchmark, impl):
    benchmark.group = "memory train step 256x256 T=256"
    result = benchmark.pedantic(probe_memory, args=(impl, 256, 1, 256, "train_step"), rounds=1, iterations=1)
    benchmark.extra_info["peak_extra_bytes"] = result["extra_bytes"]


LAMBDAS = torch.linspace(0.0, 0.8, 81)


@pytest.mark.parametrize("impl", IMPLS)
def test_grid_search_81(benchmark, impl):
    """81 scalar λ for one 256² image: one batched tvfast call vs 81 reference solves."""
    benchmark.group = "grid search 81 lambdas 256x256 T=256"
    z, _ = make_problem(256)
    fn = grid_search_batched if impl == "tvfast" else grid_search_sequential_reference
    benchmark.pedantic(fn, args=(z, LAMBDAS, 256), rounds=1, warmup_rounds=1)


@pytest.mark.quick
@pytest.mark.parametrize("impl", ["tvfast", "skimage"])
def test_scalar_tv_vs_skimage(benchmark, impl):
    """Scalar-weight TV, 256², 256 iterations: tvfast (PDHG) vs skimage's denoise_tv_chambolle.
    Different algorithms and weight conventions: a cost comparison at equal iteration count."""
    benchmark.group = "scalar TV 256x256 256 iterations vs skimage"
    z, _ = make_problem(256)
    if impl == "tvfast":
        benchmark.pedantic(forward, args=(tvfast.pdhg, z, 0.05, 256), rounds=5, warmup_rounds=1)
    else:
        z_np = z[0, 0].numpy().astype(np.float64)
        benchmark.pedantic(skimage_tv, args=(z_np, 0.05, 256), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("n_iter", [64, 128, 256, 512, 1024])
def test_cost_against_iterations(benchmark, n_iter):
    """tvfast forward+backward at 256² for growing T: time and memory should grow linearly."""
    benchmark.group = "tvfast forward+backward 256x256 vs T"
    z, lam = make_problem(256)
    benchmark.pedantic(forward_backward, args=(tvfast.pdhg, z, lam, n_iter), rounds=3, warmup_rounds=1)
    benchmark.extra_info["peak_extra_bytes"] = probe_memory("tvfast", 256, 1, n_iter)["extra_bytes"]
    benchmark.extra_info["iters"] = n_iter


def test_memory_2048_forward_backward(benchmark):
    """Forward+backward through 256 iterations of a 2048² image (target ≤ 2.5 GB peak RSS)."""
    benchmark.group = "tvfast 2048x2048 T=256 forward+backward"
    result = benchmark.pedantic(probe_memory, args=("tvfast", 2048, 1, 256), rounds=1, iterations=1)
    benchmark.extra_info.update(peak_rss_bytes=result["rss_peak"], peak_extra_bytes=result["extra_bytes"])


FULLRES = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray" / "fullres"


def _largest_fullres_image() -> Path | None:
    from PIL import Image

    files = sorted(FULLRES.glob("*.png")) if FULLRES.is_dir() else []
    if not files:
        return None

    def pixels(path):
        with Image.open(path) as im:
            return im.width * im.height

    return max(files, key=pixels)


def test_train_step_fullres_xray(benchmark):
    """One training step (U-Net → Λ → tvfast.pdhg, T = 256, MSE, backward, Adam)
    on the largest full-resolution X-ray, in a fresh process: time and peak RSS.
    The reference loop is not run: it would keep ≈ 64 B/pixel/iteration (≈ 66 GB here)."""
    image = _largest_fullres_image()
    if image is None:
        pytest.skip(f"no full-resolution images in {FULLRES}")
    benchmark.group = "train step full-resolution X-ray T=256"
    result = benchmark.pedantic(probe_memory, args=("tvfast", 0, 1, 256, "train_step", str(image)),
                                rounds=1, iterations=1)
    from PIL import Image

    with Image.open(image) as im:
        benchmark.extra_info.update(image=image.name, width=im.width, height=im.height)
    benchmark.extra_info.update(step_seconds=result["seconds"], peak_rss_bytes=result["rss_peak"],
                                peak_extra_bytes=result["extra_bytes"])
