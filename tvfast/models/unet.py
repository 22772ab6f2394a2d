"""The U-Net ``NET_Θ`` that maps a noisy image to regularisation-map logits.

Architecture (docs/method.md §6), for ``base_channels=c`` and ``depth=3``::

    1 → c → 2c → 4c → 8c → 4c → 2c → c → 2        (1-32-64-128-256-128-64-32-2)

* an initial block of two 3×3 convolutions ``in → c → c``;
* ``depth`` encoder blocks: 2×2 max-pool, then two 3×3 convolutions, the first
  doubling the channels (``c_i → 2c_i → 2c_i``);
* ``depth`` decoder blocks: ×2 bilinear upsampling, a 1×1 convolution halving
  the channels (``2c_i → c_i``; computed before the upsampling, with which it
  commutes), concatenation with the encoder skip
  (``2c_i`` channels), then two 3×3 convolutions ``2c_i → c_i → c_i``;
* a final 1×1 convolution ``c → out_channels``.

All 3×3 convolutions use zero padding 1 and are followed by LeakyReLU(0.01);
every convolution has a bias. The 1×1 channel-halving convolutions of the
decoder and the final 1×1 convolution are linear (no activation), as in the
seed's code; upsampling is bilinear with ``align_corners=False`` to the skip's
size. The default
configuration has exactly 1,796,034 trainable parameters.

Inputs whose height or width is not a multiple of ``2**depth`` are
reflect-padded (replicate-padded when the image is too small to reflect) up to
the next multiple and the output is cropped back, so the output always has the
input's spatial size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "pad_mode"]

_NEGATIVE_SLOPE = 0.01


def pad_mode(height: int, width: int, pad_h: int, pad_w: int) -> str:
    """The padding rule of the model: reflect, unless the image is too small to reflect
    ``pad_h`` rows / ``pad_w`` columns (reflection needs pad < size): then replicate the edge."""
    return "reflect" if pad_h < height and pad_w < width else "replicate"


def _double_conv(in_ch: int, mid_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3×3 convolutions (zero padding 1, bias) each followed by LeakyReLU.

    The activations run in place: LeakyReLU's backward needs only its output
    (the slope is positive), so autograd keeps one tensor per convolution
    instead of two, with the same numbers.
    """
    return nn.Sequential(
        nn.Conv2d(in_ch, mid_ch, kernel_size=3, padding=1, bias=True),
        nn.LeakyReLU(_NEGATIVE_SLOPE, inplace=True),
        nn.Conv2d(mid_ch, out_ch, kernel_size=3, padding=1, bias=True),
        nn.LeakyReLU(_NEGATIVE_SLOPE, inplace=True),
    )


class _Down(nn.Module):
    """Encoder block: 2×2 max-pool, then ``c → 2c → 2c`` double 3×3 convolution."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=2)
        self.conv = _double_conv(in_ch, 2 * in_ch, 2 * in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class _Up(nn.Module):
    """Decoder block: ×2 bilinear upsampling, 1×1 conv ``2c → c`` (linear),
    concatenation ``[upsampled, skip]``, then a ``2c → c → c`` double 3×3 conv."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        out_ch = in_ch // 2
        self.reduce = nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=True)
        self.conv = _double_conv(2 * out_ch, out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # The 1×1 convolution runs *before* the upsampling: both are linear and
        # bilinear weights sum to 1, so they commute exactly (bias included),
        # and this way autograd keeps no 2c-channel full-size tensor and the
        # convolution costs a quarter.
        x = self.reduce(x)
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        # conv(cat([x, skip])) as the sum of the convolutions of its two parts
        # (the weight split along input channels): autograd then keeps x and the
        # skip it already holds, not a concatenated copy of both. (This calls
        # F.conv2d with conv[0]'s parameters: hooks or parametrisations put on
        # that module are bypassed.)
        first = self.conv[0]
        split = x.shape[1]
        y = F.conv2d(x, first.weight[:, :split], first.bias, padding=1)
        y = y + F.conv2d(skip, first.weight[:, split:], None, padding=1)
        return self.conv[1:](y)


class UNet(nn.Module):
    """2-D U-Net of docs/method.md §6.

    Parameters
    ----------
    in_channels : int
        Channels of the input image (1 for grayscale).
    out_channels : int
        Channels of the output (2: one map per gradient direction).
    base_channels : int
        Channels ``c`` after the initial block; doubled by each encoder block.
    depth : int
        Number of encoder (and decoder) blocks, i.e. of 2×2 poolings.

    Notes
    -----
    ``forward`` accepts ``(B, in_channels, H, W)`` for any ``H, W ≥ 1`` and
    returns ``(B, out_channels, H, W)``. Samples in a batch never interact.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        base_channels: int = 32,
        depth: int = 3,
    ) -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        if base_channels < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("channel counts must be positive")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.base_channels = base_channels
        self.depth = depth

        c = base_channels
        self.inc = _double_conv(in_channels, c, c)
        self.downs = nn.ModuleList(_Down(c * 2**i) for i in range(depth))
        self.ups = nn.ModuleList(_Up(c * 2 ** (i + 1)) for i in reversed(range(depth)))
        self.outc = nn.Conv2d(c, out_channels, kernel_size=1, bias=True)

    @property
    def config(self) -> dict:
        """Constructor arguments, JSON-serialisable."""
        return {
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "base_channels": self.base_channels,
            "depth": self.depth,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected (B, C, H, W) input, got shape {tuple(x.shape)}")
        H, W = x.shape[-2:]
        m = 2**self.depth
        pad_h, pad_w = (-H) % m, (-W) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=pad_mode(H, W, pad_h, pad_w))

        skips = []
        x = self.inc(x)
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up in self.ups:
            x = up(x, skips.pop())
        x = self.outc(x)
        return x[..., :H, :W]
