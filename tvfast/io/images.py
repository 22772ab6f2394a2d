"""Reading and writing the images the command line denoises.

The one image reader of tvfast: the command line, the demo, the training
data sets and the evaluation all read files through :func:`read_image` (or
:func:`read_grayscale` on top of it), so they accept the same suffixes and
apply the same rules:

* integer samples are divided by their dtype's maximum (8-bit by 255, 16-bit
  by 65535; PNGs that a decoder hands over as int32 are 16-bit), booleans
  become 0/1, float samples (TIFF, ``.npy``) are taken as they are;
* NaN or inf is an error naming the file; alpha channels are dropped.

Images keep their channels and bit depth when written: an 8-bit PNG comes
back as an 8-bit PNG, a 16-bit TIFF as a 16-bit TIFF, ``.npy`` arrays as
float arrays. Writes are atomic:
a temporary file next to the target, renamed over it when complete, so a
failed or interrupted write never leaves a partial output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvfast.io.atomic import atomic_write

__all__ = ["IMAGE_SUFFIXES", "LoadedImage", "read_image", "read_grayscale", "write_image", "ImageReadError"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".npy")


class ImageReadError(ValueError):
    """An input file could not be read or decoded (the message names it)."""


@dataclass
class LoadedImage:
    """``pixels`` is (H, W) or (H, W, C) float32; ``dtype`` the stored sample type."""

    pixels: np.ndarray
    dtype: np.dtype


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read PNG / JPEG / TIFF (8- or 16-bit, grey or colour) or ``.npy``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageReadError(f"{path}: unsupported file type {suffix!r} (expected one of {', '.join(IMAGE_SUFFIXES)})")
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = _decode(path, suffix)
    except Exception as exc:  # decoders raise many types for truncated or corrupt files
        reason = " ".join(str(exc).split())  # some decoders' messages span several lines
        raise ImageReadError(f"{path}: cannot read image ({type(exc).__name__}: {reason})") from None
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4)):
        raise ImageReadError(f"{path}: expected a 2-D image (H, W) or (H, W, C), got shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[-1] in (2, 4) and suffix != ".npy":
        arr = arr[..., :-1]  # drop alpha
    dtype = arr.dtype
    if suffix == ".png" and np.issubdtype(dtype, np.integer) and dtype.itemsize > 2:
        dtype = np.dtype(np.uint16)  # PNG holds at most 16 bits; some decoders return int32
        arr = np.clip(arr, 0, 65535)
    if np.issubdtype(dtype, np.integer):
        pixels = arr.astype(np.float32) / np.float32(np.iinfo(dtype).max)
    elif dtype == np.bool_:
        pixels = arr.astype(np.float32)
    elif np.issubdtype(dtype, np.floating):
        pixels = arr.astype(np.float32)
    else:
        raise ImageReadError(f"{path}: unsupported sample type {dtype}")
    if not np.isfinite(pixels).all():
        raise ImageReadError(f"{path}: contains NaN or inf")
    return LoadedImage(pixels=pixels, dtype=dtype)


_LUMA = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
"""ITU-R 709 luma weights of R, G, B."""


def _decode(path: Path, suffix: str) -> np.ndarray:
    """Samples of an image file: TIFF through tifffile, PNG/JPEG through Pillow.

    Palette images are expanded to their palette's colours and 16-bit grey
    PNGs that Pillow opens as 32-bit integers come back as uint16; a planar
    (C, H, W) TIFF with 3 or 4 channels comes back channel-last.
    """
    if suffix in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(path)
        if arr.ndim == 3 and arr.shape[-1] not in (3, 4) and arr.shape[0] in (3, 4):
            arr = np.moveaxis(arr, 0, -1)
        return arr
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "P":
            image = image.convert(image.palette.mode)
        elif image.format == "PNG" and image.mode == "I":
            image = image.convert("I;16")
        return np.array(image)


def read_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Read an image as one grayscale (H, W) float32 array (rules of :func:`read_image`).

    Colour is converted to ITU-R 709 luma, 0.2125 R + 0.7154 G + 0.0721 B (as
    ``skimage.color.rgb2gray``);
    single-channel (H, W, 1) data is squeezed.

    Raises
    ------
    FileNotFoundError, ImageReadError
        As :func:`read_image`.
    """
    pixels = read_image(path).pixels
    if pixels.ndim == 3:
        if pixels.shape[-1] in (3, 4):  # RGB, or RGBA from a .npy (image files lose alpha when read)
            pixels = pixels[..., :3] @ _LUMA
        else:
            pixels = pixels[..., 0]
    return np.ascontiguousarray(pixels, dtype=np.float32)


def _file_dtype(suffix: str, dtype: np.dtype) -> np.dtype:
    """The sample type to store: the input's, unless the format cannot hold it
    (float into PNG/TIFF → 16-bit, anything into JPEG → 8-bit)."""
    if suffix == ".npy":
        return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float32)
    if suffix in (".jpg", ".jpeg"):
        return np.dtype(np.uint8)
    if np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2 and not np.issubdtype(dtype, np.signedinteger):
        return dtype
    return np.dtype(np.uint16)


def _encode(pixels: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        top = np.iinfo(dtype).max
        return np.clip(np.rint(pixels * top), 0, top).astype(dtype)
    if dtype == np.bool_:
        return np.clip(np.rint(pixels), 0, 1).astype(np.uint8) * 255
    return pixels.astype(dtype)


def write_image(path: str | os.PathLike, pixels: np.ndarray, dtype: np.dtype) -> Path:
    """Write ``pixels`` (float in [0, 1]) as ``dtype`` samples, atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    target = _file_dtype(suffix, np.dtype(dtype))
    data = pixels.astype(target) if suffix == ".npy" else _encode(pixels, target)

    def write(tmp: str) -> None:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, data, allow_pickle=False)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, data, photometric="rgb" if data.ndim == 3 else "minisblack")
        else:
            from PIL import Image

            Image.fromarray(data).save(tmp, format=Image.registered_extensions()[suffix])  # tmp has no suffix

    return atomic_write(path, write)
