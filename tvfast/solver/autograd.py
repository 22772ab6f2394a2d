"""The autograd Function of the PDHG solver, with the clip-state backward.

The forward runs T fused iterations and keeps only the clip states of every
dual entry (docs/method.md §4): 0.5 byte per pixel per iteration for images
(packed nibbles, :mod:`tvfast.solver.clip_states`), one byte per voxel per
iteration for volumes. The backward replays the adjoint recursion of
docs/method.md §4 over them. Both directions are delegated to a *solver
module* — :mod:`tvfast.solver.cpu` (PyTorch, images and volumes) or the
Triton kernels of :mod:`tvfast.kernels` — exposing ``solve_forward`` and
``solve_backward`` with the same signatures, plus solver-specific keyword
``options`` passed to both (the PyTorch path's ``compile``). The Function
itself does not depend on the dimension: it passes the number of Λ channels
(1 or 2 for images, 1 or 3 for volumes) to the backward and sums the
gradient to the shape of Λ.
"""

from __future__ import annotations

import torch

__all__ = ["PDHGFunction"]


class PDHGFunction(torch.autograd.Function):
    """x_T = PDHG_T(z, Λ) for z (B, H, W) and a 4-D broadcastable Λ, or z (B, D, H, W) and a 5-D Λ."""

    @staticmethod
    def forward(ctx, z, lam, n_iter, tau, sigma, theta, solver, options):
        x, clip_states = solver.solve_forward(z, lam, n_iter, tau, sigma, theta, keep_states=True, **options)
        ctx.save_for_backward(clip_states)
        ctx.config = (tuple(lam.shape), lam.dtype, tau, sigma, theta, solver, options)
        return x

    @staticmethod
    def backward(ctx, grad_x):
        (clip_states,) = ctx.saved_tensors
        lam_shape, lam_dtype, tau, sigma, theta, solver, options = ctx.config
        need_glam = ctx.needs_input_grad[1]
        grad_z, grad_lam = solver.solve_backward(grad_x.contiguous(), clip_states, lam_shape[1], need_glam,
                                                 tau, sigma, theta, **options)
        if need_glam:
            grad_lam = grad_lam.sum_to_size(lam_shape).to(lam_dtype)
        return (grad_z if ctx.needs_input_grad[0] else None), grad_lam, None, None, None, None, None, None
