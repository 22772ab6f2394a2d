"""Reconstruction with a forward operator: the autograd Function with the clip-state backward (docs/method.md §10).

Solves min_x ½‖Ax − y‖² + ‖Λ∘∇x‖₁ by T iterations of

    p_{k+1} = (p_k + σ(A x̄_k − y)) / (1 + σ)
    q_{k+1} = clip(q_k + σ∇x̄_k, −Λ, Λ)
    x_{k+1} = x_k − τAᴴp_{k+1} − τ∇ᵀq_{k+1},   x̄_{k+1} = x_{k+1} + θ(x_{k+1} − x_k)

from x₀ = x̄₀ (given, or Aᴴy), p₀ = q₀ = 0. A and Aᴴ are the caller's
callables, applied in PyTorch; the TV part runs through the same solver as
denoising with the data term handed in (``data_step``): the PyTorch steps
of :mod:`tvfast.solver.cpu` (backend "torch", under its compile policy) or
the Triton kernels of :mod:`tvfast.kernels.launch` (backend "triton"), which
keep the q update, ∇ᵀq, the x update given Aᴴp_{k+1} and the clip states on
the GPU.

Complex x. The TV term treats the real and imaginary parts as two real
images with the same real Λ: x (B, 1, *S) complex becomes a (2B, *S) real
batch, real parts first, for the TV steps, and each part has its own clip
states. A and Aᴴ see the complex image. Gradients follow PyTorch's
convention (∂ℓ/∂Re + i ∂ℓ/∂Im), in which the adjoint of a map for the real
inner product is the operator's Aᴴ, so the recursion below is exact for
real and complex x alike.

In image space (docs/method.md §10): the data term is carried as
P_k = Aᴴp_k, P_{k+1} = (P_k + σ(AᴴA x̄_k − Aᴴy))/(1+σ), so each iteration
applies the normal operator AᴴA once (``operator.gram``: A then Aᴴ, or a
cheaper form the operator provides, such as 1-D FFTs for MRI masks of whole
rows) and Aᴴy is computed once.

Backward (one AᴴA per iteration, as in the forward). With
a = gx' + (1+θ)gx̄' and the image-space r (r_T = 0) for which gp''_k = A r_k:

    r_k = r_{k+1}/(1+σ) − τa,   gq'' = gq' − τ∇a,   gu = M∘gq'',   gΛ += S∘gq''
    gx̄ = σ∇ᵀgu + σ/(1+σ)·AᴴA r_k,   gx = a − θgx̄'

and finally gx₀ = gx + gx̄ goes to x0, and gy = A(−σ/(1+σ)·Σ_k r_k, plus
gx₀ when x₀ = Aᴴy): one application of A after the loop.

Memory: the clip states (docs/method.md §4.2) of the TV batch — 0.5 byte
per pixel per iteration for real images, 1 for complex images and for real
volumes, 2 for complex volumes — plus O(1) images in X and Y. Nothing else
is saved for the backward: the operator is kept by reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tvfast.physics import LinearOperator
from tvfast.solver import fused
from tvfast.solver.backends import solver_for

__all__ = ["ReconstructionProblem", "ReconstructionFunction", "reconstruct"]


@dataclass(frozen=True)
class ReconstructionProblem:
    """Everything of a reconstruction but its tensors: A, x's layout, the steps, T, the TV backend
    ("numba", "torch" or "triton"), the compile request (of the "torch" backend) and the TV frame.

    ``swap_hw``: the TV batch holds each image with its last two axes swapped
    (…, W, H), so that H is contiguous in memory. Operators whose normal
    operator runs 1-D transforms along H (:attr:`LinearOperator.gram_axis`
    = −2: a Cartesian MRI mask of whole rows) then read and write their
    transform axis contiguously — twice as fast as the strided transform —
    and nothing is transposed per iteration. The TV term is symmetric in its
    axes: in the swapped frame Λ's per-axis channels are permuted to match,
    and x, Λ and the gradients are swapped back on the way out. The clip
    states are those of the swapped frame (the same bytes, in another order).
    """

    operator: LinearOperator
    x_shape: torch.Size  # (B, 1, *S)
    x_dtype: torch.dtype  # float32/64 or complex64/128
    n_iter: int
    tau: float
    sigma: float
    theta: float
    compile: bool | None = None
    backend: str = "torch"
    swap_hw: bool = False

    @property
    def is_complex(self) -> bool:
        return self.x_dtype.is_complex

    def _frame(self, t: torch.Tensor) -> torch.Tensor:
        """Image-frame (…, H, W) ↔ TV-frame (…, W, H) when :attr:`swap_hw` (a view; its own inverse)."""
        return t.transpose(-1, -2) if self.swap_hw else t

    def frame_of(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, *S) → (B, *S) in the TV frame (a view; :attr:`swap_hw` swaps the last two axes)."""
        return self._frame(x.reshape(self.x_shape[0], *self.x_shape[2:]))

    def image_of(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`frame_of`: (B, *S) in the TV frame, of x's dtype → x (B, 1, *S)."""
        return self._frame(t).reshape(self.x_shape)

    def to_tv(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, *S) → the contiguous real TV batch (B, *S), or (2B, *S) for complex x (real parts first)."""
        x = self.frame_of(x)
        if self.is_complex:
            x = x.resolve_conj()
            return torch.cat((x.real, x.imag), dim=0)
        return x.contiguous()

    def tv_view(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, *S), as :meth:`to_tv` gives it but without a copy where one can be avoided.

        A complex x becomes the (2, B, *S) real view of its real and imaginary
        parts (elements in :meth:`to_tv`'s order, but interleaved in memory):
        the CPU steps read it through a reshape that Inductor fuses into their
        loop, where a copy into the planar layout would cost about a quarter
        of a 2-D FFT per iteration.
        """
        x = self.frame_of(x)
        if self.is_complex:
            return torch.view_as_real(x.resolve_conj()).movedim(-1, 0)
        return x

    def from_tv(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_tv`: the (B or 2B, *S) real batch → x (B, 1, *S) (a transposed view when swapped)."""
        if self.is_complex:
            batch = self.x_shape[0]
            t = torch.complex(t[:batch], t[batch:])
        return self.image_of(t)

    def _axes_of_frame(self, lam: torch.Tensor) -> torch.Tensor:
        """Λ or its gradient (·, C, *S) between the frames: the last two axes swapped, and with one channel per axis
        (C = len(S)) the channels of those two axes exchanged (its own inverse)."""
        if not self.swap_hw:
            return lam
        lam = lam.transpose(-1, -2)
        n_axes = len(self.x_shape) - 2
        if lam.shape[1] == n_axes:
            order = list(range(n_axes - 2)) + [n_axes - 1, n_axes - 2]
            lam = lam[:, order]
        return lam

    def lam_tv(self, lam: torch.Tensor) -> torch.Tensor:
        """Λ (Bl, C, *) for the TV batch: the same Λ on the real and the imaginary parts."""
        lam = self._axes_of_frame(lam)
        if self.is_complex and lam.shape[0] > 1:
            return lam.repeat(2, *([1] * (lam.dim() - 1)))
        return lam

    def lam_frame(self, lam: torch.Tensor) -> torch.Tensor:
        """Λ (Bl, C, *S) in the TV frame, one Λ per image (not repeated for the imaginary parts: the isotropic
        projection takes both parts of a pixel together)."""
        return self._axes_of_frame(lam)

    def lam_grad_frame(self, glam: torch.Tensor, lam_shape) -> torch.Tensor:
        """The gradient of :meth:`lam_frame`'s Λ summed back to the caller's Λ shape."""
        return self._axes_of_frame(glam).sum_to_size(lam_shape)

    def lam_grad(self, glam_tv: torch.Tensor, lam_shape) -> torch.Tensor:
        """The gradient of the TV batch's Λ summed back to the caller's Λ shape."""
        if self.is_complex:
            glam_tv = glam_tv.reshape(2, -1, *glam_tv.shape[1:]).sum(0)
        return self._axes_of_frame(glam_tv).sum_to_size(lam_shape)


def _own(out: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``out`` to be updated in place: a copy when the operator returned (a view of) its input."""
    if out.untyped_storage().data_ptr() == source.untyped_storage().data_ptr():
        return out.clone()
    return out


class _DualStep:
    """The data term's forward in image space: P_{k+1} = (P_k + σ(AᴴA x̄_k − Aᴴy))/(1+σ), returned in the TV layout.

    P_k = Aᴴp_k (docs/method.md §10, "In image space"): applying Aᴴ to the dual update gives
    this recursion exactly, for any y, so one application of the normal
    operator AᴴA (:meth:`~tvfast.physics.LinearOperator.gram`) per iteration
    replaces A and Aᴴ. The operator's outputs are fresh tensors, so the
    arithmetic runs in place on them.
    """

    def __init__(self, problem: ReconstructionProblem, adjoint_y: torch.Tensor):
        self.problem, self.adjoint_y = problem, adjoint_y
        self.P = torch.zeros(problem.x_shape, dtype=problem.x_dtype, device=adjoint_y.device)
        # The Triton launcher reads a contiguous TV batch; the CPU steps read the view (no copy).
        self.handed = problem.to_tv if problem.backend == "triton" else problem.tv_view

    def __call__(self, x_bar_tv: torch.Tensor) -> torch.Tensor:
        problem = self.problem
        normal = _own(problem.operator.gram(problem.from_tv(x_bar_tv)), x_bar_tv)
        normal.sub_(self.adjoint_y)  # AᴴA x̄_k − Aᴴy
        self.P.add_(normal, alpha=problem.sigma).mul_(1.0 / (1.0 + problem.sigma))
        return self.handed(self.P)


class _DualAdjointStep:
    """The data term's adjoint in image space: r_k = r_{k+1}/(1+σ) − τa_k; returns σ/(1+σ)·AᴴA r_k.

    The adjoint recursion gp''_k = gp_{k+1}/(1+σ)·… − τAa_k keeps gp''_k = A r_k
    for the image-space r above (gp = 0 at k = T), so Aᴴgp''_k = AᴴA r_k, and
    the gradient of the data, −σ/(1+σ)·Σ_k gp''_k, is A applied once to
    −σ/(1+σ)·Σ_k r_k (:attr:`r_sum`, kept only when y needs a gradient).
    """

    def __init__(self, problem: ReconstructionProblem, device: torch.device, need_gy: bool):
        self.problem = problem
        self.r = torch.zeros(problem.x_shape, dtype=problem.x_dtype, device=device)
        self.r_sum = torch.zeros_like(self.r) if need_gy else None
        self.out = torch.empty_like(self.r)  # contiguous, whatever the layout of the operator's output
        self.handed = problem.to_tv if problem.backend == "triton" else problem.tv_view

    def summed(self) -> torch.Tensor:
        """Σ_k r_k as an x-shaped image."""
        return self.r_sum

    def __call__(self, a_tv: torch.Tensor) -> torch.Tensor:
        problem = self.problem
        ratio = problem.sigma / (1.0 + problem.sigma)
        self.r.mul_(1.0 / (1.0 + problem.sigma)).sub_(problem.from_tv(a_tv), alpha=problem.tau)
        if self.r_sum is not None:
            self.r_sum.add_(self.r)
        # (1-D FFTs return a transposed layout: the product writes it back in row order, in the same pass.)
        return self.handed(torch.mul(problem.operator.gram(self.r), ratio, out=self.out))


class _FusedImage:
    """x-shaped images of the fused path's TV batches: a view for real x; for complex x, the parts interleaved
    into one reused buffer by a compiled pass (no allocation, and the buffer is contiguous in the TV frame, the
    layout the operator's transforms read fastest when :attr:`ReconstructionProblem.swap_hw` is set)."""

    def __init__(self, problem: ReconstructionProblem, like_tv: torch.Tensor):
        self.problem = problem
        self.buffer = None
        if problem.is_complex:
            self.buffer = torch.empty(like_tv.shape[0] // 2, *like_tv.shape[1:], dtype=problem.x_dtype)

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if self.buffer is None:
            return self.problem.from_tv(t)
        return self.problem.image_of(fused.to_complex(self.buffer, t))


class _FusedDualStep:
    """:class:`_DualStep` for the fused CPU path: P_k held in the TV layout, its update one compiled pass.

    The real TV batch (B or 2B, *S) is what the fused kernels read fastest:
    P_k and Aᴴy are kept in it, x̄_k goes to the operator through
    :class:`_FusedImage`, and AᴴA x̄_k is read back by :func:`fused.data_dual`
    (as (re, im) pairs when contiguous, else through one copy).
    """

    def __init__(self, problem: ReconstructionProblem, adjoint_y: torch.Tensor):
        self.problem = problem
        self.adjoint_y = problem.to_tv(adjoint_y)
        self.P = torch.zeros_like(self.adjoint_y)
        self.image = _FusedImage(problem, self.P)

    def __call__(self, x_bar_tv: torch.Tensor) -> torch.Tensor:
        problem = self.problem
        normal = problem.operator.gram(self.image(x_bar_tv))
        fused.data_dual(self.P, problem.frame_of(normal), self.adjoint_y, problem.sigma)
        return self.P


class _FusedDualAdjointStep:
    """:class:`_DualAdjointStep` for the fused CPU path: r_k in the TV layout, each line one compiled pass."""

    def __init__(self, problem: ReconstructionProblem, like: torch.Tensor, need_gy: bool):
        self.problem = problem
        self.r = torch.zeros_like(like)
        self.r_sum = torch.zeros_like(like) if need_gy else None
        self.out = torch.empty_like(like)
        self.image = _FusedImage(problem, like)

    def __call__(self, a_tv: torch.Tensor) -> torch.Tensor:
        problem = self.problem
        fused.data_adjoint(self.r, a_tv, self.r_sum, problem.tau, problem.sigma)
        normal = problem.operator.gram(self.image(self.r))
        return fused.scaled(self.out, problem.frame_of(normal), problem.sigma / (1.0 + problem.sigma))

    def summed(self) -> torch.Tensor:
        """Σ_k r_k as an x-shaped image."""
        return self.problem.from_tv(self.r_sum)


def _dual_step(problem: ReconstructionProblem, adjoint_y: torch.Tensor):
    """The data term's forward step for the problem's backend."""
    return (_FusedDualStep if problem.backend == "numba" else _DualStep)(problem, adjoint_y)


def _dual_adjoint_step(problem: ReconstructionProblem, grad_tv: torch.Tensor, need_gy: bool):
    """The data term's adjoint step for the problem's backend (``grad_tv``: ∂ℓ/∂x_T in the TV layout)."""
    if problem.backend == "numba":
        return _FusedDualAdjointStep(problem, grad_tv, need_gy)
    return _DualAdjointStep(problem, grad_tv.device, need_gy)


def _solve(y, lam, x0, problem: ReconstructionProblem, keep_states: bool, adjoint_y: torch.Tensor | None = None):
    """The forward solve; ``adjoint_y`` is Aᴴy when the caller has it already (the argument check does)."""
    if adjoint_y is None:
        adjoint_y = problem.operator.adjoint(y)
    adjoint_y = adjoint_y.to(problem.x_dtype)
    start = adjoint_y if x0 is None else x0
    solver, options = solver_for(problem.backend, problem.compile)
    x_tv, states = solver.solve_forward(
        problem.to_tv(start.to(problem.x_dtype)), problem.lam_tv(lam), problem.n_iter, problem.tau, problem.sigma,
        problem.theta, keep_states=keep_states, data_step=_dual_step(problem, adjoint_y), **options,
    )
    return problem.from_tv(x_tv).contiguous(), states


class ReconstructionFunction(torch.autograd.Function):
    """x_T of docs/method.md §10 for y, Λ (a 4-D or 5-D broadcastable real tensor) and x0 (or None: Aᴴy)."""

    @staticmethod
    def forward(ctx, y, lam, x0, problem, adjoint_y=None):
        x, states = _solve(y, lam, x0, problem, keep_states=True, adjoint_y=adjoint_y)
        ctx.save_for_backward(states)
        ctx.config = (problem, tuple(lam.shape), lam.dtype, y.shape, y.dtype, x0 is None)
        return x

    @staticmethod
    def backward(ctx, grad_x):
        (states,) = ctx.saved_tensors
        problem, lam_shape, lam_dtype, y_shape, y_dtype, start_is_adjoint = ctx.config
        need_gy, need_glam, need_gx0 = ctx.needs_input_grad[:3]
        grad_tv = problem.to_tv(grad_x)
        dual = _dual_adjoint_step(problem, grad_tv, need_gy)
        solver, options = solver_for(problem.backend, problem.compile)
        g_start_tv, glam = solver.solve_backward(
            grad_tv, states, lam_shape[1], need_glam, problem.tau, problem.sigma, problem.theta,
            data_step=dual, **options,
        )
        g_start = problem.from_tv(g_start_tv)
        grad_y = None
        if need_gy:  # −σ/(1+σ)·A Σ_k r_k, and A g_start when x₀ = Aᴴy: one application of A
            image = dual.summed().mul_(-problem.sigma / (1.0 + problem.sigma))
            if start_is_adjoint:
                image.add_(g_start)
            grad_y = problem.operator(image).to(y_dtype).reshape(y_shape)
        grad_lam = problem.lam_grad(glam, lam_shape).to(lam_dtype) if need_glam else None
        grad_x0 = g_start if need_gx0 else None
        return grad_y, grad_lam, grad_x0, None, None


def reconstruct(y: torch.Tensor, lam: torch.Tensor, x0: torch.Tensor | None,
                problem: ReconstructionProblem, adjoint_y: torch.Tensor | None = None) -> torch.Tensor:
    """x_T for the data y, the real Λ and the start x0 (None: Aᴴy), differentiable in y, Λ and x0.

    ``adjoint_y``: Aᴴy of the detached y when already computed (by the
    argument check), so the solve does not apply Aᴴ to y again. Without a
    gradient to compute no clip state is recorded. ``n_iter = 0`` returns x₀.
    """
    tensors = (y, lam) if x0 is None else (y, lam, x0)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return ReconstructionFunction.apply(y, lam, x0, problem, adjoint_y)
    with torch.no_grad():
        x, _ = _solve(y, lam, x0, problem, keep_states=False, adjoint_y=adjoint_y)
    return x
