"""Isotropic TV and learnable step sizes (docs/method.md §12): the recompute backward against autograd in float64.

Every solve here is compared with the plain reference loop
(:func:`tvfast.solver.reference.pdhg_reference`) differentiated by autograd:
x and every gradient within 1e-8.
"""

import math

import pytest
import torch

import tvfast
from tvfast.physics import Blur, MaskedFFT
from tvfast.solver.recompute import run_forward, segment_length
from tvfast.solver.reference import pdhg_reference

TOL = 1e-8
BACKENDS = ["numba", "torch", "triton"]  # "triton" runs in Triton's interpreter here (tests/conftest.py)


def _max_diff(a, b) -> float:
    return (a - b).abs().max().item()


def _loss(x, w):
    return (x * w).real.sum() if x.is_complex() else (x * w).sum()


def _compare(inputs: dict, solve, reference, tol=TOL):
    """x and the gradient of ⟨w, x⟩ with respect to every input that requires grad, tvfast against the reference."""
    leaves = {k: v for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.requires_grad}
    x = solve(**inputs)
    w = torch.randn_like(x)
    grads = torch.autograd.grad(_loss(x, w), list(leaves.values()))
    x_ref = reference(**inputs).reshape(x.shape)
    grads_ref = torch.autograd.grad(_loss(x_ref, w), list(leaves.values()))
    assert _max_diff(x, x_ref) < tol
    for name, g, g_ref in zip(leaves, grads, grads_ref):
        assert g.shape == leaves[name].shape, name
        assert _max_diff(g, g_ref) < tol * max(1.0, g_ref.abs().max().item()), name
    return x


def _steps(n_iter: int, per_iteration: bool, spatial_dims: int = 2):
    base = 1.0 / math.sqrt(9.0 if spatial_dims == 2 else 13.0)
    if per_iteration:
        gen = torch.Generator().manual_seed(1)
        tau = base * (0.8 + 0.2 * torch.rand(n_iter, generator=gen, dtype=torch.float64))
        sigma = base * (0.8 + 0.2 * torch.rand(n_iter, generator=gen, dtype=torch.float64))
        theta = 0.7 + 0.3 * torch.rand(n_iter, generator=gen, dtype=torch.float64)
    else:
        tau, sigma, theta = (torch.tensor(v, dtype=torch.float64) for v in (0.9 * base, base, 0.85))
    return {"tau": tau.requires_grad_(), "sigma": sigma.requires_grad_(), "theta": theta.requires_grad_()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lam_shape", [(), (2,), (2, 1, 12, 18), (1, 1, 12, 18), (12, 18)])
@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_isotropic_images_match_autograd(backend, lam_shape, boundary):
    z = torch.rand(2, 1, 12, 18, dtype=torch.float64, requires_grad=True)
    lam = (0.1 * torch.rand(lam_shape, dtype=torch.float64)).requires_grad_()
    _compare(
        {"z": z, "Lambda": lam},
        lambda z, Lambda: tvfast.pdhg(z, Lambda, 30, tv="isotropic", backend=backend, boundary=boundary),
        lambda z, Lambda: pdhg_reference(z, Lambda.reshape(-1, 1, 1, 1) if Lambda.dim() == 1 else Lambda, 30,
                                         tv="isotropic", boundary=boundary),
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_isotropic_volumes_match_autograd(backend, boundary):
    z = torch.rand(2, 1, 5, 7, 9, dtype=torch.float64, requires_grad=True)
    lam = (0.1 * torch.rand(1, 1, 5, 7, 9, dtype=torch.float64)).requires_grad_()
    _compare(
        {"z": z, "Lambda": lam},
        lambda z, Lambda: tvfast.pdhg(z, Lambda, 25, tv="isotropic", backend=backend, boundary=boundary),
        lambda z, Lambda: pdhg_reference(z, Lambda, 25, tv="isotropic", boundary=boundary),
    )


@pytest.mark.parametrize("tv", ["anisotropic", "isotropic"])
@pytest.mark.parametrize("per_iteration", [False, True])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_learnable_steps_match_autograd(tv, per_iteration, spatial_dims):
    shape = (2, 1, 10, 14) if spatial_dims == 2 else (1, 1, 4, 6, 8)
    n_iter = 20
    z = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    channels = spatial_dims if tv == "anisotropic" else 1
    lam = (0.1 * torch.rand(1, channels, *shape[2:], dtype=torch.float64)).requires_grad_()
    _compare(
        {"z": z, "Lambda": lam, **_steps(n_iter, per_iteration, spatial_dims)},
        lambda z, Lambda, tau, sigma, theta: tvfast.pdhg(z, Lambda, n_iter, tv=tv, tau=tau, sigma=sigma, theta=theta),
        lambda z, Lambda, tau, sigma, theta: pdhg_reference(z, Lambda, n_iter, tau, sigma, theta, tv=tv),
    )


@pytest.mark.parametrize("tv, backend", [("anisotropic", "auto"), ("isotropic", "auto"), ("isotropic", "triton")])
@pytest.mark.parametrize("learnable", [False, True])
def test_mri_reconstruction_matches_autograd(tv, backend, learnable):
    gen = torch.Generator().manual_seed(3)
    operator = MaskedFFT(torch.rand(12, 16, generator=gen) < 0.4)
    y = operator(torch.rand(2, 1, 12, 16, generator=gen, dtype=torch.complex128)).requires_grad_()
    x0 = torch.rand(2, 1, 12, 16, generator=gen, dtype=torch.complex128).requires_grad_()
    lam = (0.05 * torch.rand(1, 1, 12, 16, generator=gen, dtype=torch.float64)).requires_grad_()
    steps = _steps(18, per_iteration=True) if learnable else {}
    if learnable:  # 1/3 suits ‖K‖² = ‖A‖² + 8 = 9 for this unitary-masked operator
        steps = {k: v.detach().mul(0.99).requires_grad_() for k, v in steps.items()}
    _compare(
        {"y": y, "Lambda": lam, "x0": x0, **steps},
        lambda y, Lambda, x0, **s: tvfast.pdhg(y, Lambda, 18, operator=operator, x0=x0, tv=tv, backend=backend, **s),
        lambda y, Lambda, x0, **s: pdhg_reference(y, Lambda, 18, operator=operator, x0=x0, tv=tv,
                                                  tau=s.get("tau", _default_operator_step(operator, x0)),
                                                  sigma=s.get("sigma", _default_operator_step(operator, x0)),
                                                  theta=s.get("theta", 1.0)),
    )


def _default_operator_step(operator, x0):
    from tvfast.physics import operator_norm
    from tvfast.solver.arguments import operator_step

    return operator_step(operator_norm(operator, x0.detach()), 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_real_operator_isotropic_matches_autograd(backend):
    operator = Blur(torch.tensor([[0.0, 0.2, 0.0], [0.2, 0.2, 0.2], [0.0, 0.2, 0.0]], dtype=torch.float64))
    clean = torch.rand(1, 1, 14, 14, dtype=torch.float64)
    y = operator(clean).detach().requires_grad_()
    lam = torch.tensor(0.03, dtype=torch.float64, requires_grad=True)
    _compare(
        {"y": y, "Lambda": lam},
        lambda y, Lambda: tvfast.pdhg(y, Lambda, 25, operator=operator, tv="isotropic", backend=backend),
        lambda y, Lambda: pdhg_reference(y, Lambda, 25, operator=operator, tv="isotropic"),
    )


def test_isotropic_equals_anisotropic_when_the_image_varies_along_one_axis():
    """With ∇x along W only, |∇x| = |∂_W x|: both TVs are the same problem, and PDHG's iterates coincide."""
    row = torch.rand(1, 1, 1, 24, dtype=torch.float64)
    z = row.expand(1, 1, 16, 24).contiguous()
    iso = tvfast.pdhg(z, 0.08, 200, tv="isotropic")
    aniso = tvfast.pdhg(z, 0.08, 200, tv="anisotropic")
    assert _max_diff(iso, aniso) < 1e-12
    other = torch.rand(1, 1, 16, 24, dtype=torch.float64)
    assert _max_diff(tvfast.pdhg(other, 0.08, 200, tv="isotropic"),
                     tvfast.pdhg(other, 0.08, 200, tv="anisotropic")) > 1e-4  # and differ otherwise


def test_complex_parts_share_one_norm():
    """A real image times a unit phase: the isotropic dual of the complex image is the phase times the real one's,
    which holds only if the real and imaginary parts enter one norm."""
    operator = MaskedFFT(torch.ones(12, 16, dtype=torch.bool))  # unitary: AᴴA = I
    real = torch.rand(1, 1, 12, 16, dtype=torch.float64)
    phase = complex(math.cos(0.7), math.sin(0.7))
    x = tvfast.pdhg(operator(real * phase), 0.05, 60, operator=operator, tv="isotropic", tau=1 / 3, sigma=1 / 3)
    expected = phase * tvfast.pdhg(real, 0.05, 60, tv="isotropic")
    assert _max_diff(x, expected) < 1e-12


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_fused_engine_agrees_with_the_torch_engine_in_float32(spatial_dims):
    shape = (2, 1, 20, 24) if spatial_dims == 2 else (1, 1, 6, 10, 12)
    z = torch.rand(shape, requires_grad=True)
    lam = (0.1 * torch.rand(1, 1, *shape[2:])).requires_grad_()
    out = {}
    for backend in ("numba", "torch"):
        x = tvfast.pdhg(z, lam, 40, tv="isotropic", backend=backend)
        out[backend] = (x, *torch.autograd.grad(x.square().sum(), (z, lam)))
    for a, b in zip(out["numba"], out["torch"]):
        assert _max_diff(a, b) < 1e-4 * max(1.0, b.abs().max().item())


def test_the_recomputed_forward_is_the_forward():
    """x from a solve that keeps checkpoints equals x from one without a backward, bit for bit (float32)."""
    z = torch.rand(1, 1, 32, 32)
    lam = torch.full((1, 1, 32, 32), 0.05, requires_grad=True)
    with_grad = tvfast.pdhg(z, lam, 50, tv="isotropic")
    with torch.no_grad():
        without = tvfast.pdhg(z, lam, 50, tv="isotropic")
    assert torch.equal(with_grad.detach(), without)


def test_checkpoints_grow_as_the_square_root_of_the_iterations():
    assert segment_length(256, 20.0, 8.0) == 25
    assert segment_length(1, 20.0, 8.0) == 1

    class Counter:
        checkpoint_bytes, record_bytes = 20.0, 8.0

        def start(self):
            self.k = 0

        def save(self):
            return self.k

        def step(self, k):
            self.k += 1

    checkpoints, segment = run_forward(Counter(), 256, keep=True)
    assert segment == 25 and checkpoints == list(range(0, 256, 25))


def test_step_tensors_without_gradients_give_the_number_steps_result():
    z = torch.rand(1, 1, 16, 16)
    by_number = tvfast.pdhg(z, 0.05, 30, tau=0.3, sigma=0.3, theta=0.9)
    by_tensor = tvfast.pdhg(z, 0.05, 30, tau=torch.tensor(0.3), sigma=torch.tensor(0.3), theta=torch.tensor(0.9))
    per_iteration = tvfast.pdhg(z, 0.05, 30, tau=torch.full((30,), 0.3), sigma=torch.full((30,), 0.3),
                                theta=torch.full((30,), 0.9))
    assert torch.equal(by_number, by_tensor)
    assert _max_diff(by_number, per_iteration) < 1e-6


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"tv": "l2"}, ValueError, "tv: expected one of"),
        ({"tv": "isotropic", "Lambda": torch.full((1, 2, 8, 8), 0.1)}, ValueError, "Lambda: isotropic TV takes one"),
        ({"tau": torch.full((5,), 0.3)}, ValueError, "tau: expected a number, a 0-d tensor or a (10,) tensor"),
        ({"sigma": torch.tensor(0.3, dtype=torch.complex64)}, TypeError, "sigma: expected a real floating-point"),
        ({"theta": torch.full((10,), 1.5)}, ValueError, "theta: expected 0 <= theta <= 1"),
        ({"tau": torch.full((10,), 0.5), "sigma": torch.tensor(0.5)}, ValueError, "tau, sigma: PDHG converges"),
        ({"tau": torch.tensor(float("nan"))}, ValueError, "tau: expected finite values"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, words):
    args = {"Lambda": 0.1, **kwargs}
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        tvfast.pdhg(torch.rand(1, 1, 8, 8), args.pop("Lambda"), 10, **args)


def test_lambda_net_keeps_its_tv_in_its_config():
    from tvfast.models.lambda_net import LambdaNet
    from tvfast.models.unet import UNet

    model = LambdaNet(UNet(base_channels=4, depth=2), n_iter=4, tv="isotropic")
    assert LambdaNet.from_config(model.config).tv == "isotropic"
    assert LambdaNet.from_config({k: v for k, v in model.config.items() if k != "tv"}).tv == "anisotropic"
    with pytest.raises(ValueError, match="tv: isotropic TV takes one"):
        LambdaNet(UNet(base_channels=4, depth=2), n_iter=4, tv="isotropic", directional=True)
    with pytest.raises(ValueError, match="tv: expected"):
        LambdaNet(UNet(base_channels=4, depth=2), n_iter=4, tv="l2")


@pytest.mark.parametrize("backend, tv", [("numba", "anisotropic"), ("numba", "isotropic"), ("triton", "isotropic")])
def test_compiled_engines_with_per_iteration_steps_match_autograd(backend, tv):
    """Steps that vary but need no gradient run in the compiled engines; z and Λ get exact gradients."""
    n_iter = 16
    steps = {k: v.detach() for k, v in _steps(n_iter, per_iteration=True).items()}
    z = torch.rand(2, 1, 10, 12, dtype=torch.float64, requires_grad=True)
    lam = (0.1 * torch.rand(2, 1, 10, 12, dtype=torch.float64)).requires_grad_()
    _compare(
        {"z": z, "Lambda": lam},
        lambda z, Lambda: tvfast.pdhg(z, Lambda, n_iter, tv=tv, backend=backend, **steps),
        lambda z, Lambda: pdhg_reference(z, Lambda, n_iter, steps["tau"], steps["sigma"], steps["theta"], tv=tv),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_row_masked_mri_with_a_map_per_image(backend):
    """Whole-row masks (the solver's swapped frame), a non-square complex image and one Λ per image."""
    from tvfast.physics.mri import row_mask

    gen = torch.Generator().manual_seed(5)
    operator = MaskedFFT(row_mask(12, 3, generator=gen).reshape(12, 1).expand(12, 17))
    y = operator(torch.rand(2, 1, 12, 17, generator=gen, dtype=torch.complex128)).requires_grad_()
    lam = (0.05 * torch.rand(2, 1, 12, 17, generator=gen, dtype=torch.float64)).requires_grad_()
    _compare(
        {"y": y, "Lambda": lam},
        lambda y, Lambda: tvfast.pdhg(y, Lambda, 15, operator=operator, tv="isotropic", backend=backend),
        lambda y, Lambda: pdhg_reference(y, Lambda, 15, operator=operator, tv="isotropic"),
    )


def test_triton_agrees_with_the_fused_engine_in_float32():
    z = torch.rand(2, 1, 20, 24, requires_grad=True)
    lam = (0.1 * torch.rand(1, 1, 20, 24)).requires_grad_()
    out = {}
    for backend in ("numba", "triton"):
        x = tvfast.pdhg(z, lam, 30, tv="isotropic", backend=backend)
        out[backend] = (x, *torch.autograd.grad(x.square().sum(), (z, lam)))
    for a, b in zip(out["numba"], out["triton"]):
        assert _max_diff(a, b) < 1e-4 * max(1.0, b.abs().max().item())


def test_inputs_changed_in_place_after_the_forward_are_refused():
    z = torch.rand(1, 1, 8, 8, requires_grad=True)
    lam = torch.full((1, 1, 8, 8), 0.1, requires_grad=True)
    x = tvfast.pdhg(z, lam, 5, tv="isotropic")
    with torch.no_grad():
        lam.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        x.sum().backward()


def test_a_second_backward_is_refused_with_a_clear_error():
    z = torch.rand(1, 1, 8, 8, requires_grad=True)
    x = tvfast.pdhg(z, 0.1, 5, tv="isotropic")
    x.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="runs once per forward"):
        x.sum().backward()


def test_no_iterations_with_an_operator_and_step_tensors():
    operator = MaskedFFT(torch.ones(8, 8, dtype=torch.bool))
    y = operator(torch.rand(1, 1, 8, 8, dtype=torch.complex64)).requires_grad_()
    x0 = torch.rand(1, 1, 8, 8, dtype=torch.complex64)
    tau = torch.tensor(0.3, requires_grad=True)
    x = tvfast.pdhg(y, 0.1, 0, operator=operator, tv="isotropic", tau=tau, x0=x0)
    assert torch.equal(x, x0) and x.data_ptr() != x0.data_ptr()
    x.abs().sum().backward()
    assert tau.grad is not None and tau.grad.item() == 0.0


_COMPILED_CUDA = pytest.mark.skipif(
    not torch.cuda.is_available() or __import__("os").environ.get("TRITON_INTERPRET") == "1",
    reason="needs a CUDA GPU and compiled Triton kernels (TRITON_INTERPRET=0; benchmarks/gpu.sh)")


@_COMPILED_CUDA
@pytest.mark.parametrize("shape", [(2, 1, 37, 61), (1, 1, 5, 19, 23)])
def test_cuda_isotropic_matches_autograd_and_the_cpu(shape):
    """Compiled kernels: float64 against the reference loop, float32 against the fused CPU engine."""
    z = torch.rand(shape, dtype=torch.float64)
    lam = 0.1 * torch.rand(1, 1, *shape[2:], dtype=torch.float64)
    zc, lamc = z.cuda().requires_grad_(), lam.cuda().requires_grad_()
    x = tvfast.pdhg(zc, lamc, 40, tv="isotropic")
    w = torch.randn_like(x)
    g = torch.autograd.grad((x * w).sum(), (zc, lamc))
    zr, lamr = z.clone().requires_grad_(), lam.clone().requires_grad_()
    xr = pdhg_reference(zr, lamr, 40, tv="isotropic")
    gr = torch.autograd.grad((xr * w.cpu()).sum(), (zr, lamr))
    assert _max_diff(x.cpu(), xr) < TOL
    for a, b in zip(g, gr):
        assert _max_diff(a.cpu(), b) < TOL * max(1.0, b.abs().max().item())
    x32 = tvfast.pdhg(z.float().cuda(), lam.float().cuda(), 40, tv="isotropic").cpu()
    assert _max_diff(x32, tvfast.pdhg(z.float(), lam.float(), 40, tv="isotropic")) < 1e-5


@_COMPILED_CUDA
def test_cuda_isotropic_mri_matches_autograd():
    operator = MaskedFFT((torch.rand(24, 20) < 0.4).cuda())
    y = operator(torch.rand(2, 1, 24, 20, dtype=torch.complex128).cuda()).requires_grad_()
    lam = (0.05 * torch.rand(1, 1, 24, 20, dtype=torch.float64).cuda()).requires_grad_()
    _compare({"y": y, "Lambda": lam},
             lambda y, Lambda: tvfast.pdhg(y, Lambda, 20, operator=operator, tv="isotropic"),
             lambda y, Lambda: pdhg_reference(y, Lambda, 20, operator=operator, tv="isotropic"))
