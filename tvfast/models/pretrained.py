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
    """The shipped :class:`~tvfast.models.lambda_net.LambdaNet`, in eval mode.

    Loaded from safetensors (no pickle). ``model(z)`` denoises (B, 1, H, W)
    images in [0, 1]; ``model.denoise(z)`` returns the result and Λ;
    ``model.lambda_map(z)`` returns Λ alone.

    What it is for: grayscale chest X-rays with Gaussian noise (it was trained
    on 200 of them, relative noise s = 0.1–0.5, and beats the best scalar λ
    there). On other images, natural photographs for instance, it can be worse
    than a well-chosen scalar λ (docs/evaluation/natural_images.md): use
    ``tvfast.pdhg(z, λ)`` or train a model on your own images.
    """
    from tvfast.models.lambda_net import LambdaNet

    path = pretrained_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"the shipped weights are missing: {path} (reinstall tvfast)")
    return LambdaNet.load_pretrained(path, map_location=device).eval()
