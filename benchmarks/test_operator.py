"""tvfast.pdhg with a forward operator against the reference loop: undersampled single-coil MRI.

The operator is ``tvfast.physics.MaskedFFT`` with a 4× row mask (the ≈ 8 %
lowest-frequency rows and random rows; :func:`harness.frame_masks`), the image
complex, Λ a per-pixel map requiring grad, the loss Σ |x|² (docs/method.md
§10). Both implementations run in this process on the same inputs and the
same operator object (so the power iteration for ‖A‖ is shared), one
pytest-benchmark group per case; memory is the peak extra RSS of one
forward+backward in a fresh process (``python benchmarks/harness.py --case mri``).

* 256², T = 256: forward, forward+backward, memory;
* (x, y, t) sequence 16 × 128 × 128 with per-frame masks, T = 128:
  forward+backward and memory;
* one MRI training step at 256², T = 128 (:func:`harness.make_mri_train_step`:
  ``ReconstructionNet("mri", directional=True)``'s default U-Net on the
  zero-filled image → Λ → PDHG with the operator → MSE of |x| → backward →
  Adam), the same model with either solver: time, and peak extra RSS of one
  step after a warm-up step in a fresh process
  (``python benchmarks/harness.py --case mri_train_step``).

The same-run targets (≥ 5× faster and ≥ 10× less memory for the 256²
forward+backward) are asserted in ``test_targets.py``.

    python -m pytest benchmarks/test_operator.py --benchmark-json=operator.json
    python benchmarks/report.py operator.json
"""

from __future__ import annotations

import pytest

from harness import make_mri, make_mri_train_step, mri_forward, mri_forward_backward, mri_solvers, probe_memory

IMPLS = ("tvfast", "reference")
RUNS = {"forward": mri_forward, "forward+backward": mri_forward_backward}

# (size, frames or None, T, rounds)
IMAGE = (256, None, 256, 3)
SEQUENCE = (128, 16, 128, 1)


def _case_name(size, frames, n_iter):
    shape = f"{size}x{size}" if frames is None else f"{frames}x{size}x{size}"
    return f"mri {shape} T={n_iter}"


def _record(benchmark, kind, case):
    size, frames, n_iter, _ = case
    benchmark.group = f"{_case_name(size, frames, n_iter)} {kind}"
    benchmark.extra_info.update(case="mri", kind=kind, size=size, frames=frames, iters=n_iter, acceleration=4)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", list(RUNS))
@pytest.mark.parametrize("case", [pytest.param(IMAGE, id="256x256", marks=pytest.mark.quick),
                                  pytest.param(SEQUENCE, id="16x128x128")])
def test_time(benchmark, case, kind, impl):
    size, frames, n_iter, rounds = case
    if frames is not None and kind == "forward":
        pytest.skip("sequences: forward+backward only")
    _record(benchmark, kind, case)
    y, lam, operator = make_mri(size, frames=frames)
    solve = mri_solvers(operator)[impl]
    benchmark.pedantic(RUNS[kind], args=(solve, y, lam, n_iter), rounds=rounds, warmup_rounds=1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", [pytest.param(IMAGE, id="256x256", marks=pytest.mark.quick),
                                  pytest.param(SEQUENCE, id="16x128x128")])
def test_memory_forward_backward(benchmark, case, impl):
    """Peak extra RSS of one forward+backward in a fresh process (extra_info)."""
    size, frames, n_iter, _ = case
    _record(benchmark, "memory", case)
    result = benchmark.pedantic(probe_memory, args=(impl, size, 1, n_iter, "mri"), kwargs={"depth": frames},
                                rounds=1, iterations=1)
    benchmark.extra_info["peak_extra_bytes"] = result["extra_bytes"]
    benchmark.extra_info["probe_seconds"] = result["seconds"]


# One training step: (size, T, timed rounds per impl after one warm-up round; a reference step takes seconds).
TRAIN_STEP = (256, 128, {"tvfast": 3, "reference": 3})
TRAIN_GROUP = f"mri train step {TRAIN_STEP[0]}x{TRAIN_STEP[0]} T={TRAIN_STEP[1]}"


def _record_train_step(benchmark, kind):
    size, n_iter, _ = TRAIN_STEP
    benchmark.group = TRAIN_GROUP if kind == "time" else f"{TRAIN_GROUP} {kind}"
    benchmark.extra_info.update(case="mri_train_step", kind=kind, size=size, batch=1, iters=n_iter, acceleration=4,
                                directional=True)


@pytest.mark.parametrize("impl", IMPLS)
def test_train_step_time(benchmark, impl):
    """One step: U-Net → Λ → PDHG with MaskedFFT (T = 128) → MSE of |x| → backward → Adam, 256², B = 1."""
    size, n_iter, rounds = TRAIN_STEP
    _record_train_step(benchmark, "time")
    step = make_mri_train_step(impl, size, n_iter)
    benchmark.pedantic(step, rounds=rounds[impl], warmup_rounds=1)


@pytest.mark.parametrize("impl", IMPLS)
def test_train_step_memory(benchmark, impl):
    """Peak extra RSS of one training step after a warm-up step, in a fresh process (extra_info)."""
    size, n_iter, _ = TRAIN_STEP
    _record_train_step(benchmark, "memory")
    result = benchmark.pedantic(probe_memory, args=(impl, size, 1, n_iter, "mri_train_step"), rounds=1, iterations=1)
    benchmark.extra_info["peak_extra_bytes"] = result["extra_bytes"]
    benchmark.extra_info["probe_seconds"] = result["seconds"]
