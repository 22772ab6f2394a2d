"""Triton kernels of tvfast, installed as ``tvfast.kernels`` (import it under that name only).

:mod:`tvfast.kernels.pdhg_step` holds the fused PDHG iteration, its adjoint and
their launchers; :func:`tvfast.pdhg` uses them for CUDA tensors. Importing the
module imports Triton. To run the kernels on CPU tensors (tests on machines
without a GPU), set ``TRITON_INTERPRET=1`` before the first import.
"""
