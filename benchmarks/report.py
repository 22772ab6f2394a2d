"""Turn a pytest-benchmark JSON file into the ratio table of RESULTS.md.

    python -m pytest benchmarks --benchmark-json=bench.json
    python benchmarks/report.py bench.json

For every group holding a ``tvfast`` and a ``reference`` case, prints one
Markdown row: the two medians and their ratio (reference / tvfast), and for
memory groups the peak extra RSS and its ratio. The size × batch grid of
``test_scaling.py`` becomes one table, a row per (size, batch).
"""

from __future__ import annotations

import json
import platform
import sys
from collections import defaultdict

import torch


def _impl(bench: dict) -> str:
    return (bench.get("params") or {}).get("impl", bench["name"])


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def grid_rows(data: dict) -> list[str]:
    """The size × batch grid: time of forward and forward+backward, peak extra RSS."""
    cells = defaultdict(dict)
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if "grid" in info:
            cells[(info["size"], info["batch"])][(info["grid"], _impl(bench))] = bench
    if not cells:
        return []
    out = ["| size | B | forward: reference | tvfast | ratio | forward+backward: reference | tvfast | ratio "
           "| peak extra RSS: reference | tvfast | ratio |", "|---|---|" + "---|" * 9]
    for (size, batch), cell in sorted(cells.items()):
        parts = []
        for kind in ("forward", "forward+backward", "memory"):
            ref, fast = cell.get((kind, "reference")), cell.get((kind, "tvfast"))
            if kind == "memory":
                r = ref and ref["extra_info"]["peak_extra_bytes"]
                f = fast and fast["extra_info"]["peak_extra_bytes"]
                fmt, word = _mib, "less"
            else:
                r = ref and ref["stats"]["median"]
                f = fast and fast["stats"]["median"]
                fmt, word = _ms, "faster"
            parts += [fmt(r) if r is not None else "not run", fmt(f) if f is not None else "not run",
                      f"{r / max(f, 1e-12):.1f}× {word}" if r is not None and f is not None else ""]
        out.append(f"| {size}² | {batch} | " + " | ".join(parts) + " |")
    return out


_INFO_COLUMNS = (("step_seconds", "step", _ms), ("bound_ratio", "× bandwidth bound", lambda v: f"{v:.2f}"),
                 ("roofline_fraction", "of the roofline", lambda v: f"{100 * v:.0f} %"))


def other_rows(data: dict) -> list[str]:
    """Groups without a tvfast/reference pair: one row per case."""
    out = ["| group | case | median | peak extra RSS | peak RSS | notes |", "|---|---|---|---|---|---|"]
    for bench in data["benchmarks"]:
        impls = {_impl(b) for b in data["benchmarks"] if b["group"] == bench["group"]}
        if {"tvfast", "reference"} <= impls or "grid" in bench["extra_info"]:
            continue
        info = bench["extra_info"]
        out.append(f"| {bench['group']} | {bench['name'].split('[')[-1].rstrip(']')} "
                   f"| {bench['stats']['median'] * 1e3:.1f} ms "
                   f"| {_mib(info['peak_extra_bytes']) if 'peak_extra_bytes' in info else ''} "
                   f"| {_mib(info['peak_rss_bytes']) if 'peak_rss_bytes' in info else ''} "
                   f"| {', '.join(f'{label} {fmt(info[key])}' for key, label, fmt in _INFO_COLUMNS if key in info)} |")
    return out


def rows(data: dict) -> list[str]:
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"]][_impl(bench)] = bench
    out = ["| case | reference | tvfast | ratio |", "|---|---|---|---|"]
    for group, impls in groups.items():
        if not {"tvfast", "reference"} <= impls.keys() or "grid" in impls["tvfast"]["extra_info"]:
            continue
        ref, fast = impls["reference"], impls["tvfast"]
        if "peak_extra_bytes" in fast["extra_info"]:
            r, f = ref["extra_info"]["peak_extra_bytes"], fast["extra_info"]["peak_extra_bytes"]
            what = "peak extra GPU memory" if "device" in fast["extra_info"] else "peak extra RSS"
            out.append(f"| {group} ({what}) | {r / 2**20:.1f} MiB | {f / 2**20:.1f} MiB | {r / max(f, 1):.1f}× less |")
        else:
            r, f = ref["stats"]["median"], fast["stats"]["median"]
            out.append(f"| {group} (median) | {r * 1e3:.1f} ms | {f * 1e3:.1f} ms | {r / f:.1f}× faster |")
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        data = json.load(f)
    machine = data.get("machine_info", {})
    print(f"Machine: {machine.get('cpu', {}).get('brand_raw', platform.processor())}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, python {platform.python_version()}")
    devices = sorted({b["extra_info"]["device"] for b in data["benchmarks"] if "device" in b["extra_info"]})
    if devices:
        print(f"GPU: {', '.join(devices)}")
    print()
    paired = rows(data)
    if len(paired) > 2:
        print("\n".join(paired))
    grid = grid_rows(data)
    if grid:
        print()
        print("\n".join(grid))
    others = other_rows(data)
    if len(others) > 2:
        print()
        print("\n".join(others))


if __name__ == "__main__":
    main()
