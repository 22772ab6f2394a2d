"""Peak extra resident memory of one PDHG forward+backward, in a fresh process.

Run as a script (the benchmarks start one process per case)::

    python benchmarks/memory_probe.py --impl tvfast --size 256 --batch 1 --iters 256

Prints one JSON line: the resident set size (RSS) before the solve, its peak
during forward+backward (sampled every 0.5 ms by a thread reading
/proc/self/statm) and the difference. An identical warm-up solve runs first,
so compilation (torch.compile) and allocator pools are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

import torch

import tvfast
from tvfast.reference import pdhg_reference

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakRSS:
    """Samples RSS in a background thread while the ``with`` block runs."""

    def __init__(self, interval: float = 5e-4):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def forward_backward(solve, z, lam, n_iter):
    z = z.clone().requires_grad_()
    lam = lam.clone().requires_grad_()
    x = solve(z, lam, n_iter)
    x.square().sum().backward()
    return z.grad, lam.grad


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=["tvfast", "reference"], required=True)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=256)
    args = parser.parse_args(argv)
    solve = tvfast.pdhg if args.impl == "tvfast" else pdhg_reference
    torch.manual_seed(0)
    z = torch.rand(args.batch, 1, args.size, args.size)
    lam = torch.full((args.batch, 1, args.size, args.size), 0.05)
    forward_backward(solve, z, lam, args.iters)  # warm-up: compilation, allocator pools
    before = rss_bytes()
    with PeakRSS() as probe:
        forward_backward(solve, z, lam, args.iters)
    print(json.dumps({"impl": args.impl, "size": args.size, "batch": args.batch, "iters": args.iters,
                      "rss_before": before, "rss_peak": probe.peak, "extra_bytes": probe.peak - before}))


if __name__ == "__main__":
    main()
