"""Reconstruction evaluation (tvfast evaluate --task mri4x / ct60): oracle scalar λ, outputs, dispatch, errors."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tvfast
from tvfast.evaluation.metrics import psnr
from tvfast.models.lambda_net import LambdaNet
from tvfast.models.reconstruction_net import ReconstructionNet
from tvfast.models.unet import UNet
from tvfast.physics import MaskedFFT
from tvfast.training import evaluate as denoise_evaluate
from tvfast.training.evaluate_reconstruction import (CSV_COLUMNS, GRID_COLUMNS, main, scalar_search,
                                            solver_steps)
from tvfast.training.tasks import TaskDataset

N_IMAGES = 3
SIZE = 32
ITERS = 8


@pytest.fixture(autouse=True)
def _eager(monkeypatch):
    """Tiny solves: compiling the solver would cost more than it saves."""
    monkeypatch.setenv("TVFAST_COMPILE", "0")


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "test"
    folder.mkdir()
    for i in range(N_IMAGES):
        a = np.full((SIZE, SIZE), 0.3)
        a[8:20, 6 + i : 26] = 0.8
        a[20:28, 4:12] = rng.random()
        Image.fromarray((a * 255).astype(np.uint8)).save(folder / f"x{i}.png")
    return folder


def _model(task: str) -> ReconstructionNet:
    torch.manual_seed(0)
    return ReconstructionNet(task, UNet(in_channels=2 if task == "mri" else 1, base_channels=4, depth=1),
                             n_iter=ITERS).eval()


@pytest.fixture
def weights(tmp_path):
    paths = {}
    for task in ("mri", "ct"):
        paths[task] = tmp_path / f"{task}.safetensors"
        _model(task).save_pretrained(paths[task])
    return paths


def _argv(task, images, weights, out, *extra):
    return ["--task", task, "--data", str(images), "--weights", str(weights), "--out", str(out),
            "--size", str(SIZE), "--iters", str(ITERS), *extra]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _check_outputs(out, task):
    rows = _read_csv(out / "per_image.csv")
    assert len(rows) == N_IMAGES and list(rows[0]) == CSV_COLUMNS
    assert [r["image"] for r in rows] == [f"x{i}.png" for i in range(N_IMAGES)]
    grid = _read_csv(out / "lambda_grid.csv")
    assert list(grid[0]) == GRID_COLUMNS
    for r in rows:
        own = [g for g in grid if g["image"] == r["image"]]
        assert len(own) == 25 + 8 and {g["stage"] for g in own} == {"coarse", "fine"}
        lams = [float(g["lambda"]) for g in own]
        assert lams == sorted(lams) and 1e-4 * (1 - 1e-6) <= min(lams) and max(lams) <= 0.3 * (1 + 1e-6)
        p = np.array([float(g["psnr"]) for g in own])
        # the oracle is the best of its own grid
        assert float(r["psnr_best_scalar"]) == pytest.approx(p.max(), rel=1e-5)
        assert float(r["lambda_best_psnr"]) == pytest.approx(lams[int(np.argmax(p))], rel=1e-5)
        assert float(r["ssim_best_scalar"]) >= float(r["ssim_at_best_psnr_lambda"]) - 1e-6
        assert float(r["gain_psnr"]) == pytest.approx(float(r["psnr_learned"]) - float(r["psnr_best_scalar"]),
                                                      abs=1e-4)
        assert float(r["s"]) == pytest.approx({"mri4x": 0.05, "ct60": 0.02}[task])
        assert float(r["lambda_learned_mean"]) > 0 and r["lambda_at_edge"] in ("0", "1")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == task and summary["n_images"] == N_IMAGES and summary["iters"] == ITERS
    assert summary["scalar_iters"] == ITERS
    # the record names the weights by content (their SHA-256), not only by their path
    assert summary["weights_sha256"] == hashlib.sha256(Path(summary["weights"]).read_bytes()).hexdigest()
    assert summary["size"] == SIZE and summary["metrics"]["psnr_learned"][0] == pytest.approx(
        np.mean([float(r["psnr_learned"]) for r in rows]), abs=1e-4)
    table = (out / "results.md").read_text()
    assert "| PSNR (dB) |" in table and "| SSIM |" in table and "±" in table and task in table
    assert "wall time" in table and "noise level s" in table
    assert not list(out.rglob("*.tmp"))
    return rows


def test_mri_evaluation_writes_outputs(images, weights, tmp_path):
    out = tmp_path / "eval"
    assert main(_argv("mri4x", images, weights["mri"], out, "--no-figures")) == 0
    _check_outputs(out, "mri4x")
    assert not (out / "figures").exists()


def test_ct_evaluation_writes_outputs(images, weights, tmp_path):
    out = tmp_path / "eval"
    assert main(_argv("ct60", images, weights["ct"], out, "--no-figures", "--grid-batch", "10")) == 0
    rows = _check_outputs(out, "ct60")
    assert "FBP" in (out / "results.md").read_text()
    assert all(float(r["psnr_start"]) > 10 for r in rows)


@pytest.mark.parametrize("task, model", [("mri4x", "mri"), ("ct60", "ct")])
def test_noise_level_option(task, model, images, weights, tmp_path):
    """--noise-level replaces the task's evaluation level in the data, the CSV, the summary and the table."""
    psnr_start = {}
    for level in (None, "0.3"):
        out = tmp_path / f"eval_{level}"
        extra = ("--no-figures",) if level is None else ("--no-figures", "--noise-level", level)
        assert main(_argv(task, images, weights[model], out, *extra)) == 0
        rows = _read_csv(out / "per_image.csv")
        expected = {"mri4x": 0.05, "ct60": 0.02}[task] if level is None else 0.3
        assert all(float(r["s"]) == pytest.approx(expected) for r in rows)
        assert json.loads((out / "summary.json").read_text())["noise_level"] == pytest.approx(expected)
        assert f"| noise level s | {expected:g} |" in (out / "results.md").read_text()
        psnr_start[level] = np.mean([float(r["psnr_start"]) for r in rows])
    assert psnr_start["0.3"] < psnr_start[None]  # more noise, a worse start


def test_scalar_iters_solves_the_baseline_at_its_own_T(images, weights, tmp_path):
    """--scalar-iters T_s: the scalar column is the one a run at T = T_s gives, the learned column the one at T."""
    runs = {}
    for name, extra in (("model T", ()), ("scalar 2T", ("--scalar-iters", str(2 * ITERS))),
                        ("both 2T", ("--iters", str(2 * ITERS)))):
        out = tmp_path / name.replace(" ", "_")
        assert main(_argv("mri4x", images, weights["mri"], out, "--no-figures", *extra)) == 0
        runs[name] = (_read_csv(out / "per_image.csv"), json.loads((out / "summary.json").read_text()),
                      (out / "results.md").read_text())
    rows, summary, table = runs["scalar 2T"]
    assert summary["iters"] == ITERS and summary["scalar_iters"] == 2 * ITERS
    assert f"| PDHG iterations T | learned Λ {ITERS}, scalar λ {2 * ITERS} |" in table
    for row, model_t, both_2t in zip(rows, runs["model T"][0], runs["both 2T"][0]):
        assert row["psnr_learned"] == model_t["psnr_learned"]
        assert row["psnr_best_scalar"] == both_2t["psnr_best_scalar"]
        assert row["psnr_best_scalar"] != model_t["psnr_best_scalar"]


def test_scalar_step_balance_changes_only_the_scalar_column(images, weights, tmp_path):
    """--scalar-step-balance b: the scalar baseline runs with τ = b·s, σ = s/b, the learned column is untouched,
    and the table names both balances."""
    runs = {}
    for name, extra in (("model", ()), ("balanced", ("--scalar-step-balance", "10"))):
        out = tmp_path / name
        assert main(_argv("mri4x", images, weights["mri"], out, "--no-figures", *extra)) == 0
        runs[name] = (_read_csv(out / "per_image.csv"), json.loads((out / "summary.json").read_text()),
                      (out / "results.md").read_text())
    rows, summary, table = runs["balanced"]
    assert summary["scalar_step_balance"] == 10.0 and summary["model_step_balance"] == 1.0
    assert "b = 10; the model's b = 1" in table and "(the model's)" in runs["model"][2]
    for row, plain in zip(rows, runs["model"][0]):
        assert row["psnr_learned"] == plain["psnr_learned"]
        assert row["psnr_best_scalar"] != plain["psnr_best_scalar"]


def test_figures(images, weights, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "eval"
    assert main(_argv("mri4x", images, weights["mri"], out, "--examples", "2", "--limit", "2")) == 0
    names = sorted(p.name for p in (out / "figures").iterdir())
    assert names == ["example_00_x0.png", "example_01_x1.png", "gain_histogram.png"]
    assert all((out / "figures" / n).stat().st_size > 1000 for n in names)
    assert len(_read_csv(out / "per_image.csv")) == 2


def _sample(task, images):
    ds = TaskDataset(images, task, size=SIZE, train=False, seed=0)
    item = ds[1]
    y = item["y"][None]
    operator = MaskedFFT(item["mask"][None]) if task == "mri4x" else ds.projector(SIZE, SIZE)
    return item["clean"], y, operator


@pytest.mark.parametrize("task", ["mri4x", "ct60"])
def test_oracle_is_the_best_of_single_solves(task, images):
    """The batched grid equals one-λ-at-a-time solves, and its best PSNR is the max over them."""
    model = _model("mri" if task == "mri4x" else "ct")
    clean, y, operator = _sample(task, images)
    x0 = model.start(y, operator)
    steps = solver_steps(operator, x0)
    search = scalar_search(y, clean, operator, x0, ITERS, steps, coarse_steps=7, fine_steps=4, lambda_max=0.1)
    assert len(search["lambdas"]) == 7 + 4
    assert search["psnr_best"] == pytest.approx(search["psnr"].max())
    for k in (0, int(np.argmax(search["psnr"])), len(search["lambdas"]) - 1):
        x = tvfast.pdhg(y, float(search["lambdas"][k]), ITERS, operator=operator, x0=x0, **steps)
        p = psnr(clean, x.abs() if x.is_complex() else x)
        assert p == pytest.approx(search["psnr"][k], abs=1e-3)
        assert p <= search["psnr_best"] + 1e-3
    best = search["image"]
    assert psnr(clean, best.abs() if best.is_complex() else best) == pytest.approx(search["psnr_best"], abs=1e-6)


@pytest.mark.parametrize("task", ["mri4x", "ct60"])
def test_model_with_the_scalar_as_its_map_matches_the_oracle(task, images, monkeypatch):
    """Same T, same steps, same start: a model whose Λ is the chosen scalar reconstructs the oracle's image."""
    model = _model("mri" if task == "mri4x" else "ct")
    clean, y, operator = _sample(task, images)
    x0 = model.start(y, operator)
    search = scalar_search(y, clean, operator, x0, ITERS, solver_steps(operator, x0), coarse_steps=9,
                           fine_steps=2, lambda_max=0.1)
    lam = search["lambda_best_psnr"]
    monkeypatch.setattr(model, "lambda_map", lambda start, pilot=None: torch.full((1, 1, SIZE, SIZE), lam))
    with torch.no_grad():
        x_model, lam_map, x0_model = model.solve(y, operator, n_iter=ITERS)
    torch.testing.assert_close(x0_model, x0)
    torch.testing.assert_close(x_model, search["image"], atol=1e-5, rtol=1e-5)
    p_model = psnr(clean, x_model.abs() if x_model.is_complex() else x_model)
    assert p_model == pytest.approx(search["psnr_best"], abs=1e-4)
    # and the batched solve with a per-image Λ gives the same image as with the scalar
    xs = tvfast.pdhg(y.expand(2, *y.shape[1:]).contiguous(), torch.tensor([lam, 2 * lam]), ITERS, operator=operator,
                     x0=x0.expand(2, *x0.shape[1:]).contiguous(), **solver_steps(operator, x0))
    torch.testing.assert_close(xs[:1], x_model, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("task", ["mri4x", "ct60"])
def test_step_balance_scales_both_steps(task, images):
    """b sets τ = b·s and σ = s/b around the default step s of either operator; τσ stays s²."""
    model = _model("mri" if task == "mri4x" else "ct")
    _, y, operator = _sample(task, images)
    x0 = model.start(y, operator)
    plain, balanced = solver_steps(operator, x0), solver_steps(operator, x0, 10.0)
    assert plain["tau"] == pytest.approx(plain["sigma"])
    assert balanced["tau"] == pytest.approx(10 * plain["tau"])
    assert balanced["sigma"] == pytest.approx(plain["sigma"] / 10)


def test_ct_scalar_step_balance_is_recorded(images, weights, tmp_path):
    out = tmp_path / "ct_balanced"
    assert main(_argv("ct60", images, weights["ct"], out, "--no-figures", "--limit", "1",
                      "--scalar-step-balance", "10")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scalar_step_balance"] == 10 and summary["model_step_balance"] == 1
    assert "b = 10; the model's b = 1" in (out / "results.md").read_text()


def test_tvfast_evaluate_dispatches_to_the_task_evaluation(images, weights, tmp_path):
    from tvfast.cli.main import main as tvfast_main

    out = tmp_path / "cli"
    argv = ["evaluate", *_argv("mri4x", images, weights["mri"], out, "--no-figures", "--limit", "1")]
    assert tvfast_main(argv) == 0
    assert len(_read_csv(out / "per_image.csv")) == 1
    # --task=VALUE through the denoising evaluation's main (python -m tvfast.training.evaluate)
    out2 = tmp_path / "module"
    argv = ["--task=ct60", *_argv("ct60", images, weights["ct"], out2, "--no-figures", "--limit", "1")[2:]]
    assert denoise_evaluate.main(argv, default_weights="unused") == 0
    assert json.loads((out2 / "summary.json").read_text())["task"] == "ct60"


def test_denoise_task_is_the_denoising_evaluation():
    args = denoise_evaluate.build_parser().parse_args(["--data", "x", "--task", "denoise"])
    assert args.task == "denoise"
    assert denoise_evaluate.build_parser().parse_args(["--data", "x"]).task == "denoise"
    assert denoise_evaluate._requested_task(["--data", "x", "--task", "denoise"]) == "denoise"
    assert denoise_evaluate._requested_task(["--data", "x"]) is None
    assert denoise_evaluate._requested_task(["--task=mri4x", "--data", "x"]) == "mri4x"


def _error(capsys, run) -> str:
    with pytest.raises(SystemExit) as info:
        run()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err  # one line, no traceback
    return err


def test_bad_arguments(images, weights, tmp_path, capsys):
    out = tmp_path / "never"
    err = _error(capsys, lambda: main(_argv("mri4x", tmp_path / "missing", weights["mri"], out)))
    assert "--data" in err and "missing" in err
    err = _error(capsys, lambda: main(_argv("mri4x", images, weights["ct"], out)))
    assert "--weights" in err and "'ct'" in err and "--task mri4x" in err
    err = _error(capsys, lambda: main(_argv("ct60", images, weights["mri"], out)))
    assert "--weights" in err and "'mri'" in err
    err = _error(capsys, lambda: main(_argv("mri4x", images, tmp_path / "none.safetensors", out)))
    assert "--weights" in err and "not found" in err
    lambda_net = tmp_path / "lambda_net.safetensors"
    LambdaNet(UNet(base_channels=4, depth=1), n_iter=4).save_pretrained(lambda_net)
    err = _error(capsys, lambda: main(_argv("mri4x", images, lambda_net, out)))
    assert "--weights" in err and "ReconstructionNet" in err
    err = _error(capsys, lambda: main(_argv("mri4x", images, weights["mri"], out, "--limit", "0")))
    assert "--limit" in err
    err = _error(capsys, lambda: main(_argv("mri4x", images, weights["mri"], out, "--lambda-min", "0")))
    assert "--lambda-min" in err
    for bad in ("-0.1", "nan", "inf"):
        err = _error(capsys, lambda: main(_argv("mri4x", images, weights["mri"], out, "--noise-level", bad)))
        assert "--noise-level" in err and ">= 0" in err
    for bad in ("0", "nan"):
        err = _error(capsys, lambda: main(_argv("mri4x", images, weights["mri"], out, "--scalar-step-balance", bad)))
        assert "--scalar-step-balance: expected a finite number > 0" in err
    err = _error(capsys, lambda: main(["--task", "ct60", "--data", str(images)]))
    assert "--weights" in err and "no weights of the ct60 task are shipped" in err
    err = _error(capsys, lambda: denoise_evaluate.main(["--task", "mri5x", "--data", str(images)]))
    assert "--task" in err and "mri4x" in err
    assert not out.exists()


def test_mri4x_defaults_to_the_shipped_weights(images, tmp_path):
    out = tmp_path / "shipped"
    assert main(["--task", "mri4x", "--data", str(images), "--out", str(out), "--size", str(SIZE), "--iters", "2",
                 "--limit", "1", "--lambda-steps", "2", "--fine-steps", "0", "--no-figures"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights"].endswith("mri4x.safetensors") and summary["model_task"] == "mri"


def test_best_lambda_at_the_grid_edge_is_reported(images, weights, tmp_path):
    out = tmp_path / "edge"
    argv = _argv("mri4x", images, weights["mri"], out, "--no-figures", "--limit", "1", "--lambda-min", "1e-5",
                 "--lambda-max", "1e-4", "--lambda-steps", "4", "--fine-steps", "2")
    assert main(argv) == 0
    (row,) = _read_csv(out / "per_image.csv")
    assert row["lambda_at_edge"] == "1" and float(row["lambda_best_psnr"]) == pytest.approx(1e-4, rel=1e-6)
    assert len(_read_csv(out / "lambda_grid.csv")) == 4 + 2
    assert "Warning" in (out / "results.md").read_text()
    assert json.loads((out / "summary.json").read_text())["lambda_at_edge"] == ["x0.png"]
