"""The 2-bit clip states (docs/method.md §4): their tie rule, their packing, and what the solvers record.

The solvers' records are decoded here bit by bit, independently of
:mod:`tvfast.solver.clip_states`, and compared with the branch the reference
loop's dual update ``q = clip(u, −Λ, Λ)`` takes at every entry.
"""

import pytest
import torch

from tvfast.solver import cpu
from tvfast.solver.clip_states import HIGH, INSIDE, LOW, clip_state, pack_nibbles, packed_width, unpack_nibbles
from tvfast.kernels import launch
from tvfast.solver.reference import pdhg_reference_iterates

pytestmark = pytest.mark.usefixtures("nan_empty")


def _branch(u, lam, q):
    """The branch of clip(u, −Λ, Λ) read off the reference's q, with the tie rule of docs/method.md §4:
    HIGH where q = Λ and u ≥ Λ, LOW where q = −Λ and u ≤ −Λ (not HIGH), INSIDE where q = u strictly inside."""
    high = (q == lam) & (u >= lam)
    low = (q == -lam) & (u <= -lam) & ~high
    inside = (q == u) & (u > -lam) & (u < lam)
    assert bool((high | low | inside).all()), "every entry takes exactly one branch"
    return torch.where(high, HIGH, torch.where(low, LOW, INSIDE))


def _unpack_by_bits(record, width):
    """(…, ⌈W/2⌉) bytes → (…, W, 2) states: column j in nibble j mod 2 of byte j // 2, axis a in bits 2a, 2a+1."""
    columns = torch.arange(width)
    nibble = (record[..., columns // 2].long() >> (4 * (columns % 2))) & 15
    return torch.stack([nibble & 3, nibble >> 2], dim=-1)


# --- tie rule ----------------------------------------------------------------


def test_clip_state_tie_rule():
    """u = Λ is HIGH, u = −Λ is LOW, and at Λ = 0 the zero u (of either sign) is HIGH."""
    lam = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0])
    u = torch.tensor([0.5, -0.5, 0.2, 0.7, -0.9, 0.0, -0.0, 1e-30, -1e-30])
    expected = [HIGH, LOW, INSIDE, HIGH, LOW, HIGH, HIGH, HIGH, LOW]
    assert clip_state(u, lam).tolist() == expected
    assert clip_state(u, lam).dtype == torch.uint8


def test_clip_state_is_the_branch_of_clip(gen):
    """On random values and on exact ties, the state is the branch clip(u, −Λ, Λ) takes."""
    u = torch.randn(1000, generator=gen, dtype=torch.float64)
    lam = torch.rand(1000, generator=gen, dtype=torch.float64)
    u[:100], u[100:200] = lam[:100], -lam[100:200]  # exact ties
    q = torch.minimum(torch.maximum(u, -lam), lam)
    assert torch.equal(clip_state(u, lam).long(), _branch(u, lam, q))


# --- packing -------------------------------------------------------------------


@pytest.mark.parametrize("width", [1, 2, 3, 4, 5, 7, 8, 9, 17, 65])
def test_pack_unpack_roundtrip(width, gen):
    nibbles = torch.randint(0, 16, (3, 4, width), generator=gen, dtype=torch.uint8)
    packed = pack_nibbles(nibbles)
    assert packed.dtype == torch.uint8
    assert packed.shape == (3, 4, packed_width(width))
    assert 2 * packed_width(width) - 1 <= width <= 2 * packed_width(width)  # no byte wasted, none missing
    assert torch.equal(unpack_nibbles(packed, width), nibbles)
    out = torch.empty(3, 4, packed_width(width), dtype=torch.uint8)
    assert pack_nibbles(nibbles, out=out) is out and torch.equal(out, packed)


@pytest.mark.parametrize("width", [1, 2, 5, 6])
def test_pack_layout_even_column_low_nibble(width, gen):
    """Byte m holds column 2m in its low nibble and column 2m+1 in its high nibble (0 past the edge)."""
    nibbles = torch.randint(0, 16, (2, width), generator=gen, dtype=torch.uint8)
    packed = pack_nibbles(nibbles)
    for m in range(packed_width(width)):
        low = int(nibbles[0, 2 * m])
        high = int(nibbles[0, 2 * m + 1]) if 2 * m + 1 < width else 0
        assert int(packed[0, m]) == low | (high << 4)


# --- what the solvers record -------------------------------------------------------


@pytest.mark.parametrize("solver", [cpu, launch], ids=["torch", "triton"])
@pytest.mark.parametrize("shape", [(2, 9, 7), (1, 5, 1), (1, 1, 9), (2, 6, 10)], ids=lambda s: "x".join(map(str, s)))
def test_every_recorded_state_is_the_reference_branch_2d(solver, shape, gen):
    batch, height, width = shape
    n_iter = 6
    z = torch.rand(batch, height, width, generator=gen, dtype=torch.float64)
    lam = 0.02 + 0.1 * torch.rand(batch, 2, height, width, generator=gen, dtype=torch.float64)
    _, record = solver.solve_forward(z, lam, n_iter, 1 / 3, 1 / 3, 1.0, keep_states=True)
    assert record.shape == (n_iter, batch, height, (width + 1) // 2) and record.dtype == torch.uint8
    if width % 2:
        assert bool((record[..., -1] >> 4 == 0).all())  # the nibble past the edge is zero
    seen = set()
    for k, it in enumerate(pdhg_reference_iterates(z[:, None], lam, n_iter)):
        expected = _branch(it.u, lam, it.q).movedim(1, -1)  # (B, H, W, 2)
        assert torch.equal(_unpack_by_bits(record[k], width), expected), f"iteration {k}"
        seen |= set(expected.unique().tolist())
    assert seen == {INSIDE, HIGH, LOW}


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 1, 4, 1)], ids=lambda s: "x".join(map(str, s)))
def test_every_recorded_state_is_the_reference_branch_3d(shape, gen):
    """Volumes: one byte per voxel, axis a (D, H, W) in bits 2a, 2a+1, bits 6 and 7 zero."""
    n_iter = 4
    z = torch.rand(shape, generator=gen, dtype=torch.float64)
    lam = 0.02 + 0.1 * torch.rand(shape[0], 3, *shape[1:], generator=gen, dtype=torch.float64)
    step = 13**-0.5
    _, record = cpu.solve_forward(z, lam, n_iter, step, step, 1.0, keep_states=True)
    assert record.shape == (n_iter, *shape) and record.dtype == torch.uint8
    for k, it in enumerate(pdhg_reference_iterates(z[:, None], lam, n_iter)):
        expected = _branch(it.u, lam, it.q)  # (B, 3, D, H, W)
        decoded = torch.stack([(record[k].long() >> (2 * axis)) & 3 for axis in range(3)], dim=1)
        assert torch.equal(decoded, expected), f"iteration {k}"
        assert bool((record[k] >> 6 == 0).all())


@pytest.mark.parametrize("solver", [cpu, launch], ids=["torch", "triton"])
def test_exact_ties_in_the_solvers(solver):
    """Exact ties u = ±Λ (dyadic values) are HIGH at u = Λ, LOW at u = −Λ, HIGH at u = 0 = Λ.

    With σ = 1/2 and z ∈ {0, 1}, u = σ∇z ∈ {0, ±1/2} exactly in iteration 0
    (q₀ = 0, x̄₀ = z); Λ = 1/2 on some pixels and Λ = 0 elsewhere.
    """
    height, width = 5, 7  # odd: periodic wrap gives 0→0 and 1→1 pairs too
    i = torch.arange(height).reshape(-1, 1)
    j = torch.arange(width).reshape(1, -1)
    z = torch.stack([((i + j) % 2).float(), ((i * j) % 2).float()])  # (2, H, W)
    lam = torch.where((i + 2 * j) % 3 == 0, 0.0, 0.5).float().expand(1, 2, height, width).contiguous()
    _, record = solver.solve_forward(z.contiguous(), lam, 1, 0.2, 0.5, 1.0, keep_states=True)
    states = _unpack_by_bits(record[0], width)
    u = 0.5 * torch.stack([torch.roll(z, -1, -2) - z, torch.roll(z, -1, -1) - z], dim=-1)
    lam_last = lam[0].movedim(0, -1)
    high_tie, low_tie = (u == lam_last) & (lam_last > 0), (u == -lam_last) & (lam_last > 0)
    assert bool(high_tie.any()) and bool(low_tie.any()) and bool(((u == 0) & (lam_last == 0)).any())
    assert torch.equal(states == HIGH, u >= lam_last)  # includes u = Λ and u = 0 = Λ
    assert torch.equal(states == LOW, ~(u >= lam_last) & (u <= -lam_last))  # includes u = −Λ < 0
    assert bool((states[low_tie] == LOW).all()) and bool((states[high_tie] == HIGH).all())


@pytest.mark.parametrize("solver", [cpu, launch], ids=["torch", "triton"])
def test_zero_lambda_on_constant_image_is_all_high(solver):
    """Λ = 0, u = 0 → HIGH in both directions: every nibble 0b0101, padding nibble 0."""
    z = torch.full((2, 3, 5), 0.25)
    lam = torch.zeros(1, 1, 1, 1)
    x, record = solver.solve_forward(z, lam, 3, 1 / 3, 1 / 3, 1.0, keep_states=True)
    assert torch.equal(x, z)
    assert record.shape == (3, 2, 3, 3)
    assert torch.equal(record[..., :2], torch.full_like(record[..., :2], 0x55))
    assert torch.equal(record[..., 2], torch.full_like(record[..., 2], 0x05))
