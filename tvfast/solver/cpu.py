"""PDHG with the mask-based backward, written in PyTorch ops (the CPU path).

The same algorithm as the Triton kernels (docs/method.md §3–§4), one function per step:

* :func:`pdhg_step_fwd` — one forward iteration, optionally emitting the clip
  states (:mod:`tvfast.solver.clip_states`);
* :func:`pdhg_step_bwd` — one iteration of the adjoint recursion of docs/method.md §4.

Each step reads its state and writes the new state into preallocated buffers
(``copy_``), so under :func:`torch.compile` (Inductor) a step is a few fused,
vectorised C++ loops over the pixels and nothing is allocated per iteration
but Inductor's scratch. Compilation is used for large enough problems and
falls back to eager execution when it is unavailable or disabled with
``TVFAST_COMPILE=0``.

Layout. Vertical neighbours (rows i±1, wrapped) are cheap for Inductor: the
wrap happens in the outer loop. A horizontal wrap inside the vectorised inner
loop would become a scalar gather, so every array that is read at a
horizontal neighbour is stored *padded* as (B, H, W+2) with a periodic halo:
column 0 holds column W−1 and column W+1 holds column 0. Those arrays are x̄
and q₁ (forward), gx, gx̄, gq₁ and the clip states (backward), and Λ₁ when it
varies along W. Each step writes the interior (through
(B, H, W) views) and the caller refreshes the two halo columns eagerly through views built
once per solve.

Clip states cross the compiled steps as float values s₀ + 4·s₁ (Inductor
vectorises float selects, not uint8 logic); the caller packs them into the
uint8 mask (:mod:`tvfast.solver.clip_states`) between steps and unpacks them before
each backward step.

Shapes: images (B, H, W); ``lam0``/``lam1`` are the vertical/horizontal
strength as 3-D tensors broadcastable to (B, H, W).
"""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from tvfast.solver.clip_states import HIGH, INSIDE, LOW, pack_nibbles, unpack_nibbles

__all__ = ["pdhg_step_fwd", "pdhg_step_bwd", "solve_forward", "solve_backward", "use_compile",
           "forget_compile_failures", "run_steps", "padded", "halo_views"]

# Below this much work (pixels × iterations) compiling does not pay for itself.
_COMPILE_MIN_WORK = 64 * 64 * 64


def _interior(t: torch.Tensor, width: int) -> torch.Tensor:
    return t[..., 1 : width + 1]


def _left(t: torch.Tensor, width: int) -> torch.Tensor:
    """t[..., j−1] of a padded array, for j = 0 … W−1."""
    return t[..., 0:width]


def _right(t: torch.Tensor, width: int) -> torch.Tensor:
    """t[..., j+1] of a padded array, for j = 0 … W−1."""
    return t[..., 2 : width + 2]


def halo_views(t: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """(destination, source) column views of a padded array's halo, built once
    per solve: making views costs about as much as copying 2·H floats."""
    width = t.shape[-1] - 2
    return (t[..., 0], t[..., width]), (t[..., width + 1], t[..., 1])


def padded(t: torch.Tensor) -> torch.Tensor:
    """(…, W) → (…, W+2) with the periodic halo."""
    return torch.cat((t[..., -1:], t, t[..., :1]), dim=-1)


def _clip(u, lam):
    return torch.minimum(torch.maximum(u, -lam), lam)


def _clip_state(u, lam):
    """INSIDE/HIGH/LOW (tie rule of :mod:`tvfast.solver.clip_states`) as *float* values:
    Inductor vectorises float selects well and uint8 logic badly (4× slower)."""
    return torch.where(u >= lam, float(HIGH), torch.where(u <= -lam, float(LOW), float(INSIDE)))


def pdhg_step_fwd(x, x_bar, p, q0, q1, z, lam0, lam1, x_bar_out, q0_out, q1_out, state_out, tau: float, sigma: float, theta: float):
    """One PDHG iteration (docs/method.md §3), in place.

    Reads x, p, z, q₀ (B, H, W), the padded x̄ and q₁ (B, H, W+2), Λ₀ and Λ₁
    (Λ₁ padded when it varies along W). Writes x, p in place, the new x̄, q₀,
    q₁ into the ``*_out`` double buffers (neighbours read them; for padded
    arrays these are the (B, H, W) *interior views*, whose halo the caller
    refreshes — a slice write inside the graph would make Inductor rewrite the
    whole padded buffer with per-element masks), and the clip
    states s₀ + 4·s₁ into ``state_out`` (B, H, W), as floats, unless None
    (the caller packs them into the uint8 mask).
    """
    width = x.shape[-1]
    xb = _interior(x_bar, width)
    lam1_here = _interior(lam1, width) if lam1.shape[-1] == width + 2 else lam1
    p_new = (p + sigma * (xb - z)) / (1.0 + sigma)
    u0 = q0 + sigma * (torch.roll(xb, -1, -2) - xb)
    u1 = _interior(q1, width) + sigma * (_right(x_bar, width) - xb)
    q0_new = _clip(u0, lam0)
    q1_new = _clip(u1, lam1_here)
    u0_up = torch.roll(q0, 1, -2) + sigma * (xb - torch.roll(xb, 1, -2))
    u1_left = _left(q1, width) + sigma * (xb - _left(x_bar, width))
    lam0_up = torch.roll(lam0, 1, -2) if lam0.shape[-2] > 1 else lam0
    lam1_left = _left(lam1, width) if lam1.shape[-1] == width + 2 else lam1
    # neighbours' q_{k+1} are recomputed, so ∇ᵀq_{k+1} needs no second pass
    grad_T_q = (_clip(u0_up, lam0_up) - q0_new) + (_clip(u1_left, lam1_left) - q1_new)
    x_new = x - tau * p_new - tau * grad_T_q
    q0_out.copy_(q0_new)
    q1_out.copy_(q1_new)
    x_bar_out.copy_(x_new + theta * (x_new - x))
    if state_out is not None:
        state_out.copy_(_clip_state(u0, lam0) + 4.0 * _clip_state(u1, lam1_here))
    x.copy_(x_new)
    p.copy_(p_new)


def pdhg_step_bwd(gx, gx_bar, gp, gq0, gq1, gz, glam, state, gx_out, gx_bar_out, gq0_out, gq1_out, tau: float, sigma: float, theta: float):
    """One iteration k = T−1 … 0 of the adjoint recursion (docs/method.md §4).

    On entry gx, gx̄ (padded), gp, gq₀, gq₁ (padded) hold the adjoints of
    x_{k+1}, x̄_{k+1}, p_{k+1}, q_{k+1}; on exit those of iteration k are in
    ``gp`` (in place) and the ``*_out`` buffers (interior views of the padded
    ones; the caller refreshes their halos). ``state`` (B, H, W+2), padded, holds
    iteration k's clip states s₀ + 4·s₁ as floats. ``gz`` accumulates
    −σ/(1+σ)·gp''; ``glam`` (B, C, H, W), C = 1 or 2, accumulates S∘gq''
    (summed over directions when C = 1), or is None.
    """
    width = gp.shape[-1]
    c = 1.0 + theta
    a_pad = gx + c * gx_bar  # padded: a = gx' + (1+θ)gx̄'
    a = _interior(a_pad, width)
    gp_new = gp - tau * a
    gq0_new = gq0 - tau * (torch.roll(a, -1, -2) - a)
    gq0_up = torch.roll(gq0, 1, -2) - tau * (a - torch.roll(a, 1, -2))
    gq1_new = _interior(gq1, width) - tau * (_right(a_pad, width) - a)
    gq1_left = _left(gq1, width) - tau * (a - _left(a_pad, width))
    s1_pad = torch.floor(state * 0.25)
    s1 = _interior(s1_pad, width)
    s0 = _interior(state, width) - 4.0 * s1
    s0_up = torch.roll(s0, 1, -2)
    s1_left = _left(s1_pad, width)
    gu0 = torch.where(s0 == 0, gq0_new, 0.0)
    gu1 = torch.where(s1 == 0, gq1_new, 0.0)
    grad_T_gu = (torch.where(s0_up == 0, gq0_up, 0.0) - gu0) + (torch.where(s1_left == 0, gq1_left, 0.0) - gu1)
    if glam is not None:
        d0 = torch.where(s0 == HIGH, gq0_new, torch.where(s0 == LOW, -gq0_new, 0.0))
        d1 = torch.where(s1 == HIGH, gq1_new, torch.where(s1 == LOW, -gq1_new, 0.0))
        if glam.shape[1] == 1:
            glam[:, 0].add_(d0 + d1)
        else:
            glam[:, 0].add_(d0)
            glam[:, 1].add_(d1)
    k = sigma / (1.0 + sigma)
    gx_bar_out.copy_(sigma * grad_T_gu + k * gp_new)
    gx_out.copy_(a - theta * _interior(gx_bar, width))
    gq0_out.copy_(gu0)
    gq1_out.copy_(gu1)
    gz.sub_(k * gp_new)
    gp.copy_(gp_new / (1.0 + sigma))


_EAGER = {"fwd": pdhg_step_fwd, "bwd": pdhg_step_bwd}
# The torch.compile wrappers, made once per process (Dynamo caches the graphs per shape inside them).
_compiled: dict[str, object] = {}


def use_compile(work: int) -> bool:
    """Whether to run the steps through torch.compile for this much work.

    ``TVFAST_COMPILE=1`` forces it, ``TVFAST_COMPILE=0`` disables it; by
    default it is used when pixels × iterations ≥ 64³.
    """
    flag = os.environ.get("TVFAST_COMPILE", "").strip().lower()
    if flag in ("0", "false", "no"):
        return False
    if flag in ("1", "true", "yes"):
        return True
    return work >= _COMPILE_MIN_WORK


def _step_function(name: str, eager, compile_it: bool):
    """The compiled wrapper of step ``eager`` (made once per process and ``name``), or ``eager`` itself."""
    if not compile_it:
        return eager
    if name not in _compiled:
        try:
            _compiled[name] = torch.compile(eager, dynamic=False, fullgraph=True)
        except Exception as exc:  # torch.compile unavailable on this platform: this call runs eagerly
            warnings.warn(f"tvfast: torch.compile unavailable ({exc}); running eagerly", stacklevel=3)
            return eager
    return _compiled[name]


# Every problem shape and Λ layout is its own static-shape graph (dynamic-shape
# graphs run about 1.7× slower here); Dynamo's default of 8 graphs per function
# would send a folder of differently sized images to eager mode after the 8th.
_MAX_GRAPHS = 128


def _graph_limit():
    """A context allowing ``_MAX_GRAPHS`` compiled shapes per step function while the solver runs.

    Dynamo keeps its recompile limit in a process-wide config, with no
    per-function setting, so the limit is raised (never lowered) with
    ``config.patch`` for the duration of the solve and restored on exit, even
    on an error: no state outlives the call. While a solve runs, other code
    compiling in another thread sees the raised limit; that is the only
    effect outside the call.
    """
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the latter before torch 2.7
        if hasattr(config, name):
            return config.patch(**{name: max(getattr(config, name), _MAX_GRAPHS)})
    return contextlib.nullcontext()


# Graphs Inductor failed to build, as (step name, argument signature): see _run_steps.
_failed_graphs: set[tuple] = set()


def forget_compile_failures() -> None:
    """Let every graph that failed to compile be tried again (after installing a compiler, say)."""
    _failed_graphs.clear()


def _signature(name: str, args) -> tuple:
    return (name, *((tuple(a.shape), a.dtype, a.stride()) if isinstance(a, torch.Tensor) else type(a) for a in args))


def _recompile_limit_hit(exc: Exception) -> bool:
    limit_error = getattr(torch._dynamo.exc, "FailOnRecompileLimitHit", None)
    return limit_error is not None and isinstance(exc, limit_error)


def run_steps(name: str, eager, n_iter: int, compile_it: bool, step_args, after_step=None):
    """Call the step function ``eager`` (compiled under ``name`` when ``compile_it``) for k = 0 … n_iter−1,
    with ``step_args(k)`` as its arguments and ``after_step(k)`` after each call. Shared by the 2-D and
    3-D CPU paths.

    If compiling fails this call continues eagerly, with a warning. When the
    graph limit was reached nothing is remembered. When Inductor could not
    build the step (no C++ compiler, an unsupported layout, …) the failure is
    remembered for that one graph — the step, the shapes, dtypes and strides
    of its arguments — so later calls of the same shape run eagerly at once
    instead of paying for the failed compilation again; other shapes still
    compile. :func:`forget_compile_failures` clears the record.
    """
    if n_iter == 0:
        return
    args = step_args(0)  # step_args may do work (the backward unpacks a mask): one call per iteration
    signature = _signature(name, args) if compile_it else None
    step = _step_function(name, eager, compile_it and signature not in _failed_graphs)
    with _graph_limit():
        for k in range(n_iter):
            if k > 0:
                args = step_args(k)
            try:
                step(*args)
            except Exception as exc:
                if step is eager or k > 0:
                    raise
                if _recompile_limit_hit(exc):
                    warnings.warn(f"tvfast: {_MAX_GRAPHS} compiled shapes reached; running this call eagerly",
                                  stacklevel=3)
                else:
                    warnings.warn(f"tvfast: torch.compile failed ({type(exc).__name__}: {exc}); "
                                  "running this shape eagerly", stacklevel=3)
                    _failed_graphs.add(signature)
                step = eager
                step(*args)  # a compile failure happens before the step touches its buffers
            if after_step is not None:
                after_step(k)


def _lambda_parts(lam: torch.Tensor, width: int):
    """Λ (Bl, Cl, Hl, Wl) → (Λ₀, Λ₁) 3-D, Λ₁ padded along W when it varies along W."""
    lam0 = lam[:, 0]
    lam1 = lam[:, -1]
    if lam1.shape[-1] == width and width > 1:
        lam1 = padded(lam1)
    return lam0.contiguous(), lam1.contiguous()


def solve_forward(z, lam, n_iter: int, tau: float, sigma: float, theta: float, need_mask: bool):
    """Run ``n_iter`` iterations on z (B, H, W). Returns (x_T, mask or None).

    ``lam`` is 4-D, broadcastable to (B, 2, H, W). The mask is
    (T, B, H, ⌈W/2⌉) uint8 when ``need_mask``.
    """
    batch, height, width = z.shape
    z, lam = z.detach(), lam.detach()  # the steps never record autograd (one compiled graph)
    lam0, lam1 = _lambda_parts(lam, width)
    x = z.clone()
    p = torch.zeros_like(z)
    x_bar = (padded(z), z.new_empty(batch, height, width + 2))
    q0 = (torch.zeros_like(z), torch.empty_like(z))
    q1 = (z.new_zeros(batch, height, width + 2), z.new_empty(batch, height, width + 2))
    mask = state = nibble = None
    if need_mask:
        mask = torch.empty(n_iter, batch, height, (width + 1) // 2, dtype=torch.uint8, device=z.device)
        state = torch.empty_like(z)
        nibble = torch.empty(batch, height, width, dtype=torch.uint8, device=z.device)
    compile_it = use_compile(batch * height * width * n_iter)
    x_bar_in = tuple(_interior(t, width) for t in x_bar)
    q1_in = tuple(_interior(t, width) for t in q1)
    halos = tuple(halo_views(x_bar[d]) + halo_views(q1[d]) for d in (0, 1))

    def step_args(k):
        s, d = k % 2, (k + 1) % 2
        return (x, x_bar[s], p, q0[s], q1[s], z, lam0, lam1, x_bar_in[d], q0[d], q1_in[d], state, tau, sigma, theta)

    def after_step(k):
        for dst, src in halos[(k + 1) % 2]:
            dst.copy_(src)
        if mask is not None:
            nibble.copy_(state)
            pack_nibbles(nibble, out=mask[k])

    with torch.no_grad():
        run_steps("fwd", _EAGER["fwd"], n_iter, compile_it, step_args, after_step)
    return x, mask


def solve_backward(grad_x, mask, lam_channels: int, need_glam: bool, tau: float, sigma: float, theta: float):
    """Adjoint pass over the stored masks. Returns (∂ℓ/∂z (B,H,W), ∂ℓ/∂Λ (B,C,H,W) or None)."""
    n_iter, batch, height, _ = mask.shape
    width = grad_x.shape[-1]
    new_padded = lambda: grad_x.new_zeros(batch, height, width + 2)  # noqa: E731
    gx = (padded(grad_x), new_padded())
    gx_bar = (new_padded(), new_padded())
    gq0 = (torch.zeros_like(grad_x), torch.zeros_like(grad_x))
    gq1 = (new_padded(), new_padded())
    gp = torch.zeros_like(grad_x)
    gz = torch.zeros_like(grad_x)
    glam = grad_x.new_zeros(batch, lam_channels, height, width) if need_glam else None
    nibble = torch.empty(batch, height, width, dtype=torch.uint8, device=grad_x.device)
    state = new_padded()
    compile_it = use_compile(batch * height * width * n_iter)
    gx_in, gx_bar_in, gq1_in = (tuple(_interior(t, width) for t in pair) for pair in (gx, gx_bar, gq1))
    state_in = _interior(state, width)
    halos = tuple(halo_views(gx[d]) + halo_views(gx_bar[d]) + halo_views(gq1[d]) for d in (0, 1))
    state_halo = halo_views(state)

    def step_args(j):
        state_in.copy_(unpack_nibbles(mask[n_iter - 1 - j], width, out=nibble))
        for dst, src in state_halo:
            dst.copy_(src)
        s, d = j % 2, (j + 1) % 2
        return (gx[s], gx_bar[s], gp, gq0[s], gq1[s], gz, glam, state,
                gx_in[d], gx_bar_in[d], gq0[d], gq1_in[d], tau, sigma, theta)

    def after_step(j):
        for dst, src in halos[(j + 1) % 2]:
            dst.copy_(src)

    with torch.no_grad():
        run_steps("bwd", _EAGER["bwd"], n_iter, compile_it, step_args, after_step)
        last = n_iter % 2
        gz.add_(_interior(gx[last], width)).add_(_interior(gx_bar[last], width))
    return gz, glam
