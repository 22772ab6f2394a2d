"""Training mri4x beyond X-rays: dead-leaves images, sample variations, quantile normalisation, T per step.

Tiny everything (32² images, T ≤ 6, a 2-level U-Net of width 4); the trainer runs set ``TVFAST_COMPILE=0``.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import tvfast
from tvfast.models.reconstruction_net import ReconstructionNet, mri_steps
from tvfast.models.unet import UNet
from tvfast.physics import MaskedFFT, simulate_mri
from tvfast.physics.mri import row_counts
from tvfast.solver.differences import forward_differences
from tvfast.training.options import build_parser
from tvfast.training.synthetic import dead_leaves, object_support
from tvfast.training.tasks import TaskDataset
from tvfast.training.train import main, training_iters

TINY = ["--task", "mri4x", "--directional", "--size", "32", "--iters", "4", "--base-channels", "4", "--depth", "2",
        "--batch-size", "2"]
VARIED = ["--patch-size", "24", "--augment", "--synthetic-fraction", "0.5", "--resize-range", "24", "40",
          "--background-max", "0.8", "--intensity-range", "0.3", "1", "--centre-fraction", "0.04", "0.12",
          "--iters-range", "2", "6", "--normalisation", "quantile"]


@pytest.fixture(autouse=True)
def _eager_solver(monkeypatch):
    monkeypatch.setenv("TVFAST_COMPILE", "0")


@pytest.fixture(scope="module")
def data(rectangle_images):
    return rectangle_images(4, 2)


def run(data, out, *extra):
    return main(["--data", str(data / "train"), "--val", str(data / "val"), "--out", str(out), *TINY, *extra])


# ----------------------------------------------------------------------------- the generators
def test_dead_leaves_are_deterministic_in_range_and_vary():
    a = dead_leaves(40, 56, torch.Generator().manual_seed(5))
    b = dead_leaves(40, 56, torch.Generator().manual_seed(5))
    c = dead_leaves(40, 56, torch.Generator().manual_seed(6))
    assert a.shape == (1, 40, 56) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert float(a.std()) > 0.05 and torch.unique(a).numel() > 50  # leaves of many grey levels, not a flat image
    flat = dead_leaves(40, 56, torch.Generator().manual_seed(5), shading=0.0, texture=0.0, blur=0.0)
    same_as_left = (flat[..., 1:] == flat[..., :-1]).float().mean()  # piecewise constant: leaves of one grey
    assert float(same_as_left) > 0.6 and float((a[..., 1:] == a[..., :-1]).float().mean()) < 0.1
    with pytest.raises(ValueError, match="alpha"):
        dead_leaves(8, 8, alpha=1.0)
    with pytest.raises(ValueError, match="height"):
        dead_leaves(0, 8)


def test_object_support_zeroes_the_requested_fraction():
    mask = object_support(30, 40, 0.7, torch.Generator().manual_seed(1))
    again = object_support(30, 40, 0.7, torch.Generator().manual_seed(1))
    assert torch.equal(mask, again) and mask.shape == (1, 30, 40)
    assert set(torch.unique(mask).tolist()) == {0.0, 1.0}
    assert int((mask == 0).sum()) == round(0.7 * 30 * 40)
    assert bool(mask[0, 15, 20] == 1)  # the centre of the ellipse is within ±20 % of the middle
    assert bool((object_support(8, 8, 0.0) == 1).all())
    with pytest.raises(ValueError, match="background"):
        object_support(8, 8, 1.0)


# ----------------------------------------------------------------------------- the dataset
def test_dataset_without_variations_draws_the_samples_it_always_drew(data):
    """All options off: the old order of draws (crop, flips, s, simulation), bit for bit."""
    ds = TaskDataset(data / "train", "mri4x", size=32, patch_size=24, augment=True, seed=3,
                     noise_level=(0.02, 0.1))
    ds.set_epoch(2)
    item = ds[1]
    g = ds._generator(1)
    x = ds._draw(1, ds._source(1), g).contiguous()
    s = 0.02 + 0.08 * float(torch.rand((), generator=g))
    expected = simulate_mri(x[None], s, generator=g)
    assert torch.equal(item["clean"], x) and torch.equal(item["y"], expected.y[0])
    assert float(item["s"]) == pytest.approx(s)


def test_dataset_variations_are_deterministic_batchable_and_take_effect(data):
    options = {"size": 32, "patch_size": 24, "augment": True, "seed": 1, "synthetic_fraction": 1.0,
               "resize_range": (24, 48), "background_max": 0.9, "intensity_range": (0.3, 0.5),
               "centre_fraction": (0.2, 0.25)}
    ds = TaskDataset(data / "train", "mri4x", **options)
    ds.set_epoch(0)
    plain = TaskDataset(data / "train", "mri4x", size=32, patch_size=24, seed=1)
    plain.set_epoch(0)
    items = [ds[i] for i in range(len(ds))]
    for i, item in enumerate(items):
        assert torch.equal(item["clean"], ds[i]["clean"]) and torch.equal(item["y"], ds[i]["y"])
        assert item["clean"].shape == (1, 24, 24) and item["y"].shape == (1, 24, 24)
        assert float(item["clean"].max()) <= 0.5 + 1e-6  # intensity a <= 0.5
        n_centre, n_rows = row_counts(24, 4, 0.2)  # f in [0.2, 0.25]: 5 or 6 centre rows, more than the 4x rows
        assert int(item["mask"].sum()) in (max(n_centre, n_rows), max(row_counts(24, 4, 0.25)))
        assert not torch.equal(item["clean"], plain[i]["clean"])  # synthetic, not the file
    assert any(float((item["clean"] == 0).float().mean()) > 0.3 for item in items)  # zero background
    validation = TaskDataset(data / "val", "mri4x", train=False, **options)
    reference = TaskDataset(data / "val", "mri4x", size=32, train=False, seed=1)
    assert torch.equal(validation[0]["y"], reference[0]["y"])  # evaluation items are never varied
    with pytest.raises(ValueError, match="resize_range"):
        TaskDataset(data / "train", "mri4x", size=32, resize_range=(24, 40))  # no patch_size
    with pytest.raises(ValueError, match="centre_fraction"):
        TaskDataset(data / "train", "ct60", size=32, centre_fraction=(0.04, 0.1))


# ----------------------------------------------------------------------------- the model's scale
@pytest.mark.skipif("mri4x" not in tvfast.pretrained_models(), reason="the mri4x weights are not installed")
def test_shipped_mri4x_uses_the_quantile_scale_and_balanced_steps():
    """The shipped map is c·0.1·softplus(U-Net((x0, x_p)/c)) with c the 0.98 quantile of |x0| and x_p the
    pilot, 64 iterations of scalar TV with λ = 2·10⁻³·c from x0; all solved with b = 30."""
    model = tvfast.pretrained("mri4x")
    assert (model.normalisation, model.quantile, model.step_balance, model.n_iter) == ("quantile", 0.98, 30.0, 256)
    assert (model.pilot, model.pilot_iters) == (2e-3, 64)
    clean = dead_leaves(96, 96, torch.Generator().manual_seed(0))[None]
    data = simulate_mri(clean, 0.05, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        A = data.operator()
        lam, x0 = model.estimate(data.y, A)
        flat = x0.abs().flatten(1).sort(dim=1).values
        scale = flat[:, math.ceil(0.98 * flat.shape[1]) - 1].reshape(-1, 1, 1, 1)
        s = 0.99 / 3.0
        pilot = tvfast.pdhg(data.y, (2e-3 * scale).flatten(), 64, operator=A, x0=x0, tau=30 * s, sigma=s / 30)
        parts = (x0 / scale, pilot / scale)
        inp = F.pad(torch.cat([c for t in parts for c in (t.real, t.imag)], dim=1), (4, 4, 4, 4), mode="reflect")
        if model.precision.channels_last:
            inp = inp.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=model.precision.bf16):
            out = model.unet(inp).float()[..., 4:-4, 4:-4]
        assert torch.equal(lam, scale * 0.1 * F.softplus(out[:, :2]))
        x = model.reconstruct(data.y, data.mask, n_iter=64)

    def error(image: torch.Tensor) -> float:
        return float((image.abs() - clean).square().mean())

    assert error(x) < 0.75 * error(x0)  # a third of the zero-filled error goes (0.66 of it is left at 64 iterations)


def _quantile_model(**kw) -> ReconstructionNet:
    torch.manual_seed(0)
    return ReconstructionNet("mri", UNet(in_channels=2, base_channels=4, depth=1), n_iter=6, solver_compile=False,
                             normalisation="quantile", **kw)


def test_quantile_scale_hardly_depends_on_zero_background():
    """An object on 75 % zero background: the mean scale falls to about a quarter, the quantile's stays."""
    obj = 0.2 + 0.8 * dead_leaves(32, 32, torch.Generator().manual_seed(2))
    padded = F.pad(obj, (16, 16, 16, 16))[None]  # 64², 75 % zeros
    model, mean_model = _quantile_model(), ReconstructionNet("mri", UNet(in_channels=2, base_channels=4, depth=1))
    scales = {}
    for name, image in (("object", obj[None]), ("padded", padded)):
        data = simulate_mri(image, 0.05, generator=torch.Generator().manual_seed(4))
        x0 = data.operator().adjoint(data.y)
        scales[name] = (float(model.scale(x0)), float(mean_model.scale(x0)))
    quantile_ratio = scales["padded"][0] / scales["object"][0]
    mean_ratio = scales["padded"][1] / scales["object"][1]
    assert 0.85 < quantile_ratio < 1.1
    assert mean_ratio < 0.35
    exact = torch.rand(1, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    rank = math.ceil(0.98 * 100)
    assert float(model.scale(exact)) == float(exact.flatten().sort().values[rank - 1])  # nearest rank


def test_quantile_model_is_equivariant_to_the_data_scale_and_round_trips(tmp_path):
    model = _quantile_model(quantile=0.9)
    clean = dead_leaves(16, 16, torch.Generator().manual_seed(1))[None]
    data = simulate_mri(clean, 0.05, generator=torch.Generator().manual_seed(2))
    A = MaskedFFT(data.mask)
    with torch.no_grad():
        assert torch.allclose(model(7.0 * data.y, A), 7.0 * model(data.y, A), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(model(data.y, A, 2), model(data.y, A))  # forward takes T
    model.save_pretrained(tmp_path / "m.safetensors")
    loaded = ReconstructionNet.load_pretrained(tmp_path / "m.safetensors")
    assert (loaded.normalisation, loaded.quantile) == ("quantile", 0.9)
    old_config = {k: v for k, v in model.config.items() if k not in ("normalisation", "quantile")}
    assert ReconstructionNet.from_config(old_config).normalisation == "mean"  # files of before the option
    with pytest.raises(ValueError, match="normalisation"):
        ReconstructionNet("mri", normalisation="max")
    with pytest.raises(ValueError, match="quantile"):
        ReconstructionNet("mri", normalisation="quantile", quantile=0.0)


# ----------------------------------------------------------------------------- the step balance
def _objective(x, y, A, lam):
    """½‖Ax − y‖² + λ‖∇x‖₁, anisotropic, with the solver's default (periodic) differences."""
    return float(0.5 * (A(x) - y).abs().pow(2).sum() + lam * forward_differences(x, 2).abs().sum())


def test_step_balance_sets_the_mri_steps_and_converges_faster():
    """τ = b·s, σ = s/b: same τσ, the model's solve uses them; at an MRI-sized λ and T = 256, b = 10 is
    several times closer to the minimum of the objective than τ = σ."""
    A = MaskedFFT(torch.ones(32, 1))
    s = mri_steps(A)["tau"]
    assert mri_steps(A) == {"tau": s, "sigma": s}
    steps = mri_steps(A, 10.0)
    assert steps["tau"] == pytest.approx(10 * s) and steps["sigma"] == pytest.approx(s / 10)
    assert steps["tau"] * steps["sigma"] == pytest.approx(s * s)
    assert mri_steps(object(), 10.0) == {}  # other operators: pdhg's own steps

    clean = dead_leaves(32, 32, torch.Generator().manual_seed(3))[None]
    data = simulate_mri(clean, 0.05, generator=torch.Generator().manual_seed(4))
    A = MaskedFFT(data.mask)
    x0, lam = A.adjoint(data.y), 0.004
    with torch.no_grad():
        balanced = tvfast.pdhg(data.y, lam, 256, operator=A, x0=x0, **mri_steps(A, 10.0))
        equal = tvfast.pdhg(data.y, lam, 256, operator=A, x0=x0, **mri_steps(A))
        converged = tvfast.pdhg(data.y, lam, 2048, operator=A, x0=x0, **mri_steps(A, 10.0))
    f_star = _objective(converged, data.y, A, lam)
    gap_equal = _objective(equal, data.y, A, lam) - f_star
    assert gap_equal > 1e-3 and abs(_objective(balanced, data.y, A, lam) - f_star) < 0.25 * gap_equal

    model = _quantile_model()
    balanced_model = ReconstructionNet.from_config({**model.config, "step_balance": 10.0})
    balanced_model.load_state_dict(model.state_dict())
    with torch.no_grad():
        lam_map = model.lambda_map(x0)
        expected = tvfast.pdhg(data.y, lam_map, 6, operator=A, x0=x0, **mri_steps(A, 10.0))
        assert torch.allclose(balanced_model(data.y, A, 6), expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(model(data.y, A, 6), expected)
    old_config = {k: v for k, v in model.config.items() if k != "step_balance"}
    assert ReconstructionNet.from_config(old_config).step_balance == 1.0  # files of before the option
    with pytest.raises(ValueError, match="step_balance"):
        ReconstructionNet("mri", step_balance=0.0)
    with pytest.raises(ValueError, match="step_balance"):
        ReconstructionNet("ct", step_balance=10.0)


def test_init_switches_the_step_balance_and_resume_keeps_it(data, tmp_path, capsys):
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    run(data, first, "--epochs", "1", "--max-steps-per-epoch", "1")
    assert ReconstructionNet.load_pretrained(first / "best.safetensors").step_balance == 1.0
    run(data, tuned, "--epochs", "1", "--max-steps-per-epoch", "1", "--step-balance", "10",
        "--init", str(first / "best.safetensors"))
    assert ReconstructionNet.load_pretrained(tuned / "best.safetensors").step_balance == 10.0
    run(data, tuned, "--epochs", "2", "--max-steps-per-epoch", "1", "--resume")
    ckpt = torch.load(tuned / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["step_balance"] == 10.0 and ckpt["epoch"] == 2
    with pytest.raises(SystemExit):
        run(data, tuned, "--epochs", "3", "--max-steps-per-epoch", "1", "--step-balance", "1", "--resume")
    assert "--step-balance 1 differs from the checkpoint's model (10)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- T per step
def test_training_iters_are_deterministic_in_range_and_vary():
    args = build_parser().parse_args(["--data", "x", "--iters-range", "128", "256", "--seed", "7"])
    draws = [training_iters(args, epoch, step) for epoch in range(3) for step in range(40)]
    assert draws == [training_iters(args, epoch, step) for epoch in range(3) for step in range(40)]
    assert all(128 <= t <= 256 for t in draws) and len(set(draws)) > 30
    assert min(draws) < 150 and max(draws) > 235
    other_seed = build_parser().parse_args(["--data", "x", "--iters-range", "128", "256", "--seed", "8"])
    assert [training_iters(other_seed, 0, k) for k in range(40)] != draws[:40]
    assert training_iters(build_parser().parse_args(["--data", "x"]), 0, 0) is None


# ----------------------------------------------------------------------------- the trainer
def test_varied_training_resumes_exactly_and_records_its_options(data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(data, straight, *VARIED, "--epochs", "2")
    run(data, resumed, *VARIED, "--epochs", "1")
    run(data, resumed, *VARIED, "--epochs", "2", "--resume")
    a = torch.load(straight / "last.pt", map_location="cpu", weights_only=True)
    b = torch.load(resumed / "last.pt", map_location="cpu", weights_only=True)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-6, atol=1e-7)
    assert a["args"]["iters_range"] == [2, 6] and a["args"]["synthetic_fraction"] == 0.5
    model = ReconstructionNet.load_pretrained(straight / "best.safetensors")
    assert model.normalisation == "quantile" and model.n_iter == 4


def test_init_switches_the_normalisation_and_resume_keeps_it(data, tmp_path, capsys):
    first, tuned = tmp_path / "first", tmp_path / "tuned"
    run(data, first, "--epochs", "1", "--max-steps-per-epoch", "1")
    assert ReconstructionNet.load_pretrained(first / "best.safetensors").normalisation == "mean"
    run(data, tuned, "--epochs", "1", "--max-steps-per-epoch", "1", "--normalisation", "quantile",
        "--init", str(first / "best.safetensors"))
    assert ReconstructionNet.load_pretrained(tuned / "best.safetensors").normalisation == "quantile"
    with pytest.raises(SystemExit):
        run(data, tuned, "--epochs", "2", "--max-steps-per-epoch", "1", "--normalisation", "mean", "--resume")
    assert "--normalisation mean differs from the checkpoint's model (quantile)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--synthetic-fraction", "1.5"], "--synthetic-fraction must be in [0, 1]"),
    (["--resize-range", "24", "40"], "--resize-range needs --patch-size"),
    (["--patch-size", "24", "--resize-range", "16", "40"], "--resize-range needs --patch-size <= LOW <= HIGH"),
    (["--background-max", "1"], "--background-max must be in [0, 1)"),
    (["--intensity-range", "0", "1"], "--intensity-range needs 0 < LOW <= HIGH <= 1"),
    (["--centre-fraction", "0.1", "0.3"], "--centre-fraction needs 0 < LOW <= HIGH <= 0.25"),
    (["--iters-range", "8", "4"], "--iters-range needs 1 <= LOW <= HIGH"),
    (["--task", "ct60", "--centre-fraction", "0.04", "0.1"], "--centre-fraction is for the row masks"),
    (["--task", "denoise", "--synthetic-fraction", "0.5"], "--synthetic-fraction is for the reconstruction tasks"),
    (["--task", "denoise", "--normalisation", "quantile"], "--normalisation is for the reconstruction tasks"),
    (["--task", "denoise", "--iters-range", "2", "4"], "--iters-range is for the reconstruction tasks"),
    (["--step-balance", "0"], "--step-balance must be a finite number > 0"),
    (["--task", "ct60", "--step-balance", "10"], "--step-balance sets the MRI steps"),
])
def test_option_errors_name_the_option(data, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit):
        main(["--data", str(data / "train"), "--out", str(tmp_path / "o"), *TINY, *extra])
    assert message in capsys.readouterr().err
