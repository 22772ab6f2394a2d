"""The reference PDHG loop: plain PyTorch, differentiated by autograd.

This is the baseline every fused path is tested and benchmarked against. It
follows docs/method.md §3 line by line and keeps whatever autograd keeps (several float
images per iteration).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from tvfast.operators import grad_T, gradient

__all__ = ["pdhg_reference", "pdhg_reference_iterates", "IterationState"]


def _check_z(z: torch.Tensor) -> None:
    if z.dim() != 4 or z.shape[1] != 1:
        raise ValueError(f"z: expected shape (B, 1, H, W), got {tuple(z.shape)}")


def pdhg_reference(
    z: torch.Tensor,
    Lambda: torch.Tensor | float,
    n_iter: int = 256,
    tau: float = 1.0 / 3.0,
    sigma: float = 1.0 / 3.0,
    theta: float = 1.0,
) -> torch.Tensor:
    r"""Solve ½‖x − z‖² + ‖Λ∘∇x‖₁ with ``n_iter`` Chambolle–Pock iterations.

    Parameters
    ----------
    z : (B, 1, H, W) tensor
        Noisy images.
    Lambda : float or tensor broadcastable to (B, 2, H, W)
        Non-negative regularisation strength (channel 0 vertical, 1 horizontal).

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
    """The variables after one reference iteration (images (B, H, W), duals (B, 2, H, W))."""

    u: torch.Tensor  # q_k + σ∇x̄_k, the dual update before the clip
    q: torch.Tensor  # q_{k+1} = clip(u, −Λ, Λ)
    p: torch.Tensor  # p_{k+1}
    x: torch.Tensor  # x_{k+1}
    x_bar: torch.Tensor  # x̄_{k+1}


def pdhg_reference_iterates(
    z: torch.Tensor,
    Lambda: torch.Tensor | float,
    n_iter: int = 256,
    tau: float = 1.0 / 3.0,
    sigma: float = 1.0 / 3.0,
    theta: float = 1.0,
) -> Iterator[IterationState]:
    """Yield the :class:`IterationState` of every iteration of :func:`pdhg_reference`.

    For tests and analysis that need the intermediate variables (clip states
    from ``u``, distances to the clip thresholds, …) without rewriting the loop.
    """
    _check_z(z)  # now, not at the first next(): this function is not itself a generator
    return _iterate(z[:, 0], Lambda, n_iter, tau, sigma, theta)


def _iterate(z, Lambda, n_iter, tau, sigma, theta) -> Iterator[IterationState]:
    # z is (B, H, W); the dual variable is (B, 2, H, W), like Λ
    x = z
    x_bar = z
    p = torch.zeros_like(z)
    q = torch.zeros_like(gradient(z))
    for _ in range(n_iter):
        p = (p + sigma * (x_bar - z)) / (1.0 + sigma)
        u = q + sigma * gradient(x_bar)
        q = torch.minimum(torch.maximum(u, -Lambda), Lambda) if torch.is_tensor(Lambda) else u.clamp(-Lambda, Lambda)
        x_new = x - tau * p - tau * grad_T(q)
        x_bar = x_new + theta * (x_new - x)
        x = x_new
        yield IterationState(u=u, q=q, p=p, x=x, x_bar=x_bar)
