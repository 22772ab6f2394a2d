"""One-minute check that a tvfast.pdhg backend agrees with the reference loop on the GPU.

Forward and both gradients, float64, odd sizes, B = 2, per-pixel 2-channel Λ,
T = 30. Prints the largest differences; exits 1 on a mismatch or an error, so a
script can fall back to another backend (``experiments/gpu_train.sh`` does).

Usage: ``python benchmarks/cuda_check.py [triton|torch] [cuda|cpu]`` (``cpu`` with
``TRITON_INTERPRET=1`` tries the script itself without a GPU).
"""

from __future__ import annotations

import sys
import traceback

import torch

import tvfast
from tvfast.solver.reference import pdhg_reference


def check(backend: str, device: str = "cuda") -> bool:
    gen = torch.Generator(device=device).manual_seed(0)
    z = torch.rand(2, 1, 37, 53, generator=gen, device=device, dtype=torch.float64).requires_grad_()
    lam = (0.02 + 0.2 * torch.rand(2, 2, 37, 53, generator=gen, device=device, dtype=torch.float64)).requires_grad_()
    cot = torch.randn(2, 1, 37, 53, generator=gen, device=device, dtype=torch.float64)
    results = {}
    for name, solve in (("ref", lambda a, b: pdhg_reference(a, b, 30)),
                        (backend, lambda a, b: tvfast.pdhg(a, b, 30, backend=backend))):
        x = solve(z, lam)
        gz, glam = torch.autograd.grad(x, (z, lam), cot)
        results[name] = (x.detach(), gz, glam)
    ok = True
    for i, what in enumerate(("x", "grad_z", "grad_Lambda")):
        err = (results["ref"][i] - results[backend][i]).abs().max().item()
        print(f"{backend}: max |{what} - reference| = {err:.2e}")
        ok &= err < 1e-9
    return ok


if __name__ == "__main__":
    backend = sys.argv[1] if len(sys.argv) > 1 else "triton"
    try:
        good = check(backend, sys.argv[2] if len(sys.argv) > 2 else "cuda")
    except Exception:  # report and let the caller fall back
        traceback.print_exc()
        good = False
    print(f"{backend}: {'OK' if good else 'FAILED'}")
    sys.exit(0 if good else 1)
