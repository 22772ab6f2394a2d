"""The 2-bit clip states of PDHG's dual update, packed 4 bits per pixel.

The dual update ``q = clip(u, −Λ, Λ)`` takes one of three branches per entry
(SPEC §4). Its derivative depends only on the branch, so the backward pass
needs nothing else from the forward pass. Tie rule (shared by the forward
value, the Triton kernels and the backward)::

    HIGH   if u ≥ Λ          q = Λ     ∂q/∂u = 0, ∂q/∂Λ = +1
    LOW    if u ≤ −Λ (and not HIGH)    q = −Λ    ∂q/∂u = 0, ∂q/∂Λ = −1
    INSIDE otherwise         q = u     ∂q/∂u = 1, ∂q/∂Λ = 0

Layout: a pixel's *nibble* is ``state₀ | state₁ << 2`` (direction 0 =
vertical, 1 = horizontal). Two horizontally adjacent pixels share a byte:
column ``2m`` in the low nibble, ``2m+1`` in the high nibble, so one iteration
of a (B, H, W) batch is a (B, H, ⌈W/2⌉) uint8 array — 0.5 byte per pixel.
"""

from __future__ import annotations

import torch

__all__ = ["INSIDE", "HIGH", "LOW", "packed_width", "clip_state", "pack_nibbles", "unpack_nibbles"]

INSIDE = 0
HIGH = 1
LOW = 2


def packed_width(width: int) -> int:
    """Bytes per image row of one iteration's mask."""
    return (width + 1) // 2


def clip_state(u: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Branch taken by ``clip(u, −lam, lam)`` as uint8 INSIDE/HIGH/LOW (tie rule above)."""
    high = u >= lam
    low = (u <= -lam) & ~high
    return high.to(torch.uint8) + 2 * low.to(torch.uint8)


def pack_nibbles(nibble: torch.Tensor) -> torch.Tensor:
    """(..., W) uint8 nibbles → (..., ⌈W/2⌉) bytes, even column in the low half."""
    width = nibble.shape[-1]
    if width % 2:
        nibble = torch.nn.functional.pad(nibble, (0, 1))
    pairs = nibble.unflatten(-1, (-1, 2))
    return pairs[..., 0] | (pairs[..., 1] << 4)


def unpack_nibbles(packed: torch.Tensor, width: int) -> torch.Tensor:
    """Inverse of :func:`pack_nibbles`: (..., ⌈W/2⌉) bytes → (..., W) nibbles."""
    pairs = torch.stack((packed & 15, packed >> 4), dim=-1)
    return pairs.flatten(-2)[..., :width]
