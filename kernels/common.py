"""Pieces shared by the 2-D and 3-D PDHG kernels: tile indices, step sizes, the clip and its states.

Clip states. The dual update ``q = clip(u, −Λ, Λ)`` takes one of three
branches per entry; the backward needs nothing from the forward but the
branch (docs/method.md §4)::

    HIGH   if u ≥ Λ                  q = Λ     ∂q/∂u = 0, ∂q/∂Λ = +1
    LOW    if u ≤ −Λ (and not HIGH)  q = −Λ    ∂q/∂u = 0, ∂q/∂Λ = −1
    INSIDE otherwise                 q = u     ∂q/∂u = 1, ∂q/∂Λ = 0

The codes are those of :mod:`tvfast.solver.clip_states` (INSIDE 0, HIGH 1,
LOW 2), each held in ``STATE_BITS`` = 2 bits, so the PyTorch path and the
kernels write the same records bit for bit. They are ``tl.constexpr``
globals so that kernel bodies can name them.

Tiles. Both kernels give each program a BLOCK_H×BLOCK_W tile of one H×W
image or slice, numbered row-major over the image (program axis 0), and wrap
neighbour indices periodically *before* any address is formed, so a halo
read never leaves the image. Lanes of a tile that overhang the image's
bottom or right edge are switched off by the ``in_bounds`` load/store mask.

Step sizes. τ, σ, θ and σ/(1+σ) reach the kernels as a 4-element tensor in
the data's dtype: Python floats passed as kernel arguments would be float32
on the GPU, and σ/(1+σ) computed in the kernel would be rounded to float32
even for float64 data.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["INSIDE", "HIGH", "LOW", "STATE_BITS", "STATE_FIELD", "tile", "load_step_sizes", "clip", "clip_state",
           "state_of", "pass_if_inside", "lambda_adjoint", "adjoint_of_x"]

INSIDE: tl.constexpr = tl.constexpr(0)
HIGH: tl.constexpr = tl.constexpr(1)
LOW: tl.constexpr = tl.constexpr(2)
STATE_BITS: tl.constexpr = tl.constexpr(2)
"""Bits of one clip state; direction c's state sits at bit ``c · STATE_BITS`` of a pixel's record."""
STATE_FIELD: tl.constexpr = tl.constexpr(3)
"""``(1 << STATE_BITS) − 1``: masks one state out of a shifted record."""


@triton.jit
def tile(H, W, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    """Indices of this program's tile of an H×W image.

    Returns row i (BLOCK_H, 1) and column j (1, BLOCK_W) indices, the load
    mask ``in_bounds`` = (i < H) & (j < W), and the periodic neighbours
    i+1, i−1, j+1, j−1 (wrapped, so always inside the image).
    """
    pid = tl.program_id(0)
    n_tiles_w = tl.cdiv(W, BLOCK_W)
    i = (pid // n_tiles_w) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    j = (pid % n_tiles_w) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    in_bounds = (i < H) & (j < W)
    i_next = tl.where(i + 1 >= H, 0, i + 1)
    i_prev = tl.where(i == 0, H - 1, i - 1)
    j_next = tl.where(j + 1 >= W, 0, j + 1)
    j_prev = tl.where(j == 0, W - 1, j - 1)
    return i, j, in_bounds, i_next, i_prev, j_next, j_prev


@triton.jit
def load_step_sizes(params_ptr):
    """τ, σ, θ and sigma_ratio = σ/(1+σ), read from the (4,) parameter tensor in the data's dtype."""
    return tl.load(params_ptr), tl.load(params_ptr + 1), tl.load(params_ptr + 2), tl.load(params_ptr + 3)


@triton.jit
def clip(u, lam):
    """clip(u, −Λ, Λ) = min(max(u, −Λ), Λ)."""
    return tl.minimum(tl.maximum(u, -lam), lam)


@triton.jit
def clip_state(u, lam):
    """Branch taken by :func:`clip`: HIGH if u ≥ Λ, else LOW if u ≤ −Λ, else INSIDE (int32)."""
    return tl.where(u >= lam, HIGH, tl.where(u <= -lam, LOW, INSIDE))


@triton.jit
def state_of(record, direction: tl.constexpr):
    """Clip state of dual channel ``direction`` from a pixel's record Σ_c s_c << (c · STATE_BITS)."""
    return (record >> (direction * STATE_BITS)) & STATE_FIELD


@triton.jit
def pass_if_inside(state, g):
    """(∂q/∂u)·g = g where the clip was INSIDE, 0 where it saturated."""
    return tl.where(state == INSIDE, g, 0.0)


@triton.jit
def lambda_adjoint(state, g):
    """(∂q/∂Λ)·g = +g where the clip was HIGH, −g where LOW, 0 where INSIDE."""
    return tl.where(state == HIGH, g, tl.where(state == LOW, -g, 0.0))


@triton.jit
def adjoint_of_x(gx_ptr, gx_bar_ptr, offset, one_plus_theta, in_bounds):
    """a = gx' + (1+θ)·gx̄' at the given element offsets: the adjoint reaching x_{k+1}.

    x̄_{k+1} = (1+θ)x_{k+1} − θx_k, so the adjoint of x̄_{k+1} flows back into
    x_{k+1} with weight 1+θ (and into x_k with weight −θ).
    """
    gx = tl.load(gx_ptr + offset, mask=in_bounds, other=0.0)
    return gx + one_plus_theta * tl.load(gx_bar_ptr + offset, mask=in_bounds, other=0.0)
