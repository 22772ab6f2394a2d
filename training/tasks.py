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
so runs and resumed runs see the same samples.
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
from tvfast.models.reconstruction_net import ReconstructionNet
from tvfast.models.unet import UNet
from tvfast.physics import MaskedFFT
from tvfast.training.data import ImageFolderDataset
from tvfast.training.sequences import SequenceFolderDataset, VolumeFolderDataset

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
    """

    def __init__(self, root: str | os.PathLike, task: str, size: int | None = 256, patch_size: int | None = None,
                 noise_level: float | tuple[float, float] | None = None, train: bool = True, seed: int = 0,
                 augment: bool = False) -> None:
        spec = task_spec(task)
        if spec.operator is None:
            raise ValueError(f"task: expected a reconstruction task, one of {RECONSTRUCTION_TASKS}, got {task!r}")
        if noise_level is None:
            noise_level = spec.train_noise if train else spec.eval_noise
        super().__init__(root, size=size, patch_size=patch_size, noise_level=noise_level, train=train, seed=seed,
                         augment=augment)
        self.task = task
        self._projectors: dict = {}

    def projector(self, height: int, width: int):
        """The CT operator for (H, W) images (made once per size)."""
        from tvfast.physics.tomography import ParallelBeam

        key = (height, width)
        if key not in self._projectors:
            self._projectors[key] = ParallelBeam((height, width), n_views=CT_VIEWS)
        return self._projectors[key]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} {self.item_name}")
        g = self._generator(index)
        x = self._draw(index, self._source(index), g).contiguous()
        lo, hi = self.noise_range
        s = lo + (hi - lo) * float(torch.rand((), generator=g))
        item = {"clean": x, "s": torch.tensor(s, dtype=torch.float32), "index": index}
        if self.task == "mri4x":
            from tvfast.physics.mri import simulate_mri

            data = simulate_mri(x[None], s, generator=g)
            item.update(y=data.y[0], mask=data.mask[0])
        else:
            from tvfast.physics.tomography import simulate_ct

            y, _ = simulate_ct(x[None], s, operator=self.projector(*x.shape[-2:]), generator=g)
            item.update(y=y[0])
        return item


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

    def run(self, model, batch: dict, device) -> torch.Tensor:
        """The model's estimate for ``batch`` (real: |x̂| for MRI)."""
        if self.spec.operator is None:
            return model(batch["noisy"].to(device, non_blocking=True))
        out = model(batch["y"].to(device, non_blocking=True), self.operator(batch, device))
        return out.abs() if out.is_complex() else out

    def loss(self, model, batch: dict, device) -> torch.Tensor:
        """Mean squared error of :meth:`run` against the clean images."""
        return F.mse_loss(self.run(model, batch, device), batch["clean"].to(device, non_blocking=True))

    @torch.no_grad()
    def start(self, model, batch: dict, device) -> torch.Tensor:
        """The model's input: the noisy image, or the initial reconstruction x₀."""
        if self.spec.operator is None:
            return batch["noisy"].to(device)
        return model.start(batch["y"].to(device), self.operator(batch, device))


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


def _reconstruction_model(operator: str, in_channels: int) -> Callable[[argparse.Namespace], nn.Module]:
    def build(args: argparse.Namespace) -> nn.Module:
        return ReconstructionNet(operator, UNet(in_channels=in_channels, base_channels=args.base_channels,
                                                depth=args.depth),
                                 n_iter=args.iters, directional=args.directional, **_solver(args))

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
                        noise_level=(args.noise_min, args.noise_max), **options)
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
    size: int  # default image size (evaluation; training takes --size)
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
             _reconstruction_model("mri", 2), _reconstruction_datasets, _evaluation("evaluate_reconstruction"),
             _demo("run_mri_demo")),
    TaskSpec("ct60", "Simulated sparse-view parallel-beam CT, 60 views over 180°", "reconstruction", "ct", "FBP",
             (0.01, 0.04), 0.02, 128, 128, None, _reconstruction_model("ct", 1), _reconstruction_datasets,
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
