"""Fused PDHG iteration and its adjoint as Triton kernels, with their launchers.

Forward (docs/method.md §3), one launch per iteration. A program owns a BLOCK_H×BLOCK_W
tile of one image and reads a one-pixel halo. ∇ᵀq_{k+1} at pixel (i, j) needs
q₀_{k+1}(i−1, j) and q₁_{k+1}(i, j−1), which belong to neighbouring pixels,
so the program *recomputes* them from x̄_k and q_k instead of waiting for
their owners::

    u₀(i,j)   = q₀(i,j)   + σ(x̄(i+1,j) − x̄(i,j))     q₀' = clip(u₀, ±Λ₀(i,j))
    u₁(i,j)   = q₁(i,j)   + σ(x̄(i,j+1) − x̄(i,j))     q₁' = clip(u₁, ±Λ₁(i,j))
    u₀(i−1,j) = q₀(i−1,j) + σ(x̄(i,j) − x̄(i−1,j))     (same clip with Λ₀(i−1,j))
    u₁(i,j−1) = q₁(i,j−1) + σ(x̄(i,j) − x̄(i,j−1))     (same clip with Λ₁(i,j−1))
    ∇ᵀq'      = q₀'(i−1,j) − q₀'(i,j) + q₁'(i,j−1) − q₁'(i,j)
    p'        = (p + σ(x̄ − z)) / (1 + σ)
    x'        = x − τp' − τ∇ᵀq' ;   x̄' = x' + θ(x' − x)

Indices wrap periodically. x̄ and q (and in the backward gx, gx̄ and gq)
are read at neighbours, so they are double-buffered (read from one buffer, written to the other); x, p are only
read at the program's own pixels and are updated in place.

When a backward pass will follow, the kernel also writes the clip state of
each dual entry (INSIDE 0 / HIGH 1 / LOW 2, see :mod:`tvfast.solver.clip_states`,
tie rule: HIGH if u ≥ Λ, else LOW if u ≤ −Λ): a pixel's nibble is
``s₀ | s₁ << 2`` and columns 2m, 2m+1 share byte m (low, high nibble).

Backward (docs/method.md §4), one launch per iteration k = T−1 … 0. With
a = gx' + (1+θ)gx̄' (the adjoint of x_{k+1} once x̄_{k+1} has been
propagated), everything is local except ∇a and ∇ᵀgu, handled as above by
recomputing gq'' = gq' − τ∇a at the (i−1, j) and (i, j−1) neighbours::

    gp''  = gp' − τa ;            gq''  = gq' − τ∇a
    gu    = M ∘ gq'' ;            gΛ   += S ∘ gq''
    gq_k  = gu ;                  gx̄_k  = σ∇ᵀgu + σ/(1+σ)·gp''
    gp_k  = gp''/(1+σ) ;          gz   −= σ/(1+σ)·gp'' ;   gx_k = a − θgx̄'

Step sizes reach the kernels through a small tensor in the data's dtype:
Python float arguments would be float32 on GPU, and σ/(1+σ) computed in the
kernel would be rounded to float32 even for float64 data.

Masks: every load and store is masked with the tile's in-image lanes (the
interpreter does no bounds checking); neighbour indices are wrapped before
they are used, so they always stay inside the image.

Traffic of the forward: reads x, x̄, p, q₀, q₁, z, Λ and writes x, x̄, p,
q₀, q₁ — 12 float32 = 48 B/pixel/iteration (+0.5 B of mask), the roofline
reported in ``benchmarks/``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from tvfast.solver.clip_states import packed_width

__all__ = ["pdhg_step_fwd", "pdhg_step_bwd", "solve_forward", "solve_backward", "pick_blocks"]


@triton.jit
def _tile(H, W, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """Row/column indices of this program's tile, their periodic neighbours, and the in-image mask."""
    pid = tl.program_id(0)
    n_tiles_w = tl.cdiv(W, BLOCK_W)
    i = (pid // n_tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    j = (pid % n_tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    inside = (i < H) & (j < W)
    i_next = tl.where(i + 1 >= H, 0, i + 1)
    i_prev = tl.where(i == 0, H - 1, i - 1)
    j_next = tl.where(j + 1 >= W, 0, j + 1)
    j_prev = tl.where(j == 0, W - 1, j - 1)
    return i, j, inside, i_next, i_prev, j_next, j_prev


@triton.jit
def _step_sizes(params_ptr):
    """τ, σ, θ, σ/(1+σ) in the data's dtype (Python floats would be float32 on GPU)."""
    return tl.load(params_ptr), tl.load(params_ptr + 1), tl.load(params_ptr + 2), tl.load(params_ptr + 3)


@triton.jit
def _clip(u, lam):
    return tl.minimum(tl.maximum(u, -lam), lam)


@triton.jit
def _clip_state(u, lam):
    """INSIDE 0, HIGH 1 (u ≥ Λ), LOW 2 (u ≤ −Λ, not HIGH), as int32."""
    return tl.where(u >= lam, 1, tl.where(u <= -lam, 2, 0))


@triton.jit
def pdhg_step_fwd(
    x_ptr,  # (B, H, W) x_k in, x_{k+1} out (in place)
    x_bar_ptr,  # (B, H, W) x̄_k in
    x_bar_out_ptr,  # (B, H, W) x̄_{k+1} out
    p_ptr,  # (B, H, W) p_k in, p_{k+1} out (in place)
    q_ptr,  # (B, 2, H, W) q_k in
    q_out_ptr,  # (B, 2, H, W) q_{k+1} out
    z_ptr,  # (B, H, W) data
    lam_ptr,  # Λ as a strided (B, 2, H, W) view: strides lam_sb, lam_sc, lam_sh, lam_sw (0 where broadcast)
    mask_ptr,  # (B, H, Wp) uint8 packed clip states of this iteration (written iff WRITE_MASK)
    H,
    W,
    Wp,
    lam_sb,
    lam_sc,
    lam_sh,
    lam_sw,
    params_ptr,  # (4,) in z's dtype: τ, σ, θ, σ/(1+σ)
    WRITE_MASK: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    i, j, inside, i_next, i_prev, j_next, j_prev = _tile(H, W, BLOCK_H, BLOCK_W)
    tau, sigma, theta, _ = _step_sizes(params_ptr)
    b = tl.program_id(1).to(tl.int64)
    img = b * H * W
    q0_base = q_ptr + 2 * img
    q1_base = q0_base + H * W
    lam0_base = lam_ptr + b * lam_sb
    lam1_base = lam0_base + lam_sc
    here = i * W + j

    x_bar = tl.load(x_bar_ptr + img + here, mask=inside, other=0.0)
    x_bar_i_next = tl.load(x_bar_ptr + img + i_next * W + j, mask=inside, other=0.0)
    x_bar_i_prev = tl.load(x_bar_ptr + img + i_prev * W + j, mask=inside, other=0.0)
    x_bar_j_next = tl.load(x_bar_ptr + img + i * W + j_next, mask=inside, other=0.0)
    x_bar_j_prev = tl.load(x_bar_ptr + img + i * W + j_prev, mask=inside, other=0.0)

    lam0 = tl.load(lam0_base + i * lam_sh + j * lam_sw, mask=inside, other=0.0)
    lam1 = tl.load(lam1_base + i * lam_sh + j * lam_sw, mask=inside, other=0.0)
    lam0_i_prev = tl.load(lam0_base + i_prev * lam_sh + j * lam_sw, mask=inside, other=0.0)
    lam1_j_prev = tl.load(lam1_base + i * lam_sh + j_prev * lam_sw, mask=inside, other=0.0)

    u0 = tl.load(q0_base + here, mask=inside, other=0.0) + sigma * (x_bar_i_next - x_bar)
    u1 = tl.load(q1_base + here, mask=inside, other=0.0) + sigma * (x_bar_j_next - x_bar)
    u0_i_prev = tl.load(q0_base + i_prev * W + j, mask=inside, other=0.0) + sigma * (x_bar - x_bar_i_prev)
    u1_j_prev = tl.load(q1_base + i * W + j_prev, mask=inside, other=0.0) + sigma * (x_bar - x_bar_j_prev)
    q0 = _clip(u0, lam0)
    q1 = _clip(u1, lam1)
    grad_T_q = (_clip(u0_i_prev, lam0_i_prev) - q0) + (_clip(u1_j_prev, lam1_j_prev) - q1)

    x = tl.load(x_ptr + img + here, mask=inside, other=0.0)
    p = tl.load(p_ptr + img + here, mask=inside, other=0.0)
    z = tl.load(z_ptr + img + here, mask=inside, other=0.0)
    p = (p + sigma * (x_bar - z)) / (1.0 + sigma)
    x_new = x - tau * p - tau * grad_T_q
    tl.store(x_ptr + img + here, x_new, mask=inside)
    tl.store(x_bar_out_ptr + img + here, x_new + theta * (x_new - x), mask=inside)
    tl.store(p_ptr + img + here, p, mask=inside)
    tl.store(q_out_ptr + 2 * img + here, q0, mask=inside)
    tl.store(q_out_ptr + 2 * img + H * W + here, q1, mask=inside)

    if WRITE_MASK:
        nibble = tl.where(inside, _clip_state(u0, lam0) | (_clip_state(u1, lam1) << 2), 0)
        even, odd = tl.split(tl.reshape(nibble, (BLOCK_H, BLOCK_W // 2, 2)))
        m = (tl.program_id(0) % tl.cdiv(W, BLOCK_W)) * (BLOCK_W // 2) + tl.arange(0, BLOCK_W // 2)[None, :]
        tl.store(mask_ptr + b * H * Wp + i * Wp + m, (even | (odd << 4)).to(tl.uint8), mask=(i < H) & (m < Wp))


@triton.jit
def _state_at(mask_ptr, row, col, Wp, inside):
    """2×2-bit clip states of pixel (row, col) from the packed mask."""
    byte = tl.load(mask_ptr + row * Wp + col // 2, mask=inside, other=0).to(tl.int32)
    return (byte >> ((col % 2) * 4)) & 15


@triton.jit
def pdhg_step_bwd(
    gx_ptr,  # (B, H, W) adjoint of x_{k+1} in
    gx_out_ptr,  # (B, H, W) adjoint of x_k out (double buffer: neighbours read gx)
    gx_bar_ptr,  # (B, H, W) adjoint of x̄_{k+1} in
    gx_bar_out_ptr,  # (B, H, W) adjoint of x̄_k out
    gp_ptr,  # (B, H, W) adjoint of p_{k+1} in, of p_k out (in place)
    gq_ptr,  # (B, 2, H, W) adjoint of q_{k+1} in
    gq_out_ptr,  # (B, 2, H, W) adjoint of q_k out
    gz_ptr,  # (B, H, W) accumulates ∂ℓ/∂z
    glam_ptr,  # (B, LAM_CHANNELS, H, W) accumulates ∂ℓ/∂Λ (unused if LAM_CHANNELS == 0)
    mask_ptr,  # (B, H, Wp) uint8 packed clip states of iteration k
    H,
    W,
    Wp,
    params_ptr,  # (4,) in the data's dtype: τ, σ, θ, σ/(1+σ)
    LAM_CHANNELS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    i, j, inside, i_next, i_prev, j_next, j_prev = _tile(H, W, BLOCK_H, BLOCK_W)
    tau, sigma, theta, k = _step_sizes(params_ptr)
    b = tl.program_id(1).to(tl.int64)
    img = b * H * W
    here = i * W + j
    gq0_base = gq_ptr + 2 * img
    gq1_base = gq0_base + H * W
    c = 1.0 + theta

    # a = gx' + (1+θ) gx̄' at the pixel and its four neighbours
    a = tl.load(gx_ptr + img + here, mask=inside, other=0.0) + c * tl.load(gx_bar_ptr + img + here, mask=inside, other=0.0)
    off = img + i_next * W + j
    a_i_next = tl.load(gx_ptr + off, mask=inside, other=0.0) + c * tl.load(gx_bar_ptr + off, mask=inside, other=0.0)
    off = img + i_prev * W + j
    a_i_prev = tl.load(gx_ptr + off, mask=inside, other=0.0) + c * tl.load(gx_bar_ptr + off, mask=inside, other=0.0)
    off = img + i * W + j_next
    a_j_next = tl.load(gx_ptr + off, mask=inside, other=0.0) + c * tl.load(gx_bar_ptr + off, mask=inside, other=0.0)
    off = img + i * W + j_prev
    a_j_prev = tl.load(gx_ptr + off, mask=inside, other=0.0) + c * tl.load(gx_bar_ptr + off, mask=inside, other=0.0)

    gq0 = tl.load(gq0_base + here, mask=inside, other=0.0) - tau * (a_i_next - a)
    gq1 = tl.load(gq1_base + here, mask=inside, other=0.0) - tau * (a_j_next - a)
    gq0_i_prev = tl.load(gq0_base + i_prev * W + j, mask=inside, other=0.0) - tau * (a - a_i_prev)
    gq1_j_prev = tl.load(gq1_base + i * W + j_prev, mask=inside, other=0.0) - tau * (a - a_j_prev)

    mask_img = mask_ptr + b * H * Wp
    state = _state_at(mask_img, i, j, Wp, inside)
    s0 = state & 3
    s1 = state >> 2
    s0_i_prev = _state_at(mask_img, i_prev, j, Wp, inside) & 3
    s1_j_prev = _state_at(mask_img, i, j_prev, Wp, inside) >> 2

    gu0 = tl.where(s0 == 0, gq0, 0.0)
    gu1 = tl.where(s1 == 0, gq1, 0.0)
    grad_T_gu = (tl.where(s0_i_prev == 0, gq0_i_prev, 0.0) - gu0) + (tl.where(s1_j_prev == 0, gq1_j_prev, 0.0) - gu1)

    if LAM_CHANNELS > 0:
        d0 = tl.where(s0 == 1, gq0, tl.where(s0 == 2, -gq0, 0.0))
        d1 = tl.where(s1 == 1, gq1, tl.where(s1 == 2, -gq1, 0.0))
        glam_img = glam_ptr + b * LAM_CHANNELS * H * W
        if LAM_CHANNELS == 1:
            g = tl.load(glam_img + here, mask=inside, other=0.0)
            tl.store(glam_img + here, g + d0 + d1, mask=inside)
        else:
            g0 = tl.load(glam_img + here, mask=inside, other=0.0)
            tl.store(glam_img + here, g0 + d0, mask=inside)
            g1 = tl.load(glam_img + H * W + here, mask=inside, other=0.0)
            tl.store(glam_img + H * W + here, g1 + d1, mask=inside)

    gx_bar_in = tl.load(gx_bar_ptr + img + here, mask=inside, other=0.0)
    gp = tl.load(gp_ptr + img + here, mask=inside, other=0.0) - tau * a
    tl.store(gx_bar_out_ptr + img + here, sigma * grad_T_gu + k * gp, mask=inside)
    tl.store(gq_out_ptr + 2 * img + here, gu0, mask=inside)
    tl.store(gq_out_ptr + 2 * img + H * W + here, gu1, mask=inside)
    tl.store(gx_out_ptr + img + here, a - theta * gx_bar_in, mask=inside)
    tl.store(gp_ptr + img + here, gp / (1.0 + sigma), mask=inside)
    gz = tl.load(gz_ptr + img + here, mask=inside, other=0.0)
    tl.store(gz_ptr + img + here, gz - k * gp, mask=inside)


def pick_blocks(height: int, width: int, device: torch.device) -> tuple[int, int, int]:
    """(BLOCK_H, BLOCK_W, num_warps) for an image size.

    On GPU, 16×64 tiles (rows of 64 contiguous floats: coalesced). Under the
    interpreter every program instance costs milliseconds, so tiles are as
    large as the image (up to 64×64).
    """
    if device.type == "cuda":
        block_w = min(64, max(2, triton.next_power_of_2(width)))
        block_h = max(1, min(1024 // block_w, triton.next_power_of_2(height)))
        return block_h, block_w, 4
    block_w = min(64, max(2, triton.next_power_of_2(width)))
    block_h = min(64, triton.next_power_of_2(height))
    return block_h, block_w, 1


def _params(tau: float, sigma: float, theta: float, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor([tau, sigma, theta, sigma / (1.0 + sigma)], dtype=like.dtype, device=like.device)


def solve_forward(z, lam, n_iter: int, tau: float, sigma: float, theta: float, need_mask: bool):
    """Run ``n_iter`` fused iterations on z (B, H, W) contiguous.

    ``lam`` is any 4-D tensor broadcastable to (B, 2, H, W) with channel dim
    1 or 2. Returns (x_T, mask (T, B, H, ⌈W/2⌉) uint8 or None).
    """
    batch, height, width = z.shape
    wp = packed_width(width)
    lam_full = lam.expand(batch, 2, height, width)
    x = z.clone()
    p = torch.zeros_like(z)
    x_bar = [z.clone(), torch.empty_like(z)]
    q = [z.new_zeros(batch, 2, height, width), torch.empty(batch, 2, height, width, dtype=z.dtype, device=z.device)]
    mask = torch.empty(n_iter if need_mask else 1, batch, height, wp, dtype=torch.uint8, device=z.device)
    params = _params(tau, sigma, theta, z)
    block_h, block_w, warps = pick_blocks(height, width, z.device)
    grid = (triton.cdiv(height, block_h) * triton.cdiv(width, block_w), batch)
    for k in range(n_iter):
        src, dst = k % 2, (k + 1) % 2
        pdhg_step_fwd[grid](
            x, x_bar[src], x_bar[dst], p, q[src], q[dst], z, lam_full, mask[k if need_mask else 0],
            height, width, wp, *lam_full.stride(), params,
            WRITE_MASK=need_mask, BLOCK_H=block_h, BLOCK_W=block_w, num_warps=warps,
        )  # fmt: skip
    return x, (mask if need_mask else None)


def solve_backward(grad_x, mask, lam_channels: int, need_glam: bool, tau: float, sigma: float, theta: float):
    """Adjoint pass over the stored masks. Returns (∂ℓ/∂z (B,H,W), ∂ℓ/∂Λ (B,C,H,W) or None)."""
    n_iter, batch, height, wp = mask.shape
    width = grad_x.shape[-1]
    gx = [grad_x.contiguous().clone(), torch.empty_like(grad_x, memory_format=torch.contiguous_format)]
    gp = torch.zeros_like(gx[0])
    gz = torch.zeros_like(gp)
    gx_bar = [torch.zeros_like(gp), torch.empty_like(gp)]
    gq = [gp.new_zeros(batch, 2, height, width), torch.empty(batch, 2, height, width, dtype=gp.dtype, device=gp.device)]
    glam = gp.new_zeros(batch, lam_channels, height, width) if need_glam else gz  # dummy pointer if unused
    params = _params(tau, sigma, theta, gp)
    block_h, block_w, warps = pick_blocks(height, width, gp.device)
    grid = (triton.cdiv(height, block_h) * triton.cdiv(width, block_w), batch)
    for j in range(n_iter):
        k = n_iter - 1 - j
        src, dst = j % 2, (j + 1) % 2
        pdhg_step_bwd[grid](
            gx[src], gx[dst], gx_bar[src], gx_bar[dst], gp, gq[src], gq[dst], gz, glam, mask[k],
            height, width, wp, params,
            LAM_CHANNELS=lam_channels if need_glam else 0, BLOCK_H=block_h, BLOCK_W=block_w, num_warps=warps,
        )  # fmt: skip
    gz += gx[n_iter % 2]
    gz += gx_bar[n_iter % 2]
    return gz, (glam if need_glam else None)
