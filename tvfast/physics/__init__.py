"""Forward operators for reconstruction, kept apart from the solver (docs/method.md §10).

Modules
-------
linear    : :class:`LinearOperator` (a forward map and its adjoint), :func:`as_operator`
            (objects of other libraries), :func:`check_adjoint`, :func:`operator_norm`.
operators : :class:`MaskedFFT` (single-coil Cartesian MRI) and :class:`Blur` (periodic convolution).

``tvfast.pdhg(y, Λ, operator=A)`` accepts anything :func:`as_operator` accepts.
"""

from tvfast.physics.linear import LinearOperator, as_operator, check_adjoint, operator_norm
from tvfast.physics.operators import Blur, MaskedFFT

__all__ = ["LinearOperator", "as_operator", "check_adjoint", "operator_norm", "MaskedFFT", "Blur"]
