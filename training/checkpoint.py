"""The resumable checkpoint of a training run (``last.pt``).

It holds the model and optimizer state, the position in the run (epoch and
step within it, the planned number of epochs), the best validation PSNR, the
per-epoch history and the RNG states of torch, numpy and Python, all as
tensors and plain containers so that it loads with ``weights_only=True``
(no arbitrary unpickling). Writes are atomic.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from tvfast.io.atomic import atomic_write

__all__ = ["CHECKPOINT", "rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint"]

CHECKPOINT = "last.pt"  # the checkpoint's name in a run's folder


def rng_state() -> dict:
    """RNG states of torch (and CUDA), numpy and ``random`` as tensors / plain Python objects."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` with ``torch.save``, atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only``, on the CPU)."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {str(path)!r}")
    return torch.load(path, map_location="cpu", weights_only=True)
