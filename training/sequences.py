"""Synthetic and ready-made (x, y, t) sequences for the dynamic Λ-map model (docs/method.md §9).

Synthetic sequences are made from the project's 2-D chest X-rays by a smooth,
breathing-like periodic motion (:func:`make_sequence`): frame ``t`` of ``D``
has the phase ``φ = 2π t / D`` and samples the image at

    y' = (y − c_y · sin φ) / (1 + a · sin φ)          vertical scaling around the centre, a shift
    x' =  x − c_x · sin φ
    (x', y') += sin φ · e(x, y)                       a smooth elastic displacement

in normalised coordinates ([-1, 1] across the image, ``grid_sample``
convention), bilinearly with border padding; ``e`` is a Gaussian-smoothed
random field. Frame 0 is the image itself and the motion has period ``D``,
which matches the periodic differences of the 3-D solver along time.

Two datasets yield clean/noisy pairs ``(1, D, H, W)`` with the seeding, cache
and noise of :class:`tvfast.training.data.NoisyFolderDataset` (relative noise
``z = x + s · std(x) · n``, the standard deviation taken over the whole
sequence, docs/method.md §7). Which one reads a folder is the caller's choice
(``tvfast train --sequences`` with or without ``--volume``), never guessed
from the files' shapes:

* :class:`SequenceFolderDataset`: a folder of 2-D images, each made into a
  synthetic sequence;
* :class:`VolumeFolderDataset`: a folder of ready-made ``(D, H, W)``
  sequences (``.npy`` or multi-page TIFF), read by
  :func:`tvfast.io.volumes.read_volume`.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from tvfast.io.images import read_grayscale
from tvfast.io.volumes import read_volume, volume_shape
from tvfast.training.data import NoisyFolderDataset, centre_square_resize

__all__ = ["make_sequence", "SequenceFolderDataset", "VolumeFolderDataset"]


def _gaussian_smooth(field: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a (..., H, W) array over its last two axes (reflecting edges)."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(field, sigma=(0,) * (field.ndim - 2) + (sigma, sigma), mode="reflect")


def make_sequence(
    image: np.ndarray,
    frames: int = 16,
    seed: int = 0,
    *,
    scale: tuple[float, float] = (0.03, 0.08),
    shift: float = 0.03,
    elastic: tuple[float, float] = (0.01, 0.03),
    smoothness: float = 0.15,
) -> np.ndarray:
    """A breathing-like periodic sequence made from one image.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` grayscale image (float; finite).
    frames : int
        Number of frames ``D ≥ 1``; one period of the motion spans them (with
        ``D ≤ 2`` every ``sin φ`` is 0 and the sequence is static).
    seed : int
        Non-negative seed of ``numpy.random.default_rng``: the amplitudes and
        the elastic field, so the same seed gives the same sequence on every
        machine.
    scale : (float, float)
        Range of the vertical scaling amplitude ``a ~ U[lo, hi]``.
    shift : float
        Shift amplitudes ``c_x, c_y ~ U[−shift, shift]`` (normalised units;
        1.0 is half the image).
    elastic : (float, float)
        Range of the elastic amplitude: the largest displacement of ``e``
        (normalised units).
    smoothness : float
        Standard deviation of the Gaussian that smooths the elastic field, as
        a fraction of ``min(H, W)``.

    Returns
    -------
    numpy.ndarray
        ``(frames, H, W)`` float32; frame 0 equals ``image`` (up to rounding).

    Raises
    ------
    ValueError
        For an image that is not 2-D or not finite, ``frames < 1`` or a
        negative seed.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"make_sequence: expected a 2-D image (H, W), got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or not np.isfinite(image).all():
        raise ValueError("make_sequence: the image must be numeric and finite")
    if isinstance(frames, bool) or int(frames) != frames or frames < 1:
        raise ValueError(f"make_sequence: frames must be a positive integer, got {frames!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"make_sequence: seed must be a non-negative integer, got {seed!r}")
    frames = int(frames)
    H, W = image.shape

    rng = np.random.default_rng(int(seed))
    a = rng.uniform(*scale)
    c_x, c_y = rng.uniform(-shift, shift, size=2)
    amplitude = rng.uniform(*elastic)
    field = rng.standard_normal((2, H, W))
    field = _gaussian_smooth(field, smoothness * min(H, W))
    peak = np.abs(field).max()
    field = field * (amplitude / peak) if peak > 0 else field  # (2, H, W): x and y displacement

    sin = np.sin(2.0 * np.pi * np.arange(frames) / frames)
    sin[np.abs(sin) < 1e-12] = 0.0  # sin(π) is 1.2e-16, not 0: keep those frames exactly still
    theta = np.zeros((frames, 2, 3))
    theta[:, 0, 0] = 1.0
    theta[:, 0, 2] = -c_x * sin
    theta[:, 1, 1] = 1.0 / (1.0 + a * sin)
    theta[:, 1, 2] = -c_y * sin / (1.0 + a * sin)

    grid = F.affine_grid(torch.from_numpy(theta), [frames, 1, H, W], align_corners=False)
    grid = grid + torch.from_numpy(sin)[:, None, None, None] * torch.from_numpy(field).permute(1, 2, 0)[None]
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64))[None, None].expand(frames, 1, H, W)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, 0].numpy().astype(np.float32)


def _check_frames(frames: int | None, allow_none: bool) -> int | None:
    if frames is None and allow_none:
        return None
    if frames is None or isinstance(frames, bool) or int(frames) != frames or frames < 1:
        raise ValueError(f"frames must be a positive integer{' or None' if allow_none else ''}, got {frames!r}")
    return int(frames)


class SequenceFolderDataset(NoisyFolderDataset):
    """Clean/noisy synthetic ``(x, y, t)`` sequences made from a folder of 2-D images.

    Parameters
    ----------
    root : str or os.PathLike
        Folder (not searched recursively) of 2-D images (PNG / JPEG / TIFF /
        ``.npy``, read by :func:`tvfast.io.images.read_grayscale`); each
        becomes a sequence by :func:`make_sequence`.
    size : int or None
        The image is centre-cropped to a square and resized to
        ``size × size`` before the motion; ``None`` keeps it as read.
    frames : int
        Frames ``D`` per item: one period of the motion.
    noise, noise_level, train, seed, cache
        As :class:`~tvfast.training.data.NoisyFolderDataset`.

    Notes
    -----
    The seed of an item's motion is the first draw of its stream, so the
    motion of an evaluation item is fixed and that of a training item changes
    every epoch (an augmentation); then come the level ``s`` and the noise.
    """

    item_name = "sequences"

    def __init__(
        self,
        root: str | os.PathLike,
        size: int | None = 64,
        frames: int = 16,
        noise: str = "relative",
        noise_level: float | tuple[float, float] = (0.1, 0.5),
        train: bool = True,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        if frames is None:
            raise ValueError("frames=None keeps the length of ready-made sequences (VolumeFolderDataset); "
                             "a synthetic sequence needs a number of frames")
        self.frames = _check_frames(frames, allow_none=False)
        super().__init__(root, size=size, noise=noise, noise_level=noise_level, train=train, seed=seed,
                         cache=cache)

    def _load(self, index: int) -> np.ndarray:
        image = read_grayscale(self.files[index])
        return image if self.size is None else centre_square_resize(image, self.size)

    def _draw(self, index: int, image: np.ndarray, generator: torch.Generator | None) -> torch.Tensor:
        motion_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        seq = make_sequence(image, self.frames, motion_seed)
        return torch.from_numpy(np.ascontiguousarray(seq, dtype=np.float32))[None]


class VolumeFolderDataset(NoisyFolderDataset):
    """Clean/noisy pairs from a folder of ready-made ``(D, H, W)`` sequences.

    Parameters
    ----------
    root : str or os.PathLike
        Folder (not searched recursively) whose image files (:func:`~tvfast.training.data.list_images`)
        must all be ``(D, H, W)`` volumes — ``.npy`` arrays or multi-page grey
        TIFFs — read by :func:`tvfast.io.volumes.read_volume`. Every file's
        header is checked when the dataset is built: anything else (a PNG, a
        2-D array, a colour TIFF) is an error naming the file.
    size : int or None
        Every frame is centre-cropped to a square and resized to
        ``size × size``; ``None`` keeps the size as read.
    frames : int or None
        Frames per item: a window of ``frames`` consecutive frames (a random
        start in training, the first frames otherwise); every file must have at
        least that many. ``None`` keeps every frame.
    noise, noise_level, train, seed, cache
        As :class:`~tvfast.training.data.NoisyFolderDataset`.

    Notes
    -----
    A training item draws the window start, then the level ``s``, then the
    noise; an evaluation item only the level and the noise.
    """

    item_name = "sequences"

    def __init__(
        self,
        root: str | os.PathLike,
        size: int | None = 64,
        frames: int | None = 16,
        noise: str = "relative",
        noise_level: float | tuple[float, float] = (0.1, 0.5),
        train: bool = True,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        self.frames = _check_frames(frames, allow_none=True)
        super().__init__(root, size=size, noise=noise, noise_level=noise_level, train=train, seed=seed,
                         cache=cache)
        depths = [volume_shape(path)[0] for path in self.files]  # every file a (D, H, W) volume, before anything
        for path, depth in zip(self.files, depths):
            if self.frames is not None and depth < self.frames:
                raise ValueError(f"sequence {str(path)!r} has {depth} frames, fewer than frames={self.frames}")

    def _load(self, index: int) -> np.ndarray:
        seq = read_volume(self.files[index]).pixels
        if self.size is not None:
            seq = np.stack([centre_square_resize(frame, self.size) for frame in seq])
        return seq

    def _draw(self, index: int, seq: np.ndarray, generator: torch.Generator | None) -> torch.Tensor:
        D = seq.shape[0]
        n = D if self.frames is None else self.frames
        start = int(torch.randint(0, D - n + 1, (1,), generator=generator)) if self.train else 0
        return torch.from_numpy(np.ascontiguousarray(seq[start : start + n], dtype=np.float32))[None]
