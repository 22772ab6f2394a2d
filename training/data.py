"""The clean/noisy datasets of training and evaluation (docs/method.md §7).

:class:`NoisyFolderDataset` holds what every dataset of the package shares:
the folder listing, the per-process cache of decoded files, the seeded random
stream of each sample, the noise level and the noise. Its subclasses only say
how a file is decoded and how a clean item is drawn from it:

* :class:`ImageFolderDataset` (here): images ``(1, H, W)``, with optional
  random crops and flips / 90° rotations in training;
* :class:`~tvfast.training.sequences.SequenceFolderDataset`: ``(x, y, t)``
  sequences ``(1, D, H, W)`` made from images by a seeded breathing-like motion;
* :class:`~tvfast.training.sequences.VolumeFolderDataset`: ready-made
  ``(D, H, W)`` sequences read by :func:`tvfast.io.volumes.read_volume`.

Images are read by :func:`tvfast.io.images.read_grayscale` (PNG, JPEG, TIFF,
``.npy``; integer data divided by its dtype's maximum), then centre-cropped to
a square and resized (bicubic, Pillow) to ``size × size``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from tvfast.evaluation.noise import NOISE_MODES, absolute_noise, relative_noise
from tvfast.io.images import IMAGE_SUFFIXES, read_grayscale

__all__ = ["list_images", "centre_square_resize", "NoisyFolderDataset", "ImageFolderDataset"]


def centre_square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop ``img`` to a square and resize it (bicubic) to ``size × size``."""
    H, W = img.shape
    n = min(H, W)
    top, left = (H - n) // 2, (W - n) // 2
    img = img[top : top + n, left : left + n]
    if n != size:
        pil = Image.fromarray(np.ascontiguousarray(img, dtype=np.float32))  # mode "F"
        pil = pil.resize((size, size), resample=Image.Resampling.BICUBIC)
        img = np.clip(np.asarray(pil, dtype=np.float32), 0.0, 1.0)
    return np.ascontiguousarray(img)


def list_images(root: str | os.PathLike) -> list[Path]:
    """Sorted image files (by extension, case-insensitive) directly in ``root``.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist.
    NotADirectoryError
        If ``root`` is not a directory.
    ValueError
        If ``root`` holds no image file.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {str(root)!r}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {str(root)!r}")
    files = sorted(
        p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) found in folder {str(root)!r}"
        )
    return files


def _seed_from(*entropy: int) -> int:
    """A 63-bit seed mixing several non-negative integers (numpy SeedSequence)."""
    state = np.random.SeedSequence([int(e) for e in entropy]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


class NoisyFolderDataset(Dataset, ABC):
    """Clean/noisy pairs made from the files of one folder: the part every dataset shares.

    Sample ``i`` is made in three steps, all drawing from one random stream ``g``:

    1. the clean item ``x = draw(i, source_i, g)`` (subclass: crop, flips,
       motion, window …) from the decoded file ``i`` (cached per process);
    2. the noise level ``s ~ U[s_min, s_max]``;
    3. the noise, relative ``z = x + s·std(x)·n`` with ``std`` over the whole
       item (every pixel of an image, every voxel of a sequence), or absolute
       ``z = x + s·n``, with ``n ~ N(0, I)``; nothing is clipped.

    The stream ``g`` of sample ``i``:

    * evaluation (``train=False``): a generator seeded with ``seed + i``, so
      item ``i`` is the same on every pass, in every process, on every machine;
    * training, once :meth:`set_epoch` was called with ``e``: a generator
      seeded from ``SeedSequence((seed, e, i))``, so a run — and a resumed
      run — sees exactly the same samples whatever the number of workers or
      processes;
    * training before :meth:`set_epoch`: the global torch RNG (which
      ``DataLoader`` seeds per worker).

    Parameters
    ----------
    root : str or os.PathLike
        Folder of the files (not searched recursively); :func:`list_images`.
    size : int or None
        Frames are centre-cropped to a square and resized to ``size × size``;
        ``None`` keeps them as read.
    noise : {"relative", "absolute"}
        The noise model (:mod:`tvfast.evaluation.noise`).
    noise_level : float or (float, float)
        A fixed level ``s`` or a range ``(s_min, s_max)``.
    train : bool
        Fresh randomness per sample (training) or fixed per item (evaluation).
    seed : int
        Non-negative seed of the streams above.
    cache : bool
        Keep decoded, resized files in memory (per process).

    Subclasses set :attr:`item_name` and define :meth:`_load` and :meth:`_draw`.
    ``dataset[i]`` is a dict with ``"clean"`` and ``"noisy"`` (float32 tensors
    ``(1, ...)``), ``"s"`` (0-d float32 tensor, the level used) and ``"index"``.
    """

    item_name = "items"

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        size: int | None,
        noise: str = "relative",
        noise_level: float | tuple[float, float] = (0.1, 0.5),
        train: bool = True,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        if noise not in NOISE_MODES:
            raise ValueError(f"unknown noise mode {noise!r}; expected one of {NOISE_MODES}")
        if isinstance(noise_level, (tuple, list)):
            lo, hi = (float(v) for v in noise_level)
        else:
            lo = hi = float(noise_level)
        if not 0.0 <= lo <= hi:
            raise ValueError(f"need 0 <= s_min <= s_max, got noise_level={noise_level!r}")
        if size is not None and size < 1:
            raise ValueError(f"size must be positive, got {size}")
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.root = Path(root)
        self.files = list_images(self.root)
        self.size = size
        self.noise = noise
        self.noise_range = (lo, hi)
        self.train = bool(train)
        self.seed = int(seed)
        self.cache = bool(cache)
        self.epoch: int | None = None
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        """Make training samples a deterministic function of ``(seed, epoch, index)``."""
        self.epoch = int(epoch)

    @abstractmethod
    def _load(self, index: int) -> Any:
        """File ``index`` decoded and resized (what the cache holds)."""

    @abstractmethod
    def _draw(self, index: int, source: Any, generator: torch.Generator | None) -> torch.Tensor:
        """The clean item ``(1, ...)`` float32 from the decoded file, drawing from ``generator``."""

    def _source(self, index: int) -> Any:
        if index in self._cache:
            return self._cache[index]
        data = self._load(index)
        if self.cache:
            self._cache[index] = data
        return data

    def _generator(self, index: int) -> torch.Generator | None:
        if not self.train:
            return torch.Generator().manual_seed(self.seed + index)
        if self.epoch is not None:
            return torch.Generator().manual_seed(_seed_from(self.seed, self.epoch, index))
        return None  # global RNG

    def _add_noise(self, x: torch.Tensor, s: float, generator: torch.Generator | None) -> torch.Tensor:
        if self.noise == "absolute":
            return absolute_noise(x, s, generator=generator)
        if x.numel() < 2:  # no spread to scale the noise by
            return x.clone()
        whole = x.reshape(x.shape[0], -1, x.shape[-1])  # std over the last two axes = over the whole item
        return relative_noise(whole, s, generator=generator).reshape(x.shape)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} {self.item_name}")
        g = self._generator(index)
        x = self._draw(index, self._source(index), g)
        lo, hi = self.noise_range
        s = lo + (hi - lo) * float(torch.rand((), generator=g))
        z = self._add_noise(x, s, g)
        return {
            "clean": x.contiguous(),
            "noisy": z.contiguous(),
            "s": torch.tensor(s, dtype=torch.float32),
            "index": index,
        }


class ImageFolderDataset(NoisyFolderDataset):
    """Clean/noisy image pairs ``(1, H, W)`` from a folder of images.

    Parameters
    ----------
    root : str or os.PathLike
        Folder with PNG / JPEG / TIFF / ``.npy`` images (not searched recursively).
    size : int or None
        Images are centre-cropped to a square and resized to ``size × size``
        (skipped when already that size). ``None`` keeps every image as read.
    patch_size : int or None
        Training only: a random ``patch_size × patch_size`` crop of the
        (resized) image. Ignored when ``train=False``.
    noise, noise_level, train, seed, cache
        As :class:`NoisyFolderDataset`; ``noise_level`` defaults to
        ``(0.1, 0.5)``, the seed's training range.
    augment : bool
        Training only: a random element of the dihedral group — a horizontal
        flip or not, then a rotation by k·90° (k ∈ {0, 1, 2, 3} for square
        images, k ∈ {0, 2} otherwise) — applied to the clean image before the
        noise is drawn.

    Notes
    -----
    A training sample draws, in this order: the crop's row and column, the
    flip and the rotation, the level ``s``, the noise.
    """

    item_name = "images"

    def __init__(
        self,
        root: str | os.PathLike,
        size: int | None = 256,
        patch_size: int | None = None,
        noise: str = "relative",
        noise_level: float | tuple[float, float] = (0.1, 0.5),
        train: bool = True,
        seed: int = 0,
        cache: bool = True,
        augment: bool = False,
    ) -> None:
        if patch_size is not None:
            if patch_size < 1:
                raise ValueError(f"patch_size must be positive, got {patch_size}")
            if size is not None and patch_size > size:
                raise ValueError(f"patch_size {patch_size} exceeds image size {size}")
        super().__init__(root, size=size, noise=noise, noise_level=noise_level, train=train, seed=seed,
                         cache=cache)
        self.patch_size = patch_size
        self.augment = bool(augment)

    def clean_image(self, index: int) -> torch.Tensor:
        """The clean image ``index`` as a float32 tensor ``(1, H, W)`` in [0, 1] (before crops and flips)."""
        return self._source(index)

    def _load(self, index: int) -> torch.Tensor:
        img = read_grayscale(self.files[index])
        if self.size is not None:
            img = centre_square_resize(img, self.size)
        return torch.from_numpy(img)[None]

    def _draw(self, index: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.train and self.patch_size is not None:
            H, W = x.shape[-2:]
            p = self.patch_size
            if p > H or p > W:
                raise ValueError(
                    f"patch_size {p} exceeds image {str(self.files[index])!r} of size {H}×{W}"
                )
            i = int(torch.randint(0, H - p + 1, (1,), generator=generator))
            j = int(torch.randint(0, W - p + 1, (1,), generator=generator))
            x = x[:, i : i + p, j : j + p]
        if self.train and self.augment:
            square = x.shape[-1] == x.shape[-2]
            if int(torch.randint(0, 2, (1,), generator=generator)):
                x = x.flip(-1)
            k = int(torch.randint(0, 4 if square else 2, (1,), generator=generator))
            x = torch.rot90(x, k if square else 2 * k, dims=(-2, -1))
        return x
