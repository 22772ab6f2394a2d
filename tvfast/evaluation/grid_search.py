"""The oracle baseline: TV with every candidate of a grid in batched solves, scored against the clean image.

This is the baseline every learned map is measured against (docs/method.md
§8): for each image the best candidate is chosen *with* the clean image, so
it is an upper bound for any method with that family of parameters. One
search serves every task:

* **scalar λ** — candidates ``(K,)``: denoising (:func:`lambda_grid_search`)
  or reconstruction with ``operator=A`` and a start ``x0``;
* **pairs or per-axis values** — candidates ``(K, C)``: one λ per axis, e.g.
  (λ_t, λ_xy, λ_xy) for sequences;
* **log-refined** — ``refine=n`` solves n more scalar values, log-spaced
  between the neighbours of the PSNR-best one.

Each batch of candidates is one default call of :func:`tvfast.pdhg` on copies
of the data (the fused CPU path on CPU tensors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

import tvfast
from tvfast.evaluation.metrics import psnr, ssim

__all__ = ["OracleSearch", "oracle_search", "log_grid", "lambda_grid_search", "scored_image", "image_scores"]


def scored_image(x: torch.Tensor) -> torch.Tensor:
    """The (H, W) float32 CPU image a solution is scored as: its magnitude when complex."""
    x = x.detach()
    x = x.abs() if x.is_complex() else x
    return x.reshape(x.shape[-2:]).to("cpu", torch.float32)


def image_scores(clean: torch.Tensor, x: torch.Tensor) -> tuple[float, float]:
    """PSNR and SSIM of a solution (:func:`scored_image`) against ``clean``."""
    img = scored_image(x)
    return psnr(clean, img), ssim(clean, img)


def log_grid(low: float, high: float, count: int) -> np.ndarray:
    """``count`` log-spaced values from ``low`` to ``high`` (``low`` alone when count is 1)."""
    return np.geomspace(low, high, count) if count > 1 else np.asarray([low], dtype=np.float64)


@dataclass
class OracleSearch:
    """Every candidate solved, in the order solved, with its scores and the best solutions.

    ``candidates`` (N,) or (N, C); ``stage`` "grid" or "refine" per candidate;
    ``psnr``/``ssim`` (N,); ``best_psnr``/``best_ssim`` the indices of the
    best; ``image_psnr``/``image_ssim`` their solutions (one item of the
    solve's batch, on the CPU); ``at_edge``: the PSNR-best candidate of the
    grid is its first or last value (the grid may be too narrow).
    """

    candidates: np.ndarray
    stage: list[str]
    psnr: np.ndarray
    ssim: np.ndarray
    best_psnr: int
    best_ssim: int
    image_psnr: torch.Tensor
    image_ssim: torch.Tensor
    at_edge: bool


def oracle_search(
    data: torch.Tensor,
    clean: torch.Tensor,
    candidates,
    n_iter: int,
    *,
    operator=None,
    x0: torch.Tensor | None = None,
    options: dict | None = None,
    refine: int = 0,
    batch: int | None = None,
    scores: Callable[[torch.Tensor, torch.Tensor], tuple[float, float]] = image_scores,
) -> OracleSearch:
    """Solve TV for every candidate of a grid (then, with ``refine``, around the best) and score each.

    Parameters
    ----------
    data : torch.Tensor
        One item: the noisy image ``(1, 1, H, W)`` (or volume ``(1, 1, D, H, W)``), or with ``operator`` the
        data y of one image.
    clean : torch.Tensor
        The clean image, as ``scores`` takes it.
    candidates : array-like
        ``(K,)`` scalar λ values, or ``(K, C)`` one λ per axis (C = 2 or 3, in Λ's channel order).
    n_iter : int
        PDHG iterations.
    operator, x0 : optional
        The forward operator and the start (``(1, 1, …)``) of a reconstruction.
    options : dict, optional
        More keywords of :func:`tvfast.pdhg` for every batch (``tau``, ``sigma``, ``backend``, …).
    refine : int
        With scalar candidates, this many more values, log-spaced strictly between the neighbours of the
        PSNR-best grid value (0: the grid alone).
    batch : int, optional
        Candidates per :func:`tvfast.pdhg` call (default all of them in one call).
    scores : callable
        ``scores(clean, x) -> (psnr, ssim)`` for one solution ``x`` (one item of the batch); the default takes
        an image (its magnitude when complex).
    """
    grid = np.asarray(candidates, dtype=np.float64)
    if grid.ndim not in (1, 2) or grid.shape[0] == 0:
        raise ValueError(f"candidates: expected (K,) values or (K, C) per-axis values, got shape {grid.shape}")
    if refine and grid.ndim != 1:
        raise ValueError("refine: expected scalar candidates (K,) to refine between")
    spatial = data.dim() - 2 if operator is None else (x0.dim() - 2 if x0 is not None else 2)
    options = options or {}
    solved: list[np.ndarray] = []
    stages: list[str] = []
    p_all: list[float] = []
    s_all: list[float] = []
    best = {"psnr": (-np.inf, None), "ssim": (-np.inf, None)}

    def run(values: np.ndarray, stage: str) -> None:
        size = len(values) if batch is None or batch <= 0 else batch
        for start in range(0, len(values), size):
            chunk = values[start : start + size]
            k = len(chunk)
            lam = torch.as_tensor(chunk, dtype=torch.float32, device=data.device)
            if lam.dim() == 2:  # one λ per axis: (K, C, 1, …)
                lam = lam.reshape(k, lam.shape[1], *([1] * spatial))
            copies = data.expand(k, *data.shape[1:]).contiguous()
            start_k = None if x0 is None else x0.expand(k, *x0.shape[1:]).contiguous()
            with torch.no_grad():
                xs = tvfast.pdhg(copies, lam, n_iter, operator=operator, x0=start_k, **options).cpu()
            for value, x in zip(chunk, xs):
                p, s = scores(clean, x)
                solved.append(value)
                stages.append(stage)
                p_all.append(p)
                s_all.append(s)
                if p > best["psnr"][0]:
                    best["psnr"] = (p, x.clone())
                if s > best["ssim"][0]:
                    best["ssim"] = (s, x.clone())

    run(grid, "grid")
    k = int(np.argmax(p_all))
    at_edge = grid.shape[0] > 1 and k in (0, grid.shape[0] - 1)
    if refine > 0 and grid.shape[0] > 1:
        order = np.argsort(grid)
        rank = int(np.nonzero(order == k)[0][0])
        low, high = grid[order[max(rank - 1, 0)]], grid[order[min(rank + 1, len(order) - 1)]]
        if low > 0:
            fine = log_grid(low, high, refine + 2)[1:-1]
        else:  # a grid from 0: the refinement cannot be logarithmic down to it
            fine = np.linspace(low, high, refine + 2)[1:-1]
        fine = fine[~np.isclose(fine, grid[k], rtol=1e-9, atol=0.0)]  # already solved
        if fine.size:
            run(fine, "refine")
    p_arr, s_arr = np.asarray(p_all), np.asarray(s_all)
    return OracleSearch(np.asarray(solved), stages, p_arr, s_arr, int(np.argmax(p_arr)), int(np.argmax(s_arr)),
                        best["psnr"][1], best["ssim"][1], bool(at_edge))


def lambda_grid_search(
    z: torch.Tensor,
    clean: torch.Tensor,
    lambdas: torch.Tensor,
    n_iter: int,
    batch: int | None = None,
    tv: str = "anisotropic",
) -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
    """Denoising's grid: :func:`oracle_search` over scalar λ for one noisy image.

    ``z``, ``clean``: ``(1, H, W)`` or ``(1, 1, H, W)``; ``lambdas`` ``(K,)``;
    ``tv``: the TV of every solve (that of the model compared against).
    Returns the ``(K,)`` PSNR and SSIM of each λ and the ``(H, W)`` solutions
    with the highest PSNR and SSIM.
    """
    z4 = z.reshape(1, 1, *z.shape[-2:])
    found = oracle_search(z4, clean, torch.as_tensor(lambdas).reshape(-1).tolist(), n_iter, batch=batch,
                          options={"tv": tv})
    return found.psnr, found.ssim, found.image_psnr[0], found.image_ssim[0]
