"""The op: ``tvfast.pdhg`` and everything it runs on.

Modules
-------
op          : :func:`pdhg`, the public op (also ``tvfast.pdhg``).
arguments   : argument checks and normalisation; every user-facing error of the op.
autograd    : the autograd Function with the clip-state backward (docs/method.md §4).
clip_states : the 2-bit clip states INSIDE/HIGH/LOW and their packing.
differences : the periodic finite-difference gradient ∇ and its adjoint.
reference   : the plain reference loop, ``pdhg_reference`` (autograd through every iterate).
cpu         : the PyTorch path (CPU), one step written over 2 or 3 spatial axes.
backends    : which module (Triton launcher or PyTorch path) runs a backend's iterations.
compile_policy : when the PyTorch path compiles its steps with torch.compile.
reconstruction : the autograd Function of ``pdhg(y, Λ, operator=A)`` (docs/method.md §10).

The Triton kernels (CUDA) live in :mod:`tvfast.kernels`.
"""
