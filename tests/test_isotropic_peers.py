"""Isotropic TV against the peers at convergence: the same minimiser, with their parameters mapped to λ.

tvfast's ``pdhg(z, λ, tv="isotropic", boundary="neumann")`` minimises
½‖x − z‖² + λ Σ |∇x| with forward differences that are 0 across the last row
and column (docs/method.md §12). The mappings (benchmarks/isotropic_peers.py
derives them):

* scikit-image ``denoise_tv_chambolle(z, weight=w)``: **w = λ**;
* DeepInverse ``TVDenoiser(ths=γ)``: **γ = λ**.

scikit-image is in the ``dev`` extra; DeepInverse imports torchvision, whose
wheels need their own torch build, so its test runs in the separate peers
environment (``pip install deepinv`` beside ``pip install -e . --no-deps``)
and is skipped elsewhere. All three solvers converge slowly (O(1/k)), so the
problem is small (32²) and the iterations many; at 20 000 iterations each is
within about 3e-5 of a 400 000-iteration solution, and a wrong mapping (w = 2λ)
would differ by about 1e-2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tvfast

ITERS = 20_000


def _objective(x: np.ndarray, z: np.ndarray, lam: float) -> float:
    dh = np.zeros_like(x)
    dw = np.zeros_like(x)
    dh[:-1] = np.diff(x, axis=0)
    dw[:, :-1] = np.diff(x, axis=1)
    return float(0.5 * ((x - z) ** 2).sum() + lam * np.sqrt(dh**2 + dw**2).sum())


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32] / 32
    clean = 0.5 + 0.3 * np.sin(6 * xx) * np.cos(4 * yy) + 0.2 * ((xx - 0.5) ** 2 + (yy - 0.4) ** 2 < 0.08)
    return clean + 0.1 * rng.standard_normal(clean.shape)


@pytest.fixture(scope="module")
def tvfast_solutions(problem):
    z = torch.from_numpy(problem)[None, None]
    return {lam: tvfast.pdhg(z, lam, ITERS, tv="isotropic", boundary="neumann")[0, 0].numpy() for lam in (0.05, 0.1)}


def _agree(x: np.ndarray, ours: np.ndarray, z: np.ndarray, lam: float) -> None:
    assert np.abs(x - ours).max() < 1e-4
    assert abs(_objective(x, z, lam) - _objective(ours, z, lam)) <= 1e-7 * _objective(ours, z, lam)


@pytest.mark.parametrize("lam", [0.05, 0.1])
def test_scikit_image_chambolle_weight_is_lambda(problem, tvfast_solutions, lam):
    restoration = pytest.importorskip("skimage.restoration")
    x = restoration.denoise_tv_chambolle(problem, weight=lam, eps=0.0, max_num_iter=ITERS)
    _agree(x, tvfast_solutions[lam], problem, lam)


def test_scikit_image_with_another_weight_differs(problem, tvfast_solutions):
    """The comparison can fail: weight = 2λ is a different minimiser."""
    restoration = pytest.importorskip("skimage.restoration")
    x = restoration.denoise_tv_chambolle(problem, weight=0.1, eps=0.0, max_num_iter=ITERS)
    assert np.abs(x - tvfast_solutions[0.05]).max() > 1e-3


@pytest.mark.parametrize("lam", [0.05, 0.1])
def test_deepinverse_tv_denoiser_ths_is_lambda(problem, tvfast_solutions, lam):
    models = pytest.importorskip("deepinv.models", reason="DeepInverse runs in the separate peers environment")
    denoiser = models.TVDenoiser(ths=lam, n_it_max=ITERS, crit=0.0)
    with torch.no_grad():
        x = denoiser(torch.from_numpy(problem)[None, None])[0, 0].numpy()
    _agree(x, tvfast_solutions[lam], problem, lam)
