"""Speed and memory of two revisions of tvfast, measured in the same run.

Usage::

    python benchmarks/compare_revisions.py --base REV [--rounds 5] [--json out.json]

Every figure is measured in a fresh Python process that imports tvfast from
one revision's tree (``git worktree`` of ``--base`` against this working
tree, through ``PYTHONPATH``); the two revisions take turns (A B A B …), and
each row gives both medians and their ratio, so the comparison holds when the
machine's speed drifts. Only the public API is used (``tvfast.pdhg``, the
reference loop, the U-Net), so the script runs on older layouts too.

Rows (CPU):

* the op, 2-D 256², B = 1, T = 256, forward and forward+backward, compiled
  (``TVFAST_COMPILE=1``) and eager (``TVFAST_COMPILE=0``), median of 5 calls
  after 2 warm-up calls;
* the op, 3-D 16×64×64, T = 64, forward+backward, compiled;
* the peak of the resident set during one 256² forward+backward, above the
  resident set just before it;
* one training step (U-Net → Λ → op → MSE → Adam) at 256², T = 256, compiled;
* the first ``tvfast denoise`` of one 256² PNG in a fresh process with an
  empty compile cache, against ``python -c "import torch"``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PRELUDE = r"""
import json, os, resource, sys, time
import torch
torch.manual_seed(0)
import tvfast

def reference():
    try:
        from tvfast.solver.reference import pdhg_reference
    except ImportError:
        from tvfast.reference import pdhg_reference
    return pdhg_reference

def unet():
    try:
        from tvfast.models.unet import UNet
    except ImportError:
        from tvfast.unet import UNet
    return UNet()

def median_ms(fn, rounds=5, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(rounds):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    times.sort()
    return 1e3 * times[len(times) // 2]

def fwd(z, lam, T):
    with torch.no_grad():
        tvfast.pdhg(z, lam, T)

def fwd_bwd(z, lam, T):
    z = z.clone().requires_grad_(); lam = lam.clone().requires_grad_()
    tvfast.pdhg(z, lam, T).square().sum().backward()
"""

# name -> (environment, code printing one JSON number, unit)
_CASES = {
    "forward 256², T=256, compiled": ({"TVFAST_COMPILE": "1"}, r"""
z = torch.rand(1, 1, 256, 256); lam = 0.1 * torch.rand_like(z)
print(json.dumps(median_ms(lambda: fwd(z, lam, 256))))""", "ms"),
    "forward+backward 256², T=256, compiled": ({"TVFAST_COMPILE": "1"}, r"""
z = torch.rand(1, 1, 256, 256); lam = 0.1 * torch.rand_like(z)
print(json.dumps(median_ms(lambda: fwd_bwd(z, lam, 256))))""", "ms"),
    "forward 256², T=256, eager": ({"TVFAST_COMPILE": "0"}, r"""
z = torch.rand(1, 1, 256, 256); lam = 0.1 * torch.rand_like(z)
print(json.dumps(median_ms(lambda: fwd(z, lam, 256), rounds=3, warmup=1)))""", "ms"),
    "forward+backward 256², T=256, eager": ({"TVFAST_COMPILE": "0"}, r"""
z = torch.rand(1, 1, 256, 256); lam = 0.1 * torch.rand_like(z)
print(json.dumps(median_ms(lambda: fwd_bwd(z, lam, 256), rounds=3, warmup=1)))""", "ms"),
    "forward+backward 3-D 16×64×64, T=64, compiled": ({"TVFAST_COMPILE": "1"}, r"""
z = torch.rand(1, 1, 16, 64, 64); lam = 0.1 * torch.rand_like(z)
print(json.dumps(median_ms(lambda: fwd_bwd(z, lam, 64))))""", "ms"),
    "peak RSS growth, forward+backward 256², T=256": ({"TVFAST_COMPILE": "1"}, r"""
z = torch.rand(1, 1, 256, 256); lam = 0.1 * torch.rand_like(z)
fwd_bwd(z[..., :64, :64].contiguous(), lam[..., :64, :64].contiguous(), 2)
fwd_bwd(z, lam, 2)
page_kib = os.sysconf("SC_PAGE_SIZE") / 1024
before = int(open("/proc/self/statm").read().split()[1]) * page_kib  # resident now, KiB
fwd_bwd(z, lam, 256)
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024))""", "MiB"),
    "training step 256², T=256, compiled": ({"TVFAST_COMPILE": "1"}, r"""
net = unet(); opt = torch.optim.Adam(net.parameters(), lr=1e-4)
clean = torch.rand(1, 1, 256, 256); noisy = clean + 0.05 * torch.randn_like(clean)
def step():
    lam = 0.1 * torch.nn.functional.softplus(net(noisy)[:, :1])
    loss = (tvfast.pdhg(noisy, lam, 256) - clean).square().mean()
    opt.zero_grad(); loss.backward(); opt.step()
print(json.dumps(median_ms(step, rounds=3, warmup=1)))""", "ms"),
}


def _run(code: str, tree: Path, env: dict, timeout: float = 900) -> float:
    full_env = dict(os.environ, PYTHONPATH=str(tree), **env)
    out = subprocess.run([sys.executable, "-c", _PRELUDE + code], env=full_env, capture_output=True, text=True,
                         timeout=timeout, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise RuntimeError(f"case failed in {tree}:\n{out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1]))


def _first_denoise_s(tree: Path, image: Path, out_dir: Path) -> float:
    """Wall seconds of one whole ``tvfast denoise`` process with an empty compile cache."""
    import time

    code = ("import sys\n"
            "try:\n    from tvfast.cli.main import main\n"
            "except ImportError:\n    from tvfast.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    with tempfile.TemporaryDirectory() as cache:
        target = out_dir / f"out_{time.monotonic_ns()}.png"
        env = dict(os.environ, PYTHONPATH=str(tree), TORCHINDUCTOR_CACHE_DIR=cache)
        env.pop("TVFAST_COMPILE", None)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, "denoise", str(image), "-o", str(target)], env=env, check=True,
                       capture_output=True, cwd=tempfile.gettempdir())
        return time.perf_counter() - start


def _import_torch_s() -> float:
    import time

    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def machine() -> str:
    from tvfast.evaluation.report import processor_name
    import torch

    return f"{processor_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, Python {platform.python_version()}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare this working tree with")
    parser.add_argument("--rounds", type=int, default=3, help="processes per case and revision (medians)")
    parser.add_argument("--cases", default="", help="only the cases whose name contains this text")
    parser.add_argument("--json", default=None, help="write the rows here as JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")

    with tempfile.TemporaryDirectory() as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base_tree), args.base],
                       check=True)
        try:
            rows = _measure(args, {"base": base_tree, "this tree": ROOT}, Path(tmp))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)
    header = f"machine: {machine()}; base = {args.base}; medians of {args.rounds} processes each, taken in turn"
    print(header)
    print("| case | base | this tree | this tree / base |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['base']:.4g} {row['unit']} | {row['this tree']:.4g} {row['unit']} "
              f"| {row['ratio']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "base": args.base, "rows": rows}, indent=1))
    return 0


def _measure(args, trees: dict, tmp: Path) -> list[dict]:
    import numpy as np
    from PIL import Image

    image = tmp / "scan.png"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((256, 256)) * 255).astype(np.uint8)).save(image)
    rows = []
    cases = {k: v for k, v in _CASES.items() if args.cases in k}
    for case, (env, code, unit) in cases.items():
        values = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                values[name].append(_run(code, tree, env))
        rows.append(_row(case, unit, values))
        print(f"  {case}: {rows[-1]}", file=sys.stderr)
    first_call = "first tvfast denoise, 256², empty compile cache"
    if args.cases in first_call:
        values = {name: [] for name in trees}
        torch_import = []
        for _ in range(args.rounds):
            torch_import.append(_import_torch_s())
            for name, tree in trees.items():
                values[name].append(_first_denoise_s(tree, image, tmp))
        rows.append(_row(first_call, "s", values))
        rows.append(_row('python -c "import torch"', "s", {name: torch_import for name in trees}))
    return rows


def _row(case: str, unit: str, values: dict) -> dict:
    base, this = (statistics.median(v) for v in values.values())
    return {"case": case, "unit": unit, "base": base, "this tree": this, "ratio": this / base if base else float("nan"),
            "runs": {k: v for k, v in values.items()}}


if __name__ == "__main__":
    raise SystemExit(main())
