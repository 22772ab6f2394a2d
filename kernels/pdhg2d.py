"""Fused PDHG iteration and its adjoint for images (B, H, W), as Triton kernels.

Launched by :mod:`tvfast.kernels.launch`, one launch per iteration; the
shared tile, clip and step-size helpers live in :mod:`tvfast.kernels.common`.

Forward step (docs/method.md §3)
--------------------------------
With x₀ = x̄₀ = z, p₀ = q₀ = 0 and periodic forward differences
∇x = (x(i+1, j) − x(i, j), x(i, j+1) − x(i, j)), one iteration is::

    p' = (p + σ(x̄ − z)) / (1 + σ)
    u  = q + σ∇x̄ ;          q' = clip(u, −Λ, Λ)
    x' = x − τp' − τ∇ᵀq' ;   x̄' = x' + θ(x' − x)

A program owns a BLOCK_H×BLOCK_W tile of one image (grid: tiles × B). All of
it is local to a pixel except ∇ᵀq', which at (i, j) needs q₀'(i−1, j) and
q₁'(i, j−1). Those belong to neighbouring pixels, possibly in another tile,
so rather than waiting for their owners the program *recomputes* them from
x̄ and q over a one-pixel halo::

    u₀(i, j)   = q₀(i, j)   + σ(x̄(i+1, j) − x̄(i, j))
    u₁(i, j)   = q₁(i, j)   + σ(x̄(i, j+1) − x̄(i, j))
    u₀(i−1, j) = q₀(i−1, j) + σ(x̄(i, j) − x̄(i−1, j))   clipped with Λ₀(i−1, j)
    u₁(i, j−1) = q₁(i, j−1) + σ(x̄(i, j) − x̄(i, j−1))   clipped with Λ₁(i, j−1)
    ∇ᵀq'(i, j) = q₀'(i−1, j) − q₀'(i, j) + q₁'(i, j−1) − q₁'(i, j)

Programs run in no particular order, so arrays read at neighbours (x̄ and q
here; gx, gx̄ and gq in the adjoint) are double-buffered: read from one
buffer, written to the other. x and p (gp, gz, gΛ) are touched only at the
program's own pixels and are updated in place.

Adjoint step (docs/method.md §4)
--------------------------------
The adjoint runs the iterations backwards, k = T−1 … 0, carrying the
gradients gx, gx̄, gp, gq of the loss with respect to x_{k+1}, x̄_{k+1},
p_{k+1}, q_{k+1} to those of x_k, x̄_k, p_k, q_k. Going through the forward
step from its last line to its first:

* x̄' = (1+θ)x' − θx: x' receives a = gx' + (1+θ)gx̄', and x receives −θgx̄'.
* x' = x − τp' − τ∇ᵀq': x receives a, so gx_k = a − θgx̄'; p' receives
  −τa and q' receives −τ∇a (the adjoint of ∇ᵀ is ∇)::

      gp'' = gp' − τa ;   gq'' = gq' − τ∇a

* q' = clip(u, −Λ, Λ): u receives ∂q/∂u · gq'' and Λ receives ∂q/∂Λ · gq''.
  Both derivatives depend only on the clip state (INSIDE: 1 and 0; HIGH: 0
  and +1; LOW: 0 and −1), so with M = [state = INSIDE] and S = +1 / −1 / 0::

      gu = M ∘ gq'' ;   gΛ += S ∘ gq''

* u = q + σ∇x̄: gq_k = gu, and x̄ receives σ∇ᵀgu.
* p' = (p + σ(x̄ − z))/(1+σ): gp_k = gp''/(1+σ), and x̄ and z receive
  ±σ/(1+σ)·gp'' (``sigma_ratio`` below)::

      gx̄_k = σ∇ᵀgu + sigma_ratio·gp'' ;   gz −= sigma_ratio·gp''

After k = 0 the launcher adds gx₀ + gx̄₀ to gz, since x₀ = x̄₀ = z. As in the
forward, everything is local except ∇a (a at (i+1, j), (i, j+1)) and ∇ᵀgu
(gu at (i−1, j), (i, j−1)); the program recomputes gq'' at those two
neighbours from a at the four neighbours and reads their clip states.

Data step handed in (``DATA_STEP``)
-----------------------------------
With a forward operator A (docs/method.md §10) the data term is ½‖Ax − y‖²
and its dual p lives in A's range, which the kernels know nothing about.
With the constexpr ``DATA_STEP`` the caller runs the data term in PyTorch
between launches and the kernels do the TV part, with x₀ = x̄₀ the start
(in ``z``'s place for the launcher):

* forward: ``p`` holds Aᴴp_{k+1} (the caller computed p_{k+1} from x̄_k) and
  is only read, x' = x − τAᴴp_{k+1} − τ∇ᵀq'; z is not read;
* adjoint: ``gp`` holds σ/(1+σ)·Aᴴgp'' (the caller computed
  gp'' = gp' − τAa from a) and is only read,
  gx̄_k = σ∇ᵀgu + σ/(1+σ)·Aᴴgp''; gp and gz are the caller's, and the ``gz``
  buffer receives a_k = gx_k + (1+θ)gx̄_k instead, the input of the caller's
  next reverse data step.

The q update, the clip states, ∇ᵀq, gu and gΛ are those of denoising. The
switch is a ``tl.constexpr``, so the denoising specialisation
(``DATA_STEP=False``) compiles with none of these branches.

Masks
-----
Two different things are called masks here, and they are named apart.

``in_bounds`` is Triton's load/store mask. A tile is a power-of-two block,
so at the image's bottom and right edges some of its lanes (i ≥ H or j ≥ W)
lie outside the image; ``in_bounds`` switches them off: their loads return
``other`` (0) and their stores are skipped. Every ``tl.load`` and
``tl.store`` carries it — Triton's interpreter, which runs the CPU tests,
does no bounds checking. Neighbour indices are wrapped periodically before
any address is formed, so an in-bounds lane never reads outside the image.

``states`` is the record of clip states that the forward writes (only when a
backward will follow, ``WRITE_STATES``) and the adjoint reads. A pixel's
record is the nibble ``s₀ | s₁ << 2`` (direction 0 vertical, 1 horizontal;
codes of :mod:`tvfast.kernels.common`), and columns 2m and 2m+1 share byte m
(low and high nibble): one iteration of a (B, H, W) batch is a
(B, H, ⌈W/2⌉) uint8 array, the layout of :mod:`tvfast.solver.clip_states`.
The forward reshapes its tile's nibbles into (BLOCK_H, BLOCK_W/2, 2),
splits even and odd columns and stores whole bytes under the mask
``byte_in_bounds`` (row < H, byte < ⌈W/2⌉); nibbles of lanes outside the
image are zeroed first, so the padding nibble of an odd width is 0.

Traffic
-------
The forward reads x, x̄, p, q₀, q₁, z, Λ and writes x, x̄, p, q₀, q₁: 12
float32 = 48 B per pixel per iteration (+0.5 B of clip states), the roofline
reported in ``benchmarks/``. Halo reads hit the cache. With ``DATA_STEP``
it reads x, x̄, Aᴴp, q₀, q₁, Λ and writes x, x̄, q₀, q₁: 10 float32.
"""

from __future__ import annotations

import triton
import triton.language as tl

from tvfast.kernels.common import (
    STATE_BITS,
    adjoint_of_x,
    clip,
    clip_state,
    lambda_adjoint,
    load_step_sizes,
    pass_if_inside,
    state_of,
    tile,
)

__all__ = ["pdhg2d_forward_step", "pdhg2d_adjoint_step"]

PIXEL_BITS: tl.constexpr = tl.constexpr(4)
"""Bits of one pixel's record (two clip states); two pixels share a byte."""
PIXEL_FIELD: tl.constexpr = tl.constexpr(15)
"""``(1 << PIXEL_BITS) − 1``: masks one pixel's record out of a shifted byte."""


@triton.jit
def pdhg2d_forward_step(
    x_ptr,  # (B, H, W) x_k in, x_{k+1} out (in place)
    x_bar_ptr,  # (B, H, W) x̄_k in
    x_bar_out_ptr,  # (B, H, W) x̄_{k+1} out
    p_ptr,  # (B, H, W) p_k in, p_{k+1} out (in place); with DATA_STEP Aᴴp_{k+1} in (read only)
    q_ptr,  # (B, 2, H, W) q_k in
    q_out_ptr,  # (B, 2, H, W) q_{k+1} out
    z_ptr,  # (B, H, W) data (not read with DATA_STEP)
    lam_ptr,  # Λ as a strided (B, 2, H, W) view: strides lam_sb, lam_sc, lam_sh, lam_sw (0 where broadcast)
    states_ptr,  # (B, H, Wp) uint8 packed clip states of this iteration (written iff WRITE_STATES)
    H,
    W,
    Wp,  # bytes per row of states, ⌈W/2⌉
    lam_sb,
    lam_sc,
    lam_sh,
    lam_sw,
    params_ptr,  # (4,) in z's dtype: τ, σ, θ, σ/(1+σ)
    WRITE_STATES: tl.constexpr,
    DATA_STEP: tl.constexpr,  # the data term's step is the caller's (a forward operator)
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    i, j, in_bounds, i_next, i_prev, j_next, j_prev = tile(H, W, BLOCK_H, BLOCK_W)
    tau, sigma, theta, _ = load_step_sizes(params_ptr)
    b = tl.program_id(1).to(tl.int64)
    img = b * H * W
    q0_base = q_ptr + 2 * img
    q1_base = q0_base + H * W
    lam0_base = lam_ptr + b * lam_sb
    lam1_base = lam0_base + lam_sc
    here = i * W + j

    x_bar = tl.load(x_bar_ptr + img + here, mask=in_bounds, other=0.0)
    x_bar_i_next = tl.load(x_bar_ptr + img + i_next * W + j, mask=in_bounds, other=0.0)
    x_bar_i_prev = tl.load(x_bar_ptr + img + i_prev * W + j, mask=in_bounds, other=0.0)
    x_bar_j_next = tl.load(x_bar_ptr + img + i * W + j_next, mask=in_bounds, other=0.0)
    x_bar_j_prev = tl.load(x_bar_ptr + img + i * W + j_prev, mask=in_bounds, other=0.0)

    lam0 = tl.load(lam0_base + i * lam_sh + j * lam_sw, mask=in_bounds, other=0.0)
    lam1 = tl.load(lam1_base + i * lam_sh + j * lam_sw, mask=in_bounds, other=0.0)
    lam0_i_prev = tl.load(lam0_base + i_prev * lam_sh + j * lam_sw, mask=in_bounds, other=0.0)
    lam1_j_prev = tl.load(lam1_base + i * lam_sh + j_prev * lam_sw, mask=in_bounds, other=0.0)

    u0 = tl.load(q0_base + here, mask=in_bounds, other=0.0) + sigma * (x_bar_i_next - x_bar)
    u1 = tl.load(q1_base + here, mask=in_bounds, other=0.0) + sigma * (x_bar_j_next - x_bar)
    u0_i_prev = tl.load(q0_base + i_prev * W + j, mask=in_bounds, other=0.0) + sigma * (x_bar - x_bar_i_prev)
    u1_j_prev = tl.load(q1_base + i * W + j_prev, mask=in_bounds, other=0.0) + sigma * (x_bar - x_bar_j_prev)
    q0 = clip(u0, lam0)
    q1 = clip(u1, lam1)
    grad_T_q = (clip(u0_i_prev, lam0_i_prev) - q0) + (clip(u1_j_prev, lam1_j_prev) - q1)

    x = tl.load(x_ptr + img + here, mask=in_bounds, other=0.0)
    p = tl.load(p_ptr + img + here, mask=in_bounds, other=0.0)  # with DATA_STEP: Aᴴp_{k+1}
    if not DATA_STEP:
        z = tl.load(z_ptr + img + here, mask=in_bounds, other=0.0)
        p = (p + sigma * (x_bar - z)) / (1.0 + sigma)
    x_new = x - tau * p - tau * grad_T_q
    tl.store(x_ptr + img + here, x_new, mask=in_bounds)
    tl.store(x_bar_out_ptr + img + here, x_new + theta * (x_new - x), mask=in_bounds)
    if not DATA_STEP:
        tl.store(p_ptr + img + here, p, mask=in_bounds)
    tl.store(q_out_ptr + 2 * img + here, q0, mask=in_bounds)
    tl.store(q_out_ptr + 2 * img + H * W + here, q1, mask=in_bounds)

    if WRITE_STATES:
        record = tl.where(in_bounds, clip_state(u0, lam0) | (clip_state(u1, lam1) << STATE_BITS), 0)
        even, odd = tl.split(tl.reshape(record, (BLOCK_H, BLOCK_W // 2, 2)))
        byte_col = (tl.program_id(0) % tl.cdiv(W, BLOCK_W)) * (BLOCK_W // 2) + tl.arange(0, BLOCK_W // 2)[None, :]
        byte_in_bounds = (i < H) & (byte_col < Wp)
        tl.store(states_ptr + b * H * Wp + i * Wp + byte_col, (even | (odd << PIXEL_BITS)).to(tl.uint8),
                 mask=byte_in_bounds)


@triton.jit
def _record_at(states_ptr, row, col, Wp, in_bounds):
    """Pixel (row, col)'s record s₀ | s₁ << 2, unpacked from its byte (int32)."""
    byte = tl.load(states_ptr + row * Wp + col // 2, mask=in_bounds, other=0).to(tl.int32)
    return (byte >> ((col % 2) * PIXEL_BITS)) & PIXEL_FIELD


@triton.jit
def pdhg2d_adjoint_step(
    gx_ptr,  # (B, H, W) adjoint of x_{k+1} in
    gx_out_ptr,  # (B, H, W) adjoint of x_k out (double buffer: neighbours read gx)
    gx_bar_ptr,  # (B, H, W) adjoint of x̄_{k+1} in
    gx_bar_out_ptr,  # (B, H, W) adjoint of x̄_k out
    gp_ptr,  # (B, H, W) adjoint of p_{k+1} in, of p_k out (in place); with DATA_STEP σ/(1+σ)·Aᴴgp'' in
    gq_ptr,  # (B, 2, H, W) adjoint of q_{k+1} in
    gq_out_ptr,  # (B, 2, H, W) adjoint of q_k out
    gz_ptr,  # (B, H, W) accumulates ∂ℓ/∂z; with DATA_STEP receives a_k = gx_k + (1+θ)gx̄_k instead
    glam_ptr,  # (B, LAM_CHANNELS, H, W) accumulates ∂ℓ/∂Λ (unused if LAM_CHANNELS == 0)
    states_ptr,  # (B, H, Wp) uint8 packed clip states of iteration k
    H,
    W,
    Wp,  # bytes per row of states, ⌈W/2⌉
    params_ptr,  # (4,) in the data's dtype: τ, σ, θ, σ/(1+σ)
    LAM_CHANNELS: tl.constexpr,
    DATA_STEP: tl.constexpr,  # the data term's adjoint is the caller's (a forward operator)
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    i, j, in_bounds, i_next, i_prev, j_next, j_prev = tile(H, W, BLOCK_H, BLOCK_W)
    tau, sigma, theta, sigma_ratio = load_step_sizes(params_ptr)
    b = tl.program_id(1).to(tl.int64)
    img = b * H * W
    here = i * W + j
    gq0_base = gq_ptr + 2 * img
    gq1_base = gq0_base + H * W
    one_plus_theta = 1.0 + theta

    # a = gx' + (1+θ) gx̄' at the pixel and its four neighbours
    a = adjoint_of_x(gx_ptr, gx_bar_ptr, img + here, one_plus_theta, in_bounds)
    a_i_next = adjoint_of_x(gx_ptr, gx_bar_ptr, img + i_next * W + j, one_plus_theta, in_bounds)
    a_i_prev = adjoint_of_x(gx_ptr, gx_bar_ptr, img + i_prev * W + j, one_plus_theta, in_bounds)
    a_j_next = adjoint_of_x(gx_ptr, gx_bar_ptr, img + i * W + j_next, one_plus_theta, in_bounds)
    a_j_prev = adjoint_of_x(gx_ptr, gx_bar_ptr, img + i * W + j_prev, one_plus_theta, in_bounds)

    # gq'' = gq' − τ∇a, here and at the (i−1, j), (i, j−1) neighbours
    gq0 = tl.load(gq0_base + here, mask=in_bounds, other=0.0) - tau * (a_i_next - a)
    gq1 = tl.load(gq1_base + here, mask=in_bounds, other=0.0) - tau * (a_j_next - a)
    gq0_i_prev = tl.load(gq0_base + i_prev * W + j, mask=in_bounds, other=0.0) - tau * (a - a_i_prev)
    gq1_j_prev = tl.load(gq1_base + i * W + j_prev, mask=in_bounds, other=0.0) - tau * (a - a_j_prev)

    states_img = states_ptr + b * H * Wp
    record = _record_at(states_img, i, j, Wp, in_bounds)
    s0 = state_of(record, 0)
    s1 = state_of(record, 1)
    s0_i_prev = state_of(_record_at(states_img, i_prev, j, Wp, in_bounds), 0)
    s1_j_prev = state_of(_record_at(states_img, i, j_prev, Wp, in_bounds), 1)

    # gu = M ∘ gq'' and ∇ᵀgu
    gu0 = pass_if_inside(s0, gq0)
    gu1 = pass_if_inside(s1, gq1)
    grad_T_gu = (pass_if_inside(s0_i_prev, gq0_i_prev) - gu0) + (pass_if_inside(s1_j_prev, gq1_j_prev) - gu1)

    if LAM_CHANNELS > 0:  # gΛ += S ∘ gq'', summed over directions for a shared Λ
        d0 = lambda_adjoint(s0, gq0)
        d1 = lambda_adjoint(s1, gq1)
        glam_img = glam_ptr + b * LAM_CHANNELS * H * W
        if LAM_CHANNELS == 1:
            g = tl.load(glam_img + here, mask=in_bounds, other=0.0)
            tl.store(glam_img + here, g + d0 + d1, mask=in_bounds)
        else:
            g0 = tl.load(glam_img + here, mask=in_bounds, other=0.0)
            tl.store(glam_img + here, g0 + d0, mask=in_bounds)
            g1 = tl.load(glam_img + H * W + here, mask=in_bounds, other=0.0)
            tl.store(glam_img + H * W + here, g1 + d1, mask=in_bounds)

    gx_bar_in = tl.load(gx_bar_ptr + img + here, mask=in_bounds, other=0.0)
    if DATA_STEP:  # gp_ptr holds σ/(1+σ)·Aᴴgp'', the caller's
        gx_bar_new = sigma * grad_T_gu + tl.load(gp_ptr + img + here, mask=in_bounds, other=0.0)
        tl.store(gx_bar_out_ptr + img + here, gx_bar_new, mask=in_bounds)
    else:
        gp = tl.load(gp_ptr + img + here, mask=in_bounds, other=0.0) - tau * a  # gp''
        tl.store(gx_bar_out_ptr + img + here, sigma * grad_T_gu + sigma_ratio * gp, mask=in_bounds)
    tl.store(gq_out_ptr + 2 * img + here, gu0, mask=in_bounds)
    tl.store(gq_out_ptr + 2 * img + H * W + here, gu1, mask=in_bounds)
    if DATA_STEP:  # gx_k, and a_k = gx_k + (1+θ)gx̄_k: the input of the caller's next data step
        gx_new = a - theta * gx_bar_in
        tl.store(gx_out_ptr + img + here, gx_new, mask=in_bounds)
        tl.store(gz_ptr + img + here, gx_new + one_plus_theta * gx_bar_new, mask=in_bounds)
    else:
        tl.store(gx_out_ptr + img + here, a - theta * gx_bar_in, mask=in_bounds)
        tl.store(gp_ptr + img + here, gp / (1.0 + sigma), mask=in_bounds)
        gz = tl.load(gz_ptr + img + here, mask=in_bounds, other=0.0)
        tl.store(gz_ptr + img + here, gz - sigma_ratio * gp, mask=in_bounds)
