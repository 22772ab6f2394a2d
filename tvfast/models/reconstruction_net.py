"""``ReconstructionNet``: a learned Λ map for reconstruction with a forward operator (docs/method.md §11).

For data y of a linear forward operator A (single-coil Cartesian MRI,
``task="mri"``; parallel-beam CT, ``task="ct"``)::

    x₀  = Aᴴy (MRI: the zero-filled image)  or  FBP(y) (CT: filtered back-projection)
    c   = mean |x₀|  or  the 0.98 quantile of |x₀|        per sample (detached; ``normalisation``)
    o   = crop₄( UNet( reflect_pad₄(x₀ / c) ) )           MRI: 2 input channels (Re, Im); CT: 1
    Λ_Θ = c · 0.1 · softplus(o₀)                          (B, 1, H, W), real
    Λ_Θ = c · 0.1 · softplus((o₀, o₁))                    (B, 2, H, W) with ``directional=True``
    x_T = PDHG_T(y, Λ_Θ; A, x₀)                           ``tvfast.pdhg(y, Λ, operator=A, x0=x₀)``

With ``pilot=κ`` the U-Net also sees a scalar-TV image (the pilot)::

    x_p = PDHG_{T_p}(y, κ·c; A, x₀)                       no gradient; T_p = ``pilot_iters``
    o   = crop₄( UNet( reflect_pad₄((x₀, x_p) / c) ) )    MRI: 4 input channels; CT: 2

The pilot. Λ should be small on edges and large on flat regions, and the
zero-filled image shows edges only through its aliasing (4× rows: each edge
folded onto three ghosts along H). One scalar-TV solve removes most of the
aliasing and the noise, so the network reads the anatomy from x_p and the
undersampling artefacts from x₀. κ is in units of c (the solve is
equivariant to the data's scale like the rest of the model) and need not be
each image's best scalar: the pilot only has to show the edges. It runs
without autograd, once per forward pass; T_p = 64 iterations cost a small
fraction of a training step, whose T iterations also run backward.

Input normalisation. The U-Net sees x₀ / c, and Λ is c times the network's
map. Since min_x ½‖Ax − αy‖² + ‖αΛ∘∇x‖₁ is solved by αx̂ (and PDHG's
iterates scale the same way), the reconstruction is equivariant to the
scale of the data: k-space and sinograms come in arbitrary units, and a
model trained on images in [0, 1] reconstructs data of any scale as it
reconstructs the rescaled data. c is detached (a constant of the
sample), so the gradient flows through the network only.

The scale c. ``normalisation="mean"`` (the default): the mean
magnitude, insensitive to a few bright pixels or to the zero-filled
image's aliasing peaks, unlike the maximum. But it is proportional to the
share of the image the object fills: the same object on a zero background
of 90 % of the image has a ten times smaller mean, so the U-Net sees ten
times brighter inputs than in training on images filled edge to edge.
``normalisation="quantile"``: the q-quantile of |x₀| over the pixels
(q = ``quantile``, 0.98 by default; nearest rank, the ⌈q·N⌉-th smallest of
the N magnitudes). Zero background moves it little — for a fraction β of
zeros it is the object's own quantile of level 1 − (1 − q)/(1 − β), near
its bright end — and bright outliers in under 2 % of the pixels move it
at most up to the largest of the other magnitudes. Measured on
4× zero-filled chest X-rays (s = 0.05) padded with zeros to a background
of 50 / 75 / 90 %: the mean falls to 0.52 / 0.27 / 0.11 of its value, the
0.98 quantile to 0.95 / 0.91 / 0.83. Both statistics scale with the data,
so the model stays equivariant to the data's scale either way.

Directional maps. With ``directional=True`` channel 0 weights the vertical
differences ∂_H and channel 1 the horizontal ones ∂_W. Undersampling whole
rows (phase-encode lines) aliases along H only: each column is
undersampled by the same 1-D mask, so the artefacts vary quickly along H
and slowly along W, and a map per direction can remove them with a strong
∂_H weight while a weak ∂_W weight keeps the edges.

For MRI the U-Net sees the complex image's real and imaginary parts: the
smooth phase of the data is random, so the network has to learn maps that
do not depend on it, and it can still see where the aliasing of the
undersampling lies. The TV term clips real and imaginary parts separately
with the same real Λ (docs/method.md §10).

Steps. MRI: ‖A‖ = max |m| for a mask m (1 for a 0/1 mask that samples
anything), so τ = σ = 0.99/√(‖A‖² + 8) without a power iteration per mask. CT: the default of
:func:`tvfast.pdhg` (‖A‖ by power iteration, cached per operator).
"""

from __future__ import annotations

import math
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
from tvfast.solver.arguments import operator_step

__all__ = ["ReconstructionNet", "TASKS", "NORMALISATIONS", "FORMAT", "mri_steps", "unet_channels"]

FORMAT = "tvfast-reconstructionnet"
_FORMAT_VERSION = 1

TASKS = {"mri": 2, "ct": 1}
"""Tasks and the number of U-Net input channels of each (twice that with a pilot)."""

NORMALISATIONS = ("mean", "quantile")
"""The statistics of x₀ that scale the U-Net's input and Λ (module docstring)."""



def unet_channels(task: str, pilot: float | None = None) -> int:
    """The U-Net's input channels for ``task``: x₀'s (:data:`TASKS`), and as many again for a pilot."""
    return TASKS[task] * (1 if pilot is None else 2)


def mri_steps(operator, balance: float = 1.0) -> dict:
    """τ = b·s, σ = s/b with s = 0.99/√(‖A‖² + 8) for a :class:`MaskedFFT`, whose ‖A‖ is its mask's largest
    magnitude, and b = ``balance`` (τσ‖K‖² stays below 1 for every b); {} (the power iteration of
    :func:`tvfast.pdhg`) for other operators.

    b = 1 (τ = σ, the default) converges slowly on MRI: the image is of order 1 while the dual
    variable is bounded by Λ ≈ 10⁻⁴–10⁻², and PDHG moves fastest when τ/σ = b² matches the ratio of their
    scales, so small Λ wants a large b (docs/method.md §11). With b = 30, T = 512 is within 0.1 dB of the
    minimiser's PSNR for every λ in [3·10⁻⁴, 3·10⁻³]; b = 10 only for λ ≥ 10⁻³.
    """
    from tvfast.physics import MaskedFFT

    if not isinstance(operator, MaskedFFT):
        return {}
    step = operator_step(float(operator.mask.abs().max()), 2)
    return {"tau": step * balance, "sigma": step / balance}


def _int_at_least(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


class ReconstructionNet(nn.Module):
    """U-Net on the initial reconstruction → Λ_Θ → T iterations of PDHG with the forward operator.

    Parameters
    ----------
    task : {"mri", "ct"}
        ``"mri"``: complex images, A a :class:`~tvfast.physics.MaskedFFT`,
        start Aᴴy. ``"ct"``: real images, A a
        :class:`~tvfast.physics.tomography.ParallelBeam`, start ``A.fbp(y)``.
    unet : torch.nn.Module, optional
        Maps ``(B, N, H, W)`` to ``(B, C ≥ 1, H, W)`` logits, N = ``TASKS[task]``
        (twice that with a ``pilot``). Default: ``UNet(in_channels=N)`` (the
        seed's width: 32 channels, depth 3).
    n_iter : int
        PDHG iterations T of :meth:`forward`.
    pad : int
        Reflection padding over H and W before the U-Net, cropped after.
    directional : bool
        Two maps (vertical, horizontal differences) instead of one; needs a
        network with ≥ 2 output channels (the default U-Net has 2).
    normalisation : {"mean", "quantile"}
        The scale c of x₀ (module docstring): its mean magnitude or its ``quantile`` quantile
        (the shipped ``mri4x``), which does not depend on how much of the
        image is zero background.
    quantile : float
        q ∈ (0, 1] of ``normalisation="quantile"``.
    step_balance : float
        MRI: b of the steps τ = b·s, σ = s/b (:func:`mri_steps`). 1 (the
        default) solves far from convergence at T = 256; 30 (the shipped ``mri4x``) solves
        near the minimiser of the Λ-weighted problem at T = 256–512, also
        where Λ is small (docs/method.md §11).
    pilot : float, optional
        κ > 0: the U-Net also sees the scalar-TV pilot x_p solved with λ = κ·c
        (module docstring); its network takes twice the task's input channels.
        None (the default): x₀ alone.
    pilot_iters : int
        T_p, the pilot's PDHG iterations (with the model's steps).
    solver_backend, solver_compile
        ``backend`` and ``compile`` of :func:`tvfast.pdhg`.
    """

    def __init__(self, task: str, unet: nn.Module | None = None, n_iter: int = 128, pad: int = 4,
                 directional: bool = False, *, normalisation: str = "mean", quantile: float = 0.98,
                 step_balance: float = 1.0, pilot: float | None = None, pilot_iters: int = 64,
                 solver_backend: str = "auto", solver_compile: bool | None = None) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task: expected one of {tuple(TASKS)}, got {task!r}")
        if unet is not None and not isinstance(unet, nn.Module):
            raise TypeError(f"unet: expected a torch.nn.Module, got {type(unet).__name__}")
        if solver_backend not in ("auto", "numba", "triton", "torch"):
            raise ValueError(f"solver_backend: expected 'auto', 'numba', 'triton' or 'torch', got {solver_backend!r}")
        if solver_compile is not None and not isinstance(solver_compile, bool):
            raise ValueError(f"solver_compile: expected None, True or False, got {solver_compile!r}")
        self.task = task
        self.n_iter = _int_at_least("n_iter", n_iter, 0)
        self.pad = _int_at_least("pad", pad, 0)
        if not isinstance(directional, bool):
            raise ValueError(f"directional: expected True or False, got {directional!r}")
        self.directional = directional
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation: expected one of {NORMALISATIONS}, got {normalisation!r}")
        if isinstance(quantile, bool) or not isinstance(quantile, Real) or not 0 < quantile <= 1:
            raise ValueError(f"quantile: expected a number in (0, 1], got {quantile!r}")
        self.normalisation = normalisation
        self.quantile = float(quantile)
        if (isinstance(step_balance, bool) or not isinstance(step_balance, Real)
                or not math.isfinite(step_balance) or step_balance <= 0):
            raise ValueError(f"step_balance: expected a finite number > 0, got {step_balance!r}")
        if task != "mri" and step_balance != 1:
            raise ValueError(f"step_balance: sets the MRI steps (τ = b·s, σ = s/b); the {task!r} task takes "
                             f"the default steps, got {step_balance!r}")
        self.step_balance = float(step_balance)
        if pilot is not None and (isinstance(pilot, bool) or not isinstance(pilot, Real)
                                  or not math.isfinite(pilot) or pilot <= 0):
            raise ValueError(f"pilot: expected None or a finite number > 0 (the pilot's λ in units of c), "
                             f"got {pilot!r}")
        self.pilot = None if pilot is None else float(pilot)
        self.pilot_iters = _int_at_least("pilot_iters", pilot_iters, 1)
        self.solver_backend = solver_backend
        self.solver_compile = solver_compile
        feeds = unet_channels(task, self.pilot)
        self.unet = unet if unet is not None else UNet(in_channels=feeds)
        channels = getattr(self.unet, "in_channels", feeds)
        if channels != feeds:
            what = "x₀ and the pilot" if self.pilot is not None else "x₀"
            raise ValueError(f"unet: the {task!r} task feeds {feeds} input channel(s) ({what}), the network takes "
                             f"{channels}")
        if directional and getattr(self.unet, "out_channels", 2) < 2:
            raise ValueError("directional: maps per direction need a network with >= 2 output channels")
        self.precision = Precision(bf16=False, channels_last=False)

    def set_precision(self, precision: Precision) -> "ReconstructionNet":
        """Run the U-Net with ``precision`` (bf16 autocast / channels-last); returns ``self``.

        Weights stay float32; the solver always runs in float32 (complex64).
        """
        self.precision = precision
        self.unet.to(memory_format=torch.channels_last if precision.channels_last else torch.contiguous_format)
        return self

    @property
    def config(self) -> dict:
        """JSON-serialisable configuration (requires a :class:`~tvfast.models.unet.UNet` network)."""
        if not isinstance(self.unet, UNet):
            raise TypeError(f"config: only defined for a tvfast.models.unet.UNet network, got "
                            f"{type(self.unet).__name__}")
        scale = {"normalisation": self.normalisation}
        if self.normalisation == "quantile":
            scale["quantile"] = self.quantile
        # the pilot's keys only for a model with one, so that configurations of models without one stay as
        # they were (experiments/average_weights.py compares configurations)
        pilot = {} if self.pilot is None else {"pilot": self.pilot, "pilot_iters": self.pilot_iters}
        return {"task": self.task, "n_iter": self.n_iter, "pad": self.pad, "directional": self.directional,
                **scale, "step_balance": self.step_balance, **pilot, "solver_backend": self.solver_backend,
                "solver_compile": self.solver_compile, "unet": self.unet.config}

    @classmethod
    def from_config(cls, config: dict) -> "ReconstructionNet":
        """An untrained model built from ``config`` (:attr:`config`, or a model file's JSON)."""
        if not isinstance(config, dict) or not isinstance(config.get("unet"), dict):
            raise ValueError("config: expected a dict with a 'unet' dict")
        for key in ("task", "n_iter"):
            if key not in config:
                raise ValueError(f"config: missing {key!r}")
        try:
            unet = UNet(**config["unet"])
        except TypeError as exc:
            raise ValueError(f"config['unet']: {exc}") from exc
        return cls(config["task"], unet, n_iter=config["n_iter"], pad=config.get("pad", 4),
                   directional=config.get("directional", False),
                   normalisation=config.get("normalisation", "mean"),  # files written before the option: mean
                   quantile=config.get("quantile", 0.98),
                   step_balance=config.get("step_balance", 1.0),  # files written before the option: τ = σ
                   pilot=config.get("pilot"), pilot_iters=config.get("pilot_iters", 64),  # before: no pilot
                   solver_backend=config.get("solver_backend", "auto"),
                   solver_compile=config.get("solver_compile"))

    # ------------------------------------------------------------------ the pieces
    def start(self, y: torch.Tensor, operator) -> torch.Tensor:
        """The initial reconstruction x₀: Aᴴy (MRI, zero-filled) or ``operator.fbp(y)`` (CT)."""
        if self.task == "ct":
            fbp = getattr(operator, "fbp", None)
            if fbp is None:
                raise TypeError(f"operator: the 'ct' task needs an operator with .fbp (ParallelBeam), got "
                                f"{type(operator).__name__}")
            return fbp(y)
        return operator.adjoint(y)

    def scale(self, x0: torch.Tensor) -> torch.Tensor:
        """The scale c (B, 1, 1, 1) of x0 (B, 1, H, W) (``normalisation``, module docstring), at least 1e-12."""
        magnitude = x0.detach().abs()
        if self.normalisation == "quantile":
            flat = magnitude.flatten(1)
            rank = max(1, math.ceil(self.quantile * flat.shape[1]))
            c = flat.kthvalue(rank, dim=1).values.reshape(-1, 1, 1, 1)
        else:
            c = magnitude.mean(dim=(1, 2, 3), keepdim=True)
        return c.clamp_min(1e-12)

    def pilot_image(self, y: torch.Tensor, operator, x0: torch.Tensor) -> torch.Tensor | None:
        """The pilot x_p = PDHG_{T_p}(y, κ·c; A, x₀) (B, 1, H, W), without gradient; None without a pilot."""
        if self.pilot is None:
            return None
        with torch.no_grad():
            lam = (self.pilot * self.scale(x0)).flatten().float()  # (B,): one scalar per sample
            return tvfast.pdhg(y, lam, self.pilot_iters, operator=operator, x0=x0,
                               backend=self.solver_backend, compile=self.solver_compile,
                               **mri_steps(operator, self.step_balance))

    def lambda_map(self, x0: torch.Tensor, pilot: torch.Tensor | None = None) -> torch.Tensor:
        """Λ_Θ (B, 1, H, W), or (B, 2, H, W) when directional, real and strictly positive, for x0 (B, 1, H, W)
        and, for a model with a pilot, ``pilot`` (:meth:`pilot_image`, the shape and dtype of x0)."""
        if not isinstance(x0, torch.Tensor) or x0.ndim != 4 or x0.shape[1] != 1:
            shape = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
            raise ValueError(f"x0: expected (B, 1, H, W), got {shape}")
        if (self.task == "mri") != x0.is_complex():
            raise ValueError(f"x0: the {self.task!r} task expects a {'complex' if self.task == 'mri' else 'real'} "
                             f"image, got {x0.dtype}")
        if self.pilot is None and pilot is not None:
            raise ValueError("pilot: this model has no pilot (pilot=None); its U-Net sees x₀ alone")
        if self.pilot is not None:
            if not isinstance(pilot, torch.Tensor):
                raise ValueError("pilot: this model's U-Net also sees the scalar-TV pilot; pass "
                                 "pilot=model.pilot_image(y, operator, x0), or call model.estimate(y, operator)")
            if pilot.shape != x0.shape or pilot.dtype != x0.dtype or pilot.device != x0.device:
                raise ValueError(f"pilot: expected the shape, dtype and device of x0 {tuple(x0.shape)} {x0.dtype} "
                                 f"{x0.device}, got {tuple(pilot.shape)} {pilot.dtype} {pilot.device}")
        x0 = x0.detach()
        scale = self.scale(x0)
        # channels: x₀ (Re, Im for MRI), then the pilot's, so that a model widened for a pilot keeps
        # its old channels in place (the new ones start at zero weight: training/train.py, --init)
        parts = [x0 / scale] + ([] if pilot is None else [pilot.detach() / scale])
        inp = torch.cat([c for t in parts for c in ((t.real, t.imag) if t.is_complex() else (t,))], dim=1)
        H, W = inp.shape[-2:]
        p = self.pad
        if p:
            inp = F.pad(inp, (p, p, p, p), mode=pad_mode(H, W, p, p))
        inp = inp.float()
        if self.precision.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device_type=inp.device.type, dtype=torch.bfloat16, enabled=self.precision.bf16):
            out = self.unet(inp)
        out = out.float()
        if p:
            out = out[..., p : p + H, p : p + W]
        return scale.to(out.dtype) * 0.1 * F.softplus(out[:, : 2 if self.directional else 1])

    def estimate(self, y: torch.Tensor, operator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Λ_Θ, x₀)`` for data ``y`` of ``operator``: the start, the pilot if any, and the U-Net's map."""
        x0 = self.start(y, operator)
        return self.lambda_map(x0, self.pilot_image(y, operator, x0)), x0

    def solve(self, y: torch.Tensor, operator, n_iter: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_T, Λ_Θ, x₀)`` for data ``y`` of ``operator``."""
        lam, x0 = self.estimate(y, operator)
        T = self.n_iter if n_iter is None else n_iter
        steps = mri_steps(operator, self.step_balance)
        x = tvfast.pdhg(y, lam, T, operator=operator, x0=x0.detach(), backend=self.solver_backend,
                        compile=self.solver_compile, **steps)
        return x, lam, x0

    def forward(self, y: torch.Tensor, operator, n_iter: int | None = None) -> torch.Tensor:
        """x_T for data ``y`` of ``operator`` (MRI: complex; CT: real), (B, 1, H, W); T = ``n_iter`` or the
        model's."""
        return self.solve(y, operator, n_iter)[0]

    def reconstruct(self, y: torch.Tensor, mask: torch.Tensor, n_iter: int | None = None) -> torch.Tensor:
        """MRI: the complex image (B, 1, H, W) from k-space ``y`` (B, 1, H, W) and the sampling ``mask``.

        ``y`` is ``torch.fft.fft2(x, norm="ortho")`` in FFT order (no shift),
        zero where not sampled; ``mask`` is 1 where sampled and broadcasts to
        ``y`` ((H, 1) for whole rows, (B, 1, H, W), …). Any H and W.
        """
        from tvfast.physics import MaskedFFT

        if self.task != "mri":
            raise ValueError(f"reconstruct: takes a k-space mask, for the 'mri' task; this model is {self.task!r} "
                             "(call model(y, operator))")
        if not isinstance(y, torch.Tensor) or not y.is_complex() or y.ndim != 4 or y.shape[1] != 1:
            got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y: expected complex k-space (B, 1, H, W), got {got}")
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask: expected a torch.Tensor, got {type(mask).__name__}")
        try:
            shape = torch.broadcast_shapes(mask.shape, y.shape)
        except RuntimeError:
            shape = None
        if shape != y.shape:
            raise ValueError(f"mask: expected a shape that broadcasts to y's {tuple(y.shape)}, got {tuple(mask.shape)}")
        if not bool(mask.any()):
            raise ValueError("mask: samples nothing (all zero)")
        return self.solve(y, MaskedFFT(mask.to(device=y.device)), n_iter)[0]

    # ------------------------------------------------------------------ I/O
    def save_pretrained(self, path: str | os.PathLike) -> tuple[Path, Path]:
        """Write weights (safetensors) and configuration (JSON), each atomically."""
        return save_model_files(self, path, FORMAT, self.config, _FORMAT_VERSION)

    @classmethod
    def load_pretrained(cls, path: str | os.PathLike,
                        map_location: str | torch.device = "cpu") -> "ReconstructionNet":
        """Build a ``ReconstructionNet`` from files written by :meth:`save_pretrained` (no pickle is parsed)."""
        weights, cfg = read_model_config(path, (FORMAT,))
        try:
            model = cls.from_config(cfg)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid ReconstructionNet config for {str(path)!r}: {exc}") from exc
        return load_model_weights(model, weights, map_location)
