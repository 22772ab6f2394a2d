"""The one rule that turns a ``--device`` string into a ``torch.device``."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; otherwise the named device, checked.

    Raises
    ------
    ValueError
        If ``name`` is not a device torch knows, or names CUDA on a machine
        without it (the message names the value, for a one-line CLI error).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device: unknown device {name!r} (expected 'auto', 'cpu', 'cuda' or 'cuda:N')") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: only 'cpu' and 'cuda' devices are supported")
    return device
