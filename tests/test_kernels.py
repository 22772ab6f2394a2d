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
    x_k, states_k = launch.solve_forward(z.to(device), lam.to(device), n_iter, tau, sigma, 1.0, keep_states=True)
    x_k, states_k = x_k.cpu(), states_k.cpu()
    x_t, states_t = cpu.solve_forward(z, lam, n_iter, tau, sigma, 1.0, keep_states=True, compile=False)
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
    x2, states2 = launch.solve_forward(z, lam, n_iter, STEP3D, STEP3D, 1.0, keep_states=True)
    x3, states3 = launch.solve_forward(z[:, None], lam3, n_iter, STEP3D, STEP3D, 1.0, keep_states=True)
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
        launch.solve_forward(z, lam, 1, 0.3, 0.3, 1.0, keep_states=False)


def test_launcher_argument_errors(gen):
    z = torch.rand(2, 5, 6, generator=gen)
    with pytest.raises(ValueError, match=r"^z: expected a contiguous tensor"):
        launch.solve_forward(z.transpose(1, 2), torch.full((1, 1, 1, 1), 0.1), 1, 0.3, 0.3, 1.0, keep_states=False)
    with pytest.raises(ValueError, match=r"^lam: expected a 4-D tensor broadcastable to \(2, 2, 5, 6\) with 1 or 2"):
        launch.solve_forward(z, torch.full((1, 3, 1, 1), 0.1), 1, 0.3, 0.3, 1.0, keep_states=False)
    _, states = launch.solve_forward(z, torch.full((1, 1, 1, 1), 0.1), 2, 0.3, 0.3, 1.0, keep_states=True)
    message = r"^clip_states: expected uint8 of shape \(T, 2, 4, 3\) for grad_x of shape \(2, 4, 6\), got torch.uint8 "
    with pytest.raises(ValueError, match=message + r"\(2, 2, 5, 3\)"):
        launch.solve_backward(z[:, :4].contiguous(), states, 1, True, 0.3, 0.3, 1.0)
    with pytest.raises(ValueError, match=r"^lam_channels: expected 1 or 2, got 3"):
        launch.solve_backward(z, states, 3, True, 0.3, 0.3, 1.0)


class _IdentityData:
    """The denoising data term ½‖x − z‖² run by the caller (A = I): forward p ← (p + σ(x̄ − z))/(1+σ), returning
    Aᴴp; adjoint gp'' = gp − τa, gz −= σ/(1+σ)gp'', gp ← gp''/(1+σ), returning σ/(1+σ)gp''. ``strided``: hand the
    results back as non-contiguous views (the launcher then copies them)."""

    def __init__(self, z, sigma, tau=0.0, strided=False):
        self.z, self.sigma, self.tau, self.strided = z, sigma, tau, strided
        self.p = torch.zeros_like(z)
        self.gz = torch.zeros_like(z)
        self.inputs = []

    def _out(self, t):
        return t.mT.contiguous().mT if self.strided else t.clone()

    def forward(self, x_bar):
        self.inputs.append(x_bar.clone())
        self.p = (self.p + self.sigma * (x_bar - self.z)) / (1.0 + self.sigma)
        return self._out(self.p)

    def adjoint(self, a):
        self.inputs.append(a.clone())
        ratio = self.sigma / (1.0 + self.sigma)
        gp = self.p - self.tau * a  # self.p holds gp in the adjoint pass
        self.gz -= ratio * gp
        self.p = gp / (1.0 + self.sigma)
        return self._out(ratio * gp)


@pytest.mark.parametrize("shape", [(2, 5, 7), (1, 3, 67), (2, 3, 4, 5)], ids=["2d", "2d-two-tiles", "3d"])
@pytest.mark.parametrize("device", DEVICES)
def test_handed_in_data_step_reproduces_denoising(shape, device, gen):
    """``data_step`` with A = I: the DATA_STEP kernels, with the data term run in PyTorch, give the denoising
    kernels' x_T and clip states, and ∂ℓ/∂x₀ plus the data step's ∂ℓ/∂z is the denoising ∂ℓ/∂z; the PyTorch
    path with the same data step calls it with the same arguments."""
    n_axes = len(shape) - 1
    z = torch.rand(shape, generator=gen, dtype=torch.float64).to(device)
    lam = (0.02 + 0.2 * torch.rand(shape[0], n_axes, *shape[1:], generator=gen, dtype=torch.float64)).to(device)
    grad = torch.randn(shape, generator=gen, dtype=torch.float64).to(device)
    n_iter, tau, sigma, theta = 4, 0.25, 0.3, 0.8
    x_ref, states_ref = launch.solve_forward(z, lam, n_iter, tau, sigma, theta, keep_states=True)
    gz_ref, glam_ref = launch.solve_backward(grad, states_ref, n_axes, True, tau, sigma, theta)

    data = _IdentityData(z, sigma, strided=True)
    x, states = launch.solve_forward(z, lam, n_iter, tau, sigma, theta, keep_states=True, data_step=data.forward)
    assert torch.equal(states, states_ref)
    _assert_same(x, x_ref)
    data_bwd = _IdentityData(z, sigma, tau)
    g_start, glam = launch.solve_backward(grad, states, n_axes, True, tau, sigma, theta, data_step=data_bwd.adjoint)
    torch.testing.assert_close(g_start + data_bwd.gz, gz_ref, rtol=0, atol=1e-13)
    torch.testing.assert_close(glam, glam_ref, rtol=0, atol=1e-13)
    assert (g_start - gz_ref).abs().max() > 1e-3  # the data's share is the data step's, not the kernels'

    cpu_data, cpu_data_bwd = _IdentityData(z.cpu(), sigma), _IdentityData(z.cpu(), sigma, tau)
    x_cpu, states_cpu = cpu.solve_forward(z.cpu(), lam.cpu(), n_iter, tau, sigma, theta, keep_states=True,
                                          compile=False, data_step=cpu_data.forward)
    g_cpu, _ = cpu.solve_backward(grad.cpu(), states_cpu, n_axes, True, tau, sigma, theta, compile=False,
                                  data_step=cpu_data_bwd.adjoint)
    assert torch.equal(states.cpu(), states_cpu)
    assert len(data.inputs) == len(data_bwd.inputs) == n_iter
    for seen, seen_cpu in zip(data.inputs + data_bwd.inputs, cpu_data.inputs + cpu_data_bwd.inputs):
        torch.testing.assert_close(seen.cpu(), seen_cpu, rtol=0, atol=1e-13)
    torch.testing.assert_close(g_start.cpu(), g_cpu, rtol=0, atol=1e-13)


@pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need TRITON_INTERPRET=1")
def test_data_step_result_of_the_wrong_shape_is_refused(gen):
    z = torch.rand(2, 5, 6, generator=gen)
    lam = torch.full((1, 1, 1, 1), 0.1)
    with pytest.raises(ValueError, match=r"^data_step: expected a tensor of shape \(2, 5, 6\), got shape \(2, 5, 5\)"):
        launch.solve_forward(z, lam, 2, 0.3, 0.3, 1.0, keep_states=False, data_step=lambda x_bar: x_bar[..., :5])
    _, states = launch.solve_forward(z, lam, 2, 0.3, 0.3, 1.0, keep_states=True)
    with pytest.raises(ValueError, match=r"^data_step: expected a tensor of shape \(2, 5, 6\), got float"):
        launch.solve_backward(z, states, 1, True, 0.3, 0.3, 1.0, data_step=lambda a: 0.0)
