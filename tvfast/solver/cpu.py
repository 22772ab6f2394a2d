"""PDHG with the clip-state backward, written in PyTorch ops (the CPU path), for 2 or 3 spatial axes.

The same algorithm as the Triton kernels (docs/method.md §3–§4, and §9 for
volumes and (x, y, t) sequences), one function per step, each written once
over the spatial axes a = 0 … n−1 (n = 2: images (B, H, W); n = 3: volumes
(B, D, H, W)) with per-axis tuples q = (q₀, …, q_{n−1}), Λ = (Λ₀, …, Λ_{n−1}):

* :func:`forward_step` — one iteration of docs/method.md §3,

      p ← (p + σ(x̄ − z)) / (1 + σ)
      u_a = q_a + σ ∂_a x̄,   q_a ← clip(u_a, −Λ_a, Λ_a)
      x_new = x − τp − τ ∇ᵀq,   x̄ ← x_new + θ(x_new − x)

  optionally emitting each entry's clip state s_a (:mod:`tvfast.solver.clip_states`);
* :func:`backward_step` — one iteration k = T−1 … 0 of the adjoint recursion
  of docs/method.md §4, which needs nothing from the forward pass but the s_a.

∂_a is the periodic forward difference along axis a (:mod:`tvfast.solver.differences`),
∇ᵀq = Σ_a (q_a shifted by +1 along a) − q_a.

Each step reads its state and writes the new state into preallocated buffers
(``copy_``), so under :func:`torch.compile` (Inductor) a step is a few fused,
vectorised C++ loops over the pixels and nothing is allocated per iteration
but Inductor's scratch. When a call compiles is decided by
:mod:`tvfast.solver.compile_policy`.

Layout. Neighbours along the outer axes (H, and D for volumes) are cheap for
Inductor: the wrap happens in an outer loop. A wrap along W inside the
vectorised inner loop would become a scalar gather, so every array that is
read at a W neighbour is stored *padded* as (…, W+2) with a periodic halo:
column 0 holds column W−1 and column W+1 holds column 0. Those arrays are x̄
and q_{n−1} (forward), gx, gx̄, gq_{n−1} and the clip states (backward), and
Λ_{n−1} when it varies along W. Each step writes the interior (through
(…, W) views) and the caller refreshes the two halo columns eagerly through
views built once per solve.

Clip states. Inside the compiled steps they travel as the float
Σ_a 4^a·s_a (Inductor vectorises float selects, not uint8 logic); between
steps the caller stores them in the format the Triton kernels share bit for
bit:

* images: a pixel's nibble s₀ | s₁ << 2, two pixels per byte
  (:func:`tvfast.solver.clip_states.pack_nibbles`), (T, B, H, ⌈W/2⌉) uint8 —
  0.5 byte per pixel per iteration;
* volumes: one byte s₀ | s₁ << 2 | s₂ << 4 per voxel (bits 6 and 7 zero),
  (T, B, D, H, W) uint8 — 1 byte per voxel per iteration (packing 4 voxels
  into 3 bytes would save 25 % at the cost of a byte-straddling layout in the
  kernels).
"""

from __future__ import annotations

import torch

from tvfast.solver import compile_policy
from tvfast.solver.clip_states import HIGH, INSIDE, LOW, NibbleUnpacker, pack_float_nibbles, packed_width

__all__ = ["forward_step", "backward_step", "solve_forward", "solve_backward", "plain_forward", "padded",
           "STATE_SHIFTS"]

# Bit offsets of the 2-bit clip states s_a in a voxel's byte, or in a pixel's nibble (first two).
STATE_SHIFTS = (0, 2, 4)


def _interior(t: torch.Tensor, width: int) -> torch.Tensor:
    return t[..., 1 : width + 1]


def _left(t: torch.Tensor, width: int) -> torch.Tensor:
    """t[..., j−1] of a padded array, for j = 0 … W−1."""
    return t[..., 0:width]


def _right(t: torch.Tensor, width: int) -> torch.Tensor:
    """t[..., j+1] of a padded array, for j = 0 … W−1."""
    return t[..., 2 : width + 2]


def _halo_views(t: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """(destination, source) column views of a padded array's halo, built once
    per solve: making views costs about as much as copying the columns."""
    width = t.shape[-1] - 2
    return (t[..., 0], t[..., width]), (t[..., width + 1], t[..., 1])


def padded(t: torch.Tensor) -> torch.Tensor:
    """(…, W) → (…, W+2) with the periodic halo: column 0 = column W−1, column W+1 = column 0."""
    return torch.cat((t[..., -1:], t, t[..., :1]), dim=-1)


def _clip(u, lam):
    return torch.minimum(torch.maximum(u, -lam), lam)


def _clip_state(u, lam):
    """INSIDE/HIGH/LOW (tie rule of :mod:`tvfast.solver.clip_states`: HIGH if u ≥ Λ, else LOW if u ≤ −Λ)
    as *float* values: Inductor vectorises float selects well and uint8 logic badly (4× slower)."""
    return torch.where(u >= lam, float(HIGH), torch.where(u <= -lam, float(LOW), float(INSIDE)))


def forward_step(x, x_bar, p, q, z, lam, x_bar_out, q_out, states_out, tau: float, sigma: float, theta: float):
    """One PDHG iteration (docs/method.md §3), in place, over n = len(q) spatial axes.

    Reads x, p, z (B, *S), the padded x̄ (B, *S[:-1], W+2) and the tuple q of
    the n duals (q_a (B, *S), the last one padded), the tuple ``lam`` of the
    n strengths Λ_a (broadcastable to (B, *S); the last one padded when it
    varies along W). Writes x and p in place, the new x̄ and q_a into the
    ``x_bar_out``/``q_out`` double buffers (neighbours read the old ones; for
    padded arrays these are the (B, *S) *interior views*, whose halo the
    caller refreshes — a slice write inside the graph would make Inductor
    rewrite the whole padded buffer with per-element masks), and the clip
    states Σ_a 4^a·s_a of u_a = q_a + σ∂_a x̄ into ``states_out`` (B, *S), as
    floats, unless it is None.

    The neighbours' q_{k+1} (one step back along each axis) are recomputed
    from their u, so ∇ᵀq_{k+1} needs no second pass over the image.

    With ``z`` None (reconstruction with a forward operator A, docs/method.md
    §10) the data term is the caller's: ``p`` then holds Aᴴp_{k+1}, already
    computed, with x's elements in any shape that reshapes to x's (such as
    the (2, B, *S) real view of a complex image, whose reshape Inductor
    fuses into the step's loop), and is only read, so the step is the TV part
    x_new = x − τAᴴp_{k+1} − τ∇ᵀq_{k+1} with the same q update.
    """
    n_axes = len(q)
    width = x.shape[-1]
    xb = _interior(x_bar, width)
    p_new = p.reshape(x.shape) if z is None else (p + sigma * (xb - z)) / (1.0 + sigma)
    grad_T_q = states = None
    q_new = []
    for axis in range(n_axes):
        dim = axis - n_axes
        lam_axis = lam[axis]
        if axis == n_axes - 1:  # W: the padded arrays hold the neighbours
            lam_is_padded = lam_axis.shape[-1] == width + 2
            lam_here = _interior(lam_axis, width) if lam_is_padded else lam_axis
            lam_prev = _left(lam_axis, width) if lam_is_padded else lam_axis
            u = _interior(q[axis], width) + sigma * (_right(x_bar, width) - xb)
            u_prev = _left(q[axis], width) + sigma * (xb - _left(x_bar, width))
        else:
            lam_here = lam_axis
            lam_prev = torch.roll(lam_axis, 1, dim) if lam_axis.shape[dim] > 1 else lam_axis
            u = q[axis] + sigma * (torch.roll(xb, -1, dim) - xb)
            u_prev = torch.roll(q[axis], 1, dim) + sigma * (xb - torch.roll(xb, 1, dim))
        q_axis = _clip(u, lam_here)
        q_new.append(q_axis)
        term = _clip(u_prev, lam_prev) - q_axis
        grad_T_q = term if grad_T_q is None else grad_T_q + term
        if states_out is not None:
            state = _clip_state(u, lam_here)
            states = state if states is None else states + float(4**axis) * state
    x_new = x - tau * p_new - tau * grad_T_q
    for out, value in zip(q_out, q_new):
        out.copy_(value)
    x_bar_out.copy_(x_new + theta * (x_new - x))
    if states_out is not None:
        states_out.copy_(states)
    x.copy_(x_new)
    if z is not None:
        p.copy_(p_new)


def _decode_states(states, n_axes: int, width: int):
    """Padded float states Σ_a 4^a·s_a → (s_a interior for each axis, s_{n−1} padded)."""
    top = n_axes - 1
    last_padded = torch.floor(states * (0.25**top))
    per_axis = [None] * n_axes
    per_axis[top] = _interior(last_padded, width)
    rest = _interior(states, width) - float(4**top) * per_axis[top]
    for axis in range(top - 1, 0, -1):
        per_axis[axis] = torch.floor(rest * (0.25**axis))
        rest = rest - float(4**axis) * per_axis[axis]
    per_axis[0] = rest
    return per_axis, last_padded


def backward_step(gx, gx_bar, gp, gq, gz, glam, states, gx_out, gx_bar_out, gq_out,
                  tau: float, sigma: float, theta: float):
    """One iteration k = T−1 … 0 of the adjoint recursion (docs/method.md §4), over n = len(gq) axes.

    On entry gx, gx̄ (padded), gp and the tuple gq (the last one padded) hold
    the adjoints of x_{k+1}, x̄_{k+1}, p_{k+1}, q_{k+1}; on exit those of
    iteration k are in ``gp`` (in place) and the ``*_out`` buffers (interior
    views of the padded ones; the caller refreshes their halos). ``states``
    (B, *S[:-1], W+2), padded, holds iteration k's clip states Σ_a 4^a·s_a as
    floats. With a = gx' + (1+θ)gx̄':

        gp'' = gp' − τa,   gq''_a = gq'_a − τ∂_a a
        gu_a = [s_a = INSIDE]·gq''_a          (∂q/∂u is 1 inside the clip, 0 outside)
        gx̄ = σ∇ᵀgu + σ/(1+σ)·gp'',   gx = a − θ gx̄',   gq = gu,   gp = gp''/(1+σ)

    ``gz`` accumulates −σ/(1+σ)·gp''; ``glam`` (B, C, *S), C = 1 or n,
    accumulates ±gq''_a on HIGH/LOW entries (summed over the axes when
    C = 1), or is None.

    With ``gz`` None (a forward operator A, docs/method.md §10) the data
    term's adjoint is the caller's: ``gp`` then holds σ/(1+σ)·Aᴴgp'' with
    gp'' = gp' − τAa, already computed (in any shape that reshapes to gx's),
    and is only read:
    gx̄ = σ∇ᵀgu + σ/(1+σ)·Aᴴgp''.
    """
    n_axes = len(gq)
    width = gp.shape[-1]
    a_pad = gx + (1.0 + theta) * gx_bar
    a = _interior(a_pad, width)
    per_axis, last_padded = _decode_states(states, n_axes, width)
    grad_T_gu = glam_sum = None
    gu = []
    for axis in range(n_axes):
        dim = axis - n_axes
        s = per_axis[axis]
        if axis == n_axes - 1:
            gq_new = _interior(gq[axis], width) - tau * (_right(a_pad, width) - a)
            gq_prev = _left(gq[axis], width) - tau * (a - _left(a_pad, width))
            s_prev = _left(last_padded, width)
        else:
            gq_new = gq[axis] - tau * (torch.roll(a, -1, dim) - a)
            gq_prev = torch.roll(gq[axis], 1, dim) - tau * (a - torch.roll(a, 1, dim))
            s_prev = torch.roll(s, 1, dim)
        gu_axis = torch.where(s == INSIDE, gq_new, 0.0)
        gu.append(gu_axis)
        term = torch.where(s_prev == INSIDE, gq_prev, 0.0) - gu_axis
        grad_T_gu = term if grad_T_gu is None else grad_T_gu + term
        if glam is not None:
            d = torch.where(s == HIGH, gq_new, torch.where(s == LOW, -gq_new, 0.0))
            if glam.shape[1] == 1:
                glam_sum = d if glam_sum is None else glam_sum + d
            else:
                glam[:, axis].add_(d)
    if glam_sum is not None:
        glam[:, 0].add_(glam_sum)
    sigma_ratio = sigma / (1.0 + sigma)
    if gz is None:
        gx_bar_out.copy_(sigma * grad_T_gu + gp.reshape(grad_T_gu.shape))
    else:
        gp_new = gp - tau * a
        gx_bar_out.copy_(sigma * grad_T_gu + sigma_ratio * gp_new)
    gx_out.copy_(a - theta * _interior(gx_bar, width))
    for out, value in zip(gq_out, gu):
        out.copy_(value)
    if gz is not None:
        gz.sub_(sigma_ratio * gp_new)
        gp.copy_(gp_new / (1.0 + sigma))


def _spatial_axes(t: torch.Tensor, name: str) -> int:
    if t.dim() not in (3, 4):
        raise ValueError(f"{name}: expected (B, H, W) images or (B, D, H, W) volumes, got shape {tuple(t.shape)}")
    return t.dim() - 1


def _lambda_parts(lam: torch.Tensor, n_axes: int, width: int) -> tuple[torch.Tensor, ...]:
    """Λ (Bl, 1|n, *Sl) → (Λ₀, …, Λ_{n−1}) each (Bl, *Sl), the last padded along W when it varies along W."""
    shared = lam.shape[1] == 1
    parts = [lam[:, 0 if shared else axis] for axis in range(n_axes)]
    if parts[-1].shape[-1] == width and width > 1:
        parts[-1] = padded(parts[-1])
    return tuple(part.contiguous() for part in parts)


def _new_state_record(n_iter: int, shape: torch.Size, device: torch.device) -> torch.Tensor:
    """Uninitialised storage for T iterations' clip states of a (B, *S) batch (formats in the module docstring)."""
    if len(shape) == 3:
        return torch.empty(n_iter, *shape[:-1], packed_width(shape[-1]), dtype=torch.uint8, device=device)
    return torch.empty(n_iter, *shape, dtype=torch.uint8, device=device)


def solve_forward(z, lam, n_iter: int, tau: float, sigma: float, theta: float, keep_states: bool,
                  compile: bool | None = None, data_step=None):
    """Run ``n_iter`` iterations on z (B, H, W) images or (B, D, H, W) volumes. Returns (x_T, clip states or None).

    ``data_step`` None: denoising, x₀ = z and the data term ½‖x − z‖². Else
    (a forward operator, docs/method.md §10) z is the start x₀ and
    ``data_step(x̄_k)`` is called before each TV step with x̄_k (B, *S) (a
    view to read, not keep); it advances its own dual p and returns
    Aᴴp_{k+1}: (B, *S), or a tensor of as many elements that reshapes to it,
    such as the (2, B/2, *S) real view of a complex image (read by the step
    as it is, without a copy).

    ``lam`` is broadcastable to (B, n, *S) with 1 (shared) or n channels: 4-D
    for images, 5-D for volumes. With ``keep_states`` the clip states of every
    iteration are returned, as (T, B, H, ⌈W/2⌉) packed nibbles for images or
    (T, B, D, H, W) bytes for volumes. ``compile``: see
    :func:`tvfast.solver.compile_policy.should_compile`; the work it weighs is
    that of every call of this graph so far, this one included.
    """
    n_axes = _spatial_axes(z, "z")
    shape = z.shape
    width = shape[-1]
    z, lam = z.detach(), lam.detach()  # the steps never record autograd (one compiled graph)
    graph = ("forward", tuple(shape), z.dtype, tuple(lam.shape), keep_states, data_step is None)
    compile_it = compile_policy.should_compile(compile_policy.step_runner.add_work(graph, z.numel() * n_iter), compile)
    if not (compile_it or keep_states or data_step is not None):
        return plain_forward(z, lam, n_iter, tau, sigma, theta), None
    lam_parts = _lambda_parts(lam, n_axes, width)
    padded_shape = (*shape[:-1], width + 2)
    x = z.clone()
    p = torch.zeros_like(z)  # p_k, or Aᴴp_{k+1} from data_step
    x_bar = (padded(z), z.new_empty(padded_shape))
    q = tuple(tuple(torch.zeros_like(z) for _ in range(n_axes - 1)) + (z.new_zeros(padded_shape),) for _ in range(2))
    x_bar_out = tuple(_interior(t, width) for t in x_bar)
    q_out = tuple(qs[:-1] + (_interior(qs[-1], width),) for qs in q)
    halos = tuple(_halo_views(x_bar[buf]) + _halo_views(q[buf][-1]) for buf in (0, 1))
    record = states = pack_scratch = None
    if keep_states:
        record = _new_state_record(n_iter, shape, z.device)
        states = torch.empty_like(z)
        if n_axes == 2:
            pack_scratch = z.new_empty(record.shape[1:])

    def step_args(iteration):
        src, dst = iteration % 2, (iteration + 1) % 2
        p_in = p if data_step is None else data_step(x_bar_out[src])
        return (x, x_bar[src], p_in, q[src], z if data_step is None else None, lam_parts, x_bar_out[dst], q_out[dst],
                states, tau, sigma, theta)

    def after_step(iteration):
        for dst, src in halos[(iteration + 1) % 2]:
            dst.copy_(src)
        if record is None:
            return
        if pack_scratch is None:
            record[iteration].copy_(states)  # exact: the float is the byte's value (0 … 42)
        else:
            pack_float_nibbles(states, record[iteration], pack_scratch)

    with torch.no_grad():
        compile_policy.step_runner.run(forward_step, n_iter, compile_it, step_args, after_step)
    return x, record


def solve_backward(grad_x, clip_states, lam_channels: int, need_glam: bool, tau: float, sigma: float, theta: float,
                   compile: bool | None = None, data_step=None):
    """Adjoint pass over the ``clip_states`` recorded by :func:`solve_forward`.

    Returns (∂ℓ/∂z (B, *S), ∂ℓ/∂Λ (B, C, *S) or None) for ``grad_x`` = ∂ℓ/∂x_T
    (B, *S), C = ``lam_channels`` (1 or n). ``compile`` as in :func:`solve_forward`.

    With ``data_step`` (a forward operator, docs/method.md §10) the first
    result is ∂ℓ/∂x₀ = gx₀ + gx̄₀, and ``data_step(a)`` is called before each
    reverse step with a = gx_{k+1} + (1+θ)gx̄_{k+1} (B, *S) (a temporary); it
    advances its own gp (and the gradient of the data) and returns
    σ/(1+σ)·Aᴴgp'' in a shape that reshapes to (B, *S), as in :func:`solve_forward`.
    """
    n_axes = _spatial_axes(grad_x, "grad_x")
    records = clip_states
    n_iter = records.shape[0]
    shape = grad_x.shape
    width = shape[-1]
    padded_shape = (*shape[:-1], width + 2)
    new_padded = lambda: grad_x.new_zeros(padded_shape)  # noqa: E731
    gx = (padded(grad_x), new_padded())
    gx_bar = (new_padded(), new_padded())
    gq = tuple(tuple(torch.zeros_like(grad_x) for _ in range(n_axes - 1)) + (new_padded(),) for _ in range(2))
    gp = torch.zeros_like(grad_x)
    gz = torch.zeros_like(grad_x)
    glam = grad_x.new_zeros(shape[0], lam_channels, *shape[1:]) if need_glam else None
    states = new_padded()
    states_in = _interior(states, width)
    states_halo = _halo_views(states)
    unpack = NibbleUnpacker(shape, grad_x.device) if n_axes == 2 else None
    gx_out, gx_bar_out = (tuple(_interior(t, width) for t in pair) for pair in (gx, gx_bar))
    gq_out = tuple(gqs[:-1] + (_interior(gqs[-1], width),) for gqs in gq)
    halos = tuple(_halo_views(gx[buf]) + _halo_views(gx_bar[buf]) + _halo_views(gq[buf][-1]) for buf in (0, 1))

    def step_args(step):
        record = records[n_iter - 1 - step]
        if unpack is None:
            states_in.copy_(record)
        else:
            unpack(record, states_in)
        for dst, src in states_halo:
            dst.copy_(src)
        src, dst = step % 2, (step + 1) % 2
        gp_in = gp if data_step is None else data_step(torch.add(gx_out[src], gx_bar_out[src], alpha=1.0 + theta))
        return (gx[src], gx_bar[src], gp_in, gq[src], gz if data_step is None else None, glam, states,
                gx_out[dst], gx_bar_out[dst], gq_out[dst], tau, sigma, theta)

    def after_step(step):
        for dst, src in halos[(step + 1) % 2]:
            dst.copy_(src)

    graph = ("backward", tuple(shape), grad_x.dtype, lam_channels, need_glam, data_step is None)
    work = compile_policy.step_runner.add_work(graph, grad_x.numel() * n_iter)
    compile_it = compile_policy.should_compile(work, compile)
    with torch.no_grad():
        compile_policy.step_runner.run(backward_step, n_iter, compile_it, step_args, after_step)
        last = n_iter % 2
        gz.add_(_interior(gx[last], width)).add_(_interior(gx_bar[last], width))
    return gz, glam


# ---------------------------------------------------------------------------------------------------------------------
# The forward without clip states, run eagerly: the plain loop, in place
# ---------------------------------------------------------------------------------------------------------------------


def _difference(src: torch.Tensor, dim: int, out: torch.Tensor) -> None:
    """out ← the periodic forward difference of ``src`` along ``dim``: src(· + e) − src."""
    n = src.shape[dim]
    torch.sub(src.narrow(dim, 1, n - 1), src.narrow(dim, 0, n - 1), out=out.narrow(dim, 0, n - 1))
    torch.sub(src.narrow(dim, 0, 1), src.narrow(dim, n - 1, 1), out=out.narrow(dim, n - 1, 1))


def _difference_adjoint(q: torch.Tensor, dim: int, out: torch.Tensor) -> None:
    """out ← its adjoint along ``dim``: q(· − e) − q."""
    n = q.shape[dim]
    torch.sub(q.narrow(dim, 0, n - 1), q.narrow(dim, 1, n - 1), out=out.narrow(dim, 1, n - 1))
    torch.sub(q.narrow(dim, n - 1, 1), q.narrow(dim, 0, 1), out=out.narrow(dim, 0, 1))


def plain_forward(z: torch.Tensor, lam: torch.Tensor, n_iter: int, tau: float, sigma: float,
                  theta: float) -> torch.Tensor:
    """x_T of denoising z (B, H, W) or (B, D, H, W) with Λ (Bl, 1|n, *S), no clip states, in eager PyTorch.

    The iteration of docs/method.md §3 as about 25 in-place tensor ops on
    buffers allocated once (no padded halos, no states): the path of a
    forward that needs no gradient and is not compiled. It runs about 1.5×
    (images) to 2.5× (volumes) faster than the reference loop, which
    allocates every intermediate. Each product is its own op (no ``alpha=``,
    which may contract to a fused multiply-add) and the sums run in the
    order of :func:`forward_step`, so x_T is bit for bit that of the steps
    with clip states and of the fused kernels.
    """
    n_axes = _spatial_axes(z, "z")
    z, lam = z.detach(), lam.detach()
    shared = lam.shape[1] == 1
    high = [lam[:, 0 if shared else axis] for axis in range(n_axes)]
    low = [-part for part in high]
    x, x_bar, p = z.clone(), z.clone(), torch.zeros_like(z)
    q = [torch.zeros_like(z) for _ in range(n_axes)]
    diff, div, x_new = torch.empty_like(z), torch.empty_like(z), torch.empty_like(z)
    with torch.no_grad():
        for _ in range(n_iter):
            torch.sub(x_bar, z, out=x_new)  # p ← (p + σ(x̄ − z)) / (1 + σ)
            p.add_(x_new.mul_(sigma)).div_(1.0 + sigma)
            for axis in range(n_axes):  # q_a ← clip(q_a + σ∂_a x̄, −Λ_a, Λ_a)
                _difference(x_bar, axis + 1, diff)
                q[axis].add_(diff.mul_(sigma))
                torch.clamp(q[axis], low[axis], high[axis], out=q[axis])
            _difference_adjoint(q[0], 1, div)  # ∇ᵀq, summed over the axes in order
            for axis in range(1, n_axes):
                _difference_adjoint(q[axis], axis + 1, diff)
                div.add_(diff)
            torch.mul(p, tau, out=x_new)  # x_new = (x − τp) − τ∇ᵀq
            torch.sub(x, x_new, out=x_new)
            x_new.sub_(div.mul_(tau))
            torch.sub(x_new, x, out=x_bar)  # x̄ ← x_new + θ(x_new − x)
            x_bar.mul_(theta).add_(x_new)
            x, x_new = x_new, x
    return x
