"""Noise models of docs/method.md §7."""

import pytest
import torch

from tvfast.evaluation.noise import absolute_noise, add_noise, relative_noise


def test_relative_noise_scales_with_each_image_std():
    g = torch.Generator().manual_seed(0)
    x = torch.stack([torch.rand(1, 128, 128) * 0.1, torch.rand(1, 128, 128)])
    z = relative_noise(x, 0.5, generator=g)
    for i in range(2):
        ratio = (z[i] - x[i]).std() / x[i].std()
        assert abs(ratio - 0.5) < 0.02


def test_per_image_levels_and_reproducible():
    x = torch.rand(2, 1, 64, 64)
    s = torch.tensor([0.1, 0.4])
    z1 = relative_noise(x, s, generator=torch.Generator().manual_seed(3))
    z2 = relative_noise(x, s, generator=torch.Generator().manual_seed(3))
    assert torch.equal(z1, z2)
    r = [((z1[i] - x[i]).std() / x[i].std()).item() for i in range(2)]
    assert r[0] == pytest.approx(0.1, rel=0.1) and r[1] == pytest.approx(0.4, rel=0.1)


def test_absolute_noise_not_clipped():
    x = torch.zeros(1, 1, 64, 64)
    z = absolute_noise(x, 0.2, generator=torch.Generator().manual_seed(0))
    assert z.min() < 0
    assert (z.std() - 0.2).abs() < 0.02


def test_add_noise_dispatch():
    x = torch.rand(1, 1, 8, 8)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(add_noise(x, 0.3, "absolute", generator=g()), absolute_noise(x, 0.3, generator=g()))
    with pytest.raises(ValueError):
        add_noise(x, 0.3, "poisson")


def test_level_of_the_wrong_shape_names_both_shapes():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"shape \(B,\) = \(2,\).*got shape \(3,\)"):
        relative_noise(x, torch.tensor([0.1, 0.2, 0.3]))
