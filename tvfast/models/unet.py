"""The U-Net ``NET_Θ`` that maps a noisy image, volume or sequence to Λ-map logits.

One network for 2-D images ``(B, C, H, W)`` and for 3-D inputs
``(B, C, D, H, W)`` with D as depth or time (``spatial_dims`` = 2 or 3;
docs/method.md §6, §9). For ``base_channels=c`` and ``depth=3``::

    1 → c → 2c → 4c → 8c → 4c → 2c → c → 2
    2-D: 1-32-64-128-256-128-64-32-2   (c = 32, 1,796,034 parameters)
    3-D: 1-16-32-64-128-64-32-16-2     (c = 16, 1,325,314 parameters)

* an initial block of two 3×3 (3×3×3) convolutions ``in → c → c``;
* ``depth`` encoder blocks: max-pooling, then two 3×3 (3×3×3) convolutions,
  the first doubling the channels (``c_i → 2c_i → 2c_i``). The pooling is
  2×2 in 2-D. In 3-D it is 1×2×2 (over H and W only) by default, so that
  short sequences keep all their frames, and 2×2×2 with ``pool_time=True``;
* ``depth`` decoder blocks: a 1×1 (1×1×1) convolution halving the channels
  (``2c_i → c_i``), upsampling to the skip's size (bilinear in 2-D,
  trilinear in 3-D, ``align_corners=False``; an exact copy along D when D
  was not pooled), concatenation with the encoder skip (``2c_i`` channels),
  then two 3×3 (3×3×3) convolutions ``2c_i → c_i → c_i``;
* a final 1×1 (1×1×1) convolution ``c → out_channels``.

All 3×3 (3×3×3) convolutions use zero padding 1 and are followed by
LeakyReLU(0.01); every convolution has a bias; the 1×1 (1×1×1) convolutions
are linear (no activation), as in the seed's code.

The 1×1 convolution of a decoder block runs *before* the upsampling: both
are linear and the interpolation weights sum to 1, so with
``U`` the upsampling, ``W`` the 1×1 weights and ``b`` the bias,
``U(Wx + b) = W(Ux) + b`` exactly — and the convolution costs a quarter
(2-D, 3-D without time pooling) or an eighth (3-D with it).

Inputs whose H or W (and D, with ``pool_time``) is not a multiple of
``2**depth`` are padded at the end up to the next multiple — reflect-padded,
or replicate-padded when an axis is too small to reflect (:func:`pad_mode`)
— and the output is cropped back, so the output always has the input's
size. Samples in a batch never interact.
"""

from __future__ import annotations

from numbers import Integral

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "pad_mode"]

_NEGATIVE_SLOPE = 0.01
_DEFAULT_BASE_CHANNELS = {2: 32, 3: 16}


def pad_mode(height: int, width: int, pad_h: int, pad_w: int) -> str:
    """The padding rule of the model: reflect, unless the image is too small to reflect
    ``pad_h`` rows / ``pad_w`` columns (reflection needs pad < size): then replicate the edge."""
    return "reflect" if pad_h < height and pad_w < width else "replicate"


def _check_int(name: str, value, minimum: int) -> int:
    """``value`` as an int ``≥ minimum``, or one ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return int(value)


def _conv(spatial_dims: int, in_ch: int, out_ch: int, kernel_size: int) -> nn.Module:
    """A Conv2d / Conv3d with bias; zero padding keeps the size for 3×3 kernels."""
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    return conv(in_ch, out_ch, kernel_size=kernel_size, padding=kernel_size // 2, bias=True)


def _double_conv(spatial_dims: int, in_ch: int, mid_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3×3 (3×3×3) convolutions (zero padding 1, bias) each followed by LeakyReLU.

    The activations run in place: LeakyReLU's backward needs only its output
    (the slope is positive), so autograd keeps one tensor per convolution
    instead of two, with the same numbers.
    """
    return nn.Sequential(
        _conv(spatial_dims, in_ch, mid_ch, 3),
        nn.LeakyReLU(_NEGATIVE_SLOPE, inplace=True),
        _conv(spatial_dims, mid_ch, out_ch, 3),
        nn.LeakyReLU(_NEGATIVE_SLOPE, inplace=True),
    )


class _Down(nn.Module):
    """Encoder block: max-pool (2×2; 1×2×2 or 2×2×2), then a ``c → 2c → 2c`` double convolution."""

    def __init__(self, spatial_dims: int, in_ch: int, pool_time: bool = False) -> None:
        super().__init__()
        if spatial_dims == 2:
            self.pool = nn.MaxPool2d(kernel_size=2)
        else:
            self.pool = nn.MaxPool3d(kernel_size=(2, 2, 2) if pool_time else (1, 2, 2))
        self.conv = _double_conv(spatial_dims, in_ch, 2 * in_ch, 2 * in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x))


class _Up(nn.Module):
    """Decoder block: 1×1 conv ``2c → c`` (linear), upsampling to the skip's size,
    concatenation ``[upsampled, skip]``, then a ``2c → c → c`` double convolution."""

    def __init__(self, spatial_dims: int, in_ch: int) -> None:
        super().__init__()
        out_ch = in_ch // 2
        self.spatial_dims = spatial_dims
        self.reduce = _conv(spatial_dims, in_ch, out_ch, 1)
        self.conv = _double_conv(spatial_dims, 2 * out_ch, out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # 1×1 convolution before the upsampling (they commute, module docstring):
        # autograd keeps no 2c-channel full-size tensor.
        x = self.reduce(x)
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        x = F.interpolate(x, size=skip.shape[2:], mode=mode, align_corners=False)
        # conv(cat([x, skip])) as the sum of the convolutions of its two parts
        # (the weight split along input channels): autograd then keeps x and the
        # skip it already holds, not a concatenated copy of both. (This calls
        # F.conv2d / F.conv3d with conv[0]'s parameters: hooks or
        # parametrisations put on that module are bypassed.)
        conv = F.conv2d if self.spatial_dims == 2 else F.conv3d
        first = self.conv[0]
        split = x.shape[1]
        y = conv(x, first.weight[:, :split], first.bias, padding=1)
        y = y + conv(skip, first.weight[:, split:], None, padding=1)
        return self.conv[1:](y)


class UNet(nn.Module):
    """U-Net of docs/method.md §6 for images (``spatial_dims=2``) or volumes and sequences (``spatial_dims=3``, §9).

    Parameters
    ----------
    in_channels : int
        Channels of the input (1 for grayscale).
    out_channels : int
        Channels of the output (2: one map per gradient direction in 2-D, a
        temporal and a spatial map in 3-D).
    base_channels : int, optional
        Channels ``c`` after the initial block; doubled by each encoder
        block. Default: 32 in 2-D, 16 in 3-D.
    depth : int
        Number of encoder (and decoder) blocks, i.e. of poolings (``≥ 0``).
    pool_time : bool
        3-D only: pool 2×2×2 (also halving D) instead of 1×2×2 (H and W only).
    spatial_dims : int
        2 (images) or 3 (volumes, (x, y, t) sequences).

    Notes
    -----
    ``forward`` accepts ``(B, in_channels, H, W)`` (2-D) or
    ``(B, in_channels, D, H, W)`` (3-D) for any sizes ``≥ 1`` and returns
    ``out_channels`` maps of the same size. Both dimensions have the same
    parameter names, so a model file's keys do not depend on ``spatial_dims``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        base_channels: int | None = None,
        depth: int = 3,
        pool_time: bool = False,
        *,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims!r}")
        if not isinstance(pool_time, bool):
            raise ValueError(f"pool_time: expected a bool, got {pool_time!r}")
        if pool_time and spatial_dims == 2:
            raise ValueError("pool_time: pooling along D needs spatial_dims=3, got spatial_dims=2")
        if base_channels is None:
            base_channels = _DEFAULT_BASE_CHANNELS[spatial_dims]
        self.spatial_dims = int(spatial_dims)
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.out_channels = _check_int("out_channels", out_channels, 1)
        self.base_channels = _check_int("base_channels", base_channels, 1)
        self.depth = _check_int("depth", depth, 0)
        self.pool_time = pool_time

        n, c = self.spatial_dims, self.base_channels
        self.inc = _double_conv(n, self.in_channels, c, c)
        self.downs = nn.ModuleList(_Down(n, c * 2**i, pool_time) for i in range(self.depth))
        self.ups = nn.ModuleList(_Up(n, c * 2 ** (i + 1)) for i in reversed(range(self.depth)))
        self.outc = _conv(n, c, self.out_channels, 1)

    @property
    def config(self) -> dict:
        """Constructor arguments, JSON-serialisable (``pool_time`` only in 3-D)."""
        cfg = {
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "base_channels": self.base_channels,
            "depth": self.depth,
        }
        if self.spatial_dims == 3:
            cfg["pool_time"] = self.pool_time
        return cfg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layout = "(B, C, H, W)" if self.spatial_dims == 2 else "(B, C, D, H, W)"
        if x.ndim != 2 + self.spatial_dims:
            raise ValueError(f"x: expected {layout} input, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected {self.in_channels} input channel(s), got shape {tuple(x.shape)}")
        size = x.shape[2:]
        H, W = size[-2:]
        m = 2**self.depth
        pad_h, pad_w = (-H) % m, (-W) % m
        pad = [0, pad_w, 0, pad_h]
        reflect = pad_mode(H, W, pad_h, pad_w) == "reflect"
        if self.spatial_dims == 3:
            D = size[0]
            pad_d = (-D) % m if self.pool_time else 0
            pad += [0, pad_d]
            reflect = reflect and pad_d < D
        if any(pad):
            x = F.pad(x, pad, mode="reflect" if reflect else "replicate")

        skips = []
        x = self.inc(x)
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for up in self.ups:
            x = up(x, skips.pop())
        x = self.outc(x)
        if self.spatial_dims == 2:
            return x[..., :H, :W]
        return x[..., : size[0], :H, :W]
