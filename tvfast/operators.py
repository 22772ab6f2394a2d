"""The periodic finite-difference gradient and its exact adjoint (docs/method.md §2).

For an image batch ``x`` of shape (..., H, W)::

    (∇x)₀[i,j] = x[(i+1) mod H, j] − x[i,j]        vertical
    (∇x)₁[i,j] = x[i, (j+1) mod W] − x[i,j]        horizontal
    (∇ᵀq)[i,j] = q₀[(i−1) mod H, j] − q₀[i,j] + q₁[i, (j−1) mod W] − q₁[i,j]

``∇ᵀ`` is the adjoint of ``∇``: ⟨∇x, q⟩ = ⟨x, ∇ᵀq⟩, and ‖∇‖² ≤ 8.
"""

from __future__ import annotations

import torch

__all__ = ["gradient", "grad_T"]


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Periodic forward differences of ``x`` (..., H, W) → (..., 2, H, W)."""
    d0 = torch.roll(x, shifts=-1, dims=-2) - x
    d1 = torch.roll(x, shifts=-1, dims=-1) - x
    return torch.stack((d0, d1), dim=-3)


def grad_T(q: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`gradient`: (..., 2, H, W) → (..., H, W) (a negative divergence)."""
    q0, q1 = q.unbind(dim=-3)
    return (torch.roll(q0, shifts=1, dims=-2) - q0) + (torch.roll(q1, shifts=1, dims=-1) - q1)
