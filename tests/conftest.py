"""Shared fixtures of the test suite.

``TRITON_INTERPRET=1`` is set here (unless the environment says otherwise),
before anything imports Triton, so the Triton kernels of ``tvfast.kernels``
run on CPU tensors through the interpreter (slow: the kernel tests use small
images and few iterations). ``benchmarks/gpu.sh`` sets ``TRITON_INTERPRET=0``
and runs only the CUDA tests, with compiled kernels.
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede any `import triton`

import pytest  # noqa: E402
import torch  # noqa: E402

from tvfast.solver.reference import pdhg_reference  # noqa: E402

SEED = 20240611


def pytest_configure(config):
    config.addinivalue_line("markers", "real_empty: do not NaN-fill torch.empty in this test (e.g. torch.compile)")


@pytest.fixture(autouse=True)
def _fixed_seed():
    """Every test starts from the same global RNG state."""
    torch.manual_seed(SEED)


@pytest.fixture(autouse=True)
def _fused_kernels_compile_in_the_test(monkeypatch):
    """The fused CPU kernels compile in the test's own process, never in a background child (which would let the
    first solves of a fresh kernel cache run on the PyTorch steps, and the kernels go untested);
    tests/test_start_policy.py tests the background compilation in its own processes."""
    from tvfast.solver import fused

    monkeypatch.setattr(fused, "compile_in_background", False)


def _poison(t: torch.Tensor) -> torch.Tensor:
    if t.is_floating_point():
        t.fill_(float("nan"))
    elif t.dtype == torch.uint8:
        t.fill_(0xFF)  # nibble 15: an invalid clip state in both slots
    return t


@pytest.fixture
def nan_empty(request, monkeypatch):
    """Freshly allocated buffers are filled with garbage that fails loudly.

    ``torch.empty``/``torch.empty_like``/``Tensor.new_empty`` return float buffers full of NaN and
    uint8 buffers full of 0xFF (invalid clip states), like the tests of
    flash-linear-attention: an unwritten edge tile or mask byte then shows up
    as NaN or a wrong gradient instead of passing by luck on zeroed memory.
    """
    if request.node.get_closest_marker("real_empty"):
        yield
        return
    real_empty, real_empty_like = torch.empty, torch.empty_like

    def empty(*args, **kwargs):
        return _poison(real_empty(*args, **kwargs))

    def empty_like(*args, **kwargs):
        return _poison(real_empty_like(*args, **kwargs))

    real_new_empty = torch.Tensor.new_empty

    def new_empty(self, *args, **kwargs):  # the CPU path's double buffers and clip masks use it
        return _poison(real_new_empty(self, *args, **kwargs))

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch, "empty_like", empty_like)
    monkeypatch.setattr(torch.Tensor, "new_empty", new_empty)
    yield


@pytest.fixture
def gen():
    """A seeded CPU generator for the test's own random inputs."""
    return torch.Generator().manual_seed(SEED)


# ---------------------------------------------------------------------------
# Λ in all the accepted layouts, and the matching reference call
# ---------------------------------------------------------------------------

LAMBDA_KINDS = ("float", "0d", "per_batch", "hw", "bhw", "11hw", "b1hw", "b2hw", "12hw", "b211")
TENSOR_LAMBDA_KINDS = tuple(k for k in LAMBDA_KINDS if k != "float")


def pytest_generate_tests(metafunc):
    """The one list of Λ layouts: a test taking ``lambda_kind`` runs for every layout,
    one taking ``tensor_lambda_kind`` for every tensor layout (Λ that can receive a gradient)."""
    if "lambda_kind" in metafunc.fixturenames:
        metafunc.parametrize("lambda_kind", LAMBDA_KINDS)
    if "tensor_lambda_kind" in metafunc.fixturenames:
        metafunc.parametrize("tensor_lambda_kind", TENSOR_LAMBDA_KINDS)


def make_lambda(kind, batch, height, width, dtype=torch.float32, generator=None, low=0.02, high=0.2):
    """Λ of the given layout with values in [low, high) (away from 0, so few ties)."""

    def rand(*shape):
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)

    shapes = {
        "0d": (),
        "per_batch": (batch,),
        "hw": (height, width),
        "bhw": (batch, height, width),
        "11hw": (1, 1, height, width),
        "b1hw": (batch, 1, height, width),
        "b2hw": (batch, 2, height, width),
        "12hw": (1, 2, height, width),
        "b211": (batch, 2, 1, 1),
    }
    if kind == "float":
        return float(rand())
    return rand(*shapes[kind])


def lambda_for_reference(lam, batch: int):
    """The same Λ as a value broadcastable to (B, 2, H, W), as pdhg_reference takes it."""
    if not torch.is_tensor(lam) or lam.dim() in (0, 2, 4):
        return lam
    if lam.dim() == 1:
        return lam.reshape(-1, 1, 1, 1)
    return lam.unsqueeze(1)  # (B|1, H, W)


def reference(z, lam, n_iter, **steps):
    """pdhg_reference for z (H, W), (B, H, W) or (B, 1, H, W), any accepted Λ layout; returns z's shape."""
    z4 = z.reshape(-1, 1, *z.shape[-2:])
    return pdhg_reference(z4, lambda_for_reference(lam, z4.shape[0]), n_iter, **steps).reshape(z.shape)


@pytest.fixture
def lambda_factory():
    return make_lambda


@pytest.fixture
def run_reference():
    return reference


# float dtype -> (atol, rtol) for the forward output against the reference
FORWARD_TOL = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-10)}
# float dtype -> (atol, rtol) for gradients against autograd of the reference
BACKWARD_TOL = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-10, 1e-9)}


@pytest.fixture
def tolerances():
    return {"forward": FORWARD_TOL, "backward": BACKWARD_TOL}


@pytest.fixture(scope="session")
def rectangle_images(tmp_path_factory):
    """A factory of image folders for trainer tests: ``make(n_train, n_val)`` writes ``train/`` and ``val/`` of
    32² 8-bit PNGs, three random rectangles on grey each, and returns the root."""
    import numpy as np
    from PIL import Image

    def make(n_train: int, n_val: int):
        root = tmp_path_factory.mktemp("images")
        rng = np.random.default_rng(0)
        for split, n in (("train", n_train), ("val", n_val)):
            (root / split).mkdir()
            for i in range(n):
                a = np.full((32, 32), 0.2)
                for _ in range(3):
                    r, col = rng.integers(0, 24, 2)
                    h, w = rng.integers(4, 14, 2)
                    a[r : r + h, col : col + w] = rng.random()
                Image.fromarray((a * 255).astype(np.uint8)).save(root / split / f"im{i}.png")
        return root

    return make
