"""The periodic gradient and its adjoint (docs/method.md §2)."""

import pytest
import torch

from tvfast.solver.differences import grad_T, gradient

SIZES = [(1, 1), (1, 7), (7, 1), (1, 2), (2, 1), (5, 7), (4, 9), (13, 10), (3, 3)]


def _gradient_by_index(x):
    """(∇x)₀[i,j] = x[(i+1) mod H, j] − x[i,j], (∇x)₁[i,j] = x[i, (j+1) mod W] − x[i,j], by loops."""
    height, width = x.shape
    out = torch.empty(2, height, width, dtype=x.dtype)
    for i in range(height):
        for j in range(width):
            out[0, i, j] = x[(i + 1) % height, j] - x[i, j]
            out[1, i, j] = x[i, (j + 1) % width] - x[i, j]
    return out


def _grad_T_by_index(q):
    """(∇ᵀq)[i,j] = q₀[(i−1) mod H, j] − q₀[i,j] + q₁[i, (j−1) mod W] − q₁[i,j], by loops."""
    _, height, width = q.shape
    out = torch.empty(height, width, dtype=q.dtype)
    for i in range(height):
        for j in range(width):
            out[i, j] = (q[0, (i - 1) % height, j] - q[0, i, j]) + (q[1, i, (j - 1) % width] - q[1, i, j])
    return out


@pytest.mark.parametrize("size", SIZES)
def test_gradient_matches_index_formula(size, gen):
    x = torch.randn(*size, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(gradient(x), _gradient_by_index(x), atol=0, rtol=0)


@pytest.mark.parametrize("size", SIZES)
def test_grad_T_matches_index_formula(size, gen):
    q = torch.randn(2, *size, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(grad_T(q), _grad_T_by_index(q), atol=0, rtol=0)


@pytest.mark.parametrize("size", SIZES + [(17, 1), (1, 17), (33, 65)])
@pytest.mark.parametrize("lead", [(), (3,), (2, 1)])
def test_adjoint_identity_float64(size, lead, gen):
    """⟨∇x, q⟩ = ⟨x, ∇ᵀq⟩ to rounding, with any leading batch dims."""
    x = torch.randn(*lead, *size, generator=gen, dtype=torch.float64)
    q = torch.randn(*lead, 2, *size, generator=gen, dtype=torch.float64)
    gx = gradient(x)
    assert gx.shape == (*lead, 2, *size)
    gtq = grad_T(q)
    assert gtq.shape == x.shape
    lhs = (gx * q).sum()
    rhs = (x * gtq).sum()
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, float(lhs.abs()))


def test_grad_T_is_the_transpose_of_gradient_as_matrices():
    """Build ∇ as an explicit matrix from unit vectors; ∇ᵀ must be its transpose exactly."""
    height, width = 3, 4
    n = height * width
    eye = torch.eye(n, dtype=torch.float64).reshape(n, height, width)
    grad_matrix = gradient(eye).reshape(n, 2 * n).T  # columns: ∇ e_k
    eye_q = torch.eye(2 * n, dtype=torch.float64).reshape(2 * n, 2, height, width)
    grad_T_matrix = grad_T(eye_q).reshape(2 * n, n).T  # columns: ∇ᵀ e_k
    torch.testing.assert_close(grad_T_matrix, grad_matrix.T, atol=0, rtol=0)


def test_operator_norm_at_most_8_and_attained_by_checkerboard(gen):
    """‖∇‖² ≤ 8 (so L = ‖[I; ∇]‖ = 3); an even-sized checkerboard attains it."""
    height, width = 6, 8
    n = height * width
    eye = torch.eye(n, dtype=torch.float64).reshape(n, height, width)
    grad_matrix = gradient(eye).reshape(n, 2 * n)
    largest = torch.linalg.matrix_norm(grad_matrix, ord=2) ** 2
    assert largest <= 8.0 + 1e-9
    i = torch.arange(height).reshape(-1, 1)
    j = torch.arange(width).reshape(1, -1)
    checker = ((i + j) % 2 * 2 - 1).to(torch.float64)
    torch.testing.assert_close(grad_T(gradient(checker)), 8.0 * checker)


def test_constant_image_has_zero_gradient():
    x = torch.full((2, 5, 7), 3.25)
    assert torch.equal(gradient(x), torch.zeros(2, 2, 5, 7))
    assert torch.equal(grad_T(gradient(x)), torch.zeros(2, 5, 7))


def test_grad_T_of_any_field_sums_to_zero(gen):
    """∇ᵀq is a (negative) divergence on a torus: it sums to zero (adjoint of ∇ on constants)."""
    q = torch.randn(3, 2, 9, 11, generator=gen, dtype=torch.float64)
    assert grad_T(q).sum(dim=(-2, -1)).abs().max() < 1e-12
