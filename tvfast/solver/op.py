"""``tvfast.pdhg``: TV denoising, or reconstruction with a forward operator, with a per-pixel regularisation map."""

from __future__ import annotations

import dataclasses

import torch

from tvfast.solver import recompute
from tvfast.solver.arguments import (check_arguments, check_boundary, check_isotropic_lambda,
                                     check_operator_arguments, check_tv)
from tvfast.solver.autograd import PDHGFunction
from tvfast.solver.backends import solver_for
from tvfast.solver.differences import neumann_mask
from tvfast.solver.reconstruction import ReconstructionProblem, reconstruct

__all__ = ["pdhg"]


def _with_boundary(lam: torch.Tensor, spatial_shape, boundary: str) -> torch.Tensor:
    """Λ for the periodic solver: Λ itself, or Λ∘m (one channel per axis) for Neumann differences.

    With m zero on the wrapping difference of each axis (docs/method.md §10) the
    dual there is clipped to [0, 0], so the periodic iteration *is* the
    Neumann one. The product is an ordinary autograd op: ∂/∂Λ stays exact.
    """
    if boundary == "periodic":
        return lam
    return lam * neumann_mask(tuple(spatial_shape), lam.dtype, lam.device)


def _with_number_steps(args):
    """The arguments with 0-d step tensors (that need no gradient) as numbers, for the clip-state path."""
    if all(not isinstance(v, torch.Tensor) for v in (args.tau, args.sigma, args.theta)):
        return args
    tau, sigma, theta = recompute.as_numbers(args.tau, args.sigma, args.theta)
    return dataclasses.replace(args, tau=tau, sigma=sigma, theta=theta)


def pdhg(
    z: torch.Tensor,
    Lambda: torch.Tensor | float,
    n_iter: int = 256,
    *,
    operator=None,
    x0: torch.Tensor | None = None,
    tau: float | torch.Tensor | None = None,
    sigma: float | torch.Tensor | None = None,
    theta: float | torch.Tensor = 1.0,
    backend: str = "auto",
    boundary: str = "periodic",
    compile: bool | None = None,
    tv: str = "anisotropic",
) -> torch.Tensor:
    r"""Differentiable weighted-TV denoising or reconstruction by PDHG (Chambolle–Pock).

    Approximately solves

    .. math:: \hat x = \arg\min_x \tfrac12\|x - z\|_2^2 + \|\Lambda \circ \nabla x\|_1

    or, with a forward operator A (``operator``, docs/method.md §10) and data
    y passed as ``z``,

    .. math:: \hat x = \arg\min_x \tfrac12\|A x - y\|_2^2 + \|\Lambda \circ \nabla x\|_1

    with ``n_iter`` iterations of docs/method.md §3 (x₀ = x̄₀ = z, p₀ = q₀ = 0, periodic
    forward differences, anisotropic TV). Gradients flow to ``z`` and
    ``Lambda``; the backward keeps only 2-bit clip states per dual entry
    (0.5 byte per pixel per iteration for images, 1 byte per voxel per
    iteration for volumes) instead of autograd's float images.

    A 5-D ``z`` (B, 1, D, H, W) is a volume or an (x, y, t) sequence with D as
    depth or time (docs/method.md §9): ∇x = (∂_D x, ∂_H x, ∂_W x), periodic
    forward differences along all three axes. Only a 5-D z is treated as 3-D.

    With an operator, x may be real or complex (B, 1, H, W) or (B, 1, D, H, W)
    (the shape and dtype of Aᴴy, or of ``x0``); for complex x the TV term
    clips the real and imaginary parts separately with the same real Λ.
    x₀ = x̄₀ = ``x0`` or Aᴴy. Each iteration, forward and backward, applies
    the normal operator AᴴA once (``operator.gram``, by default A then Aᴴ;
    docs/method.md §10), and the backward keeps only the clip states (0.5
    byte per pixel per iteration for real images, 1 for complex images and
    real volumes, 2 for complex volumes). The operator runs in PyTorch; the
    TV part (q update, ∇ᵀq, the x update given Aᴴp, the clip states) runs
    in the Triton kernels for CUDA tensors.

    Parameters
    ----------
    z : Tensor
        Noisy images, (H, W), (B, H, W) or (B, 1, H, W), or volumes
        (B, 1, D, H, W), floating point (half types are computed in float32).
        Non-contiguous inputs are fine.
    Lambda : float or Tensor
        Non-negative, finite regularisation strength: a number, a 0-d tensor,
        or per-image (B,). For images also one map (H, W), maps (B|1, H, W),
        or (B|1, 1|2, H, W) where 2 channels are separate maps for the
        vertical and horizontal differences. For volumes maps
        (B|1, 1|3, D, H, W), where channel c weights the differences along
        axis c of (D, H, W) and 1 channel is shared by all three (a size-1
        D, H or W broadcasts). The gradient has the shape passed in.
        With ``operator``: the data y, any shape and dtype in A's range.
    n_iter : int
        Iterations T ≥ 0; ``n_iter=0`` returns a copy of ``z`` (x₀ with an operator).
    operator : None, :class:`tvfast.physics.LinearOperator`, or an object :func:`tvfast.physics.as_operator` takes
        The forward operator A, with its adjoint (a DeepInverse-style
        ``.A``/``.A_adjoint`` pair or an MRpro-style operator work too). A
        is treated as fixed: no gradient flows to tensors inside it.
    x0 : Tensor or None
        With an operator: the start x₀ (default Aᴴy); gradients flow to it.
    tau, sigma : float, Tensor or None
        Primal and dual step sizes, τσ·L² ≤ 1 with L² = ‖[I; ∇]‖² ≤ 9 for
        images and ≤ 13 for volumes. None (the default) means 1/3 for images
        and 1/√13 for volumes. With an operator L² = ‖A‖² + 8 (images) or
        + 12 (volumes), ‖A‖ estimated by power iteration and cached in the
        :class:`~tvfast.physics.LinearOperator`, and None means 0.99/L.
    theta : float or Tensor
        Over-relaxation, 0 ≤ θ ≤ 1. ``tau``, ``sigma`` and ``theta`` may be
        0-d tensors or (T,) tensors of per-iteration values; with
        ``requires_grad`` they receive exact gradients (learnable steps,
        docs/method.md §12; the condition τσL² ≤ 1 must hold at every
        iteration).
    backend : {"auto", "triton", "torch"}
        "auto": Triton kernels on CUDA, the PyTorch path on CPU. "triton" on
        CPU tensors needs ``TRITON_INTERPRET=1`` (slow; for tests). With an
        operator the backend runs the TV part, A and Aᴴ run in PyTorch.
    boundary : {"periodic", "neumann"}
        Forward differences that wrap around (docs/method.md §2), or that are
        zero across the edge (Neumann; docs/method.md §10).
    tv : {"anisotropic", "isotropic"}
        ``"anisotropic"`` (the default): ‖Λ∘∇x‖₁, each difference weighed
        on its own, with the 2-bit clip-state backward. ``"isotropic"``:
        Σ Λ·|∇x| with |∇x| the Euclidean length of the gradient at a pixel
        (for complex x over the real and imaginary parts together), which
        takes a one-channel Λ. Isotropic TV, and any tensor step, use the
        checkpointed recompute backward (docs/method.md §12): the state every
        ≈√T iterations and one more forward, exact gradients.
    compile : bool or None
        Whether the PyTorch path runs its steps through ``torch.compile``
        (seconds to compile, then several times faster per iteration). None
        (the default): once the work B·pixels·T of this call and the earlier
        calls of the same shape in this process pays for the compilation
        (:mod:`tvfast.solver.compile_policy`), so one image runs eagerly and
        a loop over many compiles after its first calls. Callers that run many solves of one shape —
        a folder of images, a grid search, training — pass True. The
        environment variable ``TVFAST_COMPILE=0``/``1`` overrides this for
        every call. Ignored by the Triton backend.

    Returns
    -------
    Tensor
        x_T with the shape and dtype of ``z``.

    Examples
    --------
    >>> z = torch.rand(1, 1, 64, 64)
    >>> x = tvfast.pdhg(z, 0.05, n_iter=64)
    >>> v = torch.rand(1, 1, 16, 64, 64)  # (B, 1, D, H, W)
    >>> x = tvfast.pdhg(v, torch.tensor([0.05, 0.02, 0.02]).reshape(1, 3, 1, 1, 1), n_iter=64)
    >>> A = tvfast.physics.MaskedFFT(torch.rand(64, 64) < 0.3)  # undersampled single-coil MRI
    >>> y = A(torch.rand(1, 1, 64, 64, dtype=torch.complex64))
    >>> x = tvfast.pdhg(y, 0.01, operator=A, n_iter=128)  # complex (1, 1, 64, 64)
    """
    boundary = check_boundary(boundary)
    tv = check_tv(tv)
    if operator is not None:
        rec = check_operator_arguments(z, Lambda, n_iter, operator, x0, tau, sigma, theta, backend, compile)
        check_isotropic_lambda(rec.lam, tv)
        plain = tv == "anisotropic" and recompute.plain_steps(rec.tau, rec.sigma, rec.theta)
        tau_, sigma_, theta_ = (recompute.as_numbers(rec.tau, rec.sigma, rec.theta) if plain
                                else (rec.tau, rec.sigma, rec.theta))
        first = [float(v.detach().reshape(-1)[0]) if isinstance(v, torch.Tensor) else v for v in (tau_, sigma_, theta_)]
        problem = ReconstructionProblem(rec.operator, rec.x_shape, rec.x_dtype, rec.n_iter, *first,
                                        rec.compile, rec.backend, swap_hw=rec.operator.gram_axis == -2)
        if not plain:  # isotropic TV, or steps that are learnable or vary: the recompute backward (method.md §12)
            lam = rec.lam if tv == "isotropic" else _with_boundary(rec.lam, rec.x_shape[2:], boundary)
            return recompute.reconstruct(rec.y, lam, rec.x0, problem, tau_, sigma_, theta_, tv,
                                         boundary if tv == "isotropic" else "periodic", adjoint_y=rec.adjoint_y)
        lam = _with_boundary(rec.lam, rec.x_shape[2:], boundary)
        return reconstruct(rec.y, lam, rec.x0, problem, adjoint_y=rec.adjoint_y)
    if x0 is not None:
        raise ValueError("x0: a start is taken only with an operator; without one the start is z")
    args = check_arguments(z, Lambda, n_iter, tau, sigma, theta, backend, compile)
    check_isotropic_lambda(args.lam, tv)
    if args.n_iter == 0:
        return z.clone()
    if tv == "isotropic" or not recompute.plain_steps(args.tau, args.sigma, args.theta):
        lam = args.lam if tv == "isotropic" else _with_boundary(args.lam, args.z.shape[1:], boundary)
        x = recompute.denoise(args.z, lam, args.n_iter, args.tau, args.sigma, args.theta, tv,
                              boundary if tv == "isotropic" else "periodic", args.backend)
        return x.reshape(args.out_shape).to(args.out_dtype)
    args = _with_number_steps(args)
    lam = _with_boundary(args.lam, args.z.shape[1:], boundary)
    solver, options = solver_for(args.backend, args.compile)
    needs_grad = torch.is_grad_enabled() and (args.z.requires_grad or lam.requires_grad)
    if needs_grad:
        x = PDHGFunction.apply(args.z, lam, args.n_iter, args.tau, args.sigma, args.theta, solver, options)
    else:
        with torch.no_grad():
            x, _ = solver.solve_forward(
                args.z, lam, args.n_iter, args.tau, args.sigma, args.theta, keep_states=False, **options
            )
    return x.reshape(args.out_shape).to(args.out_dtype)
