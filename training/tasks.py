"""What the trainer needs of each task: the samples, the model's call, the loss and the metric.

* ``denoise`` — :class:`~tvfast.models.lambda_net.LambdaNet` on noisy X-rays
  (docs/method.md §7): ``model(z)``, MSE against the clean image.
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

import os

import torch
import torch.nn.functional as F

from tvfast.physics import MaskedFFT
from tvfast.training.data import ImageFolderDataset

__all__ = ["TASKS", "TaskDataset", "Task"]

# Training noise ranges (s) and the evaluation level of each reconstruction task.
TASK_NOISE = {"mri4x": ((0.02, 0.1), 0.05), "ct60": ((0.01, 0.04), 0.02)}
TASKS = ("denoise", "mri4x", "ct60")
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
        if task not in TASK_NOISE:
            raise ValueError(f"task: expected one of {tuple(TASK_NOISE)}, got {task!r}")
        if noise_level is None:
            noise_level = TASK_NOISE[task][0] if train else TASK_NOISE[task][1]
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
        if name not in TASKS:
            raise ValueError(f"task: expected one of {TASKS}, got {name!r}")
        self.name = name
        self.dataset = dataset

    def operator(self, batch: dict, device):
        if self.name == "mri4x":
            return MaskedFFT(batch["mask"].to(device))
        H, W = batch["clean"].shape[-2:]
        return self.dataset.projector(H, W)

    def run(self, model, batch: dict, device) -> torch.Tensor:
        """The model's estimate for ``batch`` (real: |x̂| for MRI)."""
        if self.name == "denoise":
            return model(batch["noisy"].to(device, non_blocking=True))
        out = model(batch["y"].to(device, non_blocking=True), self.operator(batch, device))
        return out.abs() if out.is_complex() else out

    def loss(self, model, batch: dict, device) -> torch.Tensor:
        """Mean squared error of :meth:`run` against the clean images."""
        return F.mse_loss(self.run(model, batch, device), batch["clean"].to(device, non_blocking=True))

    @torch.no_grad()
    def start(self, model, batch: dict, device) -> torch.Tensor:
        """The model's input: the noisy image, or the initial reconstruction x₀."""
        if self.name == "denoise":
            return batch["noisy"].to(device)
        return model.start(batch["y"].to(device), self.operator(batch, device))
