"""Model files: weights as safetensors next to a JSON configuration, both written atomically.

Only JSON and safetensors are parsed when loading — no pickle — so files of
unknown origin cannot execute code. The configuration names a format
(``"tvfast-lambdanet"`` for images, ``"tvfast-lambdanet3d"`` for volumes and
sequences) so that a reader refuses files of another kind with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tvfast.io.atomic import atomic_write, atomic_write_text

__all__ = ["pretrained_paths", "save_model_files", "read_model_config", "load_model_weights", "weights_digest"]


def pretrained_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """Weight and config file locations for ``path``.

    ``path`` may name the weights file (``*.safetensors``; the config is the
    same name with ``.json``), the config file (``*.json``), or a directory
    (holding ``model.safetensors`` and ``config.json``).

    Returns
    -------
    (weights, config) : tuple of pathlib.Path
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json")
    if path.suffix == ".json":
        return path.with_suffix(".safetensors"), path
    return path / "model.safetensors", path / "config.json"


def save_model_files(model: nn.Module, path: str | os.PathLike, fmt: str, config: dict,
                     version: int = 1) -> tuple[Path, Path]:
    """Write ``model``'s weights (safetensors) and ``config`` (JSON, with ``format``/``format_version``)."""
    weights, config_path = pretrained_paths(path)
    cfg = {"format": fmt, "format_version": version, **config}
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write(weights, lambda tmp: save_file(tensors, tmp, metadata={"format": fmt}))
    atomic_write_text(config_path, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return weights, config_path


def read_model_config(path: str | os.PathLike, formats: tuple[str, ...],
                      missing_format: str | None = None) -> tuple[Path, dict]:
    """The weights file and the parsed configuration of the model files at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        As for :func:`pretrained_paths`.
    formats : tuple of str
        The format names the caller reads.
    missing_format : str, optional
        The format of a configuration that names none (files older than the
        format field); ``None``: such a configuration is refused.

    Returns
    -------
    (weights, config) : (pathlib.Path, dict)
        ``config["format"]`` is set (to ``missing_format`` when the file has none).

    Raises
    ------
    FileNotFoundError
        If the weights or the configuration is missing (the message names it).
    ValueError
        If the configuration is not a JSON object of one of ``formats``.
    """
    weights, config = pretrained_paths(path)
    for f in (weights, config):
        if not f.is_file():
            raise FileNotFoundError(f"pretrained file not found: {str(f)!r}")
    try:
        cfg = json.loads(config.read_text())
    except ValueError as exc:
        raise ValueError(f"invalid model config {str(config)!r}: {exc}") from exc
    found = cfg.get("format", missing_format) if isinstance(cfg, dict) else None
    if found not in formats:
        raise ValueError(f"invalid model config {str(config)!r}: unknown format {found!r} (expected one of {formats})")
    return weights, {**cfg, "format": found}


def load_model_weights(model: nn.Module, weights: Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load safetensors ``weights`` into ``model`` (strictly) and move it to ``map_location``."""
    state = load_file(str(weights), device=str(torch.device(map_location)))
    model.load_state_dict(state, strict=True)
    return model.to(map_location)


def weights_digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a model's weights file (``path`` as for :func:`pretrained_paths`), in hex: it names the
    weights themselves, so a record of an evaluation stays tied to them when a file at the same path changes."""
    weights, _ = pretrained_paths(path)
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
