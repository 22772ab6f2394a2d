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

:class:`SequenceFolderDataset` yields clean/noisy pairs ``(1, D, H, W)``
with relative noise ``z = x + s · std(x) · n``, the standard deviation taken
over the whole sequence (docs/method.md §7). A folder that holds 3-D files —
``.npy`` arrays or multi-page TIFFs of shape ``(D, H, W)`` — is read as
ready-made sequences instead.

Randomness follows :mod:`tvfast.training.data`: evaluation items
(``train=False``) use a generator seeded with ``seed + index``; training items
a generator seeded from ``(seed, epoch, index)`` once :meth:`set_epoch` was
called, the global torch RNG before.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from tvfast.io.images import ImageReadError, read_grayscale
from tvfast.evaluation.noise import NOISE_MODES, absolute_noise
from tvfast.training.data import _seed_from, centre_square_resize, list_images

__all__ = ["make_sequence", "read_sequence", "is_sequence_file", "SequenceFolderDataset"]

_SEQUENCE_SUFFIXES = (".npy", ".tif", ".tiff")


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


def _probe_shape(path: Path) -> tuple[int, ...] | None:
    """The array shape stored in a ``.npy`` or TIFF file (header only); None for other files."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return tuple(tif.series[0].shape)
    except Exception as exc:  # readers raise many types for truncated or corrupt files
        reason = " ".join(str(exc).split())
        raise ImageReadError(f"{path}: cannot read file ({type(exc).__name__}: {reason})") from None
    return None


def _is_sequence_shape(shape: tuple[int, ...] | None) -> bool:
    # (H, W, C) with C ≤ 4 is a colour image (the rule of tvfast.io.images.read_image)
    return shape is not None and len(shape) == 3 and shape[-1] > 4


def is_sequence_file(path: str | os.PathLike) -> bool:
    """True if ``path`` is a ``.npy`` or TIFF file holding a ``(D, H, W)`` array with ``W > 4``
    (a last axis of at most 4 is read as the channels of a 2-D image)."""
    return _is_sequence_shape(_probe_shape(Path(path)))


def read_sequence(path: str | os.PathLike) -> np.ndarray:
    """Read a ``(D, H, W)`` sequence from a ``.npy`` file or a multi-page TIFF.

    The sample rules of :func:`tvfast.io.images.read_image` apply: integer data
    is divided by its dtype's maximum, booleans become 0/1, floats are taken as
    they are, and NaN or inf is an error.

    Returns
    -------
    numpy.ndarray
        ``(D, H, W)`` float32.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ImageReadError
        If it cannot be read or does not hold a ``(D, H, W)`` array (the
        message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in _SEQUENCE_SUFFIXES:
        raise ImageReadError(f"{path}: unsupported sequence file type {suffix!r} (expected .npy, .tif or .tiff)")
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            import tifffile

            arr = tifffile.imread(path)
    except Exception as exc:  # readers raise many types for truncated or corrupt files
        reason = " ".join(str(exc).split())
        raise ImageReadError(f"{path}: cannot read sequence ({type(exc).__name__}: {reason})") from None
    if not _is_sequence_shape(arr.shape):
        raise ImageReadError(f"{path}: expected a sequence (D, H, W) with W > 4, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        seq = arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    elif arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.floating):
        seq = arr.astype(np.float32)
    else:
        raise ImageReadError(f"{path}: unsupported sample type {arr.dtype}")
    if not np.isfinite(seq).all():
        raise ImageReadError(f"{path}: contains NaN or inf")
    return np.ascontiguousarray(seq)


class SequenceFolderDataset(Dataset):
    """Clean/noisy ``(x, y, t)`` sequence pairs from a folder of images or of sequences.

    Parameters
    ----------
    root : str or os.PathLike
        Folder (not searched recursively) of 2-D images (PNG / JPEG / TIFF /
        ``.npy``; each becomes a synthetic sequence by :func:`make_sequence`)
        or of ready-made sequences (``.npy`` arrays or multi-page TIFFs of
        shape ``(D, H, W)``). A folder holding both is an error.
    size : int or None
        Every frame is centre-cropped to a square and resized to
        ``size × size``; ``None`` keeps the size as read.
    frames : int or None
        Frames ``D`` per item. Synthetic sequences have exactly ``frames``
        frames (one motion period). Ready-made sequences must have at least
        ``frames``; a window of ``frames`` consecutive frames is taken (a
        random one in training, the first ones otherwise); ``None`` keeps
        every frame (ready-made sequences only).
    noise : {"relative", "absolute"}
        ``z = x + s·std(x)·n`` with ``std`` over the whole sequence, or
        ``z = x + s·n``.
    noise_level : float or (float, float)
        A fixed level ``s`` or a range ``(s_min, s_max)`` for
        ``s ~ U[s_min, s_max]``.
    train : bool
        Fresh motion (synthetic sequences), window and noise per sample if
        True; all fixed per item if False.
    seed : int
        Item ``i`` uses a generator seeded with ``seed + i`` when
        ``train=False``, and seeded from ``(seed, epoch, i)`` in training once
        :meth:`set_epoch` was called.
    cache : bool
        Keep the decoded, resized clean images / sequences in memory.

    Notes
    -----
    ``dataset[i]`` is a dict with ``"clean"`` and ``"noisy"`` (float32
    tensors ``(1, D, H, W)``), ``"s"`` (0-d float32 tensor) and ``"index"``
    (int). The seed of a synthetic sequence's motion is drawn from the item's
    generator, so the motion of an evaluation item is fixed and that of a
    training item changes every epoch (an augmentation).
    """

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
        if frames is not None and (isinstance(frames, bool) or int(frames) != frames or frames < 1):
            raise ValueError(f"frames must be a positive integer or None, got {frames!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")

        self.root = Path(root)
        files = list_images(self.root)
        is_seq = [_is_sequence_shape(_probe_shape(f)) for f in files]
        if any(is_seq) and not all(is_seq):
            images = [f.name for f, s in zip(files, is_seq) if not s][:3]
            raise ValueError(
                f"folder {str(self.root)!r} mixes 3-D sequences with 2-D images (e.g. {', '.join(images)}); "
                "keep sequences and images in separate folders"
            )
        self.files = files
        self.synthetic = not any(is_seq)
        if self.synthetic and frames is None:
            raise ValueError("frames=None keeps the length of ready-made sequences; "
                             f"folder {str(self.root)!r} holds 2-D images, so give a number of frames")
        self.size = size
        self.frames = None if frames is None else int(frames)
        self.noise = noise
        self.noise_range = (lo, hi)
        self.train = bool(train)
        self.seed = int(seed)
        self.cache = bool(cache)
        self.epoch: int | None = None
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        """Make training motion, windows and noise a deterministic function of ``(seed, epoch, index)``."""
        self.epoch = int(epoch)

    def _source(self, index: int) -> np.ndarray:
        """The resized clean image ``(H, W)`` (synthetic) or sequence ``(D, H, W)`` (ready-made)."""
        if index in self._cache:
            return self._cache[index]
        path = self.files[index]
        if self.synthetic:
            data = read_grayscale(path)
            if self.size is not None:
                data = centre_square_resize(data, self.size)
        else:
            data = read_sequence(path)
            if self.frames is not None and data.shape[0] < self.frames:
                raise ValueError(f"sequence {str(path)!r} has {data.shape[0]} frames, fewer than frames={self.frames}")
            if self.size is not None:
                data = np.stack([centre_square_resize(frame, self.size) for frame in data])
        if self.cache:
            self._cache[index] = data
        return data

    def _generator(self, index: int) -> torch.Generator | None:
        if not self.train:
            return torch.Generator().manual_seed(self.seed + index)
        if self.epoch is not None:
            return torch.Generator().manual_seed(_seed_from(self.seed, self.epoch, index))
        return None  # global RNG

    def clean_sequence(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The clean sequence ``index`` as float32 ``(1, D, H, W)``; ``generator`` draws the motion
        seed (synthetic) or the window start (ready-made, training only)."""
        data = self._source(index)
        if self.synthetic:
            motion_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            seq = make_sequence(data, self.frames, motion_seed)
        else:
            D = data.shape[0]
            n = D if self.frames is None else self.frames
            start = int(torch.randint(0, D - n + 1, (1,), generator=generator)) if self.train else 0
            seq = data[start : start + n]
        return torch.from_numpy(np.ascontiguousarray(seq, dtype=np.float32))[None]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} sequences")
        g = self._generator(index)
        x = self.clean_sequence(index, g)
        lo, hi = self.noise_range
        s = lo + (hi - lo) * float(torch.rand((), generator=g))
        if self.noise == "relative":
            std = x.std() if x.numel() > 1 else x.new_zeros(())
            z = absolute_noise(x, s * float(std), generator=g)
        else:
            z = absolute_noise(x, s, generator=g)
        return {
            "clean": x.contiguous(),
            "noisy": z.contiguous(),
            "s": torch.tensor(s, dtype=torch.float32),
            "index": index,
        }
