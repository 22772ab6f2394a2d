"""The Triton engine of the checkpointed recompute backward (isotropic TV, docs/method.md §12).

:class:`RecomputeEngine` runs the kernels of :mod:`tvfast.kernels.isotropic`
for :mod:`tvfast.solver.recompute`, which drives it: ``start``, ``step``
(forward, optionally recording u into a segment's records), ``save`` /
``load`` (checkpoints of x, x̄, p, q), ``adjoint_start``, ``adjoint_step``
and ``adjoint_result``. Two launches per iteration each way.

A forward operator (docs/method.md §10) enters as ``data``: an object whose
``forward(x̄, σ)`` advances the image-space dual P = Aᴴp and returns
P_{k+1}, and whose ``adjoint(a, τ, σ)`` advances its adjoint and returns
σ/(1+σ)·AᴴA gP' — both in PyTorch, between the launches; the kernels read
them in p's place (``DATA_STEP``). Complex images are TV batches of
``parts`` = 2 (real parts first), whose components share one norm.

Importing this module imports Triton.
"""

from __future__ import annotations

import torch
import triton

from tvfast.kernels.isotropic import adjoint_primal, iso_adjoint_dual, iso_dual, primal
from tvfast.kernels.launch import step_sizes

__all__ = ["RecomputeEngine"]

BLOCK = 1024
NUM_WARPS = 4


class RecomputeEngine:
    """Isotropic TV on a contiguous real TV batch ``start`` (N, H, W) or (N, D, H, W), N = parts·B, with one Λ
    (Bl, 1, *S), Bl = 1 or B, and steps that need no gradient (``steps.at(k)`` → τ, σ, θ)."""

    def __init__(self, start: torch.Tensor, lam: torch.Tensor, steps, parts: int = 1, neumann: bool = False,
                 data=None):
        if start.dim() not in (3, 4):
            raise ValueError(f"start: expected (N, H, W) or (N, D, H, W), got shape {tuple(start.shape)}")
        self.n_axes = start.dim() - 1
        self.start_value = start.detach().contiguous()
        self.shape = self.start_value.shape
        n_tv, *spatial = self.shape
        self.dhw = (1, *spatial) if self.n_axes == 2 else tuple(spatial)
        self.n_tv, self.parts = n_tv, parts
        self.n_img = n_tv // parts
        lam_full = lam.detach().to(start.dtype).expand(lam.shape[0], 1, *spatial)  # strides 0 where broadcast
        lam5 = lam_full.unsqueeze(2) if self.n_axes == 2 else lam_full
        self.lam = lam5.expand(self.n_img if lam5.shape[0] > 1 else 1, 1, *self.dhw)
        sb, _, sd, sh, sw = self.lam.stride()
        self.lam_strides = (0 if self.lam.shape[0] == 1 else sb, sd, sh, sw)
        self.steps, self.neumann, self.data = steps, neumann, data
        item = start.element_size()
        self.checkpoint_bytes = (3 + self.n_axes) * item
        self.record_bytes = self.n_axes * item
        self.total = self.n_img * self.dhw[0] * self.dhw[1] * self.dhw[2]  # elements of one part
        self.plane = self.start_value.numel()  # elements of the TV batch (one axis plane of q)
        self.img_grid = (triton.cdiv(self.total, BLOCK),)
        self.tv_grid = (triton.cdiv(self.plane, BLOCK),)

    def _prm(self, k: int) -> torch.Tensor:
        return step_sizes(*self.steps.at(k), self.start_value)

    @property
    def shape_dtype(self) -> torch.dtype:
        return self.start_value.dtype

    def start(self):
        self.x, self.x_bar = self.start_value.clone(), self.start_value.clone()
        self.p = torch.zeros_like(self.x)
        self.q = self.x.new_zeros(self.n_axes, *self.shape)
        if self.data is not None:
            self.data.start()

    def _state(self):
        return (self.x, self.x_bar, self.q) if self.data is not None else (self.x, self.x_bar, self.p, self.q)

    def save(self):
        state = [t.clone() for t in self._state()]  # with a data term p is unused: P is the data's
        return state, (self.data.save() if self.data is not None else None)

    def load(self, checkpoint):
        state, data = checkpoint
        for dst, src in zip(self._state(), state):
            dst.copy_(src)
        if self.data is not None:
            self.data.load(data)

    def result(self) -> torch.Tensor:
        return self.x

    def new_records(self, n: int):
        return self.x.new_empty(n, self.n_axes, *self.shape)

    def step(self, k: int, records=None, slot: int = 0):
        prm = self._prm(k)
        p = self.p if self.data is None else self.data.forward(self.x_bar, self.steps.at(k)[1]).contiguous()
        record = records[slot] if records is not None else self.q  # (unused without RECORD)
        iso_dual[self.img_grid](self.x_bar, self.q, self.lam, record, self.total, self.plane, *self.dhw, *self.lam_strides, prm,
                                N_AXES=self.n_axes, PARTS=self.parts, NEUMANN=self.neumann,
                                RECORD=records is not None, BLOCK=BLOCK, num_warps=NUM_WARPS)
        primal[self.tv_grid](self.x, self.x_bar, p, self.q, self.start_value, self.plane, *self.dhw, prm,
                             N_AXES=self.n_axes, DATA_STEP=self.data is not None, BLOCK=BLOCK, num_warps=NUM_WARPS)

    def adjoint_start(self, grad_x: torch.Tensor):
        self.gx = grad_x.detach().to(self.shape_dtype).contiguous().clone()
        self.gx_bar, self.gp, self.gz = (torch.zeros_like(self.gx) for _ in range(3))
        self.gq = self.gx.new_zeros(self.n_axes, *self.shape)
        self.glam = self.gx.new_zeros(self.n_img, 1, *self.dhw)
        if self.data is not None:
            self.data.adjoint_start()

    def adjoint_step(self, k: int, records, slot: int, last: bool = False):
        tau, sigma, theta = self.steps.at(k)
        prm = self._prm(k)
        handed = self.gp
        if self.data is not None:
            handed = self.data.adjoint(torch.add(self.gx, self.gx_bar, alpha=1.0 + theta), tau, sigma).contiguous()
        iso_adjoint_dual[self.img_grid](self.gx, self.gx_bar, self.gq, self.glam, records[slot], self.lam, self.total,
                                        self.plane, *self.dhw, *self.lam_strides, prm, N_AXES=self.n_axes, PARTS=self.parts,
                                        NEUMANN=self.neumann, BLOCK=BLOCK, num_warps=NUM_WARPS)
        adjoint_primal[self.tv_grid](self.gx, self.gx_bar, handed, self.gz, self.gq, self.plane, *self.dhw, prm,
                                     N_AXES=self.n_axes, DATA_STEP=self.data is not None, BLOCK=BLOCK,
                                     num_warps=NUM_WARPS)

    def adjoint_result(self):
        """(∂/∂start, ∂/∂z or the data's gradient, gΛ (B, 1, *S), no step gradients)."""
        g_data = self.gz if self.data is None else self.data.g_adjoint_y
        glam = self.glam.reshape(self.n_img, 1, *self.shape[1:])
        return self.gx + self.gx_bar, g_data, glam, [None, None, None]
