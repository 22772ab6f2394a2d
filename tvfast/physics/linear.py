"""Linear operators A between image space X and data space Y, and their checks (docs/method.md §10).

A :class:`LinearOperator` is a pair of callables, the forward map ``A`` and
its adjoint ``Aᴴ``, on tensors. "Adjoint" is meant for the *real* inner
product ⟨a, b⟩ = Re Σ conj(a)·b, the one PDHG needs: for every x in X and
y in Y

    ⟨A x, y⟩ = ⟨x, Aᴴ y⟩.

For a complex-linear A this is the conjugate transpose; for a map from real
images to complex data (a Fourier transform of a real image, say) it is the
real part of the conjugate transpose. :func:`check_adjoint` tests the
identity on given or random inputs, :func:`operator_norm` estimates ‖A‖ by
power iteration on AᴴA, and :func:`as_operator` accepts the operator
objects of other libraries (a DeepInverse-style ``.A``/``.A_adjoint`` pair,
an MRpro-style operator whose call and ``.adjoint`` return 1-tuples).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["LinearOperator", "as_operator", "check_adjoint", "operator_norm"]


def _single(value, what: str) -> torch.Tensor:
    """Unwrap an MRpro-style 1-tuple; anything else must be a tensor."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise ValueError(f"operator: expected the {what} to return a tensor or a 1-tuple, "
                             f"got a {type(value).__name__} of {len(value)} items")
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"operator: expected the {what} to return a torch.Tensor, got {type(value).__name__}")
    return value


class LinearOperator:
    """A linear map A: X → Y given by two callables, ``forward(x) = A x`` and ``adjoint(y) = Aᴴ y``.

    ``op(x)`` applies A, ``op.adjoint(y)`` or ``op.H(y)`` applies Aᴴ, and
    ``op.H`` is itself a :class:`LinearOperator` (the adjoint of ``op.H`` is
    A again). The callables are trusted to be linear and adjoint to each
    other; :func:`check_adjoint` verifies the second on random inputs.

    ``gram`` optionally gives the normal operator AᴴA directly, for
    operators where it is cheaper than A followed by Aᴴ (a Cartesian MRI
    mask of whole rows: two 1-D FFTs instead of two 2-D FFTs; a Toeplitz
    embedding). :meth:`gram` applies it, or ``adjoint(forward(x))`` when it
    is not given; the solver's iterations use nothing else
    (docs/method.md §10, "In image space").

    The object also remembers the norms :func:`operator_norm` estimated for
    it, one per input shape, dtype and device, so a solve that repeats a
    shape does not repeat the power iteration.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor],
                 adjoint: Callable[[torch.Tensor], torch.Tensor],
                 gram: Callable[[torch.Tensor], torch.Tensor] | None = None):
        if not callable(forward):
            raise TypeError(f"forward: expected a callable tensor → tensor, got {type(forward).__name__}")
        if not callable(adjoint):
            raise TypeError(f"adjoint: expected a callable tensor → tensor, got {type(adjoint).__name__}")
        if gram is not None and not callable(gram):
            raise TypeError(f"gram: expected None or a callable tensor → tensor, got {type(gram).__name__}")
        self._forward = forward
        self._adjoint = adjoint
        self._gram = gram
        self._norms: dict[tuple, float] = {}
        self._H: LinearOperator | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A x."""
        return _single(self._forward(x), "forward")

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Aᴴ y."""
        return _single(self._adjoint(y), "adjoint")

    def gram(self, x: torch.Tensor) -> torch.Tensor:
        """AᴴA x: the ``gram`` callable when one was given, else Aᴴ(A x)."""
        if self._gram is None:
            return self.adjoint(self(x))
        return _single(self._gram(x), "gram")

    @property
    def gram_axis(self) -> int | None:
        """The image axis (−2 or −1) along which :meth:`gram` runs its transforms when they are 1-D, else None.

        A solver may hold its images with that axis contiguous in memory
        (:class:`tvfast.solver.reconstruction.ReconstructionProblem`'s ``swap_hw``
        for −2). Plain operators have none; :class:`~tvfast.physics.MaskedFFT`
        with a mask of whole rows has −2.
        """
        return None

    @property
    def H(self) -> LinearOperator:
        """The adjoint operator Aᴴ (callable: ``op.H(y)``)."""
        if self._H is None:
            self._H = LinearOperator(self._adjoint, self._forward)
            self._H._H = self
        return self._H

    @classmethod
    def from_forward(cls, forward: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor) -> LinearOperator:
        """A :class:`LinearOperator` whose adjoint is derived from ``forward`` by automatic differentiation.

        For a linear A, the vector–Jacobian product at any point with
        cotangent v is Aᴴv in PyTorch's convention for complex tensors (the
        gradient of a real loss is ∂ℓ/∂Re + i ∂ℓ/∂Im), which is the adjoint
        for the real inner product of the module docstring — also when A
        maps real images to complex data, where the product is real. The
        adjoint is evaluated at x = 0 with :func:`torch.func.vjp` and returns
        tensors of the shape and dtype of ``like``; each call costs about one
        forward and one backward of ``forward``.
        """
        if not isinstance(like, torch.Tensor):
            raise TypeError(f"like: expected a torch.Tensor from the operator's domain, got {type(like).__name__}")
        shape, dtype, device = like.shape, like.dtype, like.device

        def adjoint(y: torch.Tensor) -> torch.Tensor:
            _, vjp = torch.func.vjp(forward, torch.zeros(shape, dtype=dtype, device=device))
            return vjp(y)[0]

        return cls(forward, adjoint)

    def __repr__(self) -> str:
        def name(f):  # a bound method of this operator by its name: its repr would recurse into this one
            return getattr(f, "__qualname__", None) or repr(f)

        return f"{type(self).__name__}(forward={name(self._forward)}, adjoint={name(self._adjoint)})"


def as_operator(obj) -> LinearOperator:
    """``obj`` as a :class:`LinearOperator`.

    Accepted: a :class:`LinearOperator` (returned as is, with its norm
    cache); an object with methods ``A(x)`` and ``A_adjoint(y)``
    (DeepInverse's ``LinearPhysics``); a callable object with a method
    ``adjoint(y)`` whose results may be 1-tuples (MRpro's
    ``LinearOperator``). Foreign objects get a new wrapper on every call, so
    to reuse the estimated norm across solves wrap once and pass the wrapper.
    """
    if isinstance(obj, LinearOperator):
        return obj
    if callable(getattr(obj, "A", None)) and callable(getattr(obj, "A_adjoint", None)):
        return LinearOperator(obj.A, obj.A_adjoint)
    if callable(obj) and callable(getattr(obj, "adjoint", None)):
        return LinearOperator(obj, obj.adjoint)
    raise TypeError(
        "operator: expected a tvfast.physics.LinearOperator, an object with methods A and A_adjoint, "
        f"or a callable with an adjoint method, got {type(obj).__name__}"
    )


def _inner(a: torch.Tensor, b: torch.Tensor) -> float:
    """The real inner product Re Σ conj(a)·b, in float64."""
    if a.is_complex() or b.is_complex():
        a = torch.view_as_real(a.to(torch.complex128).resolve_conj())
        b = torch.view_as_real(b.to(torch.complex128).resolve_conj())
    return float((a.to(torch.float64) * b.to(torch.float64)).sum())


def _random_like(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(t.shape, dtype=t.dtype, device=t.device, generator=generator)


def _default_rtol(*tensors: torch.Tensor) -> float:
    double = all(t.dtype in (torch.float64, torch.complex128) for t in tensors)
    return 1e-9 if double else 1e-4


def check_adjoint(operator, x: torch.Tensor, y: torch.Tensor | None = None, rtol: float | None = None) -> float:
    """Check ⟨A x, y⟩ = ⟨x, Aᴴ y⟩ (real inner product) and return the relative difference.

    ``x`` is a point of the domain and ``y`` of the range; with ``y`` None a
    standard normal y of the shape and dtype of A x is drawn (from a fixed
    seed, without touching the global random state). The relative difference
    is |⟨Ax, y⟩ − ⟨x, Aᴴy⟩| / (‖Ax‖·‖y‖), and ``rtol`` defaults to 1e-9 for
    double precision, 1e-4 otherwise. Raises ValueError naming ``operator``
    when Aᴴy has another shape than x or when the difference exceeds ``rtol``.
    """
    op = as_operator(operator)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    with torch.no_grad():
        ax = op(x)
        if y is None:
            generator = torch.Generator(device=ax.device).manual_seed(0)
            y = _random_like(ax, generator)
        elif y.shape != ax.shape:
            raise ValueError(f"y: expected the shape of A x, {tuple(ax.shape)}, got {tuple(y.shape)}")
        ahy = op.adjoint(y)
        if ahy.shape != x.shape:
            raise ValueError(f"operator: the adjoint returned shape {tuple(ahy.shape)} for y of shape "
                             f"{tuple(y.shape)}; expected the shape of x, {tuple(x.shape)}")
        lhs, rhs = _inner(ax, y), _inner(x, ahy)
        scale = math.sqrt(_inner(ax, ax) * _inner(y, y)) or 1.0
    rtol = _default_rtol(x, y) if rtol is None else float(rtol)
    difference = abs(lhs - rhs) / scale
    if not difference <= rtol:
        raise ValueError(
            f"operator: the adjoint does not match the forward map: <A x, y> = {lhs:.9g} but "
            f"<x, A^H y> = {rhs:.9g} (relative difference {difference:.3g} > rtol {rtol:.3g})"
        )
    return difference


def operator_norm(operator, like: torch.Tensor, n_iter: int = 64, rtol: float = 1e-6) -> float:
    """‖A‖ estimated by power iteration on AᴴA, for inputs shaped like ``like``.

    From a standard normal v₀ (fixed seed, the global random state is not
    touched): v ← AᴴA v / ‖AᴴA v‖, and ‖A‖² ≈ ‖A v‖² (a Rayleigh quotient, a
    lower bound that increases to ‖A‖²). Stops after ``n_iter`` steps or when
    the estimate changes by less than ``rtol`` relatively. The result is
    cached in the operator object per shape, dtype, device and ``n_iter``.
    """
    op = as_operator(operator)
    if not isinstance(like, torch.Tensor):
        raise TypeError(f"like: expected a torch.Tensor from the operator's domain, got {type(like).__name__}")
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter: expected an int >= 1, got {n_iter!r}")
    key = (tuple(like.shape), like.dtype, like.device, n_iter)
    if key in op._norms:
        return op._norms[key]
    generator = torch.Generator(device=like.device).manual_seed(0)
    with torch.no_grad():
        v = _random_like(like, generator)
        v = v / math.sqrt(_inner(v, v))
        estimate = 0.0
        for _ in range(n_iter):
            av = op(v)
            new_estimate = _inner(av, av)
            w = op.adjoint(av)
            w_norm = math.sqrt(_inner(w, w))
            converged = abs(new_estimate - estimate) <= rtol * new_estimate
            estimate = new_estimate
            if w_norm == 0.0 or converged:
                break
            v = w / w_norm
    norm = math.sqrt(estimate)
    op._norms[key] = norm
    return norm
