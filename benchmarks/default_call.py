"""The call users make: ``tvfast.pdhg`` with no flag, in a fresh process, against the plain PyTorch loop.

    python benchmarks/default_call.py [--rounds 5] [--with-compile] [--out benchmarks/default_call_cpu.json]

Every case runs in its own new process (``--case NAME --threads N``), which

1. imports tvfast and times the **first** default call (Numba's on-disk
   kernel cache warm: a user's second session), then
2. alternates the default call and the plain loop (the reference loop,
   :func:`tvfast.solver.reference.pdhg_reference`: the same maths in plain
   PyTorch ops, differentiated by autograd) for ``--rounds`` rounds after one
   warm-up each, and reports both medians and their ratio;
3. for the 2-D case, times scikit-image's Chambolle TV (scalar weight,
   T iterations) against the default call with the same scalar λ; with
   ``--with-compile``, adds ``compile=True`` (the torch.compile path, after
   its compilation) as an extra row.

Separately, one process with an empty kernel cache (a fresh
``NUMBA_CACHE_DIR``) times the first 2-D forward+backward — what a new
install pays once; its kernels compile in a background process meanwhile,
and the row also says when the first call on them finished; and the whole ``tvfast denoise`` of one 256² PNG takes
turns with ``python -c "import torch"`` (whole processes, medians). Loss L = Σ x² (Σ |x|² for MRI); gradients with respect to
the data and Λ. Every row names the machine and the threads it ran on.

Cases (Λ a per-pixel map):

* ``2d``: one 256² image, T = 256;
* ``3d``: a 32 × 128² volume, T = 128;
* ``mri``: single-coil Cartesian MRI 256², ``MaskedFFT`` with a 4× row mask, T = 256.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = {"2d": (256, 256), "3d": (128, 128), "mri": (256, 256)}  # name: (size, T)
DEFAULT_RUNS = [("2d", 1), ("2d", 2), ("3d", 2), ("mri", 1)]


def _problem(case: str):
    import torch

    if case == "2d":
        gen = torch.Generator().manual_seed(0)
        return torch.rand(1, 1, 256, 256, generator=gen), 0.1 * torch.rand(1, 1, 256, 256, generator=gen), None
    if case == "3d":
        gen = torch.Generator().manual_seed(0)
        z = torch.rand(1, 1, 32, 128, 128, generator=gen)
        return z, 0.1 * torch.rand(1, 1, 32, 128, 128, generator=gen), None
    sys.path.insert(0, str(HERE))
    from harness import make_mri

    y, lam, operator = make_mri(256)
    return y, lam, operator


def _call(solve, data, lam, n_iter, grad: bool) -> None:
    """One forward, or one forward+backward of L = Σ |x|² with respect to the data and Λ."""
    import torch

    if not grad:
        with torch.no_grad():
            solve(data, lam, n_iter)
        return
    d = data.clone().requires_grad_()
    m = lam.clone().requires_grad_()
    solve(d, m, n_iter).abs().square().sum().backward()


def run_case(case: str, threads: int, rounds: int, with_compile: bool) -> list[dict]:
    """The rows of one case, measured in this process (call it in a fresh one)."""
    import torch

    torch.set_num_threads(threads)
    start = time.perf_counter()
    import tvfast
    from tvfast.cli.bench import paired_medians
    from tvfast.evaluation.report import machine_name
    from tvfast.solver.reference import pdhg_reference

    data, lam, operator = _problem(case)
    n_iter = CASES[case][1]
    kw = {} if operator is None else {"operator": operator}
    impls = {"default": lambda d, m, t: tvfast.pdhg(d, m, t, **kw),
             "plain loop": lambda d, m, t: pdhg_reference(d, m, t, **kw)}
    if with_compile:
        impls["compile=True"] = lambda d, m, t: tvfast.pdhg(d, m, t, compile=True, **kw)
    first_start = time.perf_counter()
    _call(impls["default"], data, lam, n_iter, grad=False)
    first = time.perf_counter() - first_start
    import_s = first_start - start
    machine = machine_name()
    rows = []
    for grad in (False, True):
        # one warm-up each (the compilation for compile=True), then alternating rounds
        med = paired_medians(lambda solve: _call(solve, data, lam, n_iter, grad), impls, rounds)
        for name in impls:
            if name == "plain loop":
                continue
            rows.append({"case": case, "pass": "forward+backward" if grad else "forward", "impl": name,
                         "threads": threads, "n_iter": n_iter, "median_s": med[name],
                         "plain_loop_s": med["plain loop"], "speedup": med["plain loop"] / med[name],
                         "machine": machine, "torch": torch.__version__})
    if case == "2d":
        rows.append(_skimage_row(data, threads, rounds, machine=machine))
    rows.append({"case": case, "pass": "first call (forward)", "impl": "default", "threads": threads,
                 "n_iter": n_iter, "median_s": first, "import_s": import_s, "machine": machine,
                 "torch": torch.__version__})
    return rows


def _skimage_row(data, threads, rounds, machine) -> dict:
    """scikit-image's Chambolle TV, 256 iterations, scalar weight, forward only (its own peer: no Λ map)."""
    import torch
    import tvfast
    from skimage.restoration import denoise_tv_chambolle
    from tvfast.cli.bench import paired_medians

    img = data[0, 0].numpy()
    impls = {"skimage": lambda: denoise_tv_chambolle(img, weight=0.1, eps=0.0, max_num_iter=256),
             "default": lambda: _call(lambda d, m, t: tvfast.pdhg(d, m, t), data, 0.1, 256, grad=False)}
    med = paired_medians(lambda run: run(), impls, rounds)
    return {"case": "2d", "pass": "forward, scalar λ", "impl": "default vs scikit-image denoise_tv_chambolle",
            "threads": threads, "n_iter": 256, "median_s": med["default"], "skimage_s": med["skimage"],
            "speedup_vs_skimage": med["skimage"] / med["default"], "machine": machine, "torch": torch.__version__}


def first_call_empty_cache(threads: int = 2) -> dict:
    """Seconds of the first 2-D forward+backward in a new process whose kernel cache is empty, and of the calls
    after it until the kernels, compiled meanwhile in a background process, run (the first such call included)."""
    code = ("import time, torch; torch.set_num_threads(%d); t0 = time.perf_counter(); import tvfast; "
            "from tvfast.solver import fused; "
            "z = torch.rand(1, 1, 256, 256, requires_grad=True); lam = torch.full((1, 1, 256, 256), 0.1, "
            "requires_grad=True); step = lambda: tvfast.pdhg(z, lam, 256).square().sum().backward(); step(); "
            "first = time.perf_counter() - t0; calls = 0\n"
            "while fused.compiling(): step(); calls += 1\n"
            "t1 = time.perf_counter(); step(); print(first, time.perf_counter() - t0, calls, "
            "time.perf_counter() - t1)" % threads)
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    from tvfast.evaluation.report import machine_name

    first, ready, calls, kernel_call = out.stdout.split()[-4:]
    return {"case": "2d", "pass": "first call, empty kernel cache (import + forward+backward)", "impl": "default",
            "threads": threads, "n_iter": 256, "median_s": float(first),
            "kernels_running_after_s": float(ready), "calls_while_compiling": int(calls),
            "first_kernel_call_s": float(kernel_call), "machine": machine_name()}


def denoise_command_row(rounds: int = 5) -> dict:
    """The whole ``tvfast denoise`` of one 256² PNG (the bundled X-ray, the shipped model) against
    ``python -c "import torch"``: whole processes, taking turns, medians of ``rounds`` pairs."""
    import statistics

    from tvfast.evaluation.report import machine_name

    image = HERE.parent / "tvfast" / "data" / "chest_xray_IM-0129-0001.png"
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out.png"
        commands = {"import torch": [sys.executable, "-c", "import torch"],
                    "tvfast denoise": [sys.executable, "-c", "import sys; from tvfast.cli.main import main; "
                                       f"sys.exit(main(['denoise', {str(image)!r}, '-o', {str(target)!r}, "
                                       "'--force']))"]}
        times = {name: [] for name in commands}
        for _ in range(rounds + 1):  # the first pair warms the file cache and is dropped
            for name, cmd in commands.items():
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, cwd=tmp)
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(values[1:]) for name, values in times.items()}
    return {"case": "2d", "pass": "whole tvfast denoise of one 256² PNG (shipped model) vs python -c 'import torch'",
            "impl": "default", "threads": os.cpu_count(), "n_iter": 256, "median_s": med["tvfast denoise"],
            "import_torch_s": med["import torch"], "ratio_to_import_torch": med["tvfast denoise"] / med["import torch"],
            "machine": machine_name()}


def train_step_rows(rounds: int = 3) -> list[dict]:
    """The seed model's training step (U-Net → Λ → solver → MSE → backward → Adam), 256², T = 256, one process:
    the default call (now) against ``compile=True`` (what the trainer asked for before: the torch.compile path,
    timed after its compilation) and the plain loop."""
    import functools

    import torch
    import tvfast
    from tvfast.cli.bench import paired_medians
    from tvfast.evaluation.report import machine_name
    from tvfast.solver.reference import pdhg_reference

    sys.path.insert(0, str(HERE))
    from harness import make_train_step

    steps = {"default": make_train_step(tvfast.pdhg, 256),
             "compile=True (before)": make_train_step(functools.partial(tvfast.pdhg, compile=True), 256),
             "plain loop": make_train_step(pdhg_reference, 256)}
    med = paired_medians(lambda step: step(), steps, rounds)  # the warm-up holds compile=True's compilation
    return [{"case": "training step 256²", "pass": "U-Net → Λ → solver → MSE → Adam", "impl": name,
             "threads": torch.get_num_threads(), "n_iter": 256, "median_s": med[name],
             "plain_loop_s": med["plain loop"], "speedup": med["plain loop"] / med[name], "machine": machine_name(),
             "torch": torch.__version__} for name in steps if name != "plain loop"]


def table(rows: list[dict]) -> str:
    lines = ["| case | pass | tvfast | threads | tvfast time | plain loop | speed-up | machine |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        plain = f"{r['plain_loop_s'] * 1e3:.1f} ms" if "plain_loop_s" in r else ""
        if "ratio_to_import_torch" in r:
            plain = f"{r['import_torch_s'] * 1e3:.0f} ms (import torch)"
            ratio = f"{r['ratio_to_import_torch']:.2f}× import torch"
        elif "speedup" in r:
            ratio = f"{r['speedup']:.1f}×"
        elif "speedup_vs_skimage" in r:
            ratio = f"{r['speedup_vs_skimage']:.1f}× vs scikit-image ({r['skimage_s'] * 1e3:.1f} ms)"
        else:
            ratio = f"{r['median_s'] / r['plain_loop_s']:.1f} plain-loop calls" if "plain_loop_s" in r else ""
        lines.append(f"| {r['case']} | {r['pass']} | {r['impl']} | {r['threads']} | {r['median_s'] * 1e3:.1f} ms "
                     f"| {plain} | {ratio} | {r['machine']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=tuple(CASES), help="run one case in this process and print JSON rows")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--with-compile", action="store_true", help="add compile=True and scikit-image rows")
    parser.add_argument("--out", type=Path, help="write the JSON rows here")
    parser.add_argument("--train-step", action="store_true", help="only the training-step rows, in this process")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds, --threads: expected positive integers")
    if args.case:
        print(json.dumps(run_case(args.case, args.threads, args.rounds, args.with_compile)))
        return 0
    if args.train_step:
        rows = train_step_rows(args.rounds)
        print(table(rows))
        if args.out:
            _write(args.out, rows)
        return 0
    rows = []
    for case, threads in DEFAULT_RUNS:
        cmd = [sys.executable, __file__, "--case", case, "--threads", str(threads), "--rounds", str(args.rounds)]
        if args.with_compile:
            cmd.append("--with-compile")
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows += json.loads(out.stdout.strip().splitlines()[-1])
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    rows.append(first_call_empty_cache())
    rows.append(denoise_command_row(args.rounds))
    print(table(rows))
    if args.out:
        _write(args.out, rows)
    return 0


def _write(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
