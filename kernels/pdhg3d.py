"""Fused PDHG iteration and its adjoint for volumes and (x, y, t) sequences (B, D, H, W), as Triton kernels.

The 3-D counterparts of :mod:`tvfast.kernels.pdhg2d` (docs/method.md §9),
launched by :mod:`tvfast.kernels.launch`; shared helpers in
:mod:`tvfast.kernels.common`. ∇x = (∂_D x, ∂_H x, ∂_W x) with periodic
forward differences; data are (B, D, H, W) contiguous, duals
(B, 3, D, H, W) with channel c the difference along axis c of (D, H, W).

They are separate kernels rather than the 2-D ones with D = 1: the 2-D
forward moves 48 B per pixel per iteration and half a byte of clip states,
against 56 B and a whole byte for a D = 1 volume.

Forward step
------------
The iteration of docs/method.md §3 with three dual channels::

    p'   = (p + σ(x̄ − z)) / (1 + σ)
    u₀   = q₀ + σ(x̄(d+1,i,j) − x̄)   u₁ = q₁ + σ(x̄(d,i+1,j) − x̄)   u₂ = q₂ + σ(x̄(d,i,j+1) − x̄)
    q_c' = clip(u_c, −Λ_c, Λ_c)
    ∇ᵀq' = Σ_c q_c'(voxel − e_c) − q_c'(voxel)
    x'   = x − τp' − τ∇ᵀq' ;   x̄' = x' + θ(x' − x)

The grid is (tiles of an H×W slice, D, B): a program owns a BLOCK_H×BLOCK_W
tile of slice d of volume b and reads a one-voxel halo along all three axes
(slices d±1, rows i±1, columns j±1, all wrapped). ∇ᵀq' at (d, i, j) needs
q₀'(d−1, i, j), q₁'(d, i−1, j) and q₂'(d, i, j−1), owned by neighbouring
voxels, so the program *recomputes* them from x̄ and q as in 2-D
(docs/method.md §5.1). x̄ and q (gx, gx̄, gq in the adjoint) are read at
neighbours and double-buffered; x and p (gp, gz, gΛ) are touched only at the
program's own voxels and updated in place.

Adjoint step
------------
The derivation of :mod:`tvfast.kernels.pdhg2d` with a third direction:
with a = gx' + (1+θ)gx̄' (what reaches x_{k+1} through x' and x̄'),
M = [state = INSIDE] and S = +1 / −1 / 0 for HIGH / LOW / INSIDE::

    gp''  = gp' − τa ;            gq''  = gq' − τ∇a
    gu    = M ∘ gq'' ;            gΛ   += S ∘ gq''   (summed over c for a shared Λ)
    gq_k  = gu ;                  gx̄_k  = σ∇ᵀgu + sigma_ratio·gp''
    gp_k  = gp''/(1+σ) ;          gz   −= sigma_ratio·gp'' ;   gx_k = a − θgx̄'

with sigma_ratio = σ/(1+σ). ∇a needs a at the (d+1), (i+1), (j+1)
neighbours and ∇ᵀgu needs gu at the (d−1), (i−1), (j−1) neighbours, so the
program recomputes gq'' there (from a at all six neighbours) and reads
those voxels' clip states.

Data step handed in (``DATA_STEP``)
-----------------------------------
As in :mod:`tvfast.kernels.pdhg2d`: with a forward operator (docs/method.md
§10) the caller runs the data term between launches. The forward then reads
Aᴴp_{k+1} from ``p`` (x' = x − τAᴴp_{k+1} − τ∇ᵀq', z not read, p not
written); the adjoint reads σ/(1+σ)·Aᴴgp'' from ``gp``
(gx̄_k = σ∇ᵀgu + σ/(1+σ)·Aᴴgp'', gp not written) and writes
a_k = gx_k + (1+θ)gx̄_k into the ``gz`` buffer in place of updating ∂ℓ/∂z.
A constexpr: the denoising specialisation compiles without these branches.

Masks
-----
``in_bounds`` is Triton's load/store mask: the lanes of a tile that overhang
the slice's bottom or right edge (i ≥ H or j ≥ W) are switched off, loads
returning 0 and stores skipped. Every ``tl.load`` and ``tl.store`` carries it
(the interpreter does no bounds checking). Slices d and d±1 always exist
(one program per slice, d±1 wrapped), and neighbour rows and columns are
wrapped before use, so an in-bounds lane never addresses outside its volume.

``states`` is the record of clip states: one byte per voxel,
``s₀ | s₁ << 2 | s₂ << 4`` (codes of :mod:`tvfast.kernels.common`), so an
iteration is a (B, D, H, W) uint8 array — the layout of
:mod:`tvfast.solver.cpu`, bit for bit. The forward writes it only when a
backward will follow (``WRITE_STATES``).

Offsets. Volume offsets (b·D·H·W, times 3 for duals) are int64; offsets
inside one volume are int32, so the launcher refuses a volume of 2³¹ voxels
or more. No block pointers; only features available in Triton 3.6.

Traffic
-------
The forward reads x, x̄, p, q₀, q₁, q₂, z, Λ and writes x, x̄, p, q₀, q₁, q₂:
14 float32 = 56 B per voxel per iteration (+1 B of clip states); with
``DATA_STEP`` (Aᴴp read, z not read, p not written) 12 float32.
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

__all__ = ["pdhg3d_forward_step", "pdhg3d_adjoint_step"]


@triton.jit
def _slices(D, H, W):
    """This program's volume b and slice d (int64), the offset of volume b in a (B, D, H, W)
    array, and the offsets of slices d, d+1, d−1 (wrapped) inside one volume."""
    d = tl.program_id(1).to(tl.int64)
    b = tl.program_id(2).to(tl.int64)
    d_next = tl.where(d + 1 >= D, 0, d + 1)
    d_prev = tl.where(d == 0, D - 1, d - 1)
    hw = H * W
    return b, d, d_prev, b * D * hw, d * hw, d_next * hw, d_prev * hw


@triton.jit
def pdhg3d_forward_step(
    x_ptr,  # (B, D, H, W) x_k in, x_{k+1} out (in place)
    x_bar_ptr,  # (B, D, H, W) x̄_k in
    x_bar_out_ptr,  # (B, D, H, W) x̄_{k+1} out
    p_ptr,  # (B, D, H, W) p_k in, p_{k+1} out (in place); with DATA_STEP Aᴴp_{k+1} in (read only)
    q_ptr,  # (B, 3, D, H, W) q_k in
    q_out_ptr,  # (B, 3, D, H, W) q_{k+1} out
    z_ptr,  # (B, D, H, W) data (not read with DATA_STEP)
    lam_ptr,  # Λ as a strided (B, 3, D, H, W) view: strides lam_sb, lam_sc, lam_sd, lam_sh, lam_sw (0 where broadcast)
    states_ptr,  # (B, D, H, W) uint8 clip states s₀ | s₁<<2 | s₂<<4 of this iteration (written iff WRITE_STATES)
    D,
    H,
    W,
    lam_sb,
    lam_sc,
    lam_sd,
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
    b, d, d_prev, vol, sl, sl_next, sl_prev = _slices(D, H, W)
    channel = D * H * W  # elements per channel of one volume; only ever added to a pointer (64-bit)
    # pointers to volume b; sl, sl_next, sl_prev and here, up, left are offsets inside it
    x_ptr += vol
    x_bar_ptr += vol
    x_bar_out_ptr += vol
    p_ptr += vol
    z_ptr += vol
    q0_base = q_ptr + 3 * vol
    q1_base = q0_base + channel
    q2_base = q1_base + channel
    q_out_ptr += 3 * vol
    states_ptr += vol
    here = i * W + j
    up = i_prev * W + j  # (i−1, j) in the slice
    left = i * W + j_prev  # (i, j−1)

    x_bar = tl.load(x_bar_ptr + sl + here, mask=in_bounds, other=0.0)
    x_bar_d_next = tl.load(x_bar_ptr + sl_next + here, mask=in_bounds, other=0.0)
    x_bar_d_prev = tl.load(x_bar_ptr + sl_prev + here, mask=in_bounds, other=0.0)
    x_bar_i_next = tl.load(x_bar_ptr + sl + i_next * W + j, mask=in_bounds, other=0.0)
    x_bar_i_prev = tl.load(x_bar_ptr + sl + up, mask=in_bounds, other=0.0)
    x_bar_j_next = tl.load(x_bar_ptr + sl + i * W + j_next, mask=in_bounds, other=0.0)
    x_bar_j_prev = tl.load(x_bar_ptr + sl + left, mask=in_bounds, other=0.0)

    lam_b = lam_ptr + b * lam_sb
    lam_here = i * lam_sh + j * lam_sw
    lam0 = tl.load(lam_b + d * lam_sd + lam_here, mask=in_bounds, other=0.0)
    lam1 = tl.load(lam_b + lam_sc + d * lam_sd + lam_here, mask=in_bounds, other=0.0)
    lam2 = tl.load(lam_b + lam_sc + lam_sc + d * lam_sd + lam_here, mask=in_bounds, other=0.0)
    lam0_d_prev = tl.load(lam_b + d_prev * lam_sd + lam_here, mask=in_bounds, other=0.0)
    lam1_i_prev = tl.load(lam_b + lam_sc + d * lam_sd + i_prev * lam_sh + j * lam_sw, mask=in_bounds, other=0.0)
    lam2_j_prev = tl.load(lam_b + lam_sc + lam_sc + d * lam_sd + i * lam_sh + j_prev * lam_sw, mask=in_bounds,
                          other=0.0)

    u0 = tl.load(q0_base + sl + here, mask=in_bounds, other=0.0) + sigma * (x_bar_d_next - x_bar)
    u1 = tl.load(q1_base + sl + here, mask=in_bounds, other=0.0) + sigma * (x_bar_i_next - x_bar)
    u2 = tl.load(q2_base + sl + here, mask=in_bounds, other=0.0) + sigma * (x_bar_j_next - x_bar)
    u0_d_prev = tl.load(q0_base + sl_prev + here, mask=in_bounds, other=0.0) + sigma * (x_bar - x_bar_d_prev)
    u1_i_prev = tl.load(q1_base + sl + up, mask=in_bounds, other=0.0) + sigma * (x_bar - x_bar_i_prev)
    u2_j_prev = tl.load(q2_base + sl + left, mask=in_bounds, other=0.0) + sigma * (x_bar - x_bar_j_prev)
    q0 = clip(u0, lam0)
    q1 = clip(u1, lam1)
    q2 = clip(u2, lam2)
    grad_T_q = ((clip(u0_d_prev, lam0_d_prev) - q0) + (clip(u1_i_prev, lam1_i_prev) - q1)
                + (clip(u2_j_prev, lam2_j_prev) - q2))

    x = tl.load(x_ptr + sl + here, mask=in_bounds, other=0.0)
    p = tl.load(p_ptr + sl + here, mask=in_bounds, other=0.0)  # with DATA_STEP: Aᴴp_{k+1}
    if not DATA_STEP:
        z = tl.load(z_ptr + sl + here, mask=in_bounds, other=0.0)
        p = (p + sigma * (x_bar - z)) / (1.0 + sigma)
    x_new = x - tau * p - tau * grad_T_q
    tl.store(x_ptr + sl + here, x_new, mask=in_bounds)
    tl.store(x_bar_out_ptr + sl + here, x_new + theta * (x_new - x), mask=in_bounds)
    if not DATA_STEP:
        tl.store(p_ptr + sl + here, p, mask=in_bounds)
    tl.store(q_out_ptr + sl + here, q0, mask=in_bounds)
    tl.store(q_out_ptr + channel + sl + here, q1, mask=in_bounds)
    tl.store(q_out_ptr + channel + channel + sl + here, q2, mask=in_bounds)

    if WRITE_STATES:
        record = (clip_state(u0, lam0) | (clip_state(u1, lam1) << STATE_BITS)
                  | (clip_state(u2, lam2) << (2 * STATE_BITS)))
        tl.store(states_ptr + sl + here, record.to(tl.uint8), mask=in_bounds)


@triton.jit
def _record(states_ptr, offset, in_bounds):
    """The record byte s₀ | s₁<<2 | s₂<<4 at the given element offsets, as int32."""
    return tl.load(states_ptr + offset, mask=in_bounds, other=0).to(tl.int32)


@triton.jit
def pdhg3d_adjoint_step(
    gx_ptr,  # (B, D, H, W) adjoint of x_{k+1} in
    gx_out_ptr,  # (B, D, H, W) adjoint of x_k out (double buffer: neighbours read gx)
    gx_bar_ptr,  # (B, D, H, W) adjoint of x̄_{k+1} in
    gx_bar_out_ptr,  # (B, D, H, W) adjoint of x̄_k out
    gp_ptr,  # (B, D, H, W) adjoint of p_{k+1} in, of p_k out (in place); with DATA_STEP σ/(1+σ)·Aᴴgp'' in
    gq_ptr,  # (B, 3, D, H, W) adjoint of q_{k+1} in
    gq_out_ptr,  # (B, 3, D, H, W) adjoint of q_k out
    gz_ptr,  # (B, D, H, W) accumulates ∂ℓ/∂z; with DATA_STEP receives a_k = gx_k + (1+θ)gx̄_k instead
    glam_ptr,  # (B, LAM_CHANNELS, D, H, W) accumulates ∂ℓ/∂Λ (unused if LAM_CHANNELS == 0)
    states_ptr,  # (B, D, H, W) uint8 clip states of iteration k
    D,
    H,
    W,
    params_ptr,  # (4,) in the data's dtype: τ, σ, θ, σ/(1+σ)
    LAM_CHANNELS: tl.constexpr,
    DATA_STEP: tl.constexpr,  # the data term's adjoint is the caller's (a forward operator)
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    i, j, in_bounds, i_next, i_prev, j_next, j_prev = tile(H, W, BLOCK_H, BLOCK_W)
    tau, sigma, theta, sigma_ratio = load_step_sizes(params_ptr)
    _, _, _, vol, sl, sl_next, sl_prev = _slices(D, H, W)
    channel = D * H * W  # elements per channel of one volume; only ever added to a pointer (64-bit)
    # pointers to volume b; sl, sl_next, sl_prev and here, up, left are offsets inside it
    gx_ptr += vol
    gx_out_ptr += vol
    gx_bar_ptr += vol
    gx_bar_out_ptr += vol
    gp_ptr += vol
    gz_ptr += vol
    states_ptr += vol
    gq0_base = gq_ptr + 3 * vol
    gq1_base = gq0_base + channel
    gq2_base = gq1_base + channel
    gq_out_ptr += 3 * vol
    here = i * W + j
    up = i_prev * W + j
    left = i * W + j_prev
    one_plus_theta = 1.0 + theta

    # a = gx' + (1+θ) gx̄' at the voxel and its six neighbours
    a = adjoint_of_x(gx_ptr, gx_bar_ptr, sl + here, one_plus_theta, in_bounds)
    a_d_next = adjoint_of_x(gx_ptr, gx_bar_ptr, sl_next + here, one_plus_theta, in_bounds)
    a_d_prev = adjoint_of_x(gx_ptr, gx_bar_ptr, sl_prev + here, one_plus_theta, in_bounds)
    a_i_next = adjoint_of_x(gx_ptr, gx_bar_ptr, sl + i_next * W + j, one_plus_theta, in_bounds)
    a_i_prev = adjoint_of_x(gx_ptr, gx_bar_ptr, sl + up, one_plus_theta, in_bounds)
    a_j_next = adjoint_of_x(gx_ptr, gx_bar_ptr, sl + i * W + j_next, one_plus_theta, in_bounds)
    a_j_prev = adjoint_of_x(gx_ptr, gx_bar_ptr, sl + left, one_plus_theta, in_bounds)

    # gq'' = gq' − τ∇a, here and at the (d−1), (i−1), (j−1) neighbours
    gq0 = tl.load(gq0_base + sl + here, mask=in_bounds, other=0.0) - tau * (a_d_next - a)
    gq1 = tl.load(gq1_base + sl + here, mask=in_bounds, other=0.0) - tau * (a_i_next - a)
    gq2 = tl.load(gq2_base + sl + here, mask=in_bounds, other=0.0) - tau * (a_j_next - a)
    gq0_d_prev = tl.load(gq0_base + sl_prev + here, mask=in_bounds, other=0.0) - tau * (a - a_d_prev)
    gq1_i_prev = tl.load(gq1_base + sl + up, mask=in_bounds, other=0.0) - tau * (a - a_i_prev)
    gq2_j_prev = tl.load(gq2_base + sl + left, mask=in_bounds, other=0.0) - tau * (a - a_j_prev)

    record = _record(states_ptr, sl + here, in_bounds)
    s0 = state_of(record, 0)
    s1 = state_of(record, 1)
    s2 = state_of(record, 2)
    s0_d_prev = state_of(_record(states_ptr, sl_prev + here, in_bounds), 0)
    s1_i_prev = state_of(_record(states_ptr, sl + up, in_bounds), 1)
    s2_j_prev = state_of(_record(states_ptr, sl + left, in_bounds), 2)

    # gu = M ∘ gq'' and ∇ᵀgu
    gu0 = pass_if_inside(s0, gq0)
    gu1 = pass_if_inside(s1, gq1)
    gu2 = pass_if_inside(s2, gq2)
    grad_T_gu = ((pass_if_inside(s0_d_prev, gq0_d_prev) - gu0) + (pass_if_inside(s1_i_prev, gq1_i_prev) - gu1)
                 + (pass_if_inside(s2_j_prev, gq2_j_prev) - gu2))

    if LAM_CHANNELS > 0:  # gΛ += S ∘ gq'', summed over directions for a shared Λ
        d0 = lambda_adjoint(s0, gq0)
        d1 = lambda_adjoint(s1, gq1)
        d2 = lambda_adjoint(s2, gq2)
        glam_base = glam_ptr + LAM_CHANNELS * vol + sl  # (b, channel 0, slice d) of (B, C, D, H, W)
        if LAM_CHANNELS == 1:
            g = tl.load(glam_base + here, mask=in_bounds, other=0.0)
            tl.store(glam_base + here, g + d0 + d1 + d2, mask=in_bounds)
        else:
            g0 = tl.load(glam_base + here, mask=in_bounds, other=0.0)
            tl.store(glam_base + here, g0 + d0, mask=in_bounds)
            g1 = tl.load(glam_base + channel + here, mask=in_bounds, other=0.0)
            tl.store(glam_base + channel + here, g1 + d1, mask=in_bounds)
            g2 = tl.load(glam_base + channel + channel + here, mask=in_bounds, other=0.0)
            tl.store(glam_base + channel + channel + here, g2 + d2, mask=in_bounds)

    gx_bar_in = tl.load(gx_bar_ptr + sl + here, mask=in_bounds, other=0.0)
    if DATA_STEP:  # gp_ptr holds σ/(1+σ)·Aᴴgp'', the caller's
        gx_bar_new = sigma * grad_T_gu + tl.load(gp_ptr + sl + here, mask=in_bounds, other=0.0)
        tl.store(gx_bar_out_ptr + sl + here, gx_bar_new, mask=in_bounds)
    else:
        gp = tl.load(gp_ptr + sl + here, mask=in_bounds, other=0.0) - tau * a  # gp''
        tl.store(gx_bar_out_ptr + sl + here, sigma * grad_T_gu + sigma_ratio * gp, mask=in_bounds)
    tl.store(gq_out_ptr + sl + here, gu0, mask=in_bounds)
    tl.store(gq_out_ptr + channel + sl + here, gu1, mask=in_bounds)
    tl.store(gq_out_ptr + channel + channel + sl + here, gu2, mask=in_bounds)
    if DATA_STEP:  # gx_k, and a_k = gx_k + (1+θ)gx̄_k: the input of the caller's next data step
        gx_new = a - theta * gx_bar_in
        tl.store(gx_out_ptr + sl + here, gx_new, mask=in_bounds)
        tl.store(gz_ptr + sl + here, gx_new + one_plus_theta * gx_bar_new, mask=in_bounds)
    else:
        tl.store(gx_out_ptr + sl + here, a - theta * gx_bar_in, mask=in_bounds)
        tl.store(gp_ptr + sl + here, gp / (1.0 + sigma), mask=in_bounds)
        gz = tl.load(gz_ptr + sl + here, mask=in_bounds, other=0.0)
        tl.store(gz_ptr + sl + here, gz - sigma_ratio * gp, mask=in_bounds)
