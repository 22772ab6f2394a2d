"""The fused CPU path: each PDHG iteration as two compiled passes over the pixels (Numba), forward and backward.

The default solver for CPU tensors (backend ``"numba"``). It exposes
``solve_forward``/``solve_backward`` with the signatures of
:mod:`tvfast.solver.cpu` and :mod:`tvfast.kernels.launch`
(docs/method.md §5), for images (B, H, W) and volumes (B, D, H, W), every Λ
layout, and the TV part of reconstruction with a forward operator (the
operator runs in PyTorch between the passes, ``data_step``). The kernels
and what each pass does are in :mod:`tvfast.solver.fused_kernels`; the
clip-state records have the layout of :mod:`tvfast.solver.clip_states`,
bit for bit the Triton kernels'.

Numba is imported on the first solve (:func:`available`), never by
``import tvfast``; its compiled kernels are cached on disk, so only the
first solve on a machine pays the compilation (a few seconds), and a new
process loads them in well under a second. Where Numba cannot be imported
:func:`tvfast.solver.arguments.resolve_backend` falls back to the PyTorch path with one warning.

First use on a machine. Compiling the kernels of a solve takes seconds
(3–4 s for a forward with clip states and as much for its adjoint on the
2-core AMD EPYC machine), once per machine. When a denoising solve finds
its kernels neither loaded nor in the on-disk cache, a child process
compiles them into the cache (:func:`warm`) while this process runs the
solve — and every later one of that kind until the child is done — on the
PyTorch steps of :mod:`tvfast.solver.cpu`, which give the same bits (x_T and
clip states); then the kernels load from the cache. Set
:data:`compile_in_background` to False to compile in the calling process
instead (the tests do, to exercise the kernels themselves).

Threads: each solve runs its passes on up to ``torch.get_num_threads()``
threads (capped by Numba's pool), so ``torch.set_num_threads`` governs
both; small problems run on fewer (:data:`PIXELS_PER_THREAD`).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from tvfast.solver.clip_states import packed_width

__all__ = ["available", "started", "warm", "compiling", "compile_in_background", "solve_forward", "solve_backward", "to_complex", "data_dual", "data_adjoint", "scaled",
           "RecomputeEngine"]

_kernels = None
_import_error: BaseException | None = None


def available() -> bool:
    """Whether the compiled kernels can be used here (imports Numba on the first call)."""
    global _kernels, _import_error
    if _kernels is None and _import_error is None:
        try:
            from tvfast.solver import fused_kernels

            _kernels = fused_kernels
        except Exception as exc:  # no numba, or a numba that does not match this numpy/Python
            _import_error = exc
    return _kernels is not None


# Whether a denoising solve whose kernels are not compiled yet has them compiled in a child process (and runs on the
# PyTorch steps meanwhile) rather than compiling them itself; see the module docstring.
compile_in_background = True

# The child processes compiling kernels, by what they serve: (dtype name, spatial axes, with clip states).
_compiling: dict[tuple, subprocess.Popen] = {}


def warm(dtype: str, n_axes: int, states: bool) -> None:
    """Compile (or load) the kernels of a denoising solve into the on-disk cache: the forward with clip states and
    its adjoint when ``states``, else the forward without; ``dtype`` "float32" or "float64", ``n_axes`` 2 or 3.

    Runs tiny solves of that kind in this process, so the kernels are compiled for exactly the argument types the
    solves pass. The child process of a background compilation runs this."""
    global compile_in_background
    compile_in_background = False  # this process compiles
    kind = getattr(torch, dtype)
    z = torch.zeros((1,) + (4,) * n_axes, dtype=kind)
    lam = torch.ones((1, 1) + (4,) * n_axes, dtype=kind)
    x, record = solve_forward(z, lam, 2, 0.25, 0.25, 1.0, keep_states=states)
    if states:
        solve_backward(x, record, 1, True, 0.25, 0.25, 1.0)


def compiling() -> bool:
    """Whether a child process is compiling kernels for this one right now (see the module docstring)."""
    for serves, child in list(_compiling.items()):
        if child.poll() is not None:
            del _compiling[serves]
    return bool(_compiling)


def _ready(kernel, args, serves: tuple) -> bool:
    """Whether ``kernel`` can run on ``args`` now: compiled in this process, or in the on-disk cache (then it loads
    on the call). Else, with :data:`compile_in_background`, starts (once) a child process that compiles the kernels
    of ``serves`` = (dtype name, axes, states) and says False while it runs."""
    import numba

    signature = tuple(numba.typeof(a) for a in args)
    if signature in kernel.overloads or not compile_in_background:
        return True
    child = _compiling.get(serves)
    if child is not None:
        if child.poll() is None:
            return False
        del _compiling[serves]  # done (or failed: then the call compiles here, as without a child)
        return True
    try:
        if kernel._cache.load_overload(signature, kernel.targetctx) is not None:  # Numba's own cache lookup
            return True
    except Exception:  # a Numba without this lookup: compile here
        return True
    code = f"from tvfast.solver.fused import warm; warm({serves[0]!r}, {serves[1]}, {serves[2]})"
    try:
        _compiling[serves] = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              env=dict(os.environ, OMP_NUM_THREADS="1"))
    except OSError:  # no new process allowed here: compile in this one
        return True
    return False


def started() -> bool:
    """Whether this process has loaded the compiled kernels already (never imports anything)."""
    return _kernels is not None


def import_error() -> BaseException | None:
    """Why :func:`available` is False (None when it is True or was not asked yet)."""
    return _import_error


def _loaded():
    if not available():
        raise RuntimeError(f"the fused CPU path needs numba, which could not be imported: {_import_error}")
    return _kernels


# Pixels per thread: each pass is one parallel region, whose start and end cost some microseconds. Measured on the
# 2-core machine (idle), 256 iterations: a second thread gains nothing at 32², 1.15× at 64², 1.5× at 128², 1.6× at
# 256² and 1.9× at 512².
PIXELS_PER_THREAD = 2**13


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_elsewhere() -> int:
    """Threads of other processes that are running or ready to run right now (0 where the system does not say).

    Linux: the running count of ``/proc/loadavg`` (all runnable threads, read
    at this instant) less this process's own runnable threads
    (``/proc/self/task/*/stat``: torch's workers may still be spinning after
    an op). A thread that waits for a core holds up every pass of a solve,
    so the solve takes only the cores nobody else is using.
    """
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat") as f:
                    stat = f.read()
            except OSError:  # the thread ended meanwhile
                continue
            own += stat[stat.rindex(")") + 2] == "R"
        return max(0, running - own)
    except (OSError, ValueError, IndexError):
        return 0


def solve_threads(pixels: int) -> int:
    """Threads for a solve of ``pixels`` pixels: ``torch.get_num_threads()``, at most one per
    :data:`PIXELS_PER_THREAD` pixels, and at most the cores that other processes leave free (at least 1)."""
    import numba

    n = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, pixels // PIXELS_PER_THREAD)
    if n > 1:
        n = min(n, _cores() - busy_elsewhere())
    return max(1, n)


class _Threads:
    """Run a solve on :func:`solve_threads` threads: the fused passes (``torch_ops`` False) or torch's own ops (True:
    the PyTorch steps while a child compiles; torch's workers spin-wait for each other, and one that waits for a
    busy core slows every op).

    Numba's OpenMP threading layer shares the OpenMP runtime with torch, and
    setting its thread count sets torch's: the context restores torch's count
    on exit, so a solve never changes what ``torch.get_num_threads()`` says.
    """

    def __init__(self, pixels: int, torch_ops: bool = False):
        self.pixels = pixels
        self.torch_ops = torch_ops

    def __enter__(self):
        self.torch_threads = torch.get_num_threads()
        if self.torch_ops:
            torch.set_num_threads(solve_threads(self.pixels))
        else:
            import numba

            numba.set_num_threads(solve_threads(self.pixels))
        return self

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        return False


def _kind(dtype: torch.dtype):
    """The NumPy scalar type of a real solve's dtype (float32 or float64)."""
    return np.float32 if dtype == torch.float32 else np.float64


def _params(dtype: torch.dtype, tau: float, sigma: float, theta: float) -> np.ndarray:
    """(τ, σ, θ, 1+σ, σ/(1+σ), 1+θ, 0, 1) in the solve's dtype; 1+σ is added in that dtype, as the Triton kernels
    do. The constants 0 and 1 are read from here so that float32 kernels never mix in float64 literals."""
    kind = _kind(dtype)
    one_sigma = kind(1.0) + kind(sigma)
    return np.array([tau, sigma, theta, one_sigma, sigma / (1.0 + sigma), 1.0 + theta, 0.0, 1.0], dtype=kind)


def _check(t: torch.Tensor, name: str) -> int:
    if t.dim() not in (3, 4):
        raise ValueError(f"{name}: expected (B, H, W) images or (B, D, H, W) volumes, got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name}: expected float32 or float64, got {t.dtype}")
    if t.device.type != "cpu":
        raise ValueError(f"{name}: the fused CPU path takes CPU tensors, got device {t.device}")
    return t.dim() - 1


def _lambda_full(lam: torch.Tensor, shape: torch.Size, n_axes: int, dtype: torch.dtype) -> np.ndarray:
    """Λ (Bl, 1|n, *Sl), broadcastable, → a C-contiguous (Bl, 1|n, *S) array (Bl = 1: one Λ for the whole batch;
    one channel: the same Λ for every axis, read from one plane)."""
    full = lam.detach().to(dtype).expand(lam.shape[0], lam.shape[1], *shape[1:])
    return full.contiguous().numpy()


def _as_parts(t: torch.Tensor, n_axes: int) -> np.ndarray:
    """A handed data term (B, *S), or (C, B/C, *S) such as the real view of a complex image, as a (C, B/C, *S) array."""
    t = t.detach()
    if t.dim() == n_axes + 1:
        t = t.unsqueeze(0)
    return t.numpy()


def _nibble_rows(shape) -> np.ndarray:
    """A (B·H, W) byte scratch in which the 2-D kernels (un)pack one row of clip-state nibbles (reused every iteration)."""
    return np.empty((shape[0] * shape[1], shape[2]), dtype=np.uint8)


def solve_forward(z, lam, n_iter: int, tau: float, sigma: float, theta: float, keep_states: bool, data_step=None,
                  **_options):
    """Run ``n_iter`` iterations on z (B, H, W) or (B, D, H, W); returns (x_T, clip states or None).

    The arguments and results are those of :func:`tvfast.solver.cpu.solve_forward`
    (``data_step``: the data term of a forward operator, which receives x̄_k
    and returns Aᴴp_{k+1}). Other keyword options (``compile``) are ignored.
    """
    n_axes = _check(z, "z")
    k = _loaded()
    shape, dtype = z.shape, z.dtype
    z = z.detach().contiguous()
    x = z.clone()
    x_bar = z.clone()
    p = torch.zeros_like(z)
    q = [torch.zeros_like(z) for _ in range(n_axes)]
    lam_np = _lambda_full(lam, shape, n_axes, dtype)
    prm = _params(dtype, tau, sigma, theta)
    xn, xbn, pn, zn = x.numpy(), x_bar.numpy(), p.numpy(), z.numpy()
    qn = [t.numpy() for t in q]
    record = None
    if keep_states:
        if n_axes == 2:
            record = torch.empty(n_iter, *shape[:-1], packed_width(shape[-1]), dtype=torch.uint8)
        else:
            record = torch.empty(n_iter, *shape, dtype=torch.uint8)
        record_np = record.numpy()
    if not keep_states:
        def dual(it):
            (k.dual2d if n_axes == 2 else k.dual3d)(xbn, *qn, lam_np, prm)
    elif n_axes == 2:
        scratch = _nibble_rows(shape)

        def dual(it):
            k.dual2d_states(xbn, *qn, lam_np, record_np[it], scratch, prm)
    else:
        def dual(it):
            k.dual3d_states(xbn, *qn, lam_np, record_np[it], prm)
    if data_step is None:  # denoising: the whole loop in one compiled call
        if not keep_states:
            kernel, args = (k.run2d if n_axes == 2 else k.run3d), (xn, xbn, pn, *qn, zn, lam_np, prm, n_iter)
        elif n_axes == 2:
            kernel, args = k.run2d_states, (xn, xbn, pn, *qn, zn, lam_np, record_np, scratch, prm)
        else:
            kernel, args = k.run3d_states, (xn, xbn, pn, *qn, zn, lam_np, record_np, prm)
        with torch.no_grad(), _Threads(z.numel()):  # first: Numba's start may set torch's threads, _Threads restores
            if _ready(kernel, args, (str(dtype).removeprefix("torch."), n_axes, keep_states)):
                kernel(*args)
                return x, record
        from tvfast.solver import cpu  # the same bits while the kernels compile in the background

        with _Threads(z.numel(), torch_ops=True):
            return cpu.solve_forward(z, lam, n_iter, tau, sigma, theta, keep_states, compile=False)
    with torch.no_grad(), _Threads(z.numel()):
        for it in range(n_iter):  # with an operator: its data step in PyTorch between the passes
            data = _as_parts(data_step(x_bar), n_axes)  # Aᴴp_{k+1} from x̄_k, before x̄ changes
            dual(it)
            (k.primal2d_data if n_axes == 2 else k.primal3d_data)(xn, xbn, data, *qn, prm)
    return x, record


def solve_backward(grad_x, clip_states, lam_channels: int, need_glam: bool, tau: float, sigma: float, theta: float,
                   data_step=None, **_options):
    """The adjoint pass over ``clip_states``; arguments and results of :func:`tvfast.solver.cpu.solve_backward`."""
    n_axes = _check(grad_x, "grad_x")
    k = _loaded()
    shape, dtype = grad_x.shape, grad_x.dtype
    n_iter = clip_states.shape[0]
    gx = grad_x.detach().contiguous().clone()
    gx_bar = torch.zeros_like(gx)
    gp = torch.zeros_like(gx)
    gz = torch.zeros_like(gx)
    gq = [torch.zeros_like(gx) for _ in range(n_axes)]
    glam = gx.new_zeros(shape[0], lam_channels, *shape[1:])  # the kernels accumulate it whether needed or not
    prm = _params(dtype, tau, sigma, theta)
    gxn, gxbn, gpn, gzn, glamn = gx.numpy(), gx_bar.numpy(), gp.numpy(), gz.numpy(), glam.numpy()
    gqn = [t.numpy() for t in gq]
    records = clip_states.numpy()
    if n_axes == 2:
        scratch = _nibble_rows(shape)

        def adjoint_dual(record):
            k.adjoint_dual2d(gxn, gxbn, *gqn, glamn, record, scratch, prm)
    else:
        def adjoint_dual(record):
            k.adjoint_dual3d(gxn, gxbn, *gqn, glamn, record, prm)
    if data_step is None:  # denoising: the whole loop in one compiled call
        if n_axes == 2:
            kernel, args = k.adjoint_run2d, (gxn, gxbn, gpn, gzn, *gqn, glamn, records, scratch, prm)
        else:
            kernel, args = k.adjoint_run3d, (gxn, gxbn, gpn, gzn, *gqn, glamn, records, prm)
        with torch.no_grad(), _Threads(gx.numel()):
            if _ready(kernel, args, (str(dtype).removeprefix("torch."), n_axes, True)):
                kernel(*args)
                gz.add_(gx).add_(gx_bar)
                return gz, (glam if need_glam else None)
        from tvfast.solver import cpu  # the same bits while the kernels compile in the background

        with _Threads(gx.numel(), torch_ops=True):
            return cpu.solve_backward(grad_x, clip_states, lam_channels, need_glam, tau, sigma, theta, compile=False)
    with torch.no_grad(), _Threads(gx.numel()):
        for step in range(n_iter):
            # with an operator, a = gx + (1+θ)gx̄ (before the passes change them) goes through its adjoint data step
            data = _as_parts(data_step(torch.add(gx, gx_bar, alpha=1.0 + theta)), n_axes)
            adjoint_dual(records[n_iter - 1 - step])
            (k.adjoint_primal2d_data if n_axes == 2 else k.adjoint_primal3d_data)(gxn, gxbn, data, *gqn, prm)
        gz.add_(gx).add_(gx_bar)
    return gz, (glam if need_glam else None)


def _flat(t: torch.Tensor) -> np.ndarray:
    """The elements of a contiguous real tensor as a flat array (a view)."""
    return t.detach().reshape(-1).numpy()


def _rows(t: torch.Tensor, parts: int) -> np.ndarray:
    """A TV batch (parts·N, *S) or a (parts, N, *S) view → a (parts, N·…, H, W) array (a view where one exists)."""
    t = t.detach()
    return t.reshape(parts, -1, *t.shape[-2:]).numpy()


def _pairs(t: torch.Tensor) -> np.ndarray:
    """A contiguous complex (B, *S) tensor as its (B·…, H, W, 2) array of (re, im) pairs (a view)."""
    return torch.view_as_real(t.detach()).reshape(-1, *t.shape[-2:], 2).numpy()


def _interleaved(t: torch.Tensor) -> bool:
    """Whether a complex image (B, *S) can be read as contiguous (re, im) pairs, in the TV batch's order."""
    return t.is_complex() and not t.is_conj() and t.is_contiguous()


def to_complex(out: torch.Tensor, tv: torch.Tensor) -> torch.Tensor:
    """out (B, *S) complex, contiguous ← the real TV batch (2B, *S) (real parts first), in one compiled pass."""
    _loaded().to_pairs(_pairs(out), _rows(tv, 2))
    return out


def _planar(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A TV-frame image (B, *S) as (parts, B, *S) real values (parts 2 for complex, a view) and its part count."""
    if t.is_complex():
        return torch.view_as_real(t.resolve_conj()).movedim(-1, 0), 2
    return t, 1


def data_dual(P: torch.Tensor, normal: torch.Tensor, adjoint_y: torch.Tensor, sigma: float) -> None:
    """P ← (P + σ(normal − Aᴴy))/(1+σ) in place, the data term's image-space dual step (docs/method.md §10).

    P and Aᴴy: contiguous real TV batches (C·B, *S); ``normal`` = AᴴA x̄ in
    the TV frame, (B, *S) real or complex, any strides. A contiguous complex
    ``normal`` is read as (re, im) pairs in the same pass; other layouts are
    copied into the TV layout first (torch's copy reads a transposed layout
    faster than a strided loop)."""
    k, kind = _loaded(), _kind(P.dtype)
    step = (kind(sigma), kind(1.0 / (1.0 + sigma)))
    if _interleaved(normal):
        k.data_dual_pairs(_rows(P, 2), _pairs(normal), _rows(adjoint_y, 2), *step)
        return
    normal, parts = _planar(normal)
    normal = normal.contiguous()
    k.data_dual(_rows(P, parts), _rows(normal, parts), _rows(adjoint_y, parts), *step)


def data_adjoint(r: torch.Tensor, a: torch.Tensor, r_sum: torch.Tensor | None, tau: float, sigma: float) -> None:
    """r ← r/(1+σ) − τa in place, and r_sum += r: the adjoint's image-space recursion (docs/method.md §10).
    Contiguous real tensors of one shape."""
    k, kind = _loaded(), _kind(r.dtype)
    keep = r_sum is not None
    k.data_adjoint(_flat(r), _flat(a.contiguous()), _flat(r_sum if keep else r), keep, kind(tau),
                   kind(1.0 / (1.0 + sigma)))


def scaled(out: torch.Tensor, source: torch.Tensor, factor: float) -> torch.Tensor:
    """out ← factor·source for a contiguous TV batch ``out`` and ``source`` as in :func:`data_dual`'s ``normal``."""
    k, kind = _loaded(), _kind(out.dtype)
    if _interleaved(source):
        k.scale_pairs(_rows(out, 2), _pairs(source), kind(factor))
        return out
    k.scale_into(_flat(out), _flat(_planar(source)[0].contiguous()), kind(factor))  # torch's copy reads a transposed layout best
    return out


class RecomputeEngine:
    """The fused engine of :mod:`tvfast.solver.recompute`: denoising of real images (B, H, W) or volumes
    (B, D, H, W) with anisotropic or isotropic TV and steps that need no gradient (constant or per iteration).

    Forward iterations run the dual pass of the TV kind (the isotropic one of
    :mod:`tvfast.solver.fused_isotropic`) and the primal pass of
    :mod:`tvfast.solver.fused_kernels`; a recomputed segment records the clip
    states (anisotropic, the packed format of :func:`solve_forward`) or u
    (isotropic), and the adjoint reads them. ``lam``: (Bl, 1|n, *S) for the
    clip, (Bl, 1, *S) for the ball; ``neumann``: the ball's boundary (the
    clip's is a mask in Λ).
    """

    def __init__(self, z: torch.Tensor, lam: torch.Tensor, tv: str, steps, neumann: bool = False, data=None):
        self.n_axes = _check(z, "z")
        self.k = _loaded()
        self.iso = tv == "isotropic"
        if self.iso:
            from tvfast.solver import fused_isotropic

            self.ki = fused_isotropic
        self.shape, self.dtype = z.shape, z.dtype
        self.z = z.detach().contiguous()
        self.lam = _lambda_full(lam, self.shape, self.n_axes, self.dtype)
        self.neumann = 1 if neumann else 0
        self.steps, self.data = steps, data
        self._prm = {}
        item = z.element_size()
        self.checkpoint_bytes = (3 + self.n_axes) * item
        self.record_bytes = self.n_axes * item if self.iso else (0.5 if self.n_axes == 2 else 1.0)
        self.scratch = _nibble_rows(self.shape) if self.n_axes == 2 else None
        self.threads = _Threads(self.z.numel())

    def prm(self, k: int) -> np.ndarray:
        key = self.steps.at(k)
        if key not in self._prm:
            self._prm[key] = _params(self.dtype, *key)
        return self._prm[key]

    def start(self):
        self.x, self.x_bar = self.z.clone(), self.z.clone()
        self.p = torch.zeros_like(self.z)
        self.q = [torch.zeros_like(self.z) for _ in range(self.n_axes)]
        self._views()
        if self.data is not None:
            self.data.start()

    def _views(self):
        self.xn, self.xbn, self.pn = self.x.numpy(), self.x_bar.numpy(), self.p.numpy()
        self.qn = [t.numpy() for t in self.q]

    def save(self):
        state = [t.clone() for t in (self.x, self.x_bar, self.p, *self.q)]
        return state, (self.data.save() if self.data is not None else None)

    def load(self, checkpoint):
        state, data = checkpoint
        for dst, src in zip((self.x, self.x_bar, self.p, *self.q), state):
            dst.copy_(src)
        if self.data is not None:
            self.data.load(data)

    def result(self) -> torch.Tensor:
        return self.x

    def new_records(self, n: int):
        if self.iso:
            return np.empty((n, self.n_axes, *self.shape), dtype=_kind(self.dtype))
        if self.n_axes == 2:
            return np.empty((n, *self.shape[:-1], packed_width(self.shape[-1])), dtype=np.uint8)
        return np.empty((n, *self.shape), dtype=np.uint8)

    def step(self, k: int, records=None, slot: int = 0):
        k_, prm, two = self.k, self.prm(k), self.n_axes == 2
        data = None
        if self.data is not None:  # P_{k+1} from x̄_k, before the passes change x̄
            data = _as_parts(self.data.forward(self.x_bar, self.steps.at(k)[1]).contiguous(), self.n_axes)
        with torch.no_grad(), self.threads:
            if self.iso:
                if records is None:
                    (self.ki.dual2d_iso if two else self.ki.dual3d_iso)(self.xbn, *self.qn, self.lam, self.neumann,
                                                                          prm)
                else:
                    (self.ki.dual2d_iso_record if two else self.ki.dual3d_iso_record)(
                        self.xbn, *self.qn, self.lam, *records[slot], self.neumann, prm)
            elif records is None:
                (k_.dual2d if two else k_.dual3d)(self.xbn, *self.qn, self.lam, prm)
            elif two:
                k_.dual2d_states(self.xbn, *self.qn, self.lam, records[slot], self.scratch, prm)
            else:
                k_.dual3d_states(self.xbn, *self.qn, self.lam, records[slot], prm)
            if data is None:
                (k_.primal2d if two else k_.primal3d)(self.xn, self.xbn, self.pn, *self.qn, self.z.numpy(), prm)
            else:
                (k_.primal2d_data if two else k_.primal3d_data)(self.xn, self.xbn, data, *self.qn, prm)

    def adjoint_start(self, grad_x: torch.Tensor):
        self.gx = grad_x.detach().to(self.dtype).contiguous().clone()
        if self.data is not None:
            self.data.adjoint_start()
        self.gx_bar, self.gp, self.gz = (torch.zeros_like(self.gx) for _ in range(3))
        self.gq = [torch.zeros_like(self.gx) for _ in range(self.n_axes)]
        self.glam = self.gx.new_zeros(self.shape[0], self.lam.shape[1], *self.shape[1:])
        self.gn = [t.numpy() for t in (self.gx, self.gx_bar, self.gp, self.gz)]
        self.gqn = [t.numpy() for t in self.gq]

    def adjoint_step(self, k: int, records, slot: int, last: bool = False):
        k_, prm, two = self.k, self.prm(k), self.n_axes == 2
        gx, gxb, gp, gz = self.gn
        glam = self.glam.numpy()
        data = None
        if self.data is not None:  # σ/(1+σ)·AᴴA gP' from a = gx + (1+θ)gx̄, before the passes change them
            tau, sigma, theta = self.steps.at(k)
            data = _as_parts(self.data.adjoint(torch.add(self.gx, self.gx_bar, alpha=1.0 + theta), tau, sigma)
                             .contiguous(), self.n_axes)
        with torch.no_grad(), self.threads:
            if self.iso:
                (self.ki.adjoint_dual2d_iso if two else self.ki.adjoint_dual3d_iso)(
                    gx, gxb, *self.gqn, glam, *records[slot], self.lam, self.neumann, prm)
            elif two:
                k_.adjoint_dual2d(gx, gxb, *self.gqn, glam, records[slot], self.scratch, prm)
            else:
                k_.adjoint_dual3d(gx, gxb, *self.gqn, glam, records[slot], prm)
            if data is None:
                (k_.adjoint_primal2d if two else k_.adjoint_primal3d)(gx, gxb, gp, gz, *self.gqn, prm)
            else:
                (k_.adjoint_primal2d_data if two else k_.adjoint_primal3d_data)(gx, gxb, data, *self.gqn, prm)

    def adjoint_result(self):
        """(∂/∂x₀, ∂/∂z, gΛ (B, 1|n, *S), no step gradients) in the layout of :class:`~tvfast.solver.recompute.TorchIteration`."""
        g_data = self.gz if self.data is None else self.data.g_adjoint_y
        return self.gx + self.gx_bar, g_data, self.glam, [None, None, None]
