"""The ski-rental start of the fused CPU kernels (tvfast.solver.start_policy) and the plain loop it rents."""

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
