"""The benchmark suite's harness: problems, timers, peak memory in a fresh process, the training step.

The problems, the timers and the two implementations (tvfast.pdhg compiled,
the reference loop) are those of ``tvfast bench`` (:mod:`tvfast.cli.bench`),
so its rows and the suite's agree. Added here:

* :class:`PeakRSS` and :func:`probe_memory` — the peak growth of the resident
  set size (RSS) during one forward+backward (or training step) in a *fresh*
  process (``python benchmarks/harness.py --impl …``), after a 2-iteration
  warm-up so that compilation is not counted;
* :func:`make_train_step` — U-Net → Λ → solver → MSE → backward → Adam;
* :func:`make_mri_train_step` — the same for MRI reconstruction: U-Net on the
  zero-filled image → Λ → PDHG with ``MaskedFFT`` → MSE of |x| → backward → Adam;
* :func:`make_volume` — the 3-D problems;
* :func:`frame_masks`, :func:`make_mri`, :func:`mri_solvers`, :func:`mri_forward`,
  :func:`mri_forward_backward` — single-coil Cartesian MRI with
  ``tvfast.physics.MaskedFFT`` (docs/method.md §10), images or per-frame
  (x, y, t) sequences, tvfast against the reference loop with the same operator.

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
           "PeakRSS", "probe_memory", "make_train_step", "make_mri_train_step", "smooth_image", "ratio", "frame_masks",
           "make_mri", "mri_solvers", "mri_forward", "mri_forward_backward"]

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


def frame_masks(size: int, acceleration: int = 4, generator: torch.Generator | None = None,
                frames: int | None = None) -> torch.Tensor:
    """:func:`tvfast.physics.mri.row_mask` as a full (N, N) mask, or one drawn per frame, (D, N, N), for
    sequences. Boolean; ``MaskedFFT`` takes it as is (and sees whole rows: 1-D transforms in AᴴA)."""
    from tvfast.physics.mri import row_mask

    masks = [row_mask(size, acceleration, generator=generator).bool().expand(size, size)
             for _ in range(1 if frames is None else frames)]
    return masks[0].clone() if frames is None else torch.stack(masks)


def make_mri(size: int, frames: int | None = None, acceleration: int = 4, noise: float = 0.02, seed: int = 0):
    """A seeded undersampled MRI problem: (y, Λ, A).

    The complex image (B = 1) is a random magnitude in [0, 1] times a smooth
    phase, (1, 1, N, N), or (1, 1, D, N, N) for a sequence of D frames; A is
    ``MaskedFFT`` with :func:`frame_masks` (per-frame masks for sequences); y =
    A x + complex Gaussian noise of standard deviation ``noise`` on the
    sampled entries; Λ a per-pixel (per-voxel) map in [0, 0.02], float32.
    """
    from tvfast.physics import MaskedFFT

    gen = torch.Generator().manual_seed(seed)
    spatial = (size, size) if frames is None else (frames, size, size)
    magnitude = torch.rand(1, 1, *spatial, generator=gen)
    axis = torch.linspace(0.0, torch.pi, size)
    image = magnitude * torch.polar(torch.ones(size, size), axis[:, None] + 0.5 * axis[None, :])
    operator = MaskedFFT(frame_masks(size, acceleration, generator=gen, frames=frames))
    clean = operator(image)
    y = clean + noise * operator.mask * torch.randn(clean.shape, dtype=clean.dtype, generator=gen)
    lam = 0.02 * torch.rand(1, 1, *spatial, generator=gen)
    return y, lam, operator


def mri_solvers(operator) -> dict:
    """``{"tvfast": tvfast.pdhg (the default call), "reference": pdhg_reference}`` with ``operator``, as ``solve(y, Λ, T)``."""
    import tvfast
    from tvfast.solver.reference import pdhg_reference

    def tvfast_solve(y, lam, n_iter):
        return tvfast.pdhg(y, lam, n_iter, operator=operator)

    def reference_solve(y, lam, n_iter):
        return pdhg_reference(y, lam, n_iter, operator=operator)

    return {"tvfast": tvfast_solve, "reference": reference_solve}


def mri_forward(solve, y, lam, n_iter):
    """The complex reconstruction x, without autograd."""
    with torch.no_grad():
        return solve(y, lam, n_iter)


def mri_forward_backward(solve, y, lam, n_iter):
    """Gradients (∂L/∂y, ∂L/∂Λ) of the real loss L = Σ |x|² through ``solve``."""
    y = y.clone().requires_grad_()
    lam = lam.clone().requires_grad_()
    solve(y, lam, n_iter).abs().square().sum().backward()
    return y.grad, lam.grad


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
    with a per-voxel Λ map (docs/method.md §9). ``case="mri"``: the op with
    the MRI operator of :func:`make_mri` (B = 1; ``depth`` frames with
    per-frame masks for a sequence), loss Σ |x|². ``case="mri_train_step"``:
    one MRI training step of :func:`make_mri_train_step` (``size``², ``batch``
    images, T = ``n_iter``, directional Λ).
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


def smooth_image(size: int, batch: int = 1, seed: int = 0, cell: int = 16) -> torch.Tensor:
    """A seeded smooth random (B, 1, N, N) image batch in [0, 1]: uniform noise on a coarse grid, upsampled bilinearly.

    The coarse grid has ⌈N / ``cell``⌉ + 1 points a side; bilinear weights are
    convex, so the values stay in [0, 1].
    """
    gen = torch.Generator().manual_seed(seed)
    coarse = -(-size // cell) + 1
    low = torch.rand(batch, 1, coarse, coarse, generator=gen)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=True).clamp_(0, 1)


def make_mri_train_step(impl: str, size: int = 256, n_iter: int = 128, batch: int = 1, directional: bool = True,
                        seed: int = 0, noise: float = 0.05, lr: float = 1e-4):
    """A closure ``step(iters=n_iter)`` running one MRI reconstruction training step; returns the loss.

    The model is ``ReconstructionNet("mri", n_iter=n_iter, directional=directional)``
    with its default U-Net (``UNet(in_channels=2)``, the seed's width: 32
    channels, depth 3), seeded weights, Adam (``lr``). The data are made once:
    a seeded smooth random clean batch in [0, 1] (:func:`smooth_image`,
    ``batch`` images of ``size``²), and single-coil Cartesian MRI simulated
    from it with :func:`tvfast.physics.mri.simulate_mri` (4× row mask, 8 %
    centre rows, smooth random phase, noise s = ``noise``; seeded generator);
    A = ``MaskedFFT(mask)``. One step is what the model's ``solve`` does,
    with the solver chosen by ``impl``::

        x₀ = model.start(y, A)                      Aᴴy, the zero-filled image
        Λ  = model.lambda_map(x₀)                   U-Net → (B, 2, N, N) when directional
        x  = solver(y, Λ, T, operator=A, x0=x₀.detach(), tau=τ, sigma=σ)
        loss = MSE(|x|, clean);  backward;  Adam step

    with τ = σ = 0.99/√(‖A‖² + 8) of the mask (as the model computes them,
    no power iteration) and the solver ``tvfast.pdhg(…, compile=True)`` for
    ``impl="tvfast"`` or ``pdhg_reference(…)`` for ``impl="reference"``, the
    same arguments for both. The whole step is timed: U-Net forward and
    backward, solver forward and backward, Adam.
    """
    import tvfast
    from tvfast.models.reconstruction_net import ReconstructionNet, mri_steps
    from tvfast.physics import MaskedFFT
    from tvfast.physics.mri import simulate_mri
    from tvfast.solver.reference import pdhg_reference

    if impl not in ("tvfast", "reference"):
        raise ValueError(f"impl: expected 'tvfast' or 'reference', got {impl!r}")
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's global RNG
        torch.manual_seed(seed)
        model = ReconstructionNet("mri", n_iter=n_iter, directional=directional)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    clean = smooth_image(size, batch, seed)
    data = simulate_mri(clean, noise, generator=torch.Generator().manual_seed(seed))
    y, operator = data.y, MaskedFFT(data.mask)
    steps = mri_steps(operator)

    def solve(y, lam, iters, x0):
        if impl == "tvfast":
            return tvfast.pdhg(y, lam, iters, operator=operator, x0=x0, compile=True, **steps)
        return pdhg_reference(y, lam, iters, operator=operator, x0=x0, **steps)

    def step(iters: int = n_iter):
        x0 = model.start(y, operator)
        lam = model.lambda_map(x0)
        x = solve(y, lam, iters, x0.detach())
        loss = torch.nn.functional.mse_loss(x.abs(), clean)
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
    parser.add_argument("--case", choices=["solver", "train_step", "mri", "mri_train_step"], default="solver")
    parser.add_argument("--image", default=None, help="train_step on this grayscale image at full resolution")
    parser.add_argument("--depth", type=int, default=None,
                        help="solver: volumes (B, 1, DEPTH, SIZE, SIZE) instead of images; mri: DEPTH frames")
    args = parser.parse_args(argv)
    if args.depth is not None and (args.case in ("train_step", "mri_train_step") or args.depth < 1):
        parser.error("--depth needs --case solver or mri and a depth >= 1")
    if args.image is not None and args.case != "train_step":
        parser.error("--image needs --case train_step")
    if args.case == "mri" and args.batch != 1:
        parser.error("--case mri runs one image or sequence: --batch must be 1")
    solve = solvers()[args.impl]
    # The warm-up runs 2 iterations, enough to compile the CPU path's steps
    # (tvfast's solver asks for compilation) but small enough that memory it
    # frees cannot hide the measured run's growth inside malloc's pools.
    if args.case == "train_step":
        run = make_train_step(solve, args.size, args.batch, args.iters, image=args.image)
    elif args.case == "mri_train_step":
        run = make_mri_train_step(args.impl, args.size, args.iters, args.batch)
    elif args.case == "mri":
        y, lam, operator = make_mri(args.size, frames=args.depth)
        solve = mri_solvers(operator)[args.impl]

        def run(iters: int = args.iters):
            mri_forward_backward(solve, y, lam, iters)
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
