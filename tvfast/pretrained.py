"""The shipped Λ-map model (U-Net → Λ → PDHG) trained on chest X-rays."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

__all__ = ["pretrained", "pretrained_weights_path"]


def pretrained_weights_path() -> Path:
    """Path of the shipped weights (``lambda_net.safetensors`` + ``lambda_net.json``)."""
    return Path(str(resources.files("tvfast") / "weights" / "lambda_net.safetensors"))


def pretrained(device: str | torch.device = "cpu"):
    """The shipped :class:`~tvfast.lambda_net.LambdaNet`, in eval mode.

    Loaded from safetensors (no pickle). ``model(z)`` denoises (B, 1, H, W)
    images in [0, 1]; ``model.lambda_map(z)`` returns Λ.
    """
    from tvfast.lambda_net import LambdaNet

    path = pretrained_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"the shipped weights are missing: {path} (reinstall tvfast)")
    return LambdaNet.load_pretrained(path, map_location=device).eval()
