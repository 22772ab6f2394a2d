"""Turn a pytest-benchmark JSON file into the ratio table of RESULTS.md.

    python -m pytest benchmarks --benchmark-json=bench.json
    python benchmarks/report.py bench.json

For every group holding a ``tvfast`` and a ``reference`` case, prints one
Markdown row: the two medians and their ratio (reference / tvfast), and for
memory groups the peak extra RSS and its ratio.
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


def other_rows(data: dict) -> list[str]:
    """Groups without a tvfast/reference pair: one row per case."""
    out = ["| group | case | median | peak extra RSS | peak RSS |", "|---|---|---|---|---|"]
    for bench in data["benchmarks"]:
        impls = {_impl(b) for b in data["benchmarks"] if b["group"] == bench["group"]}
        if {"tvfast", "reference"} <= impls:
            continue
        info = bench["extra_info"]
        out.append(f"| {bench['group']} | {bench['name'].split('[')[-1].rstrip(']')} "
                   f"| {bench['stats']['median'] * 1e3:.1f} ms "
                   f"| {_mib(info['peak_extra_bytes']) if 'peak_extra_bytes' in info else ''} "
                   f"| {_mib(info['peak_rss_bytes']) if 'peak_rss_bytes' in info else ''} |")
    return out


def rows(data: dict) -> list[str]:
    groups = defaultdict(dict)
    for bench in data["benchmarks"]:
        groups[bench["group"]][_impl(bench)] = bench
    out = ["| case | reference | tvfast | ratio |", "|---|---|---|---|"]
    for group, impls in groups.items():
        if not {"tvfast", "reference"} <= impls.keys():
            continue
        ref, fast = impls["reference"], impls["tvfast"]
        if "peak_extra_bytes" in fast["extra_info"]:
            r, f = ref["extra_info"]["peak_extra_bytes"], fast["extra_info"]["peak_extra_bytes"]
            out.append(f"| {group} (peak extra RSS) | {r / 2**20:.1f} MiB | {f / 2**20:.1f} MiB | {r / max(f, 1):.1f}× less |")
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
    print()
    print("\n".join(rows(data)))
    others = other_rows(data)
    if len(others) > 2:
        print()
        print("\n".join(others))


if __name__ == "__main__":
    main()
