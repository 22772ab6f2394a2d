"""The reference PDHG loop: plain PyTorch, differentiated by autograd.

This is the baseline every fused path is tested and benchmarked against. It
follows docs/method.md §3 line by line and keeps whatever autograd keeps (several float
images per iteration). Images are (B, 1, H, W) with the 2-D gradient of §2;
volumes or (x, y, t) sequences are (B, 1, D, H, W) with the 3-D gradient of
§9 (:func:`tvfast.solver.differences.forward_differences` over 2 or 3
axes), and the same loop. With a forward operator A (docs/method.md §10) the
data term is ½‖Ax − y‖² and x may be complex; ``boundary="neumann"`` uses
the Neumann differences directly (not the Λ mask of the fast paths).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

from tvfast.physics import as_operator, operator_norm
from tvfast.solver.arguments import default_step, operator_step
from tvfast.solver.differences import forward_differences, forward_differences_T

__all__ = ["pdhg_reference", "pdhg_reference_iterates", "IterationState"]


def _spatial_dims(x: torch.Tensor, name: str) -> int:
    """The number of spatial dimensions of x: 2 for (B, 1, H, W), 3 for (B, 1, D, H, W)."""
    if x.dim() not in (4, 5) or x.shape[1] != 1:
        raise ValueError(f"{name}: expected shape (B, 1, H, W) or (B, 1, D, H, W), got {tuple(x.shape)}")
    return x.dim() - 2


def pdhg_reference(
    z: torch.Tensor,
    Lambda: torch.Tensor | float,
    n_iter: int = 256,
    tau: float | None = None,
    sigma: float | None = None,
    theta: float = 1.0,
    *,
    operator=None,
    x0: torch.Tensor | None = None,
    boundary: str = "periodic",
    tv: str = "anisotropic",
) -> torch.Tensor:
    r"""Solve ½‖x − z‖² + ‖Λ∘∇x‖₁, or ½‖Ax − z‖² + ‖Λ∘∇x‖₁, with ``n_iter`` Chambolle–Pock iterations.

    Parameters
    ----------
    z : (B, 1, H, W) or (B, 1, D, H, W) tensor, or data y in the operator's range
        Noisy images, or volumes / sequences (D = depth or time, docs/method.md §9).
        With ``operator``: the data y.
    Lambda : float or tensor broadcastable to (B, 2, H, W), or to (B, 3, D, H, W) for volumes
        Non-negative regularisation strength (images: channel 0 vertical, 1
        horizontal; volumes: channel c weights the differences along axis c of (D, H, W)).
    tau, sigma : float or None
        Step sizes; None means 1/3 for images and 1/√13 for volumes, and
        0.99/√(‖A‖² + 8) or 0.99/√(‖A‖² + 12) with an operator. Not checked.
    operator : None or anything :func:`tvfast.physics.as_operator` accepts
        The forward operator A (docs/method.md §10); None is the identity.
    x0 : tensor or None
        The start x₀ (with an operator only); None: x₀ = Aᴴz.
    boundary : {"periodic", "neumann"}
        The differences of ∇: wrapping, or zero across the edge.
    tv : {"anisotropic", "isotropic"}
        The clip of each dual entry to [−Λ, Λ], or the projection of each
        pixel's dual vector onto the ball |q| ≤ Λ (docs/method.md §12; for
        complex x the real and imaginary parts enter one norm).

    ``tau``, ``sigma`` and ``theta`` may also be 0-d or (T,) tensors (one
    value per iteration); autograd differentiates them like anything else.

    Iteration (x₀ = x̄₀ = z or Aᴴz, p₀ = 0, q₀ = 0; A = I without operator)::

        p ← (p + σ(A x̄ − z)) / (1 + σ)
        q ← clip(q + σ∇x̄, −Λ, Λ)          (complex x: real and imaginary parts separately)
          or q ← u·min(1, Λ/|u|), u = q + σ∇x̄   (tv="isotropic")
        x_new ← x − τAᴴp − τ∇ᵀq
        x̄ ← x_new + θ(x_new − x)
    """
    x = None
    for state in pdhg_reference_iterates(z, Lambda, n_iter, tau, sigma, theta,
                                         operator=operator, x0=x0, boundary=boundary, tv=tv):
        x = state.x
    if x is None:  # n_iter = 0
        return _start(z, operator, x0).clone()
    return x.unsqueeze(1)


class IterationState(NamedTuple):
    """The variables after one reference iteration.

    Images: primal (B, H, W), duals (B, 2, H, W); volumes: primal (B, D, H, W), duals (B, 3, D, H, W).
    With an operator, ``p`` lives in the operator's range.
    """

    u: torch.Tensor  # q_k + σ∇x̄_k, the dual update before the clip
    q: torch.Tensor  # q_{k+1} = clip(u, −Λ, Λ)
    p: torch.Tensor  # p_{k+1}
    x: torch.Tensor  # x_{k+1}
    x_bar: torch.Tensor  # x̄_{k+1}


def _start(z, operator, x0) -> torch.Tensor:
    if operator is None:
        if x0 is not None:
            raise ValueError("x0: only with an operator; without one the start is z")
        return z
    return as_operator(operator).adjoint(z) if x0 is None else x0


def pdhg_reference_iterates(
    z: torch.Tensor,
    Lambda: torch.Tensor | float,
    n_iter: int = 256,
    tau: float | None = None,
    sigma: float | None = None,
    theta: float = 1.0,
    *,
    operator=None,
    x0: torch.Tensor | None = None,
    boundary: str = "periodic",
    tv: str = "anisotropic",
) -> Iterator[IterationState]:
    """Yield the :class:`IterationState` of every iteration of :func:`pdhg_reference`.

    For tests and analysis that need the intermediate variables (clip states
    from ``u``, distances to the clip thresholds, …) without rewriting the loop.
    """
    start = _start(z, operator, x0)  # now, not at the first next(): this function is not itself a generator
    spatial_dims = _spatial_dims(start, "z" if operator is None else "x0")
    if operator is None:
        step = default_step(spatial_dims)
        forward = adjoint = None
    else:
        op = as_operator(operator)
        step = operator_step(operator_norm(op, start), spatial_dims)
        forward = lambda v: op(v.unsqueeze(1))  # noqa: E731
        adjoint = lambda p: op.adjoint(p)[:, 0]  # noqa: E731
    tau = step if tau is None else tau
    sigma = step if sigma is None else sigma
    grad = lambda v: forward_differences(v, spatial_dims, boundary)  # noqa: E731
    grad_adjoint = lambda q: forward_differences_T(q, spatial_dims, boundary)  # noqa: E731
    data = z[:, 0] if operator is None else z
    project = _clip if tv == "anisotropic" else _ball
    return _iterate(data, start[:, 0], Lambda, n_iter, tau, sigma, theta, grad, grad_adjoint, forward, adjoint,
                    project)


def _clip(u, Lambda):
    if u.is_complex():
        return torch.complex(_clip(u.real, Lambda), _clip(u.imag, Lambda))
    return torch.minimum(torch.maximum(u, -Lambda), Lambda) if torch.is_tensor(Lambda) else u.clamp(-Lambda, Lambda)


def _ball(u, Lambda):
    """u·min(1, Λ/|u|) per pixel, |u|² summed over the axis channel (and the real and imaginary parts)."""
    squared = (torch.view_as_real(u) ** 2).sum(dim=(1, -1)) if u.is_complex() else (u * u).sum(dim=1)
    positive = squared > 0  # √ has no derivative at 0: keep autograd away from it
    norm = torch.where(positive, torch.sqrt(torch.where(positive, squared, torch.ones_like(squared))), 0.0)
    lam = torch.as_tensor(Lambda, dtype=norm.dtype, device=norm.device)
    lam = lam.reshape(-1, *lam.shape[2:]) if lam.dim() == u.dim() else lam  # (B|1, 1, *S) → (B|1, *S)
    active = norm > lam
    scale = torch.where(active, lam / torch.where(active, norm, torch.ones_like(norm)), torch.ones_like(norm))
    return u * scale.unsqueeze(1)


def _at(step, k: int):
    """The step of iteration k: a number, a 0-d tensor, or entry k of a (T,) tensor."""
    return step[k] if torch.is_tensor(step) and step.dim() == 1 else step


def _iterate(y, x0, Lambda, n_iter, tau, sigma, theta, grad, grad_adjoint, forward, adjoint, project=_clip):
    # x is (B, H, W) or (B, D, H, W); the dual q is (B, 2, H, W) or (B, 3, D, H, W), like Λ;
    # forward/adjoint None: A = I (denoising, y = z)
    x = x0
    x_bar = x0
    p = torch.zeros_like(y)
    q = torch.zeros_like(grad(x0))
    for k in range(n_iter):
        tau_k, sigma_k, theta_k = _at(tau, k), _at(sigma, k), _at(theta, k)
        p = (p + sigma_k * ((x_bar if forward is None else forward(x_bar)) - y)) / (1.0 + sigma_k)
        u = q + sigma_k * grad(x_bar)
        q = project(u, Lambda)
        x_new = x - tau_k * (p if adjoint is None else adjoint(p)) - tau_k * grad_adjoint(q)
        x_bar = x_new + theta_k * (x_new - x)
        x = x_new
        yield IterationState(u=u, q=q, p=p, x=x, x_bar=x_bar)
