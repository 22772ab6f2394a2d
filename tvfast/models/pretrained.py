"""The shipped models: ``tvfast.pretrained(name)`` and ``tvfast.pretrained_models()``.

=================  ======================================================================
name               what it is for
=================  ======================================================================
``xray-denoise``   the default: Gaussian denoising of grayscale chest X-rays (LambdaNet)
``mri4x``          4×-accelerated single-coil Cartesian MRI (ReconstructionNet, complex)
``ct60``           60-view parallel-beam CT of 128² images (ReconstructionNet, real)
=================  ======================================================================

Only the models whose files are installed are listed by
:func:`pretrained_models` (``ct60`` ships only if it beats the best scalar λ
by at least 0.5 dB on its test set). Weights are safetensors files (no
pickle) in ``tvfast/weights``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch

__all__ = ["pretrained", "pretrained_models", "pretrained_weights_path", "SHIPPED"]

SHIPPED: dict[str, tuple[str, str]] = {
    "xray-denoise": (
        "lambda_net.safetensors",
        "Gaussian denoising of grayscale chest X-rays in [0, 1] (trained on 200 of them, relative noise "
        "s = 0.1–0.5); model(z), model.denoise(z) -> (x, Λ). On other images a well-chosen scalar λ can be better.",
    ),
    "xray-denoise-isotropic": (
        "lambda_net_isotropic.safetensors",
        "The X-ray denoiser with isotropic TV (fine-tuned from xray-denoise): 0.10-0.23 dB above it on the 100 test "
        "X-rays, the solve about twice as long; same use as xray-denoise.",
    ),
    "mri4x": (
        "mri4x.safetensors",
        "4x-accelerated single-coil Cartesian MRI (whole phase-encode rows, 4–12 % fully sampled centre; trained on "
        "MRI simulated from chest X-rays and synthetic dead-leaves images, s = 0.03–0.08, T = 256, last on whole 256² "
        "images): "
        "model.reconstruct(y, mask) -> complex image, any H × W.",
    ),
    "ct60": (
        "ct60.safetensors",
        "Sparse-view CT, 60 parallel-beam views over 180° (trained on 128² sinograms simulated from chest X-rays): "
        "model(y, tvfast.physics.ParallelBeam((H, W))) -> image.",
    ),
}
"""name → (weights file in tvfast/weights, what the model is for)."""


def pretrained_weights_path(name: str = "xray-denoise") -> Path:
    """Path of a shipped model's weights (its configuration is the ``.json`` beside it)."""
    if name not in SHIPPED:
        raise ValueError(f"name: expected one of {tuple(SHIPPED)}, got {name!r}")
    return Path(str(resources.files("tvfast") / "weights" / SHIPPED[name][0]))


def pretrained_models() -> dict[str, str]:
    """The installed shipped models: ``{name: what it is for}`` (pass a name to :func:`pretrained`)."""
    return {name: about for name, (_, about) in SHIPPED.items() if pretrained_weights_path(name).is_file()}


def pretrained(name: str = "xray-denoise", device: str | torch.device = "cpu"):
    """A shipped model, in eval mode (see :func:`pretrained_models` for the list).

    * ``"xray-denoise"`` (the default): :class:`~tvfast.models.lambda_net.LambdaNet`;
      ``model(z)`` denoises (B, 1, H, W) images in [0, 1], ``model.denoise(z)``
      returns the result and Λ, ``model.lambda_map(z)`` Λ alone. It was
      trained on grayscale chest X-rays with Gaussian noise and beats the
      best scalar λ there; on other images, natural photographs for instance,
      it can be worse than a well-chosen scalar λ
      (experiments/results/natural_images.md): use ``tvfast.pdhg(z, λ)`` or train
      a model on your own images.
    * ``"xray-denoise-isotropic"``: the same, solving with isotropic TV
      (``tv="isotropic"``); 0.10–0.23 dB better on the test X-rays, each
      solve about twice as long (docs/results.md).
    * ``"mri4x"``: :class:`~tvfast.models.reconstruction_net.ReconstructionNet`;
      ``model.reconstruct(y, mask)`` for complex k-space y (B, 1, H, W)
      (``fft2(x, norm="ortho")``, no shift) and a mask broadcastable to y.
      Its U-Net sees the zero-filled image and a 64-iteration scalar-TV
      solve of the same data (the pilot, docs/method.md §11); it runs at
      T = 256 with step balance 30 (docs/results.md).
    * ``"ct60"`` (when installed): ``model(y, ParallelBeam((H, W)))``.

    Loaded from safetensors (no pickle).
    """
    if not isinstance(name, str) or name not in SHIPPED:
        raise ValueError(f"name: expected one of {tuple(SHIPPED)} (tvfast.pretrained_models() lists them), "
                         f"got {name!r}; the device is the second argument, device=...")
    path = pretrained_weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"the weights of {name!r} are not installed: {path}")
    if name in ("xray-denoise", "xray-denoise-isotropic"):
        from tvfast.models.lambda_net import LambdaNet

        return LambdaNet.load_pretrained(path, map_location=device).eval()
    from tvfast.models.reconstruction_net import ReconstructionNet

    return ReconstructionNet.load_pretrained(path, map_location=device).eval()
