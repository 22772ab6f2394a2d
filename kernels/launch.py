"""Launchers of the PDHG kernels: T forward iterations, and the adjoint pass over their clip states.

:func:`solve_forward` and :func:`solve_backward` are the Triton solver
behind :func:`tvfast.pdhg` (the same signatures as the PyTorch path,
:mod:`tvfast.solver.cpu`). The dimension is read from ``z``: (B, H, W) runs
the kernels of :mod:`tvfast.kernels.pdhg2d`, (B, D, H, W) those of
:mod:`tvfast.kernels.pdhg3d`. Everything else — tile sizes, grid, the
step-size tensor, double buffering, the size guards — is shared.

Each iteration is one launch. Arrays that the kernels read at neighbours
(x̄, q; in the adjoint gx, gx̄, gq) come in pairs and iteration ``it`` reads
buffer ``it % 2`` and writes the other; x and p (gp, gz, gΛ) are updated in
place. The adjoint runs the iterations in reverse and, since x₀ = x̄₀ = z,
finally adds gx₀ + gx̄₀ to ∂ℓ/∂z.

With ``data_step`` (a forward operator, docs/method.md §10; the contract of
:func:`tvfast.solver.cpu.solve_forward`) the data term is the caller's: its
callable runs in PyTorch before each launch and hands the kernels Aᴴp_{k+1}
(forward) or σ/(1+σ)·Aᴴgp'' (adjoint), which they read in p's (gp's) place
(``DATA_STEP``, :mod:`tvfast.kernels.pdhg2d`). The TV part stays in the
kernels; the adjoint kernel also writes the next reverse step's
a = gx + (1+θ)gx̄, the callable's input, so no extra pass over the images
runs in PyTorch.

Importing this module imports Triton. For CPU tensors (tests), set
``TRITON_INTERPRET=1`` before Triton is first imported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from tvfast.kernels.pdhg2d import pdhg2d_adjoint_step, pdhg2d_forward_step
from tvfast.kernels.pdhg3d import pdhg3d_adjoint_step, pdhg3d_forward_step

__all__ = ["solve_forward", "solve_backward"]

MAX_ELEMENTS = 2**31 - 1
"""Offsets inside one image or volume are int32 in the kernels (batch offsets are int64)."""
MAX_GRID_YZ = 65535
"""CUDA's limit on grid axes 1 and 2, which carry B (images) or D and B (volumes)."""


@dataclass(frozen=True)
class _Launch:
    """What every launch of one problem shares: kernels, shapes, scalar arguments, grid and tiles."""

    forward: triton.JITFunction
    adjoint: triton.JITFunction
    dual_shape: tuple[int, ...]  # (B, C, *spatial), C = number of spatial axes
    states_shape: tuple[int, ...]  # clip states of one iteration
    sizes: tuple[int, ...]  # the kernels' size arguments: (H, W, ⌈W/2⌉) or (D, H, W)
    grid: tuple[int, ...]  # (tiles of an H×W image, B) or (tiles of an H×W slice, D, B)
    block_h: int
    block_w: int
    num_warps: int


def _pick_blocks(height: int, width: int, device: torch.device) -> tuple[int, int, int]:
    """(BLOCK_H, BLOCK_W, num_warps) for an H×W image or slice.

    On the GPU, tiles of up to 16×64 (1024 lanes; rows of 64 contiguous
    floats, so loads coalesce). Under the interpreter every program costs
    milliseconds, so tiles are as large as the image, up to 64×64. BLOCK_W ≥ 2
    always: the 2-D kernel packs pixel pairs into bytes.
    """
    block_w = min(64, max(2, triton.next_power_of_2(width)))
    if device.type == "cuda":
        return max(1, min(1024 // block_w, triton.next_power_of_2(height))), block_w, 4
    return min(64, triton.next_power_of_2(height)), block_w, 1


def _plan(shape: tuple[int, ...], device: torch.device, name: str) -> _Launch:
    """The launch geometry for data of ``shape``, (B, H, W) or (B, D, H, W); ``name`` is the argument checked."""
    if len(shape) not in (3, 4):
        raise ValueError(f"{name}: expected (B, H, W) images or (B, D, H, W) volumes, got shape {tuple(shape)}")
    batch, *spatial = shape
    height, width = spatial[-2:]
    n_elements = 1
    for size in spatial:
        n_elements *= size
    what = "image" if len(spatial) == 2 else "volume"
    if n_elements > MAX_ELEMENTS:
        raise ValueError(f"{name}: one {what} may hold at most 2**31 - 1 elements for the Triton kernels, "
                         f"got {'×'.join(map(str, spatial))}")
    if batch > MAX_GRID_YZ or (len(spatial) == 3 and spatial[0] > MAX_GRID_YZ):
        raise ValueError(f"{name}: the Triton kernels take at most {MAX_GRID_YZ} {what}s per call"
                         + (f" and {MAX_GRID_YZ} slices per volume" if len(spatial) == 3 else "")
                         + f", got shape {tuple(shape)}")
    block_h, block_w, num_warps = _pick_blocks(height, width, device)
    tiles = triton.cdiv(height, block_h) * triton.cdiv(width, block_w)
    if len(spatial) == 2:
        wp = (width + 1) // 2  # bytes per row: two pixels' 4-bit states per byte
        return _Launch(pdhg2d_forward_step, pdhg2d_adjoint_step, (batch, 2, height, width), (batch, height, wp),
                       (height, width, wp), (tiles, batch), block_h, block_w, num_warps)
    depth = spatial[0]
    return _Launch(pdhg3d_forward_step, pdhg3d_adjoint_step, (batch, 3, depth, height, width),
                   (batch, depth, height, width), (depth, height, width), (tiles, depth, batch),
                   block_h, block_w, num_warps)


_STEP_SIZES: dict[tuple, torch.Tensor] = {}
_STEP_SIZES_MAX = 64


def step_sizes(tau: float, sigma: float, theta: float, like: torch.Tensor) -> torch.Tensor:
    """(τ, σ, θ, σ/(1+σ)) in the data's dtype and on its device (float kernel arguments would be float32 on the GPU).

    The tensors are read-only and kept per (steps, dtype, device), at most 64: a repeated call copies nothing from
    the host, which a CUDA graph capture forbids. Steps that are new while a capture runs are written by fill
    kernels that the graph records; that tensor is not kept, as its values exist only when the graph replays.
    """
    key = (tau, sigma, theta, like.dtype, like.device)
    cached = _STEP_SIZES.get(key)
    if cached is not None:
        return cached
    values = (tau, sigma, theta, sigma / (1.0 + sigma))
    if like.is_cuda and torch.cuda.is_current_stream_capturing():
        out = torch.empty(4, dtype=like.dtype, device=like.device)
        for index, value in enumerate(values):
            out[index].fill_(value)
        return out
    if len(_STEP_SIZES) >= _STEP_SIZES_MAX:
        _STEP_SIZES.clear()
    _STEP_SIZES[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return _STEP_SIZES[key]


def _handed_in(value, buffer: torch.Tensor) -> torch.Tensor:
    """The result of a ``data_step`` as a kernel operand: itself when it has ``buffer``'s shape, dtype,
    device and contiguous layout (no copy), else copied into ``buffer``."""
    if not isinstance(value, torch.Tensor) or value.shape != buffer.shape:
        got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"data_step: expected a tensor of shape {tuple(buffer.shape)}, got {got}")
    if value.dtype == buffer.dtype and value.device == buffer.device and value.is_contiguous():
        return value
    return buffer.copy_(value)


def solve_forward(z, lam, n_iter: int, tau: float, sigma: float, theta: float, keep_states: bool, data_step=None):
    """Run ``n_iter`` fused iterations on contiguous z: (B, H, W) images or (B, D, H, W) volumes.

    ``lam`` is broadcastable to the duals' shape (B, C, *spatial) — C = 2 for
    images, 3 for volumes — with 1 or C channels. Returns x_T and, with
    ``keep_states``, the clip states of every iteration: (T, B, H, ⌈W/2⌉)
    packed nibbles for images, (T, B, D, H, W) bytes for volumes (else None).

    ``data_step`` None: denoising, x₀ = z and the data term ½‖x − z‖². Else
    (a forward operator, docs/method.md §10) z is the start x₀ and
    ``data_step(x̄_k)`` is called before each launch with x̄_k (the shape of
    z; a buffer to read, not keep); it advances its own dual p and returns
    Aᴴp_{k+1} with z's shape, which the kernel reads in p's place.
    """
    plan = _plan(tuple(z.shape), z.device, "z")
    if not z.is_contiguous():
        raise ValueError("z: expected a contiguous tensor")
    if lam.dim() != z.dim() + 1 or lam.shape[1] not in (1, plan.dual_shape[1]):
        raise ValueError(f"lam: expected a {z.dim() + 1}-D tensor broadcastable to {plan.dual_shape} with 1 or "
                         f"{plan.dual_shape[1]} channels, got shape {tuple(lam.shape)}")
    lam_full = lam.expand(plan.dual_shape)
    x = z.clone()
    p = torch.zeros_like(z)
    x_bar = [z.clone(), torch.empty_like(z)]
    q = [z.new_zeros(plan.dual_shape), z.new_empty(plan.dual_shape)]
    states = torch.empty(n_iter if keep_states else 1, *plan.states_shape, dtype=torch.uint8, device=z.device)
    params = step_sizes(tau, sigma, theta, z)
    p_in = p  # p_k, or Aᴴp_{k+1} from data_step
    with torch.no_grad():  # data_step runs the caller's operator; nothing here is differentiated by autograd
        for it in range(n_iter):
            src, dst = it % 2, (it + 1) % 2
            if data_step is not None:
                p_in = _handed_in(data_step(x_bar[src]), p)
            plan.forward[plan.grid](
                x, x_bar[src], x_bar[dst], p_in, q[src], q[dst], z, lam_full, states[it if keep_states else 0],
                *plan.sizes, *lam_full.stride(), params,
                WRITE_STATES=keep_states, DATA_STEP=data_step is not None, BLOCK_H=plan.block_h,
                BLOCK_W=plan.block_w, num_warps=plan.num_warps,
            )  # fmt: skip
    return x, (states if keep_states else None)


def solve_backward(grad_x, clip_states, lam_channels: int, need_glam: bool, tau: float, sigma: float, theta: float,
                   data_step=None):
    """Adjoint pass over the ``clip_states`` recorded by :func:`solve_forward`.

    ``grad_x`` is ∂ℓ/∂x_T with the shape of z. Returns ∂ℓ/∂z (shape of z) and,
    with ``need_glam``, ∂ℓ/∂Λ as (B, lam_channels, *spatial) (else None),
    ``lam_channels`` being 1 (one Λ shared by all directions) or C.

    With ``data_step`` (a forward operator, docs/method.md §10) the first
    result is ∂ℓ/∂x₀ = gx₀ + gx̄₀, and ``data_step(a)`` is called before each
    reverse launch with a = gx_{k+1} + (1+θ)gx̄_{k+1} (a buffer the next
    launch overwrites); it advances its own gp (and the gradient of the data)
    and returns σ/(1+σ)·Aᴴgp'' with grad_x's shape.
    """
    plan = _plan(tuple(grad_x.shape), grad_x.device, "grad_x")
    n_iter = clip_states.shape[0]
    if tuple(clip_states.shape[1:]) != plan.states_shape or clip_states.dtype != torch.uint8:
        raise ValueError(f"clip_states: expected uint8 of shape (T, {', '.join(map(str, plan.states_shape))}) for "
                         f"grad_x of shape {tuple(grad_x.shape)}, got {clip_states.dtype} {tuple(clip_states.shape)}")
    if lam_channels not in (1, plan.dual_shape[1]):
        raise ValueError(f"lam_channels: expected 1 or {plan.dual_shape[1]}, got {lam_channels}")
    gx = [grad_x.contiguous().clone(), torch.empty_like(grad_x, memory_format=torch.contiguous_format)]
    gp = torch.zeros_like(gx[0])
    gz = torch.zeros_like(gp)
    gx_bar = [torch.zeros_like(gp), torch.empty_like(gp)]
    gq = [gp.new_zeros(plan.dual_shape), gp.new_empty(plan.dual_shape)]
    glam_shape = (plan.dual_shape[0], lam_channels, *plan.dual_shape[2:])
    glam = gp.new_zeros(glam_shape) if need_glam else gz  # gz stands in for the pointer when unused
    params = step_sizes(tau, sigma, theta, gp)
    # With data_step the kernel reads the caller's σ/(1+σ)·Aᴴgp'' in gp's place and writes the next a in gz's.
    gp_in, gz_slot = gp, gz
    a = gx[0].clone() if data_step is not None else None  # a_T = gx_T + (1+θ)·0
    with torch.no_grad():  # data_step runs the caller's operator; nothing here is differentiated by autograd
        for step in range(n_iter):
            it = n_iter - 1 - step  # the forward iteration being differentiated
            src, dst = step % 2, (step + 1) % 2
            if data_step is not None:
                gp_in, gz_slot = _handed_in(data_step(a), gp), a
            plan.adjoint[plan.grid](
                gx[src], gx[dst], gx_bar[src], gx_bar[dst], gp_in, gq[src], gq[dst], gz_slot, glam, clip_states[it],
                *plan.sizes, params,
                LAM_CHANNELS=lam_channels if need_glam else 0, DATA_STEP=data_step is not None,
                BLOCK_H=plan.block_h, BLOCK_W=plan.block_w, num_warps=plan.num_warps,
            )  # fmt: skip
    gz += gx[n_iter % 2]
    gz += gx_bar[n_iter % 2]
    return gz, (glam if need_glam else None)
