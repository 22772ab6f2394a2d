"""The op inside CUDA graphs: captured once, replayed on new data, equal to the eager call bit for bit.

A capture forbids host synchronisation and copies from the host. The op
skips its value checks while a capture runs (tvfast.solver.arguments.capturing),
makes a scalar Λ with a fill, and keeps its step-size tensors on the device
(tvfast.kernels.launch.step_sizes). These tests need a CUDA GPU and compiled
Triton kernels (benchmarks/gpu.sh runs them); the step-size cache is also
checked on the CPU.
"""

from __future__ import annotations

import os

import pytest
import torch

import tvfast

CUDA = pytest.mark.skipif(
    not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
    reason="needs a CUDA GPU and compiled Triton kernels (TRITON_INTERPRET=0; benchmarks/gpu.sh)",
)


def test_step_sizes_are_kept_on_the_device_and_read_only_values():
    from tvfast.kernels.launch import step_sizes

    like = torch.zeros(3, dtype=torch.float64)
    first = step_sizes(0.3, 0.25, 1.0, like)
    assert first.dtype == torch.float64
    torch.testing.assert_close(first, torch.tensor([0.3, 0.25, 1.0, 0.25 / 1.25], dtype=torch.float64),
                               rtol=0, atol=0)
    assert step_sizes(0.3, 0.25, 1.0, like) is first  # no new tensor, no copy from the host
    assert step_sizes(0.3, 0.25, 1.0, like.float()) is not first  # per dtype
    assert step_sizes(0.3, 0.25, 0.5, like) is not first


def _capture(fn, *static_inputs):
    """Warm up ``fn`` on a side stream, capture it, return (graph, static output)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn(*static_inputs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn(*static_inputs)
    return graph, out


def _replay_equals_eager(graph, static_out, fn, *static_inputs) -> None:
    """Replay the graph on what the static inputs now hold: the same values, bit for bit, as ``fn`` called eagerly."""
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_out, fn(*static_inputs))


@CUDA
@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (4, 1, 37, 50), (2, 1, 6, 20, 24)])
@pytest.mark.parametrize("tv", ["anisotropic", "isotropic"])
def test_cuda_graph_forward_replays_like_the_eager_call(shape, tv):
    gen = torch.Generator().manual_seed(0)
    z = torch.rand(shape, generator=gen).cuda()
    lam = (0.1 * torch.rand(shape, generator=gen)).cuda()
    def solve(a, b):
        return tvfast.pdhg(a, b, 48, tv=tv)

    graph, x = _capture(solve, z, lam)
    for seed in (1, 2):
        gen = torch.Generator().manual_seed(seed)
        z.copy_(torch.rand(shape, generator=gen).cuda())
        lam.copy_((0.1 * torch.rand(shape, generator=gen)).cuda())
        _replay_equals_eager(graph, x, solve, z, lam)


@CUDA
def test_cuda_graph_scalar_lambda_and_new_steps_inside_the_capture():
    """A scalar Λ is a fill and steps first seen during the capture are fills too: the replay still equals eager."""
    def solve(a):
        return tvfast.pdhg(a, 0.07, 32, tau=0.21, sigma=0.29)

    z = torch.rand(2, 1, 40, 40).cuda()
    graph, x = _capture(solve, z)
    z.copy_(torch.rand(2, 1, 40, 40).cuda())
    _replay_equals_eager(graph, x, solve, z)


@CUDA
@pytest.mark.parametrize("tv", ["anisotropic", "isotropic"])
def test_cuda_graph_forward_and_backward_as_graphed_callables(tv):
    shape = (2, 1, 48, 40)
    z = torch.rand(shape).cuda().requires_grad_()
    lam = (0.1 * torch.rand(shape)).cuda().requires_grad_()

    def solve(a, b):
        return tvfast.pdhg(a, b, 40, tv=tv)

    graphed = torch.cuda.make_graphed_callables(solve, (z, lam))
    for seed in (3, 4):
        gen = torch.Generator().manual_seed(seed)
        z_new = torch.rand(shape, generator=gen).cuda().requires_grad_()
        lam_new = (0.1 * torch.rand(shape, generator=gen)).cuda().requires_grad_()
        weight = torch.rand(shape, generator=gen).cuda()
        (graphed(z_new, lam_new) * weight).sum().backward()
        z_ref, lam_ref = z_new.detach().clone().requires_grad_(), lam_new.detach().clone().requires_grad_()
        (solve(z_ref, lam_ref) * weight).sum().backward()
        assert torch.equal(z_new.grad, z_ref.grad)
        assert torch.equal(lam_new.grad, lam_ref.grad)


@CUDA
def test_cuda_graph_mri_forward_replays_like_the_eager_call():
    """With an operator (its norm is computed once, before the capture, and kept by the operator)."""
    from tvfast.physics import MaskedFFT

    operator = MaskedFFT((torch.rand(32, 32) < 0.4).cuda())
    y = operator(torch.rand(1, 1, 32, 32, dtype=torch.complex64).cuda())
    lam = torch.full((1, 1, 32, 32), 0.02).cuda()

    def solve(a, b):
        return tvfast.pdhg(a, b, 32, operator=operator)

    graph, x = _capture(solve, y, lam)
    y.copy_(operator(torch.rand(1, 1, 32, 32, dtype=torch.complex64).cuda()))
    _replay_equals_eager(graph, x, solve, y, lam)


@CUDA
def test_cuda_values_are_still_checked_outside_a_capture():
    z = torch.rand(1, 1, 16, 16).cuda()
    z[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match=r"^z: expected finite values"):
        tvfast.pdhg(z, 0.1, 4)
