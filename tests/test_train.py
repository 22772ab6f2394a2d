"""Trainer: tiny runs, learning, recipes, checkpoints, exact resume, time limit, torchrun/gloo.

The trainer makes the solver's default call (``solver_compile=None``: the fused CPU path);
these tiny runs also set ``TVFAST_COMPILE=0``, so that nothing compiles with torch.compile.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tvfast
from tvfast.io.images import read_grayscale
from tvfast.models.lambda_net import LambdaNet
from tvfast.training.data import centre_square_resize
from tvfast.training.options import (RECIPES, apply_recipe, build_parser, explicit_options, resolve_task_defaults,
                                     resumed_arguments)
from tvfast.training.train import main, scheduled_lr

# Tiny everything: 32×32 images, T = 4, a 2-level U-Net of width 4.
TINY = ["--size", "32", "--iters", "4", "--base-channels", "4", "--depth", "2", "--batch-size", "2"]


@pytest.fixture(autouse=True)
def _eager_solver(monkeypatch):
    monkeypatch.setenv("TVFAST_COMPILE", "0")


@pytest.fixture(scope="module")
def data(rectangle_images):
    return rectangle_images(6, 2)


def run(data, out, *extra):
    return main(["--data", str(data / "train"), "--val", str(data / "val"), "--out", str(out), *TINY, *extra])


def load(out):
    return torch.load(out / "last.pt", map_location="cpu", weights_only=True)


def test_tiny_training_run(data, tmp_path):
    out = tmp_path / "run"
    assert run(data, out, "--epochs", "1") == 0
    ck = load(out)
    assert ck["epoch"] == 1 and ck["step"] == 0 and ck["global_step"] == 3
    assert np.isfinite(ck["best_val_psnr"]) and ck["history"][0]["val_psnr"] == ck["best_val_psnr"]
    assert np.isfinite(ck["history"][0]["train_loss"]) and ck["history"][0]["val_ssim"] > 0
    model = LambdaNet.load_pretrained(out / "best.safetensors")
    assert model.n_iter == 4
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "tensorboard").iterdir())
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # the trainer makes the default call; so does the model file
    assert ck["model_config"]["solver_compile"] is None and model.solver_compile is None
    assert ck["args"]["recipe"] == "best" and ck["args"]["lr"] == 1e-3 and ck["args"]["lr_schedule"] == "cosine"


def test_max_steps_and_batch_options(data, tmp_path):
    out = tmp_path / "run"
    run(data, out, "--epochs", "1", "--batch-size", "3", "--max-steps-per-epoch", "1",
        "--patch-size", "16", "--directional", "--up-bound", "0.2")
    ck = load(out)
    assert ck["global_step"] == 1
    assert ck["model_config"]["directional"] and ck["model_config"]["up_bound"] == 0.2


@pytest.mark.slow
def test_resume_continues_exactly(data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run(data, straight, "--epochs", "2")
    run(data, resumed, "--epochs", "1")
    first = load(resumed)
    assert first["epoch"] == 1
    adam_steps = {int(s["step"]) for s in first["optimizer"]["state"].values()}
    assert adam_steps == {3}

    run(data, resumed, "--epochs", "2", "--resume")
    a, b = load(straight), load(resumed)
    assert b["epoch"] == 2 and b["global_step"] == a["global_step"] == 6
    assert {int(s["step"]) for s in b["optimizer"]["state"].values()} == {6}
    assert [h["epoch"] for h in b["history"]] == [1, 2]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-6, atol=1e-7)
    assert b["history"][1]["val_psnr"] == pytest.approx(a["history"][1]["val_psnr"], abs=1e-4)


@pytest.mark.slow
def test_time_limit_checkpoints_mid_epoch_and_resumes(data, tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run(data, straight, "--epochs", "1")
    # A limit that is already exceeded after the first step: stop, checkpoint.
    run(data, stopped, "--epochs", "1", "--time-limit-min", "1e-6")
    ck = load(stopped)
    assert (ck["epoch"], ck["step"], ck["global_step"]) == (0, 1, 1)
    run(data, stopped, "--epochs", "1", "--resume")
    a, b = load(straight), load(stopped)
    assert (b["epoch"], b["step"], b["global_step"]) == (1, 0, 3)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-6, atol=1e-7)
    assert b["history"][0]["train_loss"] == pytest.approx(a["history"][0]["train_loss"], rel=1e-5)


def test_clean_errors_for_missing_inputs(data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(data, tmp_path / "nothing", "--epochs", "1", "--resume")
    assert "last.pt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "o")])
    assert "absent" in capsys.readouterr().err


def test_isotropic_training_writes_an_isotropic_model(data, tmp_path):
    """--tv isotropic: the model file says so, and the loaded model solves with isotropic TV."""
    from tvfast.models.lambda_net import LambdaNet

    out = tmp_path / "iso"
    assert main(["--data", str(data / "train"), "--val", str(data / "val"), "--out", str(out), "--iters", "4",
                 "--base-channels", "4", "--depth", "2", "--epochs", "1", "--tv", "isotropic"]) == 0
    model = LambdaNet.load_pretrained(out / "best.safetensors")
    assert model.tv == "isotropic"
    z = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        x, lam = model.denoise(z)
        expected = tvfast.pdhg(z, lam, 4, tv="isotropic")
    torch.testing.assert_close(x, expected)


def test_full_resolution_images_of_different_sizes(tmp_path):
    """--size 0 trains on each image as read (here 3 sizes), one image per step."""
    rng = np.random.default_rng(1)
    for split, shapes in (("train", ((20, 28), (33, 17), (24, 24))), ("val", ((19, 30),))):
        (tmp_path / split).mkdir()
        for i, shape in enumerate(shapes):
            Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(tmp_path / split / f"im{i}.png")
    out = tmp_path / "run"
    args = ["--data", str(tmp_path / "train"), "--val", str(tmp_path / "val"), "--out", str(out),
            "--iters", "4", "--base-channels", "4", "--depth", "2", "--epochs", "1"]
    assert main([*args, "--size", "0", "--batch-size", "1"]) == 0
    ck = load(out)
    assert ck["global_step"] == 3 and np.isfinite(ck["history"][0]["val_psnr"])


@pytest.mark.parametrize("extra, match", [
    (["--size", "0", "--batch-size", "2"], "--size 0"),
    (["--size", "-3"], "--size must be positive"),
    (["--solve-pad", "-1"], "--solve-pad must be >= 0"),
    (["--warmup-epochs", "-1"], "--warmup-epochs must be >= 0"),
    (["--time-budget-min", "0"], "--time-budget-min must be positive"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["--precision", "fp16"], "invalid choice: 'fp16'"),
    (["--size", "0", "--patch-size", "40"], "--patch-size 40 exceeds image"),
    (["--tv", "isotropic", "--directional"], "--tv isotropic takes one"),
    (["--tv", "l1"], "invalid choice: 'l1'"),
])
def test_size_errors(data, tmp_path, capsys, extra, match):
    with pytest.raises(SystemExit):
        main(["--data", str(data / "train"), "--out", str(tmp_path / "o"), *extra])
    assert match in capsys.readouterr().err


def test_module_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "tvfast.training.train", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    for flag in ("--data", "--val", "--out", "--epochs", "--batch-size", "--patch-size", "--iters",
                 "--lr", "--up-bound", "--directional", "--resume", "--num-workers",
                 "--max-steps-per-epoch", "--time-limit-min"):
        assert flag in r.stdout


@pytest.mark.slow
def test_torchrun_two_processes_gloo(data, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "tvfast.training.train", "--data", str(data / "train"), "--val", str(data / "val"),
           "--out", str(out), "--epochs", "1", "--device", "cpu", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ck = load(out)
    # 6 images over 2 ranks = 3 per rank, batch 2 -> 2 synchronous steps.
    assert ck["epoch"] == 1 and ck["global_step"] == 2
    assert np.isfinite(ck["best_val_psnr"])
    assert (out / "best.safetensors").is_file()
    assert len(list((out / "tensorboard").iterdir())) == 1  # only rank 0 logs


def test_learning_rate_schedules():
    args = apply_recipe(build_parser().parse_args(["--data", "x", "--lr", "1e-3", "--lr-schedule", "cosine",
                                                   "--warmup-epochs", "2"]))
    assert scheduled_lr(args, 0.0, 10) < 1e-5
    assert scheduled_lr(args, 1.0, 10) == pytest.approx(5e-4, rel=1e-3)  # linear warm-up
    assert scheduled_lr(args, 2.0, 10) == pytest.approx(1e-3)  # peak at the end of the warm-up
    assert scheduled_lr(args, 6.0, 10) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # half-way down
    assert scheduled_lr(args, 10.0, 10) == pytest.approx(1e-5)  # 1 % of the peak at the end
    lrs = [scheduled_lr(args, e / 4, 10) for e in range(8, 41)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    const = apply_recipe(build_parser().parse_args(["--data", "x", "--recipe", "original", "--lr", "3e-4"]))
    assert scheduled_lr(const, 0.0, 10) == scheduled_lr(const, 9.5, 10) == 3e-4


def test_recipe_options_train_and_are_stored(data, tmp_path):
    out = tmp_path / "run"
    assert run(data, out, "--epochs", "3", "--lr-schedule", "cosine", "--warmup-epochs", "1", "--augment",
               "--normalize-input", "--solve-pad", "4", "--precision", "bf16", "--checkpoint-every", "2") == 0
    ck = load(out)
    assert ck["epoch"] == 3 and [h["epoch"] for h in ck["history"]] == [1, 2, 3]
    assert ck["history"][-1]["lr"] == pytest.approx(1e-3 / 100, rel=0.05)  # cosine ends at 1 % of the recipe's lr
    model = LambdaNet.load_pretrained(out / "best.safetensors")
    assert (model.normalize_input, model.solve_pad) == (True, 4)
    assert np.isfinite(ck["best_val_psnr"])


def test_time_budget_fixes_the_epoch_count_after_two_epochs(data, tmp_path):
    out = tmp_path / "run"
    # A generous budget: the fitted count is capped by --epochs.
    run(data, out, "--epochs", "4", "--time-budget-min", "60")
    ck = load(out)
    assert ck["epoch"] == 4 and ck["epochs_total"] == 4 and ck["epochs_total_fixed"]
    # A budget spent before the fit: the budget is the time limit, the run stops after its first step.
    out2 = tmp_path / "run2"
    run(data, out2, "--epochs", "50", "--time-budget-min", "1e-4")
    ck = load(out2)
    assert (ck["epoch"], ck["step"]) == (0, 1) and not ck["epochs_total_fixed"]


def test_time_budget_fits_epochs_from_the_second_epoch(data, tmp_path, monkeypatch):
    """A fake trainer clock that advances 1 s per reading makes the fitted count deterministic."""
    import tvfast.training.train as train_module

    clock = iter(range(10**6))
    monkeypatch.setattr(train_module, "_now", lambda: float(next(clock)))
    out = tmp_path / "run"
    run(data, out, "--epochs", "1000", "--time-budget-min", "2", "--lr-schedule", "cosine")
    ck = load(out)
    assert ck["epochs_total_fixed"] and 2 < ck["epochs_total"] < 1000
    assert ck["epoch"] == ck["epochs_total"]  # ran to the fitted end, not cut by the budget
    assert ck["history"][-1]["lr"] == pytest.approx(1e-5, rel=0.05)  # the cosine reached its end (1 % of 1e-3)

def test_resume_with_a_budget_extends_a_finished_run(data, tmp_path):
    out = tmp_path / "run"
    run(data, out, "--epochs", "2", "--time-budget-min", "60", "--lr-schedule", "cosine")
    assert load(out)["epoch"] == 2
    run(data, out, "--epochs", "4", "--resume")  # no budget: the fitted count (2) stands
    assert load(out)["epoch"] == 2
    run(data, out, "--epochs", "5", "--resume", "--time-budget-min", "60", "--lr-schedule", "cosine")
    ck = load(out)
    assert ck["epoch"] == 5 and ck["epochs_total"] == 5 and ck["global_step"] == 15
    assert [h["epoch"] for h in ck["history"]] == [1, 2, 3, 4, 5]


def test_resume_mid_epoch_with_the_recipe_options_is_exact(data, tmp_path):
    recipe = ["--lr-schedule", "cosine", "--warmup-epochs", "1", "--augment", "--normalize-input",
              "--solve-pad", "3", "--lr", "1e-3"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run(data, straight, "--epochs", "2", *recipe)
    run(data, stopped, "--epochs", "2", *recipe, "--time-limit-min", "1e-6")  # stops after one step
    assert (load(stopped)["epoch"], load(stopped)["step"]) == (0, 1)
    run(data, stopped, "--epochs", "2", "--resume")  # the recipe comes back from the checkpoint
    a, b = load(straight), load(stopped)
    assert b["epoch"] == 2 and b["global_step"] == a["global_step"]
    assert b["args"]["lr_schedule"] == "cosine" and b["args"]["augment"]
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-6, atol=1e-7)
    assert [h["lr"] for h in b["history"]] == pytest.approx([h["lr"] for h in a["history"]])


def test_resume_refuses_a_different_sample_stream(data, tmp_path, capsys):
    out = tmp_path / "run"
    run(data, out, "--epochs", "1")
    with pytest.raises(SystemExit):
        main(["--data", str(data / "train"), "--out", str(out), "--resume", "--epochs", "2",
              "--size", "32", "--iters", "4", "--base-channels", "4", "--depth", "2", "--batch-size", "3"])
    assert "--batch-size 3 differs from the checkpoint's 2" in capsys.readouterr().err


SEQ = ["--sequences", "--size", "16", "--frames", "4", "--iters", "4", "--base-channels", "4", "--depth", "2",
       "--batch-size", "2"]


def test_sequences_train_resume_and_evaluate_against_the_best_pair(data, tmp_path):
    """--task sequences (or --sequences) trains the 3-D model, resumes, and tvfast evaluate --task sequences
    scores it against the best pair of scalars."""
    from tvfast.models.lambda_net import LambdaNet
    from tvfast.training.evaluate import main as evaluate_main

    out = tmp_path / "run3d"
    args = ["--data", str(data / "train"), "--val", str(data / "val"), "--out", str(out), "--task", "sequences",
            *SEQ[1:]]
    assert main([*args, "--epochs", "1"]) == 0
    ck = load(out)
    assert ck["model_kind"] == "lambdanet3d" and ck["epoch"] == 1 and np.isfinite(ck["best_val_psnr"])
    assert ck["args"]["task"] == "sequences"
    assert main([*args[:-len(SEQ[1:]) - 2], *SEQ, "--epochs", "2", "--resume"]) == 0  # --sequences: the same task
    assert load(out)["epoch"] == 2
    model = LambdaNet.load_pretrained(out / "best.safetensors", spatial_dims=3)
    assert model.n_iter == 4
    ev = tmp_path / "eval3d"
    assert evaluate_main(["--task", "sequences", "--data", str(data / "val"), "--weights",
                          str(out / "best.safetensors"), "--out", str(ev), "--frames", "4", "--size", "16",
                          "--iters", "4", "--grid", "3"]) == 0
    summary = json.loads((ev / "summary.json").read_text())["levels"]["0.5"]
    assert summary["count"] == 2 and summary["psnr_best_pair"][0] > summary["psnr_noisy"][0]
    assert (ev / "sequence0_s0.5.png").is_file() and (ev / "sequence0_s0.5_lambda.png").is_file()


@pytest.mark.parametrize("extra", [["--augment"], ["--patch-size", "8"], ["--solve-pad", "2"]])
def test_sequences_refuse_2d_only_options(data, tmp_path, capsys, extra):
    with pytest.raises(SystemExit):
        main(["--data", str(data / "train"), "--out", str(tmp_path / "o"), *SEQ, *extra])
    assert "does not apply with --sequences" in capsys.readouterr().err


# ---------------------------------------------------------------- learning
@pytest.fixture
def one_thread():
    """One torch thread: tiny convolutions only lose time to a second thread on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_lowers_the_loss(tmp_path, one_thread):
    """8 crops (32²) of the bundled X-rays, fixed noise level, T = 16, 24 steps of the default recipe with a
    short warm-up: the mean loss of the last 4 steps (the last epoch, every crop once) is well below that
    of the first 4. Without learning the two differ only by the noise draws (a few per cent)."""
    crops = tmp_path / "crops"
    crops.mkdir()
    bundled = sorted((Path(tvfast.__file__).parent / "data").glob("*.png"))[:2]
    assert len(bundled) == 2
    for n, path in enumerate(bundled):
        image = centre_square_resize(read_grayscale(path), 128)
        for k, (r, c) in enumerate(((40, 24), (40, 72), (72, 24), (72, 72))):
            np.save(crops / f"crop{n}{k}.npy", image[r : r + 32, c : c + 32])
    out = tmp_path / "run"
    assert main(["--data", str(crops), "--out", str(out), "--size", "32", "--iters", "16", "--base-channels", "4",
                 "--depth", "2", "--batch-size", "2", "--noise-min", "0.3", "--noise-max", "0.3", "--epochs", "6",
                 "--warmup-epochs", "1", "--lr", "3e-3"]) == 0
    ck = load(out)
    assert ck["global_step"] == 24 and ck["args"]["lr_schedule"] == "cosine"
    first, last = ck["history"][0]["train_loss"], ck["history"][-1]["train_loss"]
    assert last < 0.75 * first, [h["train_loss"] for h in ck["history"]]


# ---------------------------------------------------------------- recipes
def test_recipes_default_original_and_overrides():
    parse = build_parser().parse_args
    best = apply_recipe(parse(["--data", "x"]))
    assert (best.recipe, best.lr, best.lr_schedule, best.warmup_epochs) == ("best", 1e-3, "cosine", 5.0)
    original = apply_recipe(parse(["--data", "x", "--recipe", "original"]))
    assert (original.lr, original.lr_schedule, original.warmup_epochs) == (1e-4, "constant", 0.0)
    mixed = apply_recipe(parse(["--data", "x", "--recipe", "original", "--lr-schedule", "cosine", "--lr", "2e-4"]))
    assert (mixed.lr, mixed.lr_schedule, mixed.warmup_epochs) == (2e-4, "cosine", 0.0)
    assert set(RECIPES) == {"best", "original"}
    with pytest.raises(SystemExit):  # the old name, which read like --seed, is not an option any more
        parse(["--data", "x", "--recipe", "seed"])


def test_resume_takes_the_recipe_from_the_checkpoint_unless_given():
    parser = build_parser()
    saved = vars(apply_recipe(parser.parse_args(["--data", "x", "--recipe", "original", "--lr", "5e-5"])))

    def resumed(*options):
        argv = ["--data", "x", "--resume", *options]
        return apply_recipe(resumed_arguments(parser.parse_args(argv), saved, explicit_options(parser, argv)))

    kept = resumed()
    assert (kept.recipe, kept.lr, kept.lr_schedule, kept.warmup_epochs) == ("original", 5e-5, "constant", 0.0)
    lr_only = resumed("--lr", "1e-5")
    assert (lr_only.recipe, lr_only.lr, lr_only.lr_schedule) == ("original", 1e-5, "constant")
    other = resumed("--recipe", "best")  # an explicit recipe brings its own values, not the checkpoint's
    assert (other.lr, other.lr_schedule, other.warmup_epochs) == (1e-3, "cosine", 5.0)
    saved["recipe"] = "seed"  # a checkpoint written before the recipe was renamed still resumes
    assert resumed().recipe == "original"
    saved.update(task="denoise", sequences=True)  # a sequence run of before --task sequences
    assert resumed().task == "sequences"


def test_every_task_of_the_registry_builds_its_model_and_names_its_evaluation():
    from tvfast.training.tasks import TASKS, task_spec

    parser = build_parser()
    assert {name: spec.size for name, spec in TASKS.items()} == {"denoise": 256, "sequences": 64, "mri4x": 256,
                                                                 "ct60": 128}
    kinds = {"lambdanet": (LambdaNet, 2), "lambdanet3d": (LambdaNet, 3)}
    for name, spec in TASKS.items():
        args = resolve_task_defaults(parser.parse_args(["--data", "x", "--task", name, "--base-channels", "4",
                                                        "--depth", "1"]))
        assert (args.iters, (args.noise_min, args.noise_max)) == (spec.n_iter, spec.train_noise)
        assert args.size == spec.size  # trained at the size it is evaluated at unless --size says otherwise
        given = resolve_task_defaults(parser.parse_args(["--data", "x", "--task", name, "--size", "48"]))
        assert given.size == 48
        model = spec.new_model(args)
        if spec.model_kind == "reconstruction":
            assert model.task == spec.operator
        else:
            cls, dims = kinds[spec.model_kind]
            assert isinstance(model, cls) and model.spatial_dims == dims
        assert callable(spec.evaluate) and spec.description
    with pytest.raises(ValueError, match="^task: expected one of"):
        task_spec("mri8x")


def test_original_recipe_runs_and_resumes_with_its_schedule(data, tmp_path):
    out = tmp_path / "run"
    run(data, out, "--epochs", "1", "--recipe", "original")
    run(data, out, "--epochs", "2", "--resume")
    ck = load(out)
    assert ck["epoch"] == 2 and ck["args"]["recipe"] == "original"
    assert [h["lr"] for h in ck["history"]] == [1e-4, 1e-4]


@pytest.mark.parametrize("extra, match", [
    (["--lr", "0"], "--lr must be positive"),
    (["--recipe", "fast"], "invalid choice: 'fast'"),
])
def test_recipe_errors(data, tmp_path, capsys, extra, match):
    with pytest.raises(SystemExit):
        main(["--data", str(data / "train"), "--out", str(tmp_path / "o"), *extra])
    assert match in capsys.readouterr().err


# ---------------------------------------------------------------- ready-made sequences (--volume)
@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = tmp_path_factory.mktemp("volumes")
    rng = np.random.default_rng(3)
    for split, n in (("train", 2), ("val", 1)):
        (root / split).mkdir()
        for i in range(n):
            np.save(root / split / f"v{i}.npy", rng.random((6, 16, 16)).astype(np.float32))
    return root


def test_sequences_from_volume_files(volumes, tmp_path):
    out = tmp_path / "run"
    assert main(["--data", str(volumes / "train"), "--val", str(volumes / "val"), "--out", str(out), *SEQ,
                 "--volume", "--epochs", "1"]) == 0
    ck = load(out)
    assert ck["model_kind"] == "lambdanet3d" and ck["args"]["volume"] and np.isfinite(ck["best_val_psnr"])


@pytest.mark.parametrize("folder, extra, match", [
    ("volumes", ["--volume"], "--volume: ready-made (D, H, W) sequences train the dynamic model; add --sequences"),
    ("images", [*SEQ, "--volume"], "im0.png: a volume must be .npy, .tif, .tiff"),
    ("volumes", [*SEQ, "--volume", "--frames", "7"], "has 6 frames, fewer than frames=7"),
])
def test_volume_flag_errors(data, volumes, tmp_path, capsys, folder, extra, match):
    root = {"volumes": volumes, "images": data}[folder] / "train"
    with pytest.raises(SystemExit):
        main(["--data", str(root), "--out", str(tmp_path / "o"), *extra])
    assert match in capsys.readouterr().err


@pytest.mark.parametrize("task", ["mri4x", "ct60"])
def test_reconstruction_tasks_train_resume_and_save(data, tmp_path, task):
    """--task mri4x / ct60 train ReconstructionNet end to end, resume exactly and write a loadable best model."""
    from tvfast.models.reconstruction_net import ReconstructionNet

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    extra = ["--task", task, "--directional"] if task == "mri4x" else ["--task", task]
    run(data, straight, *extra, "--epochs", "2")
    run(data, resumed, *extra, "--epochs", "1")
    run(data, resumed, *extra, "--epochs", "2", "--resume")
    a, b = load(straight), load(resumed)
    assert a["model_kind"] == b["model_kind"] == "reconstruction"
    assert a["args"]["noise_min"] == (0.02 if task == "mri4x" else 0.01)
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-6, atol=1e-7)
    assert b["history"][1]["val_psnr"] == pytest.approx(a["history"][1]["val_psnr"], abs=1e-4)
    model = ReconstructionNet.load_pretrained(straight / "best.safetensors")
    assert model.task == ("mri" if task == "mri4x" else "ct") and model.n_iter == 4
    assert model.directional == (task == "mri4x") and model.solver_compile is None


def test_pilot_run_starts_from_a_model_without_one(data, tmp_path, capsys):
    """--pilot with --init from a model without a pilot: the old weights in place, the pilot's input channels
    at zero weight, so the first maps are the old model's; the saved model has the pilot."""
    from safetensors.torch import load_file

    first, piloted = tmp_path / "first", tmp_path / "piloted"
    run(data, first, "--task", "mri4x", "--epochs", "1", "--normalisation", "quantile")
    run(data, piloted, "--task", "mri4x", "--epochs", "1", "--normalisation", "quantile", "--max-steps-per-epoch",
        "1", "--lr", "1e-12", "--pilot", "2e-3", "--pilot-iters", "3", "--init", str(first / "best.safetensors"))
    old, new = load_file(first / "best.safetensors"), load_file(piloted / "best.safetensors")
    for k in old:
        value = new[k][:, : old[k].shape[1]] if new[k].shape != old[k].shape else new[k]
        torch.testing.assert_close(value, old[k], rtol=1e-6, atol=1e-8)
    widened = [k for k in old if new[k].shape != old[k].shape]
    assert widened == ["unet.inc.0.weight"] and new[widened[0]].shape[1] == 4
    assert float(new[widened[0]][:, 2:].abs().max()) < 1e-8
    from tvfast.models.reconstruction_net import ReconstructionNet

    model = ReconstructionNet.load_pretrained(piloted / "best.safetensors")
    assert (model.pilot, model.pilot_iters) == (2e-3, 3)
    assert load(piloted)["history"][-1]["val_psnr"] == pytest.approx(load(first)["history"][-1]["val_psnr"], abs=1e-3)
    for bad, message in ((["--task", "mri4x", "--pilot", "0"], "--pilot must be a finite number > 0"),
                         (["--task", "mri4x", "--pilot", "1e-3", "--pilot-iters", "0"], "--pilot-iters must be >= 1"),
                         (["--task", "mri4x", "--pilot-iters", "8"], "--pilot-iters sets the iterations"),
                         (["--pilot", "1e-3"], "--pilot is for the reconstruction tasks")):
        with pytest.raises(SystemExit):
            run(data, tmp_path / "bad", *bad)
        assert message in capsys.readouterr().err
    # a resumed run keeps its pilot; another value is an error, as for the other model options
    run(data, piloted, "--task", "mri4x", "--resume", "--epochs", "2", "--max-steps-per-epoch", "1")
    ckpt = load(piloted)
    assert ckpt["epoch"] == 2 and (ckpt["model_config"]["pilot"], ckpt["model_config"]["pilot_iters"]) == (2e-3, 3)
    for flag, value, kept in (("--pilot", "0.001", "0.002"), ("--pilot-iters", "4", "3")):
        with pytest.raises(SystemExit):
            run(data, piloted, "--task", "mri4x", "--resume", "--epochs", "3", "--max-steps-per-epoch", "1", flag, value)
        assert f"{flag} {value} differs from the checkpoint's model ({kept})" in capsys.readouterr().err
    # --init from a model of the other task, or into a run without the pilot: one clear error each
    with pytest.raises(SystemExit):
        run(data, tmp_path / "ct", "--task", "ct60", "--epochs", "1", "--pilot", "2e-3", "--init",
            str(first / "best.safetensors"))
    assert "a 'mri' model; this run trains a 'ct' one" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(data, tmp_path / "plain", "--task", "mri4x", "--epochs", "1", "--normalisation", "quantile", "--init",
            str(piloted / "best.safetensors"))
    assert "a model with a pilot needs the run's --pilot" in capsys.readouterr().err


def test_reconstruction_tasks_refuse_denoising_options(data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(data, tmp_path / "x", "--task", "mri4x", "--normalize-input")
    assert "--normalize-input is for the denoising model" in capsys.readouterr().err


def test_init_starts_a_new_run_from_weights(data, tmp_path, capsys):
    """--init fine-tunes: a new run (other sample options) from another run's best weights."""
    from safetensors.torch import load_file

    first, tuned = tmp_path / "first", tmp_path / "tuned"
    run(data, first, "--task", "mri4x", "--epochs", "1")
    weights = load_file(first / "best.safetensors")
    main(["--data", str(data / "train"), "--out", str(tuned), *TINY, "--task", "mri4x", "--epochs", "1",
          "--max-steps-per-epoch", "1", "--lr", "1e-12", "--init", str(first / "best.safetensors")])
    tuned_weights = load_file(tuned / "best.safetensors")
    for k in weights:  # a 1e-12 step: the weights are the initial ones
        torch.testing.assert_close(tuned_weights[k], weights[k], rtol=1e-6, atol=1e-8)
    with pytest.raises(SystemExit):
        main(["--data", str(data / "train"), "--out", str(tmp_path / "x"), *TINY, "--init", str(tmp_path / "no.st")])
    assert "--init: weights not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a LambdaNet run cannot start from a ReconstructionNet's weights
        main(["--data", str(data / "train"), "--out", str(tmp_path / "y"), *TINY, "--epochs", "1",
              "--init", str(first / "best.safetensors")])
    assert "--init" in capsys.readouterr().err
