"""When a job of many solves starts the fused CPU kernels, or runs its first solves on the plain PyTorch loop.

Starting the fused kernels (:mod:`tvfast.solver.fused`) costs a process
about half a second once — Numba's import and the load of its cached
machine code — after which a 256² forward with T = 256 takes 8–14 ms. The
plain PyTorch loop (:func:`tvfast.solver.cpu.plain_forward`, what
``backend="torch"`` runs for a forward without gradient) needs no start but
takes 50–65 ms for the same solve. A command that denoises one image pays
the start for one solve; a command that denoises a folder gains it back
after a handful.

A job that does not know how many solves will follow decides like a skier
who does not know how many days she will ski (the ski-rental problem):
rent (run the plain loop) until the rent paid would exceed the price of
buying (:data:`START_S`), then buy (start the fused kernels) and never rent
again. Whatever the number of solves, the job then spends at most twice
what it would have spent had it known. :class:`FusedStart` keeps that
account for one job; ``tvfast denoise`` holds one per command.

The rent of a solve is estimated from its work, B·N·T pixel-iterations for
B images of N pixels (voxels) and T iterations, at the plain loop's time
per pixel-iteration measured on one core of the 2-core AMD EPYC machine
(torch 2.13, float32; :data:`PLAIN_S_PER_PIXEL_ITERATION`); float64 is
counted twice.

``tvfast.pdhg`` itself never rents: a library call cannot know the job it
belongs to, and its default is the fused path from the first call.
"""

from __future__ import annotations

__all__ = ["START_S", "PLAIN_S_PER_PIXEL_ITERATION", "FusedStart"]

# Seconds a process spends to start the fused kernels when their on-disk cache is warm (Numba's import 0.25 s, its
# registries and the first cached kernel 0.25–0.3 s; measured on the 2-core AMD EPYC machine).
START_S = 0.5

# The plain loop's seconds per pixel-iteration, float32, one thread (same machine: 256² with T = 256 in 54–64 ms,
# 32 × 128² with T = 128 in 0.28–0.41 s).
PLAIN_S_PER_PIXEL_ITERATION = {2: 3.5e-9, 3: 4.5e-9}


class FusedStart:
    """The ski-rental account of one job: which backend its next solve runs on, ``"torch"`` or ``"auto"``.

    ``fused_loaded`` says whether this process has started the fused kernels
    already (then there is nothing left to pay and every solve takes them).
    ``on_start`` is called once, before the first solve that takes them (a
    command prepares Numba's import there).
    """

    def __init__(self, fused_loaded: bool = False, on_start=None):
        self.started = bool(fused_loaded)
        self.rent_s = 0.0
        self._on_start = on_start

    def backend(self, pixels: int, n_iter: int, spatial_dims: int = 2, element_size: int = 4) -> str:
        """The backend of the next forward solve without gradient of ``pixels`` (B·N) and ``n_iter`` iterations.

        ``"torch"`` (the plain loop) while the estimated time of the plain
        solves so far, this one included, stays within :data:`START_S`;
        ``"auto"`` (the fused kernels) from then on.
        """
        if spatial_dims not in PLAIN_S_PER_PIXEL_ITERATION:
            raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims!r}")
        if pixels < 0 or n_iter < 0:
            raise ValueError(f"pixels, n_iter: expected non-negative counts, got {pixels}, {n_iter}")
        if self.started:
            return "auto"
        rent = pixels * n_iter * PLAIN_S_PER_PIXEL_ITERATION[spatial_dims] * max(1, element_size // 4)
        if self.rent_s + rent > START_S:
            self.started = True
            if self._on_start is not None:
                self._on_start()
            return "auto"
        self.rent_s += rent
        return "torch"
