"""Checking and normalising the arguments of :func:`tvfast.pdhg`.

Every user-facing error of the op is raised here, before any kernel runs,
as a TypeError (wrong kind of object) or ValueError (wrong value or shape)
that names the argument and what was expected.

The number of spatial dimensions comes from z alone: (H, W), (B, H, W) and
(B, 1, H, W) are images (docs/method.md §1–§3), (B, 1, D, H, W) is a volume
or an (x, y, t) sequence with D as depth or time (docs/method.md §9). No
other shape is accepted, so no shape is ambiguous.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import torch

from tvfast.physics import LinearOperator, as_operator, operator_norm
from tvfast.solver import compile_policy
from tvfast.solver.differences import BOUNDARIES

__all__ = ["PDHGArguments", "check_arguments", "check_tv", "check_isotropic_lambda", "TV_KINDS", "default_step", "operator_step", "operator_norm_squared", "OPERATOR_NORM_SQUARED",
           "OPERATOR_NORM_SQUARED_3D", "ReconstructionArguments", "check_operator_arguments", "check_boundary",
           "STEP_SAFETY", "capturing"]

# ‖K‖² for K = [I; ∇] in 2-D: 1 + ‖∇‖² ≤ 1 + 8 (docs/method.md §2).
OPERATOR_NORM_SQUARED = 9.0
# ‖K‖² for K = [I; ∇] in 3-D, ∇ = (∂_D, ∂_H, ∂_W): 1 + ‖∇‖² ≤ 1 + 12 (docs/method.md §9).
OPERATOR_NORM_SQUARED_3D = 13.0


def capturing(t: torch.Tensor) -> bool:
    """Whether ``t`` is a CUDA tensor and a CUDA graph capture is running on the current stream.

    A capture forbids host synchronisation, so the value checks (finite z and Λ, Λ ≥ 0) are skipped while it
    runs; the shapes, dtypes and steps are still checked. Check the values once before capturing.
    """
    return t.is_cuda and torch.cuda.is_current_stream_capturing()


def operator_norm_squared(spatial_dims: int) -> float:
    """The bound on ‖[I; ∇]‖² for 2 or 3 spatial dimensions: 9 or 13."""
    return OPERATOR_NORM_SQUARED if spatial_dims == 2 else OPERATOR_NORM_SQUARED_3D


def default_step(spatial_dims: int) -> float:
    """The default τ = σ = 1/‖[I; ∇]‖: 1/3 for images, 1/√13 for volumes (docs/method.md §3, §9)."""
    return 1.0 / math.sqrt(operator_norm_squared(spatial_dims))


def operator_step(norm: float, spatial_dims: int) -> float:
    """The default τ = σ with a forward operator: STEP_SAFETY/‖K‖, ‖K‖² = ‖A‖² + 4·d for ``norm`` = ‖A‖ and d
    spatial dimensions (‖∇‖² ≤ 4d; docs/method.md §10). The one place this step is computed."""
    return STEP_SAFETY / math.sqrt(norm * norm + 4.0 * spatial_dims)

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_BACKENDS = ("auto", "numba", "triton", "torch")


@dataclass(frozen=True)
class PDHGArguments:
    """Arguments of one ``pdhg`` call in the form the solvers take.

    Images (``spatial_dims == 2``): ``z`` is (B, H, W) in the compute dtype;
    ``lam`` a 4-D tensor of shape (B|1, 1|2, H|1, W|1). Volumes
    (``spatial_dims == 3``): ``z`` is (B, D, H, W); ``lam`` a 5-D tensor of
    shape (B|1, 1|3, D|1, H|1, W|1). ``lam`` is in the compute dtype, still
    attached to the caller's autograd graph; ``out_shape``/``out_dtype``
    restore the caller's layout; ``tau``/``sigma`` are resolved (no None).
    """

    z: torch.Tensor
    lam: torch.Tensor
    out_shape: torch.Size
    out_dtype: torch.dtype
    n_iter: int
    tau: float | torch.Tensor  # a float, or a 0-d / (T,) tensor (learnable or per-iteration steps)
    sigma: float | torch.Tensor
    theta: float | torch.Tensor
    backend: str  # "triton" or "torch", resolved
    spatial_dims: int = 2  # 2: images, 3: volumes / sequences (z was 5-D)
    compile: bool | None = None  # the PyTorch path's torch.compile request; None: by the work


def _check_step(name: str, value, n_iter: int | None = None):
    """A step size: a finite real number (returned as a float), or — where ``n_iter`` is given — a 0-d or (T,)
    real floating tensor (returned as it is, gradients and all; docs/method.md §12)."""
    if isinstance(value, torch.Tensor) and n_iter is not None:
        if value.is_complex() or not value.is_floating_point():
            raise TypeError(f"{name}: expected a real floating-point tensor, got {value.dtype}")
        if value.dim() not in (0, 1) or (value.dim() == 1 and value.shape[0] != n_iter):
            raise ValueError(f"{name}: expected a number, a 0-d tensor or a ({n_iter},) tensor of per-iteration "
                             f"steps, got shape {tuple(value.shape)}")
        if capturing(value):
            raise ValueError(f"{name}: a step tensor on the GPU is read on the host, which a CUDA graph capture "
                             f"forbids; pass a number or a CPU tensor")
        with torch.no_grad():
            if value.numel() and not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name}: expected finite values, got NaN or inf")
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        what = "a real number or a 0-d/(T,) tensor" if n_iter is not None else "a real number"
        raise TypeError(f"{name}: expected {what}, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return value


def _step_range(value) -> tuple[float, float]:
    """(min, max) of a checked step: a float, or a tensor's values."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 0:
            return 0.5, 0.5
        with torch.no_grad():
            return float(value.min()), float(value.max())
    return value, value


def _step_values(value) -> torch.Tensor:
    """A checked step's values as a float64 CPU tensor: (1,) for a number or a 0-d tensor, (T,) per iteration."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    return torch.tensor([value], dtype=torch.float64)


TV_KINDS = ("anisotropic", "isotropic")


def check_tv(tv) -> str:
    """``tv`` must be "anisotropic" (‖Λ∘∇x‖₁, each difference on its own) or "isotropic" (Σ Λ|∇x|, docs/method.md §12)."""
    if not isinstance(tv, str) or tv not in TV_KINDS:
        raise ValueError(f"tv: expected one of {TV_KINDS}, got {tv!r}")
    return tv


def check_isotropic_lambda(lam: torch.Tensor, tv: str) -> None:
    """Isotropic TV weighs the norm of the whole gradient: Λ must have one channel."""
    if tv == "isotropic" and lam.shape[1] != 1:
        raise ValueError(f"Lambda: isotropic TV takes one Λ per pixel (one channel), got {lam.shape[1]} channels "
                         f"(shape {tuple(lam.shape)}); per-axis maps are for tv='anisotropic'")


def _spatial_batch(z) -> torch.Tensor:
    """z as (B, H, W) (images) or (B, D, H, W) (volumes, from a 5-D z only)."""
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"z: expected a torch.Tensor, got {type(z).__name__}")
    if z.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"z: expected a floating-point tensor (float16/bfloat16/float32/float64), got {z.dtype}")
    if z.dim() == 2:
        return z.unsqueeze(0)
    if z.dim() == 3:
        return z
    if z.dim() in (4, 5) and z.shape[1] == 1:
        return z.squeeze(1)
    raise ValueError(
        f"z: expected shape (H, W), (B, H, W) or (B, 1, H, W) for images, or (B, 1, D, H, W) for volumes, "
        f"got {tuple(z.shape)}"
    )


def _as_tensor_lambda(Lambda, device: torch.device) -> torch.Tensor:
    if isinstance(Lambda, torch.Tensor):
        if Lambda.is_complex():
            raise TypeError(f"Lambda: expected a real tensor (one Λ weighs the real and imaginary parts alike), "
                            f"got {Lambda.dtype}")
        if Lambda.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"Lambda: expected a floating-point tensor or a Python number, got {Lambda.dtype}")
        if Lambda.device != device:
            raise ValueError(f"Lambda: expected a tensor on z's device {device}, got {Lambda.device}")
        return Lambda
    if isinstance(Lambda, numbers.Real) and not isinstance(Lambda, bool):
        # rounded once, to the compute dtype; a fill, not a copy from the host (capturable in a CUDA graph)
        return torch.full((), float(Lambda), dtype=torch.float64, device=device)
    raise TypeError(f"Lambda: expected a float or a torch.Tensor, got {type(Lambda).__name__}")


def _check_lambda_values(lam: torch.Tensor) -> None:
    if capturing(lam):
        return
    with torch.no_grad():
        if not bool(torch.isfinite(lam).all()):
            raise ValueError("Lambda: expected finite values, got NaN or inf")
        if bool((lam < 0).any()):
            raise ValueError(f"Lambda: expected non-negative values, got minimum {lam.min().item():.4g}")


def _lambda_4d(Lambda, images: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Λ for images z (B, H, W) as a 4-D (B|1, 1|2, H|1, W|1) tensor in ``dtype``, on z's device."""
    batch, height, width = images.shape
    lam = _as_tensor_lambda(Lambda, images.device)

    shape = tuple(lam.shape)
    expected = f"a scalar, (B,), (H, W), (B|1, H, W) or (B|1, 1|2, H, W) with B={batch}, H={height}, W={width}"
    if lam.dim() == 0:
        lam = lam.reshape(1, 1, 1, 1)
    elif lam.dim() == 1:
        lam = lam.reshape(-1, 1, 1, 1)
    elif lam.dim() == 2:
        lam = lam.reshape(1, 1, *shape)
    elif lam.dim() == 3:
        lam = lam.unsqueeze(1)
    elif lam.dim() != 4:
        raise ValueError(f"Lambda: expected {expected}, got shape {shape}")
    b, c, h, w = lam.shape
    if b not in (1, batch) or c not in (1, 2) or h not in (1, height) or w not in (1, width):
        raise ValueError(f"Lambda: shape {shape} does not broadcast; expected {expected}")
    _check_lambda_values(lam)
    return lam.to(dtype)


def _lambda_5d(Lambda, volumes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Λ for a volume z (B, D, H, W) as a 5-D (B|1, 1|3, D|1, H|1, W|1) tensor in ``dtype``.

    Channel c weights the differences along axis c of (D, H, W); one channel
    is shared by all three (docs/method.md §9). Maps must be 5-D, so a
    lower-dimensional tensor is never guessed into a volume layout.
    """
    batch, depth, height, width = volumes.shape
    lam = _as_tensor_lambda(Lambda, volumes.device)
    shape = tuple(lam.shape)
    expected = (f"a scalar, (B,) or (B|1, 1|3, D, H, W) for a volume z (B, 1, D, H, W) "
                f"with B={batch}, D={depth}, H={height}, W={width}")
    if lam.dim() == 0:
        lam = lam.reshape(1, 1, 1, 1, 1)
    elif lam.dim() == 1:
        lam = lam.reshape(-1, 1, 1, 1, 1)
    elif lam.dim() != 5:
        raise ValueError(f"Lambda: expected {expected}, got shape {shape}")
    b, c, d, h, w = lam.shape
    if b not in (1, batch) or c not in (1, 3) or d not in (1, depth) or h not in (1, height) or w not in (1, width):
        raise ValueError(f"Lambda: shape {shape} does not broadcast; expected {expected}")
    _check_lambda_values(lam)
    return lam.to(dtype)


def _check_options(n_iter, theta, backend, compile) -> tuple[int, float]:
    """The options of every solve, with or without an operator: ``n_iter`` ≥ 0, 0 ≤ θ ≤ 1, a known ``backend``
    and ``compile`` True/False/None. Returns (n_iter, θ) as int and float."""
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral):
        raise TypeError(f"n_iter: expected an int, got {type(n_iter).__name__}")
    if n_iter < 0:
        raise ValueError(f"n_iter: expected n_iter >= 0, got {n_iter}")
    theta = _check_step("theta", theta, n_iter)
    low, high = _step_range(theta)
    if not (0.0 <= low and high <= 1.0):
        raise ValueError(f"theta: expected 0 <= theta <= 1, got values in [{low:.4g}, {high:.4g}]")
    if backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS}, got {backend!r}")
    if compile is not None and not isinstance(compile, bool):
        raise TypeError(f"compile: expected True, False or None, got {type(compile).__name__}")
    return int(n_iter), theta


def _check_steps(tau, sigma, default: float, norm2: float, bound: str, n_iter: int):
    """τ and σ (None: ``default``), positive and within PDHG's condition τσ‖K‖² ≤ 1 for ``norm2`` = ‖K‖²
    (``bound`` says what ‖K‖² is, for the message). Numbers come back as floats, tensors (0-d or (T,), learnable
    or per iteration) as they are; for tensors the condition holds for every iteration."""
    tau = default if tau is None else _check_step("tau", tau, n_iter)
    sigma = default if sigma is None else _check_step("sigma", sigma, n_iter)
    (tau_min, tau_max), (sigma_min, sigma_max) = _step_range(tau), _step_range(sigma)
    if tau_min <= 0 or sigma_min <= 0:
        raise ValueError(f"tau, sigma: expected positive step sizes, got tau={tau_min:.4g}, sigma={sigma_min:.4g}")
    product = float((_step_values(tau) * _step_values(sigma)).max())
    if product * norm2 > 1.0 + 1e-6:
        raise ValueError(f"tau, sigma: PDHG converges for tau*sigma*||K||^2 <= 1 with {bound}, "
                         f"got tau*sigma*||K||^2 = {product * norm2:.4g}")
    return tau, sigma


def check_arguments(z, Lambda, n_iter, tau, sigma, theta, backend, compile=None) -> PDHGArguments:
    """Validate the arguments of :func:`tvfast.pdhg` and bring them to solver form.

    ``tau``/``sigma`` may be None: τ = σ = 1/3 for images, 1/√13 for volumes.
    ``compile`` is True, False or None.
    """
    z_batch = _spatial_batch(z)  # (B, H, W), or (B, D, H, W) for a 5-D z
    spatial_dims = z_batch.dim() - 1
    if z_batch.numel() == 0:
        raise ValueError(f"z: expected a non-empty image, got shape {tuple(z.shape)}")
    if not capturing(z_batch):
        with torch.no_grad():
            if not bool(torch.isfinite(z_batch).all()):
                raise ValueError("z: expected finite values, got NaN or inf")
    n_iter, theta = _check_options(n_iter, theta, backend, compile)
    norm2 = operator_norm_squared(spatial_dims)
    what = "images" if spatial_dims == 2 else "volumes (B, 1, D, H, W)"
    tau, sigma = _check_steps(tau, sigma, default_step(spatial_dims), norm2, f"||K||^2 = {norm2:g} for {what}",
                              n_iter)

    compute_dtype = torch.float64 if z_batch.dtype == torch.float64 else torch.float32
    lam = (_lambda_4d if spatial_dims == 2 else _lambda_5d)(Lambda, z_batch, compute_dtype)
    backend = resolve_backend(backend, z_batch.device, compile)
    return PDHGArguments(
        z=z_batch.to(compute_dtype).contiguous(),
        lam=lam,
        out_shape=z.shape,
        out_dtype=z.dtype,
        n_iter=int(n_iter),
        tau=tau,
        sigma=sigma,
        theta=theta,
        backend=backend,
        spatial_dims=spatial_dims,
        compile=compile,
    )


def resolve_backend(backend: str, device: torch.device, compile: bool | None) -> str:
    """The solver of a checked ``backend`` for tensors on ``device``: "numba", "triton" or "torch".

    "auto": the Triton kernels on CUDA; on the CPU the fused path ("numba",
    :mod:`tvfast.solver.fused`), or the PyTorch steps under ``torch.compile``
    ("torch") when ``compile=True`` or ``TVFAST_COMPILE=1`` asks for them;
    the PyTorch steps on other devices.
    """
    if backend == "auto":
        if device.type == "cuda" and _triton_available():
            return "triton"
        if device.type != "cpu" or compile is True or compile_policy.env_compile() is True:
            return "torch"
        backend = "numba"
    if backend == "triton":
        _check_triton_usable(device)
    elif backend == "numba":
        if device.type != "cpu":
            raise ValueError(f"backend: 'numba' runs on CPU tensors, got device {device}; use 'auto'")
        return _numba_or_fallback()
    return backend


def _numba_or_fallback() -> str:
    """"numba" where the fused kernels load (Numba is imported here, on the first solve), else "torch" with a warning."""
    from tvfast.solver import fused

    if fused.available():
        return "numba"
    warnings.warn(f"tvfast: the fused CPU path is unavailable (numba: {fused.import_error()}); running the slower "
                  "PyTorch steps instead (pip install numba)", RuntimeWarning, stacklevel=4)
    return "torch"


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _check_triton_usable(device: torch.device) -> None:
    import os

    if not _triton_available():
        raise ValueError("backend: 'triton' needs the triton package (pip install 'tvfast[triton]')")
    if device.type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError(
            "backend: 'triton' on CPU tensors runs in Triton's interpreter; "
            "set TRITON_INTERPRET=1 before tvfast.kernels is imported, or use backend='torch'"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"backend: 'triton' supports CUDA (or CPU under the interpreter), got device {device}")


def check_boundary(boundary) -> str:
    """``boundary`` must be "periodic" or "neumann" (docs/method.md §2, §10)."""
    if not isinstance(boundary, str) or boundary not in BOUNDARIES:
        raise ValueError(f"boundary: expected one of {BOUNDARIES}, got {boundary!r}")
    return boundary


# τ = σ = STEP_SAFETY/‖K‖ by default with a forward operator: ‖A‖ is a power-iteration estimate (a lower bound).
STEP_SAFETY = 0.99
_OPERATOR_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
_X_SHAPES = "images (B, 1, H, W) or volumes (B, 1, D, H, W)"


@dataclass(frozen=True)
class ReconstructionArguments:
    """Arguments of one ``pdhg(y, Λ, operator=A)`` call (docs/method.md §10) in the form the solver takes.

    ``y`` is the data (the caller's tensor, attached to its graph); ``x0``
    the given start or None (x₀ = Aᴴy); ``x_shape``/``x_dtype`` those of x,
    (B, 1, *S) real or complex; ``lam`` a real (B|1, 1|n, *S|1) tensor in the
    real dtype of x's precision, still attached; ``tau``/``sigma`` resolved;
    ``operator_norm`` the estimate of ‖A‖ they were checked against;
    ``adjoint_y`` Aᴴy of the detached y, computed by the check and reused
    by the solve;
    ``backend`` "torch" or "triton", the solver of the TV part ("auto"
    resolved: Triton for CUDA tensors).
    """

    y: torch.Tensor
    lam: torch.Tensor
    x0: torch.Tensor | None
    operator: LinearOperator
    x_shape: torch.Size
    x_dtype: torch.dtype
    n_iter: int
    tau: float | torch.Tensor  # a float, or a 0-d / (T,) tensor (learnable or per-iteration steps)
    sigma: float | torch.Tensor
    theta: float | torch.Tensor
    spatial_dims: int
    operator_norm: float
    adjoint_y: torch.Tensor
    compile: bool | None = None
    backend: str = "torch"


def _operator_tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _OPERATOR_DTYPES:
        raise TypeError(f"{name}: expected float32/float64/complex64/complex128 with an operator, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {tuple(t.shape)}")
    if not capturing(t):
        with torch.no_grad():
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return t


def _apply(function, value, name: str, what: str) -> torch.Tensor:
    """``function(value)``; an exception inside the user's operator is reported as an error of ``name``."""
    try:
        return function(value)
    except (TypeError, ValueError) as exc:
        if str(exc).startswith("operator:"):
            raise
        raise ValueError(f"{name}: {what} failed on shape {tuple(value.shape)}: {exc}") from exc
    except RuntimeError as exc:
        raise ValueError(f"{name}: {what} failed on shape {tuple(value.shape)}: {exc}") from exc


def _is_x_shape(t: torch.Tensor) -> bool:
    return t.dim() in (4, 5) and t.shape[1] == 1


def check_operator_arguments(y, Lambda, n_iter, operator, x0, tau, sigma, theta, backend,
                             compile=None) -> ReconstructionArguments:
    """Validate ``pdhg(y, Λ, operator=A, x0=…)`` (docs/method.md §10).

    The operator is applied a few times here (under no_grad): to check that
    Aᴴ maps back to x's shape and dtype (else ``operator``), that y lies in
    A's range (``y``) and x0 in its domain (``x0``), and to estimate ‖A‖ for
    the steps: τ = σ = 0.99/‖K‖ by default, ‖K‖² = ‖A‖² + 8 (2-D) or + 12
    (3-D), and explicit steps must satisfy τσ‖K‖² ≤ 1.
    """
    op = as_operator(operator)
    y = _operator_tensor(y, "y")
    n_iter, theta = _check_options(n_iter, theta, backend, compile)

    with torch.no_grad():
        adjoint_y = _apply(op.adjoint, y.detach(), "y", "the operator's adjoint")
        if x0 is None:
            start = adjoint_y
            if not _is_x_shape(start) or start.dtype not in _OPERATOR_DTYPES:
                raise ValueError(f"operator: the adjoint returned {start.dtype} of shape {tuple(start.shape)} for y; "
                                 f"expected {_X_SHAPES}, float32/float64/complex64/complex128")
        else:
            start = _operator_tensor(x0, "x0")
            if not _is_x_shape(start):
                raise ValueError(f"x0: expected {_X_SHAPES}, got shape {tuple(start.shape)}")
            start = start.detach()
        forward_start = _apply(op, start, "x0" if x0 is not None else "operator", "the operator's forward map")
        back = _apply(op.adjoint, forward_start, "operator", "the operator's adjoint")
        if back.shape != start.shape or back.dtype != start.dtype:
            raise ValueError(
                f"operator: the adjoint returned {back.dtype} of shape {tuple(back.shape)} for A x with x "
                f"{start.dtype} of shape {tuple(start.shape)}; expected x's shape and dtype"
            )
        if x0 is not None and (adjoint_y.shape != start.shape or adjoint_y.dtype != start.dtype):
            raise ValueError(f"x0: expected the shape and dtype of A^H y, {tuple(adjoint_y.shape)} "
                             f"{adjoint_y.dtype}, got {tuple(start.shape)} {start.dtype}")
        if forward_start.shape != y.shape or forward_start.dtype != y.dtype:
            raise ValueError(
                f"y: expected data in the operator's range, {forward_start.dtype} of shape "
                f"{tuple(forward_start.shape)} (A x for x of shape {tuple(start.shape)}), got {y.dtype} of shape "
                f"{tuple(y.shape)}"
            )
        norm = operator_norm(op, start)

    spatial_dims = start.dim() - 2
    norm2 = norm**2 + 4.0 * spatial_dims
    tau, sigma = _check_steps(tau, sigma, operator_step(norm, spatial_dims), norm2,
                              f"||K||^2 = ||A||^2 + {4 * spatial_dims} = {norm2:.6g} (||A|| = {norm:.6g} by power "
                              "iteration)", n_iter)
    real_dtype = torch.float64 if start.dtype in (torch.float64, torch.complex128) else torch.float32
    lam = (_lambda_4d if spatial_dims == 2 else _lambda_5d)(Lambda, start[:, 0], real_dtype)
    backend = resolve_backend(backend, start.device, compile)  # the TV part runs where x lives
    return ReconstructionArguments(
        y=y, lam=lam, x0=x0, operator=op, x_shape=start.shape, x_dtype=start.dtype, n_iter=int(n_iter),
        tau=tau, sigma=sigma, theta=theta, spatial_dims=spatial_dims, operator_norm=norm, adjoint_y=adjoint_y,
        compile=compile, backend=backend,
    )
