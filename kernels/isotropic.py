"""Isotropic TV in Triton: the dual pass, the primal pass and their adjoints, for images and volumes.

Launched by :mod:`tvfast.kernels.recompute` (the checkpointed recompute
backward of docs/method.md §12). Unlike the clip-state kernels of
:mod:`tvfast.kernels.pdhg2d`, which fuse a whole iteration into one launch by
recomputing the neighbours' clipped duals, an iteration here is two
launches, as on the fused CPU path: the isotropic projection of a
neighbour would need that neighbour's whole dual vector, and so the
diagonal neighbours of x̄.

Forward, iteration k:

* :func:`iso_dual` — every pixel: u_a = q_a + σ(x̄(· + e_a) − x̄) for each
  axis a, |u|² = Σ_{parts, a} u_a², q_a ← u_a·s with s = Λ/|u| where |u| > Λ
  and 1 elsewhere; with ``RECORD`` also u_a into the record. It reads x̄ at
  neighbours and writes only q at its own pixel, so q is updated in place.
* :func:`primal` — every pixel, after :func:`iso_dual`:
  p ← (p + σ(x̄ − z))/(1+σ) (or p = Aᴴp_{k+1} handed in, ``DATA_STEP``),
  ∇ᵀq = Σ_a q_a(· − e_a) − q_a, x' = x − τp − τ∇ᵀq, x̄ ← x' + θ(x' − x). It
  reads q at neighbours and writes x, x̄, p at its own pixel only.

Adjoint, iteration k = T−1 … 0, a = gx + (1+θ)gx̄:

* :func:`iso_adjoint_dual` — g_a = gq_a − τ(a(· + e_a) − a); where |u| > Λ,
  with n = u/|u|: gu = (Λ/|u|)(g − n(n·g)), gΛ += n·g; elsewhere gu = g.
  Reads gx, gx̄ at neighbours, writes gq and gΛ at its own pixel.
* :func:`adjoint_primal` — gp'' = gp − τa, gz −= σ/(1+σ)·gp'',
  gx̄ ← σ∇ᵀgu + σ/(1+σ)·gp'' (or + the handed-in σ/(1+σ)·AᴴA gP', ``DATA_STEP``),
  gp ← gp''/(1+σ), gx ← a − θgx̄'. Reads gq at neighbours, writes the rest at
  its own pixel.

Layout. The TV batch is (N, D, H, W), N = PARTS·B (PARTS = 2: the real and
imaginary parts of B complex images, real parts first; their components
enter one norm), D = 1 for images (N_AXES = 2: axes H, W; N_AXES = 3: D, H,
W). Duals are (N_AXES, N, D, H, W): plane a holds the differences along axis
a, so for images plane 0 is H (vertical) and plane 1 is W. Λ is read
through strides (0 where broadcast) at the image batch index b < B; gΛ is
(B, 1, D, H, W). Programs take BLOCK consecutive elements of the flattened
batch; ``mask`` switches off the lanes past its end (the interpreter does no
bounds checking), and neighbour indices are wrapped before any address is
formed: periodic, or with ``NEUMANN`` the last index is its own forward
neighbour, so the wrapping difference is 0 and q_a, gq_a stay 0 there.

Sizes of the batch (``total``, ``plane``) come from the host, so that they are
int64 when they exceed int32 (products of int32 arguments would wrap).
Square roots and divisions are correctly rounded (``tl.sqrt_rn``,
``tl.div_rn`` in float32), as on the CPU paths. Step sizes come as a (4,) tensor τ, σ, θ, σ/(1+σ) in the data's dtype, as
for the clip-state kernels (:func:`tvfast.kernels.common.load_step_sizes`).
"""

from __future__ import annotations

import triton
import triton.language as tl

from tvfast.kernels.common import load_step_sizes

__all__ = ["iso_dual", "primal", "iso_adjoint_dual", "adjoint_primal"]


@triton.jit
def _sqrt(x):
    """√x correctly rounded: on NVIDIA GPUs float32 ``tl.sqrt`` is an approximation (the CPU paths' is not)."""
    if x.dtype == tl.float32:
        return tl.sqrt_rn(x)
    return tl.sqrt(x)


@triton.jit
def _div(a, b):
    """a / b correctly rounded (float32 ``/`` is approximate on NVIDIA GPUs)."""
    if a.dtype == tl.float32:
        return tl.div_rn(a, b)
    return a / b


@triton.jit
def _coords(idx, D, H, W):
    """(b, d, i, j) of flat indices into a (·, D, H, W) batch."""
    j = idx % W
    rest = idx // W
    i = rest % H
    rest = rest // H
    return rest // D, rest % D, i, j


@triton.jit
def _forward_step_of(k, n, NEUMANN: tl.constexpr):
    """The flat offset from index k to its forward neighbour along an axis of length n (in units of the axis)."""
    if NEUMANN:
        return tl.where(k + 1 < n, 1, 0)
    return tl.where(k + 1 < n, 1, 1 - n)


@triton.jit
def _backward_step_of(k, n):
    """The flat offset to the periodic backward neighbour (∇ᵀ; q is 0 where Neumann drops a difference)."""
    return tl.where(k == 0, n - 1, -1)


@triton.jit
def iso_dual(xb_ptr, q_ptr, lam_ptr, u_ptr, total, plane, D, H, W, lam_sb, lam_sd, lam_sh, lam_sw, params_ptr,
             N_AXES: tl.constexpr, PARTS: tl.constexpr, NEUMANN: tl.constexpr, RECORD: tl.constexpr,
             BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < total  # total: elements of one part (B·D·H·W), plane = PARTS·total: of one axis plane of q
    b, d, i, j = _coords(idx, D, H, W)
    _, sigma, _, _ = load_step_sizes(params_ptr)
    o_w = idx + _forward_step_of(j, W, NEUMANN)
    o_h = idx + _forward_step_of(i, H, NEUMANN) * W
    o_d = idx + _forward_step_of(d, D, NEUMANN) * (H * W)
    lam = tl.load(lam_ptr + b * lam_sb + d * lam_sd + i * lam_sh + j * lam_sw, mask=mask, other=0.0)
    qh_ptr = q_ptr + (N_AXES - 2) * plane
    qw_ptr = q_ptr + (N_AXES - 1) * plane
    norm2 = tl.zeros((BLOCK,), dtype=lam.dtype)
    for c in tl.static_range(PARTS):  # |u|² over the parts and axes
        at = c * total + idx
        xh = tl.load(xb_ptr + at, mask=mask, other=0.0)
        uh = tl.load(qh_ptr + at, mask=mask, other=0.0) + sigma * (
            tl.load(xb_ptr + c * total + o_h, mask=mask, other=0.0) - xh)
        uw = tl.load(qw_ptr + at, mask=mask, other=0.0) + sigma * (
            tl.load(xb_ptr + c * total + o_w, mask=mask, other=0.0) - xh)
        if N_AXES == 3:
            ud = tl.load(q_ptr + at, mask=mask, other=0.0) + sigma * (
                tl.load(xb_ptr + c * total + o_d, mask=mask, other=0.0) - xh)
            norm2 = norm2 + ud * ud
        norm2 = norm2 + uh * uh + uw * uw
    norm = _sqrt(norm2)
    active = norm > lam
    scale = tl.where(active, _div(lam, tl.where(active, norm, 1.0)), 1.0)
    for c in tl.static_range(PARTS):  # the same u again (cached loads), projected
        at = c * total + idx
        xh = tl.load(xb_ptr + at, mask=mask, other=0.0)
        uh = tl.load(qh_ptr + at, mask=mask, other=0.0) + sigma * (
            tl.load(xb_ptr + c * total + o_h, mask=mask, other=0.0) - xh)
        uw = tl.load(qw_ptr + at, mask=mask, other=0.0) + sigma * (
            tl.load(xb_ptr + c * total + o_w, mask=mask, other=0.0) - xh)
        tl.store(qh_ptr + at, uh * scale, mask=mask)
        tl.store(qw_ptr + at, uw * scale, mask=mask)
        if RECORD:
            tl.store(u_ptr + (N_AXES - 2) * plane + at, uh, mask=mask)
            tl.store(u_ptr + (N_AXES - 1) * plane + at, uw, mask=mask)
        if N_AXES == 3:
            ud = tl.load(q_ptr + at, mask=mask, other=0.0) + sigma * (
                tl.load(xb_ptr + c * total + o_d, mask=mask, other=0.0) - xh)
            tl.store(q_ptr + at, ud * scale, mask=mask)
            if RECORD:
                tl.store(u_ptr + at, ud, mask=mask)


@triton.jit
def _grad_t(q_ptr, idx, mask, d, i, j, D, H, W, plane, N_AXES: tl.constexpr):
    """∇ᵀq = Σ_a q_a(· − e_a) − q_a at flat indices ``idx`` (periodic)."""
    qh_ptr = q_ptr + (N_AXES - 2) * plane
    qw_ptr = q_ptr + (N_AXES - 1) * plane
    qh = tl.load(qh_ptr + idx, mask=mask, other=0.0)
    qw = tl.load(qw_ptr + idx, mask=mask, other=0.0)
    out = (tl.load(qh_ptr + idx + _backward_step_of(i, H) * W, mask=mask, other=0.0) - qh) + (
        tl.load(qw_ptr + idx + _backward_step_of(j, W), mask=mask, other=0.0) - qw)
    if N_AXES == 3:
        qd = tl.load(q_ptr + idx, mask=mask, other=0.0)
        out = (tl.load(q_ptr + idx + _backward_step_of(d, D) * (H * W), mask=mask, other=0.0) - qd) + out
    return out


@triton.jit
def primal(x_ptr, xb_ptr, p_ptr, q_ptr, z_ptr, plane, D, H, W, params_ptr, N_AXES: tl.constexpr,
           DATA_STEP: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < plane  # plane: elements of the TV batch (N·D·H·W)
    _, d, i, j = _coords(idx, D, H, W)
    tau, sigma, theta, _ = load_step_sizes(params_ptr)
    grad_t_q = _grad_t(q_ptr, idx, mask, d, i, j, D, H, W, plane, N_AXES)
    p = tl.load(p_ptr + idx, mask=mask, other=0.0)  # with DATA_STEP: Aᴴp_{k+1}, read only
    if not DATA_STEP:
        z = tl.load(z_ptr + idx, mask=mask, other=0.0)
        p = _div(p + sigma * (tl.load(xb_ptr + idx, mask=mask, other=0.0) - z), 1.0 + sigma)
        tl.store(p_ptr + idx, p, mask=mask)
    x = tl.load(x_ptr + idx, mask=mask, other=0.0)
    x_new = x - tau * p - tau * grad_t_q
    tl.store(x_ptr + idx, x_new, mask=mask)
    tl.store(xb_ptr + idx, x_new + theta * (x_new - x), mask=mask)


@triton.jit
def _a(gx_ptr, gxb_ptr, at, one_theta, mask):
    return tl.load(gx_ptr + at, mask=mask, other=0.0) + one_theta * tl.load(gxb_ptr + at, mask=mask, other=0.0)


@triton.jit
def iso_adjoint_dual(gx_ptr, gxb_ptr, gq_ptr, glam_ptr, u_ptr, lam_ptr, total, plane, D, H, W, lam_sb, lam_sd,
                     lam_sh, lam_sw, params_ptr, N_AXES: tl.constexpr, PARTS: tl.constexpr, NEUMANN: tl.constexpr,
                     BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < total
    b, d, i, j = _coords(idx, D, H, W)
    tau, _, theta, _ = load_step_sizes(params_ptr)
    one_theta = 1.0 + theta
    o_w = idx + _forward_step_of(j, W, NEUMANN)
    o_h = idx + _forward_step_of(i, H, NEUMANN) * W
    o_d = idx + _forward_step_of(d, D, NEUMANN) * (H * W)
    lam = tl.load(lam_ptr + b * lam_sb + d * lam_sd + i * lam_sh + j * lam_sw, mask=mask, other=0.0)
    gqh_ptr = gq_ptr + (N_AXES - 2) * plane
    gqw_ptr = gq_ptr + (N_AXES - 1) * plane
    uh_ptr = u_ptr + (N_AXES - 2) * plane
    uw_ptr = u_ptr + (N_AXES - 1) * plane
    norm2 = tl.zeros((BLOCK,), dtype=lam.dtype)
    ug = tl.zeros((BLOCK,), dtype=lam.dtype)
    for c in tl.static_range(PARTS):  # |u|² and u·g over the parts and axes
        at = c * total + idx
        a = _a(gx_ptr, gxb_ptr, at, one_theta, mask)
        gh = tl.load(gqh_ptr + at, mask=mask, other=0.0) - tau * (
            _a(gx_ptr, gxb_ptr, c * total + o_h, one_theta, mask) - a)
        gw = tl.load(gqw_ptr + at, mask=mask, other=0.0) - tau * (
            _a(gx_ptr, gxb_ptr, c * total + o_w, one_theta, mask) - a)
        uh = tl.load(uh_ptr + at, mask=mask, other=0.0)
        uw = tl.load(uw_ptr + at, mask=mask, other=0.0)
        if N_AXES == 3:
            gd = tl.load(gq_ptr + at, mask=mask, other=0.0) - tau * (
                _a(gx_ptr, gxb_ptr, c * total + o_d, one_theta, mask) - a)
            ud = tl.load(u_ptr + at, mask=mask, other=0.0)
            norm2 = norm2 + ud * ud
            ug = ug + ud * gd
        norm2 = norm2 + uh * uh + uw * uw
        ug = ug + uh * gh + uw * gw
    norm = _sqrt(norm2)
    active = norm > lam
    safe = tl.where(active, norm, 1.0)
    dot = _div(ug, safe)  # n·g
    r = _div(lam, safe)
    for c in tl.static_range(PARTS):  # gu = r(g − n(n·g)) where active, else g
        at = c * total + idx
        a = _a(gx_ptr, gxb_ptr, at, one_theta, mask)
        gh = tl.load(gqh_ptr + at, mask=mask, other=0.0) - tau * (
            _a(gx_ptr, gxb_ptr, c * total + o_h, one_theta, mask) - a)
        gw = tl.load(gqw_ptr + at, mask=mask, other=0.0) - tau * (
            _a(gx_ptr, gxb_ptr, c * total + o_w, one_theta, mask) - a)
        uh = tl.load(uh_ptr + at, mask=mask, other=0.0)
        uw = tl.load(uw_ptr + at, mask=mask, other=0.0)
        if N_AXES == 3:
            gd = tl.load(gq_ptr + at, mask=mask, other=0.0) - tau * (
                _a(gx_ptr, gxb_ptr, c * total + o_d, one_theta, mask) - a)
            ud = tl.load(u_ptr + at, mask=mask, other=0.0)
            tl.store(gq_ptr + at, tl.where(active, r * (gd - _div(ud, safe) * dot), gd), mask=mask)
        tl.store(gqh_ptr + at, tl.where(active, r * (gh - _div(uh, safe) * dot), gh), mask=mask)
        tl.store(gqw_ptr + at, tl.where(active, r * (gw - _div(uw, safe) * dot), gw), mask=mask)
    g_lam = tl.load(glam_ptr + idx, mask=mask, other=0.0)
    tl.store(glam_ptr + idx, g_lam + tl.where(active, dot, 0.0), mask=mask)


@triton.jit
def adjoint_primal(gx_ptr, gxb_ptr, gp_ptr, gz_ptr, gq_ptr, plane, D, H, W, params_ptr, N_AXES: tl.constexpr,
                   DATA_STEP: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = idx < plane
    _, d, i, j = _coords(idx, D, H, W)
    tau, sigma, theta, ratio = load_step_sizes(params_ptr)
    gxb_old = tl.load(gxb_ptr + idx, mask=mask, other=0.0)
    a = tl.load(gx_ptr + idx, mask=mask, other=0.0) + (1.0 + theta) * gxb_old
    grad_t_gu = _grad_t(gq_ptr, idx, mask, d, i, j, D, H, W, plane, N_AXES)
    if DATA_STEP:  # gp_ptr holds σ/(1+σ)·AᴴA gP', the caller's
        tl.store(gxb_ptr + idx, sigma * grad_t_gu + tl.load(gp_ptr + idx, mask=mask, other=0.0), mask=mask)
    else:
        gp = tl.load(gp_ptr + idx, mask=mask, other=0.0) - tau * a
        tl.store(gxb_ptr + idx, sigma * grad_t_gu + ratio * gp, mask=mask)
        tl.store(gp_ptr + idx, _div(gp, 1.0 + sigma), mask=mask)
        tl.store(gz_ptr + idx, tl.load(gz_ptr + idx, mask=mask, other=0.0) - ratio * gp, mask=mask)
    tl.store(gx_ptr + idx, a - theta * gxb_old, mask=mask)
