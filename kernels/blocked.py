"""Several PDHG iterations per launch for images (B, H, W): temporal blocking, forward and adjoint.

The one-step kernels of :mod:`tvfast.kernels.pdhg2d` read and write every
array once per iteration: 48 B per pixel, bound by memory bandwidth on large
batches and by launches on small ones. Here one launch runs up to K
iterations on a tile, in registers, and touches global memory once.

Halo and validity
-----------------
A program owns an output tile of (BLOCK_H − 2K) × (BLOCK_W − 2K) pixels and
loads the BLOCK_H × BLOCK_W window around it: the tile with a K-pixel halo
on every side, its indices wrapped periodically (so a window lane always
addresses a pixel of the image; the window of a small image may hold a pixel
twice, which costs work but not correctness). Within an iteration only two
things cross pixels (docs/method.md §3):

* the dual update at (i, j) reads x̄ at (i+1, j) and (i, j+1);
* the primal update at (i, j) reads q' at (i−1, j) and (i, j−1).

A lane at the window's edge has no neighbour in the window, so its value
turns wrong; each iteration the wrong rim grows by one lane on each side
(one from each bullet). After k ≤ K iterations the lanes at least k from the
edge are exact, the output tile among them. The adjoint (docs/method.md §4)
has the same shape: gq'' at (i, j) reads a at (i+1, j), (i, j+1), and ∇ᵀgu
reads gu at (i−1, j), (i, j−1).

Triton has no register shifts, so neighbours are exchanged through a
per-program scratch slab in global memory (three BLOCK_H × BLOCK_W planes,
cache-resident): store the plane, ``tl.debug_barrier()`` so every thread of
the program sees it, load it shifted by one lane (clamped at the window's
edge, whose lanes are wrong anyway). Two barriers per iteration suffice: a
plane is written again only after the next barrier that follows its reads.

Every expression is the one-step kernels', in the same order, so the
iterates and the clip states are the same bit for bit (tests/test_blocked.py
checks it under the interpreter; compiled, the code generator may contract
the arithmetic differently in the two kernels). Arrays read in a halo (x, x̄,
p, q; gx, gx̄, gp, gq) are double-buffered between launches; z, Λ and the clip
states are only read; gz and gΛ are accumulated at the program's own pixels.

Clip states: each iteration's nibbles are packed two pixels to a byte in the
layout of :mod:`tvfast.solver.clip_states`; K and the output width are even,
so a window column pair (2m, 2m+1) is an image column pair.

Masks: image reads need none (wrapped indices are inside the image, and
scratch indices inside the slab); stores to the image carry ``out`` (the
output tile, less its overhang past the bottom and right edges), byte stores
``byte_out``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tvfast.kernels.common import STATE_BITS, clip, clip_state, lambda_adjoint, load_step_sizes, pass_if_inside, state_of
from tvfast.kernels.launch import MAX_ELEMENTS, MAX_GRID_YZ, step_sizes
from tvfast.kernels.pdhg2d import PIXEL_BITS, PIXEL_FIELD

__all__ = ["pdhg2d_forward_blocked", "pdhg2d_adjoint_blocked", "solve_forward", "solve_backward", "pick_blocking"]

@triton.jit
def _window(H, W, K: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """This program's window: lane rows r (BLOCK_H, 1), columns c (1, BLOCK_W), the wrapped image indices gi, gj,
    the output mask, and the output tile's origin (oi, oj)."""
    OUT_H = BLOCK_H - 2 * K
    OUT_W = BLOCK_W - 2 * K
    pid = tl.program_id(0)
    n_tiles_w = tl.cdiv(W, OUT_W)
    oi = (pid // n_tiles_w) * OUT_H
    oj = (pid % n_tiles_w) * OUT_W
    r = tl.arange(0, BLOCK_H)[:, None]
    c = tl.arange(0, BLOCK_W)[None, :]
    gi = ((oi - K + r) % H + H) % H
    gj = ((oj - K + c) % W + W) % W
    rows_out = (r >= K) & (r < BLOCK_H - K) & (oi - K + r < H)
    out = rows_out & (c >= K) & (c < BLOCK_W - K) & (oj - K + c < W)
    return r, c, gi, gj, rows_out, out, oj


@triton.jit
def _neighbours(r, c, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """Scratch offsets of the lane itself and of its neighbours below, right, above, left (clamped)."""
    here = r * BLOCK_W + c
    down = tl.minimum(r + 1, BLOCK_H - 1) * BLOCK_W + c
    right = r * BLOCK_W + tl.minimum(c + 1, BLOCK_W - 1)
    up = tl.maximum(r - 1, 0) * BLOCK_W + c
    left = r * BLOCK_W + tl.maximum(c - 1, 0)
    return here, down, right, up, left


@triton.jit
def _scratch(scratch_ptr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """This program's three scratch planes."""
    program = tl.program_id(1).to(tl.int64) * tl.num_programs(0) + tl.program_id(0)
    return scratch_ptr + program * 3 * BLOCK_H * BLOCK_W


@triton.jit
def pdhg2d_forward_blocked(
    x_ptr, x_bar_ptr, p_ptr, q_ptr,  # iterate k0 in: (B, H, W) ×3, q (B, 2, H, W)
    x_out_ptr, x_bar_out_ptr, p_out_ptr, q_out_ptr,  # iterate k0 + n_steps out (the other buffers)
    z_ptr,  # (B, H, W)
    lam_ptr,  # Λ as a strided (B, 2, H, W) view (strides 0 where broadcast)
    states_ptr,  # clip states of iteration k0: (B, H, Wp) uint8, the next iteration states_stride further
    scratch_ptr,  # (programs, 3, BLOCK_H, BLOCK_W) in the data's dtype
    H, W, Wp, lam_sb, lam_sc, lam_sh, lam_sw, states_stride,
    params_ptr,  # (4,): τ, σ, θ, σ/(1+σ)
    n_steps,  # iterations in this launch, 1 ≤ n_steps ≤ K
    K: tl.constexpr,
    WRITE_STATES: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):  # fmt: skip
    r, c, gi, gj, rows_out, out, oj = _window(H, W, K, BLOCK_H, BLOCK_W)
    tau, sigma, theta, _ = load_step_sizes(params_ptr)
    b = tl.program_id(1).to(tl.int64)
    img = b * H * W
    at = img + gi * W + gj
    x = tl.load(x_ptr + at)
    x_bar = tl.load(x_bar_ptr + at)
    p = tl.load(p_ptr + at)
    q0 = tl.load(q_ptr + img + at)
    q1 = tl.load(q_ptr + img + H * W + at)
    z = tl.load(z_ptr + at)
    lam0 = tl.load(lam_ptr + b * lam_sb + gi * lam_sh + gj * lam_sw)
    lam1 = tl.load(lam_ptr + b * lam_sb + lam_sc + gi * lam_sh + gj * lam_sw)
    scratch = _scratch(scratch_ptr, BLOCK_H, BLOCK_W)
    plane = BLOCK_H * BLOCK_W
    here, down, right, up, left = _neighbours(r, c, BLOCK_H, BLOCK_W)
    m = tl.arange(0, BLOCK_W // 2)[None, :]  # window byte columns
    byte_col = (oj - K) // 2 + m
    byte_out = rows_out & (m >= K // 2) & (m < (BLOCK_W - K) // 2) & (byte_col < Wp)
    for step in range(n_steps):
        tl.store(scratch + here, x_bar)
        tl.debug_barrier()
        u0 = q0 + sigma * (tl.load(scratch + down) - x_bar)
        u1 = q1 + sigma * (tl.load(scratch + right) - x_bar)
        q0 = clip(u0, lam0)
        q1 = clip(u1, lam1)
        tl.store(scratch + plane + here, q0)
        tl.store(scratch + 2 * plane + here, q1)
        tl.debug_barrier()
        grad_T_q = (tl.load(scratch + plane + up) - q0) + (tl.load(scratch + 2 * plane + left) - q1)
        p = (p + sigma * (x_bar - z)) / (1.0 + sigma)
        x_new = x - tau * p - tau * grad_T_q
        x_bar = x_new + theta * (x_new - x)
        x = x_new
        if WRITE_STATES:
            record = tl.where(out, clip_state(u0, lam0) | (clip_state(u1, lam1) << STATE_BITS), 0)
            even, odd = tl.split(tl.reshape(record, (BLOCK_H, BLOCK_W // 2, 2)))
            tl.store(states_ptr + step * states_stride + b * H * Wp + gi * Wp + byte_col,
                     (even | (odd << PIXEL_BITS)).to(tl.uint8), mask=byte_out)
    tl.store(x_out_ptr + at, x, mask=out)
    tl.store(x_bar_out_ptr + at, x_bar, mask=out)
    tl.store(p_out_ptr + at, p, mask=out)
    tl.store(q_out_ptr + img + at, q0, mask=out)
    tl.store(q_out_ptr + img + H * W + at, q1, mask=out)


@triton.jit
def pdhg2d_adjoint_blocked(
    gx_ptr, gx_bar_ptr, gp_ptr, gq_ptr,  # adjoints of iterate k1 in: (B, H, W) ×3, gq (B, 2, H, W)
    gx_out_ptr, gx_bar_out_ptr, gp_out_ptr, gq_out_ptr,  # adjoints of iterate k1 − n_steps out
    gz_ptr,  # (B, H, W) accumulates ∂ℓ/∂z at the program's own pixels
    glam_ptr,  # (B, LAM_CHANNELS, H, W) accumulates ∂ℓ/∂Λ (unused if LAM_CHANNELS == 0)
    states_ptr,  # clip states of iteration k1 − 1: (B, H, Wp); iteration k1 − 1 − s is s·states_stride before
    scratch_ptr,
    H, W, Wp, states_stride,
    params_ptr,
    n_steps,
    K: tl.constexpr,
    LAM_CHANNELS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):  # fmt: skip
    r, c, gi, gj, rows_out, out, oj = _window(H, W, K, BLOCK_H, BLOCK_W)
    tau, sigma, theta, sigma_ratio = load_step_sizes(params_ptr)
    b = tl.program_id(1).to(tl.int64)
    img = b * H * W
    at = img + gi * W + gj
    one_plus_theta = 1.0 + theta
    gx = tl.load(gx_ptr + at)
    gx_bar = tl.load(gx_bar_ptr + at)
    gp = tl.load(gp_ptr + at)
    gq0 = tl.load(gq_ptr + img + at)
    gq1 = tl.load(gq_ptr + img + H * W + at)
    gz = tl.load(gz_ptr + at, mask=out, other=0.0)
    glam_img = glam_ptr + b * LAM_CHANNELS * H * W
    if LAM_CHANNELS > 0:
        g0 = tl.load(glam_img + gi * W + gj, mask=out, other=0.0)
        if LAM_CHANNELS == 2:
            g1 = tl.load(glam_img + H * W + gi * W + gj, mask=out, other=0.0)
    scratch = _scratch(scratch_ptr, BLOCK_H, BLOCK_W)
    plane = BLOCK_H * BLOCK_W
    here, down, right, up, left = _neighbours(r, c, BLOCK_H, BLOCK_W)
    col = (gj % 2) * PIXEL_BITS
    byte_at = b * H * Wp + gi * Wp + gj // 2
    for step in range(n_steps):
        a = gx + one_plus_theta * gx_bar
        tl.store(scratch + here, a)
        tl.debug_barrier()
        gq0 = gq0 - tau * (tl.load(scratch + down) - a)  # gq''
        gq1 = gq1 - tau * (tl.load(scratch + right) - a)
        record = (tl.load(states_ptr - step * states_stride + byte_at).to(tl.int32) >> col) & PIXEL_FIELD
        s0 = state_of(record, 0)
        s1 = state_of(record, 1)
        gu0 = pass_if_inside(s0, gq0)
        gu1 = pass_if_inside(s1, gq1)
        tl.store(scratch + plane + here, gu0)
        tl.store(scratch + 2 * plane + here, gu1)
        tl.debug_barrier()
        grad_T_gu = (tl.load(scratch + plane + up) - gu0) + (tl.load(scratch + 2 * plane + left) - gu1)
        if LAM_CHANNELS == 1:
            g0 = g0 + lambda_adjoint(s0, gq0) + lambda_adjoint(s1, gq1)
        elif LAM_CHANNELS == 2:
            g0 = g0 + lambda_adjoint(s0, gq0)
            g1 = g1 + lambda_adjoint(s1, gq1)
        gp_pp = gp - tau * a  # gp''
        gx = a - theta * gx_bar
        gx_bar = sigma * grad_T_gu + sigma_ratio * gp_pp
        gp = gp_pp / (1.0 + sigma)
        gz = gz - sigma_ratio * gp_pp
        gq0 = gu0
        gq1 = gu1
    tl.store(gx_out_ptr + at, gx, mask=out)
    tl.store(gx_bar_out_ptr + at, gx_bar, mask=out)
    tl.store(gp_out_ptr + at, gp, mask=out)
    tl.store(gq_out_ptr + img + at, gq0, mask=out)
    tl.store(gq_out_ptr + img + H * W + at, gq1, mask=out)
    tl.store(gz_ptr + at, gz, mask=out)
    if LAM_CHANNELS > 0:
        tl.store(glam_img + gi * W + gj, g0, mask=out)
        if LAM_CHANNELS == 2:
            tl.store(glam_img + H * W + gi * W + gj, g1, mask=out)


def pick_blocking(height: int, width: int, device: torch.device, k: int | None = None) -> tuple[int, int, int, int]:
    """(K, BLOCK_H, BLOCK_W, num_warps): iterations per launch and the window.

    On the GPU a 32 × 64 window with K = 4 (24 × 56 output pixels, 66 % of the
    window's work kept). Under the interpreter a window that covers the image
    (plus its halo) up to 64 × 64, as every program costs milliseconds there.
    """
    if k is None:
        k = 4
    if isinstance(k, bool) or not isinstance(k, int) or k < 2 or k % 2:
        raise ValueError(f"iterations_per_launch: expected an even int >= 2, got {k!r}")
    if device.type == "cuda":
        block_h, block_w, warps = 32, 64, 8
    else:
        block_h = min(64, triton.next_power_of_2(height + 2 * k))
        block_w = min(64, triton.next_power_of_2(width + 2 * k))
        warps = 1
    while block_h <= 2 * k:
        block_h *= 2
    while block_w <= 2 * k:
        block_w *= 2
    return k, block_h, block_w, warps


def _grid(shape, k: int, block_h: int, block_w: int) -> tuple[int, int]:
    batch, height, width = shape
    return triton.cdiv(height, block_h - 2 * k) * triton.cdiv(width, block_w - 2 * k), batch


def _check(shape, name: str) -> None:
    if len(shape) != 3 or shape[1] * shape[2] > MAX_ELEMENTS or shape[0] > MAX_GRID_YZ:
        raise ValueError(f"{name}: expected (B, H, W) images, B <= {MAX_GRID_YZ} and H·W < 2**31, got {tuple(shape)}")


def solve_forward(z, lam, n_iter: int, tau: float, sigma: float, theta: float, keep_states: bool,
                  iterations_per_launch: int | None = None):
    """:func:`tvfast.kernels.launch.solve_forward` for images, with up to K iterations per launch.

    Same arguments and results (x_T and the (T, B, H, ⌈W/2⌉) clip states or
    None), the same values bit for bit under the interpreter.
    """
    _check(tuple(z.shape), "z")
    if not z.is_contiguous():
        raise ValueError("z: expected a contiguous tensor")
    batch, height, width = z.shape
    if lam.dim() != 4 or lam.shape[1] not in (1, 2):
        raise ValueError(f"lam: expected a 4-D tensor broadcastable to {(batch, 2, height, width)} with 1 or 2 "
                         f"channels, got shape {tuple(lam.shape)}")
    k, block_h, block_w, warps = pick_blocking(height, width, z.device, iterations_per_launch)
    lam_full = lam.expand(batch, 2, height, width)
    wp = (width + 1) // 2
    grid = _grid(z.shape, k, block_h, block_w)
    scratch = z.new_empty(grid[0] * grid[1] * 3 * block_h * block_w)
    x = [z.clone(), torch.empty_like(z)]
    x_bar = [z.clone(), torch.empty_like(z)]
    p = [torch.zeros_like(z), torch.empty_like(z)]
    q = [z.new_zeros(batch, 2, height, width), z.new_empty(batch, 2, height, width)]
    states = torch.empty(max(n_iter, 1) if keep_states else 1, batch, height, wp, dtype=torch.uint8,
                         device=z.device)
    params = step_sizes(tau, sigma, theta, z)
    src = 0
    for k0 in range(0, n_iter, k):
        dst = 1 - src
        pdhg2d_forward_blocked[grid](
            x[src], x_bar[src], p[src], q[src], x[dst], x_bar[dst], p[dst], q[dst], z, lam_full,
            states[k0] if keep_states else states[0], scratch, height, width, wp, *lam_full.stride(),
            states.stride(0), params, min(k, n_iter - k0),
            K=k, WRITE_STATES=keep_states, BLOCK_H=block_h, BLOCK_W=block_w, num_warps=warps,
        )  # fmt: skip
        src = dst
    return x[src], (states if keep_states else None)


def solve_backward(grad_x, clip_states, lam_channels: int, need_glam: bool, tau: float, sigma: float, theta: float,
                   iterations_per_launch: int | None = None):
    """:func:`tvfast.kernels.launch.solve_backward` for images, with up to K iterations per launch."""
    _check(tuple(grad_x.shape), "grad_x")
    batch, height, width = grad_x.shape
    wp = (width + 1) // 2
    n_iter = clip_states.shape[0]
    if tuple(clip_states.shape[1:]) != (batch, height, wp) or clip_states.dtype != torch.uint8:
        raise ValueError(f"clip_states: expected uint8 of shape (T, {batch}, {height}, {wp}), got "
                         f"{clip_states.dtype} {tuple(clip_states.shape)}")
    if lam_channels not in (1, 2):
        raise ValueError(f"lam_channels: expected 1 or 2, got {lam_channels}")
    k, block_h, block_w, warps = pick_blocking(height, width, grad_x.device, iterations_per_launch)
    grid = _grid(grad_x.shape, k, block_h, block_w)
    g = grad_x.contiguous()
    scratch = g.new_empty(grid[0] * grid[1] * 3 * block_h * block_w)
    gx = [g.clone(), torch.empty_like(g)]
    gx_bar = [torch.zeros_like(g), torch.empty_like(g)]
    gp = [torch.zeros_like(g), torch.empty_like(g)]
    gq = [g.new_zeros(batch, 2, height, width), g.new_empty(batch, 2, height, width)]
    gz = torch.zeros_like(g)
    glam = g.new_zeros(batch, lam_channels, height, width) if need_glam else gz
    params = step_sizes(tau, sigma, theta, g)
    src = 0
    for k1 in range(n_iter, 0, -k):
        dst = 1 - src
        pdhg2d_adjoint_blocked[grid](
            gx[src], gx_bar[src], gp[src], gq[src], gx[dst], gx_bar[dst], gp[dst], gq[dst], gz, glam,
            clip_states[k1 - 1], scratch, height, width, wp, clip_states.stride(0), params, min(k, k1),
            K=k, LAM_CHANNELS=lam_channels if need_glam else 0, BLOCK_H=block_h, BLOCK_W=block_w,
            num_warps=warps,
        )  # fmt: skip
        src = dst
    gz += gx[src]
    gz += gx_bar[src]
    return gz, (glam if need_glam else None)
