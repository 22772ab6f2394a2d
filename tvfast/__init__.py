"""tvfast: fast, low-memory, differentiable TV denoising with per-pixel Λ maps.

Public API: :func:`tvfast.pdhg` (the solver), :func:`tvfast.pretrained`
(the shipped U-Net Λ-map models, listed by :func:`tvfast.pretrained_models`), :mod:`tvfast.physics` (forward
operators for reconstruction: ``tvfast.pdhg(y, Λ, operator=A)``) and its
:class:`~tvfast.physics.LinearOperator`, also ``tvfast.LinearOperator``. The reference loop lives in
:mod:`tvfast.solver.reference`.
"""

from tvfast import physics
from tvfast.models.pretrained import pretrained, pretrained_models
from tvfast.physics.linear import LinearOperator
from tvfast.solver.op import pdhg

__all__ = ["pdhg", "pretrained", "pretrained_models", "physics", "LinearOperator"]
__version__ = "0.1.0"
