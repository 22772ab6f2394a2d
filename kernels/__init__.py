"""Triton kernels of tvfast, installed as ``tvfast.kernels`` (import it under that name only).

:mod:`tvfast.kernels.launch` runs them: ``solve_forward`` / ``solve_backward``,
used by :func:`tvfast.pdhg` for CUDA tensors, for images and volumes alike.
The kernels themselves are in :mod:`tvfast.kernels.pdhg2d` (images, clip
states packed two pixels per byte) and :mod:`tvfast.kernels.pdhg3d`
(volumes, one byte per voxel), with the helpers and clip-state codes they
share in :mod:`tvfast.kernels.common`. Isotropic TV (docs/method.md §12) has
its passes in :mod:`tvfast.kernels.isotropic`, run by the engine of
:mod:`tvfast.kernels.recompute` for :mod:`tvfast.solver.recompute`.
Importing any of them imports Triton;
to run the kernels on CPU tensors (tests on machines without a GPU), set
``TRITON_INTERPRET=1`` before the first import.
"""
