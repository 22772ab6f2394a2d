"""Numeric precision of the Λ-map network (never of the solver).

The U-Net that predicts Λ may run under bfloat16 autocast, and with its
activations in channels-last layout, where the hardware makes that faster.
The TV solver always runs in float32 (or the input's wider dtype), and
weights and optimiser state stay float32: only the network's convolutions
change precision.

``auto`` is decided from the hardware, measured on the project's machines
(4 × 128² crops, forward + backward of the 1.8 M-parameter U-Net, 2 threads):

* CPU with AMX-BF16 (Intel Sapphire Rapids and later): bf16 autocast plus
  channels-last, about 3× faster than float32;
* CPU with AVX512-BF16 but no AMX: bf16 is no faster (0.49 s → 0.46 s), while
  float32 channels-last is 1.5× faster (0.49 s → 0.33 s): float32 + channels-last;
* other CPUs: float32 + channels-last;
* CUDA GPUs that support bf16 (Ampere and later): bf16 + channels-last;
  older GPUs: float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

__all__ = ["PRECISIONS", "Precision", "resolve_precision", "cpu_has_amx_bf16"]

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Precision:
    """How the Λ network runs: ``bf16`` autocast or not, channels-last or not."""

    bf16: bool
    channels_last: bool

    @property
    def name(self) -> str:
        return ("bf16" if self.bf16 else "fp32") + ("+channels_last" if self.channels_last else "")


@lru_cache(maxsize=1)
def cpu_has_amx_bf16() -> bool:
    """True if the CPU advertises the AMX-BF16 tile unit (Linux ``/proc/cpuinfo``)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def resolve_precision(name: str, device: torch.device | str) -> Precision:
    """Turn ``"auto" | "fp32" | "bf16"`` into a :class:`Precision` for ``device``.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`PRECISIONS`.
    """
    if name not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {name!r}")
    device = torch.device(device)
    if device.type == "cuda":
        # bf16 tensor cores from compute capability 8.0 (Ampere) on; older GPUs only emulate bf16.
        fast_bf16 = torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
        channels_last = fast_bf16
    else:
        fast_bf16 = cpu_has_amx_bf16()
        channels_last = True
    if name == "auto":
        return Precision(bf16=fast_bf16, channels_last=channels_last)
    return Precision(bf16=name == "bf16", channels_last=channels_last)
