"""The oracle scalar λ: TV for every λ of a grid in one batched solve, scored against the clean image.

This is the baseline the learned map is measured against (docs/method.md §8):
for each image the best λ of the grid is chosen *with* the clean image, so it
is an upper bound for any scalar-λ method. Each grid is one batched default
call of :func:`tvfast.pdhg` (the fused CPU path on CPU tensors).
"""

from __future__ import annotations

import numpy as np
import torch

import tvfast
from tvfast.evaluation.metrics import psnr, ssim

__all__ = ["lambda_grid_search"]


def lambda_grid_search(
    z: torch.Tensor,
    clean: torch.Tensor,
    lambdas: torch.Tensor,
    n_iter: int,
    batch: int | None = None,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
    """Solve TV for every scalar λ of a grid and score each solution.

    Parameters
    ----------
    z, clean : torch.Tensor
        Noisy and clean image, ``(1, H, W)`` or ``(1, 1, H, W)``.
    lambdas : torch.Tensor
        ``(K,)`` grid.
    n_iter : int
        PDHG iterations.
    batch : int, optional
        λ values per ``tvfast.pdhg`` call; default all ``K`` in one call
        (a batch of ``K`` copies of ``z`` with ``Λ`` of shape ``(K,)``).

    Returns
    -------
    psnr_values, ssim_values : numpy.ndarray
        ``(K,)`` metrics of each solution.
    best_psnr_image, best_ssim_image : torch.Tensor
        ``(H, W)`` solutions with the highest PSNR and SSIM.
    """
    z4 = z.reshape(1, 1, *z.shape[-2:])
    K = lambdas.numel()
    batch = K if batch is None or batch <= 0 else batch
    psnr_values, ssim_values = np.empty(K), np.empty(K)
    best = {"psnr": (-np.inf, None), "ssim": (-np.inf, None)}
    with torch.no_grad():
        for start in range(0, K, batch):
            lam = lambdas[start : start + batch].to(z4)
            xs = tvfast.pdhg(z4.expand(lam.numel(), 1, *z4.shape[-2:]).contiguous(), lam, n_iter=n_iter)
            xs = xs.cpu()
            for j in range(lam.numel()):
                k = start + j
                psnr_values[k] = psnr(clean, xs[j])
                ssim_values[k] = ssim(clean, xs[j])
                if psnr_values[k] > best["psnr"][0]:
                    best["psnr"] = (psnr_values[k], xs[j, 0].clone())
                if ssim_values[k] > best["ssim"][0]:
                    best["ssim"] = (ssim_values[k], xs[j, 0].clone())
    return psnr_values, ssim_values, best["psnr"][1], best["ssim"][1]
