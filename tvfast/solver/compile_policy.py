"""When the CPU path compiles its steps with ``torch.compile``, and how it runs them.

Compiling costs seconds; it pays only when the call's work is large enough.
For a solve of B images (or volumes) of N pixels (voxels) each and T
iterations, the work is ``B·N·T`` pixel-iterations, and compiling pays when

    B·N·T · (t_eager − t_compiled) > t_compile

with t the time per pixel-iteration and t_compile the cost of compiling the
forward step (the backward step costs as much again when a gradient is
needed, and saves in proportion). Measured on the 2-core AMD EPYC machine
(torch 2.13, float32, one 256² image; the machine was shared, load ≈ 4 on
2 cores, so the compile times are on the high side):

    compile of the forward step, empty Inductor cache
      (fresh TORCHINDUCTOR_CACHE_DIR: Dynamo import + trace + Inductor + C++ build)   ≈ 24 s
    the same, Inductor's on-disk cache warm (a second process)                        ≈ 7.6 s
    eager step (T = 256, median of interleaved runs)                                  ≈ 18 ns / pixel-iteration
    compiled step                                                                     ≈ 3.6 ns / pixel-iteration

so compiling pays after 24 s / 14.4 ns ≈ 1.7·10⁹ pixel-iterations with an
empty cache and ≈ 5·10⁸ with a warm one: :data:`COMPILE_MIN_WORK` = 2³⁰ ≈
1.1·10⁹ sits between the two.

The work counted is that of *every call of the same graph so far in this
process* (same step, shapes, dtype and Λ layout; :meth:`StepRunner.add_work`),
this call included, as a just-in-time compiler counts a hot loop: one 256²
image with T = 256 (1.7·10⁷) runs eagerly (about 0.3 s), and so do the first
63 calls of that shape in a user's loop; the 64th compiles, and every later
call runs compiled. Callers that know in advance that they will run many
solves of one shape — training, a folder of images, a grid search — pass
``compile=True`` to :func:`tvfast.pdhg` and compile at once.

``TVFAST_COMPILE=1`` forces compilation for every call, ``TVFAST_COMPILE=0``
forbids it; the variable overrides the callers' ``compile`` argument.

``torch._dynamo`` (the machinery behind ``torch.compile``) is imported only
when a call compiles: ``import tvfast`` and eager solves never load it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable

import torch

__all__ = ["COMPILE_MIN_WORK", "MAX_GRAPHS", "env_compile", "should_compile", "StepRunner", "step_runner"]

# Pixel-iterations (B·N·T) from which a call compiles by default (derivation in the module docstring).
COMPILE_MIN_WORK = 2**30

# Every problem shape and Λ layout is its own static-shape graph (dynamic-shape
# graphs run about 1.7× slower here); Dynamo's default of 8 graphs per function
# would send a folder of differently sized images to eager mode after the 8th.
MAX_GRAPHS = 128


def env_compile() -> bool | None:
    """``TVFAST_COMPILE``: True for 1/true/yes, False for 0/false/no, None when unset or anything else."""
    flag = os.environ.get("TVFAST_COMPILE", "").strip().lower()
    if flag in ("0", "false", "no"):
        return False
    if flag in ("1", "true", "yes"):
        return True
    return None


def should_compile(work: int, requested: bool | None = None) -> bool:
    """Whether a call doing ``work`` pixel-iterations runs its steps compiled.

    ``TVFAST_COMPILE`` = 1/true/yes or 0/false/no decides for every call;
    otherwise ``requested`` (True/False) decides; otherwise (None) the call
    compiles when ``work`` ≥ :data:`COMPILE_MIN_WORK`. The CPU path passes
    the work of all calls of the same graph so far (:meth:`StepRunner.add_work`).
    """
    flag = env_compile()
    if flag is not None:
        return flag
    if requested is not None:
        return bool(requested)
    return work >= COMPILE_MIN_WORK


def _compile_step(step: Callable) -> Callable:
    """Static shapes (dynamic-shape graphs run about 1.7× slower), one graph per step."""
    return torch.compile(step, dynamic=False, fullgraph=True)


def _graph_limit(max_graphs: int):
    """A context allowing ``max_graphs`` compiled shapes per step function while a solve runs.

    Dynamo keeps its recompile limit in a process-wide config, with no
    per-function setting, so the limit is raised (never lowered) with
    ``config.patch`` for the duration of the solve and restored on exit, even
    on an error: no state outlives the call. While a solve runs, other code
    compiling in another thread sees the raised limit; that is the only
    effect outside the call.
    """
    import torch._dynamo  # only compiling calls get here

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the latter before torch 2.7
        if hasattr(config, name):
            return config.patch(**{name: max(getattr(config, name), max_graphs)})
    return contextlib.nullcontext()


def _recompile_limit_hit(exc: Exception) -> bool:
    import torch._dynamo  # only compiling calls get here

    limit_error = getattr(torch._dynamo.exc, "FailOnRecompileLimitHit", None)
    return limit_error is not None and isinstance(exc, limit_error)


def _flat_signature(args) -> tuple:
    """Shapes, dtypes and strides of the tensors in ``args`` (tuples of tensors flattened), types of the rest."""
    out = []
    for a in args:
        if isinstance(a, tuple):
            out.append(_flat_signature(a))
        elif isinstance(a, torch.Tensor):
            out.append((tuple(a.shape), a.dtype, a.stride()))
        else:
            out.append(type(a))
    return tuple(out)


class StepRunner:
    """Runs a step function T times, compiled or eagerly, and remembers what failed to compile.

    ``compile_step`` turns a step function into its compiled wrapper (by
    default ``torch.compile(step, dynamic=False, fullgraph=True)``); a
    wrapper is made once per step function and kept, and Dynamo caches the
    graphs per shape inside it. ``max_graphs`` is the number of compiled
    shapes a step function may have.
    """

    def __init__(self, compile_step: Callable[[Callable], Callable] = _compile_step, max_graphs: int = MAX_GRAPHS):
        self.compile_step = compile_step
        self.max_graphs = max_graphs
        self._wrappers: dict[Callable, Callable] = {}
        self._failed: set[tuple] = set()
        self._work: dict[tuple, int] = {}

    @property
    def failed_graphs(self) -> frozenset:
        """The graphs Inductor failed to build, as (step name, argument signature)."""
        return frozenset(self._failed)

    def compiled(self, step: Callable) -> Callable | None:
        """The compiled wrapper of ``step`` if one was made, else None."""
        return self._wrappers.get(step)

    def add_work(self, key: tuple, work: int) -> int:
        """Add ``work`` pixel-iterations to the count of graph ``key``; returns the count so far.

        ``key`` names one graph: the step, the shapes, dtype and Λ layout of a
        call. The counts live as long as the runner (the process, for
        :data:`step_runner`), like Dynamo's own graph cache.
        """
        self._work[key] = self._work.get(key, 0) + work
        return self._work[key]

    def forget_failures(self) -> None:
        """Let every graph that failed to compile be tried again (after installing a compiler, say)."""
        self._failed.clear()

    def _wrapper(self, step: Callable) -> Callable:
        if step not in self._wrappers:
            try:
                self._wrappers[step] = self.compile_step(step)
            except Exception as exc:  # torch.compile unavailable on this platform: this call runs eagerly
                warnings.warn(f"tvfast: torch.compile unavailable ({exc}); running eagerly", stacklevel=4)
                return step
        return self._wrappers[step]

    def run(self, step: Callable, n_iter: int, compile_it: bool, step_args: Callable[[int], tuple],
            after_step: Callable[[int], None] | None = None) -> None:
        """Call ``step(*step_args(k))`` and then ``after_step(k)`` for k = 0 … n_iter−1.

        ``step_args`` is called once per iteration (it may do work, such as
        unpacking clip states). With ``compile_it`` the compiled wrapper runs,
        under a graph limit of ``max_graphs`` for the duration of the call.
        If compiling fails this call continues eagerly, with a warning. When
        the graph limit was reached nothing is remembered. When Inductor could
        not build the step (no C++ compiler, an unsupported layout, …) the
        failure is remembered for that one graph — the step, the shapes,
        dtypes and strides of its arguments — so later calls of the same shape
        run eagerly at once instead of paying for the failed compilation
        again; other shapes still compile. :meth:`forget_failures` clears the
        record.
        """
        if n_iter == 0:
            return
        args = step_args(0)
        signature = (step.__name__, _flat_signature(args)) if compile_it else None
        if not compile_it or signature in self._failed:
            for iteration in range(n_iter):
                if iteration > 0:
                    args = step_args(iteration)
                step(*args)
                if after_step is not None:
                    after_step(iteration)
            return
        current = self._wrapper(step)
        with _graph_limit(self.max_graphs):
            for iteration in range(n_iter):
                if iteration > 0:
                    args = step_args(iteration)
                try:
                    current(*args)
                except Exception as exc:
                    if current is step or iteration > 0:
                        raise
                    if _recompile_limit_hit(exc):
                        warnings.warn(f"tvfast: {self.max_graphs} compiled shapes reached; running this call "
                                      "eagerly", stacklevel=4)
                    else:
                        warnings.warn(f"tvfast: torch.compile failed ({type(exc).__name__}: {exc}); "
                                      "running this shape eagerly", stacklevel=4)
                        self._failed.add(signature)
                    current = step
                    current(*args)  # a compile failure happens before the step touches its buffers
                if after_step is not None:
                    after_step(iteration)


# The runner of the CPU path: its compiled wrappers and failure record live as long as the process.
step_runner = StepRunner()
