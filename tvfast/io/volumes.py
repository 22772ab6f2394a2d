"""Volumes and sequences: (D, H, W) arrays in ``.npy`` files or multi-page TIFFs.

A volume file holds a (D, H, W) array: depth slices, or the frames of an
(x, y, t) sequence with D as time (docs/method.md §9). This is the one reader
of such files: ``tvfast denoise --volume``, ``tvfast train --sequences
--volume`` and the training's volume dataset all read through
:func:`read_volume`.

One rule decides what a file is: **the caller says so** (a command-line flag,
or the type of dataset it builds), never the array's shape. A (H, W, 3) array
read as a volume is three-pixel-wide slices, and the same file read as an
image (:mod:`tvfast.io.images`) is RGB. The reader only checks that the
array is (D, H, W) with D, H, W ≥ 1 and grey samples (a TIFF whose pages hold
colour samples is refused), and says so in one error naming the file
otherwise.

Sample rules follow :mod:`tvfast.io.images`: integer samples are divided by
their dtype's maximum, booleans become 0/1, float samples are taken as they
are, NaN/inf is an error. :func:`write_volume` keeps the input's format and
sample type (``.npy`` float, TIFF pages of the input's unsigned 8/16-bit
type) and writes atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tvfast.io.atomic import atomic_write
from tvfast.io.images import ImageReadError, LoadedImage

__all__ = ["VOLUME_SUFFIXES", "volume_shape", "read_volume", "write_volume"]

VOLUME_SUFFIXES = (".npy", ".tif", ".tiff")


def _check_shape(path: Path, shape: tuple[int, ...], colour: bool = False) -> tuple[int, int, int]:
    """``shape`` as (D, H, W), or the one error of this module for anything else."""
    if colour or len(shape) != 3 or min(shape) < 1:
        raise ImageReadError(f"{path}: expected a (D, H, W) volume of grey slices or frames, got shape "
                             f"{tuple(shape)}{' (colour samples)' if colour else ''}")
    return tuple(int(n) for n in shape)


def volume_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """(D, H, W) of a volume file from its header, without reading the samples.

    Lets a caller check every input (its suffix, dimensionality and, for
    TIFFs, that the pages are grey) before it computes or writes anything.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ImageReadError
        If the suffix is not one of :data:`VOLUME_SUFFIXES`, the header cannot
        be read, or the array is not (D, H, W) of grey samples.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in VOLUME_SUFFIXES:
        raise ImageReadError(f"{path}: a volume must be {', '.join(VOLUME_SUFFIXES)}, got {suffix!r}")
    try:
        if suffix == ".npy":
            shape = tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape)
            colour = False
        else:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                shape, colour = tuple(series.shape), "S" in series.axes
    except Exception as exc:  # decoders raise many types for truncated or corrupt files
        reason = " ".join(str(exc).split())
        raise ImageReadError(f"{path}: cannot read volume ({type(exc).__name__}: {reason})") from None
    return _check_shape(path, shape, colour)


def read_volume(path: str | os.PathLike) -> LoadedImage:
    """Read a (D, H, W) volume or sequence from ``.npy`` or a multi-page TIFF.

    Returns
    -------
    LoadedImage
        ``pixels``: float32 (D, H, W), C-contiguous; ``dtype``: the stored
        sample type (for writing the result back in it).

    Raises
    ------
    FileNotFoundError, ImageReadError
        As :func:`volume_shape`; also for unsupported sample types and NaN/inf.
    """
    path = Path(path)
    volume_shape(path)  # existence, suffix, grey pages, dimensionality: before decoding anything
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            import tifffile

            arr = tifffile.imread(path)
    except Exception as exc:  # decoders raise many types for truncated or corrupt files
        reason = " ".join(str(exc).split())
        raise ImageReadError(f"{path}: cannot read volume ({type(exc).__name__}: {reason})") from None
    _check_shape(path, arr.shape)  # the data, in case a TIFF's pages disagree with its first series
    dtype = arr.dtype
    if np.issubdtype(dtype, np.integer):
        pixels = arr.astype(np.float32) / np.float32(np.iinfo(dtype).max)
    elif dtype == np.bool_ or np.issubdtype(dtype, np.floating):
        pixels = arr.astype(np.float32)
    else:
        raise ImageReadError(f"{path}: unsupported sample type {dtype}")
    if not np.isfinite(pixels).all():
        raise ImageReadError(f"{path}: contains NaN or inf")
    return LoadedImage(pixels=np.ascontiguousarray(pixels), dtype=dtype)


def write_volume(path: str | os.PathLike, pixels: np.ndarray, dtype: np.dtype) -> Path:
    """Write a float volume as ``.npy`` (float) or a multi-page TIFF of ``dtype`` samples, atomically.

    Integer TIFF samples are ``round(clip(v, 0, 1) · max)`` for unsigned 8/16-bit
    ``dtype``; anything else is stored as float32.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    dtype = np.dtype(dtype)
    if suffix == ".npy":
        data = pixels.astype(dtype if np.issubdtype(dtype, np.floating) else np.float32)
    elif suffix in (".tif", ".tiff"):
        if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2 and not np.issubdtype(dtype, np.signedinteger):
            top = np.iinfo(dtype).max
            data = np.clip(np.rint(pixels * top), 0, top).astype(dtype)
        else:
            data = pixels.astype(np.float32)
    else:
        raise ValueError(f"{path}: a volume is written as {', '.join(VOLUME_SUFFIXES)}")

    def write(tmp: str) -> None:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, data, allow_pickle=False)
        else:
            import tifffile

            tifffile.imwrite(tmp, data, photometric="minisblack")  # D grey pages, never RGB planes

    return atomic_write(path, write)
