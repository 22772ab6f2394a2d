"""``LambdaNet``: the learned regularisation map and the unrolled TV solver, for images and for volumes/sequences.

For a noisy image ``z`` of shape ``(B, 1, H, W)`` (``spatial_dims=2``,
docs/method.md §6)::

    o   = crop₄( UNet( reflect_pad₄(n(z)) ) )           (B, C, H, W)
    Λ_Θ = 0.1 · softplus(o)          if up_bound == 0   (the seed's choice)
    Λ_Θ = b · sigmoid(o)             if up_bound == b > 0
    x_T = PDHG_T(z, Λ_Θ)                                 (``tvfast.pdhg``)

where ``n`` is the identity (the seed's choice) or, with
``normalize_input=True``, ``n(z) = (z − mean z) / std z`` per sample. Only
output channel 0 is used (one map shared by both gradient directions, ``Λ``
of shape ``(B, 1, H, W)``) unless ``directional=True``, in which case channel
0 weights the vertical and channel 1 the horizontal differences (``Λ`` of
shape ``(B, 2, H, W)``).

For a noisy volume or (x, y, t) sequence ``z`` of shape ``(B, 1, D, H, W)``
(``spatial_dims=3``, D = depth or time, docs/method.md §6, §9), following
Kofler et al. (2023), who learn one map for the temporal and one for the
spatial differences of a dynamic image, the same formulas give ``o`` of shape
``(B, C, D, H, W)`` (padding over H and W only) and, with
``directional=True`` (the default in 3-D)::

    Λ = (Λ_t, Λ_xy, Λ_xy) = (act(o₀), act(o₁), act(o₁))      (B, 3, D, H, W)

where ``act`` is the softplus or sigmoid above: ``Λ_t`` weights ∂_D and
``Λ_xy`` both ∂_H and ∂_W. With ``directional=False`` one map ``act(o₀)``
weights all three differences. The solver's differences are periodic along
all three axes (§9): along time the last frame is coupled with the first,
which suits periodic motion such as breathing or a heart beat.

With ``solve_pad = r > 0`` the input is reflect-padded by ``r`` pixels over
H and W before both the network and the solve, and the solution is cropped
back: the periodic boundary of the solver then couples each edge with its
mirror image instead of with the opposite edge.

The solver is called as ``tvfast.pdhg(z, Λ, n_iter=T, backend=solver_backend,
compile=solver_compile)``. Weights are stored with safetensors (no pickle,
safe to load from untrusted sources) next to a small JSON file holding the
configuration (:mod:`tvfast.models.files`).
"""

from __future__ import annotations

import os
from numbers import Integral, Real
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import tvfast
from tvfast.models.files import load_model_weights, read_model_config, save_model_files
from tvfast.models.precision import Precision
from tvfast.models.unet import UNet, pad_mode

__all__ = ["LambdaNet", "FORMATS", "SOLVER_BACKENDS"]

FORMATS = {2: "tvfast-lambdanet", 3: "tvfast-lambdanet3d"}
"""Format name of a model file, by ``spatial_dims``."""

SOLVER_BACKENDS = ("auto", "numba", "triton", "torch")
"""Accepted ``solver_backend`` values (those of ``tvfast.pdhg``'s ``backend``)."""

_FORMAT_VERSION = 2  # 1: before solver_backend / solver_compile and unet.spatial_dims
_DEFAULT_N_ITER = {2: 256, 3: 128}


def _int_at_least(name: str, value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return value


class LambdaNet(nn.Module):
    """U-Net → regularisation map Λ_Θ → T iterations of PDHG, for images or volumes/sequences.

    Parameters
    ----------
    unet : torch.nn.Module, optional
        Maps ``(B, 1, *S)`` to ``(B, C, *S)`` logits, ``S`` = (H, W) or
        (D, H, W), with ``C ≥ 1`` (``C ≥ 2`` when ``directional``). Default:
        ``UNet(spatial_dims=spatial_dims)`` (2-D: 1,796,034 parameters; 3-D:
        1,325,314; docs/method.md §6).
    n_iter : int, optional
        PDHG iterations ``T`` used by :meth:`forward`. Default: 256 in 2-D,
        128 in 3-D.
    up_bound : float
        ``0`` for ``Λ = 0.1·softplus(o)``; ``b > 0`` for ``Λ = b·sigmoid(o)``.
    directional : bool, optional
        2-D: two maps (vertical, horizontal) instead of one shared map.
        3-D: a temporal and a spatial map ``(Λ_t, Λ_xy, Λ_xy)`` instead of one
        shared map. Default: False in 2-D, True in 3-D.
    pad : int
        Reflection padding over H and W applied before the U-Net and cropped
        after it.
    normalize_input : bool
        Feed the U-Net ``(z − mean z) / std z`` (per sample) instead of ``z``.
    solve_pad : int
        Reflect-pad ``z`` over H and W by this many pixels before the network
        and the solve, crop after (0: the solver's periodic boundary acts on ``z``).
    spatial_dims : int, optional
        2 (images) or 3 (volumes, sequences). Default: ``unet.spatial_dims``
        when the network has one, else 2.
    solver_backend : str
        ``backend`` of ``tvfast.pdhg``: ``"auto"`` (Triton on CUDA, PyTorch on
        CPU), ``"triton"`` or ``"torch"``.
    solver_compile : bool or None
        ``compile`` of ``tvfast.pdhg``: ``None`` lets it decide from the
        call's work, ``True`` / ``False`` force ``torch.compile`` on / off.
    tv : {"anisotropic", "isotropic"}
        ``tv`` of ``tvfast.pdhg`` (docs/method.md §11). Isotropic TV weighs
        |∇x| by one map: it does not combine with ``directional``.

    Notes
    -----
    :meth:`set_precision` chooses bf16 autocast and channels-last layout for
    the U-Net (see :mod:`tvfast.models.precision`); the solver always runs in
    float32. :attr:`config` holds every argument but ``unet`` (whose own
    configuration it holds), so a model file rebuilds the same model.
    """

    def __init__(
        self,
        unet: nn.Module | None = None,
        n_iter: int | None = None,
        up_bound: float = 0.0,
        directional: bool | None = None,
        pad: int = 4,
        normalize_input: bool = False,
        solve_pad: int = 0,
        *,
        spatial_dims: int | None = None,
        solver_backend: str = "auto",
        solver_compile: bool | None = None,
        tv: str = "anisotropic",
    ) -> None:
        super().__init__()
        if spatial_dims is not None and (isinstance(spatial_dims, bool) or spatial_dims not in (2, 3)):
            raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims!r}")
        if unet is not None and not isinstance(unet, nn.Module):
            raise TypeError(f"unet: expected a torch.nn.Module, got {type(unet).__name__}")
        net_dims = getattr(unet, "spatial_dims", None)
        if spatial_dims is not None and net_dims is not None and net_dims != spatial_dims:
            raise ValueError(f"spatial_dims: got {spatial_dims}, but the unet is {net_dims}-D")
        dims = spatial_dims or net_dims or 2
        if isinstance(up_bound, bool) or not isinstance(up_bound, Real) or not up_bound >= 0:
            raise ValueError(f"up_bound: expected a number >= 0, got {up_bound!r}")
        if solver_backend not in SOLVER_BACKENDS:
            raise ValueError(f"solver_backend: expected one of {SOLVER_BACKENDS}, got {solver_backend!r}")
        if solver_compile is not None and not isinstance(solver_compile, bool):
            raise ValueError(f"solver_compile: expected None, True or False, got {solver_compile!r}")
        if tv not in ("anisotropic", "isotropic"):
            raise ValueError(f"tv: expected 'anisotropic' or 'isotropic', got {tv!r}")
        self.spatial_dims = int(dims)
        self.n_iter = _int_at_least("n_iter", _DEFAULT_N_ITER[dims] if n_iter is None else n_iter)
        self.up_bound = float(up_bound)
        self.directional = _flag("directional", dims == 3 if directional is None else directional)
        self.pad = _int_at_least("pad", pad)
        self.normalize_input = _flag("normalize_input", normalize_input)
        self.solve_pad = _int_at_least("solve_pad", solve_pad)
        self.solver_backend = solver_backend
        self.solver_compile = solver_compile
        self.tv = tv
        if tv == "isotropic" and self.directional:
            raise ValueError("tv: isotropic TV takes one Λ map; directional maps need tv='anisotropic'")
        self.unet = unet if unet is not None else UNet(spatial_dims=dims)
        out_ch = getattr(self.unet, "out_channels", None)
        if self.directional and out_ch is not None and out_ch < 2:
            raise ValueError(f"directional: maps per direction need a network with >= 2 output channels, "
                             f"got {out_ch}")
        self.precision = Precision(bf16=False, channels_last=False)

    def set_precision(self, precision: Precision) -> "LambdaNet":
        """Run the U-Net with ``precision`` (bf16 autocast / channels-last); returns ``self``.

        Weights stay float32; the solver is unaffected.
        """
        self.precision = precision
        self.unet.to(memory_format=self._memory_format())
        return self

    def _memory_format(self) -> torch.memory_format:
        if not self.precision.channels_last:
            return torch.contiguous_format
        return torch.channels_last if self.spatial_dims == 2 else torch.channels_last_3d

    @property
    def config(self) -> dict:
        """JSON-serialisable configuration (requires a :class:`~tvfast.models.unet.UNet` network)."""
        if not isinstance(self.unet, UNet):
            raise TypeError("config: only defined for a tvfast.models.unet.UNet network, "
                            f"got {type(self.unet).__name__}")
        return {
            "n_iter": self.n_iter,
            "up_bound": self.up_bound,
            "directional": self.directional,
            "pad": self.pad,
            "normalize_input": self.normalize_input,
            "solve_pad": self.solve_pad,
            "solver_backend": self.solver_backend,
            "solver_compile": self.solver_compile,
            "tv": self.tv,
            "unet": self.unet.config,
        }

    @classmethod
    def from_config(cls, config: dict, spatial_dims: int | None = None) -> "LambdaNet":
        """An untrained model built from ``config`` (:attr:`config`, or a model file's JSON).

        Keys missing from older configurations take their defaults
        (``up_bound``, ``directional``, ``pad``, ``normalize_input``,
        ``solve_pad``, ``solver_backend``, ``solver_compile``, ``tv``). The dimension
        is taken from ``config["format"]`` (:data:`FORMATS`) or
        ``config["unet"]["spatial_dims"]``, else from ``spatial_dims``
        (configurations of the former 3-D model name neither), else 2.

        Raises
        ------
        ValueError
            If the configuration is incomplete, contradicts itself or holds a
            bad value (the message names the key).
        """
        if not isinstance(config, dict) or not isinstance(config.get("unet"), dict):
            raise ValueError("config: expected a dict with a 'unet' dict")
        if "n_iter" not in config:
            raise ValueError("config: missing 'n_iter'")
        named = {FORMATS[3]: 3, FORMATS[2]: 2}.get(config.get("format"))
        unet_cfg = dict(config["unet"])
        dims = {d for d in (named, unet_cfg.get("spatial_dims")) if d is not None}
        if len(dims) > 1:
            raise ValueError(f"config: format {config.get('format')!r} but unet spatial_dims "
                             f"{unet_cfg.get('spatial_dims')!r}")
        unet_cfg["spatial_dims"] = dims.pop() if dims else (spatial_dims or 2)
        try:
            unet = UNet(**unet_cfg)
        except TypeError as exc:  # an unknown key
            raise ValueError(f"config['unet']: {exc}") from exc
        return cls(
            unet,
            n_iter=config["n_iter"],
            up_bound=config.get("up_bound", 0.0),
            directional=config.get("directional"),
            pad=config.get("pad", 4),
            normalize_input=config.get("normalize_input", False),
            solve_pad=config.get("solve_pad", 0),
            solver_backend=config.get("solver_backend", "auto"),
            solver_compile=config.get("solver_compile"),
            tv=config.get("tv", "anisotropic"),
        )

    def _as_batch(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` as ``(B, 1, H, W)`` or ``(B, 1, D, H, W)``."""
        if not isinstance(z, torch.Tensor):
            raise TypeError(f"z: expected a torch.Tensor, got {type(z).__name__}")
        if self.spatial_dims == 3:
            if z.ndim != 5 or z.shape[1] != 1:
                raise ValueError(f"z: expected shape (B, 1, D, H, W), got {tuple(z.shape)}")
            return z
        if z.ndim == 2:
            return z[None, None]
        if z.ndim == 3:
            return z[:, None]
        if z.ndim == 4 and z.shape[1] == 1:
            return z
        raise ValueError(f"z: expected shape (H, W), (B, H, W) or (B, 1, H, W), got {tuple(z.shape)}")

    def _pad_hw(self, z: torch.Tensor, r: int) -> torch.Tensor:
        """Reflect-pad (replicate when too small) ``r`` pixels on each side of H and W."""
        H, W = z.shape[-2:]
        pad = (r, r, r, r) + ((0, 0) if self.spatial_dims == 3 else ())
        return F.pad(z, pad, mode=pad_mode(H, W, r, r))

    def lambda_map(self, z: torch.Tensor) -> torch.Tensor:
        """Regularisation map Λ_Θ(z).

        Parameters
        ----------
        z : torch.Tensor
            2-D: noisy images ``(B, 1, H, W)`` (``(H, W)`` and ``(B, H, W)``
            accepted). 3-D: noisy volumes or sequences ``(B, 1, D, H, W)``.

        Returns
        -------
        torch.Tensor
            Strictly positive, float32 for float32 input. 2-D: ``(B, 1, H, W)``,
            or ``(B, 2, H, W)`` (vertical, horizontal) when ``directional``.
            3-D: ``(B, 1, D, H, W)``, or ``(B, 3, D, H, W)`` = ``(Λ_t, Λ_xy,
            Λ_xy)`` when ``directional`` (channels 1 and 2 equal).
        """
        z = self._as_batch(z)
        H, W = z.shape[-2:]
        if self.normalize_input:
            axes = tuple(range(2, z.ndim))
            mean = z.mean(dim=axes, keepdim=True)
            std = z.std(dim=axes, keepdim=True) if z[0, 0].numel() > 1 else torch.ones_like(mean)
            z = (z - mean) / std.clamp_min(1e-6)
        p = self.pad
        if p:
            z = self._pad_hw(z, p)
        if self.precision.channels_last:
            z = z.contiguous(memory_format=self._memory_format())
        with torch.autocast(device_type=z.device.type, dtype=torch.bfloat16, enabled=self.precision.bf16):
            out = self.unet(z)
        out = out.float() if out.dtype == torch.bfloat16 else out
        if p:
            out = out[..., p : p + H, p : p + W]
        out = out[:, : 2 if self.directional else 1].contiguous()
        lam = 0.1 * F.softplus(out) if self.up_bound == 0.0 else self.up_bound * torch.sigmoid(out)
        if self.spatial_dims == 3 and self.directional:
            lam_t, lam_xy = lam[:, 0], lam[:, 1]
            lam = torch.stack((lam_t, lam_xy, lam_xy), dim=1)
        return lam

    def denoise(self, z: torch.Tensor, n_iter: int | None = None, *,
                backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise and return the map used: ``(x_T, Λ_Θ)``.

        Parameters
        ----------
        z : torch.Tensor
            As for :meth:`lambda_map`.
        n_iter : int, optional
            PDHG iterations (default: the model's ``n_iter``).
        backend : str, optional
            The solver backend of this call (:func:`tvfast.pdhg`'s ``backend``;
            default: the model's ``solver_backend``).

        Returns
        -------
        x : torch.Tensor
            Same shape as ``z``.
        lam : torch.Tensor
            See :meth:`lambda_map`; cropped back to ``z``'s size when ``solve_pad > 0``.
        """
        zb = self._as_batch(z)
        H, W = zb.shape[-2:]
        r = self.solve_pad
        if r:
            zb = self._pad_hw(zb, r)
        lam = self.lambda_map(zb)
        T = self.n_iter if n_iter is None else n_iter
        x = tvfast.pdhg(zb, lam, n_iter=T, backend=self.solver_backend if backend is None else backend,
                        compile=self.solver_compile, tv=self.tv)
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

        The configuration is :attr:`config` with the format of the model's
        dimension (:data:`FORMATS`).

        Parameters
        ----------
        path : str or os.PathLike
            ``name.safetensors`` (config written to ``name.json``) or a
            directory (``model.safetensors`` + ``config.json``).

        Returns
        -------
        (weights, config) : tuple of pathlib.Path
        """
        return save_model_files(self, path, FORMATS[self.spatial_dims], self.config, _FORMAT_VERSION)

    @classmethod
    def load_pretrained(
        cls,
        path: str | os.PathLike,
        map_location: str | torch.device = "cpu",
        spatial_dims: int | None = None,
    ) -> "LambdaNet":
        """Build a ``LambdaNet`` from files written by :meth:`save_pretrained` (no pickle is parsed).

        Files of earlier versions load too: 2-D files with or without a
        format name, and 3-D files (format ``"tvfast-lambdanet3d"``) whose
        configuration holds only ``n_iter``, ``pad`` and ``unet``.

        Parameters
        ----------
        path : str or os.PathLike
            As for :meth:`save_pretrained`.
        map_location : str or torch.device
            Device for the weights.
        spatial_dims : int, optional
            Refuse a model of another dimension (``None``: accept either).
        """
        weights, cfg = read_model_config(path, tuple(FORMATS.values()), missing_format=FORMATS[2])
        found = 3 if cfg["format"] == FORMATS[3] else 2
        if spatial_dims is not None and spatial_dims != found:
            raise ValueError(f"spatial_dims: expected a {spatial_dims}-D model, {str(path)!r} holds a "
                             f"{found}-D one (format {cfg['format']!r})")
        try:
            model = cls.from_config(cfg)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid LambdaNet config for {str(path)!r}: {exc}") from exc
        return load_model_weights(model, weights, map_location)
