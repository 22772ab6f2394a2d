"""The 3-D U-Net that maps a noisy volume or (x, y, t) sequence to Λ-map logits.

The design of :mod:`tvfast.models.unet` (docs/method.md §6) with 3-D convolutions, for
inputs ``(B, C, D, H, W)`` with D as depth or time (docs/method.md §9). For
``base_channels=c`` and ``depth=3``::

    1 → c → 2c → 4c → 8c → 4c → 2c → c → 2        (1-16-32-64-128-64-32-16-2 by default)

* an initial block of two 3×3×3 convolutions ``in → c → c``;
* ``depth`` encoder blocks: max-pooling, then two 3×3×3 convolutions, the
  first doubling the channels (``c_i → 2c_i → 2c_i``). The pooling is
  1×2×2 (over H and W only) by default, so that short sequences keep all
  their frames; with ``pool_time=True`` it is 2×2×2;
* ``depth`` decoder blocks: a 1×1×1 convolution halving the channels
  (``2c_i → c_i``; computed before the upsampling, with which it commutes),
  trilinear upsampling (``align_corners=False``) to the skip's size — an
  exact copy along D when D was not pooled, i.e. bilinear in (H, W) —,
  concatenation with the encoder skip (``2c_i`` channels), then two 3×3×3
  convolutions ``2c_i → c_i → c_i``;
* a final 1×1×1 convolution ``c → out_channels``.

All 3×3×3 convolutions use zero padding 1 and are followed by
LeakyReLU(0.01); every convolution has a bias; the 1×1×1 convolutions are
linear. The default configuration (``base_channels=16``, ``depth=3``) has
1,325,314 trainable parameters.

Inputs whose H or W (and D, with ``pool_time``) is not a multiple of
``2**depth`` are padded up to the next multiple — reflect-padded, or
replicate-padded when an axis is too small to reflect (the rule of
:func:`tvfast.models.unet.pad_mode`) — and the output is cropped back, so the output
always has the input's size. Samples in a batch never interact.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tvfast.models.unet import pad_mode

__all__ = ["UNet3d"]

_NEGATIVE_SLOPE = 0.01


def _double_conv(in_ch: int, mid_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3×3×3 convolutions (zero padding 1, bias), each followed by an in-place LeakyReLU
    (its backward needs only its output, as in :mod:`tvfast.models.unet`)."""
    return nn.Sequential(
        nn.Conv3d(in_ch, mid_ch, kernel_size=3, padding=1, bias=True),
        nn.LeakyReLU(_NEGATIVE_SLOPE, inplace=True),
        nn.Conv3d(mid_ch, out_ch, kernel_size=3, padding=1, bias=True),
        nn.LeakyReLU(_NEGATIVE_SLOPE, inplace=True),
    )


class _Down(nn.Module):
    """Encoder block: max-pool (1×2×2 or 2×2×2), then a ``c → 2c → 2c`` double 3×3×3 convolution."""

    def __init__(self, in_ch: int, pool_time: bool) -> None:
        super().__init__()
        self.pool = nn.MaxPool3d(kernel_size=(2, 2, 2) if pool_time else (1, 2, 2))
        self.conv = _double_conv(in_ch, 2 * in_ch, 2 * in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class _Up(nn.Module):
    """Decoder block: 1×1×1 conv ``2c → c`` (linear), trilinear upsampling to the skip's
    size, concatenation ``[upsampled, skip]``, then a ``2c → c → c`` double 3×3×3 conv."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        out_ch = in_ch // 2
        self.reduce = nn.Conv3d(in_ch, out_ch, kernel_size=1, bias=True)
        self.conv = _double_conv(2 * out_ch, out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # 1×1×1 convolution before the upsampling: both are linear and the
        # trilinear weights sum to 1, so they commute exactly (bias included),
        # at an eighth (a quarter without time pooling) of the cost.
        x = self.reduce(x)
        x = F.interpolate(x, size=skip.shape[-3:], mode="trilinear", align_corners=False)
        # conv(cat([x, skip])) as the sum of the convolutions of its two parts,
        # so autograd keeps no concatenated copy (as in tvfast.models.unet._Up; hooks
        # on conv[0] are bypassed).
        first = self.conv[0]
        split = x.shape[1]
        y = F.conv3d(x, first.weight[:, :split], first.bias, padding=1)
        y = y + F.conv3d(skip, first.weight[:, split:], None, padding=1)
        return self.conv[1:](y)


class UNet3d(nn.Module):
    """3-D U-Net for volumes and (x, y, t) sequences (docs/method.md §6, §9).

    Parameters
    ----------
    in_channels : int
        Channels of the input (1 for grayscale).
    out_channels : int
        Channels of the output (2: a temporal and a spatial map for
        :class:`tvfast.models.lambda_net3d.LambdaNet3d`).
    base_channels : int
        Channels ``c`` after the initial block; doubled by each encoder block.
    depth : int
        Number of encoder (and decoder) blocks, i.e. of poolings.
    pool_time : bool
        Pool 2×2×2 (also halving D) instead of 1×2×2 (H and W only).

    Notes
    -----
    ``forward`` accepts ``(B, in_channels, D, H, W)`` for any ``D, H, W ≥ 1``
    and returns ``(B, out_channels, D, H, W)``. Samples in a batch never
    interact.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        base_channels: int = 16,
        depth: int = 3,
        pool_time: bool = False,
    ) -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if base_channels < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("channel counts must be positive")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.base_channels = int(base_channels)
        self.depth = int(depth)
        self.pool_time = bool(pool_time)

        c = self.base_channels
        self.inc = _double_conv(self.in_channels, c, c)
        self.downs = nn.ModuleList(_Down(c * 2**i, self.pool_time) for i in range(self.depth))
        self.ups = nn.ModuleList(_Up(c * 2 ** (i + 1)) for i in reversed(range(self.depth)))
        self.outc = nn.Conv3d(c, self.out_channels, kernel_size=1, bias=True)

    @property
    def config(self) -> dict:
        """Constructor arguments, JSON-serialisable."""
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "base_channels": self.base_channels,
            "depth": self.depth,
            "pool_time": self.pool_time,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, D, H, W) input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channel(s), got shape {tuple(x.shape)}")
        D, H, W = x.shape[-3:]
        m = 2**self.depth
        pad_d = (-D) % m if self.pool_time else 0
        pad_h, pad_w = (-H) % m, (-W) % m
        if pad_d or pad_h or pad_w:
            reflect = pad_mode(H, W, pad_h, pad_w) == "reflect" and pad_d < D
            x = F.pad(x, (0, pad_w, 0, pad_h, 0, pad_d), mode="reflect" if reflect else "replicate")

        skips = []
        x = self.inc(x)
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up in self.ups:
            x = up(x, skips.pop())
        x = self.outc(x)
        return x[..., :D, :H, :W]
