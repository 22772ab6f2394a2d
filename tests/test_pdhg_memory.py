"""What the autograd Function keeps for backward (docs/method.md §4: the packed mask, nothing else)."""

import pytest
import torch

import tvfast
from tvfast.solver import op as solver_module
from tvfast.solver import cpu as torch_path
from tvfast.kernels import pdhg_step
from tvfast.solver.reference import pdhg_reference

pytestmark = pytest.mark.usefixtures("nan_empty")

BACKENDS = ("torch", "triton")


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


def test_reference_saves_far_more(gen):
    """Sanity check of the measurement: autograd of the reference keeps several float images per iteration."""
    z = torch.rand(1, 1, 8, 8, generator=gen, requires_grad=True)
    lam = torch.full((1, 2, 8, 8), 0.1, requires_grad=True)
    sizes = []

    def pack(t):
        sizes.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        pdhg_reference(z, lam, 7)
    assert sum(sizes) >= 4 * 7 * 64 * 4  # ≥ 4 float images per iteration (vs 0.5 byte per pixel)


class _Recorder:
    def __init__(self, monkeypatch, module):
        self.need_mask = []
        real = module.solve_forward

        def solve_forward(*args, **kwargs):
            self.need_mask.append(kwargs.get("need_mask"))
            x, mask = real(*args, **kwargs)
            self.masks = mask
            return x, mask

        monkeypatch.setattr(module, "solve_forward", solve_forward)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["no_grad_mode", "inputs_without_grad", "float_lambda_z_without_grad"])
def test_no_mask_without_grad(backend, case, monkeypatch, gen):
    recorder = _Recorder(monkeypatch, pdhg_step if backend == "triton" else torch_path)
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
    assert recorder.need_mask == [False]
    assert recorder.masks is None
    assert x.grad_fn is None and not x.requires_grad
    assert packed == []


def _fail_apply(*args, **kwargs):
    raise AssertionError("PDHGFunction used although no gradient is needed")


