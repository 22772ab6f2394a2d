"""Optional dependencies: which ``pip install "tvfast[EXTRA]"`` brings each one.

The base install (torch, numpy, safetensors, pillow, tifffile, tqdm) solves,
runs the shipped model and denoises files. Figures, image-quality metrics
and training need more; a feature whose package is missing stops with one
line naming the extra, for instance::

    tvfast demo needs matplotlib: pip install "tvfast[figures]"
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "require", "missing_extra_message"]

EXTRAS = {
    "matplotlib": ("matplotlib", "figures"),
    "skimage": ("scikit-image", "eval"),
    "scipy": ("scipy", "train"),
    "tensorboard": ("tensorboard", "train"),
    "triton": ("triton", "triton"),
}
"""Top-level module → (distribution to install, extra of tvfast that installs it)."""


class MissingExtraError(ImportError):
    """A feature needs a package of an extra that is not installed.

    The message names the extra; ``name`` is the missing top-level module.
    """


def missing_extra_message(module: str, feature: str, extra: str | None = None) -> str:
    """``"FEATURE needs DISTRIBUTION: pip install "tvfast[EXTRA]""``.

    ``extra`` defaults to the extra that installs ``module`` (:data:`EXTRAS`).
    """
    top = module.split(".")[0]
    distribution, default_extra = EXTRAS.get(top, (top, "all"))
    return f'{feature} needs {distribution}: pip install "tvfast[{extra or default_extra}]"'


def require(module: str, feature: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``, or raise :class:`MissingExtraError` naming the extra.

    Only a missing ``module`` itself (or its top-level package) becomes
    :class:`MissingExtraError`; an import error inside an installed package
    propagates unchanged.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name is None or exc.name.split(".")[0] != top:
            raise
        raise MissingExtraError(missing_extra_message(module, feature, extra), name=top) from None
