"""Every bad input of tvfast.pdhg raises a documented error naming the argument."""

import pytest
import torch

import tvfast
from tvfast.solver import cpu
from tvfast.kernels import launch

B, H, W = 2, 5, 6


@pytest.fixture
def z():
    return torch.rand(B, 1, H, W)


@pytest.fixture(autouse=True)
def _no_solver_runs(monkeypatch):
    """Argument errors are raised before any kernel runs."""

    def fail(*args, **kwargs):
        raise AssertionError("a solver ran although the arguments are invalid")

    for module in (cpu, launch):
        monkeypatch.setattr(module, "solve_forward", fail)


# --- z ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_z_non_float_dtype(dtype):
    z = torch.ones(B, 1, H, W).to(dtype)
    with pytest.raises(TypeError, match=r"^z: .*float"):
        tvfast.pdhg(z, 0.1, 4)


@pytest.mark.parametrize("value", [[[0.0, 1.0], [1.0, 0.0]], 3.0, None])
def test_z_not_a_tensor(value):
    with pytest.raises(TypeError, match=r"^z: .*torch\.Tensor"):
        tvfast.pdhg(value, 0.1, 4)


@pytest.mark.parametrize("shape", [(W,), (B, 2, H, W), (B, 3, H, W), (1, B, 1, H, W), ()])
def test_z_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"^z: expected shape"):
        tvfast.pdhg(torch.rand(shape), 0.1, 4)


@pytest.mark.parametrize("shape", [(0, H, W), (B, 1, 0, W), (H, 0)])
def test_z_empty(shape):
    with pytest.raises(ValueError, match=r"^z: .*non-empty"):
        tvfast.pdhg(torch.rand(shape), 0.1, 4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_z_not_finite(z, bad):
    z[1, 0, 2, 3] = bad
    with pytest.raises(ValueError, match=r"^z: expected finite"):
        tvfast.pdhg(z, 0.1, 4)


# --- Lambda ----------------------------------------------------------------


def _map_with_one_negative_entry():
    lam = torch.full((H, W), 0.1)
    lam[2, 3] = -0.5
    return lam


@pytest.mark.parametrize("lam", [-0.1, torch.tensor(-1e-3), _map_with_one_negative_entry()])
def test_lambda_negative(z, lam):
    with pytest.raises(ValueError, match=r"^Lambda: expected non-negative"):
        tvfast.pdhg(z, lam, 4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_lambda_not_finite(z, bad, as_tensor):
    lam = torch.full((B, 2, H, W), 0.1)
    lam[0, 1, 1, 1] = bad
    with pytest.raises(ValueError, match=r"^Lambda: expected finite"):
        tvfast.pdhg(z, lam if as_tensor else bad, 4)


@pytest.mark.parametrize(
    "shape",
    [(H + 1, W), (H, W + 1), (3,), (B + 1, 1, H, W), (B, 3, H, W), (B, 2, H, W - 1), (1, 1, 1, H, W),
     (B, H, 1, W), (W, H)],  # fmt: skip
)
def test_lambda_wrong_shape(z, shape):
    with pytest.raises(ValueError, match=r"^Lambda: "):
        tvfast.pdhg(z, torch.full(shape, 0.1), 4)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.uint8])
def test_lambda_integer_tensor(z, dtype):
    with pytest.raises(TypeError, match=r"^Lambda: expected a floating-point tensor"):
        tvfast.pdhg(z, torch.ones(H, W, dtype=dtype), 4)


@pytest.mark.parametrize("lam", ["0.1", None, [0.1, 0.2], True, 1j])
def test_lambda_wrong_type(z, lam):
    with pytest.raises(TypeError, match=r"^Lambda: expected a float or a torch\.Tensor"):
        tvfast.pdhg(z, lam, 4)


def test_lambda_python_int_is_accepted(z, monkeypatch):
    monkeypatch.undo()  # let the solver run
    torch.testing.assert_close(tvfast.pdhg(z, 0, 3), z)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_lambda_on_another_device(z):
    with pytest.raises(ValueError, match=r"^Lambda: expected a tensor on z's device"):
        tvfast.pdhg(z, torch.full((H, W), 0.1, device="cuda"), 4)


# --- n_iter ----------------------------------------------------------------


@pytest.mark.parametrize("n_iter", [-1, -256])
def test_n_iter_negative(z, n_iter):
    with pytest.raises(ValueError, match=r"^n_iter: expected n_iter >= 0"):
        tvfast.pdhg(z, 0.1, n_iter)


@pytest.mark.parametrize("n_iter", [4.0, 2.5, True, False, "4", None, torch.tensor(4)])
def test_n_iter_not_an_int(z, n_iter):
    with pytest.raises(TypeError, match=r"^n_iter: expected an int"):
        tvfast.pdhg(z, 0.1, n_iter)


# --- tau, sigma, theta -----------------------------------------------------


@pytest.mark.parametrize("tau, sigma", [(1.0, 1.0), (0.5, 0.5), (1 / 3 + 1e-6, 1 / 3), (1.0, 1 / 3)])
def test_step_sizes_violate_convergence_bound(z, tau, sigma):
    bound = r"^tau, sigma: PDHG converges for tau\*sigma\*\|\|K\|\|\^2 <= 1 with \|\|K\|\|\^2 = 9 for images"
    with pytest.raises(ValueError, match=bound):
        tvfast.pdhg(z, 0.1, 4, tau=tau, sigma=sigma)


@pytest.mark.parametrize("name", ["tau", "sigma"])
@pytest.mark.parametrize("value", [0.0, -0.1])
def test_step_sizes_not_positive(z, name, value):
    with pytest.raises(ValueError, match=rf"^tau, sigma: expected positive.*{name}={value:.4g}"):
        tvfast.pdhg(z, 0.1, 4, **{name: value})


# tau=None and sigma=None are the defaults (1/3 for images, 1/√13 for volumes; tests/test_pdhg_3d.py).
# 0-d and (T,) floating tensors are accepted (learnable and per-iteration steps, tests/test_isotropic.py).
@pytest.mark.parametrize("name, value", [(name, value) for name in ("tau", "sigma", "theta")
                                         for value in ("0.3", None, True, [0.3])
                                         if value is not None or name == "theta"])  # fmt: skip
def test_steps_wrong_type(z, name, value):
    with pytest.raises(TypeError, match=rf"^{name}: expected a real number or a 0-d/\(T,\) tensor"):
        tvfast.pdhg(z, 0.1, 4, **{name: value})


@pytest.mark.parametrize("name", ["tau", "sigma", "theta"])
@pytest.mark.parametrize("value", [torch.tensor(1), torch.tensor(0.3 + 0j)])
def test_step_tensors_not_real_floating(z, name, value):
    with pytest.raises(TypeError, match=rf"^{name}: expected a real floating-point tensor"):
        tvfast.pdhg(z, 0.1, 4, **{name: value})


@pytest.mark.parametrize("name", ["tau", "sigma", "theta"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_steps_not_finite(z, name, value):
    with pytest.raises(ValueError, match=rf"^{name}: expected a finite number"):
        tvfast.pdhg(z, 0.1, 4, **{name: value})


@pytest.mark.parametrize("theta", [-0.1, 1.01, 2.0])
def test_theta_outside_unit_interval(z, theta):
    with pytest.raises(ValueError, match=r"^theta: expected 0 <= theta <= 1"):
        tvfast.pdhg(z, 0.1, 4, theta=theta)


def test_steps_are_keyword_only(z):
    with pytest.raises(TypeError):
        tvfast.pdhg(z, 0.1, 4, 1 / 3)


# --- compile ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", 1, 0, 1.0, "False"])
def test_compile_not_a_bool(z, value):
    with pytest.raises(TypeError, match=r"^compile: expected True, False or None, got"):
        tvfast.pdhg(z, 0.1, 4, compile=value)


# --- backend ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["cuda", "Triton", "", None, "numpy"])
def test_unknown_backend(z, backend):
    with pytest.raises(ValueError, match=r"^backend: expected one of"):
        tvfast.pdhg(z, 0.1, 4, backend=backend)


@pytest.mark.parametrize("value", [None, "0", "true"])
def test_triton_on_cpu_needs_the_interpreter(z, monkeypatch, value):
    """TRITON_INTERPRET is read when pdhg is called (here: after tvfast.kernels was imported)."""
    if value is None:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    else:
        monkeypatch.setenv("TRITON_INTERPRET", value)
    with pytest.raises(ValueError, match=r"^backend: 'triton' on CPU tensors .*TRITON_INTERPRET=1"):
        tvfast.pdhg(z, 0.1, 4, backend="triton")


def test_valid_edge_values_are_accepted(z, monkeypatch):
    """Boundary values that are allowed: τσ·9 = 1, θ ∈ {0, 1}, Λ = 0, n_iter = 0, numpy ints."""
    monkeypatch.undo()
    np = pytest.importorskip("numpy")
    tvfast.pdhg(z, 0.0, 2, tau=1 / 3, sigma=1 / 3, theta=0.0)
    tvfast.pdhg(z, 0.1, 2, tau=0.5, sigma=2 / 9, theta=1.0)
    tvfast.pdhg(z, 0.1, np.int64(2))
    assert torch.equal(tvfast.pdhg(z, torch.zeros(B), 0), z)
