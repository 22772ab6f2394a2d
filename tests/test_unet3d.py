"""3-D U-Net (tvfast.models.unet3d): parameter count, channel plan, odd sizes, time pooling, batch independence."""

import copy

import pytest
import torch

from tvfast.models.unet3d import UNet3d, _Up


def tiny(**kw):
    torch.manual_seed(0)
    return UNet3d(base_channels=4, depth=2, **kw)


def test_default_parameter_count():
    net = UNet3d()
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == 1_325_314


def test_channel_plan_and_pooling():
    net = UNet3d()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs[0].in_channels == 1 and convs[-1].out_channels == 2
    assert all(c.bias is not None for c in convs)
    assert all(c.padding == (1, 1, 1) for c in convs if c.kernel_size == (3, 3, 3))
    widths = [c.out_channels for c in convs if c.kernel_size == (3, 3, 3)]
    assert widths == [16, 16, 32, 32, 64, 64, 128, 128, 64, 64, 32, 32, 16, 16]
    pools = [m.kernel_size for m in net.modules() if isinstance(m, torch.nn.MaxPool3d)]
    assert pools == [(1, 2, 2)] * 3
    pools = [m.kernel_size for m in UNet3d(pool_time=True).modules() if isinstance(m, torch.nn.MaxPool3d)]
    assert pools == [(2, 2, 2)] * 3


def test_config_rebuilds_the_same_network():
    net = tiny(pool_time=True)
    assert net.config == {"in_channels": 1, "out_channels": 2, "base_channels": 4, "depth": 2, "pool_time": True}
    assert UNet3d(**net.config).config == net.config


@pytest.mark.parametrize("pool_time", [False, True])
@pytest.mark.parametrize("shape", [(4, 12, 12), (3, 13, 7), (1, 5, 9), (2, 1, 1), (5, 17, 8)])
def test_output_shape_any_size(shape, pool_time):
    net = tiny(pool_time=pool_time)
    y = net(torch.rand(2, 1, *shape))
    assert y.shape == (2, 2, *shape)
    assert torch.isfinite(y).all()


def test_short_sequences_keep_every_frame_without_time_pooling():
    """Without time pooling a single frame goes through depth 3 unpadded along D."""
    net = UNet3d(base_channels=2, depth=3)
    assert net(torch.rand(1, 1, 1, 16, 16)).shape == (1, 2, 1, 16, 16)


def test_samples_do_not_interact():
    net = tiny()
    x = torch.rand(3, 1, 4, 12, 10)
    with torch.no_grad():
        batched = net(x)
        single = torch.cat([net(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def test_gradient_reaches_input_and_parameters():
    net = tiny()
    x = torch.rand(1, 1, 3, 9, 11, requires_grad=True)
    net(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("size", [(3, 8, 8), (3, 9, 14), (6, 10, 14)])
def test_decoder_block_equals_upsample_then_conv_then_cat(size):
    """1×1×1 conv before the trilinear upsampling and the split convolution of the
    concatenation give, in float64, the output and gradients of the plain order."""
    F = torch.nn.functional
    torch.manual_seed(0)
    up = _Up(8).double()
    x = torch.randn(2, 8, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    skip = torch.randn(2, 4, *size, dtype=torch.float64, requires_grad=True)

    def plain(x, skip):
        y = up.reduce(F.interpolate(x, size=size, mode="trilinear", align_corners=False))
        return up.conv(torch.cat([y, skip], dim=1))

    ours, ref = up(x, skip), plain(x, skip)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-12)
    cotangent = torch.randn_like(ref)
    grads = torch.autograd.grad(ours, (x, skip, *up.parameters()), cotangent)
    grads_ref = torch.autograd.grad(ref, (x, skip, *up.parameters()), cotangent)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-11, rtol=1e-11)


def test_inplace_activations_keep_gradients():
    net = tiny().double()
    ref = copy.deepcopy(net)
    for module in ref.modules():
        if isinstance(module, torch.nn.LeakyReLU):
            module.inplace = False
    x = torch.randn(2, 1, 3, 8, 6, dtype=torch.float64)
    net(x).square().sum().backward()
    ref(x).square().sum().backward()
    for (name, a), (_, b) in zip(net.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=lambda m, name=name: f"{name}: {m}")


def test_rejects_bad_input_and_configuration():
    with pytest.raises(ValueError, match=r"expected \(B, C, D, H, W\) input"):
        tiny()(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="expected 1 input channel"):
        tiny()(torch.rand(1, 2, 2, 8, 8))
    with pytest.raises(ValueError, match="depth must be >= 0"):
        UNet3d(depth=-1)
    with pytest.raises(ValueError, match="channel counts must be positive"):
        UNet3d(base_channels=0)
