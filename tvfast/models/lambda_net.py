"""``LambdaNet``: the learned regularisation map and the unrolled TV solver.

For a noisy image ``z`` (docs/method.md §6)::

    o   = crop₄( UNet( reflect_pad₄(n(z)) ) )           (B, 2, H, W)
    Λ_Θ = 0.1 · softplus(o)          if up_bound == 0   (the seed's choice)
    Λ_Θ = b · sigmoid(o)             if up_bound == b > 0
    x_T = PDHG_T(z, Λ_Θ)                                 (``tvfast.pdhg``)

where ``n`` is the identity (the seed's choice) or, with
``normalize_input=True``, ``n(z) = (z − mean z) / std z`` per image. With
``solve_pad = r > 0`` the image is reflect-padded by ``r`` pixels before both
the network and the solve, and the solution is cropped back: the periodic
boundary of the solver then couples each edge with its mirror image instead
of with the opposite edge.

Only output channel 0 is used (one map shared by both gradient directions,
``Λ`` of shape ``(B, 1, H, W)``) unless ``directional=True``, in which case
channel 0 weights the vertical and channel 1 the horizontal differences
(``Λ`` of shape ``(B, 2, H, W)``).

Weights are stored with safetensors (no pickle, safe to load from untrusted
sources) next to a small JSON file holding the configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import tvfast
from tvfast.models.files import load_model_weights, read_model_config, save_model_files
from tvfast.models.precision import Precision
from tvfast.models.unet import UNet, pad_mode

__all__ = ["LambdaNet"]

_FORMAT = "tvfast-lambdanet"
_FORMAT_VERSION = 1


class LambdaNet(nn.Module):
    """U-Net → regularisation map Λ_Θ → T iterations of PDHG.

    Parameters
    ----------
    unet : torch.nn.Module, optional
        Maps ``(B, 1, H, W)`` to ``(B, C, H, W)`` logits with ``C ≥ 1``
        (``C ≥ 2`` when ``directional``). Default: ``UNet()`` (1,796,034
        parameters, docs/method.md §6).
    n_iter : int
        PDHG iterations ``T`` used by :meth:`forward`.
    up_bound : float
        ``0`` for ``Λ = 0.1·softplus(o)``; ``b > 0`` for ``Λ = b·sigmoid(o)``.
    directional : bool
        Two maps (vertical, horizontal) instead of one shared map.
    pad : int
        Reflection padding applied before the U-Net and cropped after it.
    normalize_input : bool
        Feed the U-Net ``(z − mean z) / std z`` (per image) instead of ``z``.
    solve_pad : int
        Reflect-pad ``z`` by this many pixels before the network and the
        solve, crop after (0: the solver's periodic boundary acts on ``z``).

    Notes
    -----
    :meth:`set_precision` chooses bf16 autocast and channels-last layout for
    the U-Net (see :mod:`tvfast.models.precision`); the solver always runs in float32.
    """

    def __init__(
        self,
        unet: nn.Module | None = None,
        n_iter: int = 256,
        up_bound: float = 0.0,
        directional: bool = False,
        pad: int = 4,
        normalize_input: bool = False,
        solve_pad: int = 0,
    ) -> None:
        super().__init__()
        if n_iter < 0:
            raise ValueError(f"n_iter must be >= 0, got {n_iter}")
        if up_bound < 0:
            raise ValueError(f"up_bound must be >= 0, got {up_bound}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        if solve_pad < 0:
            raise ValueError(f"solve_pad must be >= 0, got {solve_pad}")
        self.unet = unet if unet is not None else UNet()
        out_ch = getattr(self.unet, "out_channels", None)
        if directional and out_ch is not None and out_ch < 2:
            raise ValueError("directional maps need a network with >= 2 output channels")
        self.n_iter = int(n_iter)
        self.up_bound = float(up_bound)
        self.directional = bool(directional)
        self.pad = int(pad)
        self.normalize_input = bool(normalize_input)
        self.solve_pad = int(solve_pad)
        self.precision = Precision(bf16=False, channels_last=False)
        self.backend = "auto"  # tvfast.pdhg backend used by forward()

    def set_precision(self, precision: Precision) -> "LambdaNet":
        """Run the U-Net with ``precision`` (bf16 autocast / channels-last); returns ``self``.

        Weights stay float32; the solver is unaffected.
        """
        self.precision = precision
        fmt = torch.channels_last if precision.channels_last else torch.contiguous_format
        self.unet.to(memory_format=fmt)
        return self

    @property
    def config(self) -> dict:
        """JSON-serialisable configuration (requires a ``UNet`` network)."""
        if not isinstance(self.unet, UNet):
            raise TypeError("config is only defined for a tvfast.models.unet.UNet network")
        return {
            "n_iter": self.n_iter,
            "up_bound": self.up_bound,
            "directional": self.directional,
            "pad": self.pad,
            "normalize_input": self.normalize_input,
            "solve_pad": self.solve_pad,
            "unet": self.unet.config,
        }

    @staticmethod
    def _as_4d(z: torch.Tensor) -> torch.Tensor:
        if z.ndim == 2:
            return z[None, None]
        if z.ndim == 3:
            return z[:, None]
        if z.ndim == 4 and z.shape[1] == 1:
            return z
        raise ValueError(f"expected z of shape (H, W), (B, H, W) or (B, 1, H, W), got {tuple(z.shape)}")

    def lambda_map(self, z: torch.Tensor) -> torch.Tensor:
        """Regularisation map Λ_Θ(z).

        Parameters
        ----------
        z : torch.Tensor
            Noisy images ``(B, 1, H, W)`` (``(H, W)`` and ``(B, H, W)`` accepted).

        Returns
        -------
        torch.Tensor
            Strictly positive ``(B, 1, H, W)``, or ``(B, 2, H, W)`` when
            ``directional``.
        """
        z = self._as_4d(z)
        H, W = z.shape[-2:]
        if self.normalize_input:
            mean = z.mean(dim=(-2, -1), keepdim=True)
            std = z.std(dim=(-2, -1), keepdim=True) if H * W > 1 else torch.ones_like(mean)
            z = (z - mean) / std.clamp_min(1e-6)
        p = self.pad
        if p:
            z = F.pad(z, (p, p, p, p), mode=pad_mode(H, W, p, p))
        if self.precision.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=z.device.type, dtype=torch.bfloat16, enabled=self.precision.bf16):
            out = self.unet(z)
        out = out.float() if out.dtype == torch.bfloat16 else out
        if p:
            out = out[..., p : p + H, p : p + W]
        out = out[:, : 2 if self.directional else 1].contiguous()
        if self.up_bound == 0.0:
            return 0.1 * F.softplus(out)
        return self.up_bound * torch.sigmoid(out)

    def denoise(self, z: torch.Tensor, n_iter: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise and return the map used: ``(x_T, Λ_Θ)``.

        Parameters
        ----------
        z : torch.Tensor
            Noisy images ``(B, 1, H, W)`` (``(H, W)`` and ``(B, H, W)`` accepted).
        n_iter : int, optional
            PDHG iterations (default: the model's ``n_iter``).

        Returns
        -------
        x : torch.Tensor
            Same shape as ``z``.
        lam : torch.Tensor
            ``(B, 1|2, H, W)``, cropped back to ``z``'s size when ``solve_pad > 0``.
        """
        z4 = self._as_4d(z)
        H, W = z4.shape[-2:]
        r = self.solve_pad
        if r:
            z4 = F.pad(z4, (r, r, r, r), mode=pad_mode(H, W, r, r))
        lam = self.lambda_map(z4)
        x = tvfast.pdhg(z4, lam, n_iter=self.n_iter if n_iter is None else n_iter, backend=self.backend)
        if r:
            x = x[..., r : r + H, r : r + W]
            lam = lam[..., r : r + H, r : r + W]
        return x.reshape(z.shape), lam

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Denoise: ``x_T = tvfast.pdhg(z, Λ_Θ(z), n_iter=T)``, same shape as ``z``."""
        return self.denoise(z)[0]

    # ------------------------------------------------------------------ I/O
    def save_pretrained(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write weights (safetensors) and configuration (JSON), each atomically (:mod:`tvfast.models.files`).

        Parameters
        ----------
        path : str or os.PathLike
            ``name.safetensors`` (config written to ``name.json``) or a
            directory (``model.safetensors`` + ``config.json``).

        Returns
        -------
        (weights, config) : tuple of pathlib.Path
        """
        return save_model_files(self, path, _FORMAT, self.config, _FORMAT_VERSION)

    @classmethod
    def load_pretrained(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> "LambdaNet":
        """Build a ``LambdaNet`` from files written by :meth:`save_pretrained` (no pickle is parsed).

        Parameters
        ----------
        path : str or os.PathLike
            As for :meth:`save_pretrained`.
        map_location : str or torch.device
            Device for the weights.
        """
        weights, cfg = read_model_config(path, _FORMAT, format_optional=True)
        try:
            model = cls(
                UNet(**cfg["unet"]),
                n_iter=int(cfg["n_iter"]),
                up_bound=float(cfg["up_bound"]),
                directional=bool(cfg["directional"]),
                pad=int(cfg.get("pad", 4)),
                normalize_input=bool(cfg.get("normalize_input", False)),
                solve_pad=int(cfg.get("solve_pad", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid LambdaNet config for {str(path)!r}: {exc}") from exc
        return load_model_weights(model, weights, map_location)
