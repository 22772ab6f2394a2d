"""Several iterations per launch (kernels/blocked.py) against the one-step kernels.

Under the interpreter the blocked kernels compute the same expressions in the
same order, so x_T, the clip states, ∂ℓ/∂z and ∂ℓ/∂Λ are equal bit for bit,
whatever the window, K, the number of iterations (a last launch with fewer
than K), the tiling (several tiles per row or column, images smaller than the
halo) and the Λ layout. Compiled on a GPU (ids ``cuda``) the code generator
may contract the arithmetic differently, so there the values agree to
rounding.
"""

from __future__ import annotations

import os

import pytest
import torch

from tvfast.kernels import blocked, launch

pytestmark = pytest.mark.usefixtures("nan_empty")

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need TRITON_INTERPRET=1")),
    pytest.param("cuda", marks=pytest.mark.skipif(INTERPRETED or not torch.cuda.is_available(),
                                                  reason="needs CUDA and compiled kernels")),
]
CASES = [  # shape (B, H, W), Λ channels, Λ batch, K, T
    ((1, 16, 16), 1, 1, 2, 5),
    ((2, 13, 22), 2, 2, 4, 9),  # T not a multiple of K
    ((1, 3, 67), 1, 1, 4, 8),  # H < K (the window wraps the image), two tiles per row
    ((2, 67, 5), 2, 1, 4, 7),  # two tiles per column, one Λ for the batch, odd W
    ((1, 5, 7), 2, 1, 6, 4),  # T < K
]


def _problem(shape, channels, lam_batch, dtype, device):
    gen = torch.Generator().manual_seed(sum(shape) + channels)
    z = torch.rand(shape, generator=gen, dtype=torch.float64)
    lam = 0.15 * torch.rand(lam_batch, channels, *shape[1:], generator=gen, dtype=torch.float64)
    grad = torch.randn(shape, generator=gen, dtype=torch.float64)
    return z.to(device, dtype), lam.to(device, dtype), grad.to(device, dtype)


def _same(a, b, device, dtype):
    if device == "cpu":
        assert torch.equal(a, b)
    else:
        torch.testing.assert_close(a, b, rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape, channels, lam_batch, k, n_iter", CASES)
def test_blocked_forward_and_adjoint_equal_the_one_step_kernels(shape, channels, lam_batch, k, n_iter, dtype,
                                                                device):
    z, lam, grad = _problem(shape, channels, lam_batch, dtype, device)
    steps = (0.3, 0.3, 1.0)
    x_one, states_one = launch.solve_forward(z, lam, n_iter, *steps, keep_states=True)
    x_blk, states_blk = blocked.solve_forward(z, lam, n_iter, *steps, keep_states=True, iterations_per_launch=k)
    _same(x_blk, x_one, device, dtype)
    if device == "cpu" or dtype == torch.float64:
        assert torch.equal(states_blk, states_one)
    gz_one, glam_one = launch.solve_backward(grad, states_one, channels, True, *steps)
    gz_blk, glam_blk = blocked.solve_backward(grad, states_one, channels, True, *steps, iterations_per_launch=k)
    _same(gz_blk, gz_one, device, dtype)
    _same(glam_blk, glam_one, device, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_blocked_forward_without_states_and_backward_without_glam(device):
    z, lam, grad = _problem((2, 20, 24), 1, 1, torch.float64, device)
    x_one, states = launch.solve_forward(z, lam, 6, 0.25, 0.4, 0.5, keep_states=True)
    x_blk, none = blocked.solve_forward(z, lam, 6, 0.25, 0.4, 0.5, keep_states=False, iterations_per_launch=2)
    assert none is None
    _same(x_blk, x_one, device, torch.float64)
    gz_one, _ = launch.solve_backward(grad, states, 1, False, 0.25, 0.4, 0.5)
    gz_blk, glam = blocked.solve_backward(grad, states, 1, False, 0.25, 0.4, 0.5, iterations_per_launch=2)
    assert glam is None
    _same(gz_blk, gz_one, device, torch.float64)


@pytest.mark.parametrize("k", [0, 1, 3, -2, 2.0, True])
def test_iterations_per_launch_must_be_even(k):
    z = torch.rand(1, 8, 8)
    with pytest.raises(ValueError, match=r"^iterations_per_launch: expected an even int >= 2"):
        blocked.solve_forward(z, torch.full((1, 1, 8, 8), 0.1), 4, 0.3, 0.3, 1.0, False, iterations_per_launch=k)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match=r"^z: expected \(B, H, W\) images"):
        blocked.solve_forward(torch.rand(1, 2, 8, 8), torch.full((1, 1, 8, 8), 0.1), 4, 0.3, 0.3, 1.0, False)
    with pytest.raises(ValueError, match=r"^lam: expected a 4-D tensor"):
        blocked.solve_forward(torch.rand(1, 8, 8), torch.full((1, 3, 8, 8), 0.1), 4, 0.3, 0.3, 1.0, False)
    with pytest.raises(ValueError, match=r"^clip_states: expected uint8"):
        blocked.solve_backward(torch.rand(1, 8, 8), torch.zeros(4, 1, 8, 8, dtype=torch.uint8), 1, True,
                               0.3, 0.3, 1.0)
