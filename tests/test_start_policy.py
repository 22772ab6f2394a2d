"""Starting the fused CPU kernels: the ski rental of a command (tvfast.solver.start_policy), the plain loop it
rents, and the background compilation of a machine's first solves (tvfast.solver.fused)."""

import os
import subprocess
import sys

import pytest
import torch

from tvfast.solver import cpu, start_policy
from tvfast.solver.start_policy import FusedStart


def test_rents_the_plain_loop_until_the_start_would_have_been_cheaper():
    started = []
    account = FusedStart(on_start=lambda: started.append(1))
    one = 256 * 256 * 256 * start_policy.PLAIN_S_PER_PIXEL_ITERATION[2]  # one 256² image, T = 256
    fits = int(start_policy.START_S // one)
    assert fits >= 1  # one such image is cheaper on the plain loop than starting the fused kernels
    assert [account.backend(256 * 256, 256) for _ in range(fits)] == ["torch"] * fits
    assert started == []
    assert account.backend(256 * 256, 256) == "auto"
    assert started == [1]
    assert account.backend(16, 1) == "auto"  # bought: never rents again
    assert started == [1]
    assert account.rent_s == pytest.approx(fits * one)


def test_large_solves_float64_and_loaded_kernels_start_at_once():
    assert FusedStart().backend(1024 * 1024, 256) == "auto"  # 0.94 s of plain loop
    assert FusedStart().backend(32 * 128 * 128, 128, spatial_dims=3) == "torch"
    assert FusedStart().backend(64 * 128 * 128, 128, spatial_dims=3) == "auto"
    assert FusedStart().backend(256 * 256, 1500, element_size=4) == "torch"  # 0.34 s
    assert FusedStart().backend(256 * 256, 1500, element_size=8) == "auto"  # float64 counts twice
    assert FusedStart(fused_loaded=True).backend(1, 1) == "auto"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="spatial_dims: expected 2 or 3, got 4"):
        FusedStart().backend(10, 10, spatial_dims=4)
    with pytest.raises(ValueError, match="pixels, n_iter"):
        FusedStart().backend(-1, 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", ["2d-two-maps", "2d-shared-scalar", "2d-batch-shared", "3d-three-maps", "3d-one-map"])
def test_plain_forward_is_the_steps_bit_for_bit(case, dtype, gen):
    """The plain loop (no clip states) gives x_T bit for bit as the steps that record clip states: the same
    arithmetic in the same order, so a model's inference and its training forward agree exactly."""
    shapes = {"2d-two-maps": ((2, 13, 10), (2, 2, 13, 10)), "2d-shared-scalar": ((3, 8, 9), (1, 1, 1, 1)),
              "2d-batch-shared": ((3, 11, 7), (1, 2, 11, 7)), "3d-three-maps": ((2, 5, 6, 7), (2, 3, 5, 6, 7)),
              "3d-one-map": ((1, 4, 9, 5), (1, 1, 4, 9, 5))}
    z_shape, lam_shape = shapes[case]
    z = torch.rand(z_shape, generator=gen, dtype=dtype)
    lam = 0.2 * torch.rand(lam_shape, generator=gen, dtype=dtype)
    step = 1 / 3 if len(z_shape) == 3 else 13 ** -0.5
    z_before = z.clone()
    x = cpu.plain_forward(z, lam, 17, step, step, 1.0)
    assert torch.equal(z, z_before)  # the input is never written
    x_steps, states = cpu.solve_forward(z, lam, 17, step, step, 1.0, keep_states=True, compile=False)
    assert states is not None
    assert torch.equal(x, x_steps)


_FIRST_SOLVES = r"""
import sys, time, torch
import tvfast
from tvfast.solver import fused
from tvfast.solver import fused_kernels as k

gen = torch.Generator().manual_seed(0)
z = torch.rand(2, 1, 24, 20, generator=gen, dtype=torch.float64)
lam = 0.1 * torch.rand(2, 2, 24, 20, generator=gen, dtype=torch.float64)

def solve():
    zz, ll = z.clone().requires_grad_(), lam.clone().requires_grad_()
    x = tvfast.pdhg(zz, ll, 30)
    x.square().sum().backward()
    return x.detach(), zz.grad, ll.grad

first = solve()
print("compiling after the first solve:", fused.compiling())
print("kernels in this process:", len(k.run2d_states.overloads) + len(k.adjoint_run2d.overloads))
deadline = time.time() + 240
while fused.compiling() and time.time() < deadline:
    time.sleep(0.2)
later = solve()
print("kernels in this process:", len(k.run2d_states.overloads) + len(k.adjoint_run2d.overloads))
print("same bits:", all(torch.equal(a, b) for a, b in zip(first, later)))
"""


def test_first_solves_on_a_new_machine_run_while_a_child_compiles_the_kernels(tmp_path):
    """With an empty kernel cache the first solve (forward and backward) runs on the PyTorch steps while a child
    process compiles the kernels into the cache; the solve after the child is done runs the kernels, loaded from
    the cache, and gives the same bits (x and both gradients)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _FIRST_SOLVES], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines == ["compiling after the first solve: True", "kernels in this process: 0",
                     "kernels in this process: 2", "same bits: True"], r.stdout
    assert any(name.endswith(".nbi") for _, _, files in os.walk(tmp_path / "cache") for name in files)

def test_without_background_compilation_the_first_solve_compiles_in_the_process(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    code = _FIRST_SOLVES.replace("first = solve()", "fused.compile_in_background = False\nfirst = solve()")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["compiling after the first solve: False", "kernels in this process: 2"]


def test_the_first_solve_of_a_process_keeps_torchs_thread_count():
    """Numba's threading layer, started by the first solve, shares OpenMP with torch: torch's count stays as set."""
    code = ("import torch; torch.set_num_threads(1); import tvfast\n"
            "z = torch.rand(1, 1, 128, 128)\n"
            "tvfast.pdhg(z, 0.1, 4); print(torch.get_num_threads())\n"
            "z.requires_grad_(); tvfast.pdhg(z, 0.1, 4).sum().backward(); print(torch.get_num_threads())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1"]
