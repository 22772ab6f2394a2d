"""LambdaNet for images (2-D) and for volumes/sequences (3-D): Λ positivity, shapes and layout, the
solver call and its options, the shipped model's outputs, safetensors round trips and today's file layouts."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

import tvfast
from tvfast.models.files import pretrained_paths
from tvfast.models.lambda_net import LambdaNet
from tvfast.models.precision import Precision
from tvfast.models.unet import UNet


def small(**kw):
    torch.manual_seed(0)
    return LambdaNet(UNet(base_channels=4, depth=2), n_iter=4, **kw)


def small3d(pool_time=False, **kw):
    torch.manual_seed(0)
    return LambdaNet(UNet(base_channels=4, depth=2, pool_time=pool_time, spatial_dims=3), n_iter=4, **kw)


# ------------------------------------------------------------------ the shipped model
def test_shipped_model_gives_the_outputs_pinned_before_the_merge():
    """Λ and x_16 of the shipped weights on a seeded input, pinned with the code as it was before
    the 2-D and 3-D U-Nets became one class: the weights load unchanged and compute the same function."""
    model = tvfast.pretrained()
    assert sum(p.numel() for p in model.parameters()) == 1_796_034
    z = torch.rand(1, 1, 24, 20, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        lam = model.lambda_map(z)
        x, _ = model.denoise(z, n_iter=16)
    pinned_lam = [0.24994419515132904, 0.004994250368326902, 0.002215030137449503, 0.22234781086444855]
    pinned_x = [0.4258798360824585, 0.3306666612625122, 0.4623154401779175]
    at = [(0, 0), (5, 7), (23, 19), (11, 3)]
    torch.testing.assert_close(torch.stack([lam[0, 0, i, j] for i, j in at]), torch.tensor(pinned_lam),
                               rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(lam.double().mean(), torch.tensor(0.1410648526443462, dtype=torch.float64),
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.stack([x[0, 0, i, j] for i, j in at[:3]]), torch.tensor(pinned_x),
                               rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(x.double().mean(), torch.tensor(0.5097503527378042, dtype=torch.float64),
                               rtol=1e-5, atol=0)


# ------------------------------------------------------------------ 2-D
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
    torch.testing.assert_close(lam, torch.full_like(lam, 0.1 * math.log(2.0)))


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


@pytest.mark.parametrize("make, shape", [(small, (3, 1, 16, 16)), (small3d, (3, 1, 3, 12, 10))])
def test_batch_does_not_mix_samples(make, shape):
    net = make()
    z = torch.rand(shape)
    with torch.no_grad():
        batched = net(z)
        single = torch.cat([net(z[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-5)


def test_normalize_input_makes_lambda_invariant_to_affine_intensity_changes():
    net = small(normalize_input=True)
    z = torch.rand(2, 1, 20, 20)
    torch.testing.assert_close(net.lambda_map(z), net.lambda_map(3.0 * z + 0.5), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(small().lambda_map(z), small().lambda_map(3.0 * z + 0.5))


def test_solve_pad_reflects_before_the_solve_and_crops():
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


def test_default_model_is_the_shipped_architecture():
    """LambdaNet() takes the shipped weights key for key and shape for shape, and solves with T = 256."""
    from safetensors.torch import load_file

    from tvfast.models.pretrained import pretrained_weights_path

    net = LambdaNet()
    shipped = load_file(str(pretrained_weights_path()))
    assert {k: tuple(v.shape) for k, v in shipped.items()} == {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert net.n_iter == 256 and not net.directional


# ------------------------------------------------------------------ 3-D
@pytest.mark.parametrize("shape", [(2, 1, 4, 12, 12), (1, 1, 3, 13, 9), (2, 1, 1, 5, 7), (1, 1, 2, 3, 3)])
def test_3d_lambda_positive_with_the_kofler_layout(shape):
    lam = small3d().lambda_map(torch.rand(shape))
    assert lam.shape == (shape[0], 3, *shape[2:])
    assert lam.dtype == torch.float32
    assert (lam > 0).all()
    torch.testing.assert_close(lam[:, 1], lam[:, 2], rtol=0, atol=0)


@pytest.mark.parametrize("up_bound", [0.0, 0.4])
def test_3d_channel_0_is_temporal_and_channels_1_2_are_spatial(up_bound):
    net = small3d(up_bound=up_bound)
    for p in net.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        net.unet.outc.bias.copy_(torch.tensor([-1.0, 2.0]))
    lam = net.lambda_map(torch.rand(1, 1, 3, 8, 8))
    act = (lambda v: 0.1 * math.log1p(math.exp(v))) if up_bound == 0 else (lambda v: up_bound / (1 + math.exp(-v)))
    torch.testing.assert_close(lam[:, 0], torch.full_like(lam[:, 0], act(-1.0)))
    torch.testing.assert_close(lam[:, 1:], torch.full_like(lam[:, 1:], act(2.0)))


def test_3d_shared_map_when_not_directional():
    net = small3d(directional=False)
    z = torch.rand(2, 1, 3, 10, 9)
    with torch.no_grad():
        x, lam = net.denoise(z)
        assert lam.shape == (2, 1, 3, 10, 9) and (lam > 0).all()
        torch.testing.assert_close(lam, small3d().lambda_map(z)[:, :1], rtol=0, atol=0)
        torch.testing.assert_close(x, tvfast.pdhg(z, lam, n_iter=4), rtol=0, atol=0)


def test_3d_forward_is_pdhg_with_the_map():
    net = small3d()
    z = torch.rand(2, 1, 4, 12, 12)
    with torch.no_grad():
        x, lam = net.denoise(z)
        expected = tvfast.pdhg(z, net.lambda_map(z), n_iter=4)
        torch.testing.assert_close(x, expected, rtol=0, atol=0)
        torch.testing.assert_close(net(z), x, rtol=0, atol=0)
        assert x.shape == z.shape and lam.shape == (2, 3, 4, 12, 12)
        torch.testing.assert_close(net.denoise(z, n_iter=0)[0], z)


def test_3d_normalize_input_and_solve_pad():
    z = torch.rand(2, 1, 3, 11, 13)
    net = small3d(normalize_input=True)
    torch.testing.assert_close(net.lambda_map(z), net.lambda_map(2.0 * z - 0.3), atol=1e-5, rtol=1e-5)
    net = small3d(solve_pad=3)
    with torch.no_grad():
        x, lam = net.denoise(z)
        zp = F.pad(z, (3, 3, 3, 3, 0, 0), mode="reflect")  # over H and W, not time
        lam_p = net.lambda_map(zp)
        expected = tvfast.pdhg(zp, lam_p, n_iter=4)[..., 3:-3, 3:-3]
    assert x.shape == z.shape and lam.shape == (2, 3, 3, 11, 13)
    torch.testing.assert_close(x, expected)
    torch.testing.assert_close(lam, lam_p[..., 3:-3, 3:-3])


def test_3d_gradient_flows_to_the_unet_through_pdhg():
    net = small3d()
    clean = torch.rand(1, 1, 4, 12, 12)
    z = clean + 0.1 * torch.randn_like(clean)
    loss = ((net(z) - clean) ** 2).mean()
    loss.backward()
    grads = [p.grad for p in net.unet.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert float(net.unet.outc.weight.grad.abs().sum()) > 0


def test_3d_bf16_precision_runs_only_the_unet_in_bf16():
    net = small3d().set_precision(Precision(bf16=True, channels_last=True))
    z = torch.rand(1, 1, 3, 12, 12)
    with torch.no_grad():
        x, lam = net.denoise(z)
    assert lam.dtype == torch.float32 and x.dtype == torch.float32
    assert (lam > 0).all() and torch.isfinite(x).all()
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert net.unet.inc[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        reference = small3d().lambda_map(z)
    torch.testing.assert_close(lam, reference, rtol=0.05, atol=1e-3)


def test_3d_default_model():
    net = LambdaNet(spatial_dims=3)
    assert sum(p.numel() for p in net.parameters()) == 1_325_314
    assert (net.n_iter, net.pad, net.directional, net.up_bound) == (128, 4, True, 0.0)
    assert net.config["unet"] == UNet(spatial_dims=3).config
    assert LambdaNet(UNet(spatial_dims=3)).spatial_dims == 3  # taken from the network


# ------------------------------------------------------------------ solver options
def test_the_model_is_its_map_and_the_solver():
    """model(z) is tvfast.pdhg(z, Λ(z), T) with the model's solver options (no padding: solve_pad 0)."""
    z = torch.rand(1, 1, 12, 12)
    for net in (small(), small(solver_backend="torch", solver_compile=False)):
        with torch.no_grad():
            expected = tvfast.pdhg(z, net.lambda_map(z), net.n_iter, backend=net.solver_backend)
            torch.testing.assert_close(net(z), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="^solver_backend:"):
        small(solver_backend="gpu")


def test_forced_solver_options_give_the_same_result():
    z = torch.rand(2, 1, 14, 12)
    with torch.no_grad():
        ref = small()(z)
        out = small(solver_backend="torch", solver_compile=False)(z)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ files
@pytest.mark.parametrize("name", ["weights.safetensors", "model_dir"])
def test_save_load_roundtrip(tmp_path, name):
    net = small(directional=True, up_bound=0.5, normalize_input=True, solve_pad=3, solver_backend="torch",
                solver_compile=False)
    weights, config = net.save_pretrained(tmp_path / name)
    assert weights.is_file() and config.is_file()
    assert not [p for p in weights.parent.iterdir() if p.name.endswith(".tmp")]
    cfg = json.loads(config.read_text())
    assert cfg["format"] == "tvfast-lambdanet" and cfg["n_iter"] == 4 and cfg["directional"] is True
    assert cfg["up_bound"] == 0.5 and cfg["solver_backend"] == "torch" and cfg["solver_compile"] is False
    loaded = LambdaNet.load_pretrained(tmp_path / name)
    assert loaded.config == net.config
    z = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), net(z), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["weights.safetensors", "model_dir"])
def test_3d_save_load_roundtrip(tmp_path, name):
    torch.manual_seed(0)
    net = LambdaNet(UNet(base_channels=4, depth=2, pool_time=True, spatial_dims=3), n_iter=7, pad=2,
                    solver_compile=True)
    weights, config = net.save_pretrained(tmp_path / name)
    cfg = json.loads(config.read_text())
    assert cfg["format"] == "tvfast-lambdanet3d" and cfg["n_iter"] == 7 and cfg["pad"] == 2
    assert cfg["unet"]["pool_time"] is True and cfg["unet"]["spatial_dims"] == 3 and cfg["solver_compile"] is True
    loaded = LambdaNet.load_pretrained(tmp_path / name, spatial_dims=3)
    assert loaded.config == net.config
    z = torch.rand(1, 1, 4, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded.lambda_map(z), net.lambda_map(z), rtol=0, atol=0)


def test_files_in_the_former_3d_layout_load(tmp_path):
    """A file as the former LambdaNet3d wrote it: format 'tvfast-lambdanet3d', version 1, only n_iter,
    pad and a unet config without spatial_dims; loads as the Kofler-layout 3-D model it was."""
    net = small3d(pool_time=True)
    weights, config = net.save_pretrained(tmp_path / "old3d.safetensors")
    config.write_text(json.dumps({
        "format": "tvfast-lambdanet3d", "format_version": 1, "n_iter": 4, "pad": 4,
        "unet": {"in_channels": 1, "out_channels": 2, "base_channels": 4, "depth": 2, "pool_time": True},
    }, indent=2, sort_keys=True) + "\n")
    loaded = LambdaNet.load_pretrained(weights)
    assert (loaded.spatial_dims, loaded.directional, loaded.up_bound, loaded.unet.pool_time) == (3, True, 0.0, True)
    assert (loaded.solver_backend, loaded.solver_compile) == ("auto", None)
    z = torch.rand(1, 1, 4, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded.denoise(z), net.denoise(z), rtol=0, atol=0)


@pytest.mark.parametrize("with_format", [True, False])
def test_files_in_the_former_2d_layout_load(tmp_path, with_format):
    """Version-1 2-D files (and older ones without a format name) hold no solver options and no
    unet spatial_dims; they load with the defaults."""
    net = small(directional=True)
    weights, config = net.save_pretrained(tmp_path / "old2d.safetensors")
    cfg = {"n_iter": 4, "up_bound": 0.0, "directional": True, "pad": 4,
           "unet": {"in_channels": 1, "out_channels": 2, "base_channels": 4, "depth": 2}}
    if with_format:
        cfg = {"format": "tvfast-lambdanet", "format_version": 1, **cfg}
    config.write_text(json.dumps(cfg))
    loaded = LambdaNet.load_pretrained(weights, spatial_dims=2)
    assert (loaded.spatial_dims, loaded.normalize_input, loaded.solve_pad) == (2, False, 0)
    assert (loaded.solver_backend, loaded.solver_compile) == ("auto", None)
    z = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), net(z), rtol=0, atol=0)


def test_a_model_of_the_other_dimension_is_refused_when_asked(tmp_path):
    small3d().save_pretrained(tmp_path / "three.safetensors")
    small().save_pretrained(tmp_path / "two.safetensors")
    with pytest.raises(ValueError, match=r"spatial_dims: expected a 3-D model, .*two.safetensors.* 2-D one"):
        LambdaNet.load_pretrained(tmp_path / "two.safetensors", spatial_dims=3)
    with pytest.raises(ValueError, match=r"spatial_dims: expected a 2-D model, .* 3-D one .*tvfast-lambdanet3d"):
        LambdaNet.load_pretrained(tmp_path / "three.safetensors", spatial_dims=2)
    assert LambdaNet.load_pretrained(tmp_path / "three.safetensors").spatial_dims == 3


def test_load_errors_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        LambdaNet.load_pretrained(tmp_path / "nothing.safetensors")
    weights, config = small3d().save_pretrained(tmp_path / "m.safetensors")
    config.write_text("{not json")
    with pytest.raises(ValueError, match="invalid model config"):
        LambdaNet.load_pretrained(weights)
    config.write_text(json.dumps({"format": "something-else", "n_iter": 4, "unet": {}}))
    with pytest.raises(ValueError, match="unknown format 'something-else'"):
        LambdaNet.load_pretrained(weights)
    config.write_text(json.dumps({"format": "tvfast-lambdanet3d", "n_iter": 4,
                                  "unet": {"spatial_dims": 2, "base_channels": 4, "depth": 2}}))
    with pytest.raises(ValueError, match="invalid LambdaNet config .*unet spatial_dims 2"):
        LambdaNet.load_pretrained(weights)
    config.write_text(json.dumps({"format": "tvfast-lambdanet3d", "n_iter": 4, "solver_compile": "yes",
                                  "unet": {"base_channels": 4, "depth": 2}}))
    with pytest.raises(ValueError, match="invalid LambdaNet config .*solver_compile: expected None, True or False"):
        LambdaNet.load_pretrained(weights)


def test_pretrained_paths():
    assert [p.name for p in pretrained_paths("a/b.safetensors")] == ["b.safetensors", "b.json"]
    assert [p.name for p in pretrained_paths("a/b")] == ["model.safetensors", "config.json"]


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("kw, error, message", [
    ({"n_iter": -1}, ValueError, "n_iter: expected an integer >= 0, got -1"),
    ({"up_bound": -0.1}, ValueError, "up_bound: expected a number >= 0, got -0.1"),
    ({"pad": -1}, ValueError, "pad: expected an integer >= 0, got -1"),
    ({"solve_pad": -1}, ValueError, "solve_pad: expected an integer >= 0, got -1"),
    ({"normalize_input": "yes"}, ValueError, "normalize_input: expected True or False"),
    ({"directional": 1}, ValueError, "directional: expected True or False"),
    ({"spatial_dims": 4}, ValueError, "spatial_dims: expected 2 or 3, got 4"),
    ({"spatial_dims": 3}, ValueError, "spatial_dims: got 3, but the unet is 2-D"),
    ({"solver_backend": "cuda"}, ValueError, r"solver_backend: expected one of \('auto', 'numba', 'triton', 'torch'\)"),
    ({"solver_compile": "auto"}, ValueError, "solver_compile: expected None, True or False, got 'auto'"),
])
def test_bad_arguments_are_named(kw, error, message):
    with pytest.raises(error, match=message):
        LambdaNet(UNet(base_channels=4, depth=2), **kw)


def test_bad_networks_and_inputs_are_named():
    with pytest.raises(TypeError, match="unet: expected a torch.nn.Module"):
        LambdaNet("unet")
    with pytest.raises(ValueError, match="directional: .*>= 2 output channels, got 1"):
        LambdaNet(UNet(out_channels=1, base_channels=2, depth=1, spatial_dims=3))
    with pytest.raises(ValueError, match="directional: .*>= 2 output channels"):
        LambdaNet(UNet(out_channels=1, base_channels=2, depth=1), directional=True)
    with pytest.raises(TypeError, match="config: only defined for a tvfast.models.unet.UNet network, got Conv3d"):
        LambdaNet(torch.nn.Conv3d(1, 2, 1), spatial_dims=3).config
    with pytest.raises(ValueError, match=r"z: expected shape \(B, 1, D, H, W\)"):
        small3d().lambda_map(torch.rand(1, 1, 12, 12))
    with pytest.raises(ValueError, match=r"z: expected shape \(B, 1, D, H, W\)"):
        small3d()(torch.rand(1, 2, 3, 12, 12))
    with pytest.raises(ValueError, match=r"z: expected shape \(H, W\), \(B, H, W\) or \(B, 1, H, W\)"):
        small()(torch.rand(1, 1, 3, 12, 12))
    for net in (small(), small3d()):
        with pytest.raises(TypeError, match="z: expected a torch.Tensor, got list"):
            net.lambda_map([[1.0]])


def test_shipped_isotropic_model_solves_with_isotropic_tv():
    """xray-denoise-isotropic: one Λ map, and its denoise is tvfast.pdhg(z, Λ, T, tv="isotropic")."""
    model = tvfast.pretrained("xray-denoise-isotropic")
    assert model.tv == "isotropic"
    z = torch.rand(1, 1, 48, 40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        x, lam = model.denoise(z, 32)
        assert lam.shape[1] == 1
        torch.testing.assert_close(x, tvfast.pdhg(z, lam, 32, tv="isotropic"), rtol=0, atol=0)
        assert not torch.equal(x, tvfast.pdhg(z, lam, 32))  # not the anisotropic solve
