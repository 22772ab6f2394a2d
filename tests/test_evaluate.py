"""Evaluation: grid search in one batched call, CSV / table / figures."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import tvfast
from tvfast.evaluation.grid_search import lambda_grid_search, oracle_search
from tvfast.models.lambda_net import LambdaNet
from tvfast.evaluation.metrics import psnr
from tvfast.training.evaluate import CSV_COLUMNS, main
from tvfast.models.unet import UNet


@pytest.fixture
def setup(tmp_path):
    rng = np.random.default_rng(1)
    images = tmp_path / "test"
    images.mkdir()
    for i in range(3):
        a = np.full((32, 32), 0.3)
        a[8:20, 6 + i : 26] = 0.8
        a[20:28, 4:12] = rng.random()
        Image.fromarray((a * 255).astype(np.uint8)).save(images / f"x{i}.png")
    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    LambdaNet(UNet(base_channels=4, depth=2), n_iter=4).save_pretrained(weights)
    return images, weights


def test_grid_search_matches_single_solves():
    torch.manual_seed(0)
    clean = torch.rand(1, 16, 16)
    z = clean + 0.1 * torch.randn(1, 16, 16)
    lambdas = torch.linspace(0, 0.4, 5)
    p_all, s_all, best_p, _ = lambda_grid_search(z, clean, lambdas, n_iter=6)
    p_chunk, s_chunk, _, _ = lambda_grid_search(z, clean, lambdas, n_iter=6, batch=2)
    np.testing.assert_allclose(p_all, p_chunk, rtol=1e-5)
    np.testing.assert_allclose(s_all, s_chunk, rtol=1e-5)
    for k, lam in enumerate(lambdas):
        x = tvfast.pdhg(z[None], float(lam), n_iter=6)
        assert psnr(clean, x) == pytest.approx(p_all[k], abs=1e-3)
    assert psnr(clean, best_p) == pytest.approx(p_all.max(), abs=1e-6)


def test_oracle_search_refines_around_the_best_and_takes_per_axis_values():
    torch.manual_seed(0)
    clean = torch.rand(1, 16, 16)
    z = (clean + 0.1 * torch.randn(1, 16, 16))[None]
    grid = [0.01, 0.04, 0.16, 0.64]
    found = oracle_search(z, clean, grid, 6, refine=3)
    assert found.stage == ["grid"] * 4 + ["refine"] * 3 and len(found.candidates) == 7
    k = int(np.argmax(found.psnr[:4]))
    low, high = grid[max(k - 1, 0)], grid[min(k + 1, 3)]
    assert all(low < v < high for v in found.candidates[4:])  # strictly between the best's neighbours
    assert found.psnr[found.best_psnr] == found.psnr.max() >= found.psnr[:4].max()
    assert psnr(clean, found.image_psnr) == pytest.approx(found.psnr.max(), abs=1e-6)
    pairs = oracle_search(z, clean, [[0.05, 0.01], [0.01, 0.05]], 6)  # (λ along H, λ along W)
    for j, (a, b) in enumerate(pairs.candidates):
        x = tvfast.pdhg(z, torch.tensor([a, b]).reshape(1, 2, 1, 1), 6)
        assert psnr(clean, x) == pytest.approx(pairs.psnr[j], abs=1e-4)
    with pytest.raises(ValueError, match="^candidates:"):
        oracle_search(z, clean, [[[0.1]]], 6)
    with pytest.raises(ValueError, match="^refine:"):
        oracle_search(z, clean, [[0.1, 0.2]], 6, refine=2)


def test_tiny_evaluation_writes_outputs(setup, tmp_path):
    images, weights = setup
    out = tmp_path / "eval"
    argv = ["--data", str(images), "--out", str(out), "--limit", "2", "--iters", "4",
            "--size", "32", "--lambda-steps", "9", "--noise-levels", "0.3", "0.5"]
    assert main(argv, default_weights=str(weights)) == 0

    with open(out / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and list(rows[0]) == CSV_COLUMNS
    assert {r["image"] for r in rows} == {"x0.png", "x1.png"}
    for r in rows:
        assert float(r["psnr_best_scalar"]) >= float(r["psnr_noisy"]) - 1e-6  # λ = 0 is on the grid
        assert 0.0 <= float(r["lambda_best_psnr"]) <= 0.8

    table = (out / "results.md").read_text()
    assert "±" in table and "| PSNR (dB) |" in table and "| SSIM |" in table
    assert "s = 0.3" in table and "s = 0.5" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["levels"]["0.5"]["n_images"] == 2

    figs = sorted(p.name for p in (out / "figures").iterdir())
    for tag in ("s0.3", "s0.5"):
        for stem in ("examples", "lambda_map", "lambda_curves", "differences"):
            assert f"{stem}_{tag}.png" in figs
    assert all((out / "figures" / f).stat().st_size > 1000 for f in figs)
    assert not [p for p in out.rglob("*.tmp")]


def test_noise_is_fixed_between_runs(setup, tmp_path):
    images, weights = setup
    argv = ["--data", str(images), "--weights", str(weights), "--limit", "1", "--iters", "4",
            "--size", "32", "--lambda-steps", "3", "--no-figures"]
    main(argv + ["--out", str(tmp_path / "a")])
    main(argv + ["--out", str(tmp_path / "b")])
    assert (tmp_path / "a" / "per_image.csv").read_text() == (tmp_path / "b" / "per_image.csv").read_text()


def test_weights_required_and_checked(setup, tmp_path, capsys):
    images, _ = setup
    with pytest.raises(SystemExit):
        main(["--data", str(images), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit):
        main(["--data", str(images), "--weights", str(tmp_path / "nope.safetensors")])
    assert "nope.safetensors" in capsys.readouterr().err
