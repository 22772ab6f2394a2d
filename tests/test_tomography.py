"""Parallel-beam CT (``tvfast.physics.tomography``): exact transpose, norm, geometry, mass, FBP,
simulated data, use inside ``tvfast.pdhg`` and argument errors."""

import math

import pytest
import torch

import tvfast
from tvfast.physics.linear import check_adjoint, operator_norm
from tvfast.physics.tomography import ParallelBeam, simulate_ct

F32, F64 = torch.float32, torch.float64


def _inner(a, b):
    return float((a.to(F64) * b.to(F64)).sum())


def _disc(height, width, radius, dtype=F64, smooth=0.0):
    """A disc of value 1 centred in the image; with ``smooth`` > 0 its edge is a cosine ramp that wide."""
    i = torch.arange(height, dtype=F64)[:, None] - (height - 1) / 2
    j = torch.arange(width, dtype=F64)[None, :] - (width - 1) / 2
    r = torch.sqrt(i**2 + j**2)
    if smooth == 0:
        return (r <= radius).to(dtype)
    ramp = ((radius - r) / smooth).clamp(-0.5, 0.5)
    return (0.5 + 0.5 * torch.sin(math.pi * ramp)).to(dtype)


# ---------------------------------------------------------------- geometry and construction


@pytest.mark.parametrize("size, expected", [(32, 47), ((3, 4), 5), ((12, 20), 25), (1, 3), ((64, 64), 91)])
def test_default_detector_count_is_the_odd_ceiling_of_the_diagonal(size, expected):
    op = ParallelBeam(size, n_views=4)
    height, width = op.image_size
    assert op.n_detectors == expected
    assert op.n_detectors % 2 == 1 and op.n_detectors >= math.sqrt(height**2 + width**2)
    assert op.sinogram_shape == (4, expected)
    torch.testing.assert_close(op.angles, torch.arange(4, dtype=F64) * math.pi / 4)


def test_repr_names_the_geometry():
    assert repr(ParallelBeam((8, 6), 5, 11, normalize=False)) == (
        "ParallelBeam(image_size=(8, 6), n_views=5, n_detectors=11, normalize=False)"
    )


# ---------------------------------------------------------------- exact adjoint


@pytest.mark.parametrize("size, n_views", [((16, 16), 12), ((12, 20), 7), ((7, 13), 30), ((1, 5), 3)])
@pytest.mark.parametrize("lead", [(), (3,), (2, 1), (2, 3)])
def test_adjoint_identity_float64(size, n_views, lead, gen):
    op = ParallelBeam(size, n_views)
    x = torch.randn(*lead, *size, generator=gen, dtype=F64)
    y = torch.randn(*lead, *op.sinogram_shape, generator=gen, dtype=F64)
    ax, aty = op(x), op.adjoint(y)
    assert ax.shape == (*lead, *op.sinogram_shape) and ax.dtype == F64
    assert aty.shape == x.shape and aty.dtype == F64
    lhs, rhs = _inner(ax, y), _inner(x, aty)
    assert abs(lhs - rhs) <= 1e-12 * math.sqrt(_inner(ax, ax) * _inner(y, y))


@pytest.mark.parametrize("size", [(16, 16), (9, 14)])
def test_check_adjoint_and_the_matrices_are_transposes(size, gen):
    op = ParallelBeam(size, 10)
    assert check_adjoint(op, torch.randn(2, 1, *size, generator=gen, dtype=F64)) < 1e-12
    assert check_adjoint(op.H, torch.randn(2, 1, *op.sinogram_shape, generator=gen, dtype=F64)) < 1e-12
    assert check_adjoint(op, torch.randn(2, 1, *size, generator=gen, dtype=F32)) < 1e-5
    assert op.matrix.col_indices().dtype == torch.int32 and op.transpose.col_indices().dtype == torch.int32
    assert torch.equal(op.matrix.to_dense().t(), op.transpose.to_dense())


def test_each_column_of_the_matrix_sums_to_one_per_view_in_pixel_lengths():
    """Unnormalised, a pixel's weights in each view are its trapezoid's integrals over the bins: they sum to 1."""
    op = ParallelBeam((10, 13), 9, normalize=False)
    assert op.scale == 1.0
    dense = op.matrix.to_dense().reshape(9, op.n_detectors, 130)
    torch.testing.assert_close(dense.sum(1), torch.ones(9, 130, dtype=F64), atol=1e-13, rtol=0)
    assert float(dense.min()) >= 0
    assert int((dense > 0).sum(1).max()) <= 3  # a footprint at most √2 wide touches at most 3 bins


# ---------------------------------------------------------------- norm


@pytest.mark.parametrize("size, n_views", [((32, 32), 60), ((24, 40), 17)])
def test_normalize_gives_unit_norm(size, n_views):
    op = ParallelBeam(size, n_views)
    raw = ParallelBeam(size, n_views, normalize=False)
    like = torch.zeros(1, 1, *size, dtype=F64)
    assert operator_norm(op, like, n_iter=200, rtol=1e-9) == pytest.approx(1.0, abs=1e-4)
    assert operator_norm(raw, like, n_iter=200, rtol=1e-9) == pytest.approx(1 / op.scale, rel=1e-4)
    x = torch.rand(2, *size, dtype=F64)
    torch.testing.assert_close(op(x), op.scale * raw(x), rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------- geometry of the projections


@pytest.mark.parametrize("size, pixel", [((32, 32), (5, 20)), ((21, 34), (17, 3)), ((32, 32), (16, 16))])
def test_a_point_projects_to_a_sinusoid(size, pixel):
    """The brightest bin of each view is within one bin of u cos θ + v sin θ of the pixel's centre."""
    height, width = size
    op = ParallelBeam(size, 36, normalize=False)
    x = torch.zeros(size, dtype=F64)
    x[pixel] = 1.0
    sinogram = op(x)
    u = pixel[1] - (width - 1) / 2
    v = (height - 1) / 2 - pixel[0]
    t = u * torch.cos(op.angles) + v * torch.sin(op.angles)
    expected_bin = t + (op.n_detectors - 1) / 2
    assert float((sinogram.argmax(-1) - expected_bin).abs().max()) <= 1.0
    # the centre of mass of each view is the projected centre up to the binning (a footprint ≥ 1 bin wide)
    centre = (sinogram * torch.arange(op.n_detectors, dtype=F64)).sum(-1)
    torch.testing.assert_close(centre, expected_bin, atol=0.1, rtol=0)


@pytest.mark.parametrize("size, radius", [((32, 32), 12), ((32, 40), 14.5), ((45, 27), 11)])
def test_constant_disc_has_the_image_mass_in_every_view(size, radius):
    disc = _disc(*size, radius)
    raw = ParallelBeam(size, 30, normalize=False)
    per_view = raw(disc).sum(-1)
    torch.testing.assert_close(per_view, torch.full((30,), float(disc.sum()), dtype=F64), rtol=1e-12, atol=0)
    op = ParallelBeam(size, 30)
    torch.testing.assert_close(op(disc).sum(-1), op.scale * per_view, rtol=1e-12, atol=0)


def test_axis_aligned_views_are_column_and_row_sums():
    """With odd H and W the pixels line up with the bins at θ = 0 and π/2: A x are plain sums in pixel lengths."""
    height, width = 9, 15
    op = ParallelBeam((height, width), 4, normalize=False)  # θ = 0, π/4, π/2, 3π/4
    x = torch.rand(height, width, dtype=F64)
    sinogram = op(x)
    d = op.n_detectors
    torch.testing.assert_close(sinogram[0, (d - width) // 2: (d + width) // 2], x.sum(0), atol=1e-12, rtol=0)
    # v points up: bin index grows with v = (H − 1)/2 − i, so the row sums come bottom row first
    torch.testing.assert_close(sinogram[2, (d - height) // 2: (d + height) // 2], x.sum(1).flip(0),
                               atol=1e-12, rtol=0)


# ---------------------------------------------------------------- FBP


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("kind", ["ram-lak", "shepp-logan"])
@pytest.mark.parametrize("size", [(64, 64), (48, 64)])
def test_fbp_approximately_inverts_a_smooth_disc(normalize, kind, size):
    x = _disc(*size, radius=18, smooth=8.0)
    op = ParallelBeam(size, 60, normalize=normalize)
    rec = op.fbp(op(x), filter=kind)
    assert rec.shape == x.shape and rec.dtype == F64
    interior = _disc(*size, radius=20) > 0
    error = torch.linalg.vector_norm((rec - x)[interior]) / torch.linalg.vector_norm(x[interior])
    assert float(error) < 0.05  # about 0.01 here
    assert float(rec[interior].mean() / x[interior].mean()) == pytest.approx(1.0, abs=0.02)


def test_fbp_keeps_batch_axes_and_float32():
    op = ParallelBeam(32, 30)
    x = _disc(32, 32, radius=10, smooth=5.0, dtype=F32).expand(2, 3, 32, 32)
    rec = op.fbp(op(x))
    assert rec.shape == (2, 3, 32, 32) and rec.dtype == F32
    torch.testing.assert_close(rec[1, 2], op.fbp(op(x[0, 0])), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- dtypes and autograd


def test_float32_matches_float64(gen):
    op = ParallelBeam((20, 24), 15)
    x = torch.rand(3, 1, 20, 24, generator=gen, dtype=F64)
    y = torch.randn(3, 1, *op.sinogram_shape, generator=gen, dtype=F64)
    ax32, aty32 = op(x.float()), op.adjoint(y.float())
    assert ax32.dtype == F32 and aty32.dtype == F32
    torch.testing.assert_close(ax32, op(x).float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(aty32, op.adjoint(y).float(), rtol=1e-5, atol=1e-5)


def test_non_contiguous_inputs(gen):
    op = ParallelBeam((12, 10), 8)
    x = torch.randn(10, 12, 3, generator=gen, dtype=F64).permute(2, 1, 0)  # (3, 12, 10), not contiguous
    torch.testing.assert_close(op(x), op(x.contiguous()), rtol=0, atol=0)


def test_gradients_are_the_adjoint(gen):
    op = ParallelBeam((8, 9), 6)
    x = torch.randn(2, 1, 8, 9, generator=gen, dtype=F64, requires_grad=True)
    y = torch.randn(2, 1, *op.sinogram_shape, generator=gen, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradcheck(op.adjoint, (y,))
    (op(x) * y.detach()).sum().backward()
    torch.testing.assert_close(x.grad, op.adjoint(y.detach()), rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------- simulated data and PDHG


def test_simulate_ct_noise_is_relative_to_each_sinogram(gen):
    clean = torch.stack([_disc(32, 32, 10, smooth=4.0), 0.5 * _disc(32, 32, 14)])[:, None]
    y0, op = simulate_ct(clean, 0.0)
    assert isinstance(op, ParallelBeam) and op.n_views == 60 and op.image_size == (32, 32)
    torch.testing.assert_close(y0, op(clean), rtol=0, atol=0)
    y, same = simulate_ct(clean, 0.1, operator=op, generator=torch.Generator().manual_seed(1))
    assert same is op and y.shape == (2, 1, 60, op.n_detectors) and y.dtype == F64
    ratio = (y - y0).std(dim=(1, 2, 3)) / y0.std(dim=(1, 2, 3))
    torch.testing.assert_close(ratio, torch.full((2,), 0.1, dtype=F64), rtol=0.05, atol=0)
    again, _ = simulate_ct(clean, 0.1, operator=op, generator=torch.Generator().manual_seed(1))
    assert torch.equal(y, again)
    levels = torch.tensor([0.0, 0.2])
    y2, _ = simulate_ct(clean.float(), levels, operator=op, generator=gen)
    assert y2.dtype == F32
    torch.testing.assert_close(y2[0], op(clean[0].float()), rtol=0, atol=0)
    y3, op3 = simulate_ct(clean, 0.05, n_views=20)
    assert op3.n_views == 20 and y3.shape == (2, 1, 20, op3.n_detectors)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_inside_pdhg_with_gradient_to_lambda(dtype, gen):
    clean = (0.8 * _disc(32, 32, 11, smooth=3.0) + 0.2 * _disc(32, 32, 5)).to(dtype).expand(2, 1, 32, 32)
    y, op = simulate_ct(clean, 0.05, n_views=30, generator=gen)
    lam = torch.full((2, 1, 32, 32), 0.02, dtype=dtype, requires_grad=True)
    x = tvfast.pdhg(y, lam, n_iter=20, operator=op)
    assert x.shape == (2, 1, 32, 32) and x.dtype == dtype
    assert bool(torch.isfinite(x).all())
    (x - clean).square().sum().backward()
    assert lam.grad is not None and bool(torch.isfinite(lam.grad).all()) and float(lam.grad.abs().sum()) > 0
    with torch.no_grad():  # an FBP start is closer to the image than Aᵀy
        start = op.fbp(y)
        x_fbp = tvfast.pdhg(y, 0.02, n_iter=20, operator=op, x0=start)
        assert float((x_fbp - clean).norm()) < float((op.adjoint(y) - clean).norm())


# ---------------------------------------------------------------- argument errors


@pytest.mark.parametrize("args, kwargs, error, name", [
    ((0,), {}, ValueError, "image_size"),
    (((3,),), {}, ValueError, "image_size"),
    (((3, 4, 5),), {}, ValueError, "image_size"),
    (("32",), {}, TypeError, "image_size"),
    ((2.5,), {}, TypeError, "image_size"),
    ((True,), {}, TypeError, "image_size"),
    (((8, 0),), {}, ValueError, "image_size"),
    ((8, 0), {}, ValueError, "n_views"),
    ((8, 4.0), {}, TypeError, "n_views"),
    ((8, 4, 0), {}, ValueError, "n_detectors"),
    ((8, 4, 3.5), {}, TypeError, "n_detectors"),
    ((8,), {"normalize": 1}, TypeError, "normalize"),
])
def test_constructor_errors(args, kwargs, error, name):
    with pytest.raises(error, match=rf"^{name}:"):
        ParallelBeam(*args, **kwargs)


def test_application_errors():
    op = ParallelBeam((8, 6), 5)
    sino = op.sinogram_shape
    cases = [
        (lambda: op(torch.zeros(8, 6, dtype=torch.complex64)), TypeError, "x"),
        (lambda: op(torch.zeros(8, 6, dtype=torch.int64)), TypeError, "x"),
        (lambda: op(torch.zeros(8, 6, dtype=torch.float16)), TypeError, "x"),
        (lambda: op([[0.0] * 6] * 8), TypeError, "x"),
        (lambda: op(torch.zeros(6, 8)), ValueError, "x"),
        (lambda: op(torch.zeros(6)), ValueError, "x"),
        (lambda: op.adjoint(torch.zeros(8, 6)), ValueError, "y"),
        (lambda: op.adjoint(torch.zeros(*sino, dtype=torch.complex128)), TypeError, "y"),
        (lambda: op.fbp(torch.zeros(8, 6)), ValueError, "sinogram"),
        (lambda: op.fbp(torch.zeros(*sino), filter="hann"), ValueError, "filter"),
    ]
    for call, error, name in cases:
        with pytest.raises(error, match=rf"^{name}:"):
            call()


def test_simulate_ct_errors():
    clean = torch.rand(2, 1, 8, 8)
    op = ParallelBeam(8, 5)
    cases = [
        (lambda: simulate_ct(clean[:, 0], 0.1), ValueError, "clean"),
        (lambda: simulate_ct(torch.rand(2, 3, 8, 8), 0.1), ValueError, "clean"),
        (lambda: simulate_ct(clean * 2, 0.1), ValueError, "clean"),
        (lambda: simulate_ct(clean.to(torch.complex64), 0.1), TypeError, "clean"),
        (lambda: simulate_ct((clean > 0.5).to(torch.uint8), 0.1), TypeError, "clean"),
        (lambda: simulate_ct(clean.numpy(), 0.1), TypeError, "clean"),
        (lambda: simulate_ct(clean, -0.1), ValueError, "noise_level"),
        (lambda: simulate_ct(clean, float("nan")), ValueError, "noise_level"),
        (lambda: simulate_ct(clean, "0.1"), TypeError, "noise_level"),
        (lambda: simulate_ct(clean, torch.tensor([0.1, 0.2, 0.3])), ValueError, "noise_level"),
        (lambda: simulate_ct(clean, 0.1, operator=ParallelBeam(9, 5)), ValueError, "operator"),
        (lambda: simulate_ct(clean, 0.1, operator=lambda t: t), TypeError, "operator"),
        (lambda: simulate_ct(clean, 0.1, operator=op, generator=0), TypeError, "generator"),
        (lambda: simulate_ct(clean, 0.1, n_views=0), ValueError, "n_views"),
    ]
    for call, error, name in cases:
        with pytest.raises(error, match=rf"^{name}:"):
            call()


# ---------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [F32, F64])
def test_cuda_matches_cpu(dtype, gen):
    op = ParallelBeam((32, 40), 20)
    x = torch.rand(3, 1, 32, 40, generator=gen, dtype=dtype)
    y = torch.randn(3, 1, *op.sinogram_shape, generator=gen, dtype=dtype)
    ax, aty = op(x.cuda()), op.adjoint(y.cuda())
    assert ax.is_cuda and ax.dtype == dtype and aty.is_cuda and aty.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == F32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ax.cpu(), op(x), **tol)
    torch.testing.assert_close(aty.cpu(), op.adjoint(y), **tol)
    assert check_adjoint(op, x.cuda().to(F64)) < 1e-12
    torch.testing.assert_close(op.fbp(ax).cpu(), op.fbp(op(x)), **tol)
    xg = x.cuda().requires_grad_()
    (op(xg) * y.cuda()).sum().backward()
    torch.testing.assert_close(xg.grad, aty, **tol)
