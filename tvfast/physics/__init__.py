"""Forward operators for reconstruction, kept apart from the solver (docs/method.md §10).

Modules
-------
linear    : :class:`LinearOperator` (a forward map and its adjoint), :func:`as_operator`
            (objects of other libraries), :func:`check_adjoint`, :func:`operator_norm`.
operators : :class:`MaskedFFT` (single-coil Cartesian MRI) and :class:`Blur` (periodic convolution).
tomography: :class:`ParallelBeam` (2-D parallel-beam CT, exact adjoint, FBP) and :func:`simulate_ct`.
mri       : the simulated accelerated MRI task (:func:`simulate_mri`, :func:`row_mask`, :func:`smooth_phase`).

``tvfast.pdhg(y, Λ, operator=A)`` accepts anything :func:`as_operator` accepts.
"""

from tvfast.physics.linear import LinearOperator, as_operator, check_adjoint, operator_norm
from tvfast.physics.mri import row_mask, simulate_mri, smooth_phase
from tvfast.physics.operators import Blur, MaskedFFT
from tvfast.physics.tomography import ParallelBeam, simulate_ct

__all__ = ["LinearOperator", "as_operator", "check_adjoint", "operator_norm", "MaskedFFT", "Blur", "ParallelBeam",
           "simulate_ct", "simulate_mri", "row_mask", "smooth_phase"]
