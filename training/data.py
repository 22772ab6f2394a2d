"""Image loading and the noisy/clean image-folder dataset (docs/method.md §7).

Images are read by :func:`tvfast.io.images.read_grayscale` (the one reader
of the package: PNG, JPEG, TIFF, ``.npy``; integer data divided by its
dtype's maximum), then centre-cropped to a square and resized (bicubic,
Pillow) to ``size × size``.

Noise follows :mod:`tvfast.evaluation.noise`:

* training (``train=True``): a fresh level ``s ~ U[s_min, s_max]`` and fresh
  noise for every sample drawn, plus an optional random ``patch_size`` crop;
* validation / test (``train=False``): the level and the noise of image ``i``
  are drawn from a generator seeded with ``seed + i``, so they are identical
  on every pass, in every process and on every machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from tvfast.io.images import IMAGE_SUFFIXES, read_grayscale
from tvfast.evaluation.noise import NOISE_MODES, add_noise

__all__ = ["list_images", "centre_square_resize", "ImageFolderDataset"]


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


class ImageFolderDataset(Dataset):
    """Clean/noisy pairs from a folder of images.

    Parameters
    ----------
    root : str or os.PathLike
        Folder with PNG / JPEG / TIFF files (not searched recursively).
    size : int or None
        Images are centre-cropped to a square and resized to ``size × size``
        (skipped when already that size). ``None`` keeps every image as read.
    patch_size : int or None
        Training only: a random ``patch_size × patch_size`` crop of the
        (resized) image. Ignored when ``train=False``.
    noise : {"relative", "absolute"}
        ``z = x + s·std(x)·n`` or ``z = x + s·n`` (see :mod:`~tvfast.evaluation.noise`).
    noise_level : float or (float, float)
        A fixed level ``s``, or a range ``(s_min, s_max)`` from which
        ``s ~ U[s_min, s_max]`` is drawn for every sample (fixed per image
        when ``train=False``). Default ``(0.1, 0.5)``, the seed's training range.
    train : bool
        Fresh random noise (and crop) per sample if True; fixed noise per
        image if False.
    seed : int
        Seed of the fixed evaluation noise (image ``i`` uses ``seed + i``) and
        of the per-epoch training noise once :meth:`set_epoch` was called.
    cache : bool
        Keep decoded, resized clean images in memory (per process).
    augment : bool
        Training only: a random element of the dihedral group — a horizontal
        flip or not, then a rotation by k·90° (k ∈ {0, 1, 2, 3} for square
        images, k ∈ {0, 2} otherwise) — applied to the clean image before the
        noise is drawn.

    Notes
    -----
    ``dataset[i]`` is a dict with ``"clean"`` and ``"noisy"`` (float32 tensors
    ``(1, H, W)``), ``"s"`` (0-d float32 tensor, the noise level used) and
    ``"index"`` (int). In training mode the randomness comes from the global
    torch RNG (which ``DataLoader`` seeds per worker) until
    :meth:`set_epoch` is called; from then on sample ``i`` of epoch ``e`` uses
    a generator seeded from ``(seed, e, i)``, which makes a run — and a resumed
    run — exactly reproducible whatever the number of workers or processes.
    """

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
        if patch_size is not None:
            if patch_size < 1:
                raise ValueError(f"patch_size must be positive, got {patch_size}")
            if size is not None and patch_size > size:
                raise ValueError(f"patch_size {patch_size} exceeds image size {size}")

        self.root = Path(root)
        self.files = list_images(self.root)
        self.size = size
        self.patch_size = patch_size
        self.noise = noise
        self.noise_range = (lo, hi)
        self.train = train
        self.seed = int(seed)
        self.cache = cache
        self.augment = bool(augment)
        self.epoch: int | None = None
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        """Make training noise and crops a deterministic function of ``(seed, epoch, index)``."""
        self.epoch = int(epoch)

    def clean_image(self, index: int) -> torch.Tensor:
        """The clean image ``index`` as a float32 tensor ``(1, H, W)`` in [0, 1]."""
        if index in self._cache:
            return self._cache[index]
        img = read_grayscale(self.files[index])
        if self.size is not None:
            img = centre_square_resize(img, self.size)
        x = torch.from_numpy(img)[None]
        if self.cache:
            self._cache[index] = x
        return x

    def _generator(self, index: int) -> torch.Generator | None:
        if not self.train:
            return torch.Generator().manual_seed(self.seed + index)
        if self.epoch is not None:
            return torch.Generator().manual_seed(_seed_from(self.seed, self.epoch, index))
        return None  # global RNG

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        x = self.clean_image(index)
        g = self._generator(index)

        if self.train and self.patch_size is not None:
            H, W = x.shape[-2:]
            p = self.patch_size
            if p > H or p > W:
                raise ValueError(
                    f"patch_size {p} exceeds image {str(self.files[index])!r} of size {H}×{W}"
                )
            i = int(torch.randint(0, H - p + 1, (1,), generator=g))
            j = int(torch.randint(0, W - p + 1, (1,), generator=g))
            x = x[:, i : i + p, j : j + p]
        if self.train and self.augment:
            square = x.shape[-1] == x.shape[-2]
            if int(torch.randint(0, 2, (1,), generator=g)):
                x = x.flip(-1)
            k = int(torch.randint(0, 4 if square else 2, (1,), generator=g))
            x = torch.rot90(x, k if square else 2 * k, dims=(-2, -1))

        lo, hi = self.noise_range
        s = lo + (hi - lo) * float(torch.rand((), generator=g))
        z = add_noise(x, s, self.noise, generator=g)
        return {
            "clean": x.contiguous(),
            "noisy": z.contiguous(),
            "s": torch.tensor(s, dtype=torch.float32),
            "index": index,
        }
