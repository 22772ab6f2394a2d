"""The benchmark suite's harness: problems, timers, peak memory in a fresh process, the training step.

The problems, the timers and the two implementations (tvfast.pdhg compiled,
the reference loop) are those of ``tvfast bench`` (:mod:`tvfast.cli.bench`),
so its rows and the suite's agree. Added here:

* :class:`PeakRSS` and :func:`probe_memory` — the peak growth of the resident
  set size (RSS) during one forward+backward (or training step) in a *fresh*
  process (``python benchmarks/harness.py --impl …``), after a 2-iteration
  warm-up so that compilation is not counted;
* :func:`make_train_step` — U-Net → Λ → solver → MSE → backward → Adam;
* :func:`make_volume` — the 3-D problems.

``benchmarks/conftest.py`` puts this folder on ``sys.path``: the suite's
files import ``from harness import …``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from tvfast.cli.bench import forward, forward_backward, make_problem, median_time, paired_medians, solvers

__all__ = ["solvers", "make_problem", "make_volume", "forward", "forward_backward", "median_time", "paired_medians",
           "PeakRSS", "probe_memory", "make_train_step", "ratio"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def ratio(slow: float, fast: float) -> float:
    """``slow / fast`` (how many times faster, or how many times less memory), ∞ when ``fast`` is 0."""
    return slow / fast if fast > 0 else float("inf")


def make_volume(depth: int, size: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A (B, 1, D, N, N) volume in [0, 1] and a per-voxel Λ map in [0, 0.1], seeded."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(batch, 1, depth, size, size, generator=gen)
    lam = 0.1 * torch.rand(batch, 1, depth, size, size, generator=gen)
    return z, lam


def rss_bytes() -> int:
    """This process's resident set size (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakRSS:
    """Peak RSS while the ``with`` block runs (a thread samples /proc/self/statm every 0.5 ms)."""

    def __init__(self, interval: float = 5e-4):
        self.interval = interval
        self.start = self.peak = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra(self) -> int:
        """Peak minus the RSS at the start of the block, in bytes."""
        return self.peak - self.start


def probe_memory(impl: str, size: int, batch: int, n_iter: int, case: str = "solver", image: str | None = None,
                 depth: int | None = None) -> dict:
    """Peak extra RSS (and time) of one forward+backward, measured in a fresh process.

    ``case="solver"``: the op alone; ``case="train_step"``: one training step
    of the default U-Net (1.8 M parameters) → Λ → solver → MSE, on random
    images or on the grayscale file ``image`` at full resolution. With
    ``depth`` (solver only), the problem is a volume (B, 1, depth, size, size)
    with a per-voxel Λ map (docs/method.md §9).
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--impl", impl, "--size", str(size),
           "--batch", str(batch), "--iters", str(n_iter), "--case", case]
    if image is not None:
        cmd += ["--image", str(image)]
    if depth is not None:
        cmd += ["--depth", str(depth)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_train_step(solve, size: int, batch: int = 1, n_iter: int = 256, seed: int = 0, image: str | None = None,
                    device: str | torch.device = "cpu"):
    """A closure running one training step: U-Net → Λ → ``solve`` → MSE → backward → Adam.

    The clean batch is random (``size``², ``batch`` images) or, with ``image``,
    that grayscale file at full resolution (``size`` and ``batch`` ignored)
    with relative Gaussian noise s = 0.5 (docs/method.md §7). Model and data live on ``device``.
    """
    from tvfast.evaluation.noise import add_noise
    from tvfast.models.unet import UNet

    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's global RNG
        torch.manual_seed(seed)
        net = UNet().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    if image is None:
        clean, _ = make_problem(size, batch, seed)
        noisy = clean + 0.05 * torch.randn_like(clean)
    else:
        from tvfast.io.images import read_grayscale

        clean = torch.from_numpy(read_grayscale(image))[None, None]
        noisy = add_noise(clean, 0.5, "relative", generator=torch.Generator().manual_seed(seed))
    clean, noisy = clean.to(device), noisy.to(device)

    def step(iters: int = n_iter):
        lam = 0.1 * torch.nn.functional.softplus(net(noisy)[:, :1])
        loss = (solve(noisy, lam, iters) - clean).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    return step


def _probe_main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="peak extra RSS of one forward+backward (fresh process)")
    parser.add_argument("--impl", choices=["tvfast", "reference"], required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=256)
    parser.add_argument("--case", choices=["solver", "train_step"], default="solver")
    parser.add_argument("--image", default=None, help="train_step on this grayscale image at full resolution")
    parser.add_argument("--depth", type=int, default=None,
                        help="solver on volumes (B, 1, DEPTH, SIZE, SIZE) instead of images")
    args = parser.parse_args(argv)
    if args.depth is not None and (args.case != "solver" or args.depth < 1):
        parser.error("--depth needs --case solver and a depth >= 1")
    solve = solvers()[args.impl]
    # The warm-up runs 2 iterations, enough to compile the CPU path's steps
    # (tvfast's solver asks for compilation) but small enough that memory it
    # frees cannot hide the measured run's growth inside malloc's pools.
    if args.case == "train_step":
        run = make_train_step(solve, args.size, args.batch, args.iters, image=args.image)
    else:
        if args.depth is None:
            z, lam = make_problem(args.size, args.batch)
        else:
            z, lam = make_volume(args.depth, args.size, args.batch)

        def run(iters: int = args.iters):
            forward_backward(solve, z, lam, iters)

    run(2)
    start = time.perf_counter()
    with PeakRSS() as probe:
        run()
    print(json.dumps({"impl": args.impl, "case": args.case, "size": args.size, "batch": args.batch, "iters": args.iters,
                      "depth": args.depth, "image": args.image, "seconds": time.perf_counter() - start,
                      "rss_before": probe.start, "rss_peak": probe.peak, "extra_bytes": probe.extra}))


if __name__ == "__main__":
    _probe_main()
