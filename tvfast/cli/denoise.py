"""``tvfast denoise``: denoise image files with the learned Λ map or a given λ.

Planning (which output each input gets, what would be overwritten) happens
before anything is computed, so a bad argument fails fast and nothing is
half-done. Outputs are written atomically; an input is never overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import tvfast
from tvfast.io.images import IMAGE_SUFFIXES, read_image, write_image
from tvfast.io.volumes import read_volume, write_volume

__all__ = ["UsageError", "DenoiseJob", "plan_jobs", "denoise_job", "load_lambda_map",
           "load_volume_lambda", "denoise_volume"]


class UsageError(Exception):
    """A problem the user can fix; the CLI prints it on one line and exits with 2."""


@dataclass(frozen=True)
class DenoiseJob:
    source: Path
    target: Path

    def sidecar(self, suffix: str) -> Path:
        return self.target.with_name(self.target.stem + suffix)


def _expand_inputs(inputs: list[str]) -> list[Path]:
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return files


def plan_jobs(inputs: list[str], output: str, force: bool, sidecars: tuple[str, ...] = ()) -> list[DenoiseJob]:
    """Map inputs to outputs.

    ``output`` is a file when it has an image suffix (one input only); a folder
    (created) when it is an existing folder, ends with ``/`` or has no suffix.
    Any other suffix is an error that names the supported ones, so a typo such
    as ``-o out.pgn`` never silently becomes a folder.
    """
    files = _expand_inputs(inputs)
    out = Path(output)
    names_folder = output.endswith(("/", "\\")) or out.is_dir()
    if not names_folder and out.suffix and out.suffix.lower() not in IMAGE_SUFFIXES:
        raise UsageError(f"-o {output}: unknown image suffix {out.suffix!r}; use one of "
                         f"{', '.join(IMAGE_SUFFIXES)} for a file, or a folder name without a suffix "
                         "(or with a trailing '/')")
    single_file = out.suffix.lower() in IMAGE_SUFFIXES and not names_folder
    if single_file and len(files) != 1:
        raise UsageError(f"-o {out}: a single output file needs exactly one input, got {len(files)}")
    if single_file:
        folder = out.parent if str(out.parent) else Path(".")
        jobs = [DenoiseJob(files[0], out)]
    else:
        folder = out
        jobs = [DenoiseJob(f, out / f.name) for f in files]
        names = [j.target.name for j in jobs]
        if len(set(names)) != len(names):
            raise UsageError("inputs from different folders share file names; denoise them into separate -o folders")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"-o {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"-o {folder}: cannot create output folder ({exc.strerror or exc})") from None
    probe = folder / ".tvfast-write-test"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"-o {folder}: output folder is not writable ({exc.strerror or exc})") from None
    sources = {f.resolve() for f in files}
    planned: set[Path] = set()
    for job in jobs:
        for target in (job.target, *(job.sidecar(s) for s in sidecars)):
            if target.resolve() in planned:
                raise UsageError(f"{target}: two inputs would write this file (same name stem); "
                                 "denoise them into separate -o folders")
            planned.add(target.resolve())
            if target.resolve() in sources:
                raise UsageError(f"{target}: would overwrite an input; choose another -o")
            if target.exists() and not force:
                raise UsageError(f"{target}: exists; pass --force to overwrite")
    return jobs


def load_lambda_map(path: str) -> np.ndarray:
    """A user's Λ map from ``.npy`` ((H, W), (1, H, W) or (2, H, W)), or an image."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--lambda-map {p}: no such file")
    if p.suffix.lower() == ".npy":
        try:
            lam = np.load(p, allow_pickle=False)
        except Exception as exc:
            raise UsageError(f"--lambda-map {p}: cannot read ({type(exc).__name__}: {exc})") from None
    else:
        lam = read_image(p).pixels
    lam = np.asarray(lam, dtype=np.float32)
    if lam.ndim == 2:
        lam = lam[None]
    if lam.ndim != 3 or lam.shape[0] not in (1, 2):
        raise UsageError(f"--lambda-map {p}: expected shape (H, W), (1, H, W) or (2, H, W), got {lam.shape}")
    if not np.isfinite(lam).all() or (lam < 0).any():
        raise UsageError(f"--lambda-map {p}: values must be finite and non-negative")
    return lam


def _backend(start, z: torch.Tensor, n_iter: int, tv: str) -> str:
    """The solver backend of one solve of z: the job's ski-rental account (``start``) decides on the CPU."""
    if start is None or z.device.type != "cpu" or tv != "anisotropic":
        return "auto"
    return start.backend(z.numel(), n_iter, z.dim() - 2, z.element_size())


def denoise_job(job: DenoiseJob, *, model=None, lam_value=None, lam_map=None, n_iter: int = 256,
                save_lambda: bool = False, compare: bool = False, device="cpu", compile: bool | None = None,
                tv: str = "anisotropic", start=None) -> None:
    """Denoise one file. Exactly one of ``model``, ``lam_value``, ``lam_map`` is given.

    ``compile`` and ``tv`` are passed to :func:`tvfast.pdhg` for ``lam_value`` / ``lam_map``
    (a ``model`` solves with its own ``solver_compile`` and ``tv``). ``start``: the command's
    :class:`tvfast.solver.start_policy.FusedStart`, which picks the CPU backend of each solve
    (None: the default backend).
    """
    image = read_image(job.source)
    pixels = image.pixels
    channels = pixels[None] if pixels.ndim == 2 else np.moveaxis(pixels, -1, 0)  # (C, H, W)
    z = torch.from_numpy(np.ascontiguousarray(channels)).to(device)[:, None]  # channels as a batch
    height, width = z.shape[-2:]
    with torch.no_grad():
        if model is not None:
            x, lam = model.denoise(z, n_iter, backend=_backend(start, z, n_iter, model.tv))
        elif lam_map is not None:
            if lam_map.shape[-2:] != (height, width):
                raise UsageError(f"--lambda-map: map is {lam_map.shape[-2]}×{lam_map.shape[-1]}, "
                                 f"image {job.source} is {height}×{width}")
            lam = torch.from_numpy(lam_map).to(device)[None]
        else:
            lam = float(lam_value)
        if model is None:
            x = tvfast.pdhg(z, lam, n_iter, compile=compile, tv=tv, backend=_backend(start, z, n_iter, tv))
    result = x[:, 0].cpu().numpy()
    result = result[0] if pixels.ndim == 2 else np.moveaxis(result, 0, -1)
    write_image(job.target, result, image.dtype)
    if torch.is_tensor(lam):
        lam_np = lam.expand(z.shape[0], -1, height, width).cpu().numpy()
    else:
        lam_np = np.full((z.shape[0], 1, height, width), lam, dtype=np.float32)
    if save_lambda:
        _save_lambda(job, lam_np)
    if compare:
        _save_comparison(job, pixels, result, lam_np)


def _save_lambda(job: DenoiseJob, lam: np.ndarray) -> None:
    from matplotlib import colormaps

    write_image(job.sidecar("_lambda.npy"), np.ascontiguousarray(lam[:, 0] if lam.shape[0] > 1 else lam[0, 0]), np.float32)
    shown = lam[0, 0]
    top = float(shown.max()) or 1.0
    rgb = colormaps["viridis"](shown / top)[..., :3].astype(np.float32)
    write_image(job.sidecar("_lambda.png"), rgb, np.uint8)


def _save_comparison(job: DenoiseJob, noisy: np.ndarray, denoised: np.ndarray, lam: np.ndarray) -> None:
    from matplotlib.figure import Figure

    from tvfast.evaluation.figures import save_figure

    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 3)
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if noisy.ndim == 2 else {}
    axes[0].imshow(np.clip(noisy, 0, 1), **grey)
    axes[0].set_title("input")
    axes[1].imshow(np.clip(denoised, 0, 1), **grey)
    axes[1].set_title("denoised")
    im = axes[2].imshow(lam[0, 0], cmap="viridis")
    axes[2].set_title("Λ (regularisation strength)")
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(job.source.name)
    save_figure(fig, job.sidecar("_compare.png"))


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
                   model=None, n_iter: int = 256, device="cpu", save_lambda: bool = False,
                   tv: str = "anisotropic", start=None) -> np.ndarray:
    """Denoise the volume file ``source`` into ``target`` with 3-D TV (docs/method.md §9).

    Exactly one of ``lam_value``, ``lam_map`` ((1|3, D, H, W)) or ``model`` (a
    3-D Λ-map model with ``denoise(z, n_iter) -> (x, Λ)``) is given; ``tv``
    is the TV of ``lam_value`` / ``lam_map``. The file
    is read by :func:`tvfast.io.volumes.read_volume` and written back in its
    format and sample type. With ``save_lambda`` the Λ used is written next to
    the target as ``NAME_lambda.npy`` ((1|3, D, H, W)). Returns the denoised
    (D, H, W) array. ``start``: as for :func:`denoise_job`.
    """
    volume = read_volume(source)
    z = torch.from_numpy(volume.pixels).to(device)[None, None]  # (1, 1, D, H, W)
    with torch.no_grad():
        if model is not None:
            x, lam = model.denoise(z, n_iter, backend=_backend(start, z, n_iter, model.tv))
        elif lam_map is not None:
            if lam_map.shape[1:] != tuple(z.shape[2:]):
                raise ValueError(f"--lambda-map: map is {'×'.join(map(str, lam_map.shape[1:]))}, volume {source} is "
                                 f"{'×'.join(map(str, z.shape[2:]))}")
            lam = torch.from_numpy(lam_map).to(device)[None]
            x = tvfast.pdhg(z, lam, n_iter, tv=tv, backend=_backend(start, z, n_iter, tv))
        else:
            lam = float(lam_value)
            x = tvfast.pdhg(z, lam, n_iter, tv=tv, backend=_backend(start, z, n_iter, tv))
    result = x[0, 0].cpu().numpy()
    write_volume(target, result, volume.dtype)
    if save_lambda:
        lam_np = lam[0].cpu().numpy() if torch.is_tensor(lam) else np.full((1, *result.shape), lam, np.float32)
        write_volume(target.with_name(target.stem + "_lambda.npy"), lam_np, np.float32)
    return result
