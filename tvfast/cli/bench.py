"""Measuring tvfast.pdhg against the reference loop: time and peak memory.

The small core module behind ``tvfast bench`` (its op-vs-reference table);
the pytest-benchmark suite in ``benchmarks/`` builds on the same helpers and
keeps its own workload helpers. Times are medians of repeated runs in one process, both
implementations on the same inputs; memory is the peak growth of the
resident set size (RSS) during one forward+backward in a *fresh* process
(``python -m tvfast.cli.bench --impl …``), after a 2-iteration warm-up
so that compilation is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time

import torch

__all__ = ["solvers", "make_problem", "forward", "forward_backward", "median_time", "PeakRSS",
           "probe_memory", "print_table"]


def solvers() -> dict:
    import tvfast
    from tvfast.solver.reference import pdhg_reference

    return {"tvfast": tvfast.pdhg, "reference": pdhg_reference}


def make_problem(size: int, batch: int = 1, seed: int = 0):
    """A (B, 1, N, N) image batch in [0, 1] and a per-pixel Λ map in [0, 0.1]."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.rand(batch, 1, size, size, generator=gen)
    lam = 0.1 * torch.rand(batch, 1, size, size, generator=gen)
    return z, lam


def forward(solve, z, lam, n_iter):
    with torch.no_grad():
        return solve(z, lam, n_iter)


def forward_backward(solve, z, lam, n_iter):
    z = z.clone().requires_grad_()
    lam = lam.clone().requires_grad_()
    solve(z, lam, n_iter).square().sum().backward()
    return z.grad, lam.grad


def median_time(fn, *args, rounds: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
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
        return self.peak - self.start


def probe_memory(impl: str, size: int, batch: int, n_iter: int, case: str = "solver", image: str | None = None,
                 depth: int | None = None) -> dict:
    """Peak extra RSS (and time) of one forward+backward, measured in a fresh process.

    ``case="solver"``: the op alone; ``case="train_step"``: one training step
    of the default U-Net (1.8 M parameters) → Λ → solver → MSE, on random
    images or on the grayscale file ``image`` at full resolution. With
    ``depth`` (solver only), the problem is a volume (B, 1, depth, size, size)
    with a shared Λ map (docs/method.md §9).
    """
    cmd = [sys.executable, "-m", "tvfast.cli.bench", "--impl", impl, "--size", str(size),
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


def _speed_rows(size: int, batch: int, n_iter: int, rounds: int) -> list[str]:
    z, lam = make_problem(size, batch)
    impls = solvers()
    rows = []
    for name, fn in (("forward", forward), ("forward+backward", forward_backward)):
        t = {k: median_time(fn, solve, z, lam, n_iter, rounds=rounds) for k, solve in impls.items()}
        rows.append(f"| {name} {size}² B={batch} T={n_iter} | {t['reference'] * 1e3:.1f} ms "
                    f"| {t['tvfast'] * 1e3:.1f} ms | {t['reference'] / t['tvfast']:.1f}× faster |")
    return rows


def _memory_row(size: int, batch: int, n_iter: int, case: str = "solver") -> str:
    m = {k: probe_memory(k, size, batch, n_iter, case)["extra_bytes"] for k in ("reference", "tvfast")}
    what = "forward+backward" if case == "solver" else "train step"
    return (f"| peak extra RSS, {what} {size}² B={batch} T={n_iter} | {m['reference'] / 2**20:.1f} MiB "
            f"| {m['tvfast'] / 2**20:.1f} MiB | {m['reference'] / max(m['tvfast'], 1):.1f}× less |")


def _train_step_row(size: int, n_iter: int, rounds: int) -> str:
    t = {k: median_time(make_train_step(solve, size, 1, n_iter), rounds=rounds) for k, solve in solvers().items()}
    return (f"| train step (U-Net → Λ → solver → MSE → Adam) {size}² T={n_iter} | {t['reference'] * 1e3:.1f} ms "
            f"| {t['tvfast'] * 1e3:.1f} ms | {t['reference'] / t['tvfast']:.1f}× faster |")


def print_table(quick: bool = False, size: int | None = None, n_iter: int | None = None,
                rounds: int | None = None) -> None:
    """The headline rows of benchmarks/RESULTS.md for this machine: the op's
    forward and forward+backward time, the peak extra RSS (fresh processes)
    and the training step, tvfast against the reference loop in this process.

    Default 256², T = 256; ``quick``: 128², T = 64 (about 2 minutes).
    """
    default_size, default_iters, default_rounds = (128, 64, 3) if quick else (256, 256, 5)
    size, n_iter, rounds = size or default_size, n_iter or default_iters, rounds or default_rounds
    print(f"# tvfast bench — {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print()
    print("| case | reference loop | tvfast | ratio |")
    print("|---|---|---|---|")
    for row in _speed_rows(size, 1, n_iter, rounds):
        print(row, flush=True)
    print(_memory_row(size, 1, n_iter), flush=True)
    print(_train_step_row(size, n_iter, rounds), flush=True)
    print(_memory_row(size, 1, n_iter, "train_step"), flush=True)


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
    # (forced on, as the default does for these sizes) but small enough that
    # memory it frees cannot hide the measured run's growth inside malloc's pools.
    os.environ["TVFAST_COMPILE"] = "1"
    if args.case == "train_step":
        run = make_train_step(solve, args.size, args.batch, args.iters, image=args.image)
    else:
        if args.depth is None:
            z, lam = make_problem(args.size, args.batch)
        else:  # a volume in [0, 1] and a shared Λ map in [0, 0.1], like make_problem
            gen = torch.Generator().manual_seed(0)
            z = torch.rand(args.batch, 1, args.depth, args.size, args.size, generator=gen)
            lam = 0.1 * torch.rand(args.batch, 1, args.depth, args.size, args.size, generator=gen)

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
