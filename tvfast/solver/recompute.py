r"""Isotropic TV and learnable step sizes: PDHG with a checkpointed recompute backward (docs/method.md §12).

The clip-state backward of :mod:`tvfast.solver.autograd` needs only 2 bits
per dual entry because the Jacobian of the anisotropic clip is a 0/1
diagonal. The isotropic projection q = u·min(1, Λ/|u|) has a Jacobian that
depends on the values of u, and a gradient with respect to τ, σ or θ needs
the iterates themselves. This module keeps the full state (x, x̄, p, q)
every s ≈ √(T·c/r) iterations (c: bytes of a state, r: bytes recorded per
iteration) and, in the backward, recomputes each segment of s iterations
from its checkpoint, recording what the adjoint needs (u for the
projection; the iterates when a step needs a gradient), then runs the
adjoint of docs/method.md §12 back through the segment. The recomputed
iterates are bit-identical to the forward's, so the gradient is exact; the
memory is O(√T) states instead of autograd's O(T), for about one more
forward pass of time.

Iteration k (steps τ_k, σ_k, θ_k; with an operator ``p`` is P = Aᴴp and
x̄ − z reads AᴴA x̄ − Aᴴy, docs/method.md §10)::

    p ← (p + σ(x̄ − z))/(1 + σ)
    u = q + σ∇x̄,   q ← Π_Λ(u)
    x' = x − τp − τ∇ᵀq,   x̄ ← x' + θ(x' − x)

Π_Λ is the clip to [−Λ, Λ] per entry (anisotropic TV) or, per pixel, the
projection onto the ball |q| ≤ Λ, |q|² = Σ_a q_a² (isotropic TV; the real
and imaginary parts of a complex image enter one norm together).

Engines run the iterations: :class:`TorchIteration` here (any device, every
case, the step gradients), the fused CPU engine
:class:`tvfast.solver.fused.RecomputeEngine` (real TV batches, either TV,
no step gradients) and the Triton engine
:class:`tvfast.kernels.recompute.RecomputeEngine` (isotropic TV, real or
complex, no step gradients); a forward operator enters the compiled engines
as a :class:`DataTerm`. Both expose ``start``, ``step``, ``save``/``load``,
``result``, ``new_records``, ``adjoint_start``, ``adjoint_step`` and
``adjoint_result``, and ``checkpoint_bytes``/``record_bytes`` per pixel.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from tvfast.solver.differences import forward_differences, forward_differences_T

__all__ = ["StepSchedule", "TorchIteration", "DataTerm", "segment_length", "run_forward", "run_backward", "project",
           "project_adjoint", "TV_KINDS"]

TV_KINDS = ("anisotropic", "isotropic")


class StepSchedule:
    """τ_k, σ_k, θ_k for k < T from numbers, 0-d tensors or (T,) tensors, and the gradients of the tensors.

    ``values[i][k]`` are Python floats (the iterations read them as
    scalars); :meth:`gradients` turns the per-iteration sums gathered by the
    adjoint into gradients of the shape of each tensor that requires one.
    """

    def __init__(self, tau, sigma, theta, n_iter: int):
        self.sources = (tau, sigma, theta)
        self.n_iter = n_iter
        self.values = tuple(self._per_iteration(v) for v in self.sources)

    def _per_iteration(self, value) -> list[float]:
        if isinstance(value, torch.Tensor):
            flat = value.detach().to(torch.float64).cpu().reshape(-1)
            return flat.expand(self.n_iter).tolist() if flat.numel() == 1 else flat.tolist()
        return [float(value)] * self.n_iter

    def at(self, k: int) -> tuple[float, float, float]:
        return self.values[0][k], self.values[1][k], self.values[2][k]

    @property
    def needs_grad(self) -> tuple[bool, bool, bool]:
        return tuple(isinstance(v, torch.Tensor) and v.requires_grad for v in self.sources)

    @property
    def constant(self) -> bool:
        """Whether every iteration has the same steps."""
        return all(len(set(v)) <= 1 for v in self.values)

    def gradients(self, per_iteration: list[list[torch.Tensor] | None]):
        """The gradient of each source (None where not needed) from the per-iteration sums."""
        out = []
        for source, needed, sums in zip(self.sources, self.needs_grad, per_iteration):
            if not needed:
                out.append(None)
                continue
            if not sums:  # T = 0: x does not depend on the steps
                out.append(torch.zeros_like(source))
                continue
            g = torch.stack([s.to(torch.float64) for s in sums]).to(source.device)
            out.append((g.sum() if source.dim() == 0 else g).to(source.dtype))
        return out


def segment_length(n_iter: int, checkpoint_bytes: float, record_bytes: float) -> int:
    """s minimising the memory ⌈T/s⌉·c + s·r of the checkpoints and one segment's records: s ≈ √(T·c/r)."""
    if n_iter <= 1:
        return max(n_iter, 1)
    return max(1, min(n_iter, round(math.sqrt(n_iter * checkpoint_bytes / max(record_bytes, 1e-9)))))


def run_forward(engine, n_iter: int, keep: bool) -> tuple[list, int]:
    """Run T iterations; with ``keep`` save the state every s iterations. Returns (checkpoints, s)."""
    segment = segment_length(n_iter, engine.checkpoint_bytes, engine.record_bytes) if keep else 0
    checkpoints = []
    engine.start()
    for k in range(n_iter):
        if keep and k % segment == 0:
            checkpoints.append(engine.save())
        engine.step(k)
    return checkpoints, segment


def run_backward(engine, checkpoints: list, segment: int, n_iter: int, grad_x: torch.Tensor):
    """The adjoint of :func:`run_forward`, segment by segment from the last: recompute, then run back through it.

    The checkpoints are released as their segments are done. Returns the
    engine's ``adjoint_result()``.
    """
    engine.adjoint_start(grad_x)
    records = engine.new_records(min(segment, n_iter))
    for c in reversed(range(len(checkpoints))):
        k0, k1 = c * segment, min(n_iter, (c + 1) * segment)
        engine.load(checkpoints[c])
        checkpoints[c] = None
        for k in range(k0, k1):
            engine.step(k, records, k - k0)
        for k in reversed(range(k0, k1)):
            engine.adjoint_step(k, records, k - k0, last=k == k1 - 1)
    return engine.adjoint_result()


# ---------------------------------------------------------------------------------------------------------------------
# The projections and their adjoints, in PyTorch ops
# ---------------------------------------------------------------------------------------------------------------------


def _ball(u: torch.Tensor, lam: torch.Tensor, parts: int):
    """u (N, n, *S) as (parts, B, n, *S), |u| per pixel (B, *S) over parts and axes, and Λ (Bl, *S)."""
    uv = u.reshape(parts, -1, *u.shape[1:])
    norm = torch.sqrt((uv * uv).sum(dim=(0, 2)))
    return uv, norm, lam[:, 0]


def project(u: torch.Tensor, lam: torch.Tensor, tv: str, parts: int = 1) -> torch.Tensor:
    """Π_Λ(u) for u (N, n, *S): the clip (Λ broadcastable to u) or the ball (Λ (Bl, 1, *S), Bl = 1 or N/parts)."""
    if tv == "anisotropic":
        return torch.minimum(torch.maximum(u, -lam), lam)
    uv, norm, lam_i = _ball(u, lam, parts)
    active = norm > lam_i
    scale = torch.where(active, lam_i / torch.where(active, norm, torch.ones_like(norm)), torch.ones_like(norm))
    return (uv * scale.unsqueeze(1)).reshape(u.shape)


def project_adjoint(u: torch.Tensor, g: torch.Tensor, lam: torch.Tensor, tv: str, parts: int = 1):
    """(gu, gΛ) for the cotangent g of Π_Λ(u): gu = J_uᵀg, and gΛ = J_Λᵀg of shape (N, n, *S) (clip) or (B, 1, *S)
    (ball). Clip ties as :mod:`tvfast.solver.clip_states`: HIGH if u ≥ Λ, else LOW if u ≤ −Λ."""
    if tv == "anisotropic":
        high = u >= lam
        low = (u <= -lam) & ~high
        zero = torch.zeros_like(g)
        gu = torch.where(high | low, zero, g)
        return gu, torch.where(high, g, zero) - torch.where(low, g, zero)
    uv, norm, lam_i = _ball(u, lam, parts)
    gv = g.reshape(uv.shape)
    active = norm > lam_i
    safe = torch.where(active, norm, torch.ones_like(norm)).unsqueeze(1)
    n = uv / safe
    dot = (n * gv).sum(dim=(0, 2))
    r = (lam_i.unsqueeze(1) / safe)
    gu = torch.where(active.unsqueeze(1), r * (gv - n * dot.unsqueeze(1)), gv)
    return gu.reshape(g.shape), torch.where(active, dot, torch.zeros_like(dot)).unsqueeze(1)


# ---------------------------------------------------------------------------------------------------------------------
# The PyTorch engine
# ---------------------------------------------------------------------------------------------------------------------


class _State(NamedTuple):
    x: torch.Tensor  # (N, *S)
    x_bar: torch.Tensor
    p: torch.Tensor  # p_k (denoising) or P_k = Aᴴp_k (operator), (N, *S)
    q: torch.Tensor  # (N, n, *S)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum()


class TorchIteration:
    """The iterations and their adjoint in PyTorch ops, on a real TV batch (N, *S), N = parts·B.

    ``start`` (N, *S): z for denoising, x₀ with an operator. ``lam``: for the
    clip broadcastable to (N, n, *S); for the ball (Bl, 1, *S), Bl = 1 or B.
    ``data``: None (denoising) or an object with ``normal(v)`` = AᴴA v and
    ``adjoint_y`` = Aᴴy, both real TV batches. ``boundary``: the differences
    of ∇ (the clip's Neumann boundary may instead be a mask in Λ).
    Every step makes new tensors, so checkpoints and recorded iterates are
    references, never copies.
    """

    def __init__(self, start: torch.Tensor, lam: torch.Tensor, n_axes: int, tv: str, steps: StepSchedule,
                 boundary: str = "periodic", parts: int = 1, data=None):
        self.start_value, self.lam, self.n_axes, self.tv = start.detach(), lam.detach(), n_axes, tv
        self.steps, self.boundary, self.parts, self.data = steps, boundary, parts, data
        self.keep_iterates = any(steps.needs_grad)
        item = start.element_size()
        self.checkpoint_bytes = (3 + n_axes) * item
        self.record_bytes = (n_axes + (3 + n_axes if self.keep_iterates else 0)) * item
        self.state = None

    def _grad(self, v):
        return forward_differences(v, self.n_axes, self.boundary)

    def _grad_t(self, q):
        return forward_differences_T(q, self.n_axes, self.boundary)

    def start(self):
        x = self.start_value
        self.state = _State(x, x, torch.zeros_like(x), torch.zeros_like(self._grad(x)))

    def save(self):
        return self.state

    def load(self, checkpoint):
        self.state = checkpoint

    def result(self) -> torch.Tensor:
        return self.state.x

    def new_records(self, n: int):
        return {"u": [None] * n, "before": [None] * n}

    def step(self, k: int, records=None, slot: int = 0):
        tau, sigma, theta = self.steps.at(k)
        s = self.state
        residual = s.x_bar - self.start_value if self.data is None else self.data.normal(s.x_bar) - self.data.adjoint_y
        p = (s.p + sigma * residual) / (1.0 + sigma)
        u = s.q + sigma * self._grad(s.x_bar)
        q = project(u, self.lam, self.tv, self.parts)
        x = s.x - tau * p - tau * self._grad_t(q)
        if records is not None:
            records["u"][slot] = u
            if self.keep_iterates:
                records["before"][slot] = s
        self.state = _State(x, x + theta * (x - s.x), p, q)

    def adjoint_start(self, grad_x: torch.Tensor):
        g = grad_x.detach()
        self.g = _State(g, torch.zeros_like(g), torch.zeros_like(g), torch.zeros_like(self.state.q))
        self.g_data = torch.zeros_like(g)  # ∂/∂z (denoising) or ∂/∂(Aᴴy)
        self.g_lam = None
        self.g_steps = [[None] * self.steps.n_iter if need else None for need in self.steps.needs_grad]

    def adjoint_step(self, k: int, records, slot: int, last: bool):
        tau, sigma, theta = self.steps.at(k)
        g = self.g
        u = records["u"][slot]
        a = g.x + (1.0 + theta) * g.x_bar
        g_tau, g_sigma, g_theta = self.g_steps
        if self.keep_iterates:
            before = records["before"][slot]
            after = self.state if last else records["before"][slot + 1]
            if g_theta is not None:
                g_theta[k] = _dot(g.x_bar, after.x - before.x)
            if g_tau is not None:
                g_tau[k] = -_dot(a, after.p + self._grad_t(after.q))
        gp = g.p - tau * a
        gu, g_lam = project_adjoint(u, g.q - tau * self._grad(a), self.lam, self.tv, self.parts)
        self.g_lam = g_lam if self.g_lam is None else self.g_lam + g_lam
        normal_gp = gp if self.data is None else self.data.normal(gp)
        ratio = sigma / (1.0 + sigma)
        self.g_data = self.g_data - ratio * gp
        if g_sigma is not None:
            if self.data is None:
                extra = _dot(gp, before.x_bar - self.start_value - after.p)
            else:
                extra = _dot(normal_gp, before.x_bar) - _dot(gp, self.data.adjoint_y + after.p)
            g_sigma[k] = _dot(gu, self._grad(before.x_bar)) + extra / (1.0 + sigma)
        self.g = _State(a - theta * g.x_bar, sigma * self._grad_t(gu) + ratio * normal_gp, gp / (1.0 + sigma), gu)

    def adjoint_result(self):
        """(∂/∂start, ∂/∂z or ∂/∂Aᴴy, gΛ (N, n, *S) clip or (B, 1, *S) ball, step gradients per iteration)."""
        g_lam = self.g_lam if self.g_lam is not None else torch.zeros_like(self.lam)
        return self.g.x + self.g.x_bar, self.g_data, g_lam, self.g_steps


# ---------------------------------------------------------------------------------------------------------------------
# The autograd Functions: denoising and reconstruction
# ---------------------------------------------------------------------------------------------------------------------


def plain_steps(tau, sigma, theta) -> bool:
    """Whether the steps are numbers, or 0-d tensors that need no gradient: the clip-state path can take them."""
    return all(not isinstance(v, torch.Tensor) or (v.dim() == 0 and not v.requires_grad) for v in (tau, sigma, theta))


def as_numbers(tau, sigma, theta) -> tuple[float, float, float]:
    return tuple(float(v) if isinstance(v, torch.Tensor) else v for v in (tau, sigma, theta))


def _compiled_engine(start, lam, steps: StepSchedule, tv: str, boundary: str, backend: str, parts: int = 1,
                     data=None):
    """The engine of compiled kernels for a backend where one runs this case, else None.

    The fused CPU engine: real TV batches, either TV. The Triton engine:
    isotropic TV, real or complex. Neither computes step gradients.
    """
    if any(steps.needs_grad):
        return None
    if backend == "numba" and parts == 1:
        from tvfast.solver import fused

        return fused.RecomputeEngine(start, lam, tv, steps, neumann=boundary == "neumann", data=data)
    if backend == "triton" and tv == "isotropic":
        from tvfast.kernels.recompute import RecomputeEngine

        return RecomputeEngine(start, lam, steps, parts=parts, neumann=boundary == "neumann", data=data)
    return None


def _denoise_engine(z, lam, steps: StepSchedule, tv: str, boundary: str, backend: str):
    """The compiled engine where one runs this case, else the PyTorch one."""
    engine = _compiled_engine(z, lam, steps, tv, boundary, backend)
    return engine if engine is not None else TorchIteration(z, lam, z.dim() - 1, tv, steps, boundary=boundary)


def _tensors(*values) -> list[torch.Tensor]:
    return [v for v in values if isinstance(v, torch.Tensor)]


def _take_saved(ctx):
    """The engine and checkpoints of the forward, once: the backward consumes them (the checkpoints are released
    segment by segment). Reading ``saved_tensors`` lets autograd check that no input was modified in place since
    the forward, which the engines read without a copy."""
    _ = ctx.saved_tensors
    if ctx.saved is None:
        raise RuntimeError("tvfast.pdhg: the recompute backward (isotropic TV, tensor steps) runs once per forward; "
                           "backward through the same graph twice (retain_graph=True) is not supported")
    saved, ctx.saved = ctx.saved, None
    return saved


class _Denoise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, lam, tau, sigma, theta, config):
        n_iter, tv, boundary, backend = config
        steps = StepSchedule(tau, sigma, theta, n_iter)
        engine = _denoise_engine(z, lam, steps, tv, boundary, backend)
        checkpoints, segment = run_forward(engine, n_iter, keep=True)
        ctx.save_for_backward(*_tensors(z, lam, tau, sigma, theta))
        ctx.saved = (engine, checkpoints, segment, n_iter, tuple(lam.shape), lam.dtype, steps)
        return engine.result().clone()  # the engine's state is recomputed in place in the backward

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_x):
        engine, checkpoints, segment, n_iter, lam_shape, lam_dtype, steps = _take_saved(ctx)
        g_start, g_data, g_lam, g_steps = run_backward(engine, checkpoints, segment, n_iter, grad_x)
        grad_z = (g_start + g_data) if ctx.needs_input_grad[0] else None
        grad_lam = g_lam.sum_to_size(lam_shape).to(lam_dtype) if ctx.needs_input_grad[1] else None
        return (grad_z, grad_lam, *steps.gradients(g_steps), None)


def denoise(z: torch.Tensor, lam: torch.Tensor, n_iter: int, tau, sigma, theta, tv: str, boundary: str,
            backend: str) -> torch.Tensor:
    """x_T for z (B, *S) and Λ (4-D or 5-D, one channel for the ball), differentiable in z, Λ and tensor steps.

    ``boundary``: "periodic", or "neumann" for the ball (the clip's Neumann
    boundary comes as a mask in Λ, docs/method.md §10). ``backend``: "numba"
    takes the fused engine where it can; anything else the PyTorch engine.
    """
    config = (n_iter, tv, boundary, backend)
    tensors = [t for t in (z, lam, tau, sigma, theta) if isinstance(t, torch.Tensor)]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _Denoise.apply(z, lam, tau, sigma, theta, config)
    with torch.no_grad():
        engine = _denoise_engine(z, lam, StepSchedule(tau, sigma, theta, n_iter), tv, boundary, backend)
        run_forward(engine, n_iter, keep=False)
        return engine.result()


class _NormalOperator:
    """AᴴA on the real TV batch of a reconstruction, and Aᴴy in that batch (docs/method.md §10)."""

    def __init__(self, problem, adjoint_y: torch.Tensor):
        self.problem = problem
        self.adjoint_y = problem.to_tv(adjoint_y.detach().to(problem.x_dtype))

    def normal(self, v: torch.Tensor) -> torch.Tensor:
        problem = self.problem
        return problem.to_tv(problem.operator.gram(problem.from_tv(v)))


class DataTerm:
    """The data term of a forward operator for the compiled engines, in PyTorch (docs/method.md §10, §12).

    Forward: P_{k+1} = (P_k + σ(AᴴA x̄_k − Aᴴy))/(1+σ), the image-space dual.
    Adjoint: from a = gx + (1+θ)gx̄, gP' = gP − τa, ∂/∂(Aᴴy) −= σ/(1+σ)·gP',
    gP ← gP'/(1+σ); returns σ/(1+σ)·AᴴA gP', x̄'s share. Tensors are real TV
    batches; each step makes new ones, so a checkpoint is a reference.
    """

    def __init__(self, normal: _NormalOperator):
        self.normal = normal

    def start(self):
        self.P = torch.zeros_like(self.normal.adjoint_y)

    def save(self):
        return self.P

    def load(self, P):
        self.P = P

    def forward(self, x_bar: torch.Tensor, sigma: float) -> torch.Tensor:
        self.P = (self.P + sigma * (self.normal.normal(x_bar) - self.normal.adjoint_y)) / (1.0 + sigma)
        return self.P

    def adjoint_start(self):
        self.gP = torch.zeros_like(self.normal.adjoint_y)
        self.g_adjoint_y = torch.zeros_like(self.gP)

    def adjoint(self, a: torch.Tensor, tau: float, sigma: float) -> torch.Tensor:
        gP = self.gP - tau * a
        ratio = sigma / (1.0 + sigma)
        self.g_adjoint_y = self.g_adjoint_y - ratio * gP
        self.gP = gP / (1.0 + sigma)
        return ratio * self.normal.normal(gP)


def _reconstruction_engine(lam, x0, problem, steps: StepSchedule, tv: str, boundary: str, adjoint_y):
    normal = _NormalOperator(problem, adjoint_y)
    start = normal.adjoint_y if x0 is None else problem.to_tv(x0.detach().to(problem.x_dtype))
    lam_engine = (problem.lam_tv(lam) if tv == "anisotropic" else problem.lam_frame(lam)).detach()
    parts = 2 if problem.is_complex else 1
    engine = _compiled_engine(start, lam_engine, steps, tv, boundary, problem.backend, parts, DataTerm(normal))
    if engine is not None:
        return engine
    return TorchIteration(start, lam_engine, len(problem.x_shape) - 2, tv, steps, boundary=boundary, parts=parts,
                          data=normal)


class _Reconstruct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, lam, x0, tau, sigma, theta, config):
        problem, tv, boundary, adjoint_y = config
        steps = StepSchedule(tau, sigma, theta, problem.n_iter)
        if adjoint_y is None:
            adjoint_y = problem.operator.adjoint(y.detach())
        engine = _reconstruction_engine(lam, x0, problem, steps, tv, boundary, adjoint_y)
        checkpoints, segment = run_forward(engine, problem.n_iter, keep=True)
        ctx.save_for_backward(*_tensors(y, lam, x0, tau, sigma, theta))
        ctx.saved = (engine, checkpoints, segment, problem, tv, tuple(lam.shape), lam.dtype, y.shape, y.dtype,
                     x0 is None, steps)
        # a copy: the engine's state is recomputed in place in the backward
        return problem.from_tv(engine.result()).clone(memory_format=torch.contiguous_format)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_x):
        engine, checkpoints, segment, problem, tv, lam_shape, lam_dtype, y_shape, y_dtype, from_data, steps = (
            _take_saved(ctx))
        need_y, need_lam, need_x0 = ctx.needs_input_grad[:3]
        g_start, g_adjoint_y, g_lam, g_steps = run_backward(engine, checkpoints, segment, problem.n_iter,
                                                            problem.to_tv(grad_x))
        g_start = problem.from_tv(g_start)
        grad_y = None
        if need_y:  # Aᴴy enters the data step, and is the start when x0 is None: A of their gradients
            image = problem.from_tv(g_adjoint_y)
            if from_data:
                image = image + g_start
            grad_y = problem.operator(image).to(y_dtype).reshape(y_shape)
        grad_lam = None
        if need_lam:
            grad_lam = (problem.lam_grad(g_lam, lam_shape) if tv == "anisotropic"
                        else problem.lam_grad_frame(g_lam, lam_shape)).to(lam_dtype)
        return (grad_y, grad_lam, g_start if need_x0 else None, *steps.gradients(g_steps), None)


def reconstruct(y, lam, x0, problem, tau, sigma, theta, tv: str, boundary: str, adjoint_y=None) -> torch.Tensor:
    """x_T of docs/method.md §10, §12 for the data y, the real Λ and the start x0 (None: Aᴴy), differentiable in
    y, Λ, x0 and tensor steps. The operator runs in PyTorch; the TV part in the engine of the problem's backend
    (:func:`_compiled_engine`) where one runs the case, else in the PyTorch engine."""
    config = (problem, tv, boundary, adjoint_y)
    tensors = [t for t in (y, lam, x0, tau, sigma, theta) if isinstance(t, torch.Tensor)]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _Reconstruct.apply(y, lam, x0, tau, sigma, theta, config)
    with torch.no_grad():
        if adjoint_y is None:
            adjoint_y = problem.operator.adjoint(y)
        engine = _reconstruction_engine(lam, x0, problem, StepSchedule(tau, sigma, theta, problem.n_iter), tv,
                                        boundary, adjoint_y)
        run_forward(engine, problem.n_iter, keep=False)
        return problem.from_tv(engine.result()).clone(memory_format=torch.contiguous_format)  # never x0 itself
