"""Packed 2-bit clip states (docs/method.md §4) and their tie rule, in PyTorch and in the kernels."""

import pytest
import torch

from tvfast.solver import cpu as torch_path
from tvfast.solver.clip_states import HIGH, INSIDE, LOW, clip_state, pack_nibbles, packed_width, unpack_nibbles
from tvfast.kernels import pdhg_step

pytestmark = pytest.mark.usefixtures("nan_empty")


def test_state_codes():
    assert (INSIDE, HIGH, LOW) == (0, 1, 2)


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 7, 8, 9, 17, 65])
def test_pack_unpack_roundtrip(width, gen):
    nibbles = torch.randint(0, 16, (3, 4, width), generator=gen, dtype=torch.uint8)
    packed = pack_nibbles(nibbles)
    assert packed.dtype == torch.uint8
    assert packed.shape == (3, 4, packed_width(width)) == (3, 4, (width + 1) // 2)
    assert torch.equal(unpack_nibbles(packed, width), nibbles)


@pytest.mark.parametrize("width", [1, 2, 5, 6])
def test_pack_layout_even_column_low_nibble(width, gen):
    """Byte m holds column 2m in its low nibble and column 2m+1 in its high nibble (0 past the edge)."""
    nibbles = torch.randint(0, 16, (2, width), generator=gen, dtype=torch.uint8)
    packed = pack_nibbles(nibbles)
    for m in range(packed_width(width)):
        low = int(nibbles[0, 2 * m])
        high = int(nibbles[0, 2 * m + 1]) if 2 * m + 1 < width else 0
        assert int(packed[0, m]) == low | (high << 4)


def test_packed_width():
    assert [packed_width(w) for w in (1, 2, 3, 4, 64, 65)] == [1, 1, 2, 2, 32, 33]


def test_clip_state_tie_rule():
    lam = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0])
    u = torch.tensor([0.5, -0.5, 0.2, 0.7, -0.9, 0.0, -0.0, 1e-30, -1e-30])
    expected = [HIGH, LOW, INSIDE, HIGH, LOW, HIGH, HIGH, HIGH, LOW]
    assert clip_state(u, lam).tolist() == expected
    assert clip_state(u, lam).dtype == torch.uint8


def test_clip_state_matches_clip_branches(gen):
    """Away from ties, INSIDE ⇔ clip(u) = u, HIGH ⇔ clip(u) = Λ, LOW ⇔ clip(u) = −Λ."""
    u = torch.randn(1000, generator=gen, dtype=torch.float64)
    lam = torch.rand(1000, generator=gen, dtype=torch.float64)
    state = clip_state(u, lam)
    q = torch.minimum(torch.maximum(u, -lam), lam)
    assert torch.equal(state == INSIDE, (u.abs() < lam))
    assert torch.equal(q[state == HIGH], lam[state == HIGH])
    assert torch.equal(q[state == LOW], -lam[state == LOW])


def _expected_first_mask(z, lam, sigma):
    """Packed states of iteration 0: u = σ∇z (q₀ = 0, x̄₀ = z), states by the tie rule."""
    lam = lam.expand(z.shape[0], 2, *z.shape[-2:])
    u0 = sigma * (torch.roll(z, -1, -2) - z)
    u1 = sigma * (torch.roll(z, -1, -1) - z)
    return pack_nibbles(clip_state(u0, lam[:, 0]) | (clip_state(u1, lam[:, 1]) << 2))


@pytest.mark.parametrize("solver", [torch_path, pdhg_step], ids=["torch", "triton"])
def test_exact_ties_in_the_solvers(solver):
    """Exact ties u = ±Λ (dyadic values) get the same states in both solvers as in clip_state.

    With σ = 1/2 and z ∈ {0, 1}, u = σ∇z ∈ {0, ±1/2} exactly; Λ = 1/2 on
    some pixels (u = Λ → HIGH, u = −Λ → LOW) and Λ = 0 elsewhere (u = 0 →
    HIGH).
    """
    height, width = 5, 7  # odd: periodic wrap gives 0→0 and 1→1 pairs too
    i = torch.arange(height).reshape(-1, 1)
    j = torch.arange(width).reshape(1, -1)
    z = torch.stack([((i + j) % 2).float(), ((i * j) % 2).float()])  # (2, H, W)
    lam = torch.where((i + 2 * j) % 3 == 0, 0.0, 0.5).float().expand(1, 2, height, width).contiguous()
    tau, sigma = 0.2, 0.5
    _, mask = solver.solve_forward(z.contiguous(), lam, 1, tau, sigma, 1.0, need_mask=True)
    expected = _expected_first_mask(z, lam, sigma)
    assert torch.equal(mask[0], expected)
    states = unpack_nibbles(expected, width)
    assert (states & 3 == HIGH).any() and (states & 3 == LOW).any()  # both ties are exercised


@pytest.mark.parametrize("solver", [torch_path, pdhg_step], ids=["torch", "triton"])
def test_zero_lambda_on_constant_image_is_all_high(solver):
    """Λ = 0, u = 0 → HIGH in both directions: every nibble 0b0101, padding nibble 0."""
    z = torch.full((2, 3, 5), 0.25)
    lam = torch.zeros(1, 1, 1, 1)
    x, mask = solver.solve_forward(z, lam, 3, 1 / 3, 1 / 3, 1.0, need_mask=True)
    assert torch.equal(x, z)
    assert mask.shape == (3, 2, 3, 3)
    assert torch.equal(mask[..., :2], torch.full_like(mask[..., :2], 0x55))
    assert torch.equal(mask[..., 2], torch.full_like(mask[..., 2], 0x05))
