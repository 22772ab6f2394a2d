"""Figures of a denoising result (matplotlib, Agg; no global pyplot state; the ``[figures]`` extra).

Every function takes plain numpy arrays, draws one figure on a fresh
``matplotlib.figure.Figure`` (rendered by the Agg canvas, so no display and no
backend selection is needed) and writes it atomically to ``path`` as PNG.

* :func:`plot_denoising_examples` — clean / noisy / best scalar λ / learned Λ,
  PSNR and SSIM in the titles.
* :func:`plot_lambda_map` — Λ and log(Λ + 0.05), each with its histogram.

The evaluation's own figures (λ curves, histograms of differences) belong to
the training package (``training/figures.py``), which builds on these.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tvfast.extras import require
from tvfast.io.atomic import atomic_write

Figure = require("matplotlib.figure", "tvfast.evaluation.figures").Figure

__all__ = ["save_figure", "plot_denoising_examples", "plot_lambda_map", "LOG_OFFSET"]

LOG_OFFSET = 0.05
"""Offset ε of the log display log(Λ + ε) of a regularisation map."""


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically."""
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))


def _image_axis(ax, img: np.ndarray, title: str, **kw) -> None:
    im = ax.imshow(img, cmap=kw.pop("cmap", "gray"), interpolation="nearest", **kw)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return im


def plot_denoising_examples(
    clean: np.ndarray,
    noisy: np.ndarray,
    scalar: np.ndarray,
    learned: np.ndarray,
    metrics: dict,
    path: str | os.PathLike,
    *,
    lam_scalar: float | None = None,
    name: str = "",
    start_label: str = "noisy",
) -> Path:
    """Clean, noisy (or another start), best-scalar-λ and learned-Λ images side by side.

    Parameters
    ----------
    clean, noisy, scalar, learned : numpy.ndarray
        ``(H, W)`` images; all are shown on the clean image's [0, 1] scale.
    metrics : dict
        ``{"noisy": (psnr, ssim), "scalar": (psnr, ssim), "learned": (psnr, ssim)}``.
    path : str or os.PathLike
        Output PNG.
    lam_scalar : float, optional
        The best scalar λ, shown in its title.
    name : str
        Image name for the figure title.
    start_label : str
        The second panel's name (``"zero-filled |Aᴴy|"`` for MRI).
    """
    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 4)
    lam_txt = f" λ={lam_scalar:.3f}" if lam_scalar is not None else ""
    panels = [
        (clean, "clean"),
        (noisy, start_label + "  {:.2f} dB / {:.3f}".format(*metrics["noisy"])),
        (scalar, "best scalar{}  {:.2f} dB / {:.3f}".format(lam_txt, *metrics["scalar"])),
        (learned, "learned Λ  {:.2f} dB / {:.3f}".format(*metrics["learned"])),
    ]
    for ax, (img, title) in zip(axes, panels):
        _image_axis(ax, img, title, vmin=0.0, vmax=1.0)
    if name:
        fig.suptitle(f"{name}  (PSNR / SSIM)", fontsize=10)
    return save_figure(fig, path)


def plot_lambda_map(lam: np.ndarray, path: str | os.PathLike, *, name: str = "") -> Path:
    """Regularisation map(s) Λ and log(Λ + 0.05), with histograms.

    Parameters
    ----------
    lam : numpy.ndarray
        ``(H, W)`` for a shared map or ``(2, H, W)`` for directional maps
        (vertical, horizontal); one row of panels per map.
    path : str or os.PathLike
        Output PNG.
    name : str
        Image name for the figure title.
    """
    lam = np.asarray(lam, dtype=np.float64)
    maps = lam[None] if lam.ndim == 2 else lam
    labels = ["Λ"] if len(maps) == 1 else ["Λ vertical", "Λ horizontal"]
    fig = Figure(figsize=(13, 3.2 * len(maps)))
    axes = np.atleast_2d(fig.subplots(len(maps), 4))
    for row, m, label in zip(axes, maps, labels):
        log_m = np.log(m + LOG_OFFSET)
        im = _image_axis(row[0], m, label, cmap="viridis")
        fig.colorbar(im, ax=row[0], fraction=0.046, pad=0.04)
        im = _image_axis(row[1], log_m, f"log({label} + {LOG_OFFSET})", cmap="viridis")
        fig.colorbar(im, ax=row[1], fraction=0.046, pad=0.04)
        row[2].hist(m.ravel(), bins=60, color="tab:blue")
        row[2].set_title(f"histogram of {label}", fontsize=9)
        row[3].hist(log_m.ravel(), bins=60, color="tab:green")
        row[3].set_title(f"histogram of log({label} + {LOG_OFFSET})", fontsize=9)
    if name:
        fig.suptitle(name, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
