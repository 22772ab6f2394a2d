"""GPU: launch overhead and several iterations per launch (issue: CUDA graphs and temporal blocking).

    python benchmarks/gpu_launches.py [--out DIR]      # run by benchmarks/gpu.sh

Rows (float32, Λ map, T = 256, medians of 5 CUDA-event timings after a
warm-up; every row names the device):

* B = 1, 256²: the eager forward, the forward replayed from a captured CUDA
  graph, and forward+backward eager and as graphed callables
  (``torch.cuda.make_graphed_callables``); targets ≤ 1.0 ms and ≤ 3 ms;
* B = 64, 256²: the one-step kernels (``tvfast.kernels.launch``) against the
  blocked ones (``tvfast.kernels.blocked``) at K = 2, 4, 8, forward and
  forward+backward, and a plain PyTorch loop whose step is ``torch.compile``d;
  targets: forward ≤ 12 ms and ≥ 1.5× the compiled loop, forward+backward
  ≥ 3× it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def _time_ms(fn, rounds: int = 5) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _problem(batch: int, size: int = 256):
    import torch

    gen = torch.Generator().manual_seed(0)
    z = torch.rand(batch, 1, size, size, generator=gen).cuda()
    lam = (0.1 * torch.rand(batch, 1, size, size, generator=gen)).cuda()
    return z, lam


def graph_rows(device: str) -> list[dict]:
    import torch

    import tvfast

    z, lam = _problem(1)
    rows = [{"case": "B=1 256² forward", "impl": "eager", "ms": _time_ms(lambda: tvfast.pdhg(z, lam, 256))}]
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            tvfast.pdhg(z, lam, 256)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        tvfast.pdhg(z, lam, 256)
    rows.append({"case": "B=1 256² forward", "impl": "CUDA graph replay", "ms": _time_ms(graph.replay)})

    zg, lamg = z.clone().requires_grad_(), lam.clone().requires_grad_()

    def eager_step():
        tvfast.pdhg(zg, lamg, 256).square().sum().backward()

    rows.append({"case": "B=1 256² forward+backward", "impl": "eager", "ms": _time_ms(eager_step)})
    graphed = torch.cuda.make_graphed_callables(lambda a, b: tvfast.pdhg(a, b, 256), (zg, lamg))

    def graphed_step():
        graphed(zg, lamg).square().sum().backward()

    rows.append({"case": "B=1 256² forward+backward", "impl": "graphed callable", "ms": _time_ms(graphed_step)})
    return [dict(r, device=device) for r in rows]


def blocked_rows(device: str) -> list[dict]:
    import torch

    from tvfast.kernels import blocked, launch

    z, lam = _problem(64)
    z3, lam4 = z[:, 0].contiguous(), lam
    grad = torch.ones_like(z3)
    step = 1 / 3
    rows = []

    def one_forward():
        launch.solve_forward(z3, lam4, 256, step, step, 1.0, keep_states=False)

    def one_both():
        _, states = launch.solve_forward(z3, lam4, 256, step, step, 1.0, keep_states=True)
        launch.solve_backward(grad, states, 1, True, step, step, 1.0)

    rows.append({"case": "B=64 256² forward", "impl": "one step per launch", "ms": _time_ms(one_forward)})
    rows.append({"case": "B=64 256² forward+backward", "impl": "one step per launch", "ms": _time_ms(one_both)})
    for k in (2, 4, 8):
        def blk_forward(k=k):
            blocked.solve_forward(z3, lam4, 256, step, step, 1.0, keep_states=False, iterations_per_launch=k)

        def blk_both(k=k):
            _, states = blocked.solve_forward(z3, lam4, 256, step, step, 1.0, keep_states=True,
                                              iterations_per_launch=k)
            blocked.solve_backward(grad, states, 1, True, step, step, 1.0, iterations_per_launch=k)

        rows.append({"case": "B=64 256² forward", "impl": f"blocked K={k}", "ms": _time_ms(blk_forward)})
        rows.append({"case": "B=64 256² forward+backward", "impl": f"blocked K={k}", "ms": _time_ms(blk_both)})

    rows.append(_compiled_loop_row(z, lam))
    return [dict(r, device=device) for r in rows]


def _compiled_loop_row(z, lam) -> dict:
    """A plain PDHG loop whose iteration is one ``torch.compile``d function (the user's own fast loop)."""
    import torch

    step = 1 / 3

    def iteration(x, x_bar, p, q0, q1):
        p = (p + step * (x_bar - z)) / (1 + step)
        u0 = q0 + step * (torch.roll(x_bar, -1, -2) - x_bar)
        u1 = q1 + step * (torch.roll(x_bar, -1, -1) - x_bar)
        q0, q1 = torch.clamp(u0, -lam, lam), torch.clamp(u1, -lam, lam)
        div = (torch.roll(q0, 1, -2) - q0) + (torch.roll(q1, 1, -1) - q1)
        x_new = x - step * p - step * div
        return x_new, 2 * x_new - x, p, q0, q1

    compiled = torch.compile(iteration)

    def run():
        state = (z, z, torch.zeros_like(z), torch.zeros_like(z), torch.zeros_like(z))
        for _ in range(256):
            state = compiled(*state)
        return state[0]

    return {"case": "B=64 256² forward", "impl": "plain loop, torch.compile'd step", "ms": _time_ms(run)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for gpu_launches.json")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_launches.py: needs a CUDA GPU", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name()
    rows = []
    for part in (graph_rows, blocked_rows):
        try:
            rows += part(device)
        except Exception as exc:  # one failing part must not hide the other's rows
            rows.append({"case": part.__name__, "impl": "failed", "error": repr(exc), "device": device})
    for r in rows:
        print(f"| {r['case']} | {r['impl']} | {r.get('ms', float('nan')):.2f} ms | {r['device']} |"
              + (f" {r['error']}" if "error" in r else ""))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_launches.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
