"""ReconstructionNet (U-Net on Aᴴy or FBP → Λ → PDHG with A), the task datasets and the shipped-model registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import tvfast
from tvfast.models.reconstruction_net import ReconstructionNet
from tvfast.models.unet import UNet
from tvfast.physics import MaskedFFT, ParallelBeam, simulate_mri
from tvfast.solver.reference import pdhg_reference


def _tiny(task: str, **kw) -> ReconstructionNet:
    torch.manual_seed(0)
    unet = UNet(in_channels=2 if task == "mri" else 1, base_channels=4, depth=1)
    return ReconstructionNet(task, unet, n_iter=kw.pop("n_iter", 6), solver_compile=False, **kw)


def _mri_data(size=16, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    clean = torch.rand(batch, 1, size, size, generator=gen)
    return clean, simulate_mri(clean, 0.05, generator=gen)


@pytest.mark.parametrize("directional", [False, True])
def test_mri_forward_matches_reference_loop(directional):
    """The model's x_T is the reference PDHG with the model's Λ, start Aᴴy and steps τ = σ = 0.99/3."""
    model = _tiny("mri", directional=directional)
    _, data = _mri_data()
    A = MaskedFFT(data.mask)
    with torch.no_grad():
        x, lam, x0 = model.solve(data.y, A)
        step = 0.99 / 3.0
        expected = pdhg_reference(data.y, lam, model.n_iter, operator=A, x0=x0, tau=step, sigma=step)
    assert lam.shape == (2, 2 if directional else 1, 16, 16) and bool((lam > 0).all())
    assert torch.allclose(x0, A.adjoint(data.y))
    assert x.dtype == torch.complex64 and x.shape == data.y.shape
    assert torch.allclose(x, expected, atol=1e-5)


def test_reconstruct_any_size_and_mask_layouts():
    model = _tiny("mri")
    for H, W in ((16, 24), (20, 12)):
        clean = torch.rand(1, 1, H, W)
        data = simulate_mri(clean, 0.05, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            by_rows = model.reconstruct(data.y, data.mask[0, 0])  # (H, 1)
            full = model.reconstruct(data.y, data.mask.expand(1, 1, H, W))
        assert by_rows.shape == (1, 1, H, W) and by_rows.is_complex()
        assert torch.allclose(by_rows, full, atol=1e-6)


def test_scale_equivariance():
    """Data α·y give α·x̂: the input is normalised by mean |x₀| and Λ scales with it."""
    model = _tiny("mri")
    _, data = _mri_data(batch=1)
    A = MaskedFFT(data.mask)
    with torch.no_grad():
        x = model(data.y, A)
        x_scaled = model(7.0 * data.y, A)
    assert torch.allclose(x_scaled, 7.0 * x, rtol=1e-4, atol=1e-5)


def test_gradients_reach_the_unet():
    model = _tiny("mri", directional=True)
    clean, data = _mri_data()
    loss = torch.nn.functional.mse_loss(model(data.y, MaskedFFT(data.mask)).abs(), clean)
    loss.backward()
    grads = [p.grad for p in model.unet.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_ct_model_starts_from_fbp():
    model = _tiny("ct")
    A = ParallelBeam((16, 16), n_views=12)
    clean = torch.rand(1, 1, 16, 16)
    y = A(clean)
    with torch.no_grad():
        x, lam, x0 = model.solve(y, A)
    assert torch.allclose(x0, A.fbp(y))
    assert x.shape == clean.shape and not x.is_complex() and lam.shape == (1, 1, 16, 16)


def test_save_and_load(tmp_path):
    model = _tiny("mri", directional=True)
    model.save_pretrained(tmp_path / "m.safetensors")
    loaded = ReconstructionNet.load_pretrained(tmp_path / "m.safetensors")
    assert loaded.config == model.config
    _, data = _mri_data()
    with torch.no_grad():
        assert torch.equal(loaded.reconstruct(data.y, data.mask), model.reconstruct(data.y, data.mask))


def test_bad_input():
    with pytest.raises(ValueError, match="task"):
        ReconstructionNet("pet")
    with pytest.raises(ValueError, match="unet"):
        ReconstructionNet("mri", UNet(in_channels=1, base_channels=4, depth=1))
    with pytest.raises(ValueError, match="directional"):
        ReconstructionNet("ct", UNet(in_channels=1, out_channels=1, base_channels=4, depth=1), directional=True)
    model = _tiny("mri")
    _, data = _mri_data()
    with pytest.raises(ValueError, match="y:"):
        model.reconstruct(data.y.real, data.mask)
    with pytest.raises(ValueError, match="mask"):
        model.reconstruct(data.y, torch.ones(3, 3))
    with pytest.raises(ValueError, match="mask"):
        model.reconstruct(data.y, torch.zeros_like(data.mask))
    with pytest.raises(ValueError, match="reconstruct"):
        _tiny("ct").reconstruct(data.y, data.mask)
    with pytest.raises(TypeError, match="operator"):
        _tiny("ct")(torch.zeros(1, 1, 12, 23), MaskedFFT(torch.ones(16, 1)))


def _tiny_pilot(**kw) -> ReconstructionNet:
    torch.manual_seed(0)
    unet = UNet(in_channels=4, base_channels=4, depth=1)
    return ReconstructionNet("mri", unet, n_iter=6, solver_compile=False, pilot=2e-3, pilot_iters=5, **kw)


def test_pilot_is_a_scalar_tv_solve_the_unet_sees():
    """x_p = PDHG_{T_p}(y, κ·c) with the model's steps; the U-Net's channels 2-3 are x_p / c, and a model
    whose pilot channels have zero weight gives the maps of the same model without a pilot."""
    model = _tiny_pilot(normalisation="quantile", step_balance=30)
    _, data = _mri_data()
    A = MaskedFFT(data.mask)
    with torch.no_grad():
        x0 = model.start(data.y, A)
        pilot = model.pilot_image(data.y, A, x0)
        c = model.scale(x0)
        s = 0.99 / 3.0
        for b in range(2):
            expected = pdhg_reference(data.y[b:b + 1], float(2e-3 * c[b]), 5, operator=MaskedFFT(data.mask[b:b + 1]),
                                      x0=x0[b:b + 1], tau=30 * s, sigma=s / 30)
            assert torch.allclose(pilot[b:b + 1], expected, atol=1e-5)
        seen = []
        handle = model.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        lam, x0_again = model.estimate(data.y, A)
        handle.remove()
        p = model.pad
        inner = seen[0][..., p:-p, p:-p]
        assert inner.shape[1] == 4 and torch.equal(x0_again, x0)
        assert torch.allclose(inner[:, 2], (pilot / c).real[:, 0]) and torch.allclose(inner[:, 3], (pilot / c).imag[:, 0])
        assert torch.allclose(inner[:, 0], (x0 / c).real[:, 0])

        plain = _tiny("mri", normalisation="quantile", step_balance=30)
        state = plain.state_dict()
        widened = {k: (torch.cat((v, torch.zeros_like(v)), 1) if v.shape != model.state_dict()[k].shape else v)
                   for k, v in state.items()}
        model.load_state_dict(widened)
        assert torch.allclose(model.estimate(data.y, A)[0], plain.estimate(data.y, A)[0], atol=1e-6)


def test_pilot_model_is_scale_equivariant_and_saves_its_pilot(tmp_path):
    model = _tiny_pilot(directional=True)
    _, data = _mri_data(batch=1)
    A = MaskedFFT(data.mask)
    with torch.no_grad():
        x, x_scaled = model(data.y, A), model(7.0 * data.y, A)
    assert torch.allclose(x_scaled, 7.0 * x, rtol=1e-4, atol=1e-5)
    model.save_pretrained(tmp_path / "m.safetensors")
    loaded = ReconstructionNet.load_pretrained(tmp_path / "m.safetensors")
    assert (loaded.pilot, loaded.pilot_iters, loaded.unet.in_channels) == (2e-3, 5, 4)
    with torch.no_grad():
        assert torch.equal(loaded.reconstruct(data.y, data.mask), model.reconstruct(data.y, data.mask))


def test_ct_pilot_is_a_scalar_tv_solve_from_the_fbp():
    """CT: a real pilot from the FBP with pdhg's default steps for the operator, and 2 U-Net channels."""
    torch.manual_seed(0)
    model = ReconstructionNet("ct", UNet(in_channels=2, out_channels=1, base_channels=4, depth=1), n_iter=4,
                              solver_compile=False, pilot=2e-3, pilot_iters=5)
    A = ParallelBeam((16, 16), n_views=12)
    y = A(torch.rand(2, 1, 16, 16))
    with torch.no_grad():
        x0 = model.start(y, A)
        pilot = model.pilot_image(y, A, x0)
        c = model.scale(x0)
        for b in range(2):
            expected = tvfast.pdhg(y[b:b + 1], float(2e-3 * c[b]), 5, operator=A, x0=x0[b:b + 1])
            assert torch.allclose(pilot[b:b + 1], expected, atol=1e-6)
        x, lam, _ = model.solve(y, A)
    assert not pilot.is_complex() and x.shape == (2, 1, 16, 16) and lam.shape == (2, 1, 16, 16)
    assert "pilot" not in _tiny("ct").config and model.config["pilot"] == 2e-3


def test_pilot_bad_input():
    with pytest.raises(ValueError, match="pilot:"):
        ReconstructionNet("mri", pilot=0.0)
    with pytest.raises(ValueError, match="pilot:"):
        ReconstructionNet("mri", pilot=float("nan"))
    with pytest.raises(ValueError, match="pilot_iters"):
        ReconstructionNet("mri", pilot=1e-3, pilot_iters=0)
    with pytest.raises(ValueError, match=r"unet: .*4 input channel\(s\) \(x₀ and the pilot\)"):
        ReconstructionNet("mri", UNet(in_channels=2, base_channels=4, depth=1), pilot=1e-3)
    _, data = _mri_data()
    x0 = MaskedFFT(data.mask).adjoint(data.y)
    with pytest.raises(ValueError, match="pilot: this model's U-Net also sees"):
        _tiny_pilot().lambda_map(x0)
    with pytest.raises(ValueError, match="pilot: expected the shape, dtype and device"):
        _tiny_pilot().lambda_map(x0, x0[:1])
    with pytest.raises(ValueError, match="pilot: this model has no pilot"):
        _tiny("mri").lambda_map(x0, x0)


def test_registry():
    listed = tvfast.pretrained_models()
    assert "xray-denoise" in listed and all(isinstance(v, str) and v for v in listed.values())
    assert type(tvfast.pretrained()).__name__ == "LambdaNet"
    with pytest.raises(ValueError, match="name"):
        tvfast.pretrained("cuda")
    for name in listed:
        model = tvfast.pretrained(name)
        assert not model.training


@pytest.mark.skipif("mri4x" not in tvfast.pretrained_models(), reason="the mri4x weights are not installed")
def test_shipped_mri_model_reconstructs_better_than_zero_filling():
    from tvfast.evaluation.metrics import psnr

    model = tvfast.pretrained("mri4x")
    assert isinstance(model, ReconstructionNet) and model.task == "mri"
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 96), torch.linspace(-1, 1, 80), indexing="ij")
    clean = ((xx**2 / 0.5 + yy**2 / 0.8) < 1).float() * (0.5 + 0.3 * (xx > 0).float())
    data = simulate_mri(clean[None, None], 0.05, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        x = model.reconstruct(data.y, data.mask)
    start = MaskedFFT(data.mask).adjoint(data.y)
    assert x.shape == (1, 1, 96, 80)
    assert psnr(clean, x.abs()) > psnr(clean, start.abs()) + 1.0


def test_task_dataset(tmp_path):
    from tvfast.training.tasks import Task, TaskDataset

    for i in range(2):
        Image.fromarray((np.random.default_rng(i).random((20, 20)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    mri = TaskDataset(tmp_path, "mri4x", size=16, train=False, seed=3)
    a, b = mri[0], mri[0]
    assert torch.equal(a["y"], b["y"]) and float(a["s"]) == pytest.approx(0.05)
    assert a["y"].shape == (1, 16, 16) and a["y"].is_complex() and a["mask"].shape == (1, 16, 1)
    replay = simulate_mri(a["clean"][None], 0.05, generator=_replayed(mri, 0))
    assert torch.equal(replay.y[0], a["y"])
    ct = TaskDataset(tmp_path, "ct60", size=16, train=True, seed=0)
    ct.set_epoch(0)
    item = ct[1]
    assert item["y"].shape == (1, 60, ct.projector(16, 16).n_detectors)
    assert 0.01 <= float(item["s"]) <= 0.04
    batch = {k: (v[None] if isinstance(v, torch.Tensor) else v) for k, v in item.items()}
    model = _tiny("ct")
    loss = Task("ct60", ct).loss(model, batch, torch.device("cpu"))
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="task"):
        TaskDataset(tmp_path, "mri8x")


def _replayed(dataset, index: int) -> torch.Generator:
    """The dataset's stream for ``index`` after the draws made before the simulation (the level s)."""
    g = dataset._generator(index)
    torch.rand((), generator=g)
    return g


def test_models_command_lists_the_registry(capsys):
    from tvfast.cli.main import main

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, about in tvfast.pretrained_models().items():
        assert name in out and about in out
