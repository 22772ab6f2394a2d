"""A folder of out-of-domain test images: scikit-image's grey sample images as 256² PNGs.

    python experiments/ood_images.py --out runs/ood_images [--size 256] [--phantom] [--dipy-t1]

Writes the grey images that ship inside scikit-image (``GREY_IMAGES`` of
``natural_images.py``: no download), each centre-cropped to a square and
resized to SIZE², as 8-bit PNGs named after the image. The folder is a
``--val`` for ``tvfast train`` (validation on images unlike the training
X-rays) or a ``--data`` for ``tvfast evaluate``. Optional extras, both read
from files that the installed packages ship (nothing is fetched):

* ``--phantom``: the Shepp–Logan head phantom (scikit-image's
  ``data/phantom.png``, BSD-3-Clause like scikit-image), piecewise constant
  on an empty background, as ``shepp_logan.png``;
* ``--dipy-t1``: the T1-weighted coronal brain slice (256², float in
  [0, 1]) that DIPY ships in its wheel as ``dipy/data/files/t1_coronal_slice.npy``
  (DIPY is BSD-3-Clause; the wheel documents no other licence or source for
  the slice), as ``dipy_t1_coronal.png``. DIPY is no dependency of tvfast:
  the option needs it installed (``pip install dipy``), and reads the file
  without importing DIPY.

Existing PNGs are overwritten, so the folder always holds what this script
writes for the given options.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from natural_images import GREY_IMAGES, _image  # noqa: E402  (the same image list and loading)

from tvfast.training.data import centre_square_resize  # noqa: E402

__all__ = ["write_ood_images", "main"]


def _phantom(size: int) -> np.ndarray:
    import skimage.data

    return centre_square_resize(np.asarray(skimage.data.shepp_logan_phantom(), dtype=np.float32), size)


def _dipy_t1(size: int) -> np.ndarray:
    spec = importlib.util.find_spec("dipy")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("--dipy-t1: DIPY is not installed (pip install dipy); its wheel ships the slice")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "files" / "t1_coronal_slice.npy"
    if not path.is_file():
        raise FileNotFoundError(f"--dipy-t1: {path} not found in the installed DIPY")
    slice_ = np.load(path, allow_pickle=False).astype(np.float32)
    return centre_square_resize(np.clip(slice_, 0.0, 1.0), size)


def write_ood_images(folder: str | Path, size: int = 256, phantom: bool = False, dipy_t1: bool = False) -> list[Path]:
    """Write the images (module docstring) to ``folder`` (made if needed); returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = {name: _image(name, size) for name in GREY_IMAGES}
    if phantom:
        images["shepp_logan"] = _phantom(size)
    if dipy_t1:
        images["dipy_t1_coronal"] = _dipy_t1(size)
    written = []
    for name, image in images.items():
        target = folder / f"{name}.png"
        Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the PNGs to")
    parser.add_argument("--size", type=int, default=256, help="side of the square images")
    parser.add_argument("--phantom", action="store_true", help="add scikit-image's Shepp-Logan phantom")
    parser.add_argument("--dipy-t1", action="store_true", help="add DIPY's T1 brain slice (needs DIPY installed)")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error(f"--size must be positive, got {args.size}")
    try:
        written = write_ood_images(args.out, args.size, phantom=args.phantom, dipy_t1=args.dipy_t1)
    except FileNotFoundError as exc:
        parser.error(str(exc))
    print(f"wrote {len(written)} images to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
