"""Which module runs the PDHG iterations for a backend: the Triton launcher, the fused CPU path or the PyTorch path.

Both modules expose ``solve_forward``/``solve_backward`` with the same
signatures (docs/method.md §5); denoising (:mod:`tvfast.solver.op`) and
reconstruction (:mod:`tvfast.solver.reconstruction`) choose through here.
"""

from __future__ import annotations

__all__ = ["solver_for"]


def solver_for(backend: str, compile: bool | None = None):
    """(module, keyword options of its solve calls) for a resolved ``backend``, "numba", "triton" or "torch".

    ``compile`` reaches only the PyTorch path (:mod:`tvfast.solver.compile_policy`);
    the Triton launcher is imported, and Triton with it, only when asked for,
    and so is Numba.
    """
    if backend == "triton":
        from tvfast.kernels import launch

        return launch, {}
    if backend == "numba":  # resolved only where the fused kernels load (tvfast.solver.arguments)
        from tvfast.solver import fused

        return fused, {}
    from tvfast.solver import cpu

    return cpu, {"compile": compile}
