"""The 2-bit clip states of PDHG's dual update, packed 4 bits per pixel.

The dual update ``q = clip(u, −Λ, Λ)`` takes one of three branches per entry
(docs/method.md §4). Its derivative depends only on the branch, so the backward pass
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

import sys

import torch

__all__ = ["INSIDE", "HIGH", "LOW", "packed_width", "clip_state", "pack_nibbles", "unpack_nibbles",
           "pack_float_nibbles", "NibbleUnpacker"]

INSIDE = 0
HIGH = 1
LOW = 2


def packed_width(width: int) -> int:
    """Bytes per image row of one iteration's packed clip states."""
    return (width + 1) // 2


def clip_state(u: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Branch taken by ``clip(u, −lam, lam)`` as uint8 INSIDE/HIGH/LOW (tie rule above)."""
    high = u >= lam
    low = (u <= -lam) & ~high
    return high.to(torch.uint8) + 2 * low.to(torch.uint8)


def pack_nibbles(nibble: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(..., W) uint8 nibbles → (..., ⌈W/2⌉) bytes, even column in the low half.

    Writes into ``out`` when given (strided views are fine).
    """
    width = nibble.shape[-1]
    half = width // 2
    if out is None:
        out = nibble.new_empty(*nibble.shape[:-1], packed_width(width))
    torch.bitwise_or(nibble[..., 0 : 2 * half : 2], nibble[..., 1 : 2 * half : 2] << 4, out=out[..., :half])
    if width % 2:
        out[..., half] = nibble[..., width - 1]
    return out


def unpack_nibbles(packed: torch.Tensor, width: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse of :func:`pack_nibbles`: (..., ⌈W/2⌉) bytes → (..., W) nibbles."""
    if out is None:
        out = packed.new_empty(*packed.shape[:-1], width)
    torch.bitwise_and(packed, 15, out=out[..., 0::2])
    torch.bitwise_right_shift(packed[..., : width // 2], 4, out=out[..., 1::2])
    return out


def pack_float_nibbles(nibble: torch.Tensor, out: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """:func:`pack_nibbles` for nibbles held as floats (0 … 15, e.g. a solver step's clip states), into ``out``.

    The byte is computed as the float ``even + 16·odd`` into ``scratch`` (a
    float tensor of ``out``'s shape, reused between calls) and converted
    once: two vectorised passes instead of a cast, a shift and an or over
    strided bytes (about 2.5× faster on the CPU).
    """
    width = nibble.shape[-1]
    half = width // 2
    torch.add(nibble[..., 0 : 2 * half : 2], nibble[..., 1 : 2 * half : 2], alpha=16, out=scratch[..., :half])
    if width % 2:
        scratch[..., half] = nibble[..., width - 1]
    return out.copy_(scratch)


class NibbleUnpacker:
    """:func:`unpack_nibbles` into a float tensor, for a fixed batch shape: ``unpacker(packed, out)``.

    On little-endian machines and even widths, each byte ``b`` is widened to
    the 16-bit word ``(b & 15) | (b >> 4) << 8``, whose two bytes are the two
    nibbles in column order; the words, read as bytes, are the unpacked row
    (three vectorised integer passes and one cast into ``out``, about 2.5×
    faster on the CPU than two strided byte writes). Other cases use
    :func:`unpack_nibbles`.
    """

    def __init__(self, shape: torch.Size, device: torch.device):
        self.width = shape[-1]
        self.fast = self.width % 2 == 0 and sys.byteorder == "little"
        if self.fast:
            self.words = torch.empty(*shape[:-1], self.width // 2, dtype=torch.int16, device=device)
            self.spare = torch.empty_like(self.words)
        else:
            self.bytes = torch.empty(shape, dtype=torch.uint8, device=device)

    def __call__(self, packed: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if not self.fast:
            return out.copy_(unpack_nibbles(packed, self.width, out=self.bytes))
        words = self.words.copy_(packed)
        torch.bitwise_and(words, 240, out=self.spare)
        self.spare.bitwise_left_shift_(4)
        words.bitwise_and_(15).bitwise_or_(self.spare)
        return out.copy_(words.view(torch.uint8))
