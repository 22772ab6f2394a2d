"""Figures of the evaluation (matplotlib, Agg; no global pyplot state).

* :func:`plot_lambda_curves` — PSNR(λ) and SSIM(λ) over the scalar grid.
* :func:`plot_metric_differences` — histograms of the per-image differences
  (learned − best scalar) in PSNR and SSIM.

The per-image figures (examples, Λ map) live in :mod:`tvfast.evaluation.figures`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from tvfast.evaluation.figures import save_figure

__all__ = ["plot_lambda_curves", "plot_metric_differences"]


def plot_lambda_curves(
    lambdas: np.ndarray,
    psnr_values: np.ndarray,
    ssim_values: np.ndarray,
    path: str | os.PathLike,
    *,
    learned: tuple[float, float] | None = None,
    name: str = "",
) -> Path:
    """PSNR and SSIM of the scalar-λ solutions against λ for one image.

    Parameters
    ----------
    lambdas, psnr_values, ssim_values : numpy.ndarray
        The grid and the metric of each grid solution, shape ``(K,)``.
    path : str or os.PathLike
        Output PNG.
    learned : (float, float), optional
        PSNR and SSIM of the learned map, drawn as horizontal lines.
    name : str
        Image name for the figure title.
    """
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for ax, values, label, ref in zip(
        axes, (psnr_values, ssim_values), ("PSNR (dB)", "SSIM"), learned or (None, None)
    ):
        values = np.asarray(values)
        k = int(np.argmax(values))
        ax.plot(lambdas, values, "o-", ms=2.5, lw=1, label="scalar λ")
        ax.axvline(lambdas[k], color="tab:red", ls=":", lw=1, label=f"best λ = {lambdas[k]:.3f}")
        if ref is not None:
            ax.axhline(ref, color="tab:green", ls="--", lw=1, label=f"learned Λ = {ref:.3f}")
        ax.set_xlabel("λ")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if name:
        fig.suptitle(name, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_metric_differences(
    d_psnr: np.ndarray, d_ssim: np.ndarray, path: str | os.PathLike, *, title: str = ""
) -> Path:
    """Histograms of per-image differences learned − best scalar (PSNR, SSIM).

    Parameters
    ----------
    d_psnr, d_ssim : numpy.ndarray
        One difference per image (PSNR in dB; SSIM). Positive favours the
        learned map.
    path : str or os.PathLike
        Output PNG.
    title : str
        Figure title.
    """
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2)
    for ax, d, label in zip(axes, (d_psnr, d_ssim), ("Δ PSNR (dB)", "Δ SSIM")):
        d = np.asarray(d, dtype=np.float64)
        ax.hist(d, bins=max(5, min(30, d.size)), color="tab:purple", alpha=0.8)
        ax.axvline(0.0, color="k", lw=1)
        ax.axvline(d.mean(), color="tab:red", ls="--", lw=1, label=f"mean {d.mean():+.3f}")
        ax.set_xlabel(f"{label}, learned − best scalar")
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
