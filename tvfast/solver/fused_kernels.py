"""The fused CPU kernels: one PDHG iteration (or its adjoint) as two passes over the pixels, compiled by Numba.

Imported only by :mod:`tvfast.solver.fused` when a solve needs it (Numba is
loaded then, never by ``import tvfast``). Every kernel is compiled on its
first use with ``cache=True``: the machine code is kept on disk (beside
this file, or in Numba's user cache directory when that is read-only), so a
new process loads it in a fraction of a second.

The maths is that of the Triton kernels (:mod:`tvfast.kernels.pdhg2d`, whose
docstring derives the adjoint) and of docs/method.md §3–§4, §9 and §10;
these kernels differ only in how the work is split:

Forward, iteration k (denoising; with a forward operator ``P`` = Aᴴp_{k+1}
is read instead of the p update):

* pass 1 (the dual), every pixel: u_a = q_a + σ(x̄(· + e_a) − x̄),
  q_a ← clip(u_a, −Λ_a, Λ_a) in place, and the clip states s_a of
  :mod:`tvfast.solver.clip_states` into this iteration's record;
* pass 2 (the primal), every pixel, after pass 1 has finished:
  p ← (p + σ(x̄ − z))/(1 + σ), ∇ᵀq = Σ_a q_a(· − e_a) − q_a from the *new*
  q, x' = x − τp − τ∇ᵀq, x̄ ← x' + θ(x' − x), x ← x', all in place.

A pass reads its neighbours only from arrays the same pass does not write
(pass 1 reads x̄ at neighbours and writes q; pass 2 reads q at neighbours and
writes x, x̄, p), so both update in place with no double buffer; the
arithmetic is the Triton kernels' term for term (no FMA contraction, no
reassociation), so float results and clip states are bit-identical to them.

Adjoint, iteration k = T−1 … 0, with a = gx' + (1+θ)gx̄' recomputed where needed:

* pass A (the TV part, the same with or without an operator):
  gq''_a = gq'_a − τ(a(· + e_a) − a), gu_a = [s_a = INSIDE]·gq''_a into gq
  in place, gΛ += ±gq''_a on HIGH/LOW entries;
* pass B: for denoising gp'' = gp − τa, gz −= σ/(1+σ)·gp'',
  gx̄ ← σ∇ᵀgu + σ/(1+σ)·gp'', gp ← gp''/(1+σ); with an operator
  gx̄ ← σ∇ᵀgu + the caller's σ/(1+σ)·AᴴA r_k; then gx ← a − θgx̄'.

Each variant is its own kernel (``dual2d`` / ``dual2d_states``,
``adjoint_primal2d`` / ``adjoint_primal2d_data``, …) rather than one kernel
with flags: LLVM unswitches a flag into a copy of the vectorised loop per
value, and a first call on a new machine compiles only what it runs.

Work is split over image rows (B·H rows, or B·D·H for volumes) with
``prange``; each row's inner loop runs over W with the periodic wrap peeled
off, so it vectorises. Clip-state records: a (B, H, ⌈W/2⌉) byte array per
iteration for images (nibble s₀ | s₁ << 2, even column low), a (B, D, H, W)
byte array for volumes (s₀ | s₁ << 2 | s₂ << 4).

Arrays: x, x̄, p, q_a, z (B, *S) C-contiguous; Λ (Bl, n, *S) C-contiguous
with Bl = B or 1 (one Λ for the batch, whose rows the dual pass then visits
image-minor so each Λ row is read once);
the handed-in data term ``P`` (C, B/C, *S) of any strides (C = 2: the real
view of a complex image, batch image c·B/C + b is P[c, b]).
"""

from __future__ import annotations

from numba import njit, prange

__all__ = ["dual2d", "dual2d_states", "primal2d", "primal2d_data", "adjoint_dual2d", "adjoint_primal2d",
           "adjoint_primal2d_data", "dual3d", "dual3d_states", "primal3d", "primal3d_data", "adjoint_dual3d",
           "adjoint_primal3d", "adjoint_primal3d_data", "run2d", "run2d_states", "adjoint_run2d", "run3d",
           "run3d_states", "adjoint_run3d", "data_dual", "data_adjoint", "scale_into", "to_pairs",
           "data_dual_pairs", "scale_pairs"]

# No FMA contraction, no reassociation, no reciprocal: the Triton kernels' rounding, step for step.
# Inputs are finite (checked by the op), so min/max may ignore NaN and the sign of zero.
_FLAGS = {"nnan", "ninf", "nsz"}
_JIT = dict(parallel=True, fastmath=_FLAGS, cache=True, nogil=True, boundscheck=False, error_model="numpy")
_INLINE = dict(fastmath=_FLAGS, cache=True, inline="always", error_model="numpy")

INSIDE, HIGH, LOW = 0, 1, 2


@njit(**_INLINE)
def _clip(u, lam):
    return min(max(u, -lam), lam)


@njit(**_INLINE)
def _state(u, lam):
    """INSIDE/HIGH/LOW with the tie rule of :mod:`tvfast.solver.clip_states` (HIGH if u ≥ Λ, else LOW if u ≤ −Λ),
    without a branch (the branches are data-dependent and mispredicted)."""
    high = u >= lam
    return high | (((u <= -lam) & ~high) << 1)


@njit(**_INLINE)
def _pass_if(g, keep, zero):
    """g where ``keep``, else 0: a select, not a branch."""
    return g if keep else zero


@njit(**_INLINE)
def _lam_adjoint(g, s, zero):
    """∂q/∂Λ·g: +g on HIGH, −g on LOW, 0 inside (two selects; exact, as x − 0 = x)."""
    return _pass_if(g, s == HIGH, zero) - _pass_if(g, s == LOW, zero)


# ---------------------------------------------------------------------------------------------------------------------
# Images (B, H, W). ``prm`` = (τ, σ, θ, 1+σ, σ/(1+σ), 1+θ, 0) in the arrays' dtype.
# ---------------------------------------------------------------------------------------------------------------------


@njit(**_INLINE)
def _image_row(row, height, per_part):
    """(b, i) of row ``row`` of the B·H rows, and (c, b') of image b in a handed (C, B/C, H, W) data term."""
    b = row // height
    c = b // per_part
    return b, row - b * height, c, b - c * per_part


@njit(**_INLINE)
def _image_minor_row(row, n_img, shared):
    """(i, b, Λ's batch index) of row ``row`` of the B·H rows taken image-minor: with one Λ for the whole batch
    (``shared``; the real and imaginary parts of a complex image share theirs) each Λ row is read from memory once
    and from cache for the batch's other images."""
    i = row // n_img
    b = row - i * n_img
    return i, b, 0 if shared else b


@njit(**_INLINE)
def _dual_px2(xb, q0, q1, lam, b, lb, a1, i, i1, j, j1, sigma):
    """q_a ← clip(u_a, ±Λ_a) at (b, i, j), Λ of batch entry ``lb`` (Λ₁ its channel ``a1``: 1, or 0 for one Λ for
    both axes); returns the pixel's nibble s₀ | s₁ << 2."""
    xh = xb[b, i, j]
    u0 = q0[b, i, j] + sigma * (xb[b, i1, j] - xh)
    u1 = q1[b, i, j] + sigma * (xb[b, i, j1] - xh)
    l0 = lam[lb, 0, i, j]
    l1 = lam[lb, a1, i, j]
    q0[b, i, j] = _clip(u0, l0)
    q1[b, i, j] = _clip(u1, l1)
    return _state(u0, l0) | (_state(u1, l1) << 2)


@njit(**_JIT)
def dual2d(xb, q0, q1, lam, prm):
    """Pass 1: q_a ← clip(q_a + σ∂_a x̄, ±Λ_a) in place (no clip states: a solve without a backward)."""
    sigma = prm[1]
    n_img, height, width = xb.shape
    shared = lam.shape[0] == 1
    a1 = 1 if lam.shape[1] > 1 else 0  # one Λ channel: read for every axis
    for row in prange(n_img * height):
        i, b, lb = _image_minor_row(row, n_img, shared)
        i1 = i + 1 if i + 1 < height else 0
        for j in range(width - 1):
            _dual_px2(xb, q0, q1, lam, b, lb, a1, i, i1, j, j + 1, sigma)
        _dual_px2(xb, q0, q1, lam, b, lb, a1, i, i1, width - 1, 0, sigma)


@njit(**_JIT)
def dual2d_states(xb, q0, q1, lam, record, scratch, prm):
    """Pass 1 and the clip states, packed two pixels to a byte, into this iteration's ``record`` (B, H, ⌈W/2⌉).

    ``scratch`` (B·H, W) bytes: each row's nibbles are written there in the vectorised loop and packed two to a
    byte afterwards (packing pairs of pixels inside the loop kept it from vectorising: 1.6× slower)."""
    sigma = prm[1]
    n_img, height, width = xb.shape
    shared = lam.shape[0] == 1
    a1 = 1 if lam.shape[1] > 1 else 0  # one Λ channel: read for every axis
    for row in prange(n_img * height):
        i, b, lb = _image_minor_row(row, n_img, shared)
        i1 = i + 1 if i + 1 < height else 0
        nibbles = scratch[row]
        for j in range(width - 1):
            nibbles[j] = _dual_px2(xb, q0, q1, lam, b, lb, a1, i, i1, j, j + 1, sigma)
        nibbles[width - 1] = _dual_px2(xb, q0, q1, lam, b, lb, a1, i, i1, width - 1, 0, sigma)
        for m in range(width // 2):
            record[b, i, m] = nibbles[2 * m] | (nibbles[2 * m + 1] << 4)
        if width % 2:
            record[b, i, width // 2] = nibbles[width - 1]


@njit(**_INLINE)
def _primal_px2(x, xb, p, q0, q1, z, b, i, i0, j, j0, prm):
    tau, sigma, theta, one_sigma = prm[0], prm[1], prm[2], prm[3]
    p_new = (p[b, i, j] + sigma * (xb[b, i, j] - z[b, i, j])) / one_sigma
    grad_t_q = (q0[b, i0, j] - q0[b, i, j]) + (q1[b, i, j0] - q1[b, i, j])
    x_old = x[b, i, j]
    x_new = x_old - tau * p_new - tau * grad_t_q
    x[b, i, j] = x_new
    xb[b, i, j] = x_new + theta * (x_new - x_old)
    p[b, i, j] = p_new


@njit(**_JIT)
def primal2d(x, xb, p, q0, q1, z, prm):
    """Pass 2 of denoising: p, x and x̄ in place from the new q."""
    n_img, height, width = x.shape
    for row in prange(n_img * height):
        b = row // height
        i = row - b * height
        i0 = i - 1 if i > 0 else height - 1
        _primal_px2(x, xb, p, q0, q1, z, b, i, i0, 0, width - 1, prm)
        for j in range(1, width):
            _primal_px2(x, xb, p, q0, q1, z, b, i, i0, j, j - 1, prm)


@njit(**_INLINE)
def _primal_data_px2(x, xb, data, q0, q1, c, bb, b, i, i0, j, j0, prm):
    tau, theta = prm[0], prm[2]
    grad_t_q = (q0[b, i0, j] - q0[b, i, j]) + (q1[b, i, j0] - q1[b, i, j])
    x_old = x[b, i, j]
    x_new = x_old - tau * data[c, bb, i, j] - tau * grad_t_q
    x[b, i, j] = x_new
    xb[b, i, j] = x_new + theta * (x_new - x_old)


@njit(**_JIT)
def primal2d_data(x, xb, data, q0, q1, prm):
    """Pass 2 with a forward operator: x' = x − τAᴴp_{k+1} − τ∇ᵀq', ``data`` = Aᴴp_{k+1} as (C, B/C, H, W)."""
    n_img, height, width = x.shape
    per_part = data.shape[1]
    for row in prange(n_img * height):
        b, i, c, bb = _image_row(row, height, per_part)
        i0 = i - 1 if i > 0 else height - 1
        _primal_data_px2(x, xb, data, q0, q1, c, bb, b, i, i0, 0, width - 1, prm)
        for j in range(1, width):
            _primal_data_px2(x, xb, data, q0, q1, c, bb, b, i, i0, j, j - 1, prm)


@njit(**_INLINE)
def _adjoint_dual_px2(gx, gxb, gq0, gq1, glam, nibble, b, i, i1, j, j1, shared, prm):
    tau, one_theta, zero = prm[0], prm[5], prm[6]
    a = gx[b, i, j] + one_theta * gxb[b, i, j]
    a_down = gx[b, i1, j] + one_theta * gxb[b, i1, j]
    a_right = gx[b, i, j1] + one_theta * gxb[b, i, j1]
    g0 = gq0[b, i, j] - tau * (a_down - a)
    g1 = gq1[b, i, j] - tau * (a_right - a)
    s0 = nibble & 3
    s1 = nibble >> 2
    gq0[b, i, j] = _pass_if(g0, s0 == INSIDE, zero)
    gq1[b, i, j] = _pass_if(g1, s1 == INSIDE, zero)
    d0 = _lam_adjoint(g0, s0, zero)
    d1 = _lam_adjoint(g1, s1, zero)
    if shared:
        glam[b, 0, i, j] += d0 + d1
    else:
        glam[b, 0, i, j] += d0
        glam[b, 1, i, j] += d1


@njit(**_JIT)
def adjoint_dual2d(gx, gxb, gq0, gq1, glam, record, scratch, prm):
    """Pass A of the adjoint: gu_a into gq_a, and gΛ (always: a flag would double the compiled loops; gΛ costs
    under a tenth of the pass).

    Each row's nibbles are unpacked into ``scratch`` (B·H, W) first, so the main loop reads one byte per pixel
    at a fixed offset (a per-pixel shift kept it from vectorising: 1.3× slower)."""
    n_img, height, width = gx.shape
    shared = glam.shape[1] == 1
    for row in prange(n_img * height):
        b = row // height
        i = row - b * height
        i1 = i + 1 if i + 1 < height else 0
        nibbles = scratch[row]
        for m in range(width // 2):
            byte = record[b, i, m]
            nibbles[2 * m] = byte & 15
            nibbles[2 * m + 1] = byte >> 4
        if width % 2:
            nibbles[width - 1] = record[b, i, width // 2] & 15
        for j in range(width - 1):
            _adjoint_dual_px2(gx, gxb, gq0, gq1, glam, nibbles[j], b, i, i1, j, j + 1, shared, prm)
        _adjoint_dual_px2(gx, gxb, gq0, gq1, glam, nibbles[width - 1], b, i, i1, width - 1, 0, shared, prm)


@njit(**_INLINE)
def _adjoint_primal_px2(gx, gxb, gp, gz, gq0, gq1, b, i, i0, j, j0, prm):
    tau, sigma, theta, one_sigma, ratio, one_theta = prm[0], prm[1], prm[2], prm[3], prm[4], prm[5]
    gxb_old = gxb[b, i, j]
    a = gx[b, i, j] + one_theta * gxb_old
    gp_new = gp[b, i, j] - tau * a
    gz[b, i, j] -= ratio * gp_new
    grad_t_gu = (gq0[b, i0, j] - gq0[b, i, j]) + (gq1[b, i, j0] - gq1[b, i, j])
    gxb[b, i, j] = sigma * grad_t_gu + ratio * gp_new
    gp[b, i, j] = gp_new / one_sigma
    gx[b, i, j] = a - theta * gxb_old


@njit(**_JIT)
def adjoint_primal2d(gx, gxb, gp, gz, gq0, gq1, prm):
    """Pass B of denoising's adjoint: gp'' = gp − τa, gz −= σ/(1+σ)·gp'', gx̄ ← σ∇ᵀgu + σ/(1+σ)·gp'',
    gp ← gp''/(1+σ), gx ← a − θgx̄'."""
    n_img, height, width = gx.shape
    for row in prange(n_img * height):
        b = row // height
        i = row - b * height
        i0 = i - 1 if i > 0 else height - 1
        _adjoint_primal_px2(gx, gxb, gp, gz, gq0, gq1, b, i, i0, 0, width - 1, prm)
        for j in range(1, width):
            _adjoint_primal_px2(gx, gxb, gp, gz, gq0, gq1, b, i, i0, j, j - 1, prm)


@njit(**_INLINE)
def _adjoint_primal_data_px2(gx, gxb, data, gq0, gq1, c, bb, b, i, i0, j, j0, prm):
    sigma, theta, one_theta = prm[1], prm[2], prm[5]
    gxb_old = gxb[b, i, j]
    a = gx[b, i, j] + one_theta * gxb_old
    grad_t_gu = (gq0[b, i0, j] - gq0[b, i, j]) + (gq1[b, i, j0] - gq1[b, i, j])
    gxb[b, i, j] = sigma * grad_t_gu + data[c, bb, i, j]
    gx[b, i, j] = a - theta * gxb_old


@njit(**_JIT)
def adjoint_primal2d_data(gx, gxb, data, gq0, gq1, prm):
    """Pass B with a forward operator: gx̄ ← σ∇ᵀgu + ``data`` (σ/(1+σ)·AᴴA r_k, (C, B/C, H, W)), gx ← a − θgx̄'."""
    n_img, height, width = gx.shape
    per_part = data.shape[1]
    for row in prange(n_img * height):
        b, i, c, bb = _image_row(row, height, per_part)
        i0 = i - 1 if i > 0 else height - 1
        _adjoint_primal_data_px2(gx, gxb, data, gq0, gq1, c, bb, b, i, i0, 0, width - 1, prm)
        for j in range(1, width):
            _adjoint_primal_data_px2(gx, gxb, data, gq0, gq1, c, bb, b, i, i0, j, j - 1, prm)


# ---------------------------------------------------------------------------------------------------------------------
# Volumes (B, D, H, W): the same passes with a third axis; records are one byte per voxel.
# ---------------------------------------------------------------------------------------------------------------------


@njit(**_INLINE)
def _voxel_row(row, depth, height):
    """(b, d, i) of row ``row`` of the B·D·H rows of a volume batch."""
    b = row // (depth * height)
    rest = row - b * depth * height
    d = rest // height
    return b, d, rest - d * height


@njit(**_INLINE)
def _voxel_minor_row(row, n_img, height, shared):
    """(d, i, b, Λ's batch index) of row ``row`` of the B·D·H rows taken image-minor (see :func:`_image_minor_row`)."""
    b_rest = row // n_img
    b = row - b_rest * n_img
    d = b_rest // height
    return d, b_rest - d * height, b, 0 if shared else b


@njit(**_INLINE)
def _dual_px3(xb, q0, q1, q2, lam, b, lb, a1, d, d1, i, i1, j, j1, sigma):
    xh = xb[b, d, i, j]
    u0 = q0[b, d, i, j] + sigma * (xb[b, d1, i, j] - xh)
    u1 = q1[b, d, i, j] + sigma * (xb[b, d, i1, j] - xh)
    u2 = q2[b, d, i, j] + sigma * (xb[b, d, i, j1] - xh)
    l0 = lam[lb, 0, d, i, j]
    l1 = lam[lb, a1, d, i, j]
    l2 = lam[lb, 2 * a1, d, i, j]
    q0[b, d, i, j] = _clip(u0, l0)
    q1[b, d, i, j] = _clip(u1, l1)
    q2[b, d, i, j] = _clip(u2, l2)
    return _state(u0, l0) | (_state(u1, l1) << 2) | (_state(u2, l2) << 4)


@njit(**_JIT)
def dual3d(xb, q0, q1, q2, lam, prm):
    """Pass 1 for volumes (no clip states)."""
    sigma = prm[1]
    n_img, depth, height, width = xb.shape
    shared = lam.shape[0] == 1
    a1 = 1 if lam.shape[1] > 1 else 0  # one Λ channel: read for every axis
    for row in prange(n_img * depth * height):
        d, i, b, lb = _voxel_minor_row(row, n_img, height, shared)
        d1 = d + 1 if d + 1 < depth else 0
        i1 = i + 1 if i + 1 < height else 0
        for j in range(width - 1):
            _dual_px3(xb, q0, q1, q2, lam, b, lb, a1, d, d1, i, i1, j, j + 1, sigma)
        _dual_px3(xb, q0, q1, q2, lam, b, lb, a1, d, d1, i, i1, width - 1, 0, sigma)


@njit(**_JIT)
def dual3d_states(xb, q0, q1, q2, lam, record, prm):
    """Pass 1 for volumes and the clip states into ``record`` (B, D, H, W), one byte s₀ | s₁ << 2 | s₂ << 4."""
    sigma = prm[1]
    n_img, depth, height, width = xb.shape
    shared = lam.shape[0] == 1
    a1 = 1 if lam.shape[1] > 1 else 0  # one Λ channel: read for every axis
    for row in prange(n_img * depth * height):
        d, i, b, lb = _voxel_minor_row(row, n_img, height, shared)
        d1 = d + 1 if d + 1 < depth else 0
        i1 = i + 1 if i + 1 < height else 0
        for j in range(width - 1):
            record[b, d, i, j] = _dual_px3(xb, q0, q1, q2, lam, b, lb, a1, d, d1, i, i1, j, j + 1, sigma)
        record[b, d, i, width - 1] = _dual_px3(xb, q0, q1, q2, lam, b, lb, a1, d, d1, i, i1, width - 1, 0, sigma)


@njit(**_INLINE)
def _grad_t3(q0, q1, q2, b, d, d0, i, i0, j, j0):
    return ((q0[b, d0, i, j] - q0[b, d, i, j]) + (q1[b, d, i0, j] - q1[b, d, i, j])) + (q2[b, d, i, j0] - q2[b, d, i, j])


@njit(**_INLINE)
def _primal_px3(x, xb, p, q0, q1, q2, z, b, d, d0, i, i0, j, j0, prm):
    tau, sigma, theta, one_sigma = prm[0], prm[1], prm[2], prm[3]
    p_new = (p[b, d, i, j] + sigma * (xb[b, d, i, j] - z[b, d, i, j])) / one_sigma
    grad_t_q = _grad_t3(q0, q1, q2, b, d, d0, i, i0, j, j0)
    x_old = x[b, d, i, j]
    x_new = x_old - tau * p_new - tau * grad_t_q
    x[b, d, i, j] = x_new
    xb[b, d, i, j] = x_new + theta * (x_new - x_old)
    p[b, d, i, j] = p_new


@njit(**_JIT)
def primal3d(x, xb, p, q0, q1, q2, z, prm):
    n_img, depth, height, width = x.shape
    for row in prange(n_img * depth * height):
        b, d, i = _voxel_row(row, depth, height)
        d0 = d - 1 if d > 0 else depth - 1
        i0 = i - 1 if i > 0 else height - 1
        _primal_px3(x, xb, p, q0, q1, q2, z, b, d, d0, i, i0, 0, width - 1, prm)
        for j in range(1, width):
            _primal_px3(x, xb, p, q0, q1, q2, z, b, d, d0, i, i0, j, j - 1, prm)


@njit(**_INLINE)
def _primal_data_px3(x, xb, data, q0, q1, q2, c, bb, b, d, d0, i, i0, j, j0, prm):
    tau, theta = prm[0], prm[2]
    grad_t_q = _grad_t3(q0, q1, q2, b, d, d0, i, i0, j, j0)
    x_old = x[b, d, i, j]
    x_new = x_old - tau * data[c, bb, d, i, j] - tau * grad_t_q
    x[b, d, i, j] = x_new
    xb[b, d, i, j] = x_new + theta * (x_new - x_old)


@njit(**_JIT)
def primal3d_data(x, xb, data, q0, q1, q2, prm):
    n_img, depth, height, width = x.shape
    per_part = data.shape[1]
    for row in prange(n_img * depth * height):
        b, d, i = _voxel_row(row, depth, height)
        c = b // per_part
        bb = b - c * per_part
        d0 = d - 1 if d > 0 else depth - 1
        i0 = i - 1 if i > 0 else height - 1
        _primal_data_px3(x, xb, data, q0, q1, q2, c, bb, b, d, d0, i, i0, 0, width - 1, prm)
        for j in range(1, width):
            _primal_data_px3(x, xb, data, q0, q1, q2, c, bb, b, d, d0, i, i0, j, j - 1, prm)


@njit(**_INLINE)
def _adjoint_dual_px3(gx, gxb, gq0, gq1, gq2, glam, byte, b, d, d1, i, i1, j, j1, shared, prm):
    tau, one_theta, zero = prm[0], prm[5], prm[6]
    a = gx[b, d, i, j] + one_theta * gxb[b, d, i, j]
    a0 = gx[b, d1, i, j] + one_theta * gxb[b, d1, i, j]
    a1 = gx[b, d, i1, j] + one_theta * gxb[b, d, i1, j]
    a2 = gx[b, d, i, j1] + one_theta * gxb[b, d, i, j1]
    g0 = gq0[b, d, i, j] - tau * (a0 - a)
    g1 = gq1[b, d, i, j] - tau * (a1 - a)
    g2 = gq2[b, d, i, j] - tau * (a2 - a)
    s0 = byte & 3
    s1 = (byte >> 2) & 3
    s2 = (byte >> 4) & 3
    gq0[b, d, i, j] = _pass_if(g0, s0 == INSIDE, zero)
    gq1[b, d, i, j] = _pass_if(g1, s1 == INSIDE, zero)
    gq2[b, d, i, j] = _pass_if(g2, s2 == INSIDE, zero)
    d0 = _lam_adjoint(g0, s0, zero)
    d1_ = _lam_adjoint(g1, s1, zero)
    d2 = _lam_adjoint(g2, s2, zero)
    if shared:
        glam[b, 0, d, i, j] += (d0 + d1_) + d2
    else:
        glam[b, 0, d, i, j] += d0
        glam[b, 1, d, i, j] += d1_
        glam[b, 2, d, i, j] += d2


@njit(**_JIT)
def adjoint_dual3d(gx, gxb, gq0, gq1, gq2, glam, record, prm):
    """Pass A for volumes: gu_a into gq_a, and gΛ (always, as :func:`adjoint_dual2d`)."""
    n_img, depth, height, width = gx.shape
    shared = glam.shape[1] == 1
    for row in prange(n_img * depth * height):
        b, d, i = _voxel_row(row, depth, height)
        d1 = d + 1 if d + 1 < depth else 0
        i1 = i + 1 if i + 1 < height else 0
        for j in range(width - 1):
            _adjoint_dual_px3(gx, gxb, gq0, gq1, gq2, glam, record[b, d, i, j], b, d, d1, i, i1, j, j + 1, shared,
                              prm)
        _adjoint_dual_px3(gx, gxb, gq0, gq1, gq2, glam, record[b, d, i, width - 1], b, d, d1, i, i1, width - 1, 0,
                          shared, prm)


@njit(**_INLINE)
def _adjoint_primal_px3(gx, gxb, gp, gz, gq0, gq1, gq2, b, d, d0, i, i0, j, j0, prm):
    tau, sigma, theta, one_sigma, ratio, one_theta = prm[0], prm[1], prm[2], prm[3], prm[4], prm[5]
    gxb_old = gxb[b, d, i, j]
    a = gx[b, d, i, j] + one_theta * gxb_old
    gp_new = gp[b, d, i, j] - tau * a
    gz[b, d, i, j] -= ratio * gp_new
    grad_t_gu = _grad_t3(gq0, gq1, gq2, b, d, d0, i, i0, j, j0)
    gxb[b, d, i, j] = sigma * grad_t_gu + ratio * gp_new
    gp[b, d, i, j] = gp_new / one_sigma
    gx[b, d, i, j] = a - theta * gxb_old


@njit(**_JIT)
def adjoint_primal3d(gx, gxb, gp, gz, gq0, gq1, gq2, prm):
    """Pass B of denoising's adjoint for volumes (see :func:`adjoint_primal2d`)."""
    n_img, depth, height, width = gx.shape
    for row in prange(n_img * depth * height):
        b, d, i = _voxel_row(row, depth, height)
        d0 = d - 1 if d > 0 else depth - 1
        i0 = i - 1 if i > 0 else height - 1
        _adjoint_primal_px3(gx, gxb, gp, gz, gq0, gq1, gq2, b, d, d0, i, i0, 0, width - 1, prm)
        for j in range(1, width):
            _adjoint_primal_px3(gx, gxb, gp, gz, gq0, gq1, gq2, b, d, d0, i, i0, j, j - 1, prm)


@njit(**_INLINE)
def _adjoint_primal_data_px3(gx, gxb, data, gq0, gq1, gq2, c, bb, b, d, d0, i, i0, j, j0, prm):
    sigma, theta, one_theta = prm[1], prm[2], prm[5]
    gxb_old = gxb[b, d, i, j]
    a = gx[b, d, i, j] + one_theta * gxb_old
    grad_t_gu = _grad_t3(gq0, gq1, gq2, b, d, d0, i, i0, j, j0)
    gxb[b, d, i, j] = sigma * grad_t_gu + data[c, bb, d, i, j]
    gx[b, d, i, j] = a - theta * gxb_old


@njit(**_JIT)
def adjoint_primal3d_data(gx, gxb, data, gq0, gq1, gq2, prm):
    """Pass B with a forward operator for volumes (see :func:`adjoint_primal2d_data`)."""
    n_img, depth, height, width = gx.shape
    per_part = data.shape[1]
    for row in prange(n_img * depth * height):
        b, d, i = _voxel_row(row, depth, height)
        c = b // per_part
        bb = b - c * per_part
        d0 = d - 1 if d > 0 else depth - 1
        i0 = i - 1 if i > 0 else height - 1
        _adjoint_primal_data_px3(gx, gxb, data, gq0, gq1, gq2, c, bb, b, d, d0, i, i0, 0, width - 1, prm)
        for j in range(1, width):
            _adjoint_primal_data_px3(gx, gxb, data, gq0, gq1, gq2, c, bb, b, d, d0, i, i0, j, j - 1, prm)


# ---------------------------------------------------------------------------------------------------------------------
# Whole solves of denoising in one call: the iteration loop in compiled code, no Python between the passes (a call
# from Python costs microseconds of argument checks, a fifth of an iteration at 256²). The passes stay the kernels
# above, each its own parallel region.
# ---------------------------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def run2d(x, xb, p, q0, q1, z, lam, prm, n_iter):
    """``n_iter`` iterations on images, no clip states."""
    for _ in range(n_iter):
        dual2d(xb, q0, q1, lam, prm)
        primal2d(x, xb, p, q0, q1, z, prm)


@njit(cache=True, nogil=True)
def run2d_states(x, xb, p, q0, q1, z, lam, records, scratch, prm):
    """One iteration per record of ``records`` (T, B, H, ⌈W/2⌉) on images, writing its clip states."""
    for it in range(records.shape[0]):
        dual2d_states(xb, q0, q1, lam, records[it], scratch, prm)
        primal2d(x, xb, p, q0, q1, z, prm)


@njit(cache=True, nogil=True)
def adjoint_run2d(gx, gxb, gp, gz, gq0, gq1, glam, records, scratch, prm):
    """The adjoint of :func:`run2d_states`, from the last record to the first."""
    for it in range(records.shape[0] - 1, -1, -1):
        adjoint_dual2d(gx, gxb, gq0, gq1, glam, records[it], scratch, prm)
        adjoint_primal2d(gx, gxb, gp, gz, gq0, gq1, prm)


@njit(cache=True, nogil=True)
def run3d(x, xb, p, q0, q1, q2, z, lam, prm, n_iter):
    """``n_iter`` iterations on volumes, no clip states."""
    for _ in range(n_iter):
        dual3d(xb, q0, q1, q2, lam, prm)
        primal3d(x, xb, p, q0, q1, q2, z, prm)


@njit(cache=True, nogil=True)
def run3d_states(x, xb, p, q0, q1, q2, z, lam, records, prm):
    """One iteration per record of ``records`` (T, B, D, H, W) on volumes, writing its clip states."""
    for it in range(records.shape[0]):
        dual3d_states(xb, q0, q1, q2, lam, records[it], prm)
        primal3d(x, xb, p, q0, q1, q2, z, prm)


@njit(cache=True, nogil=True)
def adjoint_run3d(gx, gxb, gp, gz, gq0, gq1, gq2, glam, records, prm):
    """The adjoint of :func:`run3d_states`, from the last record to the first."""
    for it in range(records.shape[0] - 1, -1, -1):
        adjoint_dual3d(gx, gxb, gq0, gq1, gq2, glam, records[it], prm)
        adjoint_primal3d(gx, gxb, gp, gz, gq0, gq1, gq2, prm)


# ---------------------------------------------------------------------------------------------------------------------
# The data term of a forward operator in image space (docs/method.md §10), on flat real views (complex as re, im pairs)
# ---------------------------------------------------------------------------------------------------------------------


@njit(fastmath=_FLAGS, cache=True, nogil=True, error_model="numpy")
def data_dual(P, normal, adjoint_y, sigma, inv_one_sigma):
    """P ← (P + σ(AᴴA x̄ − Aᴴy))·1/(1+σ) in place, in one pass (the PyTorch form's three).

    (C, N, H, W) arrays: P and Aᴴy contiguous TV batches, ``normal`` a view of any strides (the real view of a
    complex image, transposed where 1-D FFTs left it so)."""
    parts, n_img, height, width = P.shape
    for c in range(parts):
        for n in range(n_img):
            for i in range(height):
                for j in range(width):
                    P[c, n, i, j] = (P[c, n, i, j] + sigma * (normal[c, n, i, j] - adjoint_y[c, n, i, j])) * inv_one_sigma


@njit(fastmath=_FLAGS, cache=True, nogil=True, error_model="numpy")
def data_adjoint(r, a, r_sum, keep_sum, tau, inv_one_sigma):
    """r ← r·1/(1+σ) − τa in place; r_sum += r when ``keep_sum``; flat arrays."""
    if keep_sum:  # two loops, not a branch in one: each vectorises
        for n in range(r.size):
            value = r[n] * inv_one_sigma - tau * a[n]
            r[n] = value
            r_sum[n] += value
    else:
        for n in range(r.size):
            r[n] = r[n] * inv_one_sigma - tau * a[n]


@njit(fastmath=_FLAGS, cache=True, nogil=True, error_model="numpy")
def scale_into(out, source, factor):
    """out ← factor·source; flat arrays."""
    for n in range(out.size):
        out[n] = factor * source[n]


# Complex images, interleaved (re, im) pairs as (N, H, W, 2) arrays, against the planar TV batch (2, N, H, W): the
# operator reads and writes the first, the TV passes the second; these passes convert while they compute.


@njit(fastmath=_FLAGS, cache=True, nogil=True, error_model="numpy")
def to_pairs(pairs, parts):
    """pairs[n, i, j, c] ← parts[c, n, i, j]: a complex image from the TV batch's real and imaginary parts."""
    _, n_img, height, width = parts.shape
    for row in range(n_img * height):
        n = row // height
        i = row - n * height
        for j in range(width):
            pairs[n, i, j, 0] = parts[0, n, i, j]
            pairs[n, i, j, 1] = parts[1, n, i, j]


@njit(fastmath=_FLAGS, cache=True, nogil=True, error_model="numpy")
def data_dual_pairs(P, normal, adjoint_y, sigma, inv_one_sigma):
    """:func:`data_dual` with AᴴA x̄ a complex image (N, H, W, 2); P and Aᴴy planar (2, N, H, W)."""
    _, n_img, height, width = P.shape
    for row in range(n_img * height):
        n = row // height
        i = row - n * height
        for j in range(width):
            P[0, n, i, j] = (P[0, n, i, j] + sigma * (normal[n, i, j, 0] - adjoint_y[0, n, i, j])) * inv_one_sigma
            P[1, n, i, j] = (P[1, n, i, j] + sigma * (normal[n, i, j, 1] - adjoint_y[1, n, i, j])) * inv_one_sigma


@njit(fastmath=_FLAGS, cache=True, nogil=True, error_model="numpy")
def scale_pairs(out, source, factor):
    """out[c, n, i, j] ← factor·source[n, i, j, c]: a complex image (N, H, W, 2), scaled, into a planar TV batch."""
    _, n_img, height, width = out.shape
    for row in range(n_img * height):
        n = row // height
        i = row - n * height
        for j in range(width):
            out[0, n, i, j] = factor * source[n, i, j, 0]
            out[1, n, i, j] = factor * source[n, i, j, 1]
