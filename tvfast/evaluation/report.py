"""What every evaluation and benchmark writes: the machine's name, mean ± std, CSV text, and the files of a run.

One writer for the outputs of ``tvfast evaluate`` (every task), so that each
folder has the same layout: ``per_image.csv`` (or another table name),
``results.md`` and ``summary.json``, written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from pathlib import Path

import numpy as np

from tvfast.io.atomic import atomic_write_text

__all__ = ["machine_name", "processor_name", "mean_std", "csv_text", "write_results"]


def processor_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``, else ``platform``)."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown CPU"


def machine_name() -> str:
    """The CPU's model name and its CPU and thread counts, as every row of a table names the machine."""
    import torch

    return f"{processor_name()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads"


def mean_std(values) -> tuple[float, float]:
    """Mean and (population) standard deviation of ``values``."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std())


def csv_text(rows: list[dict], columns: list[str]) -> str:
    """``rows`` as CSV with a header of ``columns`` (floats to 6 significant digits, booleans as 0/1)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else int(v) if isinstance(v, bool) else v)
                         for k, v in r.items() if k in columns})
    return buf.getvalue()


def write_results(out: str | os.PathLike, *, tables: dict[str, tuple[list[dict], list[str]]], markdown: str,
                  summary: dict) -> Path:
    """Write an evaluation's files into ``out`` (made if needed), each atomically.

    ``tables`` maps a CSV file name to its (rows, columns); ``markdown`` goes
    to ``results.md`` and ``summary`` to ``summary.json``. Returns ``out``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, (rows, columns) in tables.items():
        atomic_write_text(out / name, csv_text(rows, columns))
    atomic_write_text(out / "results.md", markdown if markdown.endswith("\n") else markdown + "\n")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return out
