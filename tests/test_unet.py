"""U-Net of SPEC section 6: parameter count, shapes, odd sizes, batch independence."""

import pytest
import torch

from tvfast.training.unet import UNet


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
