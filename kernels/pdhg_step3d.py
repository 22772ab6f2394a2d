"""Fused PDHG iteration and its adjoint for volumes and (x, y, t) sequences, as Triton kernels.

The 3-D counterpart of :mod:`tvfast.kernels.pdhg_step` (docs/method.md §9):
the iteration of §3 and the adjoint recursion of §4 with
∇x = (∂_D x, ∂_H x, ∂_W x), periodic forward differences. Data are
(B, D, H, W) contiguous, duals (B, 3, D, H, W) with channel c the
difference along axis c of (D, H, W).

Forward, one launch per iteration. The grid is (tiles of an H×W slice, D, B):
a program owns a BLOCK_H×BLOCK_W tile of slice d of volume b, and reads a
one-voxel halo in all three axes (slices d±1, rows i±1, columns j±1, all
wrapped). ∇ᵀq_{k+1} at voxel (d, i, j) needs q₀_{k+1}(d−1, i, j),
q₁_{k+1}(d, i−1, j) and q₂_{k+1}(d, i, j−1), owned by neighbouring voxels
(possibly another program), so the program *recomputes* them from x̄_k and
q_k (docs/method.md §5.1)::

    u₀ = q₀ + σ(x̄(d+1,i,j) − x̄)   u₁ = q₁ + σ(x̄(d,i+1,j) − x̄)   u₂ = q₂ + σ(x̄(d,i,j+1) − x̄)
    q_c' = clip(u_c, ±Λ_c)                                      at the voxel
    q₀'(d−1,i,j), q₁'(d,i−1,j), q₂'(d,i,j−1)                    the same, at the three neighbours
    ∇ᵀq'  = Σ_c q_c'(voxel − e_c) − q_c'(voxel)
    p'    = (p + σ(x̄ − z)) / (1 + σ)
    x'    = x − τp' − τ∇ᵀq' ;   x̄' = x' + θ(x' − x)

x̄ and q (in the backward gx, gx̄ and gq) are read at neighbours, so they are
double-buffered (read from one buffer, written to the other); x and p (gp,
gz, gΛ) are only touched at the program's own voxels and are updated in
place.

Mask. With a backward to follow, the kernel writes the clip states of the
three dual entries (INSIDE 0 / HIGH 1 / LOW 2, tie rule of
:mod:`tvfast.solver.clip_states`: HIGH if u ≥ Λ, else LOW if u ≤ −Λ) as one byte per
voxel, ``s₀ | s₁ << 2 | s₂ << 4`` — the layout of :mod:`tvfast.solver.cpu3d`,
bit for bit: (B, D, H, W) uint8 per iteration, 1 byte per voxel per iteration.

Backward, one launch per iteration k = T−1 … 0. With a = gx' + (1+θ)gx̄',
everything is local except ∇a and ∇ᵀgu; gq'' = gq' − τ∇a is recomputed at the
(d−1), (i−1) and (j−1) neighbours, whose mask bytes are read too::

    gp''  = gp' − τa ;            gq''  = gq' − τ∇a
    gu    = M ∘ gq'' ;            gΛ   += S ∘ gq''   (summed over c for a shared Λ)
    gq_k  = gu ;                  gx̄_k  = σ∇ᵀgu + σ/(1+σ)·gp''
    gp_k  = gp''/(1+σ) ;          gz   −= σ/(1+σ)·gp'' ;   gx_k = a − θgx̄'

Every load and store is masked with the tile's in-slice lanes (the
interpreter does no bounds checking); neighbour indices are wrapped before
use. τ, σ, θ, σ/(1+σ) come as a small tensor in the data's dtype. No block
pointers; only features available in Triton 3.6. Offsets of volumes are
int64; one volume must have fewer than 2³¹ voxels.

Traffic of the forward: reads x, x̄, p, q₀, q₁, q₂, z, Λ and writes x, x̄, p,
q₀, q₁, q₂ — 14 float32 = 56 B per voxel per iteration (+1 B of mask).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tvfast.kernels.pdhg_step import _clip, _clip_state, _params, _step_sizes, _tile, pick_blocks

__all__ = ["pdhg_step3d_fwd", "pdhg_step3d_bwd", "solve_forward", "solve_backward"]


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
def pdhg_step3d_fwd(
    x_ptr,  # (B, D, H, W) x_k in, x_{k+1} out (in place)
    x_bar_ptr,  # (B, D, H, W) x̄_k in
    x_bar_out_ptr,  # (B, D, H, W) x̄_{k+1} out
    p_ptr,  # (B, D, H, W) p_k in, p_{k+1} out (in place)
    q_ptr,  # (B, 3, D, H, W) q_k in
    q_out_ptr,  # (B, 3, D, H, W) q_{k+1} out
    z_ptr,  # (B, D, H, W) data
    lam_ptr,  # Λ as a strided (B, 3, D, H, W) view: strides lam_sb, lam_sc, lam_sd, lam_sh, lam_sw (0 where broadcast)
    mask_ptr,  # (B, D, H, W) uint8 clip states s₀ | s₁<<2 | s₂<<4 of this iteration (written iff WRITE_MASK)
    D,
    H,
    W,
    lam_sb,
    lam_sc,
    lam_sd,
    lam_sh,
    lam_sw,
    params_ptr,  # (4,) in z's dtype: τ, σ, θ, σ/(1+σ)
    WRITE_MASK: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    i, j, inside, i_next, i_prev, j_next, j_prev = _tile(H, W, BLOCK_H, BLOCK_W)
    tau, sigma, theta, _ = _step_sizes(params_ptr)
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
    mask_ptr += vol
    here = i * W + j
    up = i_prev * W + j  # (i−1, j) in the slice
    left = i * W + j_prev  # (i, j−1)

    x_bar = tl.load(x_bar_ptr + sl + here, mask=inside, other=0.0)
    x_bar_d_next = tl.load(x_bar_ptr + sl_next + here, mask=inside, other=0.0)
    x_bar_d_prev = tl.load(x_bar_ptr + sl_prev + here, mask=inside, other=0.0)
    x_bar_i_next = tl.load(x_bar_ptr + sl + i_next * W + j, mask=inside, other=0.0)
    x_bar_i_prev = tl.load(x_bar_ptr + sl + up, mask=inside, other=0.0)
    x_bar_j_next = tl.load(x_bar_ptr + sl + i * W + j_next, mask=inside, other=0.0)
    x_bar_j_prev = tl.load(x_bar_ptr + sl + left, mask=inside, other=0.0)

    lam_b = lam_ptr + b * lam_sb
    lam_here = i * lam_sh + j * lam_sw
    lam0 = tl.load(lam_b + d * lam_sd + lam_here, mask=inside, other=0.0)
    lam1 = tl.load(lam_b + lam_sc + d * lam_sd + lam_here, mask=inside, other=0.0)
    lam2 = tl.load(lam_b + lam_sc + lam_sc + d * lam_sd + lam_here, mask=inside, other=0.0)
    lam0_d_prev = tl.load(lam_b + d_prev * lam_sd + lam_here, mask=inside, other=0.0)
    lam1_i_prev = tl.load(lam_b + lam_sc + d * lam_sd + i_prev * lam_sh + j * lam_sw, mask=inside, other=0.0)
    lam2_j_prev = tl.load(lam_b + lam_sc + lam_sc + d * lam_sd + i * lam_sh + j_prev * lam_sw, mask=inside, other=0.0)

    u0 = tl.load(q0_base + sl + here, mask=inside, other=0.0) + sigma * (x_bar_d_next - x_bar)
    u1 = tl.load(q1_base + sl + here, mask=inside, other=0.0) + sigma * (x_bar_i_next - x_bar)
    u2 = tl.load(q2_base + sl + here, mask=inside, other=0.0) + sigma * (x_bar_j_next - x_bar)
    u0_d_prev = tl.load(q0_base + sl_prev + here, mask=inside, other=0.0) + sigma * (x_bar - x_bar_d_prev)
    u1_i_prev = tl.load(q1_base + sl + up, mask=inside, other=0.0) + sigma * (x_bar - x_bar_i_prev)
    u2_j_prev = tl.load(q2_base + sl + left, mask=inside, other=0.0) + sigma * (x_bar - x_bar_j_prev)
    q0 = _clip(u0, lam0)
    q1 = _clip(u1, lam1)
    q2 = _clip(u2, lam2)
    grad_T_q = ((_clip(u0_d_prev, lam0_d_prev) - q0) + (_clip(u1_i_prev, lam1_i_prev) - q1)
                + (_clip(u2_j_prev, lam2_j_prev) - q2))

    x = tl.load(x_ptr + sl + here, mask=inside, other=0.0)
    p = tl.load(p_ptr + sl + here, mask=inside, other=0.0)
    z = tl.load(z_ptr + sl + here, mask=inside, other=0.0)
    p = (p + sigma * (x_bar - z)) / (1.0 + sigma)
    x_new = x - tau * p - tau * grad_T_q
    tl.store(x_ptr + sl + here, x_new, mask=inside)
    tl.store(x_bar_out_ptr + sl + here, x_new + theta * (x_new - x), mask=inside)
    tl.store(p_ptr + sl + here, p, mask=inside)
    tl.store(q_out_ptr + sl + here, q0, mask=inside)
    tl.store(q_out_ptr + channel + sl + here, q1, mask=inside)
    tl.store(q_out_ptr + channel + channel + sl + here, q2, mask=inside)

    if WRITE_MASK:
        state = _clip_state(u0, lam0) | (_clip_state(u1, lam1) << 2) | (_clip_state(u2, lam2) << 4)
        tl.store(mask_ptr + sl + here, state.to(tl.uint8), mask=inside)


@triton.jit
def _adjoint_a(gx_ptr, gx_bar_ptr, offset, c, inside):
    """a = gx' + (1+θ)·gx̄' at the given element offsets."""
    return tl.load(gx_ptr + offset, mask=inside, other=0.0) + c * tl.load(gx_bar_ptr + offset, mask=inside, other=0.0)


@triton.jit
def _state_byte(mask_ptr, offset, inside):
    """The 3×2-bit clip states s₀ | s₁<<2 | s₂<<4 at the given element offsets, as int32."""
    return tl.load(mask_ptr + offset, mask=inside, other=0).to(tl.int32)


@triton.jit
def pdhg_step3d_bwd(
    gx_ptr,  # (B, D, H, W) adjoint of x_{k+1} in
    gx_out_ptr,  # (B, D, H, W) adjoint of x_k out (double buffer: neighbours read gx)
    gx_bar_ptr,  # (B, D, H, W) adjoint of x̄_{k+1} in
    gx_bar_out_ptr,  # (B, D, H, W) adjoint of x̄_k out
    gp_ptr,  # (B, D, H, W) adjoint of p_{k+1} in, of p_k out (in place)
    gq_ptr,  # (B, 3, D, H, W) adjoint of q_{k+1} in
    gq_out_ptr,  # (B, 3, D, H, W) adjoint of q_k out
    gz_ptr,  # (B, D, H, W) accumulates ∂ℓ/∂z
    glam_ptr,  # (B, LAM_CHANNELS, D, H, W) accumulates ∂ℓ/∂Λ (unused if LAM_CHANNELS == 0)
    mask_ptr,  # (B, D, H, W) uint8 clip states of iteration k
    D,
    H,
    W,
    params_ptr,  # (4,) in the data's dtype: τ, σ, θ, σ/(1+σ)
    LAM_CHANNELS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    i, j, inside, i_next, i_prev, j_next, j_prev = _tile(H, W, BLOCK_H, BLOCK_W)
    tau, sigma, theta, k = _step_sizes(params_ptr)
    _, _, _, vol, sl, sl_next, sl_prev = _slices(D, H, W)
    channel = D * H * W  # elements per channel of one volume; only ever added to a pointer (64-bit)
    # pointers to volume b; sl, sl_next, sl_prev and here, up, left are offsets inside it
    gx_ptr += vol
    gx_out_ptr += vol
    gx_bar_ptr += vol
    gx_bar_out_ptr += vol
    gp_ptr += vol
    gz_ptr += vol
    mask_ptr += vol
    gq0_base = gq_ptr + 3 * vol
    gq1_base = gq0_base + channel
    gq2_base = gq1_base + channel
    gq_out_ptr += 3 * vol
    here = i * W + j
    up = i_prev * W + j
    left = i * W + j_prev
    c = 1.0 + theta

    # a = gx' + (1+θ) gx̄' at the voxel and its six neighbours
    a = _adjoint_a(gx_ptr, gx_bar_ptr, sl + here, c, inside)
    a_d_next = _adjoint_a(gx_ptr, gx_bar_ptr, sl_next + here, c, inside)
    a_d_prev = _adjoint_a(gx_ptr, gx_bar_ptr, sl_prev + here, c, inside)
    a_i_next = _adjoint_a(gx_ptr, gx_bar_ptr, sl + i_next * W + j, c, inside)
    a_i_prev = _adjoint_a(gx_ptr, gx_bar_ptr, sl + up, c, inside)
    a_j_next = _adjoint_a(gx_ptr, gx_bar_ptr, sl + i * W + j_next, c, inside)
    a_j_prev = _adjoint_a(gx_ptr, gx_bar_ptr, sl + left, c, inside)

    gq0 = tl.load(gq0_base + sl + here, mask=inside, other=0.0) - tau * (a_d_next - a)
    gq1 = tl.load(gq1_base + sl + here, mask=inside, other=0.0) - tau * (a_i_next - a)
    gq2 = tl.load(gq2_base + sl + here, mask=inside, other=0.0) - tau * (a_j_next - a)
    gq0_d_prev = tl.load(gq0_base + sl_prev + here, mask=inside, other=0.0) - tau * (a - a_d_prev)
    gq1_i_prev = tl.load(gq1_base + sl + up, mask=inside, other=0.0) - tau * (a - a_i_prev)
    gq2_j_prev = tl.load(gq2_base + sl + left, mask=inside, other=0.0) - tau * (a - a_j_prev)

    state = _state_byte(mask_ptr, sl + here, inside)
    s0 = state & 3
    s1 = (state >> 2) & 3
    s2 = (state >> 4) & 3
    s0_d_prev = _state_byte(mask_ptr, sl_prev + here, inside) & 3
    s1_i_prev = (_state_byte(mask_ptr, sl + up, inside) >> 2) & 3
    s2_j_prev = (_state_byte(mask_ptr, sl + left, inside) >> 4) & 3

    gu0 = tl.where(s0 == 0, gq0, 0.0)
    gu1 = tl.where(s1 == 0, gq1, 0.0)
    gu2 = tl.where(s2 == 0, gq2, 0.0)
    grad_T_gu = ((tl.where(s0_d_prev == 0, gq0_d_prev, 0.0) - gu0) + (tl.where(s1_i_prev == 0, gq1_i_prev, 0.0) - gu1)
                 + (tl.where(s2_j_prev == 0, gq2_j_prev, 0.0) - gu2))

    if LAM_CHANNELS > 0:
        d0 = tl.where(s0 == 1, gq0, tl.where(s0 == 2, -gq0, 0.0))
        d1 = tl.where(s1 == 1, gq1, tl.where(s1 == 2, -gq1, 0.0))
        d2 = tl.where(s2 == 1, gq2, tl.where(s2 == 2, -gq2, 0.0))
        glam_base = glam_ptr + LAM_CHANNELS * vol + sl  # (b, channel 0, slice d) of (B, C, D, H, W)
        if LAM_CHANNELS == 1:
            g = tl.load(glam_base + here, mask=inside, other=0.0)
            tl.store(glam_base + here, g + d0 + d1 + d2, mask=inside)
        else:
            g0 = tl.load(glam_base + here, mask=inside, other=0.0)
            tl.store(glam_base + here, g0 + d0, mask=inside)
            g1 = tl.load(glam_base + channel + here, mask=inside, other=0.0)
            tl.store(glam_base + channel + here, g1 + d1, mask=inside)
            g2 = tl.load(glam_base + channel + channel + here, mask=inside, other=0.0)
            tl.store(glam_base + channel + channel + here, g2 + d2, mask=inside)

    gx_bar_in = tl.load(gx_bar_ptr + sl + here, mask=inside, other=0.0)
    gp = tl.load(gp_ptr + sl + here, mask=inside, other=0.0) - tau * a
    tl.store(gx_bar_out_ptr + sl + here, sigma * grad_T_gu + k * gp, mask=inside)
    tl.store(gq_out_ptr + sl + here, gu0, mask=inside)
    tl.store(gq_out_ptr + channel + sl + here, gu1, mask=inside)
    tl.store(gq_out_ptr + channel + channel + sl + here, gu2, mask=inside)
    tl.store(gx_out_ptr + sl + here, a - theta * gx_bar_in, mask=inside)
    tl.store(gp_ptr + sl + here, gp / (1.0 + sigma), mask=inside)
    gz = tl.load(gz_ptr + sl + here, mask=inside, other=0.0)
    tl.store(gz_ptr + sl + here, gz - k * gp, mask=inside)


def _grid(batch: int, depth: int, height: int, width: int, block_h: int, block_w: int) -> tuple[int, int, int]:
    """(tiles per H×W slice, D, B): D and B on grid axes 1 and 2 (≤ 65535 each on CUDA)."""
    return triton.cdiv(height, block_h) * triton.cdiv(width, block_w), depth, batch


def _check_volume_size(depth: int, height: int, width: int) -> None:
    # Offsets inside one volume are int32 in the kernels (volume offsets are int64).
    if depth * height * width >= 2**31:
        raise ValueError(f"z: one volume may hold fewer than 2**31 voxels on the GPU, got {depth}×{height}×{width}")


def solve_forward(z, lam, n_iter: int, tau: float, sigma: float, theta: float, need_mask: bool):
    """Run ``n_iter`` fused iterations on z (B, D, H, W) contiguous.

    ``lam`` is any 5-D tensor broadcastable to (B, 3, D, H, W) with channel
    dim 1 or 3. Returns (x_T, mask (T, B, D, H, W) uint8 or None).
    """
    batch, depth, height, width = z.shape
    _check_volume_size(depth, height, width)
    lam_full = lam.expand(batch, 3, depth, height, width)
    x = z.clone()
    p = torch.zeros_like(z)
    x_bar = [z.clone(), torch.empty_like(z)]
    dual_shape = (batch, 3, depth, height, width)
    q = [z.new_zeros(dual_shape), torch.empty(dual_shape, dtype=z.dtype, device=z.device)]
    mask = torch.empty(n_iter if need_mask else 1, batch, depth, height, width, dtype=torch.uint8, device=z.device)
    params = _params(tau, sigma, theta, z)
    block_h, block_w, warps = pick_blocks(height, width, z.device)
    grid = _grid(batch, depth, height, width, block_h, block_w)
    for k in range(n_iter):
        src, dst = k % 2, (k + 1) % 2
        pdhg_step3d_fwd[grid](
            x, x_bar[src], x_bar[dst], p, q[src], q[dst], z, lam_full, mask[k if need_mask else 0],
            depth, height, width, *lam_full.stride(), params,
            WRITE_MASK=need_mask, BLOCK_H=block_h, BLOCK_W=block_w, num_warps=warps,
        )  # fmt: skip
    return x, (mask if need_mask else None)


def solve_backward(grad_x, mask, lam_channels: int, need_glam: bool, tau: float, sigma: float, theta: float):
    """Adjoint pass over the stored masks (T, B, D, H, W).

    Returns (∂ℓ/∂z (B, D, H, W), ∂ℓ/∂Λ (B, C, D, H, W) or None), C = ``lam_channels`` (1 or 3).
    """
    n_iter, batch, depth, height, width = mask.shape
    gx = [grad_x.contiguous().clone(), torch.empty_like(grad_x, memory_format=torch.contiguous_format)]
    gp = torch.zeros_like(gx[0])
    gz = torch.zeros_like(gp)
    gx_bar = [torch.zeros_like(gp), torch.empty_like(gp)]
    dual_shape = (batch, 3, depth, height, width)
    gq = [gp.new_zeros(dual_shape), torch.empty(dual_shape, dtype=gp.dtype, device=gp.device)]
    glam = gp.new_zeros(batch, lam_channels, depth, height, width) if need_glam else gz  # dummy pointer if unused
    params = _params(tau, sigma, theta, gp)
    block_h, block_w, warps = pick_blocks(height, width, gp.device)
    grid = _grid(batch, depth, height, width, block_h, block_w)
    for j in range(n_iter):
        k = n_iter - 1 - j
        src, dst = j % 2, (j + 1) % 2
        pdhg_step3d_bwd[grid](
            gx[src], gx[dst], gx_bar[src], gx_bar[dst], gp, gq[src], gq[dst], gz, glam, mask[k],
            depth, height, width, params,
            LAM_CHANNELS=lam_channels if need_glam else 0, BLOCK_H=block_h, BLOCK_W=block_w, num_warps=warps,
        )  # fmt: skip
    gz += gx[n_iter % 2]
    gz += gx_bar[n_iter % 2]
    return gz, (glam if need_glam else None)
