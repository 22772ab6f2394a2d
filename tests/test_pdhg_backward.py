"""Gradients of tvfast.pdhg (the mask-based backward of docs/method.md §4) against autograd of the reference."""

import pytest
import torch

import tvfast
from tvfast.solver.clip_states import HIGH, LOW
from tvfast.solver.reference import pdhg_reference_iterates

pytestmark = pytest.mark.usefixtures("nan_empty")

BACKENDS = ("numba", "torch", "triton")
SHAPES = [(2, 13, 10), (1, 1, 17), (3, 17, 1), (2, 33, 65), (1, 70, 20)]


def _n_iter(backend):
    return 8 if backend == "triton" else 30


def _compare_gradients(backend, z, lam, n_iter, run_reference, tolerances, grad_z=True, grad_lam=True, steps=None):
    """Run both, backprop one random cotangent, compare the gradients by name."""
    steps = steps or {}
    dtype = z.dtype
    z_ours = z.clone().requires_grad_(grad_z)
    z_ref = z.clone().requires_grad_(grad_z)
    lam_is_tensor = torch.is_tensor(lam)
    lam_ours = lam.clone().requires_grad_(grad_lam) if lam_is_tensor else lam
    lam_ref = lam.clone().requires_grad_(grad_lam) if lam_is_tensor else lam

    x = tvfast.pdhg(z_ours, lam_ours, n_iter, backend=backend, **steps)
    x_ref = run_reference(z_ref, lam_ref, n_iter, **steps)
    cotangent = torch.randn(x.shape, dtype=dtype)
    x.backward(cotangent)
    x_ref.backward(cotangent)

    atol, rtol = tolerances["backward"][dtype]
    checked = 0
    for name, ours, ref in (("z", z_ours, z_ref), ("Lambda", lam_ours, lam_ref)):
        if not torch.is_tensor(ours) or not ours.requires_grad:
            if torch.is_tensor(ours):
                assert ours.grad is None, f"{name} does not require grad but got one"
            continue
        assert ours.grad is not None, f"no gradient for {name}"
        assert ours.grad.shape == ours.shape and ours.grad.dtype == ours.dtype, name
        assert not torch.isnan(ours.grad).any(), f"NaN in the gradient of {name}"
        torch.testing.assert_close(ours.grad, ref.grad, atol=atol, rtol=rtol, msg=lambda m: f"grad {name}: {m}")
        checked += 1
    assert checked == int(grad_z) + int(grad_lam and lam_is_tensor)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lambda_layouts(backend, tensor_lambda_kind, gen, lambda_factory, run_reference, tolerances):
    """Shared / broadcast Λ must receive the sum over batch, directions and broadcast pixels."""
    batch, height, width = 3, 13, 10
    z = torch.rand(batch, 1, height, width, generator=gen)
    lam = lambda_factory(tensor_lambda_kind, batch, height, width, generator=gen)
    _compare_gradients(backend, z, lam, _n_iter(backend), run_reference, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_float_lambda(backend, gen, run_reference, tolerances):
    z = torch.rand(2, 1, 9, 8, generator=gen)
    _compare_gradients(backend, z, 0.07, _n_iter(backend), run_reference, tolerances, grad_lam=False)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_image_sizes(backend, shape, gen, lambda_factory, run_reference, tolerances):
    batch, height, width = shape
    z = torch.rand(batch, 1, height, width, generator=gen)
    lam = lambda_factory("b2hw", batch, height, width, generator=gen)
    _compare_gradients(backend, z, lam, _n_iter(backend), run_reference, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", ["z_only", "lambda_only"])
def test_only_one_input_requires_grad(backend, which, gen, run_reference, tolerances):
    z = torch.rand(2, 1, 9, 11, generator=gen)
    lam = 0.02 + 0.2 * torch.rand(1, 2, 9, 11, generator=gen)
    _compare_gradients(backend, z, lam, _n_iter(backend), run_reference, tolerances,
                       grad_z=which == "z_only", grad_lam=which == "lambda_only")  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["per_batch", "b1hw", "b2hw"])
def test_float64(backend, kind, gen, lambda_factory, run_reference, tolerances):
    z = torch.rand(2, 1, 9, 7, generator=gen, dtype=torch.float64)
    lam = lambda_factory(kind, 2, 9, 7, dtype=torch.float64, generator=gen)
    _compare_gradients(backend, z, lam, _n_iter(backend), run_reference, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_default_steps(backend, gen, run_reference, tolerances):
    z = torch.rand(2, 1, 8, 9, generator=gen, dtype=torch.float64)
    lam = 0.02 + 0.2 * torch.rand(2, 2, 8, 9, generator=gen, dtype=torch.float64)
    steps = dict(tau=0.2, sigma=0.5, theta=0.5)
    _compare_gradients(backend, z, lam, _n_iter(backend), run_reference, tolerances, steps=steps)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["hw", "bhw"])
def test_z_layouts(backend, layout, gen, run_reference, tolerances):
    z = torch.rand(7, 9, generator=gen) if layout == "hw" else torch.rand(2, 7, 9, generator=gen)
    lam = 0.02 + 0.2 * torch.rand(7, 9, generator=gen)
    _compare_gradients(backend, z, lam, 6, run_reference, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs_and_expanded_cotangent(backend, gen, run_reference, tolerances):
    """Transposed z and Λ leaves; loss = x.sum() gives an expanded (stride-0) cotangent."""
    batch, height, width = 2, 10, 7
    z_base = torch.rand(batch, 1, width, height, generator=gen)
    lam_base = 0.02 + 0.2 * torch.rand(batch, 2, width, height, generator=gen)
    grads = []
    for run in ("ours", "ref"):
        zt = z_base.clone().requires_grad_()
        lt = lam_base.clone().requires_grad_()
        z, lam = zt.transpose(-1, -2), lt.transpose(-1, -2)
        if run == "ours":
            x = tvfast.pdhg(z, lam, 6, backend=backend)
        else:
            x = run_reference(z, lam, 6)
        (x.sum() + (x * x).sum()).backward()
        grads.append((zt.grad, lt.grad))
    atol, rtol = tolerances["backward"][torch.float32]
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=atol, rtol=rtol)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_lambda_gradient_wrt_z_is_identity(backend, gen):
    """Λ = 0 makes x_T = z, and every clip is HIGH/LOW: ∂x_T/∂z = I."""
    z = torch.rand(2, 1, 5, 6, generator=gen, requires_grad=True)
    x = tvfast.pdhg(z, 0.0, 4, backend=backend)
    cotangent = torch.randn(x.shape, generator=gen)
    x.backward(cotangent)
    torch.testing.assert_close(z.grad, cotangent, atol=1e-6, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_n_iter_zero_gradient(backend, gen):
    z = torch.rand(1, 1, 4, 5, generator=gen, requires_grad=True)
    lam = torch.full((1, 1, 4, 5), 0.1, requires_grad=True)
    x = tvfast.pdhg(z, lam, 0, backend=backend)
    x.backward(torch.ones_like(x))
    assert torch.equal(z.grad, torch.ones_like(z))
    assert lam.grad is None or torch.equal(lam.grad, torch.zeros_like(lam))


def test_gradient_flows_back_through_lambda_dtype_cast(gen, run_reference, tolerances):
    """A float64 Λ with float32 z: the gradient returns to Λ in float64."""
    z = torch.rand(2, 1, 6, 7, generator=gen)
    lam = (0.02 + 0.2 * torch.rand(2, 2, 6, 7, generator=gen)).double().requires_grad_()
    x = tvfast.pdhg(z, lam, 10, backend="torch")
    x.backward(torch.ones_like(x))
    assert lam.grad.dtype == torch.float64
    lam_ref = lam.detach().float().requires_grad_()
    run_reference(z, lam_ref, 10).backward(torch.ones_like(x))
    torch.testing.assert_close(lam.grad.float(), lam_ref.grad, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------
# gradcheck (finite differences, float64), away from clip ties
# ---------------------------------------------------------------------------


def _tie_margin(z, lam, n_iter):
    """min over iterations and entries of min(|u − Λ|, |u + Λ|) along the reference iteration."""
    lam = lam.expand(z.shape[0], 2, *z.shape[-2:])
    margin = float("inf")
    branches = set()
    for state in pdhg_reference_iterates(z, lam, n_iter):
        u = state.u
        margin = min(margin, float(torch.minimum((u - lam).abs(), (u + lam).abs()).min()))
        if (u >= lam).any():
            branches.add(HIGH)
        if (u <= -lam).any():
            branches.add(LOW)
    return margin, branches


@pytest.mark.parametrize("lam_shape, seed", [((1, 2, 5, 6), 7), ((2, 1, 5, 6), 7), ((2,), 1)])
def test_gradcheck_torch_backend(lam_shape, seed):
    gen = torch.Generator().manual_seed(seed)  # seeds chosen so that no entry is within 1e-4 of a tie
    n_iter = 5
    z = torch.rand(2, 1, 5, 6, generator=gen, dtype=torch.float64)
    lam = 0.05 + 0.1 * torch.rand(lam_shape, generator=gen, dtype=torch.float64)
    lam4 = lam.reshape(-1, 1, 1, 1) if lam.dim() == 1 else lam
    margin, branches = _tie_margin(z, lam4, n_iter)
    assert margin > 1e-4, "inputs too close to a clip tie for finite differences; pick another seed"
    assert {HIGH, LOW} <= branches  # the clipped branches (hence ∂/∂Λ) are exercised
    z.requires_grad_()
    lam.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda z, lam: tvfast.pdhg(z, lam, n_iter, backend="torch"), (z, lam), eps=1e-6, atol=1e-6, rtol=1e-5
    )


def test_gradcheck_triton_backend():
    gen = torch.Generator().manual_seed(3)
    n_iter = 3
    z = torch.rand(1, 1, 3, 4, generator=gen, dtype=torch.float64)
    lam = 0.05 + 0.1 * torch.rand(1, 2, 3, 4, generator=gen, dtype=torch.float64)
    margin, branches = _tie_margin(z, lam, n_iter)
    assert margin > 1e-4, "inputs too close to a clip tie for finite differences; pick another seed"
    assert {HIGH, LOW} <= branches
    z.requires_grad_()
    lam.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda z, lam: tvfast.pdhg(z, lam, n_iter, backend="triton"), (z, lam), eps=1e-6, atol=1e-6, rtol=1e-5
    )
