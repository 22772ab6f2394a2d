"""Image-quality metrics against the clean image, with data range 1 (docs/method.md §6).

    PSNR(x, y) = 10 · log10( 1 / mean((x − y)²) )        [dB]
    SSIM(x, y) = skimage.metrics.structural_similarity(x, y, data_range=1)

Both come from ``skimage.metrics`` (the ``[eval]`` extra: scikit-image);
estimates are not clipped to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from tvfast.extras import require

_skimage_metrics = require("skimage.metrics", "tvfast.evaluation.metrics (PSNR, SSIM)")

__all__ = ["psnr", "ssim", "frame_metrics"]


def _as_2d(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu", torch.float64).numpy()
    a = np.asarray(a, dtype=np.float64)
    a = np.squeeze(a)
    if a.ndim != 2:
        raise ValueError(f"expected one 2-D image, got shape {a.shape}")
    return a


def psnr(clean, estimate) -> float:
    """PSNR in dB of ``estimate`` against ``clean`` (both one image), data range 1."""
    return float(_skimage_metrics.peak_signal_noise_ratio(_as_2d(clean), _as_2d(estimate), data_range=1.0))


def ssim(clean, estimate) -> float:
    """SSIM of ``estimate`` against ``clean`` (both one image), data range 1."""
    return float(_skimage_metrics.structural_similarity(_as_2d(clean), _as_2d(estimate), data_range=1.0))


def frame_metrics(clean, estimate) -> tuple[float, float]:
    """Mean over frames of PSNR and SSIM for sequences or volumes ``(D, H, W)`` (leading size-1 axes allowed).

    Sequences are scored frame by frame, as videos usually are, rather than as
    one 3-D signal.
    """
    def frames(a):
        if isinstance(a, torch.Tensor):
            a = a.detach().to("cpu", torch.float64).numpy()
        a = np.squeeze(np.asarray(a, dtype=np.float64))
        if a.ndim == 2:
            a = a[None]
        if a.ndim != 3:
            raise ValueError(f"expected a (D, H, W) sequence, got shape {a.shape}")
        return a

    pairs = [(psnr(c, e), ssim(c, e)) for c, e in zip(frames(clean), frames(estimate))]
    return float(np.mean([p for p, _ in pairs])), float(np.mean([s for _, s in pairs]))
