"""LambdaNet3d: (Λ_t, Λ_xy, Λ_xy) layout and positivity, the 3-D solver call, gradients, safetensors round trip."""

import json
import math

import pytest
import torch

import tvfast
from tvfast.models.lambda_net import LambdaNet
from tvfast.models.lambda_net3d import LambdaNet3d
from tvfast.models.precision import Precision
from tvfast.models.unet import UNet
from tvfast.models.unet3d import UNet3d


def small(**kw):
    torch.manual_seed(0)
    return LambdaNet3d(UNet3d(base_channels=4, depth=2), n_iter=4, **kw)


@pytest.mark.parametrize("shape", [(2, 1, 4, 12, 12), (1, 1, 3, 13, 9), (2, 1, 1, 5, 7), (1, 1, 2, 3, 3)])
def test_lambda_positive_with_the_kofler_layout(shape):
    lam = small().lambda_map(torch.rand(shape))
    assert lam.shape == (shape[0], 3, *shape[2:])
    assert lam.dtype == torch.float32
    assert (lam > 0).all()
    torch.testing.assert_close(lam[:, 1], lam[:, 2], rtol=0, atol=0)


def test_channel_0_is_temporal_and_channels_1_2_are_spatial():
    net = small()
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        net.unet.outc.bias.copy_(torch.tensor([-1.0, 2.0]))
    lam = net.lambda_map(torch.rand(1, 1, 3, 8, 8))
    softplus = lambda v: math.log1p(math.exp(v))  # noqa: E731
    torch.testing.assert_close(lam[:, 0], torch.full_like(lam[:, 0], 0.1 * softplus(-1.0)))
    torch.testing.assert_close(lam[:, 1:], torch.full_like(lam[:, 1:], 0.1 * softplus(2.0)))


def test_forward_is_pdhg_with_the_map():
    net = small()
    z = torch.rand(2, 1, 4, 12, 12)
    with torch.no_grad():
        x, lam = net.denoise(z)
        expected = tvfast.pdhg(z, net.lambda_map(z), n_iter=4)
        torch.testing.assert_close(x, expected, rtol=0, atol=0)
        torch.testing.assert_close(net(z), x, rtol=0, atol=0)
        assert x.shape == z.shape and lam.shape == (2, 3, 4, 12, 12)
        torch.testing.assert_close(net.denoise(z, n_iter=0)[0], z)


def test_gradient_flows_to_the_unet_through_pdhg():
    net = small()
    clean = torch.rand(1, 1, 4, 12, 12)
    z = clean + 0.1 * torch.randn_like(clean)
    loss = ((net(z) - clean) ** 2).mean()
    loss.backward()
    grads = [p.grad for p in net.unet.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert float(net.unet.outc.weight.grad.abs().sum()) > 0


def test_batch_does_not_mix_samples():
    net = small()
    z = torch.rand(3, 1, 3, 12, 10)
    with torch.no_grad():
        batched = net(z)
        single = torch.cat([net(z[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)


def test_bf16_precision_runs_only_the_unet_in_bf16():
    net = small().set_precision(Precision(bf16=True, channels_last=True))
    z = torch.rand(1, 1, 3, 12, 12)
    with torch.no_grad():
        x, lam = net.denoise(z)
    assert lam.dtype == torch.float32 and x.dtype == torch.float32
    assert (lam > 0).all() and torch.isfinite(x).all()
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert net.unet.inc[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        reference = small().lambda_map(z)
    torch.testing.assert_close(lam, reference, rtol=0.05, atol=1e-3)


@pytest.mark.parametrize("name", ["weights.safetensors", "model_dir"])
def test_save_load_roundtrip(tmp_path, name):
    torch.manual_seed(0)
    net = LambdaNet3d(UNet3d(base_channels=4, depth=2, pool_time=True), n_iter=7, pad=2)
    weights, config = net.save_pretrained(tmp_path / name)
    assert weights.is_file() and config.is_file()
    assert not [p for p in weights.parent.iterdir() if p.name.endswith(".tmp")]
    cfg = json.loads(config.read_text())
    assert cfg["format"] == "tvfast-lambdanet3d" and cfg["n_iter"] == 7 and cfg["pad"] == 2
    assert cfg["unet"]["pool_time"] is True
    loaded = LambdaNet3d.load_pretrained(tmp_path / name)
    assert loaded.config == net.config
    z = torch.rand(1, 1, 4, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded.lambda_map(z), net.lambda_map(z), rtol=0, atol=0)


def test_2d_and_3d_files_are_not_confused(tmp_path):
    small().save_pretrained(tmp_path / "three.safetensors")
    LambdaNet(UNet(base_channels=4, depth=2), n_iter=4).save_pretrained(tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match="unknown format 'tvfast-lambdanet'"):
        LambdaNet3d.load_pretrained(tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match="unknown format 'tvfast-lambdanet3d'"):
        LambdaNet.load_pretrained(tmp_path / "three.safetensors")


def test_load_errors_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        LambdaNet3d.load_pretrained(tmp_path / "nothing.safetensors")
    weights, config = small().save_pretrained(tmp_path / "m.safetensors")
    config.write_text("{not json")
    with pytest.raises(ValueError, match="invalid model config"):
        LambdaNet3d.load_pretrained(weights)


def test_default_model():
    net = LambdaNet3d()
    assert sum(p.numel() for p in net.parameters()) == 1_325_314
    assert (net.n_iter, net.pad) == (128, 4)
    assert net.config["unet"] == UNet3d().config


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"expected z of shape \(B, 1, D, H, W\)"):
        small().lambda_map(torch.rand(1, 1, 12, 12))
    with pytest.raises(ValueError, match=r"expected z of shape \(B, 1, D, H, W\)"):
        small()(torch.rand(1, 2, 3, 12, 12))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        small().lambda_map([[1.0]])
    with pytest.raises(ValueError, match=">= 2 output channels"):
        LambdaNet3d(UNet3d(out_channels=1, base_channels=2, depth=1))
    with pytest.raises(ValueError, match="n_iter must be >= 0"):
        LambdaNet3d(UNet3d(base_channels=2, depth=1), n_iter=-1)
    with pytest.raises(ValueError, match="pad must be >= 0"):
        LambdaNet3d(UNet3d(base_channels=2, depth=1), pad=-1)
    with pytest.raises(TypeError, match="UNet3d"):
        LambdaNet3d(torch.nn.Conv3d(1, 2, 1)).config
