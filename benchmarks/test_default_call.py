"""The default call is never slower than the plain loop: every case of ``default_call.py``, same run, fresh process.

Run explicitly (``python -m pytest benchmarks/test_default_call.py``); each
case runs in a new process, so the first call and the kernel cache are
those a user meets. Ratios, not times: the machine's load hits both sides.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from default_call import DEFAULT_RUNS  # noqa: E402


@pytest.mark.parametrize("case, threads", DEFAULT_RUNS, ids=[f"{c}-{t}threads" for c, t in DEFAULT_RUNS])
def test_default_call_is_not_slower_than_the_plain_loop(case, threads):
    out = subprocess.run([sys.executable, str(HERE / "default_call.py"), "--case", case, "--threads", str(threads),
                          "--rounds", "3"], capture_output=True, text=True, check=True)
    rows = [r for r in json.loads(out.stdout.strip().splitlines()[-1]) if "speedup" in r]
    assert {r["pass"] for r in rows} == {"forward", "forward+backward"}
    for row in rows:
        assert row["speedup"] >= 1.0, row
