"""U-Net of docs/method.md §6: parameter count, shapes, odd sizes, batch independence."""

import copy

import pytest
import torch

from tvfast.models.unet import UNet


def test_default_parameter_count():
    net = UNet()
    n = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert n == 1_796_034


def test_channel_plan():
    net = UNet()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 1 and convs[-1].out_channels == 2
    assert all(c.bias is not None for c in convs)
    assert all(c.padding == (1, 1) for c in convs if c.kernel_size == (3, 3))
    widths = [c.out_channels for c in convs if c.kernel_size == (3, 3)]
    assert widths == [32, 32, 64, 64, 128, 128, 256, 256, 128, 128, 64, 64, 32, 32]


@pytest.mark.parametrize("shape", [(32, 32), (33, 37), (17, 8), (5, 7), (1, 1), (2, 3)])
def test_output_shape_any_size(shape):
    torch.manual_seed(0)
    net = UNet(base_channels=4, depth=3)
    x = torch.rand(2, 1, *shape)
    y = net(x)
    assert y.shape == (2, 2, *shape)
    assert torch.isfinite(y).all()


def test_default_net_forward_backward_odd_size():
    net = UNet()
    x = torch.rand(1, 1, 27, 19, requires_grad=True)
    y = net(x)
    assert y.shape == (1, 2, 27, 19)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_samples_do_not_interact():
    torch.manual_seed(1)
    net = UNet(base_channels=4, depth=2)
    x = torch.rand(3, 1, 16, 12)
    batched = net(x)
    single = torch.cat([net(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        UNet()(torch.rand(1, 8, 8))


@pytest.mark.parametrize("size", [(8, 8), (9, 14)])
def test_decoder_block_equals_the_seeds_order(size):
    """The decoder block convolves 1×1 before upsampling and convolves the two
    halves of the concatenation separately; in float64 its output and
    gradients equal the seed's upsample → 1×1 conv → cat → conv order."""
    from tvfast.models.unet import _Up

    F = torch.nn.functional
    torch.manual_seed(0)
    up = _Up(8).double()
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64, requires_grad=True)
    skip = torch.randn(2, 4, *size, dtype=torch.float64, requires_grad=True)

    def seed_order(x, skip):
        y = up.reduce(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        return up.conv(torch.cat([y, skip], dim=1))

    ours, ref = up(x, skip), seed_order(x, skip)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-12)
    cotangent = torch.randn_like(ref)
    grads = torch.autograd.grad(ours, (x, skip, *up.parameters()), cotangent)
    grads_ref = torch.autograd.grad(ref, (x, skip, *up.parameters()), cotangent)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-11, rtol=1e-11)


def test_inplace_activations_keep_gradients():
    """In-place LeakyReLU: gradients equal those of an out-of-place copy of the net."""
    torch.manual_seed(0)
    net = UNet(base_channels=4, depth=2).double()
    ref = copy.deepcopy(net)
    for module in ref.modules():
        if isinstance(module, torch.nn.LeakyReLU):
            module.inplace = False
    x = torch.randn(2, 1, 12, 10, dtype=torch.float64)
    net(x).square().sum().backward()
    ref(x).square().sum().backward()
    for (name, a), (_, b) in zip(net.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=lambda m, name=name: f"{name}: {m}")
