"""PDHG on volumes and (x, y, t) sequences with the mask-based backward, in PyTorch ops (the CPU path).

The 3-D counterpart of :mod:`tvfast.solver.cpu` (docs/method.md §9): the
iteration of §3 and the adjoint recursion of §4, with the gradient
∇x = (∂_D x, ∂_H x, ∂_W x) of periodic forward differences
(:func:`tvfast.solver.differences.gradient3d`). One function per step:

* :func:`pdhg_step_fwd` — one forward iteration, optionally emitting the clip
  states;
* :func:`pdhg_step_bwd` — one iteration of the adjoint recursion.

Each step reads its state and writes the new state into preallocated buffers,
so under :func:`torch.compile` (Inductor, static shapes, full graph) a step
is a few fused, vectorised loops over the voxels. The compile policy is the
2-D one (:func:`tvfast.solver.cpu.use_compile`: voxels × iterations ≥ 64³, or
``TVFAST_COMPILE=1``/``0``), and so are the graph limit and the memory of
graphs that failed to compile (:func:`tvfast.solver.cpu.forget_compile_failures`
clears both paths' records); a failed compilation runs the call eagerly
with a warning.

Layout (as in docs/method.md §5.2). Neighbours along D and H (rolls of the
outer dimensions) are cheap for Inductor; a wrap along W inside the
vectorised inner loop would become a gather. So every array read at a W
neighbour is stored padded as (B, D, H, W+2) with a periodic halo (column 0
holds column W−1, column W+1 holds column 0): x̄ and q₂ in the forward, gx,
gx̄, gq₂ and the clip states in the backward, and Λ₂ when it varies along W.
The steps write interiors; the caller refreshes the halo columns.

Mask: a voxel has three dual entries (q₀ along D, q₁ along H, q₂ along W)
with three states each (INSIDE 0 / HIGH 1 / LOW 2, tie rule of
:mod:`tvfast.solver.clip_states`), 2 bits per entry. The 6 bits are kept as *one
uint8 per voxel*::

    byte = s₀ | s₁ << 2 | s₂ << 4            (bits 6 and 7 are zero)

so one iteration of a (B, D, H, W) batch is a (B, D, H, W) uint8 array and
the forward keeps (T, B, D, H, W) bytes: exactly 1 byte per voxel per
iteration (6 bits used; packing 4 voxels into 3 bytes would save 25 % at
the cost of a byte-straddling layout in the kernels). The Triton kernels
(``tvfast.kernels.pdhg_step3d``) use the same layout bit for bit. Inside the
compiled steps the states travel as the float s₀ + 4·s₁ + 16·s₂ (the same
number as the byte), which Inductor vectorises well; the caller converts
between float and uint8 between steps.

Shapes: data (B, D, H, W); ``lam`` 5-D, broadcastable to (B, 3, D, H, W),
with 1 (shared) or 3 channels.
"""

from __future__ import annotations

import torch

from tvfast.solver.clip_states import HIGH, LOW
from tvfast.solver.cpu import (  # the step helpers and the compile policy are shared with the 2-D path
    _clip,
    _clip_state,
    _interior,
    _left,
    _right,
    halo_views,
    padded,
    run_steps,
    use_compile,
)

__all__ = ["pdhg_step_fwd", "pdhg_step_bwd", "solve_forward", "solve_backward", "STATE_SHIFTS"]

# Bit offsets of the three 2-bit clip states in a voxel's mask byte (axes D, H, W).
STATE_SHIFTS = (0, 2, 4)


def pdhg_step_fwd(x, x_bar, p, q0, q1, q2, z, lam0, lam1, lam2, x_bar_out, q0_out, q1_out, q2_out, state_out,
                  tau: float, sigma: float, theta: float):
    """One PDHG iteration (docs/method.md §3 with the ∇ of §9), in place.

    Reads x, p, z, q₀, q₁ (B, D, H, W), the padded x̄ and q₂ (B, D, H, W+2),
    Λ₀, Λ₁, Λ₂ (4-D, broadcastable; Λ₂ padded when it varies along W).
    Writes x, p in place, the new x̄, q₀, q₁, q₂ into the ``*_out`` double
    buffers (interior views for the padded arrays; the caller refreshes their
    halos), and the clip states s₀ + 4·s₁ + 16·s₂ into ``state_out``
    (B, D, H, W), as floats, unless None.
    """
    width = x.shape[-1]
    xb = _interior(x_bar, width)
    lam2_padded = lam2.shape[-1] == width + 2
    lam2_here = _interior(lam2, width) if lam2_padded else lam2
    p_new = (p + sigma * (xb - z)) / (1.0 + sigma)
    u0 = q0 + sigma * (torch.roll(xb, -1, -3) - xb)
    u1 = q1 + sigma * (torch.roll(xb, -1, -2) - xb)
    u2 = _interior(q2, width) + sigma * (_right(x_bar, width) - xb)
    q0_new = _clip(u0, lam0)
    q1_new = _clip(u1, lam1)
    q2_new = _clip(u2, lam2_here)
    # the neighbours' q_{k+1} at (d−1), (i−1), (j−1) are recomputed, so ∇ᵀq_{k+1} needs no second pass
    u0_prev = torch.roll(q0, 1, -3) + sigma * (xb - torch.roll(xb, 1, -3))
    u1_prev = torch.roll(q1, 1, -2) + sigma * (xb - torch.roll(xb, 1, -2))
    u2_prev = _left(q2, width) + sigma * (xb - _left(x_bar, width))
    lam0_prev = torch.roll(lam0, 1, -3) if lam0.shape[-3] > 1 else lam0
    lam1_prev = torch.roll(lam1, 1, -2) if lam1.shape[-2] > 1 else lam1
    lam2_prev = _left(lam2, width) if lam2_padded else lam2
    grad_T_q = ((_clip(u0_prev, lam0_prev) - q0_new) + (_clip(u1_prev, lam1_prev) - q1_new)
                + (_clip(u2_prev, lam2_prev) - q2_new))
    x_new = x - tau * p_new - tau * grad_T_q
    q0_out.copy_(q0_new)
    q1_out.copy_(q1_new)
    q2_out.copy_(q2_new)
    x_bar_out.copy_(x_new + theta * (x_new - x))
    if state_out is not None:
        state_out.copy_(_clip_state(u0, lam0) + 4.0 * _clip_state(u1, lam1) + 16.0 * _clip_state(u2, lam2_here))
    x.copy_(x_new)
    p.copy_(p_new)


def pdhg_step_bwd(gx, gx_bar, gp, gq0, gq1, gq2, gz, glam, state, gx_out, gx_bar_out, gq0_out, gq1_out, gq2_out,
                  tau: float, sigma: float, theta: float):
    """One iteration k = T−1 … 0 of the adjoint recursion (docs/method.md §4 with the ∇ of §9).

    On entry gx, gx̄ (padded), gp, gq₀, gq₁, gq₂ (padded) hold the adjoints of
    x_{k+1}, x̄_{k+1}, p_{k+1}, q_{k+1}; on exit those of iteration k are in
    ``gp`` (in place) and the ``*_out`` buffers (interior views of the padded
    ones; the caller refreshes their halos). ``state`` (B, D, H, W+2), padded,
    holds iteration k's clip states s₀ + 4·s₁ + 16·s₂ as floats. ``gz``
    accumulates −σ/(1+σ)·gp''; ``glam`` (B, C, D, H, W), C = 1 or 3,
    accumulates S∘gq'' (summed over the three axes when C = 1), or is None.
    """
    width = gp.shape[-1]
    c = 1.0 + theta
    a_pad = gx + c * gx_bar  # padded: a = gx' + (1+θ)gx̄'
    a = _interior(a_pad, width)
    gp_new = gp - tau * a
    gq0_new = gq0 - tau * (torch.roll(a, -1, -3) - a)
    gq0_prev = torch.roll(gq0, 1, -3) - tau * (a - torch.roll(a, 1, -3))
    gq1_new = gq1 - tau * (torch.roll(a, -1, -2) - a)
    gq1_prev = torch.roll(gq1, 1, -2) - tau * (a - torch.roll(a, 1, -2))
    gq2_new = _interior(gq2, width) - tau * (_right(a_pad, width) - a)
    gq2_prev = _left(gq2, width) - tau * (a - _left(a_pad, width))
    s2_pad = torch.floor(state * 0.0625)
    s2 = _interior(s2_pad, width)
    rest = _interior(state, width) - 16.0 * s2
    s1 = torch.floor(rest * 0.25)
    s0 = rest - 4.0 * s1
    s0_prev = torch.roll(s0, 1, -3)
    s1_prev = torch.roll(s1, 1, -2)
    s2_prev = _left(s2_pad, width)
    gu0 = torch.where(s0 == 0, gq0_new, 0.0)
    gu1 = torch.where(s1 == 0, gq1_new, 0.0)
    gu2 = torch.where(s2 == 0, gq2_new, 0.0)
    grad_T_gu = ((torch.where(s0_prev == 0, gq0_prev, 0.0) - gu0) + (torch.where(s1_prev == 0, gq1_prev, 0.0) - gu1)
                 + (torch.where(s2_prev == 0, gq2_prev, 0.0) - gu2))
    if glam is not None:
        d0 = torch.where(s0 == HIGH, gq0_new, torch.where(s0 == LOW, -gq0_new, 0.0))
        d1 = torch.where(s1 == HIGH, gq1_new, torch.where(s1 == LOW, -gq1_new, 0.0))
        d2 = torch.where(s2 == HIGH, gq2_new, torch.where(s2 == LOW, -gq2_new, 0.0))
        if glam.shape[1] == 1:
            glam[:, 0].add_(d0 + d1 + d2)
        else:
            glam[:, 0].add_(d0)
            glam[:, 1].add_(d1)
            glam[:, 2].add_(d2)
    k = sigma / (1.0 + sigma)
    gx_bar_out.copy_(sigma * grad_T_gu + k * gp_new)
    gx_out.copy_(a - theta * _interior(gx_bar, width))
    gq0_out.copy_(gu0)
    gq1_out.copy_(gu1)
    gq2_out.copy_(gu2)
    gz.sub_(k * gp_new)
    gp.copy_(gp_new / (1.0 + sigma))


def _lambda_parts(lam: torch.Tensor, width: int):
    """Λ (Bl, 1|3, Dl, Hl, Wl) → (Λ₀, Λ₁, Λ₂) 4-D, Λ₂ padded along W when it varies along W."""
    lam0 = lam[:, 0]
    lam1 = lam[:, lam.shape[1] // 2]  # channel 1 of 3, or the shared map
    lam2 = lam[:, -1]
    if lam2.shape[-1] == width and width > 1:
        lam2 = padded(lam2)
    return lam0.contiguous(), lam1.contiguous(), lam2.contiguous()


def solve_forward(z, lam, n_iter: int, tau: float, sigma: float, theta: float, need_mask: bool):
    """Run ``n_iter`` iterations on z (B, D, H, W). Returns (x_T, mask or None).

    ``lam`` is 5-D, broadcastable to (B, 3, D, H, W) with 1 or 3 channels.
    The mask is (T, B, D, H, W) uint8 (one byte s₀ | s₁<<2 | s₂<<4 per voxel
    per iteration) when ``need_mask``.
    """
    batch, depth, height, width = z.shape
    z, lam = z.detach(), lam.detach()  # the steps never record autograd (one compiled graph)
    lam0, lam1, lam2 = _lambda_parts(lam, width)
    x = z.clone()
    p = torch.zeros_like(z)
    padded_shape = (batch, depth, height, width + 2)
    x_bar = (padded(z), z.new_empty(padded_shape))
    q0 = (torch.zeros_like(z), torch.empty_like(z))
    q1 = (torch.zeros_like(z), torch.empty_like(z))
    q2 = (z.new_zeros(padded_shape), z.new_empty(padded_shape))
    mask = state = None
    if need_mask:
        mask = torch.empty(n_iter, batch, depth, height, width, dtype=torch.uint8, device=z.device)
        state = torch.empty_like(z)
    compile_it = use_compile(batch * depth * height * width * n_iter)
    x_bar_in = tuple(_interior(t, width) for t in x_bar)
    q2_in = tuple(_interior(t, width) for t in q2)
    halos = tuple(halo_views(x_bar[d]) + halo_views(q2[d]) for d in (0, 1))

    def step_args(k):
        s, d = k % 2, (k + 1) % 2
        return (x, x_bar[s], p, q0[s], q1[s], q2[s], z, lam0, lam1, lam2,
                x_bar_in[d], q0[d], q1[d], q2_in[d], state, tau, sigma, theta)

    def after_step(k):
        for dst, src in halos[(k + 1) % 2]:
            dst.copy_(src)
        if mask is not None:
            mask[k].copy_(state)  # exact: the float is the byte's value (0 … 42)

    with torch.no_grad():
        run_steps("fwd3d", pdhg_step_fwd, n_iter, compile_it, step_args, after_step)
    return x, mask


def solve_backward(grad_x, mask, lam_channels: int, need_glam: bool, tau: float, sigma: float, theta: float):
    """Adjoint pass over the stored masks (T, B, D, H, W) uint8.

    Returns (∂ℓ/∂z (B, D, H, W), ∂ℓ/∂Λ (B, C, D, H, W) or None), C = ``lam_channels`` (1 or 3).
    """
    n_iter, batch, depth, height, width = mask.shape
    padded_shape = (batch, depth, height, width + 2)
    new_padded = lambda: grad_x.new_zeros(padded_shape)  # noqa: E731
    gx = (padded(grad_x), new_padded())
    gx_bar = (new_padded(), new_padded())
    gq0 = (torch.zeros_like(grad_x), torch.zeros_like(grad_x))
    gq1 = (torch.zeros_like(grad_x), torch.zeros_like(grad_x))
    gq2 = (new_padded(), new_padded())
    gp = torch.zeros_like(grad_x)
    gz = torch.zeros_like(grad_x)
    glam = grad_x.new_zeros(batch, lam_channels, depth, height, width) if need_glam else None
    state = new_padded()
    compile_it = use_compile(batch * depth * height * width * n_iter)
    gx_in, gx_bar_in, gq2_in = (tuple(_interior(t, width) for t in pair) for pair in (gx, gx_bar, gq2))
    state_in = _interior(state, width)
    halos = tuple(halo_views(gx[d]) + halo_views(gx_bar[d]) + halo_views(gq2[d]) for d in (0, 1))
    state_halo = halo_views(state)

    def step_args(j):
        state_in.copy_(mask[n_iter - 1 - j])
        for dst, src in state_halo:
            dst.copy_(src)
        s, d = j % 2, (j + 1) % 2
        return (gx[s], gx_bar[s], gp, gq0[s], gq1[s], gq2[s], gz, glam, state,
                gx_in[d], gx_bar_in[d], gq0[d], gq1[d], gq2_in[d], tau, sigma, theta)

    def after_step(j):
        for dst, src in halos[(j + 1) % 2]:
            dst.copy_(src)

    with torch.no_grad():
        run_steps("bwd3d", pdhg_step_bwd, n_iter, compile_it, step_args, after_step)
        last = n_iter % 2
        gz.add_(_interior(gx[last], width)).add_(_interior(gx_bar[last], width))
    return gz, glam
