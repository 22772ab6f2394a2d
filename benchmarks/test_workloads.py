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
from harness import forward, forward_backward, make_problem, make_train_step, probe_memory, solvers

IMPLS = list(solvers())


def grid_search_batched(z, lambdas, n_iter):
    """All λ of a scalar grid in one batched tvfast.pdhg call (Λ of shape (K,)), compiled as the grid search is."""
    with torch.no_grad():
        return tvfast.pdhg(z.expand(len(lambdas), 1, *z.shape[-2:]).contiguous(), lambdas, n_iter, compile=True)


def grid_search_sequential_reference(z, lambdas, n_iter):
    """The same grid as K separate reference solves."""
    from tvfast.solver.reference import pdhg_reference

    with torch.no_grad():
        return torch.cat([pdhg_reference(z, float(lam), n_iter) for lam in lambdas])


def skimage_tv(z_np, weight: float, n_iter: int):
    """scikit-image's Chambolle TV (scalar weight only), capped at n_iter iterations."""
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(z_np, weight=weight, eps=0.0, max_num_iter=n_iter)



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
        benchmark.pedantic(forward, args=(solvers()["tvfast"], z, 0.05, 256), rounds=5, warmup_rounds=1)
    else:
        z_np = z[0, 0].numpy().astype(np.float64)
        benchmark.pedantic(skimage_tv, args=(z_np, 0.05, 256), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("n_iter", [64, 128, 256, 512, 1024])
def test_cost_against_iterations(benchmark, n_iter):
    """tvfast forward+backward at 256² for growing T: time and memory should grow linearly."""
    benchmark.group = "tvfast forward+backward 256x256 vs T"
    z, lam = make_problem(256)
    benchmark.pedantic(forward_backward, args=(solvers()["tvfast"], z, lam, n_iter), rounds=3, warmup_rounds=1)
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


def _lambda_net_train_step(precision_name: str, size: int = 128, batch: int = 4, n_iter: int = 256):
    """One LambdaNet training step (U-Net → Λ → tvfast.pdhg → MSE → backward → Adam) at a U-Net precision.

    ``before``: float32, contiguous (the trainer before ``--precision``); ``auto``: what
    ``tvfast train`` picks on this machine; ``bf16``: bf16 autocast + channels-last, forced.
    """
    from tvfast.models.lambda_net import LambdaNet
    from tvfast.models.precision import Precision, resolve_precision

    torch.manual_seed(0)
    model = LambdaNet(n_iter=n_iter, solver_compile=True)  # as the trainer builds it
    precision = Precision(False, False) if precision_name == "before" else resolve_precision(precision_name, "cpu")
    model.set_precision(precision)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    clean, _ = make_problem(size, batch)
    noisy = clean + 0.05 * torch.randn_like(clean)

    def step():
        loss = (model(noisy) - clean).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step, precision


@pytest.mark.quick
@pytest.mark.parametrize("precision", ["before", "auto", "bf16"])
def test_train_step_precision(benchmark, precision):
    """Issue #9: the training step at 4 × 128², T = 256 with the U-Net in float32 (before), auto and bf16."""
    from tvfast.models.precision import cpu_has_amx_bf16

    benchmark.group = "train step 4x128x128 T=256 by U-Net precision"
    step, resolved = _lambda_net_train_step(precision)
    benchmark.extra_info.update(resolved=resolved.name, amx_bf16=cpu_has_amx_bf16(),
                                cpu_capability=torch.backends.cpu.get_cpu_capability())
    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
