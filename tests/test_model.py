"""LambdaNet: Λ positivity and shapes, solver call, safetensors round trip."""

import json

import pytest
import torch

from tvfast.models.lambda_net import LambdaNet
from tvfast.models.files import pretrained_paths
from tvfast.models.unet import UNet


def small(**kw):
    torch.manual_seed(0)
    return LambdaNet(UNet(base_channels=4, depth=2), n_iter=4, **kw)


@pytest.mark.parametrize("directional,channels", [(False, 1), (True, 2)])
@pytest.mark.parametrize("up_bound", [0.0, 0.3])
def test_lambda_positive_and_shaped(directional, channels, up_bound):
    net = small(directional=directional, up_bound=up_bound)
    lam = net.lambda_map(torch.randn(3, 1, 21, 18))
    assert lam.shape == (3, channels, 21, 18)
    assert (lam > 0).all()
    if up_bound:
        assert (lam < up_bound).all()


def test_softplus_scale():
    net = small()
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    lam = net.lambda_map(torch.rand(1, 1, 12, 12))
    torch.testing.assert_close(lam, torch.full_like(lam, 0.1 * torch.log(torch.tensor(2.0)).item()))


def test_forward_shapes_and_gradient():
    net = small()
    z = torch.rand(2, 1, 16, 16)
    x = net(z)
    assert x.shape == z.shape
    assert net(z[:, 0]).shape == (2, 16, 16)
    assert net(z[0, 0]).shape == (16, 16)
    ((x - z) ** 2).mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_batch_does_not_mix_samples():
    net = small()
    z = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        batched = net(z)
        single = torch.cat([net(z[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["weights.safetensors", "model_dir"])
def test_save_load_roundtrip(tmp_path, name):
    net = small(directional=True, up_bound=0.5)
    weights, config = net.save_pretrained(tmp_path / name)
    assert weights.is_file() and config.is_file()
    assert not [p for p in weights.parent.iterdir() if p.name.endswith(".tmp")]
    cfg = json.loads(config.read_text())
    assert cfg["n_iter"] == 4 and cfg["directional"] is True and cfg["up_bound"] == 0.5
    loaded = LambdaNet.load_pretrained(tmp_path / name)
    z = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.lambda_map(z), net.lambda_map(z), rtol=0, atol=0)
    assert loaded.n_iter == 4 and loaded.pad == net.pad


def test_load_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        LambdaNet.load_pretrained(tmp_path / "nothing.safetensors")


def test_default_model_parameter_count():
    assert sum(p.numel() for p in LambdaNet().parameters()) == 1_796_034


def test_pretrained_paths():
    assert [p.name for p in pretrained_paths("a/b.safetensors")] == ["b.safetensors", "b.json"]
    assert [p.name for p in pretrained_paths("a/b")] == ["model.safetensors", "config.json"]


def test_normalize_input_makes_lambda_invariant_to_affine_intensity_changes():
    net = small(normalize_input=True)
    z = torch.rand(2, 1, 20, 20)
    torch.testing.assert_close(net.lambda_map(z), net.lambda_map(3.0 * z + 0.5), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(small().lambda_map(z), small().lambda_map(3.0 * z + 0.5))


def test_solve_pad_reflects_before_the_solve_and_crops():
    import torch.nn.functional as F

    import tvfast

    net = small(solve_pad=5)
    z = torch.rand(2, 1, 19, 23)
    with torch.no_grad():
        x, lam = net.denoise(z)
        zp = F.pad(z, (5, 5, 5, 5), mode="reflect")
        lam_p = net.lambda_map(zp)
        expected = tvfast.pdhg(zp, lam_p, n_iter=4)[..., 5:-5, 5:-5]
    assert x.shape == z.shape and lam.shape == (2, 1, 19, 23)
    torch.testing.assert_close(x, expected)
    torch.testing.assert_close(lam, lam_p[..., 5:-5, 5:-5])
    torch.testing.assert_close(net(z), x)


@pytest.mark.parametrize("name", ["model.safetensors", "dir"])
def test_new_options_survive_save_and_load(tmp_path, name):
    net = small(normalize_input=True, solve_pad=3)
    path = tmp_path / name
    net.save_pretrained(path)
    loaded = LambdaNet.load_pretrained(path)
    assert (loaded.normalize_input, loaded.solve_pad) == (True, 3)
    z = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), net(z))


def test_old_config_without_new_keys_loads_with_seed_defaults(tmp_path):
    net = small()
    weights, config = net.save_pretrained(tmp_path / "m.safetensors")
    cfg = json.loads(config.read_text())
    del cfg["normalize_input"], cfg["solve_pad"]
    config.write_text(json.dumps(cfg))
    loaded = LambdaNet.load_pretrained(weights)
    assert (loaded.normalize_input, loaded.solve_pad) == (False, 0)


def test_negative_solve_pad_is_rejected():
    with pytest.raises(ValueError, match="solve_pad must be >= 0"):
        small(solve_pad=-1)
