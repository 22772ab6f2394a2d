"""U-Net of docs/method.md §6 (2-D) and §9 (3-D): parameter counts, state-dict keys, channel plan,
pooling, odd sizes, batch independence, the decoder block's order, in-place activations, argument checks."""

import copy

import pytest
import torch
from safetensors import safe_open

from tvfast.models.pretrained import pretrained_weights_path
from tvfast.models.unet import UNet, _Up

DIMS = [2, 3]
CONV = {2: torch.nn.Conv2d, 3: torch.nn.Conv3d}


def tiny(spatial_dims, **kw):
    torch.manual_seed(0)
    return UNet(base_channels=4, depth=2, spatial_dims=spatial_dims, **kw)


def expected_keys(depth: int) -> list[str]:
    """The state-dict keys of today's model files, written out by hand."""
    keys = ["inc.0.weight", "inc.0.bias", "inc.2.weight", "inc.2.bias"]
    for i in range(depth):
        keys += [f"downs.{i}.conv.{j}.{p}" for j in (0, 2) for p in ("weight", "bias")]
    for i in range(depth):
        keys += [f"ups.{i}.reduce.weight", f"ups.{i}.reduce.bias"]
        keys += [f"ups.{i}.conv.{j}.{p}" for j in (0, 2) for p in ("weight", "bias")]
    return keys + ["outc.weight", "outc.bias"]


@pytest.mark.parametrize("spatial_dims, n_params", [(2, 1_796_034), (3, 1_325_314)])
def test_default_parameter_count(spatial_dims, n_params):
    net = UNet(spatial_dims=spatial_dims)
    assert sum(p.numel() for p in net.parameters() if p.requires_grad) == n_params


@pytest.mark.parametrize("spatial_dims", DIMS)
def test_state_dict_keys_are_those_of_the_model_files(spatial_dims):
    assert list(UNet(spatial_dims=spatial_dims).state_dict()) == expected_keys(3)


def test_state_dict_matches_the_shipped_weights_file():
    """Every tensor of the shipped weights has the name and shape of the default 2-D U-Net's."""
    net = UNet()
    with safe_open(str(pretrained_weights_path()), framework="pt") as f:
        shipped = {k[len("unet."):]: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert shipped == {k: tuple(v.shape) for k, v in net.state_dict().items()}


@pytest.mark.parametrize("spatial_dims, widths", [
    (2, [32, 32, 64, 64, 128, 128, 256, 256, 128, 128, 64, 64, 32, 32]),
    (3, [16, 16, 32, 32, 64, 64, 128, 128, 64, 64, 32, 32, 16, 16]),
])
def test_channel_plan(spatial_dims, widths):
    net = UNet(spatial_dims=spatial_dims)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Conv3d)]
    assert all(isinstance(c, CONV[spatial_dims]) for c in convs)
    assert convs[0].in_channels == 1 and convs[-1].out_channels == 2
    assert all(c.bias is not None for c in convs)
    three = (3,) * spatial_dims
    assert all(c.padding == (1,) * spatial_dims for c in convs if c.kernel_size == three)
    assert [c.out_channels for c in convs if c.kernel_size == three] == widths
    assert [c.kernel_size for c in convs if c.kernel_size != three] == [(1,) * spatial_dims] * 4


def test_pooling():
    def pools(net):
        return [m.kernel_size for m in net.modules() if isinstance(m, torch.nn.MaxPool2d | torch.nn.MaxPool3d)]

    assert pools(UNet()) == [2] * 3
    assert pools(UNet(spatial_dims=3)) == [(1, 2, 2)] * 3
    assert pools(UNet(spatial_dims=3, pool_time=True)) == [(2, 2, 2)] * 3


@pytest.mark.parametrize("spatial_dims, kw, config", [
    (2, {}, {"spatial_dims": 2, "in_channels": 1, "out_channels": 2, "base_channels": 4, "depth": 2}),
    (3, {"pool_time": True},
     {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "base_channels": 4, "depth": 2, "pool_time": True}),
])
def test_config_rebuilds_the_same_network(spatial_dims, kw, config):
    net = tiny(spatial_dims, **kw)
    assert net.config == config
    rebuilt = UNet(**net.config)
    assert rebuilt.config == config
    rebuilt.load_state_dict(net.state_dict())
    x = torch.rand(1, 1, *(3, 9, 7)[-spatial_dims:])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(32, 32), (33, 37), (17, 8), (5, 7), (1, 1), (2, 3)])
def test_output_shape_any_size_2d(shape):
    y = tiny(2)(torch.rand(2, 1, *shape))
    assert y.shape == (2, 2, *shape)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("pool_time", [False, True])
@pytest.mark.parametrize("shape", [(4, 12, 12), (3, 13, 7), (1, 5, 9), (2, 1, 1), (5, 17, 8)])
def test_output_shape_any_size_3d(shape, pool_time):
    y = tiny(3, pool_time=pool_time)(torch.rand(2, 1, *shape))
    assert y.shape == (2, 2, *shape)
    assert torch.isfinite(y).all()


def test_short_sequences_keep_every_frame_without_time_pooling():
    """Without time pooling a single frame goes through depth 3 unpadded along D."""
    net = UNet(base_channels=2, depth=3, spatial_dims=3)
    assert net(torch.rand(1, 1, 1, 16, 16)).shape == (1, 2, 1, 16, 16)


def test_3d_without_time_pooling_is_the_2d_network_frame_by_frame():
    """A 3-D U-Net whose 3×3×3 kernels are zero outside the middle frame is the 2-D U-Net applied
    to each frame (pooling over H, W only; the upsampling copies along D): checks the 3-D
    pooling, interpolation and padding rules against the 2-D ones."""
    net2 = tiny(2)
    net3 = UNet(base_channels=4, depth=2, spatial_dims=3)
    with torch.no_grad():
        for (name, p2), (_, p3) in zip(net2.state_dict().items(), net3.state_dict().items()):
            if p2.ndim == 4:
                p3.zero_()
                p3[:, :, p3.shape[2] // 2] = p2
            else:
                p3.copy_(p2)
        x = torch.rand(2, 1, 3, 13, 9)
        frames = torch.stack([net2(x[:, :, t]) for t in range(3)], dim=2)
        torch.testing.assert_close(net3(x), frames, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spatial_dims", DIMS)
def test_samples_do_not_interact(spatial_dims):
    net = tiny(spatial_dims)
    x = torch.rand(3, 1, *(4, 16, 12)[-spatial_dims:])
    with torch.no_grad():
        batched = net(x)
        single = torch.cat([net(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)


def test_default_net_forward_backward_odd_size():
    net = UNet()
    x = torch.rand(1, 1, 27, 19, requires_grad=True)
    y = net(x)
    assert y.shape == (1, 2, 27, 19)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("spatial_dims", DIMS)
def test_gradient_reaches_input_and_parameters(spatial_dims):
    net = tiny(spatial_dims)
    x = torch.rand(1, 1, *(3, 9, 11)[-spatial_dims:], requires_grad=True)
    net(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize("spatial_dims, size", [(2, (8, 8)), (2, (9, 14)), (3, (3, 8, 8)), (3, (3, 9, 14)),
                                                (3, (6, 10, 14))])
def test_decoder_block_equals_upsample_then_conv_then_cat(spatial_dims, size):
    """The decoder block convolves 1×1 before upsampling and convolves the two halves of the
    concatenation separately; in float64 its output and gradients equal the plain
    upsample → 1×1 conv → cat → conv order (the seed's)."""
    F = torch.nn.functional
    torch.manual_seed(0)
    up = _Up(spatial_dims, 8).double()
    x = torch.randn(2, 8, *(3, 5, 7)[-spatial_dims:], dtype=torch.float64, requires_grad=True)
    skip = torch.randn(2, 4, *size, dtype=torch.float64, requires_grad=True)
    mode = "bilinear" if spatial_dims == 2 else "trilinear"

    def plain(x, skip):
        y = up.reduce(F.interpolate(x, size=size, mode=mode, align_corners=False))
        return up.conv(torch.cat([y, skip], dim=1))

    ours, ref = up(x, skip), plain(x, skip)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-12)
    cotangent = torch.randn_like(ref)
    grads = torch.autograd.grad(ours, (x, skip, *up.parameters()), cotangent)
    grads_ref = torch.autograd.grad(ref, (x, skip, *up.parameters()), cotangent)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, atol=1e-11, rtol=1e-11)


@pytest.mark.parametrize("spatial_dims", DIMS)
def test_inplace_activations_keep_gradients(spatial_dims):
    """In-place LeakyReLU: gradients equal those of an out-of-place copy of the net."""
    net = tiny(spatial_dims).double()
    assert all(m.inplace for m in net.modules() if isinstance(m, torch.nn.LeakyReLU))
    ref = copy.deepcopy(net)
    for module in ref.modules():
        if isinstance(module, torch.nn.LeakyReLU):
            module.inplace = False
    x = torch.randn(2, 1, *(3, 12, 10)[-spatial_dims:], dtype=torch.float64)
    net(x).square().sum().backward()
    ref(x).square().sum().backward()
    for (name, a), (_, b) in zip(net.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("spatial_dims, layout", [(2, r"\(B, C, H, W\)"), (3, r"\(B, C, D, H, W\)")])
def test_rejects_bad_input(spatial_dims, layout):
    net = tiny(spatial_dims)
    with pytest.raises(ValueError, match=rf"x: expected {layout} input"):
        net(torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match=r"x: expected 1 input channel"):
        net(torch.rand(1, 2, *(2, 8, 8)[-spatial_dims:]))


@pytest.mark.parametrize("spatial_dims", DIMS)
@pytest.mark.parametrize("kw, message", [
    ({"in_channels": 0}, "in_channels: expected a positive integer, got 0"),
    ({"in_channels": 1.5}, "in_channels: expected a positive integer, got 1.5"),
    ({"in_channels": True}, "in_channels: expected a positive integer, got True"),
    ({"out_channels": -1}, "out_channels: expected a positive integer, got -1"),
    ({"base_channels": 0}, "base_channels: expected a positive integer, got 0"),
    ({"depth": -1}, "depth: expected an integer >= 0, got -1"),
    ({"depth": "3"}, "depth: expected an integer >= 0, got '3'"),
    ({"pool_time": 1}, "pool_time: expected a bool, got 1"),
])
def test_bad_arguments_are_named(spatial_dims, kw, message):
    with pytest.raises(ValueError, match=message):
        UNet(spatial_dims=spatial_dims, **kw)


def test_bad_dimension_and_2d_time_pooling_are_named():
    with pytest.raises(ValueError, match="spatial_dims: expected 2 or 3, got 1"):
        UNet(spatial_dims=1)
    with pytest.raises(ValueError, match="pool_time: pooling along D needs spatial_dims=3"):
        UNet(pool_time=True)
