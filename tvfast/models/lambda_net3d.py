"""``LambdaNet3d``: a temporal and a spatial Λ-map for (x, y, t) sequences, and the unrolled 3-D TV solver.

Following Kofler et al. (2023), who learn one map for the temporal and one
for the spatial differences of a dynamic image, for a noisy sequence ``z`` of
shape ``(B, 1, D, H, W)`` with D = time (docs/method.md §6, §9)::

    o    = crop₄( UNet3d( reflect_pad₄(z) ) )       (B, 2, D, H, W); padding over H, W only
    Λ_t  = 0.1 · softplus(o[:, 0])                  weights ∂_D (time)
    Λ_xy = 0.1 · softplus(o[:, 1])                  weights ∂_H and ∂_W (space)
    Λ    = (Λ_t, Λ_xy, Λ_xy)                        (B, 3, D, H, W)
    x_T  = PDHG_T(z, Λ)                             (``tvfast.pdhg``, default 3-D steps τ = σ = 1/√13)

The solver's differences are periodic along all three axes (docs/method.md
§9): along time, the last frame is coupled with the first, which suits
periodic motion such as breathing or a heart beat.

Weights are stored with safetensors (no pickle) next to a small JSON file
holding the configuration, as for :class:`tvfast.models.lambda_net.LambdaNet`.
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
from tvfast.models.unet import pad_mode
from tvfast.models.unet3d import UNet3d

__all__ = ["LambdaNet3d"]

_FORMAT = "tvfast-lambdanet3d"
_FORMAT_VERSION = 1


class LambdaNet3d(nn.Module):
    """3-D U-Net → (Λ_t, Λ_xy, Λ_xy) → T iterations of 3-D PDHG.

    Parameters
    ----------
    unet : torch.nn.Module, optional
        Maps ``(B, 1, D, H, W)`` to ``(B, C, D, H, W)`` logits with ``C ≥ 2``
        (channel 0: temporal map, channel 1: spatial map). Default:
        ``UNet3d()`` (1,325,314 parameters).
    n_iter : int
        PDHG iterations ``T`` used by :meth:`forward`.
    pad : int
        Reflection padding over H and W applied before the U-Net and cropped
        after it (not over time).

    Notes
    -----
    :meth:`set_precision` chooses bf16 autocast and the channels-last-3d
    layout for the U-Net (see :mod:`tvfast.models.precision`); the solver always
    runs in float32.
    """

    def __init__(self, unet: nn.Module | None = None, n_iter: int = 128, pad: int = 4) -> None:
        super().__init__()
        if n_iter < 0:
            raise ValueError(f"n_iter must be >= 0, got {n_iter}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        self.unet = unet if unet is not None else UNet3d()
        out_ch = getattr(self.unet, "out_channels", None)
        if out_ch is not None and out_ch < 2:
            raise ValueError("LambdaNet3d needs a network with >= 2 output channels (temporal and spatial map)")
        self.n_iter = int(n_iter)
        self.pad = int(pad)
        self.precision = Precision(bf16=False, channels_last=False)
        self.backend = "auto"  # tvfast.pdhg backend used by forward()

    def set_precision(self, precision: Precision) -> "LambdaNet3d":
        """Run the U-Net with ``precision`` (bf16 autocast / channels-last-3d); returns ``self``.

        Weights stay float32; the solver is unaffected.
        """
        self.precision = precision
        fmt = torch.channels_last_3d if precision.channels_last else torch.contiguous_format
        self.unet.to(memory_format=fmt)
        return self

    @property
    def config(self) -> dict:
        """JSON-serialisable configuration (requires a ``UNet3d`` network)."""
        if not isinstance(self.unet, UNet3d):
            raise TypeError("config is only defined for a tvfast.models.unet3d.UNet3d network")
        return {"n_iter": self.n_iter, "pad": self.pad, "unet": self.unet.config}

    @staticmethod
    def _check_input(z: torch.Tensor) -> None:
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if z.ndim != 5 or z.shape[1] != 1:
            raise ValueError(f"expected z of shape (B, 1, D, H, W), got {tuple(z.shape)}")

    def lambda_map(self, z: torch.Tensor) -> torch.Tensor:
        """Regularisation map ``(Λ_t, Λ_xy, Λ_xy)`` of the sequences ``z``.

        Parameters
        ----------
        z : torch.Tensor
            Noisy sequences ``(B, 1, D, H, W)``, D = time.

        Returns
        -------
        torch.Tensor
            Strictly positive ``(B, 3, D, H, W)`` (float32 for float32 input):
            channel 0 weights the differences along D (time), channels 1 and 2
            — equal — those along H and W (docs/method.md §9).
        """
        self._check_input(z)
        H, W = z.shape[-2:]
        p = self.pad
        if p:
            z = F.pad(z, (p, p, p, p, 0, 0), mode=pad_mode(H, W, p, p))
        if self.precision.channels_last:
            z = z.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(device_type=z.device.type, dtype=torch.bfloat16, enabled=self.precision.bf16):
            out = self.unet(z)
        out = out.float() if out.dtype == torch.bfloat16 else out
        if p:
            out = out[..., p : p + H, p : p + W]
        lam = 0.1 * F.softplus(out[:, :2].contiguous())
        lam_t, lam_xy = lam[:, 0], lam[:, 1]
        return torch.stack((lam_t, lam_xy, lam_xy), dim=1)

    def denoise(self, z: torch.Tensor, n_iter: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise and return the map used: ``(x_T, Λ)``.

        Parameters
        ----------
        z : torch.Tensor
            Noisy sequences ``(B, 1, D, H, W)``.
        n_iter : int, optional
            PDHG iterations (default: the model's ``n_iter``).

        Returns
        -------
        x : torch.Tensor
            ``(B, 1, D, H, W)``, z's dtype.
        lam : torch.Tensor
            ``(B, 3, D, H, W)``, see :meth:`lambda_map`.
        """
        lam = self.lambda_map(z)
        x = tvfast.pdhg(z, lam, n_iter=self.n_iter if n_iter is None else n_iter, backend=self.backend)
        return x, lam

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Denoise: ``x_T = tvfast.pdhg(z, Λ(z), n_iter=T)``, same shape as ``z``."""
        return self.denoise(z)[0]

    # ------------------------------------------------------------------ I/O
    def save_pretrained(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write weights (safetensors) and configuration (JSON), each atomically (:mod:`tvfast.models.files`).

        ``path`` is ``name.safetensors`` (config ``name.json``) or a directory
        (``model.safetensors`` + ``config.json``); returns the two paths.
        """
        return save_model_files(self, path, _FORMAT, self.config, _FORMAT_VERSION)

    @classmethod
    def load_pretrained(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu"
    ) -> "LambdaNet3d":
        """Build a ``LambdaNet3d`` from files written by :meth:`save_pretrained` (no pickle is parsed).

        The configuration must name the format ``"tvfast-lambdanet3d"``, so a
        2-D ``LambdaNet`` file is refused with a clear message.
        """
        weights, cfg = read_model_config(path, _FORMAT)
        try:
            model = cls(UNet3d(**cfg["unet"]), n_iter=int(cfg["n_iter"]), pad=int(cfg.get("pad", 4)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid LambdaNet3d config for {str(path)!r}: {exc}") from exc
        return load_model_weights(model, weights, map_location)
