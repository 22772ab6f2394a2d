"""The process group of a training run: one process, or several under ``torchrun``."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from tvfast.device import resolve_device

__all__ = ["ProcessGroup"]


class ProcessGroup:
    """Rank, world size and device of this process; a single process when not launched by torchrun.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the default process group is
    initialised here (nccl on CUDA, gloo on CPU) and destroyed by :meth:`close`.
    """

    def __init__(self, device_arg: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(device_arg)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank if self.world > 1 else torch.cuda.current_device())
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.device = device
        self.initialised_here = False
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            self.initialised_here = True

    @property
    def main(self) -> bool:
        """True on rank 0, the process that writes logs and files."""
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all processes."""
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.initialised_here:
            dist.destroy_process_group()
