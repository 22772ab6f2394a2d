"""The Triton kernels' own contract.

Their clip-state codes are the solver's, they record the same states as the
PyTorch path (ties included), the 2-D and 3-D kernels agree on a volume of
depth 1, and the launcher refuses shapes the kernels cannot address. The
kernel tests run on CPU tensors through the interpreter (so sizes stay tiny)
and, on a CUDA machine with ``TRITON_INTERPRET=0``, compiled (ids ``cuda``).
"""

import math
import os

import pytest
import torch

from tvfast.kernels import common, launch
from tvfast.solver import clip_states, cpu
from tvfast.solver.clip_states import HIGH, INSIDE, LOW, unpack_nibbles

pytestmark = pytest.mark.usefixtures("nan_empty")

STEP3D = 1.0 / math.sqrt(13.0)
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need TRITON_INTERPRET=1")),
    pytest.param("cuda", marks=pytest.mark.skipif(INTERPRETED or not torch.cuda.is_available(),
                                                  reason="needs CUDA and compiled kernels")),
]


def test_state_codes_are_the_solvers():
    assert (common.INSIDE.value, common.HIGH.value, common.LOW.value) == (
        clip_states.INSIDE, clip_states.HIGH, clip_states.LOW)
    assert common.STATE_FIELD.value == (1 << common.STATE_BITS.value) - 1
    assert max(INSIDE, HIGH, LOW) <= common.STATE_FIELD.value
    assert tuple(c * common.STATE_BITS.value for c in range(3)) == cpu.STATE_SHIFTS


def _tie_problem(shape):
    """z ∈ {0, 1} and σ = 1/2, so u = σ∇z ∈ {0, ±1/2} exactly; Λ ∈ {0, 1/2, 0.3}: exact ties u = ±Λ,
    ties at Λ = 0 and strict branches all occur."""
    index = torch.stack(torch.meshgrid(*[torch.arange(n) for n in shape], indexing="ij")).sum(0)
    z = (index % 2).double() * (torch.arange(shape[-1]) % 3 != 1).double()
    lam = torch.tensor([0.0, 0.5, 0.3], dtype=torch.float64)[(index * 7 % 5) % 3]
    return z.contiguous(), lam


@pytest.mark.parametrize("shape", [(2, 5, 7), (1, 3, 67), (2, 3, 4, 5), (1, 2, 3, 67)],
                         ids=["2d", "2d-two-tiles", "3d", "3d-two-tiles"])  # fmt: skip
@pytest.mark.parametrize("device", DEVICES)
def test_kernels_record_the_cpu_paths_states(shape, device):
    """The kernels and the PyTorch path write the same records, byte for byte, over several iterations."""
    z, lam_map = _tie_problem(shape)
    n_axes = z.dim() - 1
    lam = torch.stack([lam_map, lam_map.flip(-1), lam_map.flip(-2)][:n_axes], dim=1)  # one map per direction
    n_iter, tau, sigma = 3, 0.2, 0.5
    x_k, states_k = launch.solve_forward(z.to(device), lam.to(device), n_iter, tau, sigma, 1.0, need_mask=True)
    x_k, states_k = x_k.cpu(), states_k.cpu()
    x_t, states_t = cpu.solve_forward(z, lam, n_iter, tau, sigma, 1.0, need_mask=True, compile=False)
    assert states_k.dtype == states_t.dtype == torch.uint8
    assert states_k.shape == states_t.shape
    assert torch.equal(states_k, states_t)
    torch.testing.assert_close(x_k, x_t, atol=1e-12, rtol=0)
    records = unpack_nibbles(states_k, shape[-1]) if n_axes == 2 else states_k
    codes = torch.cat([(records >> (c * common.STATE_BITS.value)) & common.STATE_FIELD.value for c in range(n_axes)])
    assert set(codes.unique().tolist()) == {INSIDE, HIGH, LOW}


def _assert_same(a, b):
    """Bit for bit under the interpreter; compiled, the two kernels may contract a·b + c into FMAs differently."""
    if a.is_cuda:
        torch.testing.assert_close(a, b, atol=1e-13, rtol=0)
    else:
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_2d_and_3d_kernels_agree_on_depth_one(gen, device):
    """A (B, 1, H, W) volume has ∂_D = 0, so q₀ stays 0 (INSIDE) and the 3-D kernels must reproduce the 2-D ones."""
    batch, height, width, n_iter = 2, 6, 9, 4
    z = torch.rand(batch, height, width, generator=gen, dtype=torch.float64).to(device)
    lam = (0.02 + 0.2 * torch.rand(batch, 2, height, width, generator=gen, dtype=torch.float64)).to(device)
    lam3 = torch.cat([torch.full_like(lam[:, :1], 0.1), lam], dim=1)[:, :, None]  # (B, 3, 1, H, W)
    x2, states2 = launch.solve_forward(z, lam, n_iter, STEP3D, STEP3D, 1.0, need_mask=True)
    x3, states3 = launch.solve_forward(z[:, None], lam3, n_iter, STEP3D, STEP3D, 1.0, need_mask=True)
    _assert_same(x3[:, 0], x2)
    assert states3.shape == (n_iter, batch, 1, height, width)
    assert torch.equal(states3[:, :, 0] & common.STATE_FIELD.value, torch.zeros_like(states3[:, :, 0]))  # INSIDE
    assert torch.equal(states3[:, :, 0] >> common.STATE_BITS.value, unpack_nibbles(states2, width))

    grad = torch.randn(batch, height, width, generator=gen, dtype=torch.float64).to(device)
    gz2, glam2 = launch.solve_backward(grad, states2, 2, True, STEP3D, STEP3D, 1.0)
    gz3, glam3 = launch.solve_backward(grad[:, None].contiguous(), states3, 3, True, STEP3D, STEP3D, 1.0)
    _assert_same(gz3[:, 0], gz2)
    _assert_same(glam3[:, 1:, 0], glam2)
    assert torch.equal(glam3[:, 0], torch.zeros_like(glam3[:, 0]))


@pytest.mark.parametrize("shape, message", [
    ((1, 2**16, 2**15), r"^z: one image may hold at most 2\*\*31 - 1 elements"),
    ((1, 2**11, 2**10, 2**10), r"^z: one volume may hold at most 2\*\*31 - 1 elements"),
    ((65536, 2, 2), r"^z: the Triton kernels take at most 65535 images per call"),
    ((1, 65536, 2, 2), r"^z: the Triton kernels take at most 65535 volumes per call and 65535 slices"),
    ((4, 4), r"^z: expected \(B, H, W\) images or \(B, D, H, W\) volumes, got shape \(4, 4\)"),
])  # fmt: skip
def test_launcher_refuses_shapes_the_kernels_cannot_address(shape, message):
    z = torch.empty(shape, device="meta")  # checked before anything is allocated or launched
    lam = torch.empty(1, 1, *[1] * (len(shape) - 1), device="meta")
    with pytest.raises(ValueError, match=message):
        launch.solve_forward(z, lam, 1, 0.3, 0.3, 1.0, need_mask=False)


def test_launcher_argument_errors(gen):
    z = torch.rand(2, 5, 6, generator=gen)
    with pytest.raises(ValueError, match=r"^z: expected a contiguous tensor"):
        launch.solve_forward(z.transpose(1, 2), torch.full((1, 1, 1, 1), 0.1), 1, 0.3, 0.3, 1.0, need_mask=False)
    with pytest.raises(ValueError, match=r"^lam: expected a 4-D tensor broadcastable to \(2, 2, 5, 6\) with 1 or 2"):
        launch.solve_forward(z, torch.full((1, 3, 1, 1), 0.1), 1, 0.3, 0.3, 1.0, need_mask=False)
    _, states = launch.solve_forward(z, torch.full((1, 1, 1, 1), 0.1), 2, 0.3, 0.3, 1.0, need_mask=True)
    message = r"^clip_states: expected uint8 of shape \(T, 2, 4, 3\) for grad_x of shape \(2, 4, 6\), got torch.uint8 "
    with pytest.raises(ValueError, match=message + r"\(2, 2, 5, 3\)"):
        launch.solve_backward(z[:, :4].contiguous(), states, 1, True, 0.3, 0.3, 1.0)
    with pytest.raises(ValueError, match=r"^lam_channels: expected 1 or 2, got 3"):
        launch.solve_backward(z, states, 3, True, 0.3, 0.3, 1.0)
