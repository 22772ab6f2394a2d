"""tvfast.pdhg forward against the reference loop (docs/method.md §3), both backends.

backend="triton" runs the Triton kernels through the interpreter
(TRITON_INTERPRET=1, set in conftest.py), so kernel cases are small
(≤ 70×65 pixels, T ≤ 12).
"""

import os
import subprocess
import sys
import warnings

import pytest
import torch

import tvfast
from tvfast.solver import compile_policy, cpu, fused
from tvfast.solver.clip_states import clip_state, pack_nibbles
from tvfast.kernels import launch
from tvfast.solver.reference import pdhg_reference, pdhg_reference_iterates

pytestmark = pytest.mark.usefixtures("nan_empty")

BACKENDS = ("numba", "torch", "triton")
# (B, H, W): odd sizes, thin images, and (for the interpreter's ≤ 64×64 tiles)
# sizes that need several tiles, the last one partly outside the image.
SHAPES = [(2, 13, 10), (1, 1, 17), (3, 17, 1), (2, 33, 65), (1, 70, 20)]


def _n_iter(backend):
    return 10 if backend == "triton" else 40


def _assert_close(actual, expected, dtype, tolerances):
    atol, rtol = tolerances["forward"][dtype]
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lambda_layouts(backend, lambda_kind, gen, lambda_factory, run_reference, tolerances):
    batch, height, width = 3, 13, 10
    z = torch.rand(batch, 1, height, width, generator=gen)
    lam = lambda_factory(lambda_kind, batch, height, width, generator=gen)
    n_iter = _n_iter(backend)
    x = tvfast.pdhg(z, lam, n_iter, backend=backend)
    assert x.shape == z.shape and x.dtype == z.dtype
    _assert_close(x, run_reference(z, lam, n_iter), torch.float32, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_image_sizes(backend, shape, gen, lambda_factory, run_reference, tolerances):
    batch, height, width = shape
    z = torch.rand(batch, 1, height, width, generator=gen)
    lam = lambda_factory("b2hw", batch, height, width, generator=gen)
    n_iter = _n_iter(backend)
    x = tvfast.pdhg(z, lam, n_iter, backend=backend)
    assert not torch.isnan(x).any()
    _assert_close(x, run_reference(z, lam, n_iter), torch.float32, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["per_batch", "hw", "b2hw"])
def test_float64(backend, kind, gen, lambda_factory, run_reference, tolerances):
    batch, height, width = 2, 9, 14
    z = torch.rand(batch, 1, height, width, generator=gen, dtype=torch.float64)
    lam = lambda_factory(kind, batch, height, width, dtype=torch.float64, generator=gen)
    n_iter = _n_iter(backend)
    x = tvfast.pdhg(z, lam, n_iter, backend=backend)
    assert x.dtype == torch.float64
    _assert_close(x, run_reference(z, lam, n_iter), torch.float64, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_default_steps(backend, gen, run_reference, tolerances):
    z = torch.rand(2, 1, 11, 12, generator=gen, dtype=torch.float64)
    lam = 0.02 + 0.2 * torch.rand(2, 2, 11, 12, generator=gen, dtype=torch.float64)
    steps = dict(tau=0.2, sigma=0.5, theta=0.5)
    x = tvfast.pdhg(z, lam, 8, backend=backend, **steps)
    _assert_close(x, run_reference(z, lam, 8, **steps), torch.float64, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["hw", "bhw", "b1hw"])
def test_z_layouts_keep_their_shape(backend, layout, gen, run_reference, tolerances):
    height, width = 7, 9
    z = {"hw": torch.rand(height, width, generator=gen), "bhw": torch.rand(2, height, width, generator=gen),
         "b1hw": torch.rand(2, 1, height, width, generator=gen)}[layout]  # fmt: skip
    lam = 0.05 + 0.1 * torch.rand(height, width, generator=gen)
    x = tvfast.pdhg(z, lam, 6, backend=backend)
    assert x.shape == z.shape
    _assert_close(x, run_reference(z, lam, 6), torch.float32, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_z_and_lambda(backend, gen, run_reference, tolerances):
    batch, height, width = 2, 12, 9
    z_t = torch.rand(batch, 1, width, height, generator=gen).transpose(-1, -2)  # transposed
    z_s = torch.rand(batch, 1, 2 * height, width + 3, generator=gen)[:, :, ::2, 3:]  # strided slice
    lam_t = (0.02 + 0.2 * torch.rand(batch, 2, width, height, generator=gen)).transpose(-1, -2)
    lam_s = (0.02 + 0.2 * torch.rand(batch, 4, height, 2 * width, generator=gen))[:, ::2, :, ::2]
    lam_e = (0.02 + 0.2 * torch.rand(1, 1, height, width, generator=gen)).expand(batch, 2, height, width)
    for z in (z_t, z_s):
        assert not z.is_contiguous()
        for lam in (lam_t, lam_s, lam_e):
            assert not lam.is_contiguous()
            x = tvfast.pdhg(z, lam, 6, backend=backend)
            _assert_close(x, run_reference(z.contiguous(), lam.contiguous(), 6), torch.float32, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_are_not_modified(backend, gen):
    z = torch.rand(2, 1, 8, 9, generator=gen)
    lam = 0.02 + 0.2 * torch.rand(2, 2, 8, 9, generator=gen)
    z0, lam0 = z.clone(), lam.clone()
    tvfast.pdhg(z, lam, 4, backend=backend)
    assert torch.equal(z, z0) and torch.equal(lam, lam0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_n_iter_zero_returns_a_copy_of_z(backend, gen):
    z = torch.rand(2, 1, 5, 6, generator=gen)
    x = tvfast.pdhg(z, 0.1, 0, backend=backend)
    assert torch.equal(x, z) and x.shape == z.shape
    assert x.data_ptr() != z.data_ptr()


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_lambda_is_the_identity(backend, gen):
    """Λ = 0: q stays 0, p stays 0, so x_T = z exactly."""
    z = torch.rand(2, 1, 6, 7, generator=gen)
    assert torch.equal(tvfast.pdhg(z, 0.0, 5, backend=backend), z)


def test_large_lambda_gives_the_mean_in_the_limit(gen):
    """A huge Λ never clips; the iterates converge to the image mean (the TV minimiser)."""
    z = torch.rand(1, 1, 6, 6, generator=gen, dtype=torch.float64)
    x = tvfast.pdhg(z, 1e6, 2000, backend="torch")
    torch.testing.assert_close(x, torch.full_like(z, float(z.mean())), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_computed_in_float32(dtype, gen, run_reference):
    z = torch.rand(2, 1, 8, 8, generator=gen).to(dtype)
    lam = 0.02 + 0.2 * torch.rand(2, 2, 8, 8, generator=gen)
    x = tvfast.pdhg(z, lam, 10, backend="torch")
    assert x.dtype == dtype
    expected = run_reference(z.float(), lam, 10).to(dtype)
    torch.testing.assert_close(x, expected, atol=0, rtol=0)


def test_auto_backend_on_cpu_is_the_fused_path(gen, run_reference, tolerances, monkeypatch):
    monkeypatch.delenv("TVFAST_COMPILE", raising=False)
    calls = []
    real = fused.solve_forward
    monkeypatch.setattr(fused, "solve_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    z = torch.rand(1, 1, 9, 9, generator=gen)
    x = tvfast.pdhg(z, 0.1, 7)
    assert calls == [1]
    # the same arithmetic as the PyTorch steps, term for term: the same bits
    torch.testing.assert_close(x, tvfast.pdhg(z, 0.1, 7, backend="torch"), atol=0, rtol=0)
    _assert_close(x, run_reference(z, 0.1, 7), torch.float32, tolerances)


def test_without_numba_the_cpu_path_warns_once_and_runs_the_torch_steps(gen, monkeypatch):
    monkeypatch.setattr(fused, "_kernels", None)
    monkeypatch.setattr(fused, "_import_error", ImportError("No module named 'numba'"))
    z = torch.rand(1, 1, 9, 9, generator=gen)
    with pytest.warns(RuntimeWarning, match="fused CPU path is unavailable.*No module named 'numba'"):
        x = tvfast.pdhg(z, 0.1, 7)
    torch.testing.assert_close(x, tvfast.pdhg(z, 0.1, 7, backend="torch"), atol=0, rtol=0)


def test_compile_true_selects_the_torch_compile_path(monkeypatch):
    from tvfast.solver.arguments import resolve_backend

    monkeypatch.delenv("TVFAST_COMPILE", raising=False)
    cpu_device = torch.device("cpu")
    assert resolve_backend("auto", cpu_device, None) == "numba"
    assert resolve_backend("auto", cpu_device, False) == "numba"
    assert resolve_backend("auto", cpu_device, True) == "torch"
    monkeypatch.setenv("TVFAST_COMPILE", "1")
    assert resolve_backend("auto", cpu_device, None) == "torch"


def test_numba_backend_on_a_non_cpu_tensor_is_an_error():
    from tvfast.solver.arguments import resolve_backend

    with pytest.raises(ValueError, match="^backend: 'numba' runs on CPU tensors"):
        resolve_backend("numba", torch.device("meta"), None)


# ---------------------------------------------------------------------------
# The clip states of the two solvers
# ---------------------------------------------------------------------------


def _reference_states(z, lam, n_iter):
    """(T, B, H, ⌈W/2⌉) packed states from the reference iteration, tie rule of clip_states."""
    lam = lam.expand(z.shape[0], 2, *z.shape[-2:])
    return torch.stack([pack_nibbles(clip_state(s.u[:, 0], lam[:, 0]) | (clip_state(s.u[:, 1], lam[:, 1]) << 2))
                        for s in pdhg_reference_iterates(z[:, None], lam, n_iter)])


@pytest.mark.parametrize("shape", [(2, 13, 11), (1, 1, 17), (2, 17, 1), (1, 9, 67), (2, 66, 5)],
                         ids=lambda s: "x".join(map(str, s)))  # fmt: skip
@pytest.mark.parametrize("channels", [1, 2])
def test_clip_states_identical_between_backends(shape, channels, gen):
    batch, height, width = shape
    n_iter = 6
    z = torch.rand(batch, height, width, generator=gen, dtype=torch.float64)
    lam = 0.02 + 0.2 * torch.rand(batch, channels, height, width, generator=gen, dtype=torch.float64)
    x_t, states_t = cpu.solve_forward(z, lam, n_iter, 1 / 3, 1 / 3, 1.0, keep_states=True)
    x_k, states_k = launch.solve_forward(z, lam, n_iter, 1 / 3, 1 / 3, 1.0, keep_states=True)
    x_f, states_f = fused.solve_forward(z, lam, n_iter, 1 / 3, 1 / 3, 1.0, keep_states=True)
    assert torch.equal(states_f, states_k)
    torch.testing.assert_close(x_f, x_k, atol=1e-12, rtol=0)
    assert states_t.shape == states_k.shape == (n_iter, batch, height, (width + 1) // 2)
    assert states_t.dtype == states_k.dtype == torch.uint8
    assert torch.equal(states_t, states_k)
    assert torch.equal(states_t, _reference_states(z, lam, n_iter))
    torch.testing.assert_close(x_t, x_k, atol=1e-12, rtol=0)
    # all three branches occur, so the comparison means something
    nibbles = torch.cat([states_t & 15, states_t >> 4])
    assert {0, 1, 2} <= set(torch.cat([nibbles & 3, nibbles >> 2]).unique().tolist())


@pytest.mark.parametrize("solver", [fused, cpu, launch], ids=["numba", "torch", "triton"])
def test_no_clip_states_when_not_needed(solver, gen):
    z = torch.rand(2, 7, 9, generator=gen)
    lam = torch.full((1, 1, 1, 1), 0.1)
    x, states = solver.solve_forward(z, lam, 3, 1 / 3, 1 / 3, 1.0, keep_states=False)
    assert states is None
    x2, states2 = solver.solve_forward(z, lam, 3, 1 / 3, 1 / 3, 1.0, keep_states=True)
    assert torch.equal(x, x2) and states2 is not None


# ---------------------------------------------------------------------------
# The compile policy and the torch.compile path (slow to compile: small cases)
# ---------------------------------------------------------------------------


@pytest.fixture
def runner(monkeypatch):
    """A fresh step runner for tvfast.pdhg (no wrappers or failures from other tests); returns a factory."""

    def make(**kwargs):
        fresh = compile_policy.StepRunner(**kwargs)
        monkeypatch.setattr(compile_policy, "step_runner", fresh)
        return fresh

    return make


def _recording_compiler(calls):
    """A stand-in for torch.compile that runs the step eagerly and records each call of the wrapper."""

    def compile_step(step):
        def wrapper(*args):
            calls.append(step.__name__)
            return step(*args)

        return wrapper

    return compile_step


def test_one_256_image_runs_eagerly():
    """The first denoise of one 256² image with T = 256 must not pay for a compilation."""
    assert not compile_policy.should_compile(256 * 256 * 256)


@pytest.mark.parametrize("requested, env, expected", [(True, "", True), (None, "", False), (False, "1", True),
                                                      (True, "0", False), (None, "yes", True),
                                                      (None, "no", False)])  # fmt: skip
def test_compile_argument_reaches_both_steps(monkeypatch, runner, gen, requested, env, expected):
    monkeypatch.setenv("TVFAST_COMPILE", env)
    calls = []
    runner(compile_step=_recording_compiler(calls))
    z = torch.rand(1, 1, 6, 7, generator=gen, requires_grad=True)
    x = tvfast.pdhg(z, 0.1, 3, backend="torch", compile=requested)
    x.sum().backward()
    assert calls == (["forward_step"] * 3 + ["backward_step"] * 3 if expected else [])


def test_repeated_calls_of_one_shape_compile_once_their_work_pays(monkeypatch, runner, gen):
    """With compile=None the work of every call of the same graph counts: a loop compiles, a single call does not."""
    monkeypatch.delenv("TVFAST_COMPILE", raising=False)
    calls = []
    runner(compile_step=_recording_compiler(calls))
    z = torch.rand(1, 1, 6, 7, generator=gen)
    monkeypatch.setattr(compile_policy, "COMPILE_MIN_WORK", 3 * z.numel() * 4)
    for _ in range(2):
        tvfast.pdhg(z, 0.1, 4, backend="torch")
    assert calls == []
    tvfast.pdhg(z, 0.1, 4, backend="torch")  # the third call of this graph reaches the threshold
    assert calls == ["forward_step"] * 4
    tvfast.pdhg(torch.rand(1, 1, 5, 7, generator=gen), 0.1, 4, backend="torch")  # another shape starts at zero
    assert calls == ["forward_step"] * 4


def test_eager_solves_do_not_import_dynamo():
    """torch.compile's machinery is loaded only by a call that compiles (a fresh interpreter checks)."""
    code = (
        "import sys, torch, tvfast\n"
        "z = torch.rand(1, 1, 16, 16, requires_grad=True)\n"
        "tvfast.pdhg(z, 0.1, 8).sum().backward()\n"
        "tvfast.pdhg(torch.rand(1, 1, 3, 4, 5), 0.1, 4)\n"
        "print(sorted(m for m in ('torch._dynamo', 'torch._inductor') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TVFAST_COMPILE"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.real_empty
def test_torch_compile_path(runner, gen, run_reference, tolerances):
    steps = runner()
    batch, height, width = 2, 9, 11
    z = torch.rand(batch, 1, height, width, generator=gen, requires_grad=True)
    lam = (0.02 + 0.2 * torch.rand(batch, 2, height, width, generator=gen)).requires_grad_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = tvfast.pdhg(z, lam, 12, backend="torch", compile=True)
        cotangent = torch.randn(x.shape, generator=gen)
        x.backward(cotangent)
    fallbacks = [w for w in caught if "tvfast" in str(w.message)]
    assert not fallbacks, f"torch.compile fell back to eager: {fallbacks[0].message}"
    assert steps.compiled(cpu.forward_step) is not None
    assert steps.compiled(cpu.backward_step) is not None

    z_ref = z.detach().clone().requires_grad_()
    lam_ref = lam.detach().clone().requires_grad_()
    x_ref = run_reference(z_ref, lam_ref, 12)
    x_ref.backward(cotangent)
    _assert_close(x, x_ref, torch.float32, tolerances)
    atol, rtol = tolerances["backward"][torch.float32]
    torch.testing.assert_close(z.grad, z_ref.grad, atol=atol, rtol=rtol)
    torch.testing.assert_close(lam.grad, lam_ref.grad, atol=atol, rtol=rtol)


def _tvfast_warnings(caught):
    return [str(w.message) for w in caught if "tvfast" in str(w.message)]


@pytest.mark.real_empty
def test_many_shapes_stay_compiled(runner, gen):
    """Dynamo allows few graphs per function by default (8; 1 here); a folder of
    differently sized images must not fall back to eager after that many shapes."""
    import torch._dynamo

    steps = runner()
    with torch._dynamo.config.patch(recompile_limit=1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for height, width in ((6, 7), (7, 9)):
            z = torch.rand(1, 1, height, width, generator=gen)
            with torch.no_grad():
                x = tvfast.pdhg(z, 0.1, 2, backend="torch", compile=True)
            torch.testing.assert_close(x, pdhg_reference(z, 0.1, 2), atol=1e-6, rtol=1e-5)
    assert not _tvfast_warnings(caught)
    assert steps.compiled(cpu.forward_step) is not None and not steps.failed_graphs


@pytest.mark.real_empty
def test_graph_limit_falls_back_for_that_call_only(runner, gen):
    import torch._dynamo

    steps = runner(max_graphs=1)
    torch._dynamo.reset()  # graphs of these shapes compiled by other tests would not count
    first, second = torch.rand(1, 1, 6, 7, generator=gen), torch.rand(1, 1, 7, 9, generator=gen)
    with torch._dynamo.config.patch(recompile_limit=1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            tvfast.pdhg(first, 0.1, 2, backend="torch", compile=True)
            x = tvfast.pdhg(second, 0.1, 2, backend="torch", compile=True)  # a second graph: over the limit
    torch.testing.assert_close(x, pdhg_reference(second, 0.1, 2), atol=1e-6, rtol=1e-5)
    assert any("compiled shapes reached" in m for m in _tvfast_warnings(caught))
    assert steps.compiled(cpu.forward_step) is not None  # still compiled for the next call
    assert not steps.failed_graphs  # nothing remembered: the shape compiles once the limit allows


def test_failed_compile_is_remembered_for_that_shape_only(runner, gen):
    calls = []

    def broken_step(*args):
        calls.append(tuple(args[0].shape))
        raise RuntimeError("no C++ compiler")

    steps = runner(compile_step=lambda step: broken_step)
    small, other = torch.rand(1, 1, 6, 7, generator=gen), torch.rand(1, 1, 8, 5, generator=gen)
    messages = []
    for z in (small, small, other):
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            x = tvfast.pdhg(z, 0.1, 3, backend="torch", compile=True)
        messages += _tvfast_warnings(caught)
        torch.testing.assert_close(x, pdhg_reference(z, 0.1, 3), atol=1e-6, rtol=1e-5)
    assert sum("running this shape eagerly" in m for m in messages) == 2
    assert len(calls) == 2 and calls[0] != calls[1]  # the repeated shape did not try again; a new one did
    assert len(steps.failed_graphs) == 2
    steps.forget_failures()
    assert not steps.failed_graphs


def test_a_compiled_solve_leaves_the_callers_dynamo_settings_as_they_were(runner, gen):
    import torch._dynamo

    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    seen = []

    def compile_step(step):
        def wrapper(*args):
            seen.append(getattr(config, name))
            return step(*args)

        return wrapper

    runner(compile_step=compile_step)
    with config.patch(**{name: 3}):
        with torch.no_grad():
            tvfast.pdhg(torch.rand(1, 1, 5, 6, generator=gen), 0.1, 2, backend="torch", compile=True)
        assert getattr(config, name) == 3  # the caller's limit, restored after the call
    assert len(seen) == 2  # both steps ran compiled, whatever limit the caller had set


# ---------------------------------------------------------------------------
# CUDA (runs only on a GPU machine)
# ---------------------------------------------------------------------------


needs_compiled_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
    reason="needs a CUDA GPU and compiled Triton kernels (TRITON_INTERPRET=0; see benchmarks/gpu.sh)")


@needs_compiled_cuda
@pytest.mark.parametrize("shape", [(1, 37, 53), (3, 64, 129), (2, 200, 1)], ids=str)
def test_cuda_triton_odd_shapes_and_layouts(shape, tensor_lambda_kind, gen, lambda_factory, run_reference):
    """Compiled kernels on edge tiles (odd sizes) and every tensor Λ layout, float64, vs the reference."""
    batch, height, width = shape
    z = torch.rand(batch, 1, height, width, generator=gen, dtype=torch.float64).cuda()
    lam = lambda_factory(tensor_lambda_kind, batch, height, width, dtype=torch.float64, generator=gen).cuda()
    z1, lam1 = z.clone().requires_grad_(), lam.clone().requires_grad_()
    z2, lam2 = z.clone().requires_grad_(), lam.clone().requires_grad_()
    x = tvfast.pdhg(z1, lam1, 17, backend="triton")
    x_ref = run_reference(z2, lam2, 17)
    torch.testing.assert_close(x, x_ref, atol=1e-10, rtol=0)
    cotangent = torch.randn(x.shape, generator=gen, dtype=torch.float64).cuda()
    x.backward(cotangent)
    x_ref.backward(cotangent)
    for name, ours, ref in (("z", z1.grad, z2.grad), ("Lambda", lam1.grad, lam2.grad)):
        torch.testing.assert_close(ours, ref, atol=1e-9, rtol=1e-9, msg=lambda m, name=name: f"grad {name}: {m}")


@needs_compiled_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_triton_matches_reference_256(dtype):
    """backend='triton' on CUDA (compiled kernels, many tiles) vs the reference, 256², T = 64."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    batch, size, n_iter = 2, 256, 64
    z = torch.rand(batch, 1, size, size, generator=gen, device="cuda", dtype=dtype)
    lam = 0.02 + 0.2 * torch.rand(batch, 2, size, size, generator=gen, device="cuda", dtype=dtype)
    z1, lam1 = z.clone().requires_grad_(), lam.clone().requires_grad_()
    x = tvfast.pdhg(z1, lam1, n_iter, backend="triton")
    z2, lam2 = z.double().requires_grad_(), lam.double().requires_grad_()
    x_ref = pdhg_reference(z2, lam2, n_iter)
    atol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(x.double(), x_ref, atol=atol, rtol=0)
    cotangent = torch.randn(x.shape, generator=gen, device="cuda", dtype=torch.float64)
    x.backward(cotangent.to(dtype))
    x_ref.backward(cotangent)
    # near-ties may take the other branch after float32 rounding: compare in norm
    for name, ours, ref in (("z", z1.grad, z2.grad), ("Lambda", lam1.grad, lam2.grad)):
        err = (ours.double() - ref).norm() / ref.norm()
        limit = 1e-3 if dtype == torch.float32 else 1e-9
        assert err < limit, f"grad {name}: relative error {err:.3g}"


# ---------------------------------------------------------------------------
# The fused CPU path: no import-time cost, no change to torch's threads
# ---------------------------------------------------------------------------


def test_import_tvfast_does_not_load_numba():
    code = "import sys, tvfast; assert 'numba' not in sys.modules, 'numba imported by import tvfast'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("shape", [(1, 1, 16, 16), (1, 1, 4, 128, 300)], ids=["small", "two-threads"])
def test_a_solve_leaves_torchs_thread_count_as_it_was(shape, gen):
    """Numba's OpenMP layer shares the runtime with torch: a solve must not change torch.get_num_threads()."""
    before = torch.get_num_threads()
    try:
        for threads in (1, max(2, before)):
            torch.set_num_threads(threads)
            z = torch.rand(shape, generator=gen, requires_grad=True)
            tvfast.pdhg(z, 0.1, 3, backend="numba").sum().backward()
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_solve_threads_take_the_cores_other_processes_leave(monkeypatch):
    """One thread per 2¹³ pixels, at most torch's count, and never a core another process is using."""
    from tvfast.solver import fused

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(fused, "_cores", lambda: 2)
        monkeypatch.setattr(fused, "busy_elsewhere", lambda: 0)
        if fused.solve_threads(2**16) == 1:  # Numba was told to use one thread (NUMBA_NUM_THREADS)
            pytest.skip("NUMBA_NUM_THREADS is 1 here")
        assert fused.solve_threads(2**16) == 2
        assert fused.solve_threads(2**13) == 1  # too small for a second thread
        monkeypatch.setattr(fused, "busy_elsewhere", lambda: 1)
        assert fused.solve_threads(2**16) == 1
        monkeypatch.setattr(fused, "busy_elsewhere", lambda: 5)
        assert fused.solve_threads(2**16) == 1
        torch.set_num_threads(1)
        monkeypatch.setattr(fused, "busy_elsewhere", lambda: 0)
        assert fused.solve_threads(2**16) == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_busy_elsewhere_sees_a_spinning_process_and_not_this_ones_threads():
    import time

    from tvfast.solver import fused

    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 20\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.5)
        seen = [fused.busy_elsewhere() for _ in range(20)]
    finally:
        spinner.kill()
        spinner.wait()
    assert max(seen) >= 1
    assert min(seen) >= 0
