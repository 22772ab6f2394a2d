"""``tvfast denoise --volume``: a 3-D ``.npy`` or a multi-page TIFF denoised as one volume / sequence.

A volume file holds a (D, H, W) array: depth slices, or the frames of an
(x, y, t) sequence with D as time. It is denoised with the 3-D TV of
docs/method.md §9 (differences along D, H and W), so neighbouring frames
regularise each other. Which files are volumes is said by the ``--volume``
flag, never guessed from the shape: a (H, W, 3) array stays an RGB image.

Reading follows :mod:`tvfast.io.images`: integer samples are divided by their
dtype's maximum, float samples taken as they are, NaN/inf rejected. The
output keeps the input's format and sample type (``.npy`` float, TIFF pages
of the input's integer type); writes are atomic.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

import tvfast
from tvfast.io.atomic import atomic_write
from tvfast.io.images import ImageReadError, LoadedImage

__all__ = ["VOLUME_SUFFIXES", "volume_shape", "read_volume", "write_volume", "load_volume_lambda", "denoise_volume"]

VOLUME_SUFFIXES = (".npy", ".tif", ".tiff")


def volume_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """(D, H, W) of a volume file from its header, without reading the data; a clear error otherwise.

    Lets ``tvfast denoise --volume`` check every input before it writes anything.
    """
    path = Path(path)
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
    if colour or len(shape) != 3:
        raise ImageReadError(f"{path}: --volume expects a (D, H, W) array of grey frames or slices, got shape "
                             f"{shape}{' (colour samples)' if colour else ''}")
    return shape


def read_volume(path: str | os.PathLike) -> LoadedImage:
    """Read a (D, H, W) volume from ``.npy`` or a multi-page TIFF; ``pixels`` is float32 (D, H, W)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    volume_shape(path)  # suffix, colour TIFFs, dimensionality
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            import tifffile

            arr = tifffile.imread(path)
    except Exception as exc:  # decoders raise many types for truncated or corrupt files
        reason = " ".join(str(exc).split())
        raise ImageReadError(f"{path}: cannot read volume ({type(exc).__name__}: {reason})") from None
    if arr.ndim != 3:
        raise ImageReadError(f"{path}: --volume expects a (D, H, W) array (grey frames or slices), "
                             f"got shape {arr.shape}")
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
    """Write a (D, H, W) float volume as ``.npy`` (float) or a multi-page TIFF of ``dtype`` samples, atomically."""
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


def load_volume_lambda(path: str) -> np.ndarray:
    """A user's Λ for volumes from ``.npy``: (D, H, W), (1, D, H, W) or (3, D, H, W) → (1|3, D, H, W)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--lambda-map {p}: no such file")
    if p.suffix.lower() != ".npy":
        raise ValueError(f"--lambda-map {p}: with --volume the map is a .npy array")
    try:
        lam = np.asarray(np.load(p, allow_pickle=False), dtype=np.float32)
    except Exception as exc:  # empty, truncated or not an array
        raise ValueError(f"--lambda-map {p}: cannot read ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if lam.ndim == 3:
        lam = lam[None]
    if lam.ndim != 4 or lam.shape[0] not in (1, 3):
        raise ValueError(f"--lambda-map {p}: expected (D, H, W), (1, D, H, W) or (3, D, H, W), got {lam.shape}")
    if not np.isfinite(lam).all() or (lam < 0).any():
        raise ValueError(f"--lambda-map {p}: values must be finite and non-negative")
    return lam


def denoise_volume(source: Path, target: Path, *, lam_value: float | None = None, lam_map: np.ndarray | None = None,
                   model=None, n_iter: int = 256, device="cpu", save_lambda: bool = False) -> np.ndarray:
    """Denoise the volume file ``source`` into ``target``; exactly one of ``lam_value``, ``lam_map``, ``model``.

    ``model`` is a 3-D Λ-map model with ``denoise(z, n_iter) -> (x, Λ)``. With
    ``save_lambda`` the Λ used is written next to the target as
    ``NAME_lambda.npy`` ((1|3, D, H, W)). Returns the denoised (D, H, W) array.
    """
    volume = read_volume(source)
    z = torch.from_numpy(volume.pixels).to(device)[None, None]  # (1, 1, D, H, W)
    with torch.no_grad():
        if model is not None:
            x, lam = model.denoise(z, n_iter)
        elif lam_map is not None:
            if lam_map.shape[1:] != tuple(z.shape[2:]):
                raise ValueError(f"--lambda-map: map is {'×'.join(map(str, lam_map.shape[1:]))}, volume {source} is "
                                 f"{'×'.join(map(str, z.shape[2:]))}")
            lam = torch.from_numpy(lam_map).to(device)[None]
            x = tvfast.pdhg(z, lam, n_iter)
        else:
            lam = float(lam_value)
            x = tvfast.pdhg(z, lam, n_iter)
    result = x[0, 0].cpu().numpy()
    write_volume(target, result, volume.dtype)
    if save_lambda:
        lam_np = lam[0].cpu().numpy() if torch.is_tensor(lam) else np.full((1, *result.shape), lam, np.float32)
        write_volume(target.with_name(target.stem + "_lambda.npy"), lam_np, np.float32)
    return result
