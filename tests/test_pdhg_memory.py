"""What tvfast.pdhg keeps for backward (docs/method.md §4): the packed clip states, nothing else.

The bytes are measured on tvfast's own autograd graph — every tensor the
graph saves passes through ``torch.autograd.graph.saved_tensors_hooks`` —
and compared with T·B·H·⌈W/2⌉ for images (T·B·D·H·W for volumes); a test
fails if tvfast keeps a single byte more.
"""

import pytest
import torch

import tvfast
from tvfast.solver import op as solver_module
from tvfast.solver import cpu, fused
from tvfast.kernels import launch

pytestmark = pytest.mark.usefixtures("nan_empty")

BACKENDS = ("numba", "torch", "triton")


def test_nan_empty_fixture_is_active():
    assert torch.isnan(torch.empty(3)).all()
    assert torch.isnan(torch.empty_like(torch.zeros(2, 2))).all()
    assert (torch.empty(4, dtype=torch.uint8) == 0xFF).all()


def _pdhg_node(output):
    """The PDHGFunction backward node under ``output`` (through reshape/cast view nodes)."""
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
    """Bytes of all tensors saved by the nodes of output's graph (built-in nodes expose _saved_* attributes)."""
    total, seen, stack = 0, set(), [output.grad_fn]
    storages = set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        tensors = []
        if "PDHGFunction" in type(node).__name__:
            tensors = list(node.saved_tensors)
        for name in dir(node):
            if name.startswith("_saved_"):
                value = getattr(node, name)
                values = value if isinstance(value, (tuple, list)) else [value]
                tensors.extend(v for v in values if torch.is_tensor(v))
        for t in tensors:
            key = t.untyped_storage().data_ptr()
            if key not in storages:
                storages.add(key)
                total += t.untyped_storage().nbytes()
        stack.extend(fn for fn, _ in node.next_functions)
    return total


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 9, 11), (1, 8, 8), (3, 1, 17)], ids=lambda s: "x".join(map(str, s)))
def test_saves_exactly_the_packed_mask(backend, shape, gen):
    batch, height, width = shape
    n_iter = 7
    z = torch.rand(batch, 1, height, width, generator=gen, requires_grad=True)
    lam = (0.02 + 0.2 * torch.rand(batch, 2, height, width, generator=gen)).requires_grad_()
    mask_bytes = n_iter * batch * height * ((width + 1) // 2)

    packed = []

    def pack(t):
        packed.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x = tvfast.pdhg(z, lam, n_iter, backend=backend)
    assert sum(t.numel() * t.element_size() for t in packed) == mask_bytes
    assert all(t.dtype == torch.uint8 for t in packed)

    node = _pdhg_node(x)
    saved = node.saved_tensors
    assert len(saved) == 1
    (mask,) = saved
    assert mask.dtype == torch.uint8 and mask.shape == (n_iter, batch, height, (width + 1) // 2)
    assert mask.untyped_storage().nbytes() == mask_bytes  # not a view into something bigger
    # the ctx keeps no tensor besides the saved ones
    assert not any(torch.is_tensor(v) for v in vars(node).values())
    assert not any(torch.is_tensor(v) for v in getattr(node, "config", ()))
    assert _graph_saved_bytes(x) == mask_bytes
    # ≤ 0.55 B per pixel per iteration (docs/method.md §4) for even widths, plus nothing else
    if width % 2 == 0:
        assert mask_bytes / (n_iter * batch * height * width) <= 0.55
    x.sum().backward()  # the graph is usable


def _saved_bytes(fn):
    """(fn's result, bytes of every tensor the autograd graph built by fn() saves for backward)."""
    sizes = []

    def pack(t):
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        result = fn()
    return result, sum(sizes)


def test_saved_bytes_counts_what_autograd_keeps(gen):
    """The measurement itself: exp saves its float32 output, (x·y) saves both factors."""
    x = torch.rand(3, 5, 7, generator=gen, requires_grad=True)
    y = torch.rand(3, 5, 7, generator=gen, requires_grad=True)
    assert _saved_bytes(lambda: x.exp())[1] == 3 * 5 * 7 * 4
    assert _saved_bytes(lambda: x * y)[1] == 2 * 3 * 5 * 7 * 4


@pytest.mark.parametrize("n_iter", [1, 8, 33])
@pytest.mark.parametrize("shape", [(1, 16, 16), (2, 9, 11), (3, 1, 17)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("grads", ["z_and_lambda", "z_only", "lambda_only"])
def test_tvfast_keeps_at_most_the_packed_clip_states(n_iter, shape, grads, gen):
    """Saved bytes of tvfast.pdhg's graph ≤ T·B·H·⌈W/2⌉ — the 0.5 B per pixel per iteration of §4."""
    batch, height, width = shape
    z = torch.rand(batch, 1, height, width, generator=gen, requires_grad=grads != "lambda_only")
    lam = (0.02 + 0.2 * torch.rand(1, 2, height, width, generator=gen)).requires_grad_(grads != "z_only")
    x, saved = _saved_bytes(lambda: tvfast.pdhg(z, lam, n_iter, backend="torch"))
    budget = n_iter * batch * height * ((width + 1) // 2)
    assert saved <= budget, f"tvfast saved {saved} bytes for backward, the clip states need {budget}"
    assert saved == budget  # and it does keep them: the backward needs every iteration's states
    x.sum().backward()


@pytest.mark.parametrize("shape", [(1, 4, 8, 8), (2, 3, 5, 7)], ids=lambda s: "x".join(map(str, s)))
def test_tvfast_keeps_at_most_one_byte_per_voxel_iteration(shape, gen):
    n_iter = 5
    z = torch.rand(shape[0], 1, *shape[1:], generator=gen, requires_grad=True)
    lam = (0.02 + 0.2 * torch.rand(shape[0], 3, *shape[1:], generator=gen)).requires_grad_()
    x, saved = _saved_bytes(lambda: tvfast.pdhg(z, lam, n_iter, backend="torch"))
    budget = n_iter * shape[0] * shape[1] * shape[2] * shape[3]
    assert saved <= budget, f"tvfast saved {saved} bytes for backward, the clip states need {budget}"
    assert saved == budget
    x.sum().backward()


class _Recorder:
    def __init__(self, monkeypatch, module):
        self.keep_states = []
        real = module.solve_forward

        def solve_forward(*args, **kwargs):
            self.keep_states.append(kwargs.get("keep_states"))
            x, mask = real(*args, **kwargs)
            self.masks = mask
            return x, mask

        monkeypatch.setattr(module, "solve_forward", solve_forward)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["no_grad_mode", "inputs_without_grad", "float_lambda_z_without_grad"])
def test_no_mask_without_grad(backend, case, monkeypatch, gen):
    recorder = _Recorder(monkeypatch, {"triton": launch, "torch": cpu, "numba": fused}[backend])
    monkeypatch.setattr(solver_module.PDHGFunction, "apply", _fail_apply)
    need = case == "no_grad_mode"
    z = torch.rand(2, 1, 6, 7, generator=gen, requires_grad=need)
    lam = 0.1 if case == "float_lambda_z_without_grad" else torch.full((2, 2, 6, 7), 0.1, requires_grad=need)
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        if case == "no_grad_mode":
            with torch.no_grad():
                x = tvfast.pdhg(z, lam, 4, backend=backend)
        else:
            x = tvfast.pdhg(z, lam, 4, backend=backend)
    assert recorder.keep_states == [False]
    assert recorder.masks is None
    assert x.grad_fn is None and not x.requires_grad
    assert packed == []


def _fail_apply(*args, **kwargs):
    raise AssertionError("PDHGFunction used although no gradient is needed")


