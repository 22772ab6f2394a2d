"""Benchmarks are run explicitly: ``python -m pytest benchmarks --benchmark-json=bench.json``.

Each comparison puts tvfast and the reference loop in one pytest-benchmark
*group* in the same process; ``benchmarks/report.py`` turns the JSON into
ratio-of-medians rows for RESULTS.md.

``--quick`` keeps only the cases marked ``quick`` (about 2 minutes): the
256² targets, a few grid points, the training step and the bandwidth bound.

``benchmarks/`` is not an installed package: this file puts it on
``sys.path`` so that the suite's files import ``from harness import …``.
"""

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", help="run only the benchmarks marked quick")


def pytest_configure(config):
    config.addinivalue_line("markers", "quick: part of the --quick subset")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--quick"):
        return
    kept = [item for item in items if item.get_closest_marker("quick")]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
