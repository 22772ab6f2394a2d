"""The task registry: what differs between the tasks the trainer and the evaluation know (:data:`TASKS`).

Each :class:`TaskSpec` holds a task's description, its model (how a new one
is built, and the kind its checkpoints record), its datasets, its noise
range for training and level for evaluation, its default size and T, what
the model starts from, and the evaluation that scores it. ``tvfast train
--task NAME`` and ``tvfast evaluate --task NAME`` read it and nothing else
about the task; adding a task is adding an entry.

* ``denoise`` — :class:`~tvfast.models.lambda_net.LambdaNet` on noisy X-rays
  (docs/method.md §7): ``model(z)``, MSE against the clean image.
* ``sequences`` — the dynamic 3-D ``LambdaNet`` (maps Λ_t and Λ_xy,
  docs/method.md §9) on breathing-like (x, y, t) sequences generated from
  the images, or on ready-made (D, H, W) sequences (``--volume``).
* ``mri4x`` — :class:`~tvfast.models.reconstruction_net.ReconstructionNet`
  on single-coil Cartesian MRI simulated from the X-rays
  (:func:`tvfast.physics.mri.simulate_mri`: a new 4× row mask, smooth phase
  and noise per sample, s ~ U[0.02, 0.1] by default): ``model(y,
  MaskedFFT(mask))``, MSE of |x̂| against the clean image (the metric's
  quantity: the phase is a nuisance of the simulation).
* ``ct60`` — the same model on sparse-view CT (60 parallel-beam views over
  180°, :func:`tvfast.physics.tomography.simulate_ct`, Gaussian noise
  relative to each sinogram's standard deviation, s ~ U[0.01, 0.04] by
  default): ``model(y, A)`` with one projector per image size, MSE of x̂.

These are simulations built from X-ray images, not scanner data. A
sample's randomness (crop, mask, phase, noise level, noise) comes from the
dataset's seeded stream (:class:`~tvfast.training.data.NoisyFolderDataset`),
so runs and resumed runs see the same samples. For models meant to work
beyond X-rays, :class:`TaskDataset` can vary training samples further
(synthetic dead-leaves images, zoom, zero background, intensity, the mask's
centre fraction; ``tvfast train --synthetic-fraction`` etc.), from the same
stream.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tvfast.models.lambda_net import LambdaNet
from tvfast.models.reconstruction_net import ReconstructionNet, unet_channels
from tvfast.models.unet import UNet
from tvfast.physics import MaskedFFT
from tvfast.training.data import ImageFolderDataset
from tvfast.training.sequences import SequenceFolderDataset, VolumeFolderDataset
from tvfast.training.synthetic import dead_leaves, object_support

__all__ = ["TASKS", "RECONSTRUCTION_TASKS", "TaskSpec", "task_spec", "load_task_model", "TaskDataset", "Task"]

CT_VIEWS = 60


class TaskDataset(ImageFolderDataset):
    """Simulated reconstruction samples from a folder of clean images.

    ``dataset[i]`` is a dict: ``"clean"`` (1, H, W) float32, ``"y"`` (the
    data: complex k-space (1, H, W) for ``mri4x``, a sinogram (1, V, D) for
    ``ct60``), ``"mask"`` (1, H, 1) for ``mri4x``, ``"s"`` and ``"index"``.
    The clean image is drawn as by :class:`ImageFolderDataset` (crop, flips),
    then s ~ U[s_min, s_max], then the simulation's own draws, all from the
    sample's stream.

    Training samples can be varied further, for models that have to work
    beyond the images of the folder (each off by default; each draws from
    the stream only when it is on, so the samples of a run without them are
    unchanged):

    * ``synthetic_fraction`` F: with probability F (u ~ U[0, 1) < F) the
      image is replaced by a dead-leaves image of the same size
      (:func:`~tvfast.training.synthetic.dead_leaves`), which then goes
      through the same resizing, crop and flips;
    * ``resize_range`` (lo, hi): the image is resized (bicubic, antialiased)
      so that its shorter side is S ~ U{lo, …, hi} pixels before the
      ``patch_size`` crop — a zoom by S / (shorter side), so that structures
      come at other scales relative to the mask's band of frequencies and
      the network's receptive field; the crop keeps every sample of a batch
      the same size (``patch_size`` is needed, lo ≥ ``patch_size``);
    * ``background_max`` B: everything outside a random ellipse is set to 0,
      a fraction β ~ U[0, B] of the sample
      (:func:`~tvfast.training.synthetic.object_support`);
    * ``intensity_range`` (lo, hi): the clean image is multiplied by
      a ~ U[lo, hi] (0 < lo ≤ hi ≤ 1);
    * ``centre_fraction`` (lo, hi), ``mri4x``: the fully sampled centre
      fraction of the row mask is f ~ U[lo, hi] instead of 0.08.

    A training sample draws, in this order: [u, then the dead-leaves image
    when u < F], [S], the crop's row and column, the flip and the rotation,
    [β, then the ellipse], [a], the level s, [f], then the simulation's
    draws (the bracketed ones only when their option is on). Evaluation
    items (``train=False``) are never varied.
    """

    def __init__(self, root: str | os.PathLike, task: str, size: int | None = 256, patch_size: int | None = None,
                 noise_level: float | tuple[float, float] | None = None, train: bool = True, seed: int = 0,
                 augment: bool = False, *, synthetic_fraction: float = 0.0,
                 resize_range: tuple[int, int] | None = None, background_max: float = 0.0,
                 intensity_range: tuple[float, float] | None = None,
                 centre_fraction: tuple[float, float] | None = None) -> None:
        spec = task_spec(task)
        if spec.operator is None:
            raise ValueError(f"task: expected a reconstruction task, one of {RECONSTRUCTION_TASKS}, got {task!r}")
        if noise_level is None:
            noise_level = spec.train_noise if train else spec.eval_noise
        super().__init__(root, size=size, patch_size=patch_size, noise_level=noise_level, train=train, seed=seed,
                         augment=augment)
        self.task = task
        self._projectors: dict = {}
        if not 0 <= synthetic_fraction <= 1:
            raise ValueError(f"synthetic_fraction: expected a number in [0, 1], got {synthetic_fraction!r}")
        if resize_range is not None:
            low, high = resize_range
            if patch_size is None or not patch_size <= low <= high:
                raise ValueError(f"resize_range: needs a patch_size and patch_size <= low <= high, got "
                                 f"{resize_range!r} with patch_size {patch_size!r}")
        if not 0 <= background_max < 1:
            raise ValueError(f"background_max: expected a number in [0, 1), got {background_max!r}")
        if intensity_range is not None and not 0 < intensity_range[0] <= intensity_range[1] <= 1:
            raise ValueError(f"intensity_range: need 0 < low <= high <= 1, got {intensity_range!r}")
        if centre_fraction is not None:
            if task != "mri4x":
                raise ValueError(f"centre_fraction: is for the mri4x task's row masks, not {task!r}")
            if not 0 < centre_fraction[0] <= centre_fraction[1] <= 1:
                raise ValueError(f"centre_fraction: need 0 < low <= high <= 1, got {centre_fraction!r}")
        self.synthetic_fraction = float(synthetic_fraction)
        self.resize_range = None if resize_range is None else tuple(int(v) for v in resize_range)
        self.background_max = float(background_max)
        self.intensity_range = None if intensity_range is None else tuple(float(v) for v in intensity_range)
        self.centre_fraction = None if centre_fraction is None else tuple(float(v) for v in centre_fraction)

    def projector(self, height: int, width: int):
        """The CT operator for (H, W) images (made once per size)."""
        from tvfast.physics.tomography import ParallelBeam

        key = (height, width)
        if key not in self._projectors:
            self._projectors[key] = ParallelBeam((height, width), n_views=CT_VIEWS)
        return self._projectors[key]

    def _clean(self, index: int, g: torch.Generator | None) -> torch.Tensor:
        """The clean image of a sample: the file's or a synthetic one, resized, cropped, flipped, varied."""
        x = self._source(index)
        varied = self.train
        if varied and self.synthetic_fraction > 0 and float(torch.rand((), generator=g)) < self.synthetic_fraction:
            x = dead_leaves(*x.shape[-2:], generator=g)
        if varied and self.resize_range is not None:
            side = int(torch.randint(self.resize_range[0], self.resize_range[1] + 1, (1,), generator=g))
            x = _resize(x, side)
        x = self._draw(index, x, g)
        if varied and self.background_max > 0:
            beta = self.background_max * float(torch.rand((), generator=g))
            x = x * object_support(*x.shape[-2:], beta, generator=g)
        if varied and self.intensity_range is not None:
            low, high = self.intensity_range
            x = x * (low + (high - low) * float(torch.rand((), generator=g)))
        return x.contiguous()

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} {self.item_name}")
        g = self._generator(index)
        x = self._clean(index, g)
        lo, hi = self.noise_range
        s = lo + (hi - lo) * float(torch.rand((), generator=g))
        item = {"clean": x, "s": torch.tensor(s, dtype=torch.float32), "index": index}
        if self.task == "mri4x":
            from tvfast.physics.mri import simulate_mri

            mask_options = {}
            if self.train and self.centre_fraction is not None:
                low, high = self.centre_fraction
                mask_options["centre_fraction"] = low + (high - low) * float(torch.rand((), generator=g))
            data = simulate_mri(x[None], s, generator=g, **mask_options)
            item.update(y=data.y[0], mask=data.mask[0])
        else:
            from tvfast.physics.tomography import simulate_ct

            y, _ = simulate_ct(x[None], s, operator=self.projector(*x.shape[-2:]), generator=g)
            item.update(y=y[0])
        return item


def _resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """``x`` (1, H, W) resized (bicubic, antialiased, clipped to [0, 1]) so that its shorter side is ``side``."""
    H, W = x.shape[-2:]
    if min(H, W) == side:
        return x
    size = (max(1, round(H * side / min(H, W))), max(1, round(W * side / min(H, W))))
    out = F.interpolate(x[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]
    return out.clamp(0.0, 1.0)


class Task:
    """A task's model call, loss and metrics on a batch (dicts as the datasets give them)."""

    def __init__(self, name: str, dataset: ImageFolderDataset | None = None):
        self.spec = task_spec(name)
        self.name = name
        self.dataset = dataset

    def operator(self, batch: dict, device):
        if self.spec.operator == "mri":
            return MaskedFFT(batch["mask"].to(device))
        H, W = batch["clean"].shape[-2:]
        return self.dataset.projector(H, W)

    def run(self, model, batch: dict, device, n_iter: int | None = None) -> torch.Tensor:
        """The model's estimate for ``batch`` (real: |x̂| for MRI), with T = ``n_iter`` (reconstruction tasks)
        or the model's own."""
        if self.spec.operator is None:
            if n_iter is not None:
                raise ValueError(f"n_iter: the {self.name} task solves with the model's own T")
            return model(batch["noisy"].to(device, non_blocking=True))
        extra = () if n_iter is None else (n_iter,)
        out = model(batch["y"].to(device, non_blocking=True), self.operator(batch, device), *extra)
        return out.abs() if out.is_complex() else out

    def loss(self, model, batch: dict, device, n_iter: int | None = None) -> torch.Tensor:
        """Mean squared error of :meth:`run` against the clean images."""
        return F.mse_loss(self.run(model, batch, device, n_iter), batch["clean"].to(device, non_blocking=True))

    @torch.no_grad()
    def lambda_map(self, model, batch: dict, device) -> torch.Tensor:
        """The model's Λ for ``batch``: from the noisy image, or from the data (x₀ and, if any, the pilot)."""
        if self.spec.operator is None:
            return model.lambda_map(batch["noisy"].to(device))
        return model.estimate(batch["y"].to(device), self.operator(batch, device))[0]


# ----------------------------------------------------------------------------------------------- the registry
def _solver(args: argparse.Namespace) -> dict:
    # The solver's default call (the fused CPU path needs no compilation).
    return {"solver_backend": args.solver_backend, "solver_compile": None}


def _denoising_model(args: argparse.Namespace) -> nn.Module:
    return LambdaNet(UNet(base_channels=args.base_channels, depth=args.depth), n_iter=args.iters,
                     up_bound=args.up_bound, directional=args.directional, normalize_input=args.normalize_input,
                     solve_pad=args.solve_pad, tv=args.tv, **_solver(args))


def _sequence_model(args: argparse.Namespace) -> nn.Module:
    return LambdaNet(UNet(base_channels=args.base_channels, depth=args.depth, pool_time=args.pool_time,
                          spatial_dims=3), n_iter=args.iters, **_solver(args))


def _reconstruction_model(operator: str) -> Callable[[argparse.Namespace], nn.Module]:
    def build(args: argparse.Namespace) -> nn.Module:
        feeds = unet_channels(operator, args.pilot)
        return ReconstructionNet(operator, UNet(in_channels=feeds, base_channels=args.base_channels,
                                                depth=args.depth),
                                 n_iter=args.iters, directional=args.directional,
                                 normalisation=args.normalisation, step_balance=args.step_balance,
                                 pilot=args.pilot, pilot_iters=args.pilot_iters, **_solver(args))

    return build


def _image_datasets(args: argparse.Namespace):
    options = {"size": args.size or None, "noise": args.noise, "noise_level": (args.noise_min, args.noise_max),
               "seed": args.seed}
    train = ImageFolderDataset(args.data, patch_size=args.patch_size, train=True, augment=args.augment, **options)
    return train, (ImageFolderDataset(args.val, train=False, **options) if args.val else None)


def _sequence_datasets(args: argparse.Namespace):
    kind = VolumeFolderDataset if args.volume else SequenceFolderDataset
    options = {"size": args.size or None, "frames": args.frames, "noise": args.noise,
               "noise_level": (args.noise_min, args.noise_max), "seed": args.seed}
    return kind(args.data, train=True, **options), (kind(args.val, train=False, **options) if args.val else None)


def _reconstruction_datasets(args: argparse.Namespace):
    options = {"size": args.size or None, "seed": args.seed}
    train = TaskDataset(args.data, args.task, patch_size=args.patch_size, train=True, augment=args.augment,
                        noise_level=(args.noise_min, args.noise_max), synthetic_fraction=args.synthetic_fraction,
                        resize_range=args.resize_range, background_max=args.background_max,
                        intensity_range=args.intensity_range, centre_fraction=args.centre_fraction, **options)
    # validation at the task's evaluation level, fixed per image
    return train, (TaskDataset(args.val, args.task, train=False, **options) if args.val else None)


def _demo(function: str) -> Callable[..., list[dict]]:
    def run(*args, **kwargs) -> list[dict]:
        from tvfast.training import demo

        return getattr(demo, function)(*args, **kwargs)

    return run


def _evaluation(module: str) -> Callable[[list[str] | None], int]:
    def main(argv: list[str] | None) -> int:
        import importlib

        return importlib.import_module(f"tvfast.training.{module}").main(argv)

    return main


@dataclass(frozen=True)
class TaskSpec:
    """One task: what it is, its model and data, its noise and sizes, and the evaluation that scores it."""

    name: str
    description: str
    model_kind: str  # the model family a checkpoint records: "lambdanet", "lambdanet3d" or "reconstruction"
    operator: str | None  # the forward model of a reconstruction task ("mri", "ct"), None for denoising
    start: str  # what the model starts from and the baseline is compared with
    train_noise: tuple[float, float]  # s ~ U[low, high] in training
    eval_noise: float  # the evaluation's (default) level
    size: int  # default image size of training and evaluation (--size)
    n_iter: int  # default T
    weights: str | None  # the shipped weights (tvfast.pretrained name), if any
    new_model: Callable[[argparse.Namespace], nn.Module]
    datasets: Callable[[argparse.Namespace], tuple]
    evaluate: Callable[[list[str] | None], int]
    demo: Callable[..., list[dict]] | None = None  # tvfast demo --task NAME on the bundled images, if it has one


TASKS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    TaskSpec("denoise", "Gaussian denoising of grey images (relative noise), LambdaNet", "lambdanet", None,
             "noisy", (0.1, 0.5), 0.5, 256, 256, "xray-denoise", _denoising_model, _image_datasets,
             _evaluation("evaluate"), _demo("run_demo")),
    TaskSpec("sequences", "Denoising of (x, y, t) sequences, 3-D LambdaNet with maps Λ_t and Λ_xy", "lambdanet3d",
             None, "noisy sequence", (0.1, 0.5), 0.5, 64, 256, None, _sequence_model, _sequence_datasets,
             _evaluation("evaluate3d")),
    TaskSpec("mri4x", "Simulated single-coil Cartesian MRI, 4× row undersampling (8 % centre rows), smooth random "
             "phase", "reconstruction", "mri", "zero-filled Aᴴy", (0.02, 0.1), 0.05, 256, 128, "mri4x",
             _reconstruction_model("mri"), _reconstruction_datasets, _evaluation("evaluate_reconstruction"),
             _demo("run_mri_demo")),
    TaskSpec("ct60", "Simulated sparse-view parallel-beam CT, 60 views over 180°", "reconstruction", "ct", "FBP",
             (0.01, 0.04), 0.02, 128, 128, None, _reconstruction_model("ct"), _reconstruction_datasets,
             _evaluation("evaluate_reconstruction")),
)}
RECONSTRUCTION_TASKS = tuple(name for name, spec in TASKS.items() if spec.operator is not None)


def load_task_model(spec: TaskSpec, weights: str | None = None) -> nn.Module:
    """The task's shipped model (``weights`` None), or the model saved in ``weights``, on the CPU, in eval mode."""
    import tvfast

    if weights is None:
        if spec.weights is None:
            raise ValueError(f"--weights: no weights of the {spec.name} task are shipped; give the ones of a run "
                             f"(tvfast train --task {spec.name})")
        return tvfast.pretrained(spec.weights).eval()
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"--weights {weights}: no such file")
    try:
        if spec.model_kind == "reconstruction":
            model = ReconstructionNet.load_pretrained(weights)
        else:
            model = LambdaNet.load_pretrained(weights, spatial_dims=3 if spec.model_kind == "lambdanet3d" else 2)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"--weights {weights}: not a model of the {spec.name} task ({exc})") from None
    if spec.operator is not None and getattr(model, "task", None) != spec.operator:
        raise ValueError(f"--weights {weights}: a model of the {getattr(model, 'task', '?')!r} task; "
                         f"--task {spec.name} needs {spec.operator!r}")
    return model.eval()


def task_spec(name: str) -> TaskSpec:
    """The registry's entry for ``name``; a clear error naming the tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"task: expected one of {tuple(TASKS)}, got {name!r}")
    return TASKS[name]
