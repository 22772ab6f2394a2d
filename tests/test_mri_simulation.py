"""Simulated single-coil Cartesian MRI data from real images (tvfast/physics/mri.py)."""

import cmath
import math

import pytest
import torch

from tvfast.physics.mri import (
    SimulatedMRI,
    draw_phase_coefficients,
    row_counts,
    row_mask,
    simulate_mri,
    smooth_phase,
)
from tvfast.physics.operators import MaskedFFT


def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def _rows(mask):
    """The sampled row indices of an (H, 1) mask."""
    return set(torch.nonzero(mask[:, 0]).flatten().tolist())


def _lowest_frequency_rows(height, count):
    """The ``count`` rows of lowest |k_y|, lower index first among equal |k_y|, from fftfreq directly."""
    freq = torch.fft.fftfreq(height).abs().tolist()
    return set(sorted(range(height), key=lambda r: (freq[r], r))[:count])


# ---------------------------------------------------------------------------
# mask
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("height", [1, 2, 7, 12, 25, 31, 32, 63, 64, 256])
def test_row_mask_shape_values_counts_and_centre(height):
    mask = row_mask(height, generator=_seeded(3))
    assert mask.shape == (height, 1) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    n_centre, n_total = row_counts(height)
    assert n_centre == max(1, round(0.08 * height))
    assert n_total == max(n_centre, height // 4)
    assert int(mask.sum()) == n_total
    assert _lowest_frequency_rows(height, n_centre) <= _rows(mask)


def test_row_mask_256_counts():
    mask = row_mask(256, generator=_seeded(0))
    assert row_counts(256) == (20, 64)  # round(20.48) = 20 ≈ 8 % of 256
    assert int(mask.sum()) == 64
    centre = _lowest_frequency_rows(256, 20)
    assert centre == set(range(0, 11)) | set(range(247, 256))  # k_y = 0, ±1/256, …, ±9/256, +10/256
    assert centre <= _rows(mask)
    assert abs(20 / 256 - 0.08) < 0.01


@pytest.mark.parametrize("height", [10, 11])
def test_row_mask_ties_broken_towards_the_positive_frequency(height):
    """|k_y| order 0, +1/H, −1/H (row H − 1), +2/H, …: two centre rows are {0, 1}, three {0, 1, H − 1}."""
    for fraction, rows in [(0.2, {0, 1}), (0.3, {0, 1, height - 1})]:
        n_centre, n_total = row_counts(height, acceleration=height, centre_fraction=fraction)
        assert n_centre == n_total == len(rows)
        mask = row_mask(height, acceleration=height, centre_fraction=fraction, generator=_seeded(0))
        assert _rows(mask) == _lowest_frequency_rows(height, n_centre) == rows


def test_row_mask_broadcasts_to_every_column():
    mask = row_mask(32, generator=_seeded(1))
    k = torch.ones(3, 32, 20)
    sampled = k * mask
    assert torch.equal(sampled, sampled[..., :1].expand_as(sampled))


def test_row_mask_reproducible_and_random():
    assert torch.equal(row_mask(64, generator=_seeded(5)), row_mask(64, generator=_seeded(5)))
    g = _seeded(5)
    masks = [row_mask(64, generator=g) for _ in range(4)]
    assert len({tuple(m.flatten().tolist()) for m in masks}) == 4
    assert not torch.equal(row_mask(64, generator=_seeded(5)), row_mask(64, generator=_seeded(6)))


def test_row_mask_random_rows_are_spread_uniformly():
    """Each non-centre row is drawn with probability (n − n_c) / (H − n_c)."""
    height, draws = 32, 400
    n_centre, n_total = row_counts(height)
    g = _seeded(7)
    counts = sum(row_mask(height, generator=g) for _ in range(draws))[:, 0]
    centre = _lowest_frequency_rows(height, n_centre)
    others = torch.tensor([counts[r] for r in range(height) if r not in centre]) / draws
    p = (n_total - n_centre) / (height - n_centre)
    assert all(counts[r] == draws for r in centre)
    assert abs(float(others.mean()) - p) < 1e-6  # exactly n − n_c random rows each time
    assert float((others - p).abs().max()) < 5 * math.sqrt(p * (1 - p) / draws)


def test_row_mask_acceleration_one_and_other_options():
    assert torch.equal(row_mask(20, acceleration=1, generator=_seeded(0)), torch.ones(20, 1))
    mask = row_mask(40, acceleration=8, centre_fraction=0.25, generator=_seeded(0))
    assert row_counts(40, 8, 0.25) == (10, 10)
    assert _rows(mask) == _lowest_frequency_rows(40, 10)
    assert int(row_mask(100, acceleration=2.5, generator=_seeded(0)).sum()) == 40


# ---------------------------------------------------------------------------
# phase
# ---------------------------------------------------------------------------

def test_smooth_phase_unit_modulus_and_hand_computed_point():
    c = torch.tensor([0.1, -0.2, 0.3, 0.4, -0.5], dtype=torch.float64)
    phase = smooth_phase(5, 3, c)
    assert phase.shape == (5, 3) and phase.dtype == torch.complex128
    torch.testing.assert_close(phase.abs(), torch.ones(5, 3, dtype=torch.float64), atol=1e-12, rtol=0)
    # row 1 of 5: u = −0.5; column 2 of 3: v = 1
    u, v = -0.5, 1.0
    expected = cmath.exp(1j * math.pi * (0.1 * u - 0.2 * v + 0.3 * u**2 + 0.4 * v**2 - 0.5 * u * v))
    assert abs(complex(phase[1, 2]) - expected) < 1e-12
    assert abs(complex(phase[1, 2]) - cmath.exp(1j * math.pi * 0.475)) < 1e-12
    # the zero coefficients give phase 1; float32 coefficients give complex64
    ones = smooth_phase(4, 6, torch.zeros(5))
    assert ones.dtype == torch.complex64 and torch.equal(ones, torch.ones(4, 6, dtype=torch.complex64))


def test_smooth_phase_batched_coefficients():
    c = draw_phase_coefficients(3, generator=_seeded(0))
    phases = smooth_phase(8, 9, c)
    assert phases.shape == (3, 8, 9)
    for i in range(3):
        torch.testing.assert_close(phases[i], smooth_phase(8, 9, c[i]))


def test_phase_coefficients_range_and_reproducibility():
    c = draw_phase_coefficients(2000, generator=_seeded(1))
    assert c.shape == (2000, 5) and c.dtype == torch.float32
    assert float(c.min()) >= -0.5 and float(c.max()) < 0.5
    assert float(c.min()) < -0.49 and float(c.max()) > 0.49
    assert draw_phase_coefficients(generator=_seeded(2)).shape == (5,)
    assert torch.equal(draw_phase_coefficients(generator=_seeded(2)), draw_phase_coefficients(generator=_seeded(2)))


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(16, 12), (33, 20)])
def test_noiseless_data_is_the_masked_fft_of_the_image(size):
    clean = torch.rand(3, 1, *size, generator=_seeded(0))
    result = simulate_mri(clean, 0.0, generator=_seeded(1))
    assert isinstance(result, SimulatedMRI)
    assert result.y.shape == (3, 1, *size) and result.y.dtype == torch.complex64
    assert result.image.shape == (3, 1, *size) and result.image.dtype == torch.complex64
    assert result.mask.shape == (3, 1, size[0], 1) and result.mask.dtype == torch.float32
    assert result.sigma.shape == (3,) and torch.equal(result.sigma, torch.zeros(3))
    assert torch.equal(result.y, MaskedFFT(result.mask)(result.image))
    assert torch.equal(result.y, result.operator()(result.image))
    torch.testing.assert_close(result.image.abs(), clean, atol=1e-6, rtol=0)
    # the image is x times the phase of the returned coefficients
    for b in range(3):
        torch.testing.assert_close(result.image[b, 0], clean[b, 0] * smooth_phase(*size, result.coefficients[b]))


def test_noise_level_and_unsampled_entries():
    clean = torch.rand(1, 1, 256, 256, generator=_seeded(0)) ** 2
    s = 0.3
    result = simulate_mri(clean, s, generator=_seeded(1))
    sigma = s * float(clean.std())  # unbiased std of the clean real image
    assert float(result.sigma[0]) == pytest.approx(sigma, rel=1e-6)
    noise = result.y - MaskedFFT(result.mask)(result.image)
    sampled = result.mask[0, 0, :, 0].bool()
    on = noise[0, 0, sampled]  # (64, 256) sampled entries
    assert on.numel() == 64 * 256
    assert float(on.abs().pow(2).mean().sqrt()) == pytest.approx(sigma, rel=0.03)
    assert float(on.real.std()) == pytest.approx(sigma / math.sqrt(2), rel=0.03)
    assert float(on.imag.std()) == pytest.approx(sigma / math.sqrt(2), rel=0.03)
    assert abs(float(on.real.mean())) < 0.05 * sigma and abs(float(on.imag.mean())) < 0.05 * sigma
    assert torch.all(result.y[0, 0, ~sampled] == 0)


def test_per_sample_noise_scales():
    clean = torch.rand(2, 1, 64, 64, generator=_seeded(0))
    clean[1] *= 0.5
    s = torch.tensor([0.1, 0.4])
    result = simulate_mri(clean, s, generator=_seeded(1))
    expected = s * clean.std(dim=(-2, -1)).flatten()
    torch.testing.assert_close(result.sigma, expected)
    noise = result.y - result.operator()(result.image)
    for b in range(2):
        on = noise[b, 0, result.mask[b, 0, :, 0].bool()]
        assert float(on.abs().pow(2).mean().sqrt()) == pytest.approx(float(expected[b]), rel=0.1)


def test_samples_have_their_own_masks_and_phases():
    clean = torch.rand(4, 1, 32, 32, generator=_seeded(0))
    result = simulate_mri(clean, 0.1, generator=_seeded(1))
    masks = {tuple(result.mask[b].flatten().tolist()) for b in range(4)}
    assert len(masks) == 4
    assert len({tuple(result.coefficients[b].tolist()) for b in range(4)}) == 4
    for b in range(4):
        assert int(result.mask[b].sum()) == row_counts(32)[1]
        assert _lowest_frequency_rows(32, row_counts(32)[0]) <= _rows(result.mask[b, 0])
    # identical clean images still get different data
    same = simulate_mri(clean[:1].expand(2, -1, -1, -1), 0.0, generator=_seeded(2))
    assert not torch.equal(same.image[0], same.image[1])


def test_reproducible_and_equal_to_one_sample_at_a_time():
    clean = torch.rand(3, 1, 24, 20, generator=_seeded(0))
    a = simulate_mri(clean, 0.2, generator=_seeded(9))
    b = simulate_mri(clean, 0.2, generator=_seeded(9))
    for name in SimulatedMRI._fields:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    g = _seeded(9)
    singles = [simulate_mri(clean[i:i + 1], 0.2, generator=g) for i in range(3)]
    for name in SimulatedMRI._fields:
        assert torch.equal(getattr(a, name), torch.cat([getattr(r, name) for r in singles])), name
    c = simulate_mri(clean, 0.2, generator=_seeded(10))
    assert not torch.equal(a.mask, c.mask) and not torch.equal(a.y, c.y)


def test_masks_and_phases_do_not_depend_on_the_noise_scale():
    clean = torch.rand(2, 1, 16, 16, generator=_seeded(0))
    a = simulate_mri(clean, 0.0, generator=_seeded(4))
    b = simulate_mri(clean, 0.5, generator=_seeded(4))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.image, b.image)
    assert not torch.equal(a.y, b.y)


def test_mask_matches_row_mask_with_the_same_draws():
    """The first sample's mask is the row_mask a fresh generator of the same seed gives."""
    clean = torch.rand(1, 1, 40, 8, generator=_seeded(0))
    result = simulate_mri(clean, 0.1, acceleration=5, generator=_seeded(3))
    assert torch.equal(result.mask[0, 0], row_mask(40, acceleration=5, generator=_seeded(3)))


def test_float64_images_give_complex128_data():
    clean = torch.rand(2, 1, 12, 10, generator=_seeded(0), dtype=torch.float64)
    result = simulate_mri(clean, 0.0, generator=_seeded(1))
    assert result.y.dtype == torch.complex128 and result.image.dtype == torch.complex128
    assert result.mask.dtype == torch.float32
    torch.testing.assert_close(result.image.abs(), clean, atol=1e-12, rtol=0)
    torch.testing.assert_close(result.y, MaskedFFT(result.mask)(result.image), atol=1e-12, rtol=0)
    single = simulate_mri(clean.float(), 0.0, generator=_seeded(1))
    assert torch.equal(result.mask, single.mask) and torch.equal(result.coefficients, single.coefficients)


def test_adjoint_of_the_data_operator():
    from tvfast.physics.linear import check_adjoint

    clean = torch.rand(2, 1, 16, 16, generator=_seeded(0))
    result = simulate_mri(clean, 0.1, generator=_seeded(1))
    assert check_adjoint(result.operator(), result.image, result.y) < 1e-5


# ---------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------

GOOD = torch.full((2, 1, 8, 8), 0.5)


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(clean=[[0.5]]), TypeError, "clean"),
    (dict(clean=GOOD.to(torch.complex64)), TypeError, "clean"),
    (dict(clean=torch.ones(2, 1, 8, 8, dtype=torch.int64)), TypeError, "clean"),
    (dict(clean=torch.rand(8, 8)), ValueError, "clean"),
    (dict(clean=torch.rand(2, 8, 8)), ValueError, "clean"),
    (dict(clean=torch.rand(2, 3, 8, 8)), ValueError, "clean"),
    (dict(clean=torch.rand(0, 1, 8, 8)), ValueError, "clean"),
    (dict(clean=torch.rand(2, 1, 1, 1)), ValueError, "clean"),
    (dict(clean=GOOD * 3), ValueError, "clean"),
    (dict(clean=GOOD - 0.6), ValueError, "clean"),
    (dict(clean=GOOD * float("nan")), ValueError, "clean"),
    (dict(noise_scale=-0.1), ValueError, "noise_scale"),
    (dict(noise_scale=float("inf")), ValueError, "noise_scale"),
    (dict(noise_scale=torch.tensor([0.1, -0.1])), ValueError, "noise_scale"),
    (dict(noise_scale=torch.tensor([0.1, 0.2, 0.3])), ValueError, "noise_scale"),
    (dict(noise_scale=torch.tensor([0.1j, 0.2])), TypeError, "noise_scale"),
    (dict(noise_scale="0.1"), TypeError, "noise_scale"),
    (dict(noise_scale=True), TypeError, "noise_scale"),
    (dict(acceleration=0.5), ValueError, "acceleration"),
    (dict(acceleration=0), ValueError, "acceleration"),
    (dict(acceleration=float("nan")), ValueError, "acceleration"),
    (dict(acceleration="4"), ValueError, "acceleration"),
    (dict(centre_fraction=0.0), ValueError, "centre_fraction"),
    (dict(centre_fraction=1.5), ValueError, "centre_fraction"),
    (dict(generator=0), TypeError, "generator"),
])
def test_simulate_mri_rejects_bad_inputs(kwargs, error, name):
    arguments = dict(clean=GOOD, noise_scale=0.1, generator=_seeded(0)) | kwargs
    clean = arguments.pop("clean")
    noise_scale = arguments.pop("noise_scale")
    with pytest.raises(error, match=f"^{name}:"):
        simulate_mri(clean, noise_scale, **arguments)


@pytest.mark.parametrize("call, error, name", [
    (lambda: row_mask(0), ValueError, "height"),
    (lambda: row_mask(8.0), ValueError, "height"),
    (lambda: row_mask(8, acceleration=0.9), ValueError, "acceleration"),
    (lambda: row_mask(8, centre_fraction=-0.1), ValueError, "centre_fraction"),
    (lambda: row_mask(8, generator="seed"), TypeError, "generator"),
    (lambda: smooth_phase(0, 4, torch.zeros(5)), ValueError, "height"),
    (lambda: smooth_phase(4, 0, torch.zeros(5)), ValueError, "width"),
    (lambda: smooth_phase(4, 4, torch.zeros(4)), ValueError, "coefficients"),
    (lambda: smooth_phase(4, 4, torch.zeros(())), ValueError, "coefficients"),
    (lambda: smooth_phase(4, 4, torch.zeros(5, dtype=torch.complex64)), TypeError, "coefficients"),
    (lambda: smooth_phase(4, 4, [0.0] * 5), TypeError, "coefficients"),
    (lambda: draw_phase_coefficients(0), ValueError, "count"),
    (lambda: draw_phase_coefficients(generator=1), TypeError, "generator"),
])
def test_helpers_reject_bad_inputs(call, error, name):
    with pytest.raises(error, match=f"^{name}:"):
        call()
