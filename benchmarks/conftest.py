"""Benchmarks are run explicitly: ``python -m pytest benchmarks --benchmark-json=bench.json``.

Each comparison puts tvfast and the reference loop in one pytest-benchmark
*group* in the same process; ``benchmarks/report.py`` turns the JSON into
ratio-of-medians rows for RESULTS.md.
"""
