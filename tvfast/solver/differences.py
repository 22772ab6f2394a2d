"""The periodic finite-difference gradient and its exact adjoint (docs/method.md §2, §9).

For an image batch ``x`` of shape (..., H, W)::

    (∇x)₀[i,j] = x[(i+1) mod H, j] − x[i,j]        vertical
    (∇x)₁[i,j] = x[i, (j+1) mod W] − x[i,j]        horizontal
    (∇ᵀq)[i,j] = q₀[(i−1) mod H, j] − q₀[i,j] + q₁[i, (j−1) mod W] − q₁[i,j]

``∇ᵀ`` is the adjoint of ``∇``: ⟨∇x, q⟩ = ⟨x, ∇ᵀq⟩, and ‖∇‖² ≤ 8.

For a volume or an (x, y, t) sequence ``x`` of shape (..., D, H, W)
(docs/method.md §9), :func:`gradient3d` adds the difference along D::

    (∇x)₀[d,i,j] = x[(d+1) mod D, i, j] − x[d,i,j]   depth / time
    (∇x)₁[d,i,j] = x[d, (i+1) mod H, j] − x[d,i,j]   vertical
    (∇x)₂[d,i,j] = x[d, i, (j+1) mod W] − x[d,i,j]   horizontal
    (∇ᵀq)[d,i,j] = Σ_c q_c[(·) − e_c] − q_c[d,i,j]    (backward differences, index c wrapped)

and ‖∇‖² ≤ 12. Both are instances of :func:`forward_differences` /
:func:`forward_differences_T` over the last ``ndim`` axes.
"""

from __future__ import annotations

import torch

__all__ = ["gradient", "grad_T", "gradient3d", "grad_T3d", "forward_differences", "forward_differences_T"]


def forward_differences(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Periodic forward differences along the last ``ndim`` axes: (..., *S) → (..., ndim, *S).

    Channel c is the difference along axis c of S (the first of the last ``ndim`` axes is c = 0).
    """
    dims = range(-ndim, 0)
    return torch.stack([torch.roll(x, shifts=-1, dims=d) - x for d in dims], dim=-ndim - 1)


def forward_differences_T(q: torch.Tensor, ndim: int) -> torch.Tensor:
    """Adjoint of :func:`forward_differences`: (..., ndim, *S) → (..., *S) (a negative divergence)."""
    out = None
    for d, q_c in zip(range(-ndim, 0), q.unbind(dim=-ndim - 1)):
        term = torch.roll(q_c, shifts=1, dims=d) - q_c
        out = term if out is None else out + term
    return out


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Periodic forward differences of ``x`` (..., H, W) → (..., 2, H, W)."""
    d0 = torch.roll(x, shifts=-1, dims=-2) - x
    d1 = torch.roll(x, shifts=-1, dims=-1) - x
    return torch.stack((d0, d1), dim=-3)


def grad_T(q: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`gradient`: (..., 2, H, W) → (..., H, W) (a negative divergence)."""
    q0, q1 = q.unbind(dim=-3)
    return (torch.roll(q0, shifts=1, dims=-2) - q0) + (torch.roll(q1, shifts=1, dims=-1) - q1)


def gradient3d(x: torch.Tensor) -> torch.Tensor:
    """Periodic forward differences of ``x`` (..., D, H, W) → (..., 3, D, H, W) (docs/method.md §9)."""
    return forward_differences(x, 3)


def grad_T3d(q: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`gradient3d`: (..., 3, D, H, W) → (..., D, H, W) (a negative divergence)."""
    return forward_differences_T(q, 3)
