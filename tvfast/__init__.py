"""tvfast: fast, low-memory, differentiable TV denoising with per-pixel Λ maps.

Public API: :func:`tvfast.pdhg` (the solver) and :func:`tvfast.pretrained`
(the shipped U-Net Λ-map model). The reference loop lives in
:mod:`tvfast.solver.reference`.
"""

from tvfast.models.pretrained import pretrained
from tvfast.solver.op import pdhg

__all__ = ["pdhg", "pretrained"]
__version__ = "0.1.0"
