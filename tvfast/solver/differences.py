"""The finite-difference gradient and its exact adjoint (docs/method.md §2, §9; Neumann boundary §10).

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

``boundary="neumann"`` in those two replaces the wrap-around by a zero
difference at the last index of each axis (and drops that entry from the
adjoint); :func:`neumann_mask` is the Λ mask that turns the periodic solver
into the Neumann one (docs/method.md §10).
"""

from __future__ import annotations

import torch

__all__ = ["gradient", "grad_T", "gradient3d", "grad_T3d", "forward_differences", "forward_differences_T",
           "neumann_mask", "BOUNDARIES"]


def forward_differences(x: torch.Tensor, ndim: int, boundary: str = "periodic") -> torch.Tensor:
    """Forward differences along the last ``ndim`` axes: (..., *S) → (..., ndim, *S).

    Channel c is the difference along axis c of S (the first of the last
    ``ndim`` axes is c = 0). ``boundary="periodic"`` wraps around;
    ``"neumann"`` sets the difference that would wrap (last index along
    axis c) to 0 (docs/method.md §10).
    """
    dims = range(-ndim, 0)
    if boundary == "periodic":
        return torch.stack([torch.roll(x, shifts=-1, dims=d) - x for d in dims], dim=-ndim - 1)
    _check_boundary(boundary)
    parts = []
    for d in dims:
        n = x.shape[d]
        inner = x.narrow(d, 1, n - 1) - x.narrow(d, 0, n - 1)
        parts.append(torch.cat((inner, torch.zeros_like(x.narrow(d, 0, 1))), dim=d))
    return torch.stack(parts, dim=-ndim - 1)


def forward_differences_T(q: torch.Tensor, ndim: int, boundary: str = "periodic") -> torch.Tensor:
    """Adjoint of :func:`forward_differences`: (..., ndim, *S) → (..., *S) (a negative divergence).

    Neumann: (∂_cᵀ q_c)[i] = q_c[i−1]·[i ≥ 1] − q_c[i]·[i ≤ n−2]; q_c at the last index is ignored.
    """
    if boundary != "periodic":
        _check_boundary(boundary)
    out = None
    for d, q_c in zip(range(-ndim, 0), q.unbind(dim=-ndim - 1)):
        if boundary == "periodic":
            term = torch.roll(q_c, shifts=1, dims=d) - q_c
        else:
            n = q_c.shape[d]
            zero = torch.zeros_like(q_c.narrow(d, 0, 1))
            kept = q_c.narrow(d, 0, n - 1)
            term = torch.cat((zero, kept), dim=d) - torch.cat((kept, zero), dim=d)
        out = term if out is None else out + term
    return out


def neumann_mask(spatial_shape, dtype: torch.dtype, device) -> torch.Tensor:
    """m of shape (1, n, *S), n = len(S): 0 on the last index along axis c in channel c, 1 elsewhere.

    Neumann differences are the periodic ones with the wrapping difference
    removed. In PDHG that is exactly the periodic iteration with Λ replaced
    by Λ∘m: where Λ = 0 the dual is clipped to [0, 0] and stays 0, so the
    wrapping difference never enters ∇ᵀq (docs/method.md §10).
    """
    n_axes = len(spatial_shape)
    mask = torch.ones((1, n_axes, *spatial_shape), dtype=dtype, device=device)
    for axis in range(n_axes):
        mask[:, axis].select(axis + 1, spatial_shape[axis] - 1).zero_()
    return mask


BOUNDARIES = ("periodic", "neumann")


def _check_boundary(boundary) -> None:
    if boundary not in BOUNDARIES:
        raise ValueError(f"boundary: expected one of {BOUNDARIES}, got {boundary!r}")


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
