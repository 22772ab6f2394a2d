"""Triton kernels for tvfast (installed as ``tvfast.kernels``).

Importing this package imports Triton. To run the kernels on CPU tensors
(tests, no GPU) set ``TRITON_INTERPRET=1`` before importing it.
"""
