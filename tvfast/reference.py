"""The reference PDHG loop: plain PyTorch, differentiated by autograd.

This is the baseline every fused path is tested and benchmarked against. It
follows SPEC §3 line by line and keeps whatever autograd keeps (several float
images per iteration).
"""

from __future__ import annotations

import torch

from tvfast.operators import grad_T, gradient

__all__ = ["pdhg_reference"]


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
    if z.dim() != 4 or z.shape[1] != 1:
        raise ValueError(f"z: expected shape (B, 1, H, W), got {tuple(z.shape)}")
    z = z[:, 0]  # (B, H, W); the dual variable is (B, 2, H, W), like Λ
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
    return x.unsqueeze(1)
