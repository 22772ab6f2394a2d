"""PDHG with the mask-based backward, written in PyTorch ops (the CPU path).

The same algorithm as the Triton kernels (SPEC §3–§4), one function per step:

* :func:`pdhg_step_fwd` — one forward iteration, optionally emitting the packed
  clip mask (:mod:`tvfast.clip_mask`);
* :func:`pdhg_step_bwd` — one iteration of the adjoint recursion of SPEC §4.

Each step reads its state and writes the new state into preallocated buffers
(``copy_``), so under :func:`torch.compile` (Inductor) a step is one or two
fused C++ loops over the pixels with no per-iteration allocation of state.
Compilation is used for large enough problems and falls back to eager
execution when it is unavailable (no compiler, unsupported platform) or
disabled with ``TVFAST_COMPILE=0``.

Shapes: images are (B, H, W); the dual variable and its adjoint (B, 2, H, W);
``lam`` is a 4-D tensor broadcastable to (B, 2, H, W) whose channel dim is
1 (shared by both directions) or 2.
"""

from __future__ import annotations

import os
import warnings

import torch

from tvfast.clip_mask import HIGH, LOW, clip_state, pack_nibbles, packed_width, unpack_nibbles

__all__ = ["pdhg_step_fwd", "pdhg_step_bwd", "solve_forward", "solve_backward", "use_compile"]

# Below this much work (pixels × iterations) compiling does not pay for itself.
_COMPILE_MIN_WORK = 64 * 64 * 64


def pdhg_step_fwd(x, x_bar, p, q, z, lam, x_bar_out, q_out, mask_out, tau: float, sigma: float, theta: float):
    """One PDHG iteration (SPEC §3), in place.

    Reads x, x̄ (``x_bar``), p, q, z; writes x, p in place, the new x̄ into
    ``x_bar_out`` and the new q into ``q_out`` (double buffers, since
    neighbours read x̄ and q), and the packed clip states into ``mask_out``
    (B, H, ⌈W/2⌉) unless it is None.
    """
    p_new = (p + sigma * (x_bar - z)) / (1.0 + sigma)
    u0 = q[:, 0] + sigma * (torch.roll(x_bar, -1, -2) - x_bar)
    u1 = q[:, 1] + sigma * (torch.roll(x_bar, -1, -1) - x_bar)
    l0 = lam[:, 0]
    l1 = lam[:, -1]
    q0 = torch.minimum(torch.maximum(u0, -l0), l0)
    q1 = torch.minimum(torch.maximum(u1, -l1), l1)
    grad_T_q = (torch.roll(q0, 1, -2) - q0) + (torch.roll(q1, 1, -1) - q1)
    x_new = x - tau * p_new - tau * grad_T_q
    x_bar_out.copy_(x_new + theta * (x_new - x))
    q_out[:, 0].copy_(q0)
    q_out[:, 1].copy_(q1)
    if mask_out is not None:
        mask_out.copy_(pack_nibbles(clip_state(u0, l0) | (clip_state(u1, l1) << 2)))
    x.copy_(x_new)
    p.copy_(p_new)


def pdhg_step_bwd(gx, gx_bar, gp, gq, gz, glam, mask, gx_bar_out, gq_out, tau: float, sigma: float, theta: float):
    """One iteration k = T−1 … 0 of the adjoint recursion (SPEC §4), in place.

    On entry gx, gx̄, gp, gq hold the adjoints of x_{k+1}, x̄_{k+1}, p_{k+1},
    q_{k+1}; on exit those of iteration k (gx̄ and gq into the ``*_out``
    buffers). ``gz`` accumulates −σ/(1+σ)·gp'; ``glam`` (B, C, H, W) with
    C = 1 or 2 accumulates S∘gq' (summed over directions when C = 1), or is
    None when Λ needs no gradient. ``mask`` is iteration k's packed states.
    """
    width = gx.shape[-1]
    a = gx + (1.0 + theta) * gx_bar  # gx' after the x̄ contribution
    gp_new = gp - tau * a
    gq0 = gq[:, 0] - tau * (torch.roll(a, -1, -2) - a)
    gq1 = gq[:, 1] - tau * (torch.roll(a, -1, -1) - a)
    nibble = unpack_nibbles(mask, width)
    s0 = nibble & 3
    s1 = (nibble >> 2) & 3
    gu0 = torch.where(s0 == 0, gq0, 0.0)
    gu1 = torch.where(s1 == 0, gq1, 0.0)
    if glam is not None:
        d0 = torch.where(s0 == HIGH, gq0, 0.0) - torch.where(s0 == LOW, gq0, 0.0)
        d1 = torch.where(s1 == HIGH, gq1, 0.0) - torch.where(s1 == LOW, gq1, 0.0)
        if glam.shape[1] == 1:
            glam[:, 0].add_(d0 + d1)
        else:
            glam[:, 0].add_(d0)
            glam[:, 1].add_(d1)
    grad_T_gu = (torch.roll(gu0, 1, -2) - gu0) + (torch.roll(gu1, 1, -1) - gu1)
    c = sigma / (1.0 + sigma)
    gx_bar_out.copy_(sigma * grad_T_gu + c * gp_new)
    gq_out[:, 0].copy_(gu0)
    gq_out[:, 1].copy_(gu1)
    gz.sub_(c * gp_new)
    gx.copy_(a - theta * gx_bar)
    gp.copy_(gp_new / (1.0 + sigma))


_compiled: dict[str, object] = {}


def use_compile(work: int) -> bool:
    """Whether to run the steps through torch.compile for this much work.

    ``TVFAST_COMPILE=1`` forces it, ``TVFAST_COMPILE=0`` disables it; by
    default it is used when pixels × iterations ≥ 64³.
    """
    flag = os.environ.get("TVFAST_COMPILE", "").strip()
    if flag in ("0", "false", "False"):
        return False
    if flag in ("1", "true", "True"):
        return True
    return work >= _COMPILE_MIN_WORK


def _step_function(name: str, compile_it: bool):
    eager = {"fwd": pdhg_step_fwd, "bwd": pdhg_step_bwd}[name]
    if not compile_it:
        return eager
    if name not in _compiled:
        try:
            _compiled[name] = torch.compile(eager, dynamic=False, fullgraph=True)
        except Exception as exc:  # torch.compile unavailable on this platform
            warnings.warn(f"tvfast: torch.compile unavailable ({exc}); running eagerly", stacklevel=3)
            _compiled[name] = eager
    return _compiled[name]


def _run_steps(name: str, n_iter: int, compile_it: bool, args_for_step):
    """Call the step ``n_iter`` times; fall back to eager if compilation fails."""
    step = _step_function(name, compile_it)
    k = 0
    try:
        while k < n_iter:
            step(*args_for_step(k))
            k += 1
    except Exception as exc:
        if step is {"fwd": pdhg_step_fwd, "bwd": pdhg_step_bwd}[name] or k > 0:
            raise
        warnings.warn(f"tvfast: torch.compile failed ({type(exc).__name__}: {exc}); running eagerly", stacklevel=3)
        _compiled[name] = step = {"fwd": pdhg_step_fwd, "bwd": pdhg_step_bwd}[name]
        for k in range(k, n_iter):
            step(*args_for_step(k))


def solve_forward(z, lam, n_iter: int, tau: float, sigma: float, theta: float, need_mask: bool):
    """Run ``n_iter`` iterations on z (B, H, W). Returns (x_T, mask or None).

    The mask is (T, B, H, ⌈W/2⌉) uint8 when ``need_mask``.
    """
    batch, height, width = z.shape
    x = z.clone()
    p = torch.zeros_like(z)
    x_bar = (z.clone(), torch.empty_like(z))
    q = (z.new_zeros(batch, 2, height, width), torch.empty(batch, 2, height, width, dtype=z.dtype, device=z.device))
    mask = None
    if need_mask:
        mask = torch.empty(n_iter, batch, height, packed_width(width), dtype=torch.uint8, device=z.device)
    compile_it = use_compile(batch * height * width * n_iter)

    def args(k):
        src, dst = k % 2, (k + 1) % 2
        return (x, x_bar[src], p, q[src], z, lam, x_bar[dst], q[dst], None if mask is None else mask[k], tau, sigma, theta)

    with torch.no_grad():
        _run_steps("fwd", n_iter, compile_it, args)
    return x, mask


def solve_backward(grad_x, mask, lam_channels: int, need_glam: bool, tau: float, sigma: float, theta: float):
    """Adjoint pass. Returns (∂ℓ/∂z (B, H, W), ∂ℓ/∂Λ (B, C, H, W) or None)."""
    n_iter, batch, height, _ = mask.shape
    width = grad_x.shape[-1]
    gx = grad_x.clone()
    gp = torch.zeros_like(gx)
    gz = torch.zeros_like(gx)
    gx_bar = (torch.zeros_like(gx), torch.empty_like(gx))
    gq = (gx.new_zeros(batch, 2, height, width), torch.empty(batch, 2, height, width, dtype=gx.dtype, device=gx.device))
    glam = gx.new_zeros(batch, lam_channels, height, width) if need_glam else None
    compile_it = use_compile(batch * height * width * n_iter)

    def args(j):
        k = n_iter - 1 - j
        src, dst = j % 2, (j + 1) % 2
        return (gx, gx_bar[src], gp, gq[src], gz, glam, mask[k], gx_bar[dst], gq[dst], tau, sigma, theta)

    with torch.no_grad():
        _run_steps("bwd", n_iter, compile_it, args)
        gz.add_(gx).add_(gx_bar[n_iter % 2])
    return gz, glam
