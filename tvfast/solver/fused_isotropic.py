"""The fused CPU kernels of isotropic TV: the dual pass and its adjoint, compiled by Numba (docs/method.md §12).

Imported only by :mod:`tvfast.solver.fused` when an isotropic solve needs
them. The primal pass and the primal half of the adjoint are those of
anisotropic TV (:mod:`tvfast.solver.fused_kernels`); only the projection of
the dual differs:

* forward, every pixel: u_a = q_a + σ(x̄(· + e_a) − x̄) for each axis a,
  |u| = √(Σ_a u_a²), q_a ← u_a·s with s = Λ/|u| where |u| > Λ and s = 1
  elsewhere; the ``_record`` variants also write u_a into this iteration's
  record (the recompute backward needs u, not a 2-bit state);
* adjoint, every pixel, from the recorded u: g_a = gq_a − τ(a(· + e_a) − a)
  with a = gx + (1+θ)gx̄, then where |u| > Λ, with n = u/|u|,
  gu = (Λ/|u|)(g − n(n·g)) and gΛ += n·g; elsewhere gu = g.

``neumann`` (0 or 1): the wrapping difference of each axis is taken as 0 by
reading the pixel itself as its own neighbour there, so u_a, q_a and gq_a
stay 0 on the last index of axis a and the periodic ∇ᵀ of the primal passes
is the Neumann one (docs/method.md §10, §12).

Arrays as in :mod:`tvfast.solver.fused_kernels`: x̄, q_a, gx, gx̄, gq_a (B, *S)
C-contiguous, Λ (Bl, 1, *S) with Bl = B or 1, records u_a (B, *S), gΛ
(B, 1, *S); ``prm`` = (τ, σ, θ, 1+σ, σ/(1+σ), 1+θ, 0, 1): the constants 0 and 1
come from there, in the arrays' dtype (a float64 literal would turn a
float32 kernel's arithmetic into float64).
"""

from __future__ import annotations

import math

from numba import njit, prange

__all__ = ["dual2d_iso", "dual2d_iso_record", "adjoint_dual2d_iso", "dual3d_iso", "dual3d_iso_record",
           "adjoint_dual3d_iso"]

# The rounding rules of tvfast.solver.fused_kernels: no FMA contraction, no reassociation, finite inputs.
_FLAGS = {"nnan", "ninf", "nsz"}
_JIT = dict(parallel=True, fastmath=_FLAGS, cache=True, nogil=True, boundscheck=False, error_model="numpy")
_INLINE = dict(fastmath=_FLAGS, cache=True, inline="always", error_model="numpy")


@njit(**_INLINE)
def _scale(norm, lam, one):
    """Λ/|u| where |u| > Λ, else 1 (a select: the division's value is unused where |u| ≤ Λ)."""
    return lam / norm if norm > lam else one


@njit(**_INLINE)
def _next(i, n, neumann):
    """The forward neighbour along an axis of length n: i + 1, wrapping to 0 (periodic) or to i itself (Neumann)."""
    if i + 1 < n:
        return i + 1
    return i if neumann else 0


# ---------------------------------------------------------------------------------------------------------------------
# Images (B, H, W)
# ---------------------------------------------------------------------------------------------------------------------


@njit(**_INLINE)
def _u2(xb, q0, q1, b, i, i1, j, j1, sigma):
    xh = xb[b, i, j]
    return q0[b, i, j] + sigma * (xb[b, i1, j] - xh), q1[b, i, j] + sigma * (xb[b, i, j1] - xh)


@njit(**_INLINE)
def _project2(q0, q1, u0, u1, lam, b, i, j, one):
    s = _scale(math.sqrt(u0 * u0 + u1 * u1), lam, one)
    q0[b, i, j] = u0 * s
    q1[b, i, j] = u1 * s


@njit(**_JIT)
def dual2d_iso(xb, q0, q1, lam, neumann, prm):
    """q ← u·min(1, Λ/|u|) in place, u = q + σ∇x̄ (a solve without a backward)."""
    sigma, one = prm[1], prm[7]
    n_img, height, width = xb.shape
    shared = lam.shape[0] == 1
    for row in prange(n_img * height):
        b = row // height
        i = row - b * height
        lb = 0 if shared else b
        i1 = _next(i, height, neumann)
        for j in range(width - 1):
            u0, u1 = _u2(xb, q0, q1, b, i, i1, j, j + 1, sigma)
            _project2(q0, q1, u0, u1, lam[lb, 0, i, j], b, i, j, one)
        j = width - 1
        u0, u1 = _u2(xb, q0, q1, b, i, i1, j, _next(j, width, neumann), sigma)
        _project2(q0, q1, u0, u1, lam[lb, 0, i, j], b, i, j, one)


@njit(**_JIT)
def dual2d_iso_record(xb, q0, q1, lam, u0_rec, u1_rec, neumann, prm):
    """:func:`dual2d_iso`, and u_a into ``u0_rec``, ``u1_rec`` (B, H, W)."""
    sigma, one = prm[1], prm[7]
    n_img, height, width = xb.shape
    shared = lam.shape[0] == 1
    for row in prange(n_img * height):
        b = row // height
        i = row - b * height
        lb = 0 if shared else b
        i1 = _next(i, height, neumann)
        for j in range(width - 1):
            u0, u1 = _u2(xb, q0, q1, b, i, i1, j, j + 1, sigma)
            u0_rec[b, i, j] = u0
            u1_rec[b, i, j] = u1
            _project2(q0, q1, u0, u1, lam[lb, 0, i, j], b, i, j, one)
        j = width - 1
        u0, u1 = _u2(xb, q0, q1, b, i, i1, j, _next(j, width, neumann), sigma)
        u0_rec[b, i, j] = u0
        u1_rec[b, i, j] = u1
        _project2(q0, q1, u0, u1, lam[lb, 0, i, j], b, i, j, one)


@njit(**_INLINE)
def _adjoint_px2(gx, gxb, gq0, gq1, glam, u0_rec, u1_rec, lam, b, i, i1, j, j1, prm):
    tau, one_theta = prm[0], prm[5]
    a = gx[b, i, j] + one_theta * gxb[b, i, j]
    g0 = gq0[b, i, j] - tau * ((gx[b, i1, j] + one_theta * gxb[b, i1, j]) - a)
    g1 = gq1[b, i, j] - tau * ((gx[b, i, j1] + one_theta * gxb[b, i, j1]) - a)
    u0 = u0_rec[b, i, j]
    u1 = u1_rec[b, i, j]
    norm = math.sqrt(u0 * u0 + u1 * u1)
    active = norm > lam
    inv = prm[7] / (norm if active else prm[7])  # one division, never by 0 (|u| = 0 ≤ Λ is inactive)
    n0 = u0 * inv
    n1 = u1 * inv
    dot = n0 * g0 + n1 * g1
    r = lam * inv
    gq0[b, i, j] = r * (g0 - n0 * dot) if active else g0
    gq1[b, i, j] = r * (g1 - n1 * dot) if active else g1
    glam[b, 0, i, j] += dot if active else prm[6]


@njit(**_JIT)
def adjoint_dual2d_iso(gx, gxb, gq0, gq1, glam, u0_rec, u1_rec, lam, neumann, prm):
    """The adjoint of the isotropic dual pass: gu_a into gq_a and gΛ += n·g, from the recorded u."""
    n_img, height, width = gx.shape
    shared = lam.shape[0] == 1
    for row in prange(n_img * height):
        b = row // height
        i = row - b * height
        lb = 0 if shared else b
        i1 = _next(i, height, neumann)
        for j in range(width - 1):
            _adjoint_px2(gx, gxb, gq0, gq1, glam, u0_rec, u1_rec, lam[lb, 0, i, j], b, i, i1, j, j + 1, prm)
        j = width - 1
        _adjoint_px2(gx, gxb, gq0, gq1, glam, u0_rec, u1_rec, lam[lb, 0, i, j], b, i, i1, j,
                     _next(j, width, neumann), prm)


# ---------------------------------------------------------------------------------------------------------------------
# Volumes (B, D, H, W)
# ---------------------------------------------------------------------------------------------------------------------


@njit(**_INLINE)
def _u3(xb, q0, q1, q2, b, d, d1, i, i1, j, j1, sigma):
    xh = xb[b, d, i, j]
    return (q0[b, d, i, j] + sigma * (xb[b, d1, i, j] - xh), q1[b, d, i, j] + sigma * (xb[b, d, i1, j] - xh),
            q2[b, d, i, j] + sigma * (xb[b, d, i, j1] - xh))


@njit(**_INLINE)
def _project3(q0, q1, q2, u0, u1, u2, lam, b, d, i, j, one):
    s = _scale(math.sqrt((u0 * u0 + u1 * u1) + u2 * u2), lam, one)
    q0[b, d, i, j] = u0 * s
    q1[b, d, i, j] = u1 * s
    q2[b, d, i, j] = u2 * s


@njit(**_INLINE)
def _volume_row(row, depth, height):
    b = row // (depth * height)
    rest = row - b * depth * height
    d = rest // height
    return b, d, rest - d * height


@njit(**_JIT)
def dual3d_iso(xb, q0, q1, q2, lam, neumann, prm):
    """:func:`dual2d_iso` for volumes."""
    sigma, one = prm[1], prm[7]
    n_img, depth, height, width = xb.shape
    shared = lam.shape[0] == 1
    for row in prange(n_img * depth * height):
        b, d, i = _volume_row(row, depth, height)
        lb = 0 if shared else b
        d1 = _next(d, depth, neumann)
        i1 = _next(i, height, neumann)
        for j in range(width - 1):
            u0, u1, u2 = _u3(xb, q0, q1, q2, b, d, d1, i, i1, j, j + 1, sigma)
            _project3(q0, q1, q2, u0, u1, u2, lam[lb, 0, d, i, j], b, d, i, j, one)
        j = width - 1
        u0, u1, u2 = _u3(xb, q0, q1, q2, b, d, d1, i, i1, j, _next(j, width, neumann), sigma)
        _project3(q0, q1, q2, u0, u1, u2, lam[lb, 0, d, i, j], b, d, i, j, one)


@njit(**_JIT)
def dual3d_iso_record(xb, q0, q1, q2, lam, u0_rec, u1_rec, u2_rec, neumann, prm):
    """:func:`dual3d_iso`, and u_a into the records (B, D, H, W)."""
    sigma, one = prm[1], prm[7]
    n_img, depth, height, width = xb.shape
    shared = lam.shape[0] == 1
    for row in prange(n_img * depth * height):
        b, d, i = _volume_row(row, depth, height)
        lb = 0 if shared else b
        d1 = _next(d, depth, neumann)
        i1 = _next(i, height, neumann)
        for j in range(width - 1):
            u0, u1, u2 = _u3(xb, q0, q1, q2, b, d, d1, i, i1, j, j + 1, sigma)
            u0_rec[b, d, i, j] = u0
            u1_rec[b, d, i, j] = u1
            u2_rec[b, d, i, j] = u2
            _project3(q0, q1, q2, u0, u1, u2, lam[lb, 0, d, i, j], b, d, i, j, one)
        j = width - 1
        u0, u1, u2 = _u3(xb, q0, q1, q2, b, d, d1, i, i1, j, _next(j, width, neumann), sigma)
        u0_rec[b, d, i, j] = u0
        u1_rec[b, d, i, j] = u1
        u2_rec[b, d, i, j] = u2
        _project3(q0, q1, q2, u0, u1, u2, lam[lb, 0, d, i, j], b, d, i, j, one)


@njit(**_INLINE)
def _adjoint_px3(gx, gxb, gq0, gq1, gq2, glam, u0_rec, u1_rec, u2_rec, lam, b, d, d1, i, i1, j, j1, prm):
    tau, one_theta = prm[0], prm[5]
    a = gx[b, d, i, j] + one_theta * gxb[b, d, i, j]
    g0 = gq0[b, d, i, j] - tau * ((gx[b, d1, i, j] + one_theta * gxb[b, d1, i, j]) - a)
    g1 = gq1[b, d, i, j] - tau * ((gx[b, d, i1, j] + one_theta * gxb[b, d, i1, j]) - a)
    g2 = gq2[b, d, i, j] - tau * ((gx[b, d, i, j1] + one_theta * gxb[b, d, i, j1]) - a)
    u0 = u0_rec[b, d, i, j]
    u1 = u1_rec[b, d, i, j]
    u2 = u2_rec[b, d, i, j]
    norm = math.sqrt((u0 * u0 + u1 * u1) + u2 * u2)
    active = norm > lam
    inv = prm[7] / (norm if active else prm[7])  # one division, never by 0 (|u| = 0 ≤ Λ is inactive)
    n0 = u0 * inv
    n1 = u1 * inv
    n2 = u2 * inv
    dot = (n0 * g0 + n1 * g1) + n2 * g2
    r = lam * inv
    gq0[b, d, i, j] = r * (g0 - n0 * dot) if active else g0
    gq1[b, d, i, j] = r * (g1 - n1 * dot) if active else g1
    gq2[b, d, i, j] = r * (g2 - n2 * dot) if active else g2
    glam[b, 0, d, i, j] += dot if active else prm[6]


@njit(**_JIT)
def adjoint_dual3d_iso(gx, gxb, gq0, gq1, gq2, glam, u0_rec, u1_rec, u2_rec, lam, neumann, prm):
    """:func:`adjoint_dual2d_iso` for volumes."""
    n_img, depth, height, width = gx.shape
    shared = lam.shape[0] == 1
    for row in prange(n_img * depth * height):
        b, d, i = _volume_row(row, depth, height)
        lb = 0 if shared else b
        d1 = _next(d, depth, neumann)
        i1 = _next(i, height, neumann)
        for j in range(width - 1):
            _adjoint_px3(gx, gxb, gq0, gq1, gq2, glam, u0_rec, u1_rec, u2_rec, lam[lb, 0, d, i, j], b, d, d1, i, i1,
                         j, j + 1, prm)
        j = width - 1
        _adjoint_px3(gx, gxb, gq0, gq1, gq2, glam, u0_rec, u1_rec, u2_rec, lam[lb, 0, d, i, j], b, d, d1, i, i1, j,
                     _next(j, width, neumann), prm)
