"""Reconstruction with a forward operator, ``tvfast.pdhg(y, Λ, operator=A)`` (docs/method.md §10),
the operators of ``tvfast.physics`` and the Neumann boundary, against the plain reference loop; the
Triton backend (TV part in the kernels, A and Aᴴ in PyTorch) against the PyTorch path, under the
interpreter on CPU tensors and, ids ``cuda``, compiled on a GPU with ``TRITON_INTERPRET=0``."""

import math
import os

import pytest
import torch

import tvfast
from tvfast.physics import Blur, LinearOperator, MaskedFFT, as_operator, check_adjoint, operator_norm
from tvfast.solver.arguments import check_operator_arguments
from tvfast.solver.differences import forward_differences, forward_differences_T, neumann_mask
from tvfast.solver.reconstruction import ReconstructionFunction
from tvfast.solver.reference import pdhg_reference

F64, C128 = torch.float64, torch.complex128


def _mask(*shape, density=0.5):
    return torch.rand(*shape) < density


def _row_mask(*shape, density=0.5):
    """A mask of whole rows (…, H, 1): the phase-encode lines of Cartesian MRI (1-D transforms in AᴴA)."""
    return torch.rand(*shape[:-1], 1) < density


def _partial_fourier(like):
    """A real → complex operator from its forward alone: the first rows of the unitary 2-D DFT."""
    return LinearOperator.from_forward(lambda t: torch.fft.fft2(t, norm="ortho")[..., :4, :], like=like)


# ---------------------------------------------------------------- physics


@pytest.mark.parametrize("dtype", [F64, C128])
def test_operators_are_adjoint(dtype):
    x2, x3 = torch.randn(2, 1, 7, 9, dtype=dtype), torch.randn(2, 1, 4, 5, 7, dtype=dtype)
    assert check_adjoint(MaskedFFT(_mask(7, 9)), x2) < 1e-12
    assert check_adjoint(MaskedFFT(_mask(4, 5, 7)), x3) < 1e-12  # per-frame masks
    assert check_adjoint(Blur(torch.rand(3, 5, dtype=F64)), x2) < 1e-12
    assert check_adjoint(Blur(torch.rand(2, 3, 3, dtype=F64)), x3) < 1e-12
    assert check_adjoint(_partial_fourier(x2), x2) < 1e-12  # real → complex, or complex → complex
    assert check_adjoint(LinearOperator.from_forward(lambda t: 2 * t[..., 1:, :], like=x2), x2) < 1e-12


def test_blur_is_the_periodic_convolution():
    kernel = torch.rand(3, 4, dtype=F64)
    x = torch.randn(2, 1, 6, 7, dtype=F64)
    expected = sum(kernel[a, b] * torch.roll(x, (a - 1, b - 1), (-2, -1)) for a in range(3) for b in range(4))
    torch.testing.assert_close(Blur(kernel)(x), expected)
    assert Blur(kernel).H(x).dtype == F64


def test_check_adjoint_rejects_a_wrong_adjoint():
    A = MaskedFFT(_mask(7, 9))
    x = torch.randn(1, 1, 7, 9, dtype=C128)
    with pytest.raises(ValueError, match="^operator: the adjoint does not match"):
        check_adjoint(LinearOperator(A, lambda y: A.adjoint(y).conj()), x)
    with pytest.raises(ValueError, match="^operator: the adjoint returned shape"):
        check_adjoint(LinearOperator(A, lambda y: A.adjoint(y)[..., :-1]), x)


def test_operator_norm_power_iteration_and_cache():
    x = torch.randn(1, 1, 8, 10, dtype=C128)
    assert operator_norm(MaskedFFT(_mask(8, 10)), x) == pytest.approx(1.0, rel=1e-12)
    kernel = torch.rand(3, 3, dtype=F64)
    exact = torch.fft.fft2(torch.nn.functional.pad(kernel, (0, 7, 0, 5))).abs().max().item()
    calls = []
    blur = Blur(kernel)
    counted = LinearOperator(lambda t: calls.append(1) or blur(t), blur.adjoint)
    assert operator_norm(counted, x.real) == pytest.approx(exact, rel=1e-6)
    n_calls = len(calls)
    assert operator_norm(counted, x.real) == pytest.approx(exact, rel=1e-6) and len(calls) == n_calls  # cached
    operator_norm(counted, torch.randn(1, 1, 6, 6, dtype=F64))
    assert len(calls) > n_calls  # another shape, another estimate


class _DeepInverseStyle:
    def __init__(self, mask):
        self.inner = MaskedFFT(mask)

    def A(self, x):
        return self.inner(x)

    def A_adjoint(self, y):
        return self.inner.adjoint(y)


class _MRproStyle:
    def __init__(self, mask):
        self.inner = MaskedFFT(mask)

    def __call__(self, x):
        return (self.inner(x),)

    def adjoint(self, y):
        return (self.inner.adjoint(y),)


def test_as_operator_accepts_other_libraries_objects():
    mask = _mask(7, 9)
    x = torch.randn(2, 1, 7, 9, dtype=C128)
    y = MaskedFFT(mask)(x)
    lam = 0.05 * torch.rand(2, 2, 7, 9, dtype=F64)
    expected = tvfast.pdhg(y, lam, 10, operator=MaskedFFT(mask))
    for obj in (_DeepInverseStyle(mask), _MRproStyle(mask)):
        op = as_operator(obj)
        torch.testing.assert_close(op(x), y)
        check_adjoint(op, x)
        torch.testing.assert_close(tvfast.pdhg(y, lam, 10, operator=obj), expected)
    with pytest.raises(TypeError, match="^operator:"):
        as_operator(lambda x: x)


# ---------------------------------------------------------------- Neumann differences


@pytest.mark.parametrize("ndim,shape", [(2, (2, 5, 7)), (3, (2, 3, 4, 5))])
def test_neumann_differences(ndim, shape):
    x = torch.randn(shape, dtype=F64)
    q = torch.randn(shape[0], ndim, *shape[1:], dtype=F64)
    dx = forward_differences(x, ndim, "neumann")
    assert (dx * q).sum().item() == pytest.approx((x * forward_differences_T(q, ndim, "neumann")).sum().item())
    periodic = forward_differences(x, ndim)
    torch.testing.assert_close(dx, periodic * neumann_mask(shape[1:], F64, "cpu"))
    for axis in range(ndim):
        assert dx[:, axis].select(axis + 1, shape[axis + 1] - 1).abs().max() == 0


# ---------------------------------------------------------------- the op against the reference


def _compare(y, lam, n_iter, operator=None, x0=None, boundary="periodic", **kwargs):
    """x, ∂/∂y, ∂/∂Λ (and ∂/∂x0) of tvfast.pdhg and of the reference loop under autograd."""
    inputs = [t for t in (y, lam, x0) if t is not None]
    for t in inputs:
        t.requires_grad_(True)
    x = tvfast.pdhg(y, lam, n_iter, operator=operator, x0=x0, boundary=boundary, **kwargs)
    lam_ref = lam.reshape(-1, 1, 1, 1) if lam.dim() == 1 else lam  # per-image λ, in the reference's layout
    x_ref = pdhg_reference(y, lam_ref, n_iter, kwargs.get("tau"), kwargs.get("sigma"),
                           operator=operator, x0=x0, boundary=boundary)
    assert x.shape == x_ref.shape and x.dtype == x_ref.dtype
    torch.testing.assert_close(x, x_ref, rtol=1e-10, atol=1e-10)
    weight = torch.randn_like(x)
    grads = torch.autograd.grad((x.conj() * weight).real.sum(), inputs)
    grads_ref = torch.autograd.grad((x_ref.conj() * weight).real.sum(), inputs)
    for g, g_ref in zip(grads, grads_ref):
        assert g.shape == g_ref.shape and g.abs().max() > 0
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-10)


CASES = {
    # name: (x dtype, x shape, Λ shape, operator factory, boundary, x0 given)
    "complex2d-mri-2ch": (C128, (2, 1, 7, 9), (2, 2, 7, 9), lambda s: MaskedFFT(_mask(*s[-2:])), "periodic", False),
    "complex2d-mri-1ch-neumann": (C128, (1, 1, 8, 7), (1, 1, 8, 7), lambda s: MaskedFFT(_mask(*s[-2:])), "neumann",
                                  False),
    "real2d-blur-per-image-neumann": (F64, (3, 1, 6, 9), (3,), lambda s: Blur(torch.rand(3, 3, dtype=F64)),
                                      "neumann", False),
    "real2d-fourier-x0": (F64, (2, 1, 7, 6), (1, 2, 7, 6), None, "periodic", True),
    "real3d-blur-3ch": (F64, (2, 1, 3, 5, 7), (2, 3, 3, 5, 7), lambda s: Blur(torch.rand(2, 3, 3, dtype=F64)),
                        "periodic", False),
    "complex3d-mri-frames-neumann": (C128, (2, 1, 3, 5, 7), (2, 1, 3, 5, 7),
                                     lambda s: MaskedFFT(_mask(*s[-3:])), "neumann", True),
    # masks of whole rows: the solver holds its images with H and W swapped (ReconstructionProblem.swap_hw)
    "complex2d-mri-rows-2ch": (C128, (2, 1, 7, 9), (2, 2, 7, 9), lambda s: MaskedFFT(_row_mask(*s[-2:])),
                               "periodic", False),
    "real2d-mri-rows-neumann": (F64, (1, 1, 8, 6), (1, 1, 8, 6), lambda s: MaskedFFT(_row_mask(*s[-2:])),
                                "neumann", False),
    "complex3d-mri-rows-3ch": (C128, (1, 1, 3, 5, 7), (1, 3, 3, 5, 7), lambda s: MaskedFFT(_row_mask(*s[-3:])),
                               "periodic", False),
}


@pytest.mark.parametrize("case", CASES)
def test_matches_reference(case):
    dtype, shape, lam_shape, make_op, boundary, with_x0 = CASES[case]
    truth = torch.randn(shape, dtype=dtype)
    op = _partial_fourier(truth) if make_op is None else make_op(shape)
    y = op(truth) + 0.05 * torch.randn_like(op(truth))
    lam = 0.1 * torch.rand(lam_shape, dtype=F64) + 0.01
    x0 = torch.randn(shape, dtype=dtype) if with_x0 else None
    _compare(y, lam, 12, operator=op, x0=x0, boundary=boundary)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("case", ["complex2d-mri-rows-2ch", "complex3d-mri-rows-3ch"])
def test_swapped_frame_matches_reference(case, backend):
    """Row masks: each backend solves with H and W swapped in memory; x and its gradients are the reference's."""
    dtype, shape, lam_shape, make_op, boundary, _ = CASES[case]
    op = make_op(shape)
    assert op.gram_axis == -2
    truth = torch.randn(shape, dtype=dtype)
    y = op(truth) + 0.05 * torch.randn_like(op(truth))
    _compare(y, 0.1 * torch.rand(lam_shape, dtype=F64) + 0.01, 12, operator=op, backend=backend)
    assert tvfast.pdhg(y, 0.05, 3, operator=op, backend=backend).is_contiguous()


def test_gram_axis_names_the_one_dimensional_transforms():
    assert repr(MaskedFFT(_row_mask(6, 8))).startswith("MaskedFFT(forward=MaskedFFT._apply")
    assert MaskedFFT(_row_mask(6, 8)).gram_axis == -2
    assert MaskedFFT(torch.rand(1, 8) < 0.5).gram_axis == -1
    assert MaskedFFT(torch.ones(6, 8)).gram_axis == -2  # constant along W (and H): rows
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[0, 0] = True
    assert MaskedFFT(mask).gram_axis is None
    assert Blur(torch.rand(3, 3)).gram_axis is None


@pytest.mark.parametrize("shape,lam_shape", [((2, 1, 7, 9), (2, 2, 7, 9)), ((2, 1, 3, 5, 6), (1, 3, 3, 5, 6))])
def test_denoising_neumann_matches_reference(shape, lam_shape):
    z = torch.randn(shape, dtype=F64)
    _compare(z, 0.2 * torch.rand(lam_shape, dtype=F64), 15, boundary="neumann")


def test_denoising_neumann_triton_backend():
    pytest.importorskip("triton")
    z = torch.randn(2, 1, 6, 8)
    lam = 0.2 * torch.rand(2, 1, 6, 8)
    x = tvfast.pdhg(z, lam, 5, boundary="neumann", backend="triton")
    torch.testing.assert_close(x, pdhg_reference(z, lam, 5, boundary="neumann"), rtol=1e-5, atol=1e-5)


def test_identity_operator_is_the_denoising_op():
    identity = LinearOperator(lambda x: x, lambda y: y)
    z = torch.randn(2, 1, 7, 9, dtype=F64, requires_grad=True)
    lam = (0.2 * torch.rand(2, 2, 7, 9, dtype=F64)).requires_grad_()
    x = tvfast.pdhg(z, lam, 20, operator=identity, tau=1 / 3, sigma=1 / 3)
    x_denoise = tvfast.pdhg(z, lam, 20)
    torch.testing.assert_close(x, x_denoise, rtol=1e-12, atol=1e-12)
    weight = torch.randn_like(x)
    for g, g_denoise in zip(torch.autograd.grad((x * weight).sum(), (z, lam)),
                            torch.autograd.grad((x_denoise * weight).sum(), (z, lam))):
        torch.testing.assert_close(g, g_denoise, rtol=1e-12, atol=1e-12)


def test_default_start_is_the_adjoint_of_the_data():
    op = MaskedFFT(_mask(7, 9))
    y = op(torch.randn(2, 1, 7, 9, dtype=C128)).requires_grad_()
    x = tvfast.pdhg(y, 0.1, 0, operator=op)
    torch.testing.assert_close(x, op.adjoint(y))
    weight = torch.randn_like(x)
    (grad_y,) = torch.autograd.grad((x.conj() * weight).real.sum(), y)
    torch.testing.assert_close(grad_y, op(weight))  # the adjoint of Aᴴ is A
    assert (tvfast.pdhg(y, 0.1, 15, operator=op) - x).abs().max() > 1e-3  # iterations move away from Aᴴy


def test_default_steps_use_the_operator_norm():
    kernel = torch.rand(3, 3, dtype=F64)
    op = Blur(kernel)
    z = torch.randn(1, 1, 6, 8, dtype=F64)
    y = op(z)
    norm = operator_norm(op, z)
    step = 0.99 / math.sqrt(norm**2 + 8)
    torch.testing.assert_close(tvfast.pdhg(y, 0.1, 10, operator=op),
                               tvfast.pdhg(y, 0.1, 10, operator=op, tau=step, sigma=step))


def test_complex_gradcheck():
    op = MaskedFFT(torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0], [1, 1, 0, 1]], dtype=torch.bool))
    y = op(torch.randn(1, 1, 3, 4, dtype=C128)).requires_grad_()
    x0 = torch.randn(1, 1, 3, 4, dtype=C128, requires_grad=True)
    lam = (0.3 + 0.2 * torch.rand(1, 2, 3, 4, dtype=F64)).requires_grad_()
    torch.autograd.gradcheck(lambda y_, l_: tvfast.pdhg(y_, l_, 6, operator=op), (y, lam), eps=1e-7, atol=1e-6)
    torch.autograd.gradcheck(lambda x_, l_: tvfast.pdhg(y.detach(), l_, 6, operator=op, x0=x_), (x0, lam),
                             eps=1e-7, atol=1e-6)


@pytest.mark.parametrize("dtype,shape,bytes_per_pixel", [
    (torch.float32, (2, 1, 16, 15), 0.5), (torch.complex64, (2, 1, 16, 15), 1.0),
    (torch.float32, (2, 1, 4, 8, 6), 1.0), (torch.complex64, (2, 1, 4, 8, 6), 2.0),
])
def test_saved_memory_is_the_clip_states(dtype, shape, bytes_per_pixel):
    op = Blur(torch.rand(3, 3)) if not dtype.is_complex else MaskedFFT(_mask(*shape[-2:]))
    y = op(torch.randn(shape, dtype=dtype)).requires_grad_()
    lam = (0.1 * torch.rand(1, 1, *shape[2:])).requires_grad_()
    n_iter = 7
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    problem = _problem(op, y, n_iter)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x = ReconstructionFunction.apply(y, lam, None, problem)
    pixels = math.prod(shape)
    width = shape[-1]
    expected = n_iter * pixels * bytes_per_pixel * (1 if len(shape) == 5 else (width + 1) // 2 * 2 / width)
    assert sum(saved) == expected
    assert sum(saved) <= n_iter * pixels * bytes_per_pixel * (1 + 1 / width)
    x.abs().sum().backward()
    assert y.grad is not None and lam.grad is not None


def _problem(op, y, n_iter):
    from tvfast.solver.reconstruction import ReconstructionProblem

    x = op.adjoint(y.detach())
    return ReconstructionProblem(as_operator(op), x.shape, x.dtype, n_iter, 0.3, 0.3, 1.0, compile=False)


# ---------------------------------------------------------------- bad input


def test_bad_inputs_name_the_argument():
    op = MaskedFFT(_mask(6, 8))
    y = op(torch.randn(1, 1, 6, 8, dtype=C128))
    wrong_adjoint = LinearOperator(op, lambda v: torch.cat([op.adjoint(v)] * 2))
    cases = [
        (dict(operator=wrong_adjoint), ValueError, "operator"),
        (dict(operator=op, z=y[..., :-1]), ValueError, "y"),  # not in A's range
        (dict(operator=op, z=y.real), ValueError, "y"),  # real data for a complex range
        (dict(operator=op, tau=1.0, sigma=1.0), ValueError, "tau, sigma"),
        (dict(operator=op, Lambda=torch.full((1, 1, 6, 8), 0.1, dtype=C128)), TypeError, "Lambda"),
        (dict(operator=op, x0=torch.zeros(1, 1, 6, 7, dtype=C128)), ValueError, "x0"),
        (dict(operator=op, x0=torch.zeros(2, 1, 6, 8, dtype=C128)), ValueError, "x0"),
        (dict(operator=op, boundary="reflect"), ValueError, "boundary"),
        (dict(boundary="dirichlet"), ValueError, "boundary"),
        (dict(operator=op, backend="cuda"), ValueError, "backend"),
        (dict(operator=object()), TypeError, "operator"),
        (dict(x0=torch.zeros(1, 1, 6, 8)), ValueError, "x0"),  # a start without an operator
    ]
    for overrides, error, name in cases:
        kwargs = dict(z=y if "operator" in overrides else y.real.float(), Lambda=0.1, n_iter=3)
        kwargs.update(overrides)
        with pytest.raises(error, match=f"^{name}:"):
            tvfast.pdhg(kwargs.pop("z"), kwargs.pop("Lambda"), kwargs.pop("n_iter"), **kwargs)


# ---------------------------------------------------------------- the Triton backend

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRETED, reason="CPU tensors need TRITON_INTERPRET=1")),
    pytest.param("cuda", marks=pytest.mark.skipif(INTERPRETED or not torch.cuda.is_available(),
                                                  reason="needs CUDA and compiled kernels")),
]

TRITON_CASES = {
    # name: (x dtype, x shape, Λ shape, operator factory, boundary, x0 given); odd widths pad the packed states
    "complex2d-mri-2ch": (C128, (2, 1, 7, 9), (2, 2, 7, 9), lambda s: MaskedFFT(_mask(*s[-2:])), "periodic", False),
    "complex2d-mri-rows-2ch": (C128, (2, 1, 7, 9), (2, 2, 7, 9), lambda s: MaskedFFT(_row_mask(*s[-2:])),
                               "periodic", False),
    "complex3d-mri-rows-1ch": (C128, (2, 1, 3, 5, 7), (1, 1, 3, 5, 7), lambda s: MaskedFFT(_row_mask(*s[-3:])),
                               "periodic", True),
    "real2d-blur-1ch-x0": (F64, (2, 1, 8, 6), (1, 1, 8, 6), lambda s: Blur(torch.rand(3, 3, dtype=F64)),
                           "periodic", True),
    "real2d-mri-neumann": (F64, (1, 1, 6, 5), (1, 2, 6, 5), lambda s: MaskedFFT(_mask(*s[-2:])), "neumann", False),
    "complex3d-mri-frames-x0": (C128, (1, 1, 3, 5, 7), (1, 1, 3, 5, 7), lambda s: MaskedFFT(_mask(*s[-3:])),
                                "periodic", True),
    "real3d-blur-3ch": (F64, (2, 1, 3, 4, 6), (2, 3, 3, 4, 6), lambda s: Blur(torch.rand(2, 3, 3, dtype=F64)),
                        "periodic", False),
}


def _run_with_states(y, lam, x0, op, boundary, backend, weight):
    """x, the gradients to (y, Λ[, x0]) and the clip states the op saved for its backward."""
    inputs = [t.detach().clone().requires_grad_() for t in (y, lam, x0) if t is not None]
    saved = []

    def pack(t):
        if t.dtype == torch.uint8:
            saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x = tvfast.pdhg(inputs[0], inputs[1], 8, operator=op, x0=inputs[2] if x0 is not None else None,
                        boundary=boundary, backend=backend)
    grads = torch.autograd.grad((x.conj() * weight).real.sum(), inputs)
    (states,) = saved
    return x.detach(), grads, states


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the calls of the Triton launcher's solve_forward / solve_backward."""
    launch = pytest.importorskip("tvfast.kernels.launch")
    calls = []
    for name in ("solve_forward", "solve_backward"):
        def spy(*args, _real=getattr(launch, name), _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(launch, name, spy)
    return calls


@pytest.mark.usefixtures("nan_empty")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", TRITON_CASES)
def test_triton_backend_matches_torch(case, device, kernel_calls):
    """The TV part in the kernels, A and Aᴴ in PyTorch: the same x, gradients and clip states as the PyTorch path."""
    dtype, shape, lam_shape, make_op, boundary, with_x0 = TRITON_CASES[case]
    op = make_op(shape)
    truth = torch.randn(shape, dtype=dtype, device=device)
    y = op(truth)
    y = y + 0.05 * torch.randn_like(y)
    lam = (0.1 * torch.rand(lam_shape, dtype=F64) + 0.01).to(device)
    x0 = torch.randn(shape, dtype=dtype, device=device) if with_x0 else None
    weight = torch.randn(shape, dtype=dtype, device=device)
    x_t, grads_t, states_t = _run_with_states(y, lam, x0, op, boundary, "torch", weight)
    assert kernel_calls == []
    x_k, grads_k, states_k = _run_with_states(y, lam, x0, op, boundary, "triton", weight)
    assert kernel_calls == ["solve_forward", "solve_backward"]
    assert states_k.shape == states_t.shape and states_k.shape[0] == 8
    assert torch.equal(states_k, states_t)
    assert len(states_k.unique()) > 1  # the clip saturates somewhere: the states carry information
    torch.testing.assert_close(x_k, x_t, rtol=1e-12, atol=1e-12)
    for g_k, g_t in zip(grads_k, grads_t):
        assert g_k.abs().max() > 0
        torch.testing.assert_close(g_k, g_t, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("nan_empty")
@pytest.mark.parametrize("case", TRITON_CASES)
def test_fused_cpu_backend_matches_torch(case):
    """The TV part in the fused CPU kernels, A and Aᴴ in PyTorch: the PyTorch path's x, gradients and clip states."""
    dtype, shape, lam_shape, make_op, boundary, with_x0 = TRITON_CASES[case]
    op = make_op(shape)
    y = op(torch.randn(shape, dtype=dtype))
    y = y + 0.05 * torch.randn_like(y)
    lam = 0.1 * torch.rand(lam_shape, dtype=F64) + 0.01
    x0 = torch.randn(shape, dtype=dtype) if with_x0 else None
    weight = torch.randn(shape, dtype=dtype)
    x_t, grads_t, states_t = _run_with_states(y, lam, x0, op, boundary, "torch", weight)
    x_f, grads_f, states_f = _run_with_states(y, lam, x0, op, boundary, "numba", weight)
    assert torch.equal(states_f, states_t) and len(states_f.unique()) > 1
    torch.testing.assert_close(x_f, x_t, rtol=1e-12, atol=1e-12)
    for g_f, g_t in zip(grads_f, grads_t):
        assert g_f.abs().max() > 0
        torch.testing.assert_close(g_f, g_t, rtol=1e-10, atol=1e-12)


def test_auto_backend_with_an_operator_follows_the_device(monkeypatch):
    monkeypatch.delenv("TVFAST_COMPILE", raising=False)
    op = MaskedFFT(_mask(6, 8))
    y = op(torch.randn(1, 1, 6, 8, dtype=C128))
    rec = check_operator_arguments(y, 0.1, 3, op, None, None, None, 1.0, "auto")
    assert rec.backend == "numba"
    assert check_operator_arguments(y, 0.1, 3, op, None, None, None, 1.0, "auto", compile=True).backend == "torch"
    assert check_operator_arguments(y, 0.1, 3, op, None, None, None, 1.0, "torch").backend == "torch"
    if INTERPRETED:
        assert check_operator_arguments(y, 0.1, 3, op, None, None, None, 1.0, "triton").backend == "triton"
    if torch.cuda.is_available():
        pytest.importorskip("triton")
        rec = check_operator_arguments(y.cuda(), 0.1, 3, op, None, None, None, 1.0, "auto")
        assert rec.backend == "triton"


def test_triton_backend_on_cpu_tensors_needs_the_interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    op = MaskedFFT(_mask(6, 8))
    y = op(torch.randn(1, 1, 6, 8, dtype=C128))
    with pytest.raises(ValueError, match="^backend: 'triton' on CPU tensors runs in Triton's interpreter"):
        tvfast.pdhg(y, 0.1, 3, operator=op, backend="triton")
