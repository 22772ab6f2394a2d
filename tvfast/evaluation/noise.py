"""Additive Gaussian noise models (docs/method.md §7).

Relative noise (the seed's model), with ``s`` relative to each clean image's
standard deviation::

    z = x + s · std(x) · n,        n ~ N(0, I)

Absolute noise::

    z = x + σ · n

Nothing is clipped: ``z`` may leave [0, 1]. ``std(x)`` is the sample standard
deviation (Bessel-corrected, as ``torch.std`` in the seed's code) over the two
spatial axes of each image separately, so images of a batch never share it.
"""

from __future__ import annotations

import torch

__all__ = ["add_noise", "relative_noise", "absolute_noise", "NOISE_MODES"]

NOISE_MODES = ("relative", "absolute")


def _level_tensor(level, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or per-image level to ``x``'s leading (batch) axes.

    A scalar applies to every image; a 1-D tensor of length ``B`` gives one
    level per leading entry of ``x`` (shape ``(B, ...)``).
    """
    level = torch.as_tensor(level, dtype=x.dtype, device=x.device)
    if level.ndim == 0:
        return level
    if level.ndim == 1 and x.ndim >= 3 and level.shape[0] == x.shape[0]:
        return level.reshape(-1, *([1] * (x.ndim - 1)))
    raise ValueError(
        f"noise level must be a scalar or have shape (B,) = ({x.shape[0]},), "
        f"got shape {tuple(level.shape)} for images of shape {tuple(x.shape)}"
    )


def _gaussian_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    # Draw on the generator's device (CPU generators are the common case),
    # then move, so a CPU generator works for CUDA images too.
    device = generator.device if generator is not None else x.device
    n = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device)
    return n.to(x.device)


def relative_noise(
    x: torch.Tensor, s, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Return ``z = x + s · std(x) · n`` with ``std`` per image.

    Parameters
    ----------
    x : torch.Tensor
        Clean image(s), shape ``(..., H, W)``; the standard deviation is taken
        over the last two axes of each image.
    s : float or torch.Tensor
        Relative noise level: a scalar, or shape ``(B,)`` for ``x`` of shape
        ``(B, ..., H, W)``.
    generator : torch.Generator, optional
        Source of randomness, for reproducible noise.

    Returns
    -------
    torch.Tensor
        Noisy image(s), same shape and dtype as ``x``; not clipped.
    """
    std = x.std(dim=(-2, -1), keepdim=True)
    return x + _level_tensor(s, x) * std * _gaussian_like(x, generator)


def absolute_noise(
    x: torch.Tensor, sigma, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Return ``z = x + σ · n``.

    Parameters
    ----------
    x : torch.Tensor
        Clean image(s), shape ``(..., H, W)``.
    sigma : float or torch.Tensor
        Noise standard deviation: a scalar or shape ``(B,)``.
    generator : torch.Generator, optional
        Source of randomness, for reproducible noise.

    Returns
    -------
    torch.Tensor
        Noisy image(s), same shape and dtype as ``x``; not clipped.
    """
    return x + _level_tensor(sigma, x) * _gaussian_like(x, generator)


def add_noise(
    x: torch.Tensor,
    level,
    mode: str = "relative",
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Add Gaussian noise of the given ``mode`` (``"relative"`` or ``"absolute"``).

    ``level`` is ``s`` for relative noise and ``σ`` for absolute noise; see
    :func:`relative_noise` and :func:`absolute_noise`.
    """
    if mode == "relative":
        return relative_noise(x, level, generator=generator)
    if mode == "absolute":
        return absolute_noise(x, level, generator=generator)
    raise ValueError(f"unknown noise mode {mode!r}; expected one of {NOISE_MODES}")
