"""Volumes and (x, y, t) sequences (docs/method.md §9): z (B, 1, D, H, W), ∇ = (∂_D, ∂_H, ∂_W).

The 3-D operators and their adjoint, tvfast.pdhg's forward and both
gradients against autograd of the 3-D reference loop on both backends
(backend="triton" runs the kernels through the interpreter, so its volumes are
tiny), the one-byte-per-voxel clip masks, what the autograd Function saves,
gradcheck, the argument checks, and that images keep their 2-D meaning and
defaults.
"""

import inspect
import math
import os
import warnings

import pytest
import torch

import tvfast
from tvfast.solver import op as solver_module
from tvfast.solver import compile_policy, cpu, fused
from tvfast.solver.arguments import check_arguments
from tvfast.solver.clip_states import HIGH, LOW, clip_state
from tvfast.kernels import launch
from tvfast.solver.differences import forward_differences, forward_differences_T, grad_T, grad_T3d, gradient, gradient3d
from tvfast.solver.reference import pdhg_reference, pdhg_reference_iterates

pytestmark = pytest.mark.usefixtures("nan_empty")

BACKENDS = ("numba", "torch", "triton")
STEP3D = 1.0 / math.sqrt(13.0)
SOLVERS3D = {"numba": fused, "torch": cpu, "triton": launch}


def test_nan_empty_fixture_is_active():
    assert torch.isnan(torch.empty(2)).all()
    assert (torch.empty(3, dtype=torch.uint8) == 0xFF).all()


# ---------------------------------------------------------------------------
# ∇ and ∇ᵀ in 3-D
# ---------------------------------------------------------------------------


def _gradient3d_by_index(x):
    depth, height, width = x.shape
    out = torch.empty(3, depth, height, width, dtype=x.dtype)
    for d in range(depth):
        for i in range(height):
            for j in range(width):
                out[0, d, i, j] = x[(d + 1) % depth, i, j] - x[d, i, j]
                out[1, d, i, j] = x[d, (i + 1) % height, j] - x[d, i, j]
                out[2, d, i, j] = x[d, i, (j + 1) % width] - x[d, i, j]
    return out


def test_gradient3d_matches_index_formula(gen):
    x = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(gradient3d(x), _gradient3d_by_index(x), atol=0, rtol=0)


@pytest.mark.parametrize("size", [(1, 1, 1), (3, 5, 7), (1, 4, 6), (2, 1, 3), (4, 3, 1), (2, 2, 2), (5, 9, 4)])
@pytest.mark.parametrize("lead", [(), (2,), (2, 1)])
def test_adjoint_identity_float64(size, lead, gen):
    """⟨∇x, q⟩ = ⟨x, ∇ᵀq⟩ to rounding, with any leading batch dims."""
    x = torch.randn(*lead, *size, generator=gen, dtype=torch.float64)
    q = torch.randn(*lead, 3, *size, generator=gen, dtype=torch.float64)
    gx = gradient3d(x)
    assert gx.shape == (*lead, 3, *size)
    gtq = grad_T3d(q)
    assert gtq.shape == x.shape
    lhs, rhs = (gx * q).sum(), (x * gtq).sum()
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, float(lhs.abs()))


def test_grad_T3d_is_the_transpose_and_norm_at_most_12():
    depth, height, width = 2, 3, 4
    n = depth * height * width
    eye = torch.eye(n, dtype=torch.float64).reshape(n, depth, height, width)
    grad_matrix = gradient3d(eye).reshape(n, 3 * n).T  # columns: ∇ e_k
    eye_q = torch.eye(3 * n, dtype=torch.float64).reshape(3 * n, 3, depth, height, width)
    grad_T_matrix = grad_T3d(eye_q).reshape(3 * n, n).T
    torch.testing.assert_close(grad_T_matrix, grad_matrix.T, atol=0, rtol=0)
    assert torch.linalg.matrix_norm(grad_matrix, ord=2) ** 2 <= 12.0 + 1e-9
    d, i, j = torch.meshgrid(torch.arange(2), torch.arange(4), torch.arange(6), indexing="ij")
    checker = ((d + i + j) % 2 * 2 - 1).to(torch.float64)  # all sizes even: attains ‖∇‖² = 12
    torch.testing.assert_close(grad_T3d(gradient3d(checker)), 12.0 * checker)


def test_generic_differences_agree_with_2d_operators(gen):
    x = torch.randn(2, 5, 6, generator=gen, dtype=torch.float64)
    q = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64)
    assert torch.equal(forward_differences(x, 2), gradient(x))
    torch.testing.assert_close(forward_differences_T(q, 2), grad_T(q), atol=1e-15, rtol=0)
    assert torch.equal(gradient3d(torch.full((2, 3, 4, 5), 1.5)), torch.zeros(2, 3, 3, 4, 5))


# ---------------------------------------------------------------------------
# Λ layouts of a volume and the matching reference call
# ---------------------------------------------------------------------------

LAMBDA3D_KINDS = ("float", "0d", "per_batch", "b1dhw", "11dhw", "b3dhw", "13dhw", "b3111", "1111w")


def make_lambda3d(kind, batch, depth, height, width, dtype=torch.float32, generator=None, low=0.02, high=0.2):
    def rand(*shape):
        return low + (high - low) * torch.rand(shape, generator=generator, dtype=dtype)

    shapes = {"0d": (), "per_batch": (batch,), "b1dhw": (batch, 1, depth, height, width),
              "11dhw": (1, 1, depth, height, width), "b3dhw": (batch, 3, depth, height, width),
              "13dhw": (1, 3, depth, height, width), "b3111": (batch, 3, 1, 1, 1), "1111w": (1, 1, 1, 1, width)}
    return float(rand()) if kind == "float" else rand(*shapes[kind])


def _for_reference(lam):
    return lam.reshape(-1, 1, 1, 1, 1) if torch.is_tensor(lam) and lam.dim() == 1 else lam


def _compare(backend, z, lam, n_iter, tolerances, grad_z=True, grad_lam=True, **steps):
    """Forward and both gradients (one random cotangent) against autograd of the reference, by name."""
    lam_is_tensor = torch.is_tensor(lam)
    z_ours, z_ref = z.clone().requires_grad_(grad_z), z.clone().requires_grad_(grad_z)
    lam_ours = lam.clone().requires_grad_(grad_lam) if lam_is_tensor else lam
    lam_ref = lam.clone().requires_grad_(grad_lam) if lam_is_tensor else lam
    x = tvfast.pdhg(z_ours, lam_ours, n_iter, backend=backend, **steps)
    x_ref = pdhg_reference(z_ref, _for_reference(lam_ref), n_iter, **steps)
    assert x.shape == z.shape and x.dtype == z.dtype
    assert not torch.isnan(x).any()
    atol, rtol = tolerances["forward"][z.dtype]
    torch.testing.assert_close(x, x_ref, atol=atol, rtol=rtol, msg=lambda m: f"x_T: {m}")
    if not (grad_z or (grad_lam and lam_is_tensor)):
        return
    cotangent = torch.randn(x.shape, dtype=z.dtype)
    x.backward(cotangent)
    x_ref.backward(cotangent)
    atol, rtol = tolerances["backward"][z.dtype]
    checked = 0
    for name, ours, ref in (("z", z_ours, z_ref), ("Lambda", lam_ours, lam_ref)):
        if not torch.is_tensor(ours) or not ours.requires_grad:
            continue
        assert ours.grad is not None and ours.grad.shape == ours.shape and ours.grad.dtype == ours.dtype, name
        assert not torch.isnan(ours.grad).any(), f"NaN in the gradient of {name}"
        torch.testing.assert_close(ours.grad, ref.grad.reshape(ours.shape), atol=atol, rtol=rtol,
                                   msg=lambda m, name=name: f"grad {name}: {m}")
        checked += 1
    assert checked == int(grad_z) + int(grad_lam and lam_is_tensor)


def _n_iter(backend):
    return 4 if backend == "triton" else 25


@pytest.mark.parametrize("kind", LAMBDA3D_KINDS)
def test_lambda_layouts_torch(kind, gen, tolerances):
    batch, depth, height, width = 2, 3, 5, 7
    z = torch.rand(batch, 1, depth, height, width, generator=gen)
    lam = make_lambda3d(kind, batch, depth, height, width, generator=gen)
    _compare("torch", z, lam, _n_iter("torch"), tolerances)


@pytest.mark.parametrize("kind", ["float", "per_batch", "b1dhw", "b3dhw", "13dhw"])
def test_lambda_layouts_triton(kind, gen, tolerances):
    batch, depth, height, width = 2, 3, 5, 7
    z = torch.rand(batch, 1, depth, height, width, generator=gen)
    lam = make_lambda3d(kind, batch, depth, height, width, generator=gen)
    _compare("triton", z, lam, _n_iter("triton"), tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 1, 4, 5), (2, 2, 1, 3), (1, 5, 3, 1)], ids=lambda s: "x".join(map(str, s)))
def test_thin_volumes(backend, shape, gen, tolerances):
    """D = 1 (3-D TV on one slice: the D differences vanish), D = 2, H = 1, W = 1."""
    batch, depth, height, width = shape
    z = torch.rand(batch, 1, depth, height, width, generator=gen)
    lam = make_lambda3d("b3dhw", batch, depth, height, width, generator=gen)
    _compare(backend, z, lam, _n_iter(backend), tolerances)


def test_larger_odd_volume_torch(gen, tolerances):
    z = torch.rand(3, 1, 7, 9, 11, generator=gen)
    lam = make_lambda3d("b3dhw", 3, 7, 9, 11, generator=gen)
    _compare("torch", z, lam, 30, tolerances)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_non_default_steps(backend, gen, tolerances):
    z = torch.rand(2, 1, 3, 4, 5, generator=gen, dtype=torch.float64)
    lam = make_lambda3d("b3dhw", 2, 3, 4, 5, dtype=torch.float64, generator=gen)
    _compare(backend, z, lam, _n_iter(backend), tolerances, tau=0.2, sigma=0.3, theta=0.5)


@pytest.mark.parametrize("which", ["z_only", "lambda_only"])
def test_only_one_input_requires_grad(which, gen, tolerances):
    z = torch.rand(2, 1, 3, 4, 5, generator=gen, dtype=torch.float64)
    lam = make_lambda3d("13dhw", 2, 3, 4, 5, dtype=torch.float64, generator=gen)
    _compare("torch", z, lam, 10, tolerances, grad_z=which == "z_only", grad_lam=which == "lambda_only")


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend, gen, tolerances):
    z = torch.rand(2, 1, 3, 7, 5, generator=gen).transpose(-1, -2)
    lam = (0.02 + 0.2 * torch.rand(1, 3, 3, 7, 5, generator=gen)).transpose(-1, -2)[:, [2, 0, 1]]
    assert not z.is_contiguous() and not lam.is_contiguous()
    _compare(backend, z, lam, _n_iter(backend), tolerances)
    lam = (0.02 + 0.2 * torch.rand(1, 1, 3, 5, 7, generator=gen)).expand(2, 3, 3, 5, 7)  # stride 0
    _compare(backend, z, lam, _n_iter(backend), tolerances, grad_lam=False)


def test_half_input_is_computed_in_float32(gen):
    z = torch.rand(1, 1, 3, 4, 5, generator=gen).to(torch.bfloat16)
    x = tvfast.pdhg(z, 0.1, 6)
    assert x.dtype == torch.bfloat16 and x.shape == z.shape
    torch.testing.assert_close(x, pdhg_reference(z.float(), 0.1, 6).to(torch.bfloat16), atol=0, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_lambda_is_the_identity_and_n_iter_zero_a_copy(backend, gen):
    z = torch.rand(2, 1, 2, 3, 4, generator=gen, requires_grad=True)
    x = tvfast.pdhg(z, 0.0, 2, backend=backend)
    assert torch.equal(x, z)
    cotangent = torch.randn(x.shape, generator=gen)
    x.backward(cotangent)
    torch.testing.assert_close(z.grad, cotangent, atol=1e-6, rtol=0)
    copy = tvfast.pdhg(z.detach(), 0.1, 0, backend=backend)
    assert torch.equal(copy, z) and copy.data_ptr() != z.data_ptr()


# ---------------------------------------------------------------------------
# The one-byte-per-voxel clip masks
# ---------------------------------------------------------------------------


def _reference_masks(z, lam, n_iter):
    """(T, B, D, H, W) bytes s₀ | s₁<<2 | s₂<<4 from the reference iteration (tie rule of tvfast.solver.clip_states)."""
    lam = lam.expand(z.shape[0], 3, *z.shape[-3:])
    return torch.stack([clip_state(s.u[:, 0], lam[:, 0]) | (clip_state(s.u[:, 1], lam[:, 1]) << 2)
                        | (clip_state(s.u[:, 2], lam[:, 2]) << 4)
                        for s in pdhg_reference_iterates(z[:, None], lam, n_iter)])  # fmt: skip


@pytest.mark.parametrize("shape, channels", [((2, 3, 5, 7), 3), ((2, 3, 5, 7), 1), ((1, 2, 3, 67), 3)],
                         ids=["b2-3x5x7-C3", "b2-3x5x7-C1", "b1-2x3x67-two-tiles"])  # fmt: skip
def test_masks_identical_between_backends(shape, channels, gen):
    batch, depth, height, width = shape
    n_iter = 4
    z = torch.rand(batch, depth, height, width, generator=gen, dtype=torch.float64)
    lam = 0.02 + 0.2 * torch.rand(batch, channels, depth, height, width, generator=gen, dtype=torch.float64)
    x_t, mask_t = cpu.solve_forward(z, lam, n_iter, STEP3D, STEP3D, 1.0, keep_states=True)
    x_k, mask_k = launch.solve_forward(z, lam, n_iter, STEP3D, STEP3D, 1.0, keep_states=True)
    assert mask_t.shape == mask_k.shape == (n_iter, batch, depth, height, width)
    assert mask_t.dtype == mask_k.dtype == torch.uint8
    assert torch.equal(mask_t, mask_k)
    assert torch.equal(mask_t, _reference_masks(z, lam, n_iter))
    assert (mask_t >> 6).eq(0).all()  # 6 bits used
    torch.testing.assert_close(x_t, x_k, atol=1e-12, rtol=0)
    states = torch.cat([(mask_t >> shift) & 3 for shift in cpu.STATE_SHIFTS])
    assert set(states.unique().tolist()) == {0, HIGH, LOW}  # all three branches, no invalid code


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_ties_follow_the_2d_rule(backend):
    """u = ±Λ exactly (dyadic values, σ = 1/2, z ∈ {0, 1}, Λ ∈ {0, 1/2}): HIGH at u = Λ, LOW at u = −Λ."""
    depth, height, width = 3, 5, 7
    d, i, j = torch.meshgrid(torch.arange(depth), torch.arange(height), torch.arange(width), indexing="ij")
    z = torch.stack([((d + i + j) % 2).float(), ((d * i + j) % 2).float()])
    lam = torch.where((d + i + 2 * j) % 3 == 0, 0.0, 0.5).float().expand(1, 3, depth, height, width).contiguous()
    sigma = 0.5
    _, mask = SOLVERS3D[backend].solve_forward(z.contiguous(), lam, 1, 0.2, sigma, 1.0, keep_states=True)
    u = sigma * gradient3d(z)
    lam3 = lam.expand(2, 3, depth, height, width)
    expected = (clip_state(u[:, 0], lam3[:, 0]) | (clip_state(u[:, 1], lam3[:, 1]) << 2)
                | (clip_state(u[:, 2], lam3[:, 2]) << 4))  # fmt: skip
    assert torch.equal(mask[0], expected)
    assert ((expected & 3) == HIGH).any() and ((expected & 3) == LOW).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_mask_when_not_needed(backend, gen):
    z = torch.rand(2, 2, 3, 4, generator=gen)
    lam = torch.full((1, 1, 1, 1, 1), 0.1)
    x, mask = SOLVERS3D[backend].solve_forward(z, lam, 2, STEP3D, STEP3D, 1.0, keep_states=False)
    assert mask is None
    x2, mask2 = SOLVERS3D[backend].solve_forward(z, lam, 2, STEP3D, STEP3D, 1.0, keep_states=True)
    assert torch.equal(x, x2) and mask2.shape == (2, 2, 2, 3, 4)


# ---------------------------------------------------------------------------
# What the autograd Function saves: T·B·D·H·W bytes, nothing else
# ---------------------------------------------------------------------------


def _pdhg_node(output):
    seen, stack = set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if "PDHGFunction" in type(node).__name__:
            return node
        stack.extend(fn for fn, _ in node.next_functions)
    raise AssertionError(f"no PDHGFunction node in the graph of {output.grad_fn}")


def _graph_saved_bytes(output):
    """Bytes of all tensors saved by the nodes of output's graph."""
    total, seen, stack, storages = 0, set(), [output.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        tensors = list(node.saved_tensors) if "PDHGFunction" in type(node).__name__ else []
        for name in dir(node):
            if name.startswith("_saved_"):
                value = getattr(node, name)
                tensors.extend(v for v in (value if isinstance(value, (tuple, list)) else [value]) if torch.is_tensor(v))
        for t in tensors:
            key = t.untyped_storage().data_ptr()
            if key not in storages:
                storages.add(key)
                total += t.untyped_storage().nbytes()
        stack.extend(fn for fn, _ in node.next_functions)
    return total


@pytest.mark.parametrize("backend", BACKENDS)
def test_saves_exactly_one_byte_per_voxel_per_iteration(backend, gen):
    batch, depth, height, width = 2, 3, 5, 7
    n_iter = 3
    z = torch.rand(batch, 1, depth, height, width, generator=gen, requires_grad=True)
    lam = (0.02 + 0.2 * torch.rand(batch, 3, depth, height, width, generator=gen)).requires_grad_()
    mask_bytes = n_iter * batch * depth * height * width
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        x = tvfast.pdhg(z, lam, n_iter, backend=backend)
    assert sum(t.numel() * t.element_size() for t in packed) == mask_bytes
    assert all(t.dtype == torch.uint8 for t in packed)
    node = _pdhg_node(x)
    (mask,) = node.saved_tensors
    assert mask.dtype == torch.uint8 and mask.shape == (n_iter, batch, depth, height, width)
    assert mask.untyped_storage().nbytes() == mask_bytes  # not a view into something bigger
    assert not any(torch.is_tensor(v) for v in vars(node).values())
    assert not any(torch.is_tensor(v) for v in getattr(node, "config", ()))
    assert _graph_saved_bytes(x) == mask_bytes  # 1 byte per voxel per iteration, nothing else
    x.sum().backward()


@pytest.mark.parametrize("case", ["no_grad_mode", "inputs_without_grad"])
def test_no_mask_and_no_function_without_grad(case, monkeypatch, gen):
    calls = []
    real = fused.solve_forward  # the default CPU path

    def solve_forward(*args, **kwargs):
        calls.append(kwargs.get("keep_states"))
        return real(*args, **kwargs)

    def fail(*args, **kwargs):
        raise AssertionError("PDHGFunction used although no gradient is needed")

    monkeypatch.setattr(fused, "solve_forward", solve_forward)
    monkeypatch.setattr(solver_module.PDHGFunction, "apply", fail)
    need = case == "no_grad_mode"
    z = torch.rand(1, 1, 2, 3, 4, generator=gen, requires_grad=need)
    with torch.set_grad_enabled(not need):
        x = tvfast.pdhg(z, torch.full((1, 3, 2, 3, 4), 0.1, requires_grad=need), 3)
    assert calls == [False] and not x.requires_grad


# ---------------------------------------------------------------------------
# gradcheck (finite differences, float64), away from clip ties
# ---------------------------------------------------------------------------


def _tie_margin(z, lam, n_iter):
    lam = lam.expand(z.shape[0], 3, *z.shape[-3:])
    margin, branches = float("inf"), set()
    for state in pdhg_reference_iterates(z, lam, n_iter):
        u = state.u
        margin = min(margin, float(torch.minimum((u - lam).abs(), (u + lam).abs()).min()))
        branches |= {HIGH} if (u >= lam).any() else set()
        branches |= {LOW} if (u <= -lam).any() else set()
    return margin, branches


@pytest.mark.parametrize("lam_shape, seed", [((1, 3, 2, 3, 4), 36), ((2, 1, 2, 3, 4), 55), ((2,), 1)])
def test_gradcheck_torch_backend(lam_shape, seed):
    gen = torch.Generator().manual_seed(seed)  # seeds chosen so that no entry is within 1e-4 of a tie
    n_iter = 4
    z = torch.rand(2, 1, 2, 3, 4, generator=gen, dtype=torch.float64)
    lam = 0.05 + 0.1 * torch.rand(lam_shape, generator=gen, dtype=torch.float64)
    margin, branches = _tie_margin(z, _for_reference(lam), n_iter)
    assert margin > 1e-4, "inputs too close to a clip tie for finite differences; pick another seed"
    assert {HIGH, LOW} <= branches
    z.requires_grad_()
    lam.requires_grad_()
    assert torch.autograd.gradcheck(lambda z, lam: tvfast.pdhg(z, lam, n_iter, backend="torch"), (z, lam),
                                    eps=1e-6, atol=1e-6, rtol=1e-5)  # fmt: skip


# ---------------------------------------------------------------------------
# Dispatch, step sizes and the 2-D defaults
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["auto", "numba", "torch", "triton"])
def test_five_d_z_picks_the_3d_solver(backend, monkeypatch, gen):
    """Each CPU path takes volumes (B, D, H, W) and images (B, H, W) in one module, and so does Triton."""
    monkeypatch.delenv("TVFAST_COMPILE", raising=False)
    used = []
    for module in (cpu, fused, launch):
        real = module.solve_forward
        monkeypatch.setattr(module, "solve_forward", lambda z, *a, module=module, real=real, **k:
                            used.append((module, z.dim())) or real(z, *a, **k))  # fmt: skip
    with torch.no_grad():
        tvfast.pdhg(torch.rand(1, 1, 2, 3, 4, generator=gen), 0.1, 1, backend=backend)
        tvfast.pdhg(torch.rand(1, 1, 3, 4, generator=gen), 0.1, 1, backend=backend)
    module = {"triton": launch, "torch": cpu}.get(backend, fused)
    expected = [(module, 4), (module, 3)]
    assert used == expected


def test_triton_on_cpu_needs_the_interpreter_for_volumes(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match=r"^backend: 'triton' on CPU tensors .*TRITON_INTERPRET=1"):
        tvfast.pdhg(torch.rand(1, 1, 2, 3, 4), 0.1, 2, backend="triton")


def test_public_defaults_are_none():
    params = inspect.signature(tvfast.pdhg).parameters
    assert params["tau"].default is None and params["sigma"].default is None
    assert params["theta"].default == 1.0 and params["n_iter"].default == 256


@pytest.mark.parametrize("shape", [(5, 6), (2, 5, 6), (2, 1, 5, 6)])
def test_2d_defaults_unchanged(shape, gen):
    """Images keep τ = σ = 1/3 and L² = 9, and their results bit for bit."""
    z = torch.rand(shape, generator=gen)
    args = check_arguments(z, 0.1, 4, None, None, 1.0, "auto")
    assert args.tau == args.sigma == 1.0 / 3.0 and args.spatial_dims == 2
    assert args.z.dim() == 3 and args.lam.dim() == 4
    assert torch.equal(tvfast.pdhg(z, 0.1, 5), tvfast.pdhg(z, 0.1, 5, tau=1 / 3, sigma=1 / 3))
    z4 = z.reshape(-1, 1, *shape[-2:])
    assert torch.equal(pdhg_reference(z4, 0.1, 5), pdhg_reference(z4, 0.1, 5, 1 / 3, 1 / 3))
    with pytest.raises(ValueError, match=r"\|\|K\|\|\^2 = 9 for images"):
        tvfast.pdhg(z, 0.1, 2, tau=0.3, sigma=0.4)


def test_3d_default_steps(gen):
    z = torch.rand(2, 1, 3, 4, 5, generator=gen)
    args = check_arguments(z, 0.1, 4, None, None, 1.0, "auto")
    assert args.tau == args.sigma == STEP3D and args.spatial_dims == 3
    assert args.z.shape == (2, 3, 4, 5) and args.lam.shape == (1, 1, 1, 1, 1)
    assert torch.equal(tvfast.pdhg(z, 0.1, 5), tvfast.pdhg(z, 0.1, 5, tau=STEP3D, sigma=STEP3D))
    assert torch.equal(pdhg_reference(z, 0.1, 5), pdhg_reference(z, 0.1, 5, STEP3D, STEP3D))
    tvfast.pdhg(z, 0.1, 2, tau=0.5, sigma=2 / 13)  # τσ·13 = 1 exactly: allowed
    tvfast.pdhg(z, 0.1, 2, tau=1, sigma=STEP3D**2)  # explicit floats and ints


# ---------------------------------------------------------------------------
# Bad inputs for volumes
# ---------------------------------------------------------------------------

B, D, H, W = 2, 3, 4, 5


@pytest.fixture
def no_solver_runs(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a solver ran although the arguments are invalid")

    for module in (cpu, launch):
        monkeypatch.setattr(module, "solve_forward", fail)


@pytest.mark.usefixtures("no_solver_runs")
@pytest.mark.parametrize("shape", [(B, 2, D, H, W), (B, 3, D, H, W), (1, B, 1, D, H, W), (B, D, 1, H, W, 1)])
def test_z_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"^z: expected shape .*\(B, 1, D, H, W\) for volumes"):
        tvfast.pdhg(torch.rand(shape), 0.1, 2)


@pytest.mark.usefixtures("no_solver_runs")
@pytest.mark.parametrize("shape", [(B, 1, 0, H, W), (0, 1, D, H, W), (B, 1, D, H, 0)])
def test_z_empty(shape):
    with pytest.raises(ValueError, match=r"^z: .*non-empty"):
        tvfast.pdhg(torch.rand(shape), 0.1, 2)


@pytest.mark.usefixtures("no_solver_runs")
def test_z_not_finite_and_not_float():
    z = torch.rand(B, 1, D, H, W)
    z[1, 0, 2, 1, 3] = float("nan")
    with pytest.raises(ValueError, match=r"^z: expected finite"):
        tvfast.pdhg(z, 0.1, 2)
    with pytest.raises(TypeError, match=r"^z: .*float"):
        tvfast.pdhg(torch.ones(B, 1, D, H, W, dtype=torch.int64), 0.1, 2)


@pytest.mark.usefixtures("no_solver_runs")
@pytest.mark.parametrize(
    "shape",
    [(H, W), (D, H, W), (B, D, H, W), (B, 1, H, W), (1, 1, H, W), (B,) + (1,) * 5, (B, 2, D, H, W), (B, 4, D, H, W),
     (B + 1, 1, D, H, W), (B, 3, D + 1, H, W), (B, 3, D, H - 1, W), (1, 3, D, H, W + 1), (3,), (B, 3, W, H, D)],
    ids=str,
)  # fmt: skip
def test_lambda_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"^Lambda: .*\(B\|1, 1\|3, D, H, W\) for a volume"):
        tvfast.pdhg(torch.rand(B, 1, D, H, W), torch.full(shape, 0.1), 2)


@pytest.mark.usefixtures("no_solver_runs")
def test_volume_lambda_for_an_image_is_rejected():
    with pytest.raises(ValueError, match=r"^Lambda: "):
        tvfast.pdhg(torch.rand(B, 1, H, W), torch.full((B, 3, 1, H, W), 0.1), 2)


@pytest.mark.usefixtures("no_solver_runs")
def test_lambda_bad_values_and_types():
    z = torch.rand(B, 1, D, H, W)
    lam = torch.full((B, 3, D, H, W), 0.1)
    lam[1, 2, 0, 0, 0] = -0.5
    with pytest.raises(ValueError, match=r"^Lambda: expected non-negative"):
        tvfast.pdhg(z, lam, 2)
    lam[1, 2, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^Lambda: expected finite"):
        tvfast.pdhg(z, lam, 2)
    with pytest.raises(ValueError, match=r"^Lambda: expected non-negative"):
        tvfast.pdhg(z, -0.1, 2)
    with pytest.raises(TypeError, match=r"^Lambda: expected a floating-point tensor"):
        tvfast.pdhg(z, torch.ones(B, 3, D, H, W, dtype=torch.int32), 2)
    with pytest.raises(TypeError, match=r"^Lambda: expected a float or a torch\.Tensor"):
        tvfast.pdhg(z, "0.1", 2)


@pytest.mark.usefixtures("no_solver_runs")
@pytest.mark.parametrize("tau, sigma", [(1 / 3, 1 / 3), (0.3, 0.3), (STEP3D + 1e-6, STEP3D), (1.0, 0.1)])
def test_step_sizes_violate_the_3d_bound(tau, sigma):
    bound = r"^tau, sigma: PDHG converges for tau\*sigma\*\|\|K\|\|\^2 <= 1 with \|\|K\|\|\^2 = 13"
    with pytest.raises(ValueError, match=bound):
        tvfast.pdhg(torch.rand(B, 1, D, H, W), 0.1, 2, tau=tau, sigma=sigma)


@pytest.mark.usefixtures("no_solver_runs")
@pytest.mark.parametrize("name, value, error", [("tau", "0.2", TypeError), ("sigma", float("nan"), ValueError),
                                                ("tau", -0.1, ValueError), ("theta", None, TypeError)])  # fmt: skip
def test_step_values(name, value, error):
    with pytest.raises(error, match=rf"^{name}|^tau, sigma"):
        tvfast.pdhg(torch.rand(B, 1, D, H, W), 0.1, 2, **{name: value})


def test_reference_checks_z():
    with pytest.raises(ValueError, match=r"^z: expected shape \(B, 1, H, W\) or \(B, 1, D, H, W\)"):
        pdhg_reference(torch.rand(B, 2, D, H, W), 0.1, 2)
    states = list(pdhg_reference_iterates(torch.rand(B, 1, D, H, W), 0.1, 2))
    assert len(states) == 2 and states[0].u.shape == (B, 3, D, H, W) and states[0].x.shape == (B, D, H, W)


# ---------------------------------------------------------------------------
# torch.compile path of the 3-D steps (slow to compile: one small case)
# ---------------------------------------------------------------------------


@pytest.fixture
def runner(monkeypatch):
    """A fresh step runner for tvfast.pdhg (no wrappers or failures from other tests)."""

    def make(**kwargs):
        fresh = compile_policy.StepRunner(**kwargs)
        monkeypatch.setattr(compile_policy, "step_runner", fresh)
        return fresh

    return make


@pytest.mark.real_empty
def test_torch_compile_path(runner, monkeypatch, gen, tolerances):
    monkeypatch.setenv("TVFAST_COMPILE", "1")
    steps = runner()
    z = torch.rand(2, 1, 3, 4, 5, generator=gen)
    lam = make_lambda3d("b3dhw", 2, 3, 4, 5, generator=gen)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _compare("torch", z, lam, 6, tolerances)
    fallbacks = [str(w.message) for w in caught if "tvfast" in str(w.message)]
    assert not fallbacks, f"torch.compile fell back to eager: {fallbacks[0]}"
    assert steps.compiled(cpu.forward_step) is not None
    assert steps.compiled(cpu.backward_step) is not None


def test_failed_compile_runs_eagerly_and_is_remembered(runner, gen):
    calls = []

    def broken_step(*args):
        calls.append(1)
        raise RuntimeError("no C++ compiler")

    steps = runner(compile_step=lambda step: broken_step)
    z = torch.rand(1, 1, 2, 3, 4, generator=gen)
    for _ in range(2):
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            x = tvfast.pdhg(z, 0.1, 3, backend="torch", compile=True)
        torch.testing.assert_close(x, pdhg_reference(z, 0.1, 3), atol=1e-6, rtol=1e-5)
    assert len(calls) == 1 and len(steps.failed_graphs) == 1
    assert not [w for w in caught if "tvfast" in str(w.message)]  # the second call did not try again


# ---------------------------------------------------------------------------
# CUDA (runs only on a GPU machine, with compiled kernels)
# ---------------------------------------------------------------------------

needs_compiled_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
    reason="needs a CUDA GPU and compiled Triton kernels (TRITON_INTERPRET=0)")


@needs_compiled_cuda
@pytest.mark.parametrize("shape", [(2, 5, 37, 53), (1, 3, 40, 129), (3, 7, 1, 200), (1, 1, 17, 5)], ids=str)
@pytest.mark.parametrize("kind", ["per_batch", "b1dhw", "b3dhw", "13dhw", "b3111"])
def test_cuda_triton_3d_odd_shapes_and_layouts(shape, kind, gen):
    """Compiled kernels on edge tiles (odd sizes, several tiles per slice) and Λ layouts, float64, vs the reference."""
    batch, depth, height, width = shape
    z = torch.rand(batch, 1, depth, height, width, generator=gen, dtype=torch.float64).cuda()
    lam = make_lambda3d(kind, batch, depth, height, width, dtype=torch.float64, generator=gen).cuda()
    z1, lam1 = z.clone().requires_grad_(), lam.clone().requires_grad_()
    z2, lam2 = z.clone().requires_grad_(), lam.clone().requires_grad_()
    x = tvfast.pdhg(z1, lam1, 13, backend="triton")
    x_ref = pdhg_reference(z2, _for_reference(lam2), 13)
    torch.testing.assert_close(x, x_ref, atol=1e-10, rtol=0)
    cotangent = torch.randn(x.shape, generator=gen, dtype=torch.float64).cuda()
    x.backward(cotangent)
    x_ref.backward(cotangent)
    for name, ours, ref in (("z", z1.grad, z2.grad), ("Lambda", lam1.grad, lam2.grad)):
        torch.testing.assert_close(ours, ref.reshape(ours.shape), atol=1e-9, rtol=1e-9,
                                   msg=lambda m, name=name: f"grad {name}: {m}")


@needs_compiled_cuda
def test_cuda_triton_3d_masks_match_the_torch_path(gen):
    z = torch.rand(2, 6, 33, 70, generator=gen, dtype=torch.float64)
    lam = 0.02 + 0.2 * torch.rand(2, 3, 6, 33, 70, generator=gen, dtype=torch.float64)
    x_t, mask_t = cpu.solve_forward(z, lam, 5, STEP3D, STEP3D, 1.0, keep_states=True)
    x_k, mask_k = launch.solve_forward(z.cuda(), lam.cuda(), 5, STEP3D, STEP3D, 1.0, keep_states=True)
    assert torch.equal(mask_k.cpu(), mask_t)
    torch.testing.assert_close(x_k.cpu(), x_t, atol=1e-12, rtol=0)
