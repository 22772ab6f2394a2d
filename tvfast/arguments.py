"""Checking and normalising the arguments of :func:`tvfast.pdhg`.

Every user-facing error of the op is raised here, before any kernel runs,
as a TypeError (wrong kind of object) or ValueError (wrong value or shape)
that names the argument and what was expected.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

__all__ = ["PDHGArguments", "check_arguments", "OPERATOR_NORM_SQUARED"]

# ‖K‖² for K = [I; ∇] in 2-D: 1 + ‖∇‖² ≤ 1 + 8 (docs/method.md §2).
OPERATOR_NORM_SQUARED = 9.0

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_BACKENDS = ("auto", "triton", "torch")


@dataclass(frozen=True)
class PDHGArguments:
    """Arguments of one ``pdhg`` call in the form the solvers take.

    ``z`` is (B, H, W) in the compute dtype; ``lam`` a 4-D tensor of shape
    (B|1, 1|2, H|1, W|1) in the compute dtype, still attached to the caller's
    autograd graph; ``out_shape``/``out_dtype`` restore the caller's layout.
    """

    z: torch.Tensor
    lam: torch.Tensor
    out_shape: torch.Size
    out_dtype: torch.dtype
    n_iter: int
    tau: float
    sigma: float
    theta: float
    backend: str  # "triton" or "torch", resolved


def _check_step(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return value


def _image_batch(z) -> torch.Tensor:
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"z: expected a torch.Tensor, got {type(z).__name__}")
    if z.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"z: expected a floating-point tensor (float16/bfloat16/float32/float64), got {z.dtype}")
    if z.dim() == 2:
        return z.unsqueeze(0)
    if z.dim() == 3:
        return z
    if z.dim() == 4 and z.shape[1] == 1:
        return z.squeeze(1)
    raise ValueError(f"z: expected shape (H, W), (B, H, W) or (B, 1, H, W), got {tuple(z.shape)}")


def _lambda_4d(Lambda, z3: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Λ as a 4-D (B|1, 1|2, H|1, W|1) tensor in ``dtype``, on z's device."""
    batch, height, width = z3.shape
    if isinstance(Lambda, torch.Tensor):
        if Lambda.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"Lambda: expected a floating-point tensor or a Python number, got {Lambda.dtype}")
        if Lambda.device != z3.device:
            raise ValueError(f"Lambda: expected a tensor on z's device {z3.device}, got {Lambda.device}")
        lam = Lambda
    elif isinstance(Lambda, numbers.Real) and not isinstance(Lambda, bool):
        lam = torch.tensor(float(Lambda), device=z3.device)
    else:
        raise TypeError(f"Lambda: expected a float or a torch.Tensor, got {type(Lambda).__name__}")

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
    with torch.no_grad():
        if not bool(torch.isfinite(lam).all()):
            raise ValueError("Lambda: expected finite values, got NaN or inf")
        if bool((lam < 0).any()):
            raise ValueError(f"Lambda: expected non-negative values, got minimum {lam.min().item():.4g}")
    return lam.to(dtype)


def check_arguments(z, Lambda, n_iter, tau, sigma, theta, backend) -> PDHGArguments:
    """Validate the arguments of :func:`tvfast.pdhg` and bring them to solver form."""
    z3 = _image_batch(z)
    if z3.numel() == 0:
        raise ValueError(f"z: expected a non-empty image, got shape {tuple(z.shape)}")
    with torch.no_grad():
        if not bool(torch.isfinite(z3).all()):
            raise ValueError("z: expected finite values, got NaN or inf")
    if isinstance(n_iter, bool) or not isinstance(n_iter, numbers.Integral):
        raise TypeError(f"n_iter: expected an int, got {type(n_iter).__name__}")
    if n_iter < 0:
        raise ValueError(f"n_iter: expected n_iter >= 0, got {n_iter}")
    tau = _check_step("tau", tau)
    sigma = _check_step("sigma", sigma)
    theta = _check_step("theta", theta)
    if tau <= 0 or sigma <= 0:
        raise ValueError(f"tau, sigma: expected positive step sizes, got tau={tau}, sigma={sigma}")
    if tau * sigma * OPERATOR_NORM_SQUARED > 1.0 + 1e-9:
        raise ValueError(
            f"tau, sigma: PDHG converges for tau*sigma*L^2 <= 1 with L^2 = 9, "
            f"got tau*sigma*9 = {tau * sigma * OPERATOR_NORM_SQUARED:.4g}"
        )
    if not 0.0 <= theta <= 1.0:
        raise ValueError(f"theta: expected 0 <= theta <= 1, got {theta}")
    if backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS}, got {backend!r}")

    compute_dtype = torch.float64 if z3.dtype == torch.float64 else torch.float32
    lam = _lambda_4d(Lambda, z3, compute_dtype)
    if backend == "auto":
        backend = "triton" if z3.is_cuda and _triton_available() else "torch"
    elif backend == "triton":
        _check_triton_usable(z3.device)
    return PDHGArguments(
        z=z3.to(compute_dtype).contiguous(),
        lam=lam,
        out_shape=z.shape,
        out_dtype=z.dtype,
        n_iter=int(n_iter),
        tau=tau,
        sigma=sigma,
        theta=theta,
        backend=backend,
    )


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
