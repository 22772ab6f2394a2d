"""The reference PDHG loop: plain PyTorch, differentiated by autograd.

This is the baseline every fused path is tested and benchmarked against. It
follows docs/method.md §3 line by line and keeps whatever autograd keeps (several float
images per iteration). Images are (B, 1, H, W) with the 2-D gradient of §2;
volumes or (x, y, t) sequences are (B, 1, D, H, W) with the 3-D gradient of
§9 (:func:`tvfast.solver.differences.gradient3d`), and the same loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from tvfast.solver.arguments import default_step
from tvfast.solver.differences import grad_T, grad_T3d, gradient, gradient3d

__all__ = ["pdhg_reference", "pdhg_reference_iterates", "IterationState"]


def _check_z(z: torch.Tensor) -> int:
    """The number of spatial dimensions of z: 2 for (B, 1, H, W), 3 for (B, 1, D, H, W)."""
    if z.dim() not in (4, 5) or z.shape[1] != 1:
        raise ValueError(f"z: expected shape (B, 1, H, W) or (B, 1, D, H, W), got {tuple(z.shape)}")
    return z.dim() - 2


def pdhg_reference(
    z: torch.Tensor,
    Lambda: torch.Tensor | float,
    n_iter: int = 256,
    tau: float | None = None,
    sigma: float | None = None,
    theta: float = 1.0,
) -> torch.Tensor:
    r"""Solve ½‖x − z‖² + ‖Λ∘∇x‖₁ with ``n_iter`` Chambolle–Pock iterations.

    Parameters
    ----------
    z : (B, 1, H, W) or (B, 1, D, H, W) tensor
        Noisy images, or volumes / sequences (D = depth or time, docs/method.md §9).
    Lambda : float or tensor broadcastable to (B, 2, H, W), or to (B, 3, D, H, W) for volumes
        Non-negative regularisation strength (images: channel 0 vertical, 1
        horizontal; volumes: channel c weights the differences along axis c of (D, H, W)).
    tau, sigma : float or None
        Step sizes; None means 1/3 for images and 1/√13 for volumes. Not checked.

    Iteration (x₀ = x̄₀ = z, p₀ = 0, q₀ = 0)::

        p ← (p + σ(x̄ − z)) / (1 + σ)
        q ← clip(q + σ∇x̄, −Λ, Λ)
        x_new ← x − τp − τ∇ᵀq
        x̄ ← x_new + θ(x_new − x)
    """
    _check_z(z)
    x = z[:, 0]
    for state in pdhg_reference_iterates(z, Lambda, n_iter, tau, sigma, theta):
        x = state.x
    return x.unsqueeze(1)


class IterationState(NamedTuple):
    """The variables after one reference iteration.

    Images: primal (B, H, W), duals (B, 2, H, W); volumes: primal (B, D, H, W), duals (B, 3, D, H, W).
    """

    u: torch.Tensor  # q_k + σ∇x̄_k, the dual update before the clip
    q: torch.Tensor  # q_{k+1} = clip(u, −Λ, Λ)
    p: torch.Tensor  # p_{k+1}
    x: torch.Tensor  # x_{k+1}
    x_bar: torch.Tensor  # x̄_{k+1}


def pdhg_reference_iterates(
    z: torch.Tensor,
    Lambda: torch.Tensor | float,
    n_iter: int = 256,
    tau: float | None = None,
    sigma: float | None = None,
    theta: float = 1.0,
) -> Iterator[IterationState]:
    """Yield the :class:`IterationState` of every iteration of :func:`pdhg_reference`.

    For tests and analysis that need the intermediate variables (clip states
    from ``u``, distances to the clip thresholds, …) without rewriting the loop.
    """
    spatial_dims = _check_z(z)  # now, not at the first next(): this function is not itself a generator
    tau = default_step(spatial_dims) if tau is None else tau
    sigma = default_step(spatial_dims) if sigma is None else sigma
    ops = (gradient, grad_T) if spatial_dims == 2 else (gradient3d, grad_T3d)
    return _iterate(z[:, 0], Lambda, n_iter, tau, sigma, theta, *ops)


def _iterate(z, Lambda, n_iter, tau, sigma, theta, grad, grad_adjoint) -> Iterator[IterationState]:
    # z is (B, H, W) or (B, D, H, W); the dual variable is (B, 2, H, W) or (B, 3, D, H, W), like Λ
    x = z
    x_bar = z
    p = torch.zeros_like(z)
    q = torch.zeros_like(grad(z))
    for _ in range(n_iter):
        p = (p + sigma * (x_bar - z)) / (1.0 + sigma)
        u = q + sigma * grad(x_bar)
        q = torch.minimum(torch.maximum(u, -Lambda), Lambda) if torch.is_tensor(Lambda) else u.clamp(-Lambda, Lambda)
        x_new = x - tau * p - tau * grad_adjoint(q)
        x_bar = x_new + theta * (x_new - x)
        x = x_new
        yield IterationState(u=u, q=q, p=p, x=x, x_bar=x_bar)
